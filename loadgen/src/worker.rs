//! One worker: a pinned thread that owns its channels (UDP sockets or TCP/TLS connections,
//! behind `transport`), its in-flight slots, its users and its statistics, and drives them
//! in one loop (send due requests, fire timers, receive).
//!
//! Why this shape:
//! - **Open loop without coordinated omission.** In `--rate` mode request k is *intended* at
//!   `start + k/rate`; its latency is measured from that instant, so a stalled server (or a
//!   stalled loadgen) shows up as latency instead of silently lowering the offered load.
//! - **O(1) matching.** The Via branch names the slot (`request.rs`); a per-slot sequence
//!   number rejects late answers for a reused slot. The Call-ID user and the CSeq are then
//!   checked against the slot.
//! - **Timers without a heap.** Every request gets the same timeouts, so deadlines pushed in
//!   send order are already sorted: one FIFO per RFC 3261 Timer E step (500, 1000, 2000,
//!   4000 ms…) plus one for the overall timeout, each popped from the front. The pacing
//!   and these queues are pure functions of the time passed in (`schedule`), tested on a
//!   fake clock; this loop reads the clock once per turn.
//! - **Users are owned.** User `u` belongs to worker `u mod W`; within the worker to channel
//!   `local mod S`, so its Contact port is stable across refreshes and, over TCP/TLS, every
//!   refresh goes on the connection that registered (the flow its binding records). A user
//!   with a REGISTER in flight is skipped (RFC 3261 §10.2: a UA does not overlap REGISTERs
//!   for one AOR).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::cli::{Expect, Pace, RunConfig, Scenario};
use crate::digest::{self, AUTH_LINE_BYTES_MAX, Answer, Cached, REALM_BYTES_MAX};
use crate::net::{self, MsgBatch};
use crate::request::{self, Identity, Op, REQUEST_BYTES_MAX, Spec, fmt_into};
use crate::response;
use crate::schedule::{Due, Pacer, Timer, Timers};
use crate::stats::{Progress, Stats};
use crate::transport::stream::Streams;
use crate::transport::udp::Datagrams;
use crate::transport::{Kind, Transport};

/// How many busy users a pick skips before giving up on a socket for this round.
const BUSY_SKIP_MAX: usize = 8;
/// recvmmsg calls per ready socket per loop turn, so sending is never starved.
const RECV_ROUNDS_MAX: usize = 4;
/// Longest epoll sleep, so the loop re-checks its deadlines.
const SLEEP_NS_MAX: u64 = 100_000_000;
/// Below this the loop spins instead of sleeping: a sleep and wake-up cost a few µs each.
const SPIN_NS: u64 = 20_000;
/// Window used by the prime phase (closed loop, per worker).
const PRIME_WINDOW: u32 = 256;
/// The prime phase stops sending after this many failures: the server is down or refusing,
/// and waiting out a timeout per window of users would take minutes.
const PRIME_FAILURES_MAX: u64 = 256;
/// In-flight cap per worker in open loop, beyond `rate × timeout`, for bursts.
const OPEN_LOOP_SLOTS_EXTRA: usize = 4096;

const USER_BUSY: u32 = 1 << 31;
const USER_UNREGISTERED: u32 = 1 << 30;
const USER_CSEQ_MASK: u32 = USER_UNREGISTERED - 1;

/// What the run shares with each worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: RunConfig,
    pub(crate) identity: Identity,
    pub(crate) progress: Vec<Progress>,
    /// Workers + main thread: once after priming, once to start the measured phase together.
    pub(crate) barrier: Barrier,
    /// Set by the main thread between the barriers when priming failed: skip the measured phase.
    pub(crate) abort: AtomicBool,
    /// Failed prime registrations, summed over workers before the first barrier.
    pub(crate) prime_failures: AtomicU64,
}

/// What a worker hands back.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) stats: Stats,
    pub(crate) elapsed: Duration,
    /// CPU time this worker thread used in the measured phase (user + system, which includes
    /// the kernel's loopback delivery done in our send calls).
    pub(crate) cpu: Duration,
    pub(crate) prime: Option<(Stats, Duration)>,
}

