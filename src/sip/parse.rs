//! The request parser: one pass over the header lines, then eager parsing of the headers
//! a registrar acts on.
//!
//! Everything borrows the datagram. The few per-message lists (Via values, contacts,
//! option tags, Path values) are pushed straight into the caller's `bumpalo`
//! arena with a small reserved capacity (bounded by [`limits`](super::limits)), so a
//! parse performs no heap allocation of its own and copies no stack buffers.
//!
//! Each header line is visited once: its name is looked up from the line's first two
//! words together with the colon search, and as soon as the next line shows the header
//! is complete (no continuation line, RFC 3261 §7.3.1) it is recorded and handed to its
//! value parser, which reads the value in a single pass (display name, `<uri>` and
//! params together for From, To and Contact). Only the top Via is parsed; everything
//! else a registrar does not act on stays raw: [`Request::headers`] reads the header
//! lines again on demand rather than every parse storing a list that the registrar's
//! hot path never reads.
//!
//! A bad request must still be answerable, so faults are ordered rather than returned at
//! once: the request line, then framing (line structure and limits), then what a
//! response must echo (Via, From, To, Call-ID, CSeq, RFC 3261 §8.2.6.2), then
//! Max-Forwards, Expires, Content-Length, then the rest in header order. The first
//! becomes the [`ParseError`], returned together with the [`Echo`] when a top Via could
//! be parsed.
//!
//! This file is the one-pass loop and the order of faults. What it fills is in
//! `message`, the value parsers it calls are in `header_values`, and the line
//! structure it walks (request line, line ends, header names) is in `lines`.

use bumpalo::Bump;
use bumpalo::collections::Vec as BVec;

use super::chars::{digits_saturating, digits_u32, trim_lws};
use super::error::ParseError;
use super::limits::{
    CALL_ID_BYTES_MAX, DATAGRAM_BYTES_MAX, HEADER_LINE_BYTES_MAX, HEADERS_PER_MESSAGE_MAX,
    PATH_VALUES_MAX, VIAS_PER_MESSAGE_MAX,
};
use super::names::HeaderName;
use super::uri::Uri;

use super::header_values::*;
use super::lines::*;
use super::message::*;

/// Arena capacity reserved for Via values (a REGISTER from a UA has one).
const VIAS_RESERVED: usize = 2;
/// Arena capacity reserved for contacts once a Contact header is seen.
const CONTACTS_RESERVED: usize = 2;
/// Arena capacity reserved for an option-tag or Path list once its header is seen.
const TAGS_RESERVED: usize = 4;

/// Records the first error only.
fn fail(slot: &mut Option<ParseError>, e: ParseError) {
    if slot.is_none() {
        *slot = Some(e);
    }
}

