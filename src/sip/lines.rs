//! The line structure of a message: the request line, line ends, header names and
//! the colon, and the on-demand walk over the raw header lines ([`RawHeaders`]).
//!
//! Why a file of its own: this is the framing inside one message (RFC 3261 §7: a start
//! line, header lines with continuations, an empty line), shared by the one-pass parser
//! and by [`Request::headers`](super::Request::headers); what a header's value means
//! is `header_values`. Framing of a byte *stream* into messages is `framing`.

use super::chars::{DIGIT, Find2, TOKEN, WSP, all_in, find, first_byte_mask, span, trim_lws};
use super::error::ParseError;
use super::message::{Method, RawHeader};
use super::names::{HeaderName, from_prefix_words, word_at};
use super::uri::{Uri, parse_uri};

/// Iterator over the header lines of a parsed request ([`Request::headers`]).
#[derive(Clone, Copy, Debug)]
pub struct RawHeaders<'a> {
    head: &'a [u8],
    pos: usize,
    ends: LineEnds,
}

impl<'a> RawHeaders<'a> {
    /// The header lines of `head` (a header section the parser accepted).
    pub(super) fn new(head: &'a [u8]) -> Self {
        Self {
            head,
            pos: 0,
            ends: line_ends(),
        }
    }
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

/// True for a CRLF keep-alive: `CRLF` (pong) or `CRLFCRLF` (ping), RFC 5626 §3.5.1.
pub fn is_keepalive(buf: &[u8]) -> bool {
    buf == b"\r\n" || buf == b"\r\n\r\n"
}

/// The parsed request line.
pub(super) struct RequestLine<'a> {
    pub(super) method: Method<'a>,
    pub(super) uri: Result<Uri<'a>, ParseError>,
    /// The version number after `SIP/` (e.g. `2.0`), for the Via check.
    pub(super) version: &'a [u8],
}

/// `Request-Line = Method SP Request-URI SP SIP-Version CRLF`, single spaces
/// (RFC 4475 `lwsstart`, `trws` and `lwsruri` are rejected).
pub(super) fn parse_request_line(line: &[u8]) -> Result<RequestLine<'_>, ParseError> {
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
pub(super) type LineEnds = Find2;

/// The searcher [`next_line`] takes.
#[inline]
pub(super) fn line_ends() -> LineEnds {
    Find2::new(b'\r', b'\n')
}

/// The next line of `buf` from `pos`: `(line without its line end, index after it)`.
/// A line ends at CRLF (a bare LF is tolerated). `Err(Truncated)` when no line end is
/// left; `Err(BadHeaderLine)` for a CR not followed by LF, which a response echoing the
/// line could otherwise carry as a forged line end.
pub(super) fn next_line<'b>(
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
pub(super) fn split_header_name(line: &[u8]) -> Option<(usize, usize, HeaderName)> {
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
