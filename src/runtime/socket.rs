//! Socket setup: one SO_REUSEPORT UDP socket per (core, `--listen` address).
//!
//! Every core binds its own socket on the same address and port so that the kernel
//! spreads datagrams over cores by 4-tuple hash with no shared queue. Before the group
//! is created a probe binds the address *without* SO_REUSEPORT: if it fails, another
//! process holds the port (possibly with SO_REUSEPORT too, in which case we would
//! silently share its traffic), and start-up stops with a clear error instead.
//!
//! The sockets stay in blocking mode: the hot loop passes `MSG_DONTWAIT` to
//! `recvmmsg` and parks in glommio, and a blocking `sendmmsg` lets the kernel pace
//! replies instead of dropping them when the send buffer is momentarily full.
//! This file holds the one `unsafe` hand-off of a file descriptor to glommio, and
//! [`socket_drops`], the kernel's count of datagrams it dropped on these sockets (read
//! by the supervisor's overload line and by `/metrics`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use anyhow::{Context, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How long start-up waits for a port held by a process that just exited, in ms.
const PROBE_RETRY_MS: u64 = 500;
/// Interval between those attempts, in ms.
const PROBE_STEP_MS: u64 = 25;

/// What the kernel granted for a requested buffer size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BufferSizes {
    /// Effective SO_RCVBUF, in bytes (the kernel reports twice the usable size; this
    /// is the halved value, comparable with the request).
    pub(crate) rcvbuf_bytes: usize,
    /// Effective SO_SNDBUF, in bytes (halved as above).
    pub(crate) sndbuf_bytes: usize,
}

/// Sockets for every shard: `sockets[shard][listen_index]`, plus the addresses
/// actually bound (port 0 resolved) and the buffer sizes granted.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) sockets: Vec<Vec<Socket>>,
    pub(crate) local: Vec<SocketAddr>,
    pub(crate) sizes: BufferSizes,
}

/// Bind `shards` sockets on each address of `listen`.
pub(crate) fn bind_all(
    listen: &[SocketAddr],
    shards: usize,
    rcvbuf_bytes: usize,
    sndbuf_bytes: usize,
) -> anyhow::Result<Bound> {
    let mut sockets: Vec<Vec<Socket>> = (0..shards)
        .map(|_| Vec::with_capacity(listen.len()))
        .collect();
    let mut local = Vec::with_capacity(listen.len());
    let mut sizes = BufferSizes {
        rcvbuf_bytes,
        sndbuf_bytes,
    };
    for &requested in listen {
        let addr = probe(requested)?;
        local.push(addr);
        // Core order, on this thread, before any core starts: a socket's index in the
        // SO_REUSEPORT group is the order it joined, and the steering program
        // (`runtime::steer`) returns core i's socket as index i. Every socket lives until
        // the process exits (the kernel would move the last one into a closed slot).
        for per_shard in &mut sockets {
            let socket = bind_one(addr, rcvbuf_bytes, sndbuf_bytes)
                .with_context(|| format!("cannot listen on {addr}"))?;
            let granted = granted_sizes(&socket)?;
            sizes.rcvbuf_bytes = sizes.rcvbuf_bytes.min(granted.rcvbuf_bytes);
            sizes.sndbuf_bytes = sizes.sndbuf_bytes.min(granted.sndbuf_bytes);
            per_shard.push(socket);
        }
    }
    Ok(Bound {
        sockets,
        local,
        sizes,
    })
}

/// Check that nobody holds `addr`, and resolve port 0 to a concrete port.
fn probe(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let socket = new_socket(addr).with_context(|| format!("cannot listen on {addr}"))?;
    // A process that just died may still hold the port for a few milliseconds: the
    // kernel tears its io_uring down (and drops the socket references of receives
    // in flight) asynchronously after exit. Retry briefly before calling it taken.
    let mut waited_ms = 0;
    while let Err(e) = socket.bind(&SockAddr::from(addr)) {
        if e.raw_os_error() != Some(libc::EADDRINUSE) || waited_ms >= PROBE_RETRY_MS {
            bail!("cannot listen on {addr}: {}", describe_bind_error(&e));
        }
        std::thread::sleep(std::time::Duration::from_millis(PROBE_STEP_MS));
        waited_ms += PROBE_STEP_MS;
    }
    let bound = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .with_context(|| format!("cannot read the address bound for {addr}"))?;
    Ok(bound)
}

