//! The client side of SIP digest authentication (RFC 3261 §22.2, RFC 7616, RFC 8760):
//! read a `WWW-Authenticate` challenge, answer it with an `Authorization` line.
//!
//! Why in the loadgen: a carrier registrar spends most of an authenticated REGISTER's cost
//! on the 401 round trip and the hashes, so measuring it needs a client that does both at
//! line rate. Everything here works on borrowed slices and writes into stack or
//! caller-owned buffers: no allocation per request.
//!
//! ```text
//! HA1      = H(username ":" realm ":" password)
//! HA2      = H(method ":" uri)
//! response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)      (qop=auth only)
//! ```

use md5::Md5;
use sha2::{Digest, Sha256};

/// Longest digest in lower-case hex (SHA-256: 32 bytes).
pub(crate) const HASH_HEX_BYTES_MAX: usize = 64;
/// Longest `Authorization: …\r\n` line we write; a longer one (absurd realm or nonce) is
/// not written and the exchange fails instead of overflowing.
pub(crate) const AUTH_LINE_BYTES_MAX: usize = 768;

/// A digest algorithm the loadgen can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// `--auth-algorithm` value: `md5` or `sha256` (also the RFC names).
    pub(crate) fn from_flag(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Some(Self::Md5),
            "sha256" | "sha-256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The `algorithm=` token (RFC 8760 §2.1); absent means MD5 (RFC 2617 §3.2.1).
    fn from_token(t: &[u8]) -> Option<Self> {
        if t.eq_ignore_ascii_case(b"MD5") {
            Some(Self::Md5)
        } else if t.eq_ignore_ascii_case(b"SHA-256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }
}

/// One `Digest` challenge, borrowed from the response. Quoted values are given without
/// their quotes; a value with a quoted-pair (`\"`) is refused rather than unescaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Challenge<'a> {
    pub(crate) algorithm: Algorithm,
    pub(crate) realm: &'a [u8],
    pub(crate) nonce: &'a [u8],
    pub(crate) opaque: Option<&'a [u8]>,
    /// `stale=true`: the credentials were right, only the nonce was old (RFC 7616 §3.3).
    pub(crate) stale: bool,
}

/// Parses one `WWW-Authenticate` value. `None` unless it is a Digest challenge with a
/// realm, a nonce, an algorithm we know and `qop` offering `auth` (we never answer the
/// RFC 2069 form: it has no nonce count).
pub(crate) fn parse_challenge(value: &[u8]) -> Option<Challenge<'_>> {
    let value = value.trim_ascii();
    let (scheme, mut rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"Digest") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let (mut realm, mut nonce, mut opaque) = (None, None, None);
    let mut algorithm = Some(Algorithm::Md5);
    let mut qop_auth = false;
    let mut stale = false;
    while let Some((name, val, next)) = next_param(rest) {
        rest = next;
        match name.to_ascii_lowercase().as_slice() {
            b"realm" => realm = Some(val),
            b"nonce" => nonce = Some(val),
            b"opaque" => opaque = Some(val),
            b"algorithm" => algorithm = Algorithm::from_token(val),
            b"qop" => {
                qop_auth = val
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"auth"));
            }
            b"stale" => stale = val.eq_ignore_ascii_case(b"true"),
            _ => {}
        }
    }
    if !qop_auth {
        return None;
    }
    Some(Challenge {
        algorithm: algorithm?,
        realm: realm?,
        nonce: nonce.filter(|n| !n.is_empty())?,
        opaque,
        stale,
    })
}

/// The next `name=value` of a comma-separated auth-param list: (name, value without
/// quotes, rest). `None` at the end or on a malformed or escaped parameter.
fn next_param(s: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let s = s.trim_ascii_start();
    let s = s.strip_prefix(b",").unwrap_or(s).trim_ascii_start();
    let eq = memchr::memchr(b'=', s)?;
    let name = s.get(..eq)?.trim_ascii();
    let after = s.get(eq + 1..)?.trim_ascii_start();
    if let Some(q) = after.strip_prefix(b"\"") {
        let end = memchr::memchr(b'"', q)?;
        let val = q.get(..end)?;
        if val.contains(&b'\\') {
            return None;
        }
        Some((name, val, q.get(end + 1..)?))
    } else {
        let end = memchr::memchr(b',', after).unwrap_or(after.len());
        Some((name, after.get(..end)?.trim_ascii(), after.get(end..)?))
    }
}

