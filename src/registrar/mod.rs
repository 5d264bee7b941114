//! The RFC 3261 §10.3 registrar pipeline (being built).
//!
//! This file fixes the API that the runtime drives; the pipeline behind it is filled in
//! by the registrar work. Call order per shard: `handle_datagram` for each received
//! datagram (after [`route`] said this shard owns it), `handle_timeout(now)` whenever
//! `poll_timeout()` is due (spurious calls are no-ops).
#![forbid(unsafe_code)]

use std::net::SocketAddr;

/// Where a datagram came from and which local socket received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// The remote address and port the datagram came from.
    pub addr: SocketAddr,
    /// Index of the local listening address (`--listen` order) it arrived on.
    pub local: u16,
}

/// What the shard should do with a datagram before handing it to a [`Registrar`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Owned by shard `hash % shards`: the AOR's hash (REGISTER: To AOR; others:
    /// Request-URI), or the Call-ID hash for requests with no AOR to key on.
    Hash(u64),
    /// Nothing to answer and nothing to route (keep-alive CRLF, responses, garbage
    /// without a usable Via): drop and count.
    Drop(DropReason),
}

/// Why a datagram was dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A CRLF keep-alive (RFC 5626 §3.5.1).
    KeepAlive,
    /// A SIP response: a registrar sends no requests, so none is expected.
    Response,
    /// Unparseable, and no Via to answer to.
    Unanswerable,
    /// Larger than the datagram limit.
    TooLarge,
}

/// Decide which shard owns a datagram. Pure; cheap enough to run on the receiving core.
pub fn route(bytes: &[u8]) -> Route {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().take(64) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    if bytes.is_empty() {
        Route::Drop(DropReason::Unanswerable)
    } else {
        Route::Hash(h)
    }
}

/// Policy when a requested expiry is below the minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinExpiresPolicy {
    /// 423 Interval Too Brief with `Min-Expires` (RFC 3261 §10.3 step 7).
    Reject,
    /// Raise it to the minimum (what OpenSIPS does).
    Clamp,
}

/// Policy when a REGISTER would take an AOR past `max_contacts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxContactsPolicy {
    /// 503 with a reason and `Retry-After`.
    Reject,
    /// Remove the oldest bindings to make room.
    EvictOldest,
}

/// The registrar's settings, already validated by `config`.
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Domains served (lower-case). Empty: serve any domain.
    pub domains: Vec<String>,
    /// Smallest expiry granted, in seconds.
    pub min_expires_s: u32,
    /// Largest expiry granted, in seconds (larger requests are clamped).
    pub max_expires_s: u32,
    /// Expiry when the request names none, in seconds.
    pub default_expires_s: u32,
    /// What to do below `min_expires_s`.
    pub min_expires_policy: MinExpiresPolicy,
    /// Bindings per AOR; 0 means unlimited.
    pub max_contacts: u32,
    /// What to do past `max_contacts`.
    pub max_contacts_policy: MaxContactsPolicy,
    /// Downward jitter on granted expiries, in percent (0..=50).
    pub expires_jitter_percent: u8,
    /// Timer J: how long a final response is kept for retransmissions, in ms.
    pub timer_j_ms: u64,
    /// Cached transactions per shard.
    pub txn_cache_max: usize,
    /// Bindings per shard; past it a new binding gets 503.
    pub max_bindings: usize,
    /// Seed for To-tags and jitter (deterministic tests).
    pub seed: u64,
    /// Value of the `Server` header.
    pub server_name: String,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 3600,
            min_expires_policy: MinExpiresPolicy::Reject,
            max_contacts: 0,
            max_contacts_policy: MaxContactsPolicy::Reject,
            expires_jitter_percent: 0,
            timer_j_ms: 32_000,
            txn_cache_max: 262_144,
            max_bindings: 4_000_000,
            seed: 0x5eed,
            server_name: concat!("sipreg/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// What `handle_datagram` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A response was written to `out`: send it to the returned address.
    Reply(SocketAddr),
    /// Nothing to send (ACK absorbed, or dropped and counted).
    Nothing,
}

/// Per-shard counters, read by the runtime for the statistics line and metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Requests handled (not counting retransmissions).
    pub requests: u64,
    /// REGISTERs answered 200.
    pub accepted: u64,
    /// Requests answered with a final non-2xx.
    pub rejected: u64,
    /// Retransmissions answered from the transaction cache.
    pub retransmissions: u64,
    /// Datagrams dropped without an answer.
    pub dropped: u64,
    /// Bindings held now.
    pub bindings: u64,
    /// AORs held now.
    pub aors: u64,
    /// Bindings removed by expiry.
    pub expired: u64,
    /// Transactions evicted from the cache before Timer J.
    pub txn_evicted: u64,
}

/// One shard's registrar state machine.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    stats: Stats,
}

impl Registrar {
    /// A registrar for one shard.
    pub fn new(config: RegistrarConfig) -> Self {
        Self { config, stats: Stats::default() }
    }

    /// Handle one datagram at `now_ms` (milliseconds since the Unix epoch). Writes the
    /// response, if any, into `out` (cleared first).
    pub fn handle_datagram(
        &mut self,
        now_ms: u64,
        source: Source,
        bytes: &[u8],
        arena: &bumpalo::Bump,
        out: &mut Vec<u8>,
    ) -> Handled {
        let _ = (now_ms, bytes, arena, &self.config);
        out.clear();
        out.extend_from_slice(b"SIP/2.0 501 Not Implemented\r\nContent-Length: 0\r\n\r\n");
        self.stats.requests += 1;
        Handled::Reply(source.addr)
    }

    /// Expire bindings and transactions due at `now_ms`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let _ = now_ms;
    }

    /// When `handle_timeout` should next be called, in ms since the Unix epoch.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        None
    }

    /// This shard's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
