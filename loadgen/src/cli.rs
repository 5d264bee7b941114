//! Command line in two stages: raw clap `Args` (no syscalls), then a validated `RunConfig` /
//! `EchoConfig` that refuses impossible settings with one line naming the flag.
//!
//! Why refuse rather than guess: a benchmark that silently runs unbounded, at rate 0, or on a
//! CPU that does not exist produces numbers nobody can trust; exit 2 and the flag name make a
//! script fail loudly at the right place.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::digest::Algorithm;
use crate::request::{DOMAIN_BYTES_MAX, Op, USER_PREFIX_BYTES_MAX};
use crate::transport::{Kind, flood, tls};

/// Most worker-local sockets; each is a source port the server's SO_REUSEPORT hash spreads.
pub(crate) const SOCKETS_PER_WORKER_MAX: usize = 4096;
/// Most datagrams per sendmmsg/recvmmsg (the kernel's UIO_MAXIOV is 1024).
pub(crate) const BATCH_MAX: usize = 1024;
/// Most outstanding requests per worker (closed loop window, or open loop in-flight cap).
pub(crate) const WINDOW_MAX: u32 = 1 << 20;
/// Most users (AORs) per run; one u32 of state each in the worker that owns them.
pub(crate) const USERS_MAX: u64 = 100_000_000;
/// Longest `--timeout-ms`: RFC 3261 Timer F (64*T1 = 32 s) plus margin.
pub(crate) const TIMEOUT_MS_MAX: u64 = 60_000;
/// Most stream connections per worker (each is a descriptor and a source port).
pub(crate) const CONNECTIONS_PER_WORKER_MAX: usize = 65_536;
/// Most connections `--hold-connections` opens over all workers. One source address reaches
/// one target port about 28 000 times (the ephemeral port range); `--source-addrs` adds
/// addresses beyond that.
pub(crate) const HOLD_CONNECTIONS_MAX: u64 = 200_000;
/// Most `--source-addrs`.
pub(crate) const SOURCE_ADDRS_MAX: u32 = 64;
/// Longest `--hold-s`.
pub(crate) const HOLD_S_MAX: f64 = 3600.0;
/// Longest `--password`: it goes into every HA1 and one subscriber-file line.
pub(crate) const PASSWORD_BYTES_MAX: usize = 128;

