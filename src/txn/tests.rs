use super::*;
use bumpalo::Bump;
use proptest::prelude::*;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

const T0: u64 = 1_700_000_000_000;

fn k3261<'a>(branch: &'a [u8], host: &'a [u8], port: u16, method: &'a [u8]) -> TxnKey<'a> {
    TxnKey::Rfc3261 {
        branch,
        sent_by_host: host,
        sent_by_port: port,
        method,
    }
}

fn key(branch: &[u8]) -> TxnKey<'_> {
    k3261(branch, b"192.0.2.4", 5060, b"REGISTER")
}

/// A table driven the way the registrar drives it: each call encodes its key into an
/// arena first ([`TxnKey::encode_in`]), then looks up or inserts the encoded key (an
/// insert right after the lookup of the same key reuses that lookup's search).
struct Txns {
    table: TxnTable,
    arena: Bump,
}

impl Txns {
    fn new(limits: TxnLimits) -> Self {
        Self::of(TxnTable::new(limits))
    }

    fn of(table: TxnTable) -> Self {
        Self {
            table,
            arena: Bump::new(),
        }
    }

    fn encode(&self, key: &TxnKey<'_>) -> EncodedKey<'_> {
        key.encode_in(&self.arena)
            .expect("key within TXN_KEY_BYTES_MAX")
    }

    fn lookup(&mut self, key: &TxnKey<'_>, now_ms: u64) -> Option<&[u8]> {
        let key = key
            .encode_in(&self.arena)
            .expect("key within TXN_KEY_BYTES_MAX");
        self.table.lookup(&key, now_ms)
    }

    fn insert(&mut self, key: &TxnKey<'_>, now_ms: u64, response: &[u8]) -> Result<(), TxnError> {
        let key = key
            .encode_in(&self.arena)
            .expect("key within TXN_KEY_BYTES_MAX");
        self.table.insert(&key, now_ms, response)
    }
}

impl Deref for Txns {
    type Target = TxnTable;
    fn deref(&self) -> &TxnTable {
        &self.table
    }
}

impl DerefMut for Txns {
    fn deref_mut(&mut self) -> &mut TxnTable {
        &mut self.table
    }
}

fn small(entries_max: usize, bytes_max: usize) -> Txns {
    Txns::new(TxnLimits {
        entries_max,
        bytes_max,
        timer_j_ms: TIMER_J_UDP_MS,
    })
}

const OK: &[u8] =
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK776\r\nContent-Length: 0\r\n\r\n";

#[test]
fn retransmission_gets_the_cached_response_byte_for_byte() {
    let mut t = Txns::new(TxnLimits::default());
    assert_eq!(t.lookup(&key(b"z9hG4bK776"), T0), None);
    t.insert(&key(b"z9hG4bK776"), T0, OK).unwrap();
    assert_eq!(t.lookup(&key(b"z9hG4bK776"), T0 + 500), Some(OK));
    assert_eq!(t.lookup(&key(b"z9hG4bK777"), T0 + 500), None);
    assert_eq!((t.len(), t.evicted_early()), (1, 0));
}

#[test]
fn timer_j_ends_the_transaction() {
    let mut t = Txns::new(TxnLimits::default());
    t.insert(&key(b"z9hG4bKa"), T0, OK).unwrap();
    t.insert(
        &key(b"z9hG4bKb"),
        T0 + 1_000,
        b"SIP/2.0 401 Unauthorized\r\n\r\n",
    )
    .unwrap();
    assert_eq!(t.next_expiry_ms(), Some(T0 + 32_000));
    assert_eq!(t.lookup(&key(b"z9hG4bKa"), T0 + 31_999), Some(OK));
    // Expired entries do not match even before `expire` runs.
    assert_eq!(t.lookup(&key(b"z9hG4bKa"), T0 + 32_000), None);
    assert_eq!(t.expire(T0 + 31_999), 0);
    assert_eq!(t.expire(T0 + 32_000), 1);
    assert_eq!((t.len(), t.next_expiry_ms()), (1, Some(T0 + 33_000)));
    assert!(t.lookup(&key(b"z9hG4bKb"), T0 + 32_500).is_some());
    assert_eq!(t.expire(T0 + 60_000), 1);
    assert_eq!(
        (t.len(), t.is_empty(), t.next_expiry_ms(), t.evicted_early()),
        (0, true, None, 0)
    );
}

#[test]
fn entry_cap_evicts_the_oldest_and_counts_it() {
    let mut t = small(3, 1 << 16);
    for b in [&b"z9hG4bK1"[..], b"z9hG4bK2", b"z9hG4bK3", b"z9hG4bK4"] {
        t.insert(&key(b), T0, b).unwrap();
    }
    assert_eq!((t.len(), t.evicted_early()), (3, 1));
    assert_eq!(t.lookup(&key(b"z9hG4bK1"), T0), None);
    assert_eq!(t.lookup(&key(b"z9hG4bK4"), T0), Some(&b"z9hG4bK4"[..]));
    // Past Timer J, making room is not "early".
    t.insert(&key(b"z9hG4bK5"), T0 + 40_000, b"x").unwrap();
    assert_eq!(t.evicted_early(), 1);
}

#[test]
fn byte_cap_evicts_the_oldest_and_wraps() {
    let mut t = small(100, 1000);
    let resp = [b'r'; 300];
    let mut branch = Vec::new();
    for i in 0..20u8 {
        branch.clear();
        branch.extend_from_slice(b"z9hG4bK");
        branch.push(b'a' + i);
        let mut r = resp;
        r[0] = i;
        t.insert(&key(&branch), T0, &r).unwrap();
        assert_eq!(t.lookup(&key(&branch), T0), Some(&r[..]));
    }
    // ~330-byte records: at most 3 fit in 1000 bytes.
    assert!(t.len() <= 3 && t.len() >= 2, "{}", t.len());
    assert_eq!(t.evicted_early(), 20 - t.len() as u64);
    assert_eq!(
        t.insert(&key(b"z9hG4bKbig"), T0, &[0; 1000]),
        Err(TxnError::ResponseTooLarge)
    );
}

#[test]
fn method_and_sent_by_are_part_of_the_key() {
    let mut t = Txns::new(TxnLimits::default());
    let k = k3261(b"z9hG4bK1", b"192.0.2.4", 5060, b"REGISTER");
    t.insert(&k, T0, OK).unwrap();
    assert_eq!(t.lookup(&k, T0), Some(OK));
    for other in [
        k3261(b"z9hG4bK1", b"192.0.2.4", 5060, b"OPTIONS"),
        k3261(b"z9hG4bK1", b"192.0.2.5", 5060, b"REGISTER"),
        k3261(b"z9hG4bK1", b"192.0.2.4", 5070, b"REGISTER"),
        k3261(b"z9hG4bK1", b"192.0.2.4", 0, b"REGISTER"),
    ] {
        assert_eq!(t.lookup(&other, T0), None, "{other:?}");
    }
}

type Fields = (
    &'static [u8],
    &'static [u8],
    &'static [u8],
    &'static [u8],
    u32,
    &'static [u8],
    &'static [u8],
);

fn k2543(f: Fields) -> TxnKey<'static> {
    let (request_uri, from_tag, to_tag, call_id, cseq, method, top_via) = f;
    TxnKey::Rfc2543 {
        request_uri,
        from_tag,
        to_tag,
        call_id,
        cseq,
        method,
        top_via,
    }
}

