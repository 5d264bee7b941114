//! The NAT flags (issue 17): `--nat-alias` (what a 302 Contact carries) and the
//! keep-alive pings of UDP bindings (`--nat-ping-interval`, `--nat-ping-method`,
//! `--nat-ping-max-lost`). Stage one is [`NatArgs`], flattened into `Args`; stage two
//! is [`resolve`], which bounds every value and names the flag it refuses.

use clap::{Args as ClapArgs, ValueEnum};

use super::ConfigError;
use crate::registrar::{AliasMode, NatConfig, PingMethod};

/// Largest `--nat-ping-interval`, in seconds (an hour: NAT pinholes close in minutes).
pub const NAT_PING_INTERVAL_S_MAX: u64 = 3600;
/// Largest `--nat-ping-max-lost`.
pub const NAT_PING_MAX_LOST_MAX: u32 = 100;

/// The NAT flags, as typed.
#[derive(Debug, Clone, ClapArgs)]
pub struct NatArgs {
    /// When a 302 Contact carries the binding's source as `;alias=ip~port~proto`
    /// (Kamailio's `handle_ruri_alias` form): always, when the source differs from the
    /// Contact's host, port or transport, or never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = NatAliasArg::Differs)]
    pub nat_alias: NatAliasArg,

    /// Keep-alive interval of each UDP binding, in seconds (0..=3600; 0: no pings).
    /// Each shard pings the bindings it owns, spread evenly over the interval.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub nat_ping_interval: u64,

    /// What a ping is: crlf (a CRLFCRLF datagram, never answered) or options (a SIP
    /// OPTIONS request; unanswered ones are counted and remove the binding).
    #[arg(long, value_enum, value_name = "METHOD", default_value_t = NatPingMethodArg::Options)]
    pub nat_ping_method: NatPingMethodArg,

    /// Consecutive unanswered OPTIONS pings after which a binding is removed (1..=100).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub nat_ping_max_lost: u32,
}

/// `--nat-alias` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NatAliasArg {
    /// On every Contact.
    Always,
    /// When the source differs from the Contact.
    Differs,
    /// Never.
    Never,
}

/// `--nat-ping-method` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NatPingMethodArg {
    /// CRLFCRLF (RFC 5626 §3.5.1).
    Crlf,
    /// SIP OPTIONS.
    Options,
}

/// The validated NAT settings.
pub fn resolve(args: &NatArgs) -> Result<NatConfig, ConfigError> {
    if args.nat_ping_interval > NAT_PING_INTERVAL_S_MAX {
        return Err(ConfigError::new(
            "--nat-ping-interval",
            format!(
                "{} s is more than the {NAT_PING_INTERVAL_S_MAX} s allowed",
                args.nat_ping_interval
            ),
        ));
    }
    if args.nat_ping_max_lost == 0 || args.nat_ping_max_lost > NAT_PING_MAX_LOST_MAX {
        return Err(ConfigError::new(
            "--nat-ping-max-lost",
            format!(
                "{} is outside 1..={NAT_PING_MAX_LOST_MAX}",
                args.nat_ping_max_lost
            ),
        ));
    }
    Ok(NatConfig {
        alias: match args.nat_alias {
            NatAliasArg::Always => AliasMode::Always,
            NatAliasArg::Differs => AliasMode::Differs,
            NatAliasArg::Never => AliasMode::Never,
        },
        ping_interval_ms: args.nat_ping_interval * 1000,
        ping_method: match args.nat_ping_method {
            NatPingMethodArg::Crlf => PingMethod::Crlf,
            NatPingMethodArg::Options => PingMethod::Options,
        },
        ping_max_lost: args.nat_ping_max_lost,
    })
}
