//! One core's TCP transport (RFC 3261 §18): its listeners, its connections, and the
//! framing of their byte streams into requests for the one path every request takes.
//!
//! Each core owns an SO_REUSEPORT listener per TCP `--listen` address (`listener`)
//! and the connections it accepted (`table`, `conn`); a connection lives on its core
//! until it closes. Like the UDP sockets, nothing here blocks or awaits: the core's
//! loop asks an epoll set (`park::Epoll`, whose fd the core also sleeps on) which
//! listeners and connections are ready, once per turn, and then:
//!
//! - accepts (at `--tcp-connections-max`: accepts and closes at once, counted);
//! - reads into the connection's buffer and frames it (`sip::framing`, §18.3): each
//!   whole message is copied into the turn's arena and handed to the core as one
//!   batch with `Source { transport: Tcp, conn: Some(ConnId) }`, at most
//!   [`MESSAGES_PER_TURN_MAX`] per turn (the rest is framed first next turn); a CRLFCRLF ping gets a
//!   CRLF pong (RFC 5626 §4.4.1); a missing or bad Content-Length is answered 400 and a
//!   message past the read buffer 513 (`Refused`), and the connection then closes;
//! - queues replies on the connection they name (RFC 3261 §18.2.2) if its generation
//!   still matches, else counts "connection gone"; writes every touched connection once
//!   at the turn's flush, and watches for writability only while bytes wait.
//!
//! Timers ride on the core's tick: [`Tcp::sweep`] walks the table every
//! [`Tcp::sweep_due_ms`] and closes connections idle past `--tcp-idle-timeout-s` or
//! holding a message begun more than `--tcp-header-timeout-ms` ago (slow senders).
//! A core without TCP listeners has no `Tcp` at all and pays nothing per turn.
//!
//! TLS listeners (`--listen tls:`) are listeners of the same core and table: their
//! connections carry a TLS session inside `conn` (see `tls`), and their messages take
//! the same framing and request path with `Transport::Tls`. Handshakes are bounded:
//! at most `--tls-handshakes-max` in progress per core (past it, accepted and closed
//! at once), each done within `--tls-handshake-timeout-ms`, and at most
//! [`HANDSHAKE_READS_PER_TURN_MAX`] handshake steps per turn, taken after the
//! established connections' messages, so a flood of half-open handshakes cannot
//! starve REGISTERs on connections already up.

mod conn;
mod listener;
mod table;
mod tls;

pub(crate) use listener::{Bound, bind_all, bind_all_as};
pub(crate) use tls::{HandshakeFailure, ServerSource, Shared as TlsShared, server as tls_server};

use std::cell::Cell;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use super::park::{Epoll, Interest, Ready};
use super::stats::Counters;
use crate::config::tcp::TcpConfig;
use crate::location::FlowId;
use crate::registrar::{ConnId, Source};
use crate::sip::{self as framing, Framed, FramingError};
use conn::{Conn, ReadOutcome, WriteOutcome};
use table::Table;

/// Ready fds taken from the epoll set per turn, at most (the rest stay ready for the
/// next turn: level-triggered).
const READY_PER_TURN_MAX: usize = 256;

/// Messages framed per turn over all connections, at most: bounds the batch (and the
/// arena it is parsed into) whatever a peer packs into its buffer; the rest waits in
/// its buffer for the next turn.
const MESSAGES_PER_TURN_MAX: usize = 256;

/// TLS connections whose handshake takes a step (a ClientHello answered, a Finished
/// checked: the public-key work) per turn, at most: the rest stay ready for the next
/// turn, after that turn's established connections.
const HANDSHAKE_READS_PER_TURN_MAX: usize = 8;

/// Connections accepted per listener per turn, at most.
const ACCEPTS_PER_TURN_MAX: usize = 64;

/// Longest time between two sweeps of the table, in ms (the core's timer tick).
const SWEEP_INTERVAL_MS_MAX: u64 = super::shard::TIMER_TICK_MS;

