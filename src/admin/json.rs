//! JSON shapes of the management API (built off the SIP cores, on the admin thread).

use std::net::SocketAddr;

use serde_json::{Map, Value, json};

use crate::location::Transport;
use crate::registrar::Outcome;
use crate::runtime::control::{AorCopy, BindingCopy, CoreStats};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn transport(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        Transport::Ws => "ws",
        Transport::Wss => "wss",
    }
}

/// A flow: the connection (core, slot, generation) and, in the shared location, the
/// node that holds it (`--node-id`).
fn flow(f: crate::location::FlowId, node: Option<&str>) -> Value {
    let mut v = json!({
        "core": f.core,
        "slot": f.slot,
        "generation": f.generation,
    });
    if let (Some(node), Some(map)) = (node, v.as_object_mut()) {
        map.insert("node".into(), node.into());
    }
    v
}

fn binding(b: &BindingCopy) -> Value {
    json!({
        "contact": text(&b.contact),
        "expires": b.expires_s,
        "q": b.q.map(|q| f64::from(q) / 1000.0),
        "call_id": text(&b.call_id),
        "cseq": b.cseq,
        "source": b.source.to_string(),
        "transport": transport(b.transport),
        "socket": b.socket,
        "user_agent": text(&b.user_agent),
        "path": text(&b.path),
        "instance": b.instance.as_deref().map(text),
        "reg_id": b.reg_id,
        "registered_ms": b.registered_ms,
        // RFC 5626: the connection it is reachable through (null: reached by its
        // address, or through its Path), and whether that connection has closed.
        "flow": b.flow.map(|f| flow(f, b.flow_node.as_deref())),
        "flow_down": b.flow_down,
        "outbound": b.outbound,
    })
}

/// One AOR: `{"aor": "...", "bindings": [...]}`.
pub(super) fn aor(a: &AorCopy) -> Value {
    json!({
        "aor": text(&a.key),
        "bindings": a.bindings.iter().map(binding).collect::<Vec<_>>(),
    })
}

/// Where a request for binding `b` goes next (what a proxy sets as its destination):
/// the first URI of its Path when it has one (RFC 3327 §5.3), else the address its
/// REGISTER came from, over the same transport (the NAT pinhole, what
/// `handle_ruri_alias` makes `$du`); `None` for a binding with no source (added
/// through the API), which is reached by its Contact.
fn next_hop(b: &BindingCopy, route: &[&[u8]]) -> Option<String> {
    if let Some(first) = route.first() {
        return Some(text(first));
    }
    if b.source.port() == 0 || b.source.ip().is_unspecified() {
        return None;
    }
    let host = match b.source.ip().to_canonical() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let scheme = if matches!(b.transport, Transport::Tls | Transport::Wss) {
        "sips"
    } else {
        "sip"
    };
    Some(format!(
        "{scheme}:{host}:{};transport={}",
        b.source.port(),
        transport(b.transport)
    ))
}

/// One binding's routing target: its Contact, the next hop, and what that hop is made
/// of (received address, transport, local socket, route set, flow).
fn target(b: &BindingCopy, sockets: &[SocketAddr]) -> Value {
    let route = crate::registrar::nat::path_uris(&b.path);
    let sourced = b.source.port() != 0 && !b.source.ip().is_unspecified();
    let mut alias = Vec::new();
    crate::registrar::nat::write_alias(&mut alias, b.source, b.transport);
    json!({
        "contact": text(&b.contact),
        "next_hop": next_hop(b, &route),
        "received": sourced.then(|| b.source.to_string()),
        "alias": sourced.then(|| text(&alias)),
        "transport": transport(b.transport),
        // The UDP sockets are the ones the API knows the addresses of (listen order).
        "socket": {
            "index": b.socket,
            "address": (b.transport == Transport::Udp)
                .then(|| sockets.get(usize::from(b.socket)))
                .flatten()
                .map(ToString::to_string),
        },
        "route": route.iter().map(|r| text(r)).collect::<Vec<_>>(),
        "flow": b.flow.map(|f| json!({
            "core": f.core,
            "slot": f.slot,
            "generation": f.generation,
        })),
        "flow_down": b.flow_down,
        "expires": b.expires_s,
        "q": b.q.map(|q| f64::from(q) / 1000.0),
    })
}

