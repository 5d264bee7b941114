//! Deterministic simulation tests: a `Registrar` driven on a fake clock with real SIP
//! bytes, asserting what a client would see in the responses.

use bumpalo::Bump;

use super::support::{self, Route, route};
use super::*;

const T0_MS: u64 = 1_790_000_000_000;

/// A registrar, a fake clock and a client address.
struct Sim {
    reg: Registrar,
    now_ms: u64,
    arena: Bump,
    out: Vec<u8>,
    source: Source,
    /// What the last `send` was answered with.
    last: Option<Action>,
}

impl Sim {
    fn new(config: RegistrarConfig) -> Self {
        Self {
            reg: Registrar::new(config),
            now_ms: T0_MS,
            arena: Bump::new(),
            out: Vec::new(),
            source: Source::udp("192.0.2.10:5062".parse().unwrap(), 0),
            last: None,
        }
    }

    fn default() -> Self {
        Self::new(RegistrarConfig::default())
    }

    /// Send one datagram; the response text ("" when none).
    fn send(&mut self, msg: &str) -> String {
        self.arena.reset();
        let action = support::handle(
            &mut self.reg,
            self.now_ms,
            self.source,
            msg.as_bytes(),
            &self.arena,
            &mut self.out,
        );
        self.last = Some(action);
        match action {
            Action::Reply { .. } => String::from_utf8(self.out.clone()).unwrap(),
            _ => String::new(),
        }
    }

    /// The `durable_after` of the last reply.
    fn durable_after(&self) -> u64 {
        match self.last {
            Some(Action::Reply { durable_after, .. }) => durable_after,
            other => panic!("last action was {other:?}, not a reply"),
        }
    }

    /// Advance the clock, firing every timeout due on the way.
    fn advance_s(&mut self, s: u64) {
        let target = self.now_ms + s * 1000;
        for _ in 0..100_000 {
            match self.reg.poll_timeout() {
                Some(t) if t <= target => {
                    self.now_ms = self.now_ms.max(t);
                    self.reg.handle_timeout(self.now_ms);
                }
                _ => break,
            }
        }
        self.now_ms = target;
        self.reg.handle_timeout(self.now_ms);
    }
}

struct Reg<'a> {
    user: &'a str,
    contacts: Vec<String>,
    expires: Option<u32>,
    call_id: &'a str,
    cseq: u32,
    branch: String,
    extra: String,
}

impl<'a> Reg<'a> {
    fn new(user: &'a str) -> Self {
        Self {
            user,
            contacts: vec![format!("<sip:{user}@192.0.2.10:5062>")],
            expires: Some(3600),
            call_id: "call-1",
            cseq: 1,
            branch: "z9hG4bK-b1".into(),
            extra: String::new(),
        }
    }
    fn contacts(mut self, c: &[&str]) -> Self {
        self.contacts = c.iter().map(|s| s.to_string()).collect();
        self
    }
    fn expires(mut self, e: Option<u32>) -> Self {
        self.expires = e;
        self
    }
    fn call_id(mut self, c: &'a str) -> Self {
        self.call_id = c;
        self
    }
    fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self.branch = format!("z9hG4bK-b{n}-{}", self.call_id);
        self
    }
    fn extra(mut self, h: &str) -> Self {
        self.extra.push_str(h);
        self.extra.push_str("\r\n");
        self
    }
    /// Each build is a new request with a fresh branch (resend the same string for a
    /// retransmission).
    fn build(&self) -> String {
        static BRANCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = BRANCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let branch = format!("{}-{n}", self.branch);
        let mut m = format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5062;branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{u}@example.com>;tag=ft1\r\n\
             To: <sip:{u}@example.com>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n",
            branch,
            self.call_id,
            self.cseq,
            u = self.user
        );
        for c in &self.contacts {
            m.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = self.expires {
            m.push_str(&format!("Expires: {e}\r\n"));
        }
        m.push_str(&self.extra);
        m.push_str("Content-Length: 0\r\n\r\n");
        m
    }
}

fn status(resp: &str) -> u16 {
    resp.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn reason(resp: &str) -> &str {
    resp.lines()
        .next()
        .map(|l| l.get(12..).unwrap_or(""))
        .unwrap_or("")
}

fn headers<'r>(resp: &'r str, name: &str) -> Vec<&'r str> {
    resp.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn contacts(resp: &str) -> Vec<&str> {
    headers(resp, "Contact")
}

#[test]
fn register_then_fetch_lists_binding_with_expires() {
    let mut sim = Sim::default();
    let r = sim.send(&Reg::new("alice").build());
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(
        contacts(&r),
        vec!["<sip:alice@192.0.2.10:5062>;expires=3600"]
    );
    assert_eq!(headers(&r, "Date").len(), 1);
    assert!(headers(&r, "To")[0].contains(";tag="), "{r}");
    sim.advance_s(100);
    let r = sim.send(
        &Reg::new("alice")
            .contacts(&[])
            .expires(None)
            .cseq(2)
            .build(),
    );
    assert_eq!(status(&r), 200);
    assert_eq!(
        contacts(&r),
        vec!["<sip:alice@192.0.2.10:5062>;expires=3500"]
    );
    assert_eq!(sim.reg.stats().bindings, 1);
}

#[test]
fn refresh_extends_and_keeps_one_binding() {
    let mut sim = Sim::default();
    assert_eq!(
        status(&sim.send(&Reg::new("a").expires(Some(120)).build())),
        200
    );
    sim.advance_s(100);
    let r = sim.send(&Reg::new("a").expires(Some(120)).cseq(2).build());
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=120"]);
    sim.advance_s(100);
    // Past the first expiry, still there thanks to the refresh.
    let r = sim.send(&Reg::new("a").contacts(&[]).expires(None).cseq(3).build());
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=20"]);
    sim.advance_s(21);
    assert_eq!(sim.reg.stats().bindings, 0);
    assert_eq!(sim.reg.stats().expired, 1);
}

#[test]
fn two_devices_on_one_aor_are_both_listed() {
    let mut sim = Sim::default();
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.1>"])
            .call_id("c1")
            .build(),
    );
    let r = sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.2>"])
            .call_id("c2")
            .build(),
    );
    assert_eq!(status(&r), 200);
    let c = contacts(&r);
    assert_eq!(c.len(), 2, "{r}");
    assert!(c.iter().any(|c| c.starts_with("<sip:bob@10.0.0.1>")));
    assert!(c.iter().any(|c| c.starts_with("<sip:bob@10.0.0.2>")));
}

#[test]
fn expires_zero_removes_one_binding() {
    let mut sim = Sim::default();
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.1>"])
            .call_id("c1")
            .build(),
    );
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.2>"])
            .call_id("c2")
            .build(),
    );
    let r = sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.1>"])
            .call_id("c1")
            .cseq(2)
            .expires(Some(0))
            .build(),
    );
    assert_eq!(status(&r), 200);
    assert_eq!(contacts(&r), vec!["<sip:bob@10.0.0.2>;expires=3600"]);
}

#[test]
fn star_unregisters_everything() {
    let mut sim = Sim::default();
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.1>"])
            .call_id("c1")
            .build(),
    );
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.2>"])
            .call_id("c2")
            .build(),
    );
    let r = sim.send(
        &Reg::new("bob")
            .contacts(&["*"])
            .call_id("c3")
            .expires(Some(0))
            .build(),
    );
    assert_eq!(status(&r), 200, "{r}");
    assert!(contacts(&r).is_empty());
    assert_eq!(sim.reg.stats().bindings, 0);
    assert_eq!(sim.reg.stats().aors, 0);
}

#[test]
fn star_without_expires_zero_is_400_and_changes_nothing() {
    let mut sim = Sim::default();
    sim.send(&Reg::new("bob").build());
    let r = sim.send(
        &Reg::new("bob")
            .contacts(&["*"])
            .call_id("c3")
            .expires(Some(60))
            .build(),
    );
    assert_eq!(status(&r), 400);
    assert!(reason(&r).contains('*'), "{r}");
    let r = sim.send(
        &Reg::new("bob")
            .contacts(&["*"])
            .call_id("c4")
            .expires(None)
            .build(),
    );
    assert_eq!(status(&r), 400);
    assert_eq!(sim.reg.stats().bindings, 1);
}

#[test]
fn star_with_same_call_id_and_old_cseq_fails_whole() {
    let mut sim = Sim::default();
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.1>"])
            .call_id("c1")
            .cseq(5)
            .build(),
    );
    sim.send(
        &Reg::new("bob")
            .contacts(&["<sip:bob@10.0.0.2>"])
            .call_id("c2")
            .build(),
    );
    let r = sim.send(
        &Reg::new("bob")
            .contacts(&["*"])
            .call_id("c1")
            .cseq(4)
            .expires(Some(0))
            .build(),
    );
    assert_eq!(status(&r), 400);
    assert_eq!(reason(&r), "Invalid CSeq");
    assert_eq!(
        sim.reg.stats().bindings,
        2,
        "all-or-nothing: nothing removed"
    );
}

#[test]
fn interval_too_brief_gets_423_with_min_expires() {
    let mut sim = Sim::default();
    let r = sim.send(&Reg::new("a").expires(Some(30)).build());
    assert_eq!(status(&r), 423);
    assert_eq!(headers(&r, "Min-Expires"), vec!["60"]);
    assert_eq!(sim.reg.stats().bindings, 0);
}

#[test]
fn clamp_policy_raises_to_minimum_and_max_is_clamped() {
    let mut sim = Sim::new(RegistrarConfig {
        min_expires_policy: MinExpiresPolicy::Clamp,
        ..Default::default()
    });
    let r = sim.send(&Reg::new("a").expires(Some(30)).build());
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=60"]);
    let r = sim.send(&Reg::new("b").expires(Some(100_000)).build());
    assert_eq!(contacts(&r), vec!["<sip:b@192.0.2.10:5062>;expires=3600"]);
}

#[test]
fn contact_expires_param_beats_header() {
    let mut sim = Sim::default();
    let r = sim.send(
        &Reg::new("a")
            .contacts(&["<sip:a@10.0.0.1>;expires=120"])
            .expires(Some(600))
            .build(),
    );
    assert_eq!(contacts(&r), vec!["<sip:a@10.0.0.1>;expires=120"]);
}

#[test]
fn out_of_order_cseq_is_rejected_and_changes_nothing() {
    let mut sim = Sim::default();
    sim.send(&Reg::new("a").cseq(10).expires(Some(600)).build());
    let r = sim.send(&Reg::new("a").cseq(9).expires(Some(1200)).build());
    assert_eq!(status(&r), 400);
    assert_eq!(reason(&r), "Invalid CSeq");
    let r = sim.send(&Reg::new("a").contacts(&[]).expires(None).cseq(11).build());
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=600"]);
}

