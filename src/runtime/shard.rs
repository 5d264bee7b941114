//! One core's loop: receive a batch, route each datagram, answer what this shard
//! owns, forward the rest, drain the inbox, flush replies, run timers; park in glommio
//! when there is nothing to do.
//!
//! The loop is one glommio task per core. It never awaits while there is work, so a
//! busy core makes one `recvmmsg` per batch and one `sendmmsg` per socket per batch,
//! and nothing else. When a turn finds no work it parks on three wake sources at once:
//! any listening socket readable (an io_uring `MSG_PEEK` receive of one byte on a
//! dup of the fd, which consumes nothing), the mesh doorbell (another core forwarded
//! to us, or a stop was requested), and a glommio timer for the registrar's next
//! deadline (at most [`TIMER_TICK_MS`] away). An idle core therefore sleeps in the
//! kernel and costs ~0 % CPU.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bumpalo::Bump;
use glommio::timer::Timer;
use socket2::Socket;

use super::mesh::{ForwardError, Forwarded, MeshEnd, shard_for};
use super::mmsg::{RecvBatch, SendBatch};
use super::socket::park_handle;
use super::stats::{Counters, RegistrarCounters, SharedCounters};
use crate::registrar::{Dispatch, Handled, Registrar, RegistrarConfig, Source};
use crate::store::compact::Compactor;
use crate::store::record::{self, Frame, Record};
use crate::store::writer::{Progress, WriterHandle};

/// Longest time between two `handle_timeout` calls, in ms: an expired binding is gone
/// within this long of its expiry even if the registrar reports no deadline.
pub(crate) const TIMER_TICK_MS: u64 = 1000;

/// `recvmmsg` batches taken from one socket per turn before the inbox and the other
/// sockets get their turn (fairness between sockets and forwarded work).
const RECV_BATCHES_PER_TURN: usize = 4;

/// Forwarded datagrams answered per turn, at most.
const INBOX_DRAIN_PER_TURN: usize = 256;

/// Time given to glommio at exit to cancel in-flight receives, in ms.
const SOCKET_RELEASE_MS: u64 = 5;

/// Initial arena size per core, in bytes (reset per batch, so this is a per-batch
/// budget before bumpalo adds a chunk, which it then keeps).
const ARENA_BYTES_INITIAL: usize = 256 * 1024;

/// Everything a core needs, built on the main thread.
#[derive(Debug)]
pub(crate) struct CoreSetup {
    pub(crate) shards: usize,
    pub(crate) sockets: Vec<Socket>,
    pub(crate) registrar: RegistrarConfig,
    pub(crate) recv_batch: usize,
    pub(crate) spin_before_park_us: u64,
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

/// This shard's end of the store.
#[derive(Debug)]
pub(crate) struct JournalSetup {
    pub(crate) writer: WriterHandle,
    /// `--durability sync`: hold each reply until the journal is durable up to it.
    pub(crate) sync: bool,
    /// `--compact-min-bytes`: online compaction threshold.
    pub(crate) compact_min_bytes: u64,
}

/// The journal as the core sees it: bytes not yet handed over, replies held for sync.
struct Journal {
    writer: WriterHandle,
    progress: Arc<Progress>,
    sync: bool,
    /// Drained from the registrar, not yet accepted by the writer (channel full).
    outgoing: Vec<u8>,
    /// Sync mode: replies waiting for the journal to be durable, in journal order.
    held: VecDeque<Held>,
    /// Buffers of released replies, reused.
    spare: Vec<Vec<u8>>,
    /// Online compaction (store::compact), stepped once the journal is handed over.
    compactor: Compactor,
}

/// A reply waiting for its record to be durable.
struct Held {
    position: u64,
    to: SocketAddr,
    socket: usize,
    bytes: Vec<u8>,
}

/// Held reply buffers kept for reuse, at most.
const HELD_SPARE_MAX: usize = 1024;

impl Journal {
    /// Whether this reply (just written after the registrar reached `position`) must
    /// wait; if so it is copied out and queued.
    fn hold(&mut self, position: u64, to: SocketAddr, socket: usize, reply: &[u8]) -> bool {
        if !self.sync || position <= self.progress.durable() {
            return false;
        }
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(reply);
        self.held.push_back(Held {
            position,
            to,
            socket,
            bytes,
        });
        true
    }

