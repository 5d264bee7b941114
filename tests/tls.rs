//! SIP over TLS (RFC 3261 §26.2.1): the real binary with `--listen tls:`, a rustls
//! client on loopback, certificates made by the test (a CA, a server certificate it
//! signed, a client one for mutual TLS). A REGISTER over TLS is answered on its
//! connection (also when the other core owns the AOR) and its binding says `tls`; a
//! reconnect resumes the session; mutual TLS refuses a client without a certificate;
//! the handshake cap and timeout hold; SIGHUP swaps the certificate; a bad file stops
//! start-up naming its flag.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};

use crate::util::{
    DataDir, Response, Server, free_tcp_addr, metric_at_least, response_len, run_to_exit,
    start_stream, unique,
};

/// A CA, a server certificate for 127.0.0.1 it signed and a client certificate it
/// signed, as PEM files in a directory removed on drop.
struct Pki {
    dir: DataDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let dir = DataDir::new();
        std::fs::create_dir_all(&dir.0).expect("cert dir");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sipreg test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .expect("CA");
        std::fs::write(dir.0.join("ca.pem"), ca.pem()).expect("write CA");
        let ca_der = ca.der().clone();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["client.example.com".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .expect("client cert");
        let mut pki = Self {
            dir,
            ca,
            ca_der,
            server_der: CertificateDer::from(Vec::new()),
            client_chain: vec![client.der().clone()],
            client_key: PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
        };
        pki.server_der = pki.issue_server_cert();
        pki
    }

