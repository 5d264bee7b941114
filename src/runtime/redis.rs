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
//! the importing node takes the slot from then on, or answers `MOVED` back); `NOSCRIPT`
//! sends it again as `EVAL` (which loads the script). `CLUSTERDOWN`, `TRYAGAIN`,
//! `NOREPLICAS`, a lost connection or no reply within `--redis-timeout-ms` answer 503
//! (nothing is known to have changed, and the client retransmits); a reply that is not
//! a commit result answers 500. Each failure is counted by its [`CommitFailure`] reason,
//! and logged at most once per [`FAILURE_LOG_INTERVAL_MS`] per reason.
//!
//! Connections: a lost connection is reconnected in the background, never blocking the
//! core: a non-blocking `connect` whose completion the core's `ppoll` reports (the
//! socket is writable), retried with exponential backoff from
//! [`RECONNECT_DELAY_FIRST_MS`] to [`RECONNECT_DELAY_MAX_MS`]. While a master is not
//! connected its commits answer 503 at once. One log line per change of state (lost,
//! reconnecting, back), not per attempt. A lost master also makes the core ask a live
//! one for the slot map (a failover gives its slots to a replica at another address);
//! a master the new map no longer names is not reconnected.
//!
//! Durability (`--redis-wait N`, `crate::redis::wait`): a commit that added or removed
//! a binding is held after its script reply until a `WAIT N` on the same connection
//! (one per connection per read, covering all of them) says N replicas have it; fewer
//! answer 503 and leave the write on the master.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::RedisConfig;
use crate::redis::cluster::{ClusterError, Pipeline, SlotMap};
use crate::redis::resp::{self, Reply};
use crate::redis::script::{
    self, CommitIntent, CommitOp, CommitStatus as ScriptStatus, ContactIntent, FlowToken, Invoke,
    ReplyError,
};
use crate::redis::slot::key_slot;
use crate::redis::wait::{self, WaitError, WaitVerdict};
use crate::registrar::shared::{
    CommitId, CommitOp as SharedOp, CommitReply, CommitStatus, ListedBinding,
};
use crate::registrar::{MaxContactsPolicy, Registrar};
use crate::sip;

/// How long a connect to a Redis node may take, in ms: blocking at start-up; in the
/// background (non-blocking) after a connection was lost.
pub(crate) const CONNECT_TIMEOUT_MS: u64 = 200;

/// Delay before the first reconnect attempt after a connection is lost, in ms; it
/// doubles after each failed attempt, up to [`RECONNECT_DELAY_MAX_MS`].
pub(crate) const RECONNECT_DELAY_FIRST_MS: u64 = 100;

/// Longest delay between two reconnect attempts to one master, in ms.
pub(crate) const RECONNECT_DELAY_MAX_MS: u64 = 5000;

const _: () =
    assert!(RECONNECT_DELAY_FIRST_MS > 0 && RECONNECT_DELAY_FIRST_MS <= RECONNECT_DELAY_MAX_MS);

/// Least time between two `CLUSTER SLOTS` asked while a master is not connected, in ms.
pub(crate) const SLOTS_REFRESH_INTERVAL_MS: u64 = 1000;

/// Least time between two log lines about failed commits of one reason, in ms.
pub(crate) const FAILURE_LOG_INTERVAL_MS: u64 = 1000;

/// Times one commit follows `MOVED`/`ASK` or `NOSCRIPT` before it is answered 503.
pub(crate) const REDIRECTS_MAX: u8 = 3;

/// Bytes read from a connection per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Bindings one commit reply may list (the script's own bound).
const LISTED_MAX: usize = script::REPLY_BINDINGS_MAX;

/// Why a commit was answered without a result (counted per reason in `/metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitFailure {
    /// No reply within `--redis-timeout-ms` (503).
    Timeout,
    /// The slot's master is not connected, or the connection was lost with the commit
    /// in flight (503).
    Connection,
    /// No master serves the slot (`CLUSTERDOWN`, `TRYAGAIN`, or none in the slot map)
    /// (503).
    ClusterDown,
    /// The master has fewer good replicas than its `min-replicas-to-write` (503).
    NoReplicas,
    /// Still redirected after [`REDIRECTS_MAX`] `MOVED`/`ASK`/`NOSCRIPT` (503).
    Redirects,
    /// Another error reply (`OOM`, `BUSY`, ...) (503).
    Refused,
    /// A reply that is not a commit result or a `WAIT` count (500).
    Malformed,
    /// `WAIT` counted fewer replicas than `--redis-wait` (503; the write stays on the
    /// master).
    Wait,
    /// The connection's pipeline already holds `PIPELINE_PENDING_MAX` requests (503).
    Overload,
}

impl CommitFailure {
    /// Every reason, in counter order.
    pub(crate) const ALL: [Self; 9] = [
        Self::Timeout,
        Self::Connection,
        Self::ClusterDown,
        Self::NoReplicas,
        Self::Redirects,
        Self::Refused,
        Self::Malformed,
        Self::Wait,
        Self::Overload,
    ];

