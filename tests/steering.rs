//! Receive steering against the real kernel: N SO_REUSEPORT UDP sockets on loopback with
//! the steering program attached, one client socket sending each message, and the socket
//! that received it compared with the pure-Rust mirror of the program
//! (`sipreg::steer::decide`) and with the registrar's own routing.
//!
//! Needs `bpf(2)` (root or CAP_BPF): CI runs as root. Elsewhere the test prints why it
//! skipped. The RFC 4475 corpus is found as `tests/rfc4475_parse.rs` finds it.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bumpalo::Bump;
use sipreg::placement::shard_for;
use sipreg::registrar::support::{Route, route};
use sipreg::runtime::steer::{SteerError, install};
use sipreg::sip::parse_request;
use sipreg::steer::decide;
use socket2::{Domain, Protocol, Socket, Type};

/// How long a datagram may take to arrive on loopback.
const ARRIVAL_TIMEOUT_MS: u64 = 2000;

fn corpus_dir() -> PathBuf {
    match std::env::var_os("RFC4475_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/rfc4475"),
    }
}

/// A reuseport group of `n` sockets on a fresh loopback port, steered.
struct Group {
    sockets: Vec<UdpSocket>,
}

impl Group {
    /// `None` (with the reason printed) when the kernel refuses `bpf(2)` to this process.
    fn new(n: usize) -> Option<Self> {
        let mut raw = Vec::new();
        let mut addr = "127.0.0.1:0".parse::<std::net::SocketAddr>().expect("addr");
        for i in 0..n {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
            s.set_reuse_port(true).expect("SO_REUSEPORT");
            s.bind(&addr.into()).expect("bind");
            if i == 0 {
                addr = s.local_addr().expect("local").as_socket().expect("inet");
            }
            raw.push(s);
        }
        match install(n, raw.first()) {
            Ok(()) => {}
            Err(SteerError::Load { error, log })
                if log.is_empty()
                    && matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES)) =>
            {
                eprintln!("skipped: bpf(BPF_PROG_LOAD) refused ({error}): run as root");
                return None;
            }
            Err(e) => panic!("steering program not installed: {e}"),
        }
        let sockets = raw
            .into_iter()
            .map(|s| {
                let s = UdpSocket::from(s);
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect();
        Some(Self { sockets })
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.sockets[0].local_addr().expect("local")
    }

    /// Sends `msg` from `client` and returns the index of the socket that received it.
    fn pick(&self, client: &UdpSocket, msg: &[u8]) -> usize {
        client.send_to(msg, self.addr()).expect("send");
        let deadline = Instant::now() + Duration::from_millis(ARRIVAL_TIMEOUT_MS);
        let mut buf = vec![0u8; 70_000];
        loop {
            for (i, s) in self.sockets.iter().enumerate() {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    assert_eq!(&buf[..n], msg, "the datagram arrived whole");
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "datagram lost on loopback");
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The owner userspace computes for a request its parser accepts (`None`: refused).
fn owner_if_parsed(msg: &[u8], shards: usize) -> Option<usize> {
    let arena = Bump::new();
    parse_request(msg, &arena).ok()?;
    match route(msg) {
        Route::Hash(h) => Some(shard_for(h, shards)),
        Route::Drop(_) => None,
    }
}

/// Generated shapes: compact forms, case, display names with `<`, `sips:`, IPv6 hosts,
/// escapes, folded To, parameters, very long headers, other methods.
fn generated() -> Vec<Vec<u8>> {
    let tos = [
        "To: <sip:alice@example.com>",
        "t: <sip:bob@example.com>;tag=9",
        "TO :\t<sip:Carol@EXAMPLE.com:5070;transport=udp>",
        "to: \"Dave <the> Boss\" <sip:dave@example.com>",
        "To: Eve Smith <sips:eve@example.com>",
        "To: sip:frank@Example.Org",
        "To: sip:gina@example.org;tag=77",
        "To: <sip:henry@[2001:DB8::10]:5060>",
        "To: <sip:ivan%40x@example.com>",
        "To:\r\n <sip:judy@example.com>",
        "To: <sip:example.com>",
        "To: <sip:kim:secret@example.com>",
        "To: <sip:leo@example.com?subject=x>",
        "To: <sip:mallory-_.!~*'()&=+$,/@example.com>",
        "To: <tel:+15551234567>",
    ];
    let mut out = Vec::new();
    for (i, to) in tos.iter().enumerate() {
        for pad in [0usize, 300, 900, 2000] {
            let mut m = format!(
                "REGISTER sip:example.com SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgen{i}x{pad}\r\n\
                 Max-Forwards: 70\r\n"
            );
            if pad > 0 {
                m.push_str(&format!("X-Long: {}\r\n", "y".repeat(pad)));
            }
            m.push_str(&format!(
                "{to}\r\nFrom: <sip:alice@example.com>;tag=456\r\n\
                 Call-ID: gen{i}-{pad}@host\r\nCSeq: 1 REGISTER\r\n\
                 Contact: <sip:u@192.0.2.1>\r\nContent-Length: 0\r\n\r\n"
            ));
            out.push(m.into_bytes());
        }
    }
    for ruri in [
        "sip:bob@biloxi.com",
        "sip:Bob@BILOXI.com:5060;lr",
        "sips:carol@[::1]",
        "sip:biloxi.com",
        "sip:d%61ve@biloxi.com",
    ] {
        for method in ["OPTIONS", "INVITE", "SUBSCRIBE", "MESSAGE"] {
            out.push(
                format!(
                    "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{method}\r\n\
                     Max-Forwards: 70\r\nTo: <sip:other@example.com>\r\nFrom: <sip:a@b>;tag=1\r\n\
                     Call-ID: {method}-{ruri}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
                )
                .into_bytes(),
            );
        }
    }
    out
}

#[test]
fn the_kernel_delivers_to_the_owner_or_the_program_has_no_choice() {
    let mut corpus: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("RFC 4475 corpus (set RFC4475_DIR)")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    assert!(corpus.len() >= 40, "RFC 4475 corpus incomplete");
    corpus.extend(
        generated()
            .into_iter()
            .enumerate()
            .map(|(i, m)| (format!("generated #{i}"), m)),
    );
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    let mut steered = 0;
    for shards in [2, 3, 4] {
        let Some(group) = Group::new(shards) else {
            return;
        };
        for (name, msg) in &corpus {
            let mirror = decide(msg, shards);
            let got = group.pick(&client, msg);
            if let Some(i) = mirror {
                steered += 1;
                assert_eq!(got, i, "{name}: kernel vs mirror ({shards} sockets)");
                if let Some(owner) = owner_if_parsed(msg, shards) {
                    assert_eq!(i, owner, "{name}: mirror vs registrar ({shards} sockets)");
                }
            }
        }
    }
    // Most generated shapes are steered: the test is not passing on "no choice" alone.
    assert!(steered > 100, "only {steered} messages steered");
}

#[test]
fn one_source_spreads_over_every_socket() {
    let Some(group) = Group::new(2) else {
        return;
    };
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    let mut per_socket = [0usize; 2];
    for i in 0..200 {
        let msg = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{i}\r\n\
             To: <sip:user{i}@example.com>\r\nFrom: <sip:user{i}@example.com>;tag=1\r\n\
             Call-ID: c{i}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let got = group.pick(&client, msg.as_bytes());
        assert_eq!(Some(got), owner_if_parsed(msg.as_bytes(), 2), "user{i}");
        per_socket[got] += 1;
    }
    assert!(per_socket.iter().all(|&n| n > 50), "{per_socket:?}");
}

/// xorshift64*, for reproducible mutations.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The fuzz target's check, run here on every build: the corpus with bytes flipped,
/// inserted and deleted, and the bytes that matter to the program favoured.
#[test]
fn the_mirror_agrees_with_routing_on_mutated_messages() {
    const MUTATIONS_PER_MESSAGE: usize = 400;
    const INTERESTING: &[u8] = b"\r\n \t:;<>@[]%\"'?sSiIpPtToO";
    let mut state = 0x5eed_u64;
    let (mut checked, mut steered) = (0usize, 0usize);
    for base in generated() {
        for _ in 0..MUTATIONS_PER_MESSAGE {
            let mut m = base.clone();
            for _ in 0..1 + next_random(&mut state) % 3 {
                let at = (next_random(&mut state) % m.len() as u64) as usize;
                let r = next_random(&mut state);
                let byte = if r % 2 == 0 {
                    INTERESTING[(r / 2 % INTERESTING.len() as u64) as usize]
                } else {
                    (r >> 8) as u8
                };
                match r % 3 {
                    0 => m[at] = byte,
                    1 => m.insert(at, byte),
                    _ => {
                        m.remove(at);
                    }
                }
            }
            for shards in [2, 3, 5] {
                if let (Some(core), Some(owner)) = (decide(&m, shards), owner_if_parsed(&m, shards))
                {
                    steered += 1;
                    assert_eq!(
                        core,
                        owner,
                        "mirror vs registrar ({shards} cores) for:\n{}",
                        String::from_utf8_lossy(&m)
                    );
                }
                checked += 1;
            }
        }
    }
    // Most generated shapes are no-choice on purpose and most mutations break the
    // request; about a fifth are steered and parsed (18 936 of 96 000 when written).
    assert!(steered * 10 > checked, "{steered} of {checked} steered");
}

/// The largest payload `BPF_PROG_TEST_RUN` takes (a page less the skb's head and tail
/// room); longer messages are checked through sockets above.
const TEST_RUN_PAYLOAD_BYTES_MAX: usize = 3000;

/// Without sockets: the program's return value for every message, steered or not, is
/// the mirror's (`None` = past the last socket), for RFC 4475, the generated corpus and
/// mutations of it. Also prints the program's cost per datagram.
#[test]
fn the_program_returns_what_the_mirror_decides() {
    let shards = 3;
    let prog = match sipreg::runtime::steer::load(shards) {
        Ok(p) => p,
        Err(SteerError::Load { error, log })
            if log.is_empty()
                && matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES)) =>
        {
            eprintln!("skipped: bpf(BPF_PROG_LOAD) refused ({error}): run as root");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut messages: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir())
        .expect("RFC 4475 corpus")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    messages.extend(generated());
    let mut state = 0xfeed_u64;
    for base in generated() {
        for _ in 0..50 {
            let mut m = base.clone();
            let at = (next_random(&mut state) % m.len() as u64) as usize;
            m[at] = (next_random(&mut state) >> 8) as u8;
            messages.push(m);
        }
    }
    let mut steered = 0;
    for m in messages
        .iter()
        .filter(|m| m.len() + 14 <= TEST_RUN_PAYLOAD_BYTES_MAX)
    {
        let run = sipreg::runtime::steer::test_run(&prog, m, 1).expect("test run");
        let want = decide(m, shards).map_or(u32::MAX, |i| i as u32);
        assert_eq!(
            run.retval,
            want,
            "program vs mirror for:\n{}",
            String::from_utf8_lossy(m)
        );
        steered += usize::from(want != u32::MAX);
    }
    assert!(steered > 100, "{steered}");
    // The cost of one decision, for perf/RESULTS.md: a typical REGISTER (To third).
    let typical = &generated()[0];
    let run = sipreg::runtime::steer::test_run(&prog, typical, 100_000).expect("test run");
    eprintln!(
        "steering program: {} ns per {}-byte REGISTER (BPF_PROG_TEST_RUN, 100 000 runs)",
        run.duration_ns,
        typical.len()
    );
}

/// The attach step's failure is an error the runtime can report (and then run on the
/// kernel's hash): a socket that is in no SO_REUSEPORT group has no group to steer.
#[test]
fn attaching_outside_a_reuseport_group_fails_with_a_reason() {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .expect("addr")
            .into(),
    )
    .expect("bind");
    match install(2, [&s]) {
        Err(SteerError::Attach(e)) => {
            assert!(e.raw_os_error().is_some(), "{e}");
        }
        Err(SteerError::Load { error, log }) if log.is_empty() => {
            eprintln!("skipped: bpf(BPF_PROG_LOAD) refused ({error}): run as root");
        }
        other => panic!("attach outside a group: {other:?}"),
    }
}
