//! NAT reachability (issue 17) against the real binary: clients on loopback whose
//! Contact names a private address (`sip:u@192.168.1.20:5060`) they are not at. A
//! proxy must learn where they really are: the 302 carries their source as
//! `;alias=ip~port~1`, `GET /v1/aors/{aor}/targets` lists it, and keep-alive pings
//! reach their socket (and remove the ones that stop answering).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

use crate::util::{Client, Server, free_tcp_addr, register_request, unique};

/// The private Contact every client here claims.
const PRIVATE_CONTACT: &str = "sip:u@192.168.1.20:5060";

fn cores() -> &'static str {
    if thread::available_parallelism().map_or(1, usize::from) >= 2 {
        "2"
    } else {
        "1"
    }
}

/// A server with the management API on; returns it and the API base URL.
fn start(flags: &[&str]) -> (Server, String) {
    let admin = free_tcp_addr();
    let mut all = vec!["--cores", cores(), "--admin", admin.as_str()];
    all.extend_from_slice(flags);
    let server = Server::start(&all);
    (server, format!("http://{admin}"))
}

/// (status, JSON) of a GET; never fails on an HTTP error status.
fn get(url: &str) -> (u16, Value) {
    let response = match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    (status, serde_json::from_str(&text).expect("JSON"))
}

/// One value of `/metrics` (summed over its label sets), 0 when absent.
fn metric(api: &str, name: &str) -> u64 {
    let text = ureq::get(&format!("{api}/metrics"))
        .timeout(Duration::from_secs(5))
        .call()
        .expect("GET /metrics")
        .into_string()
        .expect("body");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// An INVITE for `user@example.com` from `client`.
fn invite(client: &Client, user: &str) -> String {
    let n = unique();
    format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-i{n}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{user}@example.com>\r\n\
         From: <sip:caller@example.com>;tag=i{n}\r\n\
         Call-ID: invite-{n}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n",
        local = client.local(),
    )
}

/// Register `user@example.com` from `client` with the private Contact.
fn register_private(client: &Client, user: &str) {
    let aor = format!("sip:{user}@example.com");
    let r = client.request(&register_request(
        client,
        &aor,
        PRIVATE_CONTACT,
        3600,
        &format!("nat-{user}"),
        1,
    ));
    assert_eq!(r.status, 200, "{}", r.raw);
}

