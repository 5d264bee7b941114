//! The process-wide seeded hash of the in-memory tables' keys (transaction keys in
//! [`crate::txn`], AOR keys in [`crate::location`]).
//!
//! Why seeded per process: the keys come from the network, so a hash an attacker can
//! compute offline lets them send keys that all land in one bucket (hash flooding) and
//! turn every lookup into a scan. The seed is random per process, and the builder is
//! kept in one static so that every shard's table hashes alike: `Registrar::prepare`, a
//! function with no table at hand, hashes a request's keys once for the tables of the
//! shard that owns it. (The owner shard itself is chosen by `placement::aor_hash`, a
//! deterministic hash, because it must agree across processes.)
#![forbid(unsafe_code)]

use std::hash::BuildHasher as _;
use std::sync::OnceLock;

/// The seeded hash of `bytes`, the same for every table of this process.
pub(crate) fn seeded_hash(bytes: &[u8]) -> u64 {
    static HASHER: OnceLock<hashbrown::DefaultHashBuilder> = OnceLock::new();
    HASHER.get_or_init(Default::default).hash_one(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_hash_alike_and_different_bytes_apart() {
        assert_eq!(
            seeded_hash(b"alice@example.com"),
            seeded_hash(b"alice@example.com")
        );
        assert_ne!(
            seeded_hash(b"alice@example.com"),
            seeded_hash(b"bob@example.com")
        );
        // The length is part of what is hashed: a prefix is another key.
        assert_ne!(seeded_hash(b""), seeded_hash(b"\0"));
    }
}
