//! A 32-bit hash of the top Via branch of the REGISTER that last wrote a binding.
//!
//! Why it is stored: RFC 3261 §10.3 step 7 fails a REGISTER whose CSeq is not higher
//! than the stored one for the same Call-ID ("the update MUST be aborted and the request
//! fails"). An equal CSeq is either the request already applied, retransmitted after
//! its transaction left the bounded cache (`txn_cache_max`), which must be answered,
//! or a new request that reused the CSeq (a de-registration, say), which must fail.
//! The branch tells them apart: a retransmission carries the branch of the original
//! (§17.1.3, §17.2.3), a new request a new one (§8.1.1.7). Four bytes per binding
//! tell the two apart without keeping the branch itself (up to ~40 bytes), and they
//! sit in what was padding of the table's slot: no byte more per binding.
//!
//! Why a fixed hash and not the crate's seeded one ([`crate::hash`]): the value is
//! persisted with the binding and compared after a restart, so it must not depend on a
//! per-process seed. Hash flooding does not apply: nothing is bucketed by it. A
//! collision (1 in 2^32 for two different branches) answers a new request as the
//! retransmission, which is what sipreg did for every equal CSeq before this hash existed.
//!
//! Why eight bytes per step and not FNV-1a: FNV's byte-at-a-time multiply chain cost
//! ~130 instructions per refresh for a 23-byte branch (+1.0 % of the whole pipeline,
//! callgrind of `examples/refresh_loop`), this one ~55; it folds a 64×64→128-bit product per
//! word (the wyhash/foldhash mix) with fixed constants. Its values are pinned by a test:
//! they are stored on disk, so they must never change.
//!
//! Branchless requests (RFC 2543 clients, §8.1.1.7 allows no branch there) hash as the
//! empty branch: two of them with an equal Call-ID and CSeq are taken for the
//! retransmission, as before, since nothing else tells them apart.
#![forbid(unsafe_code)]

/// The branch hash of a binding ([`super::NewBinding::branch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BranchHash(u32);

/// Fixed odd constants (digits of pi) with well-mixed bits; stored hashes depend on
/// them, so they never change.
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7345;

/// The 128-bit product of `a` and `b`, high half xor low half.
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p >> 64) as u64 ^ p as u64
}

impl BranchHash {
    /// "Not known": a binding written before sipreg stored the hash (store records of
    /// format version 1) or by the admin API. An equal CSeq against it is answered as a
    /// retransmission, the behaviour those bindings were written under. No branch
    /// hashes to it ([`of`](Self::of) moves 0 to 1).
    pub const UNKNOWN: Self = Self(0);

    /// The hash of the top Via `branch` (`None`: no branch, hashed as the empty one).
    /// Bytes are compared exactly, as the transaction layer matches branches (§17.2.3).
    pub fn of(branch: Option<&[u8]>) -> Self {
        let bytes = branch.unwrap_or(b"");
        // The length goes in first, so that trailing zero bytes still count.
        let mut h = fold_mul(K0 ^ bytes.len() as u64, K1);
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let word = u64::from_le_bytes(<[u8; 8]>::try_from(w).unwrap_or_default());
            h = fold_mul(h ^ word, K1);
        }
        let rest = words.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = fold_mul(h ^ u64::from_le_bytes(last), K0);
        // 0 is UNKNOWN: no branch hashes to it.
        Self(((h >> 32) as u32 ^ h as u32).max(1))
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

    /// The values of the pinned branches (see the test that uses them).
    const PINNED: [u32; 4] = [1_250_382_590, 1_836_930_600, 49_393_912, 228_752_433];

    #[test]
    fn values_are_fixed_across_processes_and_versions() {
        // Stored on disk: if this test fails, the hash changed and every stored binding
        // would take its retransmissions for new requests. Do not update the values.
        let pinned: [(Option<&[u8]>, u32); 5] = [
            (None, PINNED[0]),
            (Some(b""), PINNED[0]),
            (Some(b"a"), PINNED[1]),
            (Some(b"z9hG4bK776asdhds"), PINNED[2]),
            (Some(b"z9hG4bK-0001234x00000007"), PINNED[3]),
        ];
        for (branch, value) in pinned {
            assert_eq!(BranchHash::of(branch).to_u32(), value, "{branch:?}");
        }
        // Every length up to two words and a bit: no panic, no UNKNOWN, and a zero
        // byte appended is another branch.
        let long = [0u8; 20];
        for n in 0..long.len() {
            let h = BranchHash::of(Some(&long[..n]));
            assert!(!h.is_unknown());
            assert_ne!(h, BranchHash::of(Some(&long[..n + 1])), "{n}");
        }
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
