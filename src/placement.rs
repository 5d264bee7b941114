//! Placement: which shard (core) owns a request. One definition, used by the registrar's
//! routing, the mesh, the store's re-partitioning, the management API and the kernel
//! steering program ([`crate::steer`]), which computes the same function in eBPF.
//!
//! The rule:
//!
//! - **owner** = `fmix64(fnv1a64(key)) % shards` ([`aor_hash`], [`shard_for`]);
//! - **key** of a REGISTER: its To URI; of any other request: its Request-URI; written as
//!   the user part with every `%HH` escape decoded (case kept), `@`, and the lower-cased
//!   host (IPv6 references keep their brackets); port, parameters and headers dropped
//!   (RFC 3261 §10.3 step 5, [`crate::sip::write_aor_key`]);
//! - when that URI has no user part (OPTIONS to the domain, a non-SIP scheme) the key is
//!   the Call-ID; a request the parser refuses but can answer is keyed by its Call-ID
//!   (or top Via).
//!
//! Why these pieces: every binding of an AOR must live on one shard (DESIGN.md,
//! "Thread-per-core"); FNV-1a is stable across processes and versions and takes a byte
//! at a time, which a bounded eBPF loop can do; fmix64 makes every bit of the result
//! depend on every input bit, because FNV's low bits are weak for short keys and the owner
//! is taken modulo a small shard count. A change here moves every AOR: persisted stores
//! re-partition on start (they use [`aor_hash`]), and the steering program must change
//! with it (`steer::mirror` follows it step by step, and its tests compare the two).
#![forbid(unsafe_code)]

/// FNV-1a's 64-bit offset basis. The constants of the rule are public so that the eBPF
/// program ([`crate::steer::program`]) is built from the same values, not a copy.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
pub const FNV_PRIME: u64 = 0x100_0000_01b3;
/// fmix64's shift (every step).
pub const FMIX64_SHIFT: u32 = 33;
/// fmix64's first multiplier.
pub const FMIX64_C1: u64 = 0xff51_afd7_ed55_8ccd;
/// fmix64's second multiplier.
pub const FMIX64_C2: u64 = 0xc4ce_b9fe_1a85_ec53;

/// 64-bit FNV-1a: stable across processes and versions (shard placement depends on it).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = FNV_OFFSET;
    const PRIME: u64 = FNV_PRIME;

    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Self::OFFSET)
    }

    /// A hasher keyed by `seed` (To-tags).
    pub fn with_seed(seed: u64) -> Self {
        let mut h = Self::new();
        h.write(&seed.to_le_bytes());
        h
    }

    /// Feed bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    /// Feed one byte.
    pub fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }

    /// Hash of one slice.
    pub fn hash(bytes: &[u8]) -> u64 {
        let mut h = Self::new();
        h.write(bytes);
        h.finish()
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

/// MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> FMIX64_SHIFT;
    h = h.wrapping_mul(FMIX64_C1);
    h ^= h >> FMIX64_SHIFT;
    h = h.wrapping_mul(FMIX64_C2);
    h ^ (h >> FMIX64_SHIFT)
}

/// The owner hash of an AOR key (as stored in the location table, written by
/// [`crate::sip::write_aor_key`]): what `Registrar::prepare` routes a request keyed by it by.
/// The store uses it to re-partition persisted bindings when the shard count changed,
/// and the management API to find the owner shard.
pub fn aor_hash(aor_key: &[u8]) -> u64 {
    // FNV's low bits are weak for short keys and the owner is `hash % shards`:
    // finish with MurmurHash3's fmix64 so every bit depends on every input bit.
    fmix64(Fnv::hash(aor_key))
}

/// Which shard owns a hash: `hash % shards`. Pure, so that every core (and the kernel
/// steering program) computes the same owner for the same AOR.
pub fn shard_for(hash: u64, shards: usize) -> usize {
    debug_assert!(shards > 0);
    (hash % (shards.max(1) as u64)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        // From the FNV reference test suite (fnv1a64 of "", "a", "foobar").
        assert_eq!(Fnv::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv::hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn aor_hash_is_pinned() {
        // Placement must not drift between versions: persisted stores and the kernel
        // program depend on it. A change here is a migration, not a refactor.
        assert_eq!(
            aor_hash(b"alice@example.com"),
            fmix64(Fnv::hash(b"alice@example.com"))
        );
        assert_eq!(shard_for(aor_hash(b"alice@example.com"), 1), 0);
        assert_ne!(
            aor_hash(b"Alice@example.com"),
            aor_hash(b"alice@example.com")
        );
    }

    #[test]
    fn shard_for_spreads_and_stays_in_range() {
        assert_eq!(shard_for(7, 1), 0);
        assert_eq!(shard_for(7, 4), 3);
        let mut seen = [0usize; 3];
        for i in 0..3000u64 {
            seen[shard_for(aor_hash(format!("user{i}@example.com").as_bytes()), 3)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 900), "{seen:?}");
    }
}
