//! End to end over TCP and TLS: a small SIP responder in the test (a thread per connection
//! answering each REGISTER with a 200 OK carrying `Content-Length: 0`), driven by the real
//! `sipreg-loadgen` binary, checking what its user sees (exit status, JSON figures).
//!
//! The responder writes its answers awkwardly on purpose: the answers to one read in one
//! buffer (several responses per segment), cut in two writes at an odd offset (a response
//! split across segments), with a CRLF keep-alive in between (RFC 5626 §4.4.1).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sipreg-loadgen");

/// How the responder answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 OK with Content-Length: 0.
    Ok,
    /// 200 OK without Content-Length (unframeable on a stream).
    NoContentLength,
    /// 200 OK, and the connection closed after this many answers.
    CloseAfter(u64),
}

/// What the responder saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    requests: AtomicU64,
    /// First request of each connection.
    firsts: Mutex<Vec<String>>,
    /// TLS: handshakes that resumed a session.
    resumed: AtomicU64,
    /// Source addresses of the connections.
    peers: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
}

/// Answers the requests in `buf` (whole ones), returning the bytes consumed.
fn answer(buf: &[u8], out: &mut Vec<u8>, how: Answer, seen: &Seen, first: &mut bool) -> usize {
    let mut pos = 0;
    while let Some(end) = find(&buf[pos..], b"\r\n\r\n") {
        let req = String::from_utf8_lossy(&buf[pos..pos + end + 4]).into_owned();
        pos += end + 4;
        if *first {
            seen.firsts.lock().unwrap().push(req.clone());
            *first = false;
        }
        seen.requests.fetch_add(1, Ordering::Relaxed);
        out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        for line in req.split("\r\n") {
            let name = line.split(':').next().unwrap_or("");
            match name {
                "Via" | "From" | "Call-ID" | "CSeq" | "Contact" => {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                "To" => {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b";tag=srv\r\n");
                }
                _ => {}
            }
        }
        if how != Answer::NoContentLength {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    pos
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves one connection until EOF or the stop flag.
fn serve(mut conn: impl Read + Write, how: Answer, seen: &Seen, stop: &AtomicBool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut first = true;
    let mut turn = 0usize;
    let mut answered = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let used = answer(&buf, &mut out, how, seen, &mut first);
        buf.drain(..used);
        if let Answer::CloseAfter(n) = how {
            answered += 1;
            if answered >= n {
                let _ = conn.write_all(&out);
                let _ = conn.flush();
                return;
            }
        }
        if out.is_empty() {
            continue;
        }
        turn += 1;
        // Cut somewhere inside (never the same place twice in a row).
        let cut = (out.len() / 2 + turn * 7) % out.len();
        // A keep-alive goes between messages, before this batch, every third time.
        let ok = (!turn.is_multiple_of(3) || conn.write_all(b"\r\n").is_ok())
            && conn.write_all(&out[..cut]).is_ok()
            && conn.flush().is_ok()
            && conn.write_all(&out[cut..]).is_ok()
            && conn.flush().is_ok();
        if !ok {
            return;
        }
    }
}

/// A listener on a free loopback port with a thread per connection; stops when dropped.
struct Responder {
    port: u16,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

impl Responder {
    fn start(how: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                conn.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                conn.set_nodelay(true).unwrap();
                s.connections.fetch_add(1, Ordering::Relaxed);
                if let Ok(peer) = conn.peer_addr() {
                    s.peers.lock().unwrap().insert(peer.ip());
                }
                let (s, st, tls) = (s.clone(), st.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(conn, how, &s, &st),
                    Some(cfg) => serve_tls(conn, cfg, how, &s, &st),
                });
            }
        });
        Self { port, seen, stop }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_tls(
    mut tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    how: Answer,
    seen: &Seen,
    stop: &AtomicBool,
) {
    let Ok(mut tls) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    // Finish the handshake first, so resumption can be counted.
    while tls.is_handshaking() {
        if stop.load(Ordering::Relaxed) || tls.complete_io(&mut tcp).is_err() {
            return;
        }
    }
    if tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        seen.resumed.fetch_add(1, Ordering::Relaxed);
    }
    serve(rustls::StreamOwned::new(tls, tcp), how, seen, stop);
}

/// A self-signed certificate for 127.0.0.1, its PEM in a file, and a server config.
fn tls_server() -> (Arc<rustls::ServerConfig>, tempfile_path::Path) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pem = tempfile_path::Path::new("ca.pem");
    std::fs::write(&pem.0, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    (Arc::new(cfg), pem)
}

