//! The shard mesh: how a request that landed on the wrong core reaches its owner, and
//! how a reply owed to a connection another core holds reaches that core.
//!
//! The kernel spreads datagrams over the SO_REUSEPORT sockets by 4-tuple, not by AOR,
//! so most requests land on a core that does not own their AOR (with N cores,
//! (N-1)/N of them). Such a datagram crosses exactly once, over the owner's bounded
//! inbox, and the owner answers from its own socket on the same address and port.
//!
//! - **Bounded, never blocking.** Each owner has one crossbeam inbox of
//!   [`MESH_CHANNEL_DEPTH`] datagrams shared by all senders. A full inbox means the
//!   owner is overloaded: the sender drops the datagram and counts it (UDP clients
//!   retransmit, and Timer E/F keep trying), and never waits.
//! - **Pooled buffers.** A forwarded datagram is copied into a `Vec<u8>` from the
//!   sender's pool; the owner hands the `Vec` back over the sender's return channel
//!   once answered. After warm-up no forward allocates, and nothing is freed on a
//!   thread other than the one that allocated it. (A `Box<[u8]>` per forward would
//!   cost a malloc and a cross-thread free per request, which is exactly the
//!   steady-state allocation the house rules forbid.) The pool is capped at
//!   [`FORWARD_BUFFERS_PER_CORE_MAX`]; an exhausted pool drops and counts like a
//!   full inbox.
//! - **Doorbells.** A parked owner sleeps in `ppoll` on its sockets and its doorbell's
//!   eventfd (`park`). The sender rings the owner's [`Doorbell`] once per batch, and
//!   the doorbell writes the eventfd only if the owner said it is parked: a busy owner
//!   costs the sender one atomic load, no syscall.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::thread::Thread;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::park::EventFd;
use crate::location::FlowId;
use crate::registrar::{Destination, Source};

/// Datagrams waiting in one owner's inbox, from all senders together. At 1 µs per
/// request this is ~4 ms of work: deep enough to absorb a burst, shallow enough that
/// a stuck owner sheds load quickly instead of answering after clients retransmit.
pub const MESH_CHANNEL_DEPTH: usize = 4096;

/// Forward buffers one core may have in flight (in other cores' inboxes or being
/// answered). Each keeps the capacity of the largest datagram it carried, so the
/// worst case is this many times `DATAGRAM_BYTES_MAX`; typical SIP is under 1.5 KiB.
pub const FORWARD_BUFFERS_PER_CORE_MAX: usize = 8192;

/// Initial capacity of a forward buffer, in bytes (a typical REGISTER fits).
const FORWARD_BYTES_INITIAL: usize = 1536;

const _: () = assert!(FORWARD_BUFFERS_PER_CORE_MAX >= MESH_CHANNEL_DEPTH);

pub use crate::placement::shard_for;

/// A buffer lent from one core's pool: given back to that core once used.
#[derive(Debug)]
pub(crate) struct Lent {
    /// The bytes (a pooled buffer of the sending core).
    pub(crate) bytes: Vec<u8>,
    /// The core whose pool `bytes` belongs to.
    pub(crate) from: usize,
}

/// What crosses the mesh.
#[derive(Debug)]
pub(crate) enum MeshMsg {
    /// A request for the core that owns it (its AOR's shard).
    Request {
        /// The request as received.
        data: Lent,
        /// Where it came from and how it arrived.
        source: Source,
        /// The routing hash, so the owner can check the request is its own.
        hash: u64,
    },
    /// A reply for the core that holds the connection it goes out on.
    Reply {
        /// The response.
        data: Lent,
        /// Where it goes (`to.conn` names the connection).
        to: Destination,
    },
    /// A connection closed on the sending core: every shard drops or marks the
    /// bindings reachable only through it (RFC 5626 §6, `Registrar::flow_closed`).
    FlowClosed(FlowId),
}

impl MeshMsg {
    /// The buffer, to give back once the message is used (none for a closed flow).
    pub(crate) fn into_lent(self) -> Option<Lent> {
        match self {
            Self::Request { data, .. } | Self::Reply { data, .. } => Some(data),
            Self::FlowClosed(_) => None,
        }
    }
}

