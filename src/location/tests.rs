use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const T0: u64 = 1_700_000_000_000;

fn src4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 5062)
}

fn nb<'a>(contact: &'a [u8], expires_ms: u64, call_id: &'a [u8], cseq: u32) -> NewBinding<'a> {
    NewBinding {
        contact,
        expires_ms,
        q: None,
        call_id,
        cseq,
        branch: BranchHash::of(Some(b"z9hG4bK-nb")),
        path: b"",
        source: src4(),
        transport: Transport::Udp,
        local_socket: 0,
        flow: None,
        user_agent: b"ua/1",
        instance: None,
        reg_id: None,
        flags: 0,
    }
}

fn table() -> LocationTable {
    LocationTable::new(LocationLimits::default())
}

/// Everything observable about a binding, owned, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owned {
    contact: Vec<u8>,
    expires_ms: u64,
    q: Option<u16>,
    call_id: Vec<u8>,
    cseq: u32,
    branch: BranchHash,
    path: Vec<u8>,
    source: SocketAddr,
    transport: Transport,
    local_socket: u16,
    flow: Option<Flow>,
    user_agent: Vec<u8>,
    instance: Option<Vec<u8>>,
    reg_id: Option<u32>,
    flags: u32,
    registered_ms: u64,
}

impl Owned {
    fn of(b: BindingRef<'_>) -> Self {
        Self {
            contact: b.contact().to_vec(),
            expires_ms: b.expires_ms(),
            q: b.q(),
            call_id: b.call_id().to_vec(),
            cseq: b.cseq(),
            branch: b.branch(),
            path: b.path().to_vec(),
            source: b.source(),
            transport: b.transport(),
            local_socket: b.local_socket(),
            flow: b.flow(),
            user_agent: b.user_agent().to_vec(),
            instance: b.instance().map(<[u8]>::to_vec),
            reg_id: b.reg_id(),
            flags: b.flags(),
            registered_ms: b.registered_ms(),
        }
    }

    fn new(b: &NewBinding<'_>, registered_ms: u64) -> Self {
        Self {
            contact: b.contact.to_vec(),
            expires_ms: b.expires_ms.div_ceil(1000) * 1000,
            q: b.q,
            call_id: b.call_id.to_vec(),
            cseq: b.cseq,
            branch: b.branch,
            path: b.path.to_vec(),
            source: b.source,
            transport: b.transport,
            local_socket: b.local_socket,
            flow: b.flow,
            user_agent: b.user_agent.to_vec(),
            instance: b.instance.map(<[u8]>::to_vec),
            reg_id: b.reg_id,
            flags: b.flags,
            registered_ms: registered_ms / 1000 * 1000,
        }
    }
}

type Snapshot = (BTreeMap<Vec<u8>, Vec<Owned>>, usize, usize, Option<u64>);

fn snapshot(t: &LocationTable) -> Snapshot {
    let mut m = BTreeMap::new();
    for aor in t.iter_aors() {
        assert!(
            m.insert(aor.key().to_vec(), aor.iter().map(Owned::of).collect())
                .is_none()
        );
    }
    (m, t.bindings_len(), t.aors_len(), t.next_expiry_ms())
}

fn contacts(t: &LocationTable, aor: &[u8]) -> Vec<Vec<u8>> {
    t.get(aor)
        .map(|a| a.iter().map(|b| b.contact().to_vec()).collect())
        .unwrap_or_default()
}

#[test]
fn insert_then_get_returns_every_field() {
    let mut t = table();
    let v6 = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        5070,
    );
    let b = NewBinding {
        contact: b"sip:alice@192.0.2.1:5060;transport=tcp",
        expires_ms: T0 + 3_600_000,
        q: Some(700),
        call_id: b"a84b4c76e66710@pc33",
        cseq: 314_159,
        branch: BranchHash::of(Some(b"z9hG4bK776asdhds")),
        path: b"<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        source: v6,
        transport: Transport::Tls,
        local_socket: 3,
        flow: Some(Flow {
            core: 1,
            slot: 70_000,
            generation: u32::MAX,
        }),
        user_agent: b"Softphone 1.0",
        instance: Some(b"\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""),
        reg_id: Some(1),
        flags: 0xdead_beef,
    };
    let s = t
        .apply(b"alice@example.com", T0 + 250, &[Change::Insert(b)])
        .unwrap();
    assert_eq!(
        s,
        CommitSummary {
            inserted: 1,
            updated: 0,
            removed: 0,
            aor_bindings: 1
        }
    );
    let aor = t.get(b"alice@example.com").unwrap();
    assert_eq!(aor.key(), b"alice@example.com");
    assert_eq!(aor.len(), 1);
    let got = aor.get(0).unwrap();
    assert_eq!(Owned::of(got), Owned::new(&b, T0));
    assert_eq!(got.aor_key(), b"alice@example.com");
    assert_eq!(got.remaining_s(T0 + 250), 3599);
    assert!(t.get(b"bob@example.com").is_none());
    assert_eq!((t.bindings_len(), t.aors_len()), (1, 1));
}

