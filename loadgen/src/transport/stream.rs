//! TCP and TLS channels: one non-blocking connection per channel in the worker's epoll,
//! a write queue per connection, and responses framed by Content-Length.
//!
//! Why this shape:
//! - **Write queue per connection.** A stream socket takes part of a write when its buffer
//!   fills; the rest waits in the queue and goes out on `EPOLLOUT`, so a slow server slows
//!   this connection only. The queue is bounded (`WRITE_QUEUE_BYTES_MAX`); a request that
//!   does not fit is counted and times out like a lost datagram.
//! - **Framing** (`frame`): several responses per read, and a response split across reads,
//!   are both normal on a stream. Framed messages are slices of the connection's read buffer,
//!   valid until the next `recv` (no copy).
//! - **Reconnect on demand.** A connection the server closed is reopened by the next request
//!   for it, at most once per `RECONNECT_INTERVAL_NS`, and counted; requests in flight on it
//!   time out (the server cannot answer them on another connection, RFC 3261 §18.2.2).
//! - **TLS** is a rustls `ClientConnection` between the socket and the same queue and
//!   buffer; handshakes and resumptions are counted when they complete.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

use rustls::ClientConnection;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::Received;
use super::frame::{self, Frame, FrameError};
use super::tls;
use crate::net::{self, Epoll};
use crate::stats::ConnStats;

/// Most bytes queued for one connection; beyond, requests are refused (and counted).
pub(crate) const WRITE_QUEUE_BYTES_MAX: usize = 1 << 20;
/// Bytes read from a socket (or out of a TLS session) per read call.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Least time between two connection attempts of one channel, so a refusing server is not
/// hammered with SYNs by every request of the window.
const RECONNECT_INTERVAL_NS: u64 = 100_000_000;
/// Most epoll events handled per wait.
const EVENTS_MAX: usize = 1024;

const IN: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Never opened, or closed; reopened by the next send.
    Down,
    /// `connect` in progress (waiting for `EPOLLOUT`).
    Connecting,
    /// TCP up (the TLS handshake may still run; writes queue behind it).
    Up,
}

struct Conn {
    socket: Option<Socket>,
    state: State,
    port: u16,
    tls: Option<ClientConnection>,
    /// TLS handshake not yet complete.
    handshaking: bool,
    /// Bytes to write are `wq[wq_off..]`.
    wq: Vec<u8>,
    wq_off: usize,
    /// Bytes read, not yet framed past `consumed`.
    rbuf: Vec<u8>,
    consumed: usize,
    /// EPOLLOUT is in the watched events.
    out_armed: bool,
    /// When the last connection attempt started (ns since the transport's base).
    attempted_ns: Option<u64>,
}

impl Conn {
    fn new() -> Self {
        Self {
            socket: None,
            state: State::Down,
            port: 0,
            tls: None,
            handshaking: false,
            wq: Vec::new(),
            wq_off: 0,
            rbuf: Vec::new(),
            consumed: 0,
            out_armed: false,
            attempted_ns: None,
        }
    }

    /// Up and, for TLS, past the handshake.
    fn established(&self) -> bool {
        self.state == State::Up && !self.handshaking
    }

    fn queued(&self) -> usize {
        self.wq.len() - self.wq_off
    }
}

/// A worker's stream connections.
pub(crate) struct Streams {
    conns: Vec<Conn>,
    epoll: Epoll,
    target: SocketAddr,
    /// Connection `ch` binds `sources[ch % len]` (port left to connect).
    sources: Vec<IpAddr>,
    tls: Option<tls::Client>,
    /// Messages of the last `recv`: (start, length) in `conns[current].rbuf`.
    inbox: Vec<(usize, usize)>,
    current: usize,
    chunk: Vec<u8>,
    events: Vec<(usize, u32)>,
    base: Instant,
    stats: ConnStats,
    /// Channels `[opened, len)` are not opened yet (`open_window`).
    opened: usize,
    /// Most connections connecting or handshaking at once while the first ones are opened.
    window: usize,
    /// Connections connecting or handshaking now.
    opening: usize,
}

