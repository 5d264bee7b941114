//! A 32-bit hash of the top Via branch of the REGISTER that last wrote a binding.
//!
//! Why it is stored: RFC 3261 §10.3 step 7 fails a REGISTER whose CSeq is not higher
//! than the stored one for the same Call-ID ("the update MUST be aborted and the request
//! fails"). An equal CSeq is either the request already applied, retransmitted after
//! its transaction left the bounded cache (`txn_cache_max`), which must be answered,
//! or a new request that reused the CSeq (a de-registration, say), which must fail.
//! The branch tells them apart: a retransmission carries the branch of the original
//! (§17.1.3, §17.2.3), a new request a new one (§8.1.1.7). Four bytes per binding
//! tell the two apart without keeping the branch itself (up to ~40 bytes).
//!
//! Why FNV-1a and not the crate's seeded hash ([`crate::hash`]): the value is persisted
//! with the binding and compared after a restart, so it must not depend on a per-process
//! seed. Hash flooding does not apply: nothing is bucketed by it. A collision (1 in
//! 2^32 for two different branches) answers a new request as the retransmission, which
//! is what sipreg did for every equal CSeq before this hash existed.
//!
//! Branchless requests (RFC 2543 clients, §8.1.1.7 allows no branch there) hash as the
//! empty branch: two of them with an equal Call-ID and CSeq are taken for the
//! retransmission, as before, since nothing else tells them apart.
#![forbid(unsafe_code)]

/// The branch hash of a binding ([`super::NewBinding::branch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BranchHash(u32);

/// 32-bit FNV-1a offset basis and prime (fixed by the FNV specification).
const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

impl BranchHash {
    /// "Not known": a binding written before sipreg stored the hash (store records of
    /// format version 1) or by the admin API. An equal CSeq against it is answered as a
    /// retransmission, the behaviour those bindings were written under. No branch
    /// hashes to it ([`of`](Self::of) moves 0 to 1).
    pub const UNKNOWN: Self = Self(0);

    /// The hash of the top Via `branch` (`None`: no branch, hashed as the empty one).
    /// Bytes are compared exactly, as the transaction layer matches branches (§17.2.3).
    pub fn of(branch: Option<&[u8]>) -> Self {
        let mut h = FNV32_OFFSET;
        for &b in branch.unwrap_or(b"") {
            h ^= u32::from(b);
            h = h.wrapping_mul(FNV32_PRIME);
        }
        Self(h.max(1))
    }

    /// True for [`UNKNOWN`](Self::UNKNOWN).
    pub const fn is_unknown(self) -> bool {
        self.0 == 0
    }

    /// The stored value.
    pub const fn to_u32(self) -> u32 {
        self.0
    }

    /// The hash for a stored value.
    pub const fn from_u32(v: u32) -> Self {
        Self(v)
    }

    /// True when a request with branch hash `self` may be the one that wrote a binding
    /// with `stored`: the same hash, or a stored hash that is not known.
    pub fn may_be_retransmission_of(self, stored: Self) -> bool {
        stored.is_unknown() || self == stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_fixed_across_processes() {
        // Published FNV-1a 32-bit test vectors: the stored value must never change.
        assert_eq!(BranchHash::of(None).to_u32(), 0x811c_9dc5);
        assert_eq!(BranchHash::of(Some(b"")).to_u32(), 0x811c_9dc5);
        assert_eq!(BranchHash::of(Some(b"a")).to_u32(), 0xe40c_292c);
        assert_eq!(BranchHash::of(Some(b"foobar")).to_u32(), 0xbf9c_f968);
    }

    #[test]
    fn branches_differ_and_unknown_matches_everything() {
        let a = BranchHash::of(Some(b"z9hG4bK1"));
        let b = BranchHash::of(Some(b"z9hG4bK2"));
        assert_ne!(a, b);
        assert!(!a.is_unknown() && !b.is_unknown());
        assert!(a.may_be_retransmission_of(a));
        assert!(!a.may_be_retransmission_of(b));
        assert!(a.may_be_retransmission_of(BranchHash::UNKNOWN));
        // Case matters: branches are compared byte for byte.
        assert_ne!(a, BranchHash::of(Some(b"Z9HG4BK1")));
        assert_eq!(BranchHash::from_u32(a.to_u32()), a);
    }
}
