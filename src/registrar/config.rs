//! The registrar's settings: what `config` validated from the command line, handed to
//! every shard. Plain data; the pipeline reads it, nothing here decides.

use std::sync::Arc;

use crate::auth::{Algorithm, Subscribers};

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

/// Where a shard's bindings live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationMode {
    /// In the shard's own table (with its per-shard log): the default.
    Memory,
    /// In a backend several nodes share: commits leave as `Action::Commit` and the
    /// registrar resumes with the backend's answer (see `registrar::shared`).
    Shared,
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
    /// Bindings per shard to allocate room for at start (clamped to `max_bindings`).
    pub prealloc_bindings: usize,
    /// Seed for To-tags and jitter (deterministic tests).
    pub seed: u64,
    /// Value of the `Server` header.
    pub server_name: String,
    /// Digest authentication of REGISTER (RFC 3261 §22); `None`: every REGISTER for a
    /// served domain is accepted.
    pub auth: Option<AuthConfig>,
    /// Append a store record per committed AOR change to the journal
    /// ([`Registrar::drain_journal`]); off when nothing is persisted.
    pub journal: bool,
    /// Where the bindings live.
    pub location: LocationMode,
    /// NAT reachability: redirect aliases and keep-alive pings (issue 17).
    pub nat: super::nat::NatConfig,
}

/// What a shard needs to authenticate REGISTERs; shared by every shard.
#[derive(Clone)]
pub struct AuthConfig {
    /// The subscriber table (replaced as a whole on reload).
    pub subscribers: Arc<Subscribers>,
    /// The per-process nonce secret: every shard verifies every other shard's nonces.
    pub secret: [u8; 32],
    /// Challenges offered, one `WWW-Authenticate` each, in this order (RFC 8760 §2.4).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce is accepted, in ms; older ones get `stale=true`.
    pub nonce_lifetime_ms: u64,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("subscribers", &self.subscribers.len())
            .field("secret", &"<hidden>")
            .field("algorithms", &self.algorithms)
            .field("nonce_lifetime_ms", &self.nonce_lifetime_ms)
            .finish()
    }
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
            prealloc_bindings: 0,
            seed: 0x5eed,
            server_name: concat!("sipreg/", env!("CARGO_PKG_VERSION")).to_string(),
            auth: None,
            journal: false,
            location: LocationMode::Memory,
            nat: super::nat::NatConfig::default(),
        }
    }
}
