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
//! A write or sync error is logged and counted, and the durable position stops
//! moving: in sync mode no 200 for a change that may not be kept is ever released.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::segment;

/// Journal chunks in flight per shard, at most (the core keeps accumulating while
/// the channel is full; nothing is dropped).
pub const JOURNAL_CHANNEL_DEPTH: usize = 256;

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
}

/// The core's end of a writer.
#[derive(Debug)]
pub struct WriterHandle {
    tx: Sender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    progress: Arc<Progress>,
}

impl WriterHandle {
    /// Hand `chunk` (whole records) to the writer; on a full channel it comes back.
    pub fn try_send(&self, chunk: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.tx.try_send(chunk) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => Err(c),
        }
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
    let (file, file_bytes) = segment::create(&dir, generation, 1)?;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(JOURNAL_CHANNEL_DEPTH);
    let (spare_tx, spare) = crossbeam_channel::bounded::<Vec<u8>>(JOURNAL_CHANNEL_DEPTH);
    let progress = Arc::new(Progress::default());
    let mut writer = Writer {
        dir,
        generation,
        seq: 1,
        file,
        segment_bytes: segment::HEADER_BYTES as u64,
        file_bytes,
        written: 0,
        synced: 0,
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
    written: u64,
    synced: u64,
    progress: Arc<Progress>,
    wake: Box<dyn Fn() + Send>,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Vec<u8>>, spare: &Sender<Vec<u8>>, interval: Duration) {
        let mut last_sync = Instant::now();
        loop {
            let due = last_sync + interval;
            let wait = if self.written > self.synced {
                due.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(1)
            };
            match rx.recv_timeout(wait) {
                Ok(mut chunk) => {
                    self.append(&chunk);
                    // Take whatever else is queued before syncing (group commit).
                    chunk.clear();
                    let _ = spare.try_send(chunk);
                    while let Ok(mut more) = rx.try_recv() {
                        self.append(&more);
                        more.clear();
                        let _ = spare.try_send(more);
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

    fn append(&mut self, chunk: &[u8]) {
        if self.progress.failed() {
            return;
        }
        if self.segment_bytes >= segment::SEGMENT_BYTES_MAX {
            self.sync();
            match segment::create(&self.dir, self.generation, self.seq + 1) {
                Ok((file, file_bytes)) => {
                    self.file = file;
                    self.seq += 1;
                    self.segment_bytes = segment::HEADER_BYTES as u64;
                    self.file_bytes = file_bytes;
                }
                Err(e) => return self.fail(&format!("{e:#}")),
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
                    return self.fail(&format!(
                        "{}: zero-fill failed: {e}",
                        self.dir
                            .join(segment::file_name(self.generation, self.seq))
                            .display()
                    ));
                }
            }
        }
        // Positional: the bytes past the write position are the zero-filled room.
        match self.file.write_all_at(chunk, self.segment_bytes) {
            Ok(()) => {
                self.written += chunk.len() as u64;
                self.segment_bytes += chunk.len() as u64;
                self.progress.written.store(self.written, Ordering::Release);
            }
            Err(e) => self.fail(&format!(
                "{}: write failed: {e}",
                self.dir
                    .join(segment::file_name(self.generation, self.seq))
                    .display()
            )),
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
            self.progress.durable.store(self.synced, Ordering::Release);
            (self.wake)();
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
}
