//! The writer thread of one shard: appends journal chunks to the shard's segment and
//! makes them durable with one `fdatasync` per commit interval (group commit).
//!
//! Why a thread: a glommio core must never block on the disk, and one `fdatasync`
//! takes 0.1-1 ms here (far more on a consumer SSD). The core hands over whole
//! records (`try_send`, never blocking); the writer `write`s each chunk at once, so a
//! kill -9 of the process loses nothing it was handed, and publishes the durable
//! journal position after each sync, ringing the core (`wake`) so that sync-mode
//! replies go out.
//!
//! Online compaction (see [`super::compact`]): the core sends a
//! [`Chunk::SnapshotStart`] marker (the writer syncs and opens a new segment, the
//! snapshot's first), then [`Chunk::Snapshot`] records interleaved with the journal,
//! then [`Chunk::SnapshotDone`] (the writer syncs and deletes every older segment of
//! the shard). One ordered channel carries all of them, so the last record per AOR
//! is right at load whether a crash comes before, during or after the deletion.
//! Snapshot bytes are not journal bytes: the published positions count the journal
//! only, which is what sync-mode replies wait for.
//!
//! A write or sync error is logged and counted, and the durable position stops
//! moving: in sync mode no 200 for a change that may not be kept is ever released.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::segment;

/// Journal chunks in flight per shard, at most (the core keeps accumulating while
/// the channel is full; nothing is dropped).
pub const JOURNAL_CHANNEL_DEPTH: usize = 256;

/// What the core hands its writer, in order.
#[derive(Debug)]
pub enum Chunk {
    /// Journal records (they advance the journal position).
    Journal(Vec<u8>),
    /// Snapshot records: a copy of current state, outside the journal position.
    Snapshot(Vec<u8>),
    /// Sync, open a new segment and remember it as the snapshot's first.
    SnapshotStart,
    /// Sync, then delete every segment older than the snapshot's first.
    SnapshotDone,
}

/// What the writer publishes to its core.
#[derive(Debug, Default)]
pub struct Progress {
    /// Journal bytes durable on disk (the journal position, not a file offset).
    durable: AtomicU64,
    /// Journal bytes written to the OS.
    written: AtomicU64,
    /// Write or sync errors so far.
    errors: AtomicU64,
    /// Set after the first error: nothing later is acknowledged.
    failed: AtomicBool,
    /// Record bytes in the segments this shard keeps on disk (all generations,
    /// without headers and zero-filled room): what compaction bounds.
    log_bytes: AtomicU64,
    /// Snapshots completed (older segments deleted).
    snapshots: AtomicU64,
}

impl Progress {
    /// Journal bytes durable on disk.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Journal bytes handed to the OS.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Write or sync errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// True once a write failed (the store is no longer being kept).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Record bytes in the segments kept on disk (see [`super::compact`]).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Acquire)
    }

    /// Snapshots completed: older segments deleted.
    pub fn snapshots(&self) -> u64 {
        self.snapshots.load(Ordering::Acquire)
    }
}

/// The core's end of a writer.
#[derive(Debug)]
pub struct WriterHandle {
    tx: Sender<Chunk>,
    spare: Receiver<Vec<u8>>,
    progress: Arc<Progress>,
}

impl WriterHandle {
    /// Hand `chunk` (whole journal records) to the writer; on a full channel it
    /// comes back.
    pub fn try_send(&self, chunk: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.tx.try_send(Chunk::Journal(chunk)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => match c {
                Chunk::Journal(c) => Err(c),
                _ => Err(Vec::new()),
            },
        }
    }

    /// Hand a snapshot chunk or marker to the writer; on a full channel it comes back.
    pub fn try_send_chunk(&self, chunk: Chunk) -> Result<(), Chunk> {
        self.tx.try_send(chunk).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }

    /// True when the channel has room for one more chunk (the core is its only
    /// sender, so a following send succeeds).
    pub fn has_room(&self) -> bool {
        !self.tx.is_full()
    }

    /// An empty buffer returned by the writer, if any (saves an allocation).
    pub fn spare(&self) -> Option<Vec<u8>> {
        self.spare.try_recv().ok()
    }

    /// What the writer has done.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }
}