/// A load generator for SIP registrars, and the echo reflector that measures its ceiling.
#[derive(Parser, Debug)]
#[command(
    name = "sipreg-loadgen",
    version,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Reflect every datagram back to its sender (recvmmsg→sendmmsg, SO_REUSEPORT, one thread
    /// per CPU): the I/O ceiling of this machine.
    Echo(EchoArgs),
    /// Print a subscriber file for sipreg's `--auth-file`: one `<prefix><n>@<domain>
    /// <password>` line per user, n from 0, the users `--scenario auth` registers.
    Subscribers(SubscribersArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SubscribersArgs {
    /// Users (SI suffixes allowed).
    #[arg(long, default_value = "10k")]
    pub(crate) users: String,
    /// Domain of every user (the realm sipreg challenges with).
    #[arg(long, default_value = "example.com")]
    pub(crate) domain: String,
    /// Users are `<prefix><n>@<domain>`.
    #[arg(long, default_value = "user")]
    pub(crate) user_prefix: String,
    /// Password of every user.
    #[arg(long, default_value = "secret")]
    pub(crate) password: String,
}

#[derive(Args, Debug)]
pub(crate) struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub(crate) listen: SocketAddr,
    /// CPUs to run one reflector thread on each, e.g. `1` or `0,1` or `0-3` (default: one
    /// unpinned thread).
    #[arg(long)]
    pub(crate) cpus: Option<String>,
    /// Datagrams per recvmmsg/sendmmsg.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: usize,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Spin on non-blocking recvmmsg instead of sleeping: no wake-up IPIs for the sender,
    /// burns the reflector's cores.
    #[arg(long)]
    pub(crate) busy_poll: bool,
}

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub(crate) target: SocketAddr,
    /// Local address to send from (written in Via and Contact).
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// register | refresh | unregister | fetch | invite | mixed | storm | auth.
    #[arg(long, default_value = "register")]
    pub(crate) scenario: String,
    /// Distinct users (AORs); SI suffixes allowed (10k, 1M).
    #[arg(long, default_value = "10k")]
    pub(crate) users: String,
    /// Op weights for `--scenario mixed`, e.g. `register=10,refresh=80,fetch=10`.
    #[arg(long)]
    pub(crate) mix: Option<String>,
    /// Open loop: requests per second over all workers (SI suffixes allowed). Latency is
    /// measured from each request's intended send time.
    #[arg(long)]
    pub(crate) rate: Option<String>,
    /// Closed loop: outstanding requests per worker (with --rate: a cap on in-flight).
    #[arg(long)]
    pub(crate) window: Option<u32>,
    /// Stop sending after this many seconds.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Stop sending after this many requests (SI suffixes allowed).
    #[arg(long)]
    pub(crate) count: Option<String>,
    /// A request with no final response after this long is a timeout.
    #[arg(long, default_value_t = 5000)]
    pub(crate) timeout_ms: u64,
    /// Do not retransmit (RFC 3261 Timer E/A: 500 ms doubling to 4 s).
    #[arg(long)]
    pub(crate) no_retransmit: bool,
    /// CPUs to run one pinned worker on each, e.g. `0` or `0,1` or `0-3` (default: one
    /// unpinned worker).
    #[arg(long)]
    pub(crate) cpus: Option<String>,
    /// UDP sockets (source ports) per worker, so a SO_REUSEPORT server spreads them.
    #[arg(long, default_value_t = 4)]
    pub(crate) sockets: usize,
    /// Datagrams per sendmmsg/recvmmsg.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: usize,
    /// Domain of every AOR and the REGISTER Request-URI.
    #[arg(long, default_value = "example.com")]
    pub(crate) domain: String,
    /// Users are `<prefix><n>@<domain>`.
    #[arg(long, default_value = "user")]
    pub(crate) user_prefix: String,
    /// Expires value of registrations, seconds.
    #[arg(long, default_value_t = 3600)]
    pub(crate) expires: u32,
    /// Add `;+sip.instance="<urn:uuid:…>"` to Contact (RFC 5626; ~70 bytes more).
    #[arg(long)]
    pub(crate) instance: bool,
    /// Status every response must have (overrides the scenario's 200/302), or `echo` when
    /// the target is `sipreg-loadgen echo` and our own request comes back.
    #[arg(long)]
    pub(crate) expect: Option<String>,
    /// Exact number of Contact bindings every successful response must list (default: at
    /// least one where the scenario knows the user is registered).
    #[arg(long)]
    pub(crate) expect_bindings: Option<u32>,
    /// Print the final result as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// No per-second progress line on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Server process id(s) whose CPU time (utime+stime, /proc/PID/stat) is sampled around
    /// the measured phase; repeat for multi-process servers.
    #[arg(long)]
    pub(crate) server_pid: Vec<u32>,
    /// Never sleep in epoll_wait: lowest latency, burns the worker's core.
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// `--scenario auth`: the password of every user.
    #[arg(long, default_value = "secret")]
    pub(crate) password: String,
    /// `--scenario auth`: the algorithm to answer with when offered (sha256 | md5); else
    /// the first one offered.
    #[arg(long, default_value = "sha256")]
    pub(crate) auth_algorithm: String,
    /// `--scenario auth`: keep each user's nonce and send credentials straight away on
    /// the next REGISTER with nc+1, as phones do; a 401 (stale or not) redoes the challenge.
    #[arg(long)]
    pub(crate) auth_reuse_nonce: bool,
    /// udp | tcp | tls (RFC 3261 §18). Over tcp and tls nothing is retransmitted
    /// (RFC 3261 §17.1.1.2); --timeout-ms still applies.
    #[arg(long, default_value = "udp")]
    pub(crate) transport: String,
    /// tcp/tls: connections per worker, each owning `users / (workers × N)` users so every
    /// refresh goes on the connection that registered (default: --sockets' value). UDP uses
    /// --sockets.
    #[arg(long)]
    pub(crate) connections: Option<usize>,
    /// tls: PEM file of the CA (or self-signed certificate) the server's certificate must
    /// chain to. Required with --transport tls.
    #[arg(long)]
    pub(crate) tls_ca: Option<PathBuf>,
    /// tls: name the server's certificate must carry (default: the --target IP address).
    #[arg(long)]
    pub(crate) tls_server_name: Option<String>,
    /// tls: versions offered: any (1.3 and 1.2) | 1.2 | 1.3.
    #[arg(long, default_value = "any")]
    pub(crate) tls_version: String,
    /// tls: no session resumption (every reconnect is a full handshake).
    #[arg(long)]
    pub(crate) tls_no_resume: bool,
    /// tcp/tls: instead of REGISTER load, open this many connections over all workers (TLS
    /// handshakes completed), send nothing, and hold them --hold-s seconds (SI suffixes
    /// allowed). Reports how many are up; the server's memory is for the caller to read.
    #[arg(long)]
    pub(crate) hold_connections: Option<String>,
    /// Seconds to hold --hold-connections.
    #[arg(long)]
    pub(crate) hold_s: Option<f64>,
    /// With --hold-connections: spread the connections over this many IPv4 source addresses
    /// from --bind up (127.0.0.1, 127.0.0.2, … on loopback), since one address reaches one
    /// target port only about 28 000 times.
    #[arg(long, default_value_t = 1)]
    pub(crate) source_addrs: u32,
    /// tls: beside the load, open this many new TLS connections per second that send a
    /// ClientHello and never finish the handshake (SI suffixes allowed).
    #[arg(long)]
    pub(crate) handshake_flood: Option<String>,
}

