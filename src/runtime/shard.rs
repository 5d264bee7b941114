//! One core's loop: receive a batch, answer what this shard owns, forward the rest,
//! answer what other cores forwarded here, flush replies, run timers; park in glommio
//! when there is nothing to do.
//!
//! Every request takes one path, whether it came from a socket or over the mesh:
//! [`Core::handle_batch`] prepares the batch (parse, owner), warms it, and answers each
//! request in order; [`Core::act`] carries out the registrar's [`Action`] (reply now,
//! hold the reply for the journal, forward, or count a drop). The journal hold queue is
//! in `journal`, the sockets in `udp`, the TCP listeners and connections in `tcp`
//! (their messages are one more batch per turn; a reply for a connection goes to the
//! core holding it, see [`Core::deliver`]).
//!
//! The loop is one glommio task per core. It never awaits while there is work, so a
//! busy core makes one `recvmmsg` per batch and one `sendmmsg` per socket per batch,
//! and nothing else. When a turn finds no work it parks (`park`: one `ppoll`, not
//! glommio's reactor, which interrupts every other core on each sleep) on its wake
//! sources at once: any listening socket readable, the TCP epoll set (a listener or a
//! connection ready), the mesh doorbell's eventfd (another
//! core forwarded to us, the store writer made replies durable, a management command,
//! or a stop), and the registrar's next deadline as the timeout (at most
//! [`TIMER_TICK_MS`] away). An idle core therefore sleeps in the kernel and costs ~0 %
//! CPU.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bumpalo::Bump;
use socket2::Socket;

use super::journal::{Journal, JournalSetup};
use super::mesh::{ForwardError, MeshEnd, MeshMsg, shard_for};
use super::mmsg::RecvBatch;
use super::park::PollSet;
use super::redis::{CommitFailure, RedisLink};
use super::stats::{Counters, RegistrarCounters, SharedCounters};
use super::tcp::{Received, Tcp};
use super::udp::Udp;
use crate::registrar::shared::{CommitId, CommitReply, CommitStatus};
use crate::registrar::{Action, Destination, Registrar, RegistrarConfig, Source};
use crate::store::record::{self, Frame, Record};

/// Longest time between two `handle_timeout` calls, in ms: an expired binding is gone
/// within this long of its expiry even if the registrar reports no deadline.
pub(crate) const TIMER_TICK_MS: u64 = 1000;

/// `recvmmsg` batches taken from one socket per turn before the inbox and the other
/// sockets get their turn (fairness between sockets and forwarded work).
const RECV_BATCHES_PER_TURN: usize = 4;

/// Mesh messages (forwarded requests, crossed replies) taken per turn, at most.
const INBOX_DRAIN_PER_TURN: usize = 256;

/// Keep-alive pings one core sends per loop turn, at most (the pinger paces them; this
/// bounds a turn after a stall).
const PINGS_PER_TURN_MAX: usize = 1024;

/// Initial arena size per core, in bytes (reset per batch, so this is a per-batch
/// budget before bumpalo adds a chunk, which it then keeps).
const ARENA_BYTES_INITIAL: usize = 256 * 1024;

/// Initial capacity of the reply buffer the registrar writes into, in bytes.
const REPLY_BYTES_INITIAL: usize = 2048;

/// Everything a core needs, built on the main thread.
#[derive(Debug)]
pub(crate) struct CoreSetup {
    pub(crate) shards: usize,
    pub(crate) sockets: Vec<Socket>,
    /// This core's TCP listeners, one per TCP `--listen` address (may be none).
    pub(crate) tcp_listeners: Vec<std::net::TcpListener>,
    pub(crate) tcp: crate::config::tcp::TcpConfig,
    /// This core's TLS listeners, one per TLS `--listen` address (may be none).
    pub(crate) tls_listeners: Vec<std::net::TcpListener>,
    /// The TLS server every core shares, with a TLS listener.
    pub(crate) tls: Option<super::tcp::TlsShared>,
    pub(crate) registrar: RegistrarConfig,
    pub(crate) recv_batch: usize,
    pub(crate) spin_before_park_us: u64,
    /// `--location redis`: the cluster this core commits to.
    pub(crate) redis: Option<crate::config::RedisConfig>,
    pub(crate) subscribers: Arc<super::reload::SubscriberCell>,
    pub(crate) mesh: MeshEnd,
    pub(crate) counters: Arc<SharedCounters>,
    /// Management commands (issue 7), see `control`.
    pub(crate) control: super::control::ControlEnd,
    /// The store writer of this shard; `None` with `--no-persist`.
    pub(crate) journal: Option<JournalSetup>,
    /// Framed store records to restore before serving (start-up load).
    pub(crate) restore: Vec<u8>,
}

