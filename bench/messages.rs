//! The requests the benches and the profiling drivers in `examples/` send, in one place so
//! that every figure in perf/RESULTS.md is measured on the same bytes. Included with
//! `mod messages;` (benches) or `#[path = "../bench/messages.rs"] mod messages;` (examples);
//! each user takes what it needs.

use std::io::Write;
use std::net::IpAddr;

/// The parser bench's REGISTER, shaped like RFC 3665 §2.1 with what a current softphone adds
/// (User-Agent, Supported, Allow, an RFC 5626 Contact).
pub(crate) const REGISTER: &[u8] = b"REGISTER sip:biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;expires=3600\r\n\
User-Agent: Linphone/5.2.0\r\n\
Supported: path, outbound, gruu\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, NOTIFY\r\n\
Content-Length: 0\r\n\r\n";

/// The REGISTER of the parse target ("parse a 450-byte REGISTER", ≤ 400 ns):
/// 450 bytes, every header [`REGISTER`] has except Allow (which the parser keeps raw), with
/// a shorter domain. The same eagerly parsed work: top Via with `rport`, From with display
/// name and tag, To, Call-ID, CSeq, an RFC 5626 Contact (`+sip.instance`, `reg-id`,
/// `expires`), User-Agent, three Supported option tags, Content-Length.
pub(crate) const REGISTER_450: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@example.com>;tag=a73kszlfl\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.4\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;expires=3600\r\n\
User-Agent: Linphone/5.2.10\r\n\
Supported: path, outbound, gruu\r\n\
Content-Length: 0\r\n\r\n";
const _: () = assert!(REGISTER_450.len() == 450);

/// Digits of the CSeq number written by [`write_head`].
pub(crate) const CSEQ_DIGITS: usize = 7;

/// Request line through CSeq for AOR `u{aor:07}@example.com` from `ip`: the top Via's branch
/// is `z9hG4bK` + `branch` (with `;rport` after it), the CSeq number has [`CSEQ_DIGITS`].
pub(crate) fn write_head(
    buf: &mut Vec<u8>,
    line: &str,
    method: &str,
    ip: IpAddr,
    aor: u32,
    branch: &str,
    cseq: u64,
) {
    buf.clear();
    write!(
        buf,
        "{line}\r\n\
         Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{aor:07}@example.com>;tag=8f3a2b{aor:07}\r\n\
         To: <sip:u{aor:07}@example.com>\r\n\
         Call-ID: {aor:07}-4c5d6e7f@{ip}\r\n\
         CSeq: {cseq:0c$} {method}\r\n",
        c = CSEQ_DIGITS,
    )
    .unwrap_or_else(|e| panic!("writing to a Vec: {e}"));
}

/// The pipeline bench's REGISTER (~536 bytes): [`write_head`], then a softphone's RFC 5626
/// Contact with an ~80-byte URI, `Expires`, User-Agent and Supported.
pub(crate) fn write_register(
    buf: &mut Vec<u8>,
    ip: IpAddr,
    aor: u32,
    branch: &str,
    cseq: u64,
    expires: u32,
) {
    write_head(
        buf,
        "REGISTER sip:example.com SIP/2.0",
        "REGISTER",
        ip,
        aor,
        branch,
        cseq,
    );
    write!(
        buf,
        "Contact: <sip:u{aor:07}@{ip}:5060;transport=udp;rinstance=3f2a9b1c0d4e5f60a1b2>\
         ;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00{aor:010}>\";reg-id=1\r\n\
         Expires: {expires}\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Supported: path, outbound\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("writing to a Vec: {e}"));
}
