//! The response writer: status line, the echoed headers, and what the registrar adds.
//!
//! Responses are written straight into a caller-owned `Vec<u8>` that the runtime reuses,
//! with integers formatted by hand, so that answering costs no allocation in steady
//! state. [`ResponseWriter::start`] applies the RFC 3261 §18.2.1 `received` rule and the
//! RFC 3581 §4 `rport` rule to the top Via and adds the To tag when the request had none
//! (§8.2.6.2).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::date::{DATE_BYTES, write_date};
use super::message::{Echo, Via};

/// Appends the decimal form of `v`.
pub(crate) fn push_u32(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; U32_DIGITS_MAX];
    let n = format_u32(v, &mut buf);
    push_prefix(out, &buf, n);
}

/// Decimal digits of the largest `u32`.
const U32_DIGITS_MAX: usize = 10;

/// Writes the decimal form of `v` at the start of `buf`; returns its length.
fn format_u32(v: u32, buf: &mut [u8; U32_DIGITS_MAX]) -> usize {
    // Most numbers written are short (IPv4 octets, ports, status codes, expiries): count
    // the digits with compares, then one division per digit, no memcpy call.
    let n = match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        10_000..=99_999 => 5,
        100_000..=999_999 => 6,
        1_000_000..=9_999_999 => 7,
        10_000_000..=99_999_999 => 8,
        100_000_000..=999_999_999 => 9,
        _ => 10,
    };
    let mut rest = v;
    for d in buf.iter_mut().take(n).rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    n
}

/// Appends `buf[..n]`: the whole fixed-size array is copied (a few moves, no memcpy call
/// for a length known only at run time) and the excess cut off again.
fn push_prefix<const N: usize>(out: &mut Vec<u8>, buf: &[u8; N], n: usize) {
    out.extend_from_slice(buf);
    out.truncate(out.len() - (N - n.min(N)));
}

/// Appends a qvalue given in thousandths: `1`, `0.5`, `0.33`, `0.001`, `0`.
pub(crate) fn push_q(out: &mut Vec<u8>, q: u16) {
    if q >= 1000 {
        out.push(b'1');
        return;
    }
    out.push(b'0');
    if q == 0 {
        return;
    }
    out.push(b'.');
    let digits = [(q / 100) as u8, (q / 10 % 10) as u8, (q % 10) as u8];
    let used = if digits[2] != 0 {
        3
    } else if digits[1] != 0 {
        2
    } else {
        1
    };
    out.extend(digits.iter().take(used).map(|d| b'0' + d));
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            // `255.255.255.255`: 15 bytes, written on the stack and appended at once.
            let mut buf = [0u8; 16];
            let mut n = 0;
            let mut put = |b: u8| {
                if let Some(d) = buf.get_mut(n) {
                    *d = b;
                }
                n += 1;
            };
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    put(b'.');
                }
                if octet >= 100 {
                    put(b'0' + octet / 100);
                }
                if octet >= 10 {
                    put(b'0' + octet / 10 % 10);
                }
                put(b'0' + octet % 10);
            }
            push_prefix(out, &buf, n);
        }
        // `Ipv6Addr`'s Display formats on the stack; writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// True when the sent-by host is literally the source IP (RFC 3261 §18.2.1).
fn host_is_ip(host: &[u8], ip: IpAddr) -> bool {
    let bare = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    std::str::from_utf8(bare)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .is_some_and(|h| h.to_canonical() == ip.to_canonical())
}

/// Writes the top via-parm with `rport` filled and `received` added where required.
fn push_top_via(out: &mut Vec<u8>, via: &Via<'_>, source: SocketAddr) {
    let raw = via.raw;
    let fill_rport = via.rport == Some(None) && via.rport_insert_at > 0;
    match (
        fill_rport,
        raw.get(..via.rport_insert_at),
        raw.get(via.rport_insert_at..),
    ) {
        (true, Some(head), Some(tail)) => {
            out.extend_from_slice(head);
            out.push(b'=');
            push_u32(out, u32::from(source.port()));
            out.extend_from_slice(tail);
        }
        _ => out.extend_from_slice(raw),
    }
    // RFC 3581 §4: with rport, `received` is added even when the host matches.
    if via.rport == Some(None) || !host_is_ip(via.host, source.ip()) {
        out.extend_from_slice(b";received=");
        push_ip(out, source.ip());
    }
}

