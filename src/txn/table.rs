//! The Timer J cache: a FIFO byte ring of (key, final response) records plus a hash index.
//!
//! Why a ring: every transaction lives exactly `timer_j_ms`, so insertion order is expiry
//! order. Expiry and cap eviction both pop the oldest record, and one preallocated byte
//! ring (keys and responses), one preallocated record queue and one preallocated hash
//! table hold everything: no allocation per transaction, and memory never grows past the
//! caps. A full cache evicts the oldest record early and counts it; a retransmission of an
//! evicted transaction is then processed again, which the registrar's Call-ID/CSeq checks
//! (RFC 3261 §10.3 step 7) already make harmless.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::VecDeque;
use std::hash::BuildHasher;

use super::key::{TXN_KEY_BYTES_MAX, TxnKey};

/// Default transactions cached per shard (the registrar's `txn_cache_max`).
pub const TXN_ENTRIES_DEFAULT: usize = 262_144;
/// Ring bytes budgeted per cached transaction by [`TxnLimits::for_entries`]: an encoded
/// key (~100 B) plus a REGISTER 200 OK with a few contacts (~500 B), rounded up.
pub const TXN_RECORD_BYTES_TYPICAL: usize = 640;
/// Hard ceiling for [`TxnLimits::entries_max`].
pub const TXN_ENTRIES_MAX: usize = 1 << 24;
/// Hard ceiling for [`TxnLimits::bytes_max`] (record offsets are `u32`).
pub const TXN_RING_BYTES_MAX: usize = 1 << 31;
/// Timer J for UDP: 64·T1 with T1 = 500 ms (RFC 3261 §17.2.2, table 4).
pub const TIMER_J_UDP_MS: u64 = 64 * 500;

/// Bounds of one shard's transaction cache.
///
/// Memory per shard at the defaults, preallocated at `new` (the ring's pages become
/// resident as it fills):
/// ```text
///   262_144 × 640 B   = 160.0 MiB  byte ring: encoded key + cached response per record
/// + 262_144 × 32 B    =   8.0 MiB  record queue: offset, lengths, expiry, hash per record
/// + 1_048_576 × 9 B   =   9.0 MiB  hash index: u64 sequence + 1 control byte per bucket
///                                  (buckets: next power of two above 2 × 262_144 × 8/7)
/// + 4 KiB                          key scratch (TXN_KEY_BYTES_MAX)
/// ≈ 177.0 MiB
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnLimits {
    /// Transactions cached at most; the oldest is evicted (and counted) past it. Clamped
    /// to [`TXN_ENTRIES_MAX`]; 0 disables the cache.
    pub entries_max: usize,
    /// Size of the byte ring holding keys and responses, in bytes; the oldest records are
    /// evicted (and counted) when a new one does not fit. Clamped to [`TXN_RING_BYTES_MAX`].
    pub bytes_max: usize,
    /// Timer J: how long a final response is replayed, in ms (0 caches nothing useful:
    /// reliable transports need no cache, RFC 3261 §17.2.2).
    pub timer_j_ms: u64,
}

impl TxnLimits {
    /// Limits for `entries_max` transactions with [`TXN_RECORD_BYTES_TYPICAL`] ring bytes each.
    pub const fn for_entries(entries_max: usize, timer_j_ms: u64) -> Self {
        Self {
            entries_max,
            bytes_max: entries_max.saturating_mul(TXN_RECORD_BYTES_TYPICAL),
            timer_j_ms,
        }
    }
}

impl Default for TxnLimits {
    fn default() -> Self {
        Self::for_entries(TXN_ENTRIES_DEFAULT, TIMER_J_UDP_MS)
    }
}

/// Why a response was not cached. The table is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnError {
    /// The encoded key is longer than [`TXN_KEY_BYTES_MAX`].
    KeyTooLong,
    /// Key plus response do not fit in the byte ring even when empty.
    ResponseTooLarge,
    /// `entries_max` or `bytes_max` is 0.
    Disabled,
}

impl TxnError {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeyTooLong => "transaction key too long",
            Self::ResponseTooLarge => "response larger than the transaction cache",
            Self::Disabled => "transaction cache disabled",
        }
    }
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for TxnError {}