#[test]
fn rfc2543_requests_match_on_the_fallback_key() {
    let base: Fields = (
        b"sip:registrar.example.com",
        b"456248",
        b"",
        b"843817637684230@998sdasdh09",
        1826,
        b"REGISTER",
        b"SIP/2.0/UDP 192.0.2.4:5060;branch=old-style-1",
    );
    assert!(!is_rfc3261_branch(b"old-style-1") && is_rfc3261_branch(b"z9hG4bK1"));
    let mut t = Txns::new(TxnLimits::default());
    t.insert(&k2543(base), T0, OK).unwrap();
    assert_eq!(t.lookup(&k2543(base), T0 + 1), Some(OK));
    let (r, f, to, c, n, m, v) = base;
    let variants: [Fields; 8] = [
        (r, f, to, c, n + 1, m, v),
        (r, f, b"x", c, n, m, v),
        (r, b"4562", to, c, n, m, v),
        (r, f, to, b"other", n, m, v),
        (b"sip:other.example.com", f, to, c, n, m, v),
        (r, f, to, c, n, b"OPTIONS", v),
        (r, f, to, c, n, m, b"SIP/2.0/UDP 192.0.2.4:5061"),
        // Field boundaries count: moving bytes between fields is another key.
        (r, b"45624", b"8", c, n, m, v),
    ];
    for v in variants {
        assert_eq!(t.lookup(&k2543(v), T0), None, "{v:?}");
    }
    // A 3261 key with the same bytes as a field is another key too.
    assert_eq!(t.lookup(&k3261(b"456248", b"", 0, b"REGISTER"), T0), None);
}

