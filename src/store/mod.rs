//! Persistence of the location table: one append-only log per shard (issue 6).
//!
//! Why a hand-written log: measured on this machine (see the "Persistence" section of
//! `perf/RESULTS.md`, and the shared notes `../shared/PERSISTENCE-NOTES.md`), a CRC-framed per-shard
//! log costs ~1 µs of CPU per write and keeps up with 400k writes/s per shard, where
//! fjall costs 4-6 µs with 100-500 ms p99 stalls and redb saturates at ~25k writes/s.
//!
//! How it fits the thread-per-core design:
//! - The registrar (sans-IO) appends one framed [`record`] per committed AOR change to
//!   a journal buffer it owns; no I/O on the core.
//! - The runtime hands the bytes to a [`writer`] thread per shard over a bounded
//!   channel; the writer `write`s them at once (a kill -9 loses nothing handed over)
//!   and `fdatasync`s at most every `--commit-interval-ms` (group commit), then
//!   publishes the durable journal position. A glommio core never blocks on the disk.
//! - At start-up [`load`] reads every shard directory (the old shard count may differ),
//!   keeps the last record per AOR, drops expired bindings, re-partitions by the
//!   registrar's AOR hash, writes one compacted snapshot segment per current shard and
//!   deletes the old segments.
//!
//! While running, [`compact`] bounds the log: past a multiple of the live size, the
//! core writes a snapshot into new segments through the same ordered channel and the
//! writer then deletes the older ones.
//!
//! Segments are pre-zeroed a few MiB ahead of the write position by the writer
//! ([`segment::zero_fill`]) so that a commit's `fdatasync` never changes the file's
//! size or block map (0.15 ms instead of 3-4 ms here); zeros after the last record
//! are the end of the log at load.
//!
//! Layout: `DATA_DIR/shard-<i>/seg-<generation>-<seq>.log`. Each start-up is a new
//! generation; records of a later (generation, seq) win, and within one generation an
//! AOR lives in exactly one shard, so the order across directories never matters.

pub mod compact;
pub mod load;
pub mod record;
pub mod segment;
pub mod writer;

use std::path::PathBuf;

/// When a REGISTER is answered relative to its record reaching the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Answer at once; the record is written to the OS at once and made durable
    /// within the commit interval (a crash of the machine loses at most that).
    Async,
    /// Answer only once the record is durable (write-through, group commit).
    Sync,
}

/// Where and how the location table is persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistConfig {
    /// The data directory (one `shard-<i>` folder per shard).
    pub data_dir: PathBuf,
    /// Reply before or after the record is durable.
    pub durability: Durability,
    /// Group-commit interval: at most one `fdatasync` per shard this often, in ms.
    pub commit_interval_ms: u64,
    /// Online compaction starts once a shard's log exceeds this (and
    /// [`compact::COMPACT_RATIO`] × its live size), in bytes.
    pub compact_min_bytes: u64,
}
