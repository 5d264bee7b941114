//! The Timer J cache: a FIFO byte ring of (key, final response) records plus a hash index.
//!
//! Why a ring: every transaction lives exactly `timer_j_ms`, so insertion order is expiry
//! order. Expiry and cap eviction both pop the oldest record, and one preallocated byte
//! ring (keys and responses), one preallocated record queue and one preallocated hash
//! index ([`super::index`]) hold everything: no allocation per transaction, and memory
//! never grows past the caps. Popping a record does not touch the index (its entry dies
//! by sequence number), so a full cache costs one index miss per request, not three. A full cache evicts the oldest record early and counts it; a retransmission of an
//! evicted transaction is then processed again, which the registrar's Call-ID/CSeq checks
//! (RFC 3261 §10.3 step 7) already make harmless.

use std::collections::VecDeque;

use super::index::{self, EMPTY, Index};
use super::key::{EncodedKey, TXN_KEY_BYTES_MAX};

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
/// + 65_536 × 128 B    =   8.0 MiB  hash index: 16 u64 entries per bucket, 4 per record
/// ≈ 176.0 MiB
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

/// Why a response was not cached. The table is unchanged. (A key longer than
/// [`TXN_KEY_BYTES_MAX`] never gets this far: it has no [`EncodedKey`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnError {
    /// Key plus response do not fit in the byte ring even when empty.
    ResponseTooLarge,
    /// `entries_max` or `bytes_max` is 0.
    Disabled,
}

impl TxnError {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
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
    /// An index entry names this record. False once a newer record of the same key took
    /// its entry (superseded) or a full bucket pushed the entry out (counted then).
    indexed: bool,
}
const _: () = assert!(size_of::<Record>() <= 32);
const _: () = assert!(TXN_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(TXN_RING_BYTES_MAX <= u32::MAX as usize);

/// One shard's non-INVITE server transactions (RFC 3261 §17.2.2): final responses kept
/// for Timer J and replayed byte for byte to retransmissions.
///
/// Call order: encode each request's key once ([`TxnKey::encode_in`](super::TxnKey::encode_in)),
/// [`lookup`](Self::lookup) it; on a hit send the bytes and stop; on a miss process the
/// request and [`insert`](Self::insert) its final response under the same key. Call
/// [`expire`](Self::expire) when [`next_expiry_ms`](Self::next_expiry_ms) is due
/// (spurious calls are no-ops).
pub struct TxnTable {
    limits: TxnLimits,
    /// Hash of the encoded key → record sequence number ([`super::index`]).
    index: Index,
    records: VecDeque<Record>,
    /// Sequence number of `records[0]`.
    first_seq: u64,
    /// Records with `indexed` set: the transactions a retransmission can find.
    indexed: usize,
    ring: Box<[u8]>,
    /// End of the newest record in `ring` (next write position when there is room).
    tail: usize,
    /// The last lookup's key hash and find, so that the insert after a miss does not
    /// search again; cleared by anything that changes the table.
    last_lookup: Option<LastLookup>,
    evicted_early: u64,
}

/// What [`TxnTable::lookup`] found for the key of `hash`.
#[derive(Clone, Copy, Debug)]
struct LastLookup {
    hash: u64,
    found: Option<(usize, usize)>,
}

impl std::fmt::Debug for TxnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnTable")
            .field("limits", &self.limits)
            .field("len", &self.indexed)
            .field("records", &self.records.len())
            .field("index_bytes", &self.index.bytes())
            .field("evicted_early", &self.evicted_early)
            .finish_non_exhaustive()
    }
}

/// The slot of `bucket` whose entry names the live, indexed record of `key`, and that
/// record's position in `records`.
fn find_in(
    bucket: &index::Bucket,
    records: &VecDeque<Record>,
    ring: &[u8],
    first_seq: u64,
    key: &[u8],
    hash: u64,
) -> Option<(usize, usize)> {
    let tag = index::tag_of(hash);
    bucket.0.iter().enumerate().find_map(|(slot, &e)| {
        if e == EMPTY || index::entry_tag(e) != tag {
            return None;
        }
        let pos = index::entry_pos(e, first_seq);
        let r = records.get(pos)?;
        let start = r.off as usize;
        (r.indexed
            && r.hash == hash
            && ring.get(start..start + usize::from(r.key_len)) == Some(key))
        .then_some((slot, pos))
    })
}

