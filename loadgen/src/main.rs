//! `sipreg-loadgen`: drives a SIP registrar with REGISTER/INVITE load and measures it, and
//! (`echo` subcommand) reflects datagrams to measure the machine's UDP ceiling.
//!
//! Why its own binary: sipp spends a core on a few tens of thousands of requests per second;
//! measuring a thread-per-core registrar needs a client an order of magnitude cheaper per
//! request (batched syscalls, no per-request allocation, O(1) response matching).

mod cli;
mod digest;
mod echo;
mod hold;
mod net;
mod request;
mod response;
mod schedule;
mod stats;
mod transport;
mod worker;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser as _;

use crate::cli::{Cli, Command, Pace, RunConfig};
use crate::request::Identity;
use crate::stats::{Progress, Report, ServerCpu, Stats};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, naming the flag (clap's first line does).
            let text = e.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            return ExitCode::from(2);
        }
    };
    let cpus = net::available_cpus();
    match cli.command {
        Some(Command::Echo(args)) => match args.validate(&cpus) {
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
            Ok(cfg) => match echo::run(&cfg) {
                Ok(n) => {
                    eprintln!("echo: reflected {n} datagrams");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: echo on {}: {e}", cfg.listen);
                    ExitCode::from(1)
                }
            },
        },
        Some(Command::Subscribers(args)) => match args.validate() {
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
            Ok(cfg) => {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                match cli::write_subscribers(&cfg, &mut out) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: writing the subscriber file: {e}");
                        ExitCode::from(1)
                    }
                }
            }
        },
        None => match cli.run.validate(&cpus) {
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
            Ok(cfg) => match run(cfg) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            },
        },
    }
}

/// A per-run nonce: process id and clock, so two runs never share a branch or Call-ID.
fn run_nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u32).rotate_left(13) ^ std::process::id().wrapping_mul(0x9e37_79b9)
}

fn server_cpu(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|&p| stats::process_cpu(p)).sum()
}

/// Descriptors a run may hold besides its connections (stdio, epoll, /proc reads).
const FDS_SPARE: u64 = 64;

