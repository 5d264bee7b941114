//! Loading and attaching the receive-steering program ([`crate::steer`]): the IO half.
//!
//! `bpf(BPF_PROG_LOAD)` of the program as `BPF_PROG_TYPE_SOCKET_FILTER`, then
//! `setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF)` on one socket of each listen
//! address's SO_REUSEPORT group (the program is the group's, not the socket's). The
//! program's return value is a socket's index in the group, which is the order the
//! sockets joined it: `socket::bind_all` binds them in core order on the main thread
//! before any core starts, so core `i`'s socket is index `i`. The kernel moves the last
//! socket into a closed one's slot, so the order holds only while every socket lives;
//! the cores keep theirs until the process exits.
//!
//! Failure is never fatal: the caller logs the [`SteerError`] once and runs with the
//! kernel's 4-tuple hash. Done with raw syscalls (libc only) rather than an eBPF crate:
//! one program, two calls, and the instruction builder is ours already.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::Socket;

use crate::steer::{self, BuildError};

/// `BPF_PROG_LOAD` (`enum bpf_cmd`).
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_TYPE_SOCKET_FILTER` (`enum bpf_prog_type`).
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `SO_ATTACH_REUSEPORT_EBPF` (asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
/// Verifier log kept on a refused load, in bytes (its tail names the refused step).
const VERIFIER_LOG_BYTES: usize = 256 * 1024;
/// Characters of the verifier log put in the warning.
const VERIFIER_LOG_CHARS_SHOWN: usize = 600;

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`; the rest stays zero,
/// which the kernel requires of fields it knows and we do not set.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    zero: [u64; 12],
}

/// Why steering is off.
#[derive(Debug)]
pub enum SteerError {
    /// The program could not be built (a bug, or an absurd core count).
    Build(BuildError),
    /// `bpf(BPF_PROG_LOAD)` failed: no CAP_BPF, eBPF disabled, or the verifier refused it
    /// (then `log` holds the tail of its log).
    Load {
        /// The errno.
        error: io::Error,
        /// The verifier's log, when it wrote one.
        log: String,
    },
    /// `SO_ATTACH_REUSEPORT_EBPF` failed (kernel without it, or not a reuseport socket).
    Attach(io::Error),
}

impl std::fmt::Display for SteerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Build(e) => write!(f, "{e}"),
            Self::Load { error, log } if log.is_empty() => {
                let hint = match error.raw_os_error() {
                    Some(libc::EPERM) => " (needs CAP_BPF or root)",
                    Some(libc::ENOSYS) => " (kernel without eBPF)",
                    _ => "",
                };
                write!(f, "bpf(BPF_PROG_LOAD) failed: {error}{hint}")
            }
            Self::Load { error, log } => write!(
                f,
                "the kernel's verifier refused the steering program ({error}): {log}"
            ),
            Self::Attach(e) => write!(f, "setsockopt(SO_ATTACH_REUSEPORT_EBPF) failed: {e}"),
        }
    }
}

impl std::error::Error for SteerError {}

/// Loads the steering program for `shards` sockets.
pub fn load(shards: usize) -> Result<OwnedFd, SteerError> {
    let insns = steer::build(shards).map_err(SteerError::Build)?;
    let code = steer::insn::encode_all(&insns);
    // First without a log (fast); on failure again with one, for the warning.
    match prog_load(&code, insns.len(), None) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut log = vec![0u8; VERIFIER_LOG_BYTES];
            let again = prog_load(&code, insns.len(), Some(&mut log));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let start = text
                .char_indices()
                .rev()
                .nth(VERIFIER_LOG_CHARS_SHOWN)
                .map_or(0, |(i, _)| i);
            let log = text.get(start..).unwrap_or_default().replace('\n', " | ");
            match again {
                // Loaded the second time (a transient failure): use it.
                Ok(fd) => Ok(fd),
                Err(_) => Err(SteerError::Load { error, log }),
            }
        }
    }
}

fn prog_load(code: &[u8], insn_count: usize, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: u32::try_from(insn_count)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..6].copy_from_slice(b"sipreg");
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix of the size passed;
    // the pointers in it (`code`, `license`, `log`) are live for the call and the kernel
    // writes at most `log_size` bytes to `log_buf`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &mut attr as *mut ProgLoadAttr,
            size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches `prog` to the SO_REUSEPORT group `socket` belongs to.
