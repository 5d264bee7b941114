//! Command-line flags and their validation, in two stages (the ripgrep habit).
//!
//! 1. [`Args`] mirrors the flags as typed by the operator. clap fills it and nothing
//!    else happens: no syscalls, no cross-flag checks. Every field's doc line is its
//!    `--help` text and names the unit and the default.
//! 2. [`Config`] is built from `Args` by [`Config::try_from`]: it resolves the CPU set
//!    against the host, checks every relationship between flags (min ≤ default ≤ max,
//!    …) and fills the per-shard [`RegistrarConfig`]. It fails with a [`ConfigError`]
//!    that names the offending flag, *before* any executor or socket exists, so a typo
//!    never leaves half a server running.
//!
//! Defaults follow what OpenSIPS/Kamailio operators expect from their `registrar`
//! module: `min_expires` 60 s, `max_expires` 3600 s, `default_expires` 3600 s, no
//! per-AOR contact limit.

use std::fmt;
use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

mod cpus;
pub mod nat;
pub mod tcp;
pub mod tls;
pub use cpus::available_cpus;

use crate::auth::{ALGORITHMS_MAX, Algorithm, subscriber_file};
use crate::registrar::{
    AuthConfig, LocationMode, MaxContactsPolicy, MinExpiresPolicy, RegistrarConfig,
};
use crate::store::{Durability, PersistConfig};

/// Largest `--recv-batch`: the `recvmmsg` vector length per core (`UIO_MAXIOV` is
/// 1024; past a few hundred the batch no longer amortises anything).
pub const RECV_BATCH_MAX: usize = 256;

/// Longest nonce lifetime, in seconds (a day).
pub const NONCE_LIFETIME_S_MAX: u64 = 86_400;

/// 32 bytes from the kernel's CSPRNG, for the nonce HMAC key.
fn random_secret() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

/// `sha256,md5` → algorithms in that order; unknown, repeated or too many → error.
fn parse_algorithms(raw: &str) -> Result<Vec<Algorithm>, ConfigError> {
    let mut out = Vec::new();
    for token in raw.split(',').map(str::trim) {
        let algorithm = match token.to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Algorithm::Sha256,
            "md5" => Algorithm::Md5,
            other => {
                return Err(ConfigError::new(
                    "--auth-algorithms",
                    format!("unknown algorithm {other:?} (use sha256 and/or md5)"),
                ));
            }
        };
        if out.contains(&algorithm) {
            return Err(ConfigError::new(
                "--auth-algorithms",
                format!("{token} named twice"),
            ));
        }
        out.push(algorithm);
    }
    if out.is_empty() || out.len() > ALGORITHMS_MAX {
        return Err(ConfigError::new(
            "--auth-algorithms",
            "name one or two of sha256, md5",
        ));
    }
    Ok(out)
}

/// Longest spin before an idle core parks, in microseconds.
pub const SPIN_BEFORE_PARK_US_MAX: u64 = 10_000;
/// Largest `--expires-jitter`, in percent: more would make refresh timing useless.
pub const EXPIRES_JITTER_PERCENT_MAX: u8 = 50;
/// Largest `--socket-rcvbuf`/`--socket-sndbuf`, in bytes (the kernel takes an `int`).
pub const SOCKET_BUFFER_BYTES_MAX: usize = 1 << 30;
/// Largest `--max-expires`, in seconds (a day more than a week: nothing legitimate
/// registers for longer, and it keeps `now_ms + expires` far from overflow).
pub const EXPIRES_S_MAX: u32 = 8 * 24 * 3600;
/// Largest `--timer-j-ms` (RFC 3261 §17.2.2: 64*T1 = 32 s; allow ten times that).
pub const TIMER_J_MS_MAX: u64 = 320_000;
/// Largest number of executors (one per CPU); a shard index must fit the `u16`
/// carried across the mesh.
pub const CORES_MAX: usize = 1024;
/// Largest `--listen` count: the local socket index travels as a `u16`.
pub const LISTEN_ADDRS_MAX: usize = 64;

/// Raw command-line flags (stage one: no syscalls, no cross-flag checks).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sipreg",
    version,
    about = "A thread-per-core SIP registrar (RFC 3261 §10)"
)]
pub struct Args {
    /// Address and port to listen on, UDP unless prefixed `tcp:` or `tls:`, e.g.
    /// 0.0.0.0:5060, [::]:5060, udp:0.0.0.0:5060, tcp:0.0.0.0:5060 or tls:0.0.0.0:5061;
    /// repeat for several. Every core binds each one with SO_REUSEPORT.
    /// [default: 0.0.0.0:5060]
    #[arg(long = "listen", value_name = "[udp:|tcp:|tls:]ADDR:PORT")]
    pub listen: Vec<String>,

    /// SIP domain served (host part of the AOR); repeat for several. None: serve any
    /// domain. [default: none]
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domain: Vec<String>,

    /// Number of cores (one pinned executor and one shard each).
    /// [default: every CPU this process may run on]
    #[arg(long, value_name = "N", conflicts_with = "cpus")]
    pub cores: Option<usize>,

    /// Exact CPUs to run on, e.g. 0-3,8 (one pinned executor per CPU).
    /// [default: every CPU this process may run on]
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,

    /// Smallest expiry granted, in seconds (RFC 3261 §10.3 step 7).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub min_expires: u32,

    /// Largest expiry granted, in seconds; longer requests are shortened to it.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub max_expires: u32,

    /// Expiry when a REGISTER names none, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub default_expires: u32,

    /// What to do with an expiry below --min-expires: reject (423 Interval Too Brief
    /// with Min-Expires, as RFC 3261 says) or clamp (raise it to the minimum).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = MinExpiresPolicyArg::Reject)]
    pub min_expires_policy: MinExpiresPolicyArg,

    /// Most bindings per AOR; 0 means unlimited.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_contacts: u32,

    /// What to do past --max-contacts: reject (503 with Retry-After) or evict-oldest
    /// (drop the oldest bindings to make room).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = MaxContactsPolicyArg::Reject)]
    pub max_contacts_policy: MaxContactsPolicyArg,

    /// Downward jitter applied to granted expiries, in percent (0..=50), to spread
    /// refresh storms after a mass re-registration.
    #[arg(long, value_name = "PERCENT", default_value_t = 0)]
    pub expires_jitter: u8,

    /// Timer J: how long a final response is kept to answer retransmissions, in
    /// milliseconds (RFC 3261 §17.2.2: 64*T1).
    #[arg(long, value_name = "MS", default_value_t = 32_000)]
    pub timer_j_ms: u64,