#[test]
fn max_contacts_reject_policy_503() {
    let mut sim = Sim::new(RegistrarConfig {
        max_contacts: 2,
        ..Default::default()
    });
    for (i, cid) in ["c1", "c2"].iter().enumerate() {
        let c = format!("<sip:u@10.0.0.{i}>");
        assert_eq!(
            status(&sim.send(&Reg::new("u").contacts(&[&c]).call_id(cid).build())),
            200
        );
    }
    let r = sim.send(
        &Reg::new("u")
            .contacts(&["<sip:u@10.0.0.9>"])
            .call_id("c3")
            .build(),
    );
    assert_eq!(status(&r), 503);
    assert_eq!(headers(&r, "Retry-After").len(), 1);
    // A refresh of an existing binding is not a new one.
    let r = sim.send(
        &Reg::new("u")
            .contacts(&["<sip:u@10.0.0.0>"])
            .call_id("c1")
            .cseq(2)
            .build(),
    );
    assert_eq!(status(&r), 200);
    assert_eq!(contacts(&r).len(), 2);
}

#[test]
fn max_contacts_evict_oldest_policy() {
    let mut sim = Sim::new(RegistrarConfig {
        max_contacts: 2,
        max_contacts_policy: MaxContactsPolicy::EvictOldest,
        ..Default::default()
    });
    sim.send(
        &Reg::new("u")
            .contacts(&["<sip:u@10.0.0.1>"])
            .call_id("c1")
            .build(),
    );
    sim.advance_s(1);
    sim.send(
        &Reg::new("u")
            .contacts(&["<sip:u@10.0.0.2>"])
            .call_id("c2")
            .build(),
    );
    sim.advance_s(1);
    let r = sim.send(
        &Reg::new("u")
            .contacts(&["<sip:u@10.0.0.3>"])
            .call_id("c3")
            .build(),
    );
    assert_eq!(status(&r), 200);
    let c = contacts(&r);
    assert_eq!(c.len(), 2);
    assert!(
        !c.iter().any(|c| c.contains("10.0.0.1>")),
        "oldest evicted: {r}"
    );
    assert_eq!(sim.reg.stats().evicted, 1);
}

#[test]
fn retransmission_gets_identical_bytes_without_reprocessing() {
    let mut sim = Sim::default();
    let msg = Reg::new("a").build();
    let first = sim.send(&msg);
    sim.advance_s(5);
    let again = sim.send(&msg);
    assert_eq!(first, again);
    assert_eq!(sim.reg.stats().retransmissions, 1);
    assert_eq!(sim.reg.stats().requests, 1);
}

#[test]
fn after_timer_j_a_retransmission_changes_nothing() {
    let mut sim = Sim::default();
    let msg = Reg::new("a").cseq(3).expires(Some(600)).build();
    assert_eq!(status(&sim.send(&msg)), 200);
    sim.advance_s(33);
    // The transaction is gone: the equal CSeq is recognised as the request already
    // applied, so the binding is listed as it is, not refreshed.
    let r = sim.send(&msg);
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=567"]);
    assert_eq!(sim.reg.stats().retransmissions, 0);
}

#[test]
fn evicted_transaction_retransmission_is_not_reapplied() {
    let mut sim = Sim::new(RegistrarConfig {
        txn_cache_max: 1,
        ..Default::default()
    });
    let first = Reg::new("a").cseq(5).expires(Some(600)).build();
    assert_eq!(status(&sim.send(&first)), 200);
    sim.send(&Reg::new("b").build());
    sim.advance_s(2);
    let r = sim.send(&first);
    assert_eq!(status(&r), 200);
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=598"]);
}

// See: issue 14. RFC 3261 §10.3 step 7: an equal CSeq is not higher, so a *new*
// request (another top Via branch) that reused it fails, and changes nothing. The
// request that wrote the binding, retransmitted once its transaction is gone (same
// branch), is answered with the bindings as they are.
#[test]
fn equal_cseq_with_a_new_branch_fails_and_changes_nothing() {
    let mut sim = Sim::default();
    let first = Reg::new("a").cseq(7).expires(Some(600)).build();
    assert_eq!(status(&sim.send(&first)), 200);
    sim.advance_s(40);
    // A de-registration that reused CSeq 7: before issue 14 this got 200 and the
    // binding stayed, so the UA believed it was gone.
    let unregister = Reg::new("a").cseq(7).expires(Some(0)).build();
    let r = sim.send(&unregister);
    assert_eq!(status(&r), 400, "{r}");
    assert_eq!(reason(&r), "Invalid CSeq");
    // A refresh that reused it fails the same way.
    let refresh = Reg::new("a").cseq(7).expires(Some(3600)).build();
    let r = sim.send(&refresh);
    assert_eq!((status(&r), reason(&r)), (400, "Invalid CSeq"), "{r}");
    // Nothing changed: the binding is there with the expiry it had.
    let r = sim.send(&Reg::new("a").contacts(&[]).expires(None).cseq(8).build());
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=560"]);
    // The original request, retransmitted after Timer J: answered, nothing changed.
    let r = sim.send(&first);
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=560"]);
    // A higher CSeq with a new branch goes through (the de-registration, done right).
    let r = sim.send(&Reg::new("a").cseq(9).expires(Some(0)).build());
    assert_eq!(status(&r), 200, "{r}");
    assert!(contacts(&r).is_empty(), "{r}");
}

#[test]
fn equal_cseq_is_told_apart_by_the_branch_of_the_last_writer() {
    // The binding remembers the branch of the request that last *changed* it: after a
    // refresh, a retransmission of the first request is out of order, and one of the
    // refresh is the retransmission.
    let mut sim = Sim::new(RegistrarConfig {
        txn_cache_max: 1,
        ..Default::default()
    });
    let first = Reg::new("a").cseq(1).expires(Some(600)).build();
    let refresh = Reg::new("a").cseq(2).expires(Some(600)).build();
    assert_eq!(status(&sim.send(&first)), 200);
    assert_eq!(status(&sim.send(&refresh)), 200);
    // Evict both transactions from the one-entry cache.
    sim.send(&Reg::new("b").build());
    let r = sim.send(&refresh);
    assert_eq!(status(&r), 200, "{r}");
    let r = sim.send(&first);
    assert_eq!((status(&r), reason(&r)), (400, "Invalid CSeq"), "{r}");
    // Only the matched binding's writer counts: a second contact in the same
    // request with an equal CSeq and another branch fails the whole request.
    let two = Reg::new("a")
        .cseq(2)
        .contacts(&["<sip:a@192.0.2.10:5062>", "<sip:a2@192.0.2.11>"])
        .build();
    let r = sim.send(&two);
    assert_eq!((status(&r), reason(&r)), (400, "Invalid CSeq"), "{r}");
    let r = sim.send(&Reg::new("a").contacts(&[]).expires(None).cseq(3).build());
    assert_eq!(contacts(&r).len(), 1, "{r}");
}

#[test]
fn branchless_requests_with_equal_cseq_are_the_retransmission() {
    // RFC 2543 clients send no branch: nothing tells a retransmission from a new
    // request with the same CSeq, so both are answered as the retransmission (the
    // behaviour before issue 14), and a higher CSeq still applies.
    let mut sim = Sim::default();
    let strip = |m: String| m.replace(";branch=", ";x-was-branch=");
    let first = strip(Reg::new("a").cseq(4).expires(Some(600)).build());
    assert_eq!(status(&sim.send(&first)), 200);
    sim.advance_s(40);
    let again = strip(Reg::new("a").cseq(4).expires(Some(0)).build());
    let r = sim.send(&again);
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(contacts(&r), vec!["<sip:a@192.0.2.10:5062>;expires=560"]);
    let r = sim.send(&strip(Reg::new("a").cseq(5).expires(Some(0)).build()));
    assert_eq!(status(&r), 200, "{r}");
    assert!(contacts(&r).is_empty(), "{r}");
}

#[test]
fn q_ordering_in_200_and_302() {
    let mut sim = Sim::default();
    sim.send(
        &Reg::new("q")
            .contacts(&[
                "<sip:q@10.0.0.1>;q=0.1",
                "<sip:q@10.0.0.2>;q=0.9",
                "<sip:q@10.0.0.3>;q=0.5",
            ])
            .build(),
    );
    let invite = "INVITE sip:q@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKinv1;rport\r\n\
        Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:q@example.com>\r\n\
        Call-ID: inv1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@192.0.2.20>\r\nContent-Length: 0\r\n\r\n";
    let r = sim.send(invite);
    assert_eq!(status(&r), 302, "{r}");
    let c = contacts(&r);
    assert_eq!(c.len(), 3);
    assert!(
        c[0].starts_with("<sip:q@10.0.0.2;alias=") && c[0].contains("q=0.9"),
        "{c:?}"
    );
    assert!(c[1].starts_with("<sip:q@10.0.0.3;alias="));
    assert!(c[2].starts_with("<sip:q@10.0.0.1;alias="));
}

#[test]
fn invite_to_unknown_is_404() {
    let mut sim = Sim::default();
    let invite = "INVITE sip:nobody@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKinv2\r\n\
        Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:nobody@example.com>\r\n\
        Call-ID: inv2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status(&sim.send(invite)), 404);
}

#[test]
fn options_is_answered_with_allow_even_at_zero_max_forwards() {
    let mut sim = Sim::default();
    let opt = "OPTIONS sip:user@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKopt\r\n\
        Max-Forwards: 0\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:user@example.com>\r\n\
        Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let r = sim.send(opt);
    assert_eq!(status(&r), 200);
    assert!(headers(&r, "Allow")[0].contains("REGISTER"));
}

#[test]
fn unsupported_require_gets_420_with_unsupported() {
    let mut sim = Sim::default();
    let r = sim.send(&Reg::new("a").extra("Require: path, foo").build());
    assert_eq!(status(&r), 420);
    assert_eq!(headers(&r, "Unsupported"), vec!["foo"]);
    assert_eq!(sim.reg.stats().bindings, 0);
}

#[test]
fn domain_not_served_is_404_naming_the_domain() {
    let mut sim = Sim::new(RegistrarConfig {
        domains: vec!["example.org".into()],
        ..Default::default()
    });
    let r = sim.send(&Reg::new("a").build());
    assert_eq!(status(&r), 404);
    assert!(reason(&r).contains("example.com"), "{r}");
}

