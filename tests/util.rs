//! Test harness: the real `sipreg` binary on loopback, and a small string-based SIP
//! client.
//!
//! `Server::start(&[flags])` picks a free port, starts the binary with
//! `--listen 127.0.0.1:PORT` plus `flags`, waits until it answers an OPTIONS, and kills
//! it when dropped. Its stderr goes to a file that `Server::log()` reads.
//! `SIPREG_TEST_STEERING=hash` (or `ebpf`) adds `--steering` to every server a test
//! starts without one.
//!
//! `Client` owns one UDP socket (one source port). `Client::register(...)` builds a
//! REGISTER with [`register_request`], sends it and returns the parsed [`Response`];
//! `Client::request(text)` does the same for any request text. Messages are built
//! and parsed as plain strings on purpose: the tests must not share code with the
//! parser they test.

#![allow(dead_code)] // Not every test module uses every helper.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub(crate) const SIPREG: &str = env!("CARGO_BIN_EXE_sipreg");

/// How long a client waits for a response.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `Server::start` waits for the first answer.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts at finding a free port (another test may grab it between probe and bind).
const START_ATTEMPTS: usize = 5;

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A number unique within this test process (branches, tags, log files).
pub(crate) fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed) + 1
}

/// A running `sipreg`; killed (SIGKILL) on drop unless already stopped.
#[derive(Debug)]
pub(crate) struct Server {
    child: Option<Child>,
    /// The address it listens on (the first `--listen`).
    pub(crate) addr: SocketAddr,
    log_path: PathBuf,
    /// A data directory made for this server (removed on drop), when the flags named
    /// none: tests must not share `./sipreg-data`.
    own_data_dir: Option<PathBuf>,
}

impl Server {
    /// Start `sipreg --listen 127.0.0.1:<free port> <flags>` and wait until it answers.
    pub(crate) fn start(flags: &[&str]) -> Self {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let addr = free_udp_addr("127.0.0.1:0");
            let listen = addr.to_string();
            let mut args = vec!["--listen", listen.as_str()];
            args.extend_from_slice(flags);
            let mut server = Self::spawn(addr, &args);
            if server.wait_ready() {
                return server;
            }
            last_log = server.log();
            server.kill();
        }
        panic!("sipreg did not start after {START_ATTEMPTS} attempts; last log:\n{last_log}");
    }

    /// Start with exactly `args` (no `--listen` added); `addr` is where to probe.
    pub(crate) fn spawn(addr: SocketAddr, args: &[&str]) -> Self {
        let log_path = std::env::temp_dir().join(format!(
            "sipreg-test-{}-{}.log",
            std::process::id(),
            unique()
        ));
        let log = fs::File::create(&log_path).expect("create log file");
        let mut args: Vec<String> = args.iter().map(ToString::to_string).collect();
        let mut own_data_dir = None;
        if !args
            .iter()
            .any(|a| a == "--data-dir" || a == "--no-persist")
        {
            let dir = temp_data_dir();
            args.push("--data-dir".into());
            args.push(dir.display().to_string());
            own_data_dir = Some(dir);
        }
        // `SIPREG_TEST_STEERING=hash` runs the whole suite with the kernel's 4-tuple hash
        // instead of the default eBPF receive steering (issue 13: both must pass).
        if let Ok(mode) = std::env::var("SIPREG_TEST_STEERING") {
            if !args.iter().any(|a| a == "--steering") {
                args.push("--steering".into());
                args.push(mode);
            }
        }
        // Tests run servers in parallel: the management API is off unless a test
        // asks for it (its default port would collide).
        if !args.iter().any(|a| a == "--admin") {
            args.push("--admin".into());
            args.push("off".into());
        }
        let child = Command::new(SIPREG)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sipreg");
        Self {
            child: Some(child),
            addr,
            log_path,
            own_data_dir,
        }
    }

    /// Send OPTIONS until any answer arrives, or the process exits, or time runs out.
    pub(crate) fn wait_ready(&mut self) -> bool {
        let client = Client::new(self.addr);
        client
            .sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            client.send(options_request(&client, "ready").as_bytes());
            if client.recv_within(Duration::from_millis(100)).is_some() {
                return true;
            }
        }
        false
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the server wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit(timeout)
    }

    /// Wait (bounded) for the process to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time (user + system) the process has used, in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc/PID/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14
        // and 15 of the whole line, i.e. 12 and 13 after ") ".
        let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        utime + stime
    }

    /// SIGKILL (no graceful stop) and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.log_path);
        if let Some(dir) = &self.own_data_dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A fresh, not yet existing directory path under the system temp directory.
