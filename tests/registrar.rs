//! SIP behaviour of the registrar as a client sees it, over real UDP on loopback:
//! RFC 3261 §10.3 (register, refresh, fetch, `*`, 423, CSeq ordering, max contacts),
//! §17.2.2 retransmission replay, the redirect answers (302/480/404), OPTIONS, the RFC
//! 4475 torture messages, expiry in real time, and cross-core consistency.

use std::time::Duration;

use crate::util::{Client, Server, register_request, unique};

fn aor(name: &str) -> String {
    format!("sip:{name}-{}@example.com", unique())
}

fn contact(client: &Client, tag: &str) -> String {
    format!("sip:{tag}@{}", client.local())
}

#[test]
fn register_refresh_fetch_and_unregister() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let a = aor("alice");
    let ct = contact(&c, "alice");
    let r = c.register(&a, &ct, 600, "call-a", 1);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.contact_expires(&ct), Some(600));
    assert!(
        r.header("Date").is_some(),
        "200 to REGISTER carries Date: {}",
        r.raw
    );
    assert!(r.header("To").unwrap().contains(";tag="));

    // Refresh: same Call-ID, higher CSeq.
    let r = c.register(&a, &ct, 1200, "call-a", 2);
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts().len(), 1, "{}", r.raw);
    assert_eq!(r.contact_expires(&ct), Some(1200));

    // Fetch: REGISTER without Contact lists the binding and changes nothing.
    let n = unique();
    let fetch = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-f{n}\r\n\
         Max-Forwards: 70\r\nTo: <{a}>\r\nFrom: <{a}>;tag=f{n}\r\nCall-ID: call-a\r\n\
         CSeq: 3 REGISTER\r\nContent-Length: 0\r\n\r\n",
        l = c.local()
    );
    let r = c.request(&fetch);
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts().len(), 1);

    // Unregister with Expires: 0.
    let r = c.register(&a, &ct, 0, "call-a", 4);
    assert_eq!(r.status, 200);
    assert!(r.contacts().is_empty(), "{}", r.raw);
}

#[test]
fn two_devices_then_star_removes_both() {
    let server = Server::start(&[]);
    let (c1, c2) = (Client::new(server.addr), Client::new(server.addr));
    let a = aor("bob");
    assert_eq!(
        c1.register(&a, &contact(&c1, "desk"), 3600, "desk-1", 1)
            .status,
        200
    );
    let r = c2.register(&a, &contact(&c2, "mobile"), 3600, "mobile-1", 1);
    assert_eq!(r.status, 200);
    assert_eq!(r.contacts().len(), 2, "both devices listed: {}", r.raw);

    let n = unique();
    let star = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-s{n}\r\n\
         Max-Forwards: 70\r\nTo: <{a}>\r\nFrom: <{a}>;tag=s{n}\r\nCall-ID: star-{n}\r\n\
         CSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
        l = c1.local()
    );
    let r = c1.request(&star);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.contacts().is_empty());
    let r = c1.register(&a, &contact(&c1, "desk"), 3600, "desk-1", 2);
    assert_eq!(r.contacts().len(), 1, "only the new binding: {}", r.raw);
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    let server = Server::start(&["--min-expires", "120"]);
    let c = Client::new(server.addr);
    let r = c.register(&aor("brief"), &contact(&c, "x"), 30, "brief-1", 1);
    assert_eq!(r.status, 423, "{}", r.raw);
    assert_eq!(r.header("Min-Expires"), Some("120"));
}

#[test]
fn out_of_order_cseq_is_400_and_keeps_the_binding() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let (a, ct) = (aor("ooo"), contact(&c, "ooo"));
    assert_eq!(c.register(&a, &ct, 600, "ooo-1", 10).status, 200);
    let r = c.register(&a, &ct, 1200, "ooo-1", 9);
    assert_eq!((r.status, r.reason.as_str()), (400, "Invalid CSeq"));
    let r = c.register(&a, &ct, 900, "ooo-1", 11);
    assert_eq!(r.contact_expires(&ct), Some(900));
}