/// Parses a SIP request from one datagram.
///
/// Leading CRLFs are skipped (RFC 3261 §7.5); bytes after the Content-Length body are
/// ignored (§18.3, RFC 4475 `dblreq`). Responses yield [`ParseError::IsResponse`] with no
/// echo, so the caller can drop them silently. On any other error the [`Rejected::echo`]
/// is filled whenever the top Via parsed, so a 400 (or 505) can be sent.
// Boxing the error would allocate per rejected datagram; the `Ok` side is larger anyway
// and both are moved once into the caller.
#[allow(clippy::result_large_err)]
pub fn parse_request<'a>(buf: &'a [u8], arena: &'a Bump) -> Result<Request<'a>, Rejected<'a>> {
    let reject = |error| Rejected { error, echo: None };
    if buf.len() > DATAGRAM_BYTES_MAX {
        return Err(reject(ParseError::TooLarge));
    }
    let mut pos = 0;
    while buf.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    }
    if pos >= buf.len() {
        return Err(reject(ParseError::Empty));
    }
    if buf
        .get(pos..pos + 4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return Err(reject(ParseError::IsResponse));
    }

    // The request line.
    let ends = line_ends();
    let (line, mut pos) = match next_line(buf, pos, &ends) {
        Ok(l) => l,
        Err(ParseError::BadHeaderLine) => return Err(reject(ParseError::BadRequestLine)),
        Err(e) => return Err(reject(e)),
    };
    let mut line_err = None;
    let (method, request_uri, version) = match parse_request_line(line) {
        Ok(rl) => {
            if !rl.version.eq_ignore_ascii_case(b"2.0") {
                fail(&mut line_err, ParseError::UnsupportedVersion);
            }
            let uri = rl.uri.unwrap_or_else(|e| {
                fail(&mut line_err, e);
                Uri::EMPTY
            });
            (rl.method, uri, rl.version)
        }
        Err(e) => {
            fail(&mut line_err, e);
            (Method::Other(b""), Uri::EMPTY, &b"2.0"[..])
        }
    };

    let mut frame_err = None;
    let mut body_start = None;
    let head_start = pos;
    let mut n_headers = 0usize;
    let mut vias: BVec<'a, &'a [u8]> = BVec::with_capacity_in(VIAS_RESERVED, arena);

    // What the registrar needs, picked out as each header completes.
    let mut err = None; // Faults in header order, after the fixed-precedence ones.
    let mut n_vias = 0usize;
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let (mut max_forwards, mut expires, mut content_length) = (None, None, None);
    let (mut user_agent, mut authorization) = (None, None);
    // Created on first use: most requests carry none or one of these lists.
    let mut contacts: Option<BVec<'a, Contact<'a>>> = None;
    let mut star = 0usize;
    let mut tags: [Option<BVec<'a, &'a [u8]>>; 3] = [None, None, None];
    let mut path: Option<BVec<'a, &'a [u8]>> = None;

    fn once<'a>(
        slot: &mut Option<&'a [u8]>,
        v: &'a [u8],
        dup: ParseError,
        err: &mut Option<ParseError>,
    ) {
        if slot.is_some() {
            fail(err, dup);
        } else {
            *slot = Some(v);
        }
    }

    // One header per iteration: its first line, then any continuation lines (RFC 3261
    // §7.3.1); it is complete once the following line is read and does not start with
    // SP/HTAB, and that line is the next iteration's first line.
    let (mut line, mut next) = match next_line(buf, pos, &ends) {
        Ok(l) => l,
        Err(e) => {
            fail(&mut frame_err, e);
            (&b""[..], usize::MAX)
        }
    };
    'lines: while next != usize::MAX {
        if line.is_empty() {
            body_start = Some(next);
            break;
        }
        let Some((_, colon, kind)) = split_header_name(line) else {
            fail(&mut frame_err, ParseError::BadHeaderLine);
            break;
        };
        if line.len() > HEADER_LINE_BYTES_MAX {
            fail(&mut frame_err, ParseError::HeaderTooLong);
            break;
        }
        let mut value_end = pos + line.len();
        let (following, after) = loop {
            let (l, n) = match next_line(buf, next, &ends) {
                Ok(l) => l,
                Err(e) => {
                    fail(&mut frame_err, e);
                    break 'lines;
                }
            };
            if !matches!(l.first(), Some(b' ' | b'\t')) {
                break (l, n);
            }
            value_end = next + l.len();
            if value_end - pos > HEADER_LINE_BYTES_MAX {
                fail(&mut frame_err, ParseError::HeaderTooLong);
                break 'lines;
            }
            next = n;
        };
        if n_headers >= HEADERS_PER_MESSAGE_MAX {
            fail(&mut frame_err, ParseError::TooManyHeaders);
            break;
        }
        n_headers += 1;
        let v = trim_lws(buf.get(pos + colon + 1..value_end).unwrap_or_default());
        match kind {
            HeaderName::Via => {
                n_vias += 1;
                if n_vias > VIAS_PER_MESSAGE_MAX {
                    fail(&mut err, ParseError::TooManyVias);
                } else {
                    vias.push(v);
                }
            }
            HeaderName::From => once(&mut from, v, ParseError::DuplicateFrom, &mut err),
            HeaderName::To => once(&mut to, v, ParseError::DuplicateTo, &mut err),
            HeaderName::CallId => once(&mut call_id, v, ParseError::DuplicateCallId, &mut err),
            HeaderName::CSeq => once(&mut cseq, v, ParseError::DuplicateCSeq, &mut err),
            HeaderName::MaxForwards => once(
                &mut max_forwards,
                v,
                ParseError::DuplicateMaxForwards,
                &mut err,
            ),
            HeaderName::Expires => once(&mut expires, v, ParseError::DuplicateExpires, &mut err),
            HeaderName::ContentLength => once(
                &mut content_length,
                v,
                ParseError::DuplicateContentLength,
                &mut err,
            ),
            HeaderName::UserAgent => user_agent = user_agent.or(Some(v)),
            HeaderName::Authorization => authorization = authorization.or(Some(v)),
            _ if err.is_some() => {}
            HeaderName::Contact => {
                if v == b"*" {
                    star += 1;
                } else {
                    let list = contacts
                        .get_or_insert_with(|| BVec::with_capacity_in(CONTACTS_RESERVED, arena));
                    if let Err(e) = parse_contact_list(v, list) {
                        fail(&mut err, e);
                    }
                }
            }
            HeaderName::Require | HeaderName::ProxyRequire | HeaderName::Supported => {
                let k = match kind {
                    HeaderName::Require => 0,
                    HeaderName::ProxyRequire => 1,
                    _ => 2,
                };
                if let Some(out) = tags.get_mut(k) {
                    let out =
                        out.get_or_insert_with(|| BVec::with_capacity_in(TAGS_RESERVED, arena));
                    if let Err(e) = parse_option_tags(v, out) {
                        fail(&mut err, e);
                    }
                }
            }
            HeaderName::Path => {
                let out = path.get_or_insert_with(|| BVec::with_capacity_in(TAGS_RESERVED, arena));
                let r = split_commas(
                    v,
                    |p| {
                        if p.is_empty() {
                            return Err(ParseError::BadPath);
                        }
                        if out.len() >= PATH_VALUES_MAX {
                            return Err(ParseError::TooManyPathValues);
                        }
                        out.push(p);
                        Ok(())
                    },
                    ParseError::BadPath,
                );
                if let Err(e) = r {
                    fail(&mut err, e);
                }
            }
            _ => {}
        }
        (pos, line, next) = (next, following, after);
    }
    let head = buf
        .get(head_start..body_start.unwrap_or(head_start))
        .unwrap_or_default();
    let n_contacts = contacts.as_ref().map_or(0, BVec::len);
    if star > 1 || (star == 1 && n_contacts > 0) {
        fail(&mut err, ParseError::BadStarContact);
    }

    // The echo: needs a top Via with a sent-by.
    let vias: &'a [&'a [u8]] = vias.into_bump_slice();
    let top_via = match vias.first() {
        Some(v) => parse_via(v, version),
        None => Err(ParseError::MissingVia),
    };
    // `Result`s rather than `Option<Result>`s: the parser's result is written in place
    // instead of copied (~180 bytes) into an `Option`.
    let to_parsed = match to {
        Some(t) => parse_name_addr(t, ParseError::BadTo),
        None => Err(ParseError::MissingTo),
    };
    let echo = top_via.ok().map(|top_via| Echo {
        vias,
        top_via,
        from,
        to,
        call_id,
        cseq,
        to_has_tag: matches!(to_parsed, Ok(NameAddr { tag: Some(_), .. })),
    });
    let reject = |error| Err(Rejected { error, echo });
    if let Some(e) = line_err.or(frame_err) {
        return reject(e);
    }
    if let Err(e) = top_via {
        return reject(e);
    }
    // From and To stay in their `Result`s and are copied once, into the `Request`: moving
    // them out here costs a ~180-byte copy each.
    let from_parsed = match from {
        Some(f) => parse_name_addr(f, ParseError::BadFrom),
        None => Err(ParseError::MissingFrom),
    };
    let from = match &from_parsed {
        Ok(f) => f,
        Err(e) => return reject(*e),
    };
    let to = match &to_parsed {
        Ok(t) => t,
        Err(e) => return reject(*e),
    };
    let Some(call_id) = call_id else {
        return reject(ParseError::MissingCallId);
    };
    if call_id.len() > CALL_ID_BYTES_MAX {
        return reject(ParseError::CallIdTooLong);
    }
    if !call_id_valid(call_id) {
        return reject(ParseError::BadCallId);
    }
    let Some(cseq) = cseq else {
        return reject(ParseError::MissingCSeq);
    };
    let Some(cseq) = parse_cseq(cseq, method) else {
        return reject(ParseError::BadCSeq);
    };
    if cseq.method != method {
        return reject(ParseError::CSeqMethodMismatch);
    }
    let max_forwards = match max_forwards.map(|m| digits_u32(m).filter(|&m| m <= 255)) {
        Some(None) => return reject(ParseError::BadMaxForwards),
        Some(Some(m)) => Some(m),
        None => None,
    };
    let expires = match expires.map(digits_saturating) {
        Some(None) => return reject(ParseError::BadExpires),
        Some(Some(e)) => Some(e),
        None => None,
    };
    let content_length = match content_length.map(digits_u32) {
        Some(None) => return reject(ParseError::BadContentLength),
        Some(Some(l)) => Some(l),
        None => None,
    };
    if let Some(e) = err {
        return reject(e);
    }
    let rest = buf
        .get(body_start.unwrap_or(buf.len())..)
        .unwrap_or_default();
    let body = match content_length {
        Some(l) => match rest.get(..l as usize) {
            Some(b) => b,
            None => return reject(ParseError::ContentLengthMismatch),
        },
        None => rest,
    };
    let Some(echo) = echo else {
        return reject(ParseError::BadVia); // Unreachable: the top Via parsed.
    };
    let [require, proxy_require, supported] =
        tags.map(|t| t.map_or(&[][..], BVec::into_bump_slice));
    Ok(Request {
        method,
        request_uri,
        from: *from,
        to: *to,
        call_id,
        cseq,
        max_forwards,
        contacts: match (star, contacts) {
            (_, Some(list)) if !list.is_empty() => Contacts::List(list.into_bump_slice()),
            (0, _) => Contacts::None,
            _ => Contacts::Star,
        },
        expires,
        require,
        proxy_require,
        supported,
        path: path.map_or(&[][..], BVec::into_bump_slice),
        content_length,
        user_agent,
        authorization,
        head,
        body,
        echo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REGISTER in the style of RFC 3665 §2.1, with the given extra header lines.
    fn register(extra: &str) -> String {
        format!(
            "REGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n\
             Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n\
             Max-Forwards: 70\r\n\
             From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
             To: Bob <sips:bob@biloxi.example.com>\r\n\
             Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n\
             CSeq: 1 REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// `req! { name, bytes, |req| { checks } }` for a request that must parse, and
    /// `req! { name, bytes, Err(error) }` for one that must not.
    macro_rules! req {
        ($name:ident, $buf:expr, |$req:ident| $body:block) => {
            #[test]
            fn $name() {
                let arena = Bump::new();
                let owned = $buf;
                let buf: &[u8] = owned.as_ref();
                let $req = match parse_request(buf, &arena) {
                    Ok(r) => r,
                    Err(r) => panic!("rejected: {:?}", r.error),
                };
                $body
            }
        };
        ($name:ident, $buf:expr, Err($err:expr)) => {
            #[test]
            fn $name() {
                let arena = Bump::new();
                let owned = $buf;
                let buf: &[u8] = owned.as_ref();
                match parse_request(buf, &arena) {
                    Ok(r) => panic!("parsed: {:?}", r.method),
                    Err(r) => assert_eq!(r.error, $err),
                }
            }
        };
    }

    fn contacts<'a>(req: &Request<'a>) -> &'a [Contact<'a>] {
        match req.contacts {
            Contacts::List(c) => c,
            other => panic!("{other:?}"),
        }
    }

    req! { rfc3665_register, register("Contact: <sips:bob@client.biloxi.example.com>\r\n"), |req| {
        assert_eq!(req.method, Method::Register);
        assert_eq!(req.request_uri.host, b"ss2.biloxi.example.com");
        assert_eq!(req.via().transport, Transport::Tls);
        assert_eq!((req.via().host, req.via().port), (&b"client.biloxi.example.com"[..], Some(5061)));
        assert_eq!(req.via().branch, Some(&b"z9hG4bKnashds7"[..]));
        assert_eq!(req.via().rport, None);
        assert_eq!(req.from.display, Some(&b"Bob"[..]));
        assert_eq!(req.from.tag, Some(&b"a73kszlfl"[..]));
        assert_eq!(req.from.params().collect::<Vec<_>>(), [(&b"tag"[..], Some(&b"a73kszlfl"[..]))]);
        assert_eq!(req.to.tag, None);
        assert_eq!(req.to.uri.raw, b"sips:bob@biloxi.example.com");
        assert_eq!(req.call_id, b"1j9FpLxk3uxtm8tn@biloxi.example.com");
        assert_eq!(req.cseq, CSeq { seq: 1, method: Method::Register });
        assert_eq!(req.max_forwards, Some(70));
        assert_eq!(req.content_length, Some(0));
        assert_eq!(contacts(&req)[0].uri.raw, b"sips:bob@client.biloxi.example.com");
        assert_eq!(req.headers().count(), 8);
        assert_eq!(
            req.headers().nth(1).map(|h| h.kind),
            Some(HeaderName::MaxForwards)
        );
        assert_eq!(req.echo.vias.len(), 1);
        assert!(!req.echo.to_has_tag);
        assert_eq!(req.echo.cseq, Some(&b"1 REGISTER"[..]));
        assert!(req.body.is_empty());
    }}

    req! { compact_forms, "REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1;rport\r\n\
        f: <sip:a@example.com>;tag=1\r\nt: sip:a@example.com\r\ni: abc\r\nCSEQ: 2 REGISTER\r\n\
        m: <sip:a@10.0.0.1>\r\nk: path, gruu\r\ne: gzip\r\nl: 4\r\n\r\nbodyEXTRA", |req| {
        assert_eq!(req.via().rport, Some(None));
        assert_eq!(req.call_id, b"abc");
        assert_eq!(req.supported, &[&b"path"[..], b"gruu"]);
        assert_eq!(req.body, b"body");
        assert_eq!(contacts(&req).len(), 1);
        assert_eq!(req.max_forwards, None);
    }}

    req! { leading_crlf_and_folding, "\r\n\r\nREGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP\r\n  h.example.com\r\n\t;branch=z9hG4bK1\r\n\
        From: <sip:a@example.com>\r\n ;tag=1\r\nTo: sip:a@example.com\r\nCall-ID: x\r\nCSeq: 1\r\n REGISTER\r\n\
        Contact: \"A, B\" <sip:a@h1>;\r\n  q=0.5,\r\n  <sip:a@h2>\r\nExpires: 60\r\n\r\n", |req| {
        assert_eq!(req.via().host, b"h.example.com");
        assert_eq!(req.from.tag, Some(&b"1"[..]));
        let c = contacts(&req);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].display, Some(&b"\"A, B\""[..]));
        assert_eq!(c[0].q, Some(500));
        assert_eq!(c[1].uri.raw, b"sip:a@h2");
        assert_eq!(req.expires, Some(60));
        assert_eq!(req.echo.vias[0], b"SIP/2.0/UDP\r\n  h.example.com\r\n\t;branch=z9hG4bK1");
    }}

    req! { quoted_display_names, register("Contact: \"Bob \\\"the, <builder>\\\"\" <sip:bob@h1>, sip:bob@h2;q=1, \
        Bob Smith <sip:bob@h3>;expires=0\r\nContact: <sip:bob@h4>;q=0.001;expires=99999999999\r\n"), |req| {
        let c = contacts(&req);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].display, Some(&b"\"Bob \\\"the, <builder>\\\"\""[..]));
        assert_eq!((c[1].uri.raw, c[1].q), (&b"sip:bob@h2"[..], Some(1000)));
        assert_eq!((c[2].display, c[2].expires), (Some(&b"Bob Smith"[..]), Some(0)));
        assert_eq!((c[3].q, c[3].expires), (Some(1), Some(u32::MAX)));
    }}

    req! { outbound_params, register("Contact: <sip:bob@192.0.2.4;transport=tcp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1;expires=3600\r\n"), |req| {
        let c = &contacts(&req)[0];
        assert_eq!(c.instance, Some(&b"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"[..]));
        assert_eq!((c.reg_id, c.expires, c.q), (Some(1), Some(3600), None));
        assert_eq!(c.uri.param(b"ob"), Some(None));
        assert_eq!(c.params().map(|(n, _)| n).collect::<Vec<_>>(), [&b"+sip.instance"[..], b"reg-id", b"expires"]);
        assert!(c.params.starts_with(b";+sip.instance="));
    }}

    req! { long_param_names_any_case, register("Contact: <sip:bob@h>;+SIP.Instance=\"<urn:x>\";+sip.instancf=\"<urn:y>\"\r\n"), |req| {
        // Only the first name matches `+sip.instance` (it differs from the second in its
        // last byte, which the overlapping word compare must see).
        assert_eq!(contacts(&req)[0].instance, Some(&b"<urn:x>"[..]));
    }}

    #[test]
    fn via_and_cseq_fast_paths_agree_with_the_grammar() {
        let parse = |via: &str, cseq: &str| {
            let arena = Bump::new();
            let msg = register("")
                .replace("SIP/2.0/TLS client", via)
                .replace("CSeq: 1 REGISTER", cseq);
            match parse_request(msg.as_bytes(), &arena) {
                Ok(r) => Ok(format!(
                    "{:?}",
                    (
                        r.via().transport,
                        r.via().host,
                        r.via().port,
                        r.via().branch,
                        r.cseq
                    )
                )),
                Err(r) => Err(r.error),
            }
        };
        let fast = parse("SIP/2.0/UDP client", "CSeq: 7 REGISTER").unwrap();
        assert!(fast.starts_with("(Udp,"), "{fast}");
        assert!(fast.contains("CSeq { seq: 7, method: Register }"), "{fast}");
        // The same values through the general grammar (case, SWS around `/`, LWS in CSeq).
        assert_eq!(
            parse("sip / 2.0 / udp  client", "CSeq: 7  REGISTER"),
            Ok(fast)
        );
        let tcp = parse("SIP/2.0/TCP client", "CSeq: 7 REGISTER").unwrap();
        assert!(tcp.starts_with("(Tcp,"), "{tcp}");
        let other = parse("SIP/2.0/UDPX client", "CSeq: 7 REGISTER").unwrap();
        assert!(other.starts_with("(Other([85, 68, 80, 88]),"), "{other}");
        for cseq in ["CSeq: 7 REGISTERX", "CSeq: 7 register"] {
            let r = parse("SIP/2.0/UDP client", cseq);
            assert_eq!(r, Err(ParseError::CSeqMethodMismatch), "{cseq}");
        }
    }

    req! { star, register("Contact: *\r\nExpires: 0\r\n"), |req| {
        assert_eq!(req.contacts, Contacts::Star);
        assert_eq!(req.expires, Some(0));
    }}

    req! { unbracketed_params_are_header_params, register("Contact: sip:bob@h;unknownparam;q=0.7\r\n"), |req| {
        let c = &contacts(&req)[0];
        assert_eq!(c.uri.raw, b"sip:bob@h");
        assert_eq!(c.uri.params, b"");
        assert_eq!(c.q, Some(700));
        assert_eq!(c.params, b";unknownparam;q=0.7");
    }}

    req! { bracketed_params_are_uri_params, register("Contact: <sip:bob@h;unknownparam>\r\n"), |req| {
        let c = &contacts(&req)[0];
        assert_eq!(c.uri.param(b"unknownparam"), Some(None));
        assert_eq!(c.params, b"");
    }}

    req! { path_and_option_tags, register("Path: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\nPath: <sip:p3;lr>\r\n\
        Require: path\r\nProxy-Require: foo, bar\r\nSupported:\r\nUser-Agent: X/1\r\nAuthorization: Digest username=\"bob\", realm=\"b\"\r\n"), |req| {
        assert_eq!(req.path, &[&b"<sip:p1.example.com;lr>"[..], b"<sip:p2.example.com;lr>", b"<sip:p3;lr>"]);
        assert_eq!(req.require, &[&b"path"[..]]);
        assert_eq!(req.proxy_require, &[&b"foo"[..], b"bar"]);
        assert!(req.supported.is_empty());
        assert_eq!(req.user_agent, Some(&b"X/1"[..]));
        assert_eq!(req.authorization, Some(&b"Digest username=\"bob\", realm=\"b\""[..]));
    }}

    req! { escaped_method_is_other, "RE%47IST%45R sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
        To: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 RE%47IST%45R\r\n\r\n", |req| {
        assert_eq!(req.method, Method::Other(b"RE%47IST%45R"));
    }}

    req! { ipv6_via, "OPTIONS sip:[2001:db8::9]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1] : 5070 ;rport=5070;received=2001:db8::9:255;maddr=[::1]\r\n\
        From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n", |req| {
        assert_eq!((req.via().host, req.via().port, req.via().rport), (&b"[2001:db8::9:1]"[..], Some(5070), Some(Some(5070))));
        assert_eq!(req.via().received, Some(&b"2001:db8::9:255"[..]));
        assert_eq!(req.via().maddr, Some(&b"[::1]"[..]));
        assert_eq!(req.request_uri.port, Some(5070));
    }}

    req! { response_is_not_request, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", Err(ParseError::IsResponse) }
    req! { empty, "\r\n\r\n", Err(ParseError::Empty) }
    req! { bad_q, register("Contact: <sip:a@h>;q=1.5\r\n"), Err(ParseError::BadContactQ) }
    req! { bad_q_digits, register("Contact: <sip:a@h>;q=0.1234\r\n"), Err(ParseError::BadContactQ) }
    req! { bad_contact_expires, register("Contact: <sip:a@h>;expires=soon\r\n"), Err(ParseError::BadContactExpires) }
    req! { bad_reg_id, register("Contact: <sip:a@h>;reg-id=99999999999\r\n"), Err(ParseError::BadContactRegId) }
    req! { unbracketed_headers, register("Contact: sip:a@h?Route=x\r\n"), Err(ParseError::BadContact) }
    req! { star_with_others, register("Contact: *\r\nContact: <sip:a@h>\r\n"), Err(ParseError::BadStarContact) }
    req! { contact_garbage_after, register("Contact: <sip:a@h> junk\r\n"), Err(ParseError::BadContact) }
    req! { long_contact_uri, register(&format!("Contact: <sip:{}@h>\r\n", "a".repeat(600))), Err(ParseError::ContactUriTooLong) }
    req! { too_many_contacts, register(&"Contact: <sip:a@h>\r\n".repeat(33)), Err(ParseError::TooManyContacts) }
    req! { too_many_headers, register(&"X-A: b\r\n".repeat(96)), Err(ParseError::TooManyHeaders) }
    req! { header_too_long, register(&format!("X-A: {}\r\n", "b".repeat(5000))), Err(ParseError::HeaderTooLong) }
    req! { too_large, " ".repeat(DATAGRAM_BYTES_MAX + 1), Err(ParseError::TooLarge) }
    req! { long_call_id, register("").replace("Call-ID: ", &format!("Call-ID: {}", "x".repeat(255))), Err(ParseError::CallIdTooLong) }
    req! { bad_call_id, register("").replace("Call-ID: 1j9", "Call-ID: a b"), Err(ParseError::BadCallId) }
    req! { missing_call_id, register("").replace("Call-ID", "X-Call-ID"), Err(ParseError::MissingCallId) }
    req! { missing_via, register("").replace("Via", "X-Via"), Err(ParseError::MissingVia) }
    req! { missing_from, register("").replace("From", "X-From"), Err(ParseError::MissingFrom) }
    req! { missing_to, register("").replace("To:", "X-To:"), Err(ParseError::MissingTo) }
    req! { missing_cseq, register("").replace("CSeq", "X-CSeq"), Err(ParseError::MissingCSeq) }
    req! { duplicate_to, register("To: <sip:x@h>\r\n"), Err(ParseError::DuplicateTo) }
    req! { duplicate_call_id, register("i: other\r\n"), Err(ParseError::DuplicateCallId) }
    req! { bad_cseq, register("").replace("CSeq: 1 ", "CSeq: 4294967296 "), Err(ParseError::BadCSeq) }
    req! { cseq_mismatch, register("").replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE"), Err(ParseError::CSeqMethodMismatch) }
    req! { max_forwards_range, register("").replace("Max-Forwards: 70", "Max-Forwards: 256"), Err(ParseError::BadMaxForwards) }
    req! { bad_expires, register("Expires: -1\r\n"), Err(ParseError::BadExpires) }
    req! { bad_content_length, register("").replace("Content-Length: 0", "Content-Length: x"), Err(ParseError::BadContentLength) }
    req! { short_body, register("").replace("Content-Length: 0", "Content-Length: 5"), Err(ParseError::ContentLengthMismatch) }
    req! { bad_version, register("").replace("SIP/2.0\r\n", "SIP/3.0\r\n"), Err(ParseError::UnsupportedVersion) }
    req! { bad_request_line, register("").replace("REGISTER sips", "REGISTER  sips"), Err(ParseError::BadRequestLine) }
    req! { bad_request_uri, register("").replace("sips:ss2", "sips:ss 2"), Err(ParseError::BadRequestLine) }
    req! { bad_header_line, register("NoColon\r\n"), Err(ParseError::BadHeaderLine) }
    req! { bare_cr, register("X-A: b\rInjected: c\r\n"), Err(ParseError::BadHeaderLine) }
    req! { bare_lf_tolerated, register("").replace("\r\n", "\n"), |req| { assert_eq!(req.cseq.seq, 1); } }
    req! { truncated, "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n", Err(ParseError::Truncated) }
    req! { folded_header_too_long, register(&format!("X-A: b\r\n {}\r\n {}\r\n", "c".repeat(2100), "d".repeat(2100))), Err(ParseError::HeaderTooLong) }
    req! { lone_cr_in_a_continuation, register("X-A: b\r\n c\rd\r\n"), Err(ParseError::BadHeaderLine) }
    req! { lone_cr_at_the_end, "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h\r", Err(ParseError::Truncated) }
    req! { continuation_after_request_line, "REGISTER sip:h SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n", Err(ParseError::BadHeaderLine) }
    req! { bare_lf_and_a_fold_before_the_body, register("Expires:\r\n 60\n").replace("Content-Length: 0\r\n\r\n", "Content-Length: 4\r\n\r\nbody"), |req| {
        assert_eq!(req.expires, Some(60));
        assert_eq!(req.body, b"body");
    } }

    #[test]
    fn headers_complete_before_a_truncation_are_echoed() {
        // The last header is recorded only once the line after it is read: a datagram cut
        // right after CSeq has no final empty line, so its CSeq is not echoed.
        let buf = b"REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n";
        let arena = Bump::new();
        let rejected = parse_request(buf, &arena).expect_err("truncated");
        assert_eq!(rejected.error, ParseError::Truncated);
        let echo = rejected.echo.expect("the top Via parsed");
        assert_eq!(echo.call_id, Some(&b"c"[..]));
        assert_eq!(echo.cseq, None);
    }
    req! { bad_option_tag, register("Require: a b\r\n"), Err(ParseError::BadOptionTag) }
    req! { bad_to, register("").replace("To: Bob <sips:bob@biloxi.example.com>", "To: Bob <sips:bob@biloxi.example.com"), Err(ParseError::BadTo) }

    #[test]
    fn raw_headers_are_read_again_in_order_with_folds_joined() {
        let msg = "REGISTER sip:example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1\r\n\
            From: <sip:a@example.com>;tag=1\r\n\
            To: <sip:a@example.com>\r\n\
            Subject: one\r\n \t two \r\n\tthree\r\n\
            X-Custom :  spaced  \r\n\
            Call-ID: c\r\n\
            CSeq: 1 REGISTER\r\n\
            l: 4\r\n\r\nbody";
        let arena = Bump::new();
        let req = parse_request(msg.as_bytes(), &arena).expect("parses");
        let got: Vec<(&[u8], HeaderName, &[u8])> =
            req.headers().map(|h| (h.name, h.kind, h.value)).collect();
        let want: Vec<(&[u8], HeaderName, &[u8])> = vec![
            (
                b"Via",
                HeaderName::Via,
                b"SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1",
            ),
            (b"From", HeaderName::From, b"<sip:a@example.com>;tag=1"),
            (b"To", HeaderName::To, b"<sip:a@example.com>"),
            (
                b"Subject",
                HeaderName::Subject,
                b"one\r\n \t two \r\n\tthree",
            ),
            (b"X-Custom", HeaderName::Other, b"spaced"),
            (b"Call-ID", HeaderName::CallId, b"c"),
            (b"CSeq", HeaderName::CSeq, b"1 REGISTER"),
            (b"l", HeaderName::ContentLength, b"4"),
        ];
        assert_eq!(got, want);
        assert_eq!(req.body, b"body");
        assert!(req.head.ends_with(b"l: 4\r\n\r\n"));
        // The iterator is a value: walking it twice gives the same headers.
        let it = req.headers();
        assert_eq!(it.count(), it.count());
    }

    #[test]
    fn rejected_keeps_echo() {
        let arena = Bump::new();
        let buf = register("Contact: <sip:a@h>;q=2\r\n");
        let r = parse_request(buf.as_bytes(), &arena).unwrap_err();
        assert_eq!(r.error.reason(), "Invalid q value in Contact");
        let echo = r.echo.unwrap();
        assert_eq!(
            echo.vias,
            &[&b"SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7"[..]]
        );
        assert_eq!(
            echo.call_id,
            Some(&b"1j9FpLxk3uxtm8tn@biloxi.example.com"[..])
        );
        assert_eq!(
            echo.from,
            Some(&b"Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl"[..])
        );
        // A foreign version is still answerable when the Via agrees with it (505).
        let buf = register("").replace("SIP/2.0", "SIP/7.0");
        let r = parse_request(buf.as_bytes(), &arena).unwrap_err();
        assert_eq!(
            (r.error, r.error.status()),
            (ParseError::UnsupportedVersion, 505)
        );
        assert!(r.echo.is_some());
        // No Via, no echo.
        let buf = register("").replace("Via", "X-Via");
        assert!(
            parse_request(buf.as_bytes(), &arena)
                .unwrap_err()
                .echo
                .is_none()
        );
    }

    #[test]
    fn keepalives() {
        assert!(is_keepalive(b"\r\n"));
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(!is_keepalive(b""));
        assert!(!is_keepalive(b"\r\n\r\n\r\n"));
        assert!(!is_keepalive(b"REGISTER"));
    }

    #[test]
    fn qvalues() {
        for (s, q) in [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0.5", Some(500)),
            ("0.", Some(0)),
            ("0.125", Some(125)),
            ("1.001", None),
            ("2", None),
            (".5", None),
            ("0.5x", None),
            ("", None),
        ] {
            assert_eq!(parse_qvalue(s.as_bytes()), q, "{s}");
        }
    }

    #[test]
    fn call_id_grammar() {
        for ok in [
            &b"a"[..],
            b"a@b",
            b"1j9FpLxk3u@biloxi.example.com",
            b"<x>:y/z?",
        ] {
            assert!(call_id_valid(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"@",
            b"@a",
            b"a@",
            b"a@b@c",
            b"a b",
            b"a@b c",
            b"a;b",
        ] {
            assert!(!call_id_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn truncations_never_panic() {
        let buf = register(
            "Contact: \"A\" <sip:a@h;lr>;q=0.5;+sip.instance=\"<urn:x>\", sip:b@h\r\nPath: <sip:p;lr>\r\n",
        );
        let arena = Bump::new();
        for n in 0..buf.len() {
            let _ = parse_request(&buf.as_bytes()[..n], &arena);
        }
    }
}
