//! The digest response check (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1):
//!
//! ```text
//! HA2      = H(method ":" uri)
//! response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)
//! ```
//!
//! Only `qop=auth` is accepted. We always challenge with `qop="auth"`, and the RFC 2069
//! form without qop (`H(HA1:nonce:HA2)`) has no client nonce and no nonce count, so it
//! cannot be protected against replay: a client that drops qop gets a fresh challenge.
//! The final comparison is constant-time (`subtle`), on the decoded bytes, so the
//! response hex may be in either case.

use subtle::ConstantTimeEq;

use super::algorithm::{HASH_HEX_LEN_MAX, HASH_LEN_MAX, Hasher, hex_decode};
use super::credentials::DigestResponse;
use super::subscribers::Credentials;

/// Whether `resp` proves knowledge of the password behind `creds` for a request with
/// `method`, using the algorithm the response names. False when the subscriber has no
/// HA1 for that algorithm, or when `qop`, `nc` or `cnonce` is missing.
/// Allocates nothing: every intermediate hex string is on the stack.
pub fn verify(resp: &DigestResponse<'_>, method: &[u8], creds: &Credentials) -> bool {
    let algo = resp.algorithm;
    let (Some(ha1), Some(qop), Some(nc), Some(cnonce)) =
        (creds.ha1_hex(algo), resp.qop, resp.nc, resp.cnonce)
    else {
        return false;
    };
    let mut ha2_buf = [0u8; HASH_HEX_LEN_MAX];
    let mut h = Hasher::new(algo);
    h.update(method);
    h.update(b":");
    resp.uri.for_each_segment(|s| h.update(s));
    let ha2 = h.finish_hex(&mut ha2_buf);

    let mut h = Hasher::new(algo);
    h.update(ha1);
    h.update(b":");
    resp.nonce.for_each_segment(|s| h.update(s));
    h.update(b":");
    h.update(nc.raw);
    h.update(b":");
    cnonce.for_each_segment(|s| h.update(s));
    h.update(b":");
    h.update(qop);
    h.update(b":");
    h.update(ha2);
    let mut want_buf = [0u8; HASH_HEX_LEN_MAX];
    let want_hex = h.finish_hex(&mut want_buf);

    let n = algo.hash_len();
    let (mut want, mut got) = ([0u8; HASH_LEN_MAX], [0u8; HASH_LEN_MAX]);
    let (Some(want), Some(got)) = (want.get_mut(..n), got.get_mut(..n)) else {
        return false;
    };
    if hex_decode(want_hex, want).is_none() || hex_decode(resp.response, got).is_none() {
        return false;
    }
    bool::from(want.ct_eq(got))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Algorithm, parse_authorization};

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    fn rfc7616(algo: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm={algo}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"{response}\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    const MUFASA: fn() -> Credentials =
        || Credentials::from_password(b"Mufasa", b"http-auth@example.org", b"Circle of Life");

    #[test]
    fn rfc_7616_sha256_example() {
        let h = rfc7616(
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        );
        let d = parse_authorization(h.as_bytes()).unwrap();
        assert_eq!(d.algorithm, Algorithm::Sha256);
        assert!(verify(&d, b"GET", &MUFASA()));
        assert!(!verify(&d, b"POST", &MUFASA()), "method is in HA2");
        let wrong =
            Credentials::from_password(b"Mufasa", b"http-auth@example.org", b"Circle of life");
        assert!(!verify(&d, b"GET", &wrong));
    }

    #[test]
    fn rfc_7616_md5_example_and_upper_case_hex() {
        let h = rfc7616("MD5", "8ca523f5e9506fed4657c9700eebdbec");
        let d = parse_authorization(h.as_bytes()).unwrap();
        assert!(verify(&d, b"GET", &MUFASA()));
        let h = rfc7616("MD5", "8CA523F5E9506FED4657C9700EEBDBEC");
        assert!(verify(
            &parse_authorization(h.as_bytes()).unwrap(),
            b"GET",
            &MUFASA()
        ));
        let h = rfc7616("MD5", "8ca523f5e9506fed4657c9700eebdbed");
        assert!(!verify(
            &parse_authorization(h.as_bytes()).unwrap(),
            b"GET",
            &MUFASA()
        ));
    }

    /// RFC 2617 §3.5 (with qop=auth; MD5 is the default algorithm).
    #[test]
    fn rfc_2617_example() {
        let h = b"Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
            nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
            nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
            opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let d = parse_authorization(h).unwrap();
        let creds = Credentials::from_password(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
        assert!(verify(&d, b"GET", &creds));
        // A stored HA1 without the SHA-256 value cannot verify a SHA-256 response.
        let md5_only = crate::auth::Subscribers::parse(
            "Mufasa@testrealm.host md5=939e7578ed9e3c518a452acee763bce9",
        )
        .unwrap();
        let c = md5_only.get(b"Mufasa", b"testrealm.host").unwrap();
        assert_eq!(c.ha1_hex(Algorithm::Sha256), None);
    }

    #[test]
    fn no_qop_is_refused_even_when_the_rfc_2069_response_is_right() {
        // RFC 2069 form: H(HA1:nonce:HA2) for the RFC 2617 credentials.
        use md5::{Digest, Md5};
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let ha1 = "939e7578ed9e3c518a452acee763bce9";
        let ha2 = hex(&Md5::digest(b"GET:/dir/index.html"));
        let resp = hex(&Md5::digest(format!("{ha1}:abc:{ha2}").as_bytes()));
        let h = format!(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"abc\", uri=\"/dir/index.html\", response=\"{resp}\""
        );
        let d = parse_authorization(h.as_bytes()).unwrap();
        let creds = Credentials::from_password(b"Mufasa", b"testrealm@host.com", b"Circle Of Life");
        assert!(!verify(&d, b"GET", &creds));
    }

    #[test]
    fn escaped_values_hash_unescaped() {
        // The uri `/dir/index.html` written with a needless quoted-pair.
        let h = rfc7616("MD5", "8ca523f5e9506fed4657c9700eebdbec")
            .replace("/dir/index", "/dir/\\index");
        let d = parse_authorization(h.as_bytes()).unwrap();
        assert!(d.uri.escaped);
        assert!(verify(&d, b"GET", &MUFASA()));
    }
}
