//! The request parser: one pass over the header lines, then eager parsing of the headers
//! a registrar acts on.
//!
//! Everything borrows the datagram. The few per-message lists (Via values, contacts,
//! option tags, Path values) are pushed straight into the caller's `bumpalo`
//! arena with a small reserved capacity (bounded by [`limits`](super::limits)), so a
//! parse performs no heap allocation of its own and copies no stack buffers.
//!
//! Each header line is visited once: its name is looked up from the line's first two
//! words together with the colon search, and as soon as the next line shows the header
//! is complete (no continuation line, RFC 3261 §7.3.1) it is recorded and handed to its
//! value parser, which reads the value in a single pass (display name, `<uri>` and
//! params together for From, To and Contact). Only the top Via is parsed; everything
//! else a registrar does not act on stays raw: [`Request::headers`] reads the header
//! lines again on demand rather than every parse storing a list that the registrar's
//! hot path never reads.
//!
//! A bad request must still be answerable, so faults are ordered rather than returned at
//! once: the request line, then framing (line structure and limits), then what a
//! response must echo (Via, From, To, Call-ID, CSeq, RFC 3261 §8.2.6.2), then
//! Max-Forwards, Expires, Content-Length, then the rest in header order. The first
//! becomes the [`ParseError`], returned together with the [`Echo`] when a top Via could
//! be parsed.

use bumpalo::Bump;
use bumpalo::collections::Vec as BVec;

use super::chars::{
    DIGIT, Find2, HOST, IPV6, LWS, TOKEN, WORD, WSP, all_in, digit_run, digits_saturating,
    digits_u16, digits_u32, find, first_byte_mask, port_at, quoted_end, skip_lws, span, trim_lws,
};
use super::error::ParseError;
use super::limits::{
    CALL_ID_BYTES_MAX, CONTACT_URI_BYTES_MAX, CONTACTS_PER_MESSAGE_MAX, DATAGRAM_BYTES_MAX,
    HEADER_LINE_BYTES_MAX, HEADERS_PER_MESSAGE_MAX, OPTION_TAGS_MAX, PATH_VALUES_MAX,
    VIAS_PER_MESSAGE_MAX,
};
use super::names::{HeaderName, from_prefix_words, word_at};
use super::uri::{Uri, parse_uri, sip_uri_before_bracket};

/// A request method. Method names are case-sensitive (RFC 3261 §7.1), so `register` and
/// `RE%47IST%45R` (RFC 4475 `esc02`) are [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// `REGISTER`
    Register,
    /// `OPTIONS`
    Options,
    /// `INVITE`
    Invite,
    /// `ACK`
    Ack,
    /// `BYE`
    Bye,
    /// `CANCEL`
    Cancel,
    /// `SUBSCRIBE`
    Subscribe,
    /// `NOTIFY`
    Notify,
    /// `PUBLISH`
    Publish,
    /// `MESSAGE`
    Message,
    /// `INFO`
    Info,
    /// `PRACK`
    Prack,
    /// `UPDATE`
    Update,
    /// `REFER`
    Refer,
    /// Any other token.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token (exact, case-sensitive match).
    pub fn from_bytes(b: &'a [u8]) -> Self {
        match b {
            b"REGISTER" => Self::Register,
            b"OPTIONS" => Self::Options,
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"PUBLISH" => Self::Publish,
            b"MESSAGE" => Self::Message,
            b"INFO" => Self::Info,
            b"PRACK" => Self::Prack,
            b"UPDATE" => Self::Update,
            b"REFER" => Self::Refer,
            other => Self::Other(other),
        }
    }

    /// The method token as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::Register => b"REGISTER",
            Self::Options => b"OPTIONS",
            Self::Invite => b"INVITE",
            Self::Ack => b"ACK",
            Self::Bye => b"BYE",
            Self::Cancel => b"CANCEL",
            Self::Subscribe => b"SUBSCRIBE",
            Self::Notify => b"NOTIFY",
            Self::Publish => b"PUBLISH",
            Self::Message => b"MESSAGE",
            Self::Info => b"INFO",
            Self::Prack => b"PRACK",
            Self::Update => b"UPDATE",
            Self::Refer => b"REFER",
            Self::Other(b) => b,
        }
    }
}

/// `CSeq: 1*DIGIT LWS Method` (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (a 32-bit unsigned integer; larger is a parse error).
    pub seq: u32,
    /// The method, equal to the request method.
    pub method: Method<'a>,
}

/// The transport named in a Via's sent-protocol (ASCII case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport<'a> {
    /// `UDP`
    Udp,
    /// `TCP`
    Tcp,
    /// `TLS`
    Tls,
    /// `SCTP`
    Sctp,
    /// `WS` (RFC 7118)
    Ws,
    /// `WSS` (RFC 7118)
    Wss,
    /// Any other token, as written.
    Other(&'a [u8]),
}

impl<'a> Transport<'a> {
    fn from_bytes(b: &'a [u8]) -> Self {
        const KNOWN: [(&[u8], Transport<'static>); 6] = [
            (b"UDP", Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ];
        KNOWN
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(b))
            .map_or(Self::Other(b), |(_, t)| *t)
    }
}

/// The top via-parm (RFC 3261 §20.42): `SIP/2.0/UDP host:port;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// The exact bytes of this via-parm (a prefix of the first Via header value).
    pub raw: &'a [u8],
    /// The transport.
    pub transport: Transport<'a>,
    /// The sent-by host (IPv6 references keep their brackets).
    pub host: &'a [u8],
    /// The sent-by port.
    pub port: Option<u16>,
    /// The `branch` parameter.
    pub branch: Option<&'a [u8]>,
    /// `rport` (RFC 3581): `Some(None)` when present without a value.
    pub rport: Option<Option<u16>>,
    /// The `received` parameter.
    pub received: Option<&'a [u8]>,
    /// The `maddr` parameter.
    pub maddr: Option<&'a [u8]>,
    /// All via params raw, from the first `;` (may contain LWS).
    pub params: &'a [u8],
    /// Offset in `raw` just after the name of a value-less `rport`, where the writer
    /// inserts `=port` (0 when there is none).
    pub(crate) rport_insert_at: usize,
}

/// A From or To header: `( name-addr / addr-spec ) *( SEMI params )` (RFC 3261 §20.20/39).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: a quoted-string keeps its quotes and escapes.
    pub display: Option<&'a [u8]>,
    /// The parsed URI; `uri.raw` holds its exact bytes (inside `<>` when bracketed).
    pub uri: Uri<'a>,
    /// The `tag` parameter.
    pub tag: Option<&'a [u8]>,
    /// All header params raw, from the first `;` (may contain LWS).
    pub params: &'a [u8],
}

impl<'a> NameAddr<'a> {
    /// The header params as `(name, value)` pairs; a quoted value keeps its quotes.
    pub fn params(&self) -> HeaderParams<'a> {
        HeaderParams {
            s: self.params,
            i: 0,
        }
    }
}

