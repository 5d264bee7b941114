//! Runtime behaviour over real UDP: what an operator or a client observes of the
//! shell around the registrar, whatever the registrar answers.

use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

use crate::util::{Client, Server, free_udp_addr, options_request, run_to_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Replies leave from the address and port the client sent to, whichever core
/// answered (a reply from another port would be dropped by NATs and strict UAs).
#[test]
fn replies_come_from_the_listening_address() {
    let server = Server::start(&[]);
    let client = Client::new(server.addr);
    for i in 0..20 {
        client.send(options_request(&client, &format!("user{i}")).as_bytes());
        let (response, from) = client.recv_within(Duration::from_secs(2)).expect("answer");
        assert_ne!(response.status, 0, "not a SIP response: {}", response.raw);
        assert_eq!(from, server.addr);
    }
}

/// Eight source ports (spread over cores by the kernel) and varied requests (spread
/// over shards by route()) all get answers: the cross-core path delivers. At the
/// graceful stop the summary line shows forwards happened when there are 2+ cores.
/// With the kernel's 4-tuple hash: eBPF receive steering (the default) would deliver
/// each request to its owner and leave the mesh nothing to carry.
#[test]
fn every_source_port_gets_answers_through_the_mesh() {
    let cores = if two_cpus() { "2" } else { "1" };
    let mut server = Server::start(&["--cores", cores, "--steering", "hash"]);
    let clients: Vec<Client> = (0..8).map(|_| Client::new(server.addr)).collect();
    for round in 0..8 {
        for (c, client) in clients.iter().enumerate() {
            client.send(options_request(client, &format!("u{c}r{round}")).as_bytes());
        }
        for client in &clients {
            let (response, from) = client
                .recv_within(Duration::from_secs(2))
                .expect("every request is answered");
            assert_ne!(response.status, 0);
            assert_eq!(from, server.addr);
        }
    }
    let status = server.terminate(EXIT_TIMEOUT).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", server.log());
    let log = server.log();
    let stopped = log
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no summary:\n{log}"));
    let forwarded: u64 = stopped
        .split(", ")
        .find_map(|part| part.strip_suffix(" forwarded"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no forwarded count in {stopped}"));
    if two_cpus() {
        assert!(
            forwarded > 0,
            "64 varied requests over 2 cores and none crossed: {stopped}"
        );
    }
}

fn two_cpus() -> bool {
    thread::available_parallelism().map_or(1, usize::from) >= 2
}

/// Empty, binary and oversized datagrams never stop the server; an oversized one
/// (past 16 KiB) is dropped without an answer.
#[test]
fn garbage_and_oversized_datagrams_do_not_kill_it() {
    let server = Server::start(&[]);
    let client = Client::new(server.addr);
    client.send(&[]);
    client.send(&[0xff, 0x00, 0xfe, 0x80, 0x0d, 0x0a]);
    client.send(b"\r\n\r\n");
    client.send(&vec![b'A'; 60_000]);
    // Drain whatever the registrar chose to answer to the small garbage.
    while client.recv_within(Duration::from_millis(300)).is_some() {}

    let oversized = format!("{}{}", options_request(&client, "big"), "x".repeat(20_000));
    client.send(oversized.as_bytes());
    assert!(
        client.recv_within(Duration::from_millis(500)).is_none(),
        "a datagram over 16 KiB must be dropped, not answered"
    );
    let response = client.options();
    assert_ne!(response.status, 0, "still answering after garbage");
}

/// Listening on two addresses: each request is answered from the address it was sent
/// to, even when another core owns it (the local socket index crosses the mesh).
#[test]
fn two_listen_addresses_answer_from_their_own_address() {
    let second = free_udp_addr("127.0.0.2:0");
    let second_flag = second.to_string();
    let server = Server::start(&["--listen", &second_flag]);
    for target in [server.addr, second] {
        let client = Client::new(target);
        for i in 0..16 {
            client.send(options_request(&client, &format!("x{i}")).as_bytes());
            let (_, from) = client.recv_within(Duration::from_secs(2)).expect("answer");
            assert_eq!(from, target);
        }
    }
}

/// IPv6 listeners work (and are IPv6-only, so the same port can also be IPv4).
#[test]
fn ipv6_listener_answers() {
    let v6 = free_udp_addr("[::1]:0");
    let v6_flag = v6.to_string();
    let mut server = Server::spawn(v6, &["--listen", &v6_flag]);
    assert!(
        server.wait_ready(),
        "no answer over IPv6:\n{}",
        server.log()
    );
    let client = Client::new(v6);
    client.send(options_request(&client, "six").as_bytes());
    let (_, from) = client
        .recv_within(Duration::from_secs(2))
        .expect("answer over IPv6");
    assert_eq!(from, v6);
}

/// A bad flag stops the program before it serves: non-zero exit, one line naming the
/// flag, no panic.
#[test]
fn bad_flags_exit_nonzero_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--recv-batch", "0"], "--recv-batch"),
        (&["--listen", "not-an-address"], "--listen"),
        (
            &["--min-expires", "100", "--max-expires", "50"],
            "--min-expires",
        ),
        (&["--default-expires", "5"], "--default-expires"),
        (&["--expires-jitter", "80"], "--expires-jitter"),
        (&["--cores", "1", "--cpus", "0"], "--cpus"),
        (&["--cores", "100000"], "too few cores"),
        (&["--cpus", "4096"], "--cpus"),
        (
            &["--min-expires-policy", "sometimes"],
            "--min-expires-policy",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        let (status, stderr) = run_to_exit(args, EXIT_TIMEOUT);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr does not name {needle}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A port held by another process is a one-line error, exit 1, no panic.
#[test]
fn port_in_use_is_a_clear_error() {
    let holder = UdpSocket::bind("127.0.0.1:0").expect("bind holder");
    let addr = holder.local_addr().expect("addr").to_string();
    let (status, stderr) = run_to_exit(&["--listen", &addr], EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("address already in use"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A second instance on the same port is refused too (SO_REUSEPORT would otherwise
/// let it silently take half of the first one's traffic).
#[test]
fn a_second_instance_on_the_same_port_is_refused() {
    let first = Server::start(&[]);
    let addr = first.addr.to_string();
    let (status, stderr) = run_to_exit(&["--listen", &addr], EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("address already in use"), "{stderr}");
}

/// SIGTERM: stop receiving, answer what is in flight, exit 0.
#[test]
fn sigterm_is_a_graceful_exit_zero() {
    let mut server = Server::start(&[]);
    let client = Client::new(server.addr);
    assert_ne!(client.options().status, 0);
    let status = server.terminate(EXIT_TIMEOUT).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("stopped:"), "{}", server.log());
}

/// After a graceful stop the port is free at once: a restart on the same port works
/// (in-flight io_uring receives would otherwise keep the socket bound past exit).
#[test]
fn restart_on_the_same_port_right_after_sigterm() {
    let mut first = Server::start(&[]);
    let addr = first.addr;
    let flag = addr.to_string();
    for _ in 0..3 {
        let client = Client::new(addr);
        client.send(options_request(&client, "before").as_bytes());
        let _ = client.recv_within(Duration::from_secs(2));
        let status = first.terminate(EXIT_TIMEOUT).expect("exits after SIGTERM");
        assert!(status.success(), "{}", first.log());
        first = Server::spawn(addr, &["--listen", &flag]);
        assert!(
            first.wait_ready(),
            "restart on {addr} failed:\n{}",
            first.log()
        );
    }
}

/// An idle server sleeps: under 5 % of one CPU over three seconds.
#[test]
fn idle_server_uses_almost_no_cpu() {
    let server = Server::start(&[]);
    thread::sleep(Duration::from_millis(300));
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(3));
    let used = server.cpu_ticks() - before;
    // Clock ticks are 1/100 s on Linux: 3 s at 5 % is 15 ticks.
    assert!(used <= 15, "idle server used {used} ticks in 3 s");
}

/// The start-up line states the effective configuration, and says when no domain is
/// configured.
#[test]
fn startup_line_states_the_configuration() {
    let server = Server::start(&["--min-expires", "30", "--max-contacts", "5", "--cores", "1"]);
    let log = server.log();
    let start = log
        .lines()
        .find(|l| l.contains("starting:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(start.contains("1 cores"), "{start}");
    assert!(start.contains("30/3600/3600 s"), "{start}");
    assert!(start.contains("max contacts 5"), "{start}");
    assert!(log.contains("serving any domain"), "{log}");
    assert!(log.contains("core 0 up on CPU"), "{log}");
}

#[test]
fn overload_is_logged_once_per_stats_interval() {
    let server = Server::start(&[
        "--max-bindings",
        "1",
        "--cores",
        "1",
        "--stats-interval",
        "1",
    ]);
    let c = Client::new(server.addr);
    let ok = c.register(
        "sip:first@example.com",
        "sip:first@192.0.2.1",
        600,
        "ov-1",
        1,
    );
    assert_eq!(ok.status, 200, "{}", ok.raw);
    let full = c.register(
        "sip:second@example.com",
        "sip:second@192.0.2.2",
        600,
        "ov-2",
        1,
    );
    assert_eq!(full.status, 503, "{}", full.raw);
    let mut log = String::new();
    for _ in 0..30 {
        thread::sleep(Duration::from_millis(100));
        log = server.log();
        if log.contains("overload") {
            break;
        }
    }
    let line = log
        .lines()
        .find(|l| l.contains("overload"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("answered_503=1"), "{line}");
}