pub(crate) fn temp_data_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "sipreg-test-data-{}-{}",
        std::process::id(),
        unique()
    ))
}

/// A data directory that tests pass explicitly (to restart on it); removed on drop.
#[derive(Debug)]
pub(crate) struct DataDir(pub(crate) PathBuf);

impl DataDir {
    pub(crate) fn new() -> Self {
        Self(temp_data_dir())
    }

    /// The path as a flag value.
    pub(crate) fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Run `sipreg <args>` to completion (for flag errors); returns (status, stderr).
pub(crate) fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let mut server = Server::spawn(free_udp_addr("127.0.0.1:0"), args);
    let status = server
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("sipreg {args:?} did not exit"));
    (status, server.log())
}

/// A UDP address on `bind` (port 0) that was free a moment ago.
pub(crate) fn free_udp_addr(bind: &str) -> SocketAddr {
    let probe = UdpSocket::bind(bind).expect("bind probe");
    probe.local_addr().expect("probe addr")
}

/// One SIP client: one UDP socket, hence one source port.
#[derive(Debug)]
pub(crate) struct Client {
    /// The client's socket.
    pub(crate) sock: UdpSocket,
    /// Where requests go.
    pub(crate) server: SocketAddr,
}

impl Client {
    /// A client on a fresh port of the server's loopback family.
    pub(crate) fn new(server: SocketAddr) -> Self {
        let bind = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(bind).expect("bind client");
        sock.set_read_timeout(Some(RESPONSE_TIMEOUT))
            .expect("set timeout");
        Self { sock, server }
    }

    /// This client's address (the Via sent-by and the Contact host).
    pub(crate) fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    /// Send raw bytes to the server.
    pub(crate) fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).expect("send");
    }

    /// The next datagram within `timeout`, with the address it came from.
    pub(crate) fn recv_within(&self, timeout: Duration) -> Option<(Response, SocketAddr)> {
        self.sock.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = vec![0u8; 65536];
        let result = self.sock.recv_from(&mut buf);
        let _ = self.sock.set_read_timeout(Some(RESPONSE_TIMEOUT));
        let (n, from) = result.ok()?;
        Some((Response::parse(&String::from_utf8_lossy(&buf[..n])), from))
    }

    /// The next response (panics after [`RESPONSE_TIMEOUT`]).
    pub(crate) fn recv(&self) -> Response {
        self.recv_within(RESPONSE_TIMEOUT)
            .expect("no response within the timeout")
            .0
    }

    /// Send `text` and return the response.
    pub(crate) fn request(&self, text: &str) -> Response {
        self.send(text.as_bytes());
        self.recv()
    }

    /// REGISTER `contact` for `aor` and return the response.
    pub(crate) fn register(
        &self,
        aor: &str,
        contact: &str,
        expires: u32,
        call_id: &str,
        cseq: u32,
    ) -> Response {
        self.request(&register_request(
            self, aor, contact, expires, call_id, cseq,
        ))
    }

    /// OPTIONS to the server itself.
    pub(crate) fn options(&self) -> Response {
        self.request(&options_request(self, "sip"))
    }
}

/// A REGISTER from `client` binding `contact` (a URI, without `<>`) to `aor` (a URI)
/// for `expires` seconds. Every call gets a fresh Via branch and From tag.
pub(crate) fn register_request(
    client: &Client,
    aor: &str,
    contact: &str,
    expires: u32,
    call_id: &str,
    cseq: u32,
) -> String {
    let n = unique();
    let domain = aor.rsplit_once('@').map_or(aor, |(_, d)| d);
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-t{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <{aor}>\r\n\
         From: <{aor}>;tag=f{n}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <{contact}>\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n",
        local = client.local(),
    )
}

/// An OPTIONS to the registrar itself, with `user` in the Request-URI (vary it to
/// spread requests over shards).
pub(crate) fn options_request(client: &Client, user: &str) -> String {
    let n = unique();
    let host = client.server;
    format!(
        "OPTIONS sip:{user}@{host} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-o{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{user}@{host}>\r\n\
         From: <sip:probe@{host}>;tag=o{n}\r\n\
         Call-ID: options-{n}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        local = client.local(),
    )
}

/// A SIP response, parsed just enough for tests.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The whole datagram as text.
    pub(crate) raw: String,
    /// Status code (0 if the status line did not parse).
    pub(crate) status: u16,
    /// Reason phrase.
    pub(crate) reason: String,
    /// Header fields in order, names as received.
    pub(crate) headers: Vec<(String, String)>,
}

