//! Persistence as an operator sees it: bindings survive a graceful restart and (in
//! `sync` mode) a kill -9, also one during online compaction; a torn tail is cut with a
//! warning; a store of another format version refuses to start; the shard count may
//! change between runs.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{Client, DataDir, Response, Server, register_request, run_to_exit, unique};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn aor(name: &str) -> String {
    format!("sip:{name}-{}@example.com", unique())
}

/// REGISTER without Contact: the AOR's current bindings.
fn fetch(c: &Client, aor: &str) -> Response {
    let n = unique();
    c.request(&format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-f{n}\r\n\
         Max-Forwards: 70\r\nTo: <{aor}>\r\nFrom: <{aor}>;tag=f{n}\r\nCall-ID: fetch-{n}\r\n\
         CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
        l = c.local()
    ))
}

fn stop(server: &mut Server) {
    let status = server.terminate(EXIT_TIMEOUT).expect("exits after SIGTERM");
    assert!(status.success(), "{}", server.log());
}

/// Register `n` AORs with one contact each (and a second contact on every third).
fn register_many(c: &Client, n: usize) -> Vec<(String, Vec<String>)> {
    (0..n)
        .map(|i| {
            let a = aor("user");
            let mut contacts = vec![format!("sip:dev{i}@192.0.2.1:5060")];
            if i % 3 == 0 {
                contacts.push(format!("sip:dev{i}b@192.0.2.2:5070"));
            }
            for (k, ct) in contacts.iter().enumerate() {
                let r = c.register(&a, ct, 600, &format!("cid-{i}-{k}"), 1);
                assert_eq!(r.status, 200, "{}", r.raw);
            }
            (a, contacts)
        })
        .collect()
}

fn assert_all_present(c: &Client, aors: &[(String, Vec<String>)], log: &str) {
    for (a, contacts) in aors {
        let r = fetch(c, a);
        assert_eq!(r.status, 200, "{}", r.raw);
        for ct in contacts {
            let left = r.contact_expires(ct);
            assert!(
                left.is_some_and(|s| s > 500 && s <= 600),
                "{a}: {ct} missing or wrong expiry after restart:\n{}\n{log}",
                r.raw
            );
        }
        assert_eq!(r.contacts().len(), contacts.len(), "{}", r.raw);
    }
}