#[test]
fn optional_fields_absent_read_back_as_none() {
    let mut t = table();
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(nb(b"sip:a@1", T0 + 60_000, b"c", 1))],
    )
    .unwrap();
    let b = t.get(b"a@x").unwrap().get(0).unwrap();
    assert_eq!((b.q(), b.instance(), b.reg_id()), (None, None, None));
    assert_eq!(b.flow(), None);
    assert_eq!(b.source(), src4());
    assert_eq!(b.path(), b"");
}

#[test]
fn bindings_keep_insertion_order_and_update_keeps_place() {
    let mut t = table();
    let ins = [
        Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c1", 1)),
        Change::Insert(nb(b"sip:2@h", T0 + 60_000, b"c2", 1)),
        Change::Insert(nb(b"sip:3@h", T0 + 60_000, b"c3", 1)),
    ];
    t.apply(b"a@x", T0, &ins).unwrap();
    assert_eq!(
        contacts(&t, b"a@x"),
        [
            b"sip:1@h".to_vec(),
            b"sip:2@h".to_vec(),
            b"sip:3@h".to_vec()
        ]
    );

    let refreshed = nb(b"sip:2@h", T0 + 120_000, b"c2", 2);
    let s = t
        .apply(
            b"a@x",
            T0 + 5_000,
            &[Change::Update {
                index: 1,
                binding: refreshed,
            }],
        )
        .unwrap();
    assert_eq!(s.updated, 1);
    let b = t.get(b"a@x").unwrap().get(1).unwrap();
    assert_eq!(
        (b.contact(), b.cseq(), b.expires_ms()),
        (&b"sip:2@h"[..], 2, T0 + 120_000)
    );
    assert_eq!(
        b.registered_ms(),
        T0,
        "a refresh keeps the registration time"
    );

    let s = t.apply(b"a@x", T0, &[Change::Remove { index: 0 }]).unwrap();
    assert_eq!(s.aor_bindings, 2);
    assert_eq!(
        contacts(&t, b"a@x"),
        [b"sip:2@h".to_vec(), b"sip:3@h".to_vec()]
    );
}

#[test]
fn same_size_refresh_reuses_the_binding_storage() {
    let mut t = table();
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"call-1", 1))],
    )
    .unwrap();
    let before = t.get(b"a@x").unwrap().get(0).unwrap().blob.as_ptr();
    let refreshed = nb(b"sip:1@h", T0 + 90_000, b"call-2", 2);
    t.apply(
        b"a@x",
        T0,
        &[Change::Update {
            index: 0,
            binding: refreshed,
        }],
    )
    .unwrap();
    let after = t.get(b"a@x").unwrap().get(0).unwrap();
    assert_eq!(after.blob.as_ptr(), before);
    assert_eq!(after.call_id(), b"call-2");
    // A larger one moves, and still reads back right.
    let bigger = nb(
        b"sip:1@h;with=a-much-longer-parameter-list",
        T0 + 90_000,
        b"call-3",
        3,
    );
    t.apply(
        b"a@x",
        T0,
        &[Change::Update {
            index: 0,
            binding: bigger,
        }],
    )
    .unwrap();
    assert_eq!(
        Owned::of(t.get(b"a@x").unwrap().get(0).unwrap()),
        Owned::new(&bigger, T0)
    );
}

#[test]
fn keys_hashed_once_reach_the_same_aor_as_plain_keys() {
    let mut t = table();
    let alice = HashedAorKey::new(b"alice@x");
    assert_eq!(alice.bytes(), b"alice@x");
    t.apply_hashed(
        alice,
        T0,
        &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1))],
    )
    .unwrap();
    // Committed through the hashed key, found by the plain one, and the other way.
    assert_eq!(t.get(b"alice@x").map(|a| a.len()), Some(1));
    t.apply(
        b"alice@x",
        T0,
        &[Change::Insert(nb(b"sip:2@h", T0 + 60_000, b"c", 1))],
    )
    .unwrap();
    assert_eq!(t.get_hashed(alice).map(|a| a.len()), Some(2));
    assert_eq!(t.aors_len(), 1);
    assert!(t.get_hashed(HashedAorKey::new(b"bob@x")).is_none());
    assert_eq!(
        t.apply_hashed(HashedAorKey::new(b""), T0, &[]),
        Err(CommitError::AorKeyInvalid)
    );
}

