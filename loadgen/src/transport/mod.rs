//! The seam between a worker and the wire: the worker sends "these requests on channel X"
//! and receives "these messages from channel X", and never learns whether a channel is a
//! UDP socket or a TCP/TLS connection.
//!
//! Why a seam and not flags in the worker: datagrams and streams differ in everything below
//! the message (batching syscalls vs write queues, one datagram per message vs framing by
//! Content-Length, ICMP errors vs connection state, TLS records). Keeping that here leaves
//! the worker's pacing, matching and timers one piece of code for every transport.

pub(crate) mod flood;
pub(crate) mod frame;
pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod udp;

use std::io;

use crate::net::MsgBatch;
use crate::stats::ConnStats;

/// Which transport a run uses (RFC 3261 §18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Udp,
    Tcp,
    Tls,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "udp" => Self::Udp,
            "tcp" => Self::Tcp,
            "tls" => Self::Tls,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    /// The Via transport token (RFC 3261 §20.42).
    pub(crate) fn via_token(self) -> &'static [u8] {
        match self {
            Self::Udp => b"UDP",
            Self::Tcp => b"TCP",
            Self::Tls => b"TLS",
        }
    }

    /// TCP and TLS: no retransmissions (RFC 3261 §17.1.1.2, §17.1.2.2: Timers A and E are
    /// for unreliable transports only).
    pub(crate) fn reliable(self) -> bool {
        self != Self::Udp
    }
}

/// What one receive call got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// Messages now readable with `Transport::message(0..messages)`.
    pub(crate) messages: usize,
    /// Nothing more is queued on the channel right now.
    pub(crate) drained: bool,
}

/// A worker's channels: UDP sockets or stream connections.
pub(crate) enum Transport {
    Udp(udp::Datagrams),
    Stream(stream::Streams),
}

impl Transport {
    pub(crate) fn channels(&self) -> usize {
        match self {
            Self::Udp(t) => t.channels(),
            Self::Stream(t) => t.channels(),
        }
    }

    /// Local port of channel `ch` (written in Via sent-by and Contact).
    pub(crate) fn port(&self, ch: usize) -> u16 {
        match self {
            Self::Udp(t) => t.port(ch),
            Self::Stream(t) => t.port(ch),
        }
    }

    /// The channel whose local port is `port` (0 if none is).
    pub(crate) fn channel_of_port(&self, port: u16) -> usize {
        (0..self.channels())
            .find(|&ch| self.port(ch) == port)
            .unwrap_or(0)
    }

    /// Sends messages `[0, n)` of `batch` on `ch`; returns how many left or were queued.
    pub(crate) fn send(&mut self, ch: usize, batch: &mut MsgBatch, n: usize) -> usize {
        match self {
            Self::Udp(t) => t.send(ch, batch, n),
            Self::Stream(t) => t.send(ch, (0..n).map(|i| batch.msg(i))),
        }
    }

    /// Sends one message on `ch` (retransmissions).
    pub(crate) fn send_one(&mut self, ch: usize, msg: &[u8]) -> bool {
        match self {
            Self::Udp(t) => t.send_one(ch, msg),
            Self::Stream(t) => t.send(ch, std::iter::once(msg)) == 1,
        }
    }

    /// Waits up to `timeout_ns` for input; fills `ready` with the channels to receive from.
    pub(crate) fn wait(&mut self, timeout_ns: u64, ready: &mut Vec<usize>) -> io::Result<()> {
        match self {
            Self::Udp(t) => t.wait(timeout_ns, ready),
            Self::Stream(t) => t.wait(timeout_ns, ready),
        }
    }

    /// Receives what `ch` has; the messages stay readable until the next `recv`.
    pub(crate) fn recv(&mut self, ch: usize) -> io::Result<Received> {
        match self {
            Self::Udp(t) => t.recv(ch),
            Self::Stream(t) => Ok(t.recv(ch)),
        }
    }

    /// Message `i` of the last `recv`.
    pub(crate) fn message(&self, i: usize) -> &[u8] {
        match self {
            Self::Udp(t) => t.message(i),
            Self::Stream(t) => t.message(i),
        }
    }

    /// Connection counters so far (zero over UDP), with `up_at_end` filled in.
    pub(crate) fn conn_stats(&self) -> ConnStats {
        match self {
            Self::Udp(_) => ConnStats::default(),
            Self::Stream(t) => t.stats(),
        }
    }
}