    /// This reason's counter slot.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The `/metrics` label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::ClusterDown => "clusterdown",
            Self::NoReplicas => "noreplicas",
            Self::Redirects => "redirects",
            Self::Refused => "refused",
            Self::Malformed => "malformed",
            Self::Wait => "wait",
            Self::Overload => "overload",
        }
    }

    /// The commit is answered 500 (the backend said something we cannot read), else
    /// 503 (nothing known to be acknowledged; the client retries).
    pub(crate) fn is_server_error(self) -> bool {
        self == Self::Malformed
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Timeout => "no reply within --redis-timeout-ms (503)",
            Self::Connection => "the slot's master is not connected (503)",
            Self::ClusterDown => "no master serves the slot (CLUSTERDOWN/TRYAGAIN) (503)",
            Self::NoReplicas => "the master refuses writes: too few replicas (NOREPLICAS) (503)",
            Self::Redirects => "still redirected after REDIRECTS_MAX tries (503)",
            Self::Refused => "Redis refused the commit (503)",
            Self::Malformed => "a reply that is not a commit result (500)",
            Self::Wait => {
                "WAIT counted fewer replicas than --redis-wait (503; written on the master only)"
            }
            Self::Overload => "the connection's pipeline is full (503)",
        }
    }
}

/// Reasons a commit can fail: the length of the per-reason counters.
pub(crate) const COMMIT_FAILURES: usize = CommitFailure::ALL.len();

/// A request sent and not yet answered.
#[derive(Clone, Copy, Debug)]
enum Tag {
    /// A commit; `fetch`: it only reads the AOR (never waits for replicas).
    Commit {
        id: CommitId,
        redirects: u8,
        fetch: bool,
    },
    /// `CLUSTER SLOTS`, asked after a master was lost (failover moves its slots).
    Slots,
    /// `WAIT`, covering the next `commits` held commits of the connection.
    Wait { commits: u32 },
}

/// A commit whose script reply came back and waits for `WAIT` before its 200.
#[derive(Debug)]
struct Held {
    id: CommitId,
    reply: Reply,
}

/// Where a connection to a master stands.
#[derive(Debug)]
enum State {
    /// Connected: commits are sent.
    Up(TcpStream),
    /// A non-blocking connect in progress (the core polls it for writable).
    Connecting { socket: Socket, started: Instant },
    /// Not connected; the next attempt is due at `next_attempt`.
    Down { next_attempt: Instant },
}

#[derive(Debug)]
struct Conn {
    addr: String,
    state: State,
    pipeline: Pipeline<Tag>,
    /// Commits waiting for a `WAIT` reply, oldest first.
    held: VecDeque<Held>,
    /// The newest `held` commits no `WAIT` has been queued for yet.
    unwaited: u32,
    /// The delay before the attempt after the next failed one, in ms.
    delay_ms: u64,
    /// When the connection was lost (for the "back" line); `None` while up, or for a
    /// master never connected.
    down_since: Option<Instant>,
    /// Failed attempts since `down_since`.
    attempts: u32,
    /// The slot map no longer names this master: not reconnected (logged once).
    retired: bool,
}

/// A commit to send again, decided while reading replies.
#[derive(Clone, Copy, Debug)]
struct Retry {
    id: CommitId,
    redirects: u8,
    eval: bool,
}

/// What one reply to a commit led to.
enum Handled {
    /// Answered (`done`) or failed (`failed`).
    Finished,
    /// To be sent again.
    Retry(Retry),
    /// Written; its 200 waits for `WAIT`.
    Hold,
}

/// Failures of one reason since the last log line about them.
#[derive(Clone, Copy, Debug, Default)]
struct FailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

/// One core's connections to the masters.
#[derive(Debug)]
pub(crate) struct RedisLink {
    timeout: Duration,
    /// `--redis-wait` (0 = off) and its timeout in ms.
    wait_replicas: u32,
    wait_timeout_ms: u64,
    /// `--node-id`, stored in the flow token of bindings reachable only through one of
    /// this node's connections.
    node_id: String,
    map: SlotMap,
    /// The map was replaced: make sure every master in it has a connection.
    new_map: bool,
    conns: Vec<Conn>,
    by_addr: HashMap<String, usize>,
    /// Commits sent, oldest first, for the timeout (answered ones are skipped: the
    /// registrar ignores an id it has resumed).
    deadlines: VecDeque<(Instant, CommitId)>,
    retries: Vec<Retry>,
    /// A `CLUSTER SLOTS` is on its way (asked at `refresh_sent`).
    refreshing: bool,
    refresh_sent: Instant,
    next_refresh: Instant,
    /// Connections made after start-up, and connections lost.
    reconnects: u64,
    losses: u64,
    failure_log: [FailureLog; COMMIT_FAILURES],
    read_buf: Box<[u8]>,
    key: Vec<u8>,
    scratch: Vec<u8>,
    match_keys: Vec<u8>,
    /// Where each contact's match key ends in `match_keys`.
    match_key_ends: Vec<usize>,
}

/// Why the link could not start.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// No seed answered `CLUSTER SLOTS`.
    NoSeed(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSeed(why) => write!(f, "no --redis-seed gave a slot map: {why}"),
        }
    }
}

/// The address of `addr` (`host:port`). Cluster nodes announce IP addresses, so this
/// does not resolve names on the core's path; a host name is resolved by the system
/// (blocking).
fn socket_addr(addr: &str) -> io::Result<SocketAddr> {
    if let Ok(sa) = addr.parse() {
        return Ok(sa);
    }
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

/// Blocking connect (start-up only).
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

/// Starts a non-blocking connect: `Up` when it completed at once, `Connecting` while in
/// progress.
fn start_connect(addr: &str, now: Instant) -> io::Result<State> {
    let sa = socket_addr(addr)?;
    let socket = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&SockAddr::from(sa)) {
        Ok(()) => Ok(State::Up(TcpStream::from(socket))),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(State::Connecting {
            socket,
            started: now,
        }),
        Err(e) => Err(e),
    }
}

