//! The registrar: one sans-IO state machine per shard.
//!
//! A [`Registrar`] owns its shard's location table and transaction cache and turns
//! `(now, source, datagram)` into a response. It reads no clock and opens no socket:
//! the runtime passes the time in and sends what comes out, so the same code runs under
//! glommio, in the simulation tests on a fake clock, and under the fuzzer.
//!
//! Call order per shard (the runtime's loop):
//! 1. [`route`] on the receiving core: which shard owns this datagram.
//! 2. [`Registrar::handle_datagram`] on the owner, for each datagram it owns; or, for a
//!    receive batch, [`Registrar::prepare`] each datagram, [`Registrar::warm`] the
//!    batch, then [`Registrar::finish`] each in order (same answers, but the batch's
//!    cache misses overlap).
//! 3. [`Registrar::handle_timeout`] whenever [`Registrar::poll_timeout`] is due; a
//!    spurious call is a no-op.
//!
//! Requests go through the RFC 3261 §10.3 pipeline in `register` (REGISTER) or the
//! redirect/lookup answers in `lookup` (everything else); every ending is an
//! [`Outcome`], mapped to its status code in one `match`.
#![forbid(unsafe_code)]

mod by_method;
mod lookup;
mod outcome;
mod register;
mod respond;
mod rng;

use std::net::SocketAddr;

use bumpalo::Bump;

pub use crate::placement::{Fnv, aor_hash};
pub use by_method::{METHOD_NAMES, METHODS, STATUS_NAMES, STATUSES};
pub use outcome::{OUTCOMES, Outcome};
pub use register::AOR_KEY_BYTES_MAX;

use std::sync::Arc;

use crate::auth::{Algorithm, Authenticator, Challenges, NonceKey, Subscribers};
use crate::location::{AorKeyBuf, HashedAorKey, LocationLimits, LocationTable};
use crate::sip::{self, Method, ParseError, Request};
use crate::txn::{EncodedKey, TxnKey, TxnLimits, TxnTable};

/// Where a datagram came from and which local socket received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// The remote address and port the datagram came from.
    pub addr: SocketAddr,
    /// Index of the local listening address (`--listen` order) it arrived on.
    pub local: u16,
}

/// Requests of one batch [`Registrar::warm`] looks at, at most (the rest are handled
/// cold): bounds the work of one call whatever the runtime's batch size.
pub const WARM_BATCH_MAX: usize = 1024;

/// A datagram parsed by [`Registrar::prepare`], waiting for [`Registrar::finish`].
/// It borrows the datagram and the batch's arena.
#[derive(Clone, Copy, Debug)]
pub enum Prepared<'a> {
    /// Nothing to answer: dropped and counted when finished.
    Drop(DropReason),
    /// Another shard owns it (the owner hash, [`route`]): handed back for forwarding
    /// when finished. Nothing else is computed for it here: the owner prepares it again.
    Forward(u64),
    /// The parser refused it but a top Via was salvaged, and this shard owns it:
    /// answered with its 4xx.
    Rejected {
        /// What the response echoes.
        echo: &'a sip::Echo<'a>,
        /// The fault the reason phrase names.
        error: ParseError,
    },
    /// A parsed request this shard owns.
    Request {
        /// The request, in the arena.
        req: &'a Request<'a>,
        /// The AOR key the owner hash was computed from, when the request names one,
        /// with its location-table hash: hashed once for the warm-up, every lookup and
        /// the commit.
        aor_key: Option<HashedAorKey<'a>>,
        /// The transaction key, encoded and hashed once for the warm-up, the lookup and
        /// the insert; `None` when it is too long to cache.
        txn: Option<EncodedKey<'a>>,
    },
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

