//! Binding the TCP listeners: one SO_REUSEPORT listener per (core, TCP `--listen`
//! address), made on the main thread before any core starts, like the UDP sockets.
//!
//! The kernel spreads new connections over a group's listeners by 4-tuple hash; a
//! connection then lives on the core that accepted it. Before the group is made, a
//! probe binds the address without SO_REUSEPORT: if another process holds the port,
//! start-up stops with a clear error instead of silently sharing its connections. A
//! port 0 is resolved by the probe, so every core listens on the same port.

use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Pending connections the kernel queues per listener before `accept` (listen(2)
/// backlog; the kernel clamps it to `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// TCP listeners for every core: `listeners[core][tcp listen index]`, and the
/// addresses bound (port 0 resolved).
#[derive(Debug, Default)]
pub(crate) struct Bound {
    pub(crate) listeners: Vec<Vec<TcpListener>>,
    pub(crate) local: Vec<SocketAddr>,
}

/// Bind `cores` listeners on each address of `listen` (non-blocking).
pub(crate) fn bind_all(listen: &[SocketAddr], cores: usize) -> anyhow::Result<Bound> {
    bind_all_as("tcp", listen, cores)
}

/// [`bind_all`] for the `scheme` its errors name (`tcp`, `tls`).
pub(crate) fn bind_all_as(
    scheme: &str,
    listen: &[SocketAddr],
    cores: usize,
) -> anyhow::Result<Bound> {
    let mut bound = Bound {
        listeners: (0..cores)
            .map(|_| Vec::with_capacity(listen.len()))
            .collect(),
        local: Vec::with_capacity(listen.len()),
    };
    for &requested in listen {
        let addr =
            probe(requested).with_context(|| format!("cannot listen on {scheme}:{requested}"))?;
        bound.local.push(addr);
        for per_core in &mut bound.listeners {
            let listener = bind_one(addr, true)
                .with_context(|| format!("cannot listen on {scheme}:{addr}"))?;
            per_core.push(listener);
        }
    }
    Ok(bound)
}

/// Bind `requested` alone (no SO_REUSEPORT, not listening): fails if any other socket
/// holds it; returns the address with its port resolved.
fn probe(requested: SocketAddr) -> anyhow::Result<SocketAddr> {
    let socket = new_socket(requested, false)?;
    socket.bind(&SockAddr::from(requested))?;
    let local = socket
        .local_addr()?
        .as_socket()
        .context("the probe has no IP address")?;
    Ok(local)
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Connections of an earlier run in TIME_WAIT must not stop a restart.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_cloexec(true)?;
    Ok(socket)
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = new_socket(addr, reuse_port)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(LISTEN_BACKLOG)?;
    // The core's loop accepts without ever blocking (and parks in its own ppoll).
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_one_port_for_every_core_and_a_held_port_is_refused() {
        let bound = bind_all(&["127.0.0.1:0".parse().unwrap()], 2).unwrap();
        let port = bound.local[0].port();
        assert_ne!(port, 0);
        for core in &bound.listeners {
            assert_eq!(core[0].local_addr().unwrap().port(), port);
        }
        // The group holds it now: a second server on the same address fails.
        let again = bind_all(&bound.local, 1).unwrap_err();
        assert!(
            format!("{again:#}").contains("cannot listen on tcp:"),
            "{again:#}"
        );
    }
}
