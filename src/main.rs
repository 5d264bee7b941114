//! The `sipreg` binary: flags -> validated [`Config`] -> [`runtime::run`] -> exit code.
//!
//! Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for a flag error (clap's
//! own convention, which we follow for our validation too), 1 when the server cannot
//! start or fails while running. Every failure is one line on stderr that names the
//! cause; no panic, no backtrace.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sipreg::config::{Args, Config};
use sipreg::runtime;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::try_from(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sipreg: error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level.as_tracing());
    match runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipreg: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: tracing::Level) {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