/// A usage error: one line naming the flag; the process exits 2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError {
    pub(crate) flag: &'static str,
    pub(crate) message: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}: {}", self.flag, self.message)
    }
}

fn usage(flag: &'static str, message: impl Into<String>) -> UsageError {
    UsageError {
        flag,
        message: message.into(),
    }
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    Register,
    Refresh,
    Unregister,
    Fetch,
    Invite,
    Mixed,
    Storm,
    /// REGISTER → 401 → REGISTER with Authorization → 200 (RFC 3261 §22.2).
    Auth,
}

impl Scenario {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "register" => Self::Register,
            "refresh" => Self::Refresh,
            "unregister" => Self::Unregister,
            "fetch" => Self::Fetch,
            "invite" => Self::Invite,
            "mixed" => Self::Mixed,
            "storm" => Self::Storm,
            "auth" => Self::Auth,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Refresh => "refresh",
            Self::Unregister => "unregister",
            Self::Fetch => "fetch",
            Self::Invite => "invite",
            Self::Mixed => "mixed",
            Self::Storm => "storm",
            Self::Auth => "auth",
        }
    }

    /// Scenarios that act on registered users first register every user once (the prime
    /// phase, measured separately).
    pub(crate) fn needs_prime(self) -> bool {
        matches!(
            self,
            Self::Refresh | Self::Unregister | Self::Fetch | Self::Invite | Self::Mixed
        )
    }
}

/// The status every response must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Per op: 200 for REGISTERs, 302 for INVITE.
    Scenario,
    Status(u16),
    /// Our own request reflected by `sipreg-loadgen echo`.
    Echo,
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pace {
    /// `rate` requests per second over all workers, at most `window` in flight per worker.
    Open { rate: f64, window: u32 },
    /// `window` outstanding requests per worker.
    Closed { window: u32 },
}

/// `--hold-connections N --hold-s S`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hold {
    /// Connections over all workers.
    pub(crate) connections: u64,
    pub(crate) duration: Duration,
    /// Source addresses, `--source-addrs` of them from `--bind` up.
    pub(crate) sources: Vec<IpAddr>,
}

#[derive(Clone, Debug)]
pub(crate) struct RunConfig {
    pub(crate) target: SocketAddr,
    pub(crate) bind: IpAddr,
    pub(crate) scenario: Scenario,
    pub(crate) users: u32,
    /// 100 ops in proportion to the weights, for `mixed`.
    pub(crate) mix: Vec<Op>,
    pub(crate) pace: Pace,
    pub(crate) duration: Option<Duration>,
    pub(crate) count: Option<u64>,
    pub(crate) timeout: Duration,
    pub(crate) retransmit: bool,
    /// One worker per entry; `None` = unpinned.
    pub(crate) cpus: Vec<Option<usize>>,
    pub(crate) batch: usize,
    pub(crate) domain: String,
    pub(crate) user_prefix: String,
    pub(crate) expires_s: u32,
    pub(crate) instance: bool,
    pub(crate) expect: Expect,
    pub(crate) expect_bindings: Option<u32>,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    pub(crate) server_pids: Vec<u32>,
    pub(crate) busy_poll: bool,
    pub(crate) password: String,
    pub(crate) auth_algorithm: Algorithm,
    pub(crate) auth_reuse_nonce: bool,
    pub(crate) transport: Kind,
    /// Channels per worker: UDP sockets, or TCP/TLS connections.
    pub(crate) channels: usize,
    /// `--transport tls`: the client every connection is made from.
    pub(crate) tls: Option<tls::Client>,
    pub(crate) hold: Option<Hold>,
    /// `--handshake-flood`: half-open TLS connections per second.
    pub(crate) flood_rate: Option<u32>,
}

#[derive(Clone, Debug)]
pub(crate) struct EchoConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) cpus: Vec<Option<usize>>,
    pub(crate) batch: usize,
    pub(crate) duration: Option<Duration>,
    pub(crate) busy_poll: bool,
}

/// Parses `250k`, `1.5M`, `1000`, `2G` into a count.
pub(crate) fn parse_si(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1e3),
        b'm' | b'M' => (&s[..s.len() - 1], 1e6),
        b'g' | b'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    let v = v * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 || v.fract() != 0.0 {
        return None;
    }
    Some(v as u64)
}

/// Parses `0`, `0,1`, `0-3`, `0,2-3` into CPU ids, checking each exists for this process.
pub(crate) fn parse_cpus(
    flag: &'static str,
    list: &str,
    available: &[usize],
) -> Result<Vec<Option<usize>>, UsageError> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (Ok(lo), Ok(hi)) = (lo.parse::<usize>(), hi.parse::<usize>()) else {
            return Err(usage(
                flag,
                format!("'{part}' is not a CPU number or range (e.g. 0,1 or 0-3)"),
            ));
        };
        if lo > hi {
            return Err(usage(flag, format!("range '{part}' is backwards")));
        }
        for cpu in lo..=hi {
            if !available.contains(&cpu) {
                return Err(usage(
                    flag,
                    format!(
                        "CPU {cpu} is not available to this process (available: {available:?})"
                    ),
                ));
            }
            if cpus.contains(&Some(cpu)) {
                return Err(usage(flag, format!("CPU {cpu} is listed twice")));
            }
            cpus.push(Some(cpu));
        }
    }
    Ok(cpus)
}

