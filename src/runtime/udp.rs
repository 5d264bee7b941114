//! One core's UDP I/O: its SO_REUSEPORT socket per listen address and a `sendmmsg`
//! batch per socket. (The `recvmmsg` batch is the loop's: requests borrow it while they
//! are answered. The core sleeps on these sockets' fds in `park`.)
//!
//! A reply leaves from the socket of the listen address its request reached (the same
//! address and port the client sent to, RFC 3261 §18.2.2), whichever core answers it:
//! every core has a socket on every listen address.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::Socket;

use super::mmsg::{RecvBatch, SendBatch};
use super::stats::Counters;

/// Smallest send batch, in datagrams: a turn's replies come from receive batches and
/// from the mesh inbox, so one turn's replies rarely need a mid-batch flush.
const SEND_BATCH_MIN: usize = 64;

pub(crate) struct Udp {
    sockets: Vec<Socket>,
    tx: Vec<SendBatch>,
}

impl Udp {
    /// Take over this core's sockets (one per listen address, in `--listen` order),
    /// with send batches sized for receive batches of `recv_batch`.
    pub(crate) fn new(sockets: Vec<Socket>, recv_batch: usize) -> Self {
        Self {
            tx: (0..sockets.len())
                .map(|_| SendBatch::new(recv_batch.max(SEND_BATCH_MIN)))
                .collect(),
            sockets,
        }
    }

    /// The sockets' fds, for the core to sleep on.
    pub(crate) fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.sockets.iter().map(AsRawFd::as_raw_fd)
    }

    /// Listen addresses (sockets) this core serves.
    pub(crate) fn listens(&self) -> usize {
        self.sockets.len()
    }

    /// Receive one batch from listen address `listen` into `rx` (never blocks): how
    /// many datagrams arrived.
    pub(crate) fn recv(&self, listen: usize, rx: &mut RecvBatch) -> io::Result<usize> {
        let Some(fd) = self.sockets.get(listen).map(AsRawFd::as_raw_fd) else {
            return Ok(0);
        };
        rx.recv(fd)
    }

    /// Queue `reply` for `to` on listen address `listen` (no copy: `reply` comes back
    /// holding an empty buffer); sends the socket's batch first when it is full.
    pub(crate) fn send(
        &mut self,
        listen: usize,
        reply: &mut Vec<u8>,
        to: SocketAddr,
        counters: &mut Counters,
    ) {
        let (Some(batch), Some(socket)) = (self.tx.get_mut(listen), self.sockets.get(listen))
        else {
            return;
        };
        if batch.is_full() {
            flush(batch, socket, counters);
        }
        batch.push(reply, to);
    }

    /// Send every queued reply.
    pub(crate) fn flush_all(&mut self, counters: &mut Counters) {
        for (batch, socket) in self.tx.iter_mut().zip(&self.sockets) {
            if !batch.is_empty() {
                flush(batch, socket, counters);
            }
        }
    }
}

/// Sends what `batch` holds on `socket` and counts it.
fn flush(batch: &mut SendBatch, socket: &Socket, counters: &mut Counters) {
    let flushed = batch.flush(socket.as_raw_fd());
    counters.sent += flushed.sent;
    counters.send_errors += flushed.failed;
}