pub fn attach(socket: &Socket, prog: &OwnedFd) -> Result<(), SteerError> {
    let fd: libc::c_int = prog.as_raw_fd();
    // SAFETY: `socket` is an open socket; the option value is a live c_int of the size
    // passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_EBPF,
            (&fd as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(SteerError::Attach(io::Error::last_os_error()));
    }
    Ok(())
}

/// Loads the program and attaches it to every group: `groups` holds the first socket of
/// each listen address's group.
pub fn install<'a>(
    shards: usize,
    groups: impl IntoIterator<Item = &'a Socket>,
) -> Result<(), SteerError> {
    let prog = load(shards)?;
    for socket in groups {
        attach(socket, &prog)?;
    }
    // The groups hold the program; our descriptor can go.
    Ok(())
}

/// Start-up: installs the steering program on every listen address's group when
/// `mode` asks for it and there is more than one core; `true` when it is attached. A
/// failure is logged once (why, and what it costs) and the kernel's hash stays.
pub(crate) fn start(mode: crate::config::Steering, shards: usize, sockets: &[Vec<Socket>]) -> bool {
    if mode == crate::config::Steering::Hash || shards < 2 {
        return false;
    }
    // `sockets[core][listen]`: core 0's socket of each address is in that address's
    // group, which every core's socket joined in core order (`socket::bind_all`).
    let groups = sockets.first().map(|per_listen| per_listen.iter());
    match install(shards, groups.into_iter().flatten()) {
        Ok(()) => {
            tracing::info!(
                "receive steering: eBPF program attached ({} instructions, at most {} bytes read \
                 per datagram); each datagram goes to the core owning its AOR",
                steer::build(shards).map_or(0, |p| p.len()),
                steer::STEER_SCAN_BYTES_MAX,
            );
            true
        }
        Err(e) => {
            tracing::warn!(
                "receive steering off, using the kernel's 4-tuple hash: {e}. Cost: every \
                 datagram from one source lands on one core, and {}/{} of them cross the mesh \
                 to their owner (--steering hash silences this)",
                shards - 1,
                shards,
            );
            false
        }
    }
}

/// `BPF_PROG_TEST_RUN` (`enum bpf_cmd`).
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// Bytes of the Ethernet header the test run strips before the program sees the data.
const ETH_HEADER_BYTES: usize = 14;

/// The leading fields of `union bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    zero: [u64; 8],
}

/// What one `BPF_PROG_TEST_RUN` measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (the socket index, or past the last one).
    pub retval: u32,
    /// Mean time per run, in nanoseconds (the kernel's own clock).
    pub duration_ns: u32,
}

/// Runs the loaded program `repeat` times on `payload` as a UDP payload would be seen
/// (the kernel builds an skb whose data starts at `payload`), without any socket: the
/// program-versus-mirror tests and the cost per datagram use it.
pub fn test_run(prog: &OwnedFd, payload: &[u8], repeat: u32) -> io::Result<TestRun> {
    // An Ethernet header the kernel pulls (eth_type_trans) before running a socket
    // filter, so that offset 0 is the payload's first byte, as in SO_REUSEPORT.
    let mut data = vec![0u8; ETH_HEADER_BYTES];
    data.extend_from_slice(payload);
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog.as_raw_fd())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        data_size_in: u32::try_from(data.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        data_in: data.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix of the size passed;
    // `data` outlives the call and no output buffer is given (`data_out` is null).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            size_of::<TestRunAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TestRun {
        retval: attr.retval,
        duration_ns: attr.duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_why() {
        let eperm = SteerError::Load {
            error: io::Error::from_raw_os_error(libc::EPERM),
            log: String::new(),
        };
        assert!(eperm.to_string().contains("CAP_BPF"), "{eperm}");
        let refused = SteerError::Load {
            error: io::Error::from_raw_os_error(libc::E2BIG),
            log: "BPF program is too large. Processed 1000001 insn".into(),
        };
        let text = refused.to_string();
        assert!(
            text.contains("verifier refused") && text.contains("too large"),
            "{text}"
        );
        assert!(
            SteerError::Build(BuildError::Shards(0))
                .to_string()
                .contains("shard count 0")
        );
    }
}
