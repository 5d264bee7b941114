//! One TCP connection: its byte stream, a read buffer of `--tcp-read-buffer-bytes`
//! (the bytes received and not yet framed), a write queue (replies the kernel has not
//! taken yet), and the times the core's sweep judges it by.
//!
//! The stream is read and written here only: plain, or through a TLS session
//! (`tls`) that turns records into plaintext in the same read buffer and replies into
//! records, so nothing above this file sees the socket or a record.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use rustls::ServerConnection;

use super::tls::{self, HandshakeFailure, Handshaking, TlsRead};
use crate::location::Transport;

/// Bytes a connection may have queued for writing, at most: a peer that stops
/// reading while it keeps sending requests is closed past this (counted), instead of
/// growing the queue without bound. 64 replies of 4 KiB.
pub(super) const WRITE_QUEUE_BYTES_MAX: usize = 256 * 1024;

/// What a read brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadOutcome {
    /// This many bytes were added to the read buffer.
    Bytes(usize),
    /// Nothing to read now.
    Nothing,
    /// The peer closed its side (FIN).
    Closed,
    /// The connection failed (reset, …).
    Failed,
    /// A TLS handshake failed, for this reason.
    HandshakeFailed(HandshakeFailure),
}

/// What a write left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteOutcome {
    /// The queue is empty.
    Done,
    /// The kernel's buffer is full: bytes wait for the socket to be writable.
    Blocked,
    /// The connection failed.
    Failed,
}

#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    /// The TLS session over `stream`, on a TLS listener's connection.
    tls: Option<Box<ServerConnection>>,
    /// Held while the TLS handshake is in progress (the core's count of them).
    handshaking: Option<Handshaking>,
    /// When it was accepted, ms since the epoch (the handshake timeout).
    pub(super) opened_ms: u64,
    pub(super) remote: SocketAddr,
    /// The TCP listen index it was accepted on.
    pub(super) listen: u16,
    read: Box<[u8]>,
    filled: usize,
    write: Vec<u8>,
    written: usize,
    /// Last byte read or written, ms since the epoch (the idle timeout).
    pub(super) active_ms: u64,
    /// Since when the read buffer holds the start of a message that is not complete
    /// (the header timeout); `None` while it is empty.
    pub(super) partial_since_ms: Option<u64>,
    /// No more requests are taken: after a framing error or the peer's FIN. The
    /// connection ends once every request taken is answered and the answers written.
    pub(super) closing: bool,
    /// The peer closed its side (FIN read): nothing more to read.
    pub(super) peer_closed: bool,
    /// Our side is shut down (FIN sent); reads are drained until the peer's FIN.
    pub(super) shut: bool,
    /// Requests (and refusals) handed on and not answered yet: the connection waits
    /// for them before it ends (an answer may cross the mesh from another core). One
    /// answered with nothing (an ACK) keeps it waiting until the sweep's linger.
    pub(super) awaiting: u32,
    /// Bytes wait in the queue for the socket to be writable.
    pub(super) watching_write: bool,
    /// What epoll watches now.
    pub(super) watched: super::Interest,
    /// In the table's list of connections to write at the turn's flush.
    pub(super) dirty: bool,
    /// In the backlog: its buffer holds messages not framed yet (the turn's budget
    /// ran out); not read until they are.
    pub(super) backlogged: bool,
    /// The second `--tcp-messages-per-s` counts in (its start, ms since the epoch),
    /// and the messages taken in it.
    pub(super) rate_window_ms: u64,
    pub(super) rate_taken: u32,
    /// Paused until the second is over: not read, not framed.
    pub(super) throttled: bool,
}

impl Conn {
    pub(super) fn new(
        stream: TcpStream,
        remote: SocketAddr,
        listen: u16,
        read_buffer_bytes: usize,
        now_ms: u64,
    ) -> Self {
        Self {
            stream,
            tls: None,
            handshaking: None,
            opened_ms: now_ms,
            remote,
            listen,
            read: vec![0; read_buffer_bytes].into_boxed_slice(),
            filled: 0,
            write: Vec::new(),
            written: 0,
            active_ms: now_ms,
            partial_since_ms: None,
            closing: false,
            peer_closed: false,
            shut: false,
            awaiting: 0,
            watching_write: false,
            watched: super::Interest::READ,
            dirty: false,
            backlogged: false,
            rate_window_ms: now_ms,
            rate_taken: 0,
            throttled: false,
        }
    }

