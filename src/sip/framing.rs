//! Framing SIP messages off a byte stream (TCP, TLS), RFC 3261 §18.3.
//!
//! Why: on UDP a datagram is one message. On a stream the receiver must find where a
//! message ends: the header section ends at the first empty line (CRLFCRLF), and the
//! body is exactly `Content-Length` bytes, a header that is therefore mandatory on a
//! stream (§18.3, §20.14). [`frame`] answers that question for the bytes received so
//! far, without copying and without state: the caller keeps one receive buffer per
//! connection, calls [`frame`] after every read, hands each complete message to
//! [`parse_request`](super::parse_request) and drops its bytes from the buffer.
//!
//! Also on a stream: a CRLFCRLF "ping" before a message asks for a CRLF "pong" (RFC
//! 5626 §4.4.1), and a lone CRLF (a pong, or a stray line end) before a start line is
//! ignored (RFC 3261 §7.5). Both come back as [`Framed::KeepAlive`].
//!
//! Bounds: a peer that never sends the empty line, or announces a huge body, is refused
//! as soon as that is certain ([`FramingError::TooLarge`]), never after buffering it:
//! the header section is at most [`HEADER_SECTION_BYTES_MAX`] and the whole message at
//! most [`STREAM_MESSAGE_BYTES_MAX`]. Every error is fatal for the connection: after
//! it, where the next message starts is unknown.
//!
//! Line ends are CRLF, as RFC 3261 §7 writes them; the datagram parser tolerates bare
//! LFs, but on a stream a section ended by LFLF is never seen to end (and ends as
//! `TooLarge`).

use std::fmt;

use super::chars::trim_lws;
use super::limits::{HEADER_SECTION_BYTES_MAX, STREAM_MESSAGE_BYTES_MAX};

/// The CRLFCRLF keep-alive "ping" (RFC 5626 §4.4.1); the answer is a CRLF "pong".
pub const KEEPALIVE_PING: &[u8] = b"\r\n\r\n";

/// What the start of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framed {
    /// One whole message: its first `len` bytes (header section and body).
    Complete {
        /// Bytes of the message, from the start of the buffer.
        len: usize,
    },
    /// Not enough bytes yet to know; read more. Within the limits so far.
    Partial,
    /// A keep-alive, to consume: `len` 4 is a ping ([`KEEPALIVE_PING`], answer with a
    /// CRLF pong), `len` 2 a pong or a stray CRLF before a start line (no answer).
    KeepAlive {
        /// Bytes of the keep-alive, from the start of the buffer.
        len: usize,
    },
}

/// Why the stream cannot be framed; the connection should be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// The header section has no Content-Length, which a stream requires (§18.3).
    MissingContentLength,
    /// The header section is longer than [`HEADER_SECTION_BYTES_MAX`], or the message
    /// (header section plus Content-Length) than [`STREAM_MESSAGE_BYTES_MAX`].
    TooLarge,
    /// A Content-Length that is not `1*DIGIT`, or two that disagree.
    BadContentLength,
}