/// Picks the challenge to answer among a 401's `WWW-Authenticate` values: the first for
/// `preferred`, else the first we can answer at all.
pub(crate) fn pick<'a>(values: &[&'a [u8]], preferred: Algorithm) -> Option<Challenge<'a>> {
    let mut fallback = None;
    for c in values.iter().filter_map(|v| parse_challenge(v)) {
        if c.algorithm == preferred {
            return Some(c);
        }
        fallback = fallback.or(Some(c));
    }
    fallback
}

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::Md5 => Self::Md5(Md5::new()),
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    fn joined(a: Algorithm, parts: &[&[u8]], out: &mut [u8; HASH_HEX_BYTES_MAX]) -> usize {
        let mut h = Self::new(a);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h.update(b":");
            }
            h.update(p);
        }
        h.finish_hex(out)
    }

    fn update(&mut self, d: &[u8]) {
        match self {
            Self::Md5(h) => h.update(d),
            Self::Sha256(h) => h.update(d),
        }
    }

    fn finish_hex(self, out: &mut [u8; HASH_HEX_BYTES_MAX]) -> usize {
        match self {
            Self::Md5(h) => hex_into(&h.finalize(), out),
            Self::Sha256(h) => hex_into(&h.finalize(), out),
        }
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    for (&b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
        n += 2;
    }
    n
}

/// What one `Authorization` answer is made of, besides the challenge.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer<'a> {
    pub(crate) username: &'a [u8],
    pub(crate) password: &'a [u8],
    pub(crate) method: &'a [u8],
    /// The Request-URI, exactly as on the request line (RFC 3261 §22.4 `digest-uri`).
    pub(crate) uri: &'a [u8],
    /// Nonce count, written as 8 hex digits.
    pub(crate) nc: u32,
    pub(crate) cnonce: &'a [u8],
}

/// The `response` value for `a` answering `c`, as lower-case hex in `out`; returns its length.
pub(crate) fn response_hex(
    c: &Challenge<'_>,
    a: &Answer<'_>,
    out: &mut [u8; HASH_HEX_BYTES_MAX],
) -> usize {
    let alg = c.algorithm;
    let mut ha1 = [0u8; HASH_HEX_BYTES_MAX];
    let n1 = Hasher::joined(alg, &[a.username, c.realm, a.password], &mut ha1);
    let mut ha2 = [0u8; HASH_HEX_BYTES_MAX];
    let n2 = Hasher::joined(alg, &[a.method, a.uri], &mut ha2);
    let nc = nc_hex(a.nc);
    Hasher::joined(
        alg,
        &[&ha1[..n1], c.nonce, &nc, a.cnonce, b"auth", &ha2[..n2]],
        out,
    )
}

fn nc_hex(nc: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    hex_into(&nc.to_be_bytes(), &mut out);
    out
}

/// Writes the full `Authorization: Digest …\r\n` line answering `c` into `out`; returns its
/// length, or `None` when it does not fit.
pub(crate) fn write_authorization(
    c: &Challenge<'_>,
    a: &Answer<'_>,
    out: &mut [u8],
) -> Option<usize> {
    let mut resp = [0u8; HASH_HEX_BYTES_MAX];
    let rn = response_hex(c, a, &mut resp);
    let nc = nc_hex(a.nc);
    let mut len = 0;
    let mut put = |b: &[u8]| -> Option<()> {
        out.get_mut(len..len + b.len())?.copy_from_slice(b);
        len += b.len();
        Some(())
    };
    put(b"Authorization: Digest username=\"")?;
    put(a.username)?;
    put(b"\", realm=\"")?;
    put(c.realm)?;
    put(b"\", nonce=\"")?;
    put(c.nonce)?;
    put(b"\", uri=\"")?;
    put(a.uri)?;
    put(b"\", response=\"")?;
    put(&resp[..rn])?;
    put(b"\", algorithm=")?;
    put(c.algorithm.name().as_bytes())?;
    put(b", cnonce=\"")?;
    put(a.cnonce)?;
    put(b"\", nc=")?;
    put(&nc)?;
    put(b", qop=auth")?;
    if let Some(o) = c.opaque {
        put(b", opaque=\"")?;
        put(o)?;
        put(b"\"")?;
    }
    put(b"\r\n")?;
    Some(len)
}