/// One cached transaction: where its bytes are in the ring and when it ends.
#[derive(Clone, Copy, Debug)]
struct Record {
    expires_ms: u64,
    hash: u64,
    off: u32,
    resp_len: u32,
    key_len: u16,
}
const _: () = assert!(size_of::<Record>() <= 32);
const _: () = assert!(TXN_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(TXN_RING_BYTES_MAX <= u32::MAX as usize);

/// One shard's non-INVITE server transactions (RFC 3261 §17.2.2): final responses kept
/// for Timer J and replayed byte for byte to retransmissions.
///
/// Call order: [`lookup`](Self::lookup) each request; on a hit send the bytes and stop;
/// on a miss process it and [`insert`](Self::insert) the final response. Call
/// [`expire`](Self::expire) when [`next_expiry_ms`](Self::next_expiry_ms) is due
/// (spurious calls are no-ops).
pub struct TxnTable {
    limits: TxnLimits,
    hasher: DefaultHashBuilder,
    /// Hash of the encoded key → record sequence number (record index + `first_seq`).
    map: HashTable<u64>,
    records: VecDeque<Record>,
    /// Sequence number of `records[0]`.
    first_seq: u64,
    ring: Box<[u8]>,
    /// End of the newest record in `ring` (next write position when there is room).
    tail: usize,
    scratch: Vec<u8>,
    evicted_early: u64,
}

impl std::fmt::Debug for TxnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnTable")
            .field("limits", &self.limits)
            .field("len", &self.map.len())
            .field("records", &self.records.len())
            .field("evicted_early", &self.evicted_early)
            .finish_non_exhaustive()
    }
}

/// Does record `seq` hold the key in `scratch`?
fn matches(
    records: &VecDeque<Record>,
    ring: &[u8],
    first_seq: u64,
    key: &[u8],
    seq: u64,
    hash: u64,
) -> bool {
    let Some(r) = seq
        .checked_sub(first_seq)
        .and_then(|i| records.get(i as usize))
    else {
        return false;
    };
    let start = r.off as usize;
    r.hash == hash && ring.get(start..start + usize::from(r.key_len)) == Some(key)
}

