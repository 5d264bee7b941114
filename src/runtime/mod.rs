//! The thin glommio shell around the sans-IO registrar: pinned executors, SO_REUSEPORT
//! sockets, batched datagram I/O, the shard mesh, timers, signals and statistics.
//!
//! Nothing here decides anything about SIP. The runtime moves bytes between the
//! kernel and [`Registrar`](crate::registrar::Registrar)s, and feeds them the clock.
//!
//! ```text
//!   main thread: Config -> bind sockets -> spawn cores -> wait "ready" -> stats / signals
//!   core i (pinned, one glommio LocalExecutor, one Registrar shard), each turn:
//!     receive  recvmmsg(socket[i][l]) -> a batch of (bytes, Source)
//!              TCP (if any listener): epoll -> accept, read, frame -> one batch
//!              mesh inbox -> the requests other cores forwarded here, as one batch
//!     decide   registrar.prepare each (parse, owner = shard_for(hash, n)), warm the
//!              batch, registrar.answer each in order -> Action
//!     act      Reply: queue on socket[i][l] (or hold it until the journal is durable,
//!                     or cross the mesh to the core holding the connection)
//!              Forward: the owner's mesh inbox (bounded; full: drop and count)
//!              Dropped: count
//!     commit   drain the registrar's journal to the store writer; release held replies
//!     send     sendmmsg per socket; ring the doorbells of cores forwarded to
//!     timers   handle_timeout when due (at least every TIMER_TICK_MS)
//!     nothing to do: park in ppoll (socket readable | doorbell eventfd | deadline)
//! ```
//!
//! A reply leaves from the owner's own socket for the listen address the request
//! reached, so it comes from the address and port the client sent to.
//!
//! Files: `shard` (the per-core loop and the one path every request takes), `udp`
//! (the core's sockets and send batches), `tcp` (its TCP listeners and connections:
//! accept, read and frame, write queues, timeouts), `park` (how an idle core sleeps: one
//! `ppoll` on its sockets, its epoll set of connections and its doorbell eventfd), `journal` (the durability hold queue),
//! `socket` (binding, buffer sizes), `mmsg` (recvmmsg/sendmmsg), `mesh` (cross-core
//! requests and replies, doorbells, buffer pool), `steer` (loading the receive-steering
//! program), `stats` (counters and the summary line). `unsafe` exists only in
//! `socket.rs`, `mmsg.rs`, `park.rs` and `steer.rs`, each block with a `// SAFETY:`
//! comment.
#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod control;
#[cfg(test)]
mod forward_cost;
mod journal;
mod mesh;
mod mmsg;
mod park;
mod redis;
mod reload;
mod shard;
mod socket;
mod stats;
pub mod steer;
mod tcp;
mod udp;

pub(crate) use redis::CommitFailure as RedisCommitFailure;
pub(crate) use socket::socket_drops;
pub(crate) use stats::LATENCY_BUCKETS_US;

/// TLS handshake failure reasons, in counter order (`sipreg_tls_handshake_failures`).
pub(crate) const TLS_HANDSHAKE_FAILURES: [&str; stats::TLS_FAILURE_REASONS] = {
    let a = tcp::HandshakeFailure::ALL;
    [
        a[0].name(),
        a[1].name(),
        a[2].name(),
        a[3].name(),
        a[4].name(),
    ]
};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use glommio::{LocalExecutorBuilder, Placement};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub use crate::sip::limits::DATAGRAM_BYTES_MAX;
pub use mesh::{FORWARD_BUFFERS_PER_CORE_MAX, MESH_CHANNEL_DEPTH, shard_for};

use crate::config::{Config, format_cpu_list};
use mesh::MeshShared;
use stats::SharedCounters;

/// Memory glommio reserves per executor for io_uring buffers, in bytes. We do no
/// file I/O (only one-byte readiness peeks), so the 64 KiB floor would do; 256 KiB
/// leaves room and keeps N cores far below a default 8 MiB `ulimit -l`.
pub const IO_MEMORY_BYTES: usize = 256 * 1024;

