//! Digest algorithms (RFC 7616 §3.2, RFC 8760) and the hex helpers the digest
//! computation needs, all into stack buffers.
//!
//! The hashes come from the RustCrypto `md-5` and `sha2` crates: hand-written hashes are
//! a classic source of subtle bugs and we gain nothing by owning one.

use md5::Md5;
use sha2::{Digest, Sha256};

/// Longest digest output of any supported algorithm, in bytes (SHA-256).
pub(crate) const HASH_LEN_MAX: usize = 32;
/// Longest digest output of any supported algorithm, in lower-case hex characters.
pub(crate) const HASH_HEX_LEN_MAX: usize = 2 * HASH_LEN_MAX;

/// A digest algorithm we verify and challenge with.
///
/// The `-sess` variants (RFC 7616 §3.4.2) are not supported: they need the client
/// nonce in HA1, which defeats stored HA1 values; a response naming one is treated as an
/// unknown algorithm (and answered with our challenge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617, the default when `algorithm` is absent).
    Md5,
    /// `SHA-256` (RFC 7616 §3.2, RFC 8760 §2.1).
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=` (RFC 8760 §2.1 names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` token (case-insensitive); `None` for anything else,
    /// including the `-sess` variants.
    pub fn from_token(token: &[u8]) -> Option<Self> {
        if token.eq_ignore_ascii_case(b"MD5") {
            Some(Self::Md5)
        } else if token.eq_ignore_ascii_case(b"SHA-256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }

    /// Digest output length in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 => 32,
        }
    }

    /// Digest output length in hex characters.
    pub fn hex_len(self) -> usize {
        2 * self.hash_len()
    }
}

/// An incremental hash of either algorithm, fed slice by slice.
pub(crate) enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    pub(crate) fn new(algo: Algorithm) -> Self {
        match algo {
            Algorithm::Md5 => Self::Md5(Md5::new()),
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    /// Finishes into `out`, returning the lower-case hex digest.
    pub(crate) fn finish_hex(self, out: &mut [u8; HASH_HEX_LEN_MAX]) -> &[u8] {
        match self {
            Self::Md5(h) => hex_into(&h.finalize(), out),
            Self::Sha256(h) => hex_into(&h.finalize(), out),
        }
    }
}

/// `H(parts[0] ":" parts[1] ":" …)` as lower-case hex into `out`.
pub(crate) fn hash_hex_joined<'o>(
    algo: Algorithm,
    parts: &[&[u8]],
    out: &'o mut [u8; HASH_HEX_LEN_MAX],
) -> &'o [u8] {
    let mut h = Hasher::new(algo);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    h.finish_hex(out)
}

/// The two lower-case hex digits of every byte value: one copy per byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// Writes `bytes` as lower-case hex into `out` and returns the written prefix (as much
/// as fits: `out` is always at least twice as long as what callers pass). Also the
/// registrar's To-tag writer.
pub(crate) fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let mut n = 0;
    for (&b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        n += 2;
    }
    out.get(..n).unwrap_or_default()
}

/// Value of one hex digit (either case).
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) into `out`; `None` unless `hex` is exactly
/// `2 * out.len()` hex digits.
pub(crate) fn hex_decode(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != 2 * out.len() {
        return None;
    }
    for (pair, o) in hex.chunks_exact(2).zip(out.iter_mut()) {
        let (&hi, &lo) = (pair.first()?, pair.get(1)?);
        *o = (hex_digit(hi)? << 4) | hex_digit(lo)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sess_is_unknown() {
        for a in [Algorithm::Md5, Algorithm::Sha256] {
            assert_eq!(Algorithm::from_token(a.name().as_bytes()), Some(a));
        }
        assert_eq!(Algorithm::from_token(b"sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token(b"md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token(b"MD5-sess"), None);
        assert_eq!(Algorithm::from_token(b"SHA-256-sess"), None);
        assert_eq!(Algorithm::from_token(b"SHA-512-256"), None);
    }

    #[test]
    fn known_hashes() {
        let mut out = [0u8; HASH_HEX_LEN_MAX];
        // RFC 1321 A.5 / FIPS 180-2 test vectors for "abc".
        assert_eq!(
            hash_hex_joined(Algorithm::Md5, &[b"abc"], &mut out),
            b"900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hash_hex_joined(Algorithm::Sha256, &[b"a", b"c"], &mut out),
            hash_hex_joined(Algorithm::Sha256, &[b"a:c"], &mut [0u8; 64])
        );
        assert_eq!(
            hash_hex_joined(Algorithm::Sha256, &[b"abc"], &mut out),
            b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_decode_rejects_bad_input() {
        let mut b = [0u8; 2];
        assert_eq!(hex_decode(b"aBcd", &mut b), Some(()));
        assert_eq!(b, [0xab, 0xcd]);
        assert_eq!(hex_decode(b"abc", &mut b), None);
        assert_eq!(hex_decode(b"abcg", &mut b), None);
    }
}