/// Whether a connect in progress completed: `Ok(true)` connected, `Ok(false)` still in
/// progress, `Err` failed.
fn connect_done(socket: &Socket) -> io::Result<bool> {
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    match socket.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(e),
    }
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
        let now = Instant::now();
        let mut link = Self {
            timeout,
            wait_replicas: config.wait_replicas,
            wait_timeout_ms: config.wait_timeout_ms,
            node_id: config.node_id.clone(),
            map,
            new_map: false,
            conns: Vec::new(),
            by_addr: HashMap::new(),
            deadlines: VecDeque::new(),
            retries: Vec::new(),
            refreshing: false,
            refresh_sent: now,
            next_refresh: now,
            reconnects: 0,
            losses: 0,
            failure_log: [FailureLog::default(); COMMIT_FAILURES],
            read_buf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            key: Vec::new(),
            scratch: Vec::new(),
            match_keys: Vec::new(),
            match_key_ends: Vec::new(),
        };
        // A master that cannot be reached now (down, or failing over while the seed's
        // map still names it) does not stop the start: its connection starts Down, the
        // background reconnect and slot-map refresh take it from there, and its slots
        // answer 503 meanwhile, as after a loss.
        let masters: Vec<String> = link.map.nodes().to_vec();
        for addr in masters {
            let i = link.conn_index(&addr, now);
            match connect(&addr).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(stream) => {
                    if let Some(conn) = link.conns.get_mut(i) {
                        conn.state = State::Up(stream);
                    }
                }
                Err(e) => tracing::warn!(
                    "redis: master {addr} unreachable at start ({e}); its slots answer 503 until it reconnects"
                ),
            }
        }
        Ok(link)
    }

    fn conn_index(&mut self, addr: &str, now: Instant) -> usize {
        if let Some(&i) = self.by_addr.get(addr) {
            return i;
        }
        self.conns.push(Conn {
            addr: addr.to_owned(),
            state: State::Down { next_attempt: now },
            pipeline: Pipeline::new(),
            held: VecDeque::new(),
            unwaited: 0,
            delay_ms: RECONNECT_DELAY_FIRST_MS,
            down_since: None,
            attempts: 0,
            retired: false,
        });
        let i = self.conns.len() - 1;
        self.by_addr.insert(addr.to_owned(), i);
        i
    }

    /// Masters this core has a connection (or a slot) for.
    pub(crate) fn masters(&self) -> usize {
        self.conns.len()
    }

    /// Connections made after start-up (reconnects, and masters that took over).
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Connections lost.
    pub(crate) fn losses(&self) -> u64 {
        self.losses
    }

    /// The connected sockets' fds, for the core to sleep on until readable.
    pub(crate) fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.conns.iter().filter_map(|c| match &c.state {
            State::Up(stream) => Some(stream.as_raw_fd()),
            _ => None,
        })
    }

    /// The fds of connects in progress, for the core to sleep on until writable
    /// (connected, or failed).
    pub(crate) fn connecting_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.conns.iter().filter_map(|c| match &c.state {
            State::Connecting { socket, .. } => Some(socket.as_raw_fd()),
            _ => None,
        })
    }

    /// How long the core may sleep before a reconnect attempt is due or a connect in
    /// progress times out (`None`: nothing is due).
    pub(crate) fn next_wakeup(&self, now: Instant) -> Option<Duration> {
        let connect_timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
        self.conns
            .iter()
            .filter_map(|c| match &c.state {
                State::Up(_) => None,
                State::Down { .. } if c.retired => None,
                State::Down { next_attempt } => Some(next_attempt.saturating_duration_since(now)),
                State::Connecting { started, .. } => {
                    Some((*started + connect_timeout).saturating_duration_since(now))
                }
            })
            .min()
    }

    /// Bytes are waiting to be written (the core should not sleep long).
    pub(crate) fn has_output(&mut self) -> bool {
        self.conns
            .iter_mut()
            .any(|c| matches!(c.state, State::Up(_)) && !c.pipeline.output().is_empty())
    }

    /// Queue commit `id` (shown by `registrar.commit_request`) for its AOR's master.
    /// An error says why it cannot be sent: the caller answers it 503 (or 500) at once.
    pub(crate) fn submit(
        &mut self,
        registrar: &Registrar,
        id: CommitId,
        now: Instant,
        redirects: u8,
        eval: bool,
    ) -> Result<(), CommitFailure> {
        let Some(request) = registrar.commit_request(id) else {
            // Answered already (its deadline passed): the caller's answer is a no-op.
            return Err(CommitFailure::Timeout);
        };
        self.key.clear();
        script::write_location_key(request.aor_key(), &mut self.key);
        let slot = key_slot(&self.key);
        let i = match self.map.node_for_slot(slot) {
            Some(addr) => {
                let addr = addr.to_owned();
                self.conn_index(&addr, now)
            }
            None => {
                self.refresh_slots(now);
                return Err(CommitFailure::ClusterDown);
            }
        };
        if !self
            .conns
            .get(i)
            .is_some_and(|c| matches!(c.state, State::Up(_)))
        {
            self.refresh_slots(now);
            return Err(CommitFailure::Connection);
        }
        // Match keys of the planned contacts, back to back in `match_keys`, and where
        // each ends (reused buffers: a steady commit allocates nothing here).
        self.match_keys.clear();
        self.match_key_ends.clear();
        for c in request.contacts() {
            if let Ok(uri) = sip::parse_uri(c.contact) {
                sip::uri_match_key(&uri, &mut self.match_keys);
            } else {
                self.match_keys.extend_from_slice(c.contact);
            }
            self.match_key_ends.push(self.match_keys.len());
        }
        let n = self.match_key_ends.len();
        let mut contacts: Vec<ContactIntent<'_>> = Vec::with_capacity(n);
        let mut start = 0;
        for (c, &end) in request.contacts().zip(&self.match_key_ends) {
            let match_key = self.match_keys.get(start..end).unwrap_or_default();
            start = end;
            contacts.push(ContactIntent {
                match_key,
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
                flow: c.flow.map(|flow| FlowToken {
                    node: self.node_id.as_bytes(),
                    flow,
                }),
            });
        }
        let fetch = request.op == SharedOp::Fetch;
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
            return Err(CommitFailure::Connection);
        };
        let tag = Tag::Commit {
            id,
            redirects,
            fetch,
        };
        let scratch = &mut self.scratch;
        let invoke = if eval { Invoke::Eval } else { Invoke::EvalSha };
        conn.pipeline
            .push_with(tag, |out| {
                script::encode_commit(out, scratch, &intent, invoke)
            })
            .map_err(|_| CommitFailure::Overload)?;
        self.deadlines.push_back((now + self.timeout, id));
        Ok(())
    }

    /// Write what is queued, on every connection (never blocks).
    pub(crate) fn flush(&mut self, now: Instant, failed: &mut Vec<(CommitId, CommitFailure)>) {
        let mut lost_any = false;
        for conn in &mut self.conns {
            let State::Up(stream) = &mut conn.state else {
                continue;
            };
            let out = conn.pipeline.output();
            let mut written = 0;
            let mut lost = None;
            while written < out.len() {
                match stream.write(out.get(written..).unwrap_or_default()) {
                    Ok(0) => {
                        lost = Some("write returned 0".to_owned());
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        lost = Some(format!("write: {e}"));
                        break;
                    }
                }
            }
            out.drain(..written);
            if let Some(why) = lost {
                lose(conn, &why, now, failed, &mut self.refreshing);
                self.losses += 1;
                lost_any = true;
            }
        }
        if lost_any {
            self.refresh_slots(now);
        }
    }

    /// Read what the masters answered and hand each commit's result to `done` (with the
    /// registrar's binding list view), in order; commits past their deadline, or whose
    /// connection was lost, go to `failed` with the reason. Then move reconnects along.
    /// Returns replies taken.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
        failed: &mut Vec<(CommitId, CommitFailure)>,
    ) -> usize {
        let mut taken = 0;
        let mut lost_any = false;
        for ci in 0..self.conns.len() {
            let Some(conn) = self.conns.get_mut(ci) else {
                continue;
            };
            let State::Up(stream) = &mut conn.state else {
                continue;
            };
            let mut lost = None;
            loop {
                match stream.read(&mut self.read_buf) {
                    Ok(0) => {
                        lost = Some("closed by the peer".to_owned());
                        break;
                    }
                    Ok(n) => conn
                        .pipeline
                        .receive(self.read_buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        lost = Some(format!("read: {e}"));
                        break;
                    }
                }
            }
            loop {
                match conn.pipeline.next_reply() {
                    Ok(Some((
                        Tag::Commit {
                            id,
                            redirects,
                            fetch,
                        },
                        reply,
                    ))) => {
                        taken += 1;
                        let wait = self.wait_replicas > 0;
                        match handle_reply(
                            &mut self.map,
                            &reply,
                            id,
                            redirects,
                            fetch,
                            wait,
                            done,
                            failed,
                        ) {
                            Handled::Finished => {}
                            Handled::Retry(r) => self.retries.push(r),
                            Handled::Hold => {
                                conn.held.push_back(Held { id, reply });
                                conn.unwaited += 1;
                            }
                        }
                    }
                    Ok(Some((Tag::Wait { commits }, reply))) => {
                        let verdict = wait::decode_wait_reply(&reply, self.wait_replicas);
                        taken += release_held(conn, commits, &verdict, done, failed);
                    }
                    Ok(Some((Tag::Slots, reply))) => {
                        self.refreshing = false;
                        match SlotMap::from_cluster_slots(&reply) {
                            Ok(map) => {
                                if map != self.map {
                                    tracing::info!(
                                        masters = map.nodes().len(),
                                        covered = map.covered(),
                                        "redis: slot map refreshed"
                                    );
                                    self.map = map;
                                    self.new_map = true;
                                }
                            }
                            Err(e) => tracing::warn!("redis: CLUSTER SLOTS: {e:?}"),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        lost = Some(format!("bad reply stream: {e:?}"));
                        break;
                    }
                }
            }
            if let Some(why) = lost {
                lose(conn, &why, now, failed, &mut self.refreshing);
                self.losses += 1;
                lost_any = true;
            } else if conn.unwaited > 0 {
                // One WAIT for every commit of this read that needs it: WAIT covers all
                // earlier writes of the connection.
                let commits = conn.unwaited;
                let (n, t) = (self.wait_replicas, self.wait_timeout_ms);
                let pushed = conn
                    .pipeline
                    .push_with(Tag::Wait { commits }, |out| wait::encode_wait(out, n, t));
                if pushed.is_err() {
                    for _ in 0..commits {
                        if let Some(held) = conn.held.pop_back() {
                            failed.push((held.id, CommitFailure::Overload));
                        }
                    }
                }
                conn.unwaited = 0;
            }
        }
        if lost_any {
            self.refresh_slots(now);
        }
        self.maintain(now);
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            failed.push((id, CommitFailure::Timeout));
        }
        taken
    }

    /// Move every connection that is not up along: finish or time out connects in
    /// progress, start the attempts that are due (masters the slot map names only), and
    /// ask for the slot map while a master is missing.
    fn maintain(&mut self, now: Instant) {
        if self.new_map {
            self.new_map = false;
            let masters: Vec<String> = self.map.nodes().to_vec();
            for addr in &masters {
                self.conn_index(addr, now);
            }
        }
        let mut missing = false;
        let map = &self.map;
        for conn in &mut self.conns {
            if matches!(conn.state, State::Up(_)) {
                continue;
            }
            let wanted = map.nodes().contains(&conn.addr);
            match advance(conn, wanted, now) {
                Progress::Connected => self.reconnects += 1,
                Progress::Pending => missing = true,
                Progress::Retired => {}
            }
        }
        if missing {
            self.refresh_slots(now);
        }
    }

    /// Ask a live master for the slot map (a master was lost: a failover gives its slots
    /// to a replica at another address, which only the cluster can tell). At most one
    /// request at a time (one lost with its connection, or unanswered for
    /// `--redis-timeout-ms`, is asked again), and at most once per
    /// [`SLOTS_REFRESH_INTERVAL_MS`].
    fn refresh_slots(&mut self, now: Instant) {
        if self.refreshing && now.duration_since(self.refresh_sent) < self.timeout {
            return;
        }
        if now < self.next_refresh {
            return;
        }
        let Some(conn) = self
            .conns
            .iter_mut()
            .find(|c| matches!(c.state, State::Up(_)))
        else {
            return;
        };
        if conn
            .pipeline
            .push(Tag::Slots, &[&b"CLUSTER"[..], b"SLOTS"])
            .is_ok()
        {
            self.refreshing = true;
            self.refresh_sent = now;
            self.next_refresh = now + Duration::from_millis(SLOTS_REFRESH_INTERVAL_MS);
        }
    }

    /// Send again what `poll` decided to retry (after MOVED, ASK or NOSCRIPT); what
    /// cannot be sent goes to `failed`.
    /// Returns (commits sent again, commits given up).
    pub(crate) fn resend(
        &mut self,
        registrar: &Registrar,
        now: Instant,
        failed: &mut Vec<(CommitId, CommitFailure)>,
    ) -> (u64, u64) {
        let retries = std::mem::take(&mut self.retries);
        let (mut sent, mut gave_up) = (0, 0);
        for r in &retries {
            if r.redirects > REDIRECTS_MAX {
                failed.push((r.id, CommitFailure::Redirects));
                gave_up += 1;
                continue;
            }
            match self.submit(registrar, r.id, now, r.redirects, r.eval) {
                Ok(()) => sent += 1,
                Err(reason) => {
                    failed.push((r.id, reason));
                    gave_up += 1;
                }
            }
        }
        self.retries = retries;
        self.retries.clear();
        (sent, gave_up)
    }

    /// Log `count` more failures of `reason`: at most one line per reason per
    /// [`FAILURE_LOG_INTERVAL_MS`], with how many happened since the last one.
    pub(crate) fn note_failures(&mut self, reason: CommitFailure, count: u64, now: Instant) {
        let Some(log) = self.failure_log.get_mut(reason.index()) else {
            return;
        };
        log.unlogged += count;
        let due = log.last.is_none_or(|last| {
            now.duration_since(last).as_millis() >= u128::from(FAILURE_LOG_INTERVAL_MS)
        });
        if due && log.unlogged > 0 {
            tracing::warn!(
                reason = reason.name(),
                "redis: {} commit(s) failed: {}",
                log.unlogged,
                reason.describe()
            );
            log.last = Some(now);
            log.unlogged = 0;
        }
    }
}

