//! Every RFC 4475 torture message through `parse_request`.
//!
//! The corpus lives outside the repository (`shared/rfc4475/` beside the checkout, see its
//! README); `RFC4475_DIR` overrides the location. A missing corpus fails the test rather
//! than skipping it, so CI cannot pass vacuously.

use std::path::PathBuf;

use bumpalo::Bump;
use sipreg::sip::{
    Contacts, Method, ParseError, ResponseWriter, Scheme, parse_request, parse_uri, write_aor_key,
};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("RFC4475_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/rfc4475"),
    }
}

fn load(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "RFC 4475 corpus missing at {} ({e}); set RFC4475_DIR",
            path.display()
        )
    })
}

/// Expected outcome per message: `Ok` or the exact error. §3.1.1 and §3.3 messages are
/// well-formed (some semantically odd) and parse; §3.1.2 messages are invalid; §3.2
/// messages are not requests the registrar answers.
const EXPECTED: &[(&str, Result<(), ParseError>)] = &[
    // §3.1.1 valid messages.
    ("wsinv", Ok(())),
    ("intmeth", Ok(())),
    ("esc01", Ok(())),
    ("escnull", Ok(())),
    ("esc02", Ok(())),
    ("lwsdisp", Ok(())),
    ("longreq", Ok(())),
    ("dblreq", Ok(())),
    ("semiuri", Ok(())),
    ("transports", Ok(())),
    ("mpart01", Ok(())),
    ("unreason", Err(ParseError::IsResponse)),
    ("noreason", Err(ParseError::IsResponse)),
    // §3.1.2 invalid messages.
    ("badinv01", Err(ParseError::BadVia)),
    ("clerr", Err(ParseError::ContentLengthMismatch)),
    ("scalar02", Err(ParseError::BadCSeq)),
    ("scalarlg", Err(ParseError::IsResponse)),
    ("quotbal", Err(ParseError::BadTo)),
    ("ltgtruri", Err(ParseError::BadRequestUri)),
    ("lwsruri", Err(ParseError::BadRequestLine)),
    ("lwsstart", Err(ParseError::BadRequestLine)),
    ("trws", Err(ParseError::BadRequestLine)),
    ("escruri", Err(ParseError::BadRequestUri)),
    ("baddate", Ok(())),
    ("regbadct", Err(ParseError::BadContact)),
    ("badaspec", Err(ParseError::BadTo)),
    ("baddn", Err(ParseError::BadFrom)),
    ("badvers", Err(ParseError::UnsupportedVersion)),
    ("mismatch01", Err(ParseError::CSeqMethodMismatch)),
    ("mismatch02", Err(ParseError::CSeqMethodMismatch)),
    ("multi01", Err(ParseError::DuplicateCSeq)),
    ("mcl01", Err(ParseError::DuplicateContentLength)),
    ("bcast", Err(ParseError::IsResponse)),
    ("bigcode", Err(ParseError::IsResponse)),
    ("badbranch", Ok(())),
    ("insuf", Err(ParseError::MissingFrom)),
    ("ncl", Err(ParseError::BadContentLength)),
    // §3.2 transaction layer semantics.
    ("inv2543", Ok(())),
    // §3.3 application layer semantics.
    ("novelsc", Ok(())),
    ("unkscm", Ok(())),
    ("unksm2", Ok(())),
    ("bext01", Ok(())),
    ("invut", Ok(())),
    ("regaut01", Ok(())),
    ("zeromf", Ok(())),
    ("cparam01", Ok(())),
    ("cparam02", Ok(())),
    ("regescrt", Ok(())),
    ("sdp01", Ok(())),
];

