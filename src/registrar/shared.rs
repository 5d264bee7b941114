//! Commits against a shared location backend (several nodes, one location: Redis
//! Cluster), with the registrar still sans-IO.
//!
//! In `LocationMode::Shared` the registrar decides a request as usual (parse,
//! transaction, domain, Require, authentication, AOR, Contact and expiry validation),
//! but does not commit it to its own table: [`Registrar::answer`] returns
//! [`Action::Commit`] with a [`CommitId`], and [`Registrar::commit_request`] shows the
//! runtime what to commit (a [`CommitRequest`]: the AOR key, Call-ID, CSeq and the
//! planned contacts, owned). The runtime completes it against the backend, which
//! applies the same §10.3 step 7 rules atomically where the bindings live, and hands
//! the backend's answer back through [`Registrar::resume`], which writes the response
//! from the binding list the backend returned. Redirect lookups (§8.3) are a
//! [`CommitOp::Fetch`] of the Request-URI's AOR.
//!
//! Memory is bounded: at most [`SHARED_COMMITS_PENDING_MAX`] commits wait per shard
//! (past it a REGISTER gets 503 and is counted); each pending commit keeps a copy of
//! its request, re-parsed on resume (cheaper than keeping the parse alive across the
//! runtime's batches, and a few hundred nanoseconds against a network round trip). The
//! slots and their buffers are reused: after warm-up a commit allocates nothing.

use std::ops::Range;

use bumpalo::Bump;

use super::outcome::Outcome;
use super::register::{Intent, IntentOp};
use super::{Action, MaxContactsPolicy, Prepared, Registrar, Source, by_method};

/// Commits waiting for the backend per shard, at most.
pub const SHARED_COMMITS_PENDING_MAX: usize = 4096;

// Whatever the per-AOR bound, a backend's reply listing it can be decoded.
const _: () =
    assert!(crate::location::BINDINGS_PER_AOR_MAX <= crate::redis::script::REPLY_BINDINGS_MAX);

/// A commit waiting for the backend: its slot and the slot's generation, so an answer
/// for a slot since reused is recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommitId {
    slot: u32,
    generation: u32,
}

/// What a commit asks of the AOR's bindings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOp {
    /// Read the bindings (a REGISTER with no Contact, or a redirect lookup).
    Fetch,
    /// `Contact: *`: remove every binding (each subject to the Call-ID/CSeq rule).
    RemoveAll,
    /// Add, refresh or (expiry 0) remove each planned contact.
    Update,
}

/// One planned contact of a [`CommitOp::Update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitContact<'r> {
    /// The Contact URI as the UA wrote it.
    pub contact: &'r [u8],
    /// The expiry granted, in seconds; 0 removes the binding.
    pub expires_s: u32,
    /// `q` in thousandths.
    pub q: Option<u16>,
    /// The Path vector (RFC 3327), one value.
    pub path: &'r [u8],
    /// The User-Agent.
    pub user_agent: &'r [u8],
    /// `+sip.instance` (RFC 5626).
    pub instance: Option<&'r [u8]>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// The connection the binding is reachable through (first hop over a stream).
    pub flow: Option<crate::location::FlowId>,
}

/// Text fields of a contact: ranges into [`CommitRequest`]'s bytes.
#[derive(Clone, Debug)]
struct ContactFields {
    contact: Range<usize>,
    path: Range<usize>,
    user_agent: Range<usize>,
    instance: Option<Range<usize>>,
    expires_s: u32,
    q: Option<u16>,
    reg_id: Option<u32>,
    flow: Option<crate::location::FlowId>,
}

/// What the backend must commit, atomically, for one request.
#[derive(Clone, Debug)]
pub struct CommitRequest {
    /// Text fields, back to back (reused).
    bytes: Vec<u8>,
    aor_key: Range<usize>,
    call_id: Range<usize>,
    contacts: Vec<ContactFields>,
    /// The request's CSeq number.
    pub cseq: u32,
    /// The hash of its top Via branch (`location::BranchHash`, 0 = unknown): the
    /// backend stores it with each binding it writes, and an equal CSeq is a
    /// retransmission only with the branch that last wrote the binding.
    pub branch: u32,
    /// What to do.
    pub op: CommitOp,
    /// Live bindings per AOR after the commit, at most; 0: unlimited.
    pub max_contacts: u32,
    /// Past `max_contacts`: remove the oldest bindings (else refuse the request).
    pub evict_oldest: bool,
    /// Where the request came from (stored with each binding).
    pub source: Source,
}

impl CommitRequest {
    fn new(source: Source) -> Self {
        Self {
            bytes: Vec::new(),
            aor_key: 0..0,
            call_id: 0..0,
            contacts: Vec::new(),
            cseq: 0,
            branch: 0,
            op: CommitOp::Fetch,
            max_contacts: 0,
            evict_oldest: false,
            source,
        }
    }

    /// The AOR key (unescaped user `@` lower-cased host), as the memory table keys it.
    pub fn aor_key(&self) -> &[u8] {
        self.bytes.get(self.aor_key.clone()).unwrap_or_default()
    }

