//! Parsers for one header value each: the params of `*( SEMI generic-param )`,
//! name-addr/addr-spec elements (From, To, Contact), q-values, the top Via, option-tag
//! lists, CSeq and Call-ID.
//!
//! Why a file of its own: each function reads one value in a single pass and knows
//! nothing of the message around it (the one-pass loop in `parse` decides which value
//! goes to which parser, and in which order faults count). Each quotes the RFC 3261
//! ABNF it implements.

use bumpalo::collections::Vec as BVec;

use super::chars::{
    DIGIT, HOST, IPV6, LWS, TOKEN, WORD, all_in, digit_run, digits_saturating, digits_u16,
    digits_u32, find, port_at, quoted_end, skip_lws, span, trim_lws,
};
use super::error::ParseError;
use super::limits::{CONTACT_URI_BYTES_MAX, CONTACTS_PER_MESSAGE_MAX, OPTION_TAGS_MAX};
use super::message::{CSeq, Contact, Method, NameAddr, Transport, Via};
use super::names::word_at;
use super::uri::{Uri, parse_uri, sip_uri_before_bracket};

/// Iterator over header params (`*( SEMI generic-param )`, LWS allowed around `;` and `=`):
/// yields `(name, value)` with quoted values kept in their quotes. It stops at the first
/// malformed param.
#[derive(Clone, Debug)]
pub struct HeaderParams<'a> {
    pub(super) s: &'a [u8],
    pub(super) i: usize,
}

/// One header param with its position, for the parser's own use.
pub(super) struct Param<'a> {
    pub(super) name: &'a [u8],
    pub(super) value: Option<&'a [u8]>,
    pub(super) name_end: usize,
    /// The first eight bytes of the name (zero-padded) with every 0x20 bit set: see
    /// [`Param::is`].
    pub(super) head: u64,
}

/// Every byte's 0x20 bit.
pub(super) const FOLD: u64 = 0x2020_2020_2020_2020;

/// The first eight bytes of `s` (zero-padded) with every 0x20 bit set.
#[inline(always)]
pub(super) const fn fold_head(s: &[u8]) -> u64 {
    let mut w = FOLD;
    let mut k = 0;
    while k < 8 && k < s.len() {
        w |= (s[k] as u64) << (8 * k);
        k += 1;
    }
    w
}

impl Param<'_> {
    /// The name equals `lower` (written in lower case), ignoring ASCII case. A name is a
    /// token, and among token bytes only a letter's two cases differ by the 0x20 bit alone,
    /// so comparing with that bit forced is exact: one word compare for short names.
    #[inline(always)]
    fn is(&self, lower: &[u8]) -> bool {
        let n = lower.len();
        self.name.len() == n
            && self.head == fold_head(lower)
            && match n {
                0..=8 => true,
                // The last eight bytes, overlapping the head, folded the same way.
                9..=16 => {
                    word_at(self.name, n - 8) | FOLD
                        == fold_head(lower.get(n - 8..).unwrap_or_default())
                }
                _ => self
                    .name
                    .get(8..)
                    .unwrap_or_default()
                    .eq_ignore_ascii_case(lower.get(8..).unwrap_or_default()),
            }
    }
}

/// Characters of a `gen-value` that is not quoted: `token / host`, where `host` adds `:`
/// and brackets for IPv6 (e.g. `received=2001:db8::1`).
pub(super) static PARAM_VALUE: [bool; 256] = {
    let mut map = [false; 256];
    let mut i = 0;
    while i < 256 {
        map[i] = TOKEN[i] || i == b':' as usize || i == b'[' as usize || i == b']' as usize;
        i += 1;
    }
    map
};