impl Streams {
    /// `channels` connections to `target`, spread over the `sources` addresses, all started
    /// now (non-blocking).
    pub(crate) fn open(
        sources: Vec<IpAddr>,
        target: SocketAddr,
        channels: usize,
        tls: Option<tls::Client>,
    ) -> io::Result<Self> {
        Self::open_window(sources, target, channels, tls, channels)
    }

    /// As `open`, with at most `window` connections connecting or handshaking at once: the
    /// rest are started by `wait` as earlier ones complete, so holding thousands of
    /// connections does not arrive at the server as one burst of SYNs and ClientHellos.
    pub(crate) fn open_window(
        sources: Vec<IpAddr>,
        target: SocketAddr,
        channels: usize,
        tls: Option<tls::Client>,
        window: usize,
    ) -> io::Result<Self> {
        let mut s = Self {
            conns: (0..channels).map(|_| Conn::new()).collect(),
            epoll: Epoll::new(channels.min(EVENTS_MAX))?,
            target,
            sources,
            tls,
            inbox: Vec::new(),
            current: 0,
            chunk: vec![0; READ_CHUNK_BYTES],
            events: Vec::with_capacity(EVENTS_MAX),
            base: Instant::now(),
            stats: ConnStats::default(),
            opened: 0,
            window: window.max(1),
            opening: 0,
        };
        s.open_more()?;
        Ok(s)
    }

    /// Starts unopened channels while the window has room.
    fn open_more(&mut self) -> io::Result<()> {
        while self.opened < self.conns.len() && self.opening < self.window {
            let ch = self.opened;
            self.opened += 1;
            self.connect(ch)?;
        }
        Ok(())
    }

    /// Connecting, or up with the TLS handshake still running.
    fn is_opening(c: &Conn) -> bool {
        c.state == State::Connecting || (c.state == State::Up && c.handshaking)
    }

    /// `ch` just left the opening state (established, failed or closed).
    fn opened_one(&mut self) {
        self.opening = self.opening.saturating_sub(1);
    }