/// Receive batches and inbox drains whose REGISTER latency is recorded at a turn's
/// flush, at most (more than a turn makes: `RECV_BATCHES_PER_TURN` per socket + 1).
const LATENCY_PENDING_MAX: usize = 64;

/// One request of a batch: its bytes and where it came from.
#[derive(Clone, Copy, Debug)]
struct Input<'b> {
    bytes: &'b [u8],
    source: Source,
}

/// What answers requests and carries out the registrar's actions: the shard's state
/// and everything that sends. Kept apart from the loop's receive buffers, which the
/// requests of a batch borrow while they are answered.
struct Core {
    index: usize,
    shards: usize,
    registrar: Registrar,
    udp: Udp,
    /// The TCP listeners and connections; `None` without a TCP `--listen`.
    tcp: Option<Tcp>,
    /// Connections closed this turn, with the cores their requests went to (reused).
    closed_flows: Vec<(crate::location::FlowId, u64)>,
    mesh: MeshEnd,
    counters: Counters,
    journal: Option<Journal>,
    /// The registrar writes each reply here; it is queued by swapping buffers (no copy).
    reply: Vec<u8>,
    /// `--location redis`: this core's connections to the masters.
    redis: Option<RedisLink>,
    /// Commits that cannot complete (sent nowhere, connection lost, timed out, too few
    /// replicas, malformed reply), with why, to be answered 503 (500 when malformed);
    /// and the arena their and the backend's answers are written with.
    failed: Vec<(CommitId, CommitFailure)>,
    commit_arena: Bump,
}

struct Shard {
    /// Per batch of this turn: when it arrived and how many REGISTERs it answered;
    /// recorded into the latency histogram once the turn's replies are flushed.
    latency_pending: Vec<(Instant, u64)>,
    core: Core,
    rx: RecvBatch,
    /// Mesh messages taken this turn (reused).
    inbox: Vec<MeshMsg>,
    arena: Bump,
    /// What the core sleeps on, and how long it polls before it does.
    poll: PollSet,
    spin_before_park: Duration,
    shared_counters: Arc<SharedCounters>,
    last_timeout_ms: u64,
    draining: bool,
    /// SIGHUP reloads of the subscriber table, and the generation this core has.
    subscribers: Arc<super::reload::SubscriberCell>,
    subscribers_generation: u64,
    /// Management commands (issue 7), answered between batches.
    control: super::control::ControlEnd,
}