impl Response {
    /// Parse a response; unparseable text gives status 0.
    pub(crate) fn parse(text: &str) -> Self {
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = if version == "SIP/2.0" {
            parts.next().and_then(|s| s.parse().ok()).unwrap_or(0)
        } else {
            0
        };
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Self {
            raw: text.to_string(),
            status,
            reason,
            headers,
        }
    }

    /// The first value of header `name` (case-insensitive, compact forms accepted).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name`, comma-separated values split apart for Contact.
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        let long = long_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| long_name(n).eq_ignore_ascii_case(long))
            .flat_map(|(_, v)| {
                if long.eq_ignore_ascii_case("Contact") {
                    split_outside_angles(v)
                } else {
                    vec![v.as_str()]
                }
            })
            .collect()
    }

    /// The Contact values (one per binding).
    pub(crate) fn contacts(&self) -> Vec<&str> {
        self.header_all("Contact")
    }

    /// The `expires` parameter of the Contact whose URI contains `uri`.
    pub(crate) fn contact_expires(&self, uri: &str) -> Option<u32> {
        let contact = self.contacts().into_iter().find(|c| c.contains(uri))?;
        let params = contact.rsplit_once('>').map_or(contact, |(_, p)| p);
        params
            .split(';')
            .find_map(|p| p.trim().strip_prefix("expires="))
            .and_then(|v| v.trim().parse().ok())
    }
}

fn long_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "Via",
        "f" => "From",
        "t" => "To",
        "i" => "Call-ID",
        "m" => "Contact",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "k" => "Supported",
        "s" => "Subject",
        "e" => "Content-Encoding",
        _ => name,
    }
}

fn split_outside_angles(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

#[test]
fn response_parsing() {
    let r = Response::parse(
        "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContact: <sip:a@h>;expires=60, \"x, y\" <sip:b@h>;expires=30\r\n\
         m: <sip:c@h>\r\n ;expires=5\r\nMin-Expires: 60\r\n\r\n",
    );
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.header("via"), Some("SIP/2.0/UDP a;branch=z9hG4bK1"));
    assert_eq!(r.contacts().len(), 3);
    assert_eq!(r.contact_expires("sip:b@h"), Some(30));
    assert_eq!(r.contact_expires("sip:c@h"), Some(5));
    assert_eq!(r.header("min-expires"), Some("60"));
    assert_eq!(Response::parse("garbage").status, 0);
}

/// A free TCP `ADDR:PORT` on 127.0.0.1 (bound, then closed), e.g. for `--admin`.
pub(crate) fn free_tcp_addr() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("addr").to_string()
}

/// The value of metric line `name` (e.g. `sipreg_tcp_connections `) in `/metrics` of
/// the management API at `admin`, once it is at least `want` (the cores publish once
/// per turn), or what it was when the wait ended.
pub(crate) fn metric_at_least(admin: &str, name: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = ureq::get(&format!("http://{admin}/metrics"))
            .timeout(Duration::from_secs(5))
            .call()
            .expect("GET /metrics")
            .into_string()
            .expect("body");
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        if value >= want || Instant::now() > deadline {
            return value;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The length of the first whole SIP message on a stream in `buf` (header section plus
/// Content-Length bytes), if it is all there.
pub(crate) fn response_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let body: usize = head
        .split("\r\n")
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse().ok())?
        })
        .expect("every response on a stream has a Content-Length");
    (buf.len() >= end + body).then_some(end + body)
}

/// Attempts at finding free ports for a stream listener (another test may take one
/// between probe and bind).
const STREAM_START_ATTEMPTS: usize = 5;

/// Start `sipreg` on a free UDP port and a free `scheme` (`tcp` or `tls`) port, with
/// `flags`; returns the server and the stream listener's address.
pub(crate) fn start_stream(scheme: &str, flags: &[&str]) -> (Server, SocketAddr) {
    for _ in 0..STREAM_START_ATTEMPTS {
        let udp = free_udp_addr("127.0.0.1:0");
        let stream = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("probe a TCP port");
        let (udp_arg, stream_arg) = (udp.to_string(), format!("{scheme}:{stream}"));
        let mut args = vec![
            "--listen",
            udp_arg.as_str(),
            "--listen",
            stream_arg.as_str(),
        ];
        args.extend_from_slice(flags);
        let mut server = Server::spawn(udp, &args);
        if server.wait_ready() {
            return (server, stream);
        }
        server.kill();
    }
    panic!("sipreg did not start with a {scheme} listener after {STREAM_START_ATTEMPTS} attempts");
}