/// How long start-up waits for every executor to report ready, in seconds.
pub const STARTUP_TIMEOUT_S: u64 = 10;

/// Exit status when a second SIGTERM/SIGINT arrives during a graceful stop.
const FORCED_EXIT_STATUS: i32 = 1;

/// A server whose SIP sockets are bound, whose signal handlers are installed and
/// whose management channels exist, but whose cores do not run yet.
///
/// Why two steps ([`start`], then [`Starting::serve`]): the services around the cores
/// (the management API, issue 7) need the cores' command channels and the bound
/// addresses, and must run before the store is loaded (`/healthz` answers during
/// start-up). The caller starts them in between, so the runtime hands them what they
/// need instead of knowing them (see `crate::server`).
pub struct Starting {
    config: Config,
    signals: Signals,
    bound: socket::Bound,
    tcp: tcp::Bound,
    tls: tcp::Bound,
    tls_server: Option<tcp::TlsShared>,
    seed: u64,
    shared: Arc<MeshShared>,
    ends: Vec<mesh::MeshEnd>,
    control: control::ControlHandle,
    control_ends: Vec<control::ControlEnd>,
}

impl std::fmt::Debug for Starting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starting")
            .field("local", &self.bound.local)
            .field("shards", &self.ends.len())
            .finish_non_exhaustive()
    }
}

/// Install the signal handlers, bind every core's sockets and build the mesh and the
/// management channels. Fails before anything serves if a socket cannot be bound.
pub fn start(config: Config) -> anyhow::Result<Starting> {
    let stop = Arc::new(AtomicBool::new(false));
    // Signals first, so that a SIGTERM during start-up is a graceful stop too. Each
    // signal runs, in registration order: the iterator's action (wakes the signal
    // thread, which stops the cores), "exit now if a signal was already seen", and
    // "a signal was seen". So the first signal stops gracefully and a second one
    // exits at once, and no signal is ever caught without being recorded. `seen` is
    // separate from `stop` because the signal thread may set `stop` before the
    // conditional action of the same signal runs.
    let signals = Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(
            signal,
            FORCED_EXIT_STATUS,
            Arc::clone(&seen),
        )
        .context("installing signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&seen))
            .context("installing signal handlers")?;
    }

    let shards = config.shards();
    let bound = socket::bind_all(
        &config.listen,
        shards,
        config.socket_rcvbuf_bytes,
        config.socket_sndbuf_bytes,
    )?;
    let tcp = tcp::bind_all(&config.tcp_listen, shards)?;
    let tls = tcp::bind_all_as("tls", &config.tls_listen, shards)?;
    let tls_server = config.tls.as_ref().map(tcp::tls_server).transpose()?;
    log_start(&config, &bound, &tcp, &tls);
    // Receive steering (issue 13): every socket is bound, in core order, before any core
    // starts; attach now, before the first datagram is read.
    steer::start(config.steering, shards, &bound.sockets);

    let seed = config.seed.unwrap_or_else(seed_from_clock);
    let (shared, ends) = mesh::build(shards, Arc::clone(&stop), thread::current())
        .context("cannot create the cores' doorbells (eventfd)")?;
    let (control, control_ends) = control::build(shards, Arc::clone(&shared));
    Ok(Starting {
        config,
        signals,
        bound,
        tcp,
        tls,
        tls_server,
        seed,
        shared,
        ends,
        control,
        control_ends,
    })
}