#[test]
fn path_is_stored_and_echoed_with_supported_path() {
    let mut sim = Sim::default();
    let r = sim.send(
        &Reg::new("p")
            .extra("Path: <sip:edge.example.com;lr>")
            .extra("Supported: path")
            .build(),
    );
    assert_eq!(status(&r), 200);
    assert_eq!(headers(&r, "Path"), vec!["<sip:edge.example.com;lr>"]);
    let aor = sim.reg.location().get(b"p@example.com").unwrap();
    assert_eq!(
        aor.iter().next().unwrap().path(),
        b"<sip:edge.example.com;lr>"
    );
}

#[test]
fn rport_and_received_are_added_to_via() {
    let mut sim = Sim::default();
    let r = sim.send(&Reg::new("a").build());
    let via = headers(&r, "Via")[0];
    assert!(via.contains("rport=5062"), "{via}");
    assert!(via.contains("received=192.0.2.10"), "{via}");
}

#[test]
fn malformed_contact_gets_400_naming_the_header() {
    let mut sim = Sim::default();
    let r = sim.send(&Reg::new("a").contacts(&["<sip:a@10.0.0.1>;q=7"]).build());
    assert_eq!(status(&r), 400, "{r}");
    assert!(
        reason(&r).to_ascii_lowercase().contains("contact") || reason(&r).contains('q'),
        "{r}"
    );
}

#[test]
fn max_bindings_per_shard_gives_503() {
    let mut sim = Sim::new(RegistrarConfig {
        max_bindings: 2,
        ..Default::default()
    });
    assert_eq!(status(&sim.send(&Reg::new("a").build())), 200);
    assert_eq!(status(&sim.send(&Reg::new("b").build())), 200);
    let r = sim.send(&Reg::new("c").build());
    assert_eq!(status(&r), 503);
    assert_eq!(sim.reg.stats().bindings, 2);
}

#[test]
fn jitter_shortens_within_bounds_and_is_reported() {
    let mut sim = Sim::new(RegistrarConfig {
        expires_jitter_percent: 20,
        ..Default::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..50 {
        let u = format!("j{i}");
        let r = sim.send(&Reg::new(&u).build());
        let c = contacts(&r)[0].to_string();
        let e: u32 = c.rsplit("expires=").next().unwrap().parse().unwrap();
        assert!((2880..=3600).contains(&e), "{e}");
        seen.insert(e);
    }
    assert!(seen.len() > 5, "jitter spreads expiries: {seen:?}");
}

#[test]
fn ack_is_absorbed_and_keepalive_dropped() {
    let mut sim = Sim::default();
    let ack = "ACK sip:q@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKinv1\r\n\
        Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:q@example.com>;tag=2\r\n\
        Call-ID: inv1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(sim.send(ack), "");
    assert_eq!(sim.send("\r\n\r\n"), "");
    assert_eq!(sim.reg.stats().drops[DropReason::KeepAlive as usize], 1);
}

#[test]
fn route_hash_is_the_same_for_register_and_invite_of_one_aor() {
    let reg = Reg::new("Alice").build();
    let invite = "INVITE sip:Alice@EXAMPLE.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        From: <sip:x@y>;tag=1\r\nTo: <sip:Alice@example.com>\r\nCall-ID: zz\r\nCSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(route(reg.as_bytes()), route(invite.as_bytes()));
    assert_ne!(
        route(reg.as_bytes()),
        route(Reg::new("alice").build().as_bytes()),
        "user part is case-sensitive"
    );
}

#[test]
fn every_rfc4475_message_survives() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rfc4475");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut sim = Sim::default();
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("dat") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        sim.arena.reset();
        let _ = route(&bytes);
        let _ = support::handle(
            &mut sim.reg,
            sim.now_ms,
            sim.source,
            &bytes,
            &sim.arena,
            &mut sim.out,
        );
        n += 1;
    }
    assert_eq!(n, 49);
    // Still alive and correct afterwards.
    assert_eq!(
        status(&sim.send(&Reg::new("after").call_id("after-1").build())),
        200
    );
}

fn torture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/rfc4475")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The outcomes of `shared/rfc4475/README.md`'s table of registrar-relevant messages.
#[test]
fn rfc4475_registrar_outcomes() {
    let cases: &[(&str, &[u16])] = &[
        ("cparam01.dat", &[200]),
        ("cparam02.dat", &[200]),
        ("regescrt.dat", &[200]),
        ("regbadct.dat", &[400]),
        ("unksm2.dat", &[400]),
        ("scalar02.dat", &[400]),
        ("escnull.dat", &[200]),
        ("dblreq.dat", &[200]),
        ("esc02.dat", &[405, 501]),
        ("bext01.dat", &[420]),
        ("zeromf.dat", &[200]),
    ];
    for (name, want) in cases {
        let mut sim = Sim::default();
        let bytes = torture(name);
        sim.arena.reset();
        let h = support::handle(
            &mut sim.reg,
            sim.now_ms,
            sim.source,
            &bytes,
            &sim.arena,
            &mut sim.out,
        );
        assert!(matches!(h, Action::Reply { .. }), "{name}: no answer");
        let r = String::from_utf8_lossy(&sim.out).into_owned();
        assert!(want.contains(&status(&r)), "{name}: {r}");
    }
}

#[test]
fn rfc4475_cparam_params_land_where_the_rfc_says() {
    let mut sim = Sim::default();
    let bytes = torture("cparam01.dat");
    sim.arena.reset();
    support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        &bytes,
        &sim.arena,
        &mut sim.out,
    );
    let r = String::from_utf8_lossy(&sim.out).into_owned();
    // Without <>, `unknownparam` is a contact parameter: the stored URI has no params.
    assert!(
        contacts(&r)
            .iter()
            .any(|c| c.starts_with("<sip:+19725552222@gw1.example.net>")),
        "{r}"
    );

    let mut sim = Sim::default();
    let bytes = torture("cparam02.dat");
    sim.arena.reset();
    support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        &bytes,
        &sim.arena,
        &mut sim.out,
    );
    let r = String::from_utf8_lossy(&sim.out).into_owned();
    assert!(
        contacts(&r)
            .iter()
            .any(|c| c.starts_with("<sip:+19725552222@gw1.example.net;unknownparam>")),
        "{r}"
    );
}

#[test]
fn rfc4475_escnull_keeps_two_distinct_bindings_and_regescrt_echoes_escapes() {
    let mut sim = Sim::default();
    let bytes = torture("escnull.dat");
    sim.arena.reset();
    support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        &bytes,
        &sim.arena,
        &mut sim.out,
    );
    let r = String::from_utf8_lossy(&sim.out).into_owned();
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(contacts(&r).len(), 2, "{r}");

    let mut sim = Sim::default();
    let bytes = torture("regescrt.dat");
    sim.arena.reset();
    support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        &bytes,
        &sim.arena,
        &mut sim.out,
    );
    let r = String::from_utf8_lossy(&sim.out).into_owned();
    assert!(
        contacts(&r)[0].starts_with("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"),
        "{r}"
    );
}

