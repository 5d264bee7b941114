//! The management API and `/metrics` (issue 7): HTTP/1.1 + JSON on `--admin`.
//!
//! Why a separate thread and an HTTP crate: the SIP cores must never wait on an
//! operator. One `sipreg-admin` thread (outside the pinned cores) parses HTTP with
//! `tiny_http` (small, synchronous, no async runtime; its own helper threads only do
//! socket I/O). Counters come from the cores as a [`Command`] over each core's bounded
//! control channel (see `runtime::control`); bindings come from a [`LocationView`]:
//! the owning core's table the same way (`memory_view`), or, with `--location redis`,
//! the Redis Cluster the nodes share, through the admin thread's own blocking client
//! (`redis_view`, `redis_client`). No lock is ever taken on the SIP path; a core that
//! does not answer within [`CORE_ANSWER_TIMEOUT_MS`] yields a 503, not a hang, and so
//! does a Redis that cannot be reached (the error names Redis).
//!
//! Endpoints (errors are `{"error": "..."}`):
//! - `GET /healthz` (the process is serving HTTP), `GET /readyz` (every core is up)
//! - `GET /metrics` (Prometheus/OpenMetrics text, see `metrics`)
//! - `GET /v1/stats` (per-core and total counters)
//! - `GET /v1/aors?limit=&cursor=` (paginated dump, `limit` ≤ [`DUMP_PAGE_AORS_MAX`])
//! - `GET|DELETE /v1/aors/{aor}` (`ul_show_contact` / `ul_rm`)
//! - `POST /v1/aors/{aor}/bindings` with `{"contact", "expires", "q"}` (`ul_add`)
//! - `DELETE /v1/aors/{aor}/bindings?contact=URI` (`ul_rm_contact`)
//! - `POST /v1/flush?confirm=yes` (`ul_flush`)
//!
//! `{aor}` is `user@domain` (optionally with a `sip:` prefix), percent-encoded as a
//! path segment; it is keyed exactly as the To of a REGISTER (`sip::write_aor_key`).

mod json;
mod memory_view;
mod metrics;
mod redis_client;
mod redis_view;
mod view;

use std::io::Read;
use std::net::SocketAddr;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::config::RedisConfig;
use crate::location::AOR_KEY_BYTES_MAX;
use crate::runtime::control::{
    CallError, Command, ControlHandle, CoreStats, DUMP_PAGE_AORS_MAX, Reply,
};
use crate::runtime::socket_drops;
use crate::sip::{self, Scheme};
use memory_view::MemoryView;
use redis_view::RedisView;
use view::{LocationView, NewBinding};

/// How long the admin thread waits for a core's answer, in ms.
pub const CORE_ANSWER_TIMEOUT_MS: u64 = 2000;

/// How long a flush may take before the API answers 503 (the flush goes on), in ms.
pub const FLUSH_ANSWER_TIMEOUT_MS: u64 = 120_000;

/// Largest request body accepted, in bytes.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// AORs per dump page when no `limit` is given.
pub const DUMP_PAGE_AORS_DEFAULT: usize = 100;

/// How often the admin thread checks for a stop while idle, in ms.
const STOP_POLL_MS: u64 = 100;

