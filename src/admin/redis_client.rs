//! A small blocking Redis Cluster client for the admin thread (`--location redis`).
//!
//! Why blocking, and why not the cores' client: the management API runs on a thread of
//! its own, not on a SIP core, so waiting for Redis (with a timeout) costs no SIP work,
//! and a blocking `TcpStream` per master is the simplest correct client. It is built
//! from the same sans-IO pieces as the runtime's (`crate::redis`): the RESP2 codec, the
//! slot map from `CLUSTER SLOTS`, the MOVED/ASK classification, and the commit script
//! with its EVALSHA → EVAL fallback on NOSCRIPT. Nothing is shared with the cores.
//!
//! The slot map and the connections are made on first use. Any I/O error or timeout
//! drops that connection and forgets the slot map (a failover moves a lost master's
//! slots to an address only the cluster can tell), so an unreachable Redis fails one
//! API request (503) and the next request asks again: the seeds first, then the
//! masters of the last map (a seed may be the node that died).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::redis::cluster::{ClusterError, Pipeline, SlotMap};
use crate::redis::resp::{self, Reply};
use crate::redis::script::{self, CommitIntent, Invoke};
use crate::redis::slot::key_slot;

/// How long a connect to a Redis node may take, in ms.
pub(crate) const REDIS_CONNECT_TIMEOUT_MS: u64 = 500;

/// How long one write, or one read of a reply, may wait on a Redis node, in ms.
pub(crate) const REDIS_REPLY_TIMEOUT_MS: u64 = 2000;

/// MOVED, ASK and NOSCRIPT answers followed for one request before it fails.
pub(crate) const REDIS_REDIRECTS_MAX: usize = 5;

/// Bytes read from a connection per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a request to Redis failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RedisError {
    /// No seed or master could be reached, or one did not answer in time.
    Unreachable(String),
    /// The cluster does not serve the slot right now (CLUSTERDOWN, TRYAGAIN, no master
    /// for the slot, or a redirection loop).
    Unavailable(String),
    /// Redis answered something we cannot use (not RESP2, a bad slot map, an
    /// unexpected error or reply shape).
    Protocol(String),
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "Redis unreachable: {why}"),
            Self::Unavailable(why) => write!(f, "Redis cluster unavailable: {why}"),
            Self::Protocol(why) => write!(f, "unexpected answer from Redis: {why}"),
        }
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    pipeline: Pipeline<()>,
}

/// Blocking connections to a cluster's masters.
#[derive(Debug)]
pub(crate) struct BlockingCluster {
    seeds: Vec<String>,
    /// The masters of the last slot map (asked for a new one after the seeds).
    known: Vec<String>,
    map: Option<SlotMap>,
    conns: HashMap<String, Conn>,
    read_buf: Vec<u8>,
}

fn connect(addr: &str) -> Result<TcpStream, RedisError> {
    let unreachable = |e: io::Error| RedisError::Unreachable(format!("{addr}: {e}"));
    let timeout = Duration::from_millis(REDIS_CONNECT_TIMEOUT_MS);
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for sa in addr.to_socket_addrs().map_err(unreachable)? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(stream) => {
                let reply_timeout = Some(Duration::from_millis(REDIS_REPLY_TIMEOUT_MS));
                stream
                    .set_read_timeout(reply_timeout)
                    .map_err(unreachable)?;
                stream
                    .set_write_timeout(reply_timeout)
                    .map_err(unreachable)?;
                stream.set_nodelay(true).map_err(unreachable)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(unreachable(last))
}

fn io_error(addr: &str, e: &io::Error) -> RedisError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RedisError::Unreachable(format!(
            "{addr}: no answer within {REDIS_REPLY_TIMEOUT_MS} ms"
        )),
        _ => RedisError::Unreachable(format!("{addr}: {e}")),
    }
}

/// Whether an idle connection is still open: nothing is pending on it, so readable
/// means the peer closed it (or sent what we never asked for).
fn is_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = matches!(
        stream.peek(&mut [0u8; 1]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).is_ok() && open
}

/// One command as RESP2 bytes.
fn command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    resp::encode_command(&mut out, args);
    out
}

/// The script command for `intent`.
fn script_command(intent: &CommitIntent<'_>, invoke: Invoke) -> Vec<u8> {
    let mut out = Vec::new();
    script::encode_commit(&mut out, &mut Vec::new(), intent, invoke);
    out
}

