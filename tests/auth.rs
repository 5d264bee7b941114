//! Digest authentication over real UDP: `--auth-file`, the 401 → 200 exchange a phone
//! makes, wrong passwords, stale nonces, To/user mismatch, SIGHUP reload, and a bad
//! subscriber file stopping the start.

use std::path::PathBuf;
use std::time::Duration;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::util::{Client, Response, Server, run_to_exit, unique};

fn subscriber_file(text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "sipreg-subs-{}-{}.txt",
        std::process::id(),
        unique()
    ));
    std::fs::write(&path, text).expect("write subscriber file");
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn h(algo: &str, data: &str) -> String {
    if algo == "MD5" {
        hex(&Md5::digest(data.as_bytes()))
    } else {
        hex(&Sha256::digest(data.as_bytes()))
    }
}

/// A REGISTER for `user@example.com` with an optional Authorization line.
fn register(c: &Client, user: &str, cseq: u32, authorization: Option<&str>) -> Response {
    let n = unique();
    let auth = authorization
        .map(|a| format!("{a}\r\n"))
        .unwrap_or_default();
    c.request(&format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-a{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=a{n}\r\n\
         Call-ID: auth-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{l}>\r\nExpires: 600\r\n\
         {auth}Content-Length: 0\r\n\r\n",
        l = c.local()
    ))
}

/// (nonce, opaque, stale) of the challenge for `algo`.
fn challenge(r: &Response, algo: &str) -> (String, String, bool) {
    let v = r
        .header_all("WWW-Authenticate")
        .into_iter()
        .find(|v| v.contains(&format!("algorithm={algo}")))
        .unwrap_or_else(|| panic!("no {algo} challenge: {}", r.raw));
    let field = |name: &str| {
        v.trim_start_matches("Digest ")
            .split(", ")
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(|x| x.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("nonce"), field("opaque"), v.contains("stale=true"))
}

fn authorization(
    user: &str,
    password: &str,
    algo: &str,
    nonce: &str,
    opaque: &str,
    nc: u32,
) -> String {
    let (realm, uri, cnonce, nc) = (
        "example.com",
        "sip:example.com",
        "c0ffee",
        format!("{nc:08x}"),
    );
    let ha1 = h(algo, &format!("{user}:{realm}:{password}"));
    let ha2 = h(algo, &format!("REGISTER:{uri}"));
    let response = h(algo, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algo}, cnonce=\"{cnonce}\", opaque=\"{opaque}\", qop=auth, nc={nc}"
    )
}

#[test]
fn challenge_then_200_for_sha256_and_md5_and_401_for_a_wrong_password() {
    let subs = subscriber_file("# phones\nalice@example.com s3cret\nbob@example.com hunter2\n");
    let server = Server::start(&["--auth-file", subs.to_str().unwrap()]);
    let c = Client::new(server.addr);
    for (user, pw, algo) in [("alice", "s3cret", "SHA-256"), ("bob", "hunter2", "MD5")] {
        let r = register(&c, user, 1, None);
        assert_eq!(r.status, 401, "{}", r.raw);
        let offered = r.header_all("WWW-Authenticate");
        assert_eq!(offered.len(), 2, "one challenge per algorithm: {}", r.raw);
        assert!(
            offered[0].contains("algorithm=SHA-256"),
            "SHA-256 first: {}",
            r.raw
        );
        let (nonce, opaque, _) = challenge(&r, algo);
        let bad = register(
            &c,
            user,
            2,
            Some(&authorization(user, "wrong", algo, &nonce, &opaque, 1)),
        );
        assert_eq!(bad.status, 401, "{}", bad.raw);
        let ok = register(
            &c,
            user,
            3,
            Some(&authorization(user, pw, algo, &nonce, &opaque, 2)),
        );
        assert_eq!(ok.status, 200, "{algo}: {}", ok.raw);
        assert_eq!(ok.contacts().len(), 1);
    }
    let _ = std::fs::remove_file(subs);
}

#[test]
fn stale_nonce_and_to_user_mismatch() {
    let subs = subscriber_file("alice@example.com s3cret\nbob@example.com hunter2\n");
    let server = Server::start(&[
        "--auth-file",
        subs.to_str().unwrap(),
        "--nonce-lifetime",
        "1",
    ]);
    let c = Client::new(server.addr);
    let r = register(&c, "alice", 1, None);
    let (nonce, opaque, _) = challenge(&r, "SHA-256");
    // bob's valid credentials on alice's AOR: 403.
    let r = register(
        &c,
        "alice",
        2,
        Some(&authorization(
            "bob", "hunter2", "SHA-256", &nonce, &opaque, 1,
        )),
    );
    assert_eq!(r.status, 403, "{}", r.raw);
    std::thread::sleep(Duration::from_millis(2100));
    let r = register(
        &c,
        "alice",
        3,
        Some(&authorization(
            "alice", "s3cret", "SHA-256", &nonce, &opaque, 2,
        )),
    );
    assert_eq!(r.status, 401, "{}", r.raw);
    assert!(challenge(&r, "SHA-256").2, "stale=true: {}", r.raw);
    let _ = std::fs::remove_file(subs);
}

#[test]
fn sighup_reloads_the_subscriber_file() {
    let subs = subscriber_file("alice@example.com s3cret\n");
    let server = Server::start(&["--auth-file", subs.to_str().unwrap()]);
    let c = Client::new(server.addr);
    std::fs::write(&subs, "alice@example.com s3cret\ncarol@example.com newpw\n").unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut last = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let r = register(&c, "carol", 1, None);
        let (nonce, opaque, _) = challenge(&r, "SHA-256");
        let r = register(
            &c,
            "carol",
            2,
            Some(&authorization(
                "carol", "newpw", "SHA-256", &nonce, &opaque, 1,
            )),
        );
        if r.status == 200 {
            // A broken file keeps the current table.
            std::fs::write(&subs, "this line is not a subscriber\n").unwrap();
            std::process::Command::new("kill")
                .args(["-HUP", &server.pid().to_string()])
                .status()
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let r = register(&c, "alice", 1, None);
            let (nonce, opaque, _) = challenge(&r, "SHA-256");
            let r = register(
                &c,
                "alice",
                2,
                Some(&authorization(
                    "alice", "s3cret", "SHA-256", &nonce, &opaque, 1,
                )),
            );
            assert_eq!(
                r.status, 200,
                "old table kept after a failed reload: {}",
                r.raw
            );
            assert!(server.log().contains("reload failed"), "{}", server.log());
            let _ = std::fs::remove_file(subs);
            return;
        }
        last = r.raw;
    }
    panic!("carol never got in after SIGHUP: {last}");
}

#[test]
fn a_bad_subscriber_file_stops_the_start_naming_the_line() {
    let subs = subscriber_file("alice@example.com s3cret\n\nnot-a-subscriber\n");
    let (status, log) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--auth-file",
            subs.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(
        log.contains("--auth-file") && log.contains("line 3"),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "no password in errors: {log}");
    let (status, log) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--auth-file",
            "/nonexistent/subs.txt",
        ],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(log.contains("/nonexistent/subs.txt"), "{log}");
    let _ = std::fs::remove_file(subs);
}
