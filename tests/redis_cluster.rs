//! The Redis side of the location backend against a real Redis Cluster (3 masters + 3
//! replicas from `scripts/redis-cluster.sh`), driven through the sans-IO core in
//! `sipreg::redis` by a minimal blocking `TcpStream` driver.
//!
//! Skips (with a printed reason) only when `redis-server` is not installed and cannot
//! be. The cluster is always stopped, by a drop guard, even when a check fails.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sipreg::location::Transport;
use sipreg::redis::cluster::{ClusterError, Pipeline, SlotMap};
use sipreg::redis::resp::{self, Reply};
use sipreg::redis::script::{
    self, CommitIntent, CommitOp, CommitReply, CommitStatus, ContactIntent, Invoke, ReplyError,
};
use sipreg::redis::slot::key_slot;
use sipreg::registrar::MaxContactsPolicy;
use sipreg::sip::{parse_uri, uri_match_key};

/// How long one reply may take before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Redirections followed for one request before giving up.
const REDIRECTS_MAX: usize = 5;

/// Stops the cluster when dropped.
struct ClusterGuard {
    dir: PathBuf,
    ports: Vec<u16>,
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/redis-cluster.sh")
}

impl ClusterGuard {
    fn start() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("sipreg-redis-test-{}", std::process::id()));
        let status = Command::new(script_path())
            .arg("start")
            .arg(&dir)
            .status()
            .expect("run scripts/redis-cluster.sh");
        // From here on the guard stops whatever the script left running.
        let mut guard = Self {
            dir: dir.clone(),
            ports: Vec::new(),
        };
        if !status.success() {
            let installed = Command::new("sh")
                .args(["-c", "command -v redis-server"])
                .status()
                .is_ok_and(|s| s.success());
            if !installed {
                eprintln!("SKIP redis_cluster: redis-server is not installed and could not be");
                return None;
            }
            panic!("scripts/redis-cluster.sh start failed with redis-server installed");
        }
        guard.ports = std::fs::read_to_string(dir.join("ports"))
            .expect("DIR/ports")
            .lines()
            .map(|l| l.parse().expect("a port"))
            .collect();
        Some(guard)
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let _ = Command::new(script_path())
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking, one-request-at-a-time driver over the sans-IO core.
struct Driver {
    map: SlotMap,
    conns: HashMap<String, (TcpStream, Pipeline<()>)>,
    moved: usize,
    noscript: usize,
}

impl Driver {
    fn connect(seed: &str) -> Self {
        let mut d = Self {
            map: SlotMap::from_cluster_slots(&Reply::Array(Some(Vec::new()))).unwrap(),
            conns: HashMap::new(),
            moved: 0,
            noscript: 0,
        };
        let slots = d.call_on(seed, &[&b"CLUSTER"[..], b"SLOTS"]);
        d.map = SlotMap::from_cluster_slots(&slots).expect("CLUSTER SLOTS");
        assert_eq!(d.map.covered(), 16384);
        assert_eq!(d.map.nodes().len(), 3, "three masters");
        d
    }

    fn call_on<A: AsRef<[u8]>>(&mut self, addr: &str, args: &[A]) -> Reply {
        self.call_on_with(addr, &|out| resp::encode_command(out, args))
    }

    /// One request whose RESP2 bytes `encode` appends, and its reply.
    fn call_on_with(&mut self, addr: &str, encode: &dyn Fn(&mut Vec<u8>)) -> Reply {
        let (stream, pipe) = self.conns.entry(addr.to_owned()).or_insert_with(|| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
            s.set_nodelay(true).unwrap();
            (s, Pipeline::new())
        });
        pipe.push_with((), encode).unwrap();
        stream.write_all(pipe.output()).unwrap();
        pipe.output().clear();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(((), reply)) = pipe.next_reply().expect("valid RESP") {
                return reply;
            }
            let n = stream.read(&mut buf).expect("reply within REPLY_TIMEOUT");
            assert!(n > 0, "connection to {addr} closed");
            pipe.receive(&buf[..n]);
        }
    }

    /// Sends to the slot's master, following MOVED (updating the map) and ASK.
    fn call<A: AsRef<[u8]>>(&mut self, key: &[u8], args: &[A]) -> Reply {
        self.call_with(key, &|out| resp::encode_command(out, args))
    }

    /// [`Self::call`] for a request given as its RESP2 encoder.
    fn call_with(&mut self, key: &[u8], encode: &dyn Fn(&mut Vec<u8>)) -> Reply {
        let slot = key_slot(key);
        let mut addr = self
            .map
            .node_for_slot(slot)
            .expect("slot covered")
            .to_owned();
        let mut asking = false;
        for _ in 0..REDIRECTS_MAX {
            if asking {
                self.call_on(&addr, &[&b"ASKING"[..]]);
            }
            let reply = self.call_on_with(&addr, encode);
            let Reply::Error(msg) = &reply else {
                return reply;
            };
            match ClusterError::classify(msg) {
                ClusterError::Moved { slot, addr: to } => {
                    self.moved += 1;
                    self.map.set_owner(slot, &to).unwrap();
                    addr = to;
                    asking = false;
                }
                ClusterError::Ask { addr: to, .. } => {
                    addr = to;
                    asking = true;
                }
                _ => return reply,
            }
        }
        panic!("more than {REDIRECTS_MAX} redirections");
    }

    /// EVALSHA (encoded by `encode_commit`, the runtime's path); on NOSCRIPT, SCRIPT
    /// LOAD on that node and again.
    /// The reply is leaked so the decoded bindings (which borrow it) outlive the call:
    /// a few kilobytes over the whole test.
    fn commit(&mut self, intent: &CommitIntent<'_>) -> Result<CommitReply<'static>, ReplyError> {
        let mut key = Vec::new();
        script::write_location_key(intent.aor_key, &mut key);
        let encode = |out: &mut Vec<u8>| {
            script::encode_commit(out, &mut Vec::new(), intent, Invoke::EvalSha);
        };
        let reply: &'static Reply = Box::leak(Box::new(self.call_with(&key, &encode)));
        match script::decode_commit_reply(reply) {
            Err(ReplyError::Server(ClusterError::NoScript)) => {
                self.noscript += 1;
                let load: [&[u8]; 3] = [b"SCRIPT", b"LOAD", script::COMMIT_SCRIPT.as_bytes()];
                assert_eq!(
                    self.call(&key, &load),
                    Reply::Bulk(Some(script::commit_script_sha1().as_bytes().to_vec())),
                    "SCRIPT LOAD returns the SHA1 we computed"
                );
                let again: &'static Reply = Box::leak(Box::new(self.call_with(&key, &encode)));
                script::decode_commit_reply(again)
            }
            other => other,
        }
    }

    fn int(&mut self, key: &[u8], cmd: &str) -> i64 {
        match self.call(key, &[cmd.as_bytes(), key]) {
            Reply::Int(n) => n,
            other => panic!("{cmd}: {other:?}"),
        }
    }
}

/// Owned pieces of one contact, so tests can build intents briefly.
struct Ct {
    uri: String,
    key: Vec<u8>,
    expires_s: u32,
    instance: Option<&'static str>,
    reg_id: Option<u32>,
}

fn ct(uri: &str, expires_s: u32) -> Ct {
    let mut key = Vec::new();
    uri_match_key(&parse_uri(uri.as_bytes()).unwrap(), &mut key);
    Ct {
        uri: uri.to_owned(),
        key,
        expires_s,
        instance: None,
        reg_id: None,
    }
}

impl Ct {
    fn intent(&self) -> ContactIntent<'_> {
        ContactIntent {
            match_key: &self.key,
            expires_s: self.expires_s,
            q: Some(1000),
            contact: self.uri.as_bytes(),
            path: b"<sip:edge.test;lr>",
            source: "127.0.0.1:5062".parse().unwrap(),
            transport: Transport::Udp,
            listen: 0,
            user_agent: b"test-ua",
            instance: self.instance.map(str::as_bytes),
            reg_id: self.reg_id,
            flow: None,
        }
    }
}

/// One REGISTER's parameters.
struct Req<'a> {
    aor: &'a str,
    call_id: &'a str,
    cseq: u32,
    branch: u32,
    max: u32,
    policy: MaxContactsPolicy,
}

fn req<'a>(aor: &'a str, call_id: &'a str, cseq: u32) -> Req<'a> {
    Req {
        aor,
        call_id,
        cseq,
        branch: cseq * 7,
        max: 0,
        policy: MaxContactsPolicy::Reject,
    }
}

