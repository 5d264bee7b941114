//! SIP over TCP (RFC 3261 §18): the real binary with `--listen tcp:`, real connections
//! on loopback. A reply comes back on the connection its request came in on (§18.2.2),
//! also when another core owns the AOR; the stream is framed by Content-Length
//! (§18.3) whatever the segmentation; what cannot be framed is refused and the
//! connection closed; and the limits (connections per core, message size, slow
//! senders) hold.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{
    Response, Server, free_tcp_addr, free_udp_addr, metric_at_least, response_len, start_stream,
    unique,
};

/// Start `sipreg` on a free UDP port and a free TCP port, with `flags`; returns the
/// server and its TCP address.
fn start(flags: &[&str]) -> (Server, SocketAddr) {
    start_stream("tcp", flags)
}

/// One connection to the server and what it has read and not yet parsed.
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Conn {
    fn open(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    fn local(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Read until `done(pending)` says how many bytes make the answer, or EOF or the
    /// timeout; returns those bytes (`None` on EOF/timeout first).
    fn read_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[u8]) -> Option<usize>,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = done(&self.pending) {
                return Some(self.pending.drain(..n).collect());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next response on the connection (framed by its Content-Length).
    fn response(&mut self) -> Response {
        let bytes = self
            .read_until(Duration::from_secs(3), response_len)
            .unwrap_or_else(|| panic!("no response; read so far: {:?}", self.pending_text()));
        Response::parse(&String::from_utf8_lossy(&bytes))
    }

    fn request(&mut self, text: &str) -> Response {
        self.send(text.as_bytes());
        self.response()
    }

    fn pending_text(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Whether the server closes the connection (EOF, or a reset) within `timeout`,
    /// with nothing more to read first.
    fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return self.pending.is_empty(),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(_) => return self.pending.is_empty(),
            }
        }
        false
    }
}

fn aor(name: &str) -> String {
    format!("sip:{name}-{}@example.com", unique())
}

/// A REGISTER over TCP from `conn` for `aor`, binding `contact`.
fn register(conn: &Conn, aor: &str, contact: &str, call_id: &str, cseq: u32) -> String {
    let n = unique();
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-tcp{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <{aor}>\r\n\
         From: <{aor}>;tag=f{n}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <{contact}>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n",
        local = conn.local(),
    )
}

fn tcp_contact(conn: &Conn, user: &str) -> String {
    format!("sip:{user}@{};transport=tcp", conn.local())
}

#[test]
fn register_is_answered_on_the_same_connection_and_invite_redirects_to_it() {
    let (_server, addr) = start(&[]);
    let mut c = Conn::open(addr);
    let a = aor("tcp-alice");
    let contact = tcp_contact(&c, "alice");
    let r = c.request(&register(&c, &a, &contact, "tcp-reg-1", 1));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.contacts().len(), 1, "{}", r.raw);
    assert!(
        r.contacts()[0].contains(";transport=tcp"),
        "the binding keeps the contact's transport: {}",
        r.raw
    );
    let via = r.header("Via").unwrap_or_default();
    assert!(via.starts_with("SIP/2.0/TCP"), "the Via is echoed: {via}");
    // A refresh on the same connection, then a redirect for the AOR.
    let r = c.request(&register(&c, &a, &contact, "tcp-reg-1", 2));
    assert_eq!(r.status, 200, "{}", r.raw);
    let n = unique();
    let user = a.trim_start_matches("sip:").split('@').next().unwrap_or("");
    let invite = format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-inv{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{user}@example.com>\r\n\
         From: <sip:caller@example.com>;tag=c{n}\r\n\
         Call-ID: inv-{n}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n",
        local = c.local()
    );
    let r = c.request(&invite);
    assert_eq!(r.status, 302, "{}", r.raw);
    assert!(
        r.contacts().iter().any(|ct| ct.contains(&contact)),
        "the 302 names the TCP contact: {}",
        r.raw
    );
}

