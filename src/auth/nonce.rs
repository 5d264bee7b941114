//! Stateless nonces (RFC 7616 §3.3 "nonce" and §5.4): any core can verify a nonce that
//! any other core issued, with no shared table, because the nonce carries its own issue
//! time and an HMAC over that time and the realm under a per-process secret.
//!
//! Format (`NONCE_LEN` = 64 lower-case hex characters):
//! `hex(issued_ms) || hex(seq) || hex(HMAC-SHA256(secret, "nonce" || issued_ms || seq || realm)[..16])`
//! (u64s big-endian). `seq` counts the nonces this key issued, so two challenges in the
//! same millisecond still get different nonces: the nonce-count replay table keys on the
//! nonce, and a shared nonce would make one phone's `nc=1` a "replay" of another's.
//! The 128-bit truncated tag keeps forgery at 2^-128 per guess; the realm inside the MAC
//! stops a nonce issued for one domain from being used in another. HMAC-SHA256 comes
//! from the RustCrypto `hmac` + `sha2` crates, whose tag check is constant-time.
//!
//! Randomness and time are inputs: the 32-byte secret is handed in by the runtime
//! (from getrandom), and `now_ms` must come from a clock that every core shares (it is
//! compared with the issue time that another core wrote).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::algorithm::{hex_decode, hex_into};
use super::subscribers::REALM_LEN_MAX;

type HmacSha256 = Hmac<Sha256>;

/// Length of a nonce we issue, in characters.
pub const NONCE_LEN: usize = 64;
/// Bytes of the HMAC kept in a nonce.
const NONCE_TAG_LEN: usize = 16;
/// Length of the opaque value we issue, in characters.
pub const OPAQUE_LEN: usize = 16;
/// How far in the future a nonce's issue time may lie and still be accepted, in
/// milliseconds: absorbs the small disagreement between cores reading the clock.
pub const NONCE_FUTURE_SKEW_MS: u64 = 2_000;

/// Domain separators inside the MAC input, so a nonce tag can never double as the
/// opaque value or vice versa.
const NONCE_LABEL: &[u8] = b"sipreg nonce\0";
const OPAQUE_LABEL: &[u8] = b"sipreg opaque\0";

/// The per-process nonce secret (keyed HMAC state, cloned per use: no allocation), and
/// the sequence number of the next nonce this key issues (one key per shard).
#[derive(Clone)]
pub struct NonceKey {
    mac: HmacSha256,
    opaque: [u8; OPAQUE_LEN],
    seq: std::cell::Cell<u64>,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)") // never print the secret
    }
}

/// What [`NonceKey::check_nonce`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this realm, within its lifetime.
    Valid {
        /// When it was issued (`now_ms` of [`NonceKey::make_nonce`]).
        issued_ms: u64,
    },
    /// Ours and for this realm, but older than the lifetime: answer `stale=true` when
    /// the response is otherwise right (RFC 7616 §3.3 "stale").
    Stale,
    /// Not a nonce we issued for this realm (wrong length, tampered, another realm, or
    /// issued in the future).
    Invalid,
}

