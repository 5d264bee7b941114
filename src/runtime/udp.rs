//! One core's UDP I/O: its SO_REUSEPORT socket per listen address, a `sendmmsg` batch
//! per socket, and the readiness futures the core parks on. (The `recvmmsg` batch is
//! the loop's: requests borrow it while they are answered.)
//!
//! A reply leaves from the socket of the listen address its request reached (the same
//! address and port the client sent to, RFC 3261 §18.2.2), whichever core answers it:
//! every core has a socket on every listen address.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::Socket;

use super::mmsg::{RecvBatch, SendBatch};
use super::socket::park_handle;
use super::stats::Counters;

/// Time given to glommio at exit to cancel in-flight receives, in ms.
const SOCKET_RELEASE_MS: u64 = 5;

/// Smallest send batch, in datagrams: a turn's replies come from receive batches and
/// from the mesh inbox, so one turn's replies rarely need a mid-batch flush.
const SEND_BATCH_MIN: usize = 64;

type Readable = Pin<Box<dyn Future<Output = io::Result<()>>>>;

pub(crate) struct Udp {
    sockets: Vec<Socket>,
    /// glommio handles on dups of `sockets`, used only to park.
    park_handles: Vec<Rc<glommio::net::UdpSocket>>,
    /// Pending readiness futures, one per socket; kept across parks and rebuilt only
    /// after they complete.
    readable: Vec<Option<Readable>>,
    tx: Vec<SendBatch>,
}

impl Udp {
    /// Take over this core's sockets (one per listen address, in `--listen` order),
    /// with send batches sized for receive batches of `recv_batch`. Must run on the
    /// core's executor thread (the park handles register with it).
    pub(crate) fn new(sockets: Vec<Socket>, recv_batch: usize) -> io::Result<Self> {
        let park_handles = sockets
            .iter()
            .map(|s| park_handle(s).map(Rc::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            readable: (0..sockets.len()).map(|_| None).collect(),
            tx: (0..sockets.len())
                .map(|_| SendBatch::new(recv_batch.max(SEND_BATCH_MIN)))
                .collect(),
            park_handles,
            sockets,
        })
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

    /// Start a readiness wait on every socket that has none pending (before parking).
    pub(crate) fn arm_readable(&mut self) {
        for (slot, handle) in self.readable.iter_mut().zip(&self.park_handles) {
            if slot.is_none() {
                *slot = Some(Box::pin(readable(Rc::clone(handle))));
            }
        }
    }

    /// Whether a socket became readable (its wait is then spent and re-armed on the
    /// next park).
    pub(crate) fn poll_readable(&mut self, cx: &mut Context<'_>, counters: &mut Counters) -> bool {
        let mut woken = false;
        for slot in &mut self.readable {
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
        woken
    }

    /// Cancel the pending readiness receives and let glommio's reactor reap them
    /// before the sockets close. A receive still in flight in io_uring holds a
    /// reference to the socket past process exit, and a restart on the same port
    /// would then fail with "address already in use".
    pub(crate) async fn release(&mut self) {
        self.readable.clear();
        glommio::timer::sleep(Duration::from_millis(SOCKET_RELEASE_MS)).await;
        self.park_handles.clear();
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

/// Sends what `batch` holds on `socket` and counts it.
fn flush(batch: &mut SendBatch, socket: &Socket, counters: &mut Counters) {
    let flushed = batch.flush(socket.as_raw_fd());
    counters.sent += flushed.sent;
    counters.send_errors += flushed.failed;
}