/// Run one core until a stop is requested and everything in flight is answered.
/// `ready` is told once the core can serve (or why it cannot).
pub(crate) async fn run(setup: CoreSetup, ready: impl FnOnce(Result<(), String>)) {
    let index = setup.mesh.index();
    // The UDP addresses in listen order: the Via of this core's keep-alive pings.
    let local: Vec<std::net::SocketAddr> = setup
        .sockets
        .iter()
        .map(|s| {
            s.local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
        })
        .collect();
    let udp = Udp::new(setup.sockets, setup.recv_batch);
    let redis = match setup.redis.as_ref().map(RedisLink::start) {
        None => None,
        Some(Ok(link)) => {
            tracing::info!(
                core = index,
                masters = link.masters(),
                "location: Redis Cluster (slot map learned, a connection to every master)"
            );
            Some(link)
        }
        Some(Err(e)) => {
            ready(Err(format!("core {index}: {e}")));
            return;
        }
    };
    let now_ms = wall_clock_ms();
    let tcp = match Tcp::new(
        index,
        setup.tcp_listeners,
        setup.tls_listeners,
        setup.tls,
        setup.tcp,
        now_ms,
    ) {
        Ok(tcp) => tcp,
        Err(e) => {
            ready(Err(format!(
                "core {index}: cannot watch its TCP listeners: {e}"
            )));
            return;
        }
    };
    let mut registrar = Registrar::new(setup.registrar);
    registrar.set_local_addrs(&local);
    restore(&mut registrar, now_ms, &setup.restore);
    drop(setup.restore);
    let mut shard = Shard {
        latency_pending: Vec::with_capacity(LATENCY_PENDING_MAX),
        core: Core {
            index,
            shards: setup.shards,
            registrar,
            udp,
            tcp,
            closed_flows: Vec::new(),
            mesh: setup.mesh,
            counters: Counters::default(),
            journal: setup.journal.map(Journal::new),
            reply: Vec::with_capacity(REPLY_BYTES_INITIAL),
            redis,
            failed: Vec::new(),
            commit_arena: Bump::with_capacity(REPLY_BYTES_INITIAL),
        },
        rx: RecvBatch::new(setup.recv_batch),
        inbox: Vec::with_capacity(INBOX_DRAIN_PER_TURN),
        arena: Bump::with_capacity(ARENA_BYTES_INITIAL),
        poll: PollSet::default(),
        spin_before_park: Duration::from_micros(setup.spin_before_park_us),
        shared_counters: setup.counters,
        last_timeout_ms: now_ms,
        draining: false,
        subscribers: setup.subscribers,
        subscribers_generation: 0,
        control: setup.control,
    };
    ready(Ok(()));
    shard.serve().await;
}

impl Shard {
    async fn serve(&mut self) {
        // Busy ratio: the runtime may read the clock (the core modules may not).
        let mut mark = Instant::now();
        loop {
            self.core.mesh.doorbell().disarm();
            let now_ms = wall_clock_ms();
            if !self.draining && self.core.mesh.shared().stop_requested() {
                // Stop receiving; replies already queued go out below. Other cores
                // may still forward to us what they received before they stopped.
                self.draining = true;
                self.core
                    .mesh
                    .shared()
                    .core_stopped_receiving(self.core.index);
            }
            let generation = self.subscribers.generation();
            if generation != self.subscribers_generation {
                if let Some(table) = self.subscribers.latest() {
                    self.core.registrar.set_subscribers(table);
                }
                self.subscribers_generation = generation;
            }
            let mut work = 0;
            if !self.draining {
                for listen in 0..self.core.udp.listens() {
                    work += self.receive(listen, now_ms);
                }
                work += self.receive_tcp(now_ms);
            }
            work += self.drain_inbox(now_ms);
            work += self.core.poll_redis(now_ms);
            // Management API (issue 7): a few commands per turn, never blocking.
            work += self.control.poll(
                self.core.index,
                &mut self.core.registrar,
                &self.core.counters,
                now_ms,
            );
            self.core.flush_redis(now_ms);
            self.core.ship_journal();
            self.core.udp.flush_all(&mut self.core.counters);
            if let Some(tcp) = self.core.tcp.as_mut() {
                tcp.flush(now_ms, &mut self.core.counters);
            }
            self.record_latency();
            self.core.mesh.ring_pending();
            self.run_timers(now_ms);
            self.publish();
            if self.draining
                && self.core.mesh.shared().all_stopped_receiving()
                && self.core.mesh.inbox_is_empty()
                && self.core.journal.as_ref().is_none_or(Journal::idle)
            {
                return;
            }
            if work == 0 {
                let parked = Instant::now();
                self.core.counters.busy_ns += nanos(parked - mark);
                self.park(now_ms);
                let woke = Instant::now();
                self.core.counters.total_ns += nanos(woke - mark);
                mark = woke;
            } else {
                glommio::yield_if_needed().await;
                let now = Instant::now();
                self.core.counters.busy_ns += nanos(now - mark);
                self.core.counters.total_ns += nanos(now - mark);
                mark = now;
            }
        }
    }

