//! Fixed driver for instruction-count profiling of the parser:
//! `valgrind --tool=callgrind target/release/examples/parse_loop 100000`.

use std::hint::black_box;

use bumpalo::Bump;
use sipreg::sip::parse_request;

const REGISTER: &[u8] = b"REGISTER sip:biloxi.example.com SIP/2.0\r\n\
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

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut arena = Bump::with_capacity(16 * 1024);
    let mut ok = 0u32;
    for _ in 0..n {
        arena.reset();
        let req = parse_request(black_box(REGISTER), &arena);
        ok += u32::from(black_box(req.is_ok()));
    }
    println!("{ok}/{n} parsed");
}