/// A `WAIT` answered for the next `commits` held commits of `conn`: each gets its 200
/// (`done`) or fails with the verdict's reason. Returns commits released.
fn release_held(
    conn: &mut Conn,
    commits: u32,
    verdict: &Result<WaitVerdict, WaitError>,
    done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
    failed: &mut Vec<(CommitId, CommitFailure)>,
) -> usize {
    if let Err(WaitError::Server(msg)) = verdict {
        tracing::debug!("redis: WAIT refused: {}", String::from_utf8_lossy(msg));
    }
    let mut released = 0;
    for _ in 0..commits {
        let Some(held) = conn.held.pop_front() else {
            break;
        };
        released += 1;
        match verdict {
            Ok(WaitVerdict::Acknowledged) => answer(&held.reply, held.id, done, failed),
            Ok(WaitVerdict::TooFew { .. }) => failed.push((held.id, CommitFailure::Wait)),
            Err(WaitError::Server(_)) => failed.push((held.id, CommitFailure::Refused)),
            Err(WaitError::Malformed) => failed.push((held.id, CommitFailure::Malformed)),
        }
    }
    released
}

/// What one reconnect pass did to a connection that was not up.
enum Progress {
    /// It is up now.
    Connected,
    /// Still connecting, or waiting for its next attempt.
    Pending,
    /// The slot map no longer names it: left down.
    Retired,
}