/// The param whose `;` is at `at`, with the end of its value (or of its name when it has
/// none): `None` when there is no `;` at `at`, `Some(Err)` when the param is malformed.
/// The one reading of `SEMI generic-param` ([`HeaderParams`] and [`scan_params`]).
#[inline(always)]
pub(super) fn param_at(s: &[u8], at: usize) -> Option<Result<(Param<'_>, usize), ()>> {
    if s.get(at) != Some(&b';') {
        return None;
    }
    let name_start = skip_lws(s, at + 1);
    let name_end = span(s, name_start, &TOKEN);
    if name_end == name_start {
        return Some(Err(()));
    }
    let name = s.get(name_start..name_end).unwrap_or_default();
    let eq = skip_lws(s, name_end);
    let (value, end) = if s.get(eq) == Some(&b'=') {
        let v = skip_lws(s, eq + 1);
        let v_end = if s.get(v) == Some(&b'"') {
            match quoted_end(s, v) {
                Some(e) => e,
                None => return Some(Err(())),
            }
        } else {
            span(s, v, &PARAM_VALUE)
        };
        if v_end == v {
            return Some(Err(()));
        }
        (s.get(v..v_end), v_end)
    } else {
        (None, name_end)
    };
    // The name's bytes of the word at its start (a name is never empty).
    let keep = u64::MAX >> (8 * (8 - name.len().min(8)));
    let param = Param {
        name,
        value,
        name_end,
        head: (word_at(s, name_start) & keep) | FOLD,
    };
    Some(Ok((param, end)))
}

impl<'a> Iterator for HeaderParams<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        match param_at(self.s, skip_lws(self.s, self.i))? {
            Ok((p, end)) => {
                self.i = end;
                Some((p.name, p.value))
            }
            Err(()) => {
                self.i = self.s.len();
                None
            }
        }
    }
}

/// Runs `f` over the params starting at `i`, returns `(raw params, end index)`.
#[inline]
pub(super) fn scan_params<'a>(
    s: &'a [u8],
    i: usize,
    mut f: impl FnMut(&Param<'a>) -> Result<(), ParseError>,
    malformed: ParseError,
) -> Result<(&'a [u8], usize), ParseError> {
    let first = skip_lws(s, i);
    let mut at = first; // Where the next `;` would be.
    let mut end = i; // After the last param read.
    while let Some(p) = param_at(s, at) {
        let (param, param_end) = p.map_err(|()| malformed)?;
        f(&param)?;
        end = param_end;
        at = skip_lws(s, end);
    }
    let raw = if end > i {
        s.get(first..end).unwrap_or_default()
    } else {
        b""
    };
    Ok((raw, end))
}

/// `(name-addr / addr-spec)` followed by its params, as found in From, To and Contact;
/// the URI is written to the caller's place (see [`parse_element`]).
pub(super) struct Element<'a> {
    pub(super) display: Option<&'a [u8]>,
    pub(super) params: &'a [u8],
    pub(super) end: usize,
}

/// Parses one element at `i`. An addr-spec outside `<>` ends at the first `;` (what
/// follows are header params, RFC 3261 §20.10 and RFC 4475 `cparam01`), `,` or LWS, and
/// may not contain `?` (RFC 4475 `regbadct`).
///
/// The URI goes straight into `uri`, a field of the header's final struct: a `Uri` is
/// 128 bytes, and returning it inside the element cost one more copy per From, To and
/// Contact.
pub(super) fn parse_element<'a>(
    s: &'a [u8],
    i: usize,
    uri: &mut Uri<'a>,
    on_param: impl FnMut(&Param<'a>) -> Result<(), ParseError>,
    malformed: ParseError,
) -> Result<Element<'a>, ParseError> {
    let mut i = skip_lws(s, i);
    let mut display = None;
    match s.get(i) {
        Some(b'"') => {
            let end = quoted_end(s, i).ok_or(malformed)?;
            display = s.get(i..end);
            i = skip_lws(s, end);
            if s.get(i) != Some(&b'<') {
                return Err(malformed);
            }
        }
        Some(b'<') => {}
        Some(_) => {
            // `display-name = *(token LWS)`: tokens up to a `<` make a display name.
            // Missing LWS before `<` is tolerated (RFC 4475 `lwsdisp`).
            let mut j = i;
            let mut last_end = i;
            loop {
                let t = span(s, j, &TOKEN);
                if t == j {
                    break;
                }
                last_end = t;
                j = skip_lws(s, t);
            }
            if j > i && s.get(j) == Some(&b'<') {
                display = s.get(i..last_end);
                i = j;
            }
        }
        None => return Err(malformed),
    }
    let after_uri = if s.get(i) == Some(&b'<') {
        // The common `<sip:user@host[:port][;params]>` in one pass; anything else is cut
        // at the first `>` and parsed on its own (which the fast path agrees with).
        match sip_uri_before_bracket(s, i + 1) {
            Some((parsed, close)) => {
                *uri = parsed;
                close + 1
            }
            None => {
                let tail = s.get(i + 1..).unwrap_or_default();
                let close = find(b'>', tail).ok_or(malformed)?;
                let raw = tail.get(..close).unwrap_or_default();
                *uri = parse_uri(raw).map_err(|_| malformed)?;
                i + 1 + close + 1
            }
        }
    } else {
        let mut end = i;
        while let Some(&b) = s.get(end) {
            if b == b';' || b == b',' || LWS[usize::from(b)] {
                break;
            }
            end += 1;
        }
        let raw = s.get(i..end).unwrap_or_default();
        if find(b'?', raw).is_some() {
            return Err(malformed);
        }
        *uri = parse_uri(raw).map_err(|_| malformed)?;
        end
    };
    let (params, end) = scan_params(s, after_uri, on_param, malformed)?;
    Ok(Element {
        display,
        params,
        end,
    })
}