/// Parses `register=10,refresh=80,fetch=10` into a 100-entry op table.
pub(crate) fn parse_mix(s: &str) -> Result<Vec<Op>, UsageError> {
    let mut weights: Vec<(Op, u64)> = Vec::new();
    for part in s.split(',') {
        let Some((name, w)) = part.split_once('=') else {
            return Err(usage("--mix", format!("'{part}' is not op=weight")));
        };
        let op = match name.trim() {
            "register" => Op::Register,
            "refresh" => Op::Refresh,
            "unregister" => Op::Unregister,
            "fetch" => Op::Fetch,
            "invite" => Op::Invite,
            other => {
                return Err(usage(
                    "--mix",
                    format!("unknown op '{other}' (register, refresh, unregister, fetch, invite)"),
                ));
            }
        };
        let Ok(w) = w.trim().parse::<u64>() else {
            return Err(usage(
                "--mix",
                format!("weight '{w}' is not a whole number"),
            ));
        };
        if w > 1_000_000 {
            return Err(usage("--mix", format!("weight {w} is above 1000000")));
        }
        weights.push((op, w));
    }
    let total: u64 = weights.iter().map(|&(_, w)| w).sum();
    if total == 0 {
        return Err(usage("--mix", "weights sum to 0"));
    }
    // Spread each op evenly over 100 positions (largest remainder), interleaved so that a
    // short run still sees the mix: position i gets the op whose cumulative share crosses i.
    let mut table = Vec::with_capacity(100);
    for i in 0..100u64 {
        let point = (i * total * 2 + total) / 200; // centre of slot i in weight units
        let mut acc = 0;
        for &(op, w) in &weights {
            acc += w;
            if point < acc {
                table.push(op);
                break;
            }
        }
    }
    // Interleave: stride through the table with a step coprime to 100.
    let interleaved = (0..100).map(|i| table[(i * 37) % 100]).collect();
    Ok(interleaved)
}

