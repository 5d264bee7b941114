//! SIP and SIPS URIs (RFC 3261 §19.1), parsed in place, plus equivalence and AOR keys.
//!
//! A registrar needs three things from a URI: its parts (to validate the AOR and the
//! contact), the §19.1.4 equivalence rule (to match a refreshed contact against a stored
//! binding), and a canonical address-of-record key (§10.3 step 5: parameters dropped,
//! escapes undone). The parts stay borrowed and escaped; unescaping happens only while
//! comparing or writing a key, so parsing never allocates.
//!
//! URIs of other schemes (`tel:`, `isbn:`, `name:`) parse as [`Scheme::Other`] with an
//! opaque rest, so the registrar can answer them with a precise status instead of a
//! generic parse failure.

use super::chars::{
    HOST, IPV6, ONES, OPAQUE, PASSWORD, SCHEME, URI_HEADER, URI_PARAM, URI_PARAM_PLAIN, USER,
    USER_PLAIN, all_in, find, hex_val, port_at, span, valid_escaped,
};
use super::error::UriError;

/// The scheme of a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme<'a> {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// Any other scheme, as written (without the colon).
    Other(&'a [u8]),
}

/// A URI borrowed from the message. Parts keep their `%` escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Uri<'a> {
    /// The scheme.
    pub scheme: Scheme<'a>,
    /// The user part, still escaped; `None` when there is no `@`.
    pub user: Option<&'a [u8]>,
    /// The password after `user:`, still escaped (may be empty).
    pub password: Option<&'a [u8]>,
    /// The host; an IPv6 reference keeps its brackets. Empty for [`Scheme::Other`].
    pub host: &'a [u8],
    /// The explicit port.
    pub port: Option<u16>,
    /// Raw URI parameters: after the first `;` of the host part, before `?`.
    pub params: &'a [u8],
    /// Raw URI headers: after `?`.
    pub headers: &'a [u8],
    /// The whole URI as parsed: its exact bytes as written (inside the `<>` of a
    /// name-addr).
    pub raw: &'a [u8],
}

impl<'a> Uri<'a> {
    /// A placeholder value (empty `sip:` URI): what a request with a bad Request-URI
    /// carries, and the base that other values fill in with `..Uri::EMPTY`.
    pub const EMPTY: Self = Self {
        scheme: Scheme::Sip,
        user: None,
        password: None,
        host: b"",
        port: None,
        params: b"",
        headers: b"",
        raw: b"",
    };

    /// The value of URI parameter `name` (ASCII case-insensitive): `None` when absent,
    /// `Some(None)` for a parameter without `=value`, `Some(Some(v))` otherwise (raw).
    /// The first occurrence wins.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The URI parameters in order, as raw `(name, value)` pairs.
    pub fn params(&self) -> UriParams<'a> {
        UriParams {
            rest: self.params,
            sep: b';',
        }
    }

    /// The URI headers in order, as raw `(name, value)` pairs.
    pub fn headers(&self) -> UriParams<'a> {
        UriParams {
            rest: self.headers,
            sep: b'&',
        }
    }

    /// For [`Scheme::Other`]: everything after `scheme:`. Empty for SIP/SIPS.
    pub fn opaque(&self) -> &'a [u8] {
        match self.scheme {
            Scheme::Other(s) => self.raw.get(s.len() + 1..).unwrap_or_default(),
            Scheme::Sip | Scheme::Sips => b"",
        }
    }

    /// Prints the URI from its parts (`scheme:[user[:password]@]host[:port][;params][?headers]`).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self.scheme {
            Scheme::Sip => out.extend_from_slice(b"sip:"),
            Scheme::Sips => out.extend_from_slice(b"sips:"),
            Scheme::Other(s) => {
                out.extend_from_slice(s);
                out.push(b':');
                out.extend_from_slice(self.opaque());
                return;
            }
        }
        if let Some(user) = self.user {
            out.extend_from_slice(user);
            if let Some(pw) = self.password {
                out.push(b':');
                out.extend_from_slice(pw);
            }
            out.push(b'@');
        }
        out.extend_from_slice(self.host);
        if let Some(port) = self.port {
            out.push(b':');
            super::write::push_u32(out, u32::from(port));
        }
        if !self.params.is_empty() {
            out.push(b';');
            out.extend_from_slice(self.params);
        }
        if !self.headers.is_empty() {
            out.push(b'?');
            out.extend_from_slice(self.headers);
        }
    }
}

/// Iterator over `;`-separated URI parameters or `&`-separated URI headers.
#[derive(Clone, Debug)]
pub struct UriParams<'a> {
    rest: &'a [u8],
    sep: u8,
}

impl<'a> Iterator for UriParams<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = find(self.sep, self.rest).unwrap_or(self.rest.len());
            let item = self.rest.get(..end).unwrap_or_default();
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if item.is_empty() {
                continue; // `;;` carries nothing.
            }
            return Some(match find(b'=', item) {
                Some(eq) => (
                    item.get(..eq).unwrap_or_default(),
                    Some(item.get(eq + 1..).unwrap_or_default()),
                ),
                None => (item, None),
            });
        }
    }
}

