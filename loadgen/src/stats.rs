//! Counters and the latency histogram of one worker, merged at the end into the report
//! (a table on stderr/stdout, or one JSON object for scripts).
//!
//! Why per worker: workers never share a cache line on the hot path; a handful of relaxed
//! atomics (`Progress`) is all the progress line reads.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Status codes are counted in a flat array indexed by code (0 = our request echoed back).
pub(crate) const STATUS_CODES: usize = 700;

#[derive(Clone, Debug)]
pub(crate) struct Stats {
    /// New requests sent (retransmissions not included).
    pub(crate) sent: u64,
    pub(crate) retransmissions: u64,
    /// Final responses matched to an in-flight request.
    pub(crate) answered: u64,
    /// Answered with the expected status and binding count.
    pub(crate) ok: u64,
    pub(crate) status: Vec<u64>,
    pub(crate) unexpected_status: u64,
    pub(crate) bindings_mismatch: u64,
    pub(crate) timeouts: u64,
    pub(crate) provisional: u64,
    /// Responses to a slot that was already answered or timed out (retransmitted responses).
    pub(crate) late: u64,
    /// Datagrams that are not a response to any request of this run.
    pub(crate) stray: u64,
    pub(crate) parse_errors: u64,
    pub(crate) send_errors: u64,
    pub(crate) acks: u64,
    /// `--scenario auth`: 401s answered with credentials (the second round trip).
    pub(crate) auth_challenges: u64,
    /// Of those, 401s with `stale=true`.
    pub(crate) auth_stale: u64,
    /// Requests sent straight away with a kept nonce (`--auth-reuse-nonce`).
    pub(crate) auth_cached: u64,
    /// Latency in microseconds, from the intended send time to the final response.
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) conns: ConnStats,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            sent: 0,
            retransmissions: 0,
            answered: 0,
            ok: 0,
            status: vec![0; STATUS_CODES],
            unexpected_status: 0,
            bindings_mismatch: 0,
            timeouts: 0,
            provisional: 0,
            late: 0,
            stray: 0,
            parse_errors: 0,
            send_errors: 0,
            acks: 0,
            auth_challenges: 0,
            auth_stale: 0,
            auth_cached: 0,
            latency_us: Histogram::new(3).expect("3 significant figures is a valid histogram"),
            conns: ConnStats::default(),
        }
    }

    /// Requests that did not get the expected answer in time.
    pub(crate) fn failures(&self) -> u64 {
        self.unexpected_status + self.bindings_mismatch + self.timeouts
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.sent += o.sent;
        self.retransmissions += o.retransmissions;
        self.answered += o.answered;
        self.ok += o.ok;
        for (a, b) in self.status.iter_mut().zip(&o.status) {
            *a += b;
        }
        self.unexpected_status += o.unexpected_status;
        self.bindings_mismatch += o.bindings_mismatch;
        self.timeouts += o.timeouts;
        self.provisional += o.provisional;
        self.late += o.late;
        self.stray += o.stray;
        self.parse_errors += o.parse_errors;
        self.send_errors += o.send_errors;
        self.acks += o.acks;
        self.auth_challenges += o.auth_challenges;
        self.auth_stale += o.auth_stale;
        self.auth_cached += o.auth_cached;
        self.conns.merge(&o.conns);
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.latency_us.add(&o.latency_us);
    }
}

/// What the stream transports (TCP, TLS) saw on their connections; all zero over UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnStats {
    /// Connections that completed the TCP handshake.
    pub(crate) connects: u64,
    /// Connections refused, reset or timed out before completing.
    pub(crate) connect_failures: u64,
    /// New connections made after one closed (lazily, on the next request for it).
    pub(crate) reconnects: u64,
    /// Connections the server closed (EOF or reset).
    pub(crate) closed_by_peer: u64,
    /// TLS handshakes completed, and of those, resumed ones (RFC 8446 §2.2).
    pub(crate) tls_handshakes: u64,
    pub(crate) tls_resumed: u64,
    /// TLS alerts and protocol errors (the connection is closed).
    pub(crate) tls_errors: u64,
    /// Responses with no `Content-Length` (RFC 3261 §18.3), counted, then the connection
    /// closed: nothing after them can be framed.
    pub(crate) missing_content_length: u64,
    /// Unparseable `Content-Length`, or a message over `frame::MESSAGE_BYTES_MAX`.
    pub(crate) bad_frames: u64,
    /// CRLF keep-alives received (RFC 5626 §4.4.1).
    pub(crate) keepalives: u64,
    /// Requests not queued because the connection's write queue was full or it was down.
    pub(crate) not_queued: u64,
    /// Connections up (and, for TLS, with the handshake done) when the phase ended.
    pub(crate) up_at_end: u64,
}

