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
use crate::location::LocationTable;

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
    pub fn step(&mut self, table: &LocationTable, writer: &WriterHandle) {
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
                let bindings = table.bindings_len();
                if progress.log_bytes() > self.threshold_bytes(bindings)
                    && writer.try_send_chunk(Chunk::SnapshotStart).is_ok()
                {
                    self.snapshot_bytes = 0;
                    self.state = State::Walking { next: 0 };
                }
            }
            State::Walking { next } => {
                // A fresh buffer per turn (the writer frees it): one allocation per
                // few thousand AORs, and no large buffer lingers in the spare pool.
                let mut buf = Vec::new();
                let more = table.aors_from_slot(next, usize::MAX, SNAPSHOT_SLOTS_PER_TURN, |aor| {
                    record::encode_aor(&mut buf, aor.key(), Some(aor))
                });
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::location::{Change, LocationLimits, Transport};
    use crate::store::record::{Frame, Record, StoredBinding};
    use crate::store::{load, segment, writer};

    const NOW_MS: u64 = 1_000_000_000;
    const AORS: usize = 10_000;

    fn binding(contact: &[u8]) -> StoredBinding<'_> {
        StoredBinding {
            contact,
            call_id: b"c",
            path: b"",
            user_agent: b"",
            instance: None,
            reg_id: None,
            q: None,
            cseq: 1,
            branch: crate::location::BranchHash::UNKNOWN,
            flags: 0,
            expires_s: 2_000_000,
            registered_s: 1,
            source: "192.0.2.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            local_socket: 0,
        }
    }

    /// Insert `b` into `table` as a start-up load does.
    fn restore(table: &mut LocationTable, key: &[u8], b: &StoredBinding<'_>) {
        let registered_ms = u64::from(b.registered_s) * 1000;
        table
            .apply(key, registered_ms, &[Change::Insert(b.to_new())])
            .unwrap();
    }

    fn contacts(table: &LocationTable, key: &[u8]) -> BTreeSet<Vec<u8>> {
        table
            .get(key)
            .map(|a| a.iter().map(|b| b.contact().to_vec()).collect())
            .unwrap_or_default()
    }

    /// A snapshot spread over several turns, with live changes between the turns:
    /// afterwards only the new segments remain, and loading them gives exactly the
    /// table (the live changes included, the stale start-up records gone).
    #[test]
    fn a_snapshot_interleaved_with_live_changes_loads_as_the_table() {
        let data = std::env::temp_dir().join(format!("sipreg-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let dir = segment::shard_dir(&data, 0);
        std::fs::create_dir_all(&dir).unwrap();
        let mut table = LocationTable::new(LocationLimits::default());
        let keys: Vec<Vec<u8>> = (0..AORS).map(|i| format!("aor-{i}").into_bytes()).collect();
        // The start-up snapshot: stale copies first (enough to pass the threshold),
        // an AOR the table no longer has, then the table's state.
        let mut startup = Vec::new();
        for _ in 0..8 {
            for key in &keys {
                record::encode_set(&mut startup, key, &[binding(b"sip:stale")]);
            }
        }
        record::encode_set(&mut startup, b"ghost", &[binding(b"sip:ghost")]);
        for (i, key) in keys.iter().enumerate() {
            let contact = format!("sip:{i}");
            let b = [binding(contact.as_bytes())];
            record::encode_set(&mut startup, key, &b);
            restore(&mut table, key, &b[0]);
        }
        segment::write_whole(&dir, 2, 0, &startup).unwrap();

        let (handle, thread) =
            writer::spawn(dir.clone(), 0, 2, Duration::from_millis(1), Box::new(|| {})).unwrap();
        let mut compactor = Compactor::new(1);
        assert!(
            handle.progress().log_bytes() > compactor.threshold_bytes(AORS),
            "the start-up snapshot passes the threshold"
        );
        compactor.step(&table, &handle);
        assert!(compactor.running());
        let mut turns = 0;
        let mut changed = 0;
        while compactor.running() {
            compactor.step(&table, &handle);
            turns += 1;
            // Live changes between turns, spread over the whole table: a second
            // contact, journaled like the registrar does.
            for _ in 0..97 {
                let i = (changed * 7919) % AORS;
                changed += 1;
                let contact = format!("sip:new-{i}");
                restore(&mut table, &keys[i], &binding(contact.as_bytes()));
                let mut chunk = Vec::new();
                record::encode_aor(&mut chunk, &keys[i], table.get(&keys[i]));
                while let Err(back) = handle.try_send(chunk) {
                    chunk = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        assert!(turns >= 3, "the walk took {turns} turns");
        let progress = std::sync::Arc::clone(handle.progress());
        drop(handle);
        thread.join().unwrap();
        assert!(!progress.failed());
        assert_eq!(progress.snapshots(), 1);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [segment::file_name(2, 2)], "older segments deleted");

        let loaded = load::load(&data, 1, NOW_MS, |_| 0).unwrap();
        assert_eq!(loaded.aors, AORS, "the ghost is gone, every AOR is there");
        let mut seen = 0;
        let mut offset = 0;
        while let Frame::Record { payload, next } = record::next_frame(&loaded.shards[0], offset) {
            let Ok(Record::Set { key, bindings }) = record::decode(payload) else {
                panic!("a snapshot holds set records only");
            };
            let got: BTreeSet<Vec<u8>> = bindings.iter().map(|b| b.contact.to_vec()).collect();
            assert_eq!(
                got,
                contacts(&table, key),
                "{}",
                String::from_utf8_lossy(key)
            );
            seen += 1;
            offset = next;
        }
        assert_eq!(seen, AORS);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