    /// Most cached transactions per shard (per core); the oldest are evicted first.
    #[arg(long, value_name = "N", default_value_t = 262_144)]
    pub txn_cache_max: usize,

    /// Most bindings in total, over all shards; each shard holds at most its share
    /// (rounded up) and answers 503 past it.
    #[arg(long, value_name = "N", default_value_t = 4_000_000)]
    pub max_bindings: usize,

    /// Bindings to allocate room for at start, in total over all shards (at most
    /// --max-bindings): a shard that fills up to its share never grows (and rehashes)
    /// its location table under load. 0 grows on demand.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub prealloc_bindings: usize,

    /// Datagrams received per recvmmsg call, per core (1..=256).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub recv_batch: usize,

    /// Receive buffer per socket, in bytes (SO_RCVBUF; a warning says when the kernel
    /// clamps it: raise net.core.rmem_max).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub socket_rcvbuf: usize,

    /// Send buffer per socket, in bytes (SO_SNDBUF; a warning says when the kernel
    /// clamps it: raise net.core.wmem_max).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub socket_sndbuf: usize,

    /// Interval between statistics lines at info level, in seconds; 0 turns them off.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub stats_interval: u64,

    /// How long an idle core spins before it parks, in microseconds (0..=10000): lower
    /// latency at moderate load for CPU burnt while waiting. 0: park at once.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 0)]
    pub spin_before_park_us: u64,

    /// Seed for To-tags and expiry jitter. [default: from the clock at start]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Subscriber file: turns digest authentication of REGISTER on (RFC 3261 §22). One
    /// subscriber per line, `user@domain password` or `user@domain md5=<HA1 hex>
    /// sha256=<HA1 hex>`; `#` starts a comment. Reloaded on SIGHUP. [default: off]
    #[arg(long, value_name = "PATH")]
    pub auth_file: Option<std::path::PathBuf>,

    /// Digest algorithms offered, one WWW-Authenticate each, in this order (RFC 8760
    /// asks for SHA-256 first; `md5` alone serves phones that read only the first).
    #[arg(long, value_name = "LIST", default_value = "sha256,md5")]
    pub auth_algorithms: String,

    /// How long a nonce is accepted, in seconds; an older one gets 401 with stale=true.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub nonce_lifetime: u64,

    /// Where the location table is persisted: one `shard-<i>` folder per core.
    #[arg(long, value_name = "PATH", default_value = "sipreg-data")]
    pub data_dir: std::path::PathBuf,

    /// Keep bindings in memory only (lost on restart).
    #[arg(long, conflicts_with_all = ["durability", "commit_interval_ms"])]
    pub no_persist: bool,

    /// `async`: answer at once, the change is durable within --commit-interval-ms (a
    /// crash of the machine loses at most that interval). `sync`: answer a REGISTER
    /// only once its change is on disk.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DurabilityArg::Async)]
    pub durability: DurabilityArg,

    /// Group commit: at most one fdatasync per core this often, in ms; 0 starts the next
    /// commit as soon as the previous one is done (what sync mode wants: replies wait for
    /// it). [default: 10 with async, 0 with sync]
    #[arg(long, value_name = "MS")]
    pub commit_interval_ms: Option<u64>,

    /// Online compaction: a core rewrites its log as a snapshot (and deletes the older
    /// segments) once the log exceeds 4 × its live size and at least this, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::store::compact::COMPACT_MIN_BYTES)]
    pub compact_min_bytes: u64,

    /// Log level.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    // ---- operations (issue 7) ----
    /// Management API and /metrics (HTTP/1.1, JSON), on ADDR:PORT or `off`. Binds
    /// loopback by default: it has no authentication, so expose it only to a trusted
    /// network.
    #[arg(long, value_name = "ADDR:PORT|off", default_value = "127.0.0.1:9060")]
    pub admin: String,

    /// Log line format: `plain` text or one JSON object per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// Receive steering (issue 13): `ebpf` attaches a program to each SO_REUSEPORT
    /// group that hands every datagram to the socket of the core owning its AOR (falls
    /// back to `hash`, with a warning, when the kernel refuses it); `hash` keeps the
    /// kernel's 4-tuple hash and forwards over the mesh. Moot with one core.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Steering::Ebpf)]
    pub steering: Steering,

    /// Where the bindings live: `memory` (each core's table, with its log under
    /// --data-dir) or `redis` (a Redis Cluster several sipreg nodes share; needs
    /// --redis-seed).
    #[arg(long, value_enum, value_name = "BACKEND", default_value_t = LocationArg::Memory)]
    pub location: LocationArg,

    /// A Redis Cluster node to learn the slot map from, HOST:PORT (repeatable; the
    /// first that answers is used).
    #[arg(long = "redis-seed", value_name = "HOST:PORT")]
    pub redis_seeds: Vec<String>,

    /// How long a REGISTER waits for Redis before it is answered 503, in ms
    /// (1..=60000).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,

    /// Replicas that must hold a new binding or a removal before its 200 (Redis
    /// `WAIT`; 0..=16, 0 = off: replication stays asynchronous and a failover can lose
    /// what was acknowledged just before it). Refreshes never wait.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub redis_wait: u32,

    /// How long `WAIT` waits for those replicas before the REGISTER gets 503, in ms
    /// (1..=60000, and below --redis-timeout-ms).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub redis_wait_timeout_ms: u64,

    /// This node's name in the shared location: stored with each binding reachable
    /// only through one of its connections (RFC 5626 flow), so other nodes know who
    /// holds it. 1..=64 of A-Z a-z 0-9 . _ : - [default: the first --listen address]
    #[arg(long = "node-id", value_name = "NAME")]
    pub node_id: Option<String>,

    // ---- TCP (RFC 3261 §18) ----
    /// Open TCP connections per core; at the cap a new one is accepted and closed at
    /// once (counted).
    #[arg(long, value_name = "N", default_value_t = tcp::TCP_CONNECTIONS_MAX_DEFAULT)]
    pub tcp_connections_max: usize,

    /// Read buffer per TCP connection, in bytes (1024..=16384): also the largest
    /// message a connection may carry (513 and close past it).
    #[arg(long, value_name = "BYTES", default_value_t = tcp::TCP_READ_BUFFER_BYTES_MAX)]
    pub tcp_read_buffer_bytes: usize,