/// The log once it holds the "loaded N bindings" line: the main thread writes it after
/// the cores report ready, so it can trail the first answer by a moment.
fn log_after_load(server: &Server) -> String {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        let log = server.log();
        if log.contains(" bindings in ") || Instant::now() > deadline {
            return log;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in fs::read_dir(dir).unwrap().flatten() {
        if shard.path().is_dir() {
            for f in fs::read_dir(shard.path()).unwrap().flatten() {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn graceful_restart_keeps_every_binding_and_removals() {
    let dir = DataDir::new();
    let flags = ["--cores", "2", "--data-dir", &dir.arg()];
    let mut server = Server::start(&flags);
    let c = Client::new(server.addr);
    let mut aors = register_many(&c, 30);
    // A removal must be persisted too: unregister one AOR entirely.
    let (gone, gone_contacts) = aors.pop().unwrap();
    let r = c.register(&gone, &gone_contacts[0], 0, "cid-gone", 2);
    assert_eq!(r.status, 200, "{}", r.raw);
    if gone_contacts.len() > 1 {
        let r = c.register(&gone, &gone_contacts[1], 0, "cid-gone-b", 2);
        assert_eq!(r.status, 200, "{}", r.raw);
    }
    stop(&mut server);

    let server = Server::start(&flags);
    let log = log_after_load(&server);
    let expected: usize = aors.iter().map(|(_, c)| c.len()).sum();
    assert!(
        log.contains(&format!("loaded {expected} bindings in ")),
        "{log}"
    );
    let c = Client::new(server.addr);
    assert_all_present(&c, &aors, &log);
    let r = fetch(&c, &gone);
    assert!(r.contacts().is_empty(), "removed AOR came back: {}", r.raw);
}

#[test]
fn repartition_two_cores_to_one_and_back_keeps_everything() {
    let dir = DataDir::new();
    let two = ["--cores", "2", "--data-dir", &dir.arg()];
    let one = ["--cores", "1", "--data-dir", &dir.arg()];
    let mut server = Server::start(&two);
    let aors = register_many(&Client::new(server.addr), 40);
    stop(&mut server);

    let mut server = Server::start(&one);
    assert_all_present(&Client::new(server.addr), &aors, &server.log());
    assert!(!dir.0.join("shard-1").exists(), "{:?}", segments(&dir.0));
    stop(&mut server);

    let server = Server::start(&two);
    assert_all_present(&Client::new(server.addr), &aors, &server.log());
}

/// kill -9 under load in sync mode: every REGISTER that got a 200 is there after the
/// restart.
#[test]
fn kill_9_in_sync_mode_loses_no_acknowledged_register() {
    let dir = DataDir::new();
    let flags = [
        "--cores",
        "2",
        "--durability",
        "sync",
        "--commit-interval-ms",
        "2",
        "--data-dir",
        &dir.arg(),
    ];
    let mut server = Server::start(&flags);
    let addr = server.addr;
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop_sending = Arc::clone(&stop_sending);
        thread::spawn(move || {
            let c = Client::new(addr);
            c.sock
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let prefix = format!("kill9-{}", unique());
            let mut acked = Vec::new();
            let mut i = 0u64;
            // A window of 16 outstanding REGISTERs, each to its own AOR.
            let window = 16;
            let mut outstanding = 0;
            while !stop_sending.load(Ordering::Relaxed) || outstanding > 0 {
                while outstanding < window && !stop_sending.load(Ordering::Relaxed) {
                    let a = format!("sip:{prefix}-{i}@example.com");
                    let ct = format!("sip:d{i}@192.0.2.1:5060");
                    c.send(
                        register_request(&c, &a, &ct, 600, &format!("{prefix}-{i}"), 1).as_bytes(),
                    );
                    i += 1;
                    outstanding += 1;
                }
                match c.recv_within(Duration::from_millis(200)) {
                    Some((r, _)) => {
                        outstanding -= 1;
                        if r.status == 200 {
                            let to = r.header("To").unwrap_or_default().to_string();
                            acked.push(to);
                        }
                    }
                    None => {
                        if stop_sending.load(Ordering::Relaxed) {
                            break;
                        }
                        outstanding = 0;
                    }
                }
            }
            acked
        })
    };
    thread::sleep(Duration::from_millis(700));
    server.kill();
    let killed_at = Instant::now();
    stop_sending.store(true, Ordering::Relaxed);
    let acked = sender.join().unwrap();
    assert!(
        !acked.is_empty(),
        "no REGISTER was answered before the kill"
    );
    assert!(killed_at.elapsed() < Duration::from_secs(5));

    let server = Server::start(&flags);
    let c = Client::new(server.addr);
    let mut checked = HashSet::new();
    for to in &acked {
        let a = to
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
        if !checked.insert(a.clone()) {
            continue;
        }
        let r = fetch(&c, &a);
        assert_eq!(
            r.contacts().len(),
            1,
            "{a} got a 200 before kill -9 but is gone after restart ({} acked):\n{}\n{}",
            acked.len(),
            r.raw,
            server.log()
        );
    }
}

/// kill -9 in async mode: every change older than the commit interval is kept (the
/// writer hands each change to the OS at once and syncs within the interval; only a
/// machine crash could lose the last interval, which a process kill cannot show).
#[test]
fn kill_9_in_async_mode_loses_nothing_older_than_the_interval() {
    let dir = DataDir::new();
    let interval_ms = 50;
    let flags = [
        "--cores",
        "2",
        "--durability",
        "async",
        "--commit-interval-ms",
        &interval_ms.to_string(),
        "--data-dir",
        &dir.arg(),
    ];
    let mut server = Server::start(&flags);
    let c = Client::new(server.addr);
    let aors = register_many(&c, 40);
    // A removal too: it must not come back after the crash.
    let (gone, gone_contacts) = aors.last().unwrap().clone();
    for (k, ct) in gone_contacts.iter().enumerate() {
        let r = c.register(&gone, ct, 0, &format!("cid-gone-{k}"), 2);
        assert_eq!(r.status, 200, "{}", r.raw);
    }
    thread::sleep(Duration::from_millis(3 * interval_ms));
    server.kill();

    let server = Server::start(&flags);
    let log = log_after_load(&server);
    let kept = &aors[..aors.len() - 1];
    let expected: usize = kept.iter().map(|(_, c)| c.len()).sum();
    assert!(
        log.contains(&format!("loaded {expected} bindings in ")),
        "{log}"
    );
    let c = Client::new(server.addr);
    assert_all_present(&c, kept, &log);
    let r = fetch(&c, &gone);
    assert!(r.contacts().is_empty(), "removed AOR came back: {}", r.raw);
}

/// Two cores in sync mode, with online compaction starting from a 64 KiB log (so a test
/// sees many snapshots), on data directory `dir`, plus `extra`.
fn compacting<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        "--cores",
        "2",
        "--durability",
        "sync",
        "--compact-min-bytes",
        "65536",
    ];
    flags.extend_from_slice(extra);
    flags.extend(["--data-dir", dir]);
    flags
}

/// The round in a contact written by the compaction kill test (`sip:dI-rR@...`).
fn contact_round(contact: &str) -> Option<u32> {
    let r = contact.split("-r").nth(1)?;
    r.split('@').next()?.parse().ok()
}

/// kill -9 while online compaction runs (sync mode): with a small `--compact-min-bytes`,
/// snapshots are written and older segments deleted again and again under a stream of
/// changes, so the kill lands during one of them or between. After the restart, every
/// AOR holds the contact of its last acknowledged REGISTER or of a later one (sent, and
/// perhaps written, but not yet answered), and only that contact: no binding an
/// acknowledged REGISTER removed comes back.
#[test]
fn kill_9_during_online_compaction_keeps_every_acknowledged_change() {
    let dir = DataDir::new();
    let dir_arg = dir.arg();
    let flags = compacting(&dir_arg, &["--log-level", "debug"]);
    let mut server = Server::start(&flags);
    let addr = server.addr;
    let tag = unique();
    let n = 200;
    let aors: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| format!("sip:k9c-{tag}-{i}@example.com"))
            .collect(),
    );
    let contact = |i: usize, round: u32| format!("sip:d{i}-r{round}@192.0.2.1:5060");
    let c = Client::new(addr);
    let first: Vec<String> = (0..n)
        .map(|i| {
            register_request(
                &c,
                &aors[i],
                &contact(i, 0),
                600,
                &format!("k9c-{tag}-{i}"),
                1,
            )
        })
        .collect();
    pipeline(&c, &server, &first, 32);

    // Round r swaps each AOR's contact r-1 for r in one REGISTER (one commit).
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop_sending = Arc::clone(&stop_sending);
        let aors = Arc::clone(&aors);
        thread::spawn(move || {
            let c = Client::new(addr);
            let mut acked = vec![0u32; aors.len()];
            // An AOR one of whose swaps was refused may keep an older contact beside the
            // newer one without any loss: only its newest contact is checked.
            let mut refused = vec![false; aors.len()];
            let index = |to: &str| {
                let uri = to.trim_start_matches('<').split('>').next()?;
                aors.iter().position(|a| a == uri)
            };
            let window = 16;
            let mut outstanding = 0;
            let mut sends = (1u32..).flat_map(|round| (0..aors.len()).map(move |i| (i, round)));
            loop {
                while outstanding < window && !stop_sending.load(Ordering::Relaxed) {
                    let Some((i, round)) = sends.next() else {
                        break;
                    };
                    let n = unique();
                    c.send(
                        format!(
                            "REGISTER sip:example.com SIP/2.0\r\n\
                             Via: SIP/2.0/UDP {l};branch=z9hG4bK-k{n}\r\n\
                             Max-Forwards: 70\r\nTo: <{a}>\r\nFrom: <{a}>;tag=k{n}\r\n\
                             Call-ID: k9c-{tag}-{i}\r\nCSeq: {cseq} REGISTER\r\n\
                             Contact: <{old}>;expires=0, <{new}>;expires=600\r\n\
                             Content-Length: 0\r\n\r\n",
                            l = c.local(),
                            a = aors[i],
                            cseq = round + 1,
                            old = contact(i, round - 1),
                            new = contact(i, round),
                        )
                        .as_bytes(),
                    );
                    outstanding += 1;
                }
                if outstanding == 0 {
                    break;
                }
                let Some((r, _)) = c.recv_within(Duration::from_millis(200)) else {
                    // Killed, or a datagram lost: nothing more will come.
                    if stop_sending.load(Ordering::Relaxed) {
                        break;
                    }
                    outstanding = 0;
                    continue;
                };
                outstanding -= 1;
                let Some(i) = r.header("To").and_then(index) else {
                    continue;
                };
                if r.status != 200 {
                    refused[i] = true;
                    continue;
                }
                if let Some(round) = r.contacts().iter().filter_map(|c| contact_round(c)).max() {
                    acked[i] = acked[i].max(round);
                }
            }
            (acked, refused)
        })
    };
    thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop_sending.store(true, Ordering::Relaxed);
    let (acked, refused) = sender.join().unwrap();
    let snapshots = server.log().matches("store: snapshot of").count();
    assert!(
        snapshots >= 2,
        "only {snapshots} snapshots before the kill: the test did not exercise compaction\n{}",
        server.log()
    );
    assert!(
        acked.iter().any(|&r| r > 1),
        "too few swaps answered before the kill: {acked:?}"
    );

    let server = Server::start(&flags);
    let c = Client::new(server.addr);
    for (i, a) in aors.iter().enumerate() {
        let r = fetch(&c, a);
        let rounds: Vec<u32> = r
            .contacts()
            .iter()
            .filter_map(|c| contact_round(c))
            .collect();
        let newest = rounds.iter().max().copied().unwrap_or(0);
        assert!(
            !rounds.is_empty() && newest >= acked[i] && (rounds.len() == 1 || refused[i]),
            "{a}: bindings of rounds {rounds:?} after kill -9, last acknowledged round {} \
             ({snapshots} snapshots before the kill):\n{}\n{}",
            acked[i],
            r.raw,
            server.log()
        );
    }
}

