//! AORs that recently lost their last binding, so that a request for one can be told
//! apart from a request for a user never seen: 480 Temporarily Unavailable (RFC 3261
//! §21.4.18, "not logged in") instead of 404 Not Found (README, "Behaviour worth
//! knowing").
//!
//! Only the AOR key's 64-bit hash is kept, in a bounded FIFO: a collision can at worst
//! turn a 404 into a 480, and the oldest entries go first when the cap is reached.

use std::collections::VecDeque;

use hashbrown::HashSet;

/// AORs remembered per shard by default (≈ 24 bytes each: set slot + queue entry).
pub const EMPTIED_AORS_MAX_DEFAULT: usize = 262_144;

/// A bounded set of AOR key hashes, oldest evicted first.
#[derive(Debug)]
pub(crate) struct Emptied {
    max: usize,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Emptied {
    /// Preallocated to `max` (≈ 24 bytes each) so that remembering an AOR never
    /// allocates on the request path.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            set: HashSet::with_capacity(max),
            order: VecDeque::with_capacity(max),
        }
    }

    /// Remember `hash`; a no-op when it is already there or the cap is 0.
    pub(crate) fn insert(&mut self, hash: u64) {
        if self.max == 0 || self.set.contains(&hash) {
            return;
        }
        if self.order.len() >= self.max {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(hash);
        self.set.insert(hash);
        debug_assert_eq!(self.set.len(), self.order.len());
        debug_assert!(self.order.len() <= self.max);
    }

    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.set.contains(&hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_oldest_first() {
        let mut e = Emptied::new(2);
        e.insert(1);
        e.insert(2);
        e.insert(2);
        e.insert(3);
        assert!(!e.contains(1));
        assert!(e.contains(2) && e.contains(3));
        assert_eq!(e.order.len(), 2);
    }
}
