//! Location table and transaction cache hot paths: the per-REGISTER operations.
//!
//! `cargo bench --bench location`
use bumpalo::Bump;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sipreg::location::{BranchHash, Change, LocationLimits, LocationTable, NewBinding, Transport};
use sipreg::txn::{TxnKey, TxnLimits, TxnTable};
use std::hint::black_box;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const T0: u64 = 1_700_000_000_000;
const AORS: u32 = 100_000;

fn binding<'a>(contact: &'a [u8], call_id: &'a [u8], expires_ms: u64, cseq: u32) -> NewBinding<'a> {
    NewBinding {
        contact,
        expires_ms,
        q: None,
        call_id,
        cseq,
        branch: BranchHash::of(Some(b"z9hG4bK-bench")),
        path: b"",
        source: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 23)), 5060),
        transport: Transport::Udp,
        local_socket: 0,
        flow: None,
        user_agent: b"Yealink SIP-T46S 66.86.0.15 xy",
        instance: None,
        reg_id: None,
        flags: 0,
    }
}

struct Names {
    keys: Vec<Vec<u8>>,
    contacts: Vec<Vec<u8>>,
    call_ids: Vec<Vec<u8>>,
}

fn names(n: u32) -> Names {
    let mut out = Names {
        keys: Vec::new(),
        contacts: Vec::new(),
        call_ids: Vec::new(),
    };
    for i in 0..n {
        let mut k = Vec::new();
        write!(k, "u{i:07}@sip.example.com.").unwrap();
        let mut c = Vec::new();
        write!(
            c,
            "sip:u{i:07}@198.51.100.23:5060;transport=udp;rinstance=3f2a9b1c0d4e5f60a1b2c3d4"
        )
        .unwrap();
        let mut id = Vec::new();
        write!(id, "{i:08}-4c5d6e7f8091a2b3c4d5e6f708192a3").unwrap();
        out.keys.push(k);
        out.contacts.push(c);
        out.call_ids.push(id);
    }
    out
}

fn filled(n: &Names) -> LocationTable {
    let mut t = LocationTable::new(LocationLimits {
        bindings_max: 2 * AORS as usize,
        bindings_prealloc: 2 * AORS as usize,
        ..LocationLimits::default()
    });
    for i in 0..AORS as usize {
        let b = binding(&n.contacts[i], &n.call_ids[i], T0 + 3_600_000, 1);
        t.apply(&n.keys[i], T0, &[Change::Insert(b)]).unwrap();
    }
    t
}

fn location(c: &mut Criterion) {
    let n = names(AORS);
    let mut g = c.benchmark_group("location");
    g.throughput(Throughput::Elements(1));

    let mut t = filled(&n);
    let mut i = 0usize;
    let mut cseq = 1u32;
    g.bench_function("refresh_100k_aors", |b| {
        b.iter(|| {
            i = (i + 7919) % AORS as usize;
            cseq = cseq.wrapping_add(1);
            let nb = binding(
                &n.contacts[i],
                &n.call_ids[i],
                T0 + 3_600_000 + u64::from(cseq % 600) * 1000,
                cseq,
            );
            black_box(
                t.apply(
                    &n.keys[i],
                    T0,
                    &[Change::Update {
                        index: 0,
                        binding: nb,
                    }],
                )
                .unwrap(),
            );
        })
    });

    g.bench_function("get_and_read_100k_aors", |b| {
        b.iter(|| {
            i = (i + 7919) % AORS as usize;
            let aor = t.get(&n.keys[i]).unwrap();
            let mut sum = 0usize;
            for b in aor.iter() {
                sum += b.contact().len() + b.call_id().len() + b.cseq() as usize;
            }
            black_box(sum)
        })
    });

    g.bench_function("register_then_unregister", |b| {
        b.iter(|| {
            i = (i + 7919) % AORS as usize;
            let nb = binding(b"sip:new@192.0.2.1:5060", b"new-call-id", T0 + 3_600_000, 1);
            t.apply(&n.keys[i], T0, &[Change::Insert(nb)]).unwrap();
            t.apply(&n.keys[i], T0, &[Change::Remove { index: 1 }])
                .unwrap();
        })
    });

    g.bench_function("expire_1000_of_100k", |b| {
        b.iter_batched(
            || {
                let mut t = filled(&n);
                for i in 0..1000usize {
                    let nb = binding(&n.contacts[i], &n.call_ids[i], T0 + 60_000, 2);
                    t.apply(
                        &n.keys[i],
                        T0,
                        &[Change::Update {
                            index: 0,
                            binding: nb,
                        }],
                    )
                    .unwrap();
                }
                t
            },
            |mut t| black_box(t.expire(T0 + 60_000, usize::MAX)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn key(branch: &[u8]) -> TxnKey<'_> {
    TxnKey::Rfc3261 {
        branch,
        sent_by_host: b"198.51.100.23",
        sent_by_port: 5060,
        method: b"REGISTER",
    }
}

/// Each iteration encodes and hashes its key into an arena first, as
/// `Registrar::prepare` does once per request, then looks it up or inserts it.
fn txn(c: &mut Criterion) {
    let resp = vec![b'x'; 500];
    let branches: Vec<Vec<u8>> = (0..AORS)
        .map(|i| format!("z9hG4bK{i:016x}ab").into_bytes())
        .collect();

    let mut g = c.benchmark_group("txn");
    g.throughput(Throughput::Elements(1));
    let mut t = TxnTable::new(TxnLimits::for_entries(65_536, 32_000));
    let mut arena = Bump::with_capacity(4096);
    let mut now = T0;
    let mut i = 0usize;
    g.bench_function("insert_steady_state_full_cache", |b| {
        b.iter(|| {
            i = (i + 1) % branches.len();
            now += 1;
            arena.reset();
            let k = key(&branches[i]).encode_in(&arena).unwrap();
            t.insert(&k, now, &resp).unwrap();
        })
    });
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = (i + 7) % 60_000;
            let j = (branches.len() + i - 60_000) % branches.len();
            arena.reset();
            let k = key(&branches[j]).encode_in(&arena).unwrap();
            black_box(t.lookup(&k, now).map(<[u8]>::len))
        })
    });
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            arena.reset();
            let k = key(b"z9hG4bKnot-there-0123456789")
                .encode_in(&arena)
                .unwrap();
            black_box(t.lookup(&k, now).is_some())
        })
    });
    g.finish();
}

criterion_group!(benches, location, txn);
criterion_main!(benches);
