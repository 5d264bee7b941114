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
//! All of this file's `unsafe` is two plain syscalls on fds it owns or borrows.

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
}