fn invite(user: &str, n: u32) -> String {
    format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKinv-{user}-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: inv-{user}-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn known_aor_without_live_binding_gets_480_unknown_404() {
    let mut sim = Sim::default();
    sim.send(&Reg::new("gone").expires(Some(60)).build());
    assert_eq!(status(&sim.send(&invite("gone", 1))), 302);
    sim.advance_s(61);
    assert_eq!(status(&sim.send(&invite("gone", 2))), 480);
    sim.send(&Reg::new("left").build());
    sim.send(&Reg::new("left").expires(Some(0)).cseq(2).build());
    assert_eq!(status(&sim.send(&invite("left", 1))), 480);
    assert_eq!(status(&sim.send(&invite("never", 1))), 404);
}

#[test]
fn a_foreign_request_is_forwarded_untouched() {
    let mut sim = Sim::default();
    let msg = Reg::new("far").build();
    sim.arena.reset();
    let p = Registrar::prepare(msg.as_bytes(), &sim.arena, |_| false);
    let d = sim
        .reg
        .answer(sim.now_ms, sim.source, &p, &sim.arena, &mut sim.out);
    assert_eq!(
        d,
        Action::Forward {
            hash: match route(msg.as_bytes()) {
                Route::Hash(h) => h,
                Route::Drop(r) => panic!("{r:?}"),
            }
        }
    );
    assert!(sim.out.is_empty());
    assert_eq!(sim.reg.stats().requests, 0);
    assert_eq!(sim.reg.stats().bindings, 0);
    // Owned: handled as usual.
    sim.arena.reset();
    let p = Registrar::prepare(msg.as_bytes(), &sim.arena, |_| true);
    let d = sim
        .reg
        .answer(sim.now_ms, sim.source, &p, &sim.arena, &mut sim.out);
    assert!(matches!(d, Action::Reply { .. }));
    assert_eq!(sim.reg.stats().bindings, 1);
}

mod auth {
    //! Digest authentication in the §10.3 pipeline (steps 3-4), driven like a phone:
    //! REGISTER, 401 with challenges, REGISTER with credentials (CSeq+1).

    use std::sync::Arc;

    use md5::{Digest, Md5};
    use sha2::Sha256;

    use super::*;
    use crate::auth::{Algorithm, Subscribers};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn h(algo: &str, data: &str) -> String {
        if algo == "MD5" {
            hex(&Md5::digest(data.as_bytes()))
        } else {
            hex(&Sha256::digest(data.as_bytes()))
        }
    }

    fn auth_sim(algorithms: Vec<Algorithm>) -> Sim {
        let subscribers =
            Subscribers::parse("# test\nalice@example.com s3cret\nbob@example.com hunter2\n")
                .unwrap();
        Sim::new(RegistrarConfig {
            auth: Some(AuthConfig {
                subscribers: Arc::new(subscribers),
                secret: [7; 32],
                algorithms,
                nonce_lifetime_ms: 30_000,
            }),
            ..Default::default()
        })
    }

    /// (algorithm, nonce, opaque, stale) of each WWW-Authenticate.
    fn challenges(resp: &str) -> Vec<(String, String, String, bool)> {
        headers(resp, "WWW-Authenticate")
            .iter()
            .map(|v| {
                let field = |name: &str| {
                    v.split(", ")
                        .find_map(|p| {
                            p.trim_start_matches("Digest ")
                                .strip_prefix(&format!("{name}="))
                        })
                        .map(|x| x.trim_matches('"').to_string())
                        .unwrap_or_default()
                };
                (
                    field("algorithm"),
                    field("nonce"),
                    field("opaque"),
                    v.contains("stale=true"),
                )
            })
            .collect()
    }

    fn credentials(
        user: &str,
        password: &str,
        algo: &str,
        nonce: &str,
        opaque: &str,
        nc: u32,
    ) -> String {
        let realm = "example.com";
        let uri = "sip:example.com";
        let cnonce = "0a4f113b";
        let nc = format!("{nc:08x}");
        let ha1 = h(algo, &format!("{user}:{realm}:{password}"));
        let ha2 = h(algo, &format!("REGISTER:{uri}"));
        let response = h(algo, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={algo}, cnonce=\"{cnonce}\", opaque=\"{opaque}\", qop=auth, nc={nc}"
        )
    }

    #[test]
    fn challenge_then_authorized_200_with_sha256_and_md5() {
        for (offered, pick) in [
            (vec![Algorithm::Sha256, Algorithm::Md5], "SHA-256"),
            (vec![Algorithm::Sha256, Algorithm::Md5], "MD5"),
            (vec![Algorithm::Md5], "MD5"),
        ] {
            let mut sim = auth_sim(offered.clone());
            let r = sim.send(&Reg::new("alice").cseq(1).build());
            assert_eq!(status(&r), 401, "{r}");
            let ch = challenges(&r);
            assert_eq!(ch.len(), offered.len(), "{r}");
            assert!(headers(&r, "WWW-Authenticate")[0].contains("realm=\"example.com\""));
            assert!(headers(&r, "WWW-Authenticate")[0].contains("qop=\"auth\""));
            if offered.len() == 2 {
                assert_eq!(ch[0].0, "SHA-256", "SHA-256 first (RFC 8760)");
            }
            assert_eq!(
                sim.reg.stats().bindings,
                0,
                "nothing bound before authentication"
            );
            let (_, nonce, opaque, _) = ch.iter().find(|c| c.0 == pick).unwrap().clone();
            let r = sim.send(
                &Reg::new("alice")
                    .cseq(2)
                    .extra(&credentials("alice", "s3cret", pick, &nonce, &opaque, 1))
                    .build(),
            );
            assert_eq!(status(&r), 200, "{pick}: {r}");
            assert_eq!(sim.reg.stats().bindings, 1);
        }
    }

    /// RFC 3261 §22.4: a REGISTER that crossed a proxy asking for credentials too
    /// carries an Authorization for each realm; ours is found even when it is not first.
    #[test]
    fn our_credentials_after_another_realms_are_used() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let r = sim.send(&Reg::new("alice").cseq(1).build());
        let (_, nonce, opaque, _) = challenges(&r)[0].clone();
        let ours = credentials("alice", "s3cret", "SHA-256", &nonce, &opaque, 1);
        let proxy = ours.replace("realm=\"example.com\"", "realm=\"proxy.example.net\"");
        let r = sim.send(&Reg::new("alice").cseq(2).extra(&proxy).extra(&ours).build());
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(sim.reg.stats().bindings, 1);
        // With only the proxy's credentials there is nothing for us: a new challenge.
        let r = sim.send(&Reg::new("alice").cseq(3).extra(&proxy).build());
        assert_eq!(status(&r), 401, "{r}");
    }

    #[test]
    fn two_phones_challenged_in_the_same_millisecond_both_get_in() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let a = sim.send(&Reg::new("alice").cseq(1).build());
        let b = sim.send(&Reg::new("bob").cseq(1).build());
        let (_, na, oa, _) = challenges(&a)[0].clone();
        let (_, nb, ob, _) = challenges(&b)[0].clone();
        assert_ne!(na, nb, "a nonce per challenge");
        let ra = sim.send(
            &Reg::new("alice")
                .cseq(2)
                .extra(&credentials("alice", "s3cret", "SHA-256", &na, &oa, 1))
                .build(),
        );
        let rb = sim.send(
            &Reg::new("bob")
                .cseq(2)
                .extra(&credentials("bob", "hunter2", "SHA-256", &nb, &ob, 1))
                .build(),
        );
        assert_eq!((status(&ra), status(&rb)), (200, 200), "{ra}\n{rb}");
    }

    #[test]
    fn wrong_password_and_unknown_user_get_the_same_401() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let r = sim.send(&Reg::new("alice").cseq(1).build());
        let (_, nonce, opaque, _) = challenges(&r)[0].clone();
        let wrong = sim.send(
            &Reg::new("alice")
                .cseq(2)
                .extra(&credentials("alice", "nope", "SHA-256", &nonce, &opaque, 1))
                .build(),
        );
        let unknown = sim.send(
            &Reg::new("mallory")
                .cseq(2)
                .extra(&credentials("mallory", "x", "SHA-256", &nonce, &opaque, 1))
                .build(),
        );
        assert_eq!((status(&wrong), reason(&wrong)), (401, "Unauthorized"));
        assert_eq!((status(&unknown), reason(&unknown)), (401, "Unauthorized"));
        assert_eq!(sim.reg.stats().bindings, 0);
        let c = sim.reg.auth_counters().unwrap();
        assert_eq!(c.failures.bad_response + c.failures.unknown_user, 2);
    }

    #[test]
    fn stale_nonce_gets_stale_true_and_replayed_nc_is_refused() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let r = sim.send(&Reg::new("alice").cseq(1).build());
        let (_, nonce, opaque, _) = challenges(&r)[0].clone();
        let ok = sim.send(
            &Reg::new("alice")
                .cseq(2)
                .extra(&credentials(
                    "alice", "s3cret", "SHA-256", &nonce, &opaque, 1,
                ))
                .build(),
        );
        assert_eq!(status(&ok), 200);
        // The same nonce-count again (a replay with a new branch and CSeq).
        let replay = sim.send(
            &Reg::new("alice")
                .cseq(3)
                .extra(&credentials(
                    "alice", "s3cret", "SHA-256", &nonce, &opaque, 1,
                ))
                .build(),
        );
        assert_eq!(status(&replay), 401, "{replay}");
        // The next count is fine.
        let next = sim.send(
            &Reg::new("alice")
                .cseq(4)
                .extra(&credentials(
                    "alice", "s3cret", "SHA-256", &nonce, &opaque, 2,
                ))
                .build(),
        );
        assert_eq!(status(&next), 200, "{next}");
        // Past the lifetime: right credentials, old nonce → stale=true.
        sim.advance_s(31);
        let stale = sim.send(
            &Reg::new("alice")
                .cseq(5)
                .extra(&credentials(
                    "alice", "s3cret", "SHA-256", &nonce, &opaque, 3,
                ))
                .build(),
        );
        assert_eq!(status(&stale), 401);
        assert!(challenges(&stale)[0].3, "stale=true: {stale}");
        assert!(sim.reg.auth_counters().unwrap().stale >= 1);
    }

    #[test]
    fn authenticated_user_must_be_the_to_user() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let r = sim.send(&Reg::new("alice").cseq(1).build());
        let (_, nonce, opaque, _) = challenges(&r)[0].clone();
        // bob's valid credentials on alice's AOR.
        let r = sim.send(
            &Reg::new("alice")
                .cseq(2)
                .extra(&credentials(
                    "bob", "hunter2", "SHA-256", &nonce, &opaque, 1,
                ))
                .build(),
        );
        assert_eq!(status(&r), 403, "{r}");
        assert_eq!(sim.reg.stats().bindings, 0);
    }

    #[test]
    fn unknown_scheme_and_malformed_credentials_never_bind() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let r = sim.send(
            &Reg::new("alice")
                .extra("Authorization: NoOneKnowsThisScheme opaque-data=here")
                .build(),
        );
        assert_eq!(status(&r), 401, "{r}");
        assert_eq!(challenges(&r).len(), 1);
        let r = sim.send(
            &Reg::new("alice")
                .extra("Authorization: Digest username=\"alice, realm=")
                .build(),
        );
        assert!(matches!(status(&r), 400 | 401), "{r}");
        assert!(!reason(&r).contains("alice"), "no user in the reason: {r}");
        assert_eq!(sim.reg.stats().bindings, 0);
    }

    #[test]
    fn options_and_invites_are_not_challenged() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        let opt = "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKo1\r\n\
            Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:example.com>\r\n\
            Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(status(&sim.send(opt)), 200);
        assert_eq!(status(&sim.send(&invite("alice", 1))), 404);
    }

    #[test]
    fn reloaded_subscribers_take_effect() {
        let mut sim = auth_sim(vec![Algorithm::Sha256]);
        sim.reg.set_subscribers(Arc::new(
            Subscribers::parse("carol@example.com pw\n").unwrap(),
        ));
        let r = sim.send(&Reg::new("carol").cseq(1).build());
        let (_, nonce, opaque, _) = challenges(&r)[0].clone();
        let r = sim.send(
            &Reg::new("carol")
                .cseq(2)
                .extra(&credentials("carol", "pw", "SHA-256", &nonce, &opaque, 1))
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        let r = sim.send(
            &Reg::new("alice")
                .cseq(3)
                .extra(&credentials(
                    "alice", "s3cret", "SHA-256", &nonce, &opaque, 1,
                ))
                .build(),
        );
        assert_eq!(status(&r), 401, "alice is gone after the reload");
    }
}

#[test]
fn journal_records_each_commit_and_restores_into_a_fresh_shard() {
    use crate::store::record::{Frame, Record, decode, next_frame};
    let mut sim = Sim::new(RegistrarConfig {
        journal: true,
        ..RegistrarConfig::default()
    });
    assert_eq!(status(&sim.send(&Reg::new("alice").build())), 200);
    assert_eq!(status(&sim.send(&Reg::new("bob").build())), 200);
    let r = sim.send(&Reg::new("bob").expires(Some(0)).cseq(2).build());
    assert_eq!(status(&r), 200);
    // A fetch changes nothing: no record.
    let before = sim.durable_after();
    let r = sim.send(
        &Reg::new("alice")
            .contacts(&[])
            .expires(None)
            .cseq(3)
            .build(),
    );
    assert_eq!(status(&r), 200);
    assert_eq!(
        sim.durable_after(),
        before,
        "a fetch waits for the commits before it only"
    );

    let mut journal = Vec::new();
    sim.reg.drain_journal(&mut journal);
    assert_eq!(journal.len() as u64, before);
    let mut records = Vec::new();
    let mut offset = 0;
    while let Frame::Record { payload, next } = next_frame(&journal, offset) {
        records.push(payload.to_vec());
        offset = next;
    }
    assert_eq!(records.len(), 3);
    assert!(matches!(decode(&records[2]).unwrap(), Record::Gone { .. }));

    let mut fresh = Sim::default();
    fresh.now_ms = sim.now_ms;
    let Record::Set { key, bindings } = decode(&records[0]).unwrap() else {
        panic!("alice's record")
    };
    assert_eq!(fresh.reg.restore_aor(fresh.now_ms, key, &bindings), 1);
    let r = fresh.send(
        &Reg::new("alice")
            .contacts(&[])
            .expires(None)
            .cseq(3)
            .build(),
    );
    assert_eq!(
        contacts(&r),
        vec!["<sip:alice@192.0.2.10:5062>;expires=3600"]
    );
}