/// Start the admin thread on `addr` (None: the API is off). Fails when the address
/// cannot be bound, so a misconfigured API is a start-up error, not a silent gap.
/// `listening` are the SIP addresses (for the kernel's receive-drop counter). With
/// `redis` the bindings are read and changed in that cluster (adds up to
/// `max_expires_s`), else in the cores' tables.
pub(crate) fn spawn(
    addr: Option<SocketAddr>,
    control: ControlHandle,
    listening: &[SocketAddr],
    redis: Option<&RedisConfig>,
    max_expires_s: u32,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let ports: Vec<u16> = listening.iter().map(SocketAddr::port).collect();
    let sockets = listening.to_vec();
    let Some(addr) = addr else {
        tracing::info!("management API off (--admin off)");
        return Ok(None);
    };
    let server = Server::http(addr).map_err(|e| {
        anyhow::anyhow!(
            "--admin {addr}: cannot bind the management API: {e} (use another ADDR:PORT, \
             or --admin off)"
        )
    })?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    tracing::info!("management API on http://{bound} (GET /v1/stats, /metrics, /readyz)");
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "management API on a non-loopback address ({bound}): it has no authentication, \
             so anyone who can reach it can read and delete bindings"
        );
    }
    let mut view: Box<dyn LocationView + Send> = match redis {
        Some(redis) => Box::new(RedisView::new(redis, max_expires_s)),
        None => Box::new(MemoryView::new(control.clone())),
    };
    let handle = thread::Builder::new()
        .name("sipreg-admin".into())
        .spawn(move || {
            let mut api = Api {
                control: &control,
                view: view.as_mut(),
                ports: &ports,
                sockets: &sockets,
                failed: 0,
            };
            api.serve(&server);
        })
        .context("spawning the admin thread")?;
    Ok(Some(handle))
}

/// What the admin thread answers from.
struct Api<'a> {
    control: &'a ControlHandle,
    view: &'a mut dyn LocationView,
    /// The SIP ports (for the kernel's receive-drop counter).
    ports: &'a [u16],
    /// The SIP UDP addresses in listen order (a binding's local socket, for `targets`).
    sockets: &'a [SocketAddr],
    /// Requests answered 5xx so far: a core or Redis did not answer (`/metrics`).
    failed: u64,
}

/// An answer: status and body (JSON, or the metrics text).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    content_type: &'static str,
}

impl Answer {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            body: value.to_string(),
            content_type: "application/json",
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "error": message }))
    }
}

impl Api<'_> {
    fn serve(&mut self, server: &Server) {
        while !self.control.stop_requested() {
            match server.recv_timeout(Duration::from_millis(STOP_POLL_MS)) {
                Ok(Some(request)) => self.handle(request),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("management API: {e}");
                    thread::sleep(Duration::from_millis(STOP_POLL_MS));
                }
            }
        }
    }

    fn handle(&mut self, mut request: Request) {
        let mut body = Vec::new();
        let too_large = request
            .as_reader()
            .take(BODY_BYTES_MAX as u64 + 1)
            .read_to_end(&mut body)
            .is_err()
            || body.len() > BODY_BYTES_MAX;
        let answer = if too_large {
            Answer::error(413, "request body too large or unreadable")
        } else {
            self.route(request.method(), request.url(), &body)
        };
        if answer.status >= 500 {
            self.failed += 1;
        }
        tracing::debug!(
            method = %request.method(),
            url = request.url(),
            status = answer.status,
            "admin request"
        );
        let mut response = Response::from_string(answer.body).with_status_code(answer.status);
        if let Ok(header) = Header::from_bytes("Content-Type", answer.content_type) {
            response = response.with_header(header);
        }
        if let Err(e) = request.respond(response) {
            tracing::debug!("management API: cannot answer: {e}");
        }
    }

    /// Dispatch one request (pure but for the calls to the cores and the location).
    fn route(&mut self, method: &Method, url: &str, body: &[u8]) -> Answer {
        let (control, view) = (self.control, &mut *self.view);
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let Ok(query) = parse_query(query) else {
            return Answer::error(400, "malformed percent-encoding in the query");
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (Method::Get, ["healthz"]) => Answer::json(200, &json!({ "status": "ok" })),
            (Method::Get, ["readyz"]) => {
                if control.is_ready() {
                    Answer::json(200, &json!({ "status": "ready" }))
                } else {
                    Answer::error(503, "not ready: cores starting or stopping")
                }
            }
            (Method::Get, ["metrics"]) => match all_stats(control) {
                Ok(cores) => Answer {
                    status: 200,
                    body: metrics::render(
                        &cores,
                        control.is_ready(),
                        socket_drops(self.ports),
                        self.failed,
                    ),
                    content_type: metrics::CONTENT_TYPE,
                },
                Err(answer) => answer,
            },
            (Method::Get, ["v1", "stats"]) => match all_stats(control) {
                Ok(cores) => Answer::json(200, &json::stats(&cores)),
                Err(answer) => answer,
            },
            (Method::Get, ["v1", "aors"]) => dump(&query, view),
            (Method::Post, ["v1", "flush"]) => flush(&query, view),
            (Method::Get, ["v1", "aors", aor, "targets"]) => match aor_key(aor) {
                Ok(key) => targets(key, view, self.sockets),
                Err(message) => Answer::error(400, message),
            },
            (_, ["v1", "aors", aor]) | (_, ["v1", "aors", aor, "bindings"]) => {
                let key = match aor_key(aor) {
                    Ok(key) => key,
                    Err(message) => return Answer::error(400, message),
                };
                let bindings = segments.len() == 4;
                match (method, bindings) {
                    (Method::Get, false) => show(key, view),
                    (Method::Delete, false) => remove(key, None, view),
                    (Method::Delete, true) => match query_get(&query, "contact") {
                        Some(contact) => remove(key, Some(contact.as_bytes().to_vec()), view),
                        None => Answer::error(400, "missing ?contact=URI"),
                    },
                    (Method::Post, true) => add(key, body, view),
                    _ => Answer::error(405, "method not allowed on this path"),
                }
            }
            _ => Answer::error(404, "no such endpoint"),
        }
    }
}