#[test]
fn every_message_parses_as_expected_and_never_panics() {
    let dir = corpus_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "RFC 4475 corpus missing at {} ({e}); set RFC4475_DIR",
                dir.display()
            )
        })
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".dat")
                .map(String::from)
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 49, "the corpus has 49 messages");
    let arena = Bump::new();
    let mut out = Vec::new();
    let mut mismatches = Vec::new();
    for name in &files {
        let buf = load(name);
        let got = parse_request(&buf, &arena);
        let outcome = got.as_ref().map(|_| ()).map_err(|r| r.error);
        match EXPECTED.iter().find(|(n, _)| n == name) {
            Some((_, want)) if *want == outcome => {}
            want => mismatches.push(format!(
                "{name}: got {outcome:?}, want {:?}",
                want.map(|w| w.1)
            )),
        }
        // Whatever can be answered yields a well-formed response.
        let echo = match &got {
            Ok(req) => Some(req.echo),
            Err(r) => r.echo,
        };
        if let Some(echo) = echo {
            let w = ResponseWriter::start(
                &mut out,
                400,
                "Bad Request",
                &echo,
                "192.0.2.1:5060".parse().unwrap(),
                b"t",
            );
            w.end_message(b"");
            assert!(
                out.starts_with(b"SIP/2.0 400 Bad Request\r\nVia: "),
                "{name}"
            );
            assert!(out.ends_with(b"\r\n\r\n"), "{name}");
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn cparam01_unknownparam_is_a_contact_param() {
    let buf = load("cparam01");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    let Contacts::List([c]) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    assert_eq!(c.uri.raw, b"sip:+19725552222@gw1.example.net");
    assert_eq!(c.uri.param(b"unknownparam"), None);
    assert!(c.params().any(|(n, v)| n == b"unknownparam" && v.is_none()));
}

#[test]
fn cparam02_unknownparam_is_a_uri_param() {
    let buf = load("cparam02");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    let Contacts::List([c]) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    assert_eq!(c.uri.raw, b"sip:+19725552222@gw1.example.net;unknownparam");
    assert_eq!(c.uri.param(b"unknownparam"), Some(None));
    assert_eq!(c.params().count(), 0);
}

#[test]
fn regescrt_keeps_the_escaped_header() {
    let buf = load("regescrt");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    let Contacts::List([c]) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    assert_eq!(
        c.uri.raw,
        b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
    assert_eq!(c.uri.headers, b"Route=%3Csip:sip.example.com%3E");
}

#[test]
fn regbadct_is_rejected_but_answerable() {
    let buf = load("regbadct");
    let arena = Bump::new();
    let r = parse_request(&buf, &arena).unwrap_err();
    assert_eq!(r.error.reason(), "Malformed Contact header");
    assert_eq!(
        r.echo.unwrap().call_id,
        Some(&b"regbadct.k345asrl3fdbv@10.0.0.1"[..])
    );
}

#[test]
fn unksm2_parses_with_foreign_schemes() {
    let buf = load("unksm2");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert_eq!(req.method, Method::Register);
    assert_eq!(req.to.uri.scheme, Scheme::Other(b"isbn"));
    let Contacts::List([c]) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    assert_eq!(c.uri.scheme, Scheme::Other(b"name"));
    assert!(write_aor_key(&req.to.uri, &mut Vec::new()).is_err());
}

#[test]
fn scalar02_names_the_cseq() {
    let buf = load("scalar02");
    let arena = Bump::new();
    let r = parse_request(&buf, &arena).unwrap_err();
    assert_eq!((r.error.status(), r.error.reason()), (400, "Invalid CSeq"));
    assert!(r.echo.is_some());
}

#[test]
fn escnull_keys_keep_the_nul() {
    let buf = load("escnull");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    let mut key = Vec::new();
    write_aor_key(&req.to.uri, &mut key).unwrap();
    assert_eq!(key, b"null-\0-null@example.com");
    let Contacts::List([a, b]) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    let (mut ka, mut kb) = (Vec::new(), Vec::new());
    write_aor_key(&a.uri, &mut ka).unwrap();
    write_aor_key(&b.uri, &mut kb).unwrap();
    assert_eq!(
        (ka.as_slice(), kb.as_slice()),
        (&b"\0@host5.example.com"[..], &b"\0\0@host5.example.com"[..])
    );
    assert!(!sipreg::sip::uri_equivalent(&a.uri, &b.uri));
}

#[test]
fn dblreq_parses_the_register_only() {
    let buf = load("dblreq");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert_eq!(req.method, Method::Register);
    assert_eq!(req.call_id, b"dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert!(req.body.is_empty());
    assert!(req.headers().all(|h| !h.value.starts_with(b"sip:joe")));
}

#[test]
fn esc02_is_not_register() {
    let buf = load("esc02");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert_eq!(req.method, Method::Other(b"RE%47IST%45R"));
    // `C%6Fntact` is an unknown header, not a Contact.
    let Contacts::List(c) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    assert_eq!(c.len(), 2);
}

#[test]
fn regaut01_keeps_the_authorization_raw() {
    let buf = load("regaut01");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert!(
        req.authorization
            .unwrap()
            .starts_with(b"NoOneKnowsThisScheme")
    );
}

#[test]
fn bext01_lists_the_required_extensions() {
    let buf = load("bext01");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert_eq!(req.method, Method::Options);
    assert!(!req.require.is_empty());
    assert!(!req.proxy_require.is_empty());
}

#[test]
fn zeromf_parses_with_zero_max_forwards() {
    let buf = load("zeromf");
    let arena = Bump::new();
    assert_eq!(parse_request(&buf, &arena).unwrap().max_forwards, Some(0));
}

#[test]
fn wsinv_folded_and_spaced_headers() {
    let buf = load("wsinv");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert_eq!(req.to.tag, Some(&b"1918181833n"[..]));
    assert_eq!(req.from.tag, Some(&b"98asjd8"[..]));
    assert_eq!(req.max_forwards, Some(68));
    assert_eq!(req.cseq.seq, 9);
    assert_eq!(req.via().host, b"192.0.2.2");
    assert_eq!(req.echo.vias.len(), 2);
    let Contacts::List([c]) = req.contacts else {
        panic!("{:?}", req.contacts)
    };
    assert_eq!(c.q, Some(330));
    assert_eq!(c.display, Some(&b"\"Quoted string \\\"\\\"\""[..]));
    assert_eq!(req.body.len(), 150);
}

#[test]
fn intmeth_odd_tokens() {
    let buf = load("intmeth");
    let arena = Bump::new();
    let req = parse_request(&buf, &arena).unwrap();
    assert_eq!(
        req.method,
        Method::Other(b"!interesting-Method0123456789_*+`.%indeed'~")
    );
    assert!(parse_uri(req.to.uri.raw).is_ok());
}
