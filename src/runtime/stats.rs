//! Counters: each core counts in plain integers and publishes them with relaxed
//! atomic stores once per loop turn; the main thread sums them for the periodic
//! one-line summary. No core ever writes another core's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use super::redis::COMMIT_FAILURES;
use crate::registrar::{DropReason, Stats};

/// One core's counters (what the core owns and mutates freely).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Datagrams received from the sockets.
    pub(crate) received: u64,
    /// Replies handed to the kernel.
    pub(crate) sent: u64,
    /// Replies the kernel refused.
    pub(crate) send_errors: u64,
    /// Datagrams received from the sockets on the core that owns them, with more than
    /// one core (steered there, or there by chance): answered without a mesh crossing.
    /// Their counterpart is `datagrams_off_owner`. (Stream messages are not counted:
    /// a connection cannot be steered.)
    pub(crate) received_on_owner: u64,
    /// Datagrams received on a core that does not own them, with more than one core:
    /// forwarded over the mesh, or dropped there when it was full.
    pub(crate) datagrams_off_owner: u64,
    /// Datagrams this core forwarded to their owner.
    pub(crate) forwarded_out: u64,
    /// Datagrams other cores forwarded to this one.
    pub(crate) forwarded_in: u64,
    /// Dropped: the owner's inbox was full, or the forward pool empty.
    pub(crate) mesh_full: u64,
    /// Dropped: longer than `DATAGRAM_BYTES_MAX` (MSG_TRUNC) or route said too large.
    pub(crate) too_large: u64,
    /// Dropped by `route`: CRLF keep-alives.
    pub(crate) keep_alive: u64,
    /// Dropped by `route`: SIP responses.
    pub(crate) responses: u64,
    /// Dropped by `route`: unanswerable garbage.
    pub(crate) unanswerable: u64,
    /// Receive errors reported by the socket (e.g. ICMP errors).
    pub(crate) recv_errors: u64,
    /// The registrar's own counters, copied.
    pub(crate) registrar: RegistrarCounters,
    /// Nanoseconds the core loop spent working (not parked).
    pub(crate) busy_ns: u64,
    /// Nanoseconds the core loop has run (working or parked): busy / total is the
    /// busy ratio.
    pub(crate) total_ns: u64,
    /// REGISTERs answered, by latency bucket (upper bounds [`LATENCY_BUCKETS_US`],
    /// the last one unbounded); not cumulative.
    pub(crate) register_latency: [u64; LATENCY_BUCKETS],
    /// Sum of the latencies counted in `register_latency`, in nanoseconds.
    pub(crate) register_latency_sum_ns: u64,
    /// Journal bytes handed to the writer (or waiting for it) but not yet durable.
    pub(crate) persistence_lag_bytes: u64,
    /// Store write or sync errors reported by this core's writer.
    pub(crate) store_errors: u64,
    /// `--location redis`: commits sent to the cluster (resends included).
    pub(crate) redis_sent: u64,
    /// Commits sent again after MOVED, ASK or NOSCRIPT.
    pub(crate) redis_retried: u64,
    /// Commits answered 503 or 500 by the link: lost connection, no master for the
    /// slot, CLUSTERDOWN/TRYAGAIN, timeout, malformed reply.
    pub(crate) redis_failed: u64,
    /// `redis_failed` by reason, in `CommitFailure::ALL` order.
    pub(crate) redis_failed_by: [u64; COMMIT_FAILURES],
    /// Connections to masters made after start-up (reconnects, masters that took over).
    pub(crate) redis_reconnects: u64,
    /// Connections to masters lost.
    pub(crate) redis_connections_lost: u64,
    /// TCP connections accepted.
    pub(crate) tcp_accepted: u64,
    /// TCP connections closed (any reason).
    pub(crate) tcp_closed: u64,
    /// TCP connections open now (a gauge).
    pub(crate) tcp_connections: u64,
    /// TCP connections accepted and closed at once: `--tcp-connections-max` reached.
    pub(crate) tcp_refused: u64,
    /// Requests framed off TCP connections.
    pub(crate) tcp_messages: u64,
    /// Stream messages refused (400 no/bad Content-Length, 513 too large), each
    /// closing its connection.
    pub(crate) tcp_framing_errors: u64,
    /// Connections closed for a message begun longer than `--tcp-header-timeout-ms`.
    pub(crate) tcp_header_timeouts: u64,
    /// Connections closed after `--tcp-idle-timeout-s` without traffic.
    pub(crate) tcp_idle_timeouts: u64,
    /// Connections closed because their peer left too many replies unread.
    pub(crate) tcp_write_overflow: u64,
    /// Times a connection was paused for the rest of a second: `--tcp-messages-per-s`.
    pub(crate) tcp_throttled: u64,
    /// Replies for a connection that had closed (or whose slot was reused).
    pub(crate) tcp_conn_gone: u64,
    /// TLS connections and handshakes (their TCP side counts in the `tcp_` fields).
    pub(crate) tls: TlsCounters,
}