/// One Contact value (RFC 3261 §20.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact<'a> {
    /// The display name as written: a quoted-string keeps its quotes and escapes.
    pub display: Option<&'a [u8]>,
    /// The parsed URI; `uri.raw` holds its exact bytes (inside `<>` when bracketed),
    /// which are what is stored and echoed.
    pub uri: Uri<'a>,
    /// The `expires` parameter, saturating at `u32::MAX` when overlarge.
    pub expires: Option<u32>,
    /// The `q` parameter in thousandths (0..=1000).
    pub q: Option<u16>,
    /// The `+sip.instance` value (RFC 5626 §4.1) with its surrounding double quotes
    /// stripped, e.g. `<urn:uuid:...>`.
    pub instance: Option<&'a [u8]>,
    /// The `reg-id` parameter (RFC 5626 §4.2).
    pub reg_id: Option<u32>,
    /// All contact (header) params raw, from the first `;` (may contain LWS, including
    /// folded line breaks; use [`Contact::params`] to rebuild them).
    pub params: &'a [u8],
}

impl<'a> Contact<'a> {
    /// The contact params as `(name, value)` pairs; a quoted value keeps its quotes.
    pub fn params(&self) -> HeaderParams<'a> {
        HeaderParams {
            s: self.params,
            i: 0,
        }
    }
}

/// The Contact headers of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// No Contact header.
    None,
    /// `Contact: *` (RFC 3261 §10.2.2), alone.
    Star,
    /// One or more contacts, in message order.
    List(&'a [Contact<'a>]),
}

/// One header line as received (continuation lines included in `value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// The name as written.
    pub name: &'a [u8],
    /// The name looked up in the header table.
    pub kind: HeaderName,
    /// The value without surrounding LWS.
    pub value: &'a [u8],
}

/// What a response to this request must copy (RFC 3261 §8.2.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo<'a> {
    /// Every Via header value, raw, in order.
    pub vias: &'a [&'a [u8]],
    /// The top via-parm, parsed (the writer adds `received`/`rport` to it).
    pub top_via: Via<'a>,
    /// The From value, raw.
    pub from: Option<&'a [u8]>,
    /// The To value, raw.
    pub to: Option<&'a [u8]>,
    /// The Call-ID value, raw.
    pub call_id: Option<&'a [u8]>,
    /// The CSeq value, raw.
    pub cseq: Option<&'a [u8]>,
    /// Whether the To header carries a `tag` (the writer adds one when it does not).
    pub to_has_tag: bool,
}

/// A parsed, validated request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method.
    pub method: Method<'a>,
    /// The Request-URI.
    pub request_uri: Uri<'a>,
    /// The From header.
    pub from: NameAddr<'a>,
    /// The To header.
    pub to: NameAddr<'a>,
    /// The Call-ID (`word [ "@" word ]`).
    pub call_id: &'a [u8],
    /// The CSeq (its method equals [`Request::method`]).
    pub cseq: CSeq<'a>,
    /// Max-Forwards (0..=255) when present.
    pub max_forwards: Option<u32>,
    /// The contacts.
    pub contacts: Contacts<'a>,
    /// The Expires header (delta-seconds, saturating at `u32::MAX`).
    pub expires: Option<u32>,
    /// Option tags of all Require headers.
    pub require: &'a [&'a [u8]],
    /// Option tags of all Proxy-Require headers.
    pub proxy_require: &'a [&'a [u8]],
    /// Option tags of all Supported headers.
    pub supported: &'a [&'a [u8]],
    /// Path values (RFC 3327), raw, in order.
    pub path: &'a [&'a [u8]],
    /// Content-Length when present.
    pub content_length: Option<u32>,
    /// The first User-Agent value, raw.
    pub user_agent: Option<&'a [u8]>,
    /// The first Authorization value, raw (for digest authentication); any further ones
    /// are in [`Request::other_authorizations`].
    pub authorization: Option<&'a [u8]>,
    /// The header section: the header lines and the empty line that ends them (read by
    /// [`Request::headers`]).
    pub head: &'a [u8],
    /// The body: Content-Length bytes (trailing bytes ignored), or the rest of the
    /// datagram when Content-Length is absent (RFC 3261 §18.3).
    pub body: &'a [u8],
    /// What a response must copy.
    pub echo: Echo<'a>,
}

impl<'a> Request<'a> {
    /// The top Via. Kept once, in [`Echo::top_via`], which every response copies: a
    /// second copy would cost a 136-byte move per parse.
    #[inline]
    pub fn via(&self) -> &Via<'a> {
        &self.echo.top_via
    }

    /// The Authorization values after the first ([`Request::authorization`]), in order,
    /// read again from the header section: the credentials a request carries for other
    /// realms (RFC 3261 §22.4). Lazy: nothing is read until the iterator is advanced.
    pub fn other_authorizations(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.headers()
            .filter(|h| h.kind == HeaderName::Authorization)
            .skip(1)
            .map(|h| h.value)
    }

    /// Every header, raw, in order (continuation lines joined into the value). Read
    /// again from [`Request::head`] on each call: no parse pays for a list that is walked
    /// only on demand (tools, tests, and [`Request::other_authorizations`]).
    pub fn headers(&self) -> RawHeaders<'a> {
        RawHeaders {
            head: self.head,
            pos: 0,
            ends: line_ends(),
        }
    }
}

/// Iterator over the header lines of a parsed request ([`Request::headers`]).
#[derive(Clone, Copy, Debug)]
pub struct RawHeaders<'a> {
    head: &'a [u8],
    pos: usize,
    ends: LineEnds,
}

impl<'a> Iterator for RawHeaders<'a> {
    type Item = RawHeader<'a>;

    fn next(&mut self) -> Option<RawHeader<'a>> {
        // The parser accepted these lines, so every step below succeeds; a failure would
        // end the iteration rather than panic. The empty line that ends the section has
        // no name, which ends it too.
        // The continuation loop is the parser's header loop again: sharing it through a
        // helper cost the parser 113 instructions per REGISTER (measured), and this walk
        // is off the request path.
        let ends = &self.ends;
        let start = self.pos;
        let (line, mut next) = next_line(self.head, start, ends).ok()?;
        let (name_end, colon, kind) = split_header_name(line)?;
        let mut end = start + line.len();
        // Continuation lines belong to the value (RFC 3261 §7.3.1).
        while let Ok((l, n)) = next_line(self.head, next, ends) {
            if !matches!(l.first(), Some(b' ' | b'\t')) {
                break;
            }
            end = next + l.len();
            next = n;
        }
        self.pos = next;
        Some(RawHeader {
            name: line.get(..name_end)?,
            kind,
            value: trim_lws(self.head.get(start + colon + 1..end)?),
        })
    }
}

/// A request the parser refused, and what is needed to answer it when possible.
#[derive(Clone, Copy, Debug)]
pub struct Rejected<'a> {
    /// What is wrong.
    pub error: ParseError,
    /// `Some` when a response can be addressed (a usable top Via).
    pub echo: Option<Echo<'a>>,
}

/// True for a CRLF keep-alive: `CRLF` (pong) or `CRLFCRLF` (ping), RFC 5626 §3.5.1.
pub fn is_keepalive(buf: &[u8]) -> bool {
    buf == b"\r\n" || buf == b"\r\n\r\n"
}