/// The userinfo and the host part of `rest` (after `scheme:`), general case, given the
/// index of its first `@`: `userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"`.
/// No other part may hold a bare `@`, so the first one ends the userinfo.
#[allow(clippy::type_complexity)]
fn general_userinfo(
    rest: &[u8],
    at: usize,
) -> Result<(Option<&[u8]>, Option<&[u8]>, &[u8]), UriError> {
    let info = rest.get(..at).unwrap_or_default();
    let (user, password) = match find(b':', info) {
        Some(c) => (
            info.get(..c).unwrap_or_default(),
            Some(info.get(c + 1..).unwrap_or_default()),
        ),
        None => (info, None),
    };
    if user.is_empty() || !valid_escaped(user, &USER) {
        return Err(UriError::UserInfo);
    }
    if let Some(pw) = password {
        if !valid_escaped(pw, &PASSWORD) {
            return Err(UriError::UserInfo);
        }
    }
    Ok((Some(user), password, rest.get(at + 1..).unwrap_or_default()))
}

/// `sip:` or `sips:` at `start`, any case: the scheme and the index after its colon.
/// Compared as one word with the letters' case bit forced (`:` is compared exactly).
#[inline(always)]
fn sip_scheme_at(s: &[u8], start: usize) -> Option<(Scheme<'static>, usize)> {
    let head = s
        .get(start..start.wrapping_add(4))
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
        .map_or(0, u32::from_le_bytes);
    if head | 0x0020_2020 == u32::from_le_bytes(*b"sip:") {
        Some((Scheme::Sip, start + 4))
    } else if head | 0x2020_2020 == u32::from_le_bytes(*b"sips") && s.get(start + 4) == Some(&b':')
    {
        Some((Scheme::Sips, start + 5))
    } else {
        None
    }
}

/// The common shape of a bracketed SIP URI, `sip:[user@]host[:port][;params]` followed by
/// `>`, parsed in one pass from `start` (just after the `<`): `Some((uri, index of the >))`.
/// `None` when the URI has another shape (a password, an IPv6 host, headers, escapes,
/// another scheme) or is malformed; the caller then cuts at the first `>` and calls
/// [`parse_uri`], which gives the same answer as this function wherever it answers (none
/// of the bytes accepted here is a `>`).
#[inline(always)]
pub(crate) fn sip_uri_before_bracket(s: &[u8], start: usize) -> Option<(Uri<'_>, usize)> {
    let (scheme, rest) = sip_scheme_at(s, start)?;
    let user_end = span(s, rest, &USER_PLAIN);
    let (user, host_start) = match s.get(user_end) {
        Some(b'@') if user_end > rest => (s.get(rest..user_end), user_end + 1),
        // No `@` so far. None may follow either: `@` is not among the bytes accepted
        // below, so a `user:password@` ends in `None` rather than in a wrong answer.
        Some(b'>' | b':') => (None, rest),
        _ => return None,
    };
    let host_end = span(s, host_start, &HOST);
    if host_end == host_start {
        return None;
    }
    let mut i = host_end;
    let mut port = None;
    if s.get(i) == Some(&b':') {
        let (p, end) = port_at(s, i + 1);
        port = Some(p?);
        i = end;
    }
    let mut params: &[u8] = b"";
    if s.get(i) == Some(&b';') {
        let end = span(s, i + 1, &URI_PARAM_PLAIN);
        params = s.get(i + 1..end)?;
        i = end;
    }
    if s.get(i) != Some(&b'>') {
        return None;
    }
    Some((
        Uri {
            scheme,
            user,
            password: None,
            host: s.get(host_start..host_end)?,
            port,
            params,
            headers: b"",
            raw: s.get(start..i)?,
        },
        i,
    ))
}

/// Parses a URI (RFC 3261 §19.1.1 for `sip:`/`sips:`, an opaque `absoluteURI` for the rest).
pub fn parse_uri(s: &[u8]) -> Result<Uri<'_>, UriError> {
    // Fast path for the schemes a registrar sees: a `sip:` or `sips:` prefix is exactly
    // what the general scheme check below would accept as Sip or Sips.
    let (scheme, rest) = if let Some((scheme, after)) = sip_scheme_at(s, 0) {
        (scheme, s.get(after..).unwrap_or_default())
    } else {
        let colon = find(b':', s).ok_or(UriError::Scheme)?;
        let scheme = s.get(..colon).unwrap_or_default();
        let rest = s.get(colon + 1..).unwrap_or_default();
        let first_alpha = scheme.first().is_some_and(u8::is_ascii_alphabetic);
        if !first_alpha || !all_in(scheme, &SCHEME) {
            return Err(UriError::Scheme);
        }
        if scheme.eq_ignore_ascii_case(b"sip") {
            (Scheme::Sip, rest)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            (Scheme::Sips, rest)
        } else {
            if rest.is_empty() || !all_in(rest, &OPAQUE) {
                return Err(UriError::Trailing);
            }
            return Ok(Uri {
                scheme: Scheme::Other(scheme),
                raw: s,
                ..Uri::EMPTY
            });
        }
    };

    // Fast path: a rest of host characters only (a Request-URI such as
    // `sip:registrar.example.com`) is a bare host, or, when an `@` ends them, a plain user
    // (`HOST` is a subset of `USER_PLAIN` and holds no `@`, so that `@` is the first
    // one). [`sip_parts`] gives the same answers on both shapes.
    let h = span(rest, 0, &HOST);
    match rest.get(h) {
        None if h > 0 => {
            return Ok(Uri {
                scheme,
                host: rest,
                raw: s,
                ..Uri::EMPTY
            });
        }
        Some(b'@') if h > 0 => {
            let hostpart = rest.get(h + 1..).unwrap_or_default();
            return sip_host_part(s, scheme, rest.get(..h), None, hostpart);
        }
        _ => {}
    }
    sip_parts(s, scheme, rest)
}

