//! AOR keys bound to their table hash.
//!
//! Why: the registrar hashes a request's AOR key once (`Registrar::prepare`, as soon as
//! it knows its shard owns the request) and uses that hash for the warm-up, every lookup
//! and the commit. A hash carried apart from its key could be another key's, and the
//! table would then miss the AOR (and a commit insert a second copy of it). A
//! [`HashedAorKey`] is made only by hashing its bytes ([`crate::hash`]), and an
//! [`AorKeyBuf`] only takes one whole, so a key and its hash always match.

use crate::hash::seeded_hash;

/// An AOR key (as [`crate::sip::write_aor_key`] writes it) and its location-table hash,
/// computed once by [`new`](Self::new) and reused by every table call that takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedAorKey<'a> {
    bytes: &'a [u8],
    hash: u64,
}

impl<'a> HashedAorKey<'a> {
    /// Hashes `bytes`: the only way to make one.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            hash: seeded_hash(bytes),
        }
    }

    /// The key.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The hash every location table indexes the key by
    /// ([`LocationTable::touch`](super::LocationTable::touch) takes it).
    #[inline]
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// A reused buffer holding one AOR key and its hash (the registrar's current request).
#[derive(Debug)]
pub(crate) struct AorKeyBuf {
    bytes: Vec<u8>,
    /// `seeded_hash(&bytes)`, kept so by every method.
    hash: u64,
}

impl AorKeyBuf {
    /// An empty key with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            hash: seeded_hash(&[]),
        }
    }

    /// Copies `key` and its hash (no hashing again).
    pub(crate) fn set(&mut self, key: HashedAorKey<'_>) {
        self.bytes.clear();
        self.bytes.extend_from_slice(key.bytes);
        self.hash = key.hash;
    }

    /// The key and its hash.
    #[inline]
    pub(crate) fn key(&self) -> HashedAorKey<'_> {
        HashedAorKey {
            bytes: &self.bytes,
            hash: self.hash,
        }
    }

    /// The key.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_holds_the_key_it_was_set_to_with_its_hash() {
        let mut buf = AorKeyBuf::with_capacity(8);
        assert_eq!(buf.key(), HashedAorKey::new(b""));
        buf.set(HashedAorKey::new(b"alice@example.com"));
        assert_eq!(buf.key(), HashedAorKey::new(b"alice@example.com"));
        buf.set(HashedAorKey::new(b"bob@example.com"));
        assert_eq!(buf.key(), HashedAorKey::new(b"bob@example.com"));
        assert_eq!(buf.bytes(), b"bob@example.com");
    }
}