/// Wakes a parked core from any thread, and only when it is parked.
#[derive(Debug)]
pub(crate) struct Doorbell {
    parked: AtomicBool,
    /// What the parked core sleeps on (with its sockets): see `park`.
    event: EventFd,
}

impl Doorbell {
    fn new() -> io::Result<Self> {
        Ok(Self {
            parked: AtomicBool::new(false),
            event: EventFd::new()?,
        })
    }

    /// Owner side: about to park. The caller must re-check its inbox after this (the
    /// SeqCst fence pairs with the one in `ring`: either the owner sees the message, or
    /// the sender sees `parked`).
    pub(crate) fn arm(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Owner side: running again; senders need not wake it.
    pub(crate) fn disarm(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Owner side, after a park: forget a ring (one syscall, so only after parking; a
    /// running owner is never rung).
    pub(crate) fn clear(&self) {
        self.event.drain();
    }

    /// The fd the owner sleeps on: readable once rung.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.event.raw()
    }

    /// Any thread: wake the owner if it is parked. Call after queueing work. A busy
    /// owner costs one atomic load, no syscall.
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            self.event.signal();
        }
    }
}

/// What all cores share: inbox and return senders, doorbells, and the stop state.
#[derive(Debug)]
pub(crate) struct MeshShared {
    inboxes: Vec<Sender<MeshMsg>>,
    returns: Vec<Sender<Vec<u8>>>,
    doorbells: Vec<Doorbell>,
    /// Set by the signal handler (or a failed start): stop receiving.
    stop: Arc<AtomicBool>,
    /// Cores that have stopped receiving; when it reaches the core count nothing new
    /// can enter an inbox and a drained core may exit.
    stopped_receiving: AtomicUsize,
    /// Which cores are counted in `stopped_receiving` (each exactly once).
    stopped: Vec<AtomicBool>,
    /// The thread to unpark when the run should end.
    main: Thread,
}

impl MeshShared {
    /// Stop every core: they finish what is in flight and exit.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ring_all();
        self.main.unpark();
    }

    /// Any thread: wake core `index` if it is parked (the store writer after a commit,
    /// the management API after queueing a command).
    pub(crate) fn ring(&self, index: usize) {
        if let Some(bell) = self.doorbells.get(index) {
            bell.ring();
        }
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Core `index` has stopped receiving (or never started, or died). Idempotent.
    pub(crate) fn core_stopped_receiving(&self, index: usize) {
        let Some(flag) = self.stopped.get(index) else {
            return;
        };
        if flag.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stopped_receiving.fetch_add(1, Ordering::SeqCst);
        self.ring_all();
        self.main.unpark();
    }

    pub(crate) fn all_stopped_receiving(&self) -> bool {
        self.stopped_receiving.load(Ordering::SeqCst) >= self.doorbells.len()
    }

    fn ring_all(&self) {
        for bell in &self.doorbells {
            bell.ring();
        }
    }
}

/// Build the mesh for `shards` cores: the shared part and one [`MeshEnd`] per core.
pub(crate) fn build(
    shards: usize,
    stop: Arc<AtomicBool>,
    main: Thread,
) -> io::Result<(Arc<MeshShared>, Vec<MeshEnd>)> {
    let (inbox_tx, inbox_rx): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| bounded(MESH_CHANNEL_DEPTH)).unzip();
    let (return_tx, return_rx): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| bounded(FORWARD_BUFFERS_PER_CORE_MAX))
        .unzip();
    let shared = Arc::new(MeshShared {
        inboxes: inbox_tx,
        returns: return_tx,
        doorbells: (0..shards)
            .map(|_| Doorbell::new())
            .collect::<io::Result<_>>()?,
        stop,
        stopped_receiving: AtomicUsize::new(0),
        stopped: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        main,
    });
    let ends = inbox_rx
        .into_iter()
        .zip(return_rx)
        .enumerate()
        .map(|(index, (inbox, returns))| MeshEnd {
            index,
            shared: Arc::clone(&shared),
            inbox,
            returns,
            pool: Vec::new(),
            allocated: 0,
            to_ring: vec![false; shards],
            any_to_ring: false,
        })
        .collect();
    Ok((shared, ends))
}

/// Why a forward did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ForwardError {
    /// The owner's inbox is full.
    InboxFull,
    /// This core has [`FORWARD_BUFFERS_PER_CORE_MAX`] buffers in flight.
    PoolExhausted,
}

