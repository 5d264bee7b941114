//! The `Authorization: Digest …` credentials parser (RFC 3261 §25 `credentials`,
//! RFC 7616 §3.4), zero-copy over the raw header value.
//!
//! ```text
//! credentials      = ("Digest" LWS digest-response) / other-response
//! digest-response  = dig-resp *(COMMA dig-resp)
//! dig-resp         = username / realm / nonce / digest-uri / dresponse / algorithm /
//!                    cnonce / opaque / message-qop / nonce-count / auth-param
//! auth-param       = auth-param-name EQUAL ( token / quoted-string )
//! ```
//!
//! Liberal where clients differ in the wild: every value may be a token or a
//! quoted-string (some clients quote `qop` and `algorithm`, some leave `nc` bare),
//! parameter names and the scheme are case-insensitive, parameters come in any order,
//! unknown ones are ignored. Strict where it matters: a repeated known parameter, an
//! unterminated quote, a value past its named limit or a missing required parameter is
//! an error, never a guess. Quoted values keep their escapes (`\"`); [`Value`] unescapes
//! on the fly, so nothing is copied.

use super::algorithm::{Algorithm, hex_digit};
use super::subscribers::{REALM_LEN_MAX, USERNAME_LEN_MAX};

/// Longest Authorization header value parsed, in bytes.
pub const AUTHORIZATION_LEN_MAX: usize = 4096;
// Every value the SIP parser accepts (a header line is at most this long, name and
// colon included) fits, so a long but well-formed Authorization is never refused here
// after the parser let it through.
const _: () = assert!(crate::sip::limits::HEADER_LINE_BYTES_MAX <= AUTHORIZATION_LEN_MAX);
/// Longest `nonce` accepted, in bytes (ours are [`NONCE_LEN`](super::NONCE_LEN); this
/// only bounds what we look at).
pub const NONCE_PARAM_LEN_MAX: usize = 128;
/// Longest `uri` accepted, in bytes.
pub const URI_LEN_MAX: usize = 1024;
/// Longest `cnonce` or `opaque`, in bytes.
pub const CNONCE_LEN_MAX: usize = 256;
/// Longest value of any other parameter, in bytes.
pub const PARAM_VALUE_LEN_MAX: usize = 1024;

/// Why credentials were not usable. `reason()` never names the user or echoes input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// A scheme other than `Digest` (RFC 4475 §3.3.7 `NoOneKnowsThisScheme`).
    UnknownScheme,
    /// Not `scheme params` / `name=value` pairs separated by commas, or a bad quote.
    Syntax,
    /// The whole value is longer than [`AUTHORIZATION_LEN_MAX`].
    TooLong,
    /// A parameter value is longer than its limit.
    ValueTooLong,
    /// A known parameter appears twice.
    DuplicateParam,
    /// `username`, `realm`, `nonce`, `uri` or `response` is missing, or `qop` is given
    /// without `cnonce` and `nc` (RFC 7616 §3.4).
    MissingParam,
    /// `nc` is not 8 hex digits.
    BadNonceCount,
    /// `response` is not hex of the algorithm's length.
    BadResponseFormat,
    /// `algorithm` names something we do not support (including `-sess`).
    UnsupportedAlgorithm,
    /// `qop` is not `auth` (e.g. `auth-int`).
    UnsupportedQop,
}

impl AuthError {
    /// A short description, safe for a log line or a reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownScheme => "unknown authorization scheme",
            Self::Syntax => "malformed credentials",
            Self::TooLong => "credentials too long",
            Self::ValueTooLong => "credential parameter too long",
            Self::DuplicateParam => "duplicate credential parameter",
            Self::MissingParam => "missing credential parameter",
            Self::BadNonceCount => "malformed nonce count",
            Self::BadResponseFormat => "malformed digest response",
            Self::UnsupportedAlgorithm => "unsupported digest algorithm",
            Self::UnsupportedQop => "unsupported qop",
        }
    }

    /// Whether a fresh challenge is the right answer (the client may retry with what we
    /// offer) rather than 400.
    pub fn wants_challenge(self) -> bool {
        matches!(
            self,
            Self::UnknownScheme | Self::UnsupportedAlgorithm | Self::UnsupportedQop
        )
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A parameter value as it appears in the header: the inside of a quoted-string with
/// its quoted-pairs still in place (`escaped` says whether there are any), or a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Value<'a> {
    /// The raw bytes (without the surrounding quotes).
    pub raw: &'a [u8],
    /// Whether `raw` contains a quoted-pair (`\x`).
    pub escaped: bool,
}

