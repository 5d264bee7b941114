//! The management API, `/metrics` and `sipreg ctl` against the real binary, with a
//! real HTTP client (ureq) on loopback while REGISTERs are flowing.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Client, SIPREG, Server, free_tcp_addr, unique};

fn cores() -> &'static str {
    if thread::available_parallelism().map_or(1, usize::from) >= 2 {
        "2"
    } else {
        "1"
    }
}

/// Start a server with the API on a free port; returns it and the API base URL.
fn start_with_api() -> (Server, String) {
    let admin = free_tcp_addr();
    let server = Server::start(&["--cores", cores(), "--admin", &admin]);
    (server, format!("http://{admin}"))
}

/// (status, JSON body) of one API call; never fails on an HTTP error status.
fn api(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let request = ureq::request(method, url).timeout(Duration::from_secs(5));
    let result = match body {
        Some(b) => request.send_string(b),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

fn text(url: &str) -> String {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .expect("GET")
        .into_string()
        .expect("body")
}

/// A REGISTER without Contact (a fetch, RFC 3261 §10.3 step 6) for `aor`.
fn fetch(client: &Client, aor: &str) -> crate::util::Response {
    let n = unique();
    let domain = aor.rsplit_once('@').map_or(aor, |(_, d)| d);
    client.request(&format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-fetch{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <{aor}>\r\n\
         From: <{aor}>;tag=f{n}\r\n\
         Call-ID: fetch-{n}\r\n\
         CSeq: 1 REGISTER\r\n\
         Content-Length: 0\r\n\r\n",
        local = client.local(),
    ))
}

/// Registers keep flowing from another thread while the API is used.
struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

impl Background {
    fn start(server: &Server) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = server.addr;
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let client = Client::new(addr);
            let mut ok = 0;
            let mut i = 0u32;
            while !flag.load(Ordering::Relaxed) {
                i += 1;
                let aor = format!("sip:bg{}@example.com", i % 50);
                let contact = format!("sip:bg@{}", client.local());
                if client
                    .register(&aor, &contact, 600, &format!("bg-{i}"), i)
                    .status
                    == 200
                {
                    ok += 1;
                }
            }
            ok
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("background"))
    }
}

