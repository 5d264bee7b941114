//! Any datagram: the parser must not panic, whatever it accepts (or can still answer)
//! must yield a well-formed response, and the raw header lines read again on demand
//! (`Request::headers`) must agree with what the parse picked out of them.
#![no_main]

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use sipreg::sip::{HeaderName, ResponseWriter, parse_request};

fuzz_target!(|data: &[u8]| {
    let arena = Bump::new();
    let echo = match parse_request(data, &arena) {
        Ok(req) => {
            let vias: Vec<&[u8]> = req
                .headers()
                .filter(|h| h.kind == HeaderName::Via)
                .map(|h| h.value)
                .collect();
            assert_eq!(vias, req.echo.vias, "Via values differ");
            let first = |kind| req.headers().find(|h| h.kind == kind).map(|h| h.value);
            assert_eq!(first(HeaderName::From), req.echo.from);
            assert_eq!(first(HeaderName::To), req.echo.to);
            assert_eq!(first(HeaderName::CallId), Some(req.call_id));
            assert_eq!(first(HeaderName::UserAgent), req.user_agent);
            Some(req.echo)
        }
        Err(rejected) => rejected.echo,
    };
    if let Some(echo) = echo {
        let mut out = Vec::new();
        let source = std::net::SocketAddr::from(([192, 0, 2, 1], 5060));
        let w = ResponseWriter::start(&mut out, 200, "OK", &echo, source, b"fuzz");
        w.end_message(b"");
        assert!(out.starts_with(b"SIP/2.0 "));
        assert!(out.ends_with(b"\r\n\r\n"));
    }
});