#[test]
fn a_failed_store_refuses_changes_with_503_but_still_answers_fetches() {
    let mut sim = Sim::new(RegistrarConfig {
        journal: true,
        ..RegistrarConfig::default()
    });
    assert_eq!(status(&sim.send(&Reg::new("alice").build())), 200);
    sim.reg.set_store_failed(true);
    let r = sim.send(&Reg::new("bob").build());
    assert_eq!(status(&r), 503, "{r}");
    assert_eq!(headers(&r, "Retry-After").len(), 1, "{r}");
    let r = sim.send(
        &Reg::new("alice")
            .contacts(&[])
            .expires(None)
            .cseq(2)
            .build(),
    );
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(sim.reg.stats().bindings, 1);
}

// ---- management operations (issue 7) ----

#[test]
fn aor_hash_is_the_route_of_a_register_to_that_aor() {
    let msg = Reg::new("Alice").build();
    assert_eq!(
        route(msg.as_bytes()),
        Route::Hash(aor_hash(b"Alice@example.com"))
    );
    assert_ne!(
        aor_hash(b"Alice@example.com"),
        aor_hash(b"alice@example.com")
    );
}

#[test]
fn admin_add_remove_and_flush_go_through_the_table_and_are_counted() {
    let mut sim = Sim::default();
    assert!(
        sim.send(&Reg::new("alice").build())
            .starts_with("SIP/2.0 200")
    );
    let now = sim.now_ms;
    let key = b"alice@example.com";

    // Add a second contact, then refresh it (same contact: no new binding).
    sim.reg
        .admin_add_binding(now, key, b"sip:desk@192.0.2.20", 60, Some(500))
        .unwrap();
    sim.reg
        .admin_add_binding(now, key, b"sip:desk@192.0.2.20", 120, None)
        .unwrap();
    assert_eq!(sim.reg.stats().bindings, 2);
    let aor = sim.reg.location().get(key).unwrap();
    let desk = aor
        .iter()
        .find(|b| b.contact() == b"sip:desk@192.0.2.20")
        .unwrap();
    assert_eq!(desk.remaining_s(now), 120);
    assert_eq!(desk.call_id(), ADMIN_CALL_ID);
    assert_eq!(
        sim.reg.admin_add_binding(now, key, b"sip:x@y", 0, None),
        Err(AdminError::ExpiresOutOfRange)
    );

    // A fetch (REGISTER without Contact) lists both.
    let fetched = sim.send(&Reg::new("alice").contacts(&[]).cseq(2).build());
    assert_eq!(fetched.matches("Contact:").count(), 2, "{fetched}");

    // Remove one contact (URI equivalence: host case), then an unknown one.
    assert_eq!(
        sim.reg
            .admin_remove(now, key, Some(b"sip:desk@192.0.2.20;transport=udp")),
        Ok(0)
    );
    assert_eq!(
        sim.reg.admin_remove(now, key, Some(b"sip:desk@192.0.2.20")),
        Ok(1)
    );
    assert_eq!(
        sim.reg.admin_remove(now, b"nobody@example.com", None),
        Ok(0)
    );
    assert_eq!(sim.reg.stats().admin_removed, 1);
    assert_eq!(sim.reg.stats().bindings, 1);

    // Flush in bounded steps.
    assert!(
        sim.send(&Reg::new("bob").build())
            .starts_with("SIP/2.0 200")
    );
    assert_eq!(sim.reg.admin_flush(now, 0, 1), (1, Some(1)));
    assert_eq!(sim.reg.admin_flush(now, 1, 100), (1, None));
    assert_eq!(sim.reg.admin_flush(now, 0, 100), (0, None));
    assert_eq!(sim.reg.stats().bindings, 0);
    assert_eq!(sim.reg.stats().admin_removed, 3);
    let fetched = sim.send(&Reg::new("alice").contacts(&[]).cseq(3).build());
    assert_eq!(fetched.matches("Contact:").count(), 0, "{fetched}");
}

#[test]
fn requests_are_counted_by_method_and_status_without_retransmissions() {
    let mut sim = Sim::default();
    let cell = |sim: &Sim, method: &str, status: &str| {
        let m = METHOD_NAMES.iter().position(|n| *n == method).unwrap();
        let s = STATUS_NAMES.iter().position(|n| *n == status).unwrap();
        sim.reg.stats().by_method[m][s]
    };
    let reg = Reg::new("bm").build();
    assert_eq!(status(&sim.send(&reg)), 200);
    sim.send(&reg); // a retransmission: not in the matrix
    sim.send(&Reg::new("bm").expires(Some(5)).cseq(2).build()); // 423
    assert_eq!(status(&sim.send(&invite("bm", 1))), 302);
    assert_eq!(status(&sim.send(&invite("nobody", 1))), 404);
    let ack = "ACK sip:q@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKbm\r\n\
        Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:q@example.com>;tag=2\r\n\
        Call-ID: bm\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    sim.send(ack);
    let publish = invite("bm", 9).replace("INVITE", "PUBLISH");
    sim.send(&publish);
    assert_eq!(cell(&sim, "REGISTER", "200"), 1);
    assert_eq!(cell(&sim, "REGISTER", "423"), 1);
    assert_eq!(cell(&sim, "INVITE", "302"), 1);
    assert_eq!(cell(&sim, "INVITE", "404"), 1);
    assert_eq!(cell(&sim, "ACK", "none"), 1);
    assert_eq!(cell(&sim, "other", "405") + cell(&sim, "other", "302"), 1);
    let total: u64 = sim.reg.stats().by_method.iter().flatten().sum();
    assert_eq!(
        total, 6,
        "every request once, the retransmission not at all"
    );
}

/// The batch path (`prepare` every datagram, `warm`, then `finish` each in order) is the
/// runtime's: it must answer exactly what handling the datagrams one by one answers,
/// including requests of one batch that depend on each other (same AOR twice, a
/// retransmission of a request earlier in the batch, garbage, a keep-alive).
#[test]
fn a_prepared_and_warmed_batch_answers_like_one_datagram_at_a_time() {
    let first = Reg::new("alice").build();
    let batch: Vec<String> =
        vec![
        first.clone(),
        Reg::new("alice").cseq(2).build(),
        first.clone(),
        Reg::new("bob").contacts(&["<sip:bob@192.0.2.20>;q=0.5", "<sip:bob@192.0.2.21>"]).build(),
        Reg::new("alice").cseq(3).expires(Some(0)).build(),
        "\r\n\r\n".into(),
        first.replace("CSeq: 1 REGISTER", "CSeq: x REGISTER"),
        "SIP/2.0 200 OK\r\n\r\n".into(),
        Reg::new("bob").cseq(2).contacts(&[]).build(),
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKinv\r\n\
         From: <sip:c@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: inv\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            .into(),
    ];
    let mut one = Sim::default();
    let want: Vec<String> = batch.iter().map(|m| one.send(m)).collect();

    let mut sim = Sim::default();
    sim.arena.reset();
    let prepared: Vec<Prepared<'_>> = batch
        .iter()
        .map(|m| Registrar::prepare(m.as_bytes(), &sim.arena, |_| true))
        .collect();
    sim.reg.warm(&prepared);
    let mut got = Vec::new();
    for p in &prepared {
        let d = sim
            .reg
            .answer(sim.now_ms, sim.source, p, &sim.arena, &mut sim.out);
        got.push(match d {
            Action::Reply { .. } => String::from_utf8(sim.out.clone()).unwrap(),
            _ => String::new(),
        });
    }
    assert_eq!(got, want);
    assert_eq!(
        want.iter().map(|r| status(r)).collect::<Vec<_>>(),
        [200, 200, 200, 200, 200, 0, 400, 0, 200, 302]
    );
    assert_eq!(
        format!("{:?}", sim.reg.stats()),
        format!("{:?}", one.reg.stats())
    );
}

#[test]
fn date_follows_the_clock() {
    let mut sim = Sim::default();
    let r = sim.send(&Reg::new("alice").build());
    assert_eq!(headers(&r, "Date"), ["Mon, 21 Sep 2026 14:13:20 GMT"]);
    let r = sim.send(&Reg::new("alice").cseq(2).build());
    assert_eq!(headers(&r, "Date"), ["Mon, 21 Sep 2026 14:13:20 GMT"]);
    sim.advance_s(61);
    let r = sim.send(&Reg::new("alice").cseq(3).build());
    assert_eq!(headers(&r, "Date"), ["Mon, 21 Sep 2026 14:14:21 GMT"]);
}

// ---- shared location (`registrar::shared`): decide here, commit in a backend ----

/// A stand-in for a shared backend, with the rules the memory commit applies (contacts
/// matched by their bytes here): it stores what a `CommitRequest` asks and answers
/// with the AOR's bindings, as the Redis script does.
#[derive(Default)]
struct FakeBackend {
    aors: std::collections::HashMap<Vec<u8>, Vec<FakeBinding>>,
}

#[derive(Clone)]
struct FakeBinding {
    contact: Vec<u8>,
    call_id: Vec<u8>,
    cseq: u32,
    expires_at_s: u64,
    q: Option<u16>,
}

impl FakeBackend {
    fn commit(
        &mut self,
        now_s: u64,
        req: &shared::CommitRequest,
    ) -> (shared::CommitStatus, Vec<FakeBinding>) {
        use shared::{CommitOp, CommitStatus};
        let list = self.aors.entry(req.aor_key().to_vec()).or_default();
        list.retain(|b| b.expires_at_s > now_s);
        let mut next = list.clone();
        match req.op {
            CommitOp::Fetch => {}
            CommitOp::RemoveAll => {
                if next
                    .iter()
                    .any(|b| b.call_id == req.call_id() && req.cseq <= b.cseq)
                {
                    return (CommitStatus::InvalidCSeq, Vec::new());
                }
                next.clear();
            }
            CommitOp::Update => {
                for c in req.contacts() {
                    let found = next.iter().position(|b| b.contact == c.contact);
                    if let Some(b) = found.and_then(|i| next.get(i)) {
                        if b.call_id == req.call_id() && req.cseq <= b.cseq {
                            return (CommitStatus::InvalidCSeq, Vec::new());
                        }
                    }
                    let new = FakeBinding {
                        contact: c.contact.to_vec(),
                        call_id: req.call_id().to_vec(),
                        cseq: req.cseq,
                        expires_at_s: now_s + u64::from(c.expires_s),
                        q: c.q,
                    };
                    match (found, c.expires_s) {
                        (Some(i), 0) => {
                            next.remove(i);
                        }
                        (Some(i), _) => next[i] = new,
                        (None, 0) => {}
                        (None, _) => next.push(new),
                    }
                }
                if req.max_contacts > 0 && next.len() > req.max_contacts as usize {
                    return (CommitStatus::TooManyContacts, Vec::new());
                }
            }
        }
        *list = next.clone();
        (CommitStatus::Committed, next)
    }
}