impl<'a> Value<'a> {
    /// The value itself when it needs no unescaping.
    pub fn plain(&self) -> Option<&'a [u8]> {
        (!self.escaped).then_some(self.raw)
    }

    /// Calls `f` with consecutive slices whose concatenation is the unescaped value.
    pub fn for_each_segment(&self, mut f: impl FnMut(&[u8])) {
        let mut rest = self.raw;
        if self.escaped {
            while let Some(i) = rest.iter().position(|&b| b == b'\\') {
                f(rest.get(..i).unwrap_or_default());
                // The escaped byte is literal (it may itself be a backslash).
                match rest.get(i + 1..i + 2) {
                    Some(lit) => f(lit),
                    None => return,
                }
                rest = rest.get(i + 2..).unwrap_or_default();
            }
        }
        f(rest);
    }
}

/// The `nc` parameter: its 8 hex digits as sent (they enter the hash verbatim) and
/// their value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceCount<'a> {
    /// The digits as sent.
    pub raw: &'a [u8],
    /// Their value.
    pub value: u32,
}

/// Parsed `Digest` credentials (RFC 7616 §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestResponse<'a> {
    /// `username`.
    pub username: Value<'a>,
    /// `realm`.
    pub realm: Value<'a>,
    /// `nonce`.
    pub nonce: Value<'a>,
    /// `uri` (digest-uri).
    pub uri: Value<'a>,
    /// `response`: hex of the algorithm's length (either case).
    pub response: &'a [u8],
    /// `algorithm`, MD5 when absent (RFC 7616 §3.4).
    pub algorithm: Algorithm,
    /// `cnonce` (required with `qop`).
    pub cnonce: Option<Value<'a>>,
    /// `opaque`, not interpreted.
    pub opaque: Option<Value<'a>>,
    /// `qop` as sent; when present it is `auth` (case-insensitive).
    pub qop: Option<&'a [u8]>,
    /// `nc` (required with `qop`).
    pub nc: Option<NonceCount<'a>>,
}

/// `token` characters (RFC 3261 §25).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_lws(b)) {
        i += 1;
    }
    i
}

fn span_token(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_token(b)) {
        i += 1;
    }
    i
}

/// Parses one value at `i` (after `=` and LWS): a quoted-string or a token. Returns the
/// value and the index after it.
fn parse_value(s: &[u8], i: usize) -> Result<(Value<'_>, usize), AuthError> {
    if s.get(i) == Some(&b'"') {
        let start = i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            match s.get(j) {
                None => return Err(AuthError::Syntax),
                Some(b'"') => break,
                Some(b'\\') => {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                    match s.get(j + 1) {
                        Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => {}
                        _ => return Err(AuthError::Syntax),
                    }
                    escaped = true;
                    j += 2;
                }
                // qdtext excludes controls other than LWS.
                Some(&c) if c < 0x20 && !is_lws(c) || c == 0x7f => return Err(AuthError::Syntax),
                Some(_) => j += 1,
            }
        }
        let raw = s.get(start..j).ok_or(AuthError::Syntax)?;
        Ok((Value { raw, escaped }, j + 1))
    } else {
        let end = span_token(s, i);
        if end == i {
            return Err(AuthError::Syntax);
        }
        Ok((
            Value {
                raw: s.get(i..end).ok_or(AuthError::Syntax)?,
                escaped: false,
            },
            end,
        ))
    }
}

fn set<'a>(slot: &mut Option<Value<'a>>, v: Value<'a>, max: usize) -> Result<(), AuthError> {
    if slot.is_some() {
        return Err(AuthError::DuplicateParam);
    }
    if v.raw.len() > max {
        return Err(AuthError::ValueTooLong);
    }
    *slot = Some(v);
    Ok(())
}