#[test]
fn torn_tail_is_cut_with_a_warning_and_the_rest_loaded() {
    let dir = DataDir::new();
    let flags = ["--cores", "1", "--data-dir", &dir.arg()];
    let mut server = Server::start(&flags);
    let aors = register_many(&Client::new(server.addr), 6);
    stop(&mut server);

    // The newest segment holds the six changes, the last one last, then its
    // pre-zeroed room: tear the last record as a crash would (its end never written).
    let newest = segments(&dir.0).pop().unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes[end - 5..end].fill(0);
    fs::write(&newest, &bytes).unwrap();

    let mut server = Server::start(&flags);
    let log = server.log();
    assert!(
        log.contains(&newest.display().to_string()) && log.contains("at offset"),
        "no warning naming the torn file:\n{log}"
    );
    let c = Client::new(server.addr);
    let (last, earlier) = aors.split_last().unwrap();
    assert_all_present(&c, earlier, &log);
    // The last AOR's second contact was its last record: the first one is still there.
    let r = fetch(&c, &last.0);
    assert_eq!(r.contacts().len(), last.1.len() - 1, "{}", r.raw);
    stop(&mut server);

    // Corrupt one byte inside the snapshot's first record: cut there with a warning.
    let snapshot = segments(&dir.0)
        .into_iter()
        .rfind(|p| p.to_string_lossy().ends_with("-0000000000.log"))
        .unwrap();
    let mut bytes = fs::read(&snapshot).unwrap();
    bytes[32 + 20] ^= 0x55;
    fs::write(&snapshot, &bytes).unwrap();
    let server = Server::start(&flags);
    let log = server.log();
    assert!(
        log.contains("checksum mismatch at offset 32"),
        "no warning for the corrupt byte:\n{log}"
    );
}