/// Start the writer of one shard: it appends to a new segment (generation, 1) of `dir`.
/// `wake` is called after each durable commit.
pub fn spawn(
    dir: PathBuf,
    index: usize,
    generation: u64,
    commit_interval: Duration,
    wake: Box<dyn Fn() + Send>,
) -> anyhow::Result<(WriterHandle, JoinHandle<()>)> {
    let existing = existing_log_bytes(&dir)?;
    let (file, file_bytes) = segment::create(&dir, generation, 1)?;
    let (tx, rx) = crossbeam_channel::bounded::<Chunk>(JOURNAL_CHANNEL_DEPTH);
    let (spare_tx, spare) = crossbeam_channel::bounded::<Vec<u8>>(JOURNAL_CHANNEL_DEPTH);
    let progress = Arc::new(Progress::default());
    progress.log_bytes.store(existing, Ordering::Release);
    let mut writer = Writer {
        dir,
        generation,
        seq: 1,
        file,
        segment_bytes: segment::HEADER_BYTES as u64,
        file_bytes,
        written: 0,
        synced: 0,
        journal_written: 0,
        journal_synced: 0,
        log_bytes: existing,
        since_first: 0,
        snapshot_first: None,
        progress: Arc::clone(&progress),
        wake,
    };
    let thread = thread::Builder::new()
        .name(format!("sipreg-store-{index}"))
        .spawn(move || writer.run(&rx, &spare_tx, commit_interval))?;
    Ok((
        WriterHandle {
            tx,
            spare,
            progress,
        },
        thread,
    ))
}

struct Writer {
    dir: PathBuf,
    generation: u64,
    seq: u64,
    file: File,
    /// Where the next record goes in the segment.
    segment_bytes: u64,
    /// The segment's length: zero-filled and synced past `segment_bytes`.
    file_bytes: u64,
    /// All bytes written (journal and snapshot) and synced.
    written: u64,
    synced: u64,
    /// Journal bytes written and durable: the published positions.
    journal_written: u64,
    journal_synced: u64,
    /// Record bytes in the segments kept on disk.
    log_bytes: u64,
    /// Record bytes written since the snapshot in progress started.
    since_first: u64,
    /// The first segment (seq) of the snapshot in progress.
    snapshot_first: Option<u64>,
    progress: Arc<Progress>,
    wake: Box<dyn Fn() + Send>,
}

/// Record bytes of the segments already in `dir` (the start-up snapshot).
fn existing_log_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for (_, path) in segments(dir)? {
        if let Ok(meta) = std::fs::metadata(&path) {
            bytes += meta.len().saturating_sub(segment::HEADER_BYTES as u64);
        }
    }
    Ok(bytes)
}