impl Starting {
    /// The validated configuration this server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The SIP addresses actually bound (port 0 resolved), one per `--listen`.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.bound.local
    }

    /// The TCP addresses actually bound (port 0 resolved), one per `--listen tcp:`.
    pub fn tcp_local_addrs(&self) -> &[SocketAddr] {
        &self.tcp.local
    }

    /// The TLS addresses actually bound (port 0 resolved), one per `--listen tls:`.
    pub fn tls_local_addrs(&self) -> &[SocketAddr] {
        &self.tls.local
    }

    /// The management side of the cores: send them commands, see whether they are
    /// ready, notice a stop.
    pub(crate) fn control(&self) -> &control::ControlHandle {
        &self.control
    }

    /// Load the store, start the cores and serve until SIGTERM/SIGINT; then stop
    /// receiving, answer what is in flight, and return. It must run on the thread
    /// that called [`start`] (the cores wake it). Whatever the outcome, a stop is
    /// requested before it returns, so the services started beside it end too.
    pub fn serve(self) -> anyhow::Result<()> {
        let shared = Arc::clone(&self.shared);
        let result = self.serve_until_stopped();
        shared.request_stop();
        result
    }

    fn serve_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            config,
            mut signals,
            bound,
            tcp,
            tls,
            tls_server,
            seed,
            shared,
            ends,
            control,
            control_ends,
        } = self;
        let tls_reload = tls_server.as_ref().map(|t| Arc::clone(&t.server));
        let shards = config.shards();
        let load_started = Instant::now();
        let (mut journals, mut restores, writers, loaded) = match &config.persist {
            Some(persist) => open_store(persist, shards, &shared)?,
            None => (Vec::new(), Vec::new(), Vec::new(), 0),
        };
        let counters: Vec<Arc<SharedCounters>> = (0..shards)
            .map(|_| Arc::new(SharedCounters::default()))
            .collect();

        let subscriber_cell = Arc::new(reload::SubscriberCell::default());
        let (reload_handle, reload_thread) = reload::spawn(
            config.auth_file.clone(),
            Arc::clone(&subscriber_cell),
            tls_reload,
        )
        .context("installing the SIGHUP handler")?;

        let signal_handle = signals.handle();
        let signal_thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("sipreg-signals".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        tracing::info!(signal, "stopping: finishing what is in flight");
                        shared.request_stop();
                    }
                })
                .context("spawning the signal thread")?
        };

        let (ready_tx, ready_rx) =
            crossbeam_channel::bounded::<(usize, Result<(), String>)>(shards);
        let mut cores: Vec<JoinHandle<()>> = Vec::with_capacity(shards);
        let mut tcp_listeners = tcp.listeners.into_iter();
        let mut tls_listeners = tls.listeners.into_iter();
        for (((index, sockets), end), control) in bound
            .sockets
            .into_iter()
            .enumerate()
            .zip(ends)
            .zip(control_ends)
        {
            let cpu = config.cpus.get(index).copied().unwrap_or(0);
            let setup = shard::CoreSetup {
                shards,
                sockets,
                tcp_listeners: tcp_listeners.next().unwrap_or_default(),
                tcp: config.tcp,
                tls_listeners: tls_listeners.next().unwrap_or_default(),
                tls: tls_server.clone(),
                registrar: config.registrar_config(index, seed),
                recv_batch: config.recv_batch,
                spin_before_park_us: config.spin_before_park_us,
                redis: config.redis.clone(),
                subscribers: Arc::clone(&subscriber_cell),
                mesh: end,
                counters: Arc::clone(&counters[index]),
                control,
                journal: journals.get_mut(index).and_then(Option::take),
                restore: restores
                    .get_mut(index)
                    .map(std::mem::take)
                    .unwrap_or_default(),
            };
            let core_ready = ready_tx.clone();
            let core_shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("sipreg-core-{index}"))
                .spawn(move || run_core(index, cpu, setup, core_ready, &core_shared));
            match spawned {
                Ok(handle) => cores.push(handle),
                Err(e) => {
                    shared.core_stopped_receiving(index);
                    let _ = ready_tx.send((
                        index,
                        Err(format!("core {index}: cannot spawn its thread: {e}")),
                    ));
                }
            }
        }
        drop(ready_tx);

        let started = wait_ready(&ready_rx, shards);
        let result = match started {
            Ok(()) => {
                control.set_ready();
                if let Some(persist) = &config.persist {
                    tracing::info!(
                        "loaded {loaded} bindings in {} ms from {} ({:?} durability, commit interval {} ms)",
                        load_started.elapsed().as_millis(),
                        persist.data_dir.display(),
                        persist.durability,
                        persist.commit_interval_ms
                    );
                }
                tracing::info!(
                    "ready: {shards} cores answering on {}",
                    listen_list(&bound.local, &tcp.local, &tls.local)
                );
                if !tcp.local.is_empty() {
                    tracing::info!(
                        "TCP per core: {} connections max, {} B read buffer, idle {} s, header {} ms",
                        config.tcp.connections_max,
                        config.tcp.read_buffer_bytes,
                        config.tcp.idle_timeout_ms / 1000,
                        config.tcp.header_timeout_ms
                    );
                }
                if let Some(t) = &config.tls {
                    tracing::info!(
                        "TLS per core: {} handshakes max, handshake timeout {} ms, client \
                         certificate {}",
                        t.handshakes_max,
                        t.handshake_timeout_ms,
                        t.client_ca.as_ref().map_or_else(
                            || "not asked".to_string(),
                            |ca| format!("required ({})", ca.display())
                        )
                    );
                }
                supervise(&config, &shared, &cores, &counters)
            }
            Err(e) => {
                shared.request_stop();
                Err(e)
            }
        };

        let mut panicked = 0;
        for core in cores {
            if core.join().is_err() {
                panicked += 1;
            }
        }
        // Every core dropped its writer handle: each writer syncs what it has and exits.
        for writer in writers {
            let _ = writer.join();
        }
        signal_handle.close();
        let _ = signal_thread.join();
        reload_handle.close();
        let _ = reload_thread.join();
        let totals = stats::total(&counters);
        if result.is_ok() {
            tracing::info!(
                "stopped: {} datagrams received, {} TCP messages, {} requests, {} replies sent, {} forwarded, {} dropped",
                totals.received,
                totals.tcp_messages,
                totals.registrar.requests,
                totals.sent,
                totals.forwarded_out,
                totals.drops()
            );
        }
        result?;
        if panicked > 0 {
            bail!("{panicked} core(s) stopped with a panic (see above)");
        }
        Ok(())
    }
}