// See: issue 14. The hash of the branch that wrote a binding is persisted: after a
// restart (which empties the transaction cache) the request that wrote it is still
// told apart from a new one that reuses its CSeq.
#[test]
fn the_writers_branch_survives_a_restart() {
    let dir = DataDir::new();
    let flags = ["--cores", "2", "--data-dir", &dir.arg()];
    let mut server = Server::start(&flags);
    let c = Client::new(server.addr);
    let (a, ct) = (aor("branch"), format!("sip:branch@{}", c.local()));
    let first = register_request(&c, &a, &ct, 600, "branch-1", 3);
    assert_eq!(c.request(&first).status, 200);
    stop(&mut server);

    let server = Server::start(&flags);
    // The same client socket: the answer goes to the Via sent-by of `first`.
    let c = Client {
        server: server.addr,
        ..c
    };
    let r = c.request(&first);
    assert_eq!(r.status, 200, "the retransmission is answered: {}", r.raw);
    assert!(r.contact_expires(&ct).is_some(), "{}", r.raw);
    let r = c.register(&a, &ct, 0, "branch-1", 3);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (400, "Invalid CSeq"),
        "{}",
        r.raw
    );
    assert!(
        fetch(&c, &a).contact_expires(&ct).is_some(),
        "nothing changed"
    );
}