/// Handshake failure reasons counted (`runtime::tcp::HandshakeFailure::ALL`).
pub(crate) const TLS_FAILURE_REASONS: usize = 5;

/// A core's TLS counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsCounters {
    /// TLS connections accepted (a handshake begun).
    pub(crate) accepted: u64,
    /// Handshakes completed.
    pub(crate) handshakes: u64,
    /// Of those, resumed sessions (ticket or session id).
    pub(crate) resumed: u64,
    /// Handshakes in progress now (a gauge).
    pub(crate) handshaking: u64,
    /// TLS connections accepted and closed at once: `--tls-handshakes-max` reached.
    pub(crate) refused: u64,
    /// Handshake steps left for a later turn by the per-turn handshake budget.
    pub(crate) deferred: u64,
    /// Handshakes failed, by reason (`HandshakeFailure::ALL` order).
    pub(crate) failed: [u64; TLS_FAILURE_REASONS],
}

/// The TLS counters, in the order they are published.
const TLS_FIELDS: usize = 6 + TLS_FAILURE_REASONS;

impl TlsCounters {
    fn to_array(&self) -> [u64; TLS_FIELDS] {
        let mut a = [0; TLS_FIELDS];
        let values = [
            self.accepted,
            self.handshakes,
            self.resumed,
            self.handshaking,
            self.refused,
            self.deferred,
        ]
        .into_iter()
        .chain(self.failed);
        for (slot, v) in a.iter_mut().zip(values) {
            *slot = v;
        }
        a
    }

    fn from_array(a: &[u64]) -> Self {
        let at = |i: usize| a.get(i).copied().unwrap_or(0);
        Self {
            accepted: at(0),
            handshakes: at(1),
            resumed: at(2),
            handshaking: at(3),
            refused: at(4),
            deferred: at(5),
            failed: std::array::from_fn(|i| at(6 + i)),
        }
    }

    /// Handshakes failed, whatever the reason.
    pub(crate) fn failures(&self) -> u64 {
        self.failed.iter().sum()
    }
}

/// The TCP counters, in the order they are published.
const TCP_FIELDS: usize = 11;

fn tcp_array(c: &Counters) -> [u64; TCP_FIELDS] {
    [
        c.tcp_accepted,
        c.tcp_closed,
        c.tcp_connections,
        c.tcp_refused,
        c.tcp_messages,
        c.tcp_framing_errors,
        c.tcp_header_timeouts,
        c.tcp_idle_timeouts,
        c.tcp_write_overflow,
        c.tcp_conn_gone,
        c.tcp_throttled,
    ]
}

fn with_tcp(c: Counters, a: [u64; TCP_FIELDS]) -> Counters {
    let [
        tcp_accepted,
        tcp_closed,
        tcp_connections,
        tcp_refused,
        tcp_messages,
        tcp_framing_errors,
        tcp_header_timeouts,
        tcp_idle_timeouts,
        tcp_write_overflow,
        tcp_conn_gone,
        tcp_throttled,
    ] = a;
    Counters {
        tcp_accepted,
        tcp_closed,
        tcp_connections,
        tcp_refused,
        tcp_messages,
        tcp_framing_errors,
        tcp_header_timeouts,
        tcp_idle_timeouts,
        tcp_write_overflow,
        tcp_conn_gone,
        tcp_throttled,
        ..c
    }
}

/// Upper bounds of the REGISTER latency buckets, in microseconds; one more bucket
/// (unbounded) follows them. From a receive batch's `recvmmsg` return (or an inbox
/// drain's start) to the `sendmmsg` flush of its replies.
pub(crate) const LATENCY_BUCKETS_US: [u64; 9] = [25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// Latency buckets, the unbounded one included.
pub(crate) const LATENCY_BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// The part of `registrar::Stats` the summary uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegistrarCounters {
    pub(crate) requests: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) retransmissions: u64,
    pub(crate) dropped: u64,
    pub(crate) bindings: u64,
    pub(crate) aors: u64,
    pub(crate) expired: u64,
    pub(crate) unavailable: u64,
}