/// Epoll tokens at and above this are listeners (`LISTENER_TOKEN + listen index`);
/// below, connection slots.
const LISTENER_TOKEN: u64 = 1 << 63;

/// The CRLF "pong" answering a CRLFCRLF "ping" (RFC 5626 §4.4.1).
const KEEPALIVE_PONG: &[u8] = b"\r\n";

/// What a turn's reads produced, in the turn's arena.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Received<'a> {
    /// A whole request (or whatever the peer framed as one) to answer.
    Message { bytes: &'a [u8], source: Source },
    /// A message that cannot be framed: answer `status reason` to what `head` holds
    /// (its connection closes once the answer is written).
    Refused {
        head: &'a [u8],
        source: Source,
        status: u16,
        reason: &'static str,
    },
}

/// The status and reason phrase answering a framing error (RFC 3261 §18.3, §21).
/// The window `--tcp-messages-per-s` counts in, in ms.
const RATE_WINDOW_MS: u64 = 1000;

const fn refusal(error: FramingError) -> (u16, &'static str) {
    match error {
        FramingError::MissingContentLength => (400, "Missing Content-Length"),
        FramingError::BadContentLength => (400, "Bad Content-Length"),
        FramingError::TooLarge => (513, "Message Too Large"),
    }
}

/// The core's TCP side.
pub(crate) struct Tcp {
    core: u16,
    listeners: Vec<TcpListener>,
    table: Table<Conn>,
    epoll: Epoll,
    config: TcpConfig,
    ready: Vec<Ready>,
    /// Connections with bytes queued this turn (written at the flush).
    dirty: Vec<u32>,
    /// Connections whose buffer holds more than the last turn's budget framed (and
    /// its spare, swapped each turn so neither reallocates).
    backlog: Vec<u32>,
    spare_backlog: Vec<u32>,
    next_sweep_ms: u64,
    /// The listeners are not watched (an accept failed for want of fds).
    listeners_paused: bool,
    /// Listeners from this index on are TLS ones (`--listen tls:` order).
    tls_from: usize,
    /// The TLS server and limits, with TLS listeners.
    tls: Option<TlsShared>,
    /// TLS handshakes in progress on this core (`--tls-handshakes-max`).
    handshakes: Rc<Cell<usize>>,
    /// Handshaking connections ready this turn, served after the others.
    handshake_ready: Vec<u32>,
    /// Per slot: the cores its requests were forwarded to (bit per core; all bits past
    /// 64 cores), so a close is told only to the shards that may hold its bindings.
    owners: Vec<u64>,
    /// Connections closed since the core last took them, with their `owners`.
    closed: Vec<(FlowId, u64)>,
    /// Connections paused by `--tcp-messages-per-s` until their second is over.
    throttled: Vec<u32>,
}

impl Tcp {
    /// Take over this core's listeners (TCP `--listen` order); `None` when it has none.
    /// `tls_listeners` (TLS `--listen` order) come with `tls`.
    pub(crate) fn new(
        core: usize,
        mut listeners: Vec<TcpListener>,
        tls_listeners: Vec<TcpListener>,
        tls: Option<TlsShared>,
        config: TcpConfig,
        now_ms: u64,
    ) -> std::io::Result<Option<Self>> {
        let tls_from = listeners.len();
        let tls = tls.filter(|_| !tls_listeners.is_empty());
        if tls.is_some() {
            listeners.extend(tls_listeners);
        }
        if listeners.is_empty() {
            return Ok(None);
        }
        let epoll = Epoll::new(READY_PER_TURN_MAX)?;
        for (i, listener) in listeners.iter().enumerate() {
            epoll.add(
                listener.as_raw_fd(),
                LISTENER_TOKEN + i as u64,
                Interest::READ,
            )?;
        }
        Ok(Some(Self {
            core: u16::try_from(core).unwrap_or(u16::MAX),
            listeners,
            table: Table::new(config.connections_max),
            epoll,
            config,
            ready: Vec::with_capacity(READY_PER_TURN_MAX),
            dirty: Vec::new(),
            backlog: Vec::new(),
            spare_backlog: Vec::new(),
            next_sweep_ms: now_ms,
            listeners_paused: false,
            tls_from,
            tls,
            handshakes: Rc::new(Cell::new(0)),
            handshake_ready: Vec::new(),
            owners: Vec::new(),
            closed: Vec::new(),
            throttled: Vec::new(),
        }))
    }