/// A framed store record of format version 1 ("set", no branch hash) binding
/// `contact` to `key` until `expires_s`, CSeq `cseq` and Call-ID `call_id`.
fn v1_record(key: &str, contact: &str, call_id: &str, cseq: u32, expires_s: u32) -> Vec<u8> {
    let mut p = vec![1u8];
    p.extend_from_slice(&(key.len() as u16).to_le_bytes());
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(&1u16.to_le_bytes());
    for v in [expires_s, expires_s - 600, cseq, 0, 0] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p.extend_from_slice(&u16::MAX.to_le_bytes()); // no q
    p.extend_from_slice(&[0, 0]); // UDP, IPv4 without reg-id or instance
    p.extend_from_slice(&0u16.to_le_bytes()); // local socket
    p.extend_from_slice(&5060u16.to_le_bytes());
    p.extend_from_slice(&[192, 0, 2, 1]);
    let fields = [contact.as_bytes(), call_id.as_bytes(), b"", b"", b""];
    for f in fields {
        p.extend_from_slice(&(f.len() as u16).to_le_bytes());
    }
    for f in fields {
        p.extend_from_slice(f);
    }
    let len = (p.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&p);
    let mut frame = len.to_vec();
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(&p);
    frame
}

// See: issue 14. An upgrade keeps the data directory: a store written before bindings
// kept their branch hash (format version 1) loads, and an equal CSeq against such a
// binding is answered as before (its branch is not known).
#[test]
fn a_version_1_store_loads_after_the_upgrade() {
    let dir = DataDir::new();
    let shard = dir.0.join("shard-0");
    fs::create_dir_all(&shard).unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let n = unique();
    let (user, ct) = (format!("old-{n}"), "sip:old@192.0.2.1:5060");
    let mut seg = b"SIPREGLG".to_vec();
    seg.extend_from_slice(&1u32.to_le_bytes());
    seg.extend_from_slice(&0u32.to_le_bytes());
    seg.extend_from_slice(&1u64.to_le_bytes());
    seg.extend_from_slice(&0u64.to_le_bytes());
    seg.extend(v1_record(
        &format!("{user}@example.com"),
        ct,
        "old-1",
        4,
        now_s + 600,
    ));
    fs::write(shard.join("seg-0000000001-0000000000.log"), &seg).unwrap();

    let server = Server::start(&["--cores", "1", "--data-dir", &dir.arg()]);
    let log = log_after_load(&server);
    assert!(log.contains("loaded 1 bindings in "), "{log}");
    let c = Client::new(server.addr);
    let a = format!("sip:{user}@example.com");
    let r = fetch(&c, &a);
    assert!(
        r.contact_expires(ct).is_some_and(|s| s > 590),
        "{}\n{log}",
        r.raw
    );
    // Branch unknown: an equal CSeq is taken for the retransmission, as before.
    let r = c.register(&a, ct, 0, "old-1", 4);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.contact_expires(ct).is_some(), "{}", r.raw);
    // A lower one still fails, and a higher one applies.
    let r = c.register(&a, ct, 0, "old-1", 3);
    assert_eq!(r.status, 400, "{}", r.raw);
    let r = c.register(&a, ct, 0, "old-1", 5);
    assert!(r.contacts().is_empty(), "{}", r.raw);
}