/// Longest nonce a [`Cached`] challenge keeps (sipreg's are 48 characters).
pub(crate) const NONCE_BYTES_MAX: usize = 64;
/// Longest opaque a [`Cached`] challenge keeps (sipreg's are 16 characters).
pub(crate) const OPAQUE_BYTES_MAX: usize = 64;
/// Longest realm kept (sipreg's `REALM_LEN_MAX`).
pub(crate) const REALM_BYTES_MAX: usize = 255;

/// One user's last challenge and nonce count, in fixed arrays (about 140 bytes per user,
/// no heap): the state a phone keeps between REGISTERs (RFC 7616 §3.4: a nonce may be
/// reused with an increasing nc). The realm is kept once per worker: every user of a run
/// has the same domain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cached {
    nonce: [u8; NONCE_BYTES_MAX],
    opaque: [u8; OPAQUE_BYTES_MAX],
    nonce_len: u8,
    /// `u8::MAX` when the challenge had no opaque.
    opaque_len: u8,
    algorithm: Algorithm,
    /// Last nonce count sent with this nonce; 0 before the first.
    pub(crate) nc: u32,
    /// Whether a challenge is held.
    pub(crate) valid: bool,
}

impl Default for Cached {
    fn default() -> Self {
        Self {
            nonce: [0; NONCE_BYTES_MAX],
            opaque: [0; OPAQUE_BYTES_MAX],
            nonce_len: 0,
            opaque_len: u8::MAX,
            algorithm: Algorithm::Md5,
            nc: 0,
            valid: false,
        }
    }
}

impl Cached {
    /// Keeps `c` (nc back to 0); false, and nothing kept, when a field is too long.
    pub(crate) fn store(&mut self, c: &Challenge<'_>) -> bool {
        self.valid = false;
        let Some(nonce) = self.nonce.get_mut(..c.nonce.len()) else {
            return false;
        };
        nonce.copy_from_slice(c.nonce);
        self.nonce_len = c.nonce.len() as u8;
        match c.opaque {
            None => self.opaque_len = u8::MAX,
            Some(o) => {
                let Some(dst) = self.opaque.get_mut(..o.len()) else {
                    return false;
                };
                dst.copy_from_slice(o);
                self.opaque_len = o.len() as u8;
            }
        }
        self.algorithm = c.algorithm;
        self.nc = 0;
        self.valid = true;
        true
    }

    /// The kept challenge, with `realm` (the worker's).
    pub(crate) fn challenge<'a>(&'a self, realm: &'a [u8]) -> Challenge<'a> {
        Challenge {
            algorithm: self.algorithm,
            realm,
            nonce: self
                .nonce
                .get(..usize::from(self.nonce_len))
                .unwrap_or_default(),
            opaque: self.opaque.get(..usize::from(self.opaque_len)),
            stale: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1.
    const MUFASA: Answer<'static> = Answer {
        username: b"Mufasa",
        password: b"Circle of Life",
        method: b"GET",
        uri: b"/dir/index.html",
        nc: 1,
        cnonce: b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    };

    fn rfc_challenge(algorithm: Algorithm) -> Challenge<'static> {
        Challenge {
            algorithm,
            realm: b"http-auth@example.org",
            nonce: b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            opaque: Some(b"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"),
            stale: false,
        }
    }