    /// The request's Call-ID.
    pub fn call_id(&self) -> &[u8] {
        self.bytes.get(self.call_id.clone()).unwrap_or_default()
    }

    /// The planned contacts of an [`CommitOp::Update`], in the request's order.
    pub fn contacts(&self) -> impl Iterator<Item = CommitContact<'_>> + '_ {
        let text = |r: &Range<usize>| self.bytes.get(r.clone()).unwrap_or_default();
        self.contacts.iter().map(move |c| CommitContact {
            contact: text(&c.contact),
            expires_s: c.expires_s,
            q: c.q,
            path: text(&c.path),
            user_agent: text(&c.user_agent),
            instance: c.instance.as_ref().map(text),
            reg_id: c.reg_id,
            flow: c.flow,
        })
    }

    fn push(&mut self, text: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(text);
        start..self.bytes.len()
    }

    /// Fill from an intent (every field overwritten; buffers keep their capacity).
    fn fill(&mut self, aor_key: &[u8], intent: &Intent<'_>, source: Source) {
        self.bytes.clear();
        self.contacts.clear();
        self.source = source;
        self.aor_key = self.push(aor_key);
        self.call_id = self.push(intent.call_id);
        self.cseq = intent.cseq;
        self.branch = intent.branch.to_u32();
        self.op = match intent.op {
            IntentOp::Fetch => CommitOp::Fetch,
            IntentOp::RemoveAll => CommitOp::RemoveAll,
            IntentOp::Update(planned) => {
                for p in planned {
                    let contact = self.push(p.binding.contact);
                    let path = self.push(p.binding.path);
                    let user_agent = self.push(p.binding.user_agent);
                    let instance = p.binding.instance.map(|i| self.push(i));
                    self.contacts.push(ContactFields {
                        contact,
                        path,
                        user_agent,
                        instance,
                        expires_s: p.expires_s,
                        q: p.binding.q,
                        reg_id: p.binding.reg_id,
                        flow: p.binding.flow,
                    });
                }
                CommitOp::Update
            }
        };
    }
}

/// How the backend's commit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitStatus {
    /// Applied (or nothing to apply: a fetch); the list is the AOR's bindings now.
    Committed,
    /// Same Call-ID, CSeq and branch as the binding's last change: the request already
    /// applied, retransmitted; nothing changed, the list is the current bindings.
    Retransmission,
    /// §10.3 step 7: the Call-ID's CSeq is not higher; nothing changed.
    InvalidCSeq,
    /// Past max contacts with the reject policy; nothing changed.
    TooManyContacts,
    /// The backend could not be reached or refused (no master for the slot, timeout,
    /// connection lost): nothing is known to have changed. Answered 503.
    Unavailable,
    /// The backend answered something unexpected (malformed or oversized reply).
    /// Answered 500.
    Failed,
}

/// One binding in the backend's answer, as the 200 OK or the 302 lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedBinding<'r> {
    /// The Contact URI.
    pub contact: &'r [u8],
    /// Seconds left (at least 1 for a live binding).
    pub expires_s: u32,
    /// `q` in thousandths.
    pub q: Option<u16>,
    /// `+sip.instance` (RFC 5626).
    pub instance: Option<&'r [u8]>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// Where its REGISTER came from, over which transport, and its Path: what a
    /// redirect needs to reach it (`nat`).
    pub source: std::net::SocketAddr,
    pub transport: crate::location::Transport,
    pub path: &'r [u8],
}

/// The backend's answer to a [`CommitRequest`].
#[derive(Clone, Copy, Debug)]
pub struct CommitReply<'r> {
    /// How it ended.
    pub status: CommitStatus,
    /// The AOR's live bindings after it (empty unless committed or a retransmission).
    pub bindings: &'r [ListedBinding<'r>],
}

/// A pending commit's slot.
#[derive(Debug)]
struct Slot {
    generation: u32,
    busy: bool,
    /// A copy of the request, parsed again on resume.
    datagram: Vec<u8>,
    source: Source,
    /// The request was a REGISTER (else a redirect lookup).
    register: bool,
    commit: CommitRequest,
}

/// The pending commits of one shard.
#[derive(Debug, Default)]
pub(super) struct Shared {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Requests refused because [`SHARED_COMMITS_PENDING_MAX`] were pending.
    pub(super) overflowed: u64,
}

