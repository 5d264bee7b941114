//! The shard side of the management API (issue 7): commands from the admin thread
//! reach the core that owns the AOR over a bounded channel per core, and the core
//! answers them between two batches of SIP work.
//!
//! Why this shape: the location table of a shard is owned by one core and touched by
//! no other thread, so the SIP path never takes a lock. The admin thread therefore
//! never reads a table; it sends a [`Command`] to the owner (`shard_for(aor_hash)`),
//! rings the owner's mesh doorbell (a parked core wakes at once, a busy one pays one
//! atomic load), and waits on a one-shot reply channel with a timeout. A core takes at
//! most [`COMMANDS_PER_TURN`] commands per loop turn and a flush walks at most
//! [`FLUSH_SLOTS_PER_TURN`] table slots per turn, so management never stalls SIP for long.
//! A full channel is refused at once (the API answers 503), never waited on.
//!
//! What a core answers is data, copied out of its table ([`AorCopy`]) or its counters
//! ([`CoreStats`]); how the API shows it (text, JSON, metric names) is in `admin`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::mesh::{MeshShared, shard_for};
use super::stats::Counters;
use crate::location::{AorRef, BindingRef, Transport};
use crate::registrar::{Registrar, Stats, aor_hash};

/// Commands waiting for one core, at most; more are refused (HTTP 503).
pub(crate) const CONTROL_CHANNEL_DEPTH: usize = 64;

/// Commands one core answers per loop turn, at most.
pub(crate) const COMMANDS_PER_TURN: usize = 4;

/// Table slots a flush walks per loop turn on one core, at most (it removes the AORs
/// whose first binding is among them).
pub(crate) const FLUSH_SLOTS_PER_TURN: usize = 4096;

/// AORs in one dump page, at most (larger `limit`s are capped to this).
pub(crate) const DUMP_PAGE_AORS_MAX: usize = 1000;

/// Table slots one dump call visits at most (a page may come back short, with a
/// cursor, when the table has long runs of free slots).
pub(crate) const DUMP_SLOTS_PER_CALL_MAX: usize = 16_384;

/// A management command for one shard.
#[derive(Debug)]
pub(crate) enum Command {
    /// The bindings of one AOR key.
    Show { aor_key: Vec<u8> },
    /// Up to `limit` AORs whose first binding is at table slot `position` or later.
    Dump { position: usize, limit: usize },
    /// Add or refresh a binding.
    Add {
        aor_key: Vec<u8>,
        contact: Vec<u8>,
        expires_s: u32,
        q: Option<u16>,
    },
    /// Remove all bindings of an AOR, or those of one contact.
    Remove {
        aor_key: Vec<u8>,
        contact: Option<Vec<u8>>,
    },
    /// Remove every binding of the shard (in steps of [`FLUSH_SLOTS_PER_TURN`]).
    Flush,
    /// The shard's counters.
    Stats,
}

/// One binding, copied out of the table on the owning core (no other thread may read
/// the table). Bytes stay bytes: how the API shows them is `admin`'s business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BindingCopy {
    pub(crate) contact: Vec<u8>,
    /// Seconds left at the time of the copy.
    pub(crate) expires_s: u32,
    /// q in thousandths, when the Contact had one.
    pub(crate) q: Option<u16>,
    pub(crate) call_id: Vec<u8>,
    pub(crate) cseq: u32,
    pub(crate) source: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) socket: u16,
    pub(crate) user_agent: Vec<u8>,
    pub(crate) path: Vec<u8>,
    pub(crate) instance: Option<Vec<u8>>,
    pub(crate) reg_id: Option<u32>,
    /// When it was first registered, ms since the Unix epoch.
    pub(crate) registered_ms: u64,
    /// The connection it is reachable through, when registered directly over one.
    pub(crate) flow: Option<crate::location::FlowId>,
    /// The node holding that connection (`--node-id`; shared location only).
    pub(crate) flow_node: Option<String>,
    /// Its connection has closed; it stays until it expires.
    pub(crate) flow_down: bool,
    /// Registered with Outbound processing (RFC 5626).
    pub(crate) outbound: bool,
}

