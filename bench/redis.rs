//! The Redis client core's per-REGISTER CPU: building the commit command (ARGV and
//! RESP2 bytes) and decoding the script's reply. SCALE-OUT-NOTES.md §3 puts fred and
//! redis-rs at 6–9 µs per call; this is the figure to compare.
//!
//! `cargo bench --bench redis`
use criterion::{Criterion, criterion_group, criterion_main};
use sipreg::location::Transport;
use sipreg::redis::resp::{self, Reply};
use sipreg::redis::script::{
    self, CommitIntent, CommitOp, ContactIntent, Invoke, decode_commit_reply,
};
use sipreg::registrar::MaxContactsPolicy;
use std::hint::black_box;

fn contact() -> ContactIntent<'static> {
    ContactIntent {
        match_key: b"sip=5:alice-=12:198.51.100.2=4:5060-----",
        expires_s: 3600,
        q: None,
        contact: b"sip:alice@198.51.100.23:5060;transport=udp;rinstance=8a7d3f",
        path: b"",
        source: "198.51.100.23:5060".parse().unwrap(),
        transport: Transport::Udp,
        listen: 0,
        user_agent: b"Yealink SIP-T46S 66.86.0.15 xy",
        instance: None,
        reg_id: None,
        flow: None,
    }
}

/// A 3-binding `OK` reply as the script sends it, in RESP2 bytes.
fn reply_bytes() -> Vec<u8> {
    let call_id = b"a84b4c76e66710@pc33.atlanta.example.com";
    let match_key = contact().match_key;
    let mut value = format!(
        "1764820000000 1764810000000 7 42 {} {} 0 0|",
        call_id.len(),
        match_key.len()
    )
    .into_bytes();
    value.extend_from_slice(call_id);
    value.extend_from_slice(match_key);
    script::encode_blob(&contact(), &mut value);
    let mut out = b"*10\r\n$2\r\nOK\r\n:1764810000000\r\n:0\r\n:1\r\n".to_vec();
    for _ in 0..3 {
        out.extend_from_slice(b":3600\r\n");
        out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn redis(c: &mut Criterion) {
    let contacts = [contact()];
    let intent = CommitIntent {
        aor_key: b"alice@atlanta.example.com",
        call_id: b"a84b4c76e66710@pc33.atlanta.example.com",
        cseq: 7,
        branch_hash: 42,
        max_contacts: 10,
        policy: MaxContactsPolicy::Reject,
        op: CommitOp::Update(&contacts),
    };
    let (mut out, mut scratch) = (Vec::with_capacity(1024), Vec::with_capacity(256));
    c.bench_function("redis/encode_commit_1_contact", |b| {
        b.iter(|| {
            out.clear();
            script::encode_commit(&mut out, &mut scratch, black_box(&intent), Invoke::EvalSha);
            black_box(&out);
        })
    });
    let bytes = reply_bytes();
    assert!(matches!(
        resp::decode(&bytes),
        Ok(Some((Reply::Array(_), _)))
    ));
    c.bench_function("redis/decode_commit_reply_3_bindings", |b| {
        b.iter(|| {
            let (reply, _) = resp::decode(black_box(&bytes)).unwrap().unwrap();
            black_box(decode_commit_reply(&reply).unwrap());
        })
    });
}

criterion_group!(benches, redis);
criterion_main!(benches);
