//! `--handshake-flood R`: R new TLS connections per second that send a ClientHello and never
//! finish the handshake (half-open TLS handshakes), beside the measured REGISTER load.
//!
//! Why this variant: it is the abuse issue 16 names. Each one costs the server an accept, a
//! ClientHello parse and its half of the key exchange (the expensive part), then holds a
//! connection slot and a handshake slot until the server's handshake timeout closes it. A
//! client that finished and closed would cost the server less and would not test its
//! handshake limit. One ClientHello is built and sent on every connection: the server
//! cannot tell, and the flood stays cheap for the loadgen.
//!
//! Runs on its own thread with its own epoll; it only watches for the server closing its
//! connections (`EPOLLRDHUP`), never reads, and keeps at most `OPEN_MAX` open (the oldest
//! is closed to open a new one, counted as recycled).

use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConnection;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::tls;
use crate::net::{self, Epoll};
use crate::stats::FloodStats;

/// Highest `--handshake-flood`, new connections per second.
pub(crate) const RATE_MAX: u32 = 100_000;
/// Most flood connections open at once (descriptors of this process).
pub(crate) const OPEN_MAX: usize = 10_000;
/// Most connections started in one pacing pass: a flood thread that fell behind (preempted
/// on a busy host) skips what it missed instead of bursting it.
const BURST_MAX: u64 = 1000;
/// Longest sleep between two pacing checks.
const TICK: Duration = Duration::from_millis(1);

const HUP: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

struct Half {
    socket: Socket,
    /// The ClientHello went out.
    sent: bool,
}

/// Opens `rate` half-open TLS connections per second to `target` until `stop` is set.
pub(crate) fn run(
    bind: IpAddr,
    target: SocketAddr,
    rate: u32,
    client: &tls::Client,
    stop: &AtomicBool,
) -> io::Result<FloodStats> {
    let mut hello = Vec::new();
    let mut c = ClientConnection::new(client.config.clone(), client.server_name.clone())
        .map_err(io::Error::other)?;
    while c.wants_write() {
        c.write_tls(&mut hello)?;
    }
    let mut stats = FloodStats {
        rate,
        ..FloodStats::default()
    };
    let mut ring: Vec<Option<Half>> = (0..OPEN_MAX).map(|_| None).collect();
    let mut epoll = Epoll::new(1024)?;
    let mut events: Vec<(usize, u32)> = Vec::with_capacity(1024);
    let started = Instant::now();
    let mut attempted: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        attempted = attempted.max(due.saturating_sub(BURST_MAX));
        while attempted < due {
            let k = (attempted % OPEN_MAX as u64) as usize;
            attempted += 1;
            if ring[k].take().is_some() {
                stats.recycled += 1;
            }
            match open(bind, target) {
                Ok(socket) => {
                    if epoll
                        .add_events(socket.as_raw_fd(), k as u64, HUP | OUT)
                        .is_ok()
                    {
                        ring[k] = Some(Half {
                            socket,
                            sent: false,
                        });
                    }
                }
                Err(_) => stats.connect_failures += 1,
            }
        }
        events.clear();
        events.extend(epoll.wait_events(TICK.as_nanos() as u64)?);
        for &(k, ev) in &events {
            let Some(h) = ring.get_mut(k).and_then(Option::as_mut) else {
                continue;
            };
            if !h.sent && ev & OUT != 0 && ev & HUP == 0 {
                h.sent = true;
                if matches!(h.socket.take_error(), Ok(None))
                    && (&h.socket).write_all(&hello).is_ok()
                {
                    stats.opened += 1;
                    let _ = epoll.modify(h.socket.as_raw_fd(), k as u64, HUP);
                    continue;
                }
                stats.connect_failures += 1;
                ring[k] = None;
                continue;
            }
            if ev & HUP != 0 {
                if h.sent {
                    stats.closed_by_server += 1;
                } else {
                    stats.connect_failures += 1;
                }
                ring[k] = None;
            }
        }
    }
    stats.open_at_end = ring.iter().flatten().filter(|h| h.sent).count() as u64;
    Ok(stats)
}

fn open(bind: IpAddr, target: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if !bind.is_unspecified() {
        net::bind_address_no_port(socket.as_raw_fd());
        socket.bind(&SockAddr::from(SocketAddr::new(bind, 0)))?;
    }
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        Err(e) => Err(e),
    }
}