impl NonceKey {
    /// Keys the nonce MAC with a 32-byte secret that the runtime draws at start-up.
    pub fn new(secret: &[u8; 32]) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail here.
        let mac = match HmacSha256::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => HmacSha256::new(&Default::default()),
        };
        let mut m = mac.clone();
        m.update(OPAQUE_LABEL);
        let tag = m.finalize().into_bytes();
        let mut opaque = [0u8; OPAQUE_LEN];
        hex_into(tag.get(..OPAQUE_LEN / 2).unwrap_or_default(), &mut opaque);
        Self {
            mac,
            opaque,
            seq: std::cell::Cell::new(0),
        }
    }

    /// The opaque value sent in every challenge (RFC 7616 §3.3: the client returns it
    /// unchanged). It is fixed per process and carries no state: the nonce does.
    pub fn opaque(&self) -> &str {
        std::str::from_utf8(&self.opaque).unwrap_or_default()
    }

    fn tag(&self, issued_ms: u64, seq: u64, realm: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(NONCE_LABEL);
        m.update(&issued_ms.to_be_bytes());
        m.update(&seq.to_be_bytes());
        // The realm is case-insensitive: fold it in chunks on the stack.
        let mut chunk = [0u8; 64];
        for part in realm.chunks(chunk.len()) {
            if let Some(c) = chunk.get_mut(..part.len()) {
                c.copy_from_slice(part);
                c.make_ascii_lowercase();
                m.update(c);
            }
        }
        m
    }

    /// Writes a nonce for `realm` issued at `now_ms` into `out` and returns it.
    pub fn make_nonce<'o>(
        &self,
        now_ms: u64,
        realm: &[u8],
        out: &'o mut [u8; NONCE_LEN],
    ) -> &'o str {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let tag = self.tag(now_ms, seq, realm).finalize().into_bytes();
        let (ts, rest) = out.split_at_mut(16);
        let (sq, mac) = rest.split_at_mut(16);
        hex_into(&now_ms.to_be_bytes(), ts);
        hex_into(&seq.to_be_bytes(), sq);
        hex_into(tag.get(..NONCE_TAG_LEN).unwrap_or_default(), mac);
        std::str::from_utf8(out).unwrap_or_default()
    }

    /// Checks a nonce echoed by a client against `realm` at `now_ms`.
    /// A nonce is stale once `now_ms - issued_ms > lifetime_ms`.
    pub fn check_nonce(
        &self,
        nonce: &[u8],
        realm: &[u8],
        now_ms: u64,
        lifetime_ms: u64,
    ) -> NonceCheck {
        if nonce.len() != NONCE_LEN || realm.len() > REALM_LEN_MAX {
            return NonceCheck::Invalid;
        }
        let (ts_hex, rest) = nonce.split_at(16);
        let (seq_hex, tag_hex) = rest.split_at(16);
        let mut ts = [0u8; 8];
        let mut seq = [0u8; 8];
        let mut tag = [0u8; NONCE_TAG_LEN];
        if hex_decode(ts_hex, &mut ts).is_none()
            || hex_decode(seq_hex, &mut seq).is_none()
            || hex_decode(tag_hex, &mut tag).is_none()
        {
            return NonceCheck::Invalid;
        }
        // Our nonces are lower-case hex; refuse other spellings of the same bytes so a
        // nonce has exactly one accepted form (the replay table keys on the text).
        if nonce.iter().any(u8::is_ascii_uppercase) {
            return NonceCheck::Invalid;
        }
        let issued_ms = u64::from_be_bytes(ts);
        if self
            .tag(issued_ms, u64::from_be_bytes(seq), realm)
            .verify_truncated_left(&tag)
            .is_err()
        {
            return NonceCheck::Invalid;
        }
        if issued_ms > now_ms.saturating_add(NONCE_FUTURE_SKEW_MS) {
            return NonceCheck::Invalid;
        }
        if now_ms.saturating_sub(issued_ms) > lifetime_ms {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid { issued_ms }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_of_one_millisecond_differ_and_all_verify() {
        let k = key(3);
        let (mut a, mut b) = ([0u8; NONCE_LEN], [0u8; NONCE_LEN]);
        let a = k.make_nonce(T0, b"example.com", &mut a).to_owned();
        let b = k.make_nonce(T0, b"example.com", &mut b).to_owned();
        assert_ne!(a, b);
        for n in [a, b] {
            assert_eq!(
                k.check_nonce(n.as_bytes(), b"example.com", T0, LIFE),
                NonceCheck::Valid { issued_ms: T0 }
            );
        }
    }

    const T0: u64 = 1_790_000_000_000;
    const LIFE: u64 = 30_000;

    fn key(b: u8) -> NonceKey {
        NonceKey::new(&[b; 32])
    }

    #[test]
    fn round_trip_on_any_core_and_case_insensitive_realm() {
        let k = key(7);
        let mut buf = [0u8; NONCE_LEN];
        let n = k.make_nonce(T0, b"Example.com", &mut buf).to_owned();
        assert_eq!(n.len(), NONCE_LEN);
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let other_core = k.clone();
        assert_eq!(
            other_core.check_nonce(n.as_bytes(), b"example.COM", T0 + 5, LIFE),
            NonceCheck::Valid { issued_ms: T0 }
        );
        assert_ne!(
            k.make_nonce(T0 + 1, b"example.com", &mut buf),
            n,
            "time changes the nonce"
        );
    }

    #[test]
    fn stale_after_lifetime() {
        let k = key(1);
        let mut buf = [0u8; NONCE_LEN];
        let n = k.make_nonce(T0, b"a.b", &mut buf).as_bytes().to_vec();
        assert_eq!(
            k.check_nonce(&n, b"a.b", T0 + LIFE, LIFE),
            NonceCheck::Valid { issued_ms: T0 }
        );
        assert_eq!(
            k.check_nonce(&n, b"a.b", T0 + LIFE + 1, LIFE),
            NonceCheck::Stale
        );
        assert_eq!(
            k.check_nonce(&n, b"a.b", T0 - NONCE_FUTURE_SKEW_MS, LIFE),
            NonceCheck::Valid { issued_ms: T0 }
        );
        assert_eq!(
            k.check_nonce(&n, b"a.b", T0 - NONCE_FUTURE_SKEW_MS - 1, LIFE),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn tampered_foreign_and_other_realm_nonces_are_invalid() {
        let k = key(1);
        let mut buf = [0u8; NONCE_LEN];
        let n = k.make_nonce(T0, b"a.b", &mut buf).as_bytes().to_vec();
        assert_eq!(k.check_nonce(&n, b"c.d", T0, LIFE), NonceCheck::Invalid);
        assert_eq!(
            key(2).check_nonce(&n, b"a.b", T0, LIFE),
            NonceCheck::Invalid
        );
        for i in 0..NONCE_LEN {
            let mut t = n.clone();
            t[i] = if t[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(
                k.check_nonce(&t, b"a.b", T0, LIFE),
                NonceCheck::Invalid,
                "byte {i}"
            );
        }
        // A later timestamp with the old tag (extending the lifetime) does not verify.
        let mut later = n.clone();
        later[..16].copy_from_slice(b"00000fffffffffff");
        assert_eq!(
            k.check_nonce(&later, b"a.b", T0, u64::MAX),
            NonceCheck::Invalid
        );
        let upper = n.to_ascii_uppercase();
        assert_eq!(k.check_nonce(&upper, b"a.b", T0, LIFE), NonceCheck::Invalid);
        assert_eq!(
            k.check_nonce(&n[..47], b"a.b", T0, LIFE),
            NonceCheck::Invalid
        );
        assert_eq!(k.check_nonce(b"", b"a.b", T0, LIFE), NonceCheck::Invalid);
    }

    #[test]
    fn opaque_is_fixed_per_secret() {
        assert_eq!(key(1).opaque(), key(1).opaque());
        assert_ne!(key(1).opaque(), key(2).opaque());
        assert_eq!(key(1).opaque().len(), OPAQUE_LEN);
        assert_eq!(format!("{:?}", key(1)), "NonceKey(..)");
    }
}
