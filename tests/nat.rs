//! NAT reachability (issue 17) against the real binary: clients on loopback whose
//! Contact names a private address (`sip:u@192.168.1.20:5060`) they are not at. A
//! proxy must learn where they really are: the 302 carries their source as
//! `;alias=ip~port~1`, `GET /v1/aors/{aor}/targets` lists it, and keep-alive pings
//! reach their socket (and remove the ones that stop answering).

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Client, Server, register_request, unique};

/// The private Contact every client here claims.
const PRIVATE_CONTACT: &str = "sip:u@192.168.1.20:5060";

fn free_tcp_addr() -> String {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("addr").to_string()
}

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
