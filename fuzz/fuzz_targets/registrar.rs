//! Stateful fuzzing of one shard's `Registrar`: the input is a program of operations
//! (REGISTERs built from a few users, contacts, Call-IDs and CSeqs chosen by the input,
//! `*`, fetches, INVITEs, raw bytes, clock steps) and after each one the invariants a
//! client relies on are checked:
//! - every answer is a well-formed SIP response;
//! - a REGISTER that is not answered 2xx leaves the location table exactly as it was
//!   (RFC 3261 §10.3 step 7, all-or-nothing);
//! - a 200 to REGISTER lists only live bindings, at most `max_contacts` of them;
//! - the counters agree with the table, and the transaction cache stays under its cap.
#![no_main]

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use sipreg::registrar::{
    Handled, MaxContactsPolicy, MinExpiresPolicy, Registrar, RegistrarConfig, Source,
};

const MAX_CONTACTS: u32 = 3;
const TXN_CACHE_MAX: usize = 16;

/// Every binding as (aor, contact, expires_ms, cseq), sorted: the table's observable state.
fn snapshot(reg: &Registrar) -> Vec<(Vec<u8>, Vec<u8>, u64, u32)> {
    let mut v: Vec<_> = reg
        .location()
        .iter_aors()
        .flat_map(|aor| {
            aor.iter()
                .map(|b| (b.aor_key().to_vec(), b.contact().to_vec(), b.expires_ms(), b.cseq()))
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

fn register(data: &mut &[u8], n: u64) -> Vec<u8> {
    let mut take = || {
        let (b, rest) = data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        *data = rest;
        b
    };
    let user = take() % 4;
    let call = take() % 3;
    let cseq = u32::from(take() % 8);
    let shape = take();
    let mut m = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:u{user}@example.com>;tag=f\r\nTo: <sip:u{user}@example.com>\r\n\
         Call-ID: c{call}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    match shape % 6 {
        0 => m.push_str("Contact: *\r\nExpires: 0\r\n"),
        1 => {}
        _ => {
            for i in 0..(shape % 4) {
                let c = take() % 6;
                let e = [0, 30, 60, 120, 3600, 100_000][usize::from(take() % 6)];
                let q = take() % 12;
                m.push_str(&format!("Contact: <sip:d{c}@10.0.0.{i}>;expires={e}"));
                if q <= 10 {
                    m.push_str(&format!(";q=0.{q}"));
                }
                m.push_str("\r\n");
            }
        }
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

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
    let source = Source { addr: "192.0.2.1:5060".parse().unwrap(), local: 0 };
    let mut now_ms: u64 = 1_790_000_000_000;
    let mut arena = Bump::new();
    let mut out = Vec::new();
    let mut data = input;
    let mut n = 0u64;
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        n += 1;
        let msg: Vec<u8> = match op % 8 {
            0 => {
                now_ms += u64::from(op) * 997;
                reg.handle_timeout(now_ms);
                continue;
            }
            1 => {
                let len = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
                let raw = data.get(1..len).unwrap_or(&[]).to_vec();
                data = data.get(len..).unwrap_or(&[]);
                raw
            }
            2 => format!(
                "INVITE sip:u{}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKi{n}\r\n\
                 From: <sip:x@example.com>;tag=1\r\nTo: <sip:u{}@example.com>\r\nCall-ID: i{n}\r\n\
                 CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
                op % 4,
                op % 4
            )
            .into_bytes(),
            _ => register(&mut data, n),
        };
        let before = snapshot(&reg);
        arena.reset();
        let handled = reg.handle_datagram(now_ms, source, &msg, &arena, &mut out);
        let after = snapshot(&reg);
        if let Handled::Reply(_) = handled {
            assert!(out.starts_with(b"SIP/2.0 "), "not a response");
            assert!(out.ends_with(b"\r\n\r\n"), "unterminated response");
            let status = std::str::from_utf8(&out[8..11]).unwrap().parse::<u16>().unwrap();
            let is_register = msg.starts_with(b"REGISTER ");
            if status >= 300 {
                assert_eq!(before, after, "a {status} changed the table");
            }
            if is_register && status == 200 {
                let text = String::from_utf8_lossy(&out);
                let listed = text.lines().filter(|l| l.starts_with("Contact:")).count();
                assert!(listed <= MAX_CONTACTS as usize, "{text}");
                assert!(!text.contains("expires=0\r\n"), "an expired binding was listed: {text}");
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
