//! Where a SIP message ends in a byte stream (RFC 3261 §18.3).
//!
//! Why its own module: over UDP a datagram is a message, over TCP and TLS nothing marks the
//! end but the header section's blank line plus `Content-Length` bytes of body. A response
//! without `Content-Length` cannot be delimited on a stream, so it is an error (the caller
//! counts it and closes the connection: nothing after it can be framed either). Pure
//! functions over a byte slice, so every split of a stream is tested without sockets.

use memchr::memmem;

/// Largest message accepted from a stream, header section and body together. A registrar's
/// 200 with the RFC 3261 default contact cap is a few KiB; this leaves room for long
/// Contact lists and a 401 with several challenges.
pub(crate) const MESSAGE_BYTES_MAX: usize = 65_536;

/// Why the stream cannot be framed any further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The header section ended without a `Content-Length` (RFC 3261 §18.3: mandatory on
    /// streams).
    MissingContentLength,
    /// A `Content-Length` that is not a number.
    BadContentLength,
    /// Header section plus body would exceed `MESSAGE_BYTES_MAX`.
    Oversize,
}

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Not a whole message yet: read more.
    Incomplete,
    /// This many bytes of CRLF keep-alive (RFC 5626 §4.4.1) to skip.
    KeepAlive(usize),
    /// A whole message of this many bytes.
    Message(usize),
}

/// Frames the message at the front of `buf`.
pub(crate) fn next(buf: &[u8]) -> Result<Frame, FrameError> {
    let crlf = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if crlf > 0 {
        return Ok(Frame::KeepAlive(crlf));
    }
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() >= MESSAGE_BYTES_MAX {
            Err(FrameError::Oversize)
        } else {
            Ok(Frame::Incomplete)
        };
    };
    let head_len = end + 4;
    if head_len > MESSAGE_BYTES_MAX {
        return Err(FrameError::Oversize);
    }
    let body = content_length(&buf[..end])?;
    let total = head_len
        .checked_add(body)
        .filter(|&t| t <= MESSAGE_BYTES_MAX)
        .ok_or(FrameError::Oversize)?;
    Ok(if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::Incomplete
    })
}

/// The `Content-Length` (or compact `l`, RFC 3261 §7.3.3) of a header section.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = line[colon + 1..].trim_ascii();
            if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadContentLength);
            }
            return value
                .iter()
                .try_fold(0usize, |n, &d| {
                    n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
                })
                .ok_or(FrameError::BadContentLength);
        }
    }
    Err(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKa\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    const WITH_BODY: &[u8] =
        b"SIP/2.0 200 OK\r\nl: 5\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKb\r\n\r\nhello";

    /// Feeds `pieces` one after the other, framing as a connection would: returns the
    /// messages in order.
    fn frame_all(pieces: &[&[u8]]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for p in pieces {
            buf.extend_from_slice(p);
            loop {
                match next(&buf)? {
                    Frame::Incomplete => break,
                    Frame::KeepAlive(n) => {
                        buf.drain(..n);
                    }
                    Frame::Message(n) => out.push(buf.drain(..n).collect()),
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn a_message_split_at_every_byte_is_framed_once_whole() {
        let stream = [OK, WITH_BODY].concat();
        for cut in 0..=stream.len() {
            let got = frame_all(&[&stream[..cut], &stream[cut..]]).unwrap();
            assert_eq!(got, vec![OK.to_vec(), WITH_BODY.to_vec()], "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            frame_all(&bytes).unwrap(),
            vec![OK.to_vec(), WITH_BODY.to_vec()]
        );
    }

    #[test]
    fn several_messages_and_keepalives_in_one_buffer() {
        let stream = [b"\r\n\r\n".as_slice(), OK, OK, b"\r\n", WITH_BODY, OK].concat();
        let got = frame_all(&[&stream]).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[2], WITH_BODY);
        assert_eq!(next(b"\r\n"), Ok(Frame::KeepAlive(2)));
    }

    #[test]
    fn missing_or_bad_content_length_is_an_error() {
        let no_len = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKa\r\n\r\n";
        assert_eq!(next(no_len), Err(FrameError::MissingContentLength));
        // A header whose value merely mentions the name does not count.
        let fake = b"SIP/2.0 200 OK\r\nSubject: Content-Length: 0\r\n\r\n";
        assert_eq!(next(fake), Err(FrameError::MissingContentLength));
        for bad in ["x", "-1", "", "99999999999"] {
            let msg = format!("SIP/2.0 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                next(msg.as_bytes()),
                Err(FrameError::BadContentLength),
                "{bad:?}"
            );
        }
        // Incomplete until the blank line: no verdict on a header section still arriving.
        assert_eq!(next(&no_len[..no_len.len() - 2]), Ok(Frame::Incomplete));
    }

    #[test]
    fn oversize_is_an_error_not_an_unbounded_buffer() {
        let huge = format!(
            "SIP/2.0 200 OK\r\nContent-Length: {}\r\n\r\n",
            MESSAGE_BYTES_MAX
        );
        assert_eq!(next(huge.as_bytes()), Err(FrameError::Oversize));
        let endless = vec![b'a'; MESSAGE_BYTES_MAX];
        assert_eq!(next(&endless), Err(FrameError::Oversize));
        assert_eq!(
            next(&endless[..MESSAGE_BYTES_MAX - 1]),
            Ok(Frame::Incomplete)
        );
        let just = b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(next(just), Ok(Frame::Incomplete));
    }
}