/// The general grammar of a SIP or SIPS URI `s` after its scheme (`rest`).
fn sip_parts<'a>(s: &'a [u8], scheme: Scheme<'a>, rest: &'a [u8]) -> Result<Uri<'a>, UriError> {
    // `userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"`: no other part
    // may hold a bare `@`, so the first one ends the userinfo.
    // Fast path: a user part of plain `user` characters (no escape, no password) ended by
    // `@`, or a rest without any `@` at all (`USER_PLAIN` excludes `@`). Anything else
    // takes the general path below, which gives the same answers on these two cases.
    // The `@` is looked for first, a word at a time: without one (a URI such as
    // `sip:registrar.example.com:5060` or `sip:proxy.example.com;lr`) there is no
    // userinfo and nothing to classify.
    let (user, password, hostpart) = match find(b'@', rest) {
        None => (None, None, rest),
        Some(at) if at > 0 && span(rest, 0, &USER_PLAIN) == at => {
            (rest.get(..at), None, rest.get(at + 1..).unwrap_or_default())
        }
        Some(at) => general_userinfo(rest, at)?,
    };
    sip_host_part(s, scheme, user, password, hostpart)
}

/// The rest of a SIP or SIPS URI `s` after its userinfo:
/// `hostport uri-parameters [ headers ]`.
fn sip_host_part<'a>(
    s: &'a [u8],
    scheme: Scheme<'a>,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    hostpart: &'a [u8],
) -> Result<Uri<'a>, UriError> {
    let host_end = if hostpart.first() == Some(&b'[') {
        let close = find(b']', hostpart).ok_or(UriError::Host)?;
        let inner = hostpart.get(1..close).unwrap_or_default();
        if inner.is_empty() || !all_in(inner, &IPV6) {
            return Err(UriError::Host);
        }
        close + 1
    } else {
        span(hostpart, 0, &HOST)
    };
    if host_end == 0 {
        return Err(UriError::Host);
    }
    let host = hostpart.get(..host_end).unwrap_or_default();
    let mut i = host_end;

    let mut port = None;
    if hostpart.get(i) == Some(&b':') {
        let (p, end) = port_at(hostpart, i + 1);
        port = Some(p.ok_or(UriError::Port)?);
        i = end;
    }

    let mut params: &[u8] = b"";
    if hostpart.get(i) == Some(&b';') {
        let tail = hostpart.get(i + 1..).unwrap_or_default();
        // Fast path: plain parameter characters up to the end or a `?` (neither is in
        // `URI_PARAM_PLAIN`); an escape or anything else takes the checked path.
        let plain = span(tail, 0, &URI_PARAM_PLAIN);
        let end = match tail.get(plain) {
            None | Some(b'?') => plain,
            Some(_) => {
                let end = find(b'?', tail).unwrap_or(tail.len());
                if !valid_escaped(tail.get(..end).unwrap_or_default(), &URI_PARAM) {
                    return Err(UriError::Params);
                }
                end
            }
        };
        params = tail.get(..end).unwrap_or_default();
        i += 1 + end;
    }

    let mut headers: &[u8] = b"";
    if hostpart.get(i) == Some(&b'?') {
        headers = hostpart.get(i + 1..).unwrap_or_default();
        if !valid_escaped(headers, &URI_HEADER) {
            return Err(UriError::Headers);
        }
        i = hostpart.len();
    }

    if i != hostpart.len() {
        return Err(UriError::Trailing);
    }
    Ok(Uri {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
        raw: s,
    })
}

/// One unit of an escaped string after RFC 3261 §19.1.4 normalisation: an escape of an
/// RFC 2396 `reserved` character stays distinct from the bare character; any other
/// escape equals the byte it encodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Byte(u8),
    ReservedEscape(u8),
}

/// RFC 2396 §2.2: `reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","`.
fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
    )
}

/// Decodes `%HH` escapes one at a time (bytes after a broken escape pass through).
struct Units<'a> {
    s: &'a [u8],
    i: usize,
    fold_case: bool,
}

impl Iterator for Units<'_> {
    type Item = Unit;

    fn next(&mut self) -> Option<Unit> {
        let b = *self.s.get(self.i)?;
        if b == b'%' {
            let hi = self.s.get(self.i + 1).and_then(|&h| hex_val(h));
            let lo = self.s.get(self.i + 2).and_then(|&l| hex_val(l));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                self.i += 3;
                let v = hi << 4 | lo;
                return Some(if is_reserved(v) {
                    Unit::ReservedEscape(v)
                } else {
                    Unit::Byte(self.case(v))
                });
            }
        }
        self.i += 1;
        Some(Unit::Byte(self.case(b)))
    }
}

