//! The sans-IO core of sipreg's Redis Cluster client (SCALE-OUT-NOTES.md §3, §4).
//!
//! Why our own: a general-purpose async client (fred, redis-rs) spends 6–9 µs of CPU per
//! call, more than sipreg's whole per-REGISTER budget, and neither is glommio-native. A
//! registrar needs little: RESP2 framing, the slot of a key, a slot map, the cluster's
//! redirections, one Lua script and a FIFO of pending requests per connection. Those
//! pieces live here, as pure functions and state machines over bytes: no socket, no
//! clock, no glommio. The runtime owns the sockets and deadlines; tests drive the same
//! core over a blocking `TcpStream`.
//!
//! - [`slot`]: CRC16 key slots and the `{hash tag}` rule.
//! - [`resp`]: RESP2 command encoding and reply decoding, with named limits.
//! - [`cluster`]: the slot map, redirection/error classification and the per-connection
//!   pipeline of pending requests.
//! - [`script`]: the atomic commit script (RFC 3261 §10.3 step 7 on one hash per AOR),
//!   its SHA1, its key, its ARGV encoding and the decoding of its reply.
//! - [`wait`]: which commits replicas must acknowledge before their 200 (`WAIT`), and
//!   the decoding of `WAIT`'s reply.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod resp;
pub mod script;
pub mod slot;
pub mod wait;
