//! `--hold-connections N --hold-s S`: open N idle TCP or TLS connections (handshakes done,
//! nothing sent) and hold them S seconds.
//!
//! Why: a registrar's cost per idle connection (issue 16: resident memory per idle TLS
//! connection with 50 000 held) is measured by whoever reads the server's memory while the
//! connections are up; this mode only has to get them up, keep them up, and say how many
//! are. A connection the server closes is counted and not reopened, so "up at end" is what
//! the server kept.

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cli::{Hold, RunConfig};
use crate::net;
use crate::stats::ConnStats;
use crate::transport::stream::Streams;

/// Longest wait between two looks at the clock and the progress counters.
const TICK_NS: u64 = 100_000_000;
/// Receive calls per ready connection per turn (TLS handshakes and tickets are small).
const RECV_ROUNDS_MAX: usize = 4;
/// Most connections per worker connecting or handshaking at once: a server accepts and
/// hands over connections at its own pace, and a burst of tens of thousands of SYNs and
/// ClientHellos measures its accept queue, not its memory per connection.
const OPENING_PER_WORKER_MAX: usize = 256;

/// Runs the hold on every worker; exit 0 when every connection was up at the end.
pub(crate) fn run(cfg: &RunConfig, hold: &Hold) -> io::Result<ExitCode> {
    let workers = cfg.cpus.len() as u64;
    let up: Arc<Vec<AtomicU64>> = Arc::new((0..workers).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (id, cpu) in cfg.cpus.iter().copied().enumerate() {
        let n = hold.connections / workers + u64::from((id as u64) < hold.connections % workers);
        let (cfg, h, up, stop) = (cfg.clone(), hold.clone(), up.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("hold-{id}"))
                .spawn(move || -> io::Result<ConnStats> {
                    if let Some(cpu) = cpu
                        && !net::pin_to(cpu)
                    {
                        eprintln!("warning: hold {id}: could not pin to CPU {cpu}");
                    }
                    let mut s = Streams::open_window(
                        h.sources.clone(),
                        cfg.target,
                        n as usize,
                        cfg.tls.clone(),
                        OPENING_PER_WORKER_MAX,
                    )?;
                    let mut ready = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        s.wait(TICK_NS, &mut ready)?;
                        for &ch in &ready {
                            for _ in 0..RECV_ROUNDS_MAX {
                                if s.recv(ch).drained {
                                    break;
                                }
                            }
                        }
                        up[id].store(s.established() as u64, Ordering::Relaxed);
                    }
                    Ok(s.stats())
                })?,
        );
    }
    let started = Instant::now();
    let mut all_up_s = None;
    let mut tick = 1u64;
    while started.elapsed() < hold.duration && !threads.iter().any(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        let now: u64 = up.iter().map(|u| u.load(Ordering::Relaxed)).sum();
        if all_up_s.is_none() && now == hold.connections {
            all_up_s = Some(started.elapsed().as_secs_f64());
            if !cfg.quiet {
                eprintln!(
                    "hold: all {now} up after {:.3} s",
                    all_up_s.unwrap_or_default()
                );
            }
        }
        if started.elapsed() >= Duration::from_secs(tick) {
            if !cfg.quiet {
                eprintln!("[{tick:>4}s] up {now} of {}", hold.connections);
            }
            tick += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = ConnStats::default();
    for t in threads {
        let s = t
            .join()
            .map_err(|_| io::Error::other("a hold thread panicked"))??;
        total.merge(&s);
    }
    let held_s = started.elapsed().as_secs_f64();
    let all_up = all_up_s.map_or("null".to_string(), |s| format!("{s:.3}"));
    let line = format!(
        "hold         {} {} connections requested  held {held_s:.1} s  all up after {all_up} s\n{}\n",
        hold.connections,
        cfg.transport.name(),
        total.line()
    );
    if cfg.json {
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "{{\"mode\":\"hold\",\"transport\":\"{}\",\"requested\":{},\"held_s\":{held_s:.3},\"all_up_s\":{all_up},{}}}",
            cfg.transport.name(),
            hold.connections,
            total.json_members()
        );
        if !cfg.quiet {
            eprint!("{line}");
        }
    } else {
        print!("{line}");
    }
    Ok(if total.up_at_end == hold.connections {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
