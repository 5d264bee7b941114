//! The registrar: one sans-IO state machine per shard.
//!
//! A [`Registrar`] owns its shard's location table and transaction cache and turns
//! `(now, source, request bytes)` into one [`Action`]: reply, forward to the owner, or
//! nothing. It reads no clock and opens no socket: the runtime passes the time in and
//! carries the action out, so the same code runs under glommio, in the simulation tests
//! on a fake clock, and under the fuzzer.
//!
//! The data path, per batch of requests a core received (from its sockets, or forwarded
//! to it by other cores over the mesh):
//! 1. **receive**: [`Registrar::prepare`] parses each request and decides its owner
//!    (`route`); what another shard owns comes back as [`Prepared::Forward`].
//! 2. [`Registrar::warm`] brings what the batch will read into cache, all together.
//! 3. **decide, commit, respond**: [`Registrar::answer`] runs each in arrival order:
//!    the transaction cache, then the RFC 3261 §10.3 pipeline in `register` (REGISTER)
//!    or the redirect answers in `lookup` (everything else); every ending is an
//!    [`Outcome`], mapped to its status code in one `match`, and the response is
//!    written. A commit appends its record to the journal (`journal`).
//! 4. **send**: the runtime carries out the [`Action`] (`io`).
//!
//! Besides: [`Registrar::handle_timeout`] whenever [`Registrar::poll_timeout`] is due (a
//! spurious call is a no-op), [`Registrar::poll_ping`] until it has no more keep-alive
//! pings due (`ping`), [`Registrar::drain_journal`] once per loop turn, and the
//! management operations in `admin`. `support` has one-datagram conveniences for tests.
#![forbid(unsafe_code)]

mod admin;
mod by_method;
mod commit;
mod config;
mod io;
mod journal;
mod lookup;
pub mod nat;
mod outbound;
mod outcome;
pub mod ping;
mod register;
mod respond;
mod rng;
mod route;
pub mod shared;
mod stats;
pub mod support;

use bumpalo::Bump;

pub use crate::placement::{Fnv, aor_hash};
pub use admin::{ADMIN_CALL_ID, AdminError};
pub use by_method::{METHOD_NAMES, METHODS, STATUS_NAMES, STATUSES};
pub use config::{AuthConfig, LocationMode, MaxContactsPolicy, MinExpiresPolicy, RegistrarConfig};
pub use io::{Action, ConnId, Destination, DropReason, Source, reply_destination};
pub use nat::{AliasMode, NatConfig, PingMethod};
pub use outbound::{FLAG_FLOW_DOWN, FLAG_OUTBOUND, FLOW_AORS_MAX, FLOWS_MAX, REG_ID_MAX};
pub use outcome::{OUTCOMES, Outcome};
pub use ping::{PingReply, PingStats};
pub use register::AOR_KEY_BYTES_MAX;
pub use route::route_hash;
pub use stats::Stats;

use std::sync::Arc;

use crate::auth::{Authenticator, Challenges, NonceKey, Subscribers};
use crate::location::{AorKeyBuf, HashedAorKey, LocationLimits, LocationTable};
use crate::sip::{self, Method, ParseError, Request};
use crate::txn::{EncodedKey, TxnKey, TxnLimits, TxnTable};
use register::Decided;
use respond::Bindings;
use route::{echo_hash, owner_hash, with_routing_key};

/// Requests of one batch [`Registrar::warm`] looks at, at most (the rest are handled
/// cold): bounds the work of one call whatever the runtime's batch size.
pub const WARM_BATCH_MAX: usize = 1024;

/// A request parsed by [`Registrar::prepare`], waiting for [`Registrar::answer`].
/// It borrows the datagram and the batch's arena.
#[derive(Clone, Copy, Debug)]
pub enum Prepared<'a> {
    /// Nothing to answer: dropped and counted when answered.
    Drop(DropReason),
    /// Another shard owns it (the owner hash, [`route_hash`]): handed back for
    /// forwarding when answered. Nothing else is computed for it here: the owner prepares it again.
    Forward(u64),
    /// The parser refused it but a top Via was salvaged, and this shard owns it:
    /// answered with its 4xx.
    Rejected {
        /// What the response echoes.
        echo: &'a sip::Echo<'a>,
        /// The fault the reason phrase names.
        error: ParseError,
    },
    /// A reply to one of this shard's OPTIONS pings (its branch says which binding).
    PingReply(PingReply),
    /// A parsed request this shard owns.
    Request {
        /// The request as received (kept by a commit that waits for a shared backend).
        bytes: &'a [u8],
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
    /// Shared location: the commits waiting for the backend (`None`: memory).
    shared: Option<shared::Shared>,
    /// The AORs with a binding on each live flow (RFC 5626), for `flow_closed`.
    flows: outbound::Flows,
    /// A 302's Contact URI with its `;alias=` and `Route` (`nat`; reused buffer).
    redirect_uri: Vec<u8>,
    /// Where the keep-alive pings of UDP bindings are (`ping`).
    pinger: ping::Pinger,
}

