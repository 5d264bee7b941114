//! The transaction cache's hash index: key hash → record sequence number, in cache-line
//! buckets that are never cleaned up.
//!
//! Why not a general hash map: at carrier rates the cache is always full, so every new
//! transaction evicts the oldest, and with a map that eviction is a removal at a random
//! place (a cache miss on a table of megabytes) on top of the lookup's own miss. Here an
//! entry names a record by its sequence number, and whether that record is still in the
//! ring is a subtraction (`seq − first_seq < len`), so popping the oldest record touches
//! nothing in the index: its entry simply becomes dead and is overwritten by a later
//! insert into the same bucket. A lookup reads one 128-byte bucket (two adjacent cache
//! lines, which the hardware fetches together), an insert writes into the bucket the
//! lookup just read.
//!
//! An entry is a `u64`: the high 32 bits are a tag taken from the key hash (low bit forced
//! to 1, so no live entry is 0), the low 32 bits the record's sequence number modulo 2³².
//! The table this serves checks every candidate against the record's full hash and key
//! bytes, so a tag collision or a sequence number that wrapped onto another record costs a
//! comparison, never a wrong answer.
//!
//! Sizing: [`SLOTS_PER_ENTRY`] slots per cached transaction keep buckets a quarter full
//! at the cap, so a bucket holds 16 live entries (and the insert must push one out) with
//! a probability below 10⁻⁵ per insert at a full cache; that case is counted by the table
//! as an early eviction.

/// Entries per bucket: 16 × 8 bytes = 128 bytes, two cache lines.
pub(crate) const BUCKET_ENTRIES: usize = 16;

/// Index slots per cached transaction (`entries_max`), in entries.
pub(crate) const SLOTS_PER_ENTRY: usize = 4;

/// One bucket: two cache lines, aligned so that it never straddles a third.
#[derive(Clone, Copy, Default)]
#[repr(align(128))]
pub(crate) struct Bucket(pub(crate) [u64; BUCKET_ENTRIES]);

const _: () = assert!(size_of::<Bucket>() == 128);

/// The empty entry.
pub(crate) const EMPTY: u64 = 0;

/// The tag of a key hash: its high half with the low bit set (never 0).
pub(crate) fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32 | 1
}

/// The entry naming record `seq` for a key with `hash`.
pub(crate) fn entry(hash: u64, seq: u64) -> u64 {
    (u64::from(tag_of(hash)) << 32) | (seq & 0xFFFF_FFFF)
}

/// The tag of an entry.
pub(crate) fn entry_tag(e: u64) -> u32 {
    (e >> 32) as u32
}

/// The sequence number of an entry, as an offset from `first_seq` (modulo 2³²).
pub(crate) fn entry_pos(e: u64, first_seq: u64) -> usize {
    (e as u32).wrapping_sub(first_seq as u32) as usize
}

/// The bucket array. Its length is a power of two (or zero: the cache is disabled).
pub(crate) struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
}

impl Index {
    /// Room for `entries_max` live entries at a quarter load.
    pub(crate) fn new(entries_max: usize) -> Self {
        if entries_max == 0 {
            return Self {
                buckets: Box::default(),
                mask: 0,
            };
        }
        let n = (entries_max.saturating_mul(SLOTS_PER_ENTRY) / BUCKET_ENTRIES)
            .max(1)
            .next_power_of_two();
        Self {
            // Zeroed allocation: pages become resident as the cache fills.
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// An index of exactly `buckets` buckets (a power of two), for tests that fill one.
    #[cfg(test)]
    pub(crate) fn with_buckets(buckets: usize) -> Self {
        assert!(buckets.is_power_of_two());
        Self {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            mask: buckets - 1,
        }
    }

    /// The bucket for `hash`, or `None` when the index has no buckets.
    pub(crate) fn bucket(&self, hash: u64) -> Option<&Bucket> {
        self.buckets.get(hash as usize & self.mask)
    }

    /// The bucket for `hash`, mutably.
    pub(crate) fn bucket_mut(&mut self, hash: u64) -> Option<&mut Bucket> {
        self.buckets.get_mut(hash as usize & self.mask)
    }

    /// Every bucket (for invariant checks).
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Bytes held by the bucket array.
    pub(crate) fn bytes(&self) -> usize {
        self.buckets.len() * size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_are_never_empty() {
        for (hash, seq) in [
            (0u64, 0u64),
            (u64::MAX, u64::MAX),
            (1 << 32, 7),
            (5, 1 << 32),
        ] {
            let e = entry(hash, seq);
            assert_ne!(e, EMPTY);
            assert_eq!(entry_tag(e), tag_of(hash));
            assert_eq!(entry_pos(e, seq), 0);
            assert_eq!(entry_pos(e, seq.wrapping_sub(3)), 3);
        }
    }

    #[test]
    fn sizing_is_a_power_of_two_at_quarter_load() {
        let i = Index::new(262_144);
        assert_eq!(i.bytes(), 262_144 * 4 / 16 * 128);
        assert_eq!(Index::new(1).bytes(), 128);
        assert_eq!(Index::new(0).bytes(), 0);
        assert!(Index::new(0).bucket(42).is_none());
    }
}