/// One AOR key and its live bindings, copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AorCopy {
    pub(crate) key: Vec<u8>,
    pub(crate) bindings: Vec<BindingCopy>,
}

/// One core's counters, copied.
#[derive(Clone, Debug)]
pub(crate) struct CoreStats {
    pub(crate) core: usize,
    pub(crate) registrar: Stats,
    pub(crate) auth: Option<crate::auth::Counters>,
    pub(crate) runtime: Counters,
}

/// A core's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Aor(Option<AorCopy>),
    /// A dump page; `next` is the slot to continue from (None: shard done).
    Page {
        aors: Vec<AorCopy>,
        next: Option<usize>,
    },
    Added(Result<(), &'static str>),
    Removed(Result<usize, &'static str>),
    Flushed {
        bindings: usize,
    },
    Stats(Box<CoreStats>),
}

#[derive(Debug)]
struct Request {
    command: Command,
    reply: Sender<Reply>,
}

/// Why a command got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The core's command channel is full (it is overloaded or stuck).
    Busy,
    /// No answer within the timeout, or the core has stopped.
    NoAnswer,
}

impl CallError {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "the core's command queue is full; retry later",
            Self::NoAnswer => "the core did not answer in time",
        }
    }
}

/// The admin side: one sender per core, and the doorbells to wake them.
#[derive(Clone, Debug)]
pub(crate) struct ControlHandle {
    senders: Vec<Sender<Request>>,
    mesh: Arc<MeshShared>,
    ready: Arc<AtomicBool>,
}

impl ControlHandle {
    /// Number of shards.
    pub(crate) fn shards(&self) -> usize {
        self.senders.len()
    }

    /// The shard that owns `aor_key` (the same as for a REGISTER to it).
    pub(crate) fn owner(&self, aor_key: &[u8]) -> usize {
        shard_for(aor_hash(aor_key), self.shards())
    }

    /// Every core is up (set once by the runtime after start-up).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.mesh.stop_requested()
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The server is stopping.
    pub(crate) fn stop_requested(&self) -> bool {
        self.mesh.stop_requested()
    }

    /// Send `command` to `shard`, wake it, and wait up to `timeout` for the answer.
    pub(crate) fn call(
        &self,
        shard: usize,
        command: Command,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        self.send(shard, command)?
            .recv_timeout(timeout)
            .map_err(|_| CallError::NoAnswer)
    }

    /// Send `command` to `shard` and wake it; the answer comes on the returned
    /// channel (so that several cores can work at once, e.g. a flush).
    pub(crate) fn send(
        &self,
        shard: usize,
        command: Command,
    ) -> Result<Receiver<Reply>, CallError> {
        let sender = self.senders.get(shard).ok_or(CallError::NoAnswer)?;
        let (reply, answer) = bounded(1);
        match sender.try_send(Request { command, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CallError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(CallError::NoAnswer),
        }
        self.mesh.ring(shard);
        Ok(answer)
    }
}

/// The core side: its command channel, and a flush in progress.
#[derive(Debug)]
pub(crate) struct ControlEnd {
    rx: Receiver<Request>,
    /// A flush in progress.
    flushing: Option<Flush>,
}

/// A flush in progress: who to tell, where it is, bindings removed so far.
#[derive(Debug)]
struct Flush {
    reply: Sender<Reply>,
    slot: usize,
    removed: usize,
}

/// Build the channels for `shards` cores.
pub(crate) fn build(shards: usize, mesh: Arc<MeshShared>) -> (ControlHandle, Vec<ControlEnd>) {
    let (senders, ends) = (0..shards)
        .map(|_| {
            let (tx, rx) = bounded(CONTROL_CHANNEL_DEPTH);
            (tx, ControlEnd { rx, flushing: None })
        })
        .unzip();
    let handle = ControlHandle {
        senders,
        mesh,
        ready: Arc::new(AtomicBool::new(false)),
    };
    (handle, ends)
}

impl ControlEnd {
    /// Nothing queued and nothing in progress (the core may park).
    pub(crate) fn is_idle(&self) -> bool {
        self.flushing.is_none() && self.rx.is_empty()
    }