    /// A TCP connection with no traffic for this long is closed, in seconds.
    /// [default: --max-expires + 300]
    #[arg(long, value_name = "SECONDS")]
    pub tcp_idle_timeout_s: Option<u64>,

    /// A message begun on a TCP connection but not complete for this long closes the
    /// connection (slow senders), in ms (50..=600000).
    #[arg(long, value_name = "MS", default_value_t = tcp::TCP_HEADER_TIMEOUT_MS_DEFAULT)]
    pub tcp_header_timeout_ms: u64,

    /// Messages taken off one TCP or TLS connection per second (1..=1000000); past it
    /// the connection is not read until the second is over (counted).
    #[arg(long, value_name = "N", default_value_t = tcp::TCP_MESSAGES_PER_S_DEFAULT)]
    pub tcp_messages_per_s: u32,

    // ---- TLS (RFC 3261 §26.2.1); the TCP limits apply to TLS connections too ----
    /// The server's certificate chain (PEM, leaf first); required with a `tls:` listener.
    /// Read again on SIGHUP (a bad new file keeps the current one).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM); required with a `tls:` listener, read again
    /// on SIGHUP.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA certificates (PEM) a client certificate must chain to: turns mutual TLS on (a
    /// client without a valid certificate fails the handshake); read again on SIGHUP.
    /// [default: none, no client certificate asked]
    #[arg(long, value_name = "PEM")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// TLS handshakes in progress per core (1..=65536); past it a new TLS connection is
    /// accepted and closed at once (counted).
    #[arg(long, value_name = "N", default_value_t = tls::TLS_HANDSHAKES_MAX_DEFAULT)]
    pub tls_handshakes_max: usize,

    /// A TLS handshake not done after this long closes its connection (counted), in ms
    /// (50..=60000).
    #[arg(long, value_name = "MS", default_value_t = tls::TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT)]
    pub tls_handshake_timeout_ms: u64,

    // ---- NAT (issue 17) ----
    #[command(flatten)]
    pub nat: nat::NatArgs,
}

/// `--location` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocationArg {
    /// Each core's own table (and its log).
    Memory,
    /// A shared Redis Cluster.
    Redis,
}

/// Longest `--redis-timeout-ms`.
pub const REDIS_TIMEOUT_MS_MAX: u64 = 60_000;

/// The shared location backend, when `--location redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Seed nodes, HOST:PORT, in flag order.
    pub seeds: Vec<String>,
    /// How long a commit waits for its reply, in ms.
    pub timeout_ms: u64,
    /// Replicas `WAIT` asks for after a commit that adds or removes a binding; 0 = off.
    pub wait_replicas: u32,
    /// `WAIT`'s timeout, in ms (below `timeout_ms`).
    pub wait_timeout_ms: u64,
    /// `--node-id`: this node's name in flow tokens.
    pub node_id: String,
}

/// Longest `--node-id`, in bytes.
pub const NODE_ID_BYTES_MAX: usize = 64;

/// `--node-id`, checked: 1..=[`NODE_ID_BYTES_MAX`] bytes of `A-Z a-z 0-9 . _ : -` (no
/// `/`: it separates the parts of a stored flow token).
fn check_node_id(id: &str) -> Result<String, ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= NODE_ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ConfigError::new(
            "--node-id",
            format!("'{id}' is not 1..={NODE_ID_BYTES_MAX} characters of A-Z a-z 0-9 . _ : -"),
        ))
    }
}

/// `--steering` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Steering {
    /// The eBPF steering program (owner core's socket, by AOR).
    Ebpf,
    /// The kernel's 4-tuple hash; requests owned elsewhere cross the mesh.
    Hash,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Plain,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Parse `--admin`: `off` disables the API.
fn parse_admin(value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        ConfigError::new(
            "--admin",
            format!("`{value}` is not ADDR:PORT (e.g. 127.0.0.1:9060) or `off`"),
        )
    })
}

/// `--durability` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Answer at once; durable within the commit interval.
    Async,
    /// Answer once durable.
    Sync,
}

/// `--commit-interval-ms` in async mode when not given, in ms.
pub const COMMIT_INTERVAL_MS_ASYNC_DEFAULT: u64 = 10;

/// Largest `--commit-interval-ms`, in ms.
pub const COMMIT_INTERVAL_MS_MAX: u64 = 10_000;

/// `--min-expires-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MinExpiresPolicyArg {
    /// 423 Interval Too Brief with Min-Expires.
    Reject,
    /// Raise the expiry to the minimum.
    Clamp,
}

/// `--max-contacts-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MaxContactsPolicyArg {
    /// 503 with Retry-After.
    Reject,
    /// Remove the oldest bindings.
    EvictOldest,
}

/// `--log-level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Start-up line, statistics, warnings, errors.
    Info,
    /// Diagnostics.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The matching `tracing` level.
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            Self::Error => tracing::Level::ERROR,
            Self::Warn => tracing::Level::WARN,
            Self::Info => tracing::Level::INFO,
            Self::Debug => tracing::Level::DEBUG,
            Self::Trace => tracing::Level::TRACE,
        }
    }
}

/// The validated configuration (stage two).
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP addresses every core listens on, in `--listen` order (the index is
    /// `Source::listen` of a datagram).
    pub listen: Vec<SocketAddr>,
    /// TCP addresses every core listens on, in `--listen` order (the index is
    /// `Source::listen` of a message on a connection).
    pub tcp_listen: Vec<SocketAddr>,
    /// TCP limits (per core).
    pub tcp: tcp::TcpConfig,
    /// TLS addresses every core listens on, in `--listen` order (the index is
    /// `Source::listen` of a message on a TLS connection).
    pub tls_listen: Vec<SocketAddr>,
    /// The TLS settings; `None` without a `tls:` listener.
    pub tls: Option<tls::TlsConfig>,
    /// One executor per entry, pinned to that CPU; shard `i` runs on `cpus[i]`.
    pub cpus: Vec<usize>,
    /// The registrar settings shared by every shard (the seed is varied per shard by
    /// [`Config::registrar_config`]); `max_bindings` is already the per-shard share.
    pub registrar: RegistrarConfig,
    /// `--max-bindings` as given: the total over all shards.
    pub max_bindings_total: usize,
    /// Datagrams per `recvmmsg`.
    pub recv_batch: usize,
    /// Requested SO_RCVBUF, in bytes.
    pub socket_rcvbuf_bytes: usize,
    /// Requested SO_SNDBUF, in bytes.
    pub socket_sndbuf_bytes: usize,
    /// Seconds between statistics lines; 0: none.
    pub stats_interval_s: u64,
    /// Spin before parking an idle core, in microseconds; 0: none.
    pub spin_before_park_us: u64,
    /// Seed given with `--seed`, if any (the runtime picks one otherwise).
    pub seed: Option<u64>,
    /// The subscriber file, when authentication is on (read again on SIGHUP).
    pub auth_file: Option<std::path::PathBuf>,
    /// Digest algorithms offered, in order.
    pub auth_algorithms: Vec<Algorithm>,
    /// Nonce lifetime, in ms.
    pub nonce_lifetime_ms: u64,
    /// Persistence of the location table; `None` with `--no-persist`.
    pub persist: Option<PersistConfig>,
    /// Log level.
    pub log_level: LogLevel,
    /// Where the management API listens; None: off.
    pub admin: Option<SocketAddr>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Receive steering asked for (the runtime may fall back to `Hash`).
    pub steering: Steering,
    /// The shared location backend; `None`: memory.
    pub redis: Option<RedisConfig>,
}