impl Registrar {
    /// A registrar for one shard.
    pub fn new(config: RegistrarConfig) -> Self {
        let config_location = config.location;
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
            shared: (config_location == LocationMode::Shared).then(shared::Shared::default),
            flows: outbound::Flows::default(),
            redirect_uri: Vec::new(),
            pinger: ping::Pinger::default(),
        }
    }

    /// Parse a request ahead of its turn: no state is read or changed, so a whole batch
    /// can be prepared, [`warm`](Self::warm)ed, then [`answer`](Self::answer)ed in order
    /// with the same result as answering each in turn. Ownership is decided here, once:
    /// what `owns(route hash)` refuses becomes [`Prepared::Forward`], with no
    /// transaction key or table hash computed for it and nothing of this shard's tables
    /// warmed for it.
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
        // A response can only answer a keep-alive ping (`ping`): the shard that sent it
        // is named by its branch, and it goes there like a request.
        match ping::read_reply(bytes) {
            None => {}
            Some(Ok(reply)) if owns(reply.hash) => return Prepared::PingReply(reply),
            Some(Ok(reply)) => return Prepared::Forward(reply.hash),
            Some(Err(())) => return Prepared::Drop(DropReason::Response),
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
                        bytes,
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

    /// Answer a request [`prepare`](Self::prepare)d earlier: say what to do with it and,
    /// when that is a [`Action::Reply`], write the response into `out` (cleared first;
    /// left untouched otherwise). Requests of a batch are answered in arrival order.
    pub fn answer(
        &mut self,
        now_ms: u64,
        source: Source,
        prepared: &Prepared<'_>,
        arena: &Bump,
        out: &mut Vec<u8>,
    ) -> Action {
        let (bytes, req, txn, routed) = match *prepared {
            Prepared::Drop(reason) => {
                if reason == DropReason::Response {
                    self.count_unexpected(ping::Unexpected::Branch);
                }
                return self.count_drop(reason);
            }
            Prepared::Forward(hash) => return Action::Forward { hash },
            Prepared::PingReply(reply) => {
                self.ping_answered(source, reply);
                return Action::Nothing;
            }
            Prepared::Rejected { echo, error } => {
                let outcome = Outcome::Malformed(error);
                self.count(by_method::METHOD_OTHER, outcome);
                out.clear();
                self.respond_rejected(source, echo, error.status(), error.reason(), out);
                return self.reply(reply_destination(&echo.top_via, source));
            }
            Prepared::Request {
                bytes,
                req,
                txn,
                aor_key,
            } => (bytes, req, txn, aor_key),
        };
        let method = by_method::method_index(&req.method);
        if req.method == Method::Ack {
            // An ACK for our 302 (or any final response): nothing to say (§17.2.1).
            self.count(method, Outcome::AckAbsorbed);
            return Action::Nothing;
        }
        let to = reply_destination(req.via(), source);
        out.clear();
        if let Some(cached) = txn.as_ref().and_then(|key| self.txns.lookup(key, now_ms)) {
            out.extend_from_slice(cached);
            self.count(method, Outcome::Retransmission);
            return self.reply(to);
        }
        let outcome = match self.decide(now_ms, source, req, routed, arena) {
            Decided::Done(outcome) => outcome,
            Decided::Commit(intent) if self.shared.is_none() => {
                self.commit_intent(now_ms, &intent, arena)
            }
            Decided::Commit(intent) => {
                let register = req.method == Method::Register;
                match self.suspend(bytes, source, register, &intent) {
                    Some(action) => return action,
                    None => Outcome::CommitsBusy,
                }
            }
        };
        self.count(method, outcome);
        self.respond(now_ms, source, req, outcome, Bindings::Table, arena, out);
        // A response that cannot be cached (key too long, cache disabled) only means a
        // retransmission is processed again, which gives the same answer (an equal CSeq
        // is recognised in `register`); nothing is lost.
        if let Some(key) = &txn {
            let _ = self.txns.insert(key, now_ms, out);
        }
        self.sync_gauges();
        self.reply(to)
    }

    /// A reply to `to` that reflects every commit so far: in sync durability it waits
    /// for the whole journal written up to now (a retransmitted or fetched answer shows
    /// commits that may not be durable yet, as much as a new one does).
    fn reply(&self, to: Destination) -> Action {
        Action::Reply {
            to,
            durable_after: self.journal_position,
        }
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
    ) -> Decided<'a> {
        // §10.3 step 1 (and any request to us): is the Request-URI's domain ours?
        if !matches!(req.request_uri.scheme, sip::Scheme::Sip | sip::Scheme::Sips)
            || !self.serves_domain(req.request_uri.host)
        {
            return Outcome::DomainNotServed.into();
        }
        // §10.3 step 2 / §8.2.2.3: every Require option must be one we support.
        if respond::has_unsupported(req.require) {
            return Outcome::BadExtension.into();
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

    /// Count a request dropped without an answer.
    fn count_drop(&mut self, reason: DropReason) -> Action {
        self.stats.dropped += 1;
        self.stats.drops[reason as usize] += 1;
        Action::Dropped(reason)
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
        [
            self.location.next_expiry_ms(),
            self.txns.next_expiry_ms(),
            self.ping_due_ms(),
        ]
        .into_iter()
        .flatten()
        .min()
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
