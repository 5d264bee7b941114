//! No heap allocation per request in steady state (house rule, ARCHITECTURE.md
//! "Limits"), proven with a counting global allocator rather than assumed.
//!
//! The allocator wraps `System` and counts `alloc`/`alloc_zeroed`/`realloc` calls made
//! by the current thread while a thread-local flag is on, so the other test threads
//! and the harness do not disturb the count. Each test warms a `Registrar` up the way a
//! running shard is warm (users registered, each refreshed once, so every reused buffer
//! and the arena reached its size), prebuilds its requests, and then counts across
//! thousands of requests of one kind.
//!
//! A new AOR necessarily allocates its binding storage (one packed blob per binding,
//! plus the amortised growth of the slot vector and the AOR hash table when they were
//! not preallocated); that is measured and bounded separately.
//!
//! `memory_per_binding_through_pipeline` (ignored: it registers 1M AORs) reports the
//! resident bytes per binding: `cargo test --release --test alloc -- --ignored --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use bumpalo::Bump;
use sipreg::registrar::support::{self, route};
use sipreg::registrar::{Action, Registrar, RegistrarConfig, Source};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // `const` thread-locals without Drop need no lazy registration, so touching them
    // from inside the allocator cannot recurse; `try_with` covers thread teardown.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only
// thread-local `Cell`s and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCS.with(|n| n.get())
}

const T0_MS: u64 = 1_790_000_000_000;
/// Users registered during warm-up.
const USERS: u32 = 1000;

/// A shard's registrar with the buffers the runtime keeps per core.
struct Shard {
    reg: Registrar,
    arena: Bump,
    out: Vec<u8>,
    now_ms: u64,
    /// Status codes seen by `send` (checked after counting, outside the count).
    statuses: Vec<u16>,
}

impl Shard {
    fn new(config: RegistrarConfig) -> Self {
        Self {
            reg: Registrar::new(config),
            arena: Bump::with_capacity(64 * 1024),
            out: Vec::with_capacity(4096),
            now_ms: T0_MS,
            statuses: Vec::with_capacity(100_000),
        }
    }