#[test]
fn another_format_version_refuses_to_start_naming_the_file() {
    let dir = DataDir::new();
    let shard = dir.0.join("shard-0");
    fs::create_dir_all(&shard).unwrap();
    let path = shard.join("seg-0000000001-0000000000.log");
    let mut header = b"SIPREGLG".to_vec();
    header.extend_from_slice(&99u32.to_le_bytes());
    header.resize(32, 0);
    fs::write(&path, &header).unwrap();
    let (status, log) = run_to_exit(&["--cores", "1", "--data-dir", &dir.arg()], EXIT_TIMEOUT);
    assert!(!status.success());
    assert!(
        log.contains(&path.display().to_string()) && log.contains("version 99"),
        "{log}"
    );
    assert!(path.exists(), "the refused store is left as it was");
}

#[test]
fn unusable_data_directory_stops_start_up_naming_it() {
    let dir = DataDir::new();
    fs::write(&dir.0, b"a file, not a directory").unwrap();
    let (status, log) = run_to_exit(&["--data-dir", &dir.arg()], EXIT_TIMEOUT);
    assert!(!status.success());
    assert!(
        log.contains(&format!("cannot create the data directory {}", dir.arg())),
        "{log}"
    );
}

#[test]
fn no_persist_writes_nothing() {
    let server = Server::start(&["--no-persist"]);
    let c = Client::new(server.addr);
    register_many(&c, 2);
    assert!(!server.log().contains("loaded"), "{}", server.log());
}

/// Send every request with up to `window` outstanding; every answer must be a 200.
fn pipeline(c: &Client, server: &Server, requests: &[String], window: usize) {
    let mut sent = 0;
    let mut answered = 0;
    while answered < requests.len() {
        while sent < requests.len() && sent - answered < window {
            c.send(requests[sent].as_bytes());
            sent += 1;
        }
        let Some((r, _)) = c.recv_within(EXIT_TIMEOUT) else {
            panic!(
                "no answer within {EXIT_TIMEOUT:?}: {answered} of {sent} sent answered\n{}",
                server.log()
            );
        };
        assert_eq!(r.status, 200, "{}", r.raw);
        answered += 1;
    }
}

/// Record bytes in a segment file: from the header to the first zero frame.
fn record_bytes(path: &Path) -> usize {
    use sipreg::store::{record, segment};
    let bytes = fs::read(path).unwrap();
    let mut offset = segment::HEADER_BYTES;
    while let record::Frame::Record { next, .. } = record::next_frame(&bytes, offset) {
        offset = next;
    }
    offset - segment::HEADER_BYTES
}