impl RunArgs {
    pub(crate) fn validate(&self, available_cpus: &[usize]) -> Result<RunConfig, UsageError> {
        let scenario = Scenario::parse(&self.scenario).ok_or_else(|| {
            usage(
                "--scenario",
                format!(
                    "unknown scenario '{}' (register, refresh, unregister, fetch, invite, mixed, storm, auth)",
                    self.scenario
                ),
            )
        })?;
        let users = parse_si(&self.users)
            .ok_or_else(|| usage("--users", format!("'{}' is not a count", self.users)))?;
        if users == 0 || users > USERS_MAX {
            return Err(usage(
                "--users",
                format!("must be between 1 and {USERS_MAX}"),
            ));
        }
        let mix = match (&self.mix, scenario) {
            (Some(m), Scenario::Mixed) => parse_mix(m)?,
            (None, Scenario::Mixed) => parse_mix("register=10,refresh=80,fetch=10")?,
            (Some(_), _) => return Err(usage("--mix", "only applies to --scenario mixed")),
            (None, _) => Vec::new(),
        };
        if let Some(0) = self.window {
            return Err(usage("--window", "must be at least 1"));
        }
        if let Some(w) = self.window
            && w > WINDOW_MAX
        {
            return Err(usage("--window", format!("must be at most {WINDOW_MAX}")));
        }
        let pace = match &self.rate {
            Some(r) => {
                let rate: f64 = parse_si(r)
                    .map(|v| v as f64)
                    .or_else(|| r.parse::<f64>().ok().filter(|v| v.is_finite()))
                    .ok_or_else(|| usage("--rate", format!("'{r}' is not a rate")))?;
                if rate <= 0.0 {
                    return Err(usage("--rate", "must be greater than 0"));
                }
                Pace::Open {
                    rate,
                    window: self.window.unwrap_or(WINDOW_MAX),
                }
            }
            None if scenario == Scenario::Storm => {
                return Err(usage(
                    "--rate",
                    "--scenario storm is open loop: give a --rate far above capacity",
                ));
            }
            None => Pace::Closed {
                window: self.window.unwrap_or(64),
            },
        };
        let duration = match self.duration {
            Some(d) if !(d > 0.0 && d <= 86_400.0) => {
                return Err(usage("--duration", "must be between 0 and 86400 seconds"));
            }
            Some(d) => Some(Duration::from_secs_f64(d)),
            None => None,
        };
        let count = match &self.count {
            Some(c) => match parse_si(c) {
                Some(0) => return Err(usage("--count", "must be at least 1")),
                Some(n) => Some(n),
                None => return Err(usage("--count", format!("'{c}' is not a count"))),
            },
            None => None,
        };
        let streams = self.validate_transport()?;
        let (transport, channels, tls, hold, flood_rate) = streams;
        if duration.is_none() && count.is_none() && hold.is_none() {
            return Err(usage(
                "--duration",
                "refusing to run unbounded: give --duration and/or --count",
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            return Err(usage(
                "--timeout-ms",
                format!("must be between 1 and {TIMEOUT_MS_MAX}"),
            ));
        }
        let cpus = match &self.cpus {
            Some(list) => parse_cpus("--cpus", list, available_cpus)?,
            None => vec![None],
        };
        if self.sockets == 0 || self.sockets > SOCKETS_PER_WORKER_MAX {
            return Err(usage(
                "--sockets",
                format!("must be between 1 and {SOCKETS_PER_WORKER_MAX}"),
            ));
        }
        if self.batch == 0 || self.batch > BATCH_MAX {
            return Err(usage(
                "--batch",
                format!("must be between 1 and {BATCH_MAX}"),
            ));
        }
        validate_names(&self.domain, &self.user_prefix)?;
        validate_password(&self.password)?;
        let auth_algorithm = Algorithm::from_flag(&self.auth_algorithm).ok_or_else(|| {
            usage(
                "--auth-algorithm",
                format!("unknown algorithm '{}' (sha256, md5)", self.auth_algorithm),
            )
        })?;
        if self.auth_reuse_nonce && scenario != Scenario::Auth {
            return Err(usage(
                "--auth-reuse-nonce",
                "only means something with --scenario auth",
            ));
        }
        if self.expires == 0 || self.expires > i32::MAX as u32 {
            return Err(usage(
                "--expires",
                "must be between 1 and 2^31-1 (use --scenario unregister for 0)",
            ));
        }
        let expect = match self.expect.as_deref() {
            None => Expect::Scenario,
            Some("echo") => Expect::Echo,
            Some(code) => match code.parse::<u16>() {
                Ok(c) if (100..=699).contains(&c) => Expect::Status(c),
                _ => {
                    return Err(usage(
                        "--expect",
                        format!("'{code}' is neither a status code nor 'echo'"),
                    ));
                }
            },
        };
        let retransmit =
            !self.no_retransmit && scenario != Scenario::Storm && !transport.reliable();
        Ok(RunConfig {
            target: self.target,
            bind: self.bind,
            scenario,
            users: users as u32,
            mix,
            pace,
            duration,
            count,
            timeout: Duration::from_millis(self.timeout_ms),
            retransmit,
            cpus,
            batch: self.batch,
            domain: self.domain.clone(),
            user_prefix: self.user_prefix.clone(),
            expires_s: self.expires,
            instance: self.instance,
            expect,
            expect_bindings: self.expect_bindings,
            json: self.json,
            quiet: self.quiet,
            server_pids: self.server_pid.clone(),
            busy_poll: self.busy_poll,
            password: self.password.clone(),
            auth_algorithm,
            auth_reuse_nonce: self.auth_reuse_nonce,
            transport,
            channels,
            tls,
            hold,
            flood_rate,
        })
    }

    /// The transport flags: kind, channels per worker, TLS client, hold and flood modes.
    #[allow(clippy::type_complexity)]
    fn validate_transport(
        &self,
    ) -> Result<(Kind, usize, Option<tls::Client>, Option<Hold>, Option<u32>), UsageError> {
        let kind = Kind::parse(&self.transport).ok_or_else(|| {
            usage(
                "--transport",
                format!("unknown transport '{}' (udp, tcp, tls)", self.transport),
            )
        })?;
        let channels = match (kind, self.connections) {
            (Kind::Udp, Some(_)) => {
                return Err(usage(
                    "--connections",
                    "only with --transport tcp|tls (UDP uses --sockets)",
                ));
            }
            (Kind::Udp, None) => self.sockets,
            (_, Some(n)) if n == 0 || n > CONNECTIONS_PER_WORKER_MAX => {
                return Err(usage(
                    "--connections",
                    format!("must be between 1 and {CONNECTIONS_PER_WORKER_MAX}"),
                ));
            }
            (_, Some(n)) => n,
            (_, None) => self.sockets,
        };
        let tls_only = [
            ("--tls-ca", self.tls_ca.is_some()),
            ("--tls-server-name", self.tls_server_name.is_some()),
            ("--tls-version", self.tls_version != "any"),
            ("--tls-no-resume", self.tls_no_resume),
            ("--handshake-flood", self.handshake_flood.is_some()),
        ];
        if kind != Kind::Tls
            && let Some((flag, _)) = tls_only.iter().find(|(_, given)| *given)
        {
            return Err(usage(flag, "only with --transport tls"));
        }
        let tls = if kind == Kind::Tls {
            let versions = tls::Versions::parse(&self.tls_version).ok_or_else(|| {
                usage(
                    "--tls-version",
                    format!("'{}' is not any, 1.2 or 1.3", self.tls_version),
                )
            })?;
            let ca = self
                .tls_ca
                .as_deref()
                .ok_or_else(|| usage("--tls-ca", "required with --transport tls"))?;
            let client = tls::client(
                ca,
                self.tls_server_name.as_deref(),
                self.target.ip(),
                versions,
                !self.tls_no_resume,
            )
            .map_err(|e| match e {
                tls::SetupError::Ca(m) => usage("--tls-ca", m),
                tls::SetupError::ServerName(m) => usage("--tls-server-name", m),
                tls::SetupError::Versions(m) => usage("--tls-version", m),
            })?;
            Some(client)
        } else {
            None
        };
        if self.source_addrs == 0 || self.source_addrs > SOURCE_ADDRS_MAX {
            return Err(usage(
                "--source-addrs",
                format!("must be between 1 and {SOURCE_ADDRS_MAX}"),
            ));
        }
        if self.source_addrs > 1 && self.hold_connections.is_none() {
            return Err(usage("--source-addrs", "only with --hold-connections"));
        }
        let sources = match self.bind {
            IpAddr::V4(v4) if self.source_addrs > 1 => {
                let first = u32::from(v4);
                (0..self.source_addrs)
                    .map(|k| {
                        first
                            .checked_add(k)
                            .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a)))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| usage("--source-addrs", "runs past 255.255.255.255"))?
            }
            IpAddr::V6(_) if self.source_addrs > 1 => {
                return Err(usage("--source-addrs", "needs an IPv4 --bind"));
            }
            ip => vec![ip],
        };
        let hold = match (&self.hold_connections, self.hold_s) {
            (None, None) => None,
            (Some(_), None) => return Err(usage("--hold-s", "required with --hold-connections")),
            (None, Some(_)) => return Err(usage("--hold-s", "only with --hold-connections")),
            (Some(n), Some(s)) => {
                if kind == Kind::Udp {
                    return Err(usage("--hold-connections", "only with --transport tcp|tls"));
                }
                let connections = parse_si(n)
                    .filter(|&n| (1..=HOLD_CONNECTIONS_MAX).contains(&n))
                    .ok_or_else(|| {
                        usage(
                            "--hold-connections",
                            format!("'{n}' is not a count between 1 and {HOLD_CONNECTIONS_MAX}"),
                        )
                    })?;
                if !(s > 0.0 && s <= HOLD_S_MAX) {
                    return Err(usage(
                        "--hold-s",
                        format!("must be between 0 and {HOLD_S_MAX} seconds"),
                    ));
                }
                if self.handshake_flood.is_some() {
                    return Err(usage(
                        "--handshake-flood",
                        "runs beside REGISTER load, not with --hold-connections",
                    ));
                }
                Some(Hold {
                    connections,
                    duration: Duration::from_secs_f64(s),
                    sources,
                })
            }
        };
        let flood_rate = match &self.handshake_flood {
            None => None,
            Some(r) => Some(
                parse_si(r)
                    .filter(|&r| (1..=u64::from(flood::RATE_MAX)).contains(&r))
                    .ok_or_else(|| {
                        usage(
                            "--handshake-flood",
                            format!(
                                "'{r}' is not a rate between 1 and {} per second",
                                flood::RATE_MAX
                            ),
                        )
                    })? as u32,
            ),
        };
        Ok((kind, channels, tls, hold, flood_rate))
    }
}

