//! sipreg: a thread-per-core SIP registrar (RFC 3261 §10).
//!
//! The crate is split along the sans-IO line (see `ARCHITECTURE.md`):
//!
//! - [`sip`]: zero-copy request parser, SIP/SIPS URIs, the header-name table and the
//!   response writer. Pure functions over `&[u8]`.
//! - [`txn`]: non-INVITE server transactions (RFC 3261 §17.2.2): the Timer J cache of
//!   final responses that absorbs retransmissions.
//! - [`location`]: the location table (AOR → bindings) with expiry.
//! - [`registrar`]: the RFC 3261 §10.3 pipeline and the redirect/lookup answers, as one
//!   state machine per shard driven by `(now, source, bytes)`.
//! - [`placement`]: the partition rule (which shard owns a request), shared with the
//!   kernel steering program.
//! - [`steer`]: the eBPF receive-steering program, built and mirrored in pure Rust.
//! - [`runtime`]: the thin glommio shell: pinned executors, SO_REUSEPORT sockets,
//!   batched `recvmmsg`/`sendmmsg`, the shard mesh, timers and signals.
//! - [`store`]: persistence of the location table, one append-only log per shard.
//! - [`config`]: command-line flags and their validation.
//! - [`admin`]: the management API and `/metrics`, on a thread of its own.
//! - [`server`]: starts the runtime and the management API beside it.
//!
//! `sip`, `txn`, `location` and `registrar` read no clock, open no socket and never touch
//! glommio: time, the source address and randomness are inputs. That is what makes them
//! testable on a fake clock, fuzzable, and fast.

pub mod admin;
pub mod auth;
pub mod config;
pub mod ctl;
mod hash;
pub mod location;
pub mod placement;
pub mod redis;
pub mod registrar;
pub mod runtime;
pub mod server;
pub mod sip;
pub mod steer;
pub mod store;
pub mod txn;