#[test]
fn aor_disappears_when_its_last_binding_is_removed() {
    let mut t = table();
    let two = [
        Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1)),
        Change::Insert(nb(b"sip:2@h", T0 + 60_000, b"c", 1)),
    ];
    t.apply(b"a@x", T0, &two).unwrap();
    t.apply(b"b@x", T0, &two[..1]).unwrap();
    let s = t
        .apply(
            b"a@x",
            T0,
            &[Change::Remove { index: 1 }, Change::Remove { index: 0 }],
        )
        .unwrap();
    assert_eq!(s.aor_bindings, 0);
    assert!(t.get(b"a@x").is_none());
    assert_eq!((t.bindings_len(), t.aors_len()), (1, 1));
    assert_eq!(
        t.iter_aors().map(|a| a.key().to_vec()).collect::<Vec<_>>(),
        [b"b@x".to_vec()]
    );
    // Its wheel entries went with it: the only expiry left is b's.
    assert_eq!(t.expire(T0 + 60_000, 10), 1);
    assert_eq!(
        (t.bindings_len(), t.aors_len(), t.next_expiry_ms()),
        (0, 0, None)
    );
}

#[test]
fn failing_commits_change_nothing() {
    let mut t = LocationTable::new(LocationLimits {
        bindings_max: 4,
        bindings_per_aor_max: 3,
        binding_bytes_max: 200,
        ..LocationLimits::default()
    });
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1))],
    )
    .unwrap();
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(nb(b"sip:2@h", T0 + 70_000, b"c", 2))],
    )
    .unwrap();
    t.apply(
        b"b@x",
        T0,
        &[Change::Insert(nb(b"sip:3@h", T0 + 80_000, b"d", 1))],
    )
    .unwrap();
    let before = snapshot(&t);
    let up = |i| Change::Update {
        index: i,
        binding: nb(b"sip:9@h", T0 + 999_000, b"z", 9),
    };
    let ins = Change::Insert(nb(b"sip:8@h", T0 + 10_000, b"y", 1));
    let long = [b'x'; 300];
    let cases: [(&[u8], Vec<Change<'_>>, CommitError); 8] = [
        (
            b"a@x",
            vec![
                up(0),
                Change::Remove { index: 1 },
                Change::Remove { index: 2 },
            ],
            CommitError::IndexOutOfRange,
        ),
        (
            b"a@x",
            vec![up(0), Change::Remove { index: 0 }],
            CommitError::IndexRepeated,
        ),
        (
            b"a@x",
            vec![Change::Remove { index: 1 }, Change::Remove { index: 1 }],
            CommitError::IndexRepeated,
        ),
        (b"a@x", vec![up(1), ins, ins], CommitError::AorFull),
        (b"c@x", vec![ins, ins], CommitError::TableFull),
        (
            b"a@x",
            vec![up(0), Change::Insert(nb(&long, T0, b"c", 1))],
            CommitError::BindingTooLarge,
        ),
        (
            b"a@x",
            vec![
                up(0),
                Change::Insert(NewBinding {
                    q: Some(1001),
                    ..nb(b"sip:q@h", T0, b"c", 1)
                }),
            ],
            CommitError::QOutOfRange,
        ),
        (b"", vec![ins], CommitError::AorKeyInvalid),
    ];
    for (aor, changes, err) in cases {
        assert_eq!(t.apply(aor, T0 + 1_000, &changes), Err(err), "{changes:?}");
        assert_eq!(snapshot(&t), before, "after {err:?}");
    }
    assert!(t.get(b"c@x").is_none());
}

#[test]
fn table_full_only_counts_net_growth() {
    let mut t = LocationTable::new(LocationLimits {
        bindings_max: 2,
        ..LocationLimits::default()
    });
    let b = |c: &'static [u8]| nb(c, T0 + 60_000, b"c", 1);
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(b(b"sip:1@h")), Change::Insert(b(b"sip:2@h"))],
    )
    .unwrap();
    assert_eq!(
        t.apply(b"b@x", T0, &[Change::Insert(b(b"sip:3@h"))]),
        Err(CommitError::TableFull)
    );
    assert_eq!(t.limits().bindings_max, 2);
    // Replacing one binding by another at the cap is fine.
    t.apply(
        b"a@x",
        T0,
        &[Change::Remove { index: 0 }, Change::Insert(b(b"sip:3@h"))],
    )
    .unwrap();
    assert_eq!(
        contacts(&t, b"a@x"),
        [b"sip:2@h".to_vec(), b"sip:3@h".to_vec()]
    );
    // Once one expires there is room again.
    t.apply(
        b"a@x",
        T0,
        &[Change::Update {
            index: 0,
            binding: nb(b"sip:2@h", T0 + 1_000, b"c", 2),
        }],
    )
    .unwrap();
    assert_eq!(t.expire(T0 + 1_000, 10), 1);
    t.apply(b"b@x", T0 + 1_000, &[Change::Insert(b(b"sip:4@h"))])
        .unwrap();
    assert_eq!(t.bindings_len(), 2);
}