#[test]
fn several_messages_in_one_segment_and_a_keepalive_each_get_their_answer() {
    let (_server, addr) = start(&[]);
    let mut c = Conn::open(addr);
    let (a, b) = (aor("seg-a"), aor("seg-b"));
    let mut segment = register(&c, &a, &tcp_contact(&c, "a"), "seg-a", 1);
    segment.push_str("\r\n\r\n");
    segment.push_str(&register(&c, &b, &tcp_contact(&c, "b"), "seg-b", 1));
    c.send(segment.as_bytes());
    // The ping's CRLF pong (RFC 5626 §4.4.1) is read before, between or after the two
    // 200s; each 200 is for its own AOR.
    let item = |p: &[u8]| {
        if p.starts_with(b"\r\n") {
            Some(2)
        } else {
            response_len(p)
        }
    };
    let mut seen = Vec::new();
    let mut pongs = 0;
    while let Some(bytes) = c.read_until(Duration::from_millis(500), item) {
        if bytes == b"\r\n" {
            pongs += 1;
            continue;
        }
        let r = Response::parse(&String::from_utf8_lossy(&bytes));
        assert_eq!(r.status, 200, "{}", r.raw);
        seen.push(r.header("To").unwrap_or_default().to_string());
    }
    assert_eq!(pongs, 1, "one pong for one ping");
    assert_eq!(seen.len(), 2, "two answers: {seen:?}");
    seen.sort();
    let mut want = vec![a, b];
    want.sort();
    for (to, aor) in seen.iter().zip(&want) {
        assert!(to.contains(aor.as_str()), "{to} answers {aor}");
    }
}

#[test]
fn a_keepalive_ping_gets_one_crlf_and_the_connection_stays() {
    let (_server, addr) = start(&[]);
    let mut c = Conn::open(addr);
    c.send(b"\r\n\r\n");
    let pong = c.read_until(Duration::from_secs(2), |p| (p.len() >= 2).then_some(2));
    assert_eq!(pong.as_deref(), Some(&b"\r\n"[..]));
    // A lone CRLF (a pong, RFC 5626 §4.4.1) gets nothing; the connection still serves.
    c.send(b"\r\n");
    let a = aor("ping");
    let r = c.request(&register(&c, &a, &tcp_contact(&c, "p"), "ping-1", 1));
    assert_eq!(r.status, 200, "nothing before the 200: {}", r.raw);
}

#[test]
fn a_message_written_one_byte_at_a_time_is_answered_once() {
    let (_server, addr) = start(&[]);
    let mut c = Conn::open(addr);
    let a = aor("bytewise");
    let text = register(&c, &a, &tcp_contact(&c, "b"), "bytewise-1", 1);
    for byte in text.as_bytes() {
        c.send(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_micros(200));
    }
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(
        c.read_until(Duration::from_millis(300), response_len)
            .is_none(),
        "exactly one answer: {:?}",
        c.pending_text()
    );
}

#[test]
fn a_message_without_content_length_is_refused_400_and_the_connection_closed() {
    let (_server, addr) = start(&[]);
    let mut c = Conn::open(addr);
    let a = aor("nolength");
    let text = register(&c, &a, &tcp_contact(&c, "n"), "nolength-1", 1)
        .replace("Content-Length: 0\r\n", "");
    let r = c.request(&text);
    assert_eq!(r.status, 400, "{}", r.raw);
    assert!(
        r.reason.contains("Content-Length"),
        "the reason names the fault: {}",
        r.reason
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "closed after the 400"
    );
}

#[test]
fn a_message_past_the_read_buffer_is_refused_513_and_the_connection_closed() {
    let (_server, addr) = start(&["--tcp-read-buffer-bytes", "2048"]);
    // Too large from the header section alone: the announced body does not fit.
    let mut c = Conn::open(addr);
    let text = register(&c, &aor("big"), &tcp_contact(&c, "b"), "big-1", 1)
        .replace("Content-Length: 0", "Content-Length: 4000");
    let r = c.request(&text);
    assert_eq!(r.status, 513, "{}", r.raw);
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "closed after the 513"
    );
    // Too large before the header section ends.
    let mut c = Conn::open(addr);
    let text = register(&c, &aor("big"), &tcp_contact(&c, "b"), "big-2", 1).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nX-Pad: {}\r\n", "p".repeat(3000)),
    );
    let _ = c.stream.write_all(text.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 513, "{}", r.raw);
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "closed after the 513"
    );
    // The same message within the default buffer is fine.
    let (_server, addr) = start(&[]);
    let mut c = Conn::open(addr);
    let text = register(&c, &aor("big"), &tcp_contact(&c, "b"), "big-3", 1).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nX-Pad: {}\r\n", "p".repeat(3000)),
    );
    assert_eq!(c.request(&text).status, 200);
}