/// Per-shard journal ends, per-shard restore buffers, writer threads, bindings loaded.
type OpenedStore = (
    Vec<Option<journal::JournalSetup>>,
    Vec<Vec<u8>>,
    Vec<JoinHandle<()>>,
    usize,
);

/// Load the data directory into `shards` shards (compacting it) and start one
/// writer thread per shard. Fails, naming the path, on an unwritable directory or a
/// store of another format version.
fn open_store(
    persist: &crate::store::PersistConfig,
    shards: usize,
    mesh: &Arc<MeshShared>,
) -> anyhow::Result<OpenedStore> {
    use crate::store::{Durability, load, segment, writer};
    let loaded = load::load(&persist.data_dir, shards, shard::wall_clock_ms(), |key| {
        shard_for(crate::registrar::aor_hash(key), shards)
    })?;
    if loaded.expired > 0 || loaded.cut_bytes > 0 {
        tracing::info!(
            "store: {} expired bindings dropped, {} corrupt bytes cut",
            loaded.expired,
            loaded.cut_bytes
        );
    }
    let mut journals = Vec::with_capacity(shards);
    let mut writers = Vec::with_capacity(shards);
    for index in 0..shards {
        let mesh = Arc::clone(mesh);
        let (handle, thread) = writer::spawn(
            segment::shard_dir(&persist.data_dir, index),
            index,
            loaded.generation,
            Duration::from_millis(persist.commit_interval_ms),
            Box::new(move || mesh.ring(index)),
        )?;
        journals.push(Some(journal::JournalSetup {
            writer: handle,
            sync: persist.durability == Durability::Sync,
            compact_min_bytes: persist.compact_min_bytes,
        }));
        writers.push(thread);
    }
    Ok((journals, loaded.shards, writers, loaded.bindings))
}

