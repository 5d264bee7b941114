//! The `sipreg` binary: flags -> validated [`Config`] -> [`server::run`] -> exit code;
//! or `sipreg ctl ...`, the management client (see [`sipreg::ctl`]).
//!
//! Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for a flag error (clap's
//! own convention, which we follow for our validation too), 1 when the server cannot
//! start or fails while running. Every failure is one line on stderr that names the
//! cause; no panic, no backtrace.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use sipreg::config::{Args, Config, LogFormat};
use sipreg::ctl::{self, CtlArgs};
use sipreg::server;

fn main() -> ExitCode {
    // `sipreg ctl ...` is the client; anything else is the server, so that every
    // existing `sipreg --flag` command line keeps working.
    if std::env::args_os().nth(1).is_some_and(|a| a == "ctl") {
        return ctl::main(CtlArgs::parse_from(std::env::args_os().skip(1)));
    }
    let matches = Args::command()
        .after_help("Management client: `sipreg ctl --help` (show, dump, rm, stats).")
        .get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let config = match Config::try_from(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sipreg: error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level.as_tracing(), config.log_format);
    match server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipreg: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: tracing::Level, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Plain => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