#[test]
fn past_the_connection_cap_a_connection_is_closed_at_once() {
    let admin = free_tcp_addr();
    let (mut server, addr) = start(&[
        "--cores",
        "1",
        "--tcp-connections-max",
        "2",
        "--admin",
        &admin,
    ]);
    let mut open: Vec<Conn> = (0..2).map(|_| Conn::open(addr)).collect();
    for (i, c) in open.iter_mut().enumerate() {
        let text = register(c, &aor("cap"), &tcp_contact(c, "c"), &format!("cap-{i}"), 1);
        assert_eq!(c.request(&text).status, 200, "under the cap");
    }
    let mut third = Conn::open(addr);
    assert!(
        third.closed_within(Duration::from_secs(2)),
        "the third connection is closed by the server"
    );
    let refused = "sipreg_tcp_limits_total{limit=\"connections_max\"}";
    assert_eq!(metric_at_least(&admin, refused, 1), 1, "counted once");
    assert_eq!(metric_at_least(&admin, "sipreg_tcp_connections ", 2), 2);
    // One closes: a new one is served again.
    let gone = open.pop().expect("two open");
    gone.stream.shutdown(Shutdown::Both).expect("shutdown");
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(3);
    let served = loop {
        let mut c = Conn::open(addr);
        let text = register(&c, &aor("cap"), &tcp_contact(&c, "c"), "cap-again", 1);
        c.send(text.as_bytes());
        if let Some(bytes) = c.read_until(Duration::from_millis(500), response_len) {
            break Response::parse(&String::from_utf8_lossy(&bytes)).status == 200;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(served, "a slot freed by a close is used again");
    server.terminate(Duration::from_secs(10));
    let log = server.log();
    assert!(
        log.contains(&format!("tcp:{addr}")),
        "the ready line names it: {log}"
    );
}

#[test]
fn a_message_begun_and_not_finished_within_the_header_timeout_closes_the_connection() {
    let admin = free_tcp_addr();
    let (_server, addr) = start(&["--tcp-header-timeout-ms", "300", "--admin", &admin]);
    let mut slow = Conn::open(addr);
    let text = register(&slow, &aor("slow"), &tcp_contact(&slow, "s"), "slow-1", 1);
    let started = Instant::now();
    slow.send(&text.as_bytes()[..40]);
    assert!(
        slow.closed_within(Duration::from_secs(3)),
        "a partial message is not kept forever"
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "not before the header timeout: {after:?}"
    );
    let timeouts = "sipreg_tcp_limits_total{limit=\"header_timeout\"}";
    assert_eq!(metric_at_least(&admin, timeouts, 1), 1, "counted");
    // A connection with nothing pending is not subject to it.
    let mut idle = Conn::open(addr);
    let text = register(&idle, &aor("idle"), &tcp_contact(&idle, "i"), "idle-1", 1);
    assert_eq!(idle.request(&text).status, 200);
    assert!(
        !idle.closed_within(Duration::from_millis(1200)),
        "an idle connection without a partial message stays open"
    );
    let text = register(&idle, &aor("idle"), &tcp_contact(&idle, "i"), "idle-2", 1);
    assert_eq!(idle.request(&text).status, 200);
}

#[test]
fn a_register_owned_by_the_other_core_is_answered_on_the_connection() {
    let (mut server, addr) = start(&["--cores", "2"]);
    let mut c = Conn::open(addr);
    // Sixteen AORs: with two cores some are owned by the core that did not accept the
    // connection (all on one core: 2^-15), so their 200 crosses the mesh back.
    let aors: Vec<String> = (0..16).map(|i| aor(&format!("cross{i}"))).collect();
    for (i, a) in aors.iter().enumerate() {
        let text = register(&c, a, &tcp_contact(&c, "x"), &format!("cross-{i}"), 1);
        let r = c.request(&text);
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(
            r.header("To").unwrap_or_default().contains(a.as_str()),
            "{}",
            r.raw
        );
    }
    // Pipelined: all sixteen again in one write; sixteen answers on the connection.
    let all: String = aors
        .iter()
        .enumerate()
        .map(|(i, a)| register(&c, a, &tcp_contact(&c, "x"), &format!("cross-{i}"), 2))
        .collect();
    c.send(all.as_bytes());
    for _ in 0..aors.len() {
        assert_eq!(c.response().status, 200);
    }
    // Pipelined and then half-closed (our FIN right after the requests): every answer
    // still arrives, those crossing the mesh included, and then the server's FIN.
    let mut c = Conn::open(addr);
    let all: String = aors
        .iter()
        .enumerate()
        .map(|(i, a)| register(&c, a, &tcp_contact(&c, "y"), &format!("half-{i}"), 1))
        .collect();
    c.send(all.as_bytes());
    c.stream.shutdown(Shutdown::Write).expect("half-close");
    for _ in 0..aors.len() {
        assert_eq!(c.response().status, 200);
    }
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "then the server's FIN"
    );
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
    let messages = 3 * aors.len();
    assert!(
        log.contains(&format!(" {messages} TCP messages,")),
        "every request counted once: {log}"
    );
}

#[test]
fn a_binding_made_over_tcp_records_its_transport_and_outlives_its_connection() {
    let admin = free_tcp_addr();
    let (_server, addr) = start(&["--admin", &admin]);
    let mut c = Conn::open(addr);
    let name = format!("flow{}", unique());
    let a = format!("sip:{name}@example.com");
    let contact = tcp_contact(&c, "dev");
    assert_eq!(
        c.request(&register(&c, &a, &contact, "flow-1", 1)).status,
        200
    );
    let url = format!("http://{admin}/v1/aors/{name}@example.com");
    let binding = || -> serde_json::Value {
        let body = ureq::get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .expect("GET the AOR")
            .into_string()
            .expect("body");
        let aor: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        aor["bindings"][0].clone()
    };
    let b = binding();
    assert_eq!(b["transport"], "tcp", "{b}");
    assert_eq!(b["source"], c.local().to_string(), "{b}");
    assert_eq!(b["socket"], 0, "the first TCP listen address: {b}");
    let first = b["flow"].clone();
    assert!(
        first["slot"].is_u64() && first["generation"].is_u64(),
        "{b}"
    );
    // The connection closes; the binding stays until it expires (no RFC 5626 flow
    // removal): a fetch on a new connection still lists it.
    drop(c);
    let mut other = Conn::open(addr);
    let fetch =
        register(&other, &a, "unused", "flow-fetch", 1).replace("Contact: <unused>\r\n", "");
    let r = other.request(&fetch);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(
        r.contacts().iter().any(|ct| ct.contains(&contact)),
        "{}",
        r.raw
    );
    assert_eq!(binding()["flow"], first, "a fetch changes nothing");
    // A refresh over the new connection moves the binding to it.
    let refresh = register(&other, &a, &contact, "flow-1", 2);
    assert_eq!(other.request(&refresh).status, 200);
    let moved = binding()["flow"].clone();
    assert!(moved.is_object() && moved != first, "{moved} after {first}");
}

#[test]
fn rfc4475_torture_messages_over_tcp_each_end_in_an_answer_or_a_close() {
    // Each message on its own connection: many have no, a wrong or a huge
    // Content-Length (framing faults on a stream), some announce more body than they
    // carry (the header timeout ends those).
    let (_server, addr) = start(&["--tcp-header-timeout-ms", "400"]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rfc4475");
    let mut conns = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.expect("dir entry").path();
        if path.extension().and_then(|x| x.to_str()) == Some("dat") {
            let mut c = Conn::open(addr);
            c.send(&std::fs::read(&path).expect("read message"));
            conns.push((path, c));
        }
    }
    assert_eq!(conns.len(), 49);
    // Every answer is written and every partial message past the header timeout by
    // then; each connection is then read without a long wait.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut answered, mut closed) = (0, 0);
    for (path, c) in &mut conns {
        // Whatever the message, the connection does not hang: its answers, then the
        // server's close, or a connection that still serves.
        let mut got_answer = false;
        while let Some(bytes) = c.read_until(Duration::from_millis(100), response_len) {
            let r = Response::parse(&String::from_utf8_lossy(&bytes));
            assert!(r.status >= 200, "{}: {}", path.display(), r.raw);
            got_answer = true;
        }
        if c.closed_within(Duration::from_millis(10)) {
            closed += 1;
        } else {
            // Left open (answered, or a response dropped unanswered): it still serves.
            let a = aor("torture");
            let text = register(c, &a, &tcp_contact(c, "t"), "torture-next", 1);
            let r = c.request(&text);
            assert_eq!(r.status, 200, "{}: after it: {}", path.display(), r.raw);
        }
        if got_answer {
            answered += 1;
        }
    }
    assert!(
        answered > 20 && closed > 0,
        "{answered} answered, {closed} closed"
    );
    // The server is intact.
    let mut c = Conn::open(addr);
    let a = aor("after-torture");
    let r = c.request(&register(&c, &a, &tcp_contact(&c, "t"), "after-t", 1));
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[test]
fn a_connection_without_traffic_for_the_idle_timeout_is_closed_and_counted() {
    let admin = free_tcp_addr();
    let (_server, addr) = start(&["--tcp-idle-timeout-s", "1", "--admin", &admin]);
    let mut c = Conn::open(addr);
    let text = register(&c, &aor("idle"), &tcp_contact(&c, "i"), "idle-t", 1);
    assert_eq!(c.request(&text).status, 200);
    let quiet = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(4)),
        "closed after a second without traffic"
    );
    assert!(
        quiet.elapsed() >= Duration::from_millis(900),
        "not before: {:?}",
        quiet.elapsed()
    );
    let idle = "sipreg_tcp_limits_total{limit=\"idle_timeout\"}";
    assert_eq!(metric_at_least(&admin, idle, 1), 1);
}

