//! End to end over loopback: start `sipreg-loadgen echo`, drive it with a short bounded run,
//! and check what a user of the tool sees (exit status, JSON figures, one-line usage errors).

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sipreg-loadgen");

/// An echo server on a free port, killed when dropped.
struct Echo {
    child: Child,
    port: u16,
}

impl Echo {
    fn start() -> Self {
        // Find a free port, release it, and let the echo server bind it; another test
        // may take the port in between, so a server that exits is retried on a new one.
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(BIN)
                .args([
                    "echo",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--duration",
                    "60",
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Wait until it reflects a datagram.
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            probe
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 16];
            while Instant::now() < deadline {
                probe.send_to(b"ping", ("127.0.0.1", port)).unwrap();
                if probe.recv(&mut buf).is_ok() {
                    return Self { child, port };
                }
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("echo server did not come up after 5 attempts");
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_u64(json: &str, key: &str) -> u64 {
    let needle = format!("\"{key}\":");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + needle.len();
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn closed_loop_against_echo_matches_every_response() {
    let echo = Echo::start();
    let target = echo.target();
    let (code, out, err) = loadgen(&[
        "--target",
        &target,
        "--expect",
        "echo",
        "--count",
        "5000",
        "--users",
        "1000",
        "--window",
        "32",
        "--sockets",
        "4",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(json_u64(&out, "sent"), 5000);
    assert_eq!(
        json_u64(&out, "ok"),
        5000,
        "every request matched and validated: {out}"
    );
    assert_eq!(json_u64(&out, "echo"), 5000);
    assert_eq!(json_u64(&out, "stray"), 0);
    assert_eq!(json_u64(&out, "timeouts"), 0);
}

#[test]
fn open_loop_refresh_with_prime_against_echo() {
    let echo = Echo::start();
    let target = echo.target();
    let (code, out, err) = loadgen(&[
        "--target",
        &target,
        "--expect",
        "echo",
        "--scenario",
        "refresh",
        "--users",
        "500",
        "--rate",
        "20k",
        "--duration",
        "0.5",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(json_u64(&out, "ok"), json_u64(&out, "sent"), "{out}");
    assert!(
        json_u64(&out, "sent") > 5000,
        "about 10k offered in 0.5 s: {out}"
    );
    assert!(out.contains("\"prime\":{\"sent\":500,\"ok\":500,"), "{out}");
}

#[test]
fn wrong_expectation_is_counted_and_exits_1() {
    let echo = Echo::start();
    let target = echo.target();
    // The echo reflects our request, so a registrar's 200 never comes.
    let (code, out, _) = loadgen(&["--target", &target, "--count", "100", "--json", "--quiet"]);
    assert_eq!(code, 1);
    assert_eq!(json_u64(&out, "unexpected_status"), 100, "{out}");
}

#[test]
fn nobody_listening_means_timeouts_not_a_hang() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let (code, out, _) = loadgen(&[
        "--target",
        &target,
        "--count",
        "10",
        "--timeout-ms",
        "300",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 1);
    assert_eq!(json_u64(&out, "timeouts"), 10, "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_flag() {
    for (args, flag) in [
        (&["--scenario", "register"][..], "--duration"),
        (&["--count", "1", "--rate", "0"][..], "--rate"),
        (&["--count", "1", "--scenario", "nope"][..], "--scenario"),
        (&["--count", "1", "--window", "0"][..], "--window"),
        (&["--count", "1", "--cpus", "4096"][..], "--cpus"),
        (&["--count", "1", "--bogus"][..], "--bogus"),
    ] {
        let (code, out, err) = loadgen(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn prime_against_a_dead_server_gives_up_quickly() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let (code, _, err) = loadgen(&[
        "--target",
        &target,
        "--scenario",
        "refresh",
        "--users",
        "20000",
        "--duration",
        "1",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("prime phase"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not one timeout per window of users"
    );
}