    /// The fd the core sleeps on: readable when a listener or connection is ready.
    pub(crate) fn fd(&self) -> RawFd {
        self.epoll.raw()
    }

    /// Accept, read and frame what is ready; the messages and refusals go to `out`.
    /// Returns how many fds were ready (the loop's measure of work).
    pub(crate) fn receive<'a>(
        &mut self,
        now_ms: u64,
        arena: &'a Bump,
        out: &mut BumpVec<'a, Received<'a>>,
        counters: &mut Counters,
    ) -> usize {
        // Messages framed this turn, at most: what stays in a buffer past it is framed
        // next turn, first (the backlog), without waiting for more bytes.
        let mut budget = MESSAGES_PER_TURN_MAX;
        self.release_throttled(now_ms, counters);
        let spare = std::mem::take(&mut self.spare_backlog);
        let backlog = std::mem::replace(&mut self.backlog, spare);
        let backlogged = backlog.len();
        for &slot in &backlog {
            if let Some((conn, _)) = self.table.get_slot_mut(slot) {
                conn.backlogged = false;
                conn.pull_plaintext();
                self.frame(slot, now_ms, &mut budget, arena, out, counters);
            }
        }
        self.spare_backlog = backlog;
        self.spare_backlog.clear();
        let mut ready = std::mem::take(&mut self.ready);
        if let Err(e) = self.epoll.ready(&mut ready) {
            tracing::debug!(core = self.core, "epoll_wait: {e}");
            counters.recv_errors += 1;
        }
        for r in &ready {
            if r.token >= LISTENER_TOKEN {
                let listen = usize::try_from(r.token - LISTENER_TOKEN).unwrap_or(usize::MAX);
                self.accept(listen, now_ms, counters);
                continue;
            }
            let Ok(slot) = u32::try_from(r.token) else {
                continue;
            };
            if r.writable {
                self.write_out(slot, now_ms, counters);
            }
            if r.readable {
                if self
                    .table
                    .get_slot_mut(slot)
                    .is_some_and(|(c, _)| c.handshaking())
                {
                    self.handshake_ready.push(slot);
                    continue;
                }
                self.read(slot, now_ms, &mut budget, arena, out, counters);
            }
        }
        // Handshakes last, and a bounded number: the others wait for the next turn.
        let mut handshakes = std::mem::take(&mut self.handshake_ready);
        for (i, &slot) in handshakes.iter().enumerate() {
            if i >= HANDSHAKE_READS_PER_TURN_MAX {
                counters.tls.deferred += (handshakes.len() - i) as u64;
                break;
            }
            self.read(slot, now_ms, &mut budget, arena, out, counters);
        }
        handshakes.clear();
        self.handshake_ready = handshakes;
        let taken = ready.len() + backlogged;
        self.ready = ready;
        counters.tcp_connections = self.table.len() as u64;
        counters.tls.handshaking = self.handshakes.get() as u64;
        taken
    }

    fn accept(&mut self, listen: usize, now_ms: u64, counters: &mut Counters) {
        let Some(listener) = self.listeners.get(listen) else {
            return;
        };
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            let (stream, remote) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // Reset by the peer before it was accepted: the next one.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // Out of fds or memory: the pending connection stays, so the
                    // listener stays readable and the loop would spin on it. Stop
                    // watching the listeners until the next sweep.
                    tracing::warn!(core = self.core, "accept: {e}; pausing accepts");
                    counters.recv_errors += 1;
                    self.pause_listeners();
                    return;
                }
            };
            if self.table.len() >= self.config.connections_max {
                // At the cap: closed at once (the peer sees its connection end).
                counters.tcp_refused += 1;
                continue;
            }
            let session = match (listen.checked_sub(self.tls_from), &self.tls) {
                (Some(_), Some(tls)) => {
                    if self.handshakes.get() >= tls.handshakes_max {
                        // As many handshakes as allowed are in progress: closed at once.
                        counters.tls.refused += 1;
                        continue;
                    }
                    match tls.server.config().map(rustls::ServerConnection::new) {
                        Some(Ok(session)) => Some(session),
                        _ => {
                            counters.recv_errors += 1;
                            continue;
                        }
                    }
                }
                _ => None,
            };
            if stream.set_nonblocking(true).is_err() {
                counters.recv_errors += 1;
                continue;
            }
            // Replies are whole messages written once per turn: no reason to delay them.
            let _ = stream.set_nodelay(true);
            // The index among the listeners of its own transport (`Source::listen`).
            let own_index = listen
                .checked_sub(self.tls_from)
                .filter(|_| session.is_some());
            let listen16 = u16::try_from(own_index.unwrap_or(listen)).unwrap_or(u16::MAX);
            let mut conn = Conn::new(
                stream,
                remote,
                listen16,
                self.config.read_buffer_bytes,
                now_ms,
            );
            if let Some(session) = session {
                conn = conn.with_tls(session, &self.handshakes);
                counters.tls.accepted += 1;
            }
            let fd = conn.fd();
            let Ok((slot, _)) = self.table.insert(conn) else {
                counters.tcp_refused += 1;
                continue;
            };
            if self.epoll.add(fd, u64::from(slot), Interest::READ).is_err() {
                if self.table.remove(slot).is_some() {
                    counters.tcp_closed += 1;
                }
                counters.recv_errors += 1;
                continue;
            }
            counters.tcp_accepted += 1;
        }
    }

    /// Stop watching the listeners (the next [`sweep`](Self::sweep) resumes them).
    fn pause_listeners(&mut self) {
        let off = Interest {
            read: false,
            write: false,
        };
        for (i, listener) in self.listeners.iter().enumerate() {
            let _ = self
                .epoll
                .modify(listener.as_raw_fd(), LISTENER_TOKEN + i as u64, off);
        }
        self.listeners_paused = true;
    }

    fn resume_listeners(&mut self) {
        for (i, listener) in self.listeners.iter().enumerate() {
            let token = LISTENER_TOKEN + i as u64;
            let _ = self
                .epoll
                .modify(listener.as_raw_fd(), token, Interest::READ);
        }
        self.listeners_paused = false;
    }

    /// Read what `slot` has, then [`frame`](Self::frame) it.
    fn read<'a>(
        &mut self,
        slot: u32,
        now_ms: u64,
        budget: &mut usize,
        arena: &'a Bump,
        out: &mut BumpVec<'a, Received<'a>>,
        counters: &mut Counters,
    ) {
        let Some((conn, _)) = self.table.get_slot_mut(slot) else {
            return;
        };
        let outcome = conn.read(now_ms);
        if let Some(resumed) = conn.take_established() {
            counters.tls.handshakes += 1;
            counters.tls.resumed += u64::from(resumed);
        }
        if conn.tls_wants_write() && !conn.dirty {
            // Handshake records to send: written at the flush.
            conn.dirty = true;
            self.dirty.push(slot);
        }
        match outcome {
            ReadOutcome::Nothing => return,
            ReadOutcome::Failed => return self.close(slot, counters),
            ReadOutcome::HandshakeFailed(why) => {
                if let Some(n) = counters.tls.failed.get_mut(why.index()) {
                    *n += 1;
                }
                return self.close(slot, counters);
            }
            ReadOutcome::Closed => {
                // The peer is done sending; what it sent is framed already. The
                // connection ends once what it asked is answered and written.
                if conn.shut {
                    return self.close(slot, counters);
                }
                conn.closing = true;
                conn.peer_closed = true;
                return self.settle(slot, counters);
            }
            ReadOutcome::Bytes(_) if conn.closing || conn.backlogged => return,
            ReadOutcome::Bytes(_) => {}
        }
        self.frame(slot, now_ms, budget, arena, out, counters);
    }

    /// Frame what `slot`'s buffer holds and hand on its messages, at most `budget`
    /// of them; past it the connection joins the backlog.
    fn frame<'a>(
        &mut self,
        slot: u32,
        now_ms: u64,
        budget: &mut usize,
        arena: &'a Bump,
        out: &mut BumpVec<'a, Received<'a>>,
        counters: &mut Counters,
    ) {
        let core = self.core;
        let limit = self.config.read_buffer_bytes;
        let per_s = self.config.messages_per_s;
        let Some((conn, generation)) = self.table.get_slot_mut(slot) else {
            return;
        };
        if conn.closing || conn.throttled {
            return;
        }
        if now_ms.saturating_sub(conn.rate_window_ms) >= RATE_WINDOW_MS {
            conn.rate_window_ms = now_ms;
            conn.rate_taken = 0;
        }
        let source = Source {
            transport: conn.transport(),
            remote: conn.remote,
            listen: conn.listen,
            conn: Some(ConnId {
                core,
                slot,
                generation,
            }),
        };
        let mut consumed = 0;
        let mut pong = false;
        let mut taken = conn.rate_taken;
        let mut throttled = false;
        loop {
            let rest = conn.unframed().get(consumed..).unwrap_or_default();
            if *budget == 0 {
                if !rest.is_empty() {
                    conn.backlogged = true;
                    self.backlog.push(slot);
                }
                break;
            }
            match framing::frame_within(rest, limit) {
                Ok(Framed::Partial) => break,
                Ok(Framed::Complete { .. }) if taken >= per_s => {
                    // --tcp-messages-per-s: the rest waits in the buffer, and the
                    // socket is not read, until this second is over.
                    throttled = true;
                    break;
                }
                Ok(Framed::Complete { len }) => {
                    *budget -= 1;
                    taken += 1;
                    let bytes = arena.alloc_slice_copy(rest.get(..len).unwrap_or_default());
                    out.push(Received::Message { bytes, source });
                    conn.awaiting = conn.awaiting.saturating_add(1);
                    counters.tcp_messages += 1;
                    consumed += len;
                }
                Ok(Framed::KeepAlive { len }) => {
                    pong |= len == framing::KEEPALIVE_PING.len();
                    counters.keep_alive += 1;
                    consumed += len;
                }
                Err(error) => {
                    let (status, reason) = refusal(error);
                    let head = arena.alloc_slice_copy(framing::head_for_answer(rest));
                    out.push(Received::Refused {
                        head,
                        source,
                        status,
                        reason,
                    });
                    conn.awaiting = conn.awaiting.saturating_add(1);
                    counters.tcp_framing_errors += 1;
                    conn.closing = true;
                    // Shut down at the flush, once the answer (if any) is written.
                    if !conn.dirty {
                        conn.dirty = true;
                        self.dirty.push(slot);
                    }
                    consumed = conn.unframed().len();
                    break;
                }
            }
        }
        conn.rate_taken = taken;
        if throttled {
            conn.throttled = true;
            self.throttled.push(slot);
            counters.tcp_throttled += 1;
        }
        conn.consume(consumed, now_ms);
        if !conn.backlogged && !conn.closing && !throttled && conn.has_plaintext() {
            // Decrypted bytes the buffer had no room for: the socket will not report
            // them again, so they are framed next turn like a backlog.
            conn.backlogged = true;
            self.backlog.push(slot);
        }
        if pong {
            self.queue_on(slot, KEEPALIVE_PONG, counters);
        }
        if throttled {
            // Stop watching it for reads (epoll would report it every turn).
            self.settle(slot, counters);
        }
    }

    /// Take back the connections paused by `--tcp-messages-per-s` whose second is
    /// over: watched again, and what their buffers hold framed this turn.
    fn release_throttled(&mut self, now_ms: u64, counters: &mut Counters) {
        let mut i = 0;
        while let Some(&slot) = self.throttled.get(i) {
            let Some((conn, _)) = self.table.get_slot_mut(slot) else {
                self.throttled.swap_remove(i);
                continue;
            };
            if now_ms.saturating_sub(conn.rate_window_ms) < RATE_WINDOW_MS {
                i += 1;
                continue;
            }
            conn.throttled = false;
            conn.rate_window_ms = now_ms;
            conn.rate_taken = 0;
            if !conn.backlogged {
                conn.backlogged = true;
                self.backlog.push(slot);
            }
            self.throttled.swap_remove(i);
            self.settle(slot, counters);
        }
    }

    /// Queue the answer `bytes` on the connection `to` names, if it is still there
    /// (its generation matches): written at the turn's [`flush`](Self::flush).
    pub(crate) fn send(&mut self, to: ConnId, bytes: &[u8], counters: &mut Counters) {
        let Some(conn) = self.table.get_mut(to.slot, to.generation) else {
            counters.tcp_conn_gone += 1;
            return;
        };
        if to.core != self.core {
            counters.tcp_conn_gone += 1;
            return;
        }
        conn.awaiting = conn.awaiting.saturating_sub(1);
        if self.queue_on(to.slot, bytes, counters) {
            counters.sent += 1;
        }
    }

    fn queue_on(&mut self, slot: u32, bytes: &[u8], counters: &mut Counters) -> bool {
        let Some((conn, _)) = self.table.get_slot_mut(slot) else {
            return false;
        };
        if !conn.queue(bytes) {
            // The peer does not read its answers: close rather than buffer more.
            counters.tcp_write_overflow += 1;
            self.close(slot, counters);
            return false;
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
        true
    }

    /// Write every connection that got bytes this turn (and close those that are
    /// done).
    pub(crate) fn flush(&mut self, now_ms: u64, counters: &mut Counters) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for slot in dirty.drain(..) {
            if let Some((conn, _)) = self.table.get_slot_mut(slot) {
                conn.dirty = false;
                self.write_out(slot, now_ms, counters);
            }
        }
        self.dirty = dirty;
        // A closing connection with nothing queued (e.g. its refusal was not
        // answerable) needs no flush to end.
        counters.tcp_connections = self.table.len() as u64;
    }

    /// Write what `slot` has queued (watching for writability while bytes wait), then
    /// [`settle`](Self::settle) it.
    fn write_out(&mut self, slot: u32, now_ms: u64, counters: &mut Counters) {
        let Some((conn, _)) = self.table.get_slot_mut(slot) else {
            return;
        };
        match conn.write_queued(now_ms) {
            WriteOutcome::Failed => {
                counters.send_errors += 1;
                return self.close(slot, counters);
            }
            WriteOutcome::Blocked => conn.watching_write = true,
            WriteOutcome::Done => conn.watching_write = false,
        }
        self.settle(slot, counters);
    }

    /// End a closing connection that is finished (our FIN, or the close when the
    /// peer's came first), and keep epoll's interest in step with the connection.
    fn settle(&mut self, slot: u32, counters: &mut Counters) {
        let Some((conn, _)) = self.table.get_slot_mut(slot) else {
            return;
        };
        if conn.finished() {
            if conn.peer_closed {
                return self.close(slot, counters);
            }
            if !conn.shut {
                conn.shut_down();
            }
        }
        let want = conn.interest();
        if conn.watched != want {
            conn.watched = want;
            let fd = conn.fd();
            if self.epoll.modify(fd, u64::from(slot), want).is_err() {
                self.close(slot, counters);
            }
        }
    }

    fn close(&mut self, slot: u32, counters: &mut Counters) {
        let generation = self.table.get_slot_mut(slot).map(|(_, g)| g);
        // Dropping the stream closes the fd, which leaves the epoll set.
        if self.table.remove(slot).is_some() {
            counters.tcp_closed += 1;
            let owners = self.owners.get_mut(slot as usize).map_or(0, std::mem::take);
            if let Some(generation) = generation {
                let flow = FlowId {
                    core: self.core,
                    slot,
                    generation,
                };
                self.closed.push((flow, owners));
            }
        }
    }

    /// A request from connection `slot` went to core `owner` (its AOR's shard).
    pub(crate) fn note_owner(&mut self, slot: u32, owner: usize) {
        let i = slot as usize;
        if self.owners.len() <= i {
            self.owners.resize(i + 1, 0);
        }
        if let Some(bits) = self.owners.get_mut(i) {
            *bits |= 1u64
                .checked_shl(u32::try_from(owner).unwrap_or(u32::MAX))
                .unwrap_or(u64::MAX);
        }
    }

    /// Move the connections closed since the last call, each with the cores its
    /// requests went to, to `out`.
    pub(crate) fn take_closed(&mut self, out: &mut Vec<(FlowId, u64)>) {
        out.append(&mut self.closed);
    }

    /// Whether a connection closed since the last [`take_closed`](Self::take_closed).
    pub(crate) fn any_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// When [`sweep`](Self::sweep) is next due, in ms since the epoch; `None` with no
    /// connection and the listeners watched.
    pub(crate) fn sweep_due_ms(&self) -> Option<u64> {
        let sweep = (!self.table.is_empty() || self.listeners_paused).then_some(self.next_sweep_ms);
        // A paused connection is due back when its second is over.
        let release = self
            .throttled
            .iter()
            .filter_map(|&slot| self.table.get_slot(slot))
            .map(|c| c.rate_window_ms.saturating_add(RATE_WINDOW_MS))
            .min();
        match (sweep, release) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Close the connections past a timeout: idle past `--tcp-idle-timeout-s`, a
    /// message begun past `--tcp-header-timeout-ms` ago, or closing and not finished
    /// (answers, the peer's FIN) within the header timeout. Runs when due.
    pub(crate) fn sweep(&mut self, now_ms: u64, counters: &mut Counters) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        let header_ms = self.config.header_timeout_ms;
        let idle_ms = self.config.idle_timeout_ms;
        let handshake_ms = self
            .tls
            .as_ref()
            .map_or(u64::MAX, |t| t.handshake_timeout_ms);
        // Often enough that a timeout fires within half its length of its due time.
        self.next_sweep_ms =
            now_ms + (header_ms.min(handshake_ms) / 2).clamp(1, SWEEP_INTERVAL_MS_MAX);
        if self.listeners_paused {
            self.resume_listeners();
        }
        if self.table.is_empty() {
            return;
        }
        for slot in 0..self.table.slots() {
            let Some((conn, _)) = self.table.get_slot_mut(slot) else {
                continue;
            };
            let idle = now_ms.saturating_sub(conn.active_ms);
            let header_late = conn
                .partial_since_ms
                .is_some_and(|since| now_ms.saturating_sub(since) >= header_ms);
            let handshake_late =
                conn.handshaking() && now_ms.saturating_sub(conn.opened_ms) >= handshake_ms;
            if handshake_late {
                counters.tls.failed[HandshakeFailure::Timeout.index()] += 1;
            } else if header_late && !conn.closing {
                counters.tcp_header_timeouts += 1;
            } else if idle >= idle_ms {
                counters.tcp_idle_timeouts += 1;
            } else if !(conn.closing && idle >= header_ms) {
                // A closing connection lingers at most the header timeout for its
                // answers and the peer's FIN.
                continue;
            }
            self.close(slot, counters);
        }
        counters.tcp_connections = self.table.len() as u64;
        counters.tls.handshaking = self.handshakes.get() as u64;
    }
}