impl TxnTable {
    /// An empty cache with everything preallocated (see [`TxnLimits`] for the budget).
    pub fn new(limits: TxnLimits) -> Self {
        let limits = TxnLimits {
            entries_max: limits.entries_max.min(TXN_ENTRIES_MAX),
            bytes_max: limits.bytes_max.min(TXN_RING_BYTES_MAX),
            timer_j_ms: limits.timer_j_ms,
        };
        Self {
            limits,
            index: Index::new(limits.entries_max),
            records: VecDeque::with_capacity(limits.entries_max),
            first_seq: 0,
            indexed: 0,
            // Zeroed allocation: the kernel maps pages on first write.
            ring: vec![0u8; limits.bytes_max].into_boxed_slice(),
            tail: 0,
            last_lookup: None,
            evicted_early: 0,
        }
    }

    /// A cache whose index has exactly `buckets` buckets, for tests that overfill one.
    #[cfg(test)]
    pub(crate) fn with_index_buckets(limits: TxnLimits, buckets: usize) -> Self {
        Self {
            index: Index::with_buckets(buckets),
            ..Self::new(limits)
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &TxnLimits {
        &self.limits
    }

    /// The cached final response of the transaction `key` belongs to, if it is still
    /// within Timer J at `now_ms` (RFC 3261 §17.2.2: a retransmission gets it again).
    /// What it found is kept for the [`insert`](Self::insert) that follows a miss.
    pub fn lookup(&mut self, key: &EncodedKey<'_>, now_ms: u64) -> Option<&[u8]> {
        let found = self.find(key.bytes, key.hash);
        self.last_lookup = Some(LastLookup {
            hash: key.hash,
            found,
        });
        self.response(found?.1, now_ms)
    }

    /// Where the index names the live, indexed record of `key` (slot, record position).
    fn find(&self, key: &[u8], hash: u64) -> Option<(usize, usize)> {
        let bucket = self.index.bucket(hash)?;
        find_in(bucket, &self.records, &self.ring, self.first_seq, key, hash)
    }

    /// The response of record `pos`, if its Timer J has not fired at `now_ms`.
    fn response(&self, pos: usize, now_ms: u64) -> Option<&[u8]> {
        let r = self.records.get(pos)?;
        if r.expires_ms <= now_ms {
            return None;
        }
        let start = r.off as usize + usize::from(r.key_len);
        self.ring.get(start..start + r.resp_len as usize)
    }

    /// Reads the index bucket of `hash` (its first and last entry: both cache lines),
    /// so that the lookup that follows finds it in cache. The value means nothing; the
    /// caller only keeps the load from being optimised away.
    pub fn touch(&self, hash: u64) -> u64 {
        self.index
            .bucket(hash)
            .map_or(0, |b| b.0[0] ^ b.0[index::BUCKET_ENTRIES - 1])
    }

    /// Caches `response` as the final response of `key` from `now_ms` for Timer J,
    /// superseding an earlier one for the same key and evicting the oldest records
    /// (counted) when a cap is reached. After a [`lookup`](Self::lookup) of the same key
    /// that missed, with no change to the table since, the key is not searched again;
    /// otherwise it is, so the response is cached either way (a retransmission then gets
    /// it byte for byte, RFC 3261 §17.2.2).
    pub fn insert(
        &mut self,
        key: &EncodedKey<'_>,
        now_ms: u64,
        response: &[u8],
    ) -> Result<(), TxnError> {
        let found = match self.last_lookup.take() {
            Some(LastLookup { hash, found }) if hash == key.hash => found,
            _ => self.find(key.bytes, key.hash),
        };
        self.insert_record(key.bytes, key.hash, found, now_ms, response)
    }

    /// The body of [`insert`](Self::insert): `key` is the flat key, `superseded` is where the index
    /// names a record of the same key, if anywhere.
    fn insert_record(
        &mut self,
        key: &[u8],
        hash: u64,
        superseded: Option<(usize, usize)>,
        now_ms: u64,
        response: &[u8],
    ) -> Result<(), TxnError> {
        self.last_lookup = None;
        if self.limits.entries_max == 0 || self.ring.is_empty() {
            return Err(TxnError::Disabled);
        }
        let key_len = key.len();
        let rec_len = key_len + response.len();
        let resp_len = u32::try_from(response.len()).map_err(|_| TxnError::ResponseTooLarge)?;
        if rec_len > self.ring.len() {
            return Err(TxnError::ResponseTooLarge);
        }
        // A record for the same key loses its entry to the new one.
        let mut reuse = None;
        if let Some((slot, pos)) = superseded {
            if let Some(r) = self.records.get_mut(pos) {
                r.indexed = false;
                self.indexed -= 1;
                reuse = Some(slot);
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
            k.copy_from_slice(key);
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
            indexed: true,
        });
        self.indexed += 1;
        let slot = match reuse {
            Some(slot) => slot,
            None => self.free_slot(hash, now_ms),
        };
        if let Some(e) = self.index.bucket_mut(hash).and_then(|b| b.0.get_mut(slot)) {
            *e = index::entry(hash, seq);
        }
        debug_assert!(self.indexed <= self.records.len());
        Ok(())
    }

    /// A slot of `hash`'s bucket for a new entry: an empty one, else one whose record has
    /// left the ring, else (all 16 live, rare by the index sizing) the oldest, whose
    /// record then loses its entry and counts as evicted early.
    fn free_slot(&mut self, hash: u64, now_ms: u64) -> usize {
        let (first_seq, live) = (self.first_seq, self.records.len());
        let Some(bucket) = self.index.bucket(hash) else {
            return 0;
        };
        if let Some(slot) = bucket
            .0
            .iter()
            .position(|&e| e == EMPTY || index::entry_pos(e, first_seq) >= live)
        {
            return slot;
        }
        let (slot, e, pos) = bucket
            .0
            .iter()
            .enumerate()
            .map(|(slot, &e)| (slot, e, index::entry_pos(e, first_seq)))
            .min_by_key(|&(_, _, pos)| pos)
            .unwrap_or((0, EMPTY, 0));
        if let Some(r) = self.records.get_mut(pos) {
            if r.indexed && index::tag_of(r.hash) == index::entry_tag(e) {
                r.indexed = false;
                self.indexed -= 1;
                if r.expires_ms > now_ms {
                    self.evicted_early += 1;
                }
            }
        }
        slot
    }

    /// Where a record of `len` bytes fits without overwriting a live one, if anywhere.
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

    /// Drops the oldest record. True when it was a transaction a lookup could still find
    /// (not superseded); counted as an early eviction when its Timer J had not fired. Its
    /// index entry is left in place: the sequence number makes it dead.
    fn pop_front(&mut self, now_ms: u64) -> bool {
        self.last_lookup = None;
        let Some(r) = self.records.pop_front() else {
            return false;
        };
        self.first_seq += 1;
        if self.records.is_empty() {
            self.tail = 0;
        }
        if !r.indexed {
            return false;
        }
        self.indexed -= 1;
        if r.expires_ms > now_ms {
            self.evicted_early += 1;
        }
        true
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
        self.indexed
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.indexed == 0
    }

    /// Checks the ring layout (records are disjoint, in ring order with at most one wrap
    /// to 0, the newest ends at `tail`) and the index (exactly one entry names each
    /// indexed record, with the hash of its key bytes).
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
        let mut named = vec![0u32; self.records.len()];
        for (b, bucket) in self.index.buckets().iter().enumerate() {
            for &e in &bucket.0 {
                let pos = index::entry_pos(e, self.first_seq);
                let Some(r) = self.records.get(pos).filter(|_| e != EMPTY) else {
                    continue;
                };
                if !r.indexed {
                    continue;
                }
                assert_eq!(index::entry_tag(e), index::tag_of(r.hash));
                assert_eq!(r.hash as usize & (self.index.buckets().len() - 1), b);
                assert_eq!(
                    crate::hash::seeded_hash(
                        &self.ring[r.off as usize..][..usize::from(r.key_len)]
                    ),
                    r.hash
                );
                named[pos] += 1;
            }
        }
        for (r, n) in self.records.iter().zip(&named) {
            assert_eq!(*n, u32::from(r.indexed), "{r:?}");
        }
        assert_eq!(
            self.records.iter().filter(|r| r.indexed).count(),
            self.indexed
        );
    }

    /// Transactions pushed out by `entries_max`/`bytes_max` before their Timer J fired.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}