#[test]
fn a_second_insert_for_the_same_key_supersedes_the_first() {
    let mut t = small(4, 1 << 12);
    t.insert(&key(b"z9hG4bK1"), T0, b"first").unwrap();
    t.insert(&key(b"z9hG4bK1"), T0 + 10, b"second").unwrap();
    assert_eq!(t.lookup(&key(b"z9hG4bK1"), T0 + 20), Some(&b"second"[..]));
    assert_eq!(t.len(), 1);
    // Popping the superseded record is neither an expiry nor an early eviction.
    assert_eq!(t.expire(T0 + 32_000), 0);
    assert_eq!(
        t.lookup(&key(b"z9hG4bK1"), T0 + 32_005),
        Some(&b"second"[..])
    );
    assert_eq!(t.expire(T0 + 32_010), 1);
    assert_eq!(t.evicted_early(), 0);
}

#[test]
fn a_full_index_bucket_pushes_out_its_oldest_entry_and_counts_it() {
    // One bucket of 16 entries for up to 32 transactions: the 17th insert must push the
    // oldest entry out (in a real-size index this needs 16 live keys in one bucket).
    let mut t = Txns::of(TxnTable::with_index_buckets(
        TxnLimits::for_entries(32, TIMER_J_UDP_MS),
        1,
    ));
    let branch = |i: u32| format!("z9hG4bK{i}").into_bytes();
    for i in 0..20 {
        t.insert(&key(&branch(i)), T0 + u64::from(i), OK).unwrap();
        t.check_invariants();
    }
    assert_eq!((t.len(), t.evicted_early()), (16, 4));
    for i in 0..4 {
        assert_eq!(t.lookup(&key(&branch(i)), T0 + 30), None, "{i}");
    }
    for i in 4..20 {
        assert_eq!(t.lookup(&key(&branch(i)), T0 + 30), Some(OK), "{i}");
    }
    // The pushed-out records leave the ring without being counted twice.
    assert_eq!(t.expire(T0 + 40_000), 16);
    assert_eq!((t.len(), t.evicted_early()), (0, 4));
    t.check_invariants();
}

#[test]
fn oversized_keys_are_never_encoded_and_disabled_caches_refuse() {
    let arena = Bump::new();
    // The flat form of a 3261 key: 3 head bytes and 3 length-prefixed fields.
    let fits = vec![b'z'; TXN_KEY_BYTES_MAX - 3 - 3 * 2 - b"h".len() - b"REGISTER".len()];
    let k = k3261(&fits, b"h", 5060, b"REGISTER");
    assert_eq!(k.encode_in(&arena).unwrap().bytes.len(), TXN_KEY_BYTES_MAX);
    let long = [&fits[..], b"z"].concat();
    assert_eq!(
        k3261(&long, b"h", 5060, b"REGISTER").encode_in(&arena),
        None
    );
    let mut off = Txns::new(TxnLimits {
        entries_max: 0,
        ..TxnLimits::default()
    });
    assert_eq!(
        off.insert(&key(b"z9hG4bK1"), T0, OK),
        Err(TxnError::Disabled)
    );
    assert_eq!(off.lookup(&key(b"z9hG4bK1"), T0), None);
    assert_eq!(TxnLimits::default().bytes_max, 262_144 * 640);
}