#[test]
fn expire_removes_in_deadline_order_and_reports_next() {
    let mut t = table();
    for (i, (aor, secs)) in [(&b"a@x"[..], 30u64), (b"b@x", 10), (b"c@x", 20)]
        .into_iter()
        .enumerate()
    {
        let c = [b'0' + i as u8];
        t.apply(
            aor,
            T0,
            &[Change::Insert(nb(&c, T0 + secs * 1000, b"c", 1))],
        )
        .unwrap();
    }
    assert_eq!(t.next_expiry_ms(), Some(T0 + 10_000));
    assert_eq!(t.expire(T0 + 9_999, 100), 0);
    assert_eq!(t.expire(T0 + 10_000, 100), 1);
    assert!(t.get(b"b@x").is_none());
    assert_eq!(t.next_expiry_ms(), Some(T0 + 20_000));
    assert_eq!(t.expire(T0 + 25_000, 100), 1);
    assert!(t.get(b"c@x").is_none() && t.get(b"a@x").is_some());
    assert_eq!(t.next_expiry_ms(), Some(T0 + 30_000));
    assert_eq!(t.expire(T0 + 30_000, 100), 1);
    assert_eq!(
        (
            t.aors_len(),
            t.bindings_len(),
            t.expired_total(),
            t.next_expiry_ms()
        ),
        (0, 0, 3, None)
    );
}

#[test]
fn expiry_is_rounded_up_never_early() {
    let mut t = table();
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(nb(b"sip:1@h", T0 + 1_500, b"c", 1))],
    )
    .unwrap();
    assert_eq!(
        t.get(b"a@x").unwrap().get(0).unwrap().expires_ms(),
        T0 + 2_000
    );
    assert_eq!(t.expire(T0 + 1_999, 10), 0);
    assert_eq!(t.expire(T0 + 2_000, 10), 1);
}

#[test]
fn refreshed_binding_is_not_removed_at_its_old_expiry() {
    let mut t = table();
    t.apply(
        b"a@x",
        T0,
        &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1))],
    )
    .unwrap();
    t.apply(
        b"a@x",
        T0 + 50_000,
        &[Change::Update {
            index: 0,
            binding: nb(b"sip:1@h", T0 + 110_000, b"c", 2),
        }],
    )
    .unwrap();
    assert_eq!(t.expire(T0 + 60_000, 10), 0);
    assert_eq!(t.expire(T0 + 109_000, 10), 0);
    assert_eq!(t.bindings_len(), 1);
    // Shortening works too: the binding is removed at its new, earlier expiry.
    t.apply(
        b"a@x",
        T0 + 109_000,
        &[Change::Update {
            index: 0,
            binding: nb(b"sip:1@h", T0 + 109_500, b"c", 3),
        }],
    )
    .unwrap();
    assert_eq!(t.next_expiry_ms(), Some(T0 + 110_000));
    assert_eq!(t.expire(T0 + 110_000, 10), 1);
    assert_eq!(t.expired_total(), 1);
}

#[test]
fn expire_work_is_bounded_per_call() {
    let mut t = table();
    for i in 0..10u8 {
        let aor = [b'a' + i, b'@', b'x'];
        t.apply(
            &aor,
            T0,
            &[Change::Insert(nb(
                b"sip:1@h",
                T0 + 5_000 + u64::from(i % 3) * 1000,
                b"c",
                1,
            ))],
        )
        .unwrap();
    }
    let now = T0 + 10_000;
    let mut calls = Vec::new();
    loop {
        let n = t.expire(now, 3);
        calls.push(n);
        if n < 3 {
            break;
        }
        assert!(t.next_expiry_ms().unwrap() <= now, "more work is due");
    }
    assert_eq!(calls, [3, 3, 3, 1]);
    assert_eq!(
        (t.bindings_len(), t.aors_len(), t.expired_total()),
        (0, 0, 10)
    );
}