/// Where a REGISTER of `--scenario auth` is in its challenge-response (RFC 3261 §22.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthStep {
    /// Not an authenticating scenario.
    Off,
    /// No credentials: a 401 is expected and answered.
    Bare,
    /// Credentials from the user's kept nonce (nc+1): a 401 redoes the challenge.
    Cached,
    /// Credentials answering the 401 just received: a 401 is a failure.
    Answer,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    seq: u32,
    in_flight: bool,
    /// No more retransmissions (a provisional response arrived for an INVITE).
    quiet: bool,
    /// The user was registered when the request left (decides what a fetch/INVITE expects).
    registered: bool,
    /// Index into `users` when the request holds that user busy.
    local: Option<u32>,
    spec: Spec,
    intended_ns: u64,
    auth: AuthStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Register every user once, closed loop, not measured.
    Prime,
    Scenario,
}

struct Worker {
    id: u32,
    workers: u32,
    shared: Arc<Shared>,
    base: Instant,
    /// Channels (UDP sockets or TCP/TLS connections); users are spread over them.
    transport: Transport,
    /// Channels with input, from the last wait.
    ready: Vec<usize>,
    send: MsgBatch,
    ack: MsgBatch,
    scratch: Vec<u8>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    timers: Timers,
    /// Per local user: CSeq of the last REGISTER, plus the BUSY/UNREGISTERED bits.
    users: Vec<u32>,
    /// Per channel: users picked so far (position and pass of its user cursor).
    cursors: Vec<u64>,
    fresh_next: u64,
    invites: u32,
    mix_pos: usize,
    stats: Stats,
    /// `--scenario auth`: per local user, the last challenge (empty otherwise).
    nonces: Vec<Cached>,
    /// `--scenario auth`: the realm of the last challenge (one domain per run).
    realm: Vec<u8>,
}

/// Runs one worker to completion (prime, barrier, measured phase).
pub(crate) fn run(id: u32, cpu: Option<usize>, shared: Arc<Shared>) -> io::Result<Outcome> {
    if let Some(cpu) = cpu
        && !net::pin_to(cpu)
    {
        eprintln!("warning: worker {id}: could not pin to CPU {cpu}");
    }
    net::tighten_timer_slack();
    let mut w = Worker::new(id, shared.clone())?;
    let prime = if shared.cfg.scenario.needs_prime() {
        let started = Instant::now();
        let stats = w.run_phase(Source::Prime)?;
        shared
            .prime_failures
            .fetch_add(stats.failures(), Ordering::Relaxed);
        Some((stats, started.elapsed()))
    } else {
        None
    };
    shared.barrier.wait();
    shared.barrier.wait();
    if shared.abort.load(Ordering::Relaxed) {
        return Ok(Outcome {
            stats: Stats::new(),
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            prime,
        });
    }
    let started = Instant::now();
    let cpu_before = thread_cpu();
    let stats = w.run_phase(Source::Scenario)?;
    let cpu = thread_cpu().saturating_sub(cpu_before);
    Ok(Outcome {
        stats,
        elapsed: started.elapsed(),
        cpu,
        prime,
    })
}