    /// Up to [`RECV_BATCHES_PER_TURN`] batches from listen address `listen`; returns
    /// datagrams taken.
    fn receive(&mut self, listen: usize, now_ms: u64) -> usize {
        let mut taken = 0;
        for _ in 0..RECV_BATCHES_PER_TURN {
            let n = match self.core.udp.recv(listen, &mut self.rx) {
                Ok(n) => n,
                Err(e) => {
                    // A pending socket error (e.g. ICMP port unreachable for an
                    // earlier reply) is reported once and cleared by the read.
                    tracing::debug!(core = self.core.index, "recvmmsg: {e}");
                    self.core.counters.recv_errors += 1;
                    break;
                }
            };
            taken += n;
            self.core.counters.received += n as u64;
            self.arena.reset();
            let arrived = Instant::now();
            let before = self.core.registrar.stats().registers();
            let arena = &self.arena;
            let mut inputs = bumpalo::collections::Vec::with_capacity_in(n, arena);
            for i in 0..n {
                let Some(datagram) = self.rx.get(i) else {
                    continue;
                };
                if datagram.truncated {
                    self.core.counters.too_large += 1;
                    continue;
                }
                let Some(from) = datagram.from else {
                    self.core.counters.unanswerable += 1;
                    continue;
                };
                let listen = u16::try_from(listen).unwrap_or(u16::MAX);
                inputs.push(Input {
                    bytes: datagram.bytes,
                    source: Source::udp(from, listen),
                });
            }
            self.core.handle_batch(now_ms, &inputs, arena, false);
            drop(inputs);
            self.latency_mark(arrived, before);
            if n < self.rx.capacity() {
                break;
            }
        }
        taken
    }

    /// Accept, read and frame what the TCP side has ready, and answer its messages as
    /// one batch (the same path as datagrams); then answer the refused ones (400/513).
    /// Returns the fds that were ready.
    fn receive_tcp(&mut self, now_ms: u64) -> usize {
        let core = &mut self.core;
        let Some(tcp) = core.tcp.as_mut() else {
            return 0;
        };
        self.arena.reset();
        let arena = &self.arena;
        let mut received = bumpalo::collections::Vec::new_in(arena);
        let ready = tcp.receive(now_ms, arena, &mut received, &mut core.counters);
        if received.is_empty() {
            return ready;
        }
        let arrived = Instant::now();
        let before = core.registrar.stats().registers();
        let mut inputs = bumpalo::collections::Vec::with_capacity_in(received.len(), arena);
        for r in &received {
            if let Received::Message { bytes, source } = *r {
                inputs.push(Input { bytes, source });
            }
        }
        core.handle_batch(now_ms, &inputs, arena, false);
        drop(inputs);
        for r in &received {
            if let Received::Refused {
                head,
                source,
                status,
                reason,
            } = *r
            {
                let action = core.registrar.refuse_stream(
                    source,
                    head,
                    status,
                    reason,
                    arena,
                    &mut core.reply,
                );
                core.act(action, None);
            }
        }
        drop(received);
        self.latency_mark(arrived, before);
        ready
    }

    /// Take what other cores sent here: answer the forwarded requests as one batch (the
    /// same path as received ones) and write the crossed replies. Returns how many.
    fn drain_inbox(&mut self, now_ms: u64) -> usize {
        while self.inbox.len() < INBOX_DRAIN_PER_TURN {
            let Some(msg) = self.core.mesh.try_recv() else {
                break;
            };
            self.inbox.push(msg);
        }
        let taken = self.inbox.len();
        if taken == 0 {
            return 0;
        }
        self.arena.reset();
        let arrived = Instant::now();
        let before = self.core.registrar.stats().registers();
        let arena = &self.arena;
        let mut inputs = bumpalo::collections::Vec::with_capacity_in(taken, arena);
        for msg in &self.inbox {
            if let MeshMsg::Request { data, source, hash } = msg {
                debug_assert_eq!(
                    shard_for(*hash, self.core.shards),
                    self.core.index,
                    "forwarded to a core that does not own it"
                );
                inputs.push(Input {
                    bytes: &data.bytes,
                    source: *source,
                });
            }
        }
        self.core.counters.forwarded_in += inputs.len() as u64;
        self.core.handle_batch(now_ms, &inputs, arena, true);
        drop(inputs);
        self.latency_mark(arrived, before);
        for msg in self.inbox.drain(..) {
            match &msg {
                MeshMsg::Reply { to, data } => self.core.deliver_crossed(*to, &data.bytes),
                MeshMsg::FlowClosed(flow) => {
                    self.core.registrar.flow_closed(now_ms, *flow);
                }
                MeshMsg::Request { .. } => {}
            }
            if let Some(lent) = msg.into_lent() {
                self.core.mesh.give_back(lent);
            }
        }
        taken
    }