fn run(cfg: RunConfig) -> std::io::Result<ExitCode> {
    let workers = cfg.cpus.len();
    if cfg.transport.reliable() {
        let conns = match &cfg.hold {
            Some(h) => h.connections,
            None => (workers * cfg.channels) as u64,
        };
        let flood = cfg
            .flood_rate
            .map_or(0, |_| transport::flood::OPEN_MAX as u64);
        let wanted = conns + flood + FDS_SPARE;
        let got = net::raise_fd_limit(wanted);
        if got < wanted {
            let flag = if cfg.hold.is_some() {
                "--hold-connections"
            } else {
                "--connections"
            };
            eprintln!(
                "error: {flag}: {wanted} descriptors needed, the open-file limit is {got} (raise ulimit -n, or split the connections over several processes)"
            );
            return Ok(ExitCode::from(2));
        }
    }
    if let Some(hold) = &cfg.hold {
        return hold::run(&cfg, hold);
    }
    let identity = Identity {
        domain: cfg.domain.clone(),
        user_prefix: cfg.user_prefix.clone(),
        local_ip: cfg.bind.to_string(),
        nonce: run_nonce(),
        expires_s: cfg.expires_s,
        instance: cfg.instance,
        transport: cfg.transport,
    };
    let shared = Arc::new(worker::Shared {
        progress: (0..workers).map(|_| Progress::default()).collect(),
        barrier: Barrier::new(workers + 1),
        abort: AtomicBool::new(false),
        prime_failures: AtomicU64::new(0),
        identity,
        cfg: cfg.clone(),
    });
    let mut threads = Vec::with_capacity(workers);
    for (id, cpu) in cfg.cpus.iter().copied().enumerate() {
        let shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{id}"))
                .spawn(move || {
                    let r = worker::run(id as u32, cpu, shared.clone());
                    if r.is_err() {
                        // Never leave the main thread waiting on a barrier a dead worker skips.
                        shared.barrier.wait();
                        shared.barrier.wait();
                    }
                    r
                })?,
        );
    }
    if cfg.scenario.needs_prime() && !cfg.quiet {
        eprintln!("priming: registering {} users", cfg.users);
    }
    shared.barrier.wait();
    // Tolerate 0.1 % failed registrations in the prime phase (a loaded server may drop a few);
    // more means the measured phase would only measure failures.
    let prime_failed = shared.prime_failures.load(Ordering::Relaxed);
    if prime_failed > u64::from(cfg.users) / 1000 {
        eprintln!(
            "error: prime phase: {prime_failed} registrations failed (of {} users): is the server at {} up and answering 200?",
            cfg.users, cfg.target
        );
        shared.abort.store(true, Ordering::Relaxed);
    }
    let cpu_before = server_cpu(&cfg.server_pids);
    let started = Instant::now();
    shared.barrier.wait();
    let flood_stop = Arc::new(AtomicBool::new(false));
    let flood = match (cfg.flood_rate, &cfg.tls) {
        (Some(rate), Some(client)) if !shared.abort.load(Ordering::Relaxed) => {
            let (stop, client, bind, target) =
                (flood_stop.clone(), client.clone(), cfg.bind, cfg.target);
            Some(
                std::thread::Builder::new()
                    .name("loadgen-flood".into())
                    .spawn(move || transport::flood::run(bind, target, rate, &client, &stop))?,
            )
        }
        _ => None,
    };
    let mut last = [0u64; 6];
    let mut tick = 1u64;
    while !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        if started.elapsed() >= Duration::from_secs(tick) {
            let now = Progress::snapshot(&shared.progress);
            if !cfg.quiet {
                eprintln!(
                    "[{tick:>4}s] sent {:>10} ({:>8}/s)  ok {:>10} ({:>8}/s)  fail {:>7}  timeout {:>7}  rtx {:>7}",
                    now[0],
                    now[0] - last[0],
                    now[2],
                    now[2] - last[2],
                    now[3],
                    now[4],
                    now[5]
                );
            }
            last = now;
            tick += 1;
        }
    }
    let cpu_after = server_cpu(&cfg.server_pids);
    flood_stop.store(true, Ordering::Relaxed);
    let flood = match flood {
        Some(t) => Some(
            t.join()
                .map_err(|_| std::io::Error::other("the flood thread panicked"))??,
        ),
        None => None,
    };
    let mut total = Stats::new();
    let mut prime_total: Option<(Stats, Duration)> = None;
    let mut elapsed = Duration::ZERO;
    let mut loadgen_cpu = Duration::ZERO;
    for t in threads {
        let outcome = t
            .join()
            .map_err(|_| std::io::Error::other("a worker panicked"))??;
        total.merge(&outcome.stats);
        elapsed = elapsed.max(outcome.elapsed);
        loadgen_cpu += outcome.cpu;
        if let Some((p, d)) = outcome.prime {
            let entry = prime_total.get_or_insert_with(|| (Stats::new(), Duration::ZERO));
            entry.0.merge(&p);
            entry.1 = entry.1.max(d);
        }
    }
    // Rates are over the send phase: with --duration that is the duration, else the time to
    // send --count (the drain after it is not sending time).
    let send_elapsed = cfg.duration.map_or(elapsed, |d| d.min(elapsed));
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if !cfg.server_pids.is_empty() => Some(ServerCpu {
            pids: cfg.server_pids.clone(),
            cpu: a.saturating_sub(b),
        }),
        _ if !cfg.server_pids.is_empty() => {
            eprintln!(
                "warning: could not read /proc/PID/stat of --server-pid {:?}",
                cfg.server_pids
            );
            None
        }
        _ => None,
    };
    let (rate_target, window) = match cfg.pace {
        Pace::Open { rate, window } => (Some(rate), window),
        Pace::Closed { window } => (None, window),
    };
    if shared.abort.load(Ordering::Relaxed) {
        return Ok(ExitCode::from(1));
    }
    let failed = total.failures() > 0 || total.sent == 0;
    let report = Report {
        scenario: cfg.scenario.name(),
        workers,
        transport: cfg.transport.name(),
        channels: cfg.channels,
        rate_target,
        window,
        elapsed: send_elapsed,
        stats: total,
        prime: prime_total,
        server_cpu,
        loadgen_cpu,
        flood,
    };
    if cfg.json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", report.json());
        if !cfg.quiet {
            eprint!("{}", report.table());
        }
    } else {
        print!("{}", report.table());
    }
    // Exit 1 when any request failed, so scripts can tell without parsing.
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