#[test]
fn keys_are_encoded_as_tagged_length_prefixed_fields() {
    let arena = Bump::new();
    let k = k3261(b"z9hG4bK1", b"h", 0x1234, b"REGISTER");
    let enc = k.encode_in(&arena).unwrap();
    let want = [
        &[1u8, 0x34, 0x12][..],
        &[8, 0],
        b"z9hG4bK1",
        &[1, 0],
        b"h",
        &[8, 0],
        b"REGISTER",
    ]
    .concat();
    assert_eq!(enc.bytes, &want[..]);
    assert_eq!(enc.hash(), crate::hash::seeded_hash(&want));
    let k = TxnKey::Rfc2543 {
        request_uri: b"sip:e",
        from_tag: b"f",
        to_tag: b"",
        call_id: b"c",
        cseq: 0x0102_0304,
        method: b"REGISTER",
        top_via: b"v",
    };
    let want = [
        &[2u8, 4, 3, 2, 1][..],
        &[5, 0],
        b"sip:e",
        &[1, 0],
        b"f",
        &[0, 0],
        &[1, 0],
        b"c",
        &[8, 0],
        b"REGISTER",
        &[1, 0],
        b"v",
    ]
    .concat();
    assert_eq!(k.encode_in(&arena).unwrap().bytes, &want[..]);
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        branch: u8,
        len: usize,
        advance_ms: u64,
    },
    Lookup {
        branch: u8,
        advance_ms: u64,
    },
    Expire {
        advance_ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12, 0usize..400, 0u64..3_000).prop_map(|(branch, len, advance_ms)| Op::Insert { branch, len, advance_ms }),
        3 => (0u8..12, 0u64..3_000).prop_map(|(branch, advance_ms)| Op::Lookup { branch, advance_ms }),
        1 => (0u64..20_000).prop_map(|advance_ms| Op::Expire { advance_ms }),
    ]
}

proptest! {
    /// Whatever the caps do, a hit is always the latest response cached for that key and
    /// within Timer J, the newest insert always hits, and the caps are never exceeded.
    #[test]
    fn cache_never_returns_wrong_bytes(ops in prop::collection::vec(op(), 1..200), entries_max in 1usize..8, bytes_max in 600usize..3000) {
        let mut t = small(entries_max, bytes_max);
        let mut latest: HashMap<u8, (Vec<u8>, u64)> = HashMap::new();
        let mut now = T0;
        let mut serial = 0u32;
        for op in ops {
            match op {
                Op::Insert { branch, len, advance_ms } => {
                    now += advance_ms;
                    serial += 1;
                    let resp: Vec<u8> = serial.to_le_bytes().iter().copied().cycle().take(len.max(4)).collect();
                    let b = [b'z', b'9', b'h', b'G', b'4', b'b', b'K', branch];
                    t.insert(&key(&b), now, &resp).unwrap();
                    prop_assert_eq!(t.lookup(&key(&b), now), Some(&resp[..]));
                    latest.insert(branch, (resp, now + TIMER_J_UDP_MS));
                }
                Op::Lookup { branch, advance_ms } => {
                    now += advance_ms;
                    let b = [b'z', b'9', b'h', b'G', b'4', b'b', b'K', branch];
                    if let Some(got) = t.lookup(&key(&b), now) {
                        let (want, expires) = latest.get(&branch).unwrap();
                        prop_assert_eq!(got, &want[..]);
                        prop_assert!(*expires > now);
                    }
                }
                Op::Expire { advance_ms } => {
                    now += advance_ms;
                    t.expire(now);
                    prop_assert!(t.next_expiry_ms().is_none_or(|e| e > now));
                }
            }
            prop_assert!(t.len() <= entries_max);
            t.check_invariants();
        }
    }
}

