//! One core's link to a Redis Cluster (`--location redis`, issue 15): the I/O around
//! the sans-IO client in `crate::redis`.
//!
//! Each core has its own connection to every master (no locks, no cross-core
//! hand-off), learns the slot map from a seed at start (`CLUSTER SLOTS`), and sends
//! each commit the registrar hands out (`Action::Commit`) as one `EVALSHA` of the
//! commit script to the master of its AOR's slot. Commands queue per connection and
//! leave with one write per connection per loop turn (pipelining); replies are read
//! when the core's `ppoll` says a connection is readable, matched to their commits in
//! order, and handed back to the registrar (`Registrar::resume`).
//!
//! Faults: `MOVED` updates the slot map and sends the commit again (at most
//! [`REDIRECTS_MAX`] times); `ASK` is followed the same way, as a move (no `ASKING`:
//! the importing node takes the slot from then on, or answers `MOVED` back); `NOSCRIPT` sends it again as `EVAL` (which loads the script);
//! `CLUSTERDOWN`, `TRYAGAIN`, a lost connection or no reply within `--redis-timeout-ms`
//! answer 503 (nothing is known to have changed, and the client retransmits); a reply
//! that is not a commit result answers 500. A lost connection is reconnected at the next
//! commit for that master, at most once per [`RECONNECT_BACKOFF_MS`].

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::config::RedisConfig;
use crate::redis::cluster::{ClusterError, Pipeline, SlotMap};
use crate::redis::resp::{self, Reply};
use crate::redis::script::{
    self, CommitIntent, CommitOp, CommitStatus as ScriptStatus, ContactIntent, Invoke, ReplyError,
};
use crate::redis::slot::key_slot;
use crate::registrar::shared::{
    CommitId, CommitOp as SharedOp, CommitReply, CommitStatus, ListedBinding,
};
use crate::registrar::{MaxContactsPolicy, Registrar};
use crate::sip;

/// How long a connect to a Redis node may block the core, in ms (at start, and a
/// reconnect at most once per [`RECONNECT_BACKOFF_MS`] per master).
pub(crate) const CONNECT_TIMEOUT_MS: u64 = 200;

/// Least time between two connect attempts to one master, in ms.
pub(crate) const RECONNECT_BACKOFF_MS: u64 = 1000;

/// Times one commit follows `MOVED`/`ASK` or `NOSCRIPT` before it is answered 503.
pub(crate) const REDIRECTS_MAX: u8 = 3;

/// Bytes read from a connection per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Bindings one commit reply may list (the script's own bound).
const LISTED_MAX: usize = script::REPLY_BINDINGS_MAX;

/// A request sent and not yet answered.
#[derive(Clone, Copy, Debug)]
enum Tag {
    /// A commit.
    Commit { id: CommitId, redirects: u8 },
    /// `CLUSTER SLOTS`, asked after a master was lost (failover moves its slots).
    Slots,
}

#[derive(Debug)]
struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    pipeline: Pipeline<Tag>,
    next_connect: Instant,
}

/// A commit to send again, decided while reading replies.
#[derive(Clone, Copy, Debug)]
struct Retry {
    id: CommitId,
    redirects: u8,
    eval: bool,
}

/// One core's connections to the masters.
#[derive(Debug)]
pub(crate) struct RedisLink {
    timeout: Duration,
    map: SlotMap,
    conns: Vec<Conn>,
    by_addr: HashMap<String, usize>,
    /// Commits sent, oldest first, for the timeout (answered ones are skipped: the
    /// registrar ignores an id it has resumed).
    deadlines: VecDeque<(Instant, CommitId)>,
    retries: Vec<Retry>,
    /// A `CLUSTER SLOTS` is on its way; the next may be asked from this instant.
    refreshing: bool,
    next_refresh: Instant,
    read_buf: Box<[u8]>,
    key: Vec<u8>,
    scratch: Vec<u8>,
    match_keys: Vec<u8>,
}