impl From<&Stats> for RegistrarCounters {
    fn from(s: &Stats) -> Self {
        Self {
            requests: s.requests,
            accepted: s.accepted,
            rejected: s.rejected,
            retransmissions: s.retransmissions,
            dropped: s.dropped,
            bindings: s.bindings,
            aors: s.aors,
            expired: s.expired,
            unavailable: s.unavailable,
        }
    }
}

impl Counters {
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::KeepAlive => &mut self.keep_alive,
            DropReason::Response => &mut self.responses,
            DropReason::Unanswerable => &mut self.unanswerable,
            DropReason::TooLarge => &mut self.too_large,
        };
        *counter += 1;
    }

    /// Count `registers` REGISTERs answered `elapsed_ns` after their batch arrived.
    pub(crate) fn record_register_latency(&mut self, elapsed_ns: u64, registers: u64) {
        let us = elapsed_ns / 1000;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&upper| us <= upper)
            .unwrap_or(LATENCY_BUCKETS - 1);
        if let Some(b) = self.register_latency.get_mut(bucket) {
            *b += registers;
        }
        self.register_latency_sum_ns = self
            .register_latency_sum_ns
            .saturating_add(elapsed_ns.saturating_mul(registers));
    }

    /// Every datagram dropped without an answer, whatever the reason.
    pub(crate) fn drops(&self) -> u64 {
        self.mesh_full
            + self.too_large
            + self.keep_alive
            + self.responses
            + self.unanswerable
            + self.registrar.dropped
    }

    fn add(&mut self, o: &Self) {
        self.received += o.received;
        self.sent += o.sent;
        self.send_errors += o.send_errors;
        self.received_on_owner += o.received_on_owner;
        self.datagrams_off_owner += o.datagrams_off_owner;
        self.forwarded_out += o.forwarded_out;
        self.forwarded_in += o.forwarded_in;
        self.mesh_full += o.mesh_full;
        self.too_large += o.too_large;
        self.keep_alive += o.keep_alive;
        self.responses += o.responses;
        self.unanswerable += o.unanswerable;
        self.recv_errors += o.recv_errors;
        let (r, p) = (&mut self.registrar, &o.registrar);
        r.requests += p.requests;
        r.accepted += p.accepted;
        r.rejected += p.rejected;
        r.retransmissions += p.retransmissions;
        r.dropped += p.dropped;
        r.bindings += p.bindings;
        r.aors += p.aors;
        r.expired += p.expired;
        r.unavailable += p.unavailable;
        self.busy_ns += o.busy_ns;
        self.total_ns += o.total_ns;
        for (a, b) in self.register_latency.iter_mut().zip(&o.register_latency) {
            *a += b;
        }
        self.register_latency_sum_ns += o.register_latency_sum_ns;
        self.persistence_lag_bytes += o.persistence_lag_bytes;
        self.store_errors += o.store_errors;
        self.redis_sent += o.redis_sent;
        self.redis_retried += o.redis_retried;
        self.redis_failed += o.redis_failed;
        for (a, b) in self.redis_failed_by.iter_mut().zip(&o.redis_failed_by) {
            *a += b;
        }
        self.redis_reconnects += o.redis_reconnects;
        self.redis_connections_lost += o.redis_connections_lost;
        let tcp = tcp_array(self)
            .into_iter()
            .zip(tcp_array(o))
            .map(|(a, b)| a + b);
        let mut sum = [0; TCP_FIELDS];
        for (slot, v) in sum.iter_mut().zip(tcp) {
            *slot = v;
        }
        let mut tls = self.tls.to_array();
        for (a, b) in tls.iter_mut().zip(o.tls.to_array()) {
            *a += b;
        }
        *self = with_tcp(std::mem::take(self), sum);
        self.tls = TlsCounters::from_array(&tls);
    }
}

/// The published copy of one core's [`Counters`].
#[derive(Debug)]
pub(crate) struct SharedCounters {
    fields: [AtomicU64; FIELDS],
}