    /// One datagram, the way the runtime does it (arena reset per datagram here; the
    /// runtime resets it per batch). 1 ms passes per request.
    fn send(&mut self, bytes: &[u8], from: SocketAddr) {
        self.now_ms += 1;
        self.arena.reset();
        let source = Source::udp(from, 0);
        let status = match support::handle(
            &mut self.reg,
            self.now_ms,
            source,
            bytes,
            &self.arena,
            &mut self.out,
        ) {
            Action::Reply { .. } => self
                .out
                .get(8..11)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        // Capacity reserved up front: pushing allocates nothing.
        self.statuses.push(status);
    }

    fn send_all(&mut self, msgs: &[Vec<u8>]) {
        for (i, m) in msgs.iter().enumerate() {
            self.send(m, addr(i as u32));
        }
    }

    /// The statuses since the last call, and forget them.
    fn take_statuses(&mut self) -> Vec<u16> {
        let s = self.statuses.clone();
        self.statuses.clear();
        s
    }

    /// Every status since the last call was `want`.
    fn assert_all(&mut self, want: u16, what: &str) {
        let s = self.take_statuses();
        assert!(!s.is_empty());
        let bad = s.iter().filter(|&&x| x != want).count();
        assert_eq!(
            bad,
            0,
            "{what}: {bad} of {} answers were not {want} (first: {:?})",
            s.len(),
            s.first()
        );
    }
}

fn addr(i: u32) -> SocketAddr {
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from(([10, a, b, c], 5060))
}

/// A realistic REGISTER (~490 bytes): RFC 5626 instance, ~80-byte Contact URI,
/// User-Agent, Supported. `contact: false` makes it a fetch (no Contact).
fn register(user: u32, cseq: u32, branch: &str, expires: u32, contact: bool) -> Vec<u8> {
    let ip = addr(user).ip();
    let contact = if contact {
        format!(
            "Contact: <sip:u{user:07}@{ip}:5060;transport=udp;rinstance=3f2a9b1c0d4e5f60a1b2>\
             ;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00{user:010}>\";reg-id=1\r\n"
        )
    } else {
        String::new()
    };
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{user:07}@example.com>;tag=8f3a2b{user:07}\r\n\
         To: <sip:u{user:07}@example.com>\r\n\
         Call-ID: {user:07}-4c5d6e7f@{ip}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {contact}\
         Expires: {expires}\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Supported: path, outbound\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn request(method: &str, ruri: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@example.com>;tag=c{branch}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {branch}@192.0.2.1\r\n\
         CSeq: 1 {method}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A registrar with `USERS` users registered and each refreshed once; returns it and
/// the next CSeq to use.
fn warm(config: RegistrarConfig) -> (Shard, u32) {
    let mut shard = Shard::new(config);
    for round in 0..2u32 {
        let msgs: Vec<_> = (0..USERS)
            .map(|u| register(u, 1 + round, &format!("w{round}u{u}"), 3600, true))
            .collect();
        shard.send_all(&msgs);
        shard.assert_all(200, "warm-up");
    }
    // Every other path once, so lazily sized buffers (thread-local keys in `route`,
    // the arena's chunk) are at their steady size too.
    let warm_other = [
        register(0, 3, "wfetch", 3600, false),
        request("OPTIONS", "sip:example.com", "wopt", ""),
        request("INVITE", "sip:u0000001@example.com", "winv", ""),
        malformed(0),
    ];
    for m in &warm_other {
        shard.send(m, addr(0));
        let _ = route(m);
    }
    shard.take_statuses();
    (shard, 4)
}

/// A REGISTER the parser refuses with 400 but can answer (`q` above 1, RFC 3261 §20.10).
fn malformed(i: u32) -> Vec<u8> {
    let mut m = register(i % USERS, 1, &format!("bad{i}"), 3600, true);
    let at = m
        .windows(b";reg-id=1".len())
        .position(|w| w == b";reg-id=1")
        .unwrap();
    m.splice(at..at, b";q=7".iter().copied());
    m
}

fn default_config() -> RegistrarConfig {
    RegistrarConfig {
        domains: vec!["example.com".into()],
        ..Default::default()
    }
}

/// Count allocations over `msgs`, then check every answer was `want`.
fn count(shard: &mut Shard, msgs: &[Vec<u8>], want: u16, what: &str) -> u64 {
    let n = allocations(|| shard.send_all(msgs));
    shard.assert_all(want, what);
    eprintln!("{what}: {n} allocations over {} requests", msgs.len());
    n
}

#[test]
fn refreshes_allocate_nothing() {
    let (mut shard, cseq) = warm(default_config());
    let msgs: Vec<_> = (0..10_000u32)
        .map(|i| {
            let u = i % USERS;
            let c = cseq + i / USERS;
            register(u, c, &format!("r{c}u{u}"), 3600, true)
        })
        .collect();
    assert_eq!(count(&mut shard, &msgs, 200, "refresh"), 0);
    assert_eq!(shard.reg.stats().bindings, u64::from(USERS));
}

#[test]
fn fetches_options_redirects_and_errors_allocate_nothing() {
    let (mut shard, cseq) = warm(default_config());
    let fetches: Vec<_> = (0..1000u32)
        .map(|u| register(u, cseq, &format!("f{u}"), 3600, false))
        .collect();
    assert_eq!(count(&mut shard, &fetches, 200, "fetch"), 0);

    let options: Vec<_> = (0..1000u32)
        .map(|i| request("OPTIONS", "sip:example.com", &format!("o{i}"), ""))
        .collect();
    assert_eq!(count(&mut shard, &options, 200, "OPTIONS"), 0);

    let invites: Vec<_> = (0..1000u32)
        .map(|i| {
            let ruri = format!("sip:u{:07}@example.com", i % USERS);
            request(
                "INVITE",
                &ruri,
                &format!("i{i}"),
                "Contact: <sip:caller@192.0.2.1>\r\n",
            )
        })
        .collect();
    assert_eq!(count(&mut shard, &invites, 302, "INVITE → 302"), 0);

    let unknown: Vec<_> = (0..1000u32)
        .map(|i| {
            let ruri = format!("sip:nobody{i}@example.com");
            request("INVITE", &ruri, &format!("n{i}"), "")
        })
        .collect();
    assert_eq!(count(&mut shard, &unknown, 404, "INVITE → 404"), 0);

    let bad: Vec<_> = (0..1000u32).map(malformed).collect();
    assert_eq!(count(&mut shard, &bad, 400, "malformed → 400"), 0);

    let foreign: Vec<_> = (0..1000u32)
        .map(|i| request("OPTIONS", "sip:elsewhere.example.net", &format!("x{i}"), ""))
        .collect();
    assert_eq!(count(&mut shard, &foreign, 404, "foreign domain → 404"), 0);
}

#[test]
fn retransmissions_allocate_nothing() {
    let (mut shard, cseq) = warm(default_config());
    let msgs: Vec<_> = (0..1000u32)
        .map(|u| register(u, cseq, &format!("t{u}"), 3600, true))
        .collect();
    shard.send_all(&msgs);
    shard.assert_all(200, "first transmission");
    let before = shard.reg.stats().retransmissions;
    assert_eq!(count(&mut shard, &msgs, 200, "retransmission"), 0);
    assert_eq!(shard.reg.stats().retransmissions - before, 1000);
}

#[test]
fn route_allocates_nothing() {
    let (_shard, cseq) = warm(default_config());
    let msgs: Vec<_> = (0..1000u32)
        .map(|u| register(u, cseq, &format!("q{u}"), 3600, true))
        .collect();
    let n = allocations(|| {
        for m in &msgs {
            std::hint::black_box(route(m));
        }
    });
    eprintln!("route: {n} allocations over {} requests", msgs.len());
    assert_eq!(n, 0);
}

/// A full transaction cache evicts its oldest record for every new one: that churn must
/// not allocate either (the cache is a preallocated ring plus a hash index).
#[test]
fn refreshes_with_a_full_txn_cache_allocate_nothing() {
    let (mut shard, cseq) = warm(RegistrarConfig {
        txn_cache_max: 512,
        ..default_config()
    });
    // Several passes through the cache before counting, then count 10 more.
    let mk = |from: u32, n: u32| -> Vec<Vec<u8>> {
        (from..from + n)
            .map(|i| {
                let u = i % USERS;
                let c = cseq + i / USERS;
                register(u, c, &format!("c{c}u{u}"), 3600, true)
            })
            .collect()
    };
    let first = mk(0, 5_000);
    let growth = allocations(|| shard.send_all(&first));
    // The first fill of the cache may grow its hash index once (hashbrown resizes
    // instead of rehashing in place while more than half of its buckets are needed):
    // bounded, once per shard lifetime, never per request. See perf/RESULTS.md.
    eprintln!("txn cache first fill: {growth} allocations over 5000 requests");
    assert!(
        growth <= 1,
        "{growth} allocations while the cache first filled"
    );
    shard.assert_all(200, "cache churn warm-up");
    assert_eq!(
        count(&mut shard, &mk(5_000, 10_000), 200, "refresh, full cache"),
        0
    );
    assert!(shard.reg.stats().txn_evicted > 0, "the cache never filled");
}

#[test]
fn unregister_and_expiry_allocate_nothing() {
    let (mut shard, cseq) = warm(default_config());
    let unreg: Vec<_> = (0..USERS / 2)
        .map(|u| register(u, cseq, &format!("x{u}"), 0, true))
        .collect();
    assert_eq!(count(&mut shard, &unreg, 200, "unregister"), 0);
    assert_eq!(shard.reg.stats().bindings, u64::from(USERS / 2));

    // The other half expires: run the timers past their expiry.
    let end_ms = shard.now_ms + 3_601_000;
    let n = allocations(|| {
        while let Some(t) = shard.reg.poll_timeout() {
            if t > end_ms {
                break;
            }
            shard.reg.handle_timeout(t.max(shard.now_ms));
            shard.now_ms = t.max(shard.now_ms);
        }
        shard.reg.handle_timeout(end_ms);
    });
    eprintln!("expiry of {} bindings: {n} allocations", USERS / 2);
    assert_eq!(shard.reg.stats().bindings, 0);
    assert_eq!(n, 0);
}

/// A new AOR allocates its binding blob (one allocation); the slot vector and the AOR
/// hash table grow by doubling when they were not preallocated. Re-registering an AOR
/// whose slot was freed reuses the slot and allocates only the blob.
#[test]
fn new_bindings_allocate_a_bounded_amount() {
    let (mut shard, cseq) = warm(default_config());
    // Fresh AORs: the first USERS .. USERS + 10_000.
    let fresh: Vec<_> = (USERS..USERS + 10_000)
        .map(|u| register(u, 1, &format!("n{u}"), 3600, true))
        .collect();
    let mut worst = 0;
    let mut total = 0;
    for (i, m) in fresh.iter().enumerate() {
        let n = allocations(|| shard.send(m, addr(USERS + i as u32)));
        worst = worst.max(n);
        total += n;
    }
    shard.assert_all(200, "new AORs");
    eprintln!(
        "new binding: {total} allocations for 10k new AORs ({:.3} per binding), {worst} at most for one",
        total as f64 / 10_000.0
    );
    // One blob each, plus the doublings of two tables (log2 growth: a handful in 10k).
    assert!(
        total <= 10_000 + 64,
        "{total} allocations for 10k new bindings"
    );
    assert!(worst <= 3, "{worst} allocations for one new binding");

    // Unregister then re-register: the free slot is reused; only the blob is new.
    let unreg: Vec<_> = (0..USERS)
        .map(|u| register(u, cseq, &format!("u{u}"), 0, true))
        .collect();
    let rereg: Vec<_> = (0..USERS)
        .map(|u| register(u, cseq + 1, &format!("v{u}"), 3600, true))
        .collect();
    assert_eq!(count(&mut shard, &unreg, 200, "unregister"), 0);
    let n = count(&mut shard, &rereg, 200, "re-register");
    assert_eq!(n, u64::from(USERS), "one blob per re-registered binding");
}

/// Resident bytes per binding through the real pipeline (1M AORs, ~80-byte Contact,
/// User-Agent, +sip.instance), with the transaction cache disabled; then the same
/// registrations again with the cache on, to size the cache separately.
///
/// `cargo test --release --test alloc -- --ignored --nocapture memory_per_binding`
#[test]
#[ignore = "registers 1M AORs; run in release with --nocapture"]
fn memory_per_binding_through_pipeline() {
    const N: u32 = 1_000_000;
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    let mut buf = Vec::with_capacity(1024);
    let mut run = |txn_cache_max: usize| -> (u64, Shard) {
        let mut shard = Shard::new(RegistrarConfig {
            max_bindings: 2_000_000,
            txn_cache_max,
            ..default_config()
        });
        shard.statuses = Vec::new();
        let before = rss_bytes();
        for u in 0..N {
            buf.clear();
            buf.extend_from_slice(&register(u, 1, &format!("m{u}"), 3600, true));
            shard.send(&buf, addr(u));
            if shard.out.get(8..11) != Some(b"200") {
                panic!("{}", String::from_utf8_lossy(&shard.out));
            }
            shard.statuses.clear();
        }
        let after = rss_bytes();
        assert_eq!(shard.reg.stats().bindings, u64::from(N));
        (after - before, shard)
    };
    let (no_cache, shard) = run(0);
    let per = no_cache as f64 / f64::from(N);
    eprintln!(
        "1M bindings, txn cache off: RSS +{:.1} MiB = {per:.0} B per binding",
        no_cache as f64 / 1048576.0
    );
    // The first shard stays alive, so the second cannot reuse its freed heap pages.
    let (with_cache, shard2) = run(RegistrarConfig::default().txn_cache_max);
    let s = shard2.reg.stats();
    eprintln!(
        "1M bindings, txn cache {} entries ({} held, {} evicted early): RSS +{:.1} MiB = {:.0} B per binding; cache ≈ {:.1} MiB",
        RegistrarConfig::default().txn_cache_max,
        s.txns,
        s.txn_evicted,
        with_cache as f64 / 1048576.0,
        with_cache as f64 / f64::from(N),
        (with_cache as f64 - no_cache as f64) / 1048576.0
    );
    assert!(per <= 350.0, "{per:.0} B per binding, target 350");
    drop((shard, shard2));
}

/// `Authenticator::check` on valid credentials (parse, nonce MAC, subscriber lookup,
/// both digest hashes, replay table insert and update) allocates nothing once built: the
/// replay table is preallocated, every hash and hex string is on the stack.
#[test]
fn auth_check_allocates_nothing() {
    use md5::Md5;
    use sha2::{Digest, Sha256};
    use sipreg::auth::{
        ALGORITHMS_DEFAULT, Algorithm, AuthOutcome, Authenticator, Challenges, NONCE_LEN,
        NonceCounts, NonceKey, Subscribers,
    };
    use std::sync::Arc;

    fn h(algo: Algorithm, s: &str) -> String {
        let d = match algo {
            Algorithm::Md5 => Md5::digest(s.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(s.as_bytes()).to_vec(),
        };
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
    const NONCES: u64 = 64;
    const NCS: u32 = 16;
    let subs = Subscribers::parse("alice@example.com secret\nbob@example.com pw\n").unwrap();
    let mut auth = Authenticator::with_counts(
        Arc::new(subs),
        NonceKey::new(&[5; 32]),
        ALGORITHMS_DEFAULT.to_vec(),
        600_000,
        // Smaller than the nonces used, so eviction runs during the count too.
        NonceCounts::with_capacity(32),
    );
    let mut msgs = Vec::new();
    for i in 0..NONCES {
        let algo = if i % 2 == 0 {
            Algorithm::Sha256
        } else {
            Algorithm::Md5
        };
        let mut nb = [0u8; NONCE_LEN];
        let nonce = auth
            .key
            .make_nonce(T0_MS + i, b"example.com", &mut nb)
            .to_owned();
        let ha1 = h(algo, "alice:example.com:secret");
        let ha2 = h(algo, "REGISTER:sip:example.com");
        for nc in 1..=NCS {
            let resp = h(algo, &format!("{ha1}:{nonce}:{nc:08x}:abc:auth:{ha2}"));
            msgs.push(format!(
                "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", \
                 response=\"{resp}\", algorithm={}, cnonce=\"abc\", qop=auth, nc={nc:08x}",
                algo.name()
            ));
        }
    }
    let mut challenges = Challenges::new();
    let mut ok = 0;
    let n = allocations(|| {
        for m in &msgs {
            if let AuthOutcome::Ok { user } = auth.check(
                T0_MS + NONCES,
                b"REGISTER",
                Some(m.as_bytes()),
                b"example.com",
            ) {
                ok += usize::from(user == b"alice");
            }
            // The replayed and the unauthenticated paths write a challenge.
            let _ = auth.check(
                T0_MS + NONCES,
                b"REGISTER",
                Some(m.as_bytes()),
                b"example.com",
            );
            let _ = auth.check(T0_MS + NONCES, b"REGISTER", None, b"example.com");
            auth.write_challenges(T0_MS + NONCES, b"example.com", false, &mut challenges);
        }
    });
    assert_eq!(ok, msgs.len(), "every request authenticated");
    assert_eq!(auth.counters().failures.replayed_nc, msgs.len() as u64);
    assert_eq!(challenges.len(), 2);
    assert_eq!(n, 0, "allocations across {} authentications", msgs.len());
}
