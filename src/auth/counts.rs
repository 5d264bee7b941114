//! Nonce-count replay protection (RFC 7616 §3.4 "nc", §5.5) without state shared
//! between cores.
//!
//! Every REGISTER of one AOR reaches the shard that owns the AOR, so a per-shard table
//! sees every use of a nonce that can authenticate that AOR: per-shard is enough. The
//! table remembers, per nonce, the highest `nc` accepted; a request whose `nc` is not
//! higher is a replay.
//!
//! Memory is bounded by a fixed capacity with oldest-first (first-seen) eviction. To
//! stay sound after an eviction, the table keeps a watermark: the latest issue time of
//! any evicted nonce. A nonce that is not in the table but was issued at or before the
//! watermark may have been evicted, so it is reported [`NcCheck::Forgotten`] (answer
//! `stale=true`: the client retries at once with a fresh nonce, no password prompt).
//! Under overload this costs a round trip, never a replay.
//!
//! Nothing allocates after construction: the hash table is sized so that it never grows
//! (at most half full, so hashbrown always rehashes in place) and the eviction ring is a
//! fixed array.

use hashbrown::HashMap;

/// Default number of nonces one shard remembers. Memory: the hash table is built for
/// twice the entries (so it never grows), i.e. for 65 536 entries 2^18 buckets of
/// 25 bytes (8-byte key, 16-byte entry, 1 control byte) = 6.25 MiB, plus the 512 KiB
/// eviction ring: about 6.8 MiB per shard, ~105 bytes per remembered nonce.
pub const NONCE_COUNTS_DEFAULT_ENTRIES: usize = 65_536;
/// Most expired entries dropped per [`NonceCounts::check_and_record`] call, so that the
/// work per request stays bounded.
const EXPIRE_PER_CALL_MAX: usize = 4;

/// What [`NonceCounts::check_and_record`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NcCheck {
    /// `nc` is higher than any seen for this nonce: recorded, accept.
    Fresh,
    /// `nc` is not higher than one already accepted (or is 0): a replay.
    Replayed,
    /// The nonce may have been evicted from the table: it cannot be checked, answer
    /// with a fresh nonce and `stale=true`.
    Forgotten,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    nc: u32,
    issued_ms: u64,
}

/// Highest nonce-count seen per nonce, bounded, per shard.
#[derive(Debug)]
pub struct NonceCounts {
    map: HashMap<u64, Entry>,
    /// Keys in first-seen order: a ring of `ring.len()` slots, `len` used from `head`.
    ring: Vec<u64>,
    head: usize,
    len: usize,
    /// Latest issue time of a nonce evicted for room (not for expiry).
    forgotten_up_to_ms: Option<u64>,
}

impl Default for NonceCounts {
    fn default() -> Self {
        Self::with_capacity(NONCE_COUNTS_DEFAULT_ENTRIES)
    }
}

impl NonceCounts {
    /// A table that remembers up to `entries` nonces (at least 1). Allocates everything
    /// now.
    pub fn with_capacity(entries: usize) -> Self {
        let entries = entries.max(1);
        Self {
            map: HashMap::with_capacity(entries.saturating_mul(2)),
            ring: vec![0; entries],
            head: 0,
            len: 0,
            forgotten_up_to_ms: None,
        }
    }