#[test]
fn expiry_removes_one_binding_from_a_multi_binding_aor() {
    let mut t = table();
    let ins = [
        Change::Insert(nb(b"sip:1@h", T0 + 30_000, b"c", 1)),
        Change::Insert(nb(b"sip:2@h", T0 + 10_000, b"c", 1)),
        Change::Insert(nb(b"sip:3@h", T0 + 20_000, b"c", 1)),
    ];
    t.apply(b"a@x", T0, &ins).unwrap();
    assert_eq!(t.expire(T0 + 10_000, 10), 1);
    assert_eq!(
        contacts(&t, b"a@x"),
        [b"sip:1@h".to_vec(), b"sip:3@h".to_vec()]
    );
    assert_eq!(t.expire(T0 + 30_000, 10), 2);
    assert!(t.get(b"a@x").is_none());
}

#[test]
fn expiries_beyond_the_wheel_horizon_and_long_gaps() {
    let mut t = table();
    let far = T0 + 3 * 86_400_000 + 123;
    t.apply(
        b"far@x",
        T0,
        &[Change::Insert(nb(b"sip:1@h", far, b"c", 1))],
    )
    .unwrap();
    t.apply(
        b"near@x",
        T0,
        &[Change::Insert(nb(b"sip:1@h", T0 + 1_000, b"c", 1))],
    )
    .unwrap();
    // Walk the clock in steps across several turns of the wheel.
    let mut now = T0;
    let mut removed = 0;
    while now < far - 1_000 {
        removed += t.expire(now, 100);
        now += 7_777_000;
    }
    assert_eq!(removed, 1);
    assert!(t.get(b"far@x").is_some());
    // A single call after a gap of days.
    assert_eq!(t.expire(far + 86_400_000, 100), 1);
    assert_eq!(t.bindings_len(), 0);
}

#[test]
fn binding_inserted_already_expired_goes_at_the_next_expire() {
    let mut t = table();
    t.apply(
        b"a@x",
        T0 + 10_000,
        &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1))],
    )
    .unwrap();
    assert_eq!(t.expire(T0 + 10_000, 10), 0);
    t.apply(
        b"b@x",
        T0 + 10_000,
        &[Change::Insert(nb(b"sip:1@h", T0 + 5_000, b"c", 1))],
    )
    .unwrap();
    assert_eq!(t.next_expiry_ms(), Some(T0 + 5_000));
    assert!(
        t.get(b"b@x")
            .unwrap()
            .get(0)
            .unwrap()
            .is_expired(T0 + 10_000)
    );
    assert_eq!(t.expire(T0 + 10_000, 10), 1);
    assert!(t.get(b"b@x").is_none() && t.get(b"a@x").is_some());
}

#[test]
fn struct_sizes_stay_small() {
    assert!(size_of::<Transport>() == 1);
    assert!(size_of::<table::Slot>() <= 40);
}

/// Resident memory per binding at 1M one-binding AORs with realistic field sizes.
/// Run alone: `cargo test --release --lib location::tests::memory_per_binding -- --ignored --nocapture`
#[test]
#[ignore = "measurement; reads /proc/self/status"]
fn memory_per_binding() {
    fn rss_kb() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    const N: u32 = 1_000_000;
    let before = rss_kb();
    let mut t = LocationTable::new(LocationLimits {
        bindings_max: N as usize,
        bindings_prealloc: N as usize,
        ..LocationLimits::default()
    });
    let (mut key, mut contact, mut call_id) = (Vec::new(), Vec::new(), Vec::new());
    let ua = b"Yealink SIP-T46S 66.86.0.15 xy"; // 30 bytes
    for i in 0..N {
        use std::io::Write;
        key.clear();
        contact.clear();
        call_id.clear();
        write!(key, "u{i:07}@sip.example.com.").unwrap(); // 25 bytes
        write!(
            contact,
            "sip:u{i:07}@198.51.100.23:5060;transport=udp;rinstance=3f2a9b1c0d4e5f60a1b2c3d4"
        )
        .unwrap();
        write!(call_id, "{i:08}-4c5d6e7f8091a2b3c4d5e6f708192a3").unwrap();
        assert_eq!(
            (key.len(), contact.len(), call_id.len(), ua.len()),
            (25, 80, 40, 30)
        );
        let b = NewBinding {
            user_agent: ua,
            ..nb(
                &contact,
                T0 + 3_600_000 + u64::from(i % 3600) * 1000,
                &call_id,
                1,
            )
        };
        t.apply(&key, T0, &[Change::Insert(b)]).unwrap();
    }
    let after = rss_kb();
    assert_eq!(t.bindings_len(), N as usize);
    let per = (after - before) as f64 * 1024.0 / f64::from(N);
    println!("resident bytes per binding: {per:.1} (RSS {before} kB -> {after} kB, {N} bindings)");
    assert!(per <= 350.0, "{per} B per binding");
}