/// Parses a From or To value: one element, `tag` picked out, nothing after.
pub(super) fn parse_name_addr(s: &[u8], malformed: ParseError) -> Result<NameAddr<'_>, ParseError> {
    let mut na = NameAddr {
        display: None,
        uri: Uri::EMPTY,
        tag: None,
        params: b"",
    };
    let el = parse_element(
        s,
        0,
        &mut na.uri,
        |p| {
            if p.is(b"tag") && na.tag.is_none() {
                na.tag = Some(p.value.ok_or(malformed)?);
            }
            Ok(())
        },
        malformed,
    )?;
    if skip_lws(s, el.end) != s.len() {
        return Err(malformed);
    }
    na.display = el.display;
    na.params = el.params;
    Ok(na)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
pub(super) fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match find(b'.', v) {
        Some(dot) => (v.get(..dot)?, v.get(dot + 1..)?),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !all_in(frac, &DIGIT) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for k in 0..3 {
        let d = frac.get(k).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + d;
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Parses one Contact header value into `out` (`*` is handled by the caller).
pub(super) fn parse_contact_list<'a>(
    s: &'a [u8],
    out: &mut BVec<'a, Contact<'a>>,
) -> Result<(), ParseError> {
    let mut i = 0;
    loop {
        if out.len() >= CONTACTS_PER_MESSAGE_MAX {
            // Whether this value is well formed no longer matters.
            return Err(ParseError::TooManyContacts);
        }
        // Parsed in place, into the list: a `Contact` is about 200 bytes. On an error
        // the partly filled entry stays behind; the whole request is rejected then.
        out.push(Contact {
            display: None,
            uri: Uri::EMPTY,
            expires: None,
            q: None,
            instance: None,
            reg_id: None,
            params: b"",
        });
        let Some(c) = out.last_mut() else {
            return Err(ParseError::BadContact); // Unreachable: just pushed.
        };
        let el = parse_element(
            s,
            i,
            &mut c.uri,
            |p| {
                if p.is(b"expires") {
                    let v = p.value.ok_or(ParseError::BadContactExpires)?;
                    c.expires = Some(digits_saturating(v).ok_or(ParseError::BadContactExpires)?);
                } else if p.is(b"q") {
                    let v = p.value.ok_or(ParseError::BadContactQ)?;
                    c.q = Some(parse_qvalue(v).ok_or(ParseError::BadContactQ)?);
                } else if p.is(b"+sip.instance") {
                    let v = p.value.ok_or(ParseError::BadContact)?;
                    let unquoted = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""));
                    c.instance = Some(unquoted.unwrap_or(v));
                } else if p.is(b"reg-id") {
                    let v = p.value.ok_or(ParseError::BadContactRegId)?;
                    c.reg_id = Some(digits_u32(v).ok_or(ParseError::BadContactRegId)?);
                }
                Ok(())
            },
            ParseError::BadContact,
        )?;
        if c.uri.raw.len() > CONTACT_URI_BYTES_MAX {
            return Err(ParseError::ContactUriTooLong);
        }
        c.display = el.display;
        c.params = el.params;
        let j = skip_lws(s, el.end);
        match s.get(j) {
            None => return Ok(()),
            Some(b',') => i = j + 1,
            Some(_) => return Err(ParseError::BadContact),
        }
    }
}

