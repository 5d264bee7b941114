//! `--listen` schemes and the TCP limits (RFC 3261 §18: SIP over TCP).
//!
//! `--listen` takes `ADDR:PORT` (UDP, the default scheme), `udp:ADDR:PORT`,
//! `tcp:ADDR:PORT` or `tls:ADDR:PORT`. The addresses of each transport are kept apart, each in flag order: a
//! request's listen index (`Source::listen`) counts among the addresses of its own
//! transport, so the UDP sockets keep the indices they had before TCP existed.
//!
//! Every TCP limit is a flag with its unit, bounded here: a connection costs a read
//! buffer of `--tcp-read-buffer-bytes` (which is also the largest message it may carry,
//! 513 past it), so `--tcp-connections-max` × that is a core's worst case.

use std::net::SocketAddr;

use super::{ConfigError, LISTEN_ADDRS_MAX};
use crate::sip::limits::STREAM_MESSAGE_BYTES_MAX;

/// Default `--tcp-connections-max`, per core: 4096 × 16 KiB read buffers is 64 MiB.
pub const TCP_CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Largest `--tcp-connections-max`, per core (a slot index travels as a `u32`; this
/// keeps a core's read buffers in the tens of GiB at the very worst).
pub const TCP_CONNECTIONS_MAX: usize = 1_000_000;
/// Smallest `--tcp-read-buffer-bytes`: room for a minimal REGISTER.
pub const TCP_READ_BUFFER_BYTES_MIN: usize = 1024;
/// Largest `--tcp-read-buffer-bytes`: the parser's message bound.
pub const TCP_READ_BUFFER_BYTES_MAX: usize = STREAM_MESSAGE_BYTES_MAX;
/// What the default `--tcp-idle-timeout-s` adds to `--max-expires`, in seconds: a
/// client that refreshes at the longest interval granted keeps its connection.
pub const TCP_IDLE_MARGIN_S: u64 = 300;
/// Largest `--tcp-idle-timeout-s` (a day past the longest `--max-expires`).
pub const TCP_IDLE_TIMEOUT_S_MAX: u64 = super::EXPIRES_S_MAX as u64 + 24 * 3600;
/// Default `--tcp-header-timeout-ms`.
pub const TCP_HEADER_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Bounds of `--tcp-header-timeout-ms`.
pub const TCP_HEADER_TIMEOUT_MS_MIN: u64 = 50;
/// Largest `--tcp-header-timeout-ms` (ten minutes).
pub const TCP_HEADER_TIMEOUT_MS_MAX: u64 = 600_000;

/// Default `--tcp-messages-per-s`, per connection: far above a UA's few messages, and
/// room for an edge proxy's trunk of many UAs.
pub const TCP_MESSAGES_PER_S_DEFAULT: u32 = 5000;
/// Largest `--tcp-messages-per-s`.
pub const TCP_MESSAGES_PER_S_MAX: u32 = 1_000_000;

/// The validated TCP settings (per core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// Open connections per core; one more is accepted and closed at once.
    pub connections_max: usize,
    /// Read buffer per connection, in bytes: also the largest message (513 past it).
    pub read_buffer_bytes: usize,
    /// A connection with no byte in either direction for this long is closed, in ms.
    pub idle_timeout_ms: u64,
    /// A message begun but not complete for this long closes its connection, in ms.
    pub header_timeout_ms: u64,
    /// Messages taken off one connection per second, at most; past it the connection
    /// is not read until the second is over (TCP's flow control holds the sender).
    pub messages_per_s: u32,
}

/// The `--listen` addresses by transport, each in flag order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listens {
    /// UDP addresses (no scheme, or `udp:`).
    pub udp: Vec<SocketAddr>,
    /// TCP addresses (`tcp:`).
    pub tcp: Vec<SocketAddr>,
    /// TLS addresses (`tls:`): TCP connections carrying TLS (RFC 3261 §26.2.1).
    pub tls: Vec<SocketAddr>,
}

