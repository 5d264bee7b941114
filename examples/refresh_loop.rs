//! Fixed driver for load-independent profiling of the refresh pipeline at 1M bindings:
//! fills a `Registrar` with `FILL` AORs, then sends `N` refreshes (each a new transaction
//! with a higher CSeq) to AORs spread over the table, in batches of 32 copied into receive
//! buffers first, as `bench/pipeline.rs` and the runtime do.
//!
//! Instructions and simulated cache misses per refresh (the machine's load does not
//! change them):
//! ```text
//! cargo build --release --example refresh_loop
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect=refresh_loop::handle_batch target/release/examples/refresh_loop 20000 20000
//! ```
//! then divide `I refs` by the refreshes (20 000). Without valgrind it prints the wall
//! clock and thread CPU time per refresh (1M bindings unless told otherwise).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bumpalo::Bump;
use sipreg::registrar::{DropReason, Prepared, Registrar, RegistrarConfig, Source, support};

#[allow(dead_code)] // the parser bench's REGISTER
#[path = "../bench/messages.rs"]
mod messages;

/// AORs (one binding each) in the table before the measured refreshes, unless the
/// second argument says otherwise (instruction counts hardly depend on it).
const FILL_DEFAULT: u32 = 1_000_000;
/// A stride coprime with the fill, so consecutive refreshes hit AORs far apart.
const STRIDE: u32 = 7919;
const BATCH: usize = 32;
use sipreg::sip::limits::DATAGRAM_BYTES_MAX;
const NOW_MS: u64 = 1_790_000_000_000;

fn register(buf: &mut Vec<u8>, aor: u32, branch: u64, cseq: u64) -> Source {
    let [_, a, b, c] = aor.to_be_bytes();
    let ip = IpAddr::V4(Ipv4Addr::new(10, a, b, c));
    messages::write_register(buf, ip, aor, &format!("{aor:07}x{branch:08}"), cseq, 3600);
    Source::udp(SocketAddr::new(ip, 5060), 0)
}

/// The measured part: one batch already in the receive buffers.
#[inline(never)]
fn handle_batch(
    reg: &mut Registrar,
    arena: &mut Bump,
    rx: &[u8],
    batch: &[(Source, usize)],
    out: &mut Vec<u8>,
) -> usize {
    arena.reset();
    let arena: &Bump = arena;
    let mut prepared = [Prepared::Drop(DropReason::KeepAlive); BATCH];
    for ((&(_, len), buf), p) in batch
        .iter()
        .zip(rx.chunks(DATAGRAM_BYTES_MAX))
        .zip(prepared.iter_mut())
    {
        *p = Registrar::prepare(&buf[..len], arena, |_| true);
    }
    let prepared = &prepared[..batch.len()];
    reg.warm(prepared);
    let mut ok = 0;
    for (&(source, _), p) in batch.iter().zip(prepared) {
        black_box(reg.answer(NOW_MS, source, p, arena, out));
        ok += usize::from(out.get(8) == Some(&b'2'));
    }
    ok
}

/// This thread's CPU time, ns: unlike the wall clock it leaves out the time the thread
/// waited for a CPU on a shared machine.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let fill: u32 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(FILL_DEFAULT);
    let mut reg = Registrar::new(RegistrarConfig {
        max_bindings: 2 * fill as usize,
        prealloc_bindings: fill as usize,
        ..Default::default()
    });
    let mut arena = Bump::with_capacity(256 * 1024);
    let mut out = Vec::with_capacity(4096);
    let mut buf = Vec::with_capacity(1024);
    for aor in 0..fill {
        let source = register(&mut buf, aor, 0, 1);
        arena.reset();
        support::handle(&mut reg, NOW_MS, source, &buf, &arena, &mut out);
    }
    let mut rx = vec![0u8; BATCH * DATAGRAM_BYTES_MAX];
    let mut batch = Vec::with_capacity(BATCH);
    let (mut ok, mut sent) = (0usize, 0u32);
    let (mut timed, mut cpu) = (std::time::Duration::ZERO, 0u64);
    while sent < n {
        batch.clear();
        for slot in rx.chunks_mut(DATAGRAM_BYTES_MAX).take(BATCH) {
            if sent == n {
                break;
            }
            let aor = ((u64::from(sent) * u64::from(STRIDE)) % u64::from(fill)) as u32;
            let source = register(
                &mut buf,
                aor,
                u64::from(sent) + 1,
                2 + u64::from(sent / fill),
            );
            slot[..buf.len()].copy_from_slice(&buf);
            batch.push((source, buf.len()));
            sent += 1;
        }
        let (t, c) = (std::time::Instant::now(), thread_cpu_ns());
        ok += handle_batch(&mut reg, &mut arena, &rx, &batch, &mut out);
        cpu += thread_cpu_ns() - c;
        timed += t.elapsed();
    }
    println!(
        "{ok}/{n} refreshes answered 200; per refresh: {:.0} ns wall clock, {:.0} ns thread CPU",
        timed.as_nanos() as f64 / f64::from(n.max(1)),
        cpu as f64 / f64::from(n.max(1))
    );
}
