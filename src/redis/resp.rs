//! RESP2 framing: commands out as arrays of bulk strings, replies in as values.
//!
//! Hand-written rather than the `redis-protocol` crate: a registrar sends one shape of
//! command and reads five reply types, and a tight decoder over a borrowed buffer with
//! explicit limits is a few hundred lines with nothing to configure. Its cost per
//! REGISTER (commit command built and encoded, reply decoded) is measured by
//! `cargo bench --bench redis`.
//!
//! Limits bound what a peer can make us allocate or recurse into; exceeding one is an
//! error ([`RespError`]), never a panic. A reply that is only partly received is
//! `Ok(None)`: call again with more bytes.

use std::fmt;

/// Longest bulk string accepted, in bytes (a binding list of 16 × 512 B fits many times).
pub const BULK_BYTES_MAX: usize = 1 << 20;
/// Longest simple string, error or integer line, in bytes (without CRLF).
pub const LINE_BYTES_MAX: usize = 4096;
/// Most elements in one array.
pub const ARRAY_LEN_MAX: usize = 4096;
/// Deepest nesting of arrays (`CLUSTER SLOTS` needs 3).
pub const ARRAY_DEPTH_MAX: usize = 4;

/// A decoded RESP2 reply (owned: replies outlive the read buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(Vec<u8>),
    /// `-ERR ...`: the message without the `-`.
    Error(Vec<u8>),
    /// `:42`
    Int(i64),
    /// `$3\r\nfoo`; `None` for the null bulk `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`; `None` for the null array `*-1`.
    Array(Option<Vec<Self>>),
}

/// Why bytes are not a valid RESP2 reply (within our limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a value is not one of `+ - : $ *`.
    UnknownType(u8),
    /// A line does not end in CRLF, or a bulk string is not followed by CRLF.
    MissingCrlf,
    /// A length or integer is not a decimal number in range.
    BadNumber,
    /// A bulk string longer than [`BULK_BYTES_MAX`].
    BulkTooLong,
    /// A line longer than [`LINE_BYTES_MAX`].
    LineTooLong,
    /// An array longer than [`ARRAY_LEN_MAX`].
    ArrayTooLong,
    /// Arrays nested deeper than [`ARRAY_DEPTH_MAX`].
    TooDeep,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed RESP2 reply: {self:?}")
    }
}

impl std::error::Error for RespError {}

/// Appends `args` as one RESP2 command (an array of bulk strings) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        push_decimal(out, a.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Decodes one reply from the start of `buf`: `Ok(Some((reply, bytes used)))`, or
/// `Ok(None)` when `buf` holds only part of it.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    match decode_at(buf, 0, 0) {
        Ok((reply, end)) => Ok(Some((reply, end))),
        Err(Partial::Incomplete) => Ok(None),
        Err(Partial::Bad(e)) => Err(e),
    }
}

enum Partial {
    Incomplete,
    Bad(RespError),
}

impl From<RespError> for Partial {
    fn from(e: RespError) -> Self {
        Self::Bad(e)
    }
}

/// The line starting at `at` (without CRLF) and the index after its CRLF.
fn line(buf: &[u8], at: usize) -> Result<(&[u8], usize), Partial> {
    let rest = buf.get(at..).ok_or(Partial::Incomplete)?;
    let window = &rest[..rest.len().min(LINE_BYTES_MAX + 2)];
    match memchr::memchr(b'\r', window) {
        Some(cr) => match window.get(cr + 1) {
            Some(b'\n') => Ok((&window[..cr], at + cr + 2)),
            Some(_) => Err(RespError::MissingCrlf.into()),
            None => Err(Partial::Incomplete),
        },
        None if window.len() > LINE_BYTES_MAX => Err(RespError::LineTooLong.into()),
        None => Err(Partial::Incomplete),
    }
}

fn parse_i64(s: &[u8]) -> Result<i64, RespError> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(RespError::BadNumber);
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(RespError::BadNumber);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d - b'0')))
            .ok_or(RespError::BadNumber)?;
    }
    Ok(if neg { -v } else { v })
}

/// A length: `-1` is null (`None`), other negatives are errors, and above `max` is `too_long`.
fn parse_len(s: &[u8], max: usize, too_long: RespError) -> Result<Option<usize>, RespError> {
    match parse_i64(s)? {
        -1 => Ok(None),
        n if n < 0 => Err(RespError::BadNumber),
        n => {
            let n = usize::try_from(n).map_err(|_| too_long)?;
            if n > max { Err(too_long) } else { Ok(Some(n)) }
        }
    }
}

fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<(Reply, usize), Partial> {
    let kind = *buf.get(at).ok_or(Partial::Incomplete)?;
    let (text, next) = line(buf, at + 1)?;
    match kind {
        b'+' => Ok((Reply::Simple(text.to_vec()), next)),
        b'-' => Ok((Reply::Error(text.to_vec()), next)),
        b':' => Ok((Reply::Int(parse_i64(text)?), next)),
        b'$' => {
            let Some(len) = parse_len(text, BULK_BYTES_MAX, RespError::BulkTooLong)? else {
                return Ok((Reply::Bulk(None), next));
            };
            let end = next + len;
            let data = buf.get(next..end).ok_or(Partial::Incomplete)?;
            match buf.get(end..end + 2) {
                Some(b"\r\n") => Ok((Reply::Bulk(Some(data.to_vec())), end + 2)),
                Some(_) => Err(RespError::MissingCrlf.into()),
                None => Err(Partial::Incomplete),
            }
        }
        b'*' => {
            let Some(len) = parse_len(text, ARRAY_LEN_MAX, RespError::ArrayTooLong)? else {
                return Ok((Reply::Array(None), next));
            };
            if depth >= ARRAY_DEPTH_MAX {
                return Err(RespError::TooDeep.into());
            }
            // Not `with_capacity(len)`: a peer's length alone must not size an allocation.
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..len {
                let (item, after) = decode_at(buf, at, depth + 1)?;
                items.push(item);
                at = after;
            }
            Ok((Reply::Array(Some(items)), at))
        }
        other => Err(RespError::UnknownType(other).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &[u8]) -> Reply {
        let (r, used) = decode(s).unwrap().unwrap();
        assert_eq!(used, s.len());
        r
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode_command(&mut out, &[&b"GET"[..], b"k\r\n", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }

    #[test]
    fn decodes_every_type() {
        assert_eq!(one(b"+OK\r\n"), Reply::Simple(b"OK".to_vec()));
        assert_eq!(one(b"-ERR x\r\n"), Reply::Error(b"ERR x".to_vec()));
        assert_eq!(one(b":-42\r\n"), Reply::Int(-42));
        assert_eq!(one(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(
            one(b"$4\r\na\r\nb\r\n"),
            Reply::Bulk(Some(b"a\r\nb".to_vec()))
        );
        assert_eq!(one(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(
            one(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n"),
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Array(Some(vec![Reply::Bulk(Some(b"x".to_vec()))]))
            ]))
        );
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let full = b"*3\r\n$5\r\nhello\r\n:7\r\n*1\r\n+OK\r\n";
        for n in 0..full.len() {
            assert_eq!(decode(&full[..n]), Ok(None), "prefix {n}");
        }
        assert!(decode(full).unwrap().is_some());
    }

    #[test]
    fn malformed_and_oversized_are_errors() {
        assert_eq!(decode(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        assert_eq!(decode(b":12a\r\n"), Err(RespError::BadNumber));
        assert_eq!(
            decode(b":99999999999999999999\r\n"),
            Err(RespError::BadNumber)
        );
        assert_eq!(decode(b"$-2\r\n"), Err(RespError::BadNumber));
        assert_eq!(decode(b"$1\r\nab\r\n"), Err(RespError::MissingCrlf));
        assert_eq!(decode(b"+a\rb\r\n"), Err(RespError::MissingCrlf));
        let big = format!("${}\r\n", BULK_BYTES_MAX + 1);
        assert_eq!(decode(big.as_bytes()), Err(RespError::BulkTooLong));
        let long = format!("*{}\r\n", ARRAY_LEN_MAX + 1);
        assert_eq!(decode(long.as_bytes()), Err(RespError::ArrayTooLong));
        let deep = "*1\r\n".repeat(ARRAY_DEPTH_MAX + 1) + ":1\r\n";
        assert_eq!(decode(deep.as_bytes()), Err(RespError::TooDeep));
        let line = vec![b'+'; LINE_BYTES_MAX + 10];
        assert_eq!(decode(&line), Err(RespError::LineTooLong));
    }
}