    /// Hand the registrar's new records to the writer (never blocks).
    fn ship(&mut self, registrar: &mut Registrar) {
        registrar.drain_journal(&mut self.outgoing);
        if self.outgoing.is_empty() {
            return self.compactor.step(registrar, &self.writer);
        }
        let next = self.writer.spare().unwrap_or_default();
        let chunk = std::mem::replace(&mut self.outgoing, next);
        if let Err(chunk) = self.writer.try_send(chunk) {
            // Writer busy: keep the bytes, in order, and try again next turn.
            let mut chunk = chunk;
            chunk.extend_from_slice(&self.outgoing);
            self.outgoing = chunk;
        } else {
            self.compactor.step(registrar, &self.writer);
        }
    }

    /// A held reply is now durable.
    fn releasable(&self) -> bool {
        self.held
            .front()
            .is_some_and(|h| h.position <= self.progress.durable())
    }

    /// Nothing left to hand over or to release.
    fn idle(&self) -> bool {
        self.outgoing.is_empty() && (self.held.is_empty() || self.progress.failed())
    }
}

type Readable = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// Receive batches and inbox drains whose REGISTER latency is recorded at a turn's
/// flush, at most (more than a turn makes: `RECV_BATCHES_PER_TURN` per socket + 1).
const LATENCY_PENDING_MAX: usize = 64;

struct Shard {
    /// Per batch of this turn: when it arrived and how many REGISTERs it answered;
    /// recorded into the latency histogram once the turn's replies are flushed.
    latency_pending: Vec<(Instant, u64)>,
    index: usize,
    shards: usize,
    sockets: Vec<Socket>,
    /// glommio handles on dups of `sockets`, used only to park.
    park_handles: Vec<Rc<glommio::net::UdpSocket>>,
    /// Pending readiness futures, one per socket; kept across parks and rebuilt only
    /// after they complete.
    readable: Vec<Option<Readable>>,
    timer: Timer,
    rx: RecvBatch,
    tx: Vec<SendBatch>,
    arena: Bump,
    registrar: Registrar,
    mesh: MeshEnd,
    counters: Counters,
    shared_counters: Arc<SharedCounters>,
    last_timeout_ms: u64,
    draining: bool,
    /// SIGHUP reloads of the subscriber table, and the generation this core has.
    subscribers: Arc<super::reload::SubscriberCell>,
    subscribers_generation: u64,
    /// Management commands (issue 7), answered between batches.
    control: super::control::ControlEnd,
    journal: Option<Journal>,
}

/// Run one core until a stop is requested and everything in flight is answered.
/// `ready` is told once the core can serve (or why it cannot).
pub(crate) async fn run(setup: CoreSetup, ready: impl FnOnce(Result<(), String>)) {
    let index = setup.mesh.index();
    let park_handles = match setup
        .sockets
        .iter()
        .map(|s| park_handle(s).map(Rc::new))
        .collect::<io::Result<Vec<_>>>()
    {
        Ok(handles) => handles,
        Err(e) => {
            ready(Err(format!(
                "core {index}: cannot register its socket with glommio: {e}"
            )));
            return;
        }
    };
    let sockets_len = setup.sockets.len();
    let now_ms = wall_clock_ms();
    let mut registrar = Registrar::new(setup.registrar);
    restore(&mut registrar, now_ms, &setup.restore);
    drop(setup.restore);
    let journal = setup.journal.map(|j| Journal {
        progress: Arc::clone(j.writer.progress()),
        writer: j.writer,
        sync: j.sync,
        outgoing: Vec::new(),
        held: VecDeque::new(),
        spare: Vec::new(),
        compactor: Compactor::new(j.compact_min_bytes),
    });
    let mut shard = Shard {
        latency_pending: Vec::with_capacity(LATENCY_PENDING_MAX),
        index,
        shards: setup.shards,
        sockets: setup.sockets,
        park_handles,
        readable: (0..sockets_len).map(|_| None).collect(),
        timer: Timer::new(Duration::from_millis(TIMER_TICK_MS)),
        rx: RecvBatch::new(setup.recv_batch),
        // A send batch as large as the larger of the two producers, so one turn's
        // replies rarely need a mid-batch flush.
        tx: (0..sockets_len)
            .map(|_| SendBatch::new(setup.recv_batch.max(64)))
            .collect(),
        arena: Bump::with_capacity(ARENA_BYTES_INITIAL),
        registrar,
        mesh: setup.mesh,
        counters: Counters::default(),
        shared_counters: setup.counters,
        last_timeout_ms: now_ms,
        draining: false,
        subscribers: setup.subscribers,
        subscribers_generation: 0,
        control: setup.control,
        journal,
    };
    ready(Ok(()));
    shard.serve().await;
    shard.release_sockets().await;
}

impl Shard {
    async fn serve(&mut self) {
        // Busy ratio: the runtime may read the clock (the core modules may not).
        let mut mark = Instant::now();
        loop {
            self.mesh.doorbell().disarm();
            let now_ms = wall_clock_ms();
            if !self.draining && self.mesh.shared().stop_requested() {
                // Stop receiving; replies already queued go out below. Other cores
                // may still forward to us what they received before they stopped.
                self.draining = true;
                self.mesh.shared().core_stopped_receiving(self.index);
            }
            let generation = self.subscribers.generation();
            if generation != self.subscribers_generation {
                if let Some(table) = self.subscribers.latest() {
                    self.registrar.set_subscribers(table);
                }
                self.subscribers_generation = generation;
            }
            let mut work = 0;
            if !self.draining {
                for socket in 0..self.sockets.len() {
                    work += self.receive(socket, now_ms);
                }
            }
            work += self.drain_inbox(now_ms);
            // Management API (issue 7): a few commands per turn, never blocking.
            work += self
                .control
                .poll(self.index, &mut self.registrar, &self.counters, now_ms);
            self.ship_journal();
            self.flush_all();
            self.record_latency();
            self.mesh.ring_pending();
            self.run_timers(now_ms);
            self.publish();
            if self.draining
                && self.mesh.shared().all_stopped_receiving()
                && self.mesh.inbox_is_empty()
                && self.journal.as_ref().is_none_or(Journal::idle)
            {
                return;
            }
            if work == 0 {
                let parked = Instant::now();
                self.counters.busy_ns += nanos(parked - mark);
                self.park(now_ms).await;
                let woke = Instant::now();
                self.counters.total_ns += nanos(woke - mark);
                mark = woke;
            } else {
                glommio::yield_if_needed().await;
                let now = Instant::now();
                self.counters.busy_ns += nanos(now - mark);
                self.counters.total_ns += nanos(now - mark);
                mark = now;
            }
        }
    }