fn call(control: &ControlHandle, shard: usize, command: Command) -> Result<Reply, Answer> {
    control
        .call(
            shard,
            command,
            Duration::from_millis(CORE_ANSWER_TIMEOUT_MS),
        )
        .map_err(|e| match e {
            CallError::Busy | CallError::NoAnswer => Answer::error(503, e.as_str()),
        })
}

fn unexpected() -> Answer {
    Answer::error(500, "unexpected answer from a core")
}

fn all_stats(control: &ControlHandle) -> Result<Vec<CoreStats>, Answer> {
    (0..control.shards())
        .map(|shard| match call(control, shard, Command::Stats)? {
            Reply::Stats(stats) => Ok(*stats),
            _ => Err(unexpected()),
        })
        .collect()
}

fn show(aor_key: Vec<u8>, view: &mut dyn LocationView) -> Answer {
    match view.show(aor_key) {
        Ok(Some(aor)) => Answer::json(200, &json::aor(&aor)),
        Ok(None) => Answer::error(404, "AOR not registered"),
        Err(answer) => answer,
    }
}

/// `GET /v1/aors/{aor}/targets` (issue 17): the next hop of every live binding, read
/// through the same view as `show`, so both backends answer it.
fn targets(aor_key: Vec<u8>, view: &mut dyn LocationView, sockets: &[SocketAddr]) -> Answer {
    match view.show(aor_key) {
        Ok(Some(aor)) => Answer::json(200, &json::targets(&aor, sockets)),
        Ok(None) => Answer::error(404, "AOR not registered"),
        Err(answer) => answer,
    }
}

fn remove(aor_key: Vec<u8>, contact: Option<Vec<u8>>, view: &mut dyn LocationView) -> Answer {
    match view.remove(aor_key, contact) {
        Ok(0) => Answer::error(404, "no such binding"),
        Ok(n) => Answer::json(200, &json!({ "removed": n })),
        Err(answer) => answer,
    }
}

/// The body of `POST /v1/aors/{aor}/bindings`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    contact: String,
    #[serde(default = "default_expires")]
    expires: u32,
    q: Option<f64>,
}

fn default_expires() -> u32 {
    3600
}

fn add(aor_key: Vec<u8>, body: &[u8], view: &mut dyn LocationView) -> Answer {
    let parsed: AddBody = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => return Answer::error(400, &format!("malformed body: {e}")),
    };
    match sip::parse_uri(parsed.contact.as_bytes()) {
        Ok(uri) if !matches!(uri.scheme, Scheme::Other(_)) => {}
        _ => return Answer::error(400, "contact must be a sip: or sips: URI"),
    }
    let q = match parsed.q {
        None => None,
        Some(q) if (0.0..=1.0).contains(&q) => Some((q * 1000.0).round() as u16),
        Some(_) => return Answer::error(400, "q must be between 0 and 1"),
    };
    let binding = NewBinding {
        contact: parsed.contact.into_bytes(),
        expires_s: parsed.expires,
        q,
    };
    match view.add(aor_key, binding) {
        Ok(()) => Answer::json(201, &json!({ "added": 1 })),
        Err(answer) => answer,
    }
}