    /// Answer up to [`COMMANDS_PER_TURN`] commands; returns the work done (0: none).
    pub(crate) fn poll(
        &mut self,
        core: usize,
        registrar: &mut Registrar,
        counters: &Counters,
        now_ms: u64,
    ) -> usize {
        let mut work = 0;
        if let Some(mut flush) = self.flushing.take() {
            let (bindings, next) = registrar.admin_flush(now_ms, flush.slot, FLUSH_SLOTS_PER_TURN);
            flush.removed += bindings;
            match next {
                Some(slot) => {
                    flush.slot = slot;
                    self.flushing = Some(flush);
                }
                None => {
                    let _ = flush.reply.send(Reply::Flushed {
                        bindings: flush.removed,
                    });
                }
            }
            work += 1;
        }
        for _ in 0..COMMANDS_PER_TURN {
            let Ok(request) = self.rx.try_recv() else {
                break;
            };
            work += 1;
            let answer = match request.command {
                Command::Show { aor_key } => Reply::Aor(
                    registrar
                        .location()
                        .get(&aor_key)
                        .map(|aor| copy_aor(aor, now_ms))
                        .filter(|v| !v.bindings.is_empty()),
                ),
                Command::Dump { position, limit } => {
                    let mut aors = Vec::new();
                    let next = registrar.location().aors_from_slot(
                        position,
                        limit.min(DUMP_PAGE_AORS_MAX),
                        DUMP_SLOTS_PER_CALL_MAX,
                        |aor| {
                            let copy = copy_aor(aor, now_ms);
                            if !copy.bindings.is_empty() {
                                aors.push(copy);
                            }
                        },
                    );
                    Reply::Page { aors, next }
                }
                Command::Add {
                    aor_key,
                    contact,
                    expires_s,
                    q,
                } => Reply::Added(
                    registrar
                        .admin_add_binding(now_ms, &aor_key, &contact, expires_s, q)
                        .map(|_| ())
                        .map_err(|e| e.as_str()),
                ),
                Command::Remove { aor_key, contact } => Reply::Removed(
                    registrar
                        .admin_remove(now_ms, &aor_key, contact.as_deref())
                        .map_err(|e| e.as_str()),
                ),
                Command::Flush => {
                    self.flushing = Some(Flush {
                        reply: request.reply,
                        slot: 0,
                        removed: 0,
                    });
                    continue;
                }
                Command::Stats => Reply::Stats(Box::new(CoreStats {
                    core,
                    registrar: registrar.stats().clone(),
                    auth: registrar.auth_counters(),
                    runtime: counters.clone(),
                })),
            };
            // The admin thread may have given up waiting: nothing to do then.
            let _ = request.reply.send(answer);
        }
        work
    }
}

/// The live bindings of `aor` at `now_ms`.
fn copy_aor(aor: AorRef<'_>, now_ms: u64) -> AorCopy {
    AorCopy {
        key: aor.key().to_vec(),
        bindings: aor
            .iter()
            .filter(|b| !b.is_expired(now_ms))
            .map(|b| copy_binding(&b, now_ms))
            .collect(),
    }
}

fn copy_binding(b: &BindingRef<'_>, now_ms: u64) -> BindingCopy {
    BindingCopy {
        contact: b.contact().to_vec(),
        expires_s: b.remaining_s(now_ms),
        q: b.q(),
        call_id: b.call_id().to_vec(),
        cseq: b.cseq(),
        source: b.source(),
        transport: b.transport(),
        socket: b.local_socket(),
        user_agent: b.user_agent().to_vec(),
        path: b.path().to_vec(),
        instance: b.instance().map(<[u8]>::to_vec),
        reg_id: b.reg_id(),
        registered_ms: b.registered_ms(),
        flow: b.flow(),
        flow_node: None,
        flow_down: b.flags() & crate::registrar::FLAG_FLOW_DOWN != 0,
        outbound: b.flags() & crate::registrar::FLAG_OUTBOUND != 0,
    }
}