/// CPU ticks (user + system) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn out_of_file_descriptors_the_core_pauses_accepts_instead_of_spinning_and_recovers() {
    // `prlimit` (util-linux) runs the server with 40 fds: about 17 are its own, so
    // connections run it out of fds, and the pending one keeps the listener readable.
    let udp = free_udp_addr("127.0.0.1:0");
    let tcp = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a TCP port");
    let log = std::env::temp_dir().join(format!("sipreg-emfile-{}.log", unique()));
    let child = std::process::Command::new("prlimit")
        .arg("--nofile=40:40")
        .arg(crate::util::SIPREG)
        .args([
            "--listen",
            &udp.to_string(),
            "--listen",
            &format!("tcp:{tcp}"),
        ])
        .args(["--cores", "1", "--no-persist", "--admin", "off"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("prlimit (util-linux) runs sipreg");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(child);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probe = loop {
        if let Ok(c) = TcpStream::connect(tcp) {
            break Conn {
                stream: c,
                pending: Vec::new(),
            };
        }
        assert!(Instant::now() < deadline, "sipreg did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = register(
        &probe,
        &aor("emfile"),
        &tcp_contact(&probe, "e"),
        "emfile-0",
        1,
    );
    assert_eq!(probe.request(&text).status, 200);
    let mut flood: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(tcp).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent < 50,
        "{spent} ticks in 2 s out of fds: the core spins"
    );
    // Fds come back: new connections are served again.
    flood.truncate(5);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Conn::open(tcp);
        let text = register(&c, &aor("emfile"), &tcp_contact(&c, "e"), "emfile-1", 1);
        c.send(text.as_bytes());
        if let Some(bytes) = c.read_until(Duration::from_millis(1500), response_len) {
            assert_eq!(
                Response::parse(&String::from_utf8_lossy(&bytes)).status,
                200
            );
            break;
        }
        assert!(Instant::now() < deadline, "accepts never resumed");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("pausing accepts"), "{text}");
    drop(child);
}