/// The segments of `dir`, by (generation, seq).
fn segments(dir: &Path) -> anyhow::Result<Vec<((u64, u64), PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list the shard directory {}", dir.display()))?;
    let mut found: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let id = segment::parse_name(e.file_name().to_str()?)?;
            Some((id, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Chunk>, spare: &Sender<Vec<u8>>, interval: Duration) {
        let mut last_sync = Instant::now();
        loop {
            let due = last_sync + interval;
            let wait = if self.written > self.synced {
                due.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(1)
            };
            match rx.recv_timeout(wait) {
                Ok(chunk) => {
                    self.take(chunk, spare);
                    // Take whatever else is queued before syncing (group commit).
                    while let Ok(more) = rx.try_recv() {
                        self.take(more, spare);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.sync();
                    return;
                }
            }
            let now = Instant::now();
            if self.written > self.synced && now >= last_sync + interval {
                // Commits start at most once per interval (not once per interval
                // plus the time a sync takes).
                last_sync = now;
                self.sync();
            }
        }
    }

    fn take(&mut self, chunk: Chunk, spare: &Sender<Vec<u8>>) {
        match chunk {
            Chunk::Journal(mut bytes) => {
                if self.append(&bytes) {
                    self.journal_written += bytes.len() as u64;
                    self.progress
                        .written
                        .store(self.journal_written, Ordering::Release);
                }
                bytes.clear();
                let _ = spare.try_send(bytes);
            }
            Chunk::Snapshot(bytes) => {
                // Freed, not recycled: a snapshot chunk is ~1000 times a journal
                // chunk, and the spare pool would keep that capacity for good.
                self.append(&bytes);
            }
            Chunk::SnapshotStart => {
                self.sync();
                if self.rotate() {
                    self.since_first = 0;
                    self.snapshot_first = Some(self.seq);
                }
            }
            Chunk::SnapshotDone => {
                self.sync();
                if let Some(first) = self.snapshot_first.take() {
                    self.delete_before(first);
                }
            }
        }
    }

    /// Close the segment and open the next one; false on failure.
    fn rotate(&mut self) -> bool {
        if self.progress.failed() {
            return false;
        }
        match segment::create(&self.dir, self.generation, self.seq + 1) {
            Ok((file, file_bytes)) => {
                self.file = file;
                self.seq += 1;
                self.segment_bytes = segment::HEADER_BYTES as u64;
                self.file_bytes = file_bytes;
                true
            }
            Err(e) => {
                self.fail(&format!("{e:#}"));
                false
            }
        }
    }

    /// The snapshot starting at segment `first` is durable: every older segment of
    /// the shard is redundant. Only after a successful sync (a failed store keeps all).
    fn delete_before(&mut self, first: u64) {
        if self.progress.failed() {
            return;
        }
        let result = segments(&self.dir).and_then(|found| {
            let mut removed = 0;
            for (id, path) in found {
                if id < (self.generation, first) {
                    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                    removed += len.saturating_sub(segment::HEADER_BYTES as u64);
                }
            }
            segment::sync_dir(&self.dir)?;
            Ok(removed)
        });
        match result {
            Ok(_) => {
                // What remains: the segments from `first` on, written since the start.
                self.log_bytes = self.since_first;
                self.progress
                    .log_bytes
                    .store(self.log_bytes, Ordering::Release);
                self.progress.snapshots.fetch_add(1, Ordering::AcqRel);
            }
            // Not fatal: the old segments still load correctly (last record wins).
            Err(e) => tracing::warn!("store: compaction could not delete old segments: {e:#}"),
        }
    }

    /// Append `chunk`; true when it was written.
    fn append(&mut self, chunk: &[u8]) -> bool {
        if self.progress.failed() {
            return false;
        }
        if self.segment_bytes >= segment::SEGMENT_BYTES_MAX {
            self.sync();
            if !self.rotate() {
                return false;
            }
        }
        let end = self.segment_bytes + chunk.len() as u64;
        if end > self.file_bytes {
            // A chunk at a time, not past the segment's size limit (a chunk that
            // crosses it gets exactly the room it needs).
            let room_left = segment::SEGMENT_BYTES_MAX.saturating_sub(self.file_bytes);
            let grow = (end - self.file_bytes).max(segment::ZERO_FILL_CHUNK_BYTES.min(room_left));
            match segment::zero_fill(&self.file, self.file_bytes, grow) {
                Ok(len) => {
                    self.file_bytes = len;
                    // That fdatasync also made everything written so far durable.
                    self.mark_synced();
                }
                Err(e) => {
                    self.fail(&format!(
                        "{}: zero-fill failed: {e}",
                        self.dir
                            .join(segment::file_name(self.generation, self.seq))
                            .display()
                    ));
                    return false;
                }
            }
        }
        // Positional: the bytes past the write position are the zero-filled room.
        match self.file.write_all_at(chunk, self.segment_bytes) {
            Ok(()) => {
                let n = chunk.len() as u64;
                self.written += n;
                self.segment_bytes += n;
                self.since_first += n;
                self.log_bytes += n;
                self.progress
                    .log_bytes
                    .store(self.log_bytes, Ordering::Release);
                true
            }
            Err(e) => {
                self.fail(&format!(
                    "{}: write failed: {e}",
                    self.dir
                        .join(segment::file_name(self.generation, self.seq))
                        .display()
                ));
                false
            }
        }
    }

    fn sync(&mut self) {
        if self.progress.failed() || self.written == self.synced {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => self.mark_synced(),
            Err(e) => self.fail(&format!(
                "{}: fdatasync failed: {e}",
                self.dir
                    .join(segment::file_name(self.generation, self.seq))
                    .display()
            )),
        }
    }

    fn mark_synced(&mut self) {
        if self.written > self.synced {
            self.synced = self.written;
            if self.journal_written > self.journal_synced {
                self.journal_synced = self.journal_written;
                self.progress
                    .durable
                    .store(self.journal_synced, Ordering::Release);
                (self.wake)();
            }
        }
    }

    fn fail(&mut self, message: &str) {
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        if !self.progress.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(
                "{message}: bindings are no longer persisted; sync-mode REGISTERs get no answer"
            );
        }
        (self.wake)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_durable_and_land_in_the_segment() {
        let dir = std::env::temp_dir().join(format!("sipreg-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let woken = Arc::new(AtomicU64::new(0));
        let w = Arc::clone(&woken);
        let (handle, thread) = spawn(
            dir.clone(),
            0,
            7,
            Duration::from_millis(1),
            Box::new(move || {
                w.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .unwrap();
        handle.try_send(b"hello ".to_vec()).unwrap();
        handle.try_send(b"world".to_vec()).unwrap();
        let progress = Arc::clone(handle.progress());
        drop(handle);
        thread.join().unwrap();
        assert_eq!(progress.durable(), 11);
        assert!(woken.load(Ordering::Relaxed) >= 1);
        let bytes = std::fs::read(dir.join(segment::file_name(7, 1))).unwrap();
        let records = &bytes[segment::HEADER_BYTES..];
        assert_eq!(&records[..11], b"hello world");
        assert_eq!(
            bytes.len() as u64,
            segment::HEADER_BYTES as u64 + segment::ZERO_FILL_CHUNK_BYTES,
            "the segment is pre-zeroed, not grown by each append"
        );
        assert!(records[11..].iter().all(|&b| b == 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_zeroed_room_grows_a_chunk_at_a_time_with_records_contiguous() {
        let dir = std::env::temp_dir().join(format!("sipreg-writer-grow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (handle, thread) =
            spawn(dir.clone(), 0, 3, Duration::from_millis(1), Box::new(|| {})).unwrap();
        let piece = 1 << 20;
        for i in 0..9u8 {
            let mut chunk = vec![i + 1; piece];
            while let Err(back) = handle.try_send(chunk) {
                chunk = back;
                thread::sleep(Duration::from_millis(1));
            }
        }
        let progress = Arc::clone(handle.progress());
        drop(handle);
        thread.join().unwrap();
        assert!(!progress.failed());
        assert_eq!(progress.durable(), 9 * piece as u64);
        let bytes = std::fs::read(dir.join(segment::file_name(3, 1))).unwrap();
        assert_eq!(
            bytes.len() as u64,
            segment::HEADER_BYTES as u64 + 2 * segment::ZERO_FILL_CHUNK_BYTES
        );
        let records = &bytes[segment::HEADER_BYTES..];
        for (i, part) in records[..9 * piece].chunks(piece).enumerate() {
            assert!(part.iter().all(|&b| usize::from(b) == i + 1), "piece {i}");
        }
        assert!(records[9 * piece..].iter().all(|&b| b == 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_rotates_then_deletes_the_older_segments_and_is_not_journal() {
        let dir = std::env::temp_dir().join(format!("sipreg-writer-snap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The start-up snapshot of an earlier load, and a leftover older generation.
        segment::write_whole(&dir, 5, 0, b"start-up").unwrap();
        segment::write_whole(&dir, 4, 9, b"older").unwrap();
        let (handle, thread) =
            spawn(dir.clone(), 0, 5, Duration::from_millis(1), Box::new(|| {})).unwrap();
        let progress = Arc::clone(handle.progress());
        assert_eq!(progress.log_bytes(), 8 + 5, "existing segments are counted");
        handle.try_send(b"aaa".to_vec()).unwrap();
        handle.try_send_chunk(Chunk::SnapshotStart).unwrap();
        handle
            .try_send_chunk(Chunk::Snapshot(b"ssss".to_vec()))
            .unwrap();
        handle.try_send(b"bb".to_vec()).unwrap();
        // Before "done", every segment is still there (a crash here loads them all).
        let deadline = Instant::now() + Duration::from_secs(5);
        while progress.durable() < 5 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                segment::file_name(4, 9),
                segment::file_name(5, 0),
                segment::file_name(5, 1),
                segment::file_name(5, 2)
            ]
        );
        handle.try_send_chunk(Chunk::SnapshotDone).unwrap();
        handle.try_send(b"c".to_vec()).unwrap();
        drop(handle);
        thread.join().unwrap();
        assert!(!progress.failed());
        assert_eq!(progress.snapshots(), 1);
        assert_eq!(
            progress.durable(),
            6,
            "snapshot bytes are not journal bytes"
        );
        assert_eq!(progress.written(), 6);
        assert_eq!(
            progress.log_bytes(),
            4 + 2 + 1,
            "what the kept segment holds"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [segment::file_name(5, 2)]);
        let old = std::fs::read(dir.join(segment::file_name(5, 2))).unwrap();
        assert_eq!(&old[segment::HEADER_BYTES..][..8], b"ssssbbc\0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