// ---- model-based property test --------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Apply {
        aor: u8,
        advance_ms: u64,
        changes: Vec<ChangeSpec>,
    },
    Expire {
        advance_ms: u64,
        max: usize,
    },
}

#[derive(Clone, Debug)]
enum ChangeSpec {
    Insert(Spec),
    Update(usize, Spec),
    Remove(usize),
}

#[derive(Clone, Debug)]
struct Spec {
    contact: u8,
    expires_offset_ms: i64,
    call_id_len: usize,
    cseq: u32,
    q: Option<u16>,
    path_len: usize,
    v6: bool,
    instance: Option<u8>,
    reg_id: Option<u32>,
}

const CONTACTS: [&[u8]; 4] = [
    b"sip:a@1",
    b"sip:bb@2;transport=tcp",
    b"sip:c@3",
    b"sips:device@[2001:db8::1]",
];
const AORS: [&[u8]; 3] = [b"a@x", b"bob@example.com", b"c@y"];
const PATH: &[u8] = b"<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>";

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..CONTACTS.len() as u8,
        -3_000i64..40_000,
        0usize..60,
        any::<u32>(),
        prop::option::of(0u16..=1000),
        0..PATH.len(),
        any::<bool>(),
        prop::option::of(0u8..3),
        prop::option::of(any::<u32>()),
    )
        .prop_map(
            |(contact, expires_offset_ms, call_id_len, cseq, q, path_len, v6, instance, reg_id)| {
                Spec {
                    contact,
                    expires_offset_ms,
                    call_id_len,
                    cseq,
                    q,
                    path_len,
                    v6,
                    instance,
                    reg_id,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let change = prop_oneof![
        3 => spec().prop_map(ChangeSpec::Insert),
        2 => (0usize..4, spec()).prop_map(|(i, s)| ChangeSpec::Update(i, s)),
        2 => (0usize..4).prop_map(ChangeSpec::Remove),
    ];
    prop_oneof![
        3 => (0..AORS.len() as u8, 0u64..3_000, prop::collection::vec(change, 0..4))
            .prop_map(|(aor, advance_ms, changes)| Op::Apply { aor, advance_ms, changes }),
        1 => (0u64..15_000, 0usize..4).prop_map(|(advance_ms, max)| Op::Expire { advance_ms, max }),
    ]
}

const CALL_IDS: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const INSTANCES: [&[u8]; 3] = [
    b"",
    b"<urn:uuid:1>",
    b"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
];

fn build(s: &Spec, now: u64) -> NewBinding<'static> {
    let ip = if s.v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, s.contact))
    };
    NewBinding {
        contact: CONTACTS[usize::from(s.contact)],
        expires_ms: now.saturating_add_signed(s.expires_offset_ms),
        q: s.q,
        call_id: &CALL_IDS[..s.call_id_len],
        cseq: s.cseq,
        branch: BranchHash::from_u32(s.cseq.rotate_left(13)),
        path: &PATH[..s.path_len],
        source: SocketAddr::new(ip, 5060 + u16::from(s.contact)),
        transport: Transport::from_u8(s.contact % 5).unwrap(),
        local_socket: u16::from(s.contact),
        // Stream transports (every other contact here) arrive over a connection.
        flow: (s.contact % 2 == 1).then_some(Flow {
            core: u16::from(s.contact),
            slot: s.cseq,
            generation: s.cseq.rotate_left(3),
        }),
        user_agent: &CALL_IDS[..s.call_id_len / 2],
        instance: s.instance.map(|i| INSTANCES[usize::from(i)]),
        reg_id: s.reg_id,
        flags: s.cseq.rotate_left(7),
    }
}

