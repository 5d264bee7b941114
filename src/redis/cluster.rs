//! Redis Cluster routing state: which node serves a slot, what an error reply asks us to
//! do, and which request each in-order reply answers.
//!
//! All of it is sans-IO. The runtime (or a test's blocking driver) owns one connection
//! per node; it appends commands with [`Pipeline::push`], writes
//! [`Pipeline::output`], feeds what it reads to [`Pipeline::receive`] and takes replies
//! with [`Pipeline::next_reply`]. Redis answers a connection's commands in order, so a
//! FIFO of caller tags is all the matching needed (no request ids).

use std::collections::VecDeque;

use super::resp::{self, Reply, RespError};
use super::slot::SLOT_COUNT;

/// Most nodes a slot map may name (a cluster of ~1000 nodes is Redis's stated limit).
pub const NODES_MAX: usize = 1000;
/// Most requests a pipeline holds unanswered before [`Pipeline::push`] refuses more.
pub const PIPELINE_PENDING_MAX: usize = 4096;

/// A node's address as the cluster announces it (`host:port`).
pub type NodeAddr = String;

/// Which master serves each of the 16384 slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// The distinct masters, in the order first seen.
    nodes: Vec<NodeAddr>,
    /// Per slot: index into `nodes`, or `None` when no master covers it.
    owner: Vec<Option<u16>>,
}

/// Why a `CLUSTER SLOTS` reply cannot be turned into a slot map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotMapError {
    /// Not an array of `[start, end, [host, port, ...], ...]` entries.
    Malformed,
    /// A slot number of 16384 or more, or start after end.
    SlotOutOfRange,
    /// More than [`NODES_MAX`] masters.
    TooManyNodes,
}

impl SlotMap {
    /// The map described by a `CLUSTER SLOTS` reply (masters only: the first node of each
    /// range). Slots no range names stay uncovered.
    pub fn from_cluster_slots(reply: &Reply) -> Result<Self, SlotMapError> {
        let Reply::Array(Some(ranges)) = reply else {
            return Err(SlotMapError::Malformed);
        };
        let mut map = Self {
            nodes: Vec::new(),
            owner: vec![None; usize::from(SLOT_COUNT)],
        };
        for range in ranges {
            let Reply::Array(Some(parts)) = range else {
                return Err(SlotMapError::Malformed);
            };
            let (Some(Reply::Int(start)), Some(Reply::Int(end)), Some(master)) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return Err(SlotMapError::Malformed);
            };
            let Reply::Array(Some(node)) = master else {
                return Err(SlotMapError::Malformed);
            };
            let (Some(Reply::Bulk(Some(host))), Some(Reply::Int(port))) =
                (node.first(), node.get(1))
            else {
                return Err(SlotMapError::Malformed);
            };
            let host = std::str::from_utf8(host).map_err(|_| SlotMapError::Malformed)?;
            let port = u16::try_from(*port).map_err(|_| SlotMapError::Malformed)?;
            let (start, end) = (slot_number(*start)?, slot_number(*end)?);
            if start > end {
                return Err(SlotMapError::SlotOutOfRange);
            }
            let addr = format!("{host}:{port}");
            let index = match map.nodes.iter().position(|n| *n == addr) {
                Some(i) => i,
                None => {
                    if map.nodes.len() >= NODES_MAX {
                        return Err(SlotMapError::TooManyNodes);
                    }
                    map.nodes.push(addr);
                    map.nodes.len() - 1
                }
            };
            let index = u16::try_from(index).map_err(|_| SlotMapError::TooManyNodes)?;
            for owner in &mut map.owner[usize::from(start)..=usize::from(end)] {
                *owner = Some(index);
            }
        }
        Ok(map)
    }

    /// The master serving `slot`, if any.
    pub fn node_for_slot(&self, slot: u16) -> Option<&str> {
        let index = (*self.owner.get(usize::from(slot))?)?;
        self.nodes.get(usize::from(index)).map(String::as_str)
    }

    /// The distinct masters (for `SCRIPT LOAD` on each, or connecting up front).
    pub fn nodes(&self) -> &[NodeAddr] {
        &self.nodes
    }

    /// Points `slot` at `addr` (what a `MOVED` says), adding the node if it is new.
    pub fn set_owner(&mut self, slot: u16, addr: &str) -> Result<(), SlotMapError> {
        if slot >= SLOT_COUNT {
            return Err(SlotMapError::SlotOutOfRange);
        }
        let index = match self.nodes.iter().position(|n| n == addr) {
            Some(i) => i,
            None if self.nodes.len() < NODES_MAX => {
                self.nodes.push(addr.to_owned());
                self.nodes.len() - 1
            }
            None => return Err(SlotMapError::TooManyNodes),
        };
        self.owner[usize::from(slot)] =
            Some(u16::try_from(index).map_err(|_| SlotMapError::TooManyNodes)?);
        Ok(())
    }

    /// Number of slots some master covers.
    pub fn covered(&self) -> usize {
        self.owner.iter().filter(|o| o.is_some()).count()
    }
}