impl Req<'_> {
    fn run(&self, d: &mut Driver, op: Op<'_>) -> CommitReply<'static> {
        let intents: Vec<ContactIntent<'_>> = match op {
            Op::Update(cs) => cs.iter().map(Ct::intent).collect(),
            _ => Vec::new(),
        };
        let op = match op {
            Op::Fetch => CommitOp::Fetch,
            Op::Star => CommitOp::RemoveAll,
            Op::Update(_) => CommitOp::Update(&intents),
        };
        d.commit(&CommitIntent {
            aor_key: self.aor.as_bytes(),
            call_id: self.call_id.as_bytes(),
            cseq: self.cseq,
            branch_hash: self.branch,
            max_contacts: self.max,
            policy: self.policy,
            op,
        })
        .expect("a commit reply")
    }
}

enum Op<'a> {
    Fetch,
    Star,
    Update(&'a [Ct]),
}

fn contacts(r: &CommitReply) -> Vec<String> {
    let mut v: Vec<String> = r
        .bindings
        .iter()
        .map(|b| String::from_utf8(b.contact.to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

fn key_of(aor: &str) -> Vec<u8> {
    let mut k = Vec::new();
    script::write_location_key(aor.as_bytes(), &mut k);
    k
}

fn fetch(d: &mut Driver, aor: &str) -> CommitReply<'static> {
    req(aor, "fetch", 1).run(d, Op::Fetch)
}

#[test]
fn redis_cluster_location_commit() {
    let Some(cluster) = ClusterGuard::start() else {
        return;
    };
    let seed = format!("127.0.0.1:{}", cluster.ports[0]);
    let mut d = Driver::connect(&seed);

    routing_follows_moved(&mut d);
    evalsha_reloads_after_noscript(&mut d);
    register_refresh_remove(&mut d);
    cseq_rule(&mut d);
    star_removes_all(&mut d);
    max_contacts_reject_and_evict(&mut d);
    all_or_nothing(&mut d);
    instance_matching(&mut d);
    expiry_purge_and_key_ttl(&mut d);
    bad_arguments_are_refused(&mut d);
    two_sipreg_nodes_share_one_location(&seed);
    admin_ops_skip_the_cseq_rule(&mut d);
    admin_api_on_redis_nodes(&mut d, &seed);
    a_flow_names_the_node_that_holds_it(&seed);
    a_master_failover_costs_only_its_slots(&cluster, &d, &seed);
    // The failover killed a master, maybe the seed: seed the next nodes with a live one.
    let live = cluster
        .ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .find(|a| TcpStream::connect(a).is_ok())
        .expect("a live cluster node");
    three_sipreg_nodes(&live);
    drop(cluster);
}

/// A sipreg node with `--location redis` on `ip`, stopped when dropped.
struct Node {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    /// The management API (`/metrics`), when started with one.
    admin: Option<std::net::SocketAddr>,
    /// The node's log lines about Redis (`redis:`), as they come.
    redis_log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Node {
    fn start(ip: &str, seed: &str) -> Self {
        Self::start_with(ip, Some(seed), false, &[])
    }

    /// [`Self::start`] with the management API on `admin` (`ADDR:PORT`).
    fn start_with_admin(ip: &str, seed: &str, admin: &str) -> Self {
        let admin = admin.parse().expect("ADDR:PORT");
        Self::spawn(ip, Some(seed), Some(admin), &[])
    }

    /// With the management API on `ip` when `admin`, and `extra` flags; `seed` None:
    /// `--location memory` (one node on its own, to compare with).
    fn start_with(ip: &str, seed: Option<&str>, admin: bool, extra: &[&str]) -> Self {
        let admin = admin.then(|| {
            let l = std::net::TcpListener::bind((ip, 0)).expect("a free TCP port");
            l.local_addr().unwrap()
        });
        Self::spawn(ip, seed, admin, extra)
    }

    fn spawn(
        ip: &str,
        seed: Option<&str>,
        admin: Option<std::net::SocketAddr>,
        extra: &[&str],
    ) -> Self {
        let location = match seed {
            Some(seed) => vec!["--location", "redis", "--redis-seed", seed],
            None => vec!["--location", "memory"],
        };
        let sock = std::net::UdpSocket::bind((ip, 0)).expect("a free port");
        let addr = sock.local_addr().unwrap();
        drop(sock);
        let admin_flag = admin.map_or("off".to_owned(), |a| a.to_string());
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipreg"))
            .args([
                "--listen",
                &addr.to_string(),
                "--admin",
                &admin_flag,
                "--cores",
                "2",
            ])
            .args(location)
            .args([
                "--no-persist",
                "--stats-interval",
                "0",
                "--log-level",
                "info",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sipreg");
        let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let start = seen.len();
            let n = std::io::BufRead::read_line(&mut log, &mut seen).unwrap();
            assert!(
                n > 0,
                "sipreg {extra:?} on {ip} exited before ready:\n{seen}"
            );
            if seen[start..].contains("ready:") {
                break;
            }
        }
        // Keep reading the log so the node never blocks on a full pipe; keep what it
        // says about Redis.
        let redis_log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = redis_log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut log, &mut line).is_ok_and(|n| n > 0) {
                if line.contains("redis:") {
                    lines.lock().unwrap().push(line.trim_end().to_owned());
                }
                line.clear();
            }
        });
        Self {
            child,
            addr,
            admin,
            redis_log,
        }
    }

    /// `GET /metrics`, the body.
    fn metrics(&self) -> String {
        let admin = self.admin.expect("started with the management API");
        ureq::get(&format!("http://{admin}/metrics"))
            .timeout(REPLY_TIMEOUT)
            .call()
            .expect("GET /metrics")
            .into_string()
            .expect("a /metrics body")
    }

    /// The value of the metric line that starts with `name` (labels included).
    fn metric(&self, name: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    }

    /// Whether the node logged a Redis line containing every one of `words`.
    fn logged(&self, words: &[&str]) -> bool {
        self.redis_log
            .lock()
            .unwrap()
            .iter()
            .any(|l| words.iter().all(|w| l.contains(w)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request to `node` and returns the response text.
fn sip(node: &Node, method: &str, user: &str, call_id: &str, cseq: u32, contact: bool) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let port = sock.local_addr().unwrap().port();
    let ruri = if method == "REGISTER" {
        "sip:example.com".to_owned()
    } else {
        format!("sip:{user}@example.com")
    };
    let mut m = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}-{cseq}-{method};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f1\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
    );
    if contact {
        m.push_str(&format!(
            "Contact: <sip:{user}@192.0.2.1:5060>;expires=600\r\n"
        ));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    sock.send_to(m.as_bytes(), node.addr).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn status_line(r: &str) -> &str {
    r.lines().next().unwrap_or("")
}

fn contact_lines(r: &str) -> Vec<&str> {
    r.lines().filter(|l| l.starts_with("Contact:")).collect()
}

/// Issue 15: any node answers for any AOR. Two real sipreg nodes with `--location
/// redis` on one cluster: what one registers, the other lists, redirects to and orders
/// by CSeq.
fn two_sipreg_nodes_share_one_location(seed: &str) {
    let a = Node::start("127.0.0.2", seed);
    let b = Node::start("127.0.0.3", seed);
    let r = sip(&a, "REGISTER", "carol", "n1", 1, true);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(
        contact_lines(&r),
        ["Contact: <sip:carol@192.0.2.1:5060>;expires=600"]
    );
    // The other node lists it (a fetch), and redirects to it.
    let r = sip(&b, "REGISTER", "carol", "n1", 2, false);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(
        contact_lines(&r),
        ["Contact: <sip:carol@192.0.2.1:5060>;expires=600"]
    );
    // The 302 reaches the phone behind its NAT from any node (issue 17): its source
    // (where the REGISTER came from, not the Contact's address) as Kamailio's alias.
    let r = sip(&b, "INVITE", "carol", "inv1", 1, false);
    assert_eq!(status_line(&r), "SIP/2.0 302 Moved Temporarily", "{r}");
    let lines = contact_lines(&r);
    assert!(
        lines.len() == 1
            && lines[0].starts_with("Contact: <sip:carol@192.0.2.1:5060;alias=127.0.0.1~")
            && lines[0].ends_with("~1>;expires=600"),
        "{r}"
    );
    // A refresh through the other node (CSeq 3) ...
    let r = sip(&b, "REGISTER", "carol", "n1", 3, true);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    // ... orders the Call-ID everywhere (§10.3 step 7): a lower CSeq fails on the first.
    let r = sip(&a, "REGISTER", "carol", "n1", 2, true);
    assert_eq!(status_line(&r), "SIP/2.0 400 Invalid CSeq", "{r}");
    // The applied refresh retransmitted to the first node (an edge proxy failing
    // over): same branch, same CSeq, so the same 200, nothing changed.
    let r = sip(&a, "REGISTER", "carol", "n1", 3, true);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(
        contact_lines(&r),
        ["Contact: <sip:carol@192.0.2.1:5060>;expires=600"]
    );
    // Unknown AORs are unknown on every node.
    let r = sip(&b, "INVITE", "nobody", "inv2", 1, false);
    assert_eq!(status_line(&r), "SIP/2.0 404 Not Found", "{r}");
    let mut m = sip(&a, "REGISTER", "dave", "n2", 1, true);
    assert_eq!(status_line(&m), "SIP/2.0 200 OK", "{m}");
    m = sip(&b, "INVITE", "dave", "inv3", 1, false);
    assert_eq!(status_line(&m), "SIP/2.0 302 Moved Temporarily", "{m}");
}

fn routing_follows_moved(d: &mut Driver) {
    let key = b"sipreg:test:{moved}";
    let slot = key_slot(key);
    let owner = d.map.node_for_slot(slot).unwrap().to_owned();
    let wrong = d.map.nodes().iter().find(|n| **n != owner).unwrap().clone();
    // Point the slot at the wrong master on purpose: the reply is MOVED, the driver
    // follows it and the map is corrected.
    d.map.set_owner(slot, &wrong).unwrap();
    let before = d.moved;
    assert_eq!(
        d.call(key, &[&b"SET"[..], key, b"v"]),
        Reply::Simple(b"OK".to_vec())
    );
    assert_eq!(d.moved, before + 1, "one MOVED followed");
    assert_eq!(d.map.node_for_slot(slot), Some(owner.as_str()));
    assert_eq!(
        d.call(key, &[&b"GET"[..], key]),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    assert_eq!(d.moved, before + 1, "no MOVED once the map is right");
    d.call(key, &[&b"DEL"[..], key]);
}

fn evalsha_reloads_after_noscript(d: &mut Driver) {
    for node in d.map.nodes().to_vec() {
        assert_eq!(
            d.call_on(&node, &[&b"SCRIPT"[..], b"FLUSH"]),
            Reply::Simple(b"OK".to_vec())
        );
    }
    let before = d.noscript;
    let r = fetch(d, "noscript@example.com");
    assert_eq!(r.status, CommitStatus::Ok);
    assert_eq!(
        d.noscript,
        before + 1,
        "NOSCRIPT seen and the script loaded"
    );
    fetch(d, "noscript@example.com");
    assert_eq!(d.noscript, before + 1, "the next EVALSHA finds it");
    // EVAL (the other fallback) runs the same script from its source.
    let key = b"sipreg:loc:{eval@example.com}";
    let intent = CommitIntent {
        aor_key: b"eval@example.com",
        call_id: b"cid",
        cseq: 1,
        branch_hash: 1,
        max_contacts: 0,
        policy: MaxContactsPolicy::Reject,
        op: CommitOp::Fetch,
    };
    let reply = d.call_with(key, &|out: &mut Vec<u8>| {
        script::encode_commit(out, &mut Vec::new(), &intent, Invoke::Eval);
    });
    assert_eq!(
        script::decode_commit_reply(&reply).map(|r| r.status),
        Ok(CommitStatus::Ok)
    );
    // Redis's clock, not ours: within a minute of this machine's.
    let ours = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(r.now_ms.abs_diff(ours) < 60_000);
}

fn register_refresh_remove(d: &mut Driver) {
    let aor = "alice@example.com";
    let c1 = ct("sip:alice@192.0.2.1:5060", 60);
    let r = req(aor, "cid-a", 1).run(d, Op::Update(std::slice::from_ref(&c1)));
    assert_eq!(r.status, CommitStatus::Ok);
    assert_eq!(contacts(&r), ["sip:alice@192.0.2.1:5060"]);
    let b = &r.bindings[0];
    assert!((59..=60).contains(&b.expires_s), "{}", b.expires_s);
    assert_eq!((b.cseq, b.branch_hash), (1, 7));
    assert_eq!(b.call_id, b"cid-a");
    assert_eq!(b.user_agent, b"test-ua");
    assert_eq!(b.path, b"<sip:edge.test;lr>");
    assert_eq!(b.q, Some(1000));
    let registered = b.registered_ms;
    let pttl = d.int(&key_of(aor), "PTTL");
    assert!(
        (58_000..=60_000).contains(&pttl),
        "key TTL = the binding's: {pttl}"
    );

    // Refresh through an equivalent spelling of the URI: same binding, new expiry.
    let refresh = ct("sip:%61lice@192.0.2.1:5060", 120);
    let r = req(aor, "cid-a", 2).run(d, Op::Update(std::slice::from_ref(&refresh)));
    assert_eq!(r.status, CommitStatus::Ok);
    assert_eq!(r.bindings.len(), 1);
    assert!((119..=120).contains(&r.bindings[0].expires_s));
    assert_eq!(
        r.bindings[0].registered_ms, registered,
        "a refresh keeps the first registration time"
    );
    assert!(d.int(&key_of(aor), "PTTL") > 110_000);

    // Remove it: the AOR is empty and its key gone.
    let r = req(aor, "cid-a", 3).run(d, Op::Update(&[ct("sip:alice@192.0.2.1:5060", 0)]));
    assert_eq!(r.status, CommitStatus::Ok);
    assert!(r.bindings.is_empty());
    assert_eq!(
        d.int(&key_of(aor), "EXISTS"),
        0,
        "empty AOR deletes the key"
    );
    // Removing a binding that does not exist is not an error.
    let r = req(aor, "cid-a", 4).run(d, Op::Update(&[ct("sip:alice@192.0.2.1:5060", 0)]));
    assert_eq!((r.status, r.bindings.len()), (CommitStatus::Ok, 0));
}

fn cseq_rule(d: &mut Driver) {
    let aor = "bob@example.com";
    let c = [ct("sip:bob@192.0.2.2", 60)];
    assert_eq!(
        req(aor, "cid-b", 10).run(d, Op::Update(&c)).status,
        CommitStatus::Ok
    );
    // Lower CSeq, same Call-ID: out of order.
    let r = req(aor, "cid-b", 9).run(d, Op::Update(&c));
    assert_eq!((r.status, r.bindings.len()), (CommitStatus::InvalidCSeq, 0));
    // Equal CSeq, same branch: a retransmission; the current list, nothing changed.
    let changed = [ct("sip:bob@192.0.2.2", 3000)];
    let r = req(aor, "cid-b", 10).run(d, Op::Update(&changed));
    assert_eq!(r.status, CommitStatus::Retransmission);
    assert_eq!(r.bindings.len(), 1);
    assert!(r.bindings[0].expires_s <= 60, "not refreshed to 3000");
    // Equal CSeq from another branch: a different request reusing the CSeq.
    let mut other_branch = req(aor, "cid-b", 10);
    other_branch.branch = 12345;
    assert_eq!(
        other_branch.run(d, Op::Update(&c)).status,
        CommitStatus::InvalidCSeq
    );
    // The rule is per Call-ID: another Call-ID may use any CSeq.
    let r = req(aor, "cid-other", 1).run(d, Op::Update(&c));
    assert_eq!(r.status, CommitStatus::Ok);
    assert_eq!(r.bindings[0].call_id, b"cid-other");
    let f = fetch(d, aor);
    assert_eq!((f.bindings.len(), f.bindings[0].cseq), (1, 1));
    req(aor, "cid-other", 2).run(d, Op::Star);
}

fn star_removes_all(d: &mut Driver) {
    let aor = "carol@example.com";
    let cs = [
        ct("sip:carol@192.0.2.3", 60),
        ct("sip:carol@192.0.2.4", 60),
        ct("sip:carol@192.0.2.5", 60),
    ];
    assert_eq!(
        req(aor, "cid-c", 5).run(d, Op::Update(&cs)).bindings.len(),
        3
    );
    // `*` with an older CSeq of the same Call-ID is refused and changes nothing.
    assert_eq!(
        req(aor, "cid-c", 4).run(d, Op::Star).status,
        CommitStatus::InvalidCSeq
    );
    assert_eq!(fetch(d, aor).bindings.len(), 3);
    let r = req(aor, "cid-c", 6).run(d, Op::Star);
    assert_eq!((r.status, r.bindings.len()), (CommitStatus::Ok, 0));
    assert_eq!(d.int(&key_of(aor), "EXISTS"), 0);
}

fn max_contacts_reject_and_evict(d: &mut Driver) {
    let aor = "dave@example.com";
    let (c1, c2, c3) = (
        ct("sip:dave@192.0.2.10", 60),
        ct("sip:dave@192.0.2.11", 60),
        ct("sip:dave@192.0.2.12", 60),
    );
    let mut r = req(aor, "cid-d1", 1);
    r.max = 2;
    assert_eq!(
        r.run(d, Op::Update(std::slice::from_ref(&c1))).status,
        CommitStatus::Ok
    );
    std::thread::sleep(Duration::from_millis(5));
    let mut r = req(aor, "cid-d2", 1);
    r.max = 2;
    assert_eq!(
        r.run(d, Op::Update(std::slice::from_ref(&c2)))
            .bindings
            .len(),
        2
    );
    // A third device is refused whole under the reject policy.
    let mut r = req(aor, "cid-d3", 1);
    r.max = 2;
    assert_eq!(
        r.run(d, Op::Update(std::slice::from_ref(&c3))).status,
        CommitStatus::TooManyContacts
    );
    assert_eq!(
        contacts(&fetch(d, aor)),
        ["sip:dave@192.0.2.10", "sip:dave@192.0.2.11"]
    );
    // A refresh is not a new binding.
    let mut r = req(aor, "cid-d1", 2);
    r.max = 2;
    assert_eq!(
        r.run(d, Op::Update(std::slice::from_ref(&c1))).status,
        CommitStatus::Ok
    );
    // Evict-oldest removes the first registered (c1, even though just refreshed).
    let mut r = req(aor, "cid-d3", 2);
    r.max = 2;
    r.policy = MaxContactsPolicy::EvictOldest;
    let out = r.run(d, Op::Update(std::slice::from_ref(&c3)));
    assert_eq!((out.status, out.evicted), (CommitStatus::Ok, 1));
    assert_eq!(
        contacts(&out),
        ["sip:dave@192.0.2.11", "sip:dave@192.0.2.12"]
    );
    // Two new contacts under max 1 with evict: nothing of this request may be evicted,
    // so it is refused and nothing changes.
    let mut r = req(aor, "cid-d4", 1);
    r.max = 1;
    r.policy = MaxContactsPolicy::EvictOldest;
    let two = [ct("sip:dave@192.0.2.13", 60), ct("sip:dave@192.0.2.14", 60)];
    assert_eq!(
        r.run(d, Op::Update(&two)).status,
        CommitStatus::TooManyContacts
    );
    assert_eq!(fetch(d, aor).bindings.len(), 2);
    req(aor, "cid-d9", 1).run(d, Op::Star);
}

fn all_or_nothing(d: &mut Driver) {
    let aor = "erin@example.com";
    let old = ct("sip:erin@192.0.2.20", 60);
    assert_eq!(
        req(aor, "cid-e", 5)
            .run(d, Op::Update(std::slice::from_ref(&old)))
            .status,
        CommitStatus::Ok
    );
    // A new contact first, then one whose CSeq is out of order: nothing is written.
    let list = [ct("sip:erin@192.0.2.21", 60), ct("sip:erin@192.0.2.20", 0)];
    assert_eq!(
        req(aor, "cid-e", 4).run(d, Op::Update(&list)).status,
        CommitStatus::InvalidCSeq
    );
    assert_eq!(contacts(&fetch(d, aor)), ["sip:erin@192.0.2.20"]);
    assert_eq!(d.int(&key_of(aor), "HLEN"), 1);
    // Over max contacts with a removal in the same list: refused whole too.
    let mut r = req(aor, "cid-e", 6);
    r.max = 1;
    let list = [ct("sip:erin@192.0.2.22", 60), ct("sip:erin@192.0.2.23", 60)];
    assert_eq!(
        r.run(d, Op::Update(&list)).status,
        CommitStatus::TooManyContacts
    );
    assert_eq!(contacts(&fetch(d, aor)), ["sip:erin@192.0.2.20"]);
    // The same list with the old binding removed fits: swap in one request.
    let mut r = req(aor, "cid-e", 7);
    r.max = 1;
    let list = [ct("sip:erin@192.0.2.20", 0), ct("sip:erin@192.0.2.22", 60)];
    let out = r.run(d, Op::Update(&list));
    assert_eq!(out.status, CommitStatus::Ok);
    assert_eq!(contacts(&out), ["sip:erin@192.0.2.22"]);
    req(aor, "cid-e", 8).run(d, Op::Star);
}

fn instance_matching(d: &mut Driver) {
    let aor = "frank@example.com";
    let mut a = ct("sip:frank@192.0.2.30:5060", 60);
    a.instance = Some("\"<urn:uuid:f81d4fae>\"");
    a.reg_id = Some(1);
    assert_eq!(
        req(aor, "cid-f", 1)
            .run(d, Op::Update(std::slice::from_ref(&a)))
            .status,
        CommitStatus::Ok
    );
    // Same instance and reg-id from a new address: the same binding, moved.
    let mut moved = ct("sip:frank@198.51.100.7:41000", 60);
    moved.instance = a.instance;
    moved.reg_id = Some(1);
    let r = req(aor, "cid-f", 2).run(d, Op::Update(std::slice::from_ref(&moved)));
    assert_eq!(contacts(&r), ["sip:frank@198.51.100.7:41000"]);
    assert_eq!(
        r.bindings[0].instance,
        Some(&b"\"<urn:uuid:f81d4fae>\""[..])
    );
    assert_eq!(r.bindings[0].reg_id, Some(1));
    // Another reg-id of the same instance is a second flow.
    let mut flow2 = ct("sip:frank@198.51.100.7:41000", 60);
    flow2.instance = a.instance;
    flow2.reg_id = Some(2);
    let r = req(aor, "cid-f", 3).run(d, Op::Update(std::slice::from_ref(&flow2)));
    assert_eq!(r.bindings.len(), 2);
    req(aor, "cid-f", 4).run(d, Op::Star);
}

fn expiry_purge_and_key_ttl(d: &mut Driver) {
    let aor = "gina@example.com";
    let cs = [ct("sip:gina@192.0.2.40", 1), ct("sip:gina@192.0.2.41", 30)];
    assert_eq!(
        req(aor, "cid-g", 1).run(d, Op::Update(&cs)).bindings.len(),
        2
    );
    let pttl = d.int(&key_of(aor), "PTTL");
    assert!(
        (28_000..=30_000).contains(&pttl),
        "key TTL = the longest binding: {pttl}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    // The expired binding is not returned, and the next touch purges it.
    assert_eq!(d.int(&key_of(aor), "HLEN"), 2, "purge is lazy");
    let r = fetch(d, aor);
    assert_eq!(contacts(&r), ["sip:gina@192.0.2.41"]);
    assert_eq!(d.int(&key_of(aor), "HLEN"), 1, "fetch purged it");
    req(aor, "cid-g", 2).run(d, Op::Star);

    // A key whose only binding expired is removed by Redis through the key TTL.
    let aor = "hank@example.com";
    req(aor, "cid-h", 1).run(d, Op::Update(&[ct("sip:hank@192.0.2.50", 1)]));
    assert_eq!(d.int(&key_of(aor), "EXISTS"), 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        d.int(&key_of(aor), "EXISTS"),
        0,
        "the key TTL removed the AOR"
    );
    // An expired binding is gone for the CSeq rule too: a lower CSeq registers.
    let r = req(aor, "cid-h", 1).run(d, Op::Update(&[ct("sip:hank@192.0.2.50", 60)]));
    assert_eq!(r.status, CommitStatus::Ok);
    req(aor, "cid-h", 2).run(d, Op::Star);
}

fn bad_arguments_are_refused(d: &mut Driver) {
    let key = key_of("ivy@example.com");
    let sha = script::commit_script_sha1();
    let bad: [&[&[u8]]; 4] = [
        // n says one contact but none follows.
        &[b"U", b"cid", b"1", b"1", b"0", b"R", b"1"],
        // A branch hash that is not a number.
        &[b"F", b"cid", b"1", b"x1", b"0", b"R", b"0"],
        // A reg-id that is not a number.
        &[
            b"U", b"cid", b"1", b"1", b"0", b"R", b"1", b"mk", b"=i", b"r", b"60", b"blob",
        ],
        // A negative expiry.
        &[
            b"U", b"cid", b"1", b"1", b"0", b"R", b"1", b"mk", b"", b"", b"-1", b"blob",
        ],
    ];
    for argv in bad {
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), b"1", &key];
        args.extend_from_slice(argv);
        match script::decode_commit_reply(&d.call(&key, &args)) {
            Err(ReplyError::Server(ClusterError::Other(msg))) => {
                assert!(
                    msg.starts_with(b"SIPREG_BADARGS"),
                    "{}",
                    String::from_utf8_lossy(&msg)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(d.int(&key, "EXISTS"), 0);
}

/// Issue 15 faults and durability: kill -9 a master under a sipreg node run with
/// `--redis-wait 1`, while a client keeps registering new AORs. REGISTERs for the dead
/// master's slots get 503 at once (nothing else does), then, once its replica has taken
/// over, its bindings are readable again; and every binding acknowledged with 200, before
/// or during the kill, is still listed after the failover ("no acknowledged binding
/// lost"). Then a replica that stops acknowledging makes a new binding's `WAIT` fall
/// short: 503, counted as `wait`, and the binding is on the master all the same.
fn a_master_failover_costs_only_its_slots(cluster: &ClusterGuard, d: &Driver, seed: &str) {
    let node = Node::start_with("127.0.0.4", Some(seed), true, &["--redis-wait", "1"]);
    let users: Vec<String> = (0..48).map(|i| format!("fo{i}")).collect();
    for u in &users {
        let r = sip(&node, "REGISTER", u, &format!("fo-{u}"), 1, true);
        assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    }
    // The master of the first user's slot, and which users share it.
    let owner = |u: &str| {
        let aor = format!("{u}@example.com");
        d.map
            .node_for_slot(key_slot(&key_of(&aor)))
            .unwrap()
            .to_owned()
    };
    let victim = owner(&users[0]);
    let on_victim: Vec<&String> = users.iter().filter(|u| owner(u) == victim).collect();
    assert!(on_victim.len() < users.len(), "every user on one master");
    let port = victim.rsplit_once(':').unwrap().1;
    let pid = std::fs::read_to_string(cluster.dir.join(format!("node-{port}/redis.pid")))
        .expect("the victim's pid file");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked_under_load = std::thread::scope(|scope| {
        // A client registering a new AOR every 2 ms, through the kill and the failover:
        // each answer is 200 (acknowledged) or 503 (not), nothing else.
        let loader = scope.spawn(|| {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5000 {
                let u = format!("ld{i}");
                let r = sip(&node, "REGISTER", &u, &format!("ld-{u}"), 1, true);
                match status_line(&r) {
                    "SIP/2.0 200 OK" => acked.push(u),
                    "SIP/2.0 503 Location Store Unavailable" => {}
                    other => panic!("{u}: {other}\n{r}"),
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            acked
        });
        std::thread::sleep(Duration::from_millis(300));
        let killed = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(killed.success());
        std::thread::sleep(Duration::from_millis(200));
        // Right after the kill: only the victim's users fail, with 503, and at once
        // (the master is not connected: no commit waits for --redis-timeout-ms).
        for (i, u) in users.iter().enumerate() {
            let sent = std::time::Instant::now();
            let r = sip(&node, "REGISTER", u, &format!("fo-{u}"), 2, true);
            if owner(u) == victim {
                assert!(
                    status_line(&r) == "SIP/2.0 503 Location Store Unavailable"
                        || status_line(&r) == "SIP/2.0 200 OK",
                    "user {i}: {r}"
                );
                assert!(
                    sent.elapsed() < Duration::from_millis(500),
                    "user {i}: answered after {:?}",
                    sent.elapsed()
                );
            } else {
                assert_eq!(
                    status_line(&r),
                    "SIP/2.0 200 OK",
                    "user {i} on a live master: {r}"
                );
            }
        }
        // A node started now, while the slot map still names the dead master, starts
        // (its connection to the dead master is down, and retried) and serves the
        // other masters' users.
        let live_seed = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .find(|a| !a.ends_with(&format!(":{port}")))
            .unwrap();
        let late = Node::start("127.0.0.7", &live_seed);
        let elsewhere = users.iter().find(|u| owner(u) != victim).unwrap();
        let r = sip(
            &late,
            "REGISTER",
            elsewhere,
            &format!("late-{elsewhere}"),
            1,
            true,
        );
        assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
        drop(late);
        // The replica takes over (cluster-node-timeout 2 s in the test cluster): the
        // node learns the new slot map and reads the victim's slots again.
        let u = on_victim[0];
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut cseq = 3;
        loop {
            let r = sip(&node, "REGISTER", u, &format!("fo-{u}"), cseq, false);
            cseq += 1;
            if status_line(&r) == "SIP/2.0 200 OK" {
                break;
            }
            assert_eq!(
                status_line(&r),
                "SIP/2.0 503 Location Store Unavailable",
                "{r}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no recovery within 30 s after the failover"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        loader.join().expect("the loader")
    });
    assert!(
        acked_under_load.len() > 20,
        "too few REGISTERs acknowledged under load: {}",
        acked_under_load.len()
    );
    // No acknowledged binding lost: every AOR answered 200 (before the kill, or during
    // it on a live master) lists its binding after the failover.
    for u in users.iter().chain(&acked_under_load) {
        let call_id = if u.starts_with("ld") {
            format!("ld-{u}")
        } else {
            format!("fo-{u}")
        };
        // Each core learns the new slot map on its own: a 503 may come first.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let r = loop {
            let r = sip(&node, "REGISTER", u, &format!("{call_id}-check"), 1, false);
            if status_line(&r) != "SIP/2.0 503 Location Store Unavailable"
                || std::time::Instant::now() > deadline
            {
                break r;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{u}: {r}");
        let want = format!("Contact: <sip:{u}@192.0.2.1:5060>;expires=");
        let listed = contact_lines(&r);
        assert!(
            listed.len() == 1 && listed[0].starts_with(&want),
            "{u}: the binding acknowledged with 200 is gone after the failover: {r}"
        );
    }
    // What happened was logged and counted: the lost connection (by reason) and the
    // connection to the master that took over.
    assert!(
        node.logged(&["connection lost", port]),
        "{:?}",
        node.redis_log.lock().unwrap()
    );
    assert!(node.metric("sipreg_redis_commits_failed_total{reason=\"connection\"}") > 0);
    assert!(
        node.metric("sipreg_redis_connections_lost_total") >= 2,
        "one per core"
    );
    assert!(
        node.metric("sipreg_redis_reconnects_total") >= 2,
        "the new master, per core"
    );

    a_slow_replica_fails_wait(cluster, d, &node, &victim);
    a_restarted_master_rejoins_and_writes_resume(cluster, &node, port, on_victim[0]);
}

/// The end of a failover: the killed master is restarted (as an operator or systemd
/// would), rejoins as a replica of the node that took over, and with a replica again the
/// new master accepts writes (`min-replicas-to-write 1` refused them meanwhile, with
/// 503 `noreplicas`): a new binding of a user on those slots gets 200.
fn a_restarted_master_rejoins_and_writes_resume(
    cluster: &ClusterGuard,
    node: &Node,
    port: &str,
    user: &str,
) {
    let conf = cluster.dir.join(format!("node-{port}/redis.conf"));
    let started = Command::new("redis-server")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-server");
    assert!(started.success(), "restart {}", conf.display());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut cseq = 1;
    loop {
        let r = sip(
            node,
            "REGISTER",
            user,
            &format!("rejoin-{user}"),
            cseq,
            true,
        );
        cseq += 1;
        if status_line(&r) == "SIP/2.0 200 OK" {
            break;
        }
        assert_eq!(
            status_line(&r),
            "SIP/2.0 503 Location Store Unavailable",
            "{r}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "writes on {user}'s slots did not resume within 30 s of the restart"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `--redis-wait 1` against a replica that stops acknowledging (SIGSTOP: its link stays
/// up, so the master still counts it good for `min-replicas-to-write`): `WAIT` answers 0
/// within `--redis-wait-timeout-ms`, the new binding gets 503 and is counted as `wait`,
/// and it is on the master all the same (nothing rolled back; the UA's retry gets 200).
fn a_slow_replica_fails_wait(cluster: &ClusterGuard, d: &Driver, node: &Node, dead: &str) {
    let master = d
        .map
        .nodes()
        .iter()
        .find(|n| n.as_str() != dead)
        .expect("a live master")
        .clone();
    let (host, port) = master.rsplit_once(':').unwrap();
    let info = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "info", "replication"])
        .output()
        .expect("redis-cli");
    let info = String::from_utf8_lossy(&info.stdout);
    let replica_port = info
        .lines()
        .find_map(|l| l.strip_prefix("slave0:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("port=")))
        .unwrap_or_else(|| panic!("{master} has no replica:\n{info}"))
        .trim()
        .to_owned();
    let pid_file = cluster.dir.join(format!("node-{replica_port}/redis.pid"));
    let pid = std::fs::read_to_string(&pid_file).expect("the replica's pid file");
    let pid = pid.trim();
    let user = (0..)
        .map(|i| format!("wt{i}"))
        .find(|u| {
            let aor = format!("{u}@example.com");
            d.map.node_for_slot(key_slot(&key_of(&aor))) == Some(master.as_str())
        })
        .unwrap();
    let before = node.metric("sipreg_redis_commits_failed_total{reason=\"wait\"}");
    assert!(
        Command::new("kill")
            .args(["-STOP", pid])
            .status()
            .unwrap()
            .success()
    );
    let r = sip(node, "REGISTER", &user, "wt-1", 1, true);
    assert!(
        Command::new("kill")
            .args(["-CONT", pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        status_line(&r),
        "SIP/2.0 503 Location Store Unavailable",
        "a binding no replica acknowledged: {r}"
    );
    assert_eq!(
        node.metric("sipreg_redis_commits_failed_total{reason=\"wait\"}"),
        before + 1
    );
    // Written on the master, not acknowledged: a fetch lists it, and the UA's retry
    // (a new CSeq) is a refresh, answered 200 once the replica is back.
    let r = sip(node, "REGISTER", &user, "wt-1", 2, false);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(contact_lines(&r).len(), 1, "{r}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut cseq = 3;
    loop {
        let r = sip(node, "REGISTER", &user, "wt-1", cseq, true);
        if status_line(&r) == "SIP/2.0 200 OK" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 200 after the replica resumed: {r}"
        );
        cseq += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What a REGISTER asks for.
enum Ask<'a> {
    /// No Contact: list the bindings.
    Fetch,
    /// `Contact: *` with `Expires: 0`.
    Star,
    /// These contacts, each with its `expires` parameter.
    Contacts(&'a [(String, u32)]),
}

/// Sends one REGISTER for `user` to `to` and returns the response text.
fn register(
    to: std::net::SocketAddr,
    user: &str,
    call_id: &str,
    cseq: u32,
    branch: &str,
    ask: &Ask,
) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let port = sock.local_addr().unwrap().port();
    let m = register_bytes(port, user, call_id, cseq, branch, ask);
    sock.send_to(m.as_bytes(), to).unwrap();
    let mut buf = [0u8; 8192];
    let n = sock.recv(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The text of a REGISTER from a client on 127.0.0.1:`port`.
fn register_bytes(
    port: u16,
    user: &str,
    call_id: &str,
    cseq: u32,
    branch: &str,
    ask: &Ask,
) -> String {
    let mut m = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f1\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    match ask {
        Ask::Fetch => {}
        Ask::Star => m.push_str("Contact: *\r\nExpires: 0\r\n"),
        Ask::Contacts(cs) => {
            for (uri, expires) in cs.iter() {
                m.push_str(&format!("Contact: <{uri}>;expires={expires}\r\n"));
            }
        }
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

/// A response's status line and its bindings as (URI, expires), sorted by URI.
fn outcome(r: &str) -> (String, Vec<(String, u32)>) {
    let mut bindings: Vec<(String, u32)> = contact_lines(r)
        .iter()
        .map(|l| {
            let (uri, rest) = l
                .trim_start_matches("Contact: <")
                .split_once('>')
                .expect("Contact: <uri>");
            let expires = rest
                .split(';')
                .find_map(|p| p.strip_prefix("expires="))
                .and_then(|e| e.trim().parse().ok())
                .expect("each listed binding has expires");
            (uri.to_owned(), expires)
        })
        .collect();
    bindings.sort();
    (status_line(r).to_owned(), bindings)
}

/// The same two answers, allowing the listed expiries to differ by the second or two
/// the two clocks (Redis's, the memory node's) can be apart when each counts down.
fn same_answer(shared: &str, single: &str) -> bool {
    let (a, b) = (outcome(shared), outcome(single));
    a.0 == b.0
        && a.1.len() == b.1.len()
        && a.1
            .iter()
            .zip(&b.1)
            .all(|(x, y)| x.0 == y.0 && x.1.abs_diff(y.1) <= 2)
}

/// Issue 15: three nodes sharing one location answer exactly as one node does. A
/// seeded script of REGISTERs (adds, refreshes, removals, `*`, several contacts at
/// once, stale CSeqs, max contacts, fetches, a retransmission sent to another node)
/// goes, request by request, to a node chosen at random among three `--location
/// redis` nodes and to one `--location memory` node; status lines and binding lists
/// must match.
fn three_nodes_answer_as_one(nodes: &[Node]) {
    let single = Node::start_with("127.0.0.5", None, false, &["--max-contacts", "2"]);
    let mut rng = Rng(0x5eed_0015);
    let users: Vec<String> = (0..12).map(|i| format!("same{i}")).collect();
    // Per (user, Call-ID): the next CSeq to send.
    let mut next_cseq: HashMap<(usize, u64), u32> = HashMap::new();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for step in 0..400 {
        let u = rng.below(users.len() as u64) as usize;
        let call = rng.below(3);
        let cseq_slot = next_cseq.entry((u, call)).or_insert(1);
        // One request in four reuses an older CSeq (§10.3 step 7: refused when the
        // Call-ID has a binding).
        let cseq = if rng.below(4) == 0 && *cseq_slot > 2 {
            *cseq_slot - 2
        } else {
            *cseq_slot += 1;
            *cseq_slot - 1
        };
        let contacts: Vec<(String, u32)> = (0..=rng.below(2))
            .map(|_| {
                let dev = rng.below(4);
                let expires = [0, 60, 300, 3600][rng.below(4) as usize];
                (format!("sip:{}@192.0.2.{dev}:5060", users[u]), expires)
            })
            .collect();
        let ask = match rng.below(10) {
            0 => Ask::Fetch,
            1 => Ask::Star,
            _ => Ask::Contacts(&contacts),
        };
        let call_id = format!("same-{u}-{call}");
        let branch = format!("same-{step}");
        let node = &nodes[rng.below(nodes.len() as u64) as usize];
        let shared = register(node.addr, &users[u], &call_id, cseq, &branch, &ask);
        let one = register(single.addr, &users[u], &call_id, cseq, &branch, &ask);
        assert!(
            same_answer(&shared, &one),
            "step {step}: shared location (node {}) answered\n{shared}\nbut one node answered\n{one}",
            node.addr
        );
        *statuses.entry(outcome(&one).0).or_default() += 1;
        // Now and then the proxy fails over: the same transaction reaches another
        // node, which must give the same answer and change nothing.
        if rng.below(10) == 0 && status_line(&shared) == "SIP/2.0 200 OK" {
            let other = &nodes[(rng.below(nodes.len() as u64 - 1) as usize + 1) % nodes.len()];
            let again = register(other.addr, &users[u], &call_id, cseq, &branch, &ask);
            assert!(
                same_answer(&again, &shared),
                "step {step}: retransmission\n{again}\nvs\n{shared}"
            );
        }
    }
    // The script exercised what it claims to.
    for want in [
        "SIP/2.0 200 OK",
        "SIP/2.0 400 Invalid CSeq",
        "SIP/2.0 503 Too Many Registered Contacts",
    ] {
        assert!(
            statuses.get(want).copied().unwrap_or(0) > 5,
            "few {want:?}: {statuses:?}"
        );
    }
}

/// Issue 15: when three nodes race on one AOR, the limits hold as on one node. Max
/// contacts: three devices register the same AOR at once through three nodes; exactly
/// two are acknowledged and listed. CSeq ordering: three nodes send interleaved CSeqs
/// of one Call-ID at once; the binding left is the highest acknowledged one's.
/// Runs `f(t, node, barrier)` for every node at once, one thread each; the barrier
/// lines their requests up. Returns each thread's result, in node order.
fn on_every_node<T: Send>(
    nodes: &[Node],
    f: impl Fn(usize, &Node, &std::sync::Barrier) -> T + Sync,
) -> Vec<T> {
    let barrier = std::sync::Barrier::new(nodes.len());
    let (f, barrier) = (&f, &barrier);
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(t, node)| s.spawn(move || f(t, node, barrier)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn racing_nodes_keep_the_limits(nodes: &[Node]) {
    const AORS: usize = 60;
    let acked: Vec<Vec<bool>> = on_every_node(nodes, |t, node, barrier| {
        (0..AORS)
            .map(|a| {
                let user = format!("race{a}");
                let cs = [(format!("sip:{user}@192.0.2.{t}:5060"), 600)];
                barrier.wait();
                let tag = format!("race-{a}-{t}");
                let r = register(node.addr, &user, &tag, 1, &tag, &Ask::Contacts(&cs));
                match status_line(&r) {
                    "SIP/2.0 200 OK" => true,
                    "SIP/2.0 503 Too Many Registered Contacts" => false,
                    other => panic!("race{a} device {t}: {other}"),
                }
            })
            .collect()
    });
    for a in 0..AORS {
        let user = format!("race{a}");
        let winners: Vec<String> = (0..nodes.len())
            .filter(|&t| acked[t][a])
            .map(|t| format!("sip:{user}@192.0.2.{t}:5060"))
            .collect();
        assert_eq!(
            winners.len(),
            2,
            "{user}: {} devices acknowledged with max contacts 2",
            winners.len()
        );
        let listed = outcome(&register(
            nodes[a % nodes.len()].addr,
            &user,
            "race-fetch",
            1,
            &format!("race-fetch-{a}"),
            &Ask::Fetch,
        ));
        let listed: Vec<String> = listed.1.into_iter().map(|b| b.0).collect();
        assert_eq!(
            listed, winners,
            "{user}: listed bindings are not the acknowledged ones"
        );
    }

    // CSeq ordering: node t sends CSeq t+1, t+1+n, ... of one Call-ID, each asking
    // for expires 100 + CSeq, all nodes at once per round.
    const ROUNDS: u32 = 40;
    let n = nodes.len() as u32;
    let accepted: Vec<Vec<u32>> = on_every_node(nodes, |t, node, barrier| {
        let mut mine = Vec::new();
        for round in 0..ROUNDS {
            let cseq = round * n + t as u32 + 1;
            let cs = [("sip:order@192.0.2.9:5060".to_owned(), 100 + cseq)];
            barrier.wait();
            let tag = format!("order-{cseq}");
            let r = register(
                node.addr,
                "order",
                "order-1",
                cseq,
                &tag,
                &Ask::Contacts(&cs),
            );
            match status_line(&r) {
                "SIP/2.0 200 OK" => mine.push(cseq),
                "SIP/2.0 400 Invalid CSeq" => {}
                other => panic!("order CSeq {cseq}: {other}"),
            }
        }
        mine
    });
    let highest = accepted
        .iter()
        .flatten()
        .copied()
        .max()
        .expect("some CSeq accepted");
    assert!(
        highest > (ROUNDS - 1) * n,
        "the last round's CSeqs are the highest sent: {highest}"
    );
    let (_, listed) = outcome(&register(
        nodes[0].addr,
        "order",
        "order-fetch",
        1,
        "order-fetch",
        &Ask::Fetch,
    ));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].1.abs_diff(100 + highest) <= 2,
        "the binding has expires {} but the highest acknowledged CSeq {highest} asked for {}",
        listed[0].1,
        100 + highest
    );
}

/// Issue 15: a sipreg node killed with -9 loses nothing it acknowledged. A client
/// registers through one node while the node is killed; every REGISTER answered 200
/// before the kill is listed by another node.
fn a_killed_node_loses_nothing(seed: &str, survivor: &Node) {
    let mut victim = Node::start_with("127.0.0.6", Some(seed), false, &["--max-contacts", "2"]);
    let to = victim.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut acked = Vec::new();
            for i in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let user = format!("kill{i}");
                let cs = [(format!("sip:{user}@192.0.2.7:5060"), 600)];
                let m = register_bytes(
                    sock.local_addr().unwrap().port(),
                    &user,
                    &format!("kill-{i}"),
                    1,
                    &format!("kill-{i}"),
                    &Ask::Contacts(&cs),
                );
                sock.send_to(m.as_bytes(), to).unwrap();
                let mut buf = [0u8; 4096];
                match sock.recv(&mut buf) {
                    Ok(n)
                        if status_line(&String::from_utf8_lossy(&buf[..n])) == "SIP/2.0 200 OK" =>
                    {
                        acked.push(user)
                    }
                    Ok(_) => {}
                    // The node is gone: nothing more is acknowledged.
                    Err(_) => break,
                }
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    victim.child.kill().expect("kill -9 the node");
    let _ = victim.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = client.join().unwrap();
    assert!(
        acked.len() >= 20,
        "only {} REGISTERs acknowledged before the kill",
        acked.len()
    );
    for user in &acked {
        let (status, listed) = outcome(&register(
            survivor.addr,
            user,
            "kill-fetch",
            1,
            &format!("kill-fetch-{user}"),
            &Ask::Fetch,
        ));
        assert_eq!(status, "SIP/2.0 200 OK");
        assert_eq!(
            listed.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            [format!("sip:{user}@192.0.2.7:5060")],
            "{user} was acknowledged by the killed node but is not listed"
        );
    }
}

/// Issue 15's three nodes on 127.0.0.2–127.0.0.4, each `--max-contacts 2`.
fn three_sipreg_nodes(seed: &str) {
    let nodes: Vec<Node> = (2..=4)
        .map(|i| {
            Node::start_with(
                &format!("127.0.0.{i}"),
                Some(seed),
                false,
                &["--max-contacts", "2"],
            )
        })
        .collect();
    three_nodes_answer_as_one(&nodes);
    racing_nodes_keep_the_limits(&nodes);
    a_killed_node_loses_nothing(seed, &nodes[0]);
}

/// Runs one management API op of the script on `aor` (Call-ID `sipreg-admin`, CSeq 0,
/// as `admin::redis_view` sends them).
fn admin_op(d: &mut Driver, aor: &str, op: CommitOp<'_>) -> CommitReply<'static> {
    d.commit(&CommitIntent {
        aor_key: aor.as_bytes(),
        call_id: b"sipreg-admin",
        cseq: 0,
        branch_hash: 0,
        max_contacts: 1024,
        policy: MaxContactsPolicy::Reject,
        op,
    })
    .expect("a commit reply")
}

/// The management API's ops: atomic like a REGISTER, but an operator's add or removal
/// is not subject to the CSeq rule, and `D` says how many bindings it removed.
fn admin_ops_skip_the_cseq_rule(d: &mut Driver) {
    let aor = "olga@example.com";
    let cs = [ct("sip:olga@192.0.2.60", 60), ct("sip:olga@192.0.2.61", 60)];
    let r = req(aor, "sipreg-admin", 50).run(d, Op::Update(&cs));
    assert_eq!((r.status, r.bindings.len()), (CommitStatus::Ok, 2));
    let refresh = [ct("sip:olga@192.0.2.60", 120)];
    // A REGISTER with the API's Call-ID and CSeq 0 is out of order ...
    assert_eq!(
        req(aor, "sipreg-admin", 0)
            .run(d, Op::Update(&refresh))
            .status,
        CommitStatus::InvalidCSeq
    );
    // ... the API's update (`A`) is not, and it is applied again when repeated (not a
    // retransmission).
    for _ in 0..2 {
        let r = admin_op(d, aor, CommitOp::AdminUpdate(&intents(&refresh)));
        assert_eq!((r.status, r.bindings.len()), (CommitStatus::Ok, 2));
        let b = r
            .bindings
            .iter()
            .find(|b| b.contact == b"sip:olga@192.0.2.60")
            .unwrap();
        assert!((119..=120).contains(&b.expires_s), "{}", b.expires_s);
        assert_eq!(b.cseq, 0);
    }
    // `D` of one contact, spelled differently: only it goes, counted.
    let gone = [ct("sip:%6Flga@192.0.2.61", 0)];
    let r = admin_op(d, aor, CommitOp::AdminRemove(&intents(&gone)));
    assert_eq!((r.status, r.evicted), (CommitStatus::Ok, 1));
    assert_eq!(contacts(&r), ["sip:olga@192.0.2.60"]);
    let pttl = d.int(&key_of(aor), "PTTL");
    assert!((110_000..=120_000).contains(&pttl), "key TTL: {pttl}");
    let r = admin_op(d, aor, CommitOp::AdminRemove(&intents(&gone)));
    assert_eq!(
        (r.evicted, r.bindings.len()),
        (0, 1),
        "nothing left to remove"
    );
    // Two flows of one instance share a contact URI: removing the contact removes both.
    let mut flows = [
        ct("sip:olga@198.51.100.8:41000", 60),
        ct("sip:olga@198.51.100.8:41000", 60),
    ];
    for (i, f) in flows.iter_mut().enumerate() {
        f.instance = Some("\"<urn:uuid:0a>\"");
        f.reg_id = Some(i as u32 + 1);
    }
    assert_eq!(
        req(aor, "cid-o", 1)
            .run(d, Op::Update(&flows))
            .bindings
            .len(),
        3
    );
    let both = [ct("sip:olga@198.51.100.8:41000", 0)];
    let r = admin_op(d, aor, CommitOp::AdminRemove(&intents(&both)));
    assert_eq!((r.evicted, r.bindings.len()), (2, 1));
    // `D` with no contact removes every binding, whatever Call-ID and CSeq wrote them.
    req(aor, "cid-o", 9).run(d, Op::Update(&[ct("sip:olga@192.0.2.62", 60)]));
    let r = admin_op(d, aor, CommitOp::AdminRemove(&[]));
    assert_eq!(
        (r.status, r.evicted, r.bindings.len()),
        (CommitStatus::Ok, 2, 0)
    );
    assert_eq!(d.int(&key_of(aor), "EXISTS"), 0, "the key is gone");
    let r = admin_op(d, aor, CommitOp::AdminRemove(&[]));
    assert_eq!(r.evicted, 0);
}

fn intents(cs: &[Ct]) -> Vec<ContactIntent<'_>> {
    cs.iter().map(Ct::intent).collect()
}

/// A loopback TCP address nothing listens on (bound, then closed).
fn free_tcp_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// One HTTP/1.0 request to a management API: the status and the JSON body.
fn http(admin: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = http_text(admin, method, path, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

/// One HTTP/1.0 request to a management API: the status and the body.
fn http_text(admin: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(admin).expect("the management API");
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("an HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.expect("an HTTP status"), body.to_owned())
}

/// Every AOR a dump of `admin` lists, `limit` per page, following the cursors.
fn dump_all(admin: &str, limit: usize) -> Vec<String> {
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    for _ in 0..10_000 {
        let (status, v) = http(
            admin,
            "GET",
            &format!("/v1/aors?limit={limit}&cursor={cursor}"),
            "",
        );
        assert_eq!(status, 200, "{v}");
        let aors = v["aors"].as_array().expect("aors");
        assert!(aors.len() <= limit, "{v}");
        seen.extend(aors.iter().map(|a| a["aor"].as_str().unwrap().to_owned()));
        match v["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return seen,
        }
    }
    panic!("the dump did not end");
}

fn ctl(admin: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sipreg"))
        .args(["ctl", "--admin", admin])
        .args(args)
        .output()
        .expect("run sipreg ctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sipreg ctl {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Issue 15: the management API of a `--location redis` node reads and changes the
/// shared location. What node A registered, node B's API shows (with what the REGISTER
/// said), dumps, changes and removes, and A's next REGISTER sees it; `sipreg ctl` works
/// against B unchanged.
fn admin_api_on_redis_nodes(d: &mut Driver, seed: &str) {
    let admin = free_tcp_addr();
    let a = Node::start("127.0.0.5", seed);
    let _b = Node::start_with_admin("127.0.0.6", seed, &admin);
    let r = sip(&a, "REGISTER", "ursula", "adm-1", 1, true);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");

    let (status, v) = http(&admin, "GET", "/v1/aors/ursula@example.com", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["aor"], "ursula@example.com");
    let bindings = v["bindings"].as_array().expect("bindings");
    assert_eq!(bindings.len(), 1, "{v}");
    let b = &bindings[0];
    assert_eq!(b["contact"], "sip:ursula@192.0.2.1:5060", "{v}");
    assert_eq!((&b["call_id"], &b["cseq"]), (&"adm-1".into(), &1.into()));
    assert_eq!(b["transport"], "udp");
    assert!(
        b["source"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    let expires = b["expires"].as_u64().unwrap();
    assert!((590..=600).contains(&expires), "{v}");
    assert_eq!(
        http(&admin, "GET", "/v1/aors/nobody@example.com", "").0,
        404
    );

    // A dump one AOR per page walks every master and lists each AOR once (four AORs
    // on three masters: one master's SCAN step gives more keys than a page holds).
    for user in ["victor", "walter", "xena"] {
        let r = sip(&a, "REGISTER", user, "adm-2", 1, true);
        assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    }
    let seen = dump_all(&admin, 1);
    for user in ["ursula", "victor", "walter", "xena"] {
        let aor = format!("{user}@example.com");
        assert_eq!(seen.iter().filter(|s| **s == aor).count(), 1, "{seen:?}");
    }
    assert_eq!(
        http(&admin, "GET", "/v1/aors?cursor=9.0", "").0,
        400,
        "a cursor naming no master"
    );

    // An add through B is what A's next REGISTER lists, beside the phone's binding.
    let (status, v) = http(
        &admin,
        "POST",
        "/v1/aors/ursula@example.com/bindings",
        r#"{"contact": "sip:ursula@198.51.100.9", "expires": 120, "q": 0.5}"#,
    );
    assert_eq!(status, 201, "{v}");
    let r = sip(&a, "REGISTER", "ursula", "adm-1", 2, false);
    let listed = contact_lines(&r);
    assert_eq!(listed.len(), 2, "{r}");
    assert!(
        listed
            .iter()
            .any(|l| l.contains("<sip:ursula@198.51.100.9>")),
        "{r}"
    );
    let (_, v) = http(&admin, "GET", "/v1/aors/ursula@example.com", "");
    let added = v["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["contact"] == "sip:ursula@198.51.100.9")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        (&added["call_id"], &added["q"]),
        (&"sipreg-admin".into(), &0.5.into())
    );

    // `sipreg ctl` against B: show and dump print what A registered.
    let shown = ctl(&admin, &["show", "ursula@example.com"]);
    assert!(shown.contains("sip:ursula@192.0.2.1:5060"), "{shown}");
    assert!(shown.contains("sip:ursula@198.51.100.9"), "{shown}");
    let dumped = ctl(&admin, &["dump", "--page", "1"]);
    assert!(dumped.contains("victor@example.com"), "{dumped}");

    // Remove one contact through B, then the whole AOR: A's next REGISTER lists nothing.
    let one = "/v1/aors/ursula@example.com/bindings?contact=sip%3Aursula%40198.51.100.9";
    let (status, v) = http(&admin, "DELETE", one, "");
    assert_eq!((status, &v["removed"]), (200, &1.into()), "{v}");
    assert_eq!(http(&admin, "DELETE", one, "").0, 404);
    let (status, v) = http(&admin, "DELETE", "/v1/aors/ursula@example.com", "");
    assert_eq!((status, &v["removed"]), (200, &1.into()), "{v}");
    let r = sip(&a, "REGISTER", "ursula", "adm-1", 3, false);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(contact_lines(&r), Vec::<&str>::new(), "{r}");
    assert_eq!(
        http(&admin, "GET", "/v1/aors/ursula@example.com", "").0,
        404
    );

    // A key under our prefix that is not a binding hash: that AOR answers 500 (counted
    // in /metrics), and a dump walks past it.
    let broken = key_of("broken@example.com");
    d.call(&broken, &[&b"SET"[..], &broken, b"not a hash"]);
    let (status, v) = http(&admin, "GET", "/v1/aors/broken@example.com", "");
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Redis"), "{v}");
    let (_, metrics) = http_text(&admin, "GET", "/metrics", "");
    assert!(metrics.contains("sipreg_admin_failed_total 1"), "{metrics}");
    let seen = dump_all(&admin, 100);
    assert!(seen.contains(&"victor@example.com".to_owned()), "{seen:?}");

    // Flush: every AOR of the cluster goes (what earlier checks left too).
    assert_eq!(http(&admin, "POST", "/v1/flush", "").0, 400);
    let (status, v) = http(&admin, "POST", "/v1/flush?confirm=yes", "");
    assert_eq!(status, 200, "{v}");
    assert!(v["removed"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(dump_all(&admin, 100), Vec::<String>::new());
    let r = sip(&a, "INVITE", "victor", "adm-inv", 1, false);
    assert_eq!(status_line(&r), "SIP/2.0 404 Not Found", "{r}");
    d.call(&broken, &[&b"DEL"[..], &broken]);

    // Redis closes the API's idle connections (a restart, `timeout`, CLIENT KILL): the
    // next request reconnects instead of failing.
    for master in d.map.nodes().to_vec() {
        let kill: [&[u8]; 5] = [b"CLIENT", b"KILL", b"SKIPME", b"yes", b"TYPE"];
        let killed = d.call_on(&master, &[&kill[..], &[&b"normal"[..]]].concat());
        assert!(matches!(killed, Reply::Int(n) if n > 0), "{killed:?}");
    }
    let (status, v) = http(&admin, "GET", "/v1/aors/ursula@example.com", "");
    assert_eq!(status, 404, "{v}");
    let (status, v) = http(&admin, "GET", "/v1/aors?limit=5", "");
    assert_eq!(status, 200, "{v}");
}

/// Issue 16: in the shared location a binding registered straight over a connection
/// carries its flow with the node that holds it (`--node-id`): another node's API
/// shows which node and connection reach it.
fn a_flow_names_the_node_that_holds_it(seed: &str) {
    let tcp = std::net::TcpListener::bind("127.0.0.7:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let listen = format!("tcp:{tcp}");
    let a = Node::start_with(
        "127.0.0.7",
        Some(seed),
        false,
        &["--listen", &listen, "--node-id", "node-a"],
    );
    let admin = free_tcp_addr();
    let _b = Node::start_with_admin("127.0.0.8", seed, &admin);
    let mut c = TcpStream::connect(tcp).expect("node a's TCP listener");
    c.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let local = c.local_addr().unwrap();
    write!(
        c,
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-flow1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:yolanda@example.com>;tag=f1\r\n\
         To: <sip:yolanda@example.com>\r\nCall-ID: flow-1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:yolanda@{local};transport=tcp>\r\nExpires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).expect("a 200 on the connection");
    let r = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    let (status, v) = http(&admin, "GET", "/v1/aors/yolanda@example.com", "");
    assert_eq!(status, 200, "{v}");
    let b = &v["bindings"][0];
    assert_eq!(b["transport"], "tcp", "{v}");
    assert_eq!(b["flow"]["node"], "node-a", "{v}");
    assert!(
        b["flow"]["slot"].is_u64() && b["flow"]["generation"].is_u64(),
        "{v}"
    );
    drop(a);
}
