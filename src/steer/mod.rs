//! Receive steering: the eBPF program that makes the kernel deliver each UDP datagram
//! to the socket of the core that owns it (DESIGN.md, "Thread-per-core").
//!
//! A proxy sends every REGISTER from one 4-tuple, and SO_REUSEPORT's own hash then puts
//! all of them on one core, which parses everything and forwards the share it does not
//! own over the mesh. The program reads the datagram, finds the key the registrar
//! partitions by ([`crate::placement`]) and returns the owner's socket index, or "no
//! choice" when it is unsure; correctness never depends on it, only speed.
//!
//! Sans-IO, like the registrar: [`insn`] encodes instructions, [`program`] builds the
//! program for N sockets, [`mirror`] is its decision in plain Rust (the specification
//! the tests hold both sides to). Loading and attaching is `runtime::steer`'s.
#![forbid(unsafe_code)]

pub mod insn;
pub mod mirror;
pub mod program;

pub use mirror::{STEER_SCAN_BYTES_MAX, decide};
pub use program::{BuildError, STEER_PROGRAM_INSNS_MAX, build};
