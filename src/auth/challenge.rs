//! `WWW-Authenticate` challenge values (RFC 7616 §3.3, RFC 3261 §22.4), one per
//! algorithm in the configured order: RFC 8760 §2.4 asks for the preferred algorithm
//! first, so the default order is SHA-256 then MD5.
//!
//! ```text
//! Digest realm="example.com", nonce="…", opaque="…", algorithm=SHA-256, qop="auth"[, stale=true]
//! ```
//!
//! The values go into a caller-owned [`Challenges`] whose buffer is sized once, so
//! writing a challenge allocates nothing.

use super::algorithm::Algorithm;
use super::nonce::{NONCE_LEN, NonceKey, OPAQUE_LEN};
use super::subscribers::REALM_LEN_MAX;

/// Most algorithms offered in one challenge (one header each).
pub const ALGORITHMS_MAX: usize = 2;
/// Longest single challenge value, in bytes: the fixed text plus a realm of
/// [`REALM_LEN_MAX`] with every byte escaped.
pub const CHALLENGE_VALUE_LEN_MAX: usize = 128 + 2 * REALM_LEN_MAX + NONCE_LEN + OPAQUE_LEN;

/// The challenge header values of one 401, in order.
#[derive(Debug)]
pub struct Challenges {
    buf: Vec<u8>,
    ends: [usize; ALGORITHMS_MAX],
    count: usize,
}

impl Default for Challenges {
    fn default() -> Self {
        Self::new()
    }
}

impl Challenges {
    /// An empty set with room for [`ALGORITHMS_MAX`] values of the longest size.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(ALGORITHMS_MAX * CHALLENGE_VALUE_LEN_MAX),
            ends: [0; ALGORITHMS_MAX],
            count: 0,
        }
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in order, each one `WWW-Authenticate` header value.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let ends = self.ends.get(..self.count).unwrap_or_default();
        ends.iter().scan(0usize, |start, &end| {
            let v = self.buf.get(*start..end).unwrap_or_default();
            *start = end;
            Some(v)
        })
    }
}

/// Writes one challenge per algorithm of `algorithms` (at most [`ALGORITHMS_MAX`], in
/// order) for `realm`, all sharing one nonce issued at `now_ms`. Replaces the content of
/// `out`. Writes nothing when `realm` is empty or longer than [`REALM_LEN_MAX`].
pub fn write_challenges(
    key: &NonceKey,
    algorithms: &[Algorithm],
    now_ms: u64,
    realm: &[u8],
    stale: bool,
    out: &mut Challenges,
) {
    out.clear();
    if realm.is_empty() || realm.len() > REALM_LEN_MAX {
        return;
    }
    let mut nonce_buf = [0u8; NONCE_LEN];
    let nonce = key.make_nonce(now_ms, realm, &mut nonce_buf);
    for (&algo, end) in algorithms.iter().zip(out.ends.iter_mut()) {
        let b = &mut out.buf;
        b.extend_from_slice(b"Digest realm=\"");
        for &c in realm {
            // quoted-string: escape `"` and `\` (RFC 3261 §25 quoted-pair).
            if c == b'"' || c == b'\\' {
                b.push(b'\\');
            }
            b.push(c);
        }
        b.extend_from_slice(b"\", nonce=\"");
        b.extend_from_slice(nonce.as_bytes());
        b.extend_from_slice(b"\", opaque=\"");
        b.extend_from_slice(key.opaque().as_bytes());
        b.extend_from_slice(b"\", algorithm=");
        b.extend_from_slice(algo.name().as_bytes());
        b.extend_from_slice(b", qop=\"auth\"");
        if stale {
            b.extend_from_slice(b", stale=true");
        }
        *end = b.len();
        out.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{NonceCheck, parse_authorization};

    #[test]
    fn one_value_per_algorithm_in_order() {
        let key = NonceKey::new(&[3; 32]);
        // A clone taken now issues the same next nonce (same sequence number).
        let twin = key.clone();
        let mut c = Challenges::new();
        write_challenges(
            &key,
            &[Algorithm::Sha256, Algorithm::Md5],
            1_000,
            b"example.com",
            false,
            &mut c,
        );
        let v: Vec<String> = c
            .iter()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .collect();
        assert_eq!(v.len(), 2);
        let mut nb = [0u8; NONCE_LEN];
        let nonce = twin.make_nonce(1_000, b"example.com", &mut nb);
        assert_eq!(
            v[0],
            format!(
                "Digest realm=\"example.com\", nonce=\"{nonce}\", opaque=\"{}\", algorithm=SHA-256, qop=\"auth\"",
                key.opaque()
            )
        );
        assert!(v[1].contains("algorithm=MD5, qop=\"auth\""));
        assert!(!v[1].contains("stale"));
        assert_eq!(
            key.check_nonce(nonce.as_bytes(), b"example.com", 1_000, 1),
            NonceCheck::Valid { issued_ms: 1_000 }
        );

        write_challenges(&key, &[Algorithm::Md5], 1_000, b"example.com", true, &mut c);
        assert_eq!(c.len(), 1);
        assert!(
            c.iter()
                .next()
                .unwrap()
                .ends_with(b"qop=\"auth\", stale=true")
        );
    }

    #[test]
    fn challenge_params_parse_back_and_bad_realms_write_nothing() {
        let key = NonceKey::new(&[3; 32]);
        let mut c = Challenges::new();
        write_challenges(&key, &[Algorithm::Md5], 5, b"a\"b", false, &mut c);
        let v = c.iter().next().unwrap().to_vec();
        assert!(v.starts_with(b"Digest realm=\"a\\\"b\""));
        // Our own parser reads the same grammar back (with the fields a client adds).
        let back = [&v[..], b", username=\"u\", uri=\"x\", nc=00000001, cnonce=c, response=\"0123456789abcdef0123456789abcdef\""].concat();
        assert!(parse_authorization(&back).is_ok());
        write_challenges(&key, &[Algorithm::Md5], 5, b"", false, &mut c);
        assert!(c.is_empty());
        write_challenges(
            &key,
            &[Algorithm::Md5],
            5,
            &[b'a'; REALM_LEN_MAX + 1],
            false,
            &mut c,
        );
        assert!(c.is_empty());
        let cap = c.buf.capacity();
        write_challenges(
            &key,
            &[Algorithm::Sha256, Algorithm::Md5],
            5,
            &[b'"'; REALM_LEN_MAX],
            true,
            &mut c,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.buf.capacity(),
            cap,
            "the longest challenge fits without growing"
        );
    }
}