#[test]
fn max_contacts_reject_policy() {
    let server = Server::start(&["--max-contacts", "2"]);
    let c = Client::new(server.addr);
    let a = aor("mc");
    assert_eq!(
        c.register(&a, "sip:one@192.0.2.1", 600, "mc-1", 1).status,
        200
    );
    assert_eq!(
        c.register(&a, "sip:two@192.0.2.2", 600, "mc-2", 1).status,
        200
    );
    let r = c.register(&a, "sip:three@192.0.2.3", 600, "mc-3", 1);
    assert_eq!(r.status, 503, "{}", r.raw);
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn max_contacts_evict_oldest_policy() {
    let server = Server::start(&[
        "--max-contacts",
        "2",
        "--max-contacts-policy",
        "evict-oldest",
    ]);
    let c = Client::new(server.addr);
    let a = aor("ev");
    assert_eq!(
        c.register(&a, "sip:one@192.0.2.1", 600, "ev-1", 1).status,
        200
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        c.register(&a, "sip:two@192.0.2.2", 600, "ev-2", 1).status,
        200
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = c.register(&a, "sip:three@192.0.2.3", 600, "ev-3", 1);
    assert_eq!(r.status, 200, "{}", r.raw);
    let cs = r.contacts();
    assert_eq!(cs.len(), 2, "{}", r.raw);
    assert!(
        !cs.iter().any(|c| c.contains("sip:one@")),
        "the oldest went: {}",
        r.raw
    );
}

// See: issue 14. RFC 3261 §10.3 step 7: a new REGISTER (new Via branch) that reuses
// the Call-ID and CSeq of the binding fails with 400 and changes nothing; the request
// that wrote it, resent after its transaction left the (one-entry) cache, is answered
// with the bindings as they are.
#[test]
fn equal_cseq_new_branch_is_400_but_an_evicted_retransmission_is_answered() {
    let server = Server::start(&["--cores", "1", "--txn-cache-max", "1"]);
    let c = Client::new(server.addr);
    let (a, ct) = (aor("eq"), contact(&c, "eq"));
    let first = register_request(&c, &a, &ct, 600, "eq-1", 5);
    assert_eq!(c.request(&first).status, 200);
    // Another AOR's transaction pushes the first out of the cache.
    let other = aor("eq-other");
    assert_eq!(
        c.register(&other, &contact(&c, "o"), 600, "eq-2", 1).status,
        200
    );

    // A de-registration that reused CSeq 5: the UA must not be told it worked.
    let r = c.register(&a, &ct, 0, "eq-1", 5);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Invalid CSeq"),
        "{}",
        r.raw
    );
    // The original request again (its transaction is gone): answered, not reapplied.
    let r = c.request(&first);
    assert_eq!(r.status, 200, "{}", r.raw);
    let left = r.contact_expires(&ct).expect("still bound");
    assert!((595..=600).contains(&left), "{}", r.raw);
    // The binding is untouched; a higher CSeq removes it.
    let r = c.register(&a, &ct, 0, "eq-1", 6);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.contacts().is_empty(), "{}", r.raw);
}

#[test]
fn retransmission_gets_the_same_bytes() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let req = register_request(&c, &aor("rtx"), &contact(&c, "rtx"), 600, "rtx-1", 1);
    let first = c.request(&req);
    std::thread::sleep(Duration::from_millis(1100));
    let again = c.request(&req);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.raw, again.raw,
        "byte-identical replay (Date included)"
    );
}

#[test]
fn redirect_is_q_ordered_and_unknown_is_404() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let a = aor("carol");
    let user = a
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let n = unique();
    let reg = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-q{n}\r\n\
         Max-Forwards: 70\r\nTo: <{a}>\r\nFrom: <{a}>;tag=q{n}\r\nCall-ID: q-{n}\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:low@192.0.2.1>;q=0.2, <sip:high@192.0.2.2>;q=0.9\r\nContact: <sip:mid@192.0.2.3>;q=0.5\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n",
        l = c.local()
    );
    assert_eq!(c.request(&reg).status, 200);
    let invite = |who: &str| {
        let n = unique();
        format!(
            "INVITE sip:{who}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-i{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{who}@example.com>\r\nFrom: <sip:caller@example.com>;tag=i{n}\r\n\
             Call-ID: i-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            l = c.local()
        )
    };
    let r = c.request(&invite(&user));
    assert_eq!(r.status, 302, "{}", r.raw);
    let cs = r.contacts();
    assert_eq!(cs.len(), 3);
    assert!(
        cs[0].contains("sip:high@") && cs[1].contains("sip:mid@") && cs[2].contains("sip:low@"),
        "{cs:?}"
    );
    assert_eq!(c.request(&invite("nobody-here")).status, 404);

    // Unregistered: the AOR is known but has no binding → 480.
    let n = unique();
    let star = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-u{n}\r\n\
         Max-Forwards: 70\r\nTo: <{a}>\r\nFrom: <{a}>;tag=u{n}\r\nCall-ID: u-{n}\r\nCSeq: 1 REGISTER\r\n\
         Contact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
        l = c.local()
    );
    assert_eq!(c.request(&star).status, 200);
    assert_eq!(c.request(&invite(&user)).status, 480);
}

#[test]
fn options_gets_200_with_allow() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let r = c.options();
    assert_eq!(r.status, 200);
    assert!(r.header("Allow").unwrap().contains("REGISTER"));
    assert!(r.header("Supported").is_some());
}