fn shared_sim() -> Sim {
    Sim::new(RegistrarConfig {
        location: LocationMode::Shared,
        ..RegistrarConfig::default()
    })
}

impl Sim {
    /// Send `msg` to a shared-location registrar and complete its commit against
    /// `backend` (or answer with `status` when given): the response text.
    fn send_shared(
        &mut self,
        msg: &str,
        backend: &mut FakeBackend,
        status: Option<shared::CommitStatus>,
    ) -> String {
        self.arena.reset();
        let action = support::handle(
            &mut self.reg,
            self.now_ms,
            self.source,
            msg.as_bytes(),
            &self.arena,
            &mut self.out,
        );
        let action = match action {
            Action::Commit { id } => {
                let request = self.reg.commit_request(id).expect("pending").clone();
                // A forced status stands for a backend that did not commit.
                let (got, list) = match status {
                    None => backend.commit(self.now_ms / 1000, &request),
                    Some(forced) => (forced, Vec::new()),
                };
                let listed: Vec<shared::ListedBinding<'_>> = list
                    .iter()
                    .map(|b| {
                        let left = u32::try_from(b.expires_at_s - self.now_ms / 1000).unwrap();
                        listed_binding(&b.contact, left, b.q)
                    })
                    .collect();
                let reply = shared::CommitReply {
                    status: got,
                    bindings: &listed,
                };
                self.arena.reset();
                self.reg
                    .resume(self.now_ms, id, &reply, &self.arena, &mut self.out)
            }
            other => other,
        };
        self.last = Some(action);
        match action {
            Action::Reply { .. } => String::from_utf8(self.out.clone()).unwrap(),
            _ => String::new(),
        }
    }
}

#[test]
fn shared_register_commits_in_the_backend_and_answers_its_bindings() {
    let mut sim = shared_sim();
    let mut backend = FakeBackend::default();
    let msg = Reg::new("alice").build();
    sim.arena.reset();
    let action = support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        msg.as_bytes(),
        &sim.arena,
        &mut sim.out,
    );
    let Action::Commit { id } = action else {
        panic!("a shared registrar commits through the backend, got {action:?}");
    };
    // What the backend is asked: the AOR key, the ordering fields and the planned contact.
    let request = sim.reg.commit_request(id).expect("pending").clone();
    assert_eq!(request.aor_key(), b"alice@example.com");
    assert_eq!(request.call_id(), b"call-1");
    assert_eq!((request.cseq, request.op), (1, shared::CommitOp::Update));
    let planned: Vec<_> = request.contacts().collect();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].contact, b"sip:alice@192.0.2.10:5062");
    assert_eq!(planned[0].expires_s, 3600);
    // Unlimited --max-contacts still keeps the table's per-AOR bound in the backend.
    assert_eq!(
        (request.max_contacts, request.evict_oldest),
        (LocationLimits::default().bindings_per_aor_max as u32, false)
    );
    assert_eq!(sim.reg.commits_pending(), 1);
    // Nothing is kept locally.
    assert_eq!(sim.reg.stats().bindings, 0);
    assert_eq!(sim.reg.stats().requests, 0, "counted when it ends");

    let (commit_status, list) = backend.commit(sim.now_ms / 1000, &request);
    let listed: Vec<_> = list
        .iter()
        .map(|b| listed_binding(&b.contact, 3600, b.q))
        .collect();
    let reply = shared::CommitReply {
        status: commit_status,
        bindings: &listed,
    };
    sim.arena.reset();
    let action = sim
        .reg
        .resume(sim.now_ms, id, &reply, &sim.arena, &mut sim.out);
    assert!(matches!(action, Action::Reply { .. }));
    let r = String::from_utf8(sim.out.clone()).unwrap();
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(contacts(&r), ["<sip:alice@192.0.2.10:5062>;expires=3600"]);
    assert_eq!(sim.reg.commits_pending(), 0);
    assert_eq!(sim.reg.stats().accepted, 1);
    // The same answer again for the same id changes nothing.
    assert_eq!(
        sim.reg
            .resume(sim.now_ms, id, &reply, &sim.arena, &mut sim.out),
        Action::Nothing
    );
    // A retransmission is answered from the transaction cache, without the backend.
    sim.arena.reset();
    let again = support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        msg.as_bytes(),
        &sim.arena,
        &mut sim.out,
    );
    assert!(matches!(again, Action::Reply { .. }), "{again:?}");
    assert_eq!(String::from_utf8(sim.out.clone()).unwrap(), r);
}

#[test]
fn shared_backend_rules_and_faults_reach_the_client() {
    use shared::CommitStatus;
    let mut sim = shared_sim();
    let mut backend = FakeBackend::default();
    assert_eq!(
        status(&sim.send_shared(&Reg::new("bob").cseq(5).build(), &mut backend, None)),
        200
    );
    // The backend's CSeq rule: a lower CSeq of the same Call-ID fails (§10.3 step 7).
    let r = sim.send_shared(&Reg::new("bob").cseq(4).build(), &mut backend, None);
    assert_eq!((status(&r), reason(&r)), (400, "Invalid CSeq"));
    // A backend that cannot be reached: 503 with Retry-After, and the answer is not
    // cached, so the retransmission goes to the backend again.
    let msg = Reg::new("bob").cseq(6).build();
    let r = sim.send_shared(&msg, &mut backend, Some(CommitStatus::Unavailable));
    assert_eq!(status(&r), 503, "{r}");
    assert_eq!(headers(&r, "Retry-After"), ["30"]);
    let r = sim.send_shared(&msg, &mut backend, None);
    assert_eq!(
        status(&r),
        200,
        "the retransmission reached the backend: {r}"
    );
    // A malformed backend answer: 500.
    let r = sim.send_shared(
        &Reg::new("bob").cseq(7).build(),
        &mut backend,
        Some(CommitStatus::Failed),
    );
    assert_eq!(status(&r), 500);
    // A fetch lists what the backend holds.
    let r = sim.send_shared(
        &Reg::new("bob").contacts(&[]).expires(None).cseq(8).build(),
        &mut backend,
        None,
    );
    assert_eq!((status(&r), contacts(&r).len()), (200, 1));
}

#[test]
fn shared_lookups_read_the_backend() {
    let mut sim = shared_sim();
    let mut backend = FakeBackend::default();
    assert_eq!(
        status(&sim.send_shared(&invite("carol", 1), &mut backend, None)),
        404
    );
    assert_eq!(
        status(&sim.send_shared(&Reg::new("carol").build(), &mut backend, None)),
        200
    );
    let r = sim.send_shared(&invite("carol", 2), &mut backend, None);
    assert_eq!(status(&r), 302, "{r}");
    assert_eq!(contacts(&r), ["<sip:carol@192.0.2.10:5062>;expires=3600"]);
}

#[test]
fn shared_pending_commits_are_bounded() {
    let mut sim = shared_sim();
    let mut ids = Vec::new();
    for i in 0..shared::SHARED_COMMITS_PENDING_MAX {
        let msg = Reg::new(&format!("u{i}")).build();
        sim.arena.reset();
        match support::handle(
            &mut sim.reg,
            sim.now_ms,
            sim.source,
            msg.as_bytes(),
            &sim.arena,
            &mut sim.out,
        ) {
            Action::Commit { id } => ids.push(id),
            other => panic!("commit {i}: {other:?}"),
        }
    }
    let r = sim.send(&Reg::new("one-too-many").build());
    assert_eq!((status(&r), reason(&r)), (503, "Too Many Pending Commits"));
    assert_eq!(headers(&r, "Retry-After"), ["30"]);
    // Answering one frees a slot; its old id then names nothing.
    let reply = shared::CommitReply {
        status: shared::CommitStatus::Unavailable,
        bindings: &[],
    };
    sim.arena.reset();
    assert!(matches!(
        sim.reg
            .resume(sim.now_ms, ids[0], &reply, &sim.arena, &mut sim.out),
        Action::Reply { .. }
    ));
    sim.arena.reset();
    let next = support::handle(
        &mut sim.reg,
        sim.now_ms,
        sim.source,
        Reg::new("next").build().as_bytes(),
        &sim.arena,
        &mut sim.out,
    );
    let Action::Commit { id } = next else {
        panic!("{next:?}")
    };
    assert_ne!(id, ids[0], "a reused slot gets a new generation");
    assert!(sim.reg.commit_request(ids[0]).is_none());
    assert_eq!(
        sim.reg
            .resume(sim.now_ms, ids[0], &reply, &sim.arena, &mut sim.out),
        Action::Nothing
    );
}

/// A binding as a shared backend lists it (a UDP binding from the simulated client).
fn listed_binding(contact: &[u8], expires_s: u32, q: Option<u16>) -> shared::ListedBinding<'_> {
    shared::ListedBinding {
        contact,
        expires_s,
        q,
        instance: None,
        reg_id: None,
        source: "192.0.2.10:5062".parse().unwrap(),
        transport: crate::location::Transport::Udp,
        path: b"",
    }
}

/// RFC 5626: Outbound registrations, flows and what a closed connection does.
mod outbound {
    use super::*;
    use crate::location::{FlowId, Transport};

    const CONN: ConnId = ConnId {
        core: 1,
        slot: 7,
        generation: 3,
    };

    fn over_tcp(sim: &mut Sim, conn: ConnId) {
        sim.source = Source {
            transport: Transport::Tcp,
            remote: "192.0.2.10:40001".parse().unwrap(),
            listen: 0,
            conn: Some(conn),
        };
    }

    const INSTANCE: &str = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";

    fn ob_contact(user: &str, reg_id: u32) -> String {
        format!("<sip:{user}@192.0.2.10:40001;transport=tcp;ob>;reg-id={reg_id};{INSTANCE}")
    }