    /// Sign a new server certificate (new key) and write it to cert.pem/key.pem.
    fn issue_server_cert(&self) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .expect("server cert");
        std::fs::write(self.path("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(self.path("key.pem"), key.serialize_pem()).expect("write key");
        cert.der().clone()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A client trusting the CA; with `client_cert`, presenting the client certificate.
    fn client(&self, client_cert: bool) -> Arc<ClientConfig> {
        self.client_presenting(client_cert.then_some(self))
    }

    /// A client trusting the CA, presenting `from`'s client certificate if any.
    fn client_presenting(&self, from: Option<&Self>) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("root");
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = if let Some(from) = from {
            builder
                .with_client_auth_cert(from.client_chain.clone(), from.client_key.clone_key())
                .expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }

    /// A client that offers only TLS 1.2.
    fn client_tls12(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("root");
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// Start `sipreg` with a UDP and a TLS listener on free ports, the PKI's certificate
/// and `flags`; returns the server and its TLS address.
fn start(pki: &Pki, flags: &[&str]) -> (Server, SocketAddr) {
    let (cert, key) = (pki.arg("cert.pem"), pki.arg("key.pem"));
    let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    args.extend_from_slice(flags);
    start_stream("tls", &args)
}

/// One TLS connection to the server.
struct Tls {
    stream: StreamOwned<ClientConnection, TcpStream>,
    pending: Vec<u8>,
}

impl Tls {
    /// Connect and finish the handshake (`Err`: it failed, with rustls' reason).
    fn open(server: SocketAddr, config: &Arc<ClientConfig>) -> Result<Self, String> {
        let sock = TcpStream::connect(server).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let name = ServerName::IpAddress(server.ip().into());
        let conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            stream,
            pending: Vec::new(),
        })
    }

    fn local(&self) -> SocketAddr {
        self.stream.sock.local_addr().expect("local addr")
    }

    fn resumed(&self) -> bool {
        self.stream.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    fn peer_cert(&self) -> CertificateDer<'static> {
        self.stream.conn.peer_certificates().expect("a certificate")[0].clone()
    }

    /// Send `text` and read the response (`Err`: the connection failed or closed).
    fn request(&mut self, text: &str) -> Result<Response, String> {
        self.stream
            .write_all(text.as_bytes())
            .and_then(|()| self.stream.flush())
            .map_err(|e| e.to_string())?;
        self.response()
    }

    fn response(&mut self) -> Result<Response, String> {
        loop {
            if let Some(n) = response_len(&self.pending) {
                let bytes: Vec<u8> = self.pending.drain(..n).collect();
                return Ok(Response::parse(&String::from_utf8_lossy(&bytes)));
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn aor(user: &str) -> String {
    format!("sip:{user}{}@example.com", unique())
}

/// A REGISTER sent over TLS from `local` (Via transport TLS, RFC 3261 §18.1.1).
fn register(local: SocketAddr, aor: &str, call_id: &str, cseq: u32) -> String {
    let n = unique();
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK-tls{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <{aor}>\r\n\
         From: <{aor}>;tag=f{n}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sips:dev@{local};transport=tls>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_register_over_tls_is_answered_on_its_connection_and_its_binding_says_tls() {
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let (_server, addr) = start(&pki, &["--admin", &admin]);
    let mut c = Tls::open(addr, &pki.client(false)).expect("handshake");
    let name = format!("tls{}", unique());
    let a = format!("sip:{name}@example.com");
    let r = c
        .request(&register(c.local(), &a, "tls-1", 1))
        .expect("200");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.header("To").unwrap_or_default().contains(&a), "{}", r.raw);
    // Pipelined in one record: both answered, in order.
    let two = format!(
        "{}{}",
        register(c.local(), &a, "tls-1", 2),
        register(c.local(), &a, "tls-1", 3)
    );
    c.stream.write_all(two.as_bytes()).expect("write");
    for cseq in [2, 3] {
        let r = c.response().expect("answer");
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(
            r.header("CSeq")
                .unwrap_or_default()
                .starts_with(&cseq.to_string()),
            "{}",
            r.raw
        );
    }
    let url = format!("http://{admin}/v1/aors/{name}@example.com");
    let body = ureq::get(&url)
        .timeout(Duration::from_secs(5))
        .call()
        .expect("GET the AOR")
        .into_string()
        .expect("body");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let b = &json["bindings"][0];
    assert_eq!(b["transport"], "tls", "{b}");
    assert_eq!(b["source"], c.local().to_string(), "{b}");
    assert_eq!(b["socket"], 0, "the first TLS listen address: {b}");
    assert_eq!(
        metric_at_least(&admin, "sipreg_tls_handshakes_total ", 1),
        1,
        "one handshake"
    );
}

#[test]
fn a_reconnect_resumes_the_session_over_tls_1_3_and_1_2() {
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let (_server, addr) = start(&pki, &["--admin", &admin, "--cores", "1"]);
    for config in [pki.client(false), pki.client_tls12()] {
        let mut first = Tls::open(addr, &config).expect("handshake");
        assert!(!first.resumed());
        // TLS 1.3 tickets come after the handshake: a request makes sure they are read.
        let r = first
            .request(&register(first.local(), &aor("res"), "res-1", 1))
            .expect("200");
        assert_eq!(r.status, 200);
        drop(first);
        let mut again = Tls::open(addr, &config).expect("handshake");
        assert!(again.resumed(), "the second connection resumes");
        let r = again
            .request(&register(again.local(), &aor("res"), "res-2", 1))
            .expect("200");
        assert_eq!(r.status, 200);
    }
    assert!(metric_at_least(&admin, "sipreg_tls_handshakes_resumed_total ", 2) >= 2);
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let ca = pki.arg("ca.pem");
    let (_server, addr) = start(&pki, &["--admin", &admin, "--tls-client-ca", &ca]);
    // Without a certificate: TLS 1.3 clients learn it on their first read.
    let refused = Tls::open(addr, &pki.client(false))
        .and_then(|mut c| c.request(&register(c.local(), &aor("anon"), "anon-1", 1)));
    assert!(refused.is_err(), "no certificate, no answer: {refused:?}");
    let no_cert = "sipreg_tls_handshake_failures_total{reason=\"no_cert\"}";
    assert_eq!(metric_at_least(&admin, no_cert, 1), 1);
    // With a certificate another CA signed: rejected.
    let stranger = Pki::new();
    let rejected = Tls::open(addr, &pki.client_presenting(Some(&stranger)))
        .and_then(|mut c| c.request(&register(c.local(), &aor("odd"), "odd-1", 1)));
    assert!(rejected.is_err(), "an unknown CA, no answer: {rejected:?}");
    let cert_rejected = "sipreg_tls_handshake_failures_total{reason=\"cert_rejected\"}";
    assert_eq!(metric_at_least(&admin, cert_rejected, 1), 1);
    // With one the CA signed: served.
    let mut c = Tls::open(addr, &pki.client(true)).expect("handshake");
    let r = c
        .request(&register(c.local(), &aor("mtls"), "mtls-1", 1))
        .expect("200");
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[test]
fn a_register_owned_by_the_other_core_is_answered_on_the_tls_connection() {
    let pki = Pki::new();
    let (mut server, addr) = start(&pki, &["--cores", "2"]);
    let mut c = Tls::open(addr, &pki.client(false)).expect("handshake");
    // Sixteen AORs: some are owned by the core that did not accept the connection
    // (all on one core: 2^-15), so their 200 crosses the mesh back.
    for i in 0..16 {
        let a = aor(&format!("cross{i}"));
        let r = c
            .request(&register(c.local(), &a, &format!("cross-{i}"), 1))
            .expect("answer");
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(r.header("To").unwrap_or_default().contains(&a), "{}", r.raw);
    }
    assert!(server.terminate(Duration::from_secs(10)).is_some());
    let log = server.log();
    let forwarded: u64 = log
        .lines()
        .find_map(|l| {
            let rest = l.split("replies sent, ").nth(1)?;
            rest.split(" forwarded").next()?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no stop line: {log}"));
    assert!(forwarded > 0, "some requests crossed the mesh: {log}");
}

/// Whether the server ends `sock` (EOF or reset) within `timeout`.
fn closed_within(sock: &mut TcpStream, timeout: Duration) -> bool {
    sock.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn the_handshake_cap_and_timeout_hold() {
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let (_server, addr) = start(
        &pki,
        &[
            "--admin",
            &admin,
            "--cores",
            "1",
            "--tls-handshakes-max",
            "2",
            "--tls-handshake-timeout-ms",
            "600",
        ],
    );
    // Two connections that never say hello hold both handshake places.
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let handshaking = "sipreg_tls_handshakes_in_progress ";
    assert_eq!(metric_at_least(&admin, handshaking, 2), 2);
    // A third is accepted and closed at once.
    let mut third = TcpStream::connect(addr).expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_millis(400)),
        "over --tls-handshakes-max: closed at once"
    );
    assert_eq!(
        metric_at_least(&admin, "sipreg_tls_handshakes_refused_total ", 1),
        1
    );
    // The silent ones end at the handshake timeout, not before.
    let started = Instant::now();
    for sock in &mut silent {
        assert!(
            closed_within(sock, Duration::from_secs(3)),
            "closed by the handshake timeout"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "not at once: {:?}",
        started.elapsed()
    );
    let timeout = "sipreg_tls_handshake_failures_total{reason=\"timeout\"}";
    assert_eq!(metric_at_least(&admin, timeout, 2), 2);
    // The places are free again: a real client is served.
    let mut c = Tls::open(addr, &pki.client(false)).expect("handshake");
    let r = c
        .request(&register(c.local(), &aor("after"), "after-1", 1))
        .expect("200");
    assert_eq!(r.status, 200);
    // Not TLS at all: a bad client hello, counted.
    let mut junk = TcpStream::connect(addr).expect("connect");
    junk.write_all(b"REGISTER sip:example.com SIP/2.0\r\n\r\n")
        .expect("write");
    assert!(closed_within(&mut junk, Duration::from_secs(2)));
    let bad = "sipreg_tls_handshake_failures_total{reason=\"bad_client_hello\"}";
    assert_eq!(metric_at_least(&admin, bad, 1), 1);
}

#[test]
fn sighup_swaps_the_certificate_for_new_handshakes() {
    let pki = Pki::new();
    let (server, addr) = start(&pki, &[]);
    let config = pki.client(false);
    let before = Tls::open(addr, &config).expect("handshake");
    assert_eq!(before.peer_cert(), pki.server_der);
    let renewed = pki.issue_server_cert();
    assert_ne!(renewed, pki.server_der);
    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    // A fresh client config each time: a resumed session would show no certificate.
    while Tls::open(addr, &pki.client(false))
        .expect("handshake")
        .peer_cert()
        != renewed
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken file keeps the current pair, and the log says why.
    std::fs::write(pki.path("cert.pem"), "not a certificate\n").expect("write");
    hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("TLS reload failed") {
        assert!(Instant::now() < deadline, "no log line: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    assert!(log.contains("--tls-cert"), "{log}");
    let after = Tls::open(addr, &pki.client(false)).expect("handshake");
    assert_eq!(after.peer_cert(), renewed);
}

#[test]
fn a_bad_certificate_or_key_stops_start_up_naming_its_flag() {
    let pki = Pki::new();
    let tls = format!("tls:{}", free_tcp_addr());
    let (cert, key) = (pki.arg("cert.pem"), pki.arg("key.pem"));
    let missing = pki.arg("missing.pem");
    std::fs::write(pki.path("junk.pem"), "junk\n").expect("write");
    let junk = pki.arg("junk.pem");
    // Another key than the certificate's.
    std::fs::write(
        pki.path("other-key.pem"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .expect("write");
    let other = pki.arg("other-key.pem");
    for (args, flag) in [
        (vec!["--tls-key", key.as_str()], "--tls-cert"),
        (
            vec!["--tls-cert", &missing, "--tls-key", &key],
            "--tls-cert",
        ),
        (vec!["--tls-cert", &junk, "--tls-key", &key], "--tls-cert"),
        (vec!["--tls-cert", &cert, "--tls-key", &junk], "--tls-key"),
        (vec!["--tls-cert", &cert, "--tls-key", &other], "--tls-key"),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-client-ca",
                &missing,
            ],
            "--tls-client-ca",
        ),
    ] {
        let mut all = vec!["--listen", tls.as_str()];
        all.extend(args.iter().copied());
        let (status, log) = run_to_exit(&all, Duration::from_secs(10));
        assert!(!status.success(), "{all:?}");
        assert!(log.contains(flag), "{all:?} should name {flag}: {log}");
    }
}

#[test]
fn a_flood_of_half_open_handshakes_does_not_starve_an_established_connection() {
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let (_server, addr) = start(
        &pki,
        &[
            "--admin",
            &admin,
            "--cores",
            "1",
            "--tls-handshakes-max",
            "32",
        ],
    );
    let mut c = Tls::open(addr, &pki.client(false)).expect("handshake");
    let a = aor("busy");
    assert_eq!(
        c.request(&register(c.local(), &a, "busy-1", 1))
            .expect("200")
            .status,
        200
    );
    // One real ClientHello, sent by every flood connection, which then never answers.
    let mut hello = Vec::new();
    ClientConnection::new(pki.client(false), ServerName::IpAddress(addr.ip().into()))
        .expect("client")
        .write_tls(&mut hello)
        .expect("ClientHello");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && held.len() < 600 {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.write_all(&hello);
                    held.push(s);
                }
            }
            held.len()
        })
    };
    let mut slowest = Duration::ZERO;
    for cseq in 2..40 {
        let sent = Instant::now();
        let r = c
            .request(&register(c.local(), &a, "busy-1", cseq))
            .expect("answered during the flood");
        assert_eq!(r.status, 200, "{}", r.raw);
        slowest = slowest.max(sent.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flood.join().expect("flood thread");
    assert!(opened >= 100, "the flood opened {opened} connections");
    assert!(
        slowest < Duration::from_millis(500),
        "a REGISTER on the established connection waited {slowest:?}"
    );
    // The cap held the handshakes in progress; the rest were refused at once.
    assert!(metric_at_least(&admin, "sipreg_tls_handshakes_refused_total ", 1) >= 1);
    assert!(metric_at_least(&admin, "sipreg_tls_handshakes_in_progress ", 32) <= 32);
}

/// baresip (a real UA, `baresip-core` in Debian) registers over TLS: the binding says
/// `tls` while it runs, and its de-registration at exit goes over TLS too. Skipped, with
/// a note, where baresip is not installed.
#[test]
fn baresip_registers_over_tls() {
    if std::process::Command::new("baresip")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("baresip_registers_over_tls: skipped, baresip is not installed");
        return;
    }
    // Where Debian's baresip-core puts its modules.
    let modules = std::path::Path::new("/usr/lib/baresip/modules");
    if !modules.join("account.so").exists() {
        eprintln!("baresip_registers_over_tls: skipped, no baresip modules in {modules:?}");
        return;
    }
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let (_server, addr) = start(&pki, &["--admin", &admin]);
    let ua = pki.path("baresip");
    std::fs::create_dir_all(&ua).expect("baresip dir");
    std::fs::write(
        ua.join("config"),
        format!(
            "module_path {}\nmodule account.so\nsip_listen 127.0.0.1:0\nsip_cafile {}\n",
            modules.display(),
            pki.arg("ca.pem")
        ),
    )
    .expect("config");
    let user = format!("ua{}", unique());
    std::fs::write(
        ua.join("accounts"),
        format!("<sip:{user}@example.com>;outbound=\"sip:{addr};transport=tls\";regint=60\n"),
    )
    .expect("accounts");
    let child = std::process::Command::new("baresip")
        .args(["-f", ua.to_str().expect("path"), "-t", "4"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn baresip");
    let url = format!("http://{admin}/v1/aors/{user}@example.com");
    let binding = || -> Option<serde_json::Value> {
        let body = ureq::get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        let aor: serde_json::Value = serde_json::from_str(&body).ok()?;
        aor["bindings"].get(0).cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        seen = binding();
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("baresip exits");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let b = seen.unwrap_or_else(|| panic!("baresip never registered:\n{text}"));
    assert_eq!(b["transport"], "tls", "{b}\n{text}");
    assert!(text.contains("/TLS/") && text.contains("200 OK"), "{text}");
    assert!(binding().is_none(), "de-registered at exit:\n{text}");
}

#[test]
fn pipelined_requests_larger_than_the_read_buffer_in_one_record_are_all_answered() {
    let pki = Pki::new();
    let (_server, addr) = start(&pki, &["--tcp-read-buffer-bytes", "1024"]);
    let mut c = Tls::open(addr, &pki.client(false)).expect("handshake");
    let a = aor("pipe");
    // About 4 KiB of requests in one write (one TLS record): the session decrypts more
    // than the 1 KiB buffer holds, and the socket will not say so again.
    let all: String = (1..=14)
        .map(|cseq| register(c.local(), &a, "pipe-1", cseq))
        .collect();
    assert!(all.len() > 3 * 1024, "{}", all.len());
    c.stream.write_all(all.as_bytes()).expect("write");
    for cseq in 1..=14 {
        let r = c.response().expect("answer");
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(
            r.header("CSeq")
                .unwrap_or_default()
                .starts_with(&format!("{cseq} ")),
            "{}",
            r.raw
        );
    }
}

/// RFC 5626 over TLS, on two cores: an Outbound registration's binding goes when its
/// TLS connection closes (whichever core owns the AOR), as over TCP.
#[test]
fn a_closed_tls_connection_removes_its_outbound_bindings() {
    let pki = Pki::new();
    let admin = free_tcp_addr();
    let (_server, addr) = start(&pki, &["--cores", "2", "--admin", &admin]);
    let mut ua = Tls::open(addr, &pki.client(false)).expect("handshake");
    let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0000000000bb>\"";
    let names: Vec<String> = (0..6).map(|i| format!("tlsob{}x{i}", unique())).collect();
    for name in &names {
        let plain = register(ua.local(), &format!("sip:{name}@example.com"), name, 1);
        let contact = format!("Contact: <sips:dev@{};transport=tls>", ua.local());
        let text = plain.replace(
            &format!("{contact}\r\n"),
            &format!("{contact};reg-id=1;{instance}\r\nSupported: outbound\r\n"),
        );
        let r = ua.request(&text).expect("answer");
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.header("Require"), Some("outbound"), "{}", r.raw);
    }
    let get = |name: &str| -> serde_json::Value {
        let url = format!("http://{admin}/v1/aors/{name}@example.com");
        match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
            Ok(r) => serde_json::from_str(&r.into_string().expect("body")).expect("JSON"),
            Err(ureq::Error::Status(404, _)) => serde_json::Value::Null,
            Err(e) => panic!("GET {url}: {e}"),
        }
    };
    let b = get(&names[0]);
    assert_eq!(b["bindings"][0]["outbound"], true, "{b}");
    assert_eq!(b["bindings"][0]["transport"], "tls", "{b}");
    drop(ua);
    assert_eq!(
        metric_at_least(&admin, "sipreg_flow_removals_total ", names.len() as u64),
        names.len() as u64
    );
    for name in &names {
        assert!(get(name).is_null(), "{name} still listed: {}", get(name));
    }
}

#[test]
fn garbage_inside_an_established_session_closes_only_that_connection() {
    let pki = Pki::new();
    let (_server, addr) = start(&pki, &["--cores", "1"]);
    let config = pki.client(false);
    let mut bad = Tls::open(addr, &config).expect("handshake");
    let good_name = aor("good");
    // A record header announcing application data, then bytes that do not decrypt.
    let mut junk = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    junk.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    bad.stream.sock.write_all(&junk).expect("write");
    assert!(
        closed_within(&mut bad.stream.sock, Duration::from_secs(2)),
        "a record that fails to decrypt ends its connection"
    );
    // Every byte value as a first record, on fresh connections: each is closed, none
    // takes the core down.
    for first in [0u8, 0x14, 0x15, 0x16, 0x17, 0x18, 0x80, 0xff] {
        let mut s = TcpStream::connect(addr).expect("connect");
        let _ = s.write_all(&[first, 0x03, 0x01, 0x40, 0x00, 1, 2, 3]);
        let _ = s.shutdown(std::net::Shutdown::Write);
        assert!(closed_within(&mut s, Duration::from_secs(2)), "{first:#x}");
    }
    let mut good = Tls::open(addr, &config).expect("handshake");
    let r = good
        .request(&register(good.local(), &good_name, "good-1", 1))
        .expect("200");
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[test]
fn sighup_reloads_the_client_cas() {
    let pki = Pki::new();
    let other = Pki::new();
    let admin = free_tcp_addr();
    let cas = pki.path("client-cas.pem");
    std::fs::copy(pki.path("ca.pem"), &cas).expect("copy");
    let cas_arg = cas.display().to_string();
    let (server, addr) = start(&pki, &["--admin", &admin, "--tls-client-ca", &cas_arg]);
    let served = |config: &Arc<ClientConfig>| {
        Tls::open(addr, config)
            .and_then(|mut c| c.request(&register(c.local(), &aor("ca"), "ca-1", 1)))
            .is_ok_and(|r| r.status == 200)
    };
    let ours = pki.client(true);
    let theirs = pki.client_presenting(Some(&other));
    assert!(served(&ours) && !served(&theirs));
    // The other CA replaces ours: its clients get in, ours no longer do.
    std::fs::copy(other.path("ca.pem"), &cas).expect("copy");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !served(&theirs) {
        assert!(Instant::now() < deadline, "the new CAs never applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Also the client that had a session: it cannot resume past the change.
    assert!(
        !served(&ours),
        "a session from before the change is not resumed"
    );
    assert!(
        !served(&pki.client(true)),
        "the old CA's clients are refused"
    );
    let rejected = "sipreg_tls_handshake_failures_total{reason=\"cert_rejected\"}";
    assert!(metric_at_least(&admin, rejected, 2) >= 2);
}