/// A flag that cannot be used: names the flag and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag at fault, with its dashes (`--min-expires`).
    pub flag: &'static str,
    /// What is wrong and, where possible, the fix.
    pub reason: String,
}

impl ConfigError {
    fn new(flag: &'static str, reason: impl Into<String>) -> Self {
        Self {
            flag,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    /// Validate `args` against this host's CPUs (the one syscall of this stage).
    fn try_from(args: Args) -> Result<Self, ConfigError> {
        let host = available_cpus().map_err(|e| {
            ConfigError::new("--cores", format!("cannot list the CPUs of this host: {e}"))
        })?;
        let mut config = Self::resolve(args, &host)?;
        if let Some(path) = &config.auth_file {
            let subscribers = subscriber_file::load(path)
                .map_err(|e| ConfigError::new("--auth-file", e.to_string()))?;
            let secret = random_secret().map_err(|e| {
                ConfigError::new(
                    "--auth-file",
                    format!("no randomness for the nonce secret: {e}"),
                )
            })?;
            config.registrar.auth = Some(AuthConfig {
                subscribers: std::sync::Arc::new(subscribers),
                secret,
                algorithms: config.auth_algorithms.clone(),
                nonce_lifetime_ms: config.nonce_lifetime_ms,
            });
        }
        Ok(config)
    }
}

impl Config {
    /// Validate `args` given the CPUs this process may run on, in preference order
    /// (`--cores N` takes the first N). Pure: this is what the unit tests drive.
    pub fn resolve(args: Args, host_cpus: &[usize]) -> Result<Self, ConfigError> {
        let tcp::Listens {
            udp: listen,
            tcp: tcp_listen,
            tls: tls_listen,
        } = tcp::parse_listens(&args.listen)?;
        let cpus = resolve_cpus(args.cores, args.cpus.as_deref(), host_cpus)?;
        let domains = parse_domains(&args.domain)?;
        check_expires(args.min_expires, args.default_expires, args.max_expires)?;
        let tcp = tcp::resolve(
            args.tcp_connections_max,
            args.tcp_read_buffer_bytes,
            args.tcp_idle_timeout_s,
            args.tcp_header_timeout_ms,
            args.tcp_messages_per_s,
            args.max_expires,
        )?;
        let tls = tls::resolve(
            tls_listen.len(),
            args.tls_cert.clone(),
            args.tls_key.clone(),
            args.tls_client_ca.clone(),
            args.tls_handshakes_max,
            args.tls_handshake_timeout_ms,
        )?;
        if args.expires_jitter > EXPIRES_JITTER_PERCENT_MAX {
            return Err(ConfigError::new(
                "--expires-jitter",
                format!(
                    "{}% is more than the {EXPIRES_JITTER_PERCENT_MAX}% allowed",
                    args.expires_jitter
                ),
            ));
        }
        if args.timer_j_ms == 0 || args.timer_j_ms > TIMER_J_MS_MAX {
            return Err(ConfigError::new(
                "--timer-j-ms",
                format!(
                    "must be 1..={TIMER_J_MS_MAX} ms (RFC 3261 uses 32000), got {}",
                    args.timer_j_ms
                ),
            ));
        }
        if args.txn_cache_max == 0 {
            return Err(ConfigError::new("--txn-cache-max", "must be at least 1"));
        }
        if args.max_bindings == 0 {
            return Err(ConfigError::new("--max-bindings", "must be at least 1"));
        }
        if args.prealloc_bindings > args.max_bindings {
            return Err(ConfigError::new(
                "--prealloc-bindings",
                format!(
                    "must be at most --max-bindings ({}), got {}",
                    args.max_bindings, args.prealloc_bindings
                ),
            ));
        }
        if args.recv_batch == 0 || args.recv_batch > RECV_BATCH_MAX {
            return Err(ConfigError::new(
                "--recv-batch",
                format!("must be 1..={RECV_BATCH_MAX}, got {}", args.recv_batch),
            ));
        }
        if args.spin_before_park_us > SPIN_BEFORE_PARK_US_MAX {
            return Err(ConfigError::new(
                "--spin-before-park-us",
                format!(
                    "must be 0..={SPIN_BEFORE_PARK_US_MAX}, got {}",
                    args.spin_before_park_us
                ),
            ));
        }
        let auth_algorithms = parse_algorithms(&args.auth_algorithms)?;
        if args.nonce_lifetime == 0 || args.nonce_lifetime > NONCE_LIFETIME_S_MAX {
            return Err(ConfigError::new(
                "--nonce-lifetime",
                format!(
                    "must be 1..={NONCE_LIFETIME_S_MAX} seconds, got {}",
                    args.nonce_lifetime
                ),
            ));
        }
        check_buffer("--socket-rcvbuf", args.socket_rcvbuf)?;
        check_buffer("--socket-sndbuf", args.socket_sndbuf)?;

        let commit_interval_ms = args.commit_interval_ms.unwrap_or(match args.durability {
            DurabilityArg::Async => COMMIT_INTERVAL_MS_ASYNC_DEFAULT,
            DurabilityArg::Sync => 0,
        });
        if commit_interval_ms > COMMIT_INTERVAL_MS_MAX {
            return Err(ConfigError::new(
                "--commit-interval-ms",
                format!(
                    "must be 0..={COMMIT_INTERVAL_MS_MAX} ms, got {}",
                    commit_interval_ms
                ),
            ));
        }
        if args.compact_min_bytes == 0
            || args.compact_min_bytes > crate::store::compact::COMPACT_MIN_BYTES_MAX
        {
            return Err(ConfigError::new(
                "--compact-min-bytes",
                format!(
                    "must be 1..={} bytes, got {}",
                    crate::store::compact::COMPACT_MIN_BYTES_MAX,
                    args.compact_min_bytes
                ),
            ));
        }
        let persist = (!args.no_persist).then(|| PersistConfig {
            data_dir: args.data_dir.clone(),
            durability: match args.durability {
                DurabilityArg::Async => Durability::Async,
                DurabilityArg::Sync => Durability::Sync,
            },
            commit_interval_ms,
            compact_min_bytes: args.compact_min_bytes,
        });

        let redis = match args.location {
            LocationArg::Memory => None,
            LocationArg::Redis => {
                if args.redis_seeds.is_empty() {
                    return Err(ConfigError::new(
                        "--redis-seed",
                        "--location redis needs at least one --redis-seed HOST:PORT",
                    ));
                }
                if let Some(bad) = args.redis_seeds.iter().find(|s| {
                    s.rsplit_once(':')
                        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                }) {
                    return Err(ConfigError::new(
                        "--redis-seed",
                        format!("'{bad}' is not HOST:PORT"),
                    ));
                }
                if args.redis_timeout_ms == 0 || args.redis_timeout_ms > REDIS_TIMEOUT_MS_MAX {
                    return Err(ConfigError::new(
                        "--redis-timeout-ms",
                        format!(
                            "{} is not in 1..={REDIS_TIMEOUT_MS_MAX}",
                            args.redis_timeout_ms
                        ),
                    ));
                }
                if args.redis_wait > crate::redis::wait::WAIT_REPLICAS_MAX {
                    return Err(ConfigError::new(
                        "--redis-wait",
                        format!(
                            "{} is not in 0..={}",
                            args.redis_wait,
                            crate::redis::wait::WAIT_REPLICAS_MAX
                        ),
                    ));
                }
                // WAIT 0 blocks forever in Redis; and a WAIT that outlasts the commit's
                // own timeout would be answered as a timeout, not as too few replicas.
                if args.redis_wait_timeout_ms == 0
                    || args.redis_wait_timeout_ms >= args.redis_timeout_ms
                {
                    return Err(ConfigError::new(
                        "--redis-wait-timeout-ms",
                        format!(
                            "{} is not in 1..{} (below --redis-timeout-ms)",
                            args.redis_wait_timeout_ms, args.redis_timeout_ms
                        ),
                    ));
                }
                let node_id = match &args.node_id {
                    Some(id) => check_node_id(id)?,
                    None => listen
                        .first()
                        .or(tcp_listen.first())
                        .map_or_else(|| "sipreg".to_owned(), ToString::to_string),
                };
                Some(RedisConfig {
                    seeds: args.redis_seeds.clone(),
                    timeout_ms: args.redis_timeout_ms,
                    wait_replicas: args.redis_wait,
                    wait_timeout_ms: args.redis_wait_timeout_ms,
                    node_id,
                })
            }
        };
        let shards = cpus.len();
        let nat = nat::resolve(&args.nat)?;
        if nat.ping_interval_ms > 0 && redis.is_some() {
            return Err(ConfigError::new(
                "--nat-ping-interval",
                "keep-alive pings need --location memory (with redis the bindings live in \
                 the cluster, where no core owns them to ping)"
                    .to_string(),
            ));
        }
        let registrar = RegistrarConfig {
            domains,
            min_expires_s: args.min_expires,
            max_expires_s: args.max_expires,
            default_expires_s: args.default_expires,
            min_expires_policy: match args.min_expires_policy {
                MinExpiresPolicyArg::Reject => MinExpiresPolicy::Reject,
                MinExpiresPolicyArg::Clamp => MinExpiresPolicy::Clamp,
            },
            max_contacts: args.max_contacts,
            max_contacts_policy: match args.max_contacts_policy {
                MaxContactsPolicyArg::Reject => MaxContactsPolicy::Reject,
                MaxContactsPolicyArg::EvictOldest => MaxContactsPolicy::EvictOldest,
            },
            expires_jitter_percent: args.expires_jitter,
            timer_j_ms: args.timer_j_ms,
            txn_cache_max: args.txn_cache_max,
            max_bindings: args.max_bindings.div_ceil(shards),
            prealloc_bindings: args.prealloc_bindings.div_ceil(shards),
            seed: args.seed.unwrap_or(0),
            journal: persist.is_some() && redis.is_none(),
            location: if redis.is_some() {
                LocationMode::Shared
            } else {
                LocationMode::Memory
            },
            nat,
            ..RegistrarConfig::default()
        };
        Ok(Self {
            listen,
            tcp_listen,
            tcp,
            tls_listen,
            tls,
            cpus,
            registrar,
            max_bindings_total: args.max_bindings,
            recv_batch: args.recv_batch,
            socket_rcvbuf_bytes: args.socket_rcvbuf,
            socket_sndbuf_bytes: args.socket_sndbuf,
            stats_interval_s: args.stats_interval,
            spin_before_park_us: args.spin_before_park_us,
            seed: args.seed,
            auth_file: args.auth_file,
            auth_algorithms,
            nonce_lifetime_ms: args.nonce_lifetime * 1000,
            persist,
            log_level: args.log_level,
            admin: parse_admin(&args.admin)?,
            log_format: args.log_format,
            steering: args.steering,
            redis,
        })
    }

    /// Number of shards (= executors = cores).
    pub fn shards(&self) -> usize {
        self.cpus.len()
    }

    /// The registrar settings for `shard`, with the run's `seed` mixed with the shard
    /// index so that shards never generate the same To-tags.
    pub fn registrar_config(&self, shard: usize, seed: u64) -> RegistrarConfig {
        let mut config = self.registrar.clone();
        config.seed = seed ^ (shard as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        config
    }
}

fn parse_domains(raw: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for text in raw {
        let domain = text.trim().to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !valid {
            return Err(ConfigError::new(
                "--domain",
                format!("'{text}' is not a host name or address"),
            ));
        }
        if !out.contains(&domain) {
            out.push(domain);
        }
    }
    Ok(out)
}

fn check_expires(min_s: u32, default_s: u32, max_s: u32) -> Result<(), ConfigError> {
    if max_s > EXPIRES_S_MAX {
        return Err(ConfigError::new(
            "--max-expires",
            format!("{max_s} s is more than the {EXPIRES_S_MAX} s allowed"),
        ));
    }
    if min_s == 0 {
        return Err(ConfigError::new("--min-expires", "must be at least 1 s"));
    }
    if min_s > max_s {
        return Err(ConfigError::new(
            "--min-expires",
            format!("{min_s} s is more than --max-expires ({max_s} s)"),
        ));
    }
    if default_s < min_s || default_s > max_s {
        return Err(ConfigError::new(
            "--default-expires",
            format!("{default_s} s is outside --min-expires..=--max-expires ({min_s}..={max_s} s)"),
        ));
    }
    Ok(())
}

fn check_buffer(flag: &'static str, bytes: usize) -> Result<(), ConfigError> {
    if bytes == 0 || bytes > SOCKET_BUFFER_BYTES_MAX {
        return Err(ConfigError::new(
            flag,
            format!("must be 1..={SOCKET_BUFFER_BYTES_MAX} bytes, got {bytes}"),
        ));
    }
    Ok(())
}

fn resolve_cpus(
    cores: Option<usize>,
    cpus: Option<&str>,
    host_cpus: &[usize],
) -> Result<Vec<usize>, ConfigError> {
    if host_cpus.is_empty() {
        return Err(ConfigError::new(
            "--cores",
            "this host reports no usable CPU",
        ));
    }
    match (cores, cpus) {
        (Some(_), Some(_)) => Err(ConfigError::new("--cores", "cannot be used with --cpus")),
        (Some(0), None) => Err(ConfigError::new("--cores", "must be at least 1")),
        (Some(n), None) if n > host_cpus.len() || n > CORES_MAX => Err(ConfigError::new(
            "--cores",
            format!(
                "too few cores: asked for {n} but only {} CPUs are available to this process",
                host_cpus.len().min(CORES_MAX)
            ),
        )),
        (Some(n), None) => Ok(host_cpus.get(..n).unwrap_or(host_cpus).to_vec()),
        (None, Some(list)) => {
            let list = parse_cpu_list(list).map_err(|reason| ConfigError::new("--cpus", reason))?;
            if list.len() > CORES_MAX {
                return Err(ConfigError::new(
                    "--cpus",
                    format!("at most {CORES_MAX} CPUs"),
                ));
            }
            if let Some(missing) = list.iter().find(|cpu| !host_cpus.contains(cpu)) {
                return Err(ConfigError::new(
                    "--cpus",
                    format!(
                        "CPU {missing} is not available to this process (available: {})",
                        format_cpu_list(host_cpus)
                    ),
                ));
            }
            Ok(list)
        }
        (None, None) => Ok(host_cpus.get(..CORES_MAX).unwrap_or(host_cpus).to_vec()),
    }
}

/// Parse a Linux CPU list (`0-3,8,10-11`) into CPU ids, in the order given, without
/// duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.trim().split(',') {
        let part = part.trim();
        let bad = || format!("'{part}' is not a CPU number or range (e.g. 0-3,8)");
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim().parse::<usize>().map_err(|_| bad())?,
            ),
            None => {
                let cpu = part.parse::<usize>().map_err(|_| bad())?;
                (cpu, cpu)
            }
        };
        if first > last || last - first >= CORES_MAX * 4 {
            return Err(bad());
        }
        for cpu in first..=last {
            if !out.contains(&cpu) {
                out.push(cpu);
            }
        }
    }
    Ok(out)
}