/// Parses the top via-parm of a Via value:
/// `sent-protocol LWS sent-by *( SEMI via-params )`, with
/// `sent-protocol = protocol-name SLASH protocol-version SLASH transport` and
/// `SLASH = SWS "/" SWS`, `sent-by = host [ COLON port ]`.
/// The protocol version must equal the request line's (so that a `SIP/7.0` request can
/// still be answered with 505, RFC 4475 `badvers`).
pub(super) fn parse_via<'a>(s: &'a [u8], version: &[u8]) -> Result<Via<'a>, ParseError> {
    const E: ParseError = ParseError::BadVia;
    let start = skip_lws(s, 0);
    let slash = |i: usize| {
        let j = skip_lws(s, i);
        if s.get(j) == Some(&b'/') {
            Ok(skip_lws(s, j + 1))
        } else {
            Err(E)
        }
    };
    // Fast path: `SIP/2.0/UDP ` (or TCP, TLS) exactly, one 12-byte compare; the general
    // grammar below gives the same answer on it.
    let head = s
        .get(start..start + 12)
        .and_then(|h| <[u8; 12]>::try_from(h).ok())
        .filter(|_| version == b"2.0");
    let fast = match head.as_ref() {
        Some(b"SIP/2.0/UDP ") => Some(Transport::Udp),
        Some(b"SIP/2.0/TCP ") => Some(Transport::Tcp),
        Some(b"SIP/2.0/TLS ") => Some(Transport::Tls),
        _ => None,
    };
    let (transport, tr_end) = match fast {
        Some(t) => (t, start + 11),
        None => {
            let name_end = span(s, start, &TOKEN);
            if !s
                .get(start..name_end)
                .unwrap_or_default()
                .eq_ignore_ascii_case(b"SIP")
            {
                return Err(E);
            }
            let ver = slash(name_end)?;
            let ver_end = span(s, ver, &TOKEN);
            if s.get(ver..ver_end) != Some(version) {
                return Err(E);
            }
            let tr = slash(ver_end)?;
            let tr_end = span(s, tr, &TOKEN);
            if tr_end == tr {
                return Err(E);
            }
            let transport = Transport::from_bytes(s.get(tr..tr_end).unwrap_or_default());
            (transport, tr_end)
        }
    };
    let host_start = skip_lws(s, tr_end);
    if host_start == tr_end {
        return Err(E);
    }
    let host_end = if s.get(host_start) == Some(&b'[') {
        let close = span(s, host_start + 1, &IPV6);
        if s.get(close) != Some(&b']') || close == host_start + 1 {
            return Err(E);
        }
        close + 1
    } else {
        span(s, host_start, &HOST)
    };
    if host_end == host_start {
        return Err(E);
    }
    let host = s.get(host_start..host_end).unwrap_or_default();
    let mut end = host_end;
    let mut port = None;
    let colon = skip_lws(s, host_end);
    if s.get(colon) == Some(&b':') {
        let p = skip_lws(s, colon + 1);
        let (v, p_end) = port_at(s, p);
        port = Some(v.ok_or(E)?);
        end = p_end;
    }
    let mut via = Via {
        raw: b"",
        transport,
        host,
        port,
        branch: None,
        rport: None,
        received: None,
        maddr: None,
        params: b"",
        rport_insert_at: 0,
    };
    let (params, end) = scan_params(
        s,
        end,
        |p| {
            if p.is(b"branch") {
                via.branch = via.branch.or(Some(p.value.ok_or(E)?));
            } else if p.is(b"rport") {
                if via.rport.is_none() {
                    via.rport = Some(match p.value {
                        None => {
                            via.rport_insert_at = p.name_end - start;
                            None
                        }
                        Some(v) => Some(digits_u16(v).ok_or(E)?),
                    });
                }
            } else if p.is(b"received") {
                via.received = via.received.or(Some(p.value.ok_or(E)?));
            } else if p.is(b"maddr") {
                via.maddr = via.maddr.or(Some(p.value.ok_or(E)?));
            }
            Ok(())
        },
        E,
    )?;
    let next = skip_lws(s, end);
    if !matches!(s.get(next), None | Some(b',')) {
        return Err(E);
    }
    via.params = params;
    via.raw = s.get(start..end).unwrap_or_default();
    Ok(via)
}