fn slot_number(n: i64) -> Result<u16, SlotMapError> {
    u16::try_from(n)
        .ok()
        .filter(|&s| s < SLOT_COUNT)
        .ok_or(SlotMapError::SlotOutOfRange)
}

/// What an error reply means for routing (Redis Cluster spec, "Redirection and resharding").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterError {
    /// `MOVED slot host:port`: the slot lives there now; update the map and retry there.
    Moved {
        /// The slot.
        slot: u16,
        /// The node that owns it.
        addr: NodeAddr,
    },
    /// `ASK slot host:port`: retry this one request there, preceded by `ASKING`.
    Ask {
        /// The slot.
        slot: u16,
        /// The node importing it.
        addr: NodeAddr,
    },
    /// `NOSCRIPT`: the node lacks the script; `SCRIPT LOAD` (or `EVAL`) and retry.
    NoScript,
    /// `CLUSTERDOWN ...`: the slot is not served right now; retry after a pause.
    ClusterDown,
    /// `TRYAGAIN ...`: a multi-key request during resharding; retry after a pause.
    TryAgain,
    /// `NOREPLICAS ...`: the master has fewer good replicas than its
    /// `min-replicas-to-write` and refuses writes (nothing was written).
    NoReplicas,
    /// Any other error (the message as sent).
    Other(Vec<u8>),
}

impl ClusterError {
    /// Classifies an error reply's message (without the leading `-`).
    pub fn classify(message: &[u8]) -> Self {
        let mut words = message.split(|&b| b == b' ');
        let kind = words.next().unwrap_or_default();
        match kind {
            b"MOVED" | b"ASK" => {
                let slot = words
                    .next()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|&s| s < SLOT_COUNT);
                let addr = words
                    .next()
                    .and_then(|a| std::str::from_utf8(a).ok())
                    .filter(|a| {
                        a.rsplit_once(':')
                            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    });
                match (slot, addr, words.next()) {
                    (Some(slot), Some(addr), None) => {
                        let addr = addr.to_owned();
                        if kind == b"MOVED" {
                            Self::Moved { slot, addr }
                        } else {
                            Self::Ask { slot, addr }
                        }
                    }
                    _ => Self::Other(message.to_vec()),
                }
            }
            b"NOSCRIPT" => Self::NoScript,
            b"CLUSTERDOWN" => Self::ClusterDown,
            b"TRYAGAIN" => Self::TryAgain,
            b"NOREPLICAS" => Self::NoReplicas,
            _ => Self::Other(message.to_vec()),
        }
    }
}

