//! Deterministic randomness and To-tag hashing: seeded, so simulations and tests replay.
//! (The placement hash, FNV-1a + fmix64, lives in [`crate::placement`].)

/// xorshift64*: enough for expiry jitter, seeded from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A seeded 64-bit hash that takes eight bytes per step, for To-tags. FNV's
/// byte-at-a-time multiply chain cost ~750 instructions for the ~150 bytes (Call-ID,
/// From, top Via) hashed into every response, about 4 % of a refresh (perf/RESULTS.md).
/// Values are not stable across versions (no To-tag outlives the process's
/// transactions); shard placement keeps using [`crate::placement::Fnv`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct TagHash(u64);

impl TagHash {
    /// Digits of pi: arbitrary odd constants with well-mixed bits.
    const K0: u64 = 0x243f_6a88_85a3_08d3;
    const K1: u64 = 0x1319_8a2e_0370_7345;

    /// A hasher keyed by `seed`.
    pub(crate) fn with_seed(seed: u64) -> Self {
        Self(fold_mul(seed ^ Self::K0, Self::K1))
    }

    /// Feed one part; its length ends it, so ("ab", "c") and ("a", "bc") differ.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.step(u64::from_le_bytes(
                <[u8; 8]>::try_from(w).unwrap_or_default(),
            ));
        }
        self.step(last_word(bytes));
        self.step(bytes.len() as u64);
    }

    fn step(&mut self, word: u64) {
        self.0 = fold_mul(self.0 ^ word, Self::K1);
    }

    /// The hash so far.
    pub(crate) fn finish(&self) -> u64 {
        fold_mul(self.0 ^ Self::K1, Self::K0)
    }
}

/// The bytes after the last whole eight of `bytes`, zero-padded, as a little-endian word
/// (0 when there are none).
fn last_word(bytes: &[u8]) -> u64 {
    crate::sip::word_at(bytes, bytes.len() - bytes.len() % 8)
}

/// The 128-bit product of `a` and `b`, high half xor low half (the foldhash/wyhash mix).
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut h = TagHash::with_seed(seed);
        for p in parts {
            h.write(p);
        }
        h.finish()
    }

    #[test]
    fn last_word_is_the_zero_padded_remainder() {
        let bytes: Vec<u8> = (1..=40).collect();
        for len in 0..=bytes.len() {
            let b = &bytes[..len];
            let mut padded = [0u8; 8];
            let rem = &b[len - len % 8..];
            padded[..rem.len()].copy_from_slice(rem);
            assert_eq!(last_word(b), u64::from_le_bytes(padded), "{len}");
        }
    }

    #[test]
    fn tag_hash_is_deterministic_and_keyed() {
        let parts: &[&[u8]] = &[
            b"a84b4c76e66710@pc33",
            b"<sip:alice@example.com>;tag=1928",
            b"SIP/2.0/UDP pc33;branch=z9hG4bK776asdhds",
        ];
        assert_eq!(tag(7, parts), tag(7, parts));
        assert_ne!(tag(7, parts), tag(8, parts));
        assert_ne!(tag(7, &[b"ab", b"c"]), tag(7, &[b"a", b"bc"]));
        assert_ne!(tag(7, &[b""]), tag(7, &[b"\0"]));
    }

    #[test]
    fn tag_hash_spreads_requests_that_differ_in_one_branch_digit() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            let via = format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i:08}");
            let h = tag(
                0x5eed,
                &[b"call-1@host", b"<sip:a@example.com>;tag=x", via.as_bytes()],
            );
            // The To-tag shows the whole 64 bits; collisions would reuse a tag.
            assert!(seen.insert(h), "collision at {i}");
        }
        // The top nibble (the first tag character) takes every value.
        let nibbles: std::collections::HashSet<u64> = seen.iter().map(|h| h >> 60).collect();
        assert_eq!(nibbles.len(), 16);
    }
}