/// One step of a connection that is not up (`wanted`: the slot map names it).
fn advance(conn: &mut Conn, wanted: bool, now: Instant) -> Progress {
    match &conn.state {
        State::Up(_) => Progress::Connected,
        State::Connecting { socket, started } => {
            let outcome = match connect_done(socket) {
                Ok(false)
                    if now.duration_since(*started)
                        >= Duration::from_millis(CONNECT_TIMEOUT_MS) =>
                {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                }
                other => other,
            };
            match outcome {
                Ok(true) => {
                    let previous =
                        std::mem::replace(&mut conn.state, State::Down { next_attempt: now });
                    if let State::Connecting { socket, .. } = previous {
                        connected(conn, TcpStream::from(socket), now);
                    }
                    Progress::Connected
                }
                Ok(false) => Progress::Pending,
                Err(e) => {
                    attempt_failed(conn, &e, now);
                    Progress::Pending
                }
            }
        }
        State::Down { .. } if !wanted => {
            if !conn.retired {
                conn.retired = true;
                tracing::info!(
                    master = %conn.addr,
                    "redis: no longer a master in the slot map; not reconnecting"
                );
            }
            Progress::Retired
        }
        State::Down { next_attempt } if now < *next_attempt => {
            conn.retired = false;
            Progress::Pending
        }
        State::Down { .. } => {
            conn.retired = false;
            if conn.attempts == 0 {
                if conn.down_since.is_some() {
                    tracing::info!(
                        master = %conn.addr,
                        "redis: reconnecting (backoff {RECONNECT_DELAY_FIRST_MS}..{RECONNECT_DELAY_MAX_MS} ms)"
                    );
                } else {
                    tracing::info!(
                        master = %conn.addr,
                        "redis: connecting to a master new in the slot map"
                    );
                }
            }
            match start_connect(&conn.addr, now) {
                Ok(State::Up(stream)) => {
                    connected(conn, stream, now);
                    Progress::Connected
                }
                Ok(state) => {
                    conn.state = state;
                    Progress::Pending
                }
                Err(e) => {
                    attempt_failed(conn, &e, now);
                    Progress::Pending
                }
            }
        }
    }
}