    /// Speak TLS on this connection: `session` is a fresh server session, `count`
    /// the core's handshakes in progress (this one counts until it is done).
    pub(super) fn with_tls(mut self, session: ServerConnection, count: &Rc<Cell<usize>>) -> Self {
        self.tls = Some(Box::new(session));
        self.handshaking = Some(Handshaking::new(count));
        self
    }

    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The transport its messages came over (`Source::transport`).
    pub(super) fn transport(&self) -> Transport {
        if self.tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        }
    }

    /// A TLS handshake is in progress.
    pub(super) fn handshaking(&self) -> bool {
        self.handshaking.is_some()
    }

    /// `Some(resumed)` once, when the TLS handshake has just finished (the connection
    /// then stops counting among the handshakes in progress).
    pub(super) fn take_established(&mut self) -> Option<bool> {
        let tls = self.tls.as_ref()?;
        if self.handshaking.is_none() || tls.is_handshaking() {
            return None;
        }
        self.handshaking = None;
        Some(tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// The TLS session has records to send (handshake messages, an alert).
    pub(super) fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Move plaintext the TLS session holds already into the read buffer, without
    /// reading the socket (what a full buffer left there); true if any moved.
    pub(super) fn pull_plaintext(&mut self) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return false;
        };
        let Some(free) = self.read.get_mut(self.filled..) else {
            return false;
        };
        match tls.reader().read(free) {
            Ok(n) if n > 0 => {
                self.filled += n;
                true
            }
            _ => false,
        }
    }

    /// Plaintext waits in the TLS session (the socket will not say so again).
    pub(super) fn has_plaintext(&mut self) -> bool {
        self.tls.as_mut().is_some_and(|t| tls::has_plaintext(t))
    }

    /// One read into the free end of the read buffer (never blocks). A closing
    /// connection's bytes are read and thrown away (the stream is no longer framed).
    pub(super) fn read(&mut self, now_ms: u64) -> ReadOutcome {
        if self.closing {
            self.filled = 0;
        }
        let Some(free) = self.read.get_mut(self.filled..) else {
            return ReadOutcome::Failed;
        };
        if free.is_empty() {
            // The framing bound equals the buffer: a full buffer was refused already.
            return ReadOutcome::Nothing;
        }
        if let Some(session) = self.tls.as_mut() {
            return match tls::read(session, &mut self.stream, free) {
                TlsRead::Bytes(n) => {
                    self.filled += n;
                    self.active_ms = now_ms;
                    ReadOutcome::Bytes(n)
                }
                TlsRead::Nothing => ReadOutcome::Nothing,
                TlsRead::Closed => ReadOutcome::Closed,
                TlsRead::Failed(Some(why)) => ReadOutcome::HandshakeFailed(why),
                TlsRead::Failed(None) => ReadOutcome::Failed,
            };
        }
        match self.stream.read(free) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => {
                self.filled += n;
                self.active_ms = now_ms;
                ReadOutcome::Bytes(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Nothing,
            Err(_) => ReadOutcome::Failed,
        }
    }

    /// The bytes received and not yet consumed.
    pub(super) fn unframed(&self) -> &[u8] {
        self.read.get(..self.filled).unwrap_or_default()
    }

    /// Drop the first `n` unframed bytes (the messages taken), keeping the rest at
    /// the start of the buffer; note when what is left started (`now_ms`).
    pub(super) fn consume(&mut self, n: usize, now_ms: u64) {
        let n = n.min(self.filled);
        self.read.copy_within(n..self.filled, 0);
        self.filled -= n;
        self.partial_since_ms = match (self.filled, n) {
            (0, _) => None,
            // What is left began in the read that completed the message before it.
            (_, 1..) => Some(now_ms),
            (_, 0) => self.partial_since_ms.or(Some(now_ms)),
        };
    }

    /// Bytes queued and not yet written (a TLS record waiting counts as one).
    pub(super) fn queued(&self) -> usize {
        self.write.len() - self.written + usize::from(self.tls_wants_write())
    }

    /// Append `bytes` to the write queue; `false` (nothing queued) past
    /// [`WRITE_QUEUE_BYTES_MAX`].
    pub(super) fn queue(&mut self, bytes: &[u8]) -> bool {
        if self.queued() + bytes.len() > WRITE_QUEUE_BYTES_MAX {
            return false;
        }
        if self.written > 0 && self.written == self.write.len() {
            self.write.clear();
            self.written = 0;
        }
        self.write.extend_from_slice(bytes);
        true
    }

    /// Write as much of the queue as the kernel takes (never blocks).
    pub(super) fn write_queued(&mut self, now_ms: u64) -> WriteOutcome {
        if let Some(session) = self.tls.as_mut() {
            loop {
                let rest = self.write.get(self.written..).unwrap_or_default();
                match tls::write(session, &mut self.stream, rest) {
                    Err(_) => return WriteOutcome::Failed,
                    Ok((taken, blocked)) => {
                        self.written += taken;
                        if taken > 0 {
                            self.active_ms = now_ms;
                        }
                        if blocked {
                            return WriteOutcome::Blocked;
                        }
                        if taken == 0 && self.written < self.write.len() {
                            // The session takes no more (closed for writing).
                            return WriteOutcome::Failed;
                        }
                    }
                }
                if self.written >= self.write.len() {
                    break;
                }
            }
            self.write.clear();
            self.written = 0;
            return WriteOutcome::Done;
        }
        while self.written < self.write.len() {
            match self.stream.write(&self.write[self.written..]) {
                Ok(0) => return WriteOutcome::Failed,
                Ok(n) => {
                    self.written += n;
                    self.active_ms = now_ms;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return WriteOutcome::Failed,
            }
        }
        self.write.clear();
        self.written = 0;
        WriteOutcome::Done
    }

    /// Send our FIN (everything queued is written): the peer reads what we sent, then
    /// the end. Closing the socket with unread bytes in it would send a reset instead,
    /// which may destroy the answer before the peer reads it.
    /// What epoll should watch: reads until the peer's FIN, writes while bytes wait.
    pub(super) fn interest(&self) -> super::Interest {
        super::Interest {
            read: !self.peer_closed && !self.throttled,
            write: self.watching_write,
        }
    }

    /// Done once closing with every request answered and written (the caller then
    /// shuts down our side, or closes when the peer has closed too).
    pub(super) fn finished(&self) -> bool {
        self.closing && self.awaiting == 0 && self.queued() == 0
    }

    pub(super) fn shut_down(&mut self) {
        if let Some(session) = self.tls.as_mut() {
            // close_notify first (RFC 8446 §6.1), best effort: the FIN follows it.
            session.send_close_notify();
            let _ = tls::write(session, &mut self.stream, &[]);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        self.shut = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connection whose peer (returned) never reads unless told.
    fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, remote) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        (Conn::new(stream, remote, 0, 1024, 0), peer)
    }

    #[test]
    fn a_peer_that_does_not_read_blocks_writes_and_the_queue_stays_bounded() {
        let (mut conn, mut peer) = pair();
        let reply = vec![b'x'; 4096];
        // Fill the kernel's buffers until a write is partial, then the queue.
        let mut blocked = false;
        for _ in 0..100_000 {
            assert!(conn.queue(&reply));
            if conn.write_queued(1) == WriteOutcome::Blocked {
                blocked = true;
                break;
            }
        }
        assert!(blocked, "the kernel's buffers are finite");
        let mut queued = 0;
        while conn.queue(&reply) {
            queued += 1;
            assert!(queued <= WRITE_QUEUE_BYTES_MAX / reply.len());
        }
        assert!(conn.queued() <= WRITE_QUEUE_BYTES_MAX);
        assert!(conn.queued() + reply.len() > WRITE_QUEUE_BYTES_MAX);
        // The peer reads everything: the queue drains in order, nothing lost.
        let total = conn.queued();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut n = 0usize;
            let mut buf = vec![0u8; 65536];
            while let Ok(k) = peer.read(&mut buf) {
                if k == 0 {
                    break;
                }
                assert!(buf[..k].iter().all(|&b| b == b'x'));
                n += k;
            }
            n
        });
        while conn.write_queued(2) == WriteOutcome::Blocked {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(conn.queued(), 0);
        assert_eq!(conn.active_ms, 2);
        conn.shut_down();
        let read = reader.join().unwrap();
        assert!(read >= total, "{read} of at least {total}");
    }

    #[test]
    fn consume_keeps_the_rest_and_dates_a_partial_message() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"abcdef").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while conn.unframed().len() < 6 && std::time::Instant::now() < deadline {
            let _ = conn.read(10);
        }
        assert_eq!(conn.unframed(), b"abcdef");
        conn.consume(0, 10);
        assert_eq!(conn.partial_since_ms, Some(10), "a partial message began");
        conn.consume(0, 20);
        assert_eq!(conn.partial_since_ms, Some(10), "still the same one");
        conn.consume(4, 30);
        assert_eq!(conn.unframed(), b"ef");
        assert_eq!(
            conn.partial_since_ms,
            Some(30),
            "the rest began with this read"
        );
        conn.consume(2, 40);
        assert_eq!(conn.partial_since_ms, None);
    }
}