/// Parse `--listen` values; none given: UDP on 0.0.0.0:5060.
pub fn parse_listens(raw: &[String]) -> Result<Listens, ConfigError> {
    let mut out = Listens {
        udp: Vec::new(),
        tcp: Vec::new(),
        tls: Vec::new(),
    };
    if raw.is_empty() {
        out.udp.push(SocketAddr::from(([0, 0, 0, 0], 5060)));
        return Ok(out);
    }
    if raw.len() > LISTEN_ADDRS_MAX {
        return Err(ConfigError::new(
            "--listen",
            format!("at most {LISTEN_ADDRS_MAX} addresses, got {}", raw.len()),
        ));
    }
    for text in raw {
        let (list, rest) = match text.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tcp") => (&mut out.tcp, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("udp") => (&mut out.udp, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tls") => (&mut out.tls, rest),
            _ => (&mut out.udp, text.as_str()),
        };
        let addr: SocketAddr = rest.parse().map_err(|_| {
            ConfigError::new(
                "--listen",
                format!("'{text}' is not [udp:|tcp:|tls:]ADDR:PORT (e.g. 0.0.0.0:5060, tcp:[::1]:5060, tls:0.0.0.0:5061)"),
            )
        })?;
        if list.contains(&addr) {
            return Err(ConfigError::new(
                "--listen",
                format!("{text} is given twice"),
            ));
        }
        list.push(addr);
    }
    Ok(out)
}