/// Decide which shard owns a datagram: the hash of its AOR key (REGISTER: the To
/// AOR; other requests: the Request-URI's `user@host`), or of its Call-ID when the
/// request names no user (OPTIONS to the domain). Pure and deterministic across
/// processes, so that it can later also place persisted bindings.
pub fn route(bytes: &[u8]) -> Route {
    thread_local! {
        static ARENA: std::cell::RefCell<Bump> = std::cell::RefCell::new(Bump::with_capacity(16 * 1024));
    }
    if bytes.len() > sip::limits::DATAGRAM_BYTES_MAX {
        return Route::Drop(DropReason::TooLarge);
    }
    if sip::is_keepalive(bytes) {
        return Route::Drop(DropReason::KeepAlive);
    }
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        arena.reset();
        match sip::parse_request(bytes, &arena) {
            Ok(req) => Route::Hash(route_hash(&req)),
            Err(rejected) => match (rejected.error, rejected.echo) {
                (ParseError::IsResponse, _) => Route::Drop(DropReason::Response),
                (_, Some(echo)) => Route::Hash(echo_hash(&echo)),
                (_, None) => Route::Drop(DropReason::Unanswerable),
            },
        }
    })
}

/// The owner hash of a parsed request (see [`route`]).
pub fn route_hash(req: &Request<'_>) -> u64 {
    with_routing_key(req, |key| owner_hash(req, key))
}

/// The owner hash of `req` given its routing key ([`with_routing_key`]): the AOR key's,
/// or the Call-ID's when the request names no user.
fn owner_hash(req: &Request<'_>, key: Option<&[u8]>) -> u64 {
    key.map_or_else(|| aor_hash(req.call_id), aor_hash)
}

/// Calls `f` with the AOR key a request is placed by (REGISTER: the To AOR; others: the
/// Request-URI's `user@host`), or `None` when it names no user.
fn with_routing_key<R>(req: &Request<'_>, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    thread_local! {
        static KEY: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
    }
    let uri = if req.method == Method::Register {
        &req.to.uri
    } else {
        &req.request_uri
    };
    KEY.with(|key| {
        let mut key = key.borrow_mut();
        key.clear();
        let named = uri.user.is_some() && sip::write_aor_key(uri, &mut key).is_ok();
        f(named.then_some(key.as_slice()))
    })
}

/// The owner hash of a request the parser refused but can answer: its Call-ID (or top
/// Via), placed like any other key, so every retransmission lands on the same shard.
fn echo_hash(echo: &sip::Echo<'_>) -> u64 {
    aor_hash(echo.call_id.unwrap_or(echo.top_via.raw))
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

/// What [`Registrar::handle_or_forward`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// A response was written to `out`: send it to this address.
    Reply(SocketAddr),
    /// Handled, nothing to send (an ACK absorbed).
    Nothing,
    /// Dropped without an answer, and counted.
    Dropped(DropReason),
    /// Owned by another shard (the route hash is given); nothing was touched.
    Forward(u64),
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
    /// Requests by method row and status column (names: [`METHOD_NAMES`],
    /// [`STATUS_NAMES`]); retransmissions are not in it (see `retransmissions`).
    pub by_method: [[u64; STATUSES]; METHODS],
}

impl Stats {
    /// REGISTERs handled (every status; not retransmissions): the runtime diffs it
    /// around a batch to time the REGISTERs answered in it.
    pub fn registers(&self) -> u64 {
        self.by_method.first().map_or(0, |row| row.iter().sum())
    }
}

/// Expired bindings removed per `handle_timeout` call at most, so one call never
/// stalls the core; the rest go on the next call (`poll_timeout` says "now").
pub const EXPIRE_BATCH_MAX: usize = 4096;

/// One shard's registrar state machine.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    /// Lower-cased served domains (empty: any).
    domains: Vec<Vec<u8>>,
    location: LocationTable,
    txns: TxnTable,
    stats: Stats,
    rng: rng::Rng,
    /// The current request's AOR key and its location-table hash (reused buffer),
    /// hashed once where it is set, for every lookup and the commit of the request.
    aor_key: AorKeyBuf,
    /// [`Registrar::warm`]'s transaction and AOR hashes (capacity [`WARM_BATCH_MAX`]).
    warm_txn: Vec<u64>,
    warm_aor: Vec<u64>,
    /// The `Date` value of the last second a 200 was written in (second, text).
    date: (u64, [u8; sip::DATE_BYTES]),
    /// Digest authentication, when configured.
    auth: Option<Authenticator>,
    /// The `WWW-Authenticate` values of a 401 (reused buffer).
    challenges: Challenges,
    /// Framed store records of committed changes, not yet drained (see `store`).
    journal: Vec<u8>,
    /// Journal bytes appended since start (drained or not): the journal position.
    journal_position: u64,
    /// The store reported a write failure: changes are refused with 503.
    store_failed: bool,
}