impl Shared {
    pub(super) fn pending(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl Registrar {
    /// Park a decided request until the backend commits its intent: `None` when too many
    /// are pending (the caller answers 503).
    pub(super) fn suspend(
        &mut self,
        datagram: &[u8],
        source: Source,
        register: bool,
        intent: &Intent<'_>,
    ) -> Option<Action> {
        // The memory table's per-AOR bound holds in the shared backend too (a 200 must
        // fit a datagram, and a reply the decoder can take): with `--max-contacts 0`
        // (unlimited) the backend refuses past it, as the table does (503).
        let cap = u32::try_from(self.location.limits().bindings_per_aor_max).unwrap_or(u32::MAX);
        let (max_contacts, evict_oldest) = match self.config.max_contacts {
            0 => (cap, false),
            n => (
                n.min(cap),
                self.config.max_contacts_policy == MaxContactsPolicy::EvictOldest,
            ),
        };
        let shared = self.shared.as_mut()?;
        let slot = match shared.free.pop() {
            Some(slot) => slot,
            None if shared.slots.len() < SHARED_COMMITS_PENDING_MAX => {
                shared.slots.push(Slot {
                    generation: 0,
                    busy: false,
                    datagram: Vec::new(),
                    source,
                    register,
                    commit: CommitRequest::new(source),
                });
                u32::try_from(shared.slots.len() - 1).ok()?
            }
            None => {
                shared.overflowed += 1;
                return None;
            }
        };
        let entry = shared.slots.get_mut(slot as usize)?;
        debug_assert!(!entry.busy, "a free slot is in use");
        entry.busy = true;
        entry.generation = entry.generation.wrapping_add(1);
        entry.datagram.clear();
        entry.datagram.extend_from_slice(datagram);
        entry.source = source;
        entry.register = register;
        entry.commit.fill(self.aor_key.bytes(), intent, source);
        entry.commit.max_contacts = max_contacts;
        entry.commit.evict_oldest = evict_oldest;
        Some(Action::Commit {
            id: CommitId {
                slot,
                generation: entry.generation,
            },
        })
    }

    /// What the backend must commit for `id`; `None` for an id that is not pending.
    pub fn commit_request(&self, id: CommitId) -> Option<&CommitRequest> {
        let slot = self.shared.as_ref()?.slots.get(id.slot as usize)?;
        (slot.busy && slot.generation == id.generation).then_some(&slot.commit)
    }

    /// Commits waiting for the backend now.
    pub fn commits_pending(&self) -> usize {
        self.shared.as_ref().map_or(0, Shared::pending)
    }

    /// The backend answered commit `id`: write the response into `out` and say where
    /// it goes, as [`answer`](Self::answer) does for a request committed locally. An
    /// id that is not pending (answered already, or a slot since reused) changes
    /// nothing and gives [`Action::Nothing`].
    pub fn resume(
        &mut self,
        now_ms: u64,
        id: CommitId,
        reply: &CommitReply<'_>,
        arena: &Bump,
        out: &mut Vec<u8>,
    ) -> Action {
        let Some(shared) = self.shared.as_mut() else {
            return Action::Nothing;
        };
        let Some(slot) = shared
            .slots
            .get_mut(id.slot as usize)
            .filter(|s| s.busy && s.generation == id.generation)
        else {
            return Action::Nothing;
        };
        slot.busy = false;
        shared.free.push(id.slot);
        let (datagram, source, register) = (
            std::mem::take(&mut slot.datagram),
            slot.source,
            slot.register,
        );
        let fetch = slot.commit.op == CommitOp::Fetch;
        let action = self.resume_request(
            now_ms, &datagram, source, register, fetch, reply, arena, out,
        );
        // Give the buffer back to the slot (it keeps its capacity).
        if let Some(slot) = self
            .shared
            .as_mut()
            .and_then(|s| s.slots.get_mut(id.slot as usize))
        {
            if slot.datagram.capacity() == 0 {
                slot.datagram = datagram;
            }
        }
        action
    }

    #[allow(clippy::too_many_arguments)]
    fn resume_request(
        &mut self,
        now_ms: u64,
        datagram: &[u8],
        source: Source,
        register: bool,
        fetch: bool,
        reply: &CommitReply<'_>,
        arena: &Bump,
        out: &mut Vec<u8>,
    ) -> Action {
        let Prepared::Request { req, txn, .. } = Self::prepare(datagram, arena, |_| true) else {
            // It parsed when it was suspended, and parsing is deterministic.
            debug_assert!(false, "a suspended request no longer parses");
            return Action::Nothing;
        };
        let method = by_method::method_index(&req.method);
        let outcome = match (reply.status, register) {
            (CommitStatus::Committed, true) if fetch => Outcome::Fetched,
            (CommitStatus::Committed, true) => Outcome::Registered,
            (CommitStatus::Retransmission, true) => Outcome::Fetched,
            (CommitStatus::Committed | CommitStatus::Retransmission, false) => {
                if reply.bindings.is_empty() {
                    Outcome::NotFound
                } else {
                    Outcome::Redirected
                }
            }
            (CommitStatus::InvalidCSeq, _) => Outcome::InvalidCSeq,
            (CommitStatus::TooManyContacts, _) => Outcome::TooManyContacts,
            (CommitStatus::Unavailable, _) => Outcome::StoreFailed,
            (CommitStatus::Failed, _) => Outcome::ServerError,
        };
        self.count(method, outcome);
        out.clear();
        self.respond(
            now_ms,
            source,
            req,
            outcome,
            super::respond::Bindings::Listed(reply.bindings),
            arena,
            out,
        );
        // A failed backend is not an answer to remember: a retransmission tries again.
        if !matches!(
            reply.status,
            CommitStatus::Unavailable | CommitStatus::Failed
        ) {
            if let Some(key) = &txn {
                let _ = self.txns.insert(key, now_ms, out);
            }
        }
        self.sync_gauges();
        self.reply(super::reply_destination(req.via(), source))
    }
}