#[test]
fn thousands_of_tiny_messages_in_a_buffer_are_all_framed_over_several_turns() {
    // A core frames at most a turn's budget of messages and keeps the rest in the
    // connection's buffer for the next turn: none is lost, the answer after them comes.
    let admin = free_tcp_addr();
    let (_server, addr) = start(&["--cores", "1", "--admin", &admin]);
    let mut c = Conn::open(addr);
    let tiny = b"X\r\nl:0\r\n\r\n"; // framed, then dropped: no Via to answer to
    let count: u64 = 6000;
    let mut stream = Vec::new();
    for _ in 0..count {
        stream.extend_from_slice(tiny);
    }
    let a = aor("tiny");
    stream.extend_from_slice(register(&c, &a, &tcp_contact(&c, "t"), "tiny-1", 1).as_bytes());
    c.send(&stream);
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        metric_at_least(&admin, "sipreg_tcp_messages_total", count + 1),
        count + 1,
        "every message framed once"
    );
}

/// RFC 5626 §6 over real connections, on two cores: each UA registers several AORs
/// over one connection (with two cores some AORs are owned by the core that did not
/// accept it). An Outbound registration's 200 carries `Require: outbound`; when its
/// connection closes, its bindings are removed on whichever core owns them, while a
/// plain registration made over a connection that closed stays until it expires,
/// shown as flow-down.
#[test]
fn a_closed_connection_removes_its_outbound_bindings_and_marks_the_others_down() {
    let admin = free_tcp_addr();
    let (_server, addr) = start(&["--cores", "2", "--admin", &admin]);
    let tag = unique();
    let aors: Vec<String> = (0..8).map(|i| format!("ob{tag}x{i}")).collect();
    let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0000000000aa>\"";
    let outbound = |c: &Conn, name: &str, cseq: u32| {
        register(
            c,
            &format!("sip:{name}@example.com"),
            &tcp_contact(c, name),
            &format!("ob-{name}"),
            cseq,
        )
        .replace(
            &format!("Contact: <{}>\r\n", tcp_contact(c, name)),
            &format!(
                "Contact: <{}>;reg-id=1;{instance}\r\nSupported: outbound\r\n",
                tcp_contact(c, name)
            ),
        )
    };
    let steering_before = ["owner", "other"].map(|placement| {
        let name = format!("sipreg_steering_received_total{{placement=\"{placement}\"}} ");
        metric_at_least(&admin, &name, 0)
    });
    let mut ua = Conn::open(addr);
    for name in &aors {
        let r = ua.request(&outbound(&ua, name, 1));
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.header("Require"), Some("outbound"), "{}", r.raw);
    }
    // A plain registration over another connection, for an AOR of its own.
    let plain_name = format!("plain{tag}");
    let mut plain = Conn::open(addr);
    let a = format!("sip:{plain_name}@example.com");
    let r = plain.request(&register(
        &plain,
        &a,
        &tcp_contact(&plain, "p"),
        "plain-1",
        1,
    ));
    assert_eq!(r.status, 200, "{}", r.raw);

    let get = |name: &str| -> serde_json::Value {
        let url = format!("http://{admin}/v1/aors/{name}@example.com");
        match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
            Ok(r) => serde_json::from_str(&r.into_string().unwrap()).unwrap(),
            Err(ureq::Error::Status(404, _)) => serde_json::Value::Null,
            Err(e) => panic!("GET {url}: {e}"),
        }
    };
    // Stream messages are not datagrams: receive steering counts none of them (a
    // connection cannot be steered), though some crossed the mesh.
    for (placement, before) in ["owner", "other"].into_iter().zip(steering_before) {
        let name = format!("sipreg_steering_received_total{{placement=\"{placement}\"}} ");
        assert_eq!(metric_at_least(&admin, &name, 0), before, "{name}");
    }
    let b = get(&aors[0]);
    assert_eq!(b["bindings"][0]["outbound"], true, "{b}");
    assert_eq!(b["bindings"][0]["flow_down"], false, "{b}");

    drop(ua);
    drop(plain);
    // Every Outbound binding goes, whichever core owns its AOR.
    assert_eq!(
        metric_at_least(&admin, "sipreg_flow_removals_total ", aors.len() as u64),
        aors.len() as u64
    );
    for name in &aors {
        assert!(get(name).is_null(), "{name} still listed: {}", get(name));
    }
    // The plain binding stays, flow-down.
    assert_eq!(metric_at_least(&admin, "sipreg_flows_down_total ", 1), 1);
    let p = get(&plain_name);
    assert_eq!(p["bindings"][0]["flow_down"], true, "{p}");
    assert_eq!(p["bindings"][0]["transport"], "tcp", "{p}");
}