    /// Cancel the pending readiness receives and let glommio's reactor reap them
    /// before the sockets close. A receive still in flight in io_uring holds a
    /// reference to the socket past process exit, and a restart on the same port
    /// would then fail with "address already in use".
    async fn release_sockets(&mut self) {
        self.readable.clear();
        glommio::timer::sleep(Duration::from_millis(SOCKET_RELEASE_MS)).await;
        self.park_handles.clear();
    }

    /// Up to [`RECV_BATCHES_PER_TURN`] batches from `socket`; returns datagrams taken.
    fn receive(&mut self, socket: usize, now_ms: u64) -> usize {
        let Some(fd) = self.sockets.get(socket).map(AsRawFd::as_raw_fd) else {
            return 0;
        };
        let mut taken = 0;
        for _ in 0..RECV_BATCHES_PER_TURN {
            let n = match self.rx.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    // A pending socket error (e.g. ICMP port unreachable for an
                    // earlier reply) is reported once and cleared by the read.
                    tracing::debug!(core = self.index, "recvmmsg: {e}");
                    self.counters.recv_errors += 1;
                    break;
                }
            };
            taken += n;
            self.counters.received += n as u64;
            self.arena.reset();
            let (arrived, before) = (Instant::now(), self.registrar.stats().registers());
            self.dispatch_batch(n, socket, now_ms);
            self.latency_mark(arrived, before);
            if n < self.rx.capacity() {
                break;
            }
        }
        taken
    }

    /// Handle the `n` datagrams of the current batch: parse them all
    /// ([`Registrar::prepare`]), let the registrar bring what they need into cache
    /// together ([`Registrar::warm`]: the misses of a batch overlap), then answer,
    /// forward, or drop and count each, in arrival order.
    fn dispatch_batch(&mut self, n: usize, socket: usize, now_ms: u64) {
        let Self {
            rx,
            tx,
            sockets,
            registrar,
            arena,
            mesh,
            counters,
            index,
            shards,
            journal,
            ..
        } = self;
        let arena: &Bump = arena;
        let (me, shards) = (*index, *shards);
        let owns = |hash| shards == 1 || shard_for(hash, shards) == me;
        let mut prepared = bumpalo::collections::Vec::with_capacity_in(n, arena);
        for i in 0..n {
            let p = rx
                .get(i)
                .filter(|d| !d.truncated)
                .map(|d| Registrar::prepare(d.bytes, arena, owns));
            prepared.push(p);
        }
        registrar.warm(prepared.iter().flatten());
        for (i, p) in prepared.iter().enumerate() {
            let Some(datagram) = rx.get(i) else {
                continue;
            };
            let Some(p) = p else {
                counters.too_large += 1;
                continue;
            };
            let Some(from) = datagram.from else {
                counters.unanswerable += 1;
                continue;
            };
            let source = Source {
                addr: from,
                local: socket as u16,
            };
            // The registrar parsed the datagram once: it answers what this shard owns
            // and hands back the route hash of what another shard owns (`prepare` made
            // it a `Prepared::Forward`), which then crosses the mesh once.
            let (Some(batch), Some(sock)) = (tx.get_mut(socket), sockets.get(socket)) else {
                continue;
            };
            let Some(out) = next_reply_buf(batch, sock, counters) else {
                continue;
            };
            let dispatched = registrar.finish(now_ms, source, p, arena, out);
            if shards > 1 && !matches!(dispatched, Dispatch::Forward(_) | Dispatch::Dropped(_)) {
                counters.received_on_owner += 1; // receive steering (issue 13)
            }
            match dispatched {
                Dispatch::Reply(to) => {
                    let held = journal
                        .as_mut()
                        .is_some_and(|j| j.hold(registrar.journal_position(), to, socket, out));
                    if !held {
                        batch.commit(to);
                    }
                }
                Dispatch::Nothing => {}
                Dispatch::Dropped(reason) => counters.count_drop(reason),
                Dispatch::Forward(hash) => {
                    let owner = shard_for(hash, shards);
                    debug_assert_ne!(owner, me);
                    match mesh.forward(owner, datagram.bytes, source, hash) {
                        Ok(()) => counters.forwarded_out += 1,
                        Err(ForwardError::InboxFull | ForwardError::PoolExhausted) => {
                            counters.mesh_full += 1
                        }
                    }
                }
            }
        }
    }

    /// Answer datagrams other cores forwarded here; returns how many.
    fn drain_inbox(&mut self, now_ms: u64) -> usize {
        let mut taken = 0;
        self.arena.reset();
        let (arrived, before) = (Instant::now(), self.registrar.stats().registers());
        while taken < INBOX_DRAIN_PER_TURN {
            let Some(forwarded) = self.mesh.try_recv() else {
                break;
            };
            taken += 1;
            self.answer_forwarded(&forwarded, now_ms);
            self.mesh.give_back(forwarded);
        }
        self.latency_mark(arrived, before);
        taken
    }

    /// Remember a batch that arrived at `arrived`, if it answered REGISTERs (the
    /// REGISTER counter was `before` when it started).
    fn latency_mark(&mut self, arrived: Instant, before: u64) {
        let registers = self.registrar.stats().registers().saturating_sub(before);
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
            self.counters
                .record_register_latency(nanos(flushed - arrived), registers);
        }
    }

    fn answer_forwarded(&mut self, forwarded: &Forwarded, now_ms: u64) {
        let Self {
            tx,
            sockets,
            registrar,
            arena,
            counters,
            index,
            shards,
            journal,
            ..
        } = self;
        debug_assert_eq!(
            shard_for(forwarded.hash, *shards),
            *index,
            "forwarded to a core that does not own it"
        );
        counters.forwarded_in += 1;
        let local = usize::from(forwarded.source.local);
        let (Some(batch), Some(sock)) = (tx.get_mut(local), sockets.get(local)) else {
            return;
        };
        answer(
            registrar,
            arena,
            batch,
            sock,
            counters,
            now_ms,
            forwarded.source,
            &forwarded.bytes,
            journal.as_mut(),
        );
    }

    /// Hand new store records to the writer and queue the sync-mode replies that are
    /// now durable.
    fn ship_journal(&mut self) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if journal.progress.failed() {
            self.registrar.set_store_failed(true);
        }
        journal.ship(&mut self.registrar);
        let durable = journal.progress.durable();
        while journal.held.front().is_some_and(|h| h.position <= durable) {
            let Some(held) = journal.held.pop_front() else {
                break;
            };
            let (Some(batch), Some(sock)) =
                (self.tx.get_mut(held.socket), self.sockets.get(held.socket))
            else {
                continue;
            };
            if let Some(out) = next_reply_buf(batch, sock, &mut self.counters) {
                out.clear();
                out.extend_from_slice(&held.bytes);
                batch.commit(held.to);
            }
            if journal.spare.len() < HELD_SPARE_MAX {
                journal.spare.push(held.bytes);
            }
        }
    }

    fn flush_all(&mut self) {
        for (batch, sock) in self.tx.iter_mut().zip(&self.sockets) {
            if !batch.is_empty() {
                send(batch, sock, &mut self.counters);
            }
        }
    }

    /// The next time `handle_timeout` is due, in ms since the epoch.
    fn timeout_due_ms(&self) -> u64 {
        let tick = self.last_timeout_ms.saturating_add(TIMER_TICK_MS);
        self.registrar
            .poll_timeout()
            .map_or(tick, |due| due.min(tick))
    }

    fn run_timers(&mut self, now_ms: u64) {
        if now_ms >= self.timeout_due_ms() {
            self.registrar.handle_timeout(now_ms);
            self.last_timeout_ms = now_ms;
        }
    }

    fn publish(&mut self) {
        self.counters.registrar = RegistrarCounters::from(self.registrar.stats());
        if let Some(journal) = self.journal.as_ref() {
            // Handed to the writer (or still waiting in `outgoing`), not yet durable.
            self.counters.persistence_lag_bytes = self
                .registrar
                .journal_position()
                .saturating_sub(journal.progress.durable());
            self.counters.store_errors = journal.progress.errors();
        }
        self.shared_counters.publish(&self.counters);
    }

    /// Sleep until a socket is readable, the doorbell rings, or the next deadline.
    async fn park(&mut self, now_ms: u64) {
        for (slot, handle) in self.readable.iter_mut().zip(&self.park_handles) {
            if slot.is_none() {
                *slot = Some(Box::pin(readable(Rc::clone(handle))));
            }
        }
        let backlog = self
            .journal
            .as_ref()
            .is_some_and(|j| !j.outgoing.is_empty() || j.compactor.running());
        let sleep_ms = if backlog {
            // The writer's channel was full: try again soon.
            1
        } else {
            self.timeout_due_ms()
                .saturating_sub(now_ms)
                .clamp(1, TIMER_TICK_MS)
        };
        self.timer.reset(Duration::from_millis(sleep_ms));
        let draining = self.draining;
        let Self {
            mesh,
            readable,
            timer,
            counters,
            control,
            journal,
            ..
        } = self;
        std::future::poll_fn(|cx| {
            mesh.doorbell().arm(cx.waker());
            let shared = mesh.shared();
            let stop_news = if draining {
                shared.all_stopped_receiving()
            } else {
                shared.stop_requested()
            };
            let durable_news = journal.as_ref().is_some_and(Journal::releasable);
            if stop_news || durable_news || !mesh.inbox_is_empty() || !control.is_idle() {
                mesh.doorbell().disarm();
                return Poll::Ready(());
            }
            let mut woken = false;
            for slot in readable.iter_mut() {
                if let Some(future) = slot {
                    if let Poll::Ready(result) = future.as_mut().poll(cx) {
                        if let Err(e) = result {
                            tracing::debug!("readiness: {e}");
                            counters.recv_errors += 1;
                        }
                        *slot = None;
                        woken = true;
                    }
                }
            }
            if Pin::new(&mut *timer).poll(cx).is_ready() {
                woken = true;
            }
            if woken {
                mesh.doorbell().disarm();
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// Completes when `socket` has a datagram queued (consumes nothing: `MSG_PEEK`).
async fn readable(socket: Rc<glommio::net::UdpSocket>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    socket
        .peek_from(&mut byte)
        .await
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Hand one datagram to the registrar and queue its reply, if any.
#[allow(clippy::too_many_arguments)]
fn answer(
    registrar: &mut Registrar,
    arena: &Bump,
    batch: &mut SendBatch,
    socket: &Socket,
    counters: &mut Counters,
    now_ms: u64,
    source: Source,
    bytes: &[u8],
    journal: Option<&mut Journal>,
) {
    let Some(out) = next_reply_buf(batch, socket, counters) else {
        return;
    };
    match registrar.handle_datagram(now_ms, source, bytes, arena, out) {
        Handled::Reply(to) => {
            let socket = usize::from(source.local);
            let held =
                journal.is_some_and(|j| j.hold(registrar.journal_position(), to, socket, out));
            if !held {
                batch.commit(to);
            }
        }
        Handled::Nothing => {}
    }
}

/// The buffer for the next reply on `socket`, after sending the batch when it is full.
fn next_reply_buf<'b>(
    batch: &'b mut SendBatch,
    socket: &Socket,
    counters: &mut Counters,
) -> Option<&'b mut Vec<u8>> {
    if batch.is_full() {
        send(batch, socket, counters);
    }
    batch.next_buf()
}

/// Sends what `batch` holds on `socket` and counts it.
fn send(batch: &mut SendBatch, socket: &Socket, counters: &mut Counters) {
    let flushed = batch.flush(socket.as_raw_fd());
    counters.sent += flushed.sent;
    counters.send_errors += flushed.failed;
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