/// `conn` is connected: say so (one line per outage) and reset its backoff.
fn connected(conn: &mut Conn, stream: TcpStream, now: Instant) {
    conn.state = State::Up(stream);
    match conn.down_since.take() {
        Some(since) => tracing::info!(
            master = %conn.addr,
            "redis: connection back after {} ms and {} failed attempt(s)",
            now.duration_since(since).as_millis(),
            conn.attempts
        ),
        None => tracing::info!(master = %conn.addr, "redis: connected"),
    }
    conn.attempts = 0;
    conn.delay_ms = RECONNECT_DELAY_FIRST_MS;
}

/// A connect attempt failed: the next one after the current delay, which doubles (no
/// log line above debug: one per outage is enough).
fn attempt_failed(conn: &mut Conn, e: &io::Error, now: Instant) {
    tracing::debug!(master = %conn.addr, "redis: connect failed: {e}");
    conn.attempts += 1;
    conn.state = State::Down {
        next_attempt: now + Duration::from_millis(conn.delay_ms),
    };
    conn.delay_ms = conn.delay_ms.saturating_mul(2).min(RECONNECT_DELAY_MAX_MS);
}

/// A connection is gone: its unanswered commits (sent, or written and waiting for
/// `WAIT`) fail, and it reconnects in the background.
fn lose(
    conn: &mut Conn,
    why: &str,
    now: Instant,
    failed: &mut Vec<(CommitId, CommitFailure)>,
    refreshing: &mut bool,
) {
    let before = failed.len();
    for tag in conn.pipeline.reset() {
        match tag {
            Tag::Commit { id, .. } => failed.push((id, CommitFailure::Connection)),
            // The map request is asked again on another connection.
            Tag::Slots => *refreshing = false,
            Tag::Wait { .. } => {}
        }
    }
    failed.extend(
        conn.held
            .drain(..)
            .map(|h| (h.id, CommitFailure::Connection)),
    );
    conn.unwaited = 0;
    tracing::warn!(
        master = %conn.addr,
        "redis: connection lost ({why}); {} commit(s) in flight answered 503; reconnecting \
         in the background",
        failed.len() - before
    );
    conn.state = State::Down {
        next_attempt: now + Duration::from_millis(RECONNECT_DELAY_FIRST_MS),
    };
    conn.delay_ms = (RECONNECT_DELAY_FIRST_MS * 2).min(RECONNECT_DELAY_MAX_MS);
    conn.down_since = Some(now);
    conn.attempts = 0;
}

/// Hands a held commit's result to `done` (a reply that no longer decodes fails).
fn answer(
    reply: &Reply,
    id: CommitId,
    done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
    failed: &mut Vec<(CommitId, CommitFailure)>,
) {
    match script::decode_commit_reply(reply) {
        Ok(r) => answer_decoded(&r, id, done),
        Err(_) => failed.push((id, CommitFailure::Malformed)),
    }
}

/// Hands a decoded commit result to `done`.
fn answer_decoded(
    r: &script::CommitReply<'_>,
    id: CommitId,
    done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
) {
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
            source: b.source,
            transport: b.transport,
            path: b.path,
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
}