/// The 302 for a NAT'd client carries its real source in Kamailio's alias form, and
/// the targets endpoint lists the source, transport and local socket a proxy needs.
#[test]
fn redirect_and_targets_name_the_real_source() {
    let (server, api) = start(&[]);
    let phone = Client::new(server.addr);
    let user = format!("nat{}", unique());
    register_private(&phone, &user);
    let src = phone.local();

    let caller = Client::new(server.addr);
    let r = caller.request(&invite(&caller, &user));
    assert_eq!(r.status, 302, "{}", r.raw);
    let contacts = r.contacts();
    assert_eq!(contacts.len(), 1, "{}", r.raw);
    let expected = format!("<{PRIVATE_CONTACT};alias={}~{}~1>", src.ip(), src.port());
    assert!(
        contacts[0].starts_with(&expected),
        "{contacts:?} vs {expected}"
    );

    let (status, body) = get(&format!("{api}/v1/aors/{user}@example.com/targets"));
    assert_eq!(status, 200, "{body}");
    let targets = body["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "{body}");
    let t = &targets[0];
    assert_eq!(t["contact"], PRIVATE_CONTACT);
    assert_eq!(t["received"], src.to_string());
    assert_eq!(t["transport"], "udp");
    assert_eq!(
        t["next_hop"],
        format!("sip:{}:{};transport=udp", src.ip(), src.port())
    );
    assert_eq!(t["socket"]["index"], 0);
    assert_eq!(t["socket"]["address"], server.addr.to_string());
    assert!(t["flow"].is_null() && t["route"].as_array().is_some_and(Vec::is_empty));

    let (status, _) = get(&format!(
        "{api}/v1/aors/nobody{}@example.com/targets",
        unique()
    ));
    assert_eq!(status, 404);
    let (status, _) = get(&format!("{api}/v1/aors/not-an-aor/targets"));
    assert_eq!(status, 400);
}

/// A 200 to an OPTIONS ping, as a phone writes it (RFC 3261 §8.2.6.2).
fn answer_to(ping: &str) -> String {
    let echo: Vec<&str> = ping
        .split("\r\n")
        .filter(|l| {
            ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .collect();
    format!(
        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
        echo.join("\r\n")
    )
}

/// A phone behind its own socket, in a thread: counts the pings it receives (and
/// where they came from), and answers each with 200 when `answers`.
struct Phone {
    pings: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    from: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Phone {
    fn start(client: Client, answers: bool) -> Self {
        let client = Arc::new(client);
        let pings = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let from = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (client, pings, stop, from) =
                (client.clone(), pings.clone(), stop.clone(), from.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some((msg, sender)) = client.recv_within(Duration::from_millis(100)) else {
                        continue;
                    };
                    if !msg.raw.starts_with("OPTIONS ") {
                        continue;
                    }
                    pings.fetch_add(1, Ordering::Relaxed);
                    from.lock().unwrap().push(sender);
                    if answers {
                        client
                            .sock
                            .send_to(answer_to(&msg.raw).as_bytes(), sender)
                            .expect("answer");
                    }
                }
            })
        };
        Self {
            pings,
            stop,
            from,
            thread: Some(thread),
        }
    }

    fn pings(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keep-alive pings reach the client's own socket, from the address it registered
/// to; a client that answers keeps its binding, a silent one loses it after
/// `--nat-ping-max-lost` intervals (1 s each here), and `/metrics` counts it all.
#[test]
fn pings_reach_the_source_and_silent_bindings_are_removed() {
    let (server, api) = start(&[
        "--nat-ping-interval",
        "1",
        "--nat-ping-method",
        "options",
        "--nat-ping-max-lost",
        "2",
        "--log-level",
        "debug",
    ]);
    let (talker, quiet) = (format!("talk{}", unique()), format!("quiet{}", unique()));
    let answering = Client::new(server.addr);
    register_private(&answering, &talker);
    let silent = Client::new(server.addr);
    register_private(&silent, &quiet);
    let answering = Phone::start(answering, true);
    let silent = Phone::start(silent, false);

    // Two lost pings (one per second, the first within two), then removal: 6 s at most.
    let deadline = Instant::now() + Duration::from_secs(8);
    let quiet_url = format!("{api}/v1/aors/{quiet}@example.com/targets");
    while get(&quiet_url).0 == 200 {
        assert!(
            Instant::now() < deadline,
            "the silent binding is still there after {} pings:\n{}",
            silent.pings(),
            server.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(silent.pings() >= 2, "{} pings", silent.pings());
    let (status, body) = get(&format!("{api}/v1/aors/{talker}@example.com/targets"));
    assert_eq!(status, 200, "the answering binding stays: {body}");
    assert!(answering.pings() >= 2, "{} pings", answering.pings());
    for phone in [&answering, &silent] {
        let from = phone.from.lock().unwrap();
        assert!(from.iter().all(|&a| a == server.addr), "{from:?}");
    }
    assert!(metric(&api, "sipreg_nat_ping_removals_total") >= 1);
    assert!(metric(&api, "sipreg_nat_ping_answers_total") >= 2);
    assert!(metric(&api, "sipreg_nat_pings_lost_total") >= 2);
    assert!(metric(&api, "sipreg_nat_pings_sent_total") >= 4);
    assert!(
        server
            .log()
            .contains("binding removed after unanswered OPTIONS pings")
    );

    // A reply from another address with a real branch is dropped and counted.
    let stray = Client::new(server.addr);
    let branch_ping = format!(
        "OPTIONS sip:u@192.168.1.20:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch={}\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
        "z9hG4bK.sipreg-ping.0000000000000000.00000000.00000000"
    );
    stray.send(answer_to(&branch_ping).as_bytes());
    stray.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKjunk\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&api, "sipreg_nat_ping_unexpected_replies_total") < 2 {
        assert!(Instant::now() < deadline, "unexpected replies not counted");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Phones that answer keep their bindings on a server of two cores, whichever core the
/// kernel hands each answer to: an answer that lands on a core that does not own the
/// AOR is forwarded to the owner by its branch (with one lost ping allowed, a reply
/// that went astray would remove its binding within two intervals).
#[test]
fn answers_find_their_owner_core() {
    let (server, api) = start(&["--nat-ping-interval", "1", "--nat-ping-max-lost", "1"]);
    let mut phones = Vec::new();
    let mut users = Vec::new();
    for _ in 0..6 {
        let client = Client::new(server.addr);
        let user = format!("owner{}", unique());
        register_private(&client, &user);
        phones.push(Phone::start(client, true));
        users.push(user);
    }
    // Every phone pinged at least twice (the first within two intervals).
    let deadline = Instant::now() + Duration::from_secs(8);
    while phones.iter().any(|p| p.pings() < 3) {
        assert!(Instant::now() < deadline, "pings did not reach every phone");
        thread::sleep(Duration::from_millis(100));
    }
    for user in &users {
        let (status, body) = get(&format!("{api}/v1/aors/{user}@example.com/targets"));
        assert_eq!(status, 200, "{user}: {body}");
    }
    assert_eq!(metric(&api, "sipreg_nat_ping_removals_total"), 0);
    assert_eq!(metric(&api, "sipreg_nat_ping_unexpected_replies_total"), 0);
    assert!(metric(&api, "sipreg_nat_ping_answers_total") >= 12);
    let (_, stats) = get(&format!("{api}/v1/stats"));
    assert!(
        stats["total"]["nat_ping_answers"].as_u64() >= Some(12),
        "{stats}"
    );
    assert_eq!(stats["total"]["nat_pings_lost"], 0, "{stats}");
}
