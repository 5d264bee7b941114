//! Batched UDP I/O (`sendmmsg`/`recvmmsg`), epoll, and the few socket options the stream
//! transports need.
//!
//! Why: a load generator that makes one syscall per datagram spends its core in syscall entry
//! and exit and cannot out-drive the server it measures. `sendmmsg(2)`/`recvmmsg(2)` move up to
//! a batch of datagrams per syscall. This is the only module with `unsafe`; every block names
//! the invariant it relies on in a `// SAFETY:` line.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Largest datagram we send or accept. SIP over UDP should stay under the path MTU
/// (RFC 3261 §18.1.1); our requests are ~450 bytes and registrar responses rarely exceed 1500.
pub(crate) const DATAGRAM_BYTES_MAX: usize = 4096;

/// Kernel buffer size we ask for on every socket, so that a burst of a few thousand datagrams
/// is not dropped while a worker is busy building the next batch.
pub(crate) const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A fixed set of datagram buffers plus the `mmsghdr` array that points into them.
///
/// The header pointers are rebuilt before every syscall, so moving the struct is harmless.
pub(crate) struct MsgBatch {
    data: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    slot_bytes: usize,
}

impl MsgBatch {
    /// `capacity` messages of `slot_bytes` each.
    pub(crate) fn new(capacity: usize, slot_bytes: usize) -> Self {
        assert!(capacity > 0 && slot_bytes > 0);
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid (empty) value.
        let (addr, iov, hdr) = unsafe {
            (
                mem::zeroed::<libc::sockaddr_storage>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::mmsghdr>(),
            )
        };
        Self {
            data: vec![0; capacity * slot_bytes],
            lens: vec![0; capacity],
            addrs: vec![addr; capacity],
            iovs: vec![iov; capacity],
            hdrs: vec![hdr; capacity],
            slot_bytes,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// The whole buffer of message `i`, for writing a datagram into.
    pub(crate) fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.slot_bytes;
        &mut self.data[start..start + self.slot_bytes]
    }

    pub(crate) fn set_len(&mut self, i: usize, len: usize) {
        assert!(len <= self.slot_bytes);
        self.lens[i] = len;
    }

    /// Message `i` as filled by `set_len` or received by `recv`.
    pub(crate) fn msg(&self, i: usize) -> &[u8] {
        let start = i * self.slot_bytes;
        &self.data[start..start + self.lens[i]]
    }

    /// Points header `i` at buffer `i` (full slot for receive, filled length for send).
    fn prepare(&mut self, n: usize, receive: bool, with_addr: bool) {
        for i in 0..n {
            let len = if receive {
                self.slot_bytes
            } else {
                self.lens[i]
            };
            // The pointer stays valid until the next mutation of `self.data`, which cannot
            // happen while the syscall that uses it runs (we hold `&mut self`).
            self.iovs[i].iov_base = self.data[i * self.slot_bytes..].as_mut_ptr().cast();
            self.iovs[i].iov_len = len;
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            if with_addr {
                hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                // On receive the kernel writes the real length back; on send it is the length
                // that `set_addr` stored, kept in the header between the two.
                if receive {
                    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                }
            } else {
                hdr.msg_name = std::ptr::null_mut();
                hdr.msg_namelen = 0;
            }
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Receives up to `capacity` datagrams without blocking (unless `flags` says otherwise).
    /// Returns 0 when nothing is queued.
    pub(crate) fn recv(
        &mut self,
        fd: RawFd,
        flags: libc::c_int,
        with_addr: bool,
    ) -> io::Result<usize> {
        let n = self.capacity();
        self.prepare(n, true, with_addr);
        // SAFETY: `hdrs[..n]` point at `iovs[..n]`, which point into `data`, each slot
        // `slot_bytes` long; all live for the duration of the call and are exclusively borrowed.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(err),
            };
        }
        let got = rc as usize;
        for i in 0..got {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(got)
    }

    /// Sends messages `[0, n)`; returns how many the kernel took. Stops at the first error
    /// after at least one message went out (the caller counts the rest as not sent).
    pub(crate) fn send(&mut self, fd: RawFd, n: usize, with_addr: bool) -> io::Result<usize> {
        assert!(n <= self.capacity());
        if n == 0 {
            return Ok(0);
        }
        // With `with_addr`, each header still holds the address and length that `recv` stored
        // for that slot: the echo reflector answers each datagram to where it came from.
        self.prepare(n, false, with_addr);
        // SAFETY: as in `recv`; iov lengths are the filled lengths, never past a slot.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }
}

/// Sends one datagram on a connected socket (retransmissions, which are rare).
pub(crate) fn send_one(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    // SAFETY: `buf` is a valid readable slice for its whole length.
    let rc = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A UDP socket bound to `bind` (port 0 = ephemeral), non-blocking, with large buffers, and
/// connected to `target` when given (the kernel then skips the route lookup per datagram and
/// only delivers datagrams from the target).
pub(crate) fn udp_socket(
    bind: SocketAddr,
    target: Option<SocketAddr>,
    reuse_port: bool,
) -> io::Result<(Socket, u16)> {
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    set_buffers(&socket);
    socket.bind(&SockAddr::from(bind))?;
    if let Some(target) = target {
        socket.connect(&SockAddr::from(target))?;
        socket.set_nonblocking(true)?;
    }
    let port = socket.local_addr()?.as_socket().map_or(0, |a| a.port());
    Ok((socket, port))
}

/// Asks for `SOCKET_BUFFER_BYTES` both ways, reads back, warns once if the kernel clamped
/// (raise `net.core.rmem_max`/`wmem_max` to lift the clamp).
fn set_buffers(socket: &Socket) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    let rcv = socket.recv_buffer_size().unwrap_or(0);
    let snd = socket.send_buffer_size().unwrap_or(0);
    // Linux reports double the requested size (it counts bookkeeping overhead).
    if (rcv < SOCKET_BUFFER_BYTES || snd < SOCKET_BUFFER_BYTES)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        eprintln!(
            "warning: socket buffers clamped by the kernel (rcv {rcv} B, snd {snd} B, wanted {SOCKET_BUFFER_BYTES} B); \
             raise net.core.rmem_max / net.core.wmem_max to avoid drops under bursts"
        );
    }
}

/// An epoll instance watching sockets for input; `data` is the socket index.
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub(crate) fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned by us from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    pub(crate) fn add(&self, socket: RawFd, index: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, socket, index, libc::EPOLLIN as u32)
    }