/// The reference: what the table should hold, and what a commit should return.
fn model_apply(
    model: &mut BTreeMap<Vec<u8>, Vec<Owned>>,
    limits: &LocationLimits,
    aor: &[u8],
    now: u64,
    changes: &[Change<'_>],
) -> Result<CommitSummary, CommitError> {
    let old = model.get(aor).cloned().unwrap_or_default();
    let total: usize = model.values().map(Vec::len).sum();
    let mut mark = vec![0u8; old.len()];
    let (mut ins, mut upd, mut rem) = (0, 0, 0);
    for c in changes {
        match c {
            Change::Insert(_) => ins += 1,
            Change::Update { index, .. } | Change::Remove { index } => {
                let m = mark.get_mut(*index).ok_or(CommitError::IndexOutOfRange)?;
                if *m != 0 {
                    return Err(CommitError::IndexRepeated);
                }
                *m = if matches!(c, Change::Remove { .. }) {
                    2
                } else {
                    1
                };
                if matches!(c, Change::Remove { .. }) {
                    rem += 1
                } else {
                    upd += 1
                }
            }
        }
    }
    let after = old.len() - rem + ins;
    if ins > rem && after > limits.bindings_per_aor_max {
        return Err(CommitError::AorFull);
    }
    if ins > rem && total - rem + ins > limits.bindings_max {
        return Err(CommitError::TableFull);
    }
    let mut new: Vec<Owned> = Vec::new();
    for (i, b) in old.iter().enumerate() {
        if mark[i] == 2 {
            continue;
        }
        let mut b = b.clone();
        if let Some(Change::Update { binding, .. }) = changes
            .iter()
            .find(|c| matches!(c, Change::Update { index, .. } if *index == i))
        {
            b = Owned::new(binding, b.registered_ms);
        }
        new.push(b);
    }
    for c in changes {
        if let Change::Insert(b) = c {
            new.push(Owned::new(b, now));
        }
    }
    if new.is_empty() {
        model.remove(aor);
    } else {
        model.insert(aor.to_vec(), new);
    }
    Ok(CommitSummary {
        inserted: ins,
        updated: upd,
        removed: rem,
        aor_bindings: after,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_a_btreemap_model(ops in prop::collection::vec(op(), 1..60)) {
        let limits = LocationLimits { bindings_max: 7, bindings_per_aor_max: 4, ..LocationLimits::default() };
        let mut t = LocationTable::new(limits);
        let mut model: BTreeMap<Vec<u8>, Vec<Owned>> = BTreeMap::new();
        let mut now = T0;
        for op in ops {
            match op {
                Op::Apply { aor, advance_ms, changes } => {
                    now += advance_ms;
                    let changes: Vec<Change<'static>> = changes.iter().map(|c| match c {
                        ChangeSpec::Insert(s) => Change::Insert(build(s, now)),
                        ChangeSpec::Update(i, s) => Change::Update { index: *i, binding: build(s, now) },
                        ChangeSpec::Remove(i) => Change::Remove { index: *i },
                    }).collect();
                    let aor = AORS[usize::from(aor)];
                    let want = model_apply(&mut model, &limits, aor, now, &changes);
                    prop_assert_eq!(t.apply(aor, now, &changes), want);
                }
                Op::Expire { advance_ms, max } => {
                    now += advance_ms;
                    let due = |b: &Owned| b.expires_ms <= now;
                    let due_total = model.values().flatten().filter(|b| due(b)).count();
                    let before = t.expired_total();
                    let n = t.expire(now, max);
                    prop_assert_eq!(n, due_total.min(max));
                    prop_assert_eq!(t.expired_total() - before, n as u64);
                    // Which due bindings go first is the wheel's business: the table must
                    // hold the model's bindings minus some due ones, order kept.
                    let mut next = BTreeMap::new();
                    for (k, list) in &model {
                        let got: Vec<Owned> = t.get(k).map(|a| a.iter().map(Owned::of).collect()).unwrap_or_default();
                        let mut gi = got.iter().peekable();
                        for b in list {
                            if gi.peek() == Some(&b) {
                                gi.next();
                            } else {
                                prop_assert!(due(b), "a binding not yet due was removed: {:?}", b);
                            }
                        }
                        prop_assert!(gi.next().is_none(), "table holds a binding the model lacks");
                        if !got.is_empty() {
                            next.insert(k.clone(), got);
                        }
                    }
                    model = next;
                }
            }
            let (snap, bindings, aors, next_expiry) = snapshot(&t);
            prop_assert_eq!(&snap, &model);
            prop_assert_eq!(bindings, model.values().map(Vec::len).sum::<usize>());
            prop_assert_eq!(aors, model.len());
            let earliest = model.values().flatten().map(|b| b.expires_ms).min();
            match (next_expiry, earliest) {
                (None, None) => {}
                (Some(n), Some(e)) => prop_assert!(n <= e, "next_expiry {} later than {}", n, e),
                other => prop_assert!(false, "next_expiry/model mismatch {:?}", other),
            }
        }
    }
}

/// The dump walk (issue 7): every AOR once, in bounded steps, and a cursor that
/// survives inserts and removals made between two steps.
#[test]
fn aors_from_slot_pages_every_aor_once_across_changes() {
    let mut t = table();
    let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("u{i}@x").into_bytes()).collect();
    for k in &keys {
        let c = [
            Change::Insert(nb(b"sip:a@h", 60_000, b"c", 1)),
            Change::Insert(nb(b"sip:b@h", 60_000, b"c", 1)),
        ];
        t.apply(k, 0, &c).unwrap();
    }
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut cursor = Some(0);
    let mut steps = 0;
    while let Some(from) = cursor {
        cursor = t.aors_from_slot(from, 7, 1000, |aor| seen.push(aor.key().to_vec()));
        steps += 1;
        // Changes between pages: new AORs, and removal of AORs already seen.
        let new = format!("new{steps}@x").into_bytes();
        t.apply(&new, 0, &[Change::Insert(nb(b"sip:n@h", 60_000, b"c", 1))])
            .unwrap();
        if let Some(first) = seen.first().cloned() {
            let _ = t.apply(&first, 0, &[Change::Remove { index: 0 }]);
        }
    }
    for k in &keys {
        assert_eq!(
            seen.iter().filter(|s| *s == k).count(),
            1,
            "{:?}",
            String::from_utf8_lossy(k)
        );
    }
    assert!(steps >= 50 / 7, "{steps} steps");
    // A bounded scan returns a cursor even when it found nothing yet.
    assert_eq!(
        t.aors_from_slot(0, 10, 0, |_| panic!("scanned 0 slots")),
        Some(0)
    );
}