/// The body of one core thread: build the pinned executor and run the shard on it.
fn run_core(
    index: usize,
    cpu: usize,
    setup: shard::CoreSetup,
    ready_tx: crossbeam_channel::Sender<(usize, Result<(), String>)>,
    shared: &MeshShared,
) {
    // Whatever happens below (including a panic), this core counts as stopped once
    // it returns, so that the others can finish draining and exit.
    struct Stopped<'a>(&'a MeshShared, usize);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.core_stopped_receiving(self.1);
        }
    }
    let _stopped = Stopped(shared, index);

    // `--spin-before-park-us` is the core loop's own (`park`): the loop sleeps in its
    // own `ppoll`, never in glommio's reactor.
    let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("sipreg-core-{index}"))
        .io_memory(IO_MEMORY_BYTES);
    let executor = builder.make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(e) => {
            let _ = ready_tx.send((
                index,
                Err(describe_executor_error(index, cpu, &e.to_string())),
            ));
            return;
        }
    };
    executor.run(shard::run(setup, |result| {
        if result.is_ok() {
            tracing::info!("core {index} up on CPU {cpu}");
        }
        let _ = ready_tx.send((index, result));
    }));
}

fn describe_executor_error(index: usize, cpu: usize, error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    // glommio reports `MemLockLimit(have/needed)` when RLIMIT_MEMLOCK is below what
    // its io_uring setup pins (512 KiB in 0.9).
    let hint = if lower.contains("memlock") || lower.contains("cannot allocate memory") {
        "; the locked-memory limit is too low: raise it with `ulimit -l 1024` (KiB) or more, or \
         LimitMEMLOCK= in the systemd unit"
    } else {
        ""
    };
    format!("core {index} (CPU {cpu}): cannot start its glommio executor: {error}{hint}")
}

/// Wait until every core said ready; the first failure (or a timeout) is the error.
fn wait_ready(
    ready: &crossbeam_channel::Receiver<(usize, Result<(), String>)>,
    shards: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(STARTUP_TIMEOUT_S);
    let mut up = vec![false; shards];
    while up.iter().any(|u| !u) {
        match ready.recv_deadline(deadline) {
            Ok((index, Ok(()))) => {
                if let Some(flag) = up.get_mut(index) {
                    *flag = true;
                }
            }
            Ok((_, Err(message))) => bail!(message),
            Err(_) => {
                let missing: Vec<usize> = (0..shards)
                    .filter(|&i| !up.get(i).copied().unwrap_or(true))
                    .collect();
                bail!("cores {missing:?} did not start within {STARTUP_TIMEOUT_S} s");
            }
        }
    }
    Ok(())
}

/// The main thread while serving: print statistics, notice a stop or a dead core.
fn supervise(
    config: &Config,
    shared: &MeshShared,
    cores: &[JoinHandle<()>],
    counters: &[Arc<SharedCounters>],
) -> anyhow::Result<()> {
    let interval =
        (config.stats_interval_s > 0).then(|| Duration::from_secs(config.stats_interval_s));
    let mut last = Instant::now();
    let mut before = stats::total(counters);
    let ports: Vec<u16> = config.listen.iter().map(|a| a.port()).collect();
    let mut socket_drops_before = socket_drops(&ports);
    loop {
        if shared.stop_requested() {
            return Ok(());
        }
        if cores.iter().any(JoinHandle::is_finished) {
            shared.request_stop();
            bail!("a core stopped unexpectedly");
        }
        let Some(interval) = interval else {
            thread::park_timeout(Duration::from_secs(3600));
            continue;
        };
        let now = Instant::now();
        let due = last + interval;
        if now < due {
            thread::park_timeout(due - now);
            continue;
        }
        let totals = stats::total(counters);
        tracing::info!(
            "{}",
            stats::summary(&before, &totals, now.duration_since(last).as_secs_f64())
        );
        // Overload: anything dropped or refused for capacity since the last line.
        let socket_drops = socket_drops(&ports);
        let overload = (
            totals.mesh_full.saturating_sub(before.mesh_full),
            totals
                .registrar
                .unavailable
                .saturating_sub(before.registrar.unavailable),
            socket_drops
                .zip(socket_drops_before)
                .map_or(0, |(now, then)| now.saturating_sub(then)),
        );
        if overload != (0, 0, 0) {
            tracing::warn!(
                mesh_drops = overload.0,
                answered_503 = overload.1,
                socket_receive_drops = overload.2,
                "overload in the last {} s: cross-core channel drops, 503 answers or kernel receive-buffer drops",
                now.duration_since(last).as_secs()
            );
        }
        socket_drops_before = socket_drops;
        before = totals;
        last = now;
    }
}