    /// Remember a batch that arrived at `arrived`, if it answered REGISTERs (the
    /// REGISTER counter was `before` when it started).
    fn latency_mark(&mut self, arrived: Instant, before: u64) {
        let registers = self
            .core
            .registrar
            .stats()
            .registers()
            .saturating_sub(before);
        if registers > 0 && self.latency_pending.len() < LATENCY_PENDING_MAX {
            self.latency_pending.push((arrived, registers));
        }
    }

    /// The turn's replies are flushed: record the REGISTER latency of its batches.
    /// (In sync durability the held replies leave later; they are timed to this
    /// flush too, so the histogram shows the core's own latency, not the disk's.)
    fn record_latency(&mut self) {
        if self.latency_pending.is_empty() {
            return;
        }
        let flushed = Instant::now();
        for (arrived, registers) in self.latency_pending.drain(..) {
            self.core
                .counters
                .record_register_latency(nanos(flushed - arrived), registers);
        }
    }

    /// The next time `handle_timeout` is due, in ms since the epoch.
    fn timeout_due_ms(&self) -> u64 {
        let tick = self.last_timeout_ms.saturating_add(TIMER_TICK_MS);
        self.core
            .registrar
            .poll_timeout()
            .map_or(tick, |due| due.min(tick))
    }

    fn run_timers(&mut self, now_ms: u64) {
        if let Some(tcp) = self.core.tcp.as_mut() {
            tcp.sweep(now_ms, &mut self.core.counters);
        }
        if self.core.announce_closed_flows(now_ms) {
            self.core.mesh.ring_pending();
        }
        if now_ms >= self.timeout_due_ms() {
            self.core.registrar.handle_timeout(now_ms);
            self.last_timeout_ms = now_ms;
        }
        self.core.send_pings(now_ms);
    }

    fn publish(&mut self) {
        let core = &mut self.core;
        core.counters.registrar = RegistrarCounters::from(core.registrar.stats());
        if let Some(journal) = core.journal.as_ref() {
            // Handed to the writer (or still waiting to be), not yet durable.
            core.counters.persistence_lag_bytes = journal.lag_bytes();
            core.counters.store_errors = journal.errors();
        }
        self.shared_counters.publish(&core.counters);
    }