    /// Number of nonces remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pop_oldest(&mut self) -> Option<Entry> {
        if self.len == 0 {
            return None;
        }
        let key = *self.ring.get(self.head)?;
        self.head = (self.head + 1) % self.ring.len();
        self.len -= 1;
        self.map.remove(&key)
    }

    /// Drops up to a few of the oldest entries whose nonce was issued before
    /// `issued_before_ms` (those are stale anyway, so forgetting them is harmless).
    pub fn expire(&mut self, issued_before_ms: u64) {
        for _ in 0..EXPIRE_PER_CALL_MAX {
            let oldest = self.ring.get(self.head).and_then(|k| self.map.get(k));
            match oldest {
                Some(e) if self.len > 0 && e.issued_ms < issued_before_ms => {
                    self.pop_oldest();
                }
                _ => break,
            }
        }
    }

    /// Records `nc` for `nonce` (issued at `issued_ms`, as verified by
    /// [`NonceKey::check_nonce`](super::NonceKey::check_nonce)) if it is higher than any
    /// `nc` seen for it before.
    pub fn check_and_record(&mut self, nonce: &[u8], issued_ms: u64, nc: u32) -> NcCheck {
        let key = crate::hash::seeded_hash(nonce);
        if let Some(e) = self.map.get_mut(&key) {
            if nc <= e.nc {
                return NcCheck::Replayed;
            }
            e.nc = nc;
            return NcCheck::Fresh;
        }
        if self.forgotten_up_to_ms.is_some_and(|w| issued_ms <= w) {
            return NcCheck::Forgotten;
        }
        if nc == 0 {
            return NcCheck::Replayed;
        }
        if self.len == self.ring.len() {
            if let Some(evicted) = self.pop_oldest() {
                let w = self
                    .forgotten_up_to_ms
                    .map_or(evicted.issued_ms, |w| w.max(evicted.issued_ms));
                self.forgotten_up_to_ms = Some(w);
            }
        }
        let cap = self.ring.len();
        let tail = (self.head + self.len) % cap;
        if let Some(slot) = self.ring.get_mut(tail) {
            *slot = key;
            self.len += 1;
            self.map.insert(key, Entry { nc, issued_ms });
        }
        NcCheck::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_nc_rejected_higher_accepted() {
        let mut c = NonceCounts::with_capacity(8);
        assert_eq!(c.check_and_record(b"n1", 10, 1), NcCheck::Fresh);
        assert_eq!(c.check_and_record(b"n1", 10, 1), NcCheck::Replayed);
        assert_eq!(c.check_and_record(b"n1", 10, 3), NcCheck::Fresh);
        assert_eq!(c.check_and_record(b"n1", 10, 2), NcCheck::Replayed);
        assert_eq!(c.check_and_record(b"n1", 10, 4), NcCheck::Fresh);
        assert_eq!(
            c.check_and_record(b"n2", 10, 1),
            NcCheck::Fresh,
            "nonces are independent"
        );
        assert_eq!(
            c.check_and_record(b"n3", 10, 0),
            NcCheck::Replayed,
            "nc starts at 1"
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn eviction_is_oldest_first_and_evicted_nonces_are_forgotten_not_replayable() {
        let mut c = NonceCounts::with_capacity(2);
        assert_eq!(c.check_and_record(b"a", 100, 1), NcCheck::Fresh);
        assert_eq!(c.check_and_record(b"b", 200, 1), NcCheck::Fresh);
        assert_eq!(c.check_and_record(b"c", 300, 1), NcCheck::Fresh); // evicts a
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.check_and_record(b"a", 100, 1),
            NcCheck::Forgotten,
            "replay of evicted a"
        );
        assert_eq!(
            c.check_and_record(b"b", 200, 1),
            NcCheck::Replayed,
            "b is still known"
        );
        assert_eq!(
            c.check_and_record(b"d", 50, 1),
            NcCheck::Forgotten,
            "issued before the watermark"
        );
        assert_eq!(
            c.check_and_record(b"e", 400, 1),
            NcCheck::Fresh,
            "newer nonces still work"
        );
    }

    #[test]
    fn expire_drops_old_entries_without_raising_the_watermark() {
        let mut c = NonceCounts::with_capacity(4);
        c.check_and_record(b"a", 100, 1);
        c.check_and_record(b"b", 200, 1);
        c.expire(150);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.check_and_record(b"x", 120, 1),
            NcCheck::Fresh,
            "no watermark from expiry"
        );
        c.expire(u64::MAX);
        assert!(c.is_empty());
    }

    #[test]
    fn many_entries_through_a_small_table() {
        let mut c = NonceCounts::with_capacity(16);
        for i in 0..10_000u64 {
            assert_eq!(c.check_and_record(&i.to_be_bytes(), i, 1), NcCheck::Fresh);
            assert_eq!(
                c.check_and_record(&i.to_be_bytes(), i, 1),
                NcCheck::Replayed
            );
        }
        assert_eq!(c.len(), 16);
    }
}
