//! Just enough response parsing to match and validate: status, top Via branch, Call-ID,
//! CSeq, To (for the ACK) and the number of Contact bindings.
//!
//! Why not a full parser: the loadgen must stay cheaper per message than the server it
//! measures. One pass over the lines with `memchr`, no allocation, and every header it does
//! not need is skipped by its first byte.

use memchr::memchr;

/// Most `WWW-Authenticate` values kept from one 401 (one per offered algorithm; sipreg
/// offers two, extra ones are ignored).
pub(crate) const CHALLENGES_MAX: usize = 4;

/// Why a datagram could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Neither `SIP/2.0 NNN` nor a request line.
    StartLine,
    /// No Via, or a Via without a branch.
    Branch,
    /// No CSeq, or its number is not a number.
    CSeq,
}

/// The parts of a response (or, from the echo reflector, of our own request) we check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Response<'a> {
    /// Status code; `0` when the datagram is a request (our own, reflected by `echo`).
    pub(crate) status: u16,
    pub(crate) branch: &'a [u8],
    pub(crate) call_id: &'a [u8],
    pub(crate) cseq: u32,
    pub(crate) cseq_method: &'a [u8],
    /// Contact bindings listed (comma-separated entries over all Contact headers).
    pub(crate) contacts: u32,
    /// The To header value, tag included.
    pub(crate) to: &'a [u8],
    /// `WWW-Authenticate` values in order, the first `challenge_count` of them.
    pub(crate) challenges: [&'a [u8]; CHALLENGES_MAX],
    pub(crate) challenge_count: usize,
}

impl<'a> Response<'a> {
    /// The `WWW-Authenticate` values kept.
    pub(crate) fn challenges(&self) -> &[&'a [u8]] {
        self.challenges
            .get(..self.challenge_count)
            .unwrap_or_default()
    }
}

/// Parses one datagram. Never panics on any input.
pub(crate) fn parse(buf: &[u8]) -> Result<Response<'_>, ParseError> {
    let (first, mut rest) = split_line(buf);
    let status = if let Some(tail) = first.strip_prefix(b"SIP/2.0 ") {
        let code = tail.get(..3).ok_or(ParseError::StartLine)?;
        let code = crate::request::parse_dec(code).ok_or(ParseError::StartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine);
        }
        code as u16
    } else if first.ends_with(b" SIP/2.0") {
        0
    } else {
        return Err(ParseError::StartLine);
    };
    let mut r = Response {
        status,
        branch: b"",
        call_id: b"",
        cseq: 0,
        cseq_method: b"",
        contacts: 0,
        to: b"",
        challenges: [b""; CHALLENGES_MAX],
        challenge_count: 0,
    };
    let mut seen_via = false;
    let mut seen_cseq = false;
    while !rest.is_empty() {
        let (line, next) = split_line(rest);
        rest = next;
        if line.is_empty() {
            break; // end of headers
        }
        let Some(colon) = memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        match name.len() {
            1 => match name[0].to_ascii_lowercase() {
                b'v' if !seen_via => {
                    seen_via = true;
                    r.branch = branch_param(value);
                }
                b'i' => r.call_id = value,
                b'm' => r.contacts += count_contacts(value),
                b't' => r.to = value,
                _ => {}
            },
            2 if name.eq_ignore_ascii_case(b"to") => r.to = value,
            3 if name.eq_ignore_ascii_case(b"via") && !seen_via => {
                seen_via = true;
                r.branch = branch_param(value);
            }
            4 if name.eq_ignore_ascii_case(b"cseq") => {
                seen_cseq = true;
                let sp = memchr(b' ', value).ok_or(ParseError::CSeq)?;
                r.cseq = crate::request::parse_dec(&value[..sp]).ok_or(ParseError::CSeq)?;
                r.cseq_method = trim(&value[sp + 1..]);
            }
            7 if name.eq_ignore_ascii_case(b"call-id") => r.call_id = value,
            7 if name.eq_ignore_ascii_case(b"contact") => r.contacts += count_contacts(value),
            16 if name.eq_ignore_ascii_case(b"www-authenticate") => {
                if let Some(c) = r.challenges.get_mut(r.challenge_count) {
                    *c = value;
                    r.challenge_count += 1;
                }
            }
            _ => {}
        }
    }
    if r.branch.is_empty() {
        return Err(ParseError::Branch);
    }
    if !seen_cseq {
        return Err(ParseError::CSeq);
    }
    Ok(r)
}