/// Format CPU ids as a compact list (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&start) = sorted.get(i) {
        let mut end = start;
        while sorted.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &[usize] = &[0, 1, 2, 3];

    fn args(flags: &[&str]) -> Args {
        let mut argv = vec!["sipreg"];
        argv.extend_from_slice(flags);
        Args::try_parse_from(argv).unwrap()
    }

    fn config(flags: &[&str]) -> Result<Config, ConfigError> {
        Config::resolve(args(flags), HOST)
    }

    fn rejected(flags: &[&str]) -> ConfigError {
        config(flags).unwrap_err()
    }

    #[test]
    fn commit_interval_follows_the_durability_mode() {
        let interval = |flags: &[&str]| config(flags).unwrap().persist.unwrap().commit_interval_ms;
        assert_eq!(interval(&[]), COMMIT_INTERVAL_MS_ASYNC_DEFAULT);
        assert_eq!(interval(&["--durability", "sync"]), 0);
        assert_eq!(
            interval(&["--durability", "sync", "--commit-interval-ms", "2"]),
            2
        );
        assert_eq!(
            rejected(&["--commit-interval-ms", "10001"]).flag,
            "--commit-interval-ms"
        );
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(
            c.listen,
            vec!["0.0.0.0:5060".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.cpus, HOST);
        assert!(c.registrar.domains.is_empty());
        assert_eq!(
            (
                c.registrar.min_expires_s,
                c.registrar.default_expires_s,
                c.registrar.max_expires_s
            ),
            (60, 3600, 3600)
        );
        assert_eq!(c.registrar.min_expires_policy, MinExpiresPolicy::Reject);
        assert_eq!(c.registrar.max_contacts, 0);
        assert_eq!(c.registrar.max_contacts_policy, MaxContactsPolicy::Reject);
        assert_eq!(c.registrar.expires_jitter_percent, 0);
        assert_eq!(c.registrar.timer_j_ms, 32_000);
        assert_eq!(c.registrar.txn_cache_max, 262_144);
        assert_eq!(c.max_bindings_total, 4_000_000);
        assert_eq!(c.registrar.max_bindings, 1_000_000);
        assert_eq!(c.recv_batch, 32);
        assert_eq!(c.socket_rcvbuf_bytes, 4 << 20);
        assert_eq!(c.socket_sndbuf_bytes, 1 << 20);
        assert_eq!(c.stats_interval_s, 10);
        assert_eq!(c.spin_before_park_us, 0);
        assert_eq!(c.seed, None);
        assert_eq!(c.log_level, LogLevel::Info);
    }

    #[test]
    fn tcp_listen_and_limits_reach_the_config() {
        let c = config(&[
            "--listen",
            "tcp:127.0.0.1:5080",
            "--tcp-connections-max",
            "7",
            "--tcp-read-buffer-bytes",
            "2048",
            "--tcp-header-timeout-ms",
            "300",
            "--max-expires",
            "7200",
        ])
        .unwrap();
        assert!(c.listen.is_empty(), "no UDP address given");
        assert_eq!(c.tcp_listen.len(), 1);
        assert_eq!(
            (
                c.tcp.connections_max,
                c.tcp.read_buffer_bytes,
                c.tcp.header_timeout_ms
            ),
            (7, 2048, 300)
        );
        assert_eq!(
            c.tcp.idle_timeout_ms,
            (7200 + tcp::TCP_IDLE_MARGIN_S) * 1000,
            "the idle timeout outlasts the longest registration"
        );
        assert_eq!(
            rejected(&["--tcp-read-buffer-bytes", "100"]).flag,
            "--tcp-read-buffer-bytes"
        );
        assert_eq!(config(&[]).unwrap().tcp_listen, Vec::<SocketAddr>::new());
    }

    #[test]
    fn listen_repeatable_ipv6_and_rejections() {
        let c = config(&["--listen", "127.0.0.1:5080", "--listen", "[::1]:5080"]).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert!(c.listen[1].is_ipv6());
        assert_eq!(rejected(&["--listen", "localhost:5060"]).flag, "--listen");
        assert_eq!(rejected(&["--listen", "1.2.3.4"]).flag, "--listen");
        assert_eq!(
            rejected(&["--listen", "1.2.3.4:5", "--listen", "1.2.3.4:5"]).flag,
            "--listen"
        );
    }

    #[test]
    fn steering_defaults_to_ebpf_and_takes_hash() {
        assert_eq!(config(&[]).unwrap().steering, Steering::Ebpf);
        assert_eq!(
            config(&["--steering", "hash"]).unwrap().steering,
            Steering::Hash
        );
        assert!(Args::try_parse_from(["sipreg", "--steering", "rss"]).is_err());
    }

    #[test]
    fn location_redis_needs_a_seed_and_a_sane_timeout() {
        let c = config(&[]).unwrap();
        assert_eq!(c.redis, None);
        assert_eq!(c.registrar.location, LocationMode::Memory);
        assert_eq!(rejected(&["--location", "redis"]).flag, "--redis-seed");
        let bad = rejected(&["--location", "redis", "--redis-seed", "localhost"]);
        assert_eq!(bad.flag, "--redis-seed");
        assert!(bad.reason.contains("HOST:PORT"), "{}", bad.reason);
        let c = config(&["--location", "redis", "--redis-seed", "127.0.0.1:7001"]).unwrap();
        assert_eq!(c.registrar.location, LocationMode::Shared);
        assert!(
            !c.registrar.journal,
            "nothing to journal: the cluster keeps the bindings"
        );
        assert_eq!(
            c.redis,
            Some(RedisConfig {
                seeds: vec!["127.0.0.1:7001".into()],
                timeout_ms: 1000,
                wait_replicas: 0,
                wait_timeout_ms: 100,
                node_id: "0.0.0.0:5060".into(),
            })
        );
        let flags = [
            "--location",
            "redis",
            "--redis-seed",
            "h:1",
            "--redis-timeout-ms",
        ];
        assert_eq!(
            rejected(&[&flags[..], &["0"]].concat()).flag,
            "--redis-timeout-ms"
        );
        assert_eq!(
            rejected(&[&flags[..], &["60001"]].concat()).flag,
            "--redis-timeout-ms"
        );
        let redis = ["--location", "redis", "--redis-seed", "h:1", "--node-id"];
        let named = config(&[&redis[..], &["edge-1.dc2:5060"]].concat()).unwrap();
        assert_eq!(named.redis.unwrap().node_id, "edge-1.dc2:5060");
        for bad in ["", "a/b", "a b", &"x".repeat(NODE_ID_BYTES_MAX + 1)] {
            assert_eq!(
                rejected(&[&redis[..], &[bad]].concat()).flag,
                "--node-id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn redis_wait_is_bounded_and_shorter_than_the_commit_timeout() {
        let base = ["--location", "redis", "--redis-seed", "h:1"];
        fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
            [base, extra].concat()
        }
        let with = |extra: &[&'static str]| with(&base, extra);
        let c = config(&with(&[
            "--redis-wait",
            "1",
            "--redis-wait-timeout-ms",
            "250",
        ]))
        .unwrap();
        let r = c.redis.unwrap();
        assert_eq!((r.wait_replicas, r.wait_timeout_ms), (1, 250));
        assert_eq!(
            rejected(&with(&["--redis-wait", "17"])).flag,
            "--redis-wait"
        );
        assert_eq!(
            rejected(&with(&["--redis-wait-timeout-ms", "0"])).flag,
            "--redis-wait-timeout-ms"
        );
        // Not below the commit's own timeout (1000 by default).
        assert_eq!(
            rejected(&with(&["--redis-wait-timeout-ms", "1000"])).flag,
            "--redis-wait-timeout-ms"
        );
        let c = config(&with(&[
            "--redis-timeout-ms",
            "5000",
            "--redis-wait-timeout-ms",
            "1000",
        ]))
        .unwrap();
        assert_eq!(c.redis.unwrap().wait_timeout_ms, 1000);
    }

    #[test]
    fn domains_lowercased_and_deduplicated() {
        let c = config(&[
            "--domain",
            "Example.COM",
            "--domain",
            "example.com",
            "--domain",
            "b.org",
        ])
        .unwrap();
        assert_eq!(c.registrar.domains, vec!["example.com", "b.org"]);
        assert_eq!(rejected(&["--domain", "bad domain"]).flag, "--domain");
        assert_eq!(rejected(&["--domain", ""]).flag, "--domain");
    }

    #[test]
    fn cores_and_cpus() {
        assert_eq!(config(&["--cores", "2"]).unwrap().cpus, vec![0, 1]);
        assert_eq!(config(&["--cpus", "3,1-2"]).unwrap().cpus, vec![3, 1, 2]);
        let e = rejected(&["--cores", "5"]);
        assert_eq!(e.flag, "--cores");
        assert!(e.reason.contains("too few cores"), "{e}");
        assert_eq!(rejected(&["--cores", "0"]).flag, "--cores");
        assert_eq!(rejected(&["--cpus", "7"]).flag, "--cpus");
        assert_eq!(rejected(&["--cpus", "2-1"]).flag, "--cpus");
        assert_eq!(rejected(&["--cpus", "x"]).flag, "--cpus");
        // clap refuses the combination before resolve sees it.
        let e = Args::try_parse_from(["sipreg", "--cores", "1", "--cpus", "0"]).unwrap_err();
        assert!(e.to_string().contains("--cpus"), "{e}");
    }

    #[test]
    fn expires_overrides_and_rejections() {
        let c = config(&[
            "--min-expires",
            "30",
            "--default-expires",
            "600",
            "--max-expires",
            "7200",
        ])
        .unwrap();
        assert_eq!(
            (
                c.registrar.min_expires_s,
                c.registrar.default_expires_s,
                c.registrar.max_expires_s
            ),
            (30, 600, 7200)
        );
        assert_eq!(rejected(&["--min-expires", "0"]).flag, "--min-expires");
        assert_eq!(rejected(&["--min-expires", "4000"]).flag, "--min-expires");
        assert_eq!(
            rejected(&["--default-expires", "10"]).flag,
            "--default-expires"
        );
        assert_eq!(
            rejected(&["--default-expires", "4000"]).flag,
            "--default-expires"
        );
        assert_eq!(
            rejected(&["--max-expires", "999999999"]).flag,
            "--max-expires"
        );
        // The extreme that is allowed.
        let c = config(&["--max-expires", &EXPIRES_S_MAX.to_string()]).unwrap();
        assert_eq!(c.registrar.max_expires_s, EXPIRES_S_MAX);
    }

    #[test]
    fn policies() {
        let c = config(&[
            "--min-expires-policy",
            "clamp",
            "--max-contacts-policy",
            "evict-oldest",
        ])
        .unwrap();
        assert_eq!(c.registrar.min_expires_policy, MinExpiresPolicy::Clamp);
        assert_eq!(
            c.registrar.max_contacts_policy,
            MaxContactsPolicy::EvictOldest
        );
        assert!(Args::try_parse_from(["sipreg", "--min-expires-policy", "maybe"]).is_err());
    }

    #[test]
    fn limits_overrides_and_rejections() {
        let c = config(&[
            "--max-contacts",
            "5",
            "--expires-jitter",
            "50",
            "--timer-j-ms",
            "1000",
            "--txn-cache-max",
            "10",
            "--max-bindings",
            "10",
            "--prealloc-bindings",
            "8",
            "--recv-batch",
            "256",
            "--socket-rcvbuf",
            "65536",
            "--socket-sndbuf",
            "65536",
            "--stats-interval",
            "0",
            "--seed",
            "7",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(c.registrar.max_contacts, 5);
        assert_eq!(c.registrar.expires_jitter_percent, 50);
        assert_eq!(c.registrar.timer_j_ms, 1000);
        assert_eq!(c.registrar.txn_cache_max, 10);
        assert_eq!(c.registrar.max_bindings, 3, "10 over 4 shards, rounded up");
        assert_eq!(c.registrar.prealloc_bindings, 2);
        assert_eq!(c.recv_batch, 256);
        assert_eq!(
            (c.socket_rcvbuf_bytes, c.socket_sndbuf_bytes),
            (65536, 65536)
        );
        assert_eq!(c.stats_interval_s, 0);
        assert_eq!(c.seed, Some(7));
        assert_eq!(c.log_level, LogLevel::Debug);

        assert_eq!(
            rejected(&["--expires-jitter", "51"]).flag,
            "--expires-jitter"
        );
        assert_eq!(rejected(&["--timer-j-ms", "0"]).flag, "--timer-j-ms");
        assert_eq!(rejected(&["--txn-cache-max", "0"]).flag, "--txn-cache-max");
        assert_eq!(rejected(&["--max-bindings", "0"]).flag, "--max-bindings");
        assert_eq!(
            rejected(&["--max-bindings", "10", "--prealloc-bindings", "11"]).flag,
            "--prealloc-bindings"
        );
        assert_eq!(rejected(&["--recv-batch", "0"]).flag, "--recv-batch");
        assert_eq!(rejected(&["--recv-batch", "257"]).flag, "--recv-batch");
        assert_eq!(
            rejected(&["--spin-before-park-us", "10001"]).flag,
            "--spin-before-park-us"
        );
        assert_eq!(rejected(&["--socket-rcvbuf", "0"]).flag, "--socket-rcvbuf");
        assert_eq!(
            rejected(&["--socket-sndbuf", "2000000000"]).flag,
            "--socket-sndbuf"
        );
        assert!(Args::try_parse_from(["sipreg", "--max-contacts", "-1"]).is_err());
    }

    #[test]
    fn nat_flags_default_override_and_reject() {
        let c = config(&[]).unwrap();
        assert_eq!(c.registrar.nat, crate::registrar::NatConfig::default());
        assert_eq!(
            c.registrar.nat.ping_interval_ms, 0,
            "pings are off by default"
        );
        assert_eq!(c.registrar.nat.alias, crate::registrar::AliasMode::Differs);
        let c = config(&[
            "--nat-alias",
            "always",
            "--nat-ping-interval",
            "30",
            "--nat-ping-method",
            "crlf",
            "--nat-ping-max-lost",
            "5",
        ])
        .unwrap();
        assert_eq!(c.registrar.nat.alias, crate::registrar::AliasMode::Always);
        assert_eq!(c.registrar.nat.ping_interval_ms, 30_000);
        assert_eq!(
            c.registrar.nat.ping_method,
            crate::registrar::PingMethod::Crlf
        );
        assert_eq!(c.registrar.nat.ping_max_lost, 5);
        assert_eq!(
            rejected(&["--nat-ping-interval", "3601"]).flag,
            "--nat-ping-interval"
        );
        assert_eq!(
            rejected(&["--nat-ping-max-lost", "0"]).flag,
            "--nat-ping-max-lost"
        );
        assert!(Args::try_parse_from(["sipreg", "--nat-alias", "sometimes"]).is_err());
        let redis = ["--location", "redis", "--redis-seed", "127.0.0.1:7001"];
        assert!(config(&redis).is_ok());
        let pinging = [&redis[..], &["--nat-ping-interval", "30"]].concat();
        assert_eq!(rejected(&pinging).flag, "--nat-ping-interval");
    }

    #[test]
    fn registrar_config_seeds_differ_per_shard() {
        let c = config(&["--seed", "1"]).unwrap();
        assert_ne!(c.registrar_config(0, 1).seed, c.registrar_config(1, 1).seed);
        assert_eq!(c.registrar_config(0, 1).seed, 1);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list(" 1 , 1 ").unwrap(), vec![1]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("1-").is_err());
        assert_eq!(format_cpu_list(&[5, 0, 1, 2]), "0-2,5");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn error_display_names_the_flag() {
        let e = rejected(&["--recv-batch", "0"]);
        assert!(e.to_string().starts_with("--recv-batch: "), "{e}");
    }
}
