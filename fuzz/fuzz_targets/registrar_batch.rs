//! Differential fuzzing of the batch path: the runtime handles a receive batch with
//! `Registrar::prepare` (every datagram), `warm` (the whole batch) and `answer` (each in
//! order), while tests and tools use `support::handle` one datagram at a time. Both must
//! give the same answers byte for byte and leave the same table, including when requests
//! in one batch depend on each other (the same AOR twice, a retransmission of a request
//! in the same batch, garbage between them). The program is the `registrar` target's;
//! a clock step ends a batch, and so does a full batch.
#![no_main]

mod program;

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use program::{Op, next_op, snapshot};
use sipreg::registrar::{
    Action, MaxContactsPolicy, Prepared, Registrar, RegistrarConfig, Source, support,
};

/// Datagrams per batch at most (the runtime's receive batch is 32).
const BATCH_MAX: usize = 8;

fn config(input: &[u8]) -> RegistrarConfig {
    RegistrarConfig {
        max_contacts: 3,
        max_contacts_policy: if input.first().is_some_and(|b| b & 1 == 1) {
            MaxContactsPolicy::EvictOldest
        } else {
            MaxContactsPolicy::Reject
        },
        txn_cache_max: 16,
        max_bindings: 8,
        expires_jitter_percent: 10,
        ..RegistrarConfig::default()
    }
}

/// Answers one batch both ways and compares them.
fn run_batch(
    batched: &mut Registrar,
    single: &mut Registrar,
    now_ms: u64,
    source: Source,
    batch: &[Vec<u8>],
) {
    let mut arena = Bump::new();
    let mut out = Vec::new();
    let mut expected = Vec::with_capacity(batch.len());
    for msg in batch {
        arena.reset();
        let answer = match support::handle(single, now_ms, source, msg, &arena, &mut out) {
            Action::Reply { to, .. } => Some((to, out.clone())),
            Action::Nothing | Action::Dropped(_) => None,
            Action::Forward { .. } => panic!("forwarded although this shard owns everything"),
            Action::Commit { .. } => panic!("the memory backend commits in place"),
        };
        expected.push(answer);
    }
    arena.reset();
    let prepared: Vec<Prepared<'_>> = batch
        .iter()
        .map(|m| Registrar::prepare(m, &arena, |_| true))
        .collect();
    batched.warm(&prepared);
    for (p, want) in prepared.iter().zip(&expected) {
        let got = match batched.answer(now_ms, source, p, &arena, &mut out) {
            Action::Reply { to, .. } => Some((to, out.clone())),
            Action::Nothing | Action::Dropped(_) => None,
            Action::Forward { .. } => panic!("forwarded although this shard owns everything"),
            Action::Commit { .. } => panic!("the memory backend commits in place"),
        };
        assert_eq!(
            got.as_ref().map(|(to, o)| (to, String::from_utf8_lossy(o))),
            want.as_ref()
                .map(|(to, o)| (to, String::from_utf8_lossy(o))),
            "batch and single answers differ"
        );
    }
    assert_eq!(
        snapshot(batched),
        snapshot(single),
        "tables differ after a batch"
    );
    assert_eq!(batched.stats().bindings, single.stats().bindings);
    assert_eq!(batched.stats().txns, single.stats().txns);
}

fuzz_target!(|input: &[u8]| {
    let mut batched = Registrar::new(config(input));
    let mut single = Registrar::new(config(input));
    let source = Source::udp("192.0.2.1:5060".parse().unwrap(), 0);
    let mut now_ms: u64 = 1_790_000_000_000;
    let mut data = input;
    let mut n = 0u64;
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while let Some(op) = next_op(&mut data, n) {
        n += 1;
        match op {
            Op::Datagram(msg) => {
                batch.push(msg);
                if batch.len() == BATCH_MAX {
                    run_batch(&mut batched, &mut single, now_ms, source, &batch);
                    batch.clear();
                }
            }
            Op::Tick(ms) => {
                run_batch(&mut batched, &mut single, now_ms, source, &batch);
                batch.clear();
                now_ms += ms;
                batched.handle_timeout(now_ms);
                single.handle_timeout(now_ms);
            }
        }
    }
    run_batch(&mut batched, &mut single, now_ms, source, &batch);
});