impl FramingError {
    /// A short description, for logs and counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingContentLength => "no Content-Length on a stream",
            Self::TooLarge => "message too large",
            Self::BadContentLength => "malformed Content-Length",
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for FramingError {}

/// Frame the message (or keep-alive) at the start of `buf`, the bytes received so far
/// on a stream and not yet consumed.
pub fn frame(buf: &[u8]) -> Result<Framed, FramingError> {
    frame_within(buf, STREAM_MESSAGE_BYTES_MAX)
}

/// [`frame`] with a smaller message bound, in bytes (a connection's read buffer): the
/// header section and the whole message are each at most `message_bytes_max` (and at
/// most [`HEADER_SECTION_BYTES_MAX`] and [`STREAM_MESSAGE_BYTES_MAX`]). So a buffer of
/// `message_bytes_max` bytes is never full while the answer is `Partial`.
pub fn frame_within(buf: &[u8], message_bytes_max: usize) -> Result<Framed, FramingError> {
    let message_max = message_bytes_max.min(STREAM_MESSAGE_BYTES_MAX);
    let head_max = message_max.min(HEADER_SECTION_BYTES_MAX);
    if let Some(keepalive) = keepalive(buf) {
        return Ok(keepalive);
    }
    let Some(end) = memchr::memmem::find(buf, KEEPALIVE_PING) else {
        // No empty line yet. Once the buffer is at the limit without one, any empty
        // line would end past it.
        return if buf.len() >= head_max {
            Err(FramingError::TooLarge)
        } else {
            Ok(Framed::Partial)
        };
    };
    let head_len = end + KEEPALIVE_PING.len();
    if head_len > head_max {
        return Err(FramingError::TooLarge);
    }
    let body_len = content_length(&buf[..head_len])?;
    let len = head_len.saturating_add(body_len);
    if len > message_max {
        return Err(FramingError::TooLarge);
    }
    Ok(if buf.len() >= len {
        Framed::Complete { len }
    } else {
        Framed::Partial
    })
}

/// The part of a refused stream message that can address its answer (the 400 or 513
/// of a [`FramingError`]): the header section up to and including its empty line when
/// it is complete, else every complete line received (the section cut short; the
/// parser reads the Via, From, To, Call-ID and CSeq it holds). Leading CRLFs are kept
/// (the parser skips them, RFC 3261 §7.5).
pub fn head_for_answer(buf: &[u8]) -> &[u8] {
    if let Some(end) = memchr::memmem::find(buf, KEEPALIVE_PING) {
        return &buf[..end + KEEPALIVE_PING.len()];
    }
    memchr::memmem::rfind(buf, b"\r\n").map_or(&buf[..0], |end| &buf[..end + 2])
}

/// A keep-alive at the start of `buf`, or `Partial` when `buf` may still become one;
/// `None` when it is (the start of) a message.
fn keepalive(buf: &[u8]) -> Option<Framed> {
    match buf {
        [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => Some(Framed::Partial),
        [b'\r', b'\n', b'\r', b'\n', ..] => Some(Framed::KeepAlive { len: 4 }),
        [b'\r', b'\n', ..] => Some(Framed::KeepAlive { len: 2 }),
        _ => None,
    }
}

/// The Content-Length of a complete header section `head` (start line to CRLFCRLF).
/// The name is case-insensitive, `l` is its compact form (§7.3.3), whitespace may come
/// before the colon (§7.3.1) and the value may be folded onto continuation lines.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    // Header lines start after the start line; the section ends with an empty line.
    let mut pos = line_end(head, 0);
    while pos < head.len() {
        let end = line_end(head, pos);
        // A header's value runs over its continuation lines (starting with SP or HT).
        let mut value_end = end;
        while matches!(head.get(value_end), Some(b' ' | b'\t')) {
            value_end = line_end(head, value_end);
        }
        let line = &head[pos..end];
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = trim_lws(&line[..colon]);
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
                let length = parse_length(trim_lws(&head[pos + colon + 1..value_end]))?;
                match found {
                    Some(earlier) if earlier != length => {
                        return Err(FramingError::BadContentLength);
                    }
                    _ => found = Some(length),
                }
            }
        }
        pos = value_end;
    }
    found.ok_or(FramingError::MissingContentLength)
}

/// The index after the LF that ends the line starting at `from` (`head.len()` when
/// none does).
fn line_end(head: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &head[from..]).map_or(head.len(), |i| from + i + 1)
}