impl ConnStats {
    pub(crate) fn merge(&mut self, o: &Self) {
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.reconnects += o.reconnects;
        self.closed_by_peer += o.closed_by_peer;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_resumed += o.tls_resumed;
        self.tls_errors += o.tls_errors;
        self.missing_content_length += o.missing_content_length;
        self.bad_frames += o.bad_frames;
        self.keepalives += o.keepalives;
        self.not_queued += o.not_queued;
        self.up_at_end += o.up_at_end;
    }

    /// The figures as `"name":value` JSON members.
    pub(crate) fn json_members(&self) -> String {
        format!(
            "\"connects\":{},\"connect_failures\":{},\"reconnects\":{},\"closed_by_peer\":{},\"tls_handshakes\":{},\"tls_resumed\":{},\"tls_errors\":{},\"missing_content_length\":{},\"bad_frames\":{},\"keepalives\":{},\"not_queued\":{},\"up_at_end\":{}",
            self.connects,
            self.connect_failures,
            self.reconnects,
            self.closed_by_peer,
            self.tls_handshakes,
            self.tls_resumed,
            self.tls_errors,
            self.missing_content_length,
            self.bad_frames,
            self.keepalives,
            self.not_queued,
            self.up_at_end
        )
    }

    /// One line of the table.
    pub(crate) fn line(&self) -> String {
        format!(
            "connections  up {}  connected {}  failed {}  reconnects {}  closed by server {}  tls handshakes {} (resumed {})  tls errors {}  no content-length {}  bad frames {}  keep-alives {}  not queued {}",
            self.up_at_end,
            self.connects,
            self.connect_failures,
            self.reconnects,
            self.closed_by_peer,
            self.tls_handshakes,
            self.tls_resumed,
            self.tls_errors,
            self.missing_content_length,
            self.bad_frames,
            self.keepalives,
            self.not_queued
        )
    }
}

/// What `--handshake-flood` did beside the measured load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FloodStats {
    /// Target: new half-open TLS connections per second.
    pub(crate) rate: u32,
    /// Connections opened (TCP handshake done, ClientHello written).
    pub(crate) opened: u64,
    pub(crate) connect_failures: u64,
    /// Closed by the server (its handshake timeout, limit or reset).
    pub(crate) closed_by_server: u64,
    /// Closed by the flood itself to stay under `flood::OPEN_MAX` descriptors.
    pub(crate) recycled: u64,
    /// Still open when the run ended.
    pub(crate) open_at_end: u64,
}

impl FloodStats {
    pub(crate) fn json(&self) -> String {
        format!(
            "{{\"rate\":{},\"opened\":{},\"connect_failures\":{},\"closed_by_server\":{},\"recycled\":{},\"open_at_end\":{}}}",
            self.rate,
            self.opened,
            self.connect_failures,
            self.closed_by_server,
            self.recycled,
            self.open_at_end
        )
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "flood        {}/s half-open TLS: opened {}  failed {}  closed by server {}  recycled {}  open at end {}",
            self.rate,
            self.opened,
            self.connect_failures,
            self.closed_by_server,
            self.recycled,
            self.open_at_end
        )
    }
}

/// Live counters of one worker, read once a second by the progress line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Progress {
    pub(crate) sent: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) retransmissions: AtomicU64,
}