/// One reply to a commit: its result for `done`, a failure for `failed`, a retry, or
/// (`wait`: `--redis-wait` is on) held for `WAIT`.
#[allow(clippy::too_many_arguments)]
fn handle_reply(
    map: &mut SlotMap,
    reply: &Reply,
    id: CommitId,
    redirects: u8,
    fetch: bool,
    wait: bool,
    done: &mut dyn FnMut(CommitId, &CommitReply<'_>),
    failed: &mut Vec<(CommitId, CommitFailure)>,
) -> Handled {
    match script::decode_commit_reply(reply) {
        Ok(r) if wait && wait::needs_wait(fetch, &r) => Handled::Hold,
        Ok(r) => {
            answer_decoded(&r, id, done);
            Handled::Finished
        }
        Err(ReplyError::Server(ClusterError::Moved { slot, addr })) => {
            let _ = map.set_owner(slot, &addr);
            Handled::Retry(Retry {
                id,
                redirects: redirects + 1,
                eval: false,
            })
        }
        Err(ReplyError::Server(ClusterError::Ask { slot, addr })) => {
            // Followed as a move: the importing node answers from now on, or sends
            // MOVED back.
            let _ = map.set_owner(slot, &addr);
            Handled::Retry(Retry {
                id,
                redirects: redirects + 1,
                eval: false,
            })
        }
        Err(ReplyError::Server(ClusterError::NoScript)) => Handled::Retry(Retry {
            id,
            redirects: redirects + 1,
            eval: true,
        }),
        Err(ReplyError::Server(ClusterError::ClusterDown | ClusterError::TryAgain)) => {
            failed.push((id, CommitFailure::ClusterDown));
            Handled::Finished
        }
        Err(ReplyError::Server(ClusterError::NoReplicas)) => {
            failed.push((id, CommitFailure::NoReplicas));
            Handled::Finished
        }
        Err(ReplyError::Server(ClusterError::Other(msg))) => {
            // A script error wraps the command's: `NOREPLICAS` raised by a write inside
            // the script arrives as `ERR ... NOREPLICAS ...` on some versions.
            let reason = if memchr::memmem::find(&msg, b"NOREPLICAS").is_some() {
                CommitFailure::NoReplicas
            } else {
                CommitFailure::Refused
            };
            tracing::debug!("redis: commit refused: {}", String::from_utf8_lossy(&msg));
            failed.push((id, reason));
            Handled::Finished
        }
        Err(e) => {
            tracing::debug!("redis: a commit reply that is not a commit result: {e:?}");
            failed.push((id, CommitFailure::Malformed));
            Handled::Finished
        }
    }
}

#[cfg(test)]
mod tests {
    //! The link against a fake master on loopback: it answers `CLUSTER SLOTS` with
    //! itself for every slot, every script with a commit that added a binding, and each
    //! `WAIT` with the next scripted reply. What the link does with a held commit
    //! depends only on that reply.

    use std::collections::VecDeque;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use bumpalo::Bump;

    use super::*;
    use crate::registrar::{Action, LocationMode, RegistrarConfig, Source, support};

    /// Starts the fake master; `waits` are the `WAIT` replies, in order. `drop_once`:
    /// the first script it receives closes its connection instead of an answer.
    fn fake_master(waits: Vec<&'static [u8]>, drop_once: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let waits = Arc::new(Mutex::new(VecDeque::from(waits)));
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(!drop_once));
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (waits, dropped) = (waits.clone(), dropped.clone());
                std::thread::spawn(move || {
                    let mut input = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk) else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        input.extend_from_slice(&chunk[..n]);
                        while let Ok(Some((Reply::Array(Some(args)), used))) = resp::decode(&input)
                        {
                            input.drain(..used);
                            let name = match args.first() {
                                Some(Reply::Bulk(Some(n))) => n.to_ascii_uppercase(),
                                _ => Vec::new(),
                            };
                            if name.starts_with(b"EVAL")
                                && !dropped.swap(true, std::sync::atomic::Ordering::Relaxed)
                            {
                                return;
                            }
                            let out: Vec<u8> = match name.as_slice() {
                                b"CLUSTER" => format!(
                                    "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n"
                                )
                                .into_bytes(),
                                // OK, no eviction, one binding added, none listed.
                                b"EVALSHA" | b"EVAL" => b"*4\r\n$2\r\nOK\r\n:1\r\n:0\r\n:1\r\n".to_vec(),
                                b"WAIT" => waits.lock().unwrap().pop_front().unwrap_or(b":0\r\n").to_vec(),
                                _ => b"-ERR unknown\r\n".to_vec(),
                            };
                            if stream.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    /// A link to the fake master at `seed` (`--redis-wait wait_replicas`) and a
    /// registrar in shared mode.
    fn link_and_registrar(seed: String, wait_replicas: u32) -> (RedisLink, Registrar) {
        let link = RedisLink::start(&RedisConfig {
            seeds: vec![seed],
            timeout_ms: 60_000,
            wait_replicas,
            wait_timeout_ms: 100,
            node_id: "test-node".into(),
        })
        .expect("the fake master");
        let reg = Registrar::new(RegistrarConfig {
            location: LocationMode::Shared,
            ..RegistrarConfig::default()
        });
        (link, reg)
    }

    /// One REGISTER through a shared registrar and the link with `--redis-wait 1`:
    /// what the link did with it (answered, or failed with a reason), and the
    /// registrar's response.
    fn register_once(wait_reply: &'static [u8]) -> (Option<CommitFailure>, String) {
        let (mut link, mut reg) = link_and_registrar(fake_master(vec![wait_reply], false), 1);
        let now_ms = 1_790_000_000_000;
        let source = Source::udp("192.0.2.10:5062".parse().unwrap(), 0);
        let msg = "REGISTER sip:example.com SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-w1;rport\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f1\r\n\
                   To: <sip:alice@example.com>\r\nCall-ID: w1\r\nCSeq: 1 REGISTER\r\n\
                   Contact: <sip:alice@192.0.2.10:5062>\r\nContent-Length: 0\r\n\r\n";
        let (arena, mut out) = (Bump::new(), Vec::new());
        let Action::Commit { id } =
            support::handle(&mut reg, now_ms, source, msg.as_bytes(), &arena, &mut out)
        else {
            panic!("a shared registrar commits through the link");
        };
        link.submit(&reg, id, Instant::now(), 0, false)
            .expect("sent");
        let mut failed = Vec::new();
        let mut answered = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !answered && failed.is_empty() {
            assert!(Instant::now() < deadline, "no answer from the link");
            link.flush(Instant::now(), &mut failed);
            link.poll(
                Instant::now(),
                &mut |done, reply| {
                    assert_eq!(done, id);
                    let arena = Bump::new();
                    let action = reg.resume(now_ms, done, reply, &arena, &mut out);
                    assert!(matches!(action, Action::Reply { .. }));
                    answered = true;
                },
                &mut failed,
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let failure = failed.first().map(|&(f, reason)| {
            assert_eq!(f, id);
            // As the core answers it.
            let status = if reason.is_server_error() {
                CommitStatus::Failed
            } else {
                CommitStatus::Unavailable
            };
            let reply = CommitReply {
                status,
                bindings: &[],
            };
            reg.resume(now_ms, f, &reply, &Bump::new(), &mut out);
            reason
        });
        (failure, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn a_change_is_answered_only_after_wait() {
        // Enough replicas: the 200 leaves.
        let (failure, r) = register_once(b":1\r\n");
        assert_eq!(failure, None);
        assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
        // Fewer: 503, counted as `wait`.
        let (failure, r) = register_once(b":0\r\n");
        assert_eq!(failure, Some(CommitFailure::Wait));
        assert!(r.starts_with("SIP/2.0 503"), "{r}");
        // Refused: 503.
        let (failure, r) = register_once(b"-ERR WAIT cannot be used with replica instances\r\n");
        assert_eq!(failure, Some(CommitFailure::Refused));
        assert!(r.starts_with("SIP/2.0 503"), "{r}");
        // Not a count: 500.
        for bad in [&b"+OK\r\n"[..], b"$1\r\n1\r\n", b":-1\r\n"] {
            let (failure, r) = register_once(bad);
            assert_eq!(failure, Some(CommitFailure::Malformed));
            assert!(r.starts_with("SIP/2.0 500"), "{r}");
        }
    }

    /// A REGISTER (Call-ID `call_id`) pending in `reg`, as the core hands it to the link.
    fn pending(reg: &mut Registrar, call_id: &str) -> CommitId {
        let msg = format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-{call_id};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=f1\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:bob@192.0.2.10:5062>\r\nContent-Length: 0\r\n\r\n"
        );
        let source = Source::udp("192.0.2.10:5062".parse().unwrap(), 0);
        let (arena, mut out) = (Bump::new(), Vec::new());
        match support::handle(
            reg,
            1_790_000_000_000,
            source,
            msg.as_bytes(),
            &arena,
            &mut out,
        ) {
            Action::Commit { id } => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lost_master_answers_503_at_once_and_comes_back_in_the_background() {
        let (mut link, mut reg) = link_and_registrar(fake_master(Vec::new(), true), 0);
        let first = pending(&mut reg, "c1");
        link.submit(&reg, first, Instant::now(), 0, false).unwrap();
        // The master drops the connection: the commit in flight fails (connection).
        let mut failed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while failed.is_empty() {
            assert!(Instant::now() < deadline, "the loss was not seen");
            link.flush(Instant::now(), &mut failed);
            link.poll(Instant::now(), &mut |_, _| panic!("no answer"), &mut failed);
        }
        assert_eq!(failed, [(first, CommitFailure::Connection)]);
        assert_eq!((link.losses(), link.reconnects()), (1, 0));
        // While it is down, a commit is refused at once, and the core may sleep only
        // until the next attempt.
        let second = pending(&mut reg, "c2");
        assert_eq!(
            link.submit(&reg, second, Instant::now(), 0, false),
            Err(CommitFailure::Connection)
        );
        assert!(
            link.next_wakeup(Instant::now())
                <= Some(Duration::from_millis(RECONNECT_DELAY_FIRST_MS))
        );
        // It reconnects in the background (polled, as the core's loop does), and the
        // commit then goes through.
        let deadline = Instant::now() + Duration::from_secs(5);
        while link.reconnects() == 0 {
            assert!(Instant::now() < deadline, "no reconnect");
            link.poll(Instant::now(), &mut |_, _| {}, &mut failed);
            std::thread::sleep(Duration::from_millis(5));
        }
        link.submit(&reg, second, Instant::now(), 0, false).unwrap();
        let mut answered = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while answered.is_none() {
            assert!(Instant::now() < deadline, "no answer after the reconnect");
            link.flush(Instant::now(), &mut failed);
            link.poll(
                Instant::now(),
                &mut |id, _| answered = Some(id),
                &mut failed,
            );
        }
        assert_eq!(answered, Some(second));
        assert_eq!(failed.len(), 1, "nothing else failed: {failed:?}");
    }

    #[test]
    fn failure_reasons_have_distinct_slots_and_labels() {
        for (i, f) in CommitFailure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
        let mut names: Vec<_> = CommitFailure::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMIT_FAILURES);
    }
}
