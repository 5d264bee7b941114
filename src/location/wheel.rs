//! A hashed timer wheel of 1-second buckets, threaded through the binding slots.
//!
//! Why this shape: expiry must not scan the table, and a refresh must move a binding's
//! deadline without leaving garbage behind. Each slot carries `wheel_prev`/`wheel_next`
//! links and its bucket number, so scheduling, rescheduling and cancelling are O(1) and the
//! wheel holds exactly one entry per binding (its own memory is the fixed bucket array and
//! an occupancy bitmap, 272 KiB per shard). Buckets are keyed by `expiry second mod
//! WHEEL_BUCKETS`; a bucket can also hold bindings due in a later turn of the wheel (only
//! for expiries beyond [`WHEEL_HORIZON_S`], 18.2 h), which a visit skips over.
//!
//! The wheel is lazy about refreshes: a binding whose expiry moves later stays in the
//! bucket it was linked in (always at or before its expiry second), and the visit of that
//! bucket moves it to the bucket of its new expiry. A refresh then costs no wheel work
//! at all, and each binding is moved at most once per visit.

use super::table::{NIL, Slot};

/// Buckets in the wheel, one per second.
pub(crate) const WHEEL_BUCKETS: usize = 1 << 16;
/// Seconds covered by one turn of the wheel; later expiries wait extra turns.
pub(crate) const WHEEL_HORIZON_S: u32 = WHEEL_BUCKETS as u32;
const MASK: u32 = WHEEL_HORIZON_S - 1;
const WORDS: usize = WHEEL_BUCKETS / 64;
const SUMMARY_WORDS: usize = WORDS / 64;
const _: () = assert!(WHEEL_BUCKETS.is_power_of_two() && SUMMARY_WORDS * 64 * 64 == WHEEL_BUCKETS);

pub(crate) struct Wheel {
    /// First slot of each bucket's list, or [`NIL`].
    heads: Box<[u32]>,
    /// Bit per bucket: non-empty.
    occupied: Box<[u64]>,
    /// Bit per `occupied` word: non-zero.
    summary: [u64; SUMMARY_WORDS],
    /// Every linked slot has its bucket second at or after this one: all seconds before it
    /// have been fully processed.
    pub(crate) next_s: u32,
    len: usize,
}

impl Wheel {
    pub(crate) fn new() -> Self {
        Self {
            heads: vec![NIL; WHEEL_BUCKETS].into_boxed_slice(),
            occupied: vec![0; WORDS].into_boxed_slice(),
            summary: [0; SUMMARY_WORDS],
            next_s: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Called before linking at `now_s`: an empty wheel jumps its cursor forward so the
    /// first `expire` does not walk from the epoch.
    pub(crate) fn start_at(&mut self, now_s: u32) {
        if self.len == 0 && now_s > self.next_s {
            self.next_s = now_s;
        }
    }

    /// Links slot `idx` (whose `expiry_s` is set) into the bucket of its expiry second.
    /// An expiry before the cursor moves the cursor back, so the next `expire` sees it.
    pub(crate) fn link(&mut self, slots: &mut [Slot], idx: u32) {
        let second = slots[idx as usize].expiry_s;
        self.next_s = self.next_s.min(second);
        let bucket = (second & MASK) as usize;
        let head = self.heads[bucket];
        {
            let s = &mut slots[idx as usize];
            s.wheel_prev = NIL;
            s.wheel_next = head;
            s.wheel_bucket = bucket as u16;
        }
        if head != NIL {
            slots[head as usize].wheel_prev = idx;
        }
        self.heads[bucket] = idx;
        self.set_bit(bucket);
        self.len += 1;
    }

    pub(crate) fn unlink(&mut self, slots: &mut [Slot], idx: u32) {
        let (prev, next, bucket) = {
            let s = &slots[idx as usize];
            (s.wheel_prev, s.wheel_next, usize::from(s.wheel_bucket))
        };
        if prev == NIL {
            self.heads[bucket] = next;
        } else {
            slots[prev as usize].wheel_next = next;
        }
        if next != NIL {
            slots[next as usize].wheel_prev = prev;
        }
        if self.heads[bucket] == NIL {
            self.clear_bit(bucket);
        }
        self.len -= 1;
    }

    /// Whether `slot` is linked in the bucket of its own expiry second (a refresh leaves
    /// it in an earlier one until `expire` reaches that).
    pub(crate) fn in_its_bucket(&self, slot: &Slot) -> bool {
        usize::from(slot.wheel_bucket) == (slot.expiry_s & MASK) as usize
    }

    pub(crate) fn head(&self, second: u32) -> u32 {
        self.heads[(second & MASK) as usize]
    }

    /// Distance in seconds from `next_s` to the first non-empty bucket (circular), if any.
    pub(crate) fn distance_to_next(&self) -> Option<u32> {
        let from = (self.next_s & MASK) as usize;
        let at = self
            .find_in(from, WHEEL_BUCKETS)
            .or_else(|| self.find_in(0, from))?;
        Some(((at + WHEEL_BUCKETS - from) & MASK as usize) as u32)
    }

    /// First set bucket in `lo..hi`.
    fn find_in(&self, lo: usize, hi: usize) -> Option<usize> {
        if lo >= hi {
            return None;
        }
        let w = lo / 64;
        let first = self.occupied[w] & (!0u64 << (lo % 64));
        let found = if first != 0 {
            Some(w * 64 + first.trailing_zeros() as usize)
        } else {
            self.next_word(w + 1)
                .map(|wi| wi * 64 + self.occupied[wi].trailing_zeros() as usize)
        };
        found.filter(|&b| b < hi)
    }

    /// First non-zero `occupied` word at index `>= w`.
    fn next_word(&self, w: usize) -> Option<usize> {
        if w >= WORDS {
            return None;
        }
        let mut sw = w / 64;
        let mut bits = self.summary[sw] & (!0u64 << (w % 64));
        loop {
            if bits != 0 {
                return Some(sw * 64 + bits.trailing_zeros() as usize);
            }
            sw += 1;
            if sw >= SUMMARY_WORDS {
                return None;
            }
            bits = self.summary[sw];
        }
    }

    fn set_bit(&mut self, bucket: usize) {
        let w = bucket / 64;
        self.occupied[w] |= 1 << (bucket % 64);
        self.summary[w / 64] |= 1 << (w % 64);
    }

    fn clear_bit(&mut self, bucket: usize) {
        let w = bucket / 64;
        self.occupied[w] &= !(1 << (bucket % 64));
        if self.occupied[w] == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
    }
}
