//! `sipreg-loadgen echo`: a bare recvmmsg→sendmmsg reflector.
//!
//! Why: it is the upper bound of what any UDP server on this machine can answer, so the
//! loadgen's own ceiling and the server's cost can be told apart (sipreg / echo in
//! `scripts/bench.sh`). One SO_REUSEPORT socket and one thread per CPU, like the server.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cli::EchoConfig;
use crate::net::{self, DATAGRAM_BYTES_MAX, MsgBatch};

/// How often a blocked reflector wakes to check whether it should stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs until `--duration` elapses (or forever); returns the datagrams reflected.
pub(crate) fn run(cfg: &EchoConfig) -> io::Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let reflected = Arc::new(AtomicU64::new(0));
    // Bind every socket before starting any thread, so a taken port fails the whole command.
    let mut sockets = Vec::with_capacity(cfg.cpus.len());
    for _ in &cfg.cpus {
        let (socket, _) = net::udp_socket(cfg.listen, None, true)?;
        socket.set_read_timeout(Some(POLL_INTERVAL))?;
        sockets.push(socket);
    }
    eprintln!(
        "echo: listening on {} with {} thread(s)",
        cfg.listen,
        sockets.len()
    );
    let mut threads = Vec::new();
    for (socket, cpu) in sockets.into_iter().zip(cfg.cpus.iter().copied()) {
        let stop = stop.clone();
        let reflected = reflected.clone();
        let batch = cfg.batch;
        let flags = if cfg.busy_poll {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        threads.push(std::thread::spawn(move || {
            if let Some(cpu) = cpu
                && !net::pin_to(cpu)
            {
                eprintln!("warning: echo: could not pin to CPU {cpu}");
            }
            let fd = socket.as_raw_fd();
            let mut msgs = MsgBatch::new(batch, DATAGRAM_BYTES_MAX);
            let mut mine = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Blocks for the first datagram (up to POLL_INTERVAL), then takes what is
                // queued; with --busy-poll never blocks.
                let n = match msgs.recv(fd, flags, true) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                if n > 0
                    && let Ok(k) = msgs.send(fd, n, true)
                {
                    mine += k as u64;
                }
                if mine >= 4096 {
                    reflected.fetch_add(mine, Ordering::Relaxed);
                    mine = 0;
                }
            }
            reflected.fetch_add(mine, Ordering::Relaxed);
        }));
    }
    let started = Instant::now();
    match cfg.duration {
        Some(d) => {
            while started.elapsed() < d {
                std::thread::sleep(POLL_INTERVAL.min(d));
            }
            stop.store(true, Ordering::Relaxed);
        }
        None => loop {
            std::thread::park();
        },
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(reflected.load(Ordering::Relaxed))
}
