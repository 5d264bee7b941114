//! `sipreg ctl`: the operator's terminal client for the management API (issue 7), in
//! the same binary as the server (OpenSIPS' `opensips-cli -x mi ul_*` equivalent).
//!
//! It only speaks HTTP to `--admin` (HTTP/1.0 over a `TcpStream`: one request per
//! connection is all a one-shot CLI needs, so no HTTP client crate), so it works
//! against any running sipreg and shares no state with it. Tables by default, `--json` for the raw API answers.
//!
//! Output goes through one locked, buffered stdout and every write is checked: in a
//! pipe (`sipreg ctl dump | head`) a reader that has gone away ends the command quietly
//! with status 0, as ripgrep does, instead of `println!`'s panic and backtrace. Table
//! cells are formatted as strings (`serde_json::Value`'s `Display` ignores width and
//! alignment, which is what misaligned the columns of `ctl stats`, issue 14), and each
//! column is as wide as its widest cell, so a long contact or Call-ID does not push the
//! columns after it out from under their titles. `dump` streams page by page: its
//! widths only grow, and the header is written again above the first page that widened
//! a column.

use std::io::{self, Write};
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

/// Why `sipreg ctl` stopped.
#[derive(Debug)]
pub enum CtlError {
    /// The API call failed or its answer was not what was expected (status 1).
    Api(String),
    /// Writing the answer failed. A closed pipe is not an error (status 0).
    Output(io::Error),
}

impl From<io::Error> for CtlError {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}

impl From<String> for CtlError {
    fn from(e: String) -> Self {
        Self::Api(e)
    }
}

/// Run `sipreg ctl` with `args` (without the leading `sipreg ctl`).
pub fn main(args: CtlArgs) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match run(&args, &mut out).and_then(|()| out.flush().map_err(CtlError::Output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_code(&e),
    }
}

