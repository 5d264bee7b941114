//! `GET /metrics`: the counters of every core, summed, in the OpenMetrics text format
//! (which Prometheus scrapes natively), encoded by the `prometheus-client` crate.
//!
//! Why a fresh registry per scrape: the counters live in the cores and reach the admin
//! thread as a snapshot (`Command::Stats`); building a registry from the snapshot keeps
//! the cores free of any metrics type and any shared state. A scrape is rare (seconds
//! apart), so the allocation is irrelevant. Names follow the Prometheus conventions:
//! `sipreg_<what>_total` for counters (the encoder adds `_total`), base units.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::registrar::{METHOD_NAMES, Outcome, STATUS_NAMES};
use crate::runtime::control::CoreStats;
use crate::runtime::{LATENCY_BUCKETS_US, RedisCommitFailure};

/// The Content-Type of the exposition.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// A help text without its final full stop: the encoder adds one.
fn bare(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, bare(help), c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, bare(help), g);
}

fn family(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let f: Family<Labels, Counter> = Family::default();
    for (labels, v) in values {
        f.get_or_create(&labels).inc_by(v);
    }
    registry.register(name, bare(help), f);
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let f: Family<Labels, Gauge> = Family::default();
    for (labels, v) in values {
        f.get_or_create(&labels)
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    registry.register(name, bare(help), f);
}

fn seconds_family(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let f: Family<Labels, Counter<f64, AtomicU64>> = Family::default();
    for (labels, ns) in values {
        f.get_or_create(&labels).inc_by(ns as f64 / 1e9);
    }
    registry.register(name, bare(help), f);
}

/// A histogram whose buckets were counted elsewhere (in the cores): bucket upper
/// bounds in seconds, non-cumulative counts (the encoder accumulates), and the sum.
#[derive(Debug)]
struct CountedHistogram {
    buckets: Vec<(f64, u64)>,
    sum_s: f64,
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let count = self.buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<()>(self.sum_s, count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Render the exposition for the snapshot `cores`; `socket_drops` from
/// [`runtime::socket_drops`](crate::runtime::socket_drops).
pub(super) fn render(
    cores: &[CoreStats],
    ready: bool,
    socket_drops: Option<u64>,
    admin_failed: u64,
) -> String {
    let sum = |f: &dyn Fn(&CoreStats) -> u64| cores.iter().map(f).sum::<u64>();
    let mut r = Registry::with_prefix("sipreg");

    gauge(
        &mut r,
        "cores",
        "SIP cores (shards) running.",
        cores.len() as u64,
    );
    gauge(
        &mut r,
        "ready",
        "1 once every core is up.",
        u64::from(ready),
    );

    // Outcomes are indexed in `Outcome::index` order: the successes and absorbed
    // requests first, every final non-2xx after `Retransmission`.
    let first_rejection = Outcome::Retransmission.index() + 1;
    let mut by_outcome = Vec::new();
    let mut rejections = Vec::new();
    for (i, name) in Outcome::NAMES.iter().enumerate() {
        let v = sum(&|c| c.registrar.outcomes.get(i).copied().unwrap_or(0));
        if i >= first_rejection {
            rejections.push((vec![("reason", (*name).to_string())], v));
        }
        by_outcome.push((vec![("outcome", (*name).to_string())], v));
    }
    family(
        &mut r,
        "requests",
        "SIP requests handled (not retransmissions), by outcome.",
        by_outcome,
    );
    // The fixed method x status matrix (bounded labels: unknown methods are `other`).
    let mut by_method = Vec::with_capacity(METHOD_NAMES.len() * STATUS_NAMES.len());
    for (m, method) in METHOD_NAMES.iter().enumerate() {
        for (s, status) in STATUS_NAMES.iter().enumerate() {
            let v = sum(&|c| {
                c.registrar
                    .by_method
                    .get(m)
                    .and_then(|row| row.get(s))
                    .copied()
                    .unwrap_or(0)
            });
            by_method.push((
                vec![
                    ("method", (*method).to_string()),
                    ("status", (*status).to_string()),
                ],
                v,
            ));
        }
    }
    family(
        &mut r,
        "requests_by_method",
        "SIP requests handled (not retransmissions), by method (other: any method without \
         its own label) and status sent (none: nothing sent, an absorbed ACK).",
        by_method,
    );
    family(
        &mut r,
        "rejections",
        "SIP requests answered with a final non-2xx, by reason.",
        rejections,
    );
    counter(
        &mut r,
        "retransmissions",
        "Retransmissions answered from the transaction cache.",
        sum(&|c| c.registrar.retransmissions),
    );
    gauge(
        &mut r,
        "bindings",
        "Bindings held now.",
        sum(&|c| c.registrar.bindings),
    );
    gauge(
        &mut r,
        "aors",
        "AORs with at least one binding now.",
        sum(&|c| c.registrar.aors),
    );
    counter(
        &mut r,
        "expirations",
        "Bindings removed by expiry.",
        sum(&|c| c.registrar.expired),
    );
    counter(
        &mut r,
        "contact_evictions",
        "Bindings evicted by the evict-oldest max-contacts policy.",
        sum(&|c| c.registrar.evicted),
    );
    counter(
        &mut r,
        "admin_removals",
        "Bindings removed through the management API.",
        sum(&|c| c.registrar.admin_removed),
    );
    counter(
        &mut r,
        "flow_removals",
        "Outbound bindings removed because their connection closed (RFC 5626).",
        sum(&|c| c.registrar.flow_removed),
    );
    counter(
        &mut r,
        "flows_down",
        "Bindings whose connection closed, kept until they expire.",
        sum(&|c| c.registrar.flow_down),
    );
    counter(
        &mut r,
        "flows_untracked",
        "Connection bindings not indexed for removal at close (a bound reached).",
        sum(&|c| c.registrar.flow_untracked),
    );
    // Keep-alive pings of UDP bindings (issue 17).
    counter(
        &mut r,
        "nat_pings_sent",
        "Keep-alive pings (CRLF or OPTIONS) sent to UDP bindings.",
        sum(&|c| c.registrar.ping.sent),
    );
    counter(
        &mut r,
        "nat_ping_answers",
        "OPTIONS pings answered from their binding's source.",
        sum(&|c| c.registrar.ping.answered),
    );
    counter(
        &mut r,
        "nat_pings_lost",
        "OPTIONS pings still unanswered when the next one was due.",
        sum(&|c| c.registrar.ping.lost),
    );
    counter(
        &mut r,
        "nat_ping_removals",
        "Bindings removed after --nat-ping-max-lost unanswered OPTIONS pings in a row.",
        sum(&|c| c.registrar.ping.removed),
    );
    let unexpected = crate::registrar::ping::UNEXPECTED_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let v = sum(&|c| c.registrar.ping.unexpected.get(i).copied().unwrap_or(0));
            (vec![("reason", (*name).to_string())], v)
        })
        .collect();
    family(
        &mut r,
        "nat_ping_unexpected_replies",
        "SIP responses that answer no ping of ours, dropped: branch (not a ping branch, \
         or junk), binding (gone, another one, none outstanding), address (not from the \
         binding's source).",
        unexpected,
    );
    gauge(
        &mut r,
        "transactions",
        "Transactions in the Timer J cache now.",
        sum(&|c| c.registrar.txns),
    );
    counter(
        &mut r,
        "transaction_evictions",
        "Transactions evicted from the cache before Timer J.",
        sum(&|c| c.registrar.txn_evicted),
    );
    counter(
        &mut r,
        "datagrams_received",
        "Datagrams received from the sockets.",
        sum(&|c| c.runtime.received),
    );
    counter(
        &mut r,
        "replies_sent",
        "Replies handed to the kernel.",
        sum(&|c| c.runtime.sent),
    );
    counter(
        &mut r,
        "send_errors",
        "Replies the kernel refused.",
        sum(&|c| c.runtime.send_errors),
    );
    counter(
        &mut r,
        "receive_errors",
        "Errors reported by the sockets on receive.",
        sum(&|c| c.runtime.recv_errors),
    );
    counter(
        &mut r,
        "forwards",
        "Datagrams forwarded to their owner core.",
        sum(&|c| c.runtime.forwarded_out),
    );
    // Receive steering (issue 13): where a datagram that needs an owner first landed.
    // With steering on, `other` is what the program said "no choice" for (or misread);
    // with one core every datagram is on its owner and neither is counted.
    family(
        &mut r,
        "steering_received",
        "Datagrams received from a socket, by whether the receiving core owns them \
         (more than one core only).",
        vec![
            (
                vec![("placement", "owner".into())],
                sum(&|c| c.runtime.received_on_owner),
            ),
            (
                vec![("placement", "other".into())],
                sum(&|c| c.runtime.datagrams_off_owner),
            ),
        ],
    );
    // Issue 15: the shared location's commits (0 with --location memory).
    counter(
        &mut r,
        "redis_commits_sent",
        "Commits sent to the Redis Cluster (resends after MOVED/ASK/NOSCRIPT included).",
        sum(&|c| c.runtime.redis_sent),
    );
    counter(
        &mut r,
        "redis_commits_retried",
        "Commits sent again after MOVED, ASK or NOSCRIPT.",
        sum(&|c| c.runtime.redis_retried),
    );
    family(
        &mut r,
        "redis_commits_failed",
        "Commits answered without a result, by reason: 503 for timeout, connection \
         (master not connected or lost), clusterdown (no master for the slot), \
         noreplicas, redirects, refused, wait (fewer replicas than --redis-wait), \
         overload; 500 for malformed.",
        RedisCommitFailure::ALL
            .iter()
            .map(|f| {
                let i = f.index();
                (
                    vec![("reason", f.name().to_string())],
                    sum(&|c| c.runtime.redis_failed_by.get(i).copied().unwrap_or(0)),
                )
            })
            .collect(),
    );
    counter(
        &mut r,
        "redis_reconnects",
        "Connections to Redis masters made after start-up (reconnects, and masters \
         that took over in a failover).",
        sum(&|c| c.runtime.redis_reconnects),
    );
    counter(
        &mut r,
        "redis_connections_lost",
        "Connections to Redis masters lost.",
        sum(&|c| c.runtime.redis_connections_lost),
    );
    counter(
        &mut r,
        "mesh_drops",
        "Datagrams dropped: owner inbox full or forward pool empty.",
        sum(&|c| c.runtime.mesh_full),
    );
    // SIP over TCP (RFC 3261 §18): connections and why they closed.
    counter(
        &mut r,
        "tcp_connections_accepted",
        "TCP connections accepted.",
        sum(&|c| c.runtime.tcp_accepted),
    );
    gauge(
        &mut r,
        "tcp_connections",
        "TCP connections open.",
        sum(&|c| c.runtime.tcp_connections),
    );
    counter(
        &mut r,
        "tcp_messages",
        "Requests framed off TCP connections.",
        sum(&|c| c.runtime.tcp_messages),
    );
    counter(
        &mut r,
        "tcp_connections_closed",
        "TCP connections closed, for any reason.",
        sum(&|c| c.runtime.tcp_closed),
    );
    family(
        &mut r,
        "tcp_limits",
        "TCP connections ended by a limit: over --tcp-connections-max (accepted and closed \
         at once), a message begun longer than --tcp-header-timeout-ms, idle past \
         --tcp-idle-timeout-s, a message that cannot be framed (400/513), replies left unread.",
        vec![
            (
                vec![("limit", "connections_max".into())],
                sum(&|c| c.runtime.tcp_refused),
            ),
            (
                vec![("limit", "header_timeout".into())],
                sum(&|c| c.runtime.tcp_header_timeouts),
            ),
            (
                vec![("limit", "idle_timeout".into())],
                sum(&|c| c.runtime.tcp_idle_timeouts),
            ),
            (
                vec![("limit", "framing".into())],
                sum(&|c| c.runtime.tcp_framing_errors),
            ),
            (
                vec![("limit", "write_queue".into())],
                sum(&|c| c.runtime.tcp_write_overflow),
            ),
        ],
    );
    counter(
        &mut r,
        "tcp_rate_limited",
        "Times a TCP or TLS connection was not read for the rest of a second: \
         --tcp-messages-per-s reached (the sender is held by TCP flow control).",
        sum(&|c| c.runtime.tcp_throttled),
    );
    counter(
        &mut r,
        "tcp_replies_connection_gone",
        "Replies for a TCP connection that had closed.",
        sum(&|c| c.runtime.tcp_conn_gone),
    );
    // SIP over TLS (RFC 3261 §26.2.1): handshakes and their limits.
    counter(
        &mut r,
        "tls_connections_accepted",
        "TLS connections accepted (a handshake begun).",
        sum(&|c| c.runtime.tls.accepted),
    );
    counter(
        &mut r,
        "tls_handshakes",
        "TLS handshakes completed.",
        sum(&|c| c.runtime.tls.handshakes),
    );
    counter(
        &mut r,
        "tls_handshakes_resumed",
        "TLS handshakes that resumed a session (ticket or session id).",
        sum(&|c| c.runtime.tls.resumed),
    );
    gauge(
        &mut r,
        "tls_handshakes_in_progress",
        "TLS handshakes in progress.",
        sum(&|c| c.runtime.tls.handshaking),
    );
    counter(
        &mut r,
        "tls_handshakes_refused",
        "TLS connections accepted and closed at once: --tls-handshakes-max in progress.",
        sum(&|c| c.runtime.tls.refused),
    );
    counter(
        &mut r,
        "tls_handshakes_deferred",
        "TLS handshake steps left for a later loop turn by the per-turn handshake budget.",
        sum(&|c| c.runtime.tls.deferred),
    );
    family(
        &mut r,
        "tls_handshake_failures",
        "TLS handshakes failed, by reason: bad_client_hello (not TLS, nothing in common, an \
         alert), no_cert and cert_rejected (mutual TLS), timeout (--tls-handshake-timeout-ms), \
         closed (the peer left first).",
        crate::runtime::TLS_HANDSHAKE_FAILURES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    vec![("reason", (*name).to_string())],
                    sum(&|c| c.runtime.tls.failed.get(i).copied().unwrap_or(0)),
                )
            })
            .collect(),
    );
    family(
        &mut r,
        "drops",
        "Datagrams dropped without an answer, by reason.",
        vec![
            (
                vec![("reason", "too_large".into())],
                sum(&|c| c.runtime.too_large),
            ),
            (
                vec![("reason", "keep_alive".into())],
                sum(&|c| c.runtime.keep_alive),
            ),
            (
                vec![("reason", "response".into())],
                sum(&|c| c.runtime.responses),
            ),
            (
                vec![("reason", "unanswerable".into())],
                sum(&|c| c.runtime.unanswerable),
            ),
            (
                vec![("reason", "mesh_full".into())],
                sum(&|c| c.runtime.mesh_full),
            ),
        ],
    );
    let auth = |f: &dyn Fn(&crate::auth::Counters) -> u64| sum(&|c| c.auth.as_ref().map_or(0, f));
    counter(
        &mut r,
        "auth_challenges",
        "401 challenges sent.",
        auth(&|a| a.challenges),
    );
    counter(
        &mut r,
        "auth_successes",
        "Successful digest authentications.",
        auth(&|a| a.ok),
    );
    family(
        &mut r,
        "auth_failures",
        "Failed digest authentications, by reason.",
        vec![
            (
                vec![("reason", "unknown_user".into())],
                auth(&|a| a.failures.unknown_user),
            ),
            (
                vec![("reason", "bad_response".into())],
                auth(&|a| a.failures.bad_response),
            ),
            (
                vec![("reason", "replayed_nc".into())],
                auth(&|a| a.failures.replayed_nc),
            ),
            (
                vec![("reason", "stale".into())],
                auth(&|a| a.failures.stale),
            ),
            (
                vec![("reason", "malformed".into())],
                auth(&|a| a.failures.malformed),
            ),
            (
                vec![("reason", "unknown_scheme".into())],
                auth(&|a| a.failures.unknown_scheme),
            ),
            (
                vec![("reason", "realm_mismatch".into())],
                auth(&|a| a.failures.realm_mismatch),
            ),
            (
                vec![("reason", "invalid_nonce".into())],
                auth(&|a| a.failures.invalid_nonce),
            ),
            (
                vec![("reason", "unsupported".into())],
                auth(&|a| a.failures.unsupported),
            ),
        ],
    );

    // Per core: shard skew (a hot AOR range) and a core that stopped counting.
    let per_core = |f: &dyn Fn(&CoreStats) -> u64| {
        cores
            .iter()
            .map(|c| (vec![("core", c.core.to_string())], f(c)))
            .collect::<Vec<_>>()
    };
    family(
        &mut r,
        "core_requests",
        "SIP requests handled, per core.",
        per_core(&|c| c.registrar.requests),
    );
    family(
        &mut r,
        "core_datagrams_received",
        "Datagrams received, per core.",
        per_core(&|c| c.runtime.received),
    );
    gauge_family(
        &mut r,
        "core_bindings",
        "Bindings held now, per core (shard).",
        per_core(&|c| c.registrar.bindings),
    );

    seconds_family(
        &mut r,
        "core_busy_seconds",
        "Seconds the core spent working (not parked), per core; \
         rate(sipreg_core_busy_seconds_total) / rate(sipreg_core_seconds_total) is its busy ratio.",
        per_core(&|c| c.runtime.busy_ns),
    );
    seconds_family(
        &mut r,
        "core_seconds",
        "Seconds the core loop has run (working or parked), per core: the denominator of \
         the busy ratio.",
        per_core(&|c| c.runtime.total_ns),
    );
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .chain([f64::MAX]) // the encoder writes f64::MAX as +Inf
        .map(|le| (le, 0))
        .collect();
    for c in cores {
        for (b, n) in buckets.iter_mut().zip(&c.runtime.register_latency) {
            b.1 += n;
        }
    }
    r.register(
        "register_duration_seconds",
        "REGISTER latency inside the server: from the receive batch's recvmmsg return (or \
         the owner's inbox drain, when forwarded) to the sendmmsg of its replies",
        CountedHistogram {
            buckets,
            sum_s: sum(&|c| c.runtime.register_latency_sum_ns) as f64 / 1e9,
        },
    );
    gauge_family(
        &mut r,
        "persistence_lag_bytes",
        "Journal bytes committed by the core but not yet durable on disk, per core.",
        per_core(&|c| c.runtime.persistence_lag_bytes),
    );
    counter(
        &mut r,
        "store_write_errors",
        "Location store write or sync errors.",
        sum(&|c| c.runtime.store_errors),
    );

    if let Some(drops) = socket_drops {
        counter(
            &mut r,
            "socket_receive_drops",
            "Datagrams the kernel dropped on the listening sockets (receive buffer full).",
            drops,
        );
    }

    counter(
        &mut r,
        "admin_failed",
        "Management API requests answered 5xx: a core, or with --location redis Redis, did not answer.",
        admin_failed,
    );

    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Stats;

    fn core(core: usize) -> CoreStats {
        CoreStats {
            core,
            registrar: Stats::default(),
            auth: None,
            runtime: Default::default(),
        }
    }

    #[test]
    fn requests_by_method_are_summed_over_cores() {
        let (mut a, mut b) = (core(0), core(1));
        a.registrar.by_method[0][0] = 3; // REGISTER 200
        b.registrar.by_method[0][0] = 4;
        b.registrar.by_method[1][1] = 2; // INVITE 302
        let text = render(&[a, b], true, None, 0);
        for line in [
            "sipreg_requests_by_method_total{method=\"REGISTER\",status=\"200\"} 7",
            "sipreg_requests_by_method_total{method=\"INVITE\",status=\"302\"} 2",
            "sipreg_requests_by_method_total{method=\"other\",status=\"none\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn busy_latency_and_lag_are_exported() {
        let (mut a, mut b) = (core(0), core(1));
        a.runtime.busy_ns = 500_000_000;
        a.runtime.total_ns = 2_000_000_000;
        a.runtime.record_register_latency(40_000, 3); // 40 µs: le 0.00005
        b.runtime.record_register_latency(20_000_000, 1); // 20 ms: +Inf only
        b.runtime.persistence_lag_bytes = 4096;
        b.runtime.store_errors = 2;
        let text = render(&[a, b], true, None, 0);
        for line in [
            "sipreg_core_busy_seconds_total{core=\"0\"} 0.5",
            "sipreg_core_seconds_total{core=\"0\"} 2.0",
            "sipreg_register_duration_seconds_bucket{le=\"0.000025\"} 0",
            "sipreg_register_duration_seconds_bucket{le=\"0.00005\"} 3",
            "sipreg_register_duration_seconds_bucket{le=\"0.01\"} 3",
            "sipreg_register_duration_seconds_bucket{le=\"+Inf\"} 4",
            "sipreg_register_duration_seconds_count 4",
            "sipreg_register_duration_seconds_sum 0.02012",
            "sipreg_persistence_lag_bytes{core=\"1\"} 4096",
            "sipreg_store_write_errors_total 2",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