/// Validate the TCP flags; `max_expires_s` sets the default idle timeout.
pub fn resolve(
    connections_max: usize,
    read_buffer_bytes: usize,
    idle_timeout_s: Option<u64>,
    header_timeout_ms: u64,
    messages_per_s: u32,
    max_expires_s: u32,
) -> Result<TcpConfig, ConfigError> {
    if messages_per_s == 0 || messages_per_s > TCP_MESSAGES_PER_S_MAX {
        return Err(ConfigError::new(
            "--tcp-messages-per-s",
            format!(
                "must be 1..={TCP_MESSAGES_PER_S_MAX} messages per second per connection, got \
                 {messages_per_s}"
            ),
        ));
    }
    if connections_max == 0 || connections_max > TCP_CONNECTIONS_MAX {
        return Err(ConfigError::new(
            "--tcp-connections-max",
            format!("must be 1..={TCP_CONNECTIONS_MAX} per core, got {connections_max}"),
        ));
    }
    if !(TCP_READ_BUFFER_BYTES_MIN..=TCP_READ_BUFFER_BYTES_MAX).contains(&read_buffer_bytes) {
        return Err(ConfigError::new(
            "--tcp-read-buffer-bytes",
            format!(
                "must be {TCP_READ_BUFFER_BYTES_MIN}..={TCP_READ_BUFFER_BYTES_MAX} bytes (the \
                 largest message a connection may carry), got {read_buffer_bytes}"
            ),
        ));
    }
    let idle_timeout_s =
        idle_timeout_s.unwrap_or(u64::from(max_expires_s).saturating_add(TCP_IDLE_MARGIN_S));
    if idle_timeout_s == 0 || idle_timeout_s > TCP_IDLE_TIMEOUT_S_MAX {
        return Err(ConfigError::new(
            "--tcp-idle-timeout-s",
            format!("must be 1..={TCP_IDLE_TIMEOUT_S_MAX} seconds, got {idle_timeout_s}"),
        ));
    }
    if !(TCP_HEADER_TIMEOUT_MS_MIN..=TCP_HEADER_TIMEOUT_MS_MAX).contains(&header_timeout_ms) {
        return Err(ConfigError::new(
            "--tcp-header-timeout-ms",
            format!(
                "must be {TCP_HEADER_TIMEOUT_MS_MIN}..={TCP_HEADER_TIMEOUT_MS_MAX} ms, got \
                 {header_timeout_ms}"
            ),
        ));
    }
    Ok(TcpConfig {
        connections_max,
        read_buffer_bytes,
        idle_timeout_ms: idle_timeout_s * 1000,
        header_timeout_ms,
        messages_per_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listens(raw: &[&str]) -> Result<Listens, ConfigError> {
        parse_listens(&raw.iter().map(ToString::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn schemes_split_by_transport_in_flag_order() {
        let l = listens(&[
            "tcp:127.0.0.1:5080",
            "127.0.0.1:5080",
            "UDP:[::1]:5080",
            "TCP:[::1]:5081",
        ])
        .unwrap();
        assert_eq!(l.udp.len(), 2);
        assert!(l.udp[1].is_ipv6());
        assert_eq!(
            l.tcp,
            vec![
                "127.0.0.1:5080".parse::<SocketAddr>().unwrap(),
                "[::1]:5081".parse().unwrap()
            ]
        );
        // The same address on both transports is two listeners, not a repeat.
        assert!(listens(&["tcp:1.2.3.4:5", "1.2.3.4:5"]).is_ok());
        let l = listens(&["tls:127.0.0.1:5061", "TLS:[::1]:5061"]).unwrap();
        assert_eq!((l.tls.len(), l.tcp.len(), l.udp.len()), (2, 0, 0));
        assert_eq!(
            listens(&["tls:1.2.3.4:5", "tls:1.2.3.4:5"])
                .unwrap_err()
                .flag,
            "--listen"
        );
        for bad in [
            &["tcp:1.2.3.4:5", "tcp:1.2.3.4:5"][..],
            &["sctp:1.2.3.4:5"],
            &["tcp:localhost:5060"],
            &["tcp:"],
            &["tcp:1.2.3.4"],
        ] {
            assert_eq!(listens(bad).unwrap_err().flag, "--listen", "{bad:?}");
        }
    }

    #[test]
    fn limits_defaults_and_bounds() {
        let c = resolve(4096, 16_384, None, 10_000, 5000, 3600).unwrap();
        assert_eq!(c.idle_timeout_ms, (3600 + TCP_IDLE_MARGIN_S) * 1000);
        assert_eq!(
            resolve(1, 1024, Some(1), 50, 5000, 60)
                .unwrap()
                .idle_timeout_ms,
            1000
        );
        let flag = |r: Result<TcpConfig, ConfigError>| r.unwrap_err().flag;
        assert_eq!(
            flag(resolve(0, 16_384, None, 10_000, 5000, 60)),
            "--tcp-connections-max"
        );
        assert_eq!(
            flag(resolve(
                TCP_CONNECTIONS_MAX + 1,
                16_384,
                None,
                10_000,
                5000,
                60
            )),
            "--tcp-connections-max"
        );
        assert_eq!(
            flag(resolve(1, 1023, None, 10_000, 5000, 60)),
            "--tcp-read-buffer-bytes"
        );
        assert_eq!(
            flag(resolve(
                1,
                TCP_READ_BUFFER_BYTES_MAX + 1,
                None,
                10_000,
                5000,
                60
            )),
            "--tcp-read-buffer-bytes"
        );
        assert_eq!(
            flag(resolve(1, 1024, Some(0), 10_000, 5000, 60)),
            "--tcp-idle-timeout-s"
        );
        assert_eq!(
            flag(resolve(1, 1024, None, 49, 5000, 60)),
            "--tcp-header-timeout-ms"
        );
        assert_eq!(
            flag(resolve(
                1,
                1024,
                None,
                TCP_HEADER_TIMEOUT_MS_MAX + 1,
                5000,
                60
            )),
            "--tcp-header-timeout-ms"
        );
        assert_eq!(
            flag(resolve(1, 1024, None, 10_000, 0, 60)),
            "--tcp-messages-per-s"
        );
        assert_eq!(
            flag(resolve(
                1,
                1024,
                None,
                10_000,
                TCP_MESSAGES_PER_S_MAX + 1,
                60
            )),
            "--tcp-messages-per-s"
        );
    }
}