/// One core's end of the mesh.
#[derive(Debug)]
pub(crate) struct MeshEnd {
    index: usize,
    shared: Arc<MeshShared>,
    inbox: Receiver<MeshMsg>,
    returns: Receiver<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    allocated: usize,
    to_ring: Vec<bool>,
    any_to_ring: bool,
}

impl MeshEnd {
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn shared(&self) -> &Arc<MeshShared> {
        &self.shared
    }

    pub(crate) fn doorbell(&self) -> &Doorbell {
        // index < shards by construction.
        &self.shared.doorbells[self.index]
    }

    /// Copy the request `bytes` into a pooled buffer and queue it for `owner`. The
    /// owner's doorbell is rung by `ring_pending`, once per batch.
    pub(crate) fn forward(
        &mut self,
        owner: usize,
        bytes: &[u8],
        source: Source,
        hash: u64,
    ) -> Result<(), ForwardError> {
        let data = self.lend(bytes)?;
        self.send(owner, MeshMsg::Request { data, source, hash })
    }

    /// Copy the reply `bytes` into a pooled buffer and queue it for `core`, which holds
    /// the connection `to.conn` names.
    pub(crate) fn send_reply(
        &mut self,
        core: usize,
        bytes: &[u8],
        to: Destination,
    ) -> Result<(), ForwardError> {
        let data = self.lend(bytes)?;
        self.send(core, MeshMsg::Reply { data, to })
    }

    /// Tell `core` that the connection `flow` (held here) has closed.
    pub(crate) fn flow_closed(&mut self, core: usize, flow: FlowId) -> Result<(), ForwardError> {
        self.send(core, MeshMsg::FlowClosed(flow))
    }

    fn lend(&mut self, bytes: &[u8]) -> Result<Lent, ForwardError> {
        let mut buf = self.take_buffer().ok_or(ForwardError::PoolExhausted)?;
        buf.clear();
        buf.extend_from_slice(bytes);
        Ok(Lent {
            bytes: buf,
            from: self.index,
        })
    }