/// One line without its CRLF (or bare LF), and the rest after it.
fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b'\n', buf) {
        Some(nl) => {
            let line = &buf[..nl];
            (line.strip_suffix(b"\r").unwrap_or(line), &buf[nl + 1..])
        }
        None => (buf, b""),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// The `branch` parameter of a Via value, or empty.
fn branch_param(via: &[u8]) -> &[u8] {
    let mut rest = via;
    while let Some(semi) = memchr(b';', rest) {
        rest = &rest[semi + 1..];
        let p = trim(rest);
        if p.len() > 7 && p[..7].eq_ignore_ascii_case(b"branch=") {
            let v = &p[7..];
            let end = v
                .iter()
                .position(|&b| matches!(b, b';' | b',' | b' ' | b'\t'))
                .unwrap_or(v.len());
            return &v[..end];
        }
    }
    b""
}

/// Counts comma-separated contacts, ignoring commas inside `<…>` and quoted strings.
fn count_contacts(value: &[u8]) -> u32 {
    if value.is_empty() {
        return 0;
    }
    let mut n = 1;
    let mut in_angle = false;
    let mut in_quote = false;
    for &b in value {
        match b {
            b'"' if !in_angle => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b',' if !in_angle && !in_quote => n += 1,
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-deadbeef-1-99-3;rport=40000;received=127.0.0.1\r\n\
From: <sip:user42@example.com>;tag=deadbeef0000002a\r\n\
To: <sip:user42@example.com>;tag=srv1\r\n\
Call-ID: deadbeef-r0-42@loadgen\r\n\
CSeq: 7 REGISTER\r\n\
Contact: <sip:user42@127.0.0.1:40000;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:a,b>\", <sip:x@h>;expires=60\r\n\
m: <sip:y@h;a=1,2>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn ok_response_yields_every_field() {
        let r = parse(OK).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.branch, b"z9hG4bK-deadbeef-1-99-3");
        assert_eq!(r.call_id, b"deadbeef-r0-42@loadgen");
        assert_eq!((r.cseq, r.cseq_method), (7, &b"REGISTER"[..]));
        assert_eq!(
            r.contacts, 3,
            "commas inside quotes and <> are not separators"
        );
        assert_eq!(r.to, b"<sip:user42@example.com>;tag=srv1");
    }

    #[test]
    fn challenges_are_kept_in_order() {
        let msg = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKx\r\nCSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"a\", algorithm=SHA-256\r\nwww-authenticate: Digest realm=\"a\", algorithm=MD5\r\n\r\n";
        let r = parse(msg).unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.challenges(),
            [
                &b"Digest realm=\"a\", algorithm=SHA-256"[..],
                &b"Digest realm=\"a\", algorithm=MD5"[..]
            ]
        );
        assert!(parse(OK).unwrap().challenges().is_empty());
    }

    #[test]
    fn compact_forms_and_bare_lf_are_accepted() {
        let msg = b"SIP/2.0 302 Moved\nv: SIP/2.0/UDP h;BRANCH=z9hG4bKx\ni: c1\nt: <sip:a@b>;tag=1\nCSEQ: 1 INVITE\nm: <sip:a@c>\n\n";
        let r = parse(msg).unwrap();
        assert_eq!(
            (r.status, r.branch, r.call_id, r.contacts),
            (302, &b"z9hG4bKx"[..], &b"c1"[..], 1)
        );
        assert_eq!(r.to, b"<sip:a@b>;tag=1");
    }

    #[test]
    fn only_the_top_via_counts() {
        let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKtop\r\nVia: SIP/2.0/UDP b;branch=z9hG4bKlow\r\nCSeq: 1 REGISTER\r\n\r\n";
        assert_eq!(parse(msg).unwrap().branch, b"z9hG4bKtop");
    }

    #[test]
    fn reflected_request_has_status_zero() {
        let msg = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKq;rport\r\nCSeq: 2 REGISTER\r\n\r\n";
        let r = parse(msg).unwrap();
        assert_eq!((r.status, r.branch, r.cseq), (0, &b"z9hG4bKq"[..], 2));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse(b""), Err(ParseError::StartLine));
        assert_eq!(parse(b"SIP/2.0 2"), Err(ParseError::StartLine));
        assert_eq!(
            parse(b"SIP/2.0 999 Nope\r\n\r\n"),
            Err(ParseError::StartLine)
        );
        assert_eq!(
            parse(b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n"),
            Err(ParseError::Branch)
        );
        assert_eq!(
            parse(b"SIP/2.0 200 OK\r\nVia: x;branch=y\r\n\r\n"),
            Err(ParseError::CSeq)
        );
        assert_eq!(
            parse(b"SIP/2.0 200 OK\r\nVia: x;branch=y\r\nCSeq: abc REGISTER\r\n\r\n"),
            Err(ParseError::CSeq)
        );
        for cut in 0..OK.len() {
            let _ = parse(&OK[..cut]);
        }
    }
}