#[test]
fn an_insert_after_a_missed_lookup_caches_under_that_key() {
    let mut t = small(4, 1 << 12);
    let k1 = key(b"z9hG4bK1");
    assert_eq!(t.lookup(&k1, T0), None);
    t.insert(&k1, T0, b"one").unwrap();
    assert_eq!(t.lookup(&k1, T0 + 1), Some(&b"one"[..]));
    // Past Timer J the lookup misses but finds the old record: the insert after it
    // supersedes that record instead of indexing a second one.
    assert_eq!(t.lookup(&k1, T0 + 40_000), None);
    t.insert(&k1, T0 + 40_000, b"two").unwrap();
    assert_eq!(t.lookup(&k1, T0 + 40_001), Some(&b"two"[..]));
    assert_eq!(t.len(), 1);
    t.check_invariants();
    // A second insert without a lookup in between searches again: it supersedes too.
    t.insert(&k1, T0 + 40_001, b"three").unwrap();
    assert_eq!(t.lookup(&k1, T0 + 40_002), Some(&b"three"[..]));
    assert_eq!(t.len(), 1);
    t.check_invariants();
}

#[test]
fn an_insert_after_the_lookup_of_another_key_or_a_change_searches_again() {
    let mut t = small(8, 1 << 12);
    let (first, other) = (key(b"z9hG4bK1"), key(b"z9hG4bK3"));
    t.insert(&first, T0, b"one").unwrap();
    // The last lookup was of another key: its (empty) search result is not reused.
    assert_eq!(t.lookup(&other, T0 + 2), None);
    t.insert(&first, T0 + 2, b"x").unwrap();
    assert_eq!(t.lookup(&first, T0 + 3), Some(&b"x"[..]));
    assert_eq!(t.len(), 1);
    // A change between the lookup and the insert: searched again.
    assert_eq!(t.lookup(&other, T0 + 3), None);
    t.insert(&key(b"z9hG4bK4"), T0 + 3, b"four").unwrap();
    t.insert(&other, T0 + 3, b"three").unwrap();
    assert_eq!(t.lookup(&other, T0 + 4), Some(&b"three"[..]));
    assert_eq!(t.lookup(&key(b"z9hG4bK4"), T0 + 4), Some(&b"four"[..]));
    assert_eq!(t.len(), 3);
    t.check_invariants();
    // An expiry between a lookup that found a (timed-out) record and the insert moves
    // every record's position: the insert finds the record again and supersedes it.
    let mut t = small(8, 1 << 12);
    let (a, b) = (key(b"z9hG4bKa"), key(b"z9hG4bKb"));
    t.insert(&a, T0, b"a").unwrap();
    t.insert(&b, T0 + 10, b"b").unwrap();
    assert_eq!(t.lookup(&b, T0 + 32_010), None);
    assert_eq!(t.expire(T0 + 32_000), 1);
    t.insert(&b, T0 + 32_010, b"b2").unwrap();
    assert_eq!(t.len(), 1);
    t.check_invariants();
    assert_eq!(t.lookup(&b, T0 + 32_011), Some(&b"b2"[..]));
    // The superseded record leaves the ring without counting as an expiry.
    assert_eq!(t.expire(T0 + 32_010), 0);
    assert_eq!(t.expire(T0 + 64_010), 1);
}

#[test]
fn a_key_encoded_once_serves_the_warm_up_the_lookup_and_the_insert() {
    let mut t = small(4, 1 << 12);
    let rfc2543 = TxnKey::Rfc2543 {
        request_uri: b"sip:example.com",
        from_tag: b"f1",
        to_tag: b"",
        call_id: b"c1@h",
        cseq: 7,
        method: b"REGISTER",
        top_via: b"SIP/2.0/UDP h:5060",
    };
    let arena = Bump::new();
    for k in [key(b"z9hG4bK1"), rfc2543] {
        let enc = k.encode_in(&arena).unwrap();
        // Encoding is deterministic: another encoding of the key is the same key.
        assert_eq!(t.encode(&k), enc);
        let _ = t.touch(enc.hash());
        assert_eq!(t.table.lookup(&enc, T0), None);
        t.table.insert(&enc, T0, b"one").unwrap();
        assert_eq!(t.lookup(&k, T0 + 1), Some(&b"one"[..]));
        assert_eq!(t.table.lookup(&enc, T0 + 1), Some(&b"one"[..]));
        t.check_invariants();
    }
}