/// A fresh file path under the system's temporary directory, removed when dropped.
mod tempfile_path {
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);

    pub(crate) struct Path(pub(crate) std::path::PathBuf);

    impl Path {
        pub(crate) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sipreg-loadgen-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir.join(name))
        }

        pub(crate) fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            if let Some(d) = self.0.parent() {
                let _ = std::fs::remove_dir(d);
            }
        }
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
fn tcp_register_load_is_framed_matched_and_never_retransmitted() {
    let r = Responder::start(Answer::Ok, None);
    let (code, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tcp",
        "--connections",
        "3",
        "--count",
        "3000",
        "--users",
        "300",
        "--window",
        "64",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert_eq!(json_u64(&out, "sent"), 3000);
    assert_eq!(json_u64(&out, "ok"), 3000, "{out}");
    assert_eq!(json_u64(&out, "retransmissions"), 0);
    assert_eq!(json_u64(&out, "connects"), 3, "{out}");
    assert_eq!(json_u64(&out, "up_at_end"), 3, "{out}");
    assert!(json_u64(&out, "keepalives") > 0, "{out}");
    assert!(out.contains("\"transport\":\"tcp\""), "{out}");
    assert_eq!(r.seen.connections.load(Ordering::Relaxed), 3);
    assert_eq!(r.seen.requests.load(Ordering::Relaxed), 3000);
    for req in r.seen.firsts.lock().unwrap().iter() {
        assert!(req.contains("Via: SIP/2.0/TCP 127.0.0.1:"), "{req}");
        assert!(req.contains(";transport=tcp>"), "{req}");
    }
}

#[test]
fn tcp_response_without_content_length_is_counted_and_fails_the_run() {
    let r = Responder::start(Answer::NoContentLength, None);
    let (code, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tcp",
        "--connections",
        "1",
        "--count",
        "20",
        "--users",
        "20",
        "--window",
        "1",
        "--timeout-ms",
        "300",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 1, "stdout: {out} stderr: {err}");
    assert!(json_u64(&out, "missing_content_length") >= 1, "{out}");
    assert_eq!(json_u64(&out, "ok"), 0, "{out}");
}

#[test]
fn tls_register_load_over_a_self_signed_certificate() {
    let (cfg, ca) = tls_server();
    let r = Responder::start(Answer::Ok, Some(cfg));
    let (code, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tls",
        "--tls-ca",
        ca.as_str(),
        "--connections",
        "2",
        "--count",
        "2000",
        "--users",
        "200",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert_eq!(json_u64(&out, "ok"), 2000, "{out}");
    assert_eq!(json_u64(&out, "tls_handshakes"), 2, "{out}");
    assert_eq!(json_u64(&out, "retransmissions"), 0);
    assert_eq!(r.seen.requests.load(Ordering::Relaxed), 2000);
    for req in r.seen.firsts.lock().unwrap().iter() {
        assert!(
            req.contains("Via: SIP/2.0/TLS 127.0.0.1:") && req.contains(";transport=tls>"),
            "{req}"
        );
    }
}

#[test]
fn tls_refuses_a_certificate_it_does_not_trust() {
    let (cfg, _ca) = tls_server();
    let (_, other_ca) = tls_server();
    let r = Responder::start(Answer::Ok, Some(cfg));
    let (code, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tls",
        "--tls-ca",
        other_ca.as_str(),
        "--connections",
        "1",
        "--count",
        "5",
        "--timeout-ms",
        "300",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 1, "stdout: {out} stderr: {err}");
    assert!(json_u64(&out, "tls_errors") >= 1, "{out}");
    assert_eq!(json_u64(&out, "tls_handshakes"), 0, "{out}");
}

#[test]
fn a_reconnect_resumes_the_tls_session() {
    let (cfg, ca) = tls_server();
    // Two reads' worth of answers per connection, then the server closes it.
    let r = Responder::start(Answer::CloseAfter(2), Some(cfg));
    let (_, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tls",
        "--tls-ca",
        ca.as_str(),
        "--connections",
        "1",
        "--window",
        "1",
        "--count",
        "12",
        "--users",
        "12",
        "--timeout-ms",
        "200",
        "--json",
        "--quiet",
    ]);
    let handshakes = json_u64(&out, "tls_handshakes");
    assert!(json_u64(&out, "reconnects") >= 2, "{out} {err}");
    assert!(handshakes >= 3, "{out}");
    assert_eq!(
        json_u64(&out, "tls_resumed"),
        handshakes - 1,
        "every handshake after the first resumes: {out}"
    );
    assert_eq!(
        r.seen.resumed.load(Ordering::Relaxed),
        handshakes - 1,
        "the server agrees"
    );
    let (_, out, _) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tls",
        "--tls-ca",
        ca.as_str(),
        "--tls-no-resume",
        "--connections",
        "1",
        "--window",
        "1",
        "--count",
        "8",
        "--users",
        "8",
        "--timeout-ms",
        "200",
        "--json",
        "--quiet",
    ]);
    assert!(json_u64(&out, "tls_handshakes") >= 2, "{out}");
    assert_eq!(json_u64(&out, "tls_resumed"), 0, "{out}");
}