/// Show, dump, add, remove and flush through the API while REGISTERs flow; a REGISTER
/// fetch sees what the API removed; stats and metrics count what happened.
#[test]
fn api_reads_and_changes_bindings_while_registers_flow() {
    let (server, base) = start_with_api();
    let background = Background::start(&server);
    let client = Client::new(server.addr);
    for i in 0..5 {
        let aor = format!("sip:user{i}@example.com");
        let contact = format!("sip:user{i}@{}", client.local());
        assert_eq!(
            client
                .register(&aor, &contact, 300, &format!("c{i}"), 1)
                .status,
            200
        );
    }

    assert_eq!(api("GET", &format!("{base}/healthz"), None).0, 200);
    assert_eq!(api("GET", &format!("{base}/readyz"), None).0, 200);

    // One AOR: every binding field.
    let (status, aor) = api("GET", &format!("{base}/v1/aors/user1@Example.COM"), None);
    assert_eq!(status, 200, "{aor}");
    assert_eq!(aor["aor"], "user1@example.com");
    let b = &aor["bindings"][0];
    assert_eq!(b["contact"], format!("sip:user1@{}", client.local()));
    assert_eq!(b["call_id"], "c1");
    assert_eq!(b["cseq"], 1);
    assert_eq!(b["source"], client.local().to_string());
    let expires = b["expires"].as_u64().expect("expires");
    assert!((290..=300).contains(&expires), "{b}");

    // Unknown AOR: 404 with a JSON message.
    let (status, err) = api("GET", &format!("{base}/v1/aors/nobody@example.com"), None);
    assert_eq!(status, 404);
    assert!(err["error"].is_string(), "{err}");

    // Dump in pages of 2 across shards: every AOR once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let (status, page) = api(
            "GET",
            &format!("{base}/v1/aors?limit=2&cursor={cursor}"),
            None,
        );
        assert_eq!(status, 200, "{page}");
        let aors = page["aors"].as_array().expect("aors");
        assert!(aors.len() <= 2);
        seen.extend(
            aors.iter()
                .map(|a| a["aor"].as_str().unwrap_or("").to_string()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    for i in 0..5 {
        let name = format!("user{i}@example.com");
        assert_eq!(
            seen.iter().filter(|s| **s == name).count(),
            1,
            "{name} in {seen:?}"
        );
    }

    // Delete an AOR: a REGISTER fetch no longer lists its contact.
    let (status, removed) = api("DELETE", &format!("{base}/v1/aors/user2@example.com"), None);
    assert_eq!(
        (status, removed["removed"].as_u64()),
        (200, Some(1)),
        "{removed}"
    );
    let fetched = fetch(&client, "sip:user2@example.com");
    assert_eq!(fetched.status, 200);
    assert!(fetched.contacts().is_empty(), "{}", fetched.raw);
    assert_eq!(
        api("GET", &format!("{base}/v1/aors/user2@example.com"), None).0,
        404
    );

    // Add a binding, then remove it by contact.
    let body = r#"{"contact": "sip:desk@10.0.0.7:5070", "expires": 120, "q": 0.5}"#;
    let (status, added) = api(
        "POST",
        &format!("{base}/v1/aors/user3@example.com/bindings"),
        Some(body),
    );
    assert_eq!(status, 201, "{added}");
    let fetched = fetch(&client, "sip:user3@example.com");
    assert_eq!(fetched.contacts().len(), 2, "{}", fetched.raw);
    let (_, aor) = api("GET", &format!("{base}/v1/aors/user3@example.com"), None);
    let desk = aor["bindings"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["contact"] == "sip:desk@10.0.0.7:5070"))
        .cloned()
        .expect("added binding");
    assert_eq!(desk["q"], 0.5);
    let (status, removed) = api(
        "DELETE",
        &format!("{base}/v1/aors/user3@example.com/bindings?contact=sip%3Adesk%4010.0.0.7%3A5070"),
        None,
    );
    assert_eq!(
        (status, removed["removed"].as_u64()),
        (200, Some(1)),
        "{removed}"
    );
    assert_eq!(fetch(&client, "sip:user3@example.com").contacts().len(), 1);

    // Stats and metrics count it all.
    let (status, stats) = api("GET", &format!("{base}/v1/stats"), None);
    assert_eq!(status, 200);
    assert_eq!(
        stats["cores"].as_array().map(Vec::len),
        Some(cores().parse().unwrap())
    );
    assert!(
        stats["total"]["requests"].as_u64().unwrap_or(0) >= 8,
        "{stats}"
    );
    assert_eq!(stats["total"]["admin_removed"], 2);
    let metrics = text(&format!("{base}/metrics"));
    for name in [
        "sipreg_requests_total{outcome=\"registered\"}",
        "sipreg_requests_by_method_total{method=\"REGISTER\",status=\"200\"}",
        "sipreg_bindings ",
        "sipreg_aors ",
        "sipreg_retransmissions_total",
        "sipreg_forwards_total",
        "sipreg_mesh_drops_total",
        "sipreg_expirations_total",
        "sipreg_transactions ",
        "sipreg_auth_challenges_total",
        "sipreg_socket_receive_drops_total",
        "sipreg_core_bindings{core=\"0\"}",
        "sipreg_admin_removals_total 2",
        "# EOF",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    // Each help text is one sentence: the encoder's full stop, not a second one.
    for help in metrics.lines().filter(|l| l.starts_with("# HELP")) {
        assert!(!help.ends_with(".."), "{help}");
    }
    // After the REGISTERs above: latency observed, the core has run and worked.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(value("sipreg_register_duration_seconds_count") >= 5.0);
    let sum = value("sipreg_register_duration_seconds_sum");
    assert!(sum > 0.0 && sum < 60.0, "{sum}");
    let (busy, total) = (
        value("sipreg_core_busy_seconds_total{core=\"0\"}"),
        value("sipreg_core_seconds_total{core=\"0\"}"),
    );
    assert!(
        busy > 0.0 && busy <= total && total < 600.0,
        "{busy} {total}"
    );
    assert!(value("sipreg_persistence_lag_bytes{core=\"0\"}") >= 0.0);
    assert_eq!(value("sipreg_store_write_errors_total"), 0.0);

    // Flush needs a confirmation, then empties the table.
    assert_eq!(api("POST", &format!("{base}/v1/flush"), Some("")).0, 400);
    assert!(background.finish() > 0, "no background REGISTER succeeded");
    let (status, flushed) = api("POST", &format!("{base}/v1/flush?confirm=yes"), Some(""));
    assert_eq!(status, 200, "{flushed}");
    assert!(flushed["removed"].as_u64().unwrap_or(0) >= 4, "{flushed}");
    let (_, page) = api("GET", &format!("{base}/v1/aors?limit=1000"), None);
    assert_eq!(page["aors"].as_array().map(Vec::len), Some(0), "{page}");
    assert!(
        fetch(&client, "sip:user0@example.com")
            .contacts()
            .is_empty()
    );
}

/// Malformed AORs, paths, bodies and parameters: 400 (or 404/405) with a JSON message;
/// a huge page is capped.
#[test]
fn api_rejects_bad_input_with_json() {
    let (_server, base) = start_with_api();
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/v1/aors/alice", None, 400),
        ("GET", "/v1/aors/@example.com", None, 400),
        ("GET", "/v1/aors/a%zz@example.com", None, 400),
        ("GET", "/v1/aors/a@b;x=y", None, 400),
        ("GET", "/v1/aors?limit=abc", None, 400),
        ("GET", "/v1/aors?limit=0", None, 400),
        ("GET", "/v1/aors?cursor=nonsense", None, 400),
        ("GET", "/v1/aors?cursor=999.0", None, 400),
        ("POST", "/v1/aors/a@example.com/bindings", Some("{"), 400),
        (
            "POST",
            "/v1/aors/a@example.com/bindings",
            Some(r#"{"contact": "http://x"}"#),
            400,
        ),
        (
            "POST",
            "/v1/aors/a@example.com/bindings",
            Some(r#"{"contact": "sip:a@b", "q": 2}"#),
            400,
        ),
        (
            "POST",
            "/v1/aors/a@example.com/bindings",
            Some(r#"{"contact": "sip:a@b", "expires": 0}"#),
            400,
        ),
        (
            "POST",
            "/v1/aors/a@example.com/bindings",
            Some(r#"{"contact": "sip:a@b", "x": 1}"#),
            400,
        ),
        ("DELETE", "/v1/aors/a@example.com/bindings", None, 400),
        ("DELETE", "/v1/aors/a@example.com", None, 404),
        ("PUT", "/v1/aors/a@example.com", None, 405),
        ("GET", "/v2/nothing", None, 404),
    ];
    for (method, path, body, want) in cases {
        let (status, value) = api(method, &format!("{base}{path}"), *body);
        assert_eq!(status, *want, "{method} {path}: {value}");
        assert!(
            value["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {value}"
        );
    }
    let (status, page) = api("GET", &format!("{base}/v1/aors?limit=99999999999999"), None);
    assert_eq!(
        (status, page["limit"].as_u64()),
        (200, Some(1000)),
        "{page}"
    );
}

/// `sipreg ctl` prints tables (and JSON with --json) from a running server.
#[test]
fn ctl_prints_tables() {
    let (server, base) = start_with_api();
    let admin = base.trim_start_matches("http://").to_string();
    let client = Client::new(server.addr);
    let contact = format!("sip:carol@{}", client.local());
    assert_eq!(
        client
            .register("sip:carol@example.com", &contact, 300, "ctl-1", 7)
            .status,
        200
    );
    let ctl = |args: &[&str]| {
        let out = Command::new(SIPREG)
            .arg("ctl")
            .args(["--admin", &admin])
            .args(args)
            .output()
            .expect("run ctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = ctl(&["show", "carol@example.com"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("CONTACT"), "{out}");
    assert!(out.contains(&contact) && out.contains("ctl-1"), "{out}");

    let (code, out, _) = ctl(&["dump"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("AOR") && out.contains("carol@example.com"),
        "{out}"
    );

    let (code, out, _) = ctl(&["stats"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("COUNTER") && out.contains("requests"), "{out}");

    let (code, out, _) = ctl(&["--json", "show", "carol@example.com"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["bindings"][0]["cseq"], 7);

    let (code, out, _) = ctl(&["rm", "carol@example.com", &contact]);
    assert_eq!(code, Some(0));
    assert!(out.contains("removed 1"), "{out}");
    let (code, _, err) = ctl(&["show", "carol@example.com"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");
}

/// A busy --admin port is a start-up error that names the flag; --admin off works;
/// --log-format json writes JSON lines.
#[test]
fn admin_flag_errors_and_json_logs() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (status, log) = crate::util::run_to_exit(&["--admin", &addr], Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("--admin"), "{log}");

    let (status, log) = crate::util::run_to_exit(&["--admin", "nowhere"], Duration::from_secs(15));
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("--admin"), "{log}");

    let admin = free_tcp_addr();
    let mut server = Server::start(&["--admin", &admin, "--log-format", "json"]);
    server.terminate(Duration::from_secs(10));
    let log = server.log();
    let first = log.lines().next().expect("a log line");
    let v: Value = serde_json::from_str(first).unwrap_or_else(|_| panic!("not JSON: {first}"));
    assert!(v["fields"]["message"].is_string(), "{first}");
    assert!(log.contains("management API on"), "{log}");
}

/// API changes are persisted like REGISTERs: after a graceful restart on the same
/// --data-dir, an AOR deleted through the API stays deleted and a binding added
/// through it is back.
#[test]
fn api_changes_survive_a_restart() {
    let dir = crate::util::DataDir::new();
    let admin = free_tcp_addr();
    let base = format!("http://{admin}");
    let flags = [
        "--cores",
        cores(),
        "--data-dir",
        &dir.arg(),
        "--admin",
        &admin,
    ];
    let mut server = Server::start(&flags);
    let client = Client::new(server.addr);
    for user in ["keep", "gone"] {
        let aor = format!("sip:{user}@example.com");
        let contact = format!("sip:{user}@{}", client.local());
        assert_eq!(client.register(&aor, &contact, 300, user, 1).status, 200);
    }
    assert_eq!(
        api("DELETE", &format!("{base}/v1/aors/gone@example.com"), None).0,
        200
    );
    let body = r#"{"contact": "sip:desk@10.0.0.7", "expires": 300}"#;
    let (status, _) = api(
        "POST",
        &format!("{base}/v1/aors/keep@example.com/bindings"),
        Some(body),
    );
    assert_eq!(status, 201);
    let status = server.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{}", server.log());

    let server = Server::start(&flags);
    let client = Client::new(server.addr);
    assert!(fetch(&client, "sip:gone@example.com").contacts().is_empty());
    let kept = fetch(&client, "sip:keep@example.com");
    assert_eq!(kept.contacts().len(), 2, "{}", kept.raw);
    let (status, aor) = api("GET", &format!("{base}/v1/aors/keep@example.com"), None);
    assert_eq!(status, 200);
    assert!(aor.to_string().contains("sip:desk@10.0.0.7"), "{aor}");
}

/// Exit status and stderr of `sipreg <args>` whose stdout is a pipe nobody reads:
/// the read end is closed before the child writes (the parent drops it at once, and
/// the child never held it), so every write fails with EPIPE, deterministically.
fn run_into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(SIPREG)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sipreg");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// See: issue 14. `sipreg ctl stats | head` panicked with "failed printing to stdout:
// Broken pipe" and a backtrace. Every subcommand (tables and --json), and --help, now
// ends quietly with status 0 when its reader has gone, as ripgrep does.
#[test]
fn ctl_in_a_closed_pipe_ends_quietly_with_status_0() {
    let (server, base) = start_with_api();
    let admin = base.trim_start_matches("http://").to_string();
    let client = Client::new(server.addr);
    let contact = format!("sip:pipe@{}", client.local());
    for i in 0..3 {
        let aor = format!("sip:pipe{i}@example.com");
        assert_eq!(
            client.register(&aor, &contact, 300, "pipe-1", 1).status,
            200
        );
    }
    let runs: [&[&str]; 10] = [
        &["stats"],
        &["--json", "stats"],
        &["show", "pipe0@example.com"],
        &["--json", "show", "pipe0@example.com"],
        &["dump", "--page", "1"],
        &["--json", "dump", "--page", "1"],
        &["rm", "pipe1@example.com"],
        &["--json", "rm", "pipe2@example.com"],
        &["--help"],
        &["stats", "--help"],
    ];
    for args in runs {
        let mut all = vec!["ctl", "--admin", &admin];
        all.extend_from_slice(args);
        let (code, err) = run_into_closed_pipe(&all);
        assert_eq!(code, Some(0), "sipreg {all:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace") && err.is_empty(),
            "sipreg {all:?} wrote to stderr: {err}"
        );
    }
    // The removals happened although nobody read their answer.
    let (code, err) =
        run_into_closed_pipe(&["ctl", "--admin", &admin, "show", "pipe1@example.com"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("404"), "{err}");
    // The server's own --help too.
    let (code, err) = run_into_closed_pipe(&["--help"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `sipreg ctl stats`: every number ends under the end of its column's title (they
/// are right-aligned), and `show`/`dump` rows put EXPIRES and CSEQ under their titles
/// whatever the contact's length.
#[test]
fn ctl_table_columns_line_up_with_their_headers() {
    let (server, base) = start_with_api();
    let admin = base.trim_start_matches("http://").to_string();
    let client = Client::new(server.addr);
    // Longer than the 40 characters the CONTACT column once had: later columns must
    // still sit under their titles.
    let contact = format!(
        "sip:cols@{};transport=udp;rinstance=3f2a9b1c0d4e5f60a1b2c3d4",
        client.local()
    );
    let r = client.register("sip:cols@example.com", &contact, 300, "cols-1", 12345);
    assert_eq!(r.status, 200);
    let ctl = |args: &[&str]| {
        let out = Command::new(SIPREG)
            .arg("ctl")
            .args(["--admin", &admin])
            .args(args)
            .output()
            .expect("run ctl");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stats = ctl(&["stats"]);
    let lines: Vec<&str> = stats.lines().collect();
    let head = lines[0];
    let titles: Vec<&str> = head.split_whitespace().skip(1).collect();
    assert_eq!(titles[0], "TOTAL", "{stats}");
    assert!(titles.len() >= 2, "{stats}");
    for title in titles {
        let end = head.find(title).unwrap() + title.len();
        for l in &lines[1..] {
            let b = l.as_bytes();
            assert!(
                b.len() >= end && b[end - 1] != b' ' && (b.len() == end || b[end] == b' '),
                "{title} column misaligned:\n{stats}"
            );
        }
    }
    for out in [ctl(&["show", "cols@example.com"]), ctl(&["dump"])] {
        let head = out.lines().next().unwrap();
        let row = out.lines().find(|l| l.contains("cols-1")).unwrap();
        let end = head.find("CSEQ").unwrap() + "CSEQ".len();
        assert_eq!(&row[end - 5..end], "12345", "{out}");
        let end = head.find("EXPIRES").unwrap() + "EXPIRES".len();
        assert!(row.as_bytes()[end - 1].is_ascii_digit(), "{out}");
        assert_eq!(row.as_bytes()[end], b' ', "{out}");
    }
}