/// `--domain` and `--user-prefix`: bounded, and only characters that need no escaping in
/// a SIP URI or a subscriber file.
fn validate_names(domain: &str, prefix: &str) -> Result<(), UsageError> {
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    if domain.is_empty() || !domain.bytes().all(name_char) || domain.len() > DOMAIN_BYTES_MAX {
        return Err(usage(
            "--domain",
            format!("must be 1..={DOMAIN_BYTES_MAX} of [A-Za-z0-9-._]"),
        ));
    }
    if !prefix.bytes().all(name_char) || prefix.len() > USER_PREFIX_BYTES_MAX {
        return Err(usage(
            "--user-prefix",
            format!("must be 0..={USER_PREFIX_BYTES_MAX} of [A-Za-z0-9-._]"),
        ));
    }
    Ok(())
}

/// A password fits one whitespace-separated field of a subscriber file.
fn validate_password(p: &str) -> Result<(), UsageError> {
    if p.is_empty() || p.len() > PASSWORD_BYTES_MAX || !p.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(
            "--password",
            format!("must be 1..={PASSWORD_BYTES_MAX} printable ASCII characters, no spaces"),
        ));
    }
    Ok(())
}

/// A validated `subscribers` command.
#[derive(Clone, Debug)]
pub(crate) struct SubscribersConfig {
    pub(crate) users: u64,
    pub(crate) domain: String,
    pub(crate) user_prefix: String,
    pub(crate) password: String,
}