fn flush(query: &[(String, String)], view: &mut dyn LocationView) -> Answer {
    if query_get(query, "confirm") != Some("yes") {
        return Answer::error(400, "flush removes every binding: add ?confirm=yes");
    }
    match view.flush() {
        Ok(removed) => {
            tracing::info!(removed, "management API: flushed every binding");
            Answer::json(200, &json!({ "removed": removed }))
        }
        Err(answer) => answer,
    }
}

fn dump(query: &[(String, String)], view: &mut dyn LocationView) -> Answer {
    let limit = match query_get(query, "limit").map(str::parse::<u64>) {
        None => DUMP_PAGE_AORS_DEFAULT,
        Some(Ok(0)) | Some(Err(_)) => {
            return Answer::error(400, "limit must be a positive integer");
        }
        Some(Ok(n)) => usize::try_from(n).map_or(DUMP_PAGE_AORS_MAX, |n| n.min(DUMP_PAGE_AORS_MAX)),
    };
    match view.dump(query_get(query, "cursor").unwrap_or(""), limit) {
        Ok(page) => Answer::json(200, &json::page(&page.aors, limit, page.next.as_deref())),
        Err(answer) => answer,
    }
}

/// The location-table key of an AOR path segment (`user@domain`, `sip:` optional),
/// or why it is malformed.
fn aor_key(segment: &str) -> Result<Vec<u8>, &'static str> {
    let decoded = percent_decode(segment).ok_or("malformed percent-encoding in the AOR")?;
    let decoded = std::str::from_utf8(&decoded).map_err(|_| "AOR is not UTF-8")?;
    let bare = decoded
        .strip_prefix("sip:")
        .or_else(|| decoded.strip_prefix("sips:"))
        .unwrap_or(decoded);
    let Some((user, domain)) = bare.rsplit_once('@') else {
        return Err("AOR must be user@domain");
    };
    if user.is_empty() || domain.is_empty() || bare.contains([';', '?', '<', '>', ' ']) {
        return Err("AOR must be user@domain");
    }
    let uri_text = format!("sip:{bare}");
    let uri = sip::parse_uri(uri_text.as_bytes()).map_err(|_| "AOR is not a valid SIP URI")?;
    let mut key = Vec::with_capacity(bare.len());
    sip::write_aor_key(&uri, &mut key).map_err(|_| "AOR is not a valid SIP URI")?;
    if key.len() > AOR_KEY_BYTES_MAX {
        return Err("AOR too long");
    }
    Ok(key)
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, ()> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode(s)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(())
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn query_get<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `%XX` decoding (no `+` → space: a `+` is common in telephone-number users).
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_keys_match_the_register_key() {
        assert_eq!(aor_key("alice@Example.COM").unwrap(), b"alice@example.com");
        assert_eq!(
            aor_key("sip:alice@example.com").unwrap(),
            b"alice@example.com"
        );
        assert_eq!(
            aor_key("alice%40example.com").unwrap(),
            b"alice@example.com"
        );
        assert_eq!(
            aor_key("%2B49123@example.com").unwrap(),
            b"+49123@example.com"
        );
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "a%zz@x",
            "a@b;c=d",
            "a@b?x",
        ] {
            assert!(aor_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_and_cursors() {
        let q = parse_query("limit=5&cursor=1.20&contact=sip%3Aa%40b").unwrap();
        assert_eq!(query_get(&q, "limit"), Some("5"));
        assert_eq!(query_get(&q, "contact"), Some("sip:a@b"));
        assert_eq!(memory_view::parse_cursor("1.20"), Some((1, 20)));
        assert_eq!(memory_view::parse_cursor("x"), None);
        assert!(parse_query("a=%f").is_err());
    }
}
