//! `Authenticator::check` on valid credentials (the cost an authenticated REGISTER
//! adds): parse + nonce MAC + subscriber lookup + two digest hashes + replay table.
//!
//! Each measured call needs a fresh nonce-count (a repeated one takes the cheaper replay
//! path), so the Authorization values are prepared in batches outside the timed region.
//!
//! `cargo bench --bench auth`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use md5::Md5;
use sha2::{Digest, Sha256};
use sipreg::auth::{
    ALGORITHMS_DEFAULT, Algorithm, AuthOutcome, Authenticator, NONCE_LEN, NonceKey, Subscribers,
};

const T0_MS: u64 = 1_790_000_000_000;
const REALM: &[u8] = b"example.com";
/// Authorization values prepared per batch (one nonce each, nc 1..=BATCH).
const BATCH: u64 = 4096;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn h(algo: Algorithm, s: &str) -> String {
    match algo {
        Algorithm::Md5 => hex(&Md5::digest(s.as_bytes())),
        Algorithm::Sha256 => hex(&Sha256::digest(s.as_bytes())),
    }
}

fn batch(algo: Algorithm, nonce: &str) -> Vec<Vec<u8>> {
    let ha1 = h(algo, "alice:example.com:secret");
    let ha2 = h(algo, "REGISTER:sip:example.com");
    (1..=BATCH)
        .map(|nc| {
            let resp = h(algo, &format!("{ha1}:{nonce}:{nc:08x}:0a4f113b:auth:{ha2}"));
            format!(
                "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", \
                 response=\"{resp}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc:08x}",
                algo.name()
            )
            .into_bytes()
        })
        .collect()
}

fn bench_check(c: &mut Criterion) {
    let subs = Arc::new(
        Subscribers::parse("alice@example.com secret\nbob@example.com pw\n").unwrap_or_default(),
    );
    for algo in [Algorithm::Sha256, Algorithm::Md5] {
        let mut auth = Authenticator::new(
            subs.clone(),
            NonceKey::new(&[7; 32]),
            ALGORITHMS_DEFAULT.to_vec(),
            600_000,
        );
        let mut round = 0u64;
        c.bench_function(&format!("auth_check_valid_{}", algo.name()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    round += 1;
                    let now = T0_MS + round;
                    let mut nb = [0u8; NONCE_LEN];
                    let nonce = auth.key.make_nonce(now, REALM, &mut nb).to_owned();
                    let msgs = batch(algo, &nonce);
                    let n = left.min(BATCH);
                    let start = Instant::now();
                    for m in msgs.iter().take(n as usize) {
                        let out = auth.check(now, b"REGISTER", Some(black_box(m)), REALM);
                        assert!(matches!(out, AuthOutcome::Ok { .. }));
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