impl Units<'_> {
    fn case(&self, b: u8) -> u8 {
        if self.fold_case {
            b.to_ascii_lowercase()
        } else {
            b
        }
    }
}

/// Compares two escaped strings as §19.1.4 asks (escapes of unreserved bytes equal the
/// bytes), optionally ignoring ASCII case.
fn eq_escaped(a: &[u8], b: &[u8], fold_case: bool) -> bool {
    if a == b {
        return true;
    }
    Units {
        s: a,
        i: 0,
        fold_case,
    }
    .eq(Units {
        s: b,
        i: 0,
        fold_case,
    })
}

fn eq_opt_escaped(a: Option<&[u8]>, b: Option<&[u8]>, fold_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => eq_escaped(a, b, fold_case),
        _ => false,
    }
}

/// The first parameter whose name equals `name` (escape-aware, case-insensitive).
fn find_param<'a>(params: UriParams<'a>, name: &[u8]) -> Option<Option<&'a [u8]>> {
    params
        .into_iter()
        .find(|(n, _)| eq_escaped(n, name, true))
        .map(|(_, v)| v)
}

/// Parameters that never match when present in only one URI (§19.1.4: user, ttl and
/// method; maddr; and transport, which has a default value).
fn must_be_in_both(name: &[u8]) -> bool {
    [&b"user"[..], b"ttl", b"method", b"maddr", b"transport"]
        .iter()
        .any(|special| eq_escaped(name, special, true))
}

fn params_match(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    let one_way = |x: &Uri<'_>, y: &Uri<'_>| {
        x.params().all(|(name, _)| {
            let vx = find_param(x.params(), name);
            match (vx, find_param(y.params(), name)) {
                (Some(vx), Some(vy)) => eq_opt_escaped(vx, vy, true),
                (_, None) => !must_be_in_both(name),
                (None, Some(_)) => true, // Unreachable: `name` came from `x`.
            }
        })
    };
    one_way(a, b) && one_way(b, a)
}

fn headers_match(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    let one_way = |x: &Uri<'_>, y: &Uri<'_>| {
        x.headers().all(|(name, value)| {
            y.headers()
                .any(|(n, v)| eq_escaped(n, name, true) && eq_opt_escaped(v, value, false))
        })
    };
    one_way(a, b) && one_way(b, a)
}

/// RFC 3261 §19.1.4 URI equivalence.
///
/// SIP and SIPS never match; user and password compare case-sensitively, everything else
/// case-insensitively; `%HH` of an unreserved byte equals the byte; a port, user, ttl,
/// method, maddr or transport present in only one URI fails the match; other parameters
/// are compared only when both URIs have them; every header must be in both. Other
/// schemes compare scheme (case-insensitive) and opaque part (bytes).
pub fn uri_equivalent(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    match (a.scheme, b.scheme) {
        (Scheme::Sip, Scheme::Sip) | (Scheme::Sips, Scheme::Sips) => {}
        (Scheme::Other(x), Scheme::Other(y)) => {
            return x.eq_ignore_ascii_case(y) && a.opaque() == b.opaque();
        }
        _ => return false,
    }
    a.host.eq_ignore_ascii_case(b.host)
        && a.port == b.port
        && eq_opt_escaped(a.user, b.user, false)
        && eq_opt_escaped(a.password, b.password, false)
        && params_match(a, b)
        && headers_match(a, b)
}

/// The parameters §19.1.4 compares even when only one URI has them; the match key
/// holds exactly these, in this order.
const MATCH_KEY_PARAMS: [&[u8]; 5] = [b"user", b"ttl", b"method", b"maddr", b"transport"];

/// Appends a canonical *match key* of `uri` to `out`: two Contact URIs with equal keys
/// are the same binding. It lets a Redis script match contacts by byte equality, where
/// it cannot run [`uri_equivalent`].
///
/// The key holds the scheme; the user and password with escapes normalised as §19.1.4
/// compares them (an escaped unreserved byte is the byte; an escaped reserved byte stays
/// `%HH`; case kept); the lower-cased host; the port; the `user`, `ttl`, `method`,
/// `maddr` and `transport` parameters (absent, valueless, or the value normalised and
/// lower-cased); and the URI headers as written. Every part is length-prefixed, so the
/// key is unambiguous. Other schemes: the lower-cased scheme and the opaque part.
///
/// Where it differs from RFC 3261 §19.1.4:
/// - **looser**: other parameters are left out, so two URIs with equal keys but a
///   parameter present in both with different values (`;foo=1` / `;foo=2`) are not
///   §19.1.4-equivalent yet share a key. A device refreshing its binding sends the same
///   URI, so this does not arise in practice; `uri_match_key_implies_equivalence` tests
///   that it is the only exception;
/// - **stricter**: URI headers must be byte-identical in the same order, where §19.1.4
///   compares them as an unordered set with case-insensitive names.
pub fn uri_match_key(uri: &Uri<'_>, out: &mut Vec<u8>) {
    match uri.scheme {
        Scheme::Sip => out.extend_from_slice(b"sip"),
        Scheme::Sips => out.extend_from_slice(b"sips"),
        Scheme::Other(s) => {
            out.extend_from_slice(b"o");
            let mut lower = s.to_vec();
            lower.make_ascii_lowercase();
            push_key_part(out, Some(&lower), None);
            push_key_part(out, Some(uri.opaque()), None);
            return;
        }
    }
    push_key_part(out, uri.user, Some(false));
    push_key_part(out, uri.password, Some(false));
    let mut host = uri.host.to_vec();
    host.make_ascii_lowercase();
    push_key_part(out, Some(&host), None);
    let port = uri.port.map(|p| p.to_string());
    push_key_part(out, port.as_deref().map(str::as_bytes), None);
    for name in MATCH_KEY_PARAMS {
        match find_param(uri.params(), name) {
            None => out.push(b'-'),
            Some(None) => out.push(b'!'),
            Some(Some(v)) => push_key_part(out, Some(v), Some(true)),
        }
    }
    let headers = (!uri.headers.is_empty()).then_some(uri.headers);
    push_key_part(out, headers, None);
}