    fn send(&mut self, core: usize, msg: MeshMsg) -> Result<(), ForwardError> {
        let Some(inbox) = self.shared.inboxes.get(core) else {
            self.pool.extend(msg.into_lent().map(|l| l.bytes));
            return Err(ForwardError::InboxFull);
        };
        match inbox.try_send(msg) {
            Ok(()) => {
                if let Some(flag) = self.to_ring.get_mut(core) {
                    *flag = true;
                    self.any_to_ring = true;
                }
                Ok(())
            }
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                self.pool.extend(m.into_lent().map(|l| l.bytes));
                Err(ForwardError::InboxFull)
            }
        }
    }

    fn take_buffer(&mut self) -> Option<Vec<u8>> {
        if let Some(buf) = self.pool.pop() {
            return Some(buf);
        }
        self.pool.extend(self.returns.try_iter());
        if let Some(buf) = self.pool.pop() {
            return Some(buf);
        }
        if self.allocated < FORWARD_BUFFERS_PER_CORE_MAX {
            self.allocated += 1;
            return Some(Vec::with_capacity(FORWARD_BYTES_INITIAL));
        }
        None
    }

    /// Ring the doorbell of every owner forwarded to since the last call.
    pub(crate) fn ring_pending(&mut self) {
        if !self.any_to_ring {
            return;
        }
        self.any_to_ring = false;
        for (owner, flag) in self.to_ring.iter_mut().enumerate() {
            if std::mem::take(flag) {
                if let Some(bell) = self.shared.doorbells.get(owner) {
                    bell.ring();
                }
            }
        }
    }

    /// The next message for this core, if any.
    pub(crate) fn try_recv(&self) -> Option<MeshMsg> {
        self.inbox.try_recv().ok()
    }

    pub(crate) fn inbox_is_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// Give a message's buffer back to the core that lent it.
    pub(crate) fn give_back(&mut self, lent: Lent) {
        if lent.from == self.index {
            self.pool.push(lent.bytes);
        } else if let Some(ret) = self.shared.returns.get(lent.from) {
            // Cannot be full: at most FORWARD_BUFFERS_PER_CORE_MAX buffers exist per core.
            let _ = ret.try_send(lent.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn source() -> Source {
        Source::udp(SocketAddr::from(([127, 0, 0, 1], 5060)), 0)
    }

    /// Whether `bell`'s fd is readable now (the owner would wake).
    fn rung(bell: &Doorbell) -> bool {
        let mut set = super::super::park::PollSet::default();
        set.wait(
            [bell.fd()],
            std::time::Duration::ZERO,
            std::time::Duration::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn doorbell_wakes_only_a_parked_owner() {
        let bell = Doorbell::new().unwrap();
        bell.ring();
        assert!(!rung(&bell), "not parked: no wake");
        bell.arm();
        bell.ring();
        bell.ring();
        assert!(rung(&bell), "parked: woken");
        bell.disarm();
        bell.clear();
        assert!(!rung(&bell), "clear forgets the wake");
        bell.arm();
        bell.disarm();
        bell.ring();
        assert!(!rung(&bell), "disarmed: no wake");
    }

    #[test]
    fn forward_delivers_recycles_and_bounds() {
        let stop = Arc::new(AtomicBool::new(false));
        let (_shared, mut ends) = build(2, stop, std::thread::current()).unwrap();
        let mut receiver = ends.pop().unwrap();
        let mut sender = ends.pop().unwrap();
        sender.forward(1, b"REGISTER", source(), 9).unwrap();
        sender.ring_pending();
        let Some(MeshMsg::Request {
            data,
            source: s,
            hash,
        }) = receiver.try_recv()
        else {
            panic!("no request crossed");
        };
        assert_eq!(
            (data.bytes.as_slice(), hash, data.from, s),
            (&b"REGISTER"[..], 9, 0, source())
        );
        receiver.give_back(data);
        // The buffer comes back to the sender's pool instead of a new allocation.
        sender.forward(1, b"x", source(), 1).unwrap();
        assert_eq!(sender.allocated, 1);
        // A full inbox drops and reports, and never blocks.
        let mut full = 0;
        for _ in 0..MESH_CHANNEL_DEPTH + 10 {
            if sender.forward(1, b"y", source(), 1) == Err(ForwardError::InboxFull) {
                full += 1;
            }
        }
        assert_eq!(full, 11);
        assert!(sender.allocated <= MESH_CHANNEL_DEPTH + 1);
    }

    #[test]
    fn a_batch_of_forwards_rings_a_parked_owner_once() {
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, mut ends) = build(2, stop, std::thread::current()).unwrap();
        let owner = ends.pop().unwrap();
        let mut sender = ends.pop().unwrap();
        owner.doorbell().arm();
        for i in 0..32 {
            sender.forward(1, b"REGISTER", source(), i).unwrap();
        }
        assert!(!rung(owner.doorbell()), "no wake per datagram");
        sender.ring_pending();
        assert!(rung(owner.doorbell()), "one wake per batch");
        // The ring disarmed the owner: a second ring_pending writes nothing more.
        assert!(!owner.doorbell().parked.load(Ordering::SeqCst));
        // Nothing queued for core 0: its bell stays silent.
        shared.doorbells[0].arm();
        sender.ring_pending();
        assert!(!rung(&shared.doorbells[0]));
    }

    #[test]
    fn a_reply_crosses_back_to_the_core_holding_its_connection() {
        use crate::location::Transport;
        use crate::registrar::ConnId;
        let stop = Arc::new(AtomicBool::new(false));
        let (_shared, mut ends) = build(2, stop, std::thread::current()).unwrap();
        let mut owner = ends.pop().unwrap();
        let mut holder = ends.pop().unwrap();
        let conn = ConnId {
            core: 0,
            slot: 4,
            generation: 2,
        };
        let to = Destination {
            transport: Transport::Tcp,
            addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            listen: 0,
            conn: Some(conn),
        };
        owner.send_reply(0, b"SIP/2.0 200 OK", to).unwrap();
        owner.ring_pending();
        let Some(MeshMsg::Reply { data, to: got }) = holder.try_recv() else {
            panic!("no reply crossed");
        };
        assert_eq!(
            (data.bytes.as_slice(), got, data.from),
            (&b"SIP/2.0 200 OK"[..], to, 1)
        );
        holder.give_back(data);
        assert!(holder.inbox_is_empty());
    }
}