    /// Sleep until a socket is readable, the doorbell rings, or the next deadline.
    fn park(&mut self, now_ms: u64) {
        let backlog = self.core.journal.as_ref().is_some_and(Journal::backlog)
            || self.core.redis.as_mut().is_some_and(RedisLink::has_output)
            || self.core.registrar.commits_pending() > 0;
        let sleep_ms = if backlog {
            // The writer's channel was full: try again soon.
            1
        } else {
            // A Redis reconnect due sooner than the next timer shortens the sleep, as
            // does the TCP sweep (timeouts of connections).
            let reconnect_ms = self
                .core
                .redis
                .as_ref()
                .and_then(|r| r.next_wakeup(Instant::now()))
                .map_or(u64::MAX, |d| {
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
                });
            let tcp_due = self.core.tcp.as_ref().and_then(Tcp::sweep_due_ms);
            let due = tcp_due.map_or(self.timeout_due_ms(), |d| d.min(self.timeout_due_ms()));
            due.saturating_sub(now_ms)
                .min(reconnect_ms)
                .clamp(1, TIMER_TICK_MS)
        };
        let core = &mut self.core;
        let bell = core.mesh.doorbell();
        bell.arm();
        // Armed: whatever arrives from now on rings the bell, so news that came before
        // is checked here once, and then the sleep cannot miss any.
        let shared = core.mesh.shared();
        let stop_news = if self.draining {
            shared.all_stopped_receiving()
        } else {
            shared.stop_requested()
        };
        let durable_news = core.journal.as_ref().is_some_and(Journal::releasable);
        let quiet = !stop_news && !durable_news && core.mesh.inbox_is_empty();
        if quiet && self.control.is_idle() {
            let redis_fds = core.redis.iter().flat_map(RedisLink::fds);
            let tcp_fd = core.tcp.as_ref().map(Tcp::fd);
            let fds = core
                .udp
                .fds()
                .chain(redis_fds)
                .chain(tcp_fd)
                .chain([bell.fd()]);
            // Redis connects in progress wake the core when they complete (writable).
            let connecting = core.redis.iter().flat_map(RedisLink::connecting_fds);
            let woke = self.poll.wait_writable(
                fds,
                connecting,
                Duration::from_millis(sleep_ms),
                self.spin_before_park,
            );
            if let Err(e) = woke {
                tracing::debug!(core = core.index, "ppoll: {e}");
                core.counters.recv_errors += 1;
            }
        }
        let bell = core.mesh.doorbell();
        bell.disarm();
        bell.clear();
    }
}