impl Default for SharedCounters {
    fn default() -> Self {
        Self {
            fields: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The fields before the busy time and latency ones.
const BASE_FIELDS: usize = 22;
/// The Redis fields after the latency buckets: failures by reason, reconnects, losses.
const REDIS_FIELDS: usize = COMMIT_FAILURES + 2;
const FIELDS: usize = BASE_FIELDS + 8 + LATENCY_BUCKETS + REDIS_FIELDS + TCP_FIELDS + TLS_FIELDS;

fn to_array(c: &Counters) -> [u64; FIELDS] {
    let mut a = [0; FIELDS];
    let values = base_array(c).into_iter().chain([
        c.busy_ns,
        c.total_ns,
        c.register_latency_sum_ns,
        c.persistence_lag_bytes,
        c.store_errors,
        c.redis_sent,
        c.redis_retried,
        c.redis_failed,
    ]);
    let redis = c
        .redis_failed_by
        .into_iter()
        .chain([c.redis_reconnects, c.redis_connections_lost]);
    let values = values
        .chain(c.register_latency)
        .chain(redis)
        .chain(tcp_array(c))
        .chain(c.tls.to_array());
    for (slot, v) in a.iter_mut().zip(values) {
        *slot = v;
    }
    a
}

fn base_array(c: &Counters) -> [u64; BASE_FIELDS] {
    let r = &c.registrar;
    [
        c.received,
        c.sent,
        c.send_errors,
        c.received_on_owner,
        c.datagrams_off_owner,
        c.forwarded_out,
        c.forwarded_in,
        c.mesh_full,
        c.too_large,
        c.keep_alive,
        c.responses,
        c.unanswerable,
        c.recv_errors,
        r.requests,
        r.accepted,
        r.rejected,
        r.retransmissions,
        r.dropped,
        r.bindings,
        r.aors,
        r.expired,
        r.unavailable,
    ]
}

fn from_array(a: [u64; FIELDS]) -> Counters {
    let mut base = [0; BASE_FIELDS];
    base.copy_from_slice(&a[..BASE_FIELDS]);
    let at = |i: usize| a.get(BASE_FIELDS + i).copied().unwrap_or(0);
    let mut register_latency = [0; LATENCY_BUCKETS];
    for (i, b) in register_latency.iter_mut().enumerate() {
        *b = at(8 + i);
    }
    let redis_at = 8 + LATENCY_BUCKETS;
    let mut redis_failed_by = [0; COMMIT_FAILURES];
    for (i, b) in redis_failed_by.iter_mut().enumerate() {
        *b = at(redis_at + i);
    }
    let tcp_at = redis_at + REDIS_FIELDS;
    let mut tcp = [0; TCP_FIELDS];
    for (i, v) in tcp.iter_mut().enumerate() {
        *v = at(tcp_at + i);
    }
    let counters = Counters {
        busy_ns: at(0),
        total_ns: at(1),
        register_latency_sum_ns: at(2),
        persistence_lag_bytes: at(3),
        store_errors: at(4),
        redis_sent: at(5),
        redis_retried: at(6),
        redis_failed: at(7),
        register_latency,
        redis_failed_by,
        redis_reconnects: at(redis_at + COMMIT_FAILURES),
        redis_connections_lost: at(redis_at + COMMIT_FAILURES + 1),
        ..from_base(base)
    };
    let tls_at = BASE_FIELDS + tcp_at + TCP_FIELDS;
    Counters {
        tls: TlsCounters::from_array(a.get(tls_at..).unwrap_or_default()),
        ..with_tcp(counters, tcp)
    }
}

fn from_base(a: [u64; BASE_FIELDS]) -> Counters {
    let [
        received,
        sent,
        send_errors,
        received_on_owner,
        datagrams_off_owner,
        forwarded_out,
        forwarded_in,
        mesh_full,
        too_large,
        keep_alive,
        responses,
        unanswerable,
        recv_errors,
        requests,
        accepted,
        rejected,
        retransmissions,
        dropped,
        bindings,
        aors,
        expired,
        unavailable,
    ] = a;
    Counters {
        received,
        sent,
        send_errors,
        received_on_owner,
        datagrams_off_owner,
        forwarded_out,
        forwarded_in,
        mesh_full,
        too_large,
        keep_alive,
        responses,
        unanswerable,
        recv_errors,
        registrar: RegistrarCounters {
            requests,
            accepted,
            rejected,
            retransmissions,
            dropped,
            bindings,
            aors,
            expired,
            unavailable,
        },
        ..Counters::default()
    }
}

impl SharedCounters {
    /// Core side: publish (single writer, relaxed).
    pub(crate) fn publish(&self, c: &Counters) {
        for (slot, value) in self.fields.iter().zip(to_array(c)) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    fn load(&self) -> Counters {
        let mut a = [0u64; FIELDS];
        for (v, slot) in a.iter_mut().zip(&self.fields) {
            *v = slot.load(Ordering::Relaxed);
        }
        from_array(a)
    }
}

/// Sum of every core's published counters.
pub(crate) fn total(cores: &[std::sync::Arc<SharedCounters>]) -> Counters {
    let mut sum = Counters::default();
    for c in cores {
        sum.add(&c.load());
    }
    sum
}

/// The one-line summary between two samples `seconds` apart.
pub(crate) fn summary(before: &Counters, now: &Counters, seconds: f64) -> String {
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / seconds.max(1e-9);
    let mut line = base_summary(before, now, seconds);
    if now.tcp_accepted > 0 {
        line.push_str(&format!(
            "; tcp {} open, {:.0} messages/s, closed by limit: cap {}, header-timeout {}, \
             idle {}, framing {}, write-queue {}; paused by --tcp-messages-per-s {}; replies \
             for closed connections {}",
            now.tcp_connections,
            rate(before.tcp_messages, now.tcp_messages),
            now.tcp_refused,
            now.tcp_header_timeouts,
            now.tcp_idle_timeouts,
            now.tcp_framing_errors,
            now.tcp_write_overflow,
            now.tcp_throttled,
            now.tcp_conn_gone,
        ));
    }
    if now.tls.accepted > 0 {
        let t = &now.tls;
        line.push_str(&format!(
            "; tls {:.0} handshakes/s ({} resumed), {} in progress, refused at cap {}, \
             deferred {}, failed {} (bad-hello {}, no-cert {}, cert-rejected {}, timeout {}, \
             closed {})",
            rate(before.tls.handshakes, t.handshakes),
            t.resumed,
            t.handshaking,
            t.refused,
            t.deferred,
            t.failures(),
            t.failed[0],
            t.failed[1],
            t.failed[2],
            t.failed[3],
            t.failed[4],
        ));
    }
    line
}

fn base_summary(before: &Counters, now: &Counters, seconds: f64) -> String {
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / seconds.max(1e-9);
    format!(
        "stats: received {:.0}/s, requests {:.0}/s, sent {:.0}/s, on-owner {:.0}/s, forwarded {:.0}/s; bindings {}, aors {}, \
         expired {}; drops {} (mesh-full {}, too-large {}, keep-alive {}, response {}, unanswerable {}, registrar {}); \
         send-errors {}, recv-errors {}",
        rate(before.received, now.received),
        rate(before.registrar.requests, now.registrar.requests),
        rate(before.sent, now.sent),
        rate(before.received_on_owner, now.received_on_owner),
        rate(before.forwarded_out, now.forwarded_out),
        now.registrar.bindings,
        now.registrar.aors,
        now.registrar.expired,
        now.drops(),
        now.mesh_full,
        now.too_large,
        now.keep_alive,
        now.responses,
        now.unanswerable,
        now.registrar.dropped,
        now.send_errors,
        now.recv_errors,
    ) + &redis_summary(before, now)
}

/// `--location redis` only: commits sent and failed in the interval (the failures by
/// reason, non-zero ones only), and connection events since start.
fn redis_summary(before: &Counters, now: &Counters) -> String {
    if now.redis_sent == 0 && now.redis_connections_lost == 0 {
        return String::new();
    }
    let reasons: Vec<String> = super::redis::CommitFailure::ALL
        .iter()
        .zip(now.redis_failed_by.iter().zip(&before.redis_failed_by))
        .filter_map(|(reason, (n, b))| {
            let d = n.saturating_sub(*b);
            (d > 0).then(|| format!("{} {d}", reason.name()))
        })
        .collect();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    format!(
        "; redis: sent {}, failed {}{reasons}, reconnects {}, connections lost {}",
        now.redis_sent.saturating_sub(before.redis_sent),
        now.redis_failed.saturating_sub(before.redis_failed),
        now.redis_reconnects,
        now.redis_connections_lost,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn publish_sum_and_summary() {
        let a = Arc::new(SharedCounters::default());
        let b = Arc::new(SharedCounters::default());
        let mut c = Counters {
            received: 10,
            received_on_owner: 6,
            forwarded_out: 4,
            ..Counters::default()
        };
        c.count_drop(DropReason::KeepAlive);
        c.registrar.bindings = 3;
        a.publish(&c);
        b.publish(&Counters {
            received: 5,
            mesh_full: 2,
            redis_sent: 7,
            redis_retried: 2,
            redis_failed: 1,
            redis_failed_by: std::array::from_fn(|i| i as u64 + 10),
            redis_reconnects: 3,
            redis_connections_lost: 2,
            store_errors: 4,
            register_latency: [1; LATENCY_BUCKETS],
            tcp_accepted: 3,
            tcp_connections: 2,
            tcp_messages: 50,
            tcp_header_timeouts: 1,
            ..Counters::default()
        });
        let sum = total(&[a, b]);
        assert_eq!(sum.received, 15);
        // The fields after the base ones survive publishing, each in its own slot.
        assert_eq!(
            (
                sum.store_errors,
                sum.redis_sent,
                sum.redis_retried,
                sum.redis_failed
            ),
            (4, 7, 2, 1)
        );
        assert_eq!(sum.register_latency, [1; LATENCY_BUCKETS]);
        assert_eq!(sum.redis_failed_by, std::array::from_fn(|i| i as u64 + 10));
        assert_eq!((sum.redis_reconnects, sum.redis_connections_lost), (3, 2));
        assert_eq!(sum.drops(), 3);
        assert_eq!(sum.registrar.bindings, 3);
        let line = summary(&Counters::default(), &sum, 5.0);
        assert!(line.contains("received 3/s"), "{line}");
        assert!(line.contains("bindings 3"), "{line}");
        assert!(line.contains("mesh-full 2"), "{line}");
        assert!(line.contains("on-owner 1/s, forwarded 1/s"), "{line}");
        assert!(
            line.contains("redis: sent 7, failed 1 (timeout 10, connection 11,"),
            "{line}"
        );
        assert!(line.contains("reconnects 3, connections lost 2"), "{line}");
        assert!(
            line.contains("tcp 2 open, 10 messages/s") && line.contains("header-timeout 1"),
            "{line}"
        );
        let udp_only = summary(&Counters::default(), &c, 5.0);
        assert!(!udp_only.contains("tcp"), "no TCP, no TCP part: {udp_only}");
    }

    #[test]
    fn register_latency_lands_in_its_bucket() {
        let mut c = Counters::default();
        c.record_register_latency(20_000, 2); // 20 µs: first bucket
        c.record_register_latency(100_000, 1); // 100 µs: the 100 µs bucket (le)
        c.record_register_latency(50_000_000, 1); // 50 ms: unbounded
        assert_eq!(c.register_latency, [2, 0, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(c.register_latency_sum_ns, 40_000 + 100_000 + 50_000_000);
    }

    #[test]
    fn tls_counters_sum_over_cores_and_show_in_the_line() {
        let core = |handshakes, timeouts| Counters {
            tls: TlsCounters {
                accepted: handshakes + 1,
                handshakes,
                resumed: 1,
                refused: 2,
                failed: [0, 0, 0, timeouts, 0],
                ..TlsCounters::default()
            },
            ..Counters::default()
        };
        let cores: Vec<Arc<SharedCounters>> = [core(10, 1), core(20, 2)]
            .iter()
            .map(|c| {
                let shared = Arc::new(SharedCounters::default());
                shared.publish(c);
                shared
            })
            .collect();
        let sum = total(&cores);
        assert_eq!(
            (sum.tls.handshakes, sum.tls.refused, sum.tls.failures()),
            (30, 4, 3)
        );
        let line = summary(&Counters::default(), &sum, 10.0);
        assert!(
            line.contains("tls 3 handshakes/s (2 resumed)") && line.contains("timeout 3"),
            "{line}"
        );
        let quiet = summary(&Counters::default(), &Counters::default(), 10.0);
        assert!(!quiet.contains("tls"), "no TLS, no TLS part: {quiet}");
    }

    #[test]
    fn array_round_trip_keeps_every_field() {
        let a: [u64; FIELDS] = std::array::from_fn(|i| i as u64 + 1);
        assert_eq!(to_array(&from_array(a)), a);
    }
}