impl SubscribersArgs {
    pub(crate) fn validate(&self) -> Result<SubscribersConfig, UsageError> {
        let users = parse_si(&self.users)
            .ok_or_else(|| usage("--users", format!("'{}' is not a count", self.users)))?;
        if users == 0 || users > USERS_MAX {
            return Err(usage(
                "--users",
                format!("must be between 1 and {USERS_MAX}"),
            ));
        }
        validate_names(&self.domain, &self.user_prefix)?;
        validate_password(&self.password)?;
        Ok(SubscribersConfig {
            users,
            domain: self.domain.clone(),
            user_prefix: self.user_prefix.clone(),
            password: self.password.clone(),
        })
    }
}

/// Writes the subscriber file of `c`: `<prefix><n>@<domain> <password>` per line.
pub(crate) fn write_subscribers(
    c: &SubscribersConfig,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    for n in 0..c.users {
        writeln!(out, "{}{n}@{} {}", c.user_prefix, c.domain, c.password)?;
    }
    out.flush()
}

impl EchoArgs {
    pub(crate) fn validate(&self, available_cpus: &[usize]) -> Result<EchoConfig, UsageError> {
        let cpus = match &self.cpus {
            Some(list) => parse_cpus("--cpus", list, available_cpus)?,
            None => vec![None],
        };
        if self.batch == 0 || self.batch > BATCH_MAX {
            return Err(usage(
                "--batch",
                format!("must be between 1 and {BATCH_MAX}"),
            ));
        }
        let duration = match self.duration {
            Some(d) if !(d > 0.0 && d <= 86_400.0) => {
                return Err(usage("--duration", "must be between 0 and 86400 seconds"));
            }
            d => d.map(Duration::from_secs_f64),
        };
        Ok(EchoConfig {
            listen: self.listen,
            cpus,
            batch: self.batch,
            duration,
            busy_poll: self.busy_poll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUS: &[usize] = &[0, 1];

    fn run(args: &[&str]) -> Result<RunConfig, UsageError> {
        let mut argv = vec!["sipreg-loadgen"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("clap accepts the flags");
        cli.run.validate(CPUS)
    }

    fn flag_of(args: &[&str]) -> &'static str {
        run(args).unwrap_err().flag
    }

    #[test]
    fn defaults_are_a_bounded_closed_loop_register() {
        let c = run(&["--count", "10"]).unwrap();
        assert_eq!(c.scenario, Scenario::Register);
        assert_eq!(c.pace, Pace::Closed { window: 64 });
        assert_eq!(
            (c.count, c.users, c.channels, c.batch),
            (Some(10), 10_000, 4, 32)
        );
        assert_eq!(c.cpus, vec![None]);
        assert!(c.retransmit);
        assert_eq!(c.expect, Expect::Scenario);
    }

    #[test]
    fn impossible_settings_name_their_flag() {
        assert_eq!(
            flag_of(&["--scenario", "register"]),
            "--duration",
            "unbounded"
        );
        assert_eq!(flag_of(&["--count", "1", "--rate", "0"]), "--rate");
        assert_eq!(flag_of(&["--count", "1", "--rate", "fast"]), "--rate");
        assert_eq!(
            flag_of(&["--count", "1", "--scenario", "dance"]),
            "--scenario"
        );
        assert_eq!(flag_of(&["--count", "1", "--window", "0"]), "--window");
        assert_eq!(flag_of(&["--count", "1", "--cpus", "0,5"]), "--cpus");
        assert_eq!(flag_of(&["--count", "1", "--cpus", "0,0"]), "--cpus");
        assert_eq!(flag_of(&["--count", "0"]), "--count");
        assert_eq!(flag_of(&["--count", "1", "--users", "0"]), "--users");
        assert_eq!(flag_of(&["--count", "1", "--sockets", "0"]), "--sockets");
        assert_eq!(flag_of(&["--count", "1", "--batch", "5000"]), "--batch");
        assert_eq!(
            flag_of(&["--count", "1", "--timeout-ms", "0"]),
            "--timeout-ms"
        );
        assert_eq!(flag_of(&["--count", "1", "--duration", "0"]), "--duration");
        assert_eq!(flag_of(&["--count", "1", "--mix", "refresh=1"]), "--mix");
        assert_eq!(
            flag_of(&["--count", "1", "--scenario", "mixed", "--mix", "dance=1"]),
            "--mix"
        );
        assert_eq!(
            flag_of(&["--count", "1", "--scenario", "mixed", "--mix", "fetch=0"]),
            "--mix"
        );
        assert_eq!(flag_of(&["--count", "1", "--scenario", "storm"]), "--rate");
        assert_eq!(flag_of(&["--count", "1", "--domain", "a b"]), "--domain");
        assert_eq!(flag_of(&["--count", "1", "--expect", "ok"]), "--expect");
        let msg = run(&["--count", "1", "--cpus", "7"])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("error: --cpus: CPU 7") && !msg.contains('\n'),
            "{msg}"
        );
    }

    #[test]
    fn open_loop_with_si_rate_cpus_and_duration() {
        let c = run(&[
            "--rate",
            "250k",
            "--duration",
            "2.5",
            "--cpus",
            "0-1",
            "--users",
            "1M",
        ])
        .unwrap();
        assert_eq!(
            c.pace,
            Pace::Open {
                rate: 250_000.0,
                window: WINDOW_MAX
            }
        );
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        assert_eq!(c.cpus, vec![Some(0), Some(1)]);
        assert_eq!(c.users, 1_000_000);
    }

    #[test]
    fn storm_never_retransmits_and_echo_is_an_expectation() {
        let c = run(&[
            "--scenario",
            "storm",
            "--rate",
            "1M",
            "--duration",
            "1",
            "--expect",
            "echo",
        ])
        .unwrap();
        assert!(!c.retransmit);
        assert_eq!(c.expect, Expect::Echo);
        assert_eq!(
            run(&["--count", "1", "--expect", "404"]).unwrap().expect,
            Expect::Status(404)
        );
    }

    #[test]
    fn si_suffixes() {
        assert_eq!(parse_si("250k"), Some(250_000));
        assert_eq!(parse_si("1.5M"), Some(1_500_000));
        assert_eq!(parse_si("7"), Some(7));
        assert_eq!(parse_si("1.5"), None);
        assert_eq!(parse_si("-1"), None);
        assert_eq!(parse_si("k"), None);
        assert_eq!(parse_si(""), None);
    }

    #[test]
    fn mix_table_keeps_the_proportions_and_interleaves() {
        let t = parse_mix("register=10,refresh=80,fetch=10").unwrap();
        assert_eq!(t.len(), 100);
        let count = |op| t.iter().filter(|&&o| o == op).count();
        assert_eq!(
            (count(Op::Register), count(Op::Refresh), count(Op::Fetch)),
            (10, 80, 10)
        );
        assert!(
            t[..20].contains(&Op::Register) && t[..20].contains(&Op::Fetch),
            "{t:?}"
        );
        let t = parse_mix("invite=1,unregister=2").unwrap();
        assert_eq!(t.iter().filter(|&&o| o == Op::Invite).count(), 33);
    }

    #[test]
    fn auth_flags_are_validated() {
        let c = run(&["--count", "1", "--scenario", "auth", "--auth-reuse-nonce"]).unwrap();
        assert_eq!(c.scenario, Scenario::Auth);
        assert_eq!(
            (c.password.as_str(), c.auth_algorithm, c.auth_reuse_nonce),
            ("secret", Algorithm::Sha256, true)
        );
        let c = run(&[
            "--count",
            "1",
            "--scenario",
            "auth",
            "--auth-algorithm",
            "md5",
        ])
        .unwrap();
        assert_eq!(c.auth_algorithm, Algorithm::Md5);
        assert_eq!(
            flag_of(&["--count", "1", "--auth-algorithm", "sha1"]),
            "--auth-algorithm"
        );
        assert_eq!(
            flag_of(&["--count", "1", "--password", "a b"]),
            "--password"
        );
        assert_eq!(flag_of(&["--count", "1", "--password", ""]), "--password");
        assert_eq!(
            flag_of(&["--count", "1", "--auth-reuse-nonce"]),
            "--auth-reuse-nonce"
        );
    }

    #[test]
    fn subscribers_file_lists_the_users_auth_registers() {
        let cli = Cli::try_parse_from([
            "x",
            "subscribers",
            "--users",
            "3",
            "--domain",
            "sipreg.test",
            "--password",
            "pw",
        ])
        .unwrap();
        let Some(Command::Subscribers(a)) = cli.command else {
            panic!("subscribers subcommand")
        };
        let mut out = Vec::new();
        write_subscribers(&a.validate().unwrap(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "user0@sipreg.test pw\nuser1@sipreg.test pw\nuser2@sipreg.test pw\n"
        );
        let cli = Cli::try_parse_from(["x", "subscribers", "--users", "0"]).unwrap();
        let Some(Command::Subscribers(a)) = cli.command else {
            panic!("subscribers subcommand")
        };
        assert_eq!(a.validate().unwrap_err().flag, "--users");
    }

    #[test]
    fn echo_subcommand_parses() {
        let cli = Cli::try_parse_from(["x", "echo", "--listen", "127.0.0.1:7000", "--cpus", "1"])
            .unwrap();
        let Some(Command::Echo(e)) = cli.command else {
            panic!("echo subcommand")
        };
        let e = e.validate(CPUS).unwrap();
        assert_eq!(
            (e.listen.port(), e.cpus.clone(), e.batch),
            (7000, vec![Some(1)], 64)
        );
        let cli = Cli::try_parse_from(["x", "echo", "--cpus", "9"]).unwrap();
        let Some(Command::Echo(e)) = cli.command else {
            panic!("echo subcommand")
        };
        assert_eq!(e.validate(CPUS).unwrap_err().flag, "--cpus");
    }
}