impl TxnTable {
    /// An empty cache with all its memory reserved (see [`TxnLimits`] for the budget).
    pub fn new(limits: TxnLimits) -> Self {
        let limits = TxnLimits {
            entries_max: limits.entries_max.min(TXN_ENTRIES_MAX),
            bytes_max: limits.bytes_max.min(TXN_RING_BYTES_MAX),
            timer_j_ms: limits.timer_j_ms,
        };
        Self {
            limits,
            hasher: DefaultHashBuilder::default(),
            // Twice the entries: removals leave tombstones, and with room for only
            // `entries_max` the index grew (a rehash of every entry) the first time the
            // cache filled under load (perf/RESULTS.md, tests/alloc.rs).
            map: HashTable::with_capacity(limits.entries_max.saturating_mul(2)),
            records: VecDeque::with_capacity(limits.entries_max),
            first_seq: 0,
            // Zeroed allocation: the kernel maps pages on first write.
            ring: vec![0u8; limits.bytes_max].into_boxed_slice(),
            tail: 0,
            scratch: Vec::with_capacity(TXN_KEY_BYTES_MAX),
            evicted_early: 0,
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &TxnLimits {
        &self.limits
    }

    /// The cached final response of the transaction `key` belongs to, if it is still
    /// within Timer J at `now_ms`.
    pub fn lookup(&mut self, key: &TxnKey<'_>, now_ms: u64) -> Option<&[u8]> {
        key.encode(&mut self.scratch).ok()?;
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        let Self {
            map,
            records,
            ring,
            first_seq,
            scratch,
            ..
        } = self;
        let seq = *map.find(hash, |&s| {
            matches(records, ring, *first_seq, scratch, s, hash)
        })?;
        let r = records.get(usize::try_from(seq - *first_seq).ok()?)?;
        if r.expires_ms <= now_ms {
            return None;
        }
        let start = r.off as usize + usize::from(r.key_len);
        ring.get(start..start + r.resp_len as usize)
    }

    /// Caches `response` as the final response of `key` until `now_ms + timer_j_ms`,
    /// evicting the oldest records if a cap is reached (counted by
    /// [`evicted_early`](Self::evicted_early) when they were still within Timer J). A
    /// previous record with the same key is superseded.
    pub fn insert(
        &mut self,
        key: &TxnKey<'_>,
        now_ms: u64,
        response: &[u8],
    ) -> Result<(), TxnError> {
        if self.limits.entries_max == 0 || self.ring.is_empty() {
            return Err(TxnError::Disabled);
        }
        key.encode(&mut self.scratch)
            .map_err(|_| TxnError::KeyTooLong)?;
        let key_len = self.scratch.len();
        let rec_len = key_len + response.len();
        let resp_len = u32::try_from(response.len()).map_err(|_| TxnError::ResponseTooLarge)?;
        if rec_len > self.ring.len() {
            return Err(TxnError::ResponseTooLarge);
        }
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        {
            let Self {
                map,
                records,
                ring,
                first_seq,
                scratch,
                ..
            } = self;
            if let Ok(e) = map.find_entry(hash, |&s| {
                matches(records, ring, *first_seq, scratch, s, hash)
            }) {
                e.remove();
            }
        }
        while self.records.len() >= self.limits.entries_max {
            self.pop_front(now_ms);
        }
        let off = loop {
            if let Some(off) = self.space_for(rec_len) {
                break off;
            }
            if self.records.is_empty() {
                // Unreachable: an empty ring fits any record ≤ its size.
                return Err(TxnError::ResponseTooLarge);
            }
            self.pop_front(now_ms);
        };
        if let Some(dst) = self.ring.get_mut(off..off + rec_len) {
            let (k, r) = dst.split_at_mut(key_len);
            k.copy_from_slice(&self.scratch);
            r.copy_from_slice(response);
        }
        self.tail = off + rec_len;
        let seq = self.first_seq + self.records.len() as u64;
        self.records.push_back(Record {
            expires_ms: now_ms.saturating_add(self.limits.timer_j_ms),
            hash,
            // `off` < ring size ≤ TXN_RING_BYTES_MAX; `key_len` ≤ TXN_KEY_BYTES_MAX.
            off: off as u32,
            resp_len,
            key_len: key_len as u16,
        });
        let Self {
            map,
            records,
            first_seq,
            ..
        } = self;
        map.insert_unique(hash, seq, |&s| {
            s.checked_sub(*first_seq)
                .and_then(|i| records.get(i as usize))
                .map_or(0, |r| r.hash)
        });
        debug_assert!(self.map.len() <= self.records.len());
        Ok(())
    }

    /// Where a record of `len` bytes fits without overwriting a live one, if anywhere.
    /// Records are contiguous; a record that does not fit before the end of the ring
    /// starts again at 0 (the gap is dead until the ring wraps past it).
    fn space_for(&mut self, len: usize) -> Option<usize> {
        let cap = self.ring.len();
        let Some(front) = self.records.front() else {
            self.tail = 0;
            return (len <= cap).then_some(0);
        };
        let (head, tail) = (front.off as usize, self.tail);
        if tail > head {
            // Live bytes are head..tail: room after tail, else at 0 up to head.
            if cap - tail >= len {
                Some(tail)
            } else if head >= len {
                Some(0)
            } else {
                None
            }
        } else {
            // Wrapped: live bytes are head..cap and 0..tail.
            (head - tail >= len).then_some(tail)
        }
    }

    fn pop_front(&mut self, now_ms: u64) -> bool {
        let Some(r) = self.records.pop_front() else {
            return false;
        };
        let seq = self.first_seq;
        self.first_seq += 1;
        if self.records.is_empty() {
            self.tail = 0;
        }
        match self.map.find_entry(r.hash, |&s| s == seq) {
            Ok(e) => {
                e.remove();
                if r.expires_ms > now_ms {
                    self.evicted_early += 1;
                }
                true
            }
            // Superseded by a newer record with the same key.
            Err(_) => false,
        }
    }

    /// Ends the transactions whose Timer J fired at or before `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        while self.records.front().is_some_and(|r| r.expires_ms <= now_ms) {
            n += usize::from(self.pop_front(now_ms));
        }
        n
    }

    /// When the oldest transaction ends, ms since the Unix epoch.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.records.front().map(|r| r.expires_ms)
    }

    /// Transactions cached (some may be past Timer J until `expire` runs).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks the ring layout: records are disjoint, in ring order with at most one wrap
    /// to 0, the newest ends at `tail`, and every index entry names a record with its hash.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut wrapped = false;
        let mut prev_end: Option<usize> = None;
        let head = self.records.front().map_or(0, |r| r.off as usize);
        for r in &self.records {
            let (off, end) = (
                r.off as usize,
                r.off as usize + usize::from(r.key_len) + r.resp_len as usize,
            );
            assert!(end <= self.ring.len() && end > off);
            if let Some(p) = prev_end {
                if off < p {
                    assert!(!wrapped && off == 0, "second wrap or overlap at {off}");
                    wrapped = true;
                } else {
                    assert!(off >= p);
                }
            }
            if wrapped {
                assert!(
                    end <= head,
                    "wrapped record {off}..{end} overlaps the oldest at {head}"
                );
            }
            prev_end = Some(end);
        }
        assert_eq!(prev_end.unwrap_or(0), self.tail);
        for &seq in &self.map {
            let r = self.records[(seq - self.first_seq) as usize];
            assert_eq!(
                self.hasher
                    .hash_one(&self.ring[r.off as usize..][..usize::from(r.key_len)]),
                r.hash
            );
        }
    }

    /// Transactions pushed out by `entries_max`/`bytes_max` before their Timer J fired.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}