/// Why the link could not start.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// No seed answered `CLUSTER SLOTS`.
    NoSeed(String),
    /// A master of the slot map could not be reached.
    Connect(String, io::Error),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSeed(why) => write!(f, "no --redis-seed gave a slot map: {why}"),
            Self::Connect(addr, e) => write!(f, "cannot connect to Redis master {addr}: {e}"),
        }
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for sa in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, Duration::from_millis(CONNECT_TIMEOUT_MS)) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `CLUSTER SLOTS` from `seed`, blocking (start-up only).
fn slot_map_from(seed: &str, timeout: Duration) -> Result<SlotMap, String> {
    let mut stream = connect(seed).map_err(|e| format!("{seed}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    resp::encode_command(&mut out, &[&b"CLUSTER"[..], b"SLOTS"]);
    stream.write_all(&out).map_err(|e| format!("{seed}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("{seed}: {e}"))?;
        if n == 0 {
            return Err(format!("{seed}: closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
        match resp::decode(&buf) {
            Ok(Some((reply, _))) => {
                return SlotMap::from_cluster_slots(&reply)
                    .map_err(|e| format!("{seed}: CLUSTER SLOTS: {e:?}"));
            }
            Ok(None) => continue,
            Err(e) => return Err(format!("{seed}: {e}")),
        }
    }
}

impl RedisLink {
    /// Learn the slot map from the first seed that answers and connect to every master.
    /// Blocks (start-up, on the core's thread).
    pub(crate) fn start(config: &RedisConfig) -> Result<Self, LinkError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut why = String::new();
        let mut map = None;
        for seed in &config.seeds {
            match slot_map_from(seed, timeout) {
                Ok(m) => {
                    map = Some(m);
                    break;
                }
                Err(e) => why = e,
            }
        }
        let map = map.ok_or(LinkError::NoSeed(why))?;
        let mut link = Self {
            timeout,
            map,
            conns: Vec::new(),
            by_addr: HashMap::new(),
            deadlines: VecDeque::new(),
            retries: Vec::new(),
            refreshing: false,
            next_refresh: Instant::now(),
            read_buf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            key: Vec::new(),
            scratch: Vec::new(),
            match_keys: Vec::new(),
        };
        let masters: Vec<String> = link.map.nodes().to_vec();
        for addr in masters {
            let i = link.conn_index(&addr);
            let stream = connect(&addr).map_err(|e| LinkError::Connect(addr.clone(), e))?;
            stream
                .set_nonblocking(true)
                .map_err(|e| LinkError::Connect(addr.clone(), e))?;
            if let Some(conn) = link.conns.get_mut(i) {
                conn.stream = Some(stream);
            }
        }
        Ok(link)
    }

    fn conn_index(&mut self, addr: &str) -> usize {
        if let Some(&i) = self.by_addr.get(addr) {
            return i;
        }
        self.conns.push(Conn {
            addr: addr.to_owned(),
            stream: None,
            pipeline: Pipeline::new(),
            next_connect: Instant::now(),
        });
        let i = self.conns.len() - 1;
        self.by_addr.insert(addr.to_owned(), i);
        i
    }

    /// Masters this core has a connection (or a slot) for.
    pub(crate) fn masters(&self) -> usize {
        self.conns.len()
    }

    /// The connections' fds, for the core to sleep on.
    pub(crate) fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.conns
            .iter()
            .filter_map(|c| c.stream.as_ref().map(AsRawFd::as_raw_fd))
    }

    /// Bytes are waiting to be written (the core should not sleep long).
    pub(crate) fn has_output(&mut self) -> bool {
        self.conns
            .iter_mut()
            .any(|c| c.stream.is_some() && !c.pipeline.output().is_empty())
    }

    /// Queue commit `id` (shown by `registrar.commit_request`) for its AOR's master.
    /// False when it cannot be sent (no master for the slot, no connection): the
    /// caller answers it 503.
    pub(crate) fn submit(
        &mut self,
        registrar: &Registrar,
        id: CommitId,
        now: Instant,
        redirects: u8,
        eval: bool,
    ) -> bool {
        let Some(request) = registrar.commit_request(id) else {
            return false;
        };
        self.key.clear();
        script::write_location_key(request.aor_key(), &mut self.key);
        let slot = key_slot(&self.key);
        let i = match self.map.node_for_slot(slot) {
            Some(addr) => {
                let addr = addr.to_owned();
                self.conn_index(&addr)
            }
            None => return false,
        };
        if !self.ensure_connected(i, now) {
            return false;
        }
        // Match keys of the planned contacts, back to back in `match_keys`.
        self.match_keys.clear();
        let mut spans = [(0usize, 0usize); crate::location::BINDINGS_PER_AOR_MAX];
        let mut n = 0;
        for c in request.contacts() {
            let start = self.match_keys.len();
            if let Ok(uri) = sip::parse_uri(c.contact) {
                sip::uri_match_key(&uri, &mut self.match_keys);
            } else {
                self.match_keys.extend_from_slice(c.contact);
            }
            if let Some(span) = spans.get_mut(n) {
                *span = (start, self.match_keys.len());
                n += 1;
            }
        }
        let mut contacts: Vec<ContactIntent<'_>> = Vec::with_capacity(n);
        for (c, &(a, b)) in request.contacts().zip(spans.iter().take(n)) {
            contacts.push(ContactIntent {
                match_key: self.match_keys.get(a..b).unwrap_or_default(),
                expires_s: c.expires_s,
                q: c.q,
                contact: c.contact,
                path: c.path,
                source: request.source.remote,
                transport: request.source.transport,
                listen: request.source.listen,
                user_agent: c.user_agent,
                instance: c.instance,
                reg_id: c.reg_id,
            });
        }
        let intent = CommitIntent {
            aor_key: request.aor_key(),
            call_id: request.call_id(),
            cseq: request.cseq,
            branch_hash: request.branch,
            max_contacts: request.max_contacts,
            policy: if request.evict_oldest {
                MaxContactsPolicy::EvictOldest
            } else {
                MaxContactsPolicy::Reject
            },
            op: match request.op {
                SharedOp::Fetch => CommitOp::Fetch,
                SharedOp::RemoveAll => CommitOp::RemoveAll,
                SharedOp::Update => CommitOp::Update(&contacts),
            },
        };
        let Some(conn) = self.conns.get_mut(i) else {
            return false;
        };
        let tag = Tag::Commit { id, redirects };
        let scratch = &mut self.scratch;
        let invoke = if eval { Invoke::Eval } else { Invoke::EvalSha };
        let pushed = conn.pipeline.push_with(tag, |out| {
            script::encode_commit(out, scratch, &intent, invoke)
        });
        if pushed.is_err() {
            return false;
        }
        self.deadlines.push_back((now + self.timeout, id));
        true
    }

    fn ensure_connected(&mut self, i: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(i) else {
            return false;
        };
        if conn.stream.is_some() {
            return true;
        }
        if now < conn.next_connect {
            self.refresh_slots(now);
            return false;
        }
        conn.next_connect = now + Duration::from_millis(RECONNECT_BACKOFF_MS);
        match connect(&conn.addr).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
            Ok(stream) => {
                tracing::info!(master = %conn.addr, "redis: connected");
                conn.stream = Some(stream);
                true
            }
            Err(e) => {
                tracing::warn!(master = %conn.addr, "redis: cannot connect: {e}");
                self.refresh_slots(now);
                false
            }
        }
    }

    /// Write what is queued, on every connection (never blocks).
    pub(crate) fn flush(&mut self, failed: &mut Vec<CommitId>) {
        for conn in &mut self.conns {
            let Some(stream) = conn.stream.as_mut() else {
                continue;
            };
            let out = conn.pipeline.output();
            let mut written = 0;
            let mut lost = false;
            while written < out.len() {
                match stream.write(out.get(written..).unwrap_or_default()) {
                    Ok(0) => {
                        lost = true;
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(master = %conn.addr, "redis: write: {e}");
                        lost = true;
                        break;
                    }
                }
            }
            out.drain(..written);
            if lost {
                drop_connection(conn, failed);
            }
        }
    }

    /// Read what the masters answered and hand each commit's result to `done` (with the
    /// registrar's binding list view), in order; commits past their deadline, or whose
    /// connection was lost, go to `failed`. Returns replies taken.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
        failed: &mut Vec<CommitId>,
    ) -> usize {
        let mut taken = 0;
        for ci in 0..self.conns.len() {
            let Some(conn) = self.conns.get_mut(ci) else {
                continue;
            };
            let Some(stream) = conn.stream.as_mut() else {
                continue;
            };
            let mut lost = false;
            loop {
                match stream.read(&mut self.read_buf) {
                    Ok(0) => {
                        lost = true;
                        break;
                    }
                    Ok(n) => conn
                        .pipeline
                        .receive(self.read_buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(master = %conn.addr, "redis: read: {e}");
                        lost = true;
                        break;
                    }
                }
            }
            loop {
                match conn.pipeline.next_reply() {
                    Ok(Some((Tag::Commit { id, redirects }, reply))) => {
                        taken += 1;
                        let retry =
                            handle_reply(&mut self.map, &reply, id, redirects, done, failed);
                        if let Some(r) = retry {
                            self.retries.push(r);
                        }
                    }
                    Ok(Some((Tag::Slots, reply))) => {
                        self.refreshing = false;
                        match SlotMap::from_cluster_slots(&reply) {
                            Ok(map) => {
                                tracing::info!(
                                    masters = map.nodes().len(),
                                    "redis: slot map refreshed"
                                );
                                self.map = map;
                            }
                            Err(e) => tracing::warn!("redis: CLUSTER SLOTS: {e:?}"),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(master = %conn.addr, "redis: bad reply stream: {e:?}");
                        lost = true;
                        break;
                    }
                }
            }
            if lost {
                drop_connection(conn, failed);
                self.refresh_slots(now);
            }
        }
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            failed.push(id);
        }
        taken
    }

    /// Ask a live master for the slot map (a master was lost: a failover gives its slots
    /// to a replica at another address, which only the cluster can tell). At most one
    /// request at a time, and at most once per [`RECONNECT_BACKOFF_MS`].
    fn refresh_slots(&mut self, now: Instant) {
        if self.refreshing || now < self.next_refresh {
            return;
        }
        let Some(conn) = self.conns.iter_mut().find(|c| c.stream.is_some()) else {
            return;
        };
        if conn
            .pipeline
            .push(Tag::Slots, &[&b"CLUSTER"[..], b"SLOTS"])
            .is_ok()
        {
            self.refreshing = true;
            self.next_refresh = now + Duration::from_millis(RECONNECT_BACKOFF_MS);
        }
    }

    /// Send again what `poll` decided to retry (after MOVED, ASK or NOSCRIPT); what
    /// cannot be sent goes to `failed`.
    /// Returns (commits sent again, commits given up).
    pub(crate) fn resend(
        &mut self,
        registrar: &Registrar,
        now: Instant,
        failed: &mut Vec<CommitId>,
    ) -> (u64, u64) {
        let retries = std::mem::take(&mut self.retries);
        let (mut sent, mut gave_up) = (0, 0);
        for r in &retries {
            if r.redirects <= REDIRECTS_MAX
                && self.submit(registrar, r.id, now, r.redirects, r.eval)
            {
                sent += 1;
            } else {
                tracing::warn!("redis: a commit gave up after {} redirections", r.redirects);
                failed.push(r.id);
                gave_up += 1;
            }
        }
        self.retries = retries;
        self.retries.clear();
        (sent, gave_up)
    }
}

/// A connection is gone: its unanswered commits fail (503), and it reconnects later.
fn drop_connection(conn: &mut Conn, failed: &mut Vec<CommitId>) {
    tracing::warn!(master = %conn.addr, "redis: connection lost");
    conn.stream = None;
    failed.extend(conn.pipeline.reset().into_iter().filter_map(|t| match t {
        Tag::Commit { id, .. } => Some(id),
        Tag::Slots => None,
    }));
    conn.pipeline.output().clear();
}

/// One reply to a commit: its result for `done`, a failure for `failed`, or a retry.
fn handle_reply(
    map: &mut SlotMap,
    reply: &Reply,
    id: CommitId,
    redirects: u8,
    done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
    failed: &mut Vec<CommitId>,
) -> Option<Retry> {
    match script::decode_commit_reply(reply) {
        Ok(r) => {
            let bindings: Vec<ListedBinding<'_>> = r
                .bindings
                .iter()
                .take(LISTED_MAX)
                .map(|b| ListedBinding {
                    contact: b.contact,
                    expires_s: b.expires_s,
                    q: b.q,
                    instance: b.instance,
                    reg_id: b.reg_id,
                })
                .collect();
            let status = match r.status {
                ScriptStatus::Ok => CommitStatus::Committed,
                ScriptStatus::Retransmission => CommitStatus::Retransmission,
                ScriptStatus::InvalidCSeq => CommitStatus::InvalidCSeq,
                ScriptStatus::TooManyContacts => CommitStatus::TooManyContacts,
            };
            done(
                id,
                &CommitReply {
                    status,
                    bindings: &bindings,
                },
            );
            None
        }
        Err(ReplyError::Server(ClusterError::Moved { slot, addr })) => {
            let _ = map.set_owner(slot, &addr);
            Some(Retry {
                id,
                redirects: redirects + 1,
                eval: false,
            })
        }
        Err(ReplyError::Server(ClusterError::Ask { slot, addr })) => {
            // Followed as a move: the importing node answers from now on, or sends
            // MOVED back.
            let _ = map.set_owner(slot, &addr);
            Some(Retry {
                id,
                redirects: redirects + 1,
                eval: false,
            })
        }
        Err(ReplyError::Server(ClusterError::NoScript)) => Some(Retry {
            id,
            redirects: redirects + 1,
            eval: true,
        }),
        Err(ReplyError::Server(e)) => {
            tracing::debug!("redis: commit refused: {e:?}");
            failed.push(id);
            None
        }
        Err(e) => {
            tracing::warn!("redis: a commit reply that is not a commit result: {e:?}");
            done(
                id,
                &CommitReply {
                    status: CommitStatus::Failed,
                    bindings: &[],
                },
            );
            None
        }
    }
}