/// The exit status for `e`, after saying why on stderr (unless the reader left).
fn exit_code(e: &CtlError) -> ExitCode {
    match e {
        // The reader of a pipe has gone (`| head`): nothing more is wanted, which is
        // success, as for ripgrep (its `main`) and coreutils under SIGPIPE's default.
        CtlError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        CtlError::Output(e) => {
            eprintln!("sipreg ctl: error: writing the answer: {e}");
            ExitCode::from(1)
        }
        CtlError::Api(e) => {
            eprintln!("sipreg ctl: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &CtlArgs, out: &mut impl Write) -> Result<(), CtlError> {
    let base = format!("http://{}", args.admin);
    match &args.command {
        CtlCommand::Show { aor } => {
            let v = call("GET", &format!("{base}/v1/aors/{}", encode(aor)))?;
            if args.json {
                writeln!(out, "{v}")?;
            } else {
                print_bindings(out, &v, false)?;
            }
        }
        CtlCommand::Dump { page } => {
            let mut cursor = String::new();
            let mut widths = Widths::of(BINDING_TITLES_WITH_AOR);
            loop {
                let v = call(
                    "GET",
                    &format!("{base}/v1/aors?limit={page}&cursor={}", encode(&cursor)),
                )?;
                if args.json {
                    writeln!(out, "{v}")?;
                } else {
                    let rows: Vec<Vec<String>> = v["aors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|aor| binding_rows(aor, true))
                        .collect();
                    // Widths only grow, and the header is written again when they
                    // do: every row sits under the last header above it.
                    if widths.fit(&rows) {
                        write_row(out, &widths, BINDING_TITLES_WITH_AOR.iter().map(|t| t.0))?;
                    }
                    for row in &rows {
                        write_row(out, &widths, row.iter().map(String::as_str))?;
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
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "removed {} binding(s)", v["removed"])?;
            }
        }
        CtlCommand::Stats => {
            let v = call("GET", &format!("{base}/v1/stats"))?;
            if args.json {
                writeln!(out, "{v}")?;
            } else {
                print_stats(out, &v)?;
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
fn http(method: &str, url: &str) -> io::Result<(u16, String)> {
    use std::io::{Error, Read};
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

/// How a column's cells sit in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left, so that digits line up.
    Right,
}

/// The binding table's columns: `dump` shows them all, `show` all but the AOR (the
/// first), so one list names them.
const BINDING_TITLES_WITH_AOR: &[(&str, Align)] = &[
    ("AOR", Align::Left),
    ("CONTACT", Align::Left),
    ("EXPIRES", Align::Right),
    ("Q", Align::Right),
    ("SOURCE", Align::Left),
    ("FLOW", Align::Left),
    ("CALL-ID", Align::Left),
    ("CSEQ", Align::Right),
    ("USER-AGENT", Align::Left),
];
/// `show`'s columns: the same without the AOR.
const BINDING_TITLES: &[(&str, Align)] = match BINDING_TITLES_WITH_AOR.split_first() {
    Some((_, rest)) => rest,
    None => &[],
};

/// Column widths that fit every cell written so far, titles included: a contact or
/// Call-ID of any length keeps the columns after it under their titles.
#[derive(Debug)]
struct Widths {
    aligns: Vec<Align>,
    chars: Vec<usize>,
    /// Nothing written yet: the first `fit` asks for a header.
    fresh: bool,
}

impl Widths {
    fn of(titles: &[(&str, Align)]) -> Self {
        Self {
            aligns: titles.iter().map(|t| t.1).collect(),
            chars: titles.iter().map(|t| t.0.chars().count()).collect(),
            fresh: true,
        }
    }

    /// Widen to fit `rows`; true when a header is due (the first call, or a column
    /// grew, so that the header above the rows is at their widths).
    fn fit(&mut self, rows: &[Vec<String>]) -> bool {
        let mut grew = std::mem::replace(&mut self.fresh, false);
        for row in rows {
            for (w, cell) in self.chars.iter_mut().zip(row) {
                let n = cell.chars().count();
                if n > *w {
                    *w = n;
                    grew = true;
                }
            }
        }
        grew
    }
}

/// One line of a table: cells padded to `widths`, one space apart; the last cell is
/// not padded on the right (no trailing blanks).
fn write_row<'c>(
    out: &mut impl Write,
    widths: &Widths,
    cells: impl Iterator<Item = &'c str>,
) -> io::Result<()> {
    let mut line = String::new();
    let last = widths.chars.len().saturating_sub(1);
    for (i, cell) in cells.enumerate() {
        let w = widths.chars.get(i).copied().unwrap_or(0);
        if i > 0 {
            line.push(' ');
        }
        match widths.aligns.get(i) {
            Some(Align::Right) => line.push_str(&format!("{cell:>w$}")),
            _ if i == last => line.push_str(cell),
            _ => line.push_str(&format!("{cell:<w$}")),
        }
    }
    writeln!(out, "{line}")
}

/// A whole table at the widths of its cells.
fn write_table(
    out: &mut impl Write,
    titles: &[(&str, Align)],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths = Widths::of(titles);
    widths.fit(rows);
    write_row(out, &widths, titles.iter().map(|t| t.0))?;
    for row in rows {
        write_row(out, &widths, row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// A JSON value as a table cell: strings without their quotes, `-` for none. (Cells
/// are `String`s because `Value`'s `Display` ignores width and alignment: that is what
/// misaligned `ctl stats`.)
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The cells of an AOR's bindings, in [`BINDING_TITLES`] order (the AOR first when
/// `with_aor`).
fn binding_rows(aor: &Value, with_aor: bool) -> Vec<Vec<String>> {
    let name = cell(&aor["aor"]);
    aor["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let q = b["q"]
                .as_f64()
                .map_or("-".to_string(), |q| format!("{q:.3}"));
            let mut row = Vec::with_capacity(BINDING_TITLES_WITH_AOR.len());
            if with_aor {
                row.push(name.clone());
            }
            row.extend([
                cell(&b["contact"]),
                cell(&b["expires"]),
                q,
                cell(&b["source"]),
                flow_cell(b),
                cell(&b["call_id"]),
                cell(&b["cseq"]),
                cell(&b["user_agent"]),
            ]);
            row
        })
        .collect()
}

/// The transport, then for a binding reachable only through its connection `up` or
/// `down` (closed: kept until it expires), and `ob` for an Outbound one (RFC 5626).
fn flow_cell(b: &Value) -> String {
    let mut cell = b["transport"].as_str().unwrap_or("-").to_string();
    if !b["flow"].is_null() {
        cell.push_str(if b["flow_down"] == true {
            " down"
        } else {
            " up"
        });
    }
    if b["outbound"] == true {
        cell.push_str(" ob");
    }
    cell
}

fn print_bindings(out: &mut impl Write, aor: &Value, with_aor: bool) -> io::Result<()> {
    let titles = if with_aor {
        BINDING_TITLES_WITH_AOR
    } else {
        BINDING_TITLES
    };
    write_table(out, titles, &binding_rows(aor, with_aor))
}

fn print_stats(out: &mut impl Write, v: &Value) -> io::Result<()> {
    let cores = v["cores"].as_array().cloned().unwrap_or_default();
    let core_titles: Vec<String> = cores
        .iter()
        .map(|c| format!("core{}", cell(&c["core"])))
        .collect();
    let mut titles = vec![("COUNTER", Align::Left), ("TOTAL", Align::Right)];
    titles.extend(core_titles.iter().map(|t| (t.as_str(), Align::Right)));
    let rows: Vec<Vec<String>> = v["total"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let mut row = vec![name.clone(), cell(value)];
            row.extend(cores.iter().map(|c| cell(&c[name.as_str()])));
            row
        })
        .collect();
    write_table(out, &titles, &rows)
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

    /// Every line of a table has its cells where the header has its titles: each
    /// title ends (right-aligned) or starts (left-aligned) at the same column as the
    /// cells under it.
    #[test]
    fn stats_columns_line_up_with_the_header() {
        let v: Value = serde_json::from_str(
            r#"{"total": {"requests": 1234567, "dropped": 0},
                "cores": [{"core": 0, "requests": 1234000, "dropped": 0},
                          {"core": 1, "requests": 567, "dropped": 0}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        print_stats(&mut out, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for l in &lines {
            assert_eq!(l.len(), lines[0].len(), "{text}");
        }
        for title in ["TOTAL", "core0", "core1"] {
            let end = lines[0].find(title).unwrap() + title.len();
            for l in &lines[1..] {
                let b = l.as_bytes();
                assert!(
                    b[end - 1] != b' ' && (end == b.len() || b[end] == b' '),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn binding_rows_line_up_with_the_header() {
        let v: Value = serde_json::from_str(
            r#"{"aor": "alice@example.com", "bindings": [{"contact": "sip:a@192.0.2.1",
                "expires": 3599, "q": null, "source": "192.0.2.1:5060", "call_id": "c1",
                "cseq": 7, "user_agent": "ua"}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        print_bindings(&mut out, &v, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, row) = text.split_once('\n').unwrap();
        for (title, value) in [("EXPIRES", "3599"), ("CSEQ", "7")] {
            let end = head.find(title).unwrap() + title.len();
            assert_eq!(&row[end - value.len()..end], value, "{text}");
        }
        assert_eq!(head.find("USER-AGENT"), row.find("ua"), "{text}");
    }

    #[test]
    fn long_cells_widen_their_column_and_dump_repeats_the_header_when_it_grows() {
        let long = "sip:u0000001@198.51.100.23:5060;transport=udp;rinstance=3f2a9b1c0d4e5f60";
        let v: Value = serde_json::from_str(&format!(
            r#"{{"aor": "a@example.com", "bindings": [
                {{"contact": "{long}", "expires": 5, "q": 0.5, "source": "192.0.2.1:5060",
                  "call_id": "c1", "cseq": 1, "user_agent": "ua"}},
                {{"contact": "sip:b@h", "expires": 3600, "q": null, "source": "s",
                  "call_id": "c2", "cseq": 123456, "user_agent": "ua2"}}]}}"#
        ))
        .unwrap();
        let mut out = Vec::new();
        print_bindings(&mut out, &v, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for title in ["EXPIRES", "Q", "CSEQ"] {
            let end = lines[0].find(&format!(" {title} ")).unwrap() + 1 + title.len();
            for l in &lines[1..] {
                let b = l.as_bytes();
                assert!(b[end - 1] != b' ' && b[end] == b' ', "{title}:\n{text}");
            }
        }
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text}");

        let mut widths = Widths::of(BINDING_TITLES_WITH_AOR);
        let short = vec![vec!["a".to_string(), "sip:a@h".to_string()]];
        assert!(widths.fit(&short), "the first page gets a header");
        assert!(!widths.fit(&short), "same widths: no header again");
        let wide = vec![vec!["a".to_string(), long.to_string()]];
        assert!(
            widths.fit(&wide),
            "a wider page gets a header at its widths"
        );
    }

    #[test]
    fn a_closed_pipe_is_success_and_other_write_errors_are_not() {
        let pipe = CtlError::Output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(exit_code(&pipe), ExitCode::SUCCESS);
        let full = CtlError::Output(io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(exit_code(&full), ExitCode::from(1));
    }

    #[test]
    fn flow_cell_says_how_a_binding_is_reached() {
        let cell = |v: Value| flow_cell(&v);
        assert_eq!(
            cell(serde_json::json!({"transport": "udp", "flow": null})),
            "udp"
        );
        let flow = serde_json::json!({"core": 1, "slot": 7, "generation": 3});
        assert_eq!(
            cell(serde_json::json!({"transport": "tcp", "flow": flow, "flow_down": false})),
            "tcp up"
        );
        assert_eq!(
            cell(serde_json::json!({
                "transport": "tls", "flow": flow, "flow_down": true, "outbound": true
            })),
            "tls down ob"
        );
    }
}