/// CPU time of the calling thread (getrusage RUSAGE_THREAD: user + system).
fn thread_cpu() -> Duration {
    // SAFETY: all-zero is a valid rusage, and getrusage writes only into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, exclusively borrowed rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

impl Worker {
    fn new(id: u32, shared: Arc<Shared>) -> io::Result<Self> {
        let cfg = &shared.cfg;
        let workers = cfg.cpus.len() as u32;
        let users_local = u64::from(cfg.users)
            .saturating_sub(u64::from(id))
            .div_ceil(u64::from(workers));
        // Scenarios that walk the user table need every socket to own at least one user.
        let walks_users = !matches!(cfg.scenario, Scenario::Storm);
        let nsock = if walks_users {
            cfg.channels.min(users_local.max(1) as usize)
        } else {
            cfg.channels
        };
        let transport = match cfg.transport {
            Kind::Udp => Transport::Udp(Datagrams::open(
                SocketAddr::new(cfg.bind, 0),
                cfg.target,
                nsock,
                cfg.batch,
            )?),
            Kind::Tcp | Kind::Tls => Transport::Stream(Streams::open(
                vec![cfg.bind],
                cfg.target,
                nsock,
                cfg.tls.clone(),
            )?),
        };
        let slot_count = match cfg.pace {
            Pace::Closed { window } => window.max(PRIME_WINDOW) as usize,
            Pace::Open { rate, window } => {
                let per_worker = rate / f64::from(workers) * cfg.timeout.as_secs_f64();
                (per_worker.ceil() as usize + OPEN_LOOP_SLOTS_EXTRA)
                    .min(window as usize)
                    .max(PRIME_WINDOW as usize)
            }
        };
        let empty = Slot {
            seq: 0,
            in_flight: false,
            quiet: false,
            registered: false,
            local: None,
            spec: Spec {
                op: Op::Register,
                user: 0,
                generation: 0,
                cseq: 0,
                worker: id,
                slot: 0,
                seq: 0,
                port: 0,
            },
            intended_ns: 0,
            auth: AuthStep::Off,
        };
        let auth = cfg.scenario == Scenario::Auth;
        Ok(Self {
            nonces: vec![Cached::default(); if auth { users_local as usize } else { 0 }],
            realm: Vec::with_capacity(if auth { REALM_BYTES_MAX } else { 0 }),
            id,
            workers,
            base: Instant::now(),
            transport,
            ready: Vec::with_capacity(nsock),
            send: MsgBatch::new(cfg.batch, REQUEST_BYTES_MAX),
            ack: MsgBatch::new(cfg.batch, REQUEST_BYTES_MAX),
            scratch: vec![0; REQUEST_BYTES_MAX],
            slots: vec![empty; slot_count],
            free: (0..slot_count as u32).rev().collect(),
            timers: Timers::with_capacity(slot_count),
            users: vec![0; users_local as usize],
            cursors: vec![0; nsock],
            fresh_next: 0,
            invites: 0,
            mix_pos: id as usize * 7,
            stats: Stats::new(),
            shared,
        })
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Runs one phase until its bound is reached and every request is answered or timed out.
    fn run_phase(&mut self, source: Source) -> io::Result<Stats> {
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        self.stats = Stats::new();
        self.cursors.iter_mut().for_each(|c| *c = 0);
        let workers = u64::from(self.workers);
        let id = u64::from(self.id);
        let (pace, count, deadline_ns) = match source {
            Source::Prime => (
                Pace::Closed {
                    window: PRIME_WINDOW,
                },
                Some(self.users.len() as u64),
                None,
            ),
            Source::Scenario => {
                let count = cfg.count.map(|c| c / workers + u64::from(id < c % workers));
                (cfg.pace, count, cfg.duration.map(|d| d.as_nanos() as u64))
            }
        };
        let (ns_per_request, window) = match pace {
            Pace::Open { rate, window } => (1e9 * workers as f64 / rate, window),
            Pace::Closed { window } => (0.0, window),
        };
        let window = (window as usize).min(self.slots.len());
        let start_ns = self.now_ns();
        let pacer = Pacer {
            start_ns,
            ns_per_request,
            window,
            count,
        };
        let mut started: u64 = 0;
        let mut sending = count != Some(0);
        let mut send_end_ns = start_ns;
        let mut next_sock = 0;
        let mut turn: u64 = 0;
        loop {
            let now = self.now_ns();
            if sending {
                let past_deadline = deadline_ns.is_some_and(|d| now - start_ns >= d);
                let past_count = count.is_some_and(|c| started >= c);
                let prime_failing =
                    source == Source::Prime && self.stats.failures() >= PRIME_FAILURES_MAX;
                if past_deadline || past_count || prime_failing {
                    sending = false;
                    send_end_ns = now;
                }
            }
            if sending {
                let mut budget = pacer.budget(now, started, self.outstanding());
                let mut empty_socks = 0;
                let mut rounds = 0;
                while budget > 0 && rounds < self.transport.channels() {
                    let want = budget.min(cfg.batch as u64) as usize;
                    let intended = |k: u64| pacer.intended_ns(k, now);
                    let n = self.send_batch(next_sock, want, source, started, &intended, now);
                    started += n as u64;
                    budget -= n as u64;
                    if n == 0 {
                        empty_socks += 1;
                    }
                    next_sock = (next_sock + 1) % self.transport.channels();
                    rounds += 1;
                }
                // The prime phase ends when every socket has walked its users once.
                if source == Source::Prime
                    && empty_socks == self.transport.channels()
                    && self.all_cursors_done()
                {
                    sending = false;
                    send_end_ns = now;
                }
            }
            self.fire_timers(now);
            let sleep_ns = if cfg.busy_poll {
                0
            } else {
                self.sleep_ns(now, sending, &pacer, started)
            };
            self.receive(sleep_ns)?;
            turn += 1;
            if source == Source::Scenario && turn.is_multiple_of(16) {
                shared.progress[self.id as usize].publish(&self.stats);
            }
            if !sending && self.outstanding() == 0 {
                break;
            }
            // Belt and braces: the timeout FIFO empties the slots, but never wait past it.
            if !sending
                && now.saturating_sub(send_end_ns) > cfg.timeout.as_nanos() as u64 + 1_000_000_000
            {
                break;
            }
        }
        self.stats.conns = self.transport.conn_stats();
        if source == Source::Scenario {
            shared.progress[self.id as usize].publish(&self.stats);
        }
        Ok(std::mem::replace(&mut self.stats, Stats::new()))
    }

    fn all_cursors_done(&self) -> bool {
        (0..self.transport.channels()).all(|s| self.cursors[s] >= self.users_on_socket(s))
    }

    /// How long the loop may sleep in epoll: 0 while there is sending to do right away.
    fn sleep_ns(&self, now: u64, sending: bool, pacer: &Pacer, started: u64) -> u64 {
        let mut wake = now + SLEEP_NS_MAX;
        if sending && self.outstanding() < pacer.window {
            let Some(next_due) = pacer.next_due_ns(started) else {
                return 0;
            };
            wake = wake.min(next_due);
        }
        if let Some(deadline) = self.timers.next_deadline_ns() {
            wake = wake.min(deadline);
        }
        let ns = wake.saturating_sub(now);
        if ns < SPIN_NS { 0 } else { ns }
    }

    fn users_on_socket(&self, s: usize) -> u64 {
        let n = self.users.len() as u64;
        let socks = self.transport.channels() as u64;
        n.saturating_sub(s as u64).div_ceil(socks)
    }

    /// Picks the next non-busy user of socket `s`: (local index, pass over the socket's users).
    fn pick_user(&mut self, s: usize, one_pass: bool) -> Option<(u32, u32)> {
        let per_socket = self.users_on_socket(s);
        if per_socket == 0 {
            return None;
        }
        for _ in 0..BUSY_SKIP_MAX {
            let k = self.cursors[s];
            if one_pass && k >= per_socket {
                return None;
            }
            self.cursors[s] += 1;
            let local = s as u64 + (k % per_socket) * self.transport.channels() as u64;
            if self.users[local as usize] & USER_BUSY == 0 {
                return Some((local as u32, (k / per_socket) as u32));
            }
        }
        None
    }

    fn global_user(&self, local: u32) -> u32 {
        local * self.workers + self.id
    }

    /// Decides the next request on socket `s` (op, user, CSeq…), or `None` if no user is free.
    fn next_request(&mut self, s: usize, source: Source) -> Option<(Spec, Option<u32>, bool)> {
        let cfg = &self.shared.cfg;
        let op = match (source, cfg.scenario) {
            (Source::Prime, _) => Op::Register,
            (_, Scenario::Register | Scenario::Storm) => Op::Register,
            // Same Call-ID, CSeq one higher each time, as a phone refreshing (RFC 3261 §10.2.4).
            (_, Scenario::Refresh | Scenario::Auth) => Op::Refresh,
            (_, Scenario::Unregister) => Op::Unregister,
            (_, Scenario::Fetch) => Op::Fetch,
            (_, Scenario::Invite) => Op::Invite,
            (_, Scenario::Mixed) => {
                self.mix_pos += 1;
                cfg.mix[self.mix_pos % cfg.mix.len()]
            }
        };
        let port = self.transport.port(s);
        let base = Spec {
            op,
            user: 0,
            generation: 0,
            cseq: 1,
            worker: self.id,
            slot: 0,
            seq: 0,
            port,
        };
        // Brand-new users beyond the user table: storm, and the register share of a mix.
        let fresh =
            source == Source::Scenario && matches!(cfg.scenario, Scenario::Storm | Scenario::Mixed);
        if fresh && op == Op::Register {
            let k = self.fresh_next;
            self.fresh_next += 1;
            let user = u64::from(cfg.users) + k * u64::from(self.workers) + u64::from(self.id);
            let user = u32::try_from(user).ok()?;
            return Some((Spec { user, ..base }, None, false));
        }
        let (local, pass) = self.pick_user(s, source == Source::Prime)?;
        let user = self.global_user(local);
        let state = self.users[local as usize];
        let registered = source == Source::Scenario && state & USER_UNREGISTERED == 0;
        match op {
            Op::Register => {
                self.users[local as usize] = 1 | USER_BUSY;
                Some((
                    Spec {
                        user,
                        generation: pass,
                        ..base
                    },
                    Some(local),
                    registered,
                ))
            }
            Op::Refresh | Op::Unregister | Op::Fetch => {
                let cseq = (state & USER_CSEQ_MASK) + 1;
                if cseq > USER_CSEQ_MASK {
                    return None; // 2^30 refreshes of one user: out of CSeq space (RFC 3261 §8.1.1.5)
                }
                self.users[local as usize] = cseq | USER_BUSY | (state & USER_UNREGISTERED);
                Some((Spec { user, cseq, ..base }, Some(local), registered))
            }
            Op::Invite => {
                self.invites = self.invites.wrapping_add(1);
                Some((
                    Spec {
                        user,
                        generation: self.invites,
                        ..base
                    },
                    None,
                    registered,
                ))
            }
        }
    }

    /// Builds and sends up to `want` new requests on socket `s`; returns how many were started.
    fn send_batch(
        &mut self,
        s: usize,
        want: usize,
        source: Source,
        started: u64,
        intended: &dyn Fn(u64) -> u64,
        now: u64,
    ) -> usize {
        let shared = self.shared.clone();
        let mut n = 0;
        while n < want {
            let Some(slot) = self.free.last().copied() else {
                break;
            };
            let Some((mut spec, local, registered)) = self.next_request(s, source) else {
                break;
            };
            self.free.pop();
            let auth = self.auth_step(local);
            let entry = &mut self.slots[slot as usize];
            entry.seq = entry.seq.wrapping_add(1);
            spec.slot = slot;
            spec.seq = entry.seq;
            *entry = Slot {
                seq: entry.seq,
                in_flight: true,
                quiet: false,
                registered,
                local,
                spec,
                intended_ns: intended(started + n as u64),
                auth,
            };
            let mut line = [0u8; AUTH_LINE_BYTES_MAX];
            let auth_line = self.auth_line(slot, &mut line);
            let len =
                request::write_request(self.send.buf_mut(n), &shared.identity, &spec, auth_line)
                    .expect("flags are validated so that every request fits REQUEST_BYTES_MAX");
            self.send.set_len(n, len);
            let timeout_ns = shared.cfg.timeout.as_nanos() as u64;
            self.timers
                .arm(slot, spec.seq, now, shared.cfg.retransmit, timeout_ns);
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        let done = self.transport.send(s, &mut self.send, n);
        self.stats.send_errors += (n - done) as u64;
        self.stats.sent += n as u64;
        n
    }

    fn slot_live(&self, t: &Timer) -> bool {
        let s = &self.slots[t.slot as usize];
        s.in_flight && s.seq == t.seq
    }

    /// Retransmits (Timer E) and times out whatever is due. Deadlines of requests
    /// answered meanwhile are dropped here.
    fn fire_timers(&mut self, now: u64) {
        let shared = self.shared.clone();
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Retransmit { timer: t, step } => {
                    if !self.slot_live(&t) || self.slots[t.slot as usize].quiet {
                        continue;
                    }
                    let spec = self.slots[t.slot as usize].spec;
                    let mut line = [0u8; AUTH_LINE_BYTES_MAX];
                    let auth_line = self.auth_line(t.slot, &mut line);
                    if let Some(len) = request::write_request(
                        &mut self.scratch,
                        &shared.identity,
                        &spec,
                        auth_line,
                    ) {
                        let ch = self.transport.channel_of_port(spec.port);
                        if self.transport.send_one(ch, &self.scratch[..len]) {
                            self.stats.retransmissions += 1;
                        } else {
                            self.stats.send_errors += 1;
                        }
                    }
                    self.timers.rearm(t, step, now);
                }
                Due::GiveUp(t) => {
                    if self.slot_live(&t) {
                        self.stats.timeouts += 1;
                        self.release(t.slot, false);
                    }
                }
            }
        }
    }

    /// The step a new request of `--scenario auth` starts at (with `--auth-reuse-nonce`, a
    /// kept nonce skips the 401), counting its nonce use.
    fn auth_step(&mut self, local: Option<u32>) -> AuthStep {
        if self.shared.cfg.scenario != Scenario::Auth {
            return AuthStep::Off;
        }
        let reuse = self.shared.cfg.auth_reuse_nonce;
        match local.and_then(|l| self.nonces.get_mut(l as usize)) {
            Some(c) if reuse && c.valid => {
                c.nc = c.nc.wrapping_add(1);
                self.stats.auth_cached += 1;
                AuthStep::Cached
            }
            _ => AuthStep::Bare,
        }
    }

    /// The `Authorization` line of the request in `slot`, rebuilt from the user's kept
    /// challenge (so a retransmission is byte-identical), or `None` without credentials.
    fn auth_line<'o>(&self, slot: u32, out: &'o mut [u8; AUTH_LINE_BYTES_MAX]) -> Option<&'o [u8]> {
        let s = &self.slots[slot as usize];
        if !matches!(s.auth, AuthStep::Cached | AuthStep::Answer) {
            return None;
        }
        let cached = self.nonces.get(s.local? as usize).filter(|c| c.valid)?;
        let id = &self.shared.identity;
        let mut user = [0u8; 64];
        let user = fmt_into(&mut user, |w| {
            w.put(id.user_prefix.as_bytes()).num(s.spec.user.into());
        })?;
        let mut uri = [0u8; 160];
        let uri = fmt_into(&mut uri, |w| {
            w.put(b"sip:").put(id.domain.as_bytes());
        })?;
        // Stable per request, so retransmissions carry the same cnonce.
        let mut cnonce = [0u8; 24];
        let cnonce = fmt_into(&mut cnonce, |w| {
            w.hex(id.nonce.into(), 8)
                .hex(s.spec.user.into(), 8)
                .hex(s.spec.cseq.into(), 8);
        })?;
        let answer = Answer {
            username: user,
            password: self.shared.cfg.password.as_bytes(),
            method: s.spec.op.method(),
            uri,
            nc: cached.nc,
            cnonce,
        };
        let n = digest::write_authorization(&cached.challenge(&self.realm), &answer, out)?;
        out.get(..n)
    }

    /// Answers the 401 to the request in `slot`: keeps the challenge, and queues the same
    /// REGISTER with credentials, CSeq+1 and a new branch (RFC 3261 §22.2) as entry `k` of
    /// the ack batch. False when the challenge cannot be answered (then the 401 is a
    /// failure).
    fn answer_challenge(
        &mut self,
        slot: u32,
        kept: Cached,
        realm: &[u8],
        stale: bool,
        now: u64,
        k: usize,
    ) -> bool {
        let Some(local) = self.slots[slot as usize].local else {
            return false;
        };
        self.nonces[local as usize] = kept;
        if self.realm != realm {
            self.realm.clear();
            self.realm.extend_from_slice(realm);
        }
        let cseq = self.slots[slot as usize].spec.cseq + 1;
        let state = self.users[local as usize];
        if cseq > USER_CSEQ_MASK {
            return false;
        }
        self.users[local as usize] = cseq | (state & !USER_CSEQ_MASK);
        self.nonces[local as usize].nc = 1;
        self.stats.auth_challenges += 1;
        self.stats.auth_stale += u64::from(stale);
        let entry = &mut self.slots[slot as usize];
        entry.seq = entry.seq.wrapping_add(1);
        entry.spec.seq = entry.seq;
        entry.spec.cseq = cseq;
        entry.auth = AuthStep::Answer;
        entry.quiet = false;
        let (spec, seq) = (entry.spec, entry.seq);
        let mut line = [0u8; AUTH_LINE_BYTES_MAX];
        let auth_line = self.auth_line(slot, &mut line);
        let shared = self.shared.clone();
        let Some(len) =
            request::write_request(self.ack.buf_mut(k), &shared.identity, &spec, auth_line)
        else {
            return false;
        };
        self.ack.set_len(k, len);
        let timeout_ns = shared.cfg.timeout.as_nanos() as u64;
        self.timers
            .arm(slot, seq, now, shared.cfg.retransmit, timeout_ns);
        true
    }

    /// Frees a slot and its user; `success` tells whether the REGISTER took effect.
    fn release(&mut self, slot: u32, success: bool) {
        let s = &mut self.slots[slot as usize];
        debug_assert!(s.in_flight);
        s.in_flight = false;
        if let Some(local) = s.local {
            // A failed exchange forgets the nonce: the next REGISTER starts from a 401.
            if !success && let Some(c) = self.nonces.get_mut(local as usize) {
                c.valid = false;
            }
            let state = &mut self.users[local as usize];
            *state &= !USER_BUSY;
            if success {
                match s.spec.op {
                    Op::Unregister => *state |= USER_UNREGISTERED,
                    Op::Register | Op::Refresh => *state &= !USER_UNREGISTERED,
                    Op::Fetch | Op::Invite => {}
                }
            }
        }
        self.free.push(slot);
    }

    fn receive(&mut self, sleep_ns: u64) -> io::Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        self.transport.wait(sleep_ns, &mut ready)?;
        for &ch in &ready {
            for _ in 0..RECV_ROUNDS_MAX {
                let got = match self.transport.recv(ch) {
                    Ok(got) => got,
                    // ECONNREFUSED: an ICMP port unreachable from a UDP target that is not
                    // (yet) listening; the requests will time out and be counted.
                    Err(_) => {
                        self.stats.send_errors += 1;
                        break;
                    }
                };
                let now = self.now_ns();
                let mut acks = 0;
                for i in 0..got.messages {
                    self.on_datagram(i, now, &mut acks);
                }
                if acks > 0 {
                    // ACKs and answers to 401s share the batch; each is counted when
                    // queued (acks, auth_challenges).
                    let sent = self.transport.send(ch, &mut self.ack, acks);
                    self.stats.send_errors += (acks - sent) as u64;
                }
                if got.drained {
                    break;
                }
            }
        }
        self.ready = ready;
        Ok(())
    }

    /// Matches received message `i` to its slot and validates it.
    fn on_datagram(&mut self, i: usize, now: u64, acks: &mut usize) {
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        let msg = self.transport.message(i);
        let r = match response::parse(msg) {
            Ok(r) => r,
            Err(_) => {
                self.stats.parse_errors += 1;
                return;
            }
        };
        let Some(key) = request::parse_branch(r.branch, shared.identity.nonce) else {
            self.stats.stray += 1;
            return;
        };
        if key.worker != self.id || key.slot as usize >= self.slots.len() {
            self.stats.stray += 1;
            return;
        }
        let slot = self.slots[key.slot as usize];
        if !slot.in_flight || slot.seq != key.seq {
            self.stats.late += 1;
            return;
        }
        let spec = slot.spec;
        if r.cseq != spec.cseq
            || r.cseq_method != spec.op.method()
            || request::call_id_user(r.call_id) != Some(spec.user)
        {
            self.stats.stray += 1;
            return;
        }
        if r.status == 401
            && matches!(slot.auth, AuthStep::Bare | AuthStep::Cached)
            && *acks < self.ack.capacity()
        {
            // Copied out of the receive buffer (on the stack) before the worker changes.
            let mut kept = Cached::default();
            let mut realm = [0u8; REALM_BYTES_MAX];
            let picked = digest::pick(r.challenges(), cfg.auth_algorithm).and_then(|c| {
                let dst = realm.get_mut(..c.realm.len())?;
                dst.copy_from_slice(c.realm);
                kept.store(&c).then_some((c.realm.len(), c.stale))
            });
            if let Some((realm_len, stale)) = picked
                && self.answer_challenge(key.slot, kept, &realm[..realm_len], stale, now, *acks)
            {
                *acks += 1;
                return;
            }
            // A challenge we cannot answer ends the exchange: a failed 401.
            self.stats.answered += 1;
            self.stats.status[401] += 1;
            let latency_us = now.saturating_sub(slot.intended_ns) / 1000;
            let _ = self.stats.latency_us.record(latency_us.max(1));
            let ok = cfg.expect == Expect::Status(401);
            if ok {
                self.stats.ok += 1;
            } else {
                self.stats.unexpected_status += 1;
            }
            self.release(key.slot, false);
            return;
        }
        if (100..200).contains(&r.status) {
            self.stats.provisional += 1;
            if spec.op == Op::Invite {
                // RFC 3261 §17.1.1.2: a provisional response stops Timer A.
                self.slots[key.slot as usize].quiet = true;
            }
            return;
        }
        self.stats.answered += 1;
        self.stats.status[usize::from(r.status)] += 1;
        let latency_us = now.saturating_sub(slot.intended_ns) / 1000;
        let _ = self.stats.latency_us.record(latency_us.max(1));
        let status_ok = match cfg.expect {
            Expect::Echo => r.status == 0,
            Expect::Status(code) => r.status == code,
            Expect::Scenario => {
                r.status == spec.op.expected_status()
                    || (spec.op == Op::Invite && !slot.registered && matches!(r.status, 404 | 480))
            }
        };
        let bindings_ok = !status_ok
            || r.status == 0
            || match cfg.expect_bindings {
                Some(n) => r.contacts == n,
                None => match spec.op {
                    Op::Register | Op::Refresh => r.contacts >= 1,
                    Op::Fetch => !slot.registered || r.contacts >= 1,
                    Op::Invite => r.status != 302 || r.contacts >= 1,
                    Op::Unregister => true,
                },
            };
        if !status_ok {
            self.stats.unexpected_status += 1;
        } else if !bindings_ok {
            self.stats.bindings_mismatch += 1;
        } else {
            self.stats.ok += 1;
        }
        if spec.op == Op::Invite
            && r.status >= 300
            && *acks < self.ack.capacity()
            && let Some(len) =
                request::write_ack(self.ack.buf_mut(*acks), &shared.identity, &spec, r.to)
        {
            self.ack.set_len(*acks, len);
            *acks += 1;
            self.stats.acks += 1;
        }
        self.release(key.slot, status_ok && bindings_ok);
    }
}