/// One match-key part: `-` when absent, else `=<len>:<bytes>`; with `Some(fold)` the
/// bytes are §19.1.4-normalised escapes (see [`uri_match_key`]).
fn push_key_part(out: &mut Vec<u8>, part: Option<&[u8]>, normalise: Option<bool>) {
    let Some(part) = part else {
        out.push(b'-');
        return;
    };
    let mut body = Vec::with_capacity(part.len());
    match normalise {
        None => body.extend_from_slice(part),
        Some(fold_case) => {
            let units = Units {
                s: part,
                i: 0,
                fold_case,
            };
            for unit in units {
                match unit {
                    // `%` itself is written escaped, so every `%` in a key starts an escape.
                    Unit::Byte(b'%') => body.extend_from_slice(b"%25"),
                    Unit::Byte(b) => body.push(b),
                    Unit::ReservedEscape(v) => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        body.extend_from_slice(&[
                            b'%',
                            HEX[usize::from(v >> 4)],
                            HEX[usize::from(v & 15)],
                        ]);
                    }
                }
            }
        }
    }
    out.push(b'=');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(&body);
}

/// Appends the canonical address-of-record key of `uri` to `out`: the user part with
/// every escape decoded (case kept; `%00` becomes a real NUL byte and does not end the
/// key, RFC 4475 `escnull`), `@`, and the lower-cased host. Port, parameters and headers
/// are dropped (RFC 3261 §10.3 step 5). Nothing is written on error.
pub fn write_aor_key(uri: &Uri<'_>, out: &mut Vec<u8>) -> Result<(), UriError> {
    if matches!(uri.scheme, Scheme::Other(_)) {
        return Err(UriError::NotSip);
    }
    let user = uri.user.filter(|u| !u.is_empty()).ok_or(UriError::NoUser)?;
    out.reserve(user.len() + 1 + uri.host.len());
    // Copy the runs between escapes whole (most users have none).
    let mut rest = user;
    // `find`: a word-at-a-time search, cheaper than `memchr` on a user part's few bytes.
    while let Some(at) = find(b'%', rest) {
        let (run, esc) = rest.split_at(at);
        out.extend_from_slice(run);
        let decoded = match (
            esc.get(1).and_then(|&h| hex_val(h)),
            esc.get(2).and_then(|&l| hex_val(l)),
        ) {
            (Some(hi), Some(lo)) => Some(hi << 4 | lo),
            _ => None,
        };
        match decoded {
            Some(v) => {
                out.push(v);
                rest = esc.get(3..).unwrap_or_default();
            }
            None => {
                out.push(b'%');
                rest = esc.get(1..).unwrap_or_default();
            }
        }
    }
    out.extend_from_slice(rest);
    out.push(b'@');
    let host_at = out.len();
    out.extend_from_slice(uri.host);
    if let Some(host) = out.get_mut(host_at..) {
        make_ascii_lowercase_words(host);
    }
    Ok(())
}