    pub(crate) fn channels(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn port(&self, ch: usize) -> u16 {
        self.conns[ch].port
    }

    /// Connections up (and past the TLS handshake).
    pub(crate) fn established(&self) -> usize {
        self.conns.iter().filter(|c| c.established()).count()
    }

    pub(crate) fn stats(&self) -> ConnStats {
        ConnStats {
            up_at_end: self.established() as u64,
            ..self.stats
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Starts a connection on `ch`. Errors are the local ones that make the run pointless
    /// (no descriptors, no epoll); a refused or failed connect is counted, not returned.
    fn connect(&mut self, ch: usize) -> io::Result<()> {
        let now = self.now_ns();
        let c = &mut self.conns[ch];
        c.attempted_ns = Some(now);
        c.rbuf.clear();
        c.consumed = 0;
        c.wq.clear();
        c.wq_off = 0;
        let socket = Socket::new(
            Domain::for_address(self.target),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        let source = self.sources.get(ch % self.sources.len().max(1)).copied();
        if let Some(source) = source.filter(|s| !s.is_unspecified()) {
            net::bind_address_no_port(socket.as_raw_fd());
            socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
        }
        match socket.connect(&SockAddr::from(self.target)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => {
                self.stats.connect_failures += 1;
                return Ok(());
            }
        }
        c.port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(0, |a| a.port());
        // Writable = connected (or failed: SO_ERROR tells).
        self.epoll
            .add_events(socket.as_raw_fd(), ch as u64, IN | OUT)?;
        c.out_armed = true;
        c.tls = match &self.tls {
            Some(t) => match ClientConnection::new(t.config.clone(), t.server_name.clone()) {
                Ok(conn) => Some(conn),
                Err(_) => {
                    self.stats.tls_errors += 1;
                    return Ok(());
                }
            },
            None => None,
        };
        c.handshaking = c.tls.is_some();
        c.socket = Some(socket);
        c.state = State::Connecting;
        self.opening += 1;
        Ok(())
    }

    /// Closes `ch` (the descriptor leaves the epoll set as it closes). The read buffer is
    /// kept until the next `recv`, so messages framed before the close can still be read.
    fn close(&mut self, ch: usize) {
        if Self::is_opening(&self.conns[ch]) {
            self.opened_one();
        }
        let c = &mut self.conns[ch];
        c.socket = None;
        c.tls = None;
        c.state = State::Down;
        c.handshaking = false;
        c.out_armed = false;
        c.wq.clear();
        c.wq_off = 0;
    }

    /// Queues `msgs` on `ch` and writes what the socket takes; returns how many were queued.
    pub(crate) fn send<'m>(&mut self, ch: usize, msgs: impl Iterator<Item = &'m [u8]>) -> usize {
        if self.conns[ch].state == State::Down {
            let now = self.now_ns();
            let due = self.conns[ch]
                .attempted_ns
                .is_none_or(|t| now.saturating_sub(t) >= RECONNECT_INTERVAL_NS);
            if due {
                self.stats.reconnects += 1;
                if self.connect(ch).is_err() {
                    self.stats.connect_failures += 1;
                }
            }
        }
        let mut queued = 0;
        let mut refused = 0;
        for m in msgs {
            let c = &mut self.conns[ch];
            if c.state == State::Down || c.queued() + m.len() > WRITE_QUEUE_BYTES_MAX {
                refused += 1;
                continue;
            }
            if c.wq_off > 0 && c.wq_off * 2 >= c.wq.len() {
                c.wq.drain(..c.wq_off);
                c.wq_off = 0;
            }
            c.wq.extend_from_slice(m);
            queued += 1;
        }
        self.stats.not_queued += refused;
        if self.conns[ch].state == State::Up {
            self.flush(ch);
        }
        queued
    }

    /// Writes queued bytes (through TLS when on) until done or the socket is full; arms or
    /// disarms EPOLLOUT to match. Closes the connection on a write error.
    fn flush(&mut self, ch: usize) {
        let c = &mut self.conns[ch];
        let Some(socket) = c.socket.as_ref() else {
            return;
        };
        let mut blocked = false;
        let mut failed = false;
        match c.tls.as_mut() {
            None => {
                while c.wq_off < c.wq.len() {
                    match (&*socket).write(&c.wq[c.wq_off..]) {
                        Ok(0) => {
                            failed = true;
                            break;
                        }
                        Ok(n) => c.wq_off += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
            }
            Some(tls) => loop {
                // Plaintext into the session (it buffers during the handshake, up to its
                // limit), records out to the socket.
                let mut progressed = false;
                if c.wq_off < c.wq.len() {
                    match tls.writer().write(&c.wq[c.wq_off..]) {
                        Ok(n) if n > 0 => {
                            c.wq_off += n;
                            progressed = true;
                        }
                        _ => {}
                    }
                }
                while tls.wants_write() {
                    match tls.write_tls(&mut &*socket) {
                        Ok(_) => progressed = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                if blocked || failed || !progressed || c.wq_off == c.wq.len() {
                    break;
                }
            },
        }
        if failed {
            self.stats.closed_by_peer += 1;
            self.close(ch);
            return;
        }
        if c.wq_off == c.wq.len() {
            c.wq.clear();
            c.wq_off = 0;
        }
        let want_out = blocked;
        if want_out != c.out_armed {
            let events = if want_out { IN | OUT } else { IN };
            if self
                .epoll
                .modify(socket.as_raw_fd(), ch as u64, events)
                .is_ok()
            {
                c.out_armed = want_out;
            }
        }
    }

    /// Waits up to `timeout_ns`; opens what the window allows, completes connects, flushes
    /// writable connections, and lists the connections with input (or a hang-up) in
    /// `ready`.
    pub(crate) fn wait(&mut self, timeout_ns: u64, ready: &mut Vec<usize>) -> io::Result<()> {
        self.open_more()?;
        ready.clear();
        self.events.clear();
        self.events.extend(self.epoll.wait_events(timeout_ns)?);
        for k in 0..self.events.len() {
            let (ch, ev) = self.events[k];
            let Some(c) = self.conns.get_mut(ch) else {
                continue;
            };
            let hangup = ev & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            if c.state == State::Connecting {
                if ev & OUT == 0 && !hangup {
                    continue;
                }
                let ok = c
                    .socket
                    .as_ref()
                    .is_some_and(|s| matches!(s.take_error(), Ok(None)));
                if !ok {
                    self.stats.connect_failures += 1;
                    self.close(ch);
                    continue;
                }
                c.state = State::Up;
                if !c.handshaking {
                    self.opened_one();
                }
                self.stats.connects += 1;
                self.flush(ch);
                if self.conns[ch].state == State::Up && ev & IN != 0 {
                    ready.push(ch);
                }
                continue;
            }
            if c.state != State::Up {
                continue;
            }
            if ev & OUT != 0 {
                self.flush(ch);
            }
            if ev & IN != 0 || hangup {
                ready.push(ch);
            }
        }
        Ok(())
    }

    /// Reads one chunk from `ch` and frames what it can.
    pub(crate) fn recv(&mut self, ch: usize) -> Received {
        self.inbox.clear();
        self.current = ch;
        let c = &mut self.conns[ch];
        if c.state != State::Up {
            c.rbuf.clear();
            c.consumed = 0;
            return Received {
                messages: 0,
                drained: true,
            };
        }
        if c.consumed > 0 {
            c.rbuf.drain(..c.consumed);
            c.consumed = 0;
        }
        let (eof, drained, tls_failed) = self.read_chunk(ch);
        let c = &mut self.conns[ch];
        let mut pos = 0;
        let mut bad = None;
        loop {
            match frame::next(&c.rbuf[pos..]) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive(n)) => {
                    pos += n;
                    self.stats.keepalives += 1;
                }
                Ok(Frame::Message(n)) => {
                    self.inbox.push((pos, n));
                    pos += n;
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        c.consumed = pos;
        match bad {
            Some(FrameError::MissingContentLength) => self.stats.missing_content_length += 1,
            Some(FrameError::BadContentLength | FrameError::Oversize) => self.stats.bad_frames += 1,
            None => {}
        }
        if tls_failed {
            self.stats.tls_errors += 1;
        } else if eof {
            self.stats.closed_by_peer += 1;
        }
        if bad.is_some() || eof || tls_failed {
            self.close(ch);
        } else if self.conns[ch].tls.is_some() {
            // Handshake messages, or queued requests the handshake held back.
            self.flush(ch);
        }
        Received {
            messages: self.inbox.len(),
            drained: drained || eof || tls_failed || bad.is_some(),
        }
    }

    /// One read into `conns[ch].rbuf`: (end of stream, nothing more queued, TLS failed).
    fn read_chunk(&mut self, ch: usize) -> (bool, bool, bool) {
        let c = &mut self.conns[ch];
        let Some(socket) = c.socket.as_ref() else {
            return (true, true, false);
        };
        let Some(tls) = c.tls.as_mut() else {
            return match (&*socket).read(&mut self.chunk) {
                Ok(0) => (true, true, false),
                Ok(n) => {
                    c.rbuf.extend_from_slice(&self.chunk[..n]);
                    (false, n < self.chunk.len(), false)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, true, false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => (false, false, false),
                Err(_) => (true, true, false),
            };
        };
        let (eof, drained) = match tls.read_tls(&mut &*socket) {
            Ok(0) => (true, true),
            Ok(_) => (false, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (false, false),
            Err(_) => (true, true),
        };
        if let Err(e) = tls.process_new_packets() {
            warn_tls_once(&e);
            // Send the alert rustls queued, best effort.
            let _ = tls.write_tls(&mut &*socket);
            return (false, true, true);
        }
        if c.handshaking && !tls.is_handshaking() {
            c.handshaking = false;
            self.stats.tls_handshakes += 1;
            self.opening = self.opening.saturating_sub(1);
            if tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                self.stats.tls_resumed += 1;
            }
        }
        let mut closed = false;
        loop {
            match tls.reader().read(&mut self.chunk) {
                Ok(0) => {
                    // close_notify.
                    closed = true;
                    break;
                }
                Ok(n) => c.rbuf.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            if c.rbuf.len() > frame::MESSAGE_BYTES_MAX + READ_CHUNK_BYTES {
                break;
            }
        }
        (eof || closed, drained, false)
    }

    pub(crate) fn message(&self, i: usize) -> &[u8] {
        let (start, len) = self.inbox[i];
        &self.conns[self.current].rbuf[start..start + len]
    }
}

/// Prints the first TLS error of the process (they are counted; one line says why).
fn warn_tls_once(e: &rustls::Error) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("warning: tls: {e} (further TLS errors are only counted)");
    }
}