/// Parses an `Authorization` header value holding `Digest` credentials.
///
/// Errors: [`AuthError::UnknownScheme`] for any other scheme; the other variants for
/// malformed, over-long or unsupported `Digest` credentials. Never panics.
pub fn parse_authorization(value: &[u8]) -> Result<DigestResponse<'_>, AuthError> {
    if value.len() > AUTHORIZATION_LEN_MAX {
        return Err(AuthError::TooLong);
    }
    let s = value;
    let mut i = skip_lws(s, 0);
    let scheme_end = span_token(s, i);
    let scheme = s.get(i..scheme_end).unwrap_or_default();
    if scheme.is_empty() {
        return Err(AuthError::Syntax);
    }
    if !scheme.eq_ignore_ascii_case(b"Digest") {
        return Err(AuthError::UnknownScheme);
    }
    i = scheme_end;
    if !s.get(i).is_some_and(|&b| is_lws(b)) {
        // `Digest` must be followed by LWS and at least one parameter.
        return Err(if i == s.len() {
            AuthError::MissingParam
        } else {
            AuthError::Syntax
        });
    }

    let (mut username, mut realm, mut nonce, mut uri, mut response) =
        (None, None, None, None, None);
    let (mut algorithm, mut cnonce, mut opaque, mut qop, mut nc) = (None, None, None, None, None);
    loop {
        i = skip_lws(s, i);
        let name_end = span_token(s, i);
        let name = s.get(i..name_end).unwrap_or_default();
        if name.is_empty() {
            return Err(AuthError::Syntax);
        }
        i = skip_lws(s, name_end);
        if s.get(i) != Some(&b'=') {
            return Err(AuthError::Syntax);
        }
        i = skip_lws(s, i + 1);
        let (v, next) = parse_value(s, i)?;
        i = next;
        let lower = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if lower(b"username") {
            set(&mut username, v, USERNAME_LEN_MAX)?;
        } else if lower(b"realm") {
            set(&mut realm, v, REALM_LEN_MAX)?;
        } else if lower(b"nonce") {
            set(&mut nonce, v, NONCE_PARAM_LEN_MAX)?;
        } else if lower(b"uri") {
            set(&mut uri, v, URI_LEN_MAX)?;
        } else if lower(b"response") {
            set(&mut response, v, 2 * super::algorithm::HASH_LEN_MAX)?;
        } else if lower(b"algorithm") {
            set(&mut algorithm, v, PARAM_VALUE_LEN_MAX)?;
        } else if lower(b"cnonce") {
            set(&mut cnonce, v, CNONCE_LEN_MAX)?;
        } else if lower(b"opaque") {
            set(&mut opaque, v, CNONCE_LEN_MAX)?;
        } else if lower(b"qop") {
            set(&mut qop, v, PARAM_VALUE_LEN_MAX)?;
        } else if lower(b"nc") {
            set(&mut nc, v, PARAM_VALUE_LEN_MAX)?;
        } else if v.raw.len() > PARAM_VALUE_LEN_MAX {
            return Err(AuthError::ValueTooLong);
        }
        i = skip_lws(s, i);
        match s.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(AuthError::Syntax),
        }
    }

    let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) =
        (username, realm, nonce, uri, response)
    else {
        return Err(AuthError::MissingParam);
    };
    let algorithm = match algorithm {
        None => Algorithm::Md5,
        Some(a) => a
            .plain()
            .and_then(Algorithm::from_token)
            .ok_or(AuthError::UnsupportedAlgorithm)?,
    };
    let response = response.plain().ok_or(AuthError::BadResponseFormat)?;
    if response.len() != algorithm.hex_len() || !response.iter().all(|&b| hex_digit(b).is_some()) {
        return Err(AuthError::BadResponseFormat);
    }
    let qop = match qop {
        None => None,
        Some(q) => match q.plain() {
            Some(t) if t.eq_ignore_ascii_case(b"auth") => Some(t),
            _ => return Err(AuthError::UnsupportedQop),
        },
    };
    let nc = match nc {
        None => None,
        Some(v) => {
            let raw = v.plain().ok_or(AuthError::BadNonceCount)?;
            if raw.len() != 8 {
                return Err(AuthError::BadNonceCount);
            }
            let mut value = 0u32;
            for &b in raw {
                value = (value << 4) | u32::from(hex_digit(b).ok_or(AuthError::BadNonceCount)?);
            }
            Some(NonceCount { raw, value })
        }
    };
    if qop.is_some() && (cnonce.is_none() || nc.is_none()) {
        return Err(AuthError::MissingParam);
    }
    Ok(DigestResponse {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        cnonce,
        opaque,
        qop,
        nc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FULL: &[u8] = b"Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
        uri=\"/dir/index.html\", algorithm=SHA-256, \
        nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
        cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
        response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    fn plain(v: Value<'_>) -> &[u8] {
        v.plain().unwrap()
    }

    #[test]
    fn every_field_of_the_rfc_7616_example() {
        let d = parse_authorization(FULL).unwrap();
        assert_eq!(plain(d.username), b"Mufasa");
        assert_eq!(plain(d.realm), b"http-auth@example.org");
        assert_eq!(plain(d.uri), b"/dir/index.html");
        assert_eq!(d.algorithm, Algorithm::Sha256);
        assert_eq!(
            plain(d.nonce),
            b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
        );
        assert_eq!(
            d.nc,
            Some(NonceCount {
                raw: b"00000001",
                value: 1
            })
        );
        assert_eq!(
            plain(d.cnonce.unwrap()),
            b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
        );
        assert_eq!(d.qop, Some(&b"auth"[..]));
        assert_eq!(d.response.len(), 64);
        assert_eq!(
            plain(d.opaque.unwrap()),
            b"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
        );
    }

    #[test]
    fn order_case_quoting_and_unknown_params() {
        let v = b"dIgEsT  NC=\"0000000a\" ,QOP=\"auth\",response=\"0123456789ABCDEF0123456789abcdef\",\r\n uri=\"sip:x\",\tfoo=bar, \
                  NONCE=n, realm=r, Username=\"u\", cnonce=c, extra=\"x,y\"";
        let d = parse_authorization(v).unwrap();
        assert_eq!(d.algorithm, Algorithm::Md5, "default");
        assert_eq!(d.nc.unwrap().value, 10);
        assert_eq!(plain(d.nonce), b"n");
        assert_eq!(plain(d.username), b"u");
        assert_eq!(d.opaque, None);
    }

    #[test]
    fn escapes_are_kept_and_unescaped_on_the_fly() {
        let v = br#"Digest username="a\"b\\c\d", realm="r", nonce="n", uri="u", response="0123456789abcdef0123456789abcdef""#;
        let d = parse_authorization(v).unwrap();
        assert!(d.username.escaped);
        assert_eq!(d.username.plain(), None);
        let mut out = Vec::new();
        d.username.for_each_segment(|s| out.extend_from_slice(s));
        assert_eq!(out, b"a\"b\\cd");
        let mut out = Vec::new();
        d.realm.for_each_segment(|s| out.extend_from_slice(s));
        assert_eq!(out, b"r");
    }

    fn err(v: &[u8]) -> AuthError {
        parse_authorization(v).unwrap_err()
    }

    const R32: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn errors() {
        let base = |extra: &str| {
            format!(
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"{R32}\"{extra}"
            )
        };
        assert!(parse_authorization(base("").as_bytes()).is_ok());
        assert_eq!(
            err(base(", username=\"v\"").as_bytes()),
            AuthError::DuplicateParam
        );
        assert_eq!(err(base(", REALM=r").as_bytes()), AuthError::DuplicateParam);
        assert!(
            parse_authorization(base(", foo=1, foo=2").as_bytes()).is_ok(),
            "unknown dups ignored"
        );
        assert_eq!(
            err(b"Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""),
            AuthError::MissingParam
        );
        assert_eq!(err(b"Digest"), AuthError::MissingParam);
        assert_eq!(err(b"Digest "), AuthError::Syntax);
        assert_eq!(err(b""), AuthError::Syntax);
        assert_eq!(err(b"Digestusername=\"u\""), AuthError::UnknownScheme);
        assert_eq!(
            err(base(", qop=auth").as_bytes()),
            AuthError::MissingParam,
            "qop needs nc and cnonce"
        );
        assert_eq!(
            err(base(", qop=auth, nc=00000001").as_bytes()),
            AuthError::MissingParam
        );
        assert_eq!(
            err(base(", qop=auth-int, nc=00000001, cnonce=c").as_bytes()),
            AuthError::UnsupportedQop
        );
        assert_eq!(
            err(base(", qop=auth, nc=1, cnonce=c").as_bytes()),
            AuthError::BadNonceCount
        );
        assert_eq!(
            err(base(", qop=auth, nc=0000000g, cnonce=c").as_bytes()),
            AuthError::BadNonceCount
        );
        assert_eq!(
            err(base(", algorithm=MD5-sess").as_bytes()),
            AuthError::UnsupportedAlgorithm
        );
        assert_eq!(
            err(base(", algorithm=SHA-256").as_bytes()),
            AuthError::BadResponseFormat,
            "length"
        );
        assert_eq!(
            err(base(", username=\"unterminated").as_bytes()),
            AuthError::Syntax
        );
        assert_eq!(
            err(base(" foo=bar").as_bytes()),
            AuthError::Syntax,
            "missing comma"
        );
        assert_eq!(err(base(", =x").as_bytes()), AuthError::Syntax);
        assert_eq!(err(base(", x=").as_bytes()), AuthError::Syntax);
        assert_eq!(err(base(", x").as_bytes()), AuthError::Syntax);
        assert_eq!(err(base(",").as_bytes()), AuthError::Syntax);
        assert_eq!(
            err(base(", x=\"a\\").as_bytes()),
            AuthError::Syntax,
            "escape at end"
        );
        assert_eq!(
            err(base(", x=\"a\x01\"").as_bytes()),
            AuthError::Syntax,
            "control in quotes"
        );
        let bad_resp = format!(
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"{}\"",
            "z".repeat(32)
        );
        assert_eq!(err(bad_resp.as_bytes()), AuthError::BadResponseFormat);
        assert_eq!(
            err(b"NoOneKnowsThisScheme opaque-data=here"),
            AuthError::UnknownScheme
        );
        assert_eq!(
            err(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            AuthError::UnknownScheme
        );
    }

    #[test]
    fn huge_values_are_bounded() {
        let big = |name: &str, n: usize| {
            format!(
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"{R32}\", {name}=\"{}\"",
                "a".repeat(n)
            )
        };
        for (name, max) in [
            ("cnonce", CNONCE_LEN_MAX),
            ("opaque", CNONCE_LEN_MAX),
            ("other", PARAM_VALUE_LEN_MAX),
        ] {
            assert!(
                parse_authorization(big(name, max).as_bytes()).is_ok(),
                "{name}"
            );
            assert_eq!(
                err(big(name, max + 1).as_bytes()),
                AuthError::ValueTooLong,
                "{name}"
            );
        }
        let user = format!("Digest username=\"{}\"", "u".repeat(USERNAME_LEN_MAX + 1));
        assert_eq!(err(user.as_bytes()), AuthError::ValueTooLong);
        let huge = format!("Digest username=\"{}\"", "u".repeat(AUTHORIZATION_LEN_MAX));
        assert_eq!(err(huge.as_bytes()), AuthError::TooLong);
    }

    #[test]
    fn reasons_never_echo_input() {
        for e in [
            AuthError::Syntax,
            AuthError::UnknownScheme,
            AuthError::MissingParam,
        ] {
            assert!(!e.reason().is_empty());
            assert_eq!(e.to_string(), e.reason());
        }
        assert!(AuthError::UnknownScheme.wants_challenge());
        assert!(!AuthError::Syntax.wants_challenge());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_authorization(&bytes);
        }

        #[test]
        fn near_valid_garbage_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("Digest ".to_string()), Just("username=".to_string()), Just("\"".to_string()),
                    Just("\\".to_string()), Just(",".to_string()), Just(" ".to_string()), Just("=".to_string()),
                    Just("nc=00000001".to_string()), Just("qop=auth".to_string()), Just("response=".to_string()),
                    "[a-z0-9]{0,8}",
                ],
                0..40,
            )
        ) {
            let s = parts.concat();
            if let Ok(d) = parse_authorization(s.as_bytes()) {
                let mut n = 0;
                d.username.for_each_segment(|s| n += s.len());
                prop_assert!(n <= d.username.raw.len());
            }
        }
    }
}