    /// Watches `socket` for `events` (`EPOLLIN`, `EPOLLOUT`, … as u32).
    pub(crate) fn add_events(&self, socket: RawFd, index: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, socket, index, events)
    }

    /// Changes the events watched on `socket`.
    pub(crate) fn modify(&self, socket: RawFd, index: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, socket, index, events)
    }

    fn ctl(&self, op: libc::c_int, socket: RawFd, index: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: index };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, socket, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout_ns` (0 = poll) and returns the ready socket indexes.
    /// Nanosecond timeouts (epoll_pwait2, Linux 5.11) let an open-loop worker sleep until its
    /// next send instead of spinning, which keeps its latency honest on a shared host.
    pub(crate) fn wait(&mut self, timeout_ns: u64) -> io::Result<impl Iterator<Item = usize> + '_> {
        Ok(self.wait_events(timeout_ns)?.map(|(index, _)| index))
    }

    /// As `wait`, with each index's ready events.
    pub(crate) fn wait_events(
        &mut self,
        timeout_ns: u64,
    ) -> io::Result<impl Iterator<Item = (usize, u32)> + '_> {
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: `events` is a writable array of `len` epoll_event; `ts` outlives the call;
        // a null sigmask means "do not change the mask".
        let rc = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                &ts,
                std::ptr::null(),
            )
        };
        let n = if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            0
        } else {
            rc as usize
        };
        Ok(self.events[..n].iter().map(|e| (e.u64 as usize, e.events)))
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: a bind to a source address leaves the port to `connect`, so
/// the ephemeral range is shared per destination instead of per source address (more than
/// 28 000 connections from one address to different targets). Best effort.
pub(crate) fn bind_address_no_port(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the duration of the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Raises this process's open-file limit to at least `wanted` descriptors (soft and, when
/// allowed, hard); returns the soft limit in force afterwards.
pub(crate) fn raise_fd_limit(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, exclusively borrowed rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= wanted {
        return lim.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: lim.rlim_max.max(wanted),
    };
    // SAFETY: `raised` is a valid rlimit read by the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return wanted;
    }
    // Not privileged: up to the hard limit.
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        lim.rlim_max
    } else {
        lim.rlim_cur
    }
}

/// Asks the kernel to wake this thread within 1 µs of a timeout instead of the default 50 µs
/// slack, so open-loop sends leave on time.
pub(crate) fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_to(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// CPUs this process may run on (its affinity mask).
pub(crate) fn available_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    cpus.sort_unstable();
    cpus
}