fn log_start(config: &Config, bound: &socket::Bound, tcp: &tcp::Bound, tls: &tcp::Bound) {
    let r = &config.registrar;
    tracing::info!(
        "sipreg {} starting: listen {}, {} cores (CPUs {}), expires min/default/max {}/{}/{} s ({:?} below min), \
         max contacts {} ({:?}), jitter {}%, timer J {} ms, txn cache {} per shard, max bindings {} total \
         ({} per shard), recv batch {}, rcvbuf {} B, sndbuf {} B",
        env!("CARGO_PKG_VERSION"),
        listen_list(&bound.local, &tcp.local, &tls.local),
        config.shards(),
        format_cpu_list(&config.cpus),
        r.min_expires_s,
        r.default_expires_s,
        r.max_expires_s,
        r.min_expires_policy,
        if r.max_contacts == 0 {
            "unlimited".to_string()
        } else {
            r.max_contacts.to_string()
        },
        r.max_contacts_policy,
        r.expires_jitter_percent,
        r.timer_j_ms,
        r.txn_cache_max,
        config.max_bindings_total,
        r.max_bindings,
        config.recv_batch,
        bound.sizes.rcvbuf_bytes,
        bound.sizes.sndbuf_bytes,
    );
    if r.domains.is_empty() {
        tracing::info!("no --domain given: serving any domain");
    } else {
        tracing::info!("serving domains: {}", r.domains.join(", "));
    }
    match &r.auth {
        Some(auth) => tracing::info!(
            "digest authentication on: {} subscribers, algorithms {:?}, nonce lifetime {} ms",
            auth.subscribers.len(),
            auth.algorithms,
            auth.nonce_lifetime_ms
        ),
        None => tracing::info!("no --auth-file given: REGISTER is not authenticated"),
    }
    if bound.sizes.rcvbuf_bytes < config.socket_rcvbuf_bytes {
        tracing::warn!(
            "--socket-rcvbuf {} B was clamped by the kernel to {} B: raise net.core.rmem_max",
            config.socket_rcvbuf_bytes,
            bound.sizes.rcvbuf_bytes
        );
    }
    if bound.sizes.sndbuf_bytes < config.socket_sndbuf_bytes {
        tracing::warn!(
            "--socket-sndbuf {} B was clamped by the kernel to {} B: raise net.core.wmem_max",
            config.socket_sndbuf_bytes,
            bound.sizes.sndbuf_bytes
        );
    }
}

/// The listen addresses as `--listen` takes them: UDP ones bare, TCP ones `tcp:`, TLS
/// ones `tls:`.
fn listen_list(udp: &[SocketAddr], tcp: &[SocketAddr], tls: &[SocketAddr]) -> String {
    let tcp = tcp.iter().map(|a| format!("tcp:{a}"));
    let tls = tls.iter().map(|a| format!("tls:{a}"));
    udp.iter()
        .map(ToString::to_string)
        .chain(tcp)
        .chain(tls)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A seed when `--seed` is not given: the clock and the pid, mixed.
fn seed_from_clock() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ u64::from(std::process::id()).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