fn describe_bind_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => "address already in use (another process holds this port)".into(),
        Some(libc::EADDRNOTAVAIL) => {
            "address not available (no interface on this host has it)".into()
        }
        Some(libc::EACCES) => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into()
        }
        _ => e.to_string(),
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        // Keep IPv6 listeners IPv6-only so that `--listen 0.0.0.0:P --listen [::]:P`
        // works and IPv4 peers are never seen as mapped addresses.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

fn bind_one(addr: SocketAddr, rcvbuf_bytes: usize, sndbuf_bytes: usize) -> anyhow::Result<Socket> {
    let socket = new_socket(addr)?;
    socket.set_reuse_port(true).context("SO_REUSEPORT")?;
    set_buffer(&socket, libc::SO_RCVBUFFORCE, rcvbuf_bytes)
        .or_else(|_| socket.set_recv_buffer_size(rcvbuf_bytes))
        .context("SO_RCVBUF")?;
    set_buffer(&socket, libc::SO_SNDBUFFORCE, sndbuf_bytes)
        .or_else(|_| socket.set_send_buffer_size(sndbuf_bytes))
        .context("SO_SNDBUF")?;
    socket
        .bind(&SockAddr::from(addr))
        .map_err(|e| anyhow::anyhow!(describe_bind_error(&e)))?;
    Ok(socket)
}

/// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` ignore `net.core.[rw]mem_max` when the process
/// has CAP_NET_ADMIN; without it they fail with EPERM and the caller falls back.
fn set_buffer(socket: &Socket, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let value =
        libc::c_int::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is a live socket owned by `socket`; `value` is a c_int that lives
    // across the call, and its exact size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn granted_sizes(socket: &Socket) -> anyhow::Result<BufferSizes> {
    Ok(BufferSizes {
        rcvbuf_bytes: socket.recv_buffer_size().context("reading SO_RCVBUF")? / 2,
        sndbuf_bytes: socket.send_buffer_size().context("reading SO_SNDBUF")? / 2,
    })
}

/// Datagrams the kernel dropped on our listening sockets (receive buffer full),
/// from the `drops` column of `/proc/net/udp` and `/proc/net/udp6`, summed over the
/// sockets bound to `ports`. `None` when neither file can be read (not Linux).
pub(crate) fn socket_drops(ports: &[u16]) -> Option<u64> {
    let mut found = false;
    let mut drops = 0;
    for path in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(table) = std::fs::read_to_string(path) {
            found = true;
            drops += proc_udp_drops(&table, ports);
        }
    }
    found.then_some(drops)
}

/// Sum of the last column (`drops`) of the `/proc/net/udp` lines whose local port is
/// in `ports`.
fn proc_udp_drops(table: &str, ports: &[u16]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            let drops = fields.last()?.parse::<u64>().ok()?;
            ports.contains(&port).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_every_shard() {
        let bound = bind_all(&["127.0.0.1:0".parse().unwrap()], 3, 1 << 16, 1 << 16).unwrap();
        let port = bound.local[0].port();
        assert_ne!(port, 0);
        for shard in &bound.sockets {
            let addr = shard[0].local_addr().unwrap().as_socket().unwrap();
            assert_eq!(addr.port(), port);
        }
        assert!(bound.sizes.rcvbuf_bytes > 0);
    }

    #[test]
    fn a_held_port_is_refused() {
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let e = bind_all(&[addr], 1, 1 << 16, 1 << 16).unwrap_err();
        assert!(format!("{e:#}").contains("address already in use"), "{e:#}");
    }

    #[test]
    fn a_reuseport_group_of_another_process_is_refused_too() {
        let first = bind_all(&["127.0.0.1:0".parse().unwrap()], 1, 1 << 16, 1 << 16).unwrap();
        let e = bind_all(&first.local, 1, 1 << 16, 1 << 16).unwrap_err();
        assert!(format!("{e:#}").contains("address already in use"), "{e:#}");
    }

    #[test]
    fn proc_udp_drops_sums_our_ports_only() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
 1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 5\n\
 2: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 7\n\
 3: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 100\n";
        assert_eq!(proc_udp_drops(table, &[5060]), 12);
        assert_eq!(proc_udp_drops(table, &[53, 5060]), 112);
        assert_eq!(proc_udp_drops(table, &[9]), 0);
    }
}