/// `--tcp-messages-per-s`: a connection that sends faster is not read for the rest of
/// the second; nothing is lost (TCP holds the sender), every request is answered, at
/// the rate allowed, and each pause is counted.
#[test]
fn past_the_message_rate_a_connection_waits_and_loses_nothing() {
    let admin = free_tcp_addr();
    let (_server, addr) = start(&["--tcp-messages-per-s", "10", "--admin", &admin]);
    let mut c = Conn::open(addr);
    let a = aor("rate");
    let burst: String = (1..=25)
        .map(|n| register(&c, &a, &tcp_contact(&c, "r"), "rate-1", n))
        .collect();
    let sent = Instant::now();
    c.send(burst.as_bytes());
    for n in 1..=25 {
        let r = c.response();
        assert_eq!(r.status, 200, "request {n}: {}", r.raw);
    }
    // 10 a second: the 21st cannot be taken before two seconds have passed.
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "25 requests at 10/s answered in {took:?}"
    );
    assert!(metric_at_least(&admin, "sipreg_tcp_rate_limited_total ", 2) >= 2);
    // A second connection is not held back by the first one's rate.
    let mut other = Conn::open(addr);
    let b = aor("rate-other");
    let quick = Instant::now();
    let r = other.request(&register(
        &other,
        &b,
        &tcp_contact(&other, "o"),
        "rate-2",
        1,
    ));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(quick.elapsed() < Duration::from_millis(500));
}