/// Why a pipeline refused a request or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineError {
    /// [`PIPELINE_PENDING_MAX`] requests are already waiting for replies.
    Full,
    /// The peer sent bytes that are not RESP2 (the connection must be dropped).
    Resp(RespError),
    /// The peer sent a reply when no request was pending (the connection must be dropped).
    Unsolicited,
}

/// One connection's requests in flight: bytes to send, bytes received, and the tags of
/// requests still waiting for their reply, oldest first.
#[derive(Debug)]
pub struct Pipeline<T> {
    out: Vec<u8>,
    input: Vec<u8>,
    /// Bytes of `input` already decoded (compacted lazily).
    consumed: usize,
    pending: VecDeque<T>,
}

impl<T> Default for Pipeline<T> {
    fn default() -> Self {
        Self {
            out: Vec::new(),
            input: Vec::new(),
            consumed: 0,
            pending: VecDeque::new(),
        }
    }
}

impl<T> Pipeline<T> {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues one command whose reply will be returned with `tag`.
    pub fn push<A: AsRef<[u8]>>(&mut self, tag: T, args: &[A]) -> Result<(), PipelineError> {
        if self.pending.len() >= PIPELINE_PENDING_MAX {
            return Err(PipelineError::Full);
        }
        resp::encode_command(&mut self.out, args);
        self.pending.push_back(tag);
        Ok(())
    }

    /// Queues one command that `encode` appends as RESP2 bytes (e.g.
    /// [`super::script::encode_commit`]: no argument list is built).
    pub fn push_with(
        &mut self,
        tag: T,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), PipelineError> {
        if self.pending.len() >= PIPELINE_PENDING_MAX {
            return Err(PipelineError::Full);
        }
        encode(&mut self.out);
        self.pending.push_back(tag);
        Ok(())
    }