/// `[u8]::make_ascii_lowercase` eight bytes at a time (it goes byte by byte): a host name
/// is a dozen bytes or two. Lower-casing is idempotent, so a tail shorter than a word is
/// done as the overlapping last eight bytes.
fn make_ascii_lowercase_words(s: &mut [u8]) {
    /// Sets the 0x20 bit of each byte in `A..=Z`: with the high bit cleared, adding
    /// `0x80 - c` to a byte sets its high bit exactly when it is at least `c`, without a
    /// carry into the next byte.
    fn lower(w: u64) -> u64 {
        let low7 = w & (ONES * 0x7f);
        let at_least_a = low7 + ONES * (0x80 - u64::from(b'A'));
        let above_z = low7 + ONES * (0x80 - u64::from(b'Z' + 1));
        let upper = at_least_a & !above_z & !w & (ONES * 0x80);
        w | (upper >> 2)
    }
    let n = s.len();
    if n < 8 {
        s.make_ascii_lowercase();
        return;
    }
    let mut word = |at: usize| {
        if let Some(Ok(w)) = s.get_mut(at..at + 8).map(<&mut [u8; 8]>::try_from) {
            *w = lower(u64::from_le_bytes(*w)).to_le_bytes();
        }
    };
    let mut i = 0;
    while i + 8 <= n {
        word(i);
        i += 8;
    }
    if i < n {
        word(n - 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri(s: &str) -> Uri<'_> {
        parse_uri(s.as_bytes()).unwrap()
    }

    fn eq(a: &str, b: &str) -> bool {
        let (a, b) = (uri(a), uri(b));
        let r = uri_equivalent(&a, &b);
        assert_eq!(r, uri_equivalent(&b, &a), "symmetry");
        r
    }

    #[test]
    fn parts() {
        let u = uri("sips:alice:secret@Example.COM:5061;transport=tcp;lr?Subject=hi&x=y");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, b"Example.COM");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, b"transport=tcp;lr");
        assert_eq!(u.headers, b"Subject=hi&x=y");
        assert_eq!(u.param(b"TRANSPORT"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.param(b"lr"), Some(None));
        assert_eq!(u.param(b"maddr"), None);
        assert_eq!(u.headers().count(), 2);
    }

    #[test]
    fn hosts_and_odd_users() {
        let u = uri("sip:[2001:db8::1]:5060");
        assert_eq!(
            (u.user, u.host, u.port),
            (None, &b"[2001:db8::1]"[..], Some(5060))
        );
        // RFC 4475 semiuri: `;` and `=` belong to the user part.
        let u = uri("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        // RFC 4475 intmeth: a user with `?`, `,`, `;` and a password.
        let u = uri(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.password,
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = uri("isbn:2983792873");
        assert_eq!(
            (u.scheme, u.opaque()),
            (Scheme::Other(b"isbn"), &b"2983792873"[..])
        );
        assert_eq!(
            uri("soap.beep://192.0.2.103:3002").scheme,
            Scheme::Other(b"soap.beep")
        );
        assert_eq!(uri("SIP:a@b").scheme, Scheme::Sip);
    }

    #[test]
    fn rejects() {
        for (s, e) in [
            ("example.com", UriError::Scheme),
            ("<sip:a@b>", UriError::Scheme),
            ("sip:@example.com", UriError::UserInfo),
            ("sip:a%zz@example.com", UriError::UserInfo),
            ("sip:a@", UriError::Host),
            ("sip:a@exa_mple.com", UriError::Trailing),
            ("sip:a@b:99999", UriError::Port),
            ("sip:a@b:", UriError::Port),
            ("sip:a@b;x=\"q\"", UriError::Params),
            ("sip:a@b?x=<y>", UriError::Headers),
            ("sip:a@b c", UriError::Trailing),
            ("sip:a@[zz]", UriError::Host),
            ("sip: a@b", UriError::UserInfo),
        ] {
            assert_eq!(parse_uri(s.as_bytes()), Err(e), "{s}");
        }
    }

    #[test]
    fn rfc3261_19_1_4_equivalent() {
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;security=on"
        ));
        assert!(eq(
            "sip:carol@chicago.com;newparam=5",
            "sip:carol@chicago.com;security=on"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
    }

    #[test]
    fn rfc3261_19_1_4_not_equivalent() {
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
        assert!(!eq("sip:a@b", "sips:a@b"));
        assert!(!eq("sip:a@b", "sip:b"));
        assert!(!eq("sip:a@b", "sip:a:@b"));
        assert!(!eq("sip:a@b;maddr=x", "sip:a@b"));
        assert!(!eq("sip:a@b;user=phone", "sip:a@b"));
        assert!(!eq("sip:a@b;ttl=1", "sip:a@b;ttl=2"));
        // A `%3B` is not the reserved `;` it encodes.
        assert!(!eq("sip:a%3Bb@h", "sip:a;b@h"));
        assert!(eq("sip:a%3bb@h", "sip:a%3Bb@h"));
    }

    #[test]
    fn aor_key() {
        let mut k = Vec::new();
        write_aor_key(
            &uri("sip:Null-%00-null@Example.COM:5070;user=phone"),
            &mut k,
        )
        .unwrap();
        assert_eq!(k, b"Null-\0-null@example.com");
        for (u, key) in [
            ("sip:%41b%4a@H", &b"AbJ@h"[..]),
            // An escaped `%` is decoded once, not again with what follows.
            ("sip:%2541@h", b"%41@h"),
        ] {
            k.clear();
            write_aor_key(&uri(u), &mut k).unwrap();
            assert_eq!(k, key, "{u}");
        }
        k.clear();
        write_aor_key(&uri("sip:Null-%00-null@Example.COM"), &mut k).unwrap();
        assert_eq!(
            write_aor_key(&uri("sip:example.com"), &mut k),
            Err(UriError::NoUser)
        );
        assert_eq!(write_aor_key(&uri("tel:+1"), &mut k), Err(UriError::NotSip));
        assert_eq!(k.len(), 23, "nothing written on error");
    }

    #[test]
    fn print_round_trip() {
        for s in [
            "sip:a@b",
            "sips:a:pw@[::1]:1;lr;x=y?h=v",
            "tel:+1-555",
            "sip:host;p",
        ] {
            let mut out = Vec::new();
            uri(s).write(&mut out);
            assert_eq!(out, s.as_bytes());
        }
    }

    fn arb_uri() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["sip", "sips", "SIP"]),
            prop::option::of("[a-zA-Z0-9%;=._-]{1,8}"),
            "[a-zA-Z0-9.-]{1,12}|\\[[0-9a-f:]{2,10}\\]",
            prop::option::of(0u16..),
            prop::collection::vec(
                (
                    "(lr|maddr|x|user|transport|ttl)",
                    prop::option::of("[a-zA-Z0-9%]{0,4}"),
                ),
                0..4,
            ),
            prop::collection::vec(("[a-z]{1,3}", "[a-zA-Z0-9%]{0,4}"), 0..3),
        )
            .prop_map(|(scheme, user, host, port, params, headers)| {
                let mut s = format!("{scheme}:");
                if let Some(u) = user {
                    s += &u;
                    s += "@";
                }
                s += &host;
                if let Some(p) = port {
                    s += &format!(":{p}");
                }
                for (n, v) in params {
                    s += &format!(";{n}");
                    if let Some(v) = v {
                        s += &format!("={v}");
                    }
                }
                for (i, (n, v)) in headers.iter().enumerate() {
                    s += if i == 0 { "?" } else { "&" };
                    s += &format!("{n}={v}");
                }
                s
            })
    }

    /// Wherever the one-pass bracketed parser answers, it agrees with `parse_uri` on the
    /// bytes before the first `>`.
    fn fast_agrees(raw: &str) -> bool {
        let bracketed = format!("<{raw}>;x");
        match sip_uri_before_bracket(bracketed.as_bytes(), 1) {
            Some((fast, close)) => {
                assert_eq!(close, raw.len() + 1, "{raw}");
                assert_eq!(parse_uri(raw.as_bytes()), Ok(fast), "{raw}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn bracketed_fast_path_agrees_with_parse_uri() {
        for raw in [
            "sip:bob@biloxi.example.com",
            "SIP:Bob@H:5060;Transport=UDP;lr",
            "sips:x@y",
            "sip:192.0.2.4:5060",
            "sip:h;lr",
        ] {
            assert!(fast_agrees(raw), "fast path refused {raw}");
        }
        // Other shapes and faults are left to `parse_uri`.
        for raw in [
            "sip:alice:1234@h",
            "sip:alice:pw@h",
            "sip:u@[::1]:5060",
            "sip:u@h?subject=x",
            "sip:u%40x@h",
            "sip:@h",
            "sip:h:99999",
            "sip:h:",
            "sip:",
            "tel:+1234",
            "sip:u@h;a%2",
        ] {
            assert!(!fast_agrees(raw), "fast path answered {raw}");
        }
    }

    /// `parse_uri` with its host-first fast path agrees with the general grammar.
    fn general_agrees(raw: &str) {
        let s = raw.as_bytes();
        let general = match s.get(..4) {
            Some(h) if h.eq_ignore_ascii_case(b"sip:") => sip_parts(s, Scheme::Sip, &s[4..]),
            _ => sip_parts(s, Scheme::Sips, &s[5..]),
        };
        assert_eq!(parse_uri(s), general, "{raw}");
    }

    #[test]
    fn host_first_fast_path_agrees_with_the_grammar() {
        for raw in [
            "sip:biloxi.example.com",
            "SIPS:b-1.x",
            "sip:bob@biloxi.example.com",
            "sip:bob@h:5060;lr",
            "sip:bob@",
            "sip:bob@@h",
            "sip:bob@h@i",
            "sip:@h",
            "sip:",
            "sip:h:5060",
            "sip:a:b@h",
            "sip:a%41@h",
            "sip:h?x=y",
            "sip:bob@[::1]",
            "sip:bob@h;a%2",
        ] {
            general_agrees(raw);
        }
        assert_eq!(
            parse_uri(b"sip:biloxi.example.com").map(|u| (u.user, u.host)),
            Ok((None, &b"biloxi.example.com"[..]))
        );
    }

    proptest! {
        #[test]
        fn lowercase_words_agree_with_std(mut s in prop::collection::vec(any::<u8>(), 0..40)) {
            let mut expected = s.clone();
            expected.make_ascii_lowercase();
            make_ascii_lowercase_words(&mut s);
            prop_assert_eq!(s, expected);
        }

        #[test]
        fn host_first_fast_path_never_disagrees(raw in "(sip|SIPS):[a-z0-9@:;=%.\\[\\]?&-]{0,24}") {
            general_agrees(&raw);
        }

        #[test]
        fn equivalence_is_reflexive_and_symmetric(a in arb_uri(), b in arb_uri()) {
            if let (Ok(ua), Ok(ub)) = (parse_uri(a.as_bytes()), parse_uri(b.as_bytes())) {
                prop_assert!(uri_equivalent(&ua, &ua));
                prop_assert_eq!(uri_equivalent(&ua, &ub), uri_equivalent(&ub, &ua));
            }
        }

        #[test]
        fn bracketed_fast_path_never_disagrees(raw in "(sip|SIPS|tel):[a-z0-9@:;=%.\\[\\]?&-]{0,24}") {
            fast_agrees(&raw);
        }

        #[test]
        fn escaped_user_equals_plain(user in "[a-zA-Z0-9._~-]{1,10}", host in "[a-z]{1,8}\\.com") {
            let escaped: String = user.bytes().map(|b| format!("%{b:02X}")).collect();
            let plain = format!("sip:{user}@{host}");
            let esc = format!("sip:{escaped}@{}", host.to_uppercase());
            let (a, b) = (parse_uri(plain.as_bytes()).unwrap(), parse_uri(esc.as_bytes()).unwrap());
            prop_assert!(uri_equivalent(&a, &b));
            let (mut ka, mut kb) = (Vec::new(), Vec::new());
            write_aor_key(&a, &mut ka).unwrap();
            write_aor_key(&b, &mut kb).unwrap();
            prop_assert_eq!(ka, kb);
            // The user part is case-sensitive.
            if user.to_uppercase() != user {
                let upper = format!("sip:{}@{host}", user.to_uppercase());
                prop_assert!(!uri_equivalent(&a, &parse_uri(upper.as_bytes()).unwrap()));
            }
        }

        #[test]
        fn parse_print_round_trip(s in arb_uri()) {
            if let Ok(u) = parse_uri(s.as_bytes()) {
                let mut out = Vec::new();
                u.write(&mut out);
                let again = parse_uri(&out).unwrap();
                prop_assert_eq!(Uri { raw: b"", ..again }, Uri { raw: b"", ..u });
            }
        }

        #[test]
        fn never_panics(s in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(u) = parse_uri(&s) {
                prop_assert!(uri_equivalent(&u, &u));
            }
        }
    }

    fn match_key(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        uri_match_key(&uri(s), &mut out);
        out
    }

    #[test]
    fn match_key_equal_for_rfc_equivalent_uris() {
        // RFC 3261 §19.1.4's equivalent pairs (those without URI headers).
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;newparam=5",
            ),
            (
                "sip:alice@192.0.2.4:5060;user=phone",
                "sip:alice@192.0.2.4:5060;USER=Phone",
            ),
            ("sip:a%2b@h", "sip:a%2B@h"),
        ] {
            assert!(eq(a, b), "{a} / {b}");
            assert_eq!(match_key(a), match_key(b), "{a} / {b}");
        }
    }

    #[test]
    fn match_key_differs_for_rfc_different_uris() {
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
            ("sip:a+b@h", "sip:a%2bb@h"),
            ("sip:a:@h", "sip:a@h"),
            ("sip:a@h;maddr", "sip:a@h;maddr="),
            ("sip:a@h?x=1", "sip:a@h"),
        ] {
            assert!(!eq(a, b), "{a} / {b}");
            assert_ne!(match_key(a), match_key(b), "{a} / {b}");
        }
    }

    proptest! {
        /// Equal match keys imply §19.1.4 equivalence, except when a parameter outside
        /// the key's five is in both URIs with different values (the documented looseness).
        #[test]
        fn uri_match_key_implies_equivalence(
            parts in proptest::collection::vec(0usize..16, 7),
            which in 0usize..7,
            other in 0usize..16,
        ) {
            // `b` is `a` with one part redrawn, so that equal keys are frequent.
            let a = uri_from_parts(&parts);
            let mut changed = parts.clone();
            changed[which] = other;
            let b = uri_from_parts(&changed);
            let (ua, ub) = (uri(&a), uri(&b));
            let (mut ka, mut kb) = (Vec::new(), Vec::new());
            uri_match_key(&ua, &mut ka);
            uri_match_key(&ub, &mut kb);
            if ka == kb {
                let other_param_conflict = ua.params().any(|(name, va)| {
                    !must_be_in_both(name)
                        && find_param(ub.params(), name).is_some_and(|vb| !eq_opt_escaped(va, vb, true))
                });
                prop_assert!(uri_equivalent(&ua, &ub) || other_param_conflict, "{} / {}", a, b);
            }
            prop_assert_eq!(ka == kb, kb == ka);
            if a == b {
                prop_assert_eq!(ka, kb);
            }
        }
    }

    /// A SIP URI from one choice per part (indices wrap), from small alphabets in which
    /// many spellings are §19.1.4-equivalent.
    fn uri_from_parts(parts: &[usize]) -> String {
        const SCHEME: &[&str] = &["sip", "sips", "SIP"];
        const USER: &[&str] = &[
            "", "a@", "A@", "%61@", "%41@", "a:p@", "a:P@", "a%2b@", "a%2B@", "a+@", "%25@",
        ];
        const HOST: &[&str] = &["h", "H", "h.x"];
        const PORT: &[&str] = &["", ":5060", ":5061"];
        const PARAM: &[&str] = &[
            "",
            ";transport=tcp",
            ";TRANSPORT=TCP",
            ";transport=%74cp",
            ";transport=udp",
            ";user=phone",
            ";maddr",
            ";maddr=",
            ";lr",
            ";foo=1",
            ";foo=2",
            ";FOO=1",
            ";ttl=1",
        ];
        const HEADERS: &[&str] = &["", "?x=1", "?X=1"];
        let pick = |set: &[&'static str], i: usize| set[parts[i] % set.len()];
        format!(
            "{}:{}{}{}{}{}{}",
            pick(SCHEME, 0),
            pick(USER, 1),
            pick(HOST, 2),
            pick(PORT, 3),
            pick(PARAM, 4),
            pick(PARAM, 5),
            pick(HEADERS, 6)
        )
    }
}