/// The routing targets of one AOR: `{"aor": "...", "targets": [...]}`, one per live
/// binding. `sockets`: the UDP listen addresses, in listen order.
pub(super) fn targets(a: &AorCopy, sockets: &[SocketAddr]) -> Value {
    json!({
        "aor": text(&a.key),
        "targets": a.bindings.iter().map(|b| target(b, sockets)).collect::<Vec<_>>(),
    })
}

/// A dump page: `{"aors": [...], "count": n, "limit": n, "next": "cursor"|null}`.
pub(super) fn page(aors: &[AorCopy], limit: usize, next: Option<&str>) -> Value {
    json!({
        "aors": aors.iter().map(aor).collect::<Vec<_>>(),
        "count": aors.len(),
        "limit": limit,
        "next": next,
    })
}

/// One core's counters as ordered `(name, value)` pairs (the same names, in the same
/// order, for every core, so totals are a pairwise sum).
pub(crate) fn flatten(c: &CoreStats) -> Vec<(String, u64)> {
    let r = &c.registrar;
    let t = &c.runtime;
    let mut out: Vec<(String, u64)> = [
        ("received", t.received),
        ("sent", t.sent),
        ("send_errors", t.send_errors),
        ("recv_errors", t.recv_errors),
        ("forwarded_out", t.forwarded_out),
        ("forwarded_in", t.forwarded_in),
        ("mesh_full", t.mesh_full),
        ("dropped_too_large", t.too_large),
        ("dropped_keep_alive", t.keep_alive),
        ("dropped_response", t.responses),
        ("dropped_unanswerable", t.unanswerable),
        ("requests", r.requests),
        ("accepted", r.accepted),
        ("rejected", r.rejected),
        ("retransmissions", r.retransmissions),
        ("bindings", r.bindings),
        ("aors", r.aors),
        ("expired", r.expired),
        ("evicted", r.evicted),
        ("txns", r.txns),
        ("txn_evicted", r.txn_evicted),
        ("admin_removed", r.admin_removed),
        ("nat_pings_sent", r.ping.sent),
        ("nat_ping_answers", r.ping.answered),
        ("nat_pings_lost", r.ping.lost),
        ("nat_ping_removals", r.ping.removed),
        ("nat_ping_unexpected", r.ping.unexpected.iter().sum()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    for (name, v) in Outcome::NAMES.iter().zip(r.outcomes) {
        out.push((format!("outcome_{name}"), v));
    }
    let a = c.auth.unwrap_or_default();
    let f = &a.failures;
    for (name, v) in [
        ("auth_challenges", a.challenges),
        ("auth_stale", a.stale),
        ("auth_ok", a.ok),
        ("auth_failed_unknown_user", f.unknown_user),
        ("auth_failed_bad_response", f.bad_response),
        ("auth_failed_replayed_nc", f.replayed_nc),
        ("auth_failed_stale", f.stale),
        ("auth_failed_malformed", f.malformed),
        ("auth_failed_unknown_scheme", f.unknown_scheme),
        ("auth_failed_realm_mismatch", f.realm_mismatch),
        ("auth_failed_invalid_nonce", f.invalid_nonce),
        ("auth_failed_unsupported", f.unsupported),
    ] {
        out.push((name.to_string(), v));
    }
    out
}

/// `{"cores": [{"core": i, ...}], "total": {...}}`.
pub(super) fn stats(cores: &[CoreStats]) -> Value {
    let mut total: Vec<(String, u64)> = Vec::new();
    let mut per_core = Vec::with_capacity(cores.len());
    for c in cores {
        let flat = flatten(c);
        if total.is_empty() {
            total = flat.iter().map(|(n, _)| (n.clone(), 0)).collect();
        }
        for ((_, sum), (_, v)) in total.iter_mut().zip(&flat) {
            *sum += v;
        }
        let mut object = Map::new();
        object.insert("core".into(), json!(c.core));
        for (name, v) in flat {
            object.insert(name, json!(v));
        }
        per_core.push(Value::Object(object));
    }
    let total: Map<String, Value> = total.into_iter().map(|(n, v)| (n, json!(v))).collect();
    json!({ "cores": per_core, "total": total })
}