#[test]
fn domain_not_served_is_404_naming_it() {
    let server = Server::start(&["--domain", "example.org"]);
    let c = Client::new(server.addr);
    let r = c.register(&aor("d"), &contact(&c, "d"), 600, "d-1", 1);
    assert_eq!(r.status, 404);
    assert!(r.reason.contains("example.com"), "{}", r.reason);
}

#[test]
fn bindings_expire_in_real_time() {
    let server = Server::start(&["--min-expires", "1"]);
    let c = Client::new(server.addr);
    let a = aor("short");
    let ct = contact(&c, "short");
    assert_eq!(c.register(&a, &ct, 2, "short-1", 1).status, 200);
    // Expired bindings are gone within 1 s of their expiry.
    std::thread::sleep(Duration::from_millis(3200));
    let r = c.register(&a, "sip:other@192.0.2.9", 600, "short-2", 1);
    assert_eq!(r.contacts().len(), 1, "the 2-s binding is gone: {}", r.raw);
}

#[test]
fn rfc4475_torture_messages_are_survived() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rfc4475");
    let mut sent = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) == Some("dat") {
            c.send(&std::fs::read(&path).unwrap());
            sent += 1;
        }
    }
    assert_eq!(sent, 49);
    // Answers go to the messages' Via addresses (some, with rport, back to us); drain
    // them, then check the server still answers correctly.
    while c.recv_within(Duration::from_millis(500)).is_some() {}
    let r = c.register(&aor("after"), &contact(&c, "after"), 600, "after-1", 1);
    assert_eq!(r.status, 200);
    assert_eq!(c.options().status, 200);
}

#[test]
fn one_aor_from_eight_ports_is_whole_in_every_200() {
    let server = Server::start(&["--cores", "2"]);
    let a = aor("spread");
    let clients: Vec<Client> = (0..8).map(|_| Client::new(server.addr)).collect();
    for (i, c) in clients.iter().enumerate() {
        let r = c.register(
            &a,
            &contact(c, &format!("dev{i}")),
            600,
            &format!("dev{i}-call"),
            1,
        );
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(
            r.contacts().len(),
            i + 1,
            "every earlier device is listed: {}",
            r.raw
        );
        for j in 0..=i {
            assert!(
                r.contacts()
                    .iter()
                    .any(|ct| ct.contains(&format!("dev{j}@"))),
                "{}",
                r.raw
            );
        }
    }
}

#[test]
fn malformed_request_gets_400_naming_the_fault() {
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let n = unique();
    let bad = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-m{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:m@example.com>\r\nFrom: <sip:m@example.com>;tag=m{n}\r\n\
         Call-ID: m-{n}\r\nCSeq: one REGISTER\r\nContact: <sip:m@192.0.2.1>\r\nContent-Length: 0\r\n\r\n",
        l = c.local()
    );
    let r = c.request(&bad);
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("CSeq"), "{}", r.reason);
}

/// `AOR_KEY_BYTES_MAX` (256 bytes of `user@host`, one value for the registrar and the
/// location table): a key exactly at the limit registers; one byte more is refused
/// with the 400 the registrar gives, and binds nothing.
#[test]
fn aor_key_at_the_limit_registers_and_one_byte_past_is_refused() {
    const AOR_KEY_BYTES_MAX: usize = sipreg::location::AOR_KEY_BYTES_MAX;
    assert_eq!(AOR_KEY_BYTES_MAX, 256, "the documented limit");
    let server = Server::start(&[]);
    let c = Client::new(server.addr);
    let domain = "@example.com";
    let at_limit = format!(
        "sip:{}{domain}",
        "a".repeat(AOR_KEY_BYTES_MAX - domain.len())
    );
    let past = format!(
        "sip:{}{domain}",
        "b".repeat(AOR_KEY_BYTES_MAX + 1 - domain.len())
    );
    assert_eq!(at_limit.len() - "sip:".len(), AOR_KEY_BYTES_MAX);

    let ct = contact(&c, "long");
    let r = c.register(&at_limit, &ct, 600, "call-long", 1);
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"), "{}", r.raw);
    assert_eq!(r.contact_expires(&ct), Some(600), "{}", r.raw);

    let r = c.register(&past, &ct, 600, "call-longer", 1);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Address Of Record Too Long"),
        "{}",
        r.raw
    );
    assert!(r.contacts().is_empty(), "{}", r.raw);
    // The refusal changed nothing: the AOR at the limit still has its one binding.
    let r = c.register(&at_limit, &ct, 600, "call-long", 2);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.contacts().len(), 1, "{}", r.raw);
}