impl Core {
    /// Answer a batch of requests: parse them all ([`Registrar::prepare`], which also
    /// decides the owner), let the registrar bring what they need into cache together
    /// ([`Registrar::warm`]: the misses of a batch overlap), then answer each in order
    /// and carry out its action. `forwarded`: the batch came over the mesh, so this
    /// core owns all of it.
    fn handle_batch(&mut self, now_ms: u64, inputs: &[Input<'_>], arena: &Bump, forwarded: bool) {
        let (me, shards) = (self.index, self.shards);
        let owns = |hash| forwarded || shards == 1 || shard_for(hash, shards) == me;
        let mut prepared = bumpalo::collections::Vec::with_capacity_in(inputs.len(), arena);
        for input in inputs {
            prepared.push(Registrar::prepare(input.bytes, arena, owns));
        }
        self.registrar.warm(prepared.iter());
        for (input, p) in inputs.iter().zip(prepared.iter()) {
            let action = self
                .registrar
                .answer(now_ms, input.source, p, arena, &mut self.reply);
            // Receive steering's measure: a request received on the core that owns it
            // (steered there, or by chance under the kernel's hash).
            if !forwarded && shards > 1 && input.source.transport == crate::location::Transport::Udp
            {
                match action {
                    Action::Forward { .. } => self.counters.datagrams_off_owner += 1,
                    Action::Dropped(_) => {}
                    _ => self.counters.received_on_owner += 1,
                }
            }
            self.act(action, Some(input));
        }
    }

    /// Carry out what the registrar decided for `input` (`None` for an answer the
    /// registrar gave on resuming a commit: always a reply or nothing).
    fn act(&mut self, action: Action, input: Option<&Input<'_>>) {
        match action {
            Action::Reply { to, durable_after } => {
                let held = self
                    .journal
                    .as_mut()
                    .is_some_and(|j| j.hold(durable_after, to, &mut self.reply));
                if !held {
                    let mut reply = std::mem::take(&mut self.reply);
                    self.deliver(to, &mut reply);
                    self.reply = reply;
                }
            }
            Action::Commit { id } => {
                // Sent to the shared backend, answered when its reply comes back; what
                // cannot be sent is answered 503 (nothing changed) with the turn's
                // failures.
                let sent = match self.redis.as_mut() {
                    Some(r) => r.submit(&self.registrar, id, Instant::now(), 0, false),
                    None => Err(CommitFailure::Connection),
                };
                match sent {
                    Ok(()) => self.counters.redis_sent += 1,
                    Err(reason) => self.failed.push((id, reason)),
                }
            }
            Action::Nothing => {}
            Action::Dropped(reason) => self.counters.count_drop(reason),
            Action::Forward { hash } => {
                let Some(input) = input else {
                    debug_assert!(false, "a resumed commit is never forwarded");
                    return;
                };
                let owner = shard_for(hash, self.shards);
                debug_assert_ne!(owner, self.index);
                if let (Some(conn), Some(tcp)) = (input.source.conn, self.tcp.as_mut())
                    && usize::from(conn.core) == self.index
                {
                    tcp.note_owner(conn.slot, owner);
                }
                match self.mesh.forward(owner, input.bytes, input.source, hash) {
                    Ok(()) => self.counters.forwarded_out += 1,
                    Err(ForwardError::InboxFull | ForwardError::PoolExhausted) => {
                        self.counters.mesh_full += 1
                    }
                }
            }
        }
    }

    /// Send the keep-alive pings due at `now_ms` (issue 17, `registrar::ping`), at
    /// most [`PINGS_PER_TURN_MAX`], from the socket each binding registered through,
    /// and flush them (the core may park right after). Returns how many.
    fn send_pings(&mut self, now_ms: u64) -> usize {
        let mut sent = 0;
        while sent < PINGS_PER_TURN_MAX {
            let Some(to) = self.registrar.poll_ping(now_ms, &mut self.reply) else {
                break;
            };
            let mut ping = std::mem::take(&mut self.reply);
            self.deliver(to, &mut ping);
            self.reply = ping;
            sent += 1;
        }
        if sent > 0 {
            self.udp.flush_all(&mut self.counters);
        }
        sent
    }

    /// Send `reply` to `to` (RFC 3261 §18.2.2): a datagram from this core's socket on
    /// the listen address the request reached, or, on a connection another core holds,
    /// over the mesh to that core. `reply` comes back empty.
    fn deliver(&mut self, to: Destination, reply: &mut Vec<u8>) {
        match to.conn {
            None => {
                let listen = usize::from(to.listen);
                self.udp.send(listen, reply, to.addr, &mut self.counters);
            }
            Some(conn) if usize::from(conn.core) != self.index => {
                // Forwards count requests; a crossing reply is counted only when the
                // mesh has no room for it.
                if let Err(ForwardError::InboxFull | ForwardError::PoolExhausted) =
                    self.mesh.send_reply(usize::from(conn.core), reply, to)
                {
                    self.counters.mesh_full += 1;
                }
                reply.clear();
            }
            Some(_) => {
                self.deliver_crossed(to, reply);
                reply.clear();
            }
        }
    }

    /// A reply for a connection this core holds (it came from this core's answer or
    /// crossed the mesh from the owner's): queued on the connection if it is still
    /// open (same generation), else counted as "connection gone". RFC 3261 §18.2.2
    /// would then open a connection to the sent-by address; a registrar's client
    /// retransmits its REGISTER on a new connection instead.
    fn deliver_crossed(&mut self, to: Destination, reply: &[u8]) {
        let Some(conn) = to.conn else {
            debug_assert!(false, "a crossed reply names a connection");
            return;
        };
        match self.tcp.as_mut() {
            Some(tcp) => tcp.send(conn, reply, &mut self.counters),
            None => self.counters.tcp_conn_gone += 1,
        }
    }

    /// Read the shared backend's replies and answer their requests; answer 503 the
    /// commits that failed or timed out. Returns replies taken.
    fn poll_redis(&mut self, now_ms: u64) -> usize {
        let Some(mut link) = self.redis.take() else {
            return 0;
        };
        let mut failed = std::mem::take(&mut self.failed);
        let mut arena = std::mem::take(&mut self.commit_arena);
        let taken = link.poll(
            Instant::now(),
            &mut |id, reply| {
                arena.reset();
                let action = self
                    .registrar
                    .resume(now_ms, id, reply, &arena, &mut self.reply);
                self.act(action, None);
            },
            &mut failed,
        );
        let (resent, _) = link.resend(&self.registrar, Instant::now(), &mut failed);
        self.counters.redis_sent += resent;
        self.counters.redis_retried += resent;
        self.counters.redis_reconnects = link.reconnects();
        self.counters.redis_connections_lost = link.losses();
        self.redis = Some(link);
        self.commit_arena = arena;
        self.failed = failed;
        self.answer_failed(now_ms);
        taken
    }

    /// Write the turn's commits to the backend, and answer 503 those that could not
    /// be sent.
    fn flush_redis(&mut self, now_ms: u64) {
        if let Some(link) = self.redis.as_mut() {
            link.flush(Instant::now(), &mut self.failed);
        }
        self.answer_failed(now_ms);
    }

    /// Commits that cannot complete: 503 with Retry-After, nothing known to be
    /// acknowledged (a retransmission tries again), or 500 for a malformed reply;
    /// counted (and logged, rate-limited) per reason. A commit answered already (its
    /// deadline passes after its reply came) is skipped.
    fn answer_failed(&mut self, now_ms: u64) {
        if self.failed.is_empty() {
            return;
        }
        let mut failed = std::mem::take(&mut self.failed);
        let mut arena = std::mem::take(&mut self.commit_arena);
        let now = Instant::now();
        for (id, reason) in failed.drain(..) {
            if self.registrar.commit_request(id).is_none() {
                continue;
            }
            self.counters.redis_failed += 1;
            if let Some(n) = self.counters.redis_failed_by.get_mut(reason.index()) {
                *n += 1;
            }
            if let Some(link) = self.redis.as_mut() {
                link.note_failures(reason, 1, now);
            }
            let reply = CommitReply {
                status: if reason.is_server_error() {
                    CommitStatus::Failed
                } else {
                    CommitStatus::Unavailable
                },
                bindings: &[],
            };
            arena.reset();
            let action = self
                .registrar
                .resume(now_ms, id, &reply, &arena, &mut self.reply);
            self.act(action, None);
        }
        self.commit_arena = arena;
        self.failed = failed;
    }

    /// Connections that closed on this core: this shard drops or marks the bindings
    /// reachable only through them (RFC 5626 §6), and so does every shard their
    /// requests were forwarded to, told over the mesh. True when a message was sent.
    fn announce_closed_flows(&mut self, now_ms: u64) -> bool {
        let Some(tcp) = self.tcp.as_mut().filter(|t| t.any_closed()) else {
            return false;
        };
        let mut closed = std::mem::take(&mut self.closed_flows);
        tcp.take_closed(&mut closed);
        let mut sent = false;
        for (flow, owners) in closed.drain(..) {
            self.registrar.flow_closed(now_ms, flow);
            for core in (0..self.shards).filter(|&c| c != self.index) {
                let bit = 1u64.checked_shl(u32::try_from(core).unwrap_or(u32::MAX));
                if owners & bit.unwrap_or(u64::MAX) == 0 {
                    continue;
                }
                match self.mesh.flow_closed(core, flow) {
                    Ok(()) => sent = true,
                    // The bindings then stay until they expire.
                    Err(_) => self.counters.mesh_full += 1,
                }
            }
        }
        self.closed_flows = closed;
        sent
    }

    /// Hand new store records to the writer and send the sync-mode replies that are
    /// now durable.
    fn ship_journal(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        journal.ship(&mut self.registrar);
        while let Some(mut held) = self.journal.as_mut().and_then(Journal::release) {
            self.deliver(held.to, &mut held.bytes);
            if let Some(journal) = self.journal.as_mut() {
                journal.recycle(held.bytes);
            }
        }
    }
}

/// Put back the bindings the start-up load assigned to this shard.
fn restore(registrar: &mut Registrar, now_ms: u64, records: &[u8]) {
    let mut offset = 0;
    while let Frame::Record { payload, next } = record::next_frame(records, offset) {
        if let Ok(Record::Set { key, bindings }) = record::decode(payload) {
            registrar.restore_aor(now_ms, key, &bindings);
        }
        offset = next;
    }
}

/// Milliseconds since the Unix epoch: the registrar's notion of now. Read once per
/// turn (a turn is at most a few batches, microseconds apart).
/// A duration in whole nanoseconds, saturating (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
