//! How an idle core sleeps, and how another thread wakes it: one `ppoll(2)` on the
//! core's sockets and its doorbell (an eventfd), with the next deadline as the timeout.
//!
//! Why not glommio's own sleep: before every sleep its reactor issues
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, an inter-processor interrupt to every
//! CPU running one of the process's threads, so with two cores each park interrupts the
//! other core, and at moderate load a core parks after nearly every request. Measured at
//! 20 000 REGISTER/s from one source on 2 steered cores: `membarrier` was 11.9 % of the
//! server's CPU, and the io_uring wait around it another ~15 % (perf/RESULTS.md, "Parking
//! without glommio's reactor"). A core's loop therefore never awaits a pending future:
//! it polls its sockets itself (`recvmmsg` never blocks) and sleeps here. glommio still
//! runs and pins the executors.
//!
//! All of this file's `unsafe` is plain syscalls (eventfd, ppoll, epoll) on fds it owns
//! or borrows.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A doorbell another thread rings to wake a parked core: an eventfd (non-blocking,
/// close-on-exec), readable while rung.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Make the fd readable (any thread). Never blocks: a counter already at its
    /// maximum is still readable, so a failed write loses no wake-up.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an fd this struct owns.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Reset to not readable (the owner, after waking).
    pub(crate) fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from an fd this struct owns; a
        // non-blocking eventfd read with nothing to read fails with EAGAIN, harmlessly.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut value).cast(), 8) };
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The fds one core sleeps on, reused across parks.
#[derive(Debug, Default)]
pub(crate) struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    /// Sleep until one of `fds` is readable or `timeout` passes; before sleeping, poll
    /// without sleeping for up to `spin` (lower latency at moderate load, for CPU).
    /// Returns whether anything is readable. (The core uses
    /// [`wait_writable`](Self::wait_writable); tests wait on readable fds only.)
    #[cfg(test)]
    pub(crate) fn wait(
        &mut self,
        fds: impl IntoIterator<Item = RawFd>,
        timeout: Duration,
        spin: Duration,
    ) -> io::Result<bool> {
        self.wait_writable(fds, [], timeout, spin)
    }

    /// Sleep until one of `fds` is readable, one of `writable` is writable (a
    /// non-blocking connect that completed or failed), or `timeout` passes; before
    /// sleeping, poll without sleeping for up to `spin` (lower latency at moderate load,
    /// for CPU). Returns whether anything is ready.
    pub(crate) fn wait_writable(
        &mut self,
        fds: impl IntoIterator<Item = RawFd>,
        writable: impl IntoIterator<Item = RawFd>,
        timeout: Duration,
        spin: Duration,
    ) -> io::Result<bool> {
        self.fds.clear();
        self.fds.extend(fds.into_iter().map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        self.fds.extend(writable.into_iter().map(|fd| libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        }));
        if !spin.is_zero() {
            let start = Instant::now();
            while start.elapsed() < spin {
                if self.poll(Duration::ZERO)? {
                    return Ok(true);
                }
                std::hint::spin_loop();
            }
        }
        self.poll(timeout)
    }

    fn poll(&mut self, timeout: Duration) -> io::Result<bool> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a live, writable array of `len` pollfds; `ts` is a live
        // timespec; no signal mask is passed.
        let rc = unsafe {
            libc::ppoll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                &raw const ts,
                std::ptr::null(),
            )
        };
        match rc {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(true)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Readiness of many connections at once, for a core that holds TCP connections: an
/// epoll set (level-triggered) whose own fd sleeps in [`PollSet::wait`] with the rest.
/// Why not each connection's fd in the `ppoll` set: a busy core does not park, yet must
/// learn which of its connections have bytes, and asking the kernel for the ready ones
/// is one call, whatever the number of connections.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// What an fd is watched for (a hang-up or an error is reported either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interest {
    /// Readable (or the peer closed its side).
    pub(crate) read: bool,
    /// Writable: asked for only while bytes wait to be written.
    pub(crate) write: bool,
}

