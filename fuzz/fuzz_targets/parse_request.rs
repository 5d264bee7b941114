//! Any datagram: the parser must not panic, and whatever it accepts (or can still
//! answer) must yield a well-formed response.
#![no_main]

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use sipreg::sip::{ResponseWriter, parse_request};

fuzz_target!(|data: &[u8]| {
    let arena = Bump::new();
    let echo = match parse_request(data, &arena) {
        Ok(req) => Some(req.echo),
        Err(rejected) => rejected.echo,
    };
    if let Some(echo) = echo {
        let mut out = Vec::new();
        let source = std::net::SocketAddr::from(([192, 0, 2, 1], 5060));
        let w = ResponseWriter::start(&mut out, 200, "OK", &echo, source, b"fuzz");
        w.finish(b"");
        assert!(out.starts_with(b"SIP/2.0 "));
        assert!(out.ends_with(b"\r\n\r\n"));
    }
});
