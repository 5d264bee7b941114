//! Any datagram: the parser must not panic, whatever it accepts (or can still answer)
//! must yield a well-formed response, and the raw header lines read again on demand
//! (`Request::headers`) must agree with what the parse picked out of them. Receive
//! steering: whenever the steering program's mirror picks a core for a request the
//! parser accepts, it is the core the registrar's routing picks (issue 13).
#![no_main]

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use sipreg::placement::shard_for;
use sipreg::registrar::route_hash;
use sipreg::sip::{HeaderName, ResponseWriter, parse_request};
use sipreg::steer::decide;

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
            for shards in [2, 3, 5] {
                if let Some(core) = decide(data, shards) {
                    let owner = shard_for(route_hash(&req), shards);
                    assert_eq!(core, owner, "steering picked core {core}, routing {owner}");
                }
            }
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