/// Iterator over header params (`*( SEMI generic-param )`, LWS allowed around `;` and `=`):
/// yields `(name, value)` with quoted values kept in their quotes. It stops at the first
/// malformed param.
#[derive(Clone, Debug)]
pub struct HeaderParams<'a> {
    s: &'a [u8],
    i: usize,
}

/// One header param with its position, for the parser's own use.
struct Param<'a> {
    name: &'a [u8],
    value: Option<&'a [u8]>,
    name_end: usize,
    /// The first eight bytes of the name (zero-padded) with every 0x20 bit set: see
    /// [`Param::is`].
    head: u64,
}

/// Every byte's 0x20 bit.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The first eight bytes of `s` (zero-padded) with every 0x20 bit set.
#[inline(always)]
const fn fold_head(s: &[u8]) -> u64 {
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
static PARAM_VALUE: [bool; 256] = {
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
fn param_at(s: &[u8], at: usize) -> Option<Result<(Param<'_>, usize), ()>> {
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
fn scan_params<'a>(
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
struct Element<'a> {
    display: Option<&'a [u8]>,
    params: &'a [u8],
    end: usize,
}

/// Parses one element at `i`. An addr-spec outside `<>` ends at the first `;` (what
/// follows are header params, RFC 3261 §20.10 and RFC 4475 `cparam01`), `,` or LWS, and
/// may not contain `?` (RFC 4475 `regbadct`).
///
/// The URI goes straight into `uri`, a field of the header's final struct: a `Uri` is
/// 128 bytes, and returning it inside the element cost one more copy per From, To and
/// Contact.
fn parse_element<'a>(
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
fn parse_name_addr(s: &[u8], malformed: ParseError) -> Result<NameAddr<'_>, ParseError> {
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
fn parse_qvalue(v: &[u8]) -> Option<u16> {
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
fn parse_contact_list<'a>(s: &'a [u8], out: &mut BVec<'a, Contact<'a>>) -> Result<(), ParseError> {
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
fn parse_via<'a>(s: &'a [u8], version: &[u8]) -> Result<Via<'a>, ParseError> {
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
fn split_commas<'a>(
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
fn parse_option_tags<'a>(s: &'a [u8], out: &mut BVec<'a, &'a [u8]>) -> Result<(), ParseError> {
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
fn parse_cseq<'a>(s: &'a [u8], request: Method<'a>) -> Option<CSeq<'a>> {
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
fn call_id_valid(s: &[u8]) -> bool {
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

/// The parsed request line.
struct RequestLine<'a> {
    method: Method<'a>,
    uri: Result<Uri<'a>, ParseError>,
    /// The version number after `SIP/` (e.g. `2.0`), for the Via check.
    version: &'a [u8],
}

/// `Request-Line = Method SP Request-URI SP SIP-Version CRLF`, single spaces
/// (RFC 4475 `lwsstart`, `trws` and `lwsruri` are rejected).
fn parse_request_line(line: &[u8]) -> Result<RequestLine<'_>, ParseError> {
    const E: ParseError = ParseError::BadRequestLine;
    let sp1 = find(b' ', line).ok_or(E)?;
    let method = line.get(..sp1).unwrap_or_default();
    // Fast path: a known method (a token), a URI that parses (so it holds no space and
    // the second space is the one before the version) and ` SIP/2.0` exactly at the end:
    // the general grammar below gives the same answer.
    let known = Method::from_bytes(method);
    if !matches!(known, Method::Other(_)) {
        let uri = line
            .strip_suffix(b" SIP/2.0")
            .and_then(|l| l.get(sp1 + 1..))
            .and_then(|u| parse_uri(u).ok())
            .filter(|u| u.headers.is_empty());
        if let Some(uri) = uri {
            return Ok(RequestLine {
                method: known,
                uri: Ok(uri),
                version: line.get(line.len().saturating_sub(3)..).unwrap_or_default(),
            });
        }
    }
    let rest = line.get(sp1 + 1..).unwrap_or_default();
    let sp2 = find(b' ', rest).ok_or(E)?;
    let uri = rest.get(..sp2).unwrap_or_default();
    let version = rest.get(sp2 + 1..).unwrap_or_default();
    if method.is_empty() || !all_in(method, &TOKEN) || uri.is_empty() {
        return Err(E);
    }
    // `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT` (ABNF strings are case-insensitive).
    let number = match version.get(..4) {
        Some(p) if p.eq_ignore_ascii_case(b"SIP/") => version.get(4..).unwrap_or_default(),
        _ => return Err(E),
    };
    let dot = find(b'.', number).ok_or(E)?;
    let (major, minor) = (
        number.get(..dot).unwrap_or_default(),
        number.get(dot + 1..).unwrap_or_default(),
    );
    if major.is_empty() || minor.is_empty() || !all_in(major, &DIGIT) || !all_in(minor, &DIGIT) {
        return Err(E);
    }
    Ok(RequestLine {
        method: known,
        // RFC 3261 §19.1.1 (table): URI headers are not allowed in a Request-URI
        // (RFC 4475 `escruri`).
        uri: parse_uri(uri)
            .ok()
            .filter(|u| u.headers.is_empty())
            .ok_or(ParseError::BadRequestUri),
        version: number,
    })
}

/// The CR-or-LF searcher: built once per message (or per raw-header walk) and reused for
/// every line.
type LineEnds = Find2;

/// The searcher [`next_line`] takes.
#[inline]
fn line_ends() -> LineEnds {
    Find2::new(b'\r', b'\n')
}

/// The next line of `buf` from `pos`: `(line without its line end, index after it)`.
/// A line ends at CRLF (a bare LF is tolerated). `Err(Truncated)` when no line end is
/// left; `Err(BadHeaderLine)` for a CR not followed by LF, which a response echoing the
/// line could otherwise carry as a forged line end.
fn next_line<'b>(
    buf: &'b [u8],
    pos: usize,
    ends: &LineEnds,
) -> Result<(&'b [u8], usize), ParseError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let end = ends.find(rest).ok_or(ParseError::Truncated)?;
    let (line, ending) = rest.split_at_checked(end).ok_or(ParseError::Truncated)?;
    match ending {
        [b'\n', ..] => Ok((line, pos + end + 1)),
        [_, b'\n', ..] => Ok((line, pos + end + 2)),
        [_] | [] => Err(ParseError::Truncated),
        _ => Err(ParseError::BadHeaderLine),
    }
}

/// Splits a header line `token *WSP ":" value` into `(name end, colon index, kind)`;
/// `None` when the line is not shaped so.
///
/// Fast path: the first 16 bytes are read as two words; when the first colon is among
/// them, right after a known name (all token bytes by construction), the byte-by-byte
/// check below would give the same answer, so it is skipped.
#[inline]
fn split_header_name(line: &[u8]) -> Option<(usize, usize, HeaderName)> {
    // The lowest flagged byte is the first colon; zero padding past the end of the line
    // is never a colon.
    let colons = |w: u64| first_byte_mask(w, b':');
    let w0 = word_at(line, 0);
    let m0 = colons(w0);
    // A name of up to seven bytes needs only the first word (the second is masked off).
    let (fast, w1) = if m0 != 0 {
        (Some(m0.trailing_zeros() as usize / 8), 0)
    } else {
        let w1 = word_at(line, 8);
        match colons(w1) {
            0 => (None, w1),
            m1 => (Some(8 + m1.trailing_zeros() as usize / 8), w1),
        }
    };
    if let Some(colon) = fast {
        // A known name ends in a letter or digit, so a match also rules out WSP before
        // the colon; an empty name matches nothing.
        let kind = from_prefix_words(colon, w0, w1);
        if kind != HeaderName::Other {
            return Some((colon, colon, kind));
        }
        // An unknown name of at most sixteen bytes: `HeaderName::from_bytes` would do
        // the same lookup again, so only the token check is left (SP and HTAB are not
        // token bytes).
        if colon > 0 && line.get(..colon).is_some_and(|name| all_in(name, &TOKEN)) {
            return Some((colon, colon, HeaderName::Other));
        }
    }
    let name_end = span(line, 0, &TOKEN);
    let colon = span(line, name_end, &WSP);
    if name_end == 0 || line.get(colon) != Some(&b':') {
        return None;
    }
    let name = line.get(..name_end).unwrap_or_default();
    Some((name_end, colon, HeaderName::from_bytes(name)))
}

/// Arena capacity reserved for Via values (a REGISTER from a UA has one).
const VIAS_RESERVED: usize = 2;
/// Arena capacity reserved for contacts once a Contact header is seen.
const CONTACTS_RESERVED: usize = 2;
/// Arena capacity reserved for an option-tag or Path list once its header is seen.
const TAGS_RESERVED: usize = 4;

/// Records the first error only.
fn fail(slot: &mut Option<ParseError>, e: ParseError) {
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// Parses a SIP request from one datagram.
///
/// Leading CRLFs are skipped (RFC 3261 §7.5); bytes after the Content-Length body are
/// ignored (§18.3, RFC 4475 `dblreq`). Responses yield [`ParseError::IsResponse`] with no
/// echo, so the caller can drop them silently. On any other error the [`Rejected::echo`]
/// is filled whenever the top Via parsed, so a 400 (or 505) can be sent.
// Boxing the error would allocate per rejected datagram; the `Ok` side is larger anyway
// and both are moved once into the caller.
#[allow(clippy::result_large_err)]
pub fn parse_request<'a>(buf: &'a [u8], arena: &'a Bump) -> Result<Request<'a>, Rejected<'a>> {
    let reject = |error| Rejected { error, echo: None };
    if buf.len() > DATAGRAM_BYTES_MAX {
        return Err(reject(ParseError::TooLarge));
    }
    let mut pos = 0;
    while buf.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    }
    if pos >= buf.len() {
        return Err(reject(ParseError::Empty));
    }
    if buf
        .get(pos..pos + 4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return Err(reject(ParseError::IsResponse));
    }

    // The request line.
    let ends = line_ends();
    let (line, mut pos) = match next_line(buf, pos, &ends) {
        Ok(l) => l,
        Err(ParseError::BadHeaderLine) => return Err(reject(ParseError::BadRequestLine)),
        Err(e) => return Err(reject(e)),
    };
    let mut line_err = None;
    let (method, request_uri, version) = match parse_request_line(line) {
        Ok(rl) => {
            if !rl.version.eq_ignore_ascii_case(b"2.0") {
                fail(&mut line_err, ParseError::UnsupportedVersion);
            }
            let uri = rl.uri.unwrap_or_else(|e| {
                fail(&mut line_err, e);
                Uri::EMPTY
            });
            (rl.method, uri, rl.version)
        }
        Err(e) => {
            fail(&mut line_err, e);
            (Method::Other(b""), Uri::EMPTY, &b"2.0"[..])
        }
    };

    let mut frame_err = None;
    let mut body_start = None;
    let head_start = pos;
    let mut n_headers = 0usize;
    let mut vias: BVec<'a, &'a [u8]> = BVec::with_capacity_in(VIAS_RESERVED, arena);

    // What the registrar needs, picked out as each header completes.
    let mut err = None; // Faults in header order, after the fixed-precedence ones.
    let mut n_vias = 0usize;
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let (mut max_forwards, mut expires, mut content_length) = (None, None, None);
    let (mut user_agent, mut authorization) = (None, None);
    // Created on first use: most requests carry none or one of these lists.
    let mut contacts: Option<BVec<'a, Contact<'a>>> = None;
    let mut star = 0usize;
    let mut tags: [Option<BVec<'a, &'a [u8]>>; 3] = [None, None, None];
    let mut path: Option<BVec<'a, &'a [u8]>> = None;

    fn once<'a>(
        slot: &mut Option<&'a [u8]>,
        v: &'a [u8],
        dup: ParseError,
        err: &mut Option<ParseError>,
    ) {
        if slot.is_some() {
            fail(err, dup);
        } else {
            *slot = Some(v);
        }
    }

    // One header per iteration: its first line, then any continuation lines (RFC 3261
    // §7.3.1); it is complete once the following line is read and does not start with
    // SP/HTAB, and that line is the next iteration's first line.
    let (mut line, mut next) = match next_line(buf, pos, &ends) {
        Ok(l) => l,
        Err(e) => {
            fail(&mut frame_err, e);
            (&b""[..], usize::MAX)
        }
    };
    'lines: while next != usize::MAX {
        if line.is_empty() {
            body_start = Some(next);
            break;
        }
        let Some((_, colon, kind)) = split_header_name(line) else {
            fail(&mut frame_err, ParseError::BadHeaderLine);
            break;
        };
        if line.len() > HEADER_LINE_BYTES_MAX {
            fail(&mut frame_err, ParseError::HeaderTooLong);
            break;
        }
        let mut value_end = pos + line.len();
        let (following, after) = loop {
            let (l, n) = match next_line(buf, next, &ends) {
                Ok(l) => l,
                Err(e) => {
                    fail(&mut frame_err, e);
                    break 'lines;
                }
            };
            if !matches!(l.first(), Some(b' ' | b'\t')) {
                break (l, n);
            }
            value_end = next + l.len();
            if value_end - pos > HEADER_LINE_BYTES_MAX {
                fail(&mut frame_err, ParseError::HeaderTooLong);
                break 'lines;
            }
            next = n;
        };
        if n_headers >= HEADERS_PER_MESSAGE_MAX {
            fail(&mut frame_err, ParseError::TooManyHeaders);
            break;
        }
        n_headers += 1;
        let v = trim_lws(buf.get(pos + colon + 1..value_end).unwrap_or_default());
        match kind {
            HeaderName::Via => {
                n_vias += 1;
                if n_vias > VIAS_PER_MESSAGE_MAX {
                    fail(&mut err, ParseError::TooManyVias);
                } else {
                    vias.push(v);
                }
            }
            HeaderName::From => once(&mut from, v, ParseError::DuplicateFrom, &mut err),
            HeaderName::To => once(&mut to, v, ParseError::DuplicateTo, &mut err),
            HeaderName::CallId => once(&mut call_id, v, ParseError::DuplicateCallId, &mut err),
            HeaderName::CSeq => once(&mut cseq, v, ParseError::DuplicateCSeq, &mut err),
            HeaderName::MaxForwards => once(
                &mut max_forwards,
                v,
                ParseError::DuplicateMaxForwards,
                &mut err,
            ),
            HeaderName::Expires => once(&mut expires, v, ParseError::DuplicateExpires, &mut err),
            HeaderName::ContentLength => once(
                &mut content_length,
                v,
                ParseError::DuplicateContentLength,
                &mut err,
            ),
            HeaderName::UserAgent => user_agent = user_agent.or(Some(v)),
            HeaderName::Authorization => authorization = authorization.or(Some(v)),
            _ if err.is_some() => {}
            HeaderName::Contact => {
                if v == b"*" {
                    star += 1;
                } else {
                    let list = contacts
                        .get_or_insert_with(|| BVec::with_capacity_in(CONTACTS_RESERVED, arena));
                    if let Err(e) = parse_contact_list(v, list) {
                        fail(&mut err, e);
                    }
                }
            }
            HeaderName::Require | HeaderName::ProxyRequire | HeaderName::Supported => {
                let k = match kind {
                    HeaderName::Require => 0,
                    HeaderName::ProxyRequire => 1,
                    _ => 2,
                };
                if let Some(out) = tags.get_mut(k) {
                    let out =
                        out.get_or_insert_with(|| BVec::with_capacity_in(TAGS_RESERVED, arena));
                    if let Err(e) = parse_option_tags(v, out) {
                        fail(&mut err, e);
                    }
                }
            }
            HeaderName::Path => {
                let out = path.get_or_insert_with(|| BVec::with_capacity_in(TAGS_RESERVED, arena));
                let r = split_commas(
                    v,
                    |p| {
                        if p.is_empty() {
                            return Err(ParseError::BadPath);
                        }
                        if out.len() >= PATH_VALUES_MAX {
                            return Err(ParseError::TooManyPathValues);
                        }
                        out.push(p);
                        Ok(())
                    },
                    ParseError::BadPath,
                );
                if let Err(e) = r {
                    fail(&mut err, e);
                }
            }
            _ => {}
        }
        (pos, line, next) = (next, following, after);
    }
    let head = buf
        .get(head_start..body_start.unwrap_or(head_start))
        .unwrap_or_default();
    let n_contacts = contacts.as_ref().map_or(0, BVec::len);
    if star > 1 || (star == 1 && n_contacts > 0) {
        fail(&mut err, ParseError::BadStarContact);
    }

    // The echo: needs a top Via with a sent-by.
    let vias: &'a [&'a [u8]] = vias.into_bump_slice();
    let top_via = match vias.first() {
        Some(v) => parse_via(v, version),
        None => Err(ParseError::MissingVia),
    };
    // `Result`s rather than `Option<Result>`s: the parser's result is written in place
    // instead of copied (~180 bytes) into an `Option`.
    let to_parsed = match to {
        Some(t) => parse_name_addr(t, ParseError::BadTo),
        None => Err(ParseError::MissingTo),
    };
    let echo = top_via.ok().map(|top_via| Echo {
        vias,
        top_via,
        from,
        to,
        call_id,
        cseq,
        to_has_tag: matches!(to_parsed, Ok(NameAddr { tag: Some(_), .. })),
    });
    let reject = |error| Err(Rejected { error, echo });
    if let Some(e) = line_err.or(frame_err) {
        return reject(e);
    }
    if let Err(e) = top_via {
        return reject(e);
    }
    // From and To stay in their `Result`s and are copied once, into the `Request`: moving
    // them out here costs a ~180-byte copy each.
    let from_parsed = match from {
        Some(f) => parse_name_addr(f, ParseError::BadFrom),
        None => Err(ParseError::MissingFrom),
    };
    let from = match &from_parsed {
        Ok(f) => f,
        Err(e) => return reject(*e),
    };
    let to = match &to_parsed {
        Ok(t) => t,
        Err(e) => return reject(*e),
    };
    let Some(call_id) = call_id else {
        return reject(ParseError::MissingCallId);
    };
    if call_id.len() > CALL_ID_BYTES_MAX {
        return reject(ParseError::CallIdTooLong);
    }
    if !call_id_valid(call_id) {
        return reject(ParseError::BadCallId);
    }
    let Some(cseq) = cseq else {
        return reject(ParseError::MissingCSeq);
    };
    let Some(cseq) = parse_cseq(cseq, method) else {
        return reject(ParseError::BadCSeq);
    };
    if cseq.method != method {
        return reject(ParseError::CSeqMethodMismatch);
    }
    let max_forwards = match max_forwards.map(|m| digits_u32(m).filter(|&m| m <= 255)) {
        Some(None) => return reject(ParseError::BadMaxForwards),
        Some(Some(m)) => Some(m),
        None => None,
    };
    let expires = match expires.map(digits_saturating) {
        Some(None) => return reject(ParseError::BadExpires),
        Some(Some(e)) => Some(e),
        None => None,
    };
    let content_length = match content_length.map(digits_u32) {
        Some(None) => return reject(ParseError::BadContentLength),
        Some(Some(l)) => Some(l),
        None => None,
    };
    if let Some(e) = err {
        return reject(e);
    }
    let rest = buf
        .get(body_start.unwrap_or(buf.len())..)
        .unwrap_or_default();
    let body = match content_length {
        Some(l) => match rest.get(..l as usize) {
            Some(b) => b,
            None => return reject(ParseError::ContentLengthMismatch),
        },
        None => rest,
    };
    let Some(echo) = echo else {
        return reject(ParseError::BadVia); // Unreachable: the top Via parsed.
    };
    let [require, proxy_require, supported] =
        tags.map(|t| t.map_or(&[][..], BVec::into_bump_slice));
    Ok(Request {
        method,
        request_uri,
        from: *from,
        to: *to,
        call_id,
        cseq,
        max_forwards,
        contacts: match (star, contacts) {
            (_, Some(list)) if !list.is_empty() => Contacts::List(list.into_bump_slice()),
            (0, _) => Contacts::None,
            _ => Contacts::Star,
        },
        expires,
        require,
        proxy_require,
        supported,
        path: path.map_or(&[][..], BVec::into_bump_slice),
        content_length,
        user_agent,
        authorization,
        head,
        body,
        echo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REGISTER in the style of RFC 3665 §2.1, with the given extra header lines.
    fn register(extra: &str) -> String {
        format!(
            "REGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n\
             Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n\
             Max-Forwards: 70\r\n\
             From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
             To: Bob <sips:bob@biloxi.example.com>\r\n\
             Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
             CSeq: 1 REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// `req! { name, bytes, |req| { checks } }` for a request that must parse, and
    /// `req! { name, bytes, Err(error) }` for one that must not.
    macro_rules! req {
        ($name:ident, $buf:expr, |$req:ident| $body:block) => {
            #[test]
            fn $name() {
                let arena = Bump::new();
                let owned = $buf;
                let buf: &[u8] = owned.as_ref();
                let $req = match parse_request(buf, &arena) {
                    Ok(r) => r,
                    Err(r) => panic!("rejected: {:?}", r.error),
                };
                $body
            }
        };
        ($name:ident, $buf:expr, Err($err:expr)) => {
            #[test]
            fn $name() {
                let arena = Bump::new();
                let owned = $buf;
                let buf: &[u8] = owned.as_ref();
                match parse_request(buf, &arena) {
                    Ok(r) => panic!("parsed: {:?}", r.method),
                    Err(r) => assert_eq!(r.error, $err),
                }
            }
        };
    }

    fn contacts<'a>(req: &Request<'a>) -> &'a [Contact<'a>] {
        match req.contacts {
            Contacts::List(c) => c,
            other => panic!("{other:?}"),
        }
    }

    req! { rfc3665_register, register("Contact: <sips:bob@client.biloxi.example.com>\r\n"), |req| {
        assert_eq!(req.method, Method::Register);
        assert_eq!(req.request_uri.host, b"ss2.biloxi.example.com");
        assert_eq!(req.via().transport, Transport::Tls);
        assert_eq!((req.via().host, req.via().port), (&b"client.biloxi.example.com"[..], Some(5061)));
        assert_eq!(req.via().branch, Some(&b"z9hG4bKnashds7"[..]));
        assert_eq!(req.via().rport, None);
        assert_eq!(req.from.display, Some(&b"Bob"[..]));
        assert_eq!(req.from.tag, Some(&b"a73kszlfl"[..]));
        assert_eq!(req.from.params().collect::<Vec<_>>(), [(&b"tag"[..], Some(&b"a73kszlfl"[..]))]);
        assert_eq!(req.to.tag, None);
        assert_eq!(req.to.uri.raw, b"sips:bob@biloxi.example.com");
        assert_eq!(req.call_id, b"1j9FpLxk3uxtm8tn@biloxi.example.com");
        assert_eq!(req.cseq, CSeq { seq: 1, method: Method::Register });
        assert_eq!(req.max_forwards, Some(70));
        assert_eq!(req.content_length, Some(0));
        assert_eq!(contacts(&req)[0].uri.raw, b"sips:bob@client.biloxi.example.com");
        assert_eq!(req.headers().count(), 8);
        assert_eq!(
            req.headers().nth(1).map(|h| h.kind),
            Some(HeaderName::MaxForwards)
        );
        assert_eq!(req.echo.vias.len(), 1);
        assert!(!req.echo.to_has_tag);
        assert_eq!(req.echo.cseq, Some(&b"1 REGISTER"[..]));
        assert!(req.body.is_empty());
    }}

    req! { compact_forms, "REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1;rport\r\n\
        f: <sip:a@example.com>;tag=1\r\nt: sip:a@example.com\r\ni: abc\r\nCSEQ: 2 REGISTER\r\n\
        m: <sip:a@10.0.0.1>\r\nk: path, gruu\r\ne: gzip\r\nl: 4\r\n\r\nbodyEXTRA", |req| {
        assert_eq!(req.via().rport, Some(None));
        assert_eq!(req.call_id, b"abc");
        assert_eq!(req.supported, &[&b"path"[..], b"gruu"]);
        assert_eq!(req.body, b"body");
        assert_eq!(contacts(&req).len(), 1);
        assert_eq!(req.max_forwards, None);
    }}

    req! { leading_crlf_and_folding, "\r\n\r\nREGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP\r\n  h.example.com\r\n\t;branch=z9hG4bK1\r\n\
        From: <sip:a@example.com>\r\n ;tag=1\r\nTo: sip:a@example.com\r\nCall-ID: x\r\nCSeq: 1\r\n REGISTER\r\n\
        Contact: \"A, B\" <sip:a@h1>;\r\n  q=0.5,\r\n  <sip:a@h2>\r\nExpires: 60\r\n\r\n", |req| {
        assert_eq!(req.via().host, b"h.example.com");
        assert_eq!(req.from.tag, Some(&b"1"[..]));
        let c = contacts(&req);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].display, Some(&b"\"A, B\""[..]));
        assert_eq!(c[0].q, Some(500));
        assert_eq!(c[1].uri.raw, b"sip:a@h2");
        assert_eq!(req.expires, Some(60));
        assert_eq!(req.echo.vias[0], b"SIP/2.0/UDP\r\n  h.example.com\r\n\t;branch=z9hG4bK1");
    }}

    req! { quoted_display_names, register("Contact: \"Bob \\\"the, <builder>\\\"\" <sip:bob@h1>, sip:bob@h2;q=1, \
        Bob Smith <sip:bob@h3>;expires=0\r\nContact: <sip:bob@h4>;q=0.001;expires=99999999999\r\n"), |req| {
        let c = contacts(&req);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].display, Some(&b"\"Bob \\\"the, <builder>\\\"\""[..]));
        assert_eq!((c[1].uri.raw, c[1].q), (&b"sip:bob@h2"[..], Some(1000)));
        assert_eq!((c[2].display, c[2].expires), (Some(&b"Bob Smith"[..]), Some(0)));
        assert_eq!((c[3].q, c[3].expires), (Some(1), Some(u32::MAX)));
    }}

    req! { outbound_params, register("Contact: <sip:bob@192.0.2.4;transport=tcp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1;expires=3600\r\n"), |req| {
        let c = &contacts(&req)[0];
        assert_eq!(c.instance, Some(&b"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"[..]));
        assert_eq!((c.reg_id, c.expires, c.q), (Some(1), Some(3600), None));
        assert_eq!(c.uri.param(b"ob"), Some(None));
        assert_eq!(c.params().map(|(n, _)| n).collect::<Vec<_>>(), [&b"+sip.instance"[..], b"reg-id", b"expires"]);
        assert!(c.params.starts_with(b";+sip.instance="));
    }}

    req! { long_param_names_any_case, register("Contact: <sip:bob@h>;+SIP.Instance=\"<urn:x>\";+sip.instancf=\"<urn:y>\"\r\n"), |req| {
        // Only the first name matches `+sip.instance` (it differs from the second in its
        // last byte, which the overlapping word compare must see).
        assert_eq!(contacts(&req)[0].instance, Some(&b"<urn:x>"[..]));
    }}

    #[test]
    fn via_and_cseq_fast_paths_agree_with_the_grammar() {
        let parse = |via: &str, cseq: &str| {
            let arena = Bump::new();
            let msg = register("")
                .replace("SIP/2.0/TLS client", via)
                .replace("CSeq: 1 REGISTER", cseq);
            match parse_request(msg.as_bytes(), &arena) {
                Ok(r) => Ok(format!(
                    "{:?}",
                    (
                        r.via().transport,
                        r.via().host,
                        r.via().port,
                        r.via().branch,
                        r.cseq
                    )
                )),
                Err(r) => Err(r.error),
            }
        };
        let fast = parse("SIP/2.0/UDP client", "CSeq: 7 REGISTER").unwrap();
        assert!(fast.starts_with("(Udp,"), "{fast}");
        assert!(fast.contains("CSeq { seq: 7, method: Register }"), "{fast}");
        // The same values through the general grammar (case, SWS around `/`, LWS in CSeq).
        assert_eq!(
            parse("sip / 2.0 / udp  client", "CSeq: 7  REGISTER"),
            Ok(fast)
        );
        let tcp = parse("SIP/2.0/TCP client", "CSeq: 7 REGISTER").unwrap();
        assert!(tcp.starts_with("(Tcp,"), "{tcp}");
        let other = parse("SIP/2.0/UDPX client", "CSeq: 7 REGISTER").unwrap();
        assert!(other.starts_with("(Other([85, 68, 80, 88]),"), "{other}");
        for cseq in ["CSeq: 7 REGISTERX", "CSeq: 7 register"] {
            let r = parse("SIP/2.0/UDP client", cseq);
            assert_eq!(r, Err(ParseError::CSeqMethodMismatch), "{cseq}");
        }
    }

    req! { star, register("Contact: *\r\nExpires: 0\r\n"), |req| {
        assert_eq!(req.contacts, Contacts::Star);
        assert_eq!(req.expires, Some(0));
    }}

    req! { unbracketed_params_are_header_params, register("Contact: sip:bob@h;unknownparam;q=0.7\r\n"), |req| {
        let c = &contacts(&req)[0];
        assert_eq!(c.uri.raw, b"sip:bob@h");
        assert_eq!(c.uri.params, b"");
        assert_eq!(c.q, Some(700));
        assert_eq!(c.params, b";unknownparam;q=0.7");
    }}

    req! { bracketed_params_are_uri_params, register("Contact: <sip:bob@h;unknownparam>\r\n"), |req| {
        let c = &contacts(&req)[0];
        assert_eq!(c.uri.param(b"unknownparam"), Some(None));
        assert_eq!(c.params, b"");
    }}

    req! { path_and_option_tags, register("Path: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\nPath: <sip:p3;lr>\r\n\
        Require: path\r\nProxy-Require: foo, bar\r\nSupported:\r\nUser-Agent: X/1\r\nAuthorization: Digest username=\"bob\", realm=\"b\"\r\n"), |req| {
        assert_eq!(req.path, &[&b"<sip:p1.example.com;lr>"[..], b"<sip:p2.example.com;lr>", b"<sip:p3;lr>"]);
        assert_eq!(req.require, &[&b"path"[..]]);
        assert_eq!(req.proxy_require, &[&b"foo"[..], b"bar"]);
        assert!(req.supported.is_empty());
        assert_eq!(req.user_agent, Some(&b"X/1"[..]));
        assert_eq!(req.authorization, Some(&b"Digest username=\"bob\", realm=\"b\""[..]));
    }}

    req! { escaped_method_is_other, "RE%47IST%45R sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
        To: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 RE%47IST%45R\r\n\r\n", |req| {
        assert_eq!(req.method, Method::Other(b"RE%47IST%45R"));
    }}

    req! { ipv6_via, "OPTIONS sip:[2001:db8::9]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1] : 5070 ;rport=5070;received=2001:db8::9:255;maddr=[::1]\r\n\
        From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n", |req| {
        assert_eq!((req.via().host, req.via().port, req.via().rport), (&b"[2001:db8::9:1]"[..], Some(5070), Some(Some(5070))));
        assert_eq!(req.via().received, Some(&b"2001:db8::9:255"[..]));
        assert_eq!(req.via().maddr, Some(&b"[::1]"[..]));
        assert_eq!(req.request_uri.port, Some(5070));
    }}

    req! { response_is_not_request, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", Err(ParseError::IsResponse) }
    req! { empty, "\r\n\r\n", Err(ParseError::Empty) }
    req! { bad_q, register("Contact: <sip:a@h>;q=1.5\r\n"), Err(ParseError::BadContactQ) }
    req! { bad_q_digits, register("Contact: <sip:a@h>;q=0.1234\r\n"), Err(ParseError::BadContactQ) }
    req! { bad_contact_expires, register("Contact: <sip:a@h>;expires=soon\r\n"), Err(ParseError::BadContactExpires) }
    req! { bad_reg_id, register("Contact: <sip:a@h>;reg-id=99999999999\r\n"), Err(ParseError::BadContactRegId) }
    req! { unbracketed_headers, register("Contact: sip:a@h?Route=x\r\n"), Err(ParseError::BadContact) }
    req! { star_with_others, register("Contact: *\r\nContact: <sip:a@h>\r\n"), Err(ParseError::BadStarContact) }
    req! { contact_garbage_after, register("Contact: <sip:a@h> junk\r\n"), Err(ParseError::BadContact) }
    req! { long_contact_uri, register(&format!("Contact: <sip:{}@h>\r\n", "a".repeat(600))), Err(ParseError::ContactUriTooLong) }
    req! { too_many_contacts, register(&"Contact: <sip:a@h>\r\n".repeat(33)), Err(ParseError::TooManyContacts) }
    req! { too_many_headers, register(&"X-A: b\r\n".repeat(96)), Err(ParseError::TooManyHeaders) }
    req! { header_too_long, register(&format!("X-A: {}\r\n", "b".repeat(5000))), Err(ParseError::HeaderTooLong) }
    req! { too_large, " ".repeat(DATAGRAM_BYTES_MAX + 1), Err(ParseError::TooLarge) }
    req! { long_call_id, register("").replace("Call-ID: ", &format!("Call-ID: {}", "x".repeat(255))), Err(ParseError::CallIdTooLong) }
    req! { bad_call_id, register("").replace("Call-ID: 1j9", "Call-ID: a b"), Err(ParseError::BadCallId) }
    req! { missing_call_id, register("").replace("Call-ID", "X-Call-ID"), Err(ParseError::MissingCallId) }
    req! { missing_via, register("").replace("Via", "X-Via"), Err(ParseError::MissingVia) }
    req! { missing_from, register("").replace("From", "X-From"), Err(ParseError::MissingFrom) }
    req! { missing_to, register("").replace("To:", "X-To:"), Err(ParseError::MissingTo) }
    req! { missing_cseq, register("").replace("CSeq", "X-CSeq"), Err(ParseError::MissingCSeq) }
    req! { duplicate_to, register("To: <sip:x@h>\r\n"), Err(ParseError::DuplicateTo) }
    req! { duplicate_call_id, register("i: other\r\n"), Err(ParseError::DuplicateCallId) }
    req! { bad_cseq, register("").replace("CSeq: 1 ", "CSeq: 4294967296 "), Err(ParseError::BadCSeq) }
    req! { cseq_mismatch, register("").replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE"), Err(ParseError::CSeqMethodMismatch) }
    req! { max_forwards_range, register("").replace("Max-Forwards: 70", "Max-Forwards: 256"), Err(ParseError::BadMaxForwards) }
    req! { bad_expires, register("Expires: -1\r\n"), Err(ParseError::BadExpires) }
    req! { bad_content_length, register("").replace("Content-Length: 0", "Content-Length: x"), Err(ParseError::BadContentLength) }
    req! { short_body, register("").replace("Content-Length: 0", "Content-Length: 5"), Err(ParseError::ContentLengthMismatch) }
    req! { bad_version, register("").replace("SIP/2.0\r\n", "SIP/3.0\r\n"), Err(ParseError::UnsupportedVersion) }
    req! { bad_request_line, register("").replace("REGISTER sips", "REGISTER  sips"), Err(ParseError::BadRequestLine) }
    req! { bad_request_uri, register("").replace("sips:ss2", "sips:ss 2"), Err(ParseError::BadRequestLine) }
    req! { bad_header_line, register("NoColon\r\n"), Err(ParseError::BadHeaderLine) }
    req! { bare_cr, register("X-A: b\rInjected: c\r\n"), Err(ParseError::BadHeaderLine) }
    req! { bare_lf_tolerated, register("").replace("\r\n", "\n"), |req| { assert_eq!(req.cseq.seq, 1); } }
    req! { truncated, "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", Err(ParseError::Truncated) }
    req! { folded_header_too_long, register(&format!("X-A: b\r\n {}\r\n {}\r\n", "c".repeat(2100), "d".repeat(2100))), Err(ParseError::HeaderTooLong) }
    req! { lone_cr_in_a_continuation, register("X-A: b\r\n c\rd\r\n"), Err(ParseError::BadHeaderLine) }
    req! { lone_cr_at_the_end, "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h\r", Err(ParseError::Truncated) }
    req! { continuation_after_request_line, "REGISTER sip:h SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n", Err(ParseError::BadHeaderLine) }
    req! { bare_lf_and_a_fold_before_the_body, register("Expires:\r\n 60\n").replace("Content-Length: 0\r\n\r\n", "Content-Length: 4\r\n\r\nbody"), |req| {
        assert_eq!(req.expires, Some(60));
        assert_eq!(req.body, b"body");
    } }

    #[test]
    fn headers_complete_before_a_truncation_are_echoed() {
        // The last header is recorded only once the line after it is read: a datagram cut
        // right after CSeq has no final empty line, so its CSeq is not echoed.
        let buf = b"REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n";
        let arena = Bump::new();
        let rejected = parse_request(buf, &arena).expect_err("truncated");
        assert_eq!(rejected.error, ParseError::Truncated);
        let echo = rejected.echo.expect("the top Via parsed");
        assert_eq!(echo.call_id, Some(&b"c"[..]));
        assert_eq!(echo.cseq, None);
    }
    req! { bad_option_tag, register("Require: a b\r\n"), Err(ParseError::BadOptionTag) }
    req! { bad_to, register("").replace("To: Bob <sips:bob@biloxi.example.com>", "To: Bob <sips:bob@biloxi.example.com"), Err(ParseError::BadTo) }

    #[test]
    fn raw_headers_are_read_again_in_order_with_folds_joined() {
        let msg = "REGISTER sip:example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1\r\n\
            From: <sip:a@example.com>;tag=1\r\n\
            To: <sip:a@example.com>\r\n\
            Subject: one\r\n \t two \r\n\tthree\r\n\
            X-Custom :  spaced  \r\n\
            Call-ID: c\r\n\
            CSeq: 1 REGISTER\r\n\
            l: 4\r\n\r\nbody";
        let arena = Bump::new();
        let req = parse_request(msg.as_bytes(), &arena).expect("parses");
        let got: Vec<(&[u8], HeaderName, &[u8])> =
            req.headers().map(|h| (h.name, h.kind, h.value)).collect();
        let want: Vec<(&[u8], HeaderName, &[u8])> = vec![
            (
                b"Via",
                HeaderName::Via,
                b"SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1",
            ),
            (b"From", HeaderName::From, b"<sip:a@example.com>;tag=1"),
            (b"To", HeaderName::To, b"<sip:a@example.com>"),
            (
                b"Subject",
                HeaderName::Subject,
                b"one\r\n \t two \r\n\tthree",
            ),
            (b"X-Custom", HeaderName::Other, b"spaced"),
            (b"Call-ID", HeaderName::CallId, b"c"),
            (b"CSeq", HeaderName::CSeq, b"1 REGISTER"),
            (b"l", HeaderName::ContentLength, b"4"),
        ];
        assert_eq!(got, want);
        assert_eq!(req.body, b"body");
        assert!(req.head.ends_with(b"l: 4\r\n\r\n"));
        // The iterator is a value: walking it twice gives the same headers.
        let it = req.headers();
        assert_eq!(it.count(), it.count());
    }

    #[test]
    fn rejected_keeps_echo() {
        let arena = Bump::new();
        let buf = register("Contact: <sip:a@h>;q=2\r\n");
        let r = parse_request(buf.as_bytes(), &arena).unwrap_err();
        assert_eq!(r.error.reason(), "Invalid q value in Contact");
        let echo = r.echo.unwrap();
        assert_eq!(
            echo.vias,
            &[&b"SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7"[..]]
        );
        assert_eq!(
            echo.call_id,
            Some(&b"1j9FpLxk3uxtm8tn@biloxi.example.com"[..])
        );
        assert_eq!(
            echo.from,
            Some(&b"Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl"[..])
        );
        // A foreign version is still answerable when the Via agrees with it (505).
        let buf = register("").replace("SIP/2.0", "SIP/7.0");
        let r = parse_request(buf.as_bytes(), &arena).unwrap_err();
        assert_eq!(
            (r.error, r.error.status()),
            (ParseError::UnsupportedVersion, 505)
        );
        assert!(r.echo.is_some());
        // No Via, no echo.
        let buf = register("").replace("Via", "X-Via");
        assert!(
            parse_request(buf.as_bytes(), &arena)
                .unwrap_err()
                .echo
                .is_none()
        );
    }

    #[test]
    fn keepalives() {
        assert!(is_keepalive(b"\r\n"));
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(!is_keepalive(b""));
        assert!(!is_keepalive(b"\r\n\r\n\r\n"));
        assert!(!is_keepalive(b"REGISTER"));
    }

    #[test]
    fn qvalues() {
        for (s, q) in [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0.5", Some(500)),
            ("0.", Some(0)),
            ("0.125", Some(125)),
            ("1.001", None),
            ("2", None),
            (".5", None),
            ("0.5x", None),
            ("", None),
        ] {
            assert_eq!(parse_qvalue(s.as_bytes()), q, "{s}");
        }
    }

    #[test]
    fn call_id_grammar() {
        for ok in [
            &b"a"[..],
            b"a@b",
            b"1j9FpLxk3u@biloxi.example.com",
            b"<x>:y/z?",
        ] {
            assert!(call_id_valid(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"@",
            b"@a",
            b"a@",
            b"a@b@c",
            b"a b",
            b"a@b c",
            b"a;b",
        ] {
            assert!(!call_id_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn truncations_never_panic() {
        let buf = register(
            "Contact: \"A\" <sip:a@h;lr>;q=0.5;+sip.instance=\"<urn:x>\", sip:b@h\r\nPath: <sip:p;lr>\r\n",
        );
        let arena = Bump::new();
        for n in 0..buf.len() {
            let _ = parse_request(&buf.as_bytes()[..n], &arena);
        }
    }
}