/// Online compaction (sync mode): the log on disk stays bounded while AORs are
/// refreshed, re-contacted and removed without pause, older segments (the start-up
/// snapshot included) are deleted, and a restart finds every AOR's latest state.
#[test]
fn online_compaction_bounds_the_log_and_keeps_the_latest_state() {
    let dir = DataDir::new();
    let dir_arg = dir.arg();
    let flags = compacting(&dir_arg, &[]);
    let mut server = Server::start(&flags);
    let c = Client::new(server.addr);
    let tag = unique();
    let n = 400;
    let rounds = 40;
    // Per AOR: its contacts (uri, call-id, next cseq).
    type Contact = (String, String, u32);
    let mut aors: Vec<(String, Vec<Contact>)> = (0..n)
        .map(|i| {
            (
                format!("sip:compact-{tag}-{i}@example.com"),
                vec![(
                    format!("sip:d{i}@192.0.2.1:5060"),
                    format!("cc-{tag}-{i}"),
                    1,
                )],
            )
        })
        .collect();
    let mut removed = Vec::new();
    let mut changes = 0usize;
    for round in 0..rounds {
        let mut requests = Vec::new();
        for (i, (aor, contacts)) in aors.iter_mut().enumerate() {
            if round == rounds / 2 && i % 7 == 0 {
                contacts.push((
                    format!("sip:e{i}@192.0.2.9:5070"),
                    format!("ce-{tag}-{i}"),
                    1,
                ));
            }
            let remove = round == rounds * 3 / 4 && i % 10 == 0;
            for (uri, cid, cseq) in contacts.iter_mut() {
                let expires = if remove { 0 } else { 600 };
                requests.push(register_request(&c, aor, uri, expires, cid, *cseq));
                *cseq += 1;
            }
        }
        changes += requests.len();
        pipeline(&c, &server, &requests, 32);
        if round == rounds * 3 / 4 {
            let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut aors)
                .into_iter()
                .enumerate()
                .partition(|(i, _)| i % 10 != 0);
            aors = kept.into_iter().map(|(_, a)| a).collect();
            removed = gone.into_iter().map(|(_, (a, _))| a).collect();
        }
    }
    // Stopped first: a running server may delete a listed segment (compaction).
    stop(&mut server);
    let files = segments(&dir.0);
    let on_disk: usize = files.iter().map(|f| record_bytes(f)).sum();
    // Without compaction every change would still be on disk: > 100 bytes each.
    let written_at_least = changes * 100;
    eprintln!(
        "compaction: {changes} changes (>= {written_at_least} B of records written), \
         {on_disk} B of records on disk in {} segments: {files:?}",
        files.len()
    );
    assert!(
        on_disk * 3 < written_at_least,
        "{on_disk} B on disk for {changes} changes: {files:?}"
    );
    for shard in ["shard-0", "shard-1"] {
        let mine: Vec<_> = files
            .iter()
            .filter(|f| f.parent().is_some_and(|p| p.ends_with(shard)))
            .collect();
        let names: Vec<_> = mine
            .iter()
            .filter_map(|f| f.file_name()?.to_str())
            .collect();
        assert!(
            (1..=2).contains(&mine.len()),
            "{shard}: a snapshot deletes the older segments: {names:?}"
        );
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with("-0000000000.log") && !n.ends_with("-0000000001.log")),
            "{shard}: the start-up snapshot and first segment are compacted away: {names:?}"
        );
    }

    let server = Server::start(&flags);
    let log = log_after_load(&server);
    let expected: usize = aors.iter().map(|(_, c)| c.len()).sum();
    assert!(
        log.contains(&format!("loaded {expected} bindings in ")),
        "{log}"
    );
    let c = Client::new(server.addr);
    for (aor, contacts) in &aors {
        let r = fetch(&c, aor);
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.contacts().len(), contacts.len(), "{aor}: {}", r.raw);
        for (uri, _, _) in contacts {
            assert!(
                r.contact_expires(uri).is_some_and(|s| s > 500),
                "{aor}: {uri} missing after restart: {}",
                r.raw
            );
        }
    }
    for aor in &removed {
        let r = fetch(&c, aor);
        assert!(r.contacts().is_empty(), "removed AOR came back: {}", r.raw);
    }
}
