//! The durability hold queue: one core's end of the store.
//!
//! The registrar appends a record per commit to its journal; once per loop turn the core
//! drains it and hands it to its writer thread (`store::writer`), never blocking (a busy
//! writer leaves the bytes here for the next turn). In sync durability a reply whose
//! `durable_after` is past what the writer reports durable waits here, in journal order,
//! and leaves in the turn the writer catches up (group commit: one `fdatasync` releases
//! every reply it covers). Online compaction (`store::compact`) is stepped from here.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::registrar::{Destination, Registrar};
use crate::store::compact::Compactor;
use crate::store::writer::{Progress, WriterHandle};

/// This shard's end of the store, as built on the main thread.
#[derive(Debug)]
pub(crate) struct JournalSetup {
    pub(crate) writer: WriterHandle,
    /// `--durability sync`: hold each reply until the journal is durable up to it.
    pub(crate) sync: bool,
    /// `--compact-min-bytes`: online compaction threshold.
    pub(crate) compact_min_bytes: u64,
}

/// Held reply buffers kept for reuse, at most.
const HELD_SPARE_MAX: usize = 1024;

/// A reply waiting for its record to be durable.
pub(crate) struct Held {
    pub(crate) durable_after: u64,
    pub(crate) to: Destination,
    pub(crate) bytes: Vec<u8>,
}

/// The journal as the core sees it: bytes not yet handed over, replies held for sync.
pub(crate) struct Journal {
    writer: WriterHandle,
    progress: Arc<Progress>,
    sync: bool,
    /// Drained from the registrar, not yet accepted by the writer (channel full).
    outgoing: Vec<u8>,
    /// Journal bytes drained from the registrar since start: the position replies'
    /// `durable_after` counts in.
    drained: u64,
    /// Sync mode: replies waiting for the journal to be durable, in journal order.
    held: VecDeque<Held>,
    /// Buffers of released replies, reused.
    spare: Vec<Vec<u8>>,
    /// Online compaction (store::compact), stepped once the journal is handed over.
    compactor: Compactor,
}

impl Journal {
    pub(crate) fn new(setup: JournalSetup) -> Self {
        Self {
            progress: Arc::clone(setup.writer.progress()),
            writer: setup.writer,
            sync: setup.sync,
            outgoing: Vec::new(),
            drained: 0,
            held: VecDeque::new(),
            spare: Vec::new(),
            compactor: Compactor::new(setup.compact_min_bytes),
        }
    }

    /// Whether a reply that must wait for `durable_after` is held: if so `reply` moves
    /// into the queue (swapped with a spare buffer, no copy) and true is returned.
    pub(crate) fn hold(
        &mut self,
        durable_after: u64,
        to: Destination,
        reply: &mut Vec<u8>,
    ) -> bool {
        if !self.sync || durable_after <= self.progress.durable() {
            return false;
        }
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        std::mem::swap(&mut bytes, reply);
        self.held.push_back(Held {
            durable_after,
            to,
            bytes,
        });
        true
    }

    /// Hand the registrar's new records to the writer (never blocks), and report a
    /// failed store to the registrar.
    pub(crate) fn ship(&mut self, registrar: &mut Registrar) {
        if self.progress.failed() {
            registrar.set_store_failed(true);
        }
        let before = self.outgoing.len();
        registrar.drain_journal(&mut self.outgoing);
        self.drained += (self.outgoing.len() - before) as u64;
        if self.outgoing.is_empty() {
            return self.compactor.step(registrar.location(), &self.writer);
        }
        let next = self.writer.spare().unwrap_or_default();
        let chunk = std::mem::replace(&mut self.outgoing, next);
        if let Err(chunk) = self.writer.try_send(chunk) {
            // Writer busy: keep the bytes, in order, and try again next turn.
            let mut chunk = chunk;
            chunk.extend_from_slice(&self.outgoing);
            self.outgoing = chunk;
        } else {
            self.compactor.step(registrar.location(), &self.writer);
        }
    }

    /// The held replies that are durable now, in order; give each buffer back with
    /// [`Journal::recycle`] once sent.
    pub(crate) fn release(&mut self) -> Option<Held> {
        let durable = self.progress.durable();
        if self.held.front()?.durable_after <= durable {
            self.held.pop_front()
        } else {
            None
        }
    }

    /// Keep a released reply's buffer for the next held one.
    pub(crate) fn recycle(&mut self, bytes: Vec<u8>) {
        if self.spare.len() < HELD_SPARE_MAX {
            self.spare.push(bytes);
        }
    }

    /// A held reply is now durable.
    pub(crate) fn releasable(&self) -> bool {
        self.held
            .front()
            .is_some_and(|h| h.durable_after <= self.progress.durable())
    }

    /// Bytes handed to the writer (or still waiting to be) and not yet durable.
    pub(crate) fn lag_bytes(&self) -> u64 {
        self.drained.saturating_sub(self.progress.durable())
    }

    /// Store write errors so far.
    pub(crate) fn errors(&self) -> u64 {
        self.progress.errors()
    }

    /// Work is waiting on the writer: park briefly rather than until the next deadline.
    pub(crate) fn backlog(&self) -> bool {
        !self.outgoing.is_empty() || self.compactor.running()
    }

    /// Nothing left to hand over or to release.
    pub(crate) fn idle(&self) -> bool {
        self.outgoing.is_empty() && (self.held.is_empty() || self.progress.failed())
    }
}
