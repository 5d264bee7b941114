//! `sipreg ctl`: the operator's terminal client for the management API (issue 7), in
//! the same binary as the server (OpenSIPS' `opensips-cli -x mi ul_*` equivalent).
//!
//! It only speaks HTTP to `--admin` (HTTP/1.0 over a `TcpStream`: one request per
//! connection is all a one-shot CLI needs, so no HTTP client crate), so it works
//! against any running sipreg and shares no state with it. Tables by default, `--json` for the raw API answers.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// How long one API call may take, in seconds.
pub const CTL_TIMEOUT_S: u64 = 10;

/// `sipreg ctl` flags.
#[derive(Debug, Parser)]
#[command(
    name = "sipreg ctl",
    bin_name = "sipreg ctl",
    about = "Inspect and change a running sipreg through its management API"
)]
pub struct CtlArgs {
    /// The server's management API (its --admin).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9060")]
    pub admin: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `sipreg ctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The bindings of one AOR (user@domain).
    Show {
        /// user@domain
        aor: String,
    },
    /// Every AOR and binding, page by page.
    Dump {
        /// AORs per API call (the server caps it at 1000).
        #[arg(long, default_value_t = 500)]
        page: usize,
    },
    /// Remove an AOR's bindings, or one contact's.
    Rm {
        /// user@domain
        aor: String,
        /// Only this Contact URI.
        contact: Option<String>,
    },
    /// Per-core and total counters.
    Stats,
}

/// Run `sipreg ctl` with `args` (without the leading `sipreg ctl`).
pub fn main(args: CtlArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipreg ctl: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &CtlArgs) -> Result<(), String> {
    let base = format!("http://{}", args.admin);
    match &args.command {
        CtlCommand::Show { aor } => {
            let v = call("GET", &format!("{base}/v1/aors/{}", encode(aor)))?;
            if args.json {
                println!("{v}");
            } else {
                print_bindings(&v, false);
            }
        }
        CtlCommand::Dump { page } => {
            let mut cursor = String::new();
            let mut header = !args.json;
            loop {
                let v = call(
                    "GET",
                    &format!("{base}/v1/aors?limit={page}&cursor={}", encode(&cursor)),
                )?;
                if args.json {
                    println!("{v}");
                } else {
                    if header {
                        println!("{}", binding_header(true));
                        header = false;
                    }
                    for aor in v["aors"].as_array().into_iter().flatten() {
                        print_rows(aor, true);
                    }
                }
                match v["next"].as_str() {
                    Some(next) => cursor = next.to_string(),
                    None => break,
                }
            }
        }
        CtlCommand::Rm { aor, contact } => {
            let url = match contact {
                Some(c) => format!(
                    "{base}/v1/aors/{}/bindings?contact={}",
                    encode(aor),
                    encode(c)
                ),
                None => format!("{base}/v1/aors/{}", encode(aor)),
            };
            let v = call("DELETE", &url)?;
            if args.json {
                println!("{v}");
            } else {
                println!("removed {} binding(s)", v["removed"]);
            }
        }
        CtlCommand::Stats => {
            let v = call("GET", &format!("{base}/v1/stats"))?;
            if args.json {
                println!("{v}");
            } else {
                print_stats(&v);
            }
        }
    }
    Ok(())
}

/// One API call; an HTTP error becomes its JSON `error` message.
fn call(method: &str, url: &str) -> Result<Value, String> {
    let (status, body) = http(method, url)
        .map_err(|e| format!("{method} {url}: {e} (is sipreg running with --admin?)"))?;
    let value: Value =
        serde_json::from_str(&body).map_err(|_| format!("HTTP {status}: unexpected answer"))?;
    if status >= 400 {
        let message = value["error"].as_str().unwrap_or("unknown error");
        return Err(format!("HTTP {status}: {message}"));
    }
    Ok(value)
}

/// A minimal HTTP/1.0 exchange over `std::net::TcpStream` (one request per
/// connection, no chunking: the server answers with a Content-Length or closes), so
/// the CLI needs no HTTP crate. `url` is `http://ADDR:PORT/path?query`.
fn http(method: &str, url: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Error, Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::other("only http:// URLs"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = host
        .parse::<std::net::SocketAddr>()
        .map_err(|_| Error::other("--admin must be ADDR:PORT"))?;
    let timeout = Duration::from_secs(CTL_TIMEOUT_S);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| Error::other("truncated HTTP answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::other("malformed HTTP status line"))?;
    Ok((status, body.to_string()))
}

/// Percent-encode everything but unreserved characters and `@ : +`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:+".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn binding_header(with_aor: bool) -> String {
    let aor = if with_aor {
        format!("{:<32} ", "AOR")
    } else {
        String::new()
    };
    format!(
        "{aor}{:<40} {:>7} {:>5} {:<22} {:<24} {:>6} USER-AGENT",
        "CONTACT", "EXPIRES", "Q", "SOURCE", "CALL-ID", "CSEQ"
    )
}

fn print_bindings(aor: &Value, with_aor: bool) {
    println!("{}", binding_header(with_aor));
    print_rows(aor, with_aor);
}

fn print_rows(aor: &Value, with_aor: bool) {
    let name = aor["aor"].as_str().unwrap_or("");
    for b in aor["bindings"].as_array().into_iter().flatten() {
        let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
        let q = b["q"]
            .as_f64()
            .map_or("-".to_string(), |q| format!("{q:.3}"));
        let prefix = if with_aor {
            format!("{name:<32} ")
        } else {
            String::new()
        };
        println!(
            "{prefix}{:<40} {:>7} {:>5} {:<22} {:<24} {:>6} {}",
            s("contact"),
            b["expires"],
            q,
            s("source"),
            s("call_id"),
            b["cseq"],
            s("user_agent"),
        );
    }
}

fn print_stats(v: &Value) {
    let cores = v["cores"].as_array().cloned().unwrap_or_default();
    let mut header = format!("{:<32} {:>12}", "COUNTER", "TOTAL");
    for c in &cores {
        header.push_str(&format!(" {:>12}", format!("core{}", c["core"])));
    }
    println!("{header}");
    let Some(total) = v["total"].as_object() else {
        return;
    };
    for (name, value) in total {
        let mut line = format!("{name:<32} {value:>12}");
        for c in &cores {
            line.push_str(&format!(" {:>12}", c[name.as_str()]));
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_and_query_parts() {
        assert_eq!(encode("alice@example.com"), "alice@example.com");
        assert_eq!(encode("sip:a@b;transport=udp"), "sip:a@b%3Btransport%3Dudp");
        assert_eq!(encode("1.20"), "1.20");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
