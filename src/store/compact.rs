//! Online compaction: bound the log on disk while the server runs.
//!
//! Why: every committed change appends a record (~160 B per binding), so without
//! compaction the log grows with the change rate, not with the number of bindings.
//! Start-up compacts ([`super::load`]), but a server may run for months.
//!
//! How, without stopping the core or copying the table: when the shard's log on disk
//! exceeds `max(COMPACT_RATIO × live estimate, --compact-min-bytes)`, the core
//! 1. sends the writer [`Chunk::SnapshotStart`]: it syncs and opens a new segment,
//!    the snapshot's first;
//! 2. walks its location table [`SNAPSHOT_SLOTS_PER_TURN`] slots per loop turn and
//!    sends one "set" record per AOR ([`record::encode_aor`], the journal's encoding)
//!    as [`Chunk::Snapshot`], interleaved with the live journal;
//! 3. sends [`Chunk::SnapshotDone`]: the writer syncs and deletes every older segment.
//!
//! Correctness rests on "the last record per AOR wins at load" and on one ordered
//! channel. A snapshot chunk is only encoded when every journal record committed so
//! far has been handed to the writer, so the copy of an AOR is never older than a
//! record before it in the channel; a later change is a later record and wins. An AOR
//! changed (or created, or removed) after the start has its journal record in the new
//! segments; one left untouched stays in its slot and is copied by the walk. A crash
//! before the deletion loads old plus new segments (same answer); after it, the new
//! segments alone hold every AOR. Snapshot records are not journal bytes, so sync-mode
//! replies still wait for exactly their own records.

use super::record;
use super::writer::{Chunk, WriterHandle};
use crate::registrar::Registrar;

/// A snapshot starts when the log exceeds this many times the live estimate.
pub const COMPACT_RATIO: u64 = 4;
/// ... and at least this many bytes (`--compact-min-bytes` default), in bytes.
pub const COMPACT_MIN_BYTES: u64 = 64 << 20;
/// Largest `--compact-min-bytes`, in bytes.
pub const COMPACT_MIN_BYTES_MAX: u64 = 1 << 40;
/// Location-table slots copied into the snapshot per core loop turn, at most (bounds
/// the time a turn spends on it: ~4096 AORs, well under a millisecond).
pub const SNAPSHOT_SLOTS_PER_TURN: usize = 4096;
/// Record bytes per live binding, to estimate the live size from the binding count.
pub const BINDING_RECORD_BYTES: u64 = 160;

/// Where a shard's compaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No snapshot running.
    Idle,
    /// Copying AORs from this slot on.
    Walking { next: usize },
    /// Every AOR copied; the "done" marker is still to be sent.
    Finishing,
}

/// The core's side of online compaction (one per shard).
#[derive(Debug)]
pub struct Compactor {
    min_bytes: u64,
    state: State,
    /// Bytes of the snapshot in progress, then of the last one.
    snapshot_bytes: u64,
    last_snapshot_bytes: u64,
}

impl Compactor {
    /// A compactor starting snapshots past `min_bytes` (and the ratio) of log.
    pub fn new(min_bytes: u64) -> Self {
        Self {
            min_bytes,
            state: State::Idle,
            snapshot_bytes: 0,
            last_snapshot_bytes: 0,
        }
    }

    /// True while a snapshot is being written (the core should keep turning).
    pub fn running(&self) -> bool {
        self.state != State::Idle
    }

    /// The log size that starts a snapshot, for `bindings` live bindings, in bytes.
    pub fn threshold_bytes(&self, bindings: usize) -> u64 {
        let live = (bindings as u64)
            .saturating_mul(BINDING_RECORD_BYTES)
            .max(self.last_snapshot_bytes);
        live.saturating_mul(COMPACT_RATIO).max(self.min_bytes)
    }

    /// One bounded step. Call it only once every journal record committed so far
    /// has been handed to `writer` (nothing left outgoing), so the channel order holds.
    pub fn step(&mut self, registrar: &Registrar, writer: &WriterHandle) {
        let progress = writer.progress();
        if progress.failed() {
            // Nothing is kept any more: stop (and let the core park normally).
            self.state = State::Idle;
            return;
        }
        if !writer.has_room() {
            return;
        }
        match self.state {
            State::Idle => {
                let bindings = registrar.location().bindings_len();
                if progress.log_bytes() > self.threshold_bytes(bindings)
                    && writer.try_send_chunk(Chunk::SnapshotStart).is_ok()
                {
                    self.snapshot_bytes = 0;
                    self.state = State::Walking { next: 0 };
                }
            }
            State::Walking { next } => {
                let mut buf = writer.spare().unwrap_or_default();
                buf.clear();
                let more = registrar.location().aors_from_slot(
                    next,
                    usize::MAX,
                    SNAPSHOT_SLOTS_PER_TURN,
                    |aor| record::encode_aor(&mut buf, aor.key(), Some(aor)),
                );
                let len = buf.len() as u64;
                if len > 0 && writer.try_send_chunk(Chunk::Snapshot(buf)).is_err() {
                    // Not reached (room was checked and the core is the only sender):
                    // walk these slots again next turn.
                    return;
                }
                self.snapshot_bytes += len;
                self.state = more.map_or(State::Finishing, |next| State::Walking { next });
            }
            State::Finishing => {
                if writer.try_send_chunk(Chunk::SnapshotDone).is_ok() {
                    self.last_snapshot_bytes = self.snapshot_bytes;
                    self.state = State::Idle;
                    tracing::debug!("store: snapshot of {} bytes written", self.snapshot_bytes);
                }
            }
        }
    }
}