/// What an answer asks of the router: nothing (it is the answer), or a retry.
fn redirection(reply: &Reply) -> Option<ClusterError> {
    let Reply::Error(message) = reply else {
        return None;
    };
    match ClusterError::classify(message) {
        ClusterError::Other(_) => None,
        e => Some(e),
    }
}

impl BlockingCluster {
    /// A client that will learn the slot map from the first of `seeds` that answers.
    pub(crate) fn new(seeds: Vec<String>) -> Self {
        Self {
            seeds,
            known: Vec::new(),
            map: None,
            conns: HashMap::new(),
            read_buf: vec![0; READ_CHUNK_BYTES],
        }
    }

    /// The masters, sorted by address (a stable order for dump cursors).
    pub(crate) fn masters(&mut self) -> Result<Vec<String>, RedisError> {
        let mut masters = self.map()?.nodes().to_vec();
        masters.sort();
        Ok(masters)
    }

    fn map(&mut self) -> Result<&mut SlotMap, RedisError> {
        if self.map.is_none() {
            let mut last = RedisError::Unreachable("no --redis-seed".into());
            let mut candidates = self.seeds.clone();
            candidates.extend(
                self.known
                    .iter()
                    .filter(|k| !self.seeds.contains(k))
                    .cloned(),
            );
            for seed in candidates {
                let reply = match self.call_on(&seed, &[command(&["CLUSTER", "SLOTS"])]) {
                    Ok(mut replies) => replies.pop(),
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
                match reply.as_ref().map(SlotMap::from_cluster_slots) {
                    Some(Ok(map)) => {
                        self.known = map.nodes().to_vec();
                        self.map = Some(map);
                        break;
                    }
                    other => {
                        last = RedisError::Protocol(format!("{seed}: CLUSTER SLOTS: {other:?}"));
                    }
                }
            }
            if self.map.is_none() {
                return Err(last);
            }
        }
        self.map
            .as_mut()
            .ok_or_else(|| RedisError::Unreachable("no slot map".into()))
    }

    /// Sends `commands` (RESP2 bytes each) to `addr` in one write and reads their
    /// replies, in order. Any failure drops the connection and the slot map.
    pub(crate) fn call_on(
        &mut self,
        addr: &str,
        commands: &[Vec<u8>],
    ) -> Result<Vec<Reply>, RedisError> {
        let result = self.exchange(addr, commands);
        if result.is_err() {
            self.conns.remove(addr);
            self.map = None;
        }
        result
    }

    fn exchange(&mut self, addr: &str, commands: &[Vec<u8>]) -> Result<Vec<Reply>, RedisError> {
        if self.conns.get(addr).is_some_and(|c| !is_open(&c.stream)) {
            // Closed while idle (Redis restarted, `timeout`, CLIENT KILL): a new
            // connection, rather than a request that fails on the old one.
            self.conns.remove(addr);
        }
        if !self.conns.contains_key(addr) {
            let stream = connect(addr)?;
            self.conns.insert(
                addr.to_owned(),
                Conn {
                    stream,
                    pipeline: Pipeline::new(),
                },
            );
        }
        let Self {
            conns, read_buf, ..
        } = self;
        let conn = conns
            .get_mut(addr)
            .ok_or_else(|| RedisError::Unreachable(format!("{addr}: not connected")))?;
        for c in commands {
            conn.pipeline
                .push_with((), |out| out.extend_from_slice(c))
                .map_err(|e| RedisError::Protocol(format!("{addr}: {e:?}")))?;
        }
        let out = conn.pipeline.output();
        conn.stream.write_all(out).map_err(|e| io_error(addr, &e))?;
        out.clear();
        let mut replies = Vec::with_capacity(commands.len());
        while replies.len() < commands.len() {
            match conn.pipeline.next_reply() {
                Ok(Some(((), reply))) => replies.push(reply),
                Ok(None) => {
                    let n = conn.stream.read(read_buf).map_err(|e| io_error(addr, &e))?;
                    if n == 0 {
                        return Err(RedisError::Unreachable(format!(
                            "{addr} closed the connection"
                        )));
                    }
                    conn.pipeline.receive(read_buf.get(..n).unwrap_or_default());
                }
                Err(e) => return Err(RedisError::Protocol(format!("{addr}: {e:?}"))),
            }
        }
        Ok(replies)
    }

    /// Runs the commit script for `intent` on the master of its AOR's slot, following
    /// MOVED (the slot map is updated), ASK (`ASKING` first) and NOSCRIPT (`EVAL`, which
    /// loads the script). CLUSTERDOWN and TRYAGAIN are [`RedisError::Unavailable`];
    /// any other answer, error or not, is returned for the caller to decode.
    pub(crate) fn script(&mut self, intent: &CommitIntent<'_>) -> Result<Reply, RedisError> {
        let mut key = Vec::new();
        script::write_location_key(intent.aor_key, &mut key);
        let slot = key_slot(&key);
        let mut invoke = Invoke::EvalSha;
        let mut target: Option<(String, bool)> = None;
        for _ in 0..=REDIS_REDIRECTS_MAX {
            let (addr, asking) = match target.take() {
                Some(t) => t,
                None => match self.map()?.node_for_slot(slot) {
                    Some(addr) => (addr.to_owned(), false),
                    None => {
                        return Err(RedisError::Unavailable(format!(
                            "no master for slot {slot}"
                        )));
                    }
                },
            };
            let mut commands = Vec::with_capacity(2);
            if asking {
                commands.push(command(&["ASKING"]));
            }
            commands.push(script_command(intent, invoke));
            let reply = self
                .call_on(&addr, &commands)?
                .pop()
                .ok_or_else(|| RedisError::Protocol(format!("{addr}: no reply")))?;
            match redirection(&reply) {
                None => return Ok(reply),
                Some(ClusterError::Moved { slot, addr: to }) => {
                    self.map()?
                        .set_owner(slot, &to)
                        .map_err(|e| RedisError::Protocol(format!("MOVED {slot} {to}: {e:?}")))?;
                }
                Some(ClusterError::Ask { addr: to, .. }) => target = Some((to, true)),
                Some(ClusterError::NoScript) => {
                    invoke = Invoke::Eval;
                    target = Some((addr, asking));
                }
                Some(e) => {
                    return Err(RedisError::Unavailable(format!("{addr} answered {e:?}")));
                } // `redirection` never returns `Other`.
            }
        }
        Err(RedisError::Unavailable(format!(
            "more than {REDIS_REDIRECTS_MAX} redirections for slot {slot}"
        )))
    }

    /// Runs the script for each of `intents` on `addr` in one pipelined exchange (the
    /// AORs a SCAN of that master listed); an answer that asks for a redirection or
    /// the script is run again alone through [`Self::script`]. Replies in order.
    pub(crate) fn scripts_on(
        &mut self,
        addr: &str,
        intents: &[CommitIntent<'_>],
    ) -> Result<Vec<Reply>, RedisError> {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Vec<u8>> = intents
            .iter()
            .map(|i| script_command(i, Invoke::EvalSha))
            .collect();
        let mut replies = self.call_on(addr, &commands)?;
        for (reply, intent) in replies.iter_mut().zip(intents) {
            if redirection(reply).is_some() {
                *reply = self.script(intent)?;
            }
        }
        Ok(replies)
    }

    /// One `SCAN cursor MATCH sipreg:loc:{* COUNT count` on `addr`: the next cursor (0:
    /// done) and the location keys of this step.
    pub(crate) fn scan(
        &mut self,
        addr: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), RedisError> {
        let mut pattern = script::LOCATION_KEY_PREFIX.to_vec();
        pattern.push(b'*');
        let (cursor, count) = (cursor.to_string(), count.to_string());
        let args: [&[u8]; 6] = [
            b"SCAN",
            cursor.as_bytes(),
            b"MATCH",
            &pattern,
            b"COUNT",
            count.as_bytes(),
        ];
        let reply = self.call_on(addr, &[command(&args)])?.pop();
        let bad = || RedisError::Protocol(format!("{addr}: SCAN answered {reply:?}"));
        let Some(Reply::Array(Some(parts))) = &reply else {
            return Err(bad());
        };
        let [Reply::Bulk(Some(next)), Reply::Array(Some(keys))] = parts.as_slice() else {
            return Err(bad());
        };
        let next = std::str::from_utf8(next)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        let keys = keys
            .iter()
            .map(|k| match k {
                Reply::Bulk(Some(k)) => Ok(k.clone()),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?;
        Ok((next, keys))
    }
}