impl Registrar {
    /// A registrar for one shard.
    pub fn new(config: RegistrarConfig) -> Self {
        let domains = config
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase().into_bytes())
            .collect();
        let location = LocationTable::new(LocationLimits {
            bindings_max: config.max_bindings,
            bindings_prealloc: config.prealloc_bindings.min(config.max_bindings),
            ..LocationLimits::default()
        });
        let txns = TxnTable::new(TxnLimits::for_entries(
            config.txn_cache_max,
            config.timer_j_ms,
        ));
        let rng = rng::Rng::new(config.seed);
        let auth = config.auth.as_ref().map(|a| {
            Authenticator::new(
                Arc::clone(&a.subscribers),
                NonceKey::new(&a.secret),
                a.algorithms.clone(),
                a.nonce_lifetime_ms,
            )
        });
        Self {
            config,
            domains,
            location,
            txns,
            stats: Stats::default(),
            rng,
            aor_key: AorKeyBuf::with_capacity(AOR_KEY_BYTES_MAX + 64),
            warm_txn: Vec::with_capacity(WARM_BATCH_MAX),
            warm_aor: Vec::with_capacity(WARM_BATCH_MAX),
            date: (u64::MAX, [0; sip::DATE_BYTES]),
            auth,
            challenges: Challenges::new(),
            journal: Vec::new(),
            journal_position: 0,
            store_failed: false,
        }
    }

    /// The runtime reports that the store can no longer write (`true`) or works again:
    /// while failed, every REGISTER that would change a binding gets 503 with
    /// Retry-After and changes nothing; fetches and lookups still work.
    pub fn set_store_failed(&mut self, failed: bool) {
        self.store_failed = failed;
    }

    /// Record the current state of `self.aor_key` after a successful commit.
    fn journal_aor(&mut self) {
        if !self.config.journal {
            return;
        }
        let before = self.journal.len();
        crate::store::record::encode_aor(
            &mut self.journal,
            self.aor_key.bytes(),
            self.location.get_hashed(self.aor_key.key()),
        );
        self.journal_position += (self.journal.len() - before) as u64;
    }

    /// Move the journal's records (whole records, in commit order) to the end of `out`.
    pub fn drain_journal(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.journal);
        } else {
            out.extend_from_slice(&self.journal);
            self.journal.clear();
        }
    }

    /// Journal bytes appended since start: a reply given after a commit depends on
    /// every journal byte up to this position (sync durability waits for it).
    pub fn journal_position(&self) -> u64 {
        self.journal_position
    }

    /// Put back an AOR's bindings loaded from the store (start-up); expired ones are
    /// skipped. Writes no journal record (the snapshot already holds them). Returns
    /// the bindings restored; a binding the table refuses (full) is skipped.
    pub fn restore_aor(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        bindings: &[crate::store::record::StoredBinding<'_>],
    ) -> usize {
        let mut restored = 0;
        for b in bindings.iter().filter(|b| !b.is_expired(now_ms)) {
            let change = crate::location::Change::Insert(b.to_new());
            let registered_ms = u64::from(b.registered_s) * 1000;
            if self
                .location
                .apply(aor_key, registered_ms, &[change])
                .is_ok()
            {
                restored += 1;
            }
        }
        self.sync_gauges();
        restored
    }

    /// Handle one datagram at `now_ms` (milliseconds since the Unix epoch). Writes the
    /// response, if any, into `out` (cleared first). `arena` holds the parse; the
    /// caller resets it between batches.
    pub fn handle_datagram(
        &mut self,
        now_ms: u64,
        source: Source,
        bytes: &[u8],
        arena: &Bump,
        out: &mut Vec<u8>,
    ) -> Handled {
        match self.handle_or_forward(now_ms, source, bytes, arena, out, |_| true) {
            Dispatch::Reply(to) => Handled::Reply(to),
            Dispatch::Nothing | Dispatch::Dropped(_) | Dispatch::Forward(_) => Handled::Nothing,
        }
    }

    /// [`handle_datagram`](Self::handle_datagram) for a shard that may not own the
    /// datagram: it is parsed once, and when `owns(route hash)` is false it is left
    /// untouched (no counter, no state) and returned as [`Dispatch::Forward`] for the
    /// runtime to send to its owner. This spares the receiving core the second parse
    /// that [`route`] followed by `handle_datagram` would cost.
    pub fn handle_or_forward(
        &mut self,
        now_ms: u64,
        source: Source,
        bytes: &[u8],
        arena: &Bump,
        out: &mut Vec<u8>,
        owns: impl Fn(u64) -> bool,
    ) -> Dispatch {
        let prepared = Self::prepare(bytes, arena, owns);
        self.finish(now_ms, source, &prepared, arena, out)
    }

    /// Parse a datagram ahead of its turn (the first half of
    /// [`handle_or_forward`](Self::handle_or_forward)): no state is read or changed, so
    /// a whole receive batch can be prepared, [`warm`](Self::warm)ed, then
    /// [`finish`](Self::finish)ed in order with the same result as handling each in turn.
    /// Ownership is decided here, once: what `owns(route hash)` refuses becomes
    /// [`Prepared::Forward`], with no transaction key or table hash computed for it and
    /// nothing of this shard's tables warmed for it.
    // The parser's own `Result` is what `alloc_try_with` places; its size is the parser's.
    #[expect(clippy::result_large_err)]
    pub fn prepare<'a>(
        bytes: &'a [u8],
        arena: &'a Bump,
        owns: impl Fn(u64) -> bool,
    ) -> Prepared<'a> {
        if bytes.len() > sip::limits::DATAGRAM_BYTES_MAX {
            return Prepared::Drop(DropReason::TooLarge);
        }
        if sip::is_keepalive(bytes) {
            return Prepared::Drop(DropReason::KeepAlive);
        }
        // Parsed straight into the arena: the ~1 KiB `Request` is not built on the stack
        // and then copied in.
        match arena.alloc_try_with(|| sip::parse_request(bytes, arena)) {
            Ok(req) => {
                let req: &'a Request<'a> = req;
                // The AOR key routed by is kept (copied into the arena, with its table
                // hash) only when this shard owns the request.
                let owned = with_routing_key(req, |key| {
                    let hash = owner_hash(req, key);
                    if owns(hash) {
                        Ok(key.map(|k| HashedAorKey::new(arena.alloc_slice_copy(k))))
                    } else {
                        Err(hash)
                    }
                });
                match owned {
                    Ok(aor_key) => Prepared::Request {
                        req,
                        aor_key,
                        txn: txn_key(req).encode_in(arena),
                    },
                    Err(hash) => Prepared::Forward(hash),
                }
            }
            Err(rejected) => {
                if rejected.error == ParseError::IsResponse {
                    return Prepared::Drop(DropReason::Response);
                }
                let Some(echo) = rejected.echo else {
                    return Prepared::Drop(DropReason::Unanswerable);
                };
                let hash = echo_hash(&echo);
                if !owns(hash) {
                    return Prepared::Forward(hash);
                }
                Prepared::Rejected {
                    echo: arena.alloc(echo),
                    error: rejected.error,
                }
            }
        }
    }

    /// Bring into cache what the prepared requests of a batch will read (their AORs'
    /// location entries and their transaction index buckets), all requests together,
    /// so that the cache misses of a batch overlap instead of coming one after the
    /// other inside each request. Changes nothing; skipping it changes no answer.
    pub fn warm<'p, 'a: 'p>(&mut self, batch: impl IntoIterator<Item = &'p Prepared<'a>>) {
        // The hashes `prepare` computed gathered first, then the loads back to back, one
        // level of each structure at a time: independent loads in a tight loop are in
        // flight together, while a load after each lookup of a hash would only overlap
        // with the next one or two.
        self.warm_txn.clear();
        self.warm_aor.clear();
        for p in batch.into_iter().take(WARM_BATCH_MAX) {
            let Prepared::Request { aor_key, txn, .. } = p else {
                continue;
            };
            if let Some(txn) = txn {
                self.warm_txn.push(txn.hash());
            }
            if let Some(aor_key) = aor_key {
                self.warm_aor.push(aor_key.hash());
            }
        }
        let mut touched = 0u64;
        for &h in &self.warm_txn {
            touched ^= self.txns.touch(h);
        }
        for depth in 0..crate::location::TOUCH_DEPTH {
            for &h in &self.warm_aor {
                touched ^= self.location.touch(h, depth);
            }
        }
        std::hint::black_box(touched);
    }

    /// The second half of [`handle_or_forward`](Self::handle_or_forward): answer (or hand
    /// back for forwarding) a datagram [`prepare`](Self::prepare)d earlier.
    pub fn finish(
        &mut self,
        now_ms: u64,
        source: Source,
        prepared: &Prepared<'_>,
        arena: &Bump,
        out: &mut Vec<u8>,
    ) -> Dispatch {
        out.clear();
        let (req, txn, routed) = match *prepared {
            Prepared::Drop(reason) => return self.drop(reason),
            Prepared::Forward(hash) => return Dispatch::Forward(hash),
            Prepared::Rejected { echo, error } => {
                let outcome = Outcome::Malformed(error);
                self.count(by_method::METHOD_OTHER, outcome);
                self.respond_rejected(source, echo, error.status(), error.reason(), out);
                return Dispatch::Reply(reply_address(&echo.top_via, source));
            }
            Prepared::Request {
                req, txn, aor_key, ..
            } => (req, txn, aor_key),
        };
        let dest = reply_address(req.via(), source);
        let method = by_method::method_index(&req.method);
        if req.method == Method::Ack {
            // An ACK for our 302 (or any final response): nothing to say (§17.2.1).
            self.count(method, Outcome::AckAbsorbed);
            return Dispatch::Nothing;
        }
        if let Some(cached) = txn.as_ref().and_then(|key| self.txns.lookup(key, now_ms)) {
            out.extend_from_slice(cached);
            self.count(method, Outcome::Retransmission);
            return Dispatch::Reply(dest);
        }
        let outcome = self.decide(now_ms, source, req, routed, arena);
        self.count(method, outcome);
        self.respond(now_ms, source, req, outcome, arena, out);
        // A response that cannot be cached (key too long, cache disabled) only means a
        // retransmission is processed again, which gives the same answer (an equal CSeq
        // is recognised in `register`); nothing is lost.
        if let Some(key) = &txn {
            let _ = self.txns.insert(key, now_ms, out);
        }
        self.sync_gauges();
        Dispatch::Reply(dest)
    }

    /// Run the request through its pipeline and say how it ends.
    /// `routed` is the AOR key `prepare` wrote (and hashed) for the request, if any.
    fn decide<'a>(
        &mut self,
        now_ms: u64,
        source: Source,
        req: &Request<'a>,
        routed: Option<HashedAorKey<'_>>,
        arena: &'a Bump,
    ) -> Outcome {
        // §10.3 step 1 (and any request to us): is the Request-URI's domain ours?
        if !matches!(req.request_uri.scheme, sip::Scheme::Sip | sip::Scheme::Sips)
            || !self.serves_domain(req.request_uri.host)
        {
            return Outcome::DomainNotServed;
        }
        // §10.3 step 2 / §8.2.2.3: every Require option must be one we support.
        if respond::has_unsupported(req.require) {
            return Outcome::BadExtension;
        }
        match req.method {
            Method::Register => self.register(now_ms, source, req, routed, arena),
            _ => self.lookup(now_ms, req, routed),
        }
    }

    /// Put the AOR key `prepare` wrote and hashed for routing (`routed`: for REGISTER the
    /// To URI's, otherwise the Request-URI's, the URI each pipeline keys on) in
    /// `self.aor_key`. False when there is none: that URI names no user.
    fn load_key(&mut self, routed: Option<HashedAorKey<'_>>) -> bool {
        routed.map(|key| self.aor_key.set(key)).is_some()
    }

    /// Whether `host` is a served domain (any, when none is configured).
    fn serves_domain(&self, host: &[u8]) -> bool {
        self.domains.is_empty() || self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }

    fn drop(&mut self, reason: DropReason) -> Dispatch {
        self.stats.dropped += 1;
        self.stats.drops[reason as usize] += 1;
        Dispatch::Dropped(reason)
    }

    /// Count `outcome` of a request whose method row is `method` (`by_method`).
    fn count(&mut self, method: usize, outcome: Outcome) {
        self.stats.outcomes[outcome.index()] += 1;
        if outcome != Outcome::Retransmission {
            let status = by_method::status_index(outcome.status().map(|(s, _)| s));
            if let Some(cell) = self
                .stats
                .by_method
                .get_mut(method)
                .and_then(|row| row.get_mut(status))
            {
                *cell += 1;
            }
        }
        match outcome {
            Outcome::Retransmission => self.stats.retransmissions += 1,
            Outcome::AckAbsorbed => {}
            _ => {
                self.stats.requests += 1;
                match outcome.status() {
                    Some((200, _)) if matches!(outcome, Outcome::Registered | Outcome::Fetched) => {
                        self.stats.accepted += 1
                    }
                    Some((s, _)) if s >= 400 => {
                        self.stats.rejected += 1;
                        if s == 503 {
                            self.stats.unavailable += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn sync_gauges(&mut self) {
        self.stats.bindings = self.location.bindings_len() as u64;
        self.stats.aors = self.location.aors_len() as u64;
        self.stats.txns = self.txns.len() as u64;
        self.stats.txn_evicted = self.txns.evicted_early();
    }

    /// Expire bindings and transactions due at `now_ms`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let removed = self.location.expire(now_ms, EXPIRE_BATCH_MAX);
        self.stats.expired += removed as u64;
        self.txns.expire(now_ms);
        self.sync_gauges();
    }

    /// When `handle_timeout` should next be called, in ms since the Unix epoch.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.location.next_expiry_ms(), self.txns.next_expiry_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Replace the subscriber table (SIGHUP reload): requests before this call used the
    /// old table, requests after it the new one; nonces already issued stay valid.
    pub fn set_subscribers(&mut self, subscribers: Arc<Subscribers>) {
        if let Some(auth) = self.auth.as_mut() {
            auth.subscribers = subscribers;
        }
    }

    /// Authentication counters (challenges, failures by reason, stale nonces), when
    /// authentication is on.
    pub fn auth_counters(&self) -> Option<crate::auth::Counters> {
        self.auth.as_ref().map(Authenticator::counters)
    }

    /// This shard's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The location table, read-only (management, tests, benches).
    pub fn location(&self) -> &LocationTable {
        &self.location
    }

    // ---- management operations (issue 7: the admin API, as OpenSIPS `ul_*`) ----
    // Every change goes through `LocationTable::apply`, the same commit path as a
    // REGISTER, is journaled like one (persisted), and removals are counted in
    // `Stats::admin_removed`. With a failed store they are refused, like a REGISTER.

    /// Commit `changes` to `aor_key` and journal the AOR's new state.
    fn admin_commit(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        changes: &[crate::location::Change<'_>],
    ) -> Result<crate::location::CommitSummary, AdminError> {
        if self.store_failed {
            return Err(AdminError::StoreFailed);
        }
        self.aor_key.set(HashedAorKey::new(aor_key));
        let summary = self
            .location
            .apply_hashed(self.aor_key.key(), now_ms, changes)
            .map_err(AdminError::Commit)?;
        self.journal_aor();
        self.sync_gauges();
        Ok(summary)
    }

    /// Add (or refresh, when `contact` is already bound) a binding of `aor_key` for
    /// `expires_s` seconds (`1..=max_expires_s`), as `ul_add`. The binding is
    /// recorded with Call-ID `sipreg-admin`, CSeq 0 and an unspecified source.
    pub fn admin_add_binding(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        contact: &[u8],
        expires_s: u32,
        q: Option<u16>,
    ) -> Result<crate::location::CommitSummary, AdminError> {
        if expires_s == 0 || expires_s > self.config.max_expires_s {
            return Err(AdminError::ExpiresOutOfRange);
        }
        let binding = crate::location::NewBinding {
            contact,
            expires_ms: now_ms.saturating_add(u64::from(expires_s) * 1000),
            q,
            call_id: ADMIN_CALL_ID,
            cseq: 0,
            path: b"",
            source: SocketAddr::from(([0, 0, 0, 0], 0)),
            transport: crate::location::Transport::Udp,
            local_socket: 0,
            user_agent: b"",
            instance: None,
            reg_id: None,
            flags: 0,
        };
        let existing = self
            .location
            .get(aor_key)
            .and_then(|aor| aor.iter().position(|b| same_contact(b.contact(), contact)));
        let change = match existing {
            Some(index) => crate::location::Change::Update { index, binding },
            None => crate::location::Change::Insert(binding),
        };
        self.admin_commit(now_ms, aor_key, &[change])
    }

    /// Remove the bindings of `aor_key` (all, or those whose contact is equivalent to
    /// `contact`), as `ul_rm` / `ul_rm_contact`. Returns how many were removed; 0 when
    /// the AOR (or the contact) is unknown.
    pub fn admin_remove(
        &mut self,
        now_ms: u64,
        aor_key: &[u8],
        contact: Option<&[u8]>,
    ) -> Result<usize, AdminError> {
        let Some(aor) = self.location.get(aor_key) else {
            return Ok(0);
        };
        let changes: Vec<crate::location::Change<'static>> = aor
            .iter()
            .enumerate()
            .filter(|(_, b)| contact.is_none_or(|c| same_contact(b.contact(), c)))
            .map(|(index, _)| crate::location::Change::Remove { index })
            .collect();
        if changes.is_empty() {
            return Ok(0);
        }
        let summary = self.admin_commit(now_ms, aor_key, &changes)?;
        self.stats.admin_removed += summary.removed as u64;
        Ok(summary.removed)
    }

    /// Remove every binding of the AORs whose first binding sits in table slots
    /// `from_slot..from_slot + slots_max`, as `ul_flush` in bounded steps: start at 0
    /// and call again with the returned slot until it returns `None`. Each step costs
    /// O(`slots_max`), so a whole flush is linear in the table size. Returns the
    /// bindings removed and the slot to continue from.
    pub fn admin_flush(
        &mut self,
        now_ms: u64,
        from_slot: usize,
        slots_max: usize,
    ) -> (usize, Option<usize>) {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let next = self
            .location
            .aors_from_slot(from_slot, usize::MAX, slots_max, |aor| {
                keys.push(aor.key().to_vec())
            });
        let mut removed = 0;
        for key in &keys {
            removed += self.admin_remove(now_ms, key, None).unwrap_or(0);
        }
        (removed, next)
    }
}

/// The Call-ID recorded on bindings added through the management API.
pub const ADMIN_CALL_ID: &[u8] = b"sipreg-admin";

/// Why a management operation was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// `expires` is 0 or above the configured maximum.
    ExpiresOutOfRange,
    /// The location table refused the commit.
    Commit(crate::location::CommitError),
    /// The store failed: nothing may change until it is back (as a REGISTER's 503).
    StoreFailed,
}

impl AdminError {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExpiresOutOfRange => "expires must be between 1 and the configured maximum",
            Self::Commit(e) => e.as_str(),
            Self::StoreFailed => "the binding store failed: changes are refused",
        }
    }
}

/// Two Contact URIs name the same binding (RFC 3261 §19.1.4 equivalence; bytes
/// equality when either does not parse).
fn same_contact(a: &[u8], b: &[u8]) -> bool {
    match (sip::parse_uri(a), sip::parse_uri(b)) {
        (Ok(x), Ok(y)) => sip::uri_equivalent(&x, &y),
        _ => a == b,
    }
}

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): to the source address; the
/// port is the source port when the request asked for `rport`, else the sent-by port
/// (5060 by default).
fn reply_address(via: &sip::Via<'_>, source: Source) -> SocketAddr {
    if via.rport.is_some() {
        return source.addr;
    }
    SocketAddr::new(source.addr.ip(), via.port.unwrap_or(5060))
}

/// The transaction key of a request (RFC 3261 §17.2.3).
fn txn_key<'a>(req: &Request<'a>) -> TxnKey<'a> {
    let method = req.cseq.method.as_bytes();
    match req.via().branch {
        Some(branch) if crate::txn::is_rfc3261_branch(branch) => TxnKey::Rfc3261 {
            branch,
            sent_by_host: req.via().host,
            sent_by_port: req.via().port.unwrap_or(0),
            method,
        },
        _ => TxnKey::Rfc2543 {
            request_uri: req.request_uri.raw,
            from_tag: req.from.tag.unwrap_or(b""),
            to_tag: req.to.tag.unwrap_or(b""),
            call_id: req.call_id,
            cseq: req.cseq.seq,
            method,
            top_via: req.echo.top_via.raw,
        },
    }
}

#[cfg(test)]
mod tests;