    fn flags_of(sim: &Sim, aor: &str) -> Vec<(u32, Option<FlowId>, Option<u32>)> {
        sim.reg
            .location
            .get(aor.as_bytes())
            .map(|a| {
                a.iter()
                    .map(|b| (b.flags(), b.flow(), b.reg_id()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_direct_outbound_register_is_required_and_records_its_flow() {
        let mut sim = Sim::default();
        over_tcp(&mut sim, CONN);
        let c = ob_contact("alice", 1);
        let r = sim.send(
            &Reg::new("alice")
                .contacts(&[&c])
                .extra("Supported: path, outbound")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(headers(&r, "Require"), ["outbound"]);
        assert_eq!(
            flags_of(&sim, "alice@example.com"),
            [(FLAG_OUTBOUND, Some(FlowId::from(CONN)), Some(1))]
        );
        // Without `Supported: outbound` the same contact is no Outbound registration:
        // no Require, no flag, but the flow is still where the UA can be reached.
        let mut plain = Sim::default();
        over_tcp(&mut plain, CONN);
        let r = plain.send(&Reg::new("alice").contacts(&[&c]).build());
        assert_eq!(status(&r), 200, "{r}");
        assert!(headers(&r, "Require").is_empty(), "{r}");
        assert_eq!(
            flags_of(&plain, "alice@example.com"),
            [(0, Some(FlowId::from(CONN)), Some(1))]
        );
        // Over UDP there is no flow to record.
        let mut udp = Sim::default();
        let r = udp.send(
            &Reg::new("alice")
                .contacts(&[&c])
                .extra("Supported: outbound")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(
            flags_of(&udp, "alice@example.com"),
            [(FLAG_OUTBOUND, None, Some(1))]
        );
    }

    #[test]
    fn through_a_proxy_outbound_needs_ob_in_the_first_path_uri() {
        let via = "Via: SIP/2.0/TCP 192.0.2.99:5060;branch=z9hG4bK-ua1";
        let c = ob_contact("bob", 1);
        let mut sim = Sim::default();
        over_tcp(&mut sim, CONN);
        // §6: Supported: outbound + reg-id, the proxy's Path lacks `ob`: 439.
        let r = sim.send(
            &Reg::new("bob")
                .contacts(&[&c])
                .extra(via)
                .extra("Supported: path, outbound")
                .extra("Path: <sip:edge.example.com;lr>")
                .build(),
        );
        assert_eq!(status(&r), 439, "{r}");
        assert_eq!(reason(&r), "First Hop Lacks Outbound Support");
        assert!(
            flags_of(&sim, "bob@example.com").is_empty(),
            "nothing stored"
        );
        // With `ob` on the first Path URI: registered, Outbound, and no flow (the UA
        // is reached through the Path, not through our connection to the proxy).
        let r = sim.send(
            &Reg::new("bob")
                .contacts(&[&c])
                .cseq(2)
                .extra(via)
                .extra("Supported: path, outbound")
                .extra("Path: <sip:edge.example.com;lr;ob>")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(headers(&r, "Require"), ["outbound"]);
        assert_eq!(
            flags_of(&sim, "bob@example.com"),
            [(FLAG_OUTBOUND, None, Some(1))]
        );
        // No Supported: outbound through a proxy without Outbound: reg-id is ignored.
        let mut other = Sim::default();
        let r = other.send(
            &Reg::new("bob")
                .contacts(&[&c])
                .extra(via)
                .extra("Path: <sip:edge.example.com;lr>")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(flags_of(&other, "bob@example.com"), [(0, None, None)]);
    }

    #[test]
    fn reg_id_out_of_range_or_twice_is_400() {
        let mut sim = Sim::default();
        for bad in [0u64, 1 << 31] {
            let c = format!("<sip:carol@192.0.2.10>;reg-id={bad};{INSTANCE}");
            let r = sim.send(&Reg::new("carol").contacts(&[&c]).build());
            assert_eq!(
                (status(&r), reason(&r)),
                (400, "Invalid reg-id"),
                "{bad}: {r}"
            );
        }
        let c1 = ob_contact("carol", 1);
        let c2 = format!("<sip:carol@192.0.2.11>;reg-id=2;{INSTANCE}");
        let r = sim.send(
            &Reg::new("carol")
                .contacts(&[&c1, &c2])
                .extra("Supported: outbound")
                .build(),
        );
        assert_eq!(
            (status(&r), reason(&r)),
            (400, "More Than One Contact With reg-id"),
            "{r}"
        );
        // Removing one flow while adding another in one request is allowed.
        let c2_gone = format!("<sip:carol@192.0.2.11>;reg-id=2;expires=0;{INSTANCE}");
        let r = sim.send(
            &Reg::new("carol")
                .contacts(&[&c1, &c2_gone])
                .extra("Supported: outbound")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        assert!(flags_of(&sim, "carol@example.com").len() == 1);
    }

    #[test]
    fn a_closed_flow_removes_outbound_bindings_and_marks_the_others_down() {
        let mut sim = Sim::new(RegistrarConfig {
            journal: true,
            ..RegistrarConfig::default()
        });
        over_tcp(&mut sim, CONN);
        let ob = ob_contact("dave", 1);
        let r = sim.send(
            &Reg::new("dave")
                .contacts(&[&ob])
                .extra("Supported: outbound")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        // A second device of the AOR on the same connection, without Outbound.
        let r = sim.send(
            &Reg::new("dave")
                .contacts(&["<sip:dave@192.0.2.10:40009;transport=tcp>"])
                .call_id("call-2")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        // A third over another connection: untouched by this close.
        let other = ConnId {
            generation: CONN.generation + 1,
            ..CONN
        };
        over_tcp(&mut sim, other);
        let r = sim.send(
            &Reg::new("dave")
                .contacts(&["<sip:dave@192.0.2.12:40002;transport=tcp>"])
                .call_id("call-3")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        let journal_before = sim.reg.journal.len();

        assert_eq!(sim.reg.flow_closed(sim.now_ms, FlowId::from(CONN)), (1, 1));
        let left = flags_of(&sim, "dave@example.com");
        assert_eq!(
            left,
            [
                (FLAG_FLOW_DOWN, Some(FlowId::from(CONN)), None),
                (0, Some(FlowId::from(other)), None),
            ]
        );
        assert_eq!(
            (sim.reg.stats.flow_removed, sim.reg.stats.flow_down),
            (1, 1)
        );
        assert!(
            sim.reg.journal.len() > journal_before,
            "the removal is journaled"
        );
        // What a client sees: a fetch lists the two that stay.
        let r = sim.send(&Reg::new("dave").contacts(&[]).call_id("call-9").build());
        assert_eq!(contacts(&r).len(), 2, "{r}");
        // A second close of the same flow, and a close of an unknown one, do nothing.
        assert_eq!(sim.reg.flow_closed(sim.now_ms, FlowId::from(CONN)), (0, 0));
        let unknown = FlowId {
            core: 9,
            slot: 9,
            generation: 9,
        };
        assert_eq!(sim.reg.flow_closed(sim.now_ms, unknown), (0, 0));
    }

    #[test]
    fn options_advertise_outbound() {
        let mut sim = Sim::default();
        let r = sim.send(
            "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-o1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:example.com>\r\n\
             Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(headers(&r, "Supported"), ["path, outbound"]);
        // `Require: outbound` is an extension we support (no 420).
        let c = ob_contact("erin", 1);
        let r = sim.send(
            &Reg::new("erin")
                .contacts(&[&c])
                .extra("Supported: outbound")
                .extra("Require: outbound")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
    }
}

/// Issue 17: a 302 reaches a NAT'd phone. The binding's source (192.0.2.10:5062, UDP)
/// differs from its Contact (a private address), so the Contact carries it as
/// Kamailio's `;alias=ip~port~proto`, and its Path as an escaped `Route` header; a
/// Contact that already names the source is listed as registered; `Always` and `Never`
/// override. The 200 to the REGISTER lists the Contacts as registered either way.
#[test]
fn redirect_carries_the_source_as_alias_and_the_path_as_route() {
    for (mode, expect_private, expect_direct) in [
        (
            AliasMode::Differs,
            "<sip:n@192.168.1.20:5060;alias=192.0.2.10~5062~1?Route=%3Csip:edge.example.com%3Blr%3E>",
            "<sip:d@192.0.2.10:5062>",
        ),
        (
            AliasMode::Always,
            "<sip:n@192.168.1.20:5060;alias=192.0.2.10~5062~1?Route=%3Csip:edge.example.com%3Blr%3E>",
            "<sip:d@192.0.2.10:5062;alias=192.0.2.10~5062~1>",
        ),
        (
            AliasMode::Never,
            "<sip:n@192.168.1.20:5060?Route=%3Csip:edge.example.com%3Blr%3E>",
            "<sip:d@192.0.2.10:5062>",
        ),
    ] {
        let mut sim = Sim::new(RegistrarConfig {
            nat: NatConfig {
                alias: mode,
                ..NatConfig::default()
            },
            ..RegistrarConfig::default()
        });
        let r = sim.send(
            &Reg::new("n")
                .contacts(&["<sip:n@192.168.1.20:5060>"])
                .extra("Path: <sip:edge.example.com;lr>")
                .build(),
        );
        assert_eq!(status(&r), 200, "{r}");
        assert!(
            contacts(&r)[0].starts_with("<sip:n@192.168.1.20:5060>;"),
            "{r}"
        );
        sim.send(&Reg::new("d").build());
        let r = sim.send(&invite("n", 1));
        assert_eq!(status(&r), 302, "{r}");
        let c = contacts(&r);
        assert!(c[0].starts_with(expect_private), "{mode:?}: {c:?}");
        let r = sim.send(&invite("d", 1));
        assert!(contacts(&r)[0].starts_with(expect_direct), "{mode:?}: {r}");
    }
}

/// A registrar that pings its UDP bindings with OPTIONS every 10 s and removes them
/// after `max_lost` unanswered in a row.
fn pinging(method: PingMethod, max_lost: u32) -> Sim {
    Sim::new(RegistrarConfig {
        nat: NatConfig {
            ping_interval_ms: PING_INTERVAL_MS,
            ping_method: method,
            ping_max_lost: max_lost,
            ..NatConfig::default()
        },
        ..RegistrarConfig::default()
    })
}

const PING_INTERVAL_MS: u64 = 10_000;

/// Register `user` with a private Contact from `from` (its NAT's public address).
fn register_from(sim: &mut Sim, user: &str, from: &str) {
    sim.source = Source::udp(from.parse().unwrap(), 0);
    let r = sim.send(
        &Reg::new(user)
            .contacts(&["<sip:u@192.168.1.20:5060>"])
            .build(),
    );
    assert_eq!(status(&r), 200, "{r}");
}

/// Drive the clock to `until_ms` as the runtime would (sleep to `poll_timeout`, then
/// `handle_timeout` and `poll_ping` until it has nothing): every ping, when it left.
fn pings_until(sim: &mut Sim, until_ms: u64) -> Vec<(u64, Destination, String)> {
    let mut got = Vec::new();
    let mut out = Vec::new();
    for _ in 0..10_000_000 {
        while let Some(to) = sim.reg.poll_ping(sim.now_ms, &mut out) {
            got.push((sim.now_ms, to, String::from_utf8(out.clone()).unwrap()));
        }
        match sim.reg.poll_timeout() {
            Some(t) if t <= until_ms => {
                sim.now_ms = t.max(sim.now_ms + 1);
                sim.reg.handle_timeout(sim.now_ms);
            }
            _ => break,
        }
    }
    sim.now_ms = until_ms;
    got
}

/// A 200 to an OPTIONS ping, as a phone writes it (RFC 3261 §8.2.6.2: the Via, From,
/// To, Call-ID and CSeq echoed).
fn answer_to(ping: &str) -> String {
    let echo: Vec<&str> = ping
        .lines()
        .filter(|l| {
            ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .collect();
    format!(
        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
        echo.join("\r\n")
    )
}

/// Issue 17: the pings of one interval are spread over it, not sent in a burst: 1000
/// bindings pinged every 10 s are each pinged once per interval, about 100 in each
/// second, never more than 2 in one 10 ms tick; from the socket their REGISTER reached,
/// to their source.
#[test]
fn pings_are_spread_evenly_over_the_interval() {
    let mut sim = pinging(PingMethod::Options, 3);
    for i in 0..1000u32 {
        register_from(
            &mut sim,
            &format!("s{i}"),
            &format!("198.51.100.{}:{}", i % 200 + 1, 10_000 + i),
        );
    }
    let start = sim.now_ms;
    let pings = pings_until(&mut sim, start + PING_INTERVAL_MS);
    assert_eq!(pings.len(), 1000, "each binding once per interval");
    let mut to: Vec<std::net::SocketAddr> = pings.iter().map(|(_, d, _)| d.addr).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 1000, "no binding twice");
    assert!(pings.iter().all(|(_, d, p)| d.listen == 0
        && d.transport == crate::location::Transport::Udp
        && p.starts_with("OPTIONS sip:u@192.168.1.20:5060 SIP/2.0\r\n")));
    let mut per_second = [0u32; 10];
    let mut per_tick = std::collections::HashMap::<u64, u32>::new();
    for (at, _, _) in &pings {
        per_second[((at - start) / 1000).min(9) as usize] += 1;
        *per_tick.entry(at / ping::PING_TICK_MS).or_default() += 1;
    }
    assert!(
        per_second.iter().all(|&n| (90..=110).contains(&n)),
        "{per_second:?}"
    );
    assert!(
        per_tick.values().all(|&n| n <= 2),
        "{:?}",
        per_tick.values().max()
    );
    // The next interval pings each of them once more.
    let again = pings_until(&mut sim, start + 2 * PING_INTERVAL_MS);
    assert_eq!(again.len(), 1000);
    assert_eq!(sim.reg.stats.ping.sent, 2000);
}

/// Issue 17: a silent binding's pings are counted lost, and after `max_lost` in a row it
/// is removed through the normal commit (gone from lookups, counted); an answering one
/// stays. A reply from another address, with a foreign branch, or junk changes nothing
/// and is counted as unexpected.
#[test]
fn silent_bindings_are_removed_after_max_lost_and_answering_ones_stay() {
    let mut sim = pinging(PingMethod::Options, 3);
    register_from(&mut sim, "silent", "198.51.100.1:4000");
    register_from(&mut sim, "answers", "198.51.100.2:4000");
    let start = sim.now_ms;
    for round in 1..=5u64 {
        let pings = pings_until(&mut sim, start + round * PING_INTERVAL_MS);
        for (_, to, ping) in pings {
            let answer = answer_to(&ping);
            if to.addr.to_string() == "198.51.100.1:4000" {
                // The silent phone's NAT never answers; someone else does, from
                // elsewhere, with its branch.
                sim.source = Source::udp("203.0.113.66:4000".parse().unwrap(), 0);
                assert_eq!(sim.send(&answer), "");
            } else {
                sim.source = Source::udp(to.addr, 0);
                assert_eq!(sim.send(&answer), "");
            }
        }
        let silent_left = sim.reg.location().get(b"silent@example.com").is_some();
        // Pings 1..3 go unanswered; the 4th would be sent at round 4: the binding is
        // removed then instead.
        assert_eq!(silent_left, round < 4, "round {round}");
        assert!(sim.reg.location().get(b"answers@example.com").is_some());
    }
    let p = sim.reg.stats.ping;
    assert_eq!(p.removed, 1);
    assert_eq!(p.lost, 3, "{p:?}");
    assert_eq!(p.answered, 5, "{p:?}");
    assert_eq!(p.sent, 3 + 5, "{p:?}");
    assert_eq!(p.unexpected[ping::Unexpected::Address as usize], 3, "{p:?}");
    sim.source = Source::udp("192.0.2.20:5060".parse().unwrap(), 0);
    assert_eq!(status(&sim.send(&invite("silent", 1))), 480);
    assert_eq!(status(&sim.send(&invite("answers", 1))), 302);

    // Junk and foreign responses: dropped, counted, nothing changes.
    let before = sim.reg.location().bindings_len();
    sim.send("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKnotours\r\n\r\n");
    sim.send("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK.sipreg-ping.zz\r\n\r\n");
    let stale = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch={}{:016x}.{:08x}.{:08x}\r\n\r\n",
        std::str::from_utf8(ping::BRANCH_PREFIX).unwrap(),
        aor_hash(b"answers@example.com"),
        0,
        0x1234_5678u32
    );
    sim.send(&stale);
    // A ping reply is placed by the owner hash its branch carries: a core that does not
    // own the AOR forwards it there, as it would a request.
    assert_eq!(
        route(stale.as_bytes()),
        Route::Hash(aor_hash(b"answers@example.com"))
    );
    let p = sim.reg.stats.ping;
    assert_eq!(p.unexpected[ping::Unexpected::Branch as usize], 2, "{p:?}");
    assert_eq!(p.unexpected[ping::Unexpected::Binding as usize], 1, "{p:?}");
    assert_eq!(p.answered, 5);
    assert_eq!(sim.reg.location().bindings_len(), before);
}

/// Issue 17: CRLF pings keep the pinhole open but cannot be answered: they are counted
/// as sent and never remove a binding.
#[test]
fn crlf_pings_are_sent_and_never_remove() {
    let mut sim = pinging(PingMethod::Crlf, 1);
    register_from(&mut sim, "c", "198.51.100.3:4000");
    let start = sim.now_ms;
    let pings = pings_until(&mut sim, start + 3 * PING_INTERVAL_MS);
    assert_eq!(pings.len(), 3);
    assert!(pings.iter().all(|(_, _, p)| p == "\r\n\r\n"));
    assert_eq!(sim.reg.stats.ping.sent, 3);
    assert!(sim.reg.location().get(b"c@example.com").is_some());
}

/// A REGISTER refresh clears the lost count (fresh flags), and a binding registered
/// over TCP or through the management API (no source) is never pinged.
#[test]
fn only_udp_bindings_with_a_source_are_pinged() {
    let mut sim = pinging(PingMethod::Options, 2);
    sim.reg
        .admin_add_binding(
            sim.now_ms,
            b"api@example.com",
            b"sip:api@192.0.2.99",
            3600,
            None,
        )
        .unwrap();
    sim.source = Source {
        transport: crate::location::Transport::Tcp,
        ..Source::udp("198.51.100.4:4000".parse().unwrap(), 0)
    };
    assert_eq!(status(&sim.send(&Reg::new("tcp").build())), 200);
    let start = sim.now_ms;
    assert!(pings_until(&mut sim, start + 2 * PING_INTERVAL_MS).is_empty());
    // A new binding waits for the next round to start (within two intervals).
    register_from(&mut sim, "r", "198.51.100.5:4000");
    let start = sim.now_ms;
    assert_eq!(pings_until(&mut sim, start + 2 * PING_INTERVAL_MS).len(), 1);
    // That ping is unanswered, then a refresh: the count starts again. Without it the
    // third ping would find two lost and remove the binding (max 2).
    sim.send(
        &Reg::new("r")
            .contacts(&["<sip:u@192.168.1.20:5060>"])
            .cseq(2)
            .build(),
    );
    assert_eq!(pings_until(&mut sim, start + 4 * PING_INTERVAL_MS).len(), 2);
    assert!(sim.reg.location().get(b"r@example.com").is_some());
    assert_eq!(sim.reg.stats.ping.lost, 1);
    assert_eq!(sim.reg.stats.ping.removed, 0);
}

/// The ping state lives in a binding's flags, which the journal records with the
/// binding; a restart starts it afresh, so a ping the old process sent is not counted
/// lost by the new one.
#[test]
fn restored_bindings_start_with_no_ping_state() {
    let config = RegistrarConfig {
        journal: true,
        nat: NatConfig {
            ping_interval_ms: PING_INTERVAL_MS,
            ..NatConfig::default()
        },
        ..RegistrarConfig::default()
    };
    let mut sim = Sim::new(config.clone());
    register_from(&mut sim, "j", "198.51.100.7:4000");
    let start = sim.now_ms;
    assert_eq!(pings_until(&mut sim, start + PING_INTERVAL_MS).len(), 1);
    // Another device on the AOR: its commit journals the first binding's flags too.
    sim.send(
        &Reg::new("j")
            .contacts(&["<sip:j2@192.0.2.10:5062>"])
            .build(),
    );
    let mut journal = Vec::new();
    sim.reg.drain_journal(&mut journal);
    let mut last = None;
    let mut offset = 0;
    while let crate::store::record::Frame::Record { payload, next } =
        crate::store::record::next_frame(&journal, offset)
    {
        last = Some(payload.to_vec());
        offset = next;
    }
    let last = last.expect("a record");
    let crate::store::record::Record::Set { key, bindings } =
        crate::store::record::decode(&last).unwrap()
    else {
        panic!("a Set record")
    };
    assert!(
        bindings
            .iter()
            .any(|b| b.flags & ping::FLAG_PING_UNANSWERED != 0),
        "the journal carries the ping state"
    );
    let mut fresh = Sim::new(config);
    fresh.now_ms = sim.now_ms;
    assert_eq!(fresh.reg.restore_aor(fresh.now_ms, key, &bindings), 2);
    let aor = fresh.reg.location().get(b"j@example.com").unwrap();
    assert!(aor.iter().all(|b| b.flags() & ping::PING_FLAGS == 0));
}
