//! Per-shard counters: what the registrar counts as it answers, read by the runtime for
//! the statistics line, `/v1/stats` and `/metrics`.

use super::by_method::{METHODS, STATUSES};
use super::outcome::OUTCOMES;

/// Per-shard counters, read by the runtime for the statistics line and metrics.
#[derive(Clone, Debug)]
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
    /// Bindings evicted by the evict-oldest `max_contacts` policy.
    pub evicted: u64,
    /// Transactions evicted from the cache before Timer J.
    pub txn_evicted: u64,
    /// Requests answered 503 (max contacts, max bindings, store failed): overload.
    pub unavailable: u64,
    /// Transactions cached now.
    pub txns: u64,
    /// Requests by outcome, indexed by [`Outcome::index`] (names: [`Outcome::NAMES`]).
    pub outcomes: [u64; OUTCOMES],
    /// Drops by reason: keep-alive, response, unanswerable, too large.
    pub drops: [u64; 4],
    /// Bindings removed through the management API (`admin_remove`, `admin_flush`).
    pub admin_removed: u64,
    /// Outbound bindings removed because their flow closed (RFC 5626 §6).
    pub flow_removed: u64,
    /// Bindings marked flow-down because their connection closed (kept to expiry).
    pub flow_down: u64,
    /// Flow bindings not indexed for `flow_closed` (a bound reached): they expire.
    pub flow_untracked: u64,
    /// Keep-alive pings of UDP bindings (issue 17).
    pub ping: super::ping::PingStats,
    /// Requests by method row and status column (names: [`METHOD_NAMES`],
    /// [`STATUS_NAMES`]); retransmissions are not in it (see `retransmissions`).
    pub by_method: [[u64; STATUSES]; METHODS],
}

// By hand: `Default` is not derived for arrays longer than 32 (`outcomes`).
impl Default for Stats {
    fn default() -> Self {
        Self {
            requests: 0,
            accepted: 0,
            rejected: 0,
            retransmissions: 0,
            dropped: 0,
            bindings: 0,
            aors: 0,
            expired: 0,
            evicted: 0,
            txn_evicted: 0,
            unavailable: 0,
            txns: 0,
            outcomes: [0; OUTCOMES],
            drops: [0; 4],
            admin_removed: 0,
            flow_removed: 0,
            flow_down: 0,
            flow_untracked: 0,
            ping: super::ping::PingStats::default(),
            by_method: [[0; STATUSES]; METHODS],
        }
    }
}

impl Stats {
    /// REGISTERs handled (every status; not retransmissions): the runtime diffs it
    /// around a batch to time the REGISTERs answered in it.
    pub fn registers(&self) -> u64 {
        self.by_method.first().map_or(0, |row| row.iter().sum())
    }
}