#[test]
fn a_refreshed_binding_expires_at_its_new_expiry_not_its_old_one() {
    let mut t = table();
    let refresh = |t: &mut LocationTable, aor: &[u8], at_ms: u64, expires_ms: u64, cseq: u32| {
        t.apply(
            aor,
            at_ms,
            &[Change::Update {
                index: 0,
                binding: nb(b"sip:1@h", expires_ms, b"c", cseq),
            }],
        )
        .unwrap();
    };
    for aor in [&b"a@x"[..], b"b@x"] {
        t.apply(
            aor,
            T0,
            &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1))],
        )
        .unwrap();
    }
    // a: later (the wheel leaves it where it was until then); b: sooner (moved now).
    refresh(&mut t, b"a@x", T0 + 30_000, T0 + 90_000, 2);
    refresh(&mut t, b"b@x", T0 + 30_000, T0 + 45_000, 2);
    assert_eq!(t.next_expiry_ms(), Some(T0 + 45_000));
    assert_eq!(t.expire(T0 + 45_000, 10), 1);
    assert!(t.get(b"b@x").is_none());
    // At a's old expiry it is not removed: at most a spurious wake-up, which moves it on.
    assert!(t.next_expiry_ms().unwrap() <= T0 + 90_000);
    assert_eq!(t.expire(T0 + 60_000, 10), 0);
    assert_eq!(t.next_expiry_ms(), Some(T0 + 90_000));
    // Refreshed again while waiting in its new bucket, then later still.
    refresh(&mut t, b"a@x", T0 + 70_000, T0 + 100_000, 3);
    assert_eq!(t.expire(T0 + 99_999, 10), 0);
    assert!(t.get(b"a@x").is_some());
    assert_eq!(t.expire(T0 + 100_000, 10), 1);
    assert_eq!(
        (t.aors_len(), t.bindings_len(), t.next_expiry_ms()),
        (0, 0, None)
    );
}

#[test]
fn moving_refreshed_bindings_on_is_bounded_per_expire_call() {
    let mut t = LocationTable::new(LocationLimits {
        bindings_max: 2 * EXPIRE_MOVES_MAX,
        ..LocationLimits::default()
    });
    let n = EXPIRE_MOVES_MAX + 10;
    let aors: Vec<Vec<u8>> = (0..n).map(|i| format!("u{i}@x").into_bytes()).collect();
    for aor in &aors {
        t.apply(
            aor,
            T0,
            &[Change::Insert(nb(b"sip:1@h", T0 + 60_000, b"c", 1))],
        )
        .unwrap();
    }
    // All refreshed to later: they wait in the bucket of T0 + 60 s to be moved on.
    for aor in &aors {
        t.apply(
            aor,
            T0 + 30_000,
            &[Change::Update {
                index: 0,
                binding: nb(b"sip:1@h", T0 + 90_000, b"c", 2),
            }],
        )
        .unwrap();
    }
    // The first call stops after EXPIRE_MOVES_MAX moves, and the wake-up stays due.
    assert_eq!(t.expire(T0 + 60_000, 100), 0);
    assert_eq!(t.next_expiry_ms(), Some(T0 + 60_000));
    assert_eq!(t.expire(T0 + 60_000, 100), 0);
    assert_eq!(t.next_expiry_ms(), Some(T0 + 90_000));
    assert_eq!(t.bindings_len(), n);
    assert_eq!(t.expire(T0 + 90_000, 2 * n), n);
}
