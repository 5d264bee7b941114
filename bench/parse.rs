//! Parser and response-writer benches.
//!
//! Run: `cargo bench --bench parse`. `parse/register` is a 529-byte REGISTER shaped like
//! RFC 3665 §2.1 with what a current softphone adds (User-Agent, Supported, Allow, an RFC
//! 5626 Contact); `parse/register_450` is the 450-byte REGISTER the target names
//! (the same headers but Allow, a shorter domain). Both in `bench/messages.rs`.

use std::hint::black_box;
use std::net::SocketAddr;

use bumpalo::Bump;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipreg::sip::{ResponseWriter, parse_request};

#[allow(dead_code)] // the pipeline's REGISTER writer
mod messages;
use messages::{REGISTER, REGISTER_450};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let mut arena = Bump::with_capacity(16 * 1024);
    for (name, msg) in [("register", REGISTER), ("register_450", REGISTER_450)] {
        assert!(parse_request(msg, &arena).is_ok(), "{name} must parse");
        g.throughput(Throughput::Bytes(msg.len() as u64));
        // The runtime resets one arena per batch; resetting per message is the worst case.
        g.bench_function(name, |b| {
            b.iter(|| {
                arena.reset();
                let req = parse_request(black_box(msg), &arena);
                black_box(req.is_ok());
            })
        });
    }
    g.finish();
}

fn write(c: &mut Criterion) {
    let arena = Bump::new();
    let Ok(req) = parse_request(REGISTER, &arena) else {
        panic!("bench REGISTER must parse");
    };
    let echo = req.echo;
    let source: SocketAddr = "198.51.100.7:40312"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    let mut out = Vec::with_capacity(2048);
    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ok_2_contacts", |b| {
        b.iter(|| {
            let mut w =
                ResponseWriter::start(&mut out, 200, "OK", black_box(&echo), source, b"8a7c2f");
            w.contact(
                b"sip:bob@192.0.2.4:5060",
                3600,
                None,
                b";+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
            );
            w.contact(b"sip:bob@203.0.113.9:5070", 1712, Some(500), b"");
            w.date(black_box(1_795_684_632));
            w.end_message(b"sipreg/0.1");
            black_box(out.len());
        })
    });
    g.finish();
}

criterion_group!(benches, parse, write);
criterion_main!(benches);