impl Progress {
    pub(crate) fn publish(&self, s: &Stats) {
        self.sent.store(s.sent, Ordering::Relaxed);
        self.answered.store(s.answered, Ordering::Relaxed);
        self.ok.store(s.ok, Ordering::Relaxed);
        self.failures.store(s.failures(), Ordering::Relaxed);
        self.timeouts.store(s.timeouts, Ordering::Relaxed);
        self.retransmissions
            .store(s.retransmissions, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(all: &[Self]) -> [u64; 6] {
        let mut t = [0u64; 6];
        for p in all {
            t[0] += p.sent.load(Ordering::Relaxed);
            t[1] += p.answered.load(Ordering::Relaxed);
            t[2] += p.ok.load(Ordering::Relaxed);
            t[3] += p.failures.load(Ordering::Relaxed);
            t[4] += p.timeouts.load(Ordering::Relaxed);
            t[5] += p.retransmissions.load(Ordering::Relaxed);
        }
        t
    }
}

/// Server CPU consumed during the measured phase.
#[derive(Clone, Debug)]
pub(crate) struct ServerCpu {
    pub(crate) pids: Vec<u32>,
    pub(crate) cpu: Duration,
}

/// Everything the final report shows.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) workers: usize,
    /// `udp`, `tcp` or `tls`.
    pub(crate) transport: &'static str,
    /// UDP sockets or stream connections per worker.
    pub(crate) channels: usize,
    pub(crate) rate_target: Option<f64>,
    pub(crate) window: u32,
    /// Send phase length (the denominator of every rate).
    pub(crate) elapsed: Duration,
    pub(crate) stats: Stats,
    pub(crate) prime: Option<(Stats, Duration)>,
    pub(crate) server_cpu: Option<ServerCpu>,
    /// CPU time of all workers in the measured phase.
    pub(crate) loadgen_cpu: Duration,
    pub(crate) flood: Option<FloodStats>,
}

fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

impl Report {
    fn quantiles(&self) -> [(&'static str, u64); 6] {
        let h = &self.stats.latency_us;
        [
            ("p50", h.value_at_quantile(0.50)),
            ("p90", h.value_at_quantile(0.90)),
            ("p99", h.value_at_quantile(0.99)),
            ("p99.9", h.value_at_quantile(0.999)),
            ("max", h.max()),
            ("mean", h.mean() as u64),
        ]
    }

    fn failure_ratio(&self) -> f64 {
        if self.stats.sent == 0 {
            0.0
        } else {
            self.stats.failures() as f64 / self.stats.sent as f64
        }
    }

    fn cpu_us_per_answered(&self) -> Option<f64> {
        let cpu = self.server_cpu.as_ref()?;
        if self.stats.answered == 0 {
            return None;
        }
        Some(cpu.cpu.as_secs_f64() * 1e6 / self.stats.answered as f64)
    }

    pub(crate) fn table(&self) -> String {
        let s = &self.stats;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {}  workers {}  {} {}/worker {}  {}",
            self.scenario,
            self.workers,
            self.transport,
            if self.transport == "udp" {
                "sockets"
            } else {
                "connections"
            },
            self.channels,
            match self.rate_target {
                Some(r) => format!("open loop {r:.0}/s"),
                None => format!("closed loop window {}/worker", self.window),
            }
        );
        if let Some((p, d)) = &self.prime {
            let _ = writeln!(
                o,
                "prime        {} registered ok of {} in {:.2} s ({} failed)",
                p.ok,
                p.sent,
                d.as_secs_f64(),
                p.failures()
            );
        }
        let _ = writeln!(o, "elapsed      {:.3} s", self.elapsed.as_secs_f64());
        let _ = writeln!(
            o,
            "offered      {} requests  {:.0}/s",
            s.sent,
            per_s(s.sent, self.elapsed)
        );
        let _ = writeln!(
            o,
            "answered     {}  ok {}  achieved {:.0}/s",
            s.answered,
            s.ok,
            per_s(s.ok, self.elapsed)
        );
        let _ = writeln!(
            o,
            "failures     {} ({:.4} %)",
            s.failures(),
            self.failure_ratio() * 100.0
        );
        for (code, &n) in s.status.iter().enumerate().filter(|&(_, &n)| n > 0) {
            let label = if code == 0 {
                "echo".to_string()
            } else {
                code.to_string()
            };
            let _ = writeln!(o, "  status {label:<5} {n}");
        }
        let _ = writeln!(
            o,
            "unexpected   status {}  bindings {}  timeouts {}  retransmissions {}",
            s.unexpected_status, s.bindings_mismatch, s.timeouts, s.retransmissions
        );
        let _ = writeln!(
            o,
            "other        provisional {}  late {}  stray {}  parse errors {}  send errors {}  acks {}",
            s.provisional, s.late, s.stray, s.parse_errors, s.send_errors, s.acks
        );
        if s.auth_challenges + s.auth_cached > 0 {
            let _ = writeln!(
                o,
                "auth         401 answered {} (stale {})  kept nonce used {}  REGISTERs on the wire {}",
                s.auth_challenges,
                s.auth_stale,
                s.auth_cached,
                s.sent + s.auth_challenges
            );
        }
        if self.transport != "udp" {
            let _ = writeln!(o, "{}", s.conns.line());
        }
        if let Some(f) = &self.flood {
            let _ = writeln!(o, "{}", f.line());
        }
        let _ = writeln!(
            o,
            "loadgen cpu  {:.3} s: {:.0} answered per CPU-second ({:.2} µs per request)",
            self.loadgen_cpu.as_secs_f64(),
            per_s(s.answered, self.loadgen_cpu),
            self.loadgen_cpu.as_secs_f64() * 1e6 / s.answered.max(1) as f64
        );
        let q = self.quantiles();
        let _ = write!(o, "latency µs  ");
        for (name, v) in q {
            let _ = write!(o, " {name} {v}");
        }
        let _ = writeln!(o);
        if let Some(cpu) = &self.server_cpu {
            let _ = writeln!(
                o,
                "server cpu   {:.3} s over pids {:?}: {:.2} µs per answered request",
                cpu.cpu.as_secs_f64(),
                cpu.pids,
                self.cpu_us_per_answered().unwrap_or(0.0)
            );
        }
        o
    }