#[test]
fn hold_keeps_tls_connections_up_and_says_how_many() {
    let (cfg, ca) = tls_server();
    let r = Responder::start(Answer::Ok, Some(cfg));
    let (code, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tls",
        "--tls-ca",
        ca.as_str(),
        "--hold-connections",
        "20",
        "--hold-s",
        "1",
        "--source-addrs",
        "2",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert_eq!(json_u64(&out, "requested"), 20, "{out}");
    assert_eq!(json_u64(&out, "up_at_end"), 20, "{out}");
    assert_eq!(json_u64(&out, "tls_handshakes"), 20, "{out}");
    assert_eq!(r.seen.requests.load(Ordering::Relaxed), 0, "held idle");
    let peers: Vec<String> = r
        .seen
        .peers
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(peers, ["127.0.0.1", "127.0.0.2"], "--source-addrs 2");
}

#[test]
fn handshake_flood_runs_beside_the_load_and_is_reported() {
    let (cfg, ca) = tls_server();
    let r = Responder::start(Answer::Ok, Some(cfg));
    let (code, out, err) = loadgen(&[
        "--target",
        &r.target(),
        "--transport",
        "tls",
        "--tls-ca",
        ca.as_str(),
        "--connections",
        "2",
        "--rate",
        "500",
        "--duration",
        "1",
        "--users",
        "100",
        "--handshake-flood",
        "50",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert!(json_u64(&out, "ok") >= 400, "{out}");
    let opened = json_u64(&out, "opened");
    assert!((30..=60).contains(&opened), "about 50 in 1 s: {out}");
    // Every flood connection reached the responder, and none finished a handshake.
    assert!(r.seen.connections.load(Ordering::Relaxed) >= 2 + opened);
    assert_eq!(json_u64(&out, "tls_handshakes"), 2, "{out}");
}

#[test]
fn transport_flags_name_themselves() {
    let cases: &[(&[&str], &str)] = &[
        (&["--count", "1", "--transport", "sctp"], "--transport"),
        (&["--count", "1", "--connections", "2"], "--connections"),
        (
            &["--count", "1", "--transport", "tcp", "--connections", "0"],
            "--connections",
        ),
        (&["--count", "1", "--transport", "tls"], "--tls-ca"),
        (
            &[
                "--count",
                "1",
                "--transport",
                "tls",
                "--tls-ca",
                "/nonexistent.pem",
            ],
            "--tls-ca",
        ),
        (&["--count", "1", "--tls-ca", "x.pem"], "--tls-ca"),
        (
            &[
                "--count",
                "1",
                "--transport",
                "tcp",
                "--handshake-flood",
                "10",
            ],
            "--handshake-flood",
        ),
        (
            &["--hold-connections", "10", "--hold-s", "1"],
            "--hold-connections",
        ),
        (
            &["--transport", "tcp", "--hold-connections", "10"],
            "--hold-s",
        ),
        (
            &[
                "--transport",
                "tcp",
                "--hold-connections",
                "10",
                "--hold-s",
                "0",
            ],
            "--hold-s",
        ),
        (
            &["--count", "1", "--transport", "tcp", "--source-addrs", "2"],
            "--source-addrs",
        ),
        (
            &[
                "--transport",
                "tcp",
                "--hold-connections",
                "10",
                "--hold-s",
                "1",
                "--source-addrs",
                "65",
            ],
            "--source-addrs",
        ),
    ];
    for (args, flag) in cases {
        let (code, _, err) = loadgen(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: {flag}:")) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