/// `Content-Length = 1*DIGIT` (§20.14). Saturating: a length past `usize` is past
/// every limit, which [`FramingError::TooLarge`] then says.
fn parse_length(digits: &[u8]) -> Result<usize, FramingError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(FramingError::BadContentLength);
    }
    Ok(digits.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(extra_headers: &str, body: &str) -> String {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
             To: <sip:alice@example.com>\r\n\
             {extra_headers}\r\n{body}"
        )
    }

    /// What a connection does: after each read, frame and consume as much as possible.
    /// Returns the messages and keep-alives seen, as byte strings, or the first error.
    fn drain(pending: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) -> Result<(), FramingError> {
        loop {
            match frame(pending)? {
                Framed::Partial => return Ok(()),
                Framed::Complete { len } | Framed::KeepAlive { len } => {
                    assert!(len > 0 && len <= pending.len());
                    out.push(pending.drain(..len).collect());
                }
            }
        }
    }

    fn read_in_pieces(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            pending.extend_from_slice(&stream[from..cut]);
            from = cut;
            drain(&mut pending, &mut out).unwrap();
        }
        assert!(pending.is_empty(), "left over: {pending:?}");
        out
    }

    #[test]
    fn every_split_of_two_messages_yields_the_same_two() {
        let first = message("Content-Length: 5\r\n", "hello");
        let second = message("l : 0\r\n", "");
        for between in ["", "\r\n\r\n"] {
            let stream = format!("{first}{between}{second}");
            let mut want = vec![first.as_bytes().to_vec()];
            if !between.is_empty() {
                want.push(between.as_bytes().to_vec());
            }
            want.push(second.as_bytes().to_vec());
            for cut in 0..=stream.len() {
                assert_eq!(
                    read_in_pieces(stream.as_bytes(), &[cut]),
                    want,
                    "split at {cut}"
                );
            }
            // One byte at a time, too.
            let cuts: Vec<usize> = (1..stream.len()).collect();
            assert_eq!(read_in_pieces(stream.as_bytes(), &cuts), want);
        }
    }

    #[test]
    fn several_messages_and_keepalives_in_one_buffer() {
        let a = message("Content-Length: 3\r\n", "abc");
        let b = message("CONTENT-LENGTH:0\r\n", "");
        let c = message("content-length \t: 4\r\n", "\r\n\r\n");
        let stream = format!("\r\n\r\n{a}{b}\r\n{c}\r\n\r\n");
        let got = read_in_pieces(stream.as_bytes(), &[]);
        let want: Vec<Vec<u8>> = ["\r\n\r\n", &a, &b, "\r\n", &c, "\r\n\r\n"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(got, want);
        assert_eq!(frame(stream.as_bytes()), Ok(Framed::KeepAlive { len: 4 }));
        assert_eq!(
            frame(&stream.as_bytes()[4..]),
            Ok(Framed::Complete { len: a.len() })
        );
    }

    #[test]
    fn content_length_forms() {
        for header in [
            "Content-Length: 2\r\n",
            "content-length:2\r\n",
            "Content-Length   : 2\r\n",
            "l: 2\r\n",
            "L:2 \r\n",
            "Content-Length:\r\n 2\r\n",
            "Content-Length: 2\r\nContent-Length: 2\r\n",
        ] {
            let m = message(header, "xy");
            assert_eq!(
                frame(m.as_bytes()),
                Ok(Framed::Complete { len: m.len() }),
                "{header:?}"
            );
            assert_eq!(
                frame(&m.as_bytes()[..m.len() - 1]),
                Ok(Framed::Partial),
                "{header:?}"
            );
        }
        // Names that only start like it are other headers.
        for header in [
            "Content-Length-X: 2\r\n",
            "lx: 2\r\n",
            "Contact: <sip:l@x>\r\n",
            "",
        ] {
            let m = message(header, "");
            assert_eq!(
                frame(m.as_bytes()),
                Err(FramingError::MissingContentLength),
                "{header:?}"
            );
        }
        for header in [
            "Content-Length: \r\n",
            "Content-Length: abc\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 1 2\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 2\r\nl: 3\r\n",
        ] {
            let m = message(header, "");
            assert_eq!(
                frame(m.as_bytes()),
                Err(FramingError::BadContentLength),
                "{header:?}"
            );
        }
        let m = message("Content-Length: 99999999999999999999999\r\n", "");
        assert_eq!(frame(m.as_bytes()), Err(FramingError::TooLarge));
    }

    #[test]
    fn keepalives_and_partial_starts() {
        for partial in [
            &b""[..],
            b"\r",
            b"\r\n",
            b"\r\n\r",
            b"REGISTER sip:x SIP/2.0\r\n",
        ] {
            assert_eq!(frame(partial), Ok(Framed::Partial), "{partial:?}");
        }
        assert_eq!(frame(b"\r\n\r\n"), Ok(Framed::KeepAlive { len: 4 }));
        assert_eq!(frame(b"\r\n\r\nREG"), Ok(Framed::KeepAlive { len: 4 }));
        assert_eq!(frame(b"\r\nREG"), Ok(Framed::KeepAlive { len: 2 }));
    }

    /// A header section padded with one header to exactly `head_len` bytes.
    fn with_head_len(head_len: usize, content_length: usize) -> Vec<u8> {
        let base = message(&format!("Content-Length: {content_length}\r\nX: \r\n"), "");
        let pad = head_len.checked_sub(base.len()).unwrap();
        let m = message(
            &format!(
                "Content-Length: {content_length}\r\nX: {}\r\n",
                "p".repeat(pad)
            ),
            "",
        );
        assert_eq!(m.len(), head_len);
        m.into_bytes()
    }

    #[test]
    fn header_section_at_and_past_its_limit() {
        let at = with_head_len(HEADER_SECTION_BYTES_MAX, 0);
        assert_eq!(frame(&at), Ok(Framed::Complete { len: at.len() }));
        let past = with_head_len(HEADER_SECTION_BYTES_MAX + 1, 0);
        assert_eq!(frame(&past), Err(FramingError::TooLarge));
        // Without the empty line yet: partial below the limit, refused at it (the empty
        // line could only end past it), before the rest arrives.
        assert_eq!(
            frame(&past[..HEADER_SECTION_BYTES_MAX - 1]),
            Ok(Framed::Partial)
        );
        assert_eq!(
            frame(&past[..HEADER_SECTION_BYTES_MAX]),
            Err(FramingError::TooLarge)
        );
        assert_eq!(
            frame(&at[..HEADER_SECTION_BYTES_MAX - 1]),
            Ok(Framed::Partial)
        );
    }

    #[test]
    fn message_at_and_past_its_limit() {
        let head_len = 200;
        let body = STREAM_MESSAGE_BYTES_MAX - head_len;
        let mut at = with_head_len(head_len, body);
        // Refused or not from the header section alone, before the body arrives.
        assert_eq!(frame(&at), Ok(Framed::Partial));
        at.resize(STREAM_MESSAGE_BYTES_MAX, b'b');
        assert_eq!(
            frame(&at),
            Ok(Framed::Complete {
                len: STREAM_MESSAGE_BYTES_MAX
            })
        );
        let past = with_head_len(head_len, body + 1);
        assert_eq!(frame(&past), Err(FramingError::TooLarge));
    }

    #[test]
    fn a_smaller_bound_refuses_at_it_and_never_leaves_a_full_buffer_partial() {
        let bound = 1024;
        let at = with_head_len(bound, 0);
        assert_eq!(
            frame_within(&at, bound),
            Ok(Framed::Complete { len: bound })
        );
        let past = with_head_len(bound + 1, 0);
        assert_eq!(frame_within(&past, bound), Err(FramingError::TooLarge));
        assert_eq!(
            frame_within(&past[..bound], bound),
            Err(FramingError::TooLarge)
        );
        assert_eq!(frame_within(&past[..bound - 1], bound), Ok(Framed::Partial));
        // A body announced past the bound is refused from the header section alone.
        let body = with_head_len(300, bound - 300 + 1);
        assert_eq!(frame_within(&body, bound), Err(FramingError::TooLarge));
        let body = with_head_len(300, bound - 300);
        assert_eq!(frame_within(&body, bound), Ok(Framed::Partial));
        // A bound above the parser's is the parser's.
        assert_eq!(
            frame_within(&with_head_len(HEADER_SECTION_BYTES_MAX + 1, 0), usize::MAX),
            Err(FramingError::TooLarge)
        );
    }

    #[test]
    fn head_for_answer_is_the_section_or_its_complete_lines() {
        let m = message("", "body");
        let head_len = m.find("\r\n\r\n").unwrap() + 4;
        assert_eq!(head_for_answer(m.as_bytes()), &m.as_bytes()[..head_len]);
        let cut = b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nX: pad";
        assert_eq!(
            head_for_answer(cut),
            &b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"[..]
        );
        assert_eq!(head_for_answer(b"REGISTER sip:x"), b"");
    }

    proptest::proptest! {
        /// Any sequence of messages (bodies of any length, some with CRLF in them) and
        /// keep-alives, cut into any pieces, frames back into the same sequence.
        #[test]
        fn any_stream_cut_anywhere_frames_back(
            bodies in proptest::collection::vec("[a-z\r\n]{0,40}", 1..6),
            pings in proptest::collection::vec(proptest::bool::ANY, 6),
            cuts in proptest::collection::vec(0usize..2000, 0..12),
        ) {
            let mut want: Vec<Vec<u8>> = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                if pings[i] {
                    want.push(KEEPALIVE_PING.to_vec());
                }
                let header = format!("Content-Length: {}\r\n", body.len());
                want.push(message(&header, body).into_bytes());
            }
            let stream: Vec<u8> = want.concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            proptest::prop_assert_eq!(read_in_pieces(&stream, &cuts), want);
        }
    }
}