    fn response(alg: Algorithm) -> String {
        let mut out = [0u8; HASH_HEX_BYTES_MAX];
        let n = response_hex(&rfc_challenge(alg), &MUFASA, &mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn rfc_7616_example_responses() {
        assert_eq!(
            response(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(response(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc_7616_challenge_parses() {
        let v = b"Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        assert_eq!(parse_challenge(v), Some(rfc_challenge(Algorithm::Sha256)));
    }

    const SIPREG_SHA: &[u8] = b"Digest realm=\"example.com\", nonce=\"0123456789abcdef0123456789abcdef0123456789abcdef\", opaque=\"00aa11bb\", algorithm=SHA-256, qop=\"auth\"";
    const SIPREG_MD5: &[u8] = b"Digest realm=\"example.com\", nonce=\"0123456789abcdef0123456789abcdef0123456789abcdef\", opaque=\"00aa11bb\", algorithm=MD5, qop=\"auth\", stale=true";

    #[test]
    fn both_algorithms_are_offered_and_the_preferred_one_is_picked() {
        let both = [SIPREG_SHA, SIPREG_MD5];
        let c = pick(&both, Algorithm::Sha256).unwrap();
        assert_eq!(
            (c.algorithm, c.realm, c.opaque, c.stale),
            (
                Algorithm::Sha256,
                &b"example.com"[..],
                Some(&b"00aa11bb"[..]),
                false
            )
        );
        assert_eq!(c.nonce.len(), 48);
        let c = pick(&both, Algorithm::Md5).unwrap();
        assert_eq!((c.algorithm, c.stale), (Algorithm::Md5, true));
        // Only MD5 offered: fall back to it.
        assert_eq!(
            pick(&[SIPREG_MD5], Algorithm::Sha256).unwrap().algorithm,
            Algorithm::Md5
        );
    }

    #[test]
    fn unanswerable_challenges_are_refused() {
        for v in [
            &b"Basic realm=\"x\""[..],
            b"Digest realm=\"x\", nonce=\"n\"", // no qop: RFC 2069
            b"Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"",
            b"Digest realm=\"x\", nonce=\"n\", qop=\"auth\", algorithm=SHA-512-256",
            b"Digest realm=\"x\", nonce=\"n\", qop=\"auth\", algorithm=MD5-sess",
            b"Digest nonce=\"n\", qop=\"auth\"",
            b"Digest realm=\"x\", qop=\"auth\"",
            b"Digest realm=\"a\\\"b\", nonce=\"n\", qop=\"auth\"",
            b"Digest realm=\"x, nonce=\"n",
            b"Digest",
            b"",
        ] {
            assert_eq!(parse_challenge(v), None, "{}", String::from_utf8_lossy(v));
        }
        // Absent algorithm is MD5; unquoted qop is tolerated.
        let c = parse_challenge(b"Digest realm=x, nonce=n, qop=auth").unwrap();
        assert_eq!(
            (c.algorithm, c.realm, c.nonce),
            (Algorithm::Md5, &b"x"[..], &b"n"[..])
        );
        assert_eq!(pick(&[b"Basic realm=\"x\""], Algorithm::Md5), None);
    }

    #[test]
    fn authorization_line_has_every_field_and_refuses_a_small_buffer() {
        let c = rfc_challenge(Algorithm::Md5);
        let mut out = [0u8; AUTH_LINE_BYTES_MAX];
        let n = write_authorization(&c, &MUFASA, &mut out).unwrap();
        let line = std::str::from_utf8(&out[..n]).unwrap();
        assert_eq!(
            line,
            "Authorization: Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", uri=\"/dir/index.html\", \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", algorithm=MD5, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", nc=00000001, qop=auth, \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"\r\n"
        );
        assert_eq!(write_authorization(&c, &MUFASA, &mut out[..n - 1]), None);
        let a = Answer { nc: 0x1a, ..MUFASA };
        let n = write_authorization(&c, &a, &mut out).unwrap();
        assert!(
            std::str::from_utf8(&out[..n])
                .unwrap()
                .contains("nc=0000001a,")
        );
    }

    #[test]
    fn cached_challenge_round_trips_and_refuses_long_nonces() {
        let c = parse_challenge(SIPREG_SHA).unwrap();
        let mut k = Cached::default();
        assert!(k.store(&c) && k.valid && k.nc == 0);
        assert_eq!(k.challenge(b"example.com"), c);
        let no_opaque = Challenge { opaque: None, ..c };
        assert!(k.store(&no_opaque));
        assert_eq!(k.challenge(b"example.com").opaque, None);
        let long = [b'n'; NONCE_BYTES_MAX + 1];
        assert!(!k.store(&Challenge { nonce: &long, ..c }));
        assert!(!k.valid);
    }

    /// What sipreg would answer: its own challenges, our Authorization back into its
    /// `Authenticator`, nonce reuse with a growing nc, and a replayed nc refused.
    #[test]
    fn sipreg_accepts_our_authorization() {
        use sipreg::auth::{
            self as srv, AuthOutcome, Authenticator, Challenges, NonceKey, Subscribers,
        };
        use std::sync::Arc;

        let subs = Subscribers::parse("user7@example.com secret\n").unwrap();
        let mut auth = Authenticator::new(
            Arc::new(subs),
            NonceKey::new(&[9; 32]),
            srv::ALGORITHMS_DEFAULT.to_vec(),
            srv::NONCE_LIFETIME_DEFAULT_MS,
        );
        let now_ms = 1_000_000;
        let mut ch = Challenges::new();
        auth.write_challenges(now_ms, b"example.com", false, &mut ch);
        let mut msg = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nCSeq: 1 REGISTER\r\n".to_vec();
        for v in ch.iter() {
            msg.extend_from_slice(b"WWW-Authenticate: ");
            msg.extend_from_slice(v);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let r = crate::response::parse(&msg).unwrap();
        assert_eq!(r.challenges().len(), 2);

        // Both challenges share one nonce, and sipreg counts nc per nonce: MD5 goes on
        // from where SHA-256 stopped.
        for (preferred, ncs) in [(Algorithm::Sha256, 1..=3), (Algorithm::Md5, 4..=5)] {
            let c = pick(r.challenges(), preferred).unwrap();
            assert_eq!(c.algorithm, preferred);
            let mut kept = Cached::default();
            assert!(kept.store(&c));
            let mut check = |nc: u32| {
                let a = Answer {
                    username: b"user7",
                    password: b"secret",
                    method: b"REGISTER",
                    uri: b"sip:example.com",
                    nc,
                    cnonce: b"0a4f113b",
                };
                let mut out = [0u8; AUTH_LINE_BYTES_MAX];
                let n = write_authorization(&kept.challenge(b"example.com"), &a, &mut out).unwrap();
                let value = out[..n]
                    .strip_prefix(b"Authorization: ")
                    .unwrap()
                    .strip_suffix(b"\r\n")
                    .unwrap()
                    .to_vec();
                auth.check(now_ms + 10, b"REGISTER", Some(&value), b"example.com")
                    == (AuthOutcome::Ok { user: b"user7" })
            };
            let last = *ncs.end();
            for nc in ncs {
                assert!(check(nc), "{preferred:?} nc {nc} accepted");
            }
            assert!(!check(last), "{preferred:?}: a replayed nc is refused");
        }
        // A wrong password is refused.
        let c = pick(r.challenges(), Algorithm::Sha256).unwrap();
        let a = Answer {
            username: b"user7",
            password: b"Secret",
            method: b"REGISTER",
            uri: b"sip:example.com",
            nc: 9,
            cnonce: b"x",
        };
        let mut out = [0u8; AUTH_LINE_BYTES_MAX];
        let n = write_authorization(&c, &a, &mut out).unwrap();
        let value = &out[b"Authorization: ".len()..n - 2];
        assert!(matches!(
            auth.check(now_ms, b"REGISTER", Some(value), b"example.com"),
            AuthOutcome::Challenge { .. }
        ));
    }
}