impl Interest {
    /// Readable only: a listener, or a connection with nothing to write.
    pub(crate) const READ: Self = Self {
        read: true,
        write: false,
    };

    const fn events(self) -> u32 {
        let mut events = 0;
        if self.read {
            events |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.write {
            events |= libc::EPOLLOUT as u32;
        }
        events
    }
}

/// What [`Epoll::ready`] reports for one fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The token the fd was added with.
    pub(crate) token: u64,
    /// Readable, or the peer closed, or an error is pending (a read says which).
    pub(crate) readable: bool,
    /// Writable (asked for with [`Interest::ReadWrite`]).
    pub(crate) writable: bool,
}

impl Epoll {
    /// An empty set reporting at most `events_max` fds per [`ready`](Self::ready).
    pub(crate) fn new(events_max: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1(2) takes no pointers; a non-negative result is a new fd
        // we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` was just created and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; events_max.max(1)],
        })
    }

    /// The set's fd: readable while any fd in it is ready.
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Watch `fd` (until it is closed, which removes it) under `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    /// Change what `fd` is watched for.
    pub(crate) fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest.events(),
            u64: token,
        };
        // SAFETY: `event` is a live epoll_event; the epoll fd is ours, `fd` the caller's.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &raw mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The fds ready now (never blocks), at most `events_max`; more stay ready for the
    /// next call (level-triggered).
    pub(crate) fn ready(&mut self, out: &mut Vec<Ready>) -> io::Result<()> {
        out.clear();
        let max = libc::c_int::try_from(self.events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is a live, writable array of at least `max` epoll_events.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), max, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        let n = usize::try_from(n).unwrap_or(0);
        for event in self.events.iter().take(n) {
            // Copied out: the struct is packed on some targets.
            let (events, token) = (event.events, event.u64);
            let read_like =
                (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            out.push(Ready {
                token,
                readable: events & read_like != 0,
                writable: events & libc::EPOLLOUT as u32 != 0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rung_doorbell_wakes_the_poll_and_drains() {
        let bell = EventFd::new().unwrap();
        let mut set = PollSet::default();
        let quiet = set
            .wait([bell.raw()], Duration::from_millis(1), Duration::ZERO)
            .unwrap();
        assert!(!quiet, "nothing rung: the wait times out");
        bell.signal();
        bell.signal();
        assert!(
            set.wait([bell.raw()], Duration::from_secs(5), Duration::ZERO)
                .unwrap()
        );
        bell.drain();
        assert!(
            !set.wait([bell.raw()], Duration::ZERO, Duration::from_micros(50))
                .unwrap(),
            "drained: not readable, spin included"
        );
    }

    #[test]
    fn a_readable_socket_wakes_the_poll() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let bell = EventFd::new().unwrap();
        let mut set = PollSet::default();
        client.send_to(b"x", server.local_addr().unwrap()).unwrap();
        let woke = set
            .wait(
                [server.as_raw_fd(), bell.raw()],
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .unwrap();
        assert!(woke);
    }

    #[test]
    fn epoll_reports_a_readable_stream_and_wakes_the_poll() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut epoll = Epoll::new(8).unwrap();
        epoll.add(server.as_raw_fd(), 7, Interest::READ).unwrap();
        let mut ready = Vec::new();
        epoll.ready(&mut ready).unwrap();
        assert!(ready.is_empty(), "nothing sent yet");
        let both = Interest {
            read: true,
            write: true,
        };
        epoll.modify(server.as_raw_fd(), 7, both).unwrap();
        epoll.ready(&mut ready).unwrap();
        assert_eq!(
            ready,
            [Ready {
                token: 7,
                readable: false,
                writable: true
            }]
        );
        epoll.modify(server.as_raw_fd(), 7, Interest::READ).unwrap();
        client.write_all(b"x").unwrap();
        let mut set = PollSet::default();
        assert!(
            set.wait([epoll.raw()], Duration::from_secs(5), Duration::ZERO)
                .unwrap()
        );
        epoll.ready(&mut ready).unwrap();
        assert_eq!(
            ready,
            [Ready {
                token: 7,
                readable: true,
                writable: false
            }]
        );
    }
}