/// Splits `s` at commas outside quoted strings and `<...>`, trimming LWS; calls `f` on
/// each piece (empty pieces included).
pub(super) fn split_commas<'a>(
    s: &'a [u8],
    mut f: impl FnMut(&'a [u8]) -> Result<(), ParseError>,
    malformed: ParseError,
) -> Result<(), ParseError> {
    let mut start = 0;
    let mut i = 0;
    while let Some(off) = memchr::memchr3(b',', b'"', b'<', s.get(i..).unwrap_or_default()) {
        let at = i + off;
        match s.get(at) {
            Some(b'"') => i = quoted_end(s, at).ok_or(malformed)?,
            Some(b'<') => {
                let close =
                    memchr::memchr(b'>', s.get(at..).unwrap_or_default()).ok_or(malformed)?;
                i = at + close + 1;
            }
            _ => {
                f(trim_lws(s.get(start..at).unwrap_or_default()))?;
                start = at + 1;
                i = start;
            }
        }
    }
    f(trim_lws(s.get(start..).unwrap_or_default()))
}

/// Appends the option tags of one Require/Proxy-Require/Supported value
/// (`[option-tag *(COMMA option-tag)]`, option-tag = token).
#[inline(always)]
pub(super) fn parse_option_tags<'a>(
    s: &'a [u8],
    out: &mut BVec<'a, &'a [u8]>,
) -> Result<(), ParseError> {
    if s.is_empty() {
        return Ok(()); // `Supported:` with no tags is legal (RFC 3261 §20.37).
    }
    // One pass: each comma-separated piece must be a token with optional LWS around it.
    let mut i = 0;
    loop {
        let start = skip_lws(s, i);
        let end = span(s, start, &TOKEN);
        let next = skip_lws(s, end);
        let last = match s.get(next) {
            None => true,
            Some(b',') => false,
            Some(_) => return Err(ParseError::BadOptionTag),
        };
        if end == start {
            return Err(ParseError::BadOptionTag);
        }
        if out.len() >= OPTION_TAGS_MAX {
            return Err(ParseError::TooManyOptionTags);
        }
        out.push(s.get(start..end).unwrap_or_default());
        if last {
            return Ok(());
        }
        i = next + 1;
    }
}

/// Parses `CSeq: 1*DIGIT LWS Method`. `request` is the request-line method: the common
/// `1 REGISTER` (one space, the same known method) is recognised by one compare.
#[inline(always)]
pub(super) fn parse_cseq<'a>(s: &'a [u8], request: Method<'a>) -> Option<CSeq<'a>> {
    let (seq, d_end) = digit_run(s, 0);
    let seq = u32::try_from(seq).ok().filter(|_| d_end > 0)?;
    let tail = s.get(d_end..).unwrap_or_default();
    let same = match request {
        // The method a registrar sees: a compare of constant length, no `memcmp` call.
        Method::Register => tail == b" REGISTER",
        Method::Other(_) => false,
        _ => tail.first() == Some(&b' ') && tail.get(1..) == Some(request.as_bytes()),
    };
    if same {
        // A known method is a token, and `from_bytes` would give the same variant back.
        return Some(CSeq {
            seq,
            method: request,
        });
    }
    let m = skip_lws(s, d_end);
    if m == d_end {
        return None;
    }
    let method = s.get(m..)?;
    if method.is_empty() || !all_in(method, &TOKEN) {
        return None;
    }
    Some(CSeq {
        seq,
        method: Method::from_bytes(method),
    })
}

/// `callid = word [ "@" word ]`.
///
/// One pass: `@` is not in `word`, so the value is a span of word characters, optionally
/// followed by `@` and a second non-empty span that reaches the end.
#[inline(always)]
pub(super) fn call_id_valid(s: &[u8]) -> bool {
    let first = span(s, 0, &WORD);
    if first == 0 {
        return false;
    }
    match s.get(first) {
        None => true,
        Some(b'@') => {
            let second = span(s, first + 1, &WORD);
            second > first + 1 && second == s.len()
        }
        Some(_) => false,
    }
}