/// Builds one response in a caller-owned buffer.
#[derive(Debug)]
pub struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> ResponseWriter<'o> {
    /// Clears `out` and writes the status line and the echoed headers: every Via in
    /// order (the top one with `received`/`rport` per RFC 3261 §18.2.1 and RFC 3581 §4),
    /// From, To (with `;tag=<to_tag>` appended when the request's To had no tag and
    /// `to_tag` is not empty), Call-ID and CSeq.
    pub fn start(
        out: &'o mut Vec<u8>,
        status: u16,
        reason: &str,
        echo: &Echo<'_>,
        source: SocketAddr,
        to_tag: &[u8],
    ) -> Self {
        out.clear();
        out.extend_from_slice(b"SIP/2.0 ");
        push_u32(out, u32::from(status));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (i, via) in echo.vias.iter().enumerate() {
            out.extend_from_slice(b"Via: ");
            let top = &echo.top_via;
            match via.get(top.raw.len()..) {
                Some(rest) if i == 0 && via.starts_with(top.raw) => {
                    push_top_via(out, top, source);
                    out.extend_from_slice(rest);
                }
                _ => out.extend_from_slice(via),
            }
            out.extend_from_slice(b"\r\n");
        }
        let mut w = Self { out };
        if let Some(from) = echo.from {
            w.header("From", from);
        }
        if let Some(to) = echo.to {
            w.out.extend_from_slice(b"To: ");
            w.out.extend_from_slice(to);
            if !echo.to_has_tag && !to_tag.is_empty() {
                w.out.extend_from_slice(b";tag=");
                w.out.extend_from_slice(to_tag);
            }
            w.out.extend_from_slice(b"\r\n");
        }
        if let Some(call_id) = echo.call_id {
            w.header("Call-ID", call_id);
        }
        if let Some(cseq) = echo.cseq {
            w.header("CSeq", cseq);
        }
        w
    }

    /// `Contact: <uri_raw>;expires=N[;q=Q]<extra_params>` (`extra_params` is appended
    /// verbatim and should start with `;`).
    pub fn contact(&mut self, uri_raw: &[u8], expires_s: u32, q: Option<u16>, extra_params: &[u8]) {
        self.contact_head(uri_raw, expires_s, q);
        self.out.extend_from_slice(extra_params);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `Contact: <uri>;expires=N[;q=…]`, without the line end.
    fn contact_head(&mut self, uri_raw: &[u8], expires_s: u32, q: Option<u16>) {
        self.out.extend_from_slice(b"Contact: <");
        self.out.extend_from_slice(uri_raw);
        self.out.extend_from_slice(b">;expires=");
        push_u32(self.out, expires_s);
        if let Some(q) = q {
            self.out.extend_from_slice(b";q=");
            push_q(self.out, q);
        }
    }

    /// A `Contact` for a stored binding: [`contact`](Self::contact) with the RFC 5626
    /// `+sip.instance` (quoted as RFC 5626 §4.1 writes it, whether or not it was stored
    /// with its quotes) and `reg-id` written straight into the response.
    pub fn binding_contact(
        &mut self,
        uri_raw: &[u8],
        expires_s: u32,
        q: Option<u16>,
        instance: Option<&[u8]>,
        reg_id: Option<u32>,
    ) {
        self.contact_head(uri_raw, expires_s, q);
        if let Some(inst) = instance {
            self.out.extend_from_slice(b";+sip.instance=");
            if inst.first() == Some(&b'"') {
                self.out.extend_from_slice(inst);
            } else {
                self.out.push(b'"');
                self.out.extend_from_slice(inst);
                self.out.push(b'"');
            }
        }
        if let Some(reg_id) = reg_id {
            self.out.extend_from_slice(b";reg-id=");
            push_u32(self.out, reg_id);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `name: value`.
    #[inline(always)] // the names are constants: copied by a few moves, not a memcpy call
    pub fn header(&mut self, name: &str, value: &[u8]) {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `name: value` with a decimal value.
    pub fn header_u32(&mut self, name: &str, value: u32) {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        push_u32(self.out, value);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `Date: Thu, 26 Nov 2026 09:17:12 GMT` (RFC 3261 §20.17) for `unix_s`.
    pub fn date(&mut self, unix_s: u64) {
        let mut d = [0u8; DATE_BYTES];
        write_date(unix_s, &mut d);
        self.header("Date", &d);
    }

    /// Writes `Server` (when not empty), `Content-Length: 0` and the empty line.
    pub fn end_message(self, server: &[u8]) {
        if !server.is_empty() {
            self.out.extend_from_slice(b"Server: ");
            self.out.extend_from_slice(server);
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse_request;
    use bumpalo::Bump;

    const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Via: SIP/2.0/UDP proxy.biloxi.com;branch=z9hG4bK1, SIP/2.0/UDP p2.biloxi.com;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn ok_for_register_with_rport() {
        let arena = Bump::new();
        let req = parse_request(REGISTER, &arena).unwrap();
        let mut out = Vec::new();
        let source: SocketAddr = "192.0.2.4:5062".parse().unwrap();
        let mut w = ResponseWriter::start(&mut out, 200, "OK", &req.echo, source, b"abc123");
        w.contact(b"sip:bob@192.0.2.4", 7200, Some(500), b"");
        w.contact(
            b"sip:bob@10.0.0.1;ob",
            30,
            None,
            b";+sip.instance=\"<urn:x>\"",
        );
        w.date(1_795_684_632);
        w.header_u32("Min-Expires", 60);
        w.end_message(b"sipreg");
        let expected = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;rport=5062;received=192.0.2.4\r\n\
Via: SIP/2.0/UDP proxy.biloxi.com;branch=z9hG4bK1, SIP/2.0/UDP p2.biloxi.com;branch=z9hG4bK2\r\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
To: Bob <sip:bob@biloxi.com>;tag=abc123\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=7200;q=0.5\r\n\
Contact: <sip:bob@10.0.0.1;ob>;expires=30;+sip.instance=\"<urn:x>\"\r\n\
Date: Thu, 26 Nov 2026 09:17:12 GMT\r\n\
Min-Expires: 60\r\n\
Server: sipreg\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }

    #[test]
    fn received_only_when_host_differs_and_tag_only_when_absent() {
        let arena = Bump::new();
        let buf = b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK1\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let req = parse_request(buf, &arena).unwrap();
        let mut out = Vec::new();
        let w = ResponseWriter::start(
            &mut out,
            405,
            "Method Not Allowed",
            &req.echo,
            "192.0.2.4:5060".parse().unwrap(),
            b"zzz",
        );
        w.end_message(b"");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "SIP/2.0 405 Method Not Allowed\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK1\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        // A NATed source: received added, no rport asked for so none written.
        let w = ResponseWriter::start(
            &mut out,
            200,
            "OK",
            &req.echo,
            "198.51.100.7:40000".parse().unwrap(),
            b"",
        );
        w.end_message(b"");
        assert!(out.starts_with(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK1;received=198.51.100.7\r\n"));
    }

    #[test]
    fn answers_a_rejected_request() {
        let arena = Bump::new();
        let buf =
            b"REGISTER sip:h SIP/2.0\r\nv: SIP/2.0/UDP [2001:db8::1];rport;branch=z9hG4bK1\r\n\
f: <sip:a@h>;tag=1\r\nt: <sip:a@h>\r\ni: c\r\nCSeq: 1 REGISTER\r\nm: <sip:a@h>;q=7\r\n\r\n";
        let rejected = parse_request(buf, &arena).unwrap_err();
        let mut out = Vec::new();
        let source = "[2001:db8::1]:5060".parse().unwrap();
        let error = rejected.error;
        let w = ResponseWriter::start(
            &mut out,
            error.status(),
            error.reason(),
            &rejected.echo.unwrap(),
            source,
            b"t",
        );
        w.end_message(b"");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "SIP/2.0 400 Invalid q value in Contact\r\n\
Via: SIP/2.0/UDP [2001:db8::1];rport=5060;branch=z9hG4bK1;received=2001:db8::1\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=t\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn integers_and_q() {
        let mut out = Vec::new();
        for v in [
            0,
            7,
            9,
            10,
            42,
            99,
            100,
            255,
            999,
            1000,
            3600,
            65535,
            u32::MAX,
        ] {
            out.clear();
            push_u32(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        for (q, s) in [
            (1000, "1"),
            (500, "0.5"),
            (330, "0.33"),
            (1, "0.001"),
            (0, "0"),
            (999, "0.999"),
            (70, "0.07"),
        ] {
            out.clear();
            push_q(&mut out, q);
            assert_eq!(out, s.as_bytes(), "{q}");
        }
    }

    #[test]
    fn ip_formatting() {
        let mut out = Vec::new();
        push_ip(&mut out, "::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(out, b"192.0.2.1");
        out.clear();
        push_ip(&mut out, "2001:db8::1".parse().unwrap());
        assert_eq!(out, b"2001:db8::1");
        assert!(host_is_ip(b"[2001:DB8::1]", "2001:db8::1".parse().unwrap()));
        assert!(host_is_ip(
            b"192.0.2.1",
            "::ffff:192.0.2.1".parse().unwrap()
        ));
        assert!(!host_is_ip(
            b"pc33.example.com",
            "192.0.2.1".parse().unwrap()
        ));
    }
}
