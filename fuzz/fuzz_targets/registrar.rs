//! Stateful fuzzing of one shard's `Registrar`: the input is a program of operations
//! (REGISTERs built from a few users, contacts, Call-IDs and CSeqs chosen by the input,
//! `*`, fetches, INVITEs, raw bytes, clock steps) and after each one the invariants a
//! client relies on are checked:
//! - every answer is a well-formed SIP response;
//! - a REGISTER that is not answered 2xx leaves the location table exactly as it was
//!   (RFC 3261 §10.3 step 7, all-or-nothing);
//! - a 200 to REGISTER lists only live bindings, at most `max_contacts` of them;
//! - the counters agree with the table, and the transaction cache stays under its cap;
//! - RFC 3261 §10.3 step 7 (issue 14): a REGISTER that is not a transaction-cache hit
//!   and reuses the Call-ID and CSeq of a binding it names gets 200 with nothing
//!   changed only when its branch is the one that last wrote that binding (the
//!   retransmission), and 400 Invalid CSeq otherwise; a 400 Invalid CSeq never comes
//!   when the rule lets the request by.
#![no_main]

mod program;

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use program::{CseqVerdict, Op, cseq_verdict, next_op, snapshot};
use sipreg::registrar::{
    Action, MaxContactsPolicy, MinExpiresPolicy, Registrar, RegistrarConfig, Source, support,
};

const MAX_CONTACTS: u32 = 3;
const TXN_CACHE_MAX: usize = 16;

fuzz_target!(|input: &[u8]| {
    let config = RegistrarConfig {
        max_contacts: MAX_CONTACTS,
        max_contacts_policy: if input.first().is_some_and(|b| b & 1 == 1) {
            MaxContactsPolicy::EvictOldest
        } else {
            MaxContactsPolicy::Reject
        },
        min_expires_policy: MinExpiresPolicy::Reject,
        txn_cache_max: TXN_CACHE_MAX,
        max_bindings: 8,
        expires_jitter_percent: 10,
        ..RegistrarConfig::default()
    };
    let mut reg = Registrar::new(config);
    let source = Source::udp("192.0.2.1:5060".parse().unwrap(), 0);
    let mut now_ms: u64 = 1_790_000_000_000;
    let mut arena = Bump::new();
    let mut out = Vec::new();
    let mut data = input;
    let mut n = 0u64;
    while let Some(op) = next_op(&mut data, n) {
        n += 1;
        let msg = match op {
            Op::Tick(ms) => {
                now_ms += ms;
                reg.handle_timeout(now_ms);
                continue;
            }
            Op::Datagram(msg) => msg,
        };
        let before = snapshot(&reg);
        let verdict = cseq_verdict(&msg, &before, now_ms);
        let retransmissions = reg.stats().retransmissions;
        arena.reset();
        let handled = support::handle(&mut reg, now_ms, source, &msg, &arena, &mut out);
        let after = snapshot(&reg);
        if let Action::Reply { .. } = handled {
            assert!(out.starts_with(b"SIP/2.0 "), "not a response");
            assert!(out.ends_with(b"\r\n\r\n"), "unterminated response");
            let status = std::str::from_utf8(&out[8..11])
                .unwrap()
                .parse::<u16>()
                .unwrap();
            let is_register = msg.starts_with(b"REGISTER ");
            if status >= 300 {
                assert_eq!(before, after, "a {status} changed the table");
            }
            // A cached answer is whatever the branch's first request got.
            let fresh = reg.stats().retransmissions == retransmissions;
            let reason = String::from_utf8_lossy(&out[12..out.len().min(40)]).into_owned();
            match (fresh, &verdict) {
                (true, Some(CseqVerdict::Invalid)) => {
                    assert!(status != 200, "an equal or lower CSeq was accepted");
                }
                (true, Some(CseqVerdict::Retransmission)) => {
                    if status == 200 {
                        assert_eq!(before, after, "a retransmission changed the table");
                    }
                    assert!(
                        !reason.starts_with("Invalid CSeq"),
                        "a retransmission failed"
                    );
                }
                (true, Some(CseqVerdict::Higher)) => {
                    assert!(!reason.starts_with("Invalid CSeq"), "a higher CSeq failed");
                }
                _ => {}
            }
            if is_register && status == 200 {
                let text = String::from_utf8_lossy(&out);
                let listed = text.lines().filter(|l| l.starts_with("Contact:")).count();
                assert!(listed <= MAX_CONTACTS as usize, "{text}");
                assert!(
                    !text.contains("expires=0\r\n"),
                    "an expired binding was listed: {text}"
                );
            }
        } else {
            assert_eq!(before, after, "an unanswered datagram changed the table");
        }
        let stats = reg.stats();
        assert_eq!(stats.bindings as usize, reg.location().bindings_len());
        assert!(stats.txns as usize <= TXN_CACHE_MAX);
        assert!(reg.location().bindings_len() <= 8);
    }
});
