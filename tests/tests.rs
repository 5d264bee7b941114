//! The integration tests: one binary (`autotests = false`), one module per area.
//! Every test drives the real `sipreg` binary over UDP (or TCP) on loopback.

// The harness: start/stop the server, a string-based SIP client. Start here.
mod util;

// Runtime behaviour that does not depend on SIP semantics: cores, sockets, the
// cross-core path, bad input, flags, start-up errors, shutdown, idle CPU.
mod runtime;

// SIP behaviour a client sees: §10.3 pipeline, replay, redirect, torture messages.
mod registrar;

// Digest authentication of REGISTER: 401/200, stale, 403, SIGHUP reload, bad files.
mod auth;

// Persistence: restart, kill -9 in sync mode (also during online compaction), torn tails,
// format version, re-partition.
mod persist;

// Operations: management API, /metrics, `sipreg ctl`, JSON logs (issue 7).
mod admin;

// The systemd unit in scripts/: it parses, and every flag it names exists (issue 14).
mod service;

// Receive steering (issue 13): one source on two cores, eBPF vs the kernel's hash.
mod steering_runtime;

// SIP over TCP (RFC 3261 §18): replies on the connection, framing, limits, the mesh.
mod tcp;

// SIP over TLS (RFC 3261 §26.2.1): answers on the connection, resumption, mutual TLS,
// handshake limits, SIGHUP certificate reload.
mod tls;
// NAT reachability (issue 17): 302 alias, the targets endpoint, keep-alive pings.
mod nat;