    /// Bytes waiting to be written; the caller drains what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Bytes read from the connection.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.consumed > 0 && self.consumed == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next complete reply with its request's tag, `Ok(None)` while more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<(T, Reply)>, PipelineError> {
        let Some((reply, used)) =
            resp::decode(&self.input[self.consumed..]).map_err(PipelineError::Resp)?
        else {
            if self.consumed > 0 {
                self.input.drain(..self.consumed);
                self.consumed = 0;
            }
            return Ok(None);
        };
        let tag = self.pending.pop_front().ok_or(PipelineError::Unsolicited)?;
        self.consumed += used;
        Ok(Some((tag, reply)))
    }

    /// Requests sent or queued and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops everything (after a connection loss): the tags of the unanswered requests,
    /// oldest first, so the caller can fail or retry them.
    pub fn reset(&mut self) -> Vec<T> {
        self.out.clear();
        self.input.clear();
        self.consumed = 0;
        self.pending.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn range(start: i64, end: i64, port: i64) -> Reply {
        Reply::Array(Some(vec![
            Reply::Int(start),
            Reply::Int(end),
            Reply::Array(Some(vec![bulk("127.0.0.1"), Reply::Int(port), bulk("id")])),
            Reply::Array(Some(vec![
                bulk("127.0.0.1"),
                Reply::Int(port + 3),
                bulk("id2"),
            ])),
        ]))
    }

    #[test]
    fn slot_map_from_cluster_slots() {
        let reply = Reply::Array(Some(vec![
            range(0, 5460, 7001),
            range(5461, 10922, 7002),
            range(10923, 16383, 7003),
        ]));
        let mut map = SlotMap::from_cluster_slots(&reply).unwrap();
        assert_eq!(map.covered(), 16384);
        assert_eq!(map.nodes().len(), 3);
        assert_eq!(map.node_for_slot(0), Some("127.0.0.1:7001"));
        assert_eq!(map.node_for_slot(5461), Some("127.0.0.1:7002"));
        assert_eq!(map.node_for_slot(16383), Some("127.0.0.1:7003"));
        map.set_owner(0, "127.0.0.1:7009").unwrap();
        assert_eq!(map.node_for_slot(0), Some("127.0.0.1:7009"));
        assert_eq!(
            map.set_owner(16384, "x:1"),
            Err(SlotMapError::SlotOutOfRange)
        );
    }

    #[test]
    fn bad_cluster_slots_are_errors() {
        let bad = [
            Reply::Int(1),
            Reply::Array(Some(vec![Reply::Int(1)])),
            Reply::Array(Some(vec![range(0, 16384, 7001)])),
            Reply::Array(Some(vec![range(10, 5, 7001)])),
            Reply::Array(Some(vec![range(0, 5, 70000)])),
        ];
        for b in &bad {
            assert!(SlotMap::from_cluster_slots(b).is_err(), "{b:?}");
        }
        let partial = Reply::Array(Some(vec![range(0, 99, 7001)]));
        let map = SlotMap::from_cluster_slots(&partial).unwrap();
        assert_eq!(map.covered(), 100);
        assert_eq!(map.node_for_slot(100), None);
    }

    #[test]
    fn classifies_cluster_errors() {
        assert_eq!(
            ClusterError::classify(b"MOVED 3999 127.0.0.1:6381"),
            ClusterError::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            }
        );
        assert_eq!(
            ClusterError::classify(b"ASK 3999 127.0.0.1:6381"),
            ClusterError::Ask {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            }
        );
        assert_eq!(
            ClusterError::classify(b"NOSCRIPT No matching script. Please use EVAL."),
            ClusterError::NoScript
        );
        assert_eq!(
            ClusterError::classify(b"CLUSTERDOWN The cluster is down"),
            ClusterError::ClusterDown
        );
        assert_eq!(
            ClusterError::classify(b"TRYAGAIN Multiple keys request during rehashing of slot"),
            ClusterError::TryAgain
        );
        assert_eq!(
            ClusterError::classify(b"NOREPLICAS Not enough good replicas to write."),
            ClusterError::NoReplicas
        );
        for bad in [
            &b"MOVED"[..],
            b"MOVED 99999 h:1",
            b"MOVED 1 nohostport",
            b"MOVED 1 h:1 extra",
            b"ERR unknown",
        ] {
            assert_eq!(
                ClusterError::classify(bad),
                ClusterError::Other(bad.to_vec())
            );
        }
    }

    #[test]
    fn pipeline_matches_replies_in_order_across_partial_reads() {
        let mut p = Pipeline::new();
        p.push(1, &["GET", "a"]).unwrap();
        p.push(2, &["GET", "b"]).unwrap();
        assert_eq!(p.pending(), 2);
        assert!(p.output().starts_with(b"*2\r\n$3\r\nGET\r\n"));
        let bytes = b"$1\r\nx\r\n-ERR no\r\n";
        for b in bytes.chunks(3) {
            p.receive(b);
        }
        assert_eq!(p.next_reply(), Ok(Some((1, bulk("x")))));
        assert_eq!(
            p.next_reply(),
            Ok(Some((2, Reply::Error(b"ERR no".to_vec()))))
        );
        assert_eq!(p.next_reply(), Ok(None));
        p.receive(b"+OK\r\n");
        assert_eq!(p.next_reply(), Err(PipelineError::Unsolicited));
        p.push_with(3, |out| out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"))
            .unwrap();
        assert!(p.output().ends_with(b"PING\r\n"));
        assert_eq!(p.reset(), vec![3]);
        p.receive(b"?\r\n");
        p.push(4, &["PING"]).unwrap();
        assert_eq!(
            p.next_reply(),
            Err(PipelineError::Resp(RespError::UnknownType(b'?')))
        );
    }

    #[test]
    fn pipeline_is_bounded() {
        let mut p = Pipeline::new();
        for i in 0..PIPELINE_PENDING_MAX {
            p.push(i, &["PING"]).unwrap();
        }
        assert_eq!(p.push(0, &["PING"]), Err(PipelineError::Full));
    }
}
