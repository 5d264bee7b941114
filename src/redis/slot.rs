//! Redis Cluster key slots: CRC16/XMODEM of the key (or of its `{hash tag}`) mod 16384.
//!
//! Every key of one AOR carries the tag `{<aor>}`, so they share a slot and one script
//! can touch them all (Redis Cluster spec, "Hash tags").

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster uses.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16/XMODEM of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}`
/// after it when that is non-empty, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The slot of `key` (0..16384).
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOT_COUNT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The CRC-16/XMODEM check value, and the Redis Cluster spec's example.
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn slots_match_redis_cli_cluster_keyslot() {
        // Values from `redis-cli CLUSTER KEYSLOT` on Redis 7.0.15.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"sipreg:loc:{alice@example.com}"), 350);
        assert_eq!(key_slot(b"alice@example.com"), 350);
    }

    #[test]
    fn hash_tag_rule() {
        assert_eq!(hash_tag(b"a{b}c"), b"b");
        assert_eq!(hash_tag(b"{}b"), b"{}b"); // empty tag: whole key
        assert_eq!(hash_tag(b"a{b"), b"a{b"); // no closing brace
        assert_eq!(hash_tag(b"a{b}{c}"), b"b"); // first tag only
        assert_eq!(hash_tag(b"a{{b}}"), b"{b"); // first `}` after the first `{`
        assert_eq!(key_slot(b"x{user1000}.following"), key_slot(b"user1000"));
    }
}