    /// One JSON object, one line. Hand-written: every value is a number or a fixed name, so
    /// no escaping is needed and no serializer dependency is pulled in.
    pub(crate) fn json(&self) -> String {
        let s = &self.stats;
        let mut o = String::new();
        let _ = write!(
            o,
            "{{\"scenario\":\"{}\",\"workers\":{},\"transport\":\"{}\",\"sockets\":{}",
            self.scenario, self.workers, self.transport, self.channels
        );
        match self.rate_target {
            Some(r) => {
                let _ = write!(o, ",\"rate_target\":{r}");
            }
            None => {
                let _ = write!(o, ",\"rate_target\":null");
            }
        }
        let _ = write!(
            o,
            ",\"window\":{},\"elapsed_s\":{:.6}",
            self.window,
            self.elapsed.as_secs_f64()
        );
        let _ = write!(
            o,
            ",\"sent\":{},\"offered_per_s\":{:.1},\"answered\":{},\"ok\":{},\"achieved_per_s\":{:.1}",
            s.sent,
            per_s(s.sent, self.elapsed),
            s.answered,
            s.ok,
            per_s(s.ok, self.elapsed)
        );
        let _ = write!(
            o,
            ",\"failures\":{},\"failure_ratio\":{:.6}",
            s.failures(),
            self.failure_ratio()
        );
        let _ = write!(
            o,
            ",\"unexpected_status\":{},\"bindings_mismatch\":{},\"timeouts\":{},\"retransmissions\":{}",
            s.unexpected_status, s.bindings_mismatch, s.timeouts, s.retransmissions
        );
        let _ = write!(
            o,
            ",\"provisional\":{},\"late\":{},\"stray\":{},\"parse_errors\":{},\"send_errors\":{},\"acks\":{}",
            s.provisional, s.late, s.stray, s.parse_errors, s.send_errors, s.acks
        );
        let _ = write!(
            o,
            ",\"auth_challenges\":{},\"auth_stale\":{},\"auth_cached\":{}",
            s.auth_challenges, s.auth_stale, s.auth_cached
        );
        o.push_str(",\"status\":{");
        let mut first = true;
        for (code, &n) in s.status.iter().enumerate().filter(|&(_, &n)| n > 0) {
            let label = if code == 0 {
                "echo".to_string()
            } else {
                code.to_string()
            };
            let _ = write!(o, "{}\"{label}\":{n}", if first { "" } else { "," });
            first = false;
        }
        o.push_str("},\"latency_us\":{");
        for (i, (name, v)) in self.quantiles().iter().enumerate() {
            let _ = write!(o, "{}\"{name}\":{v}", if i == 0 { "" } else { "," });
        }
        o.push('}');
        let _ = write!(
            o,
            ",\"loadgen_cpu_s\":{:.3},\"loadgen_answered_per_cpu_s\":{:.1}",
            self.loadgen_cpu.as_secs_f64(),
            per_s(s.answered, self.loadgen_cpu)
        );
        if let Some((p, d)) = &self.prime {
            let _ = write!(
                o,
                ",\"prime\":{{\"sent\":{},\"ok\":{},\"failures\":{},\"elapsed_s\":{:.6}}}",
                p.sent,
                p.ok,
                p.failures(),
                d.as_secs_f64()
            );
        }
        if self.transport != "udp" {
            let _ = write!(o, ",\"connections\":{{{}}}", s.conns.json_members());
        }
        if let Some(f) = &self.flood {
            let _ = write!(o, ",\"flood\":{}", f.json());
        }
        if let Some(cpu) = &self.server_cpu {
            let pids: Vec<String> = cpu.pids.iter().map(u32::to_string).collect();
            let _ = write!(
                o,
                ",\"server_cpu\":{{\"pids\":[{}],\"cpu_s\":{:.3},\"us_per_answered\":{:.3}}}",
                pids.join(","),
                cpu.cpu.as_secs_f64(),
                self.cpu_us_per_answered().unwrap_or(0.0)
            );
        }
        o.push('}');
        o
    }
}

/// utime+stime of one process (all its threads), from /proc/PID/stat.
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat_cpu(&stat, clock_ticks_per_s())
}

fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Fields 14 and 15 (utime, stime, in clock ticks) counted after the `)` that ends the
/// command name, which may itself contain spaces and parentheses.
pub(crate) fn parse_proc_stat_cpu(stat: &str, ticks_per_s: u64) -> Option<Duration> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_micros(
        (utime + stime) * 1_000_000 / ticks_per_s.max(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut s = Stats::new();
        s.sent = 1000;
        s.answered = 998;
        s.ok = 997;
        s.status[200] = 997;
        s.status[500] = 1;
        s.unexpected_status = 1;
        s.timeouts = 2;
        for v in 1..=1000 {
            s.latency_us.record(v).unwrap();
        }
        Report {
            scenario: "register",
            workers: 1,
            transport: "udp",
            channels: 4,
            rate_target: Some(1000.0),
            window: 64,
            elapsed: Duration::from_secs(1),
            stats: s,
            prime: None,
            server_cpu: Some(ServerCpu {
                pids: vec![42],
                cpu: Duration::from_millis(998),
            }),
            loadgen_cpu: Duration::from_millis(500),
            flood: None,
        }
    }

    #[test]
    fn json_is_one_line_with_the_figures_scripts_read() {
        let j = report().json();
        assert!(!j.contains('\n'));
        for needle in [
            "\"sent\":1000",
            "\"ok\":997",
            "\"achieved_per_s\":997.0",
            "\"failures\":3",
            "\"status\":{\"200\":997,\"500\":1}",
            "\"p50\":500",
            "\"max\":1000",
            "\"us_per_answered\":1000.000",
            "\"loadgen_answered_per_cpu_s\":1996.0",
        ] {
            assert!(j.contains(needle), "missing {needle} in {j}");
        }
        assert!(j.starts_with('{') && j.ends_with('}'));
    }

    #[test]
    fn table_lists_each_status_and_the_quantiles() {
        let t = report().table();
        assert!(
            t.contains("status 200   997") && t.contains("status 500   1"),
            "{t}"
        );
        assert!(
            t.contains("p99.9 999") && t.contains("failures     3 (0.3000 %)"),
            "{t}"
        );
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = report().stats;
        let b = report().stats;
        a.merge(&b);
        assert_eq!(
            (a.sent, a.status[200], a.latency_us.len()),
            (2000, 1994, 2000)
        );
    }

    #[test]
    fn proc_stat_cpu_handles_odd_command_names() {
        let stat = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse_proc_stat_cpu(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(parse_proc_stat_cpu("garbage", 100), None);
        let me = process_cpu(std::process::id());
        assert!(me.is_some(), "our own /proc/PID/stat parses");
    }
}
