//! The systemd unit in `scripts/sipreg.service`, checked without booting anything:
//! it parses (`systemd-analyze verify`, when this machine has it) and every sipreg
//! flag it names is one `sipreg --help` lists. A unit that names a removed or
//! misspelt flag would fail only at the operator's next restart.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::util::{SIPREG, unique};

const UNIT: &str = include_str!("../scripts/sipreg.service");

/// Options of the other programs the unit's install comments run (useradd,
/// systemctl), which are not sipreg's.
const OTHER_PROGRAMS_FLAGS: &[&str] = &["--system", "--no-create-home", "--shell", "--now"];

/// The `--flags` in `text` (a flag is `--` then lower-case letters, digits and `-`).
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let tail = &rest[at + 2..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(tail.len());
        if len > 0
            && rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric())
        {
            out.insert(format!("--{}", &tail[..len]));
        }
        rest = &tail[len..];
    }
    out
}

/// The ExecStart command line, continuation lines joined.
fn exec_start() -> String {
    let mut cmd = String::new();
    let mut lines = UNIT.lines().skip_while(|l| !l.starts_with("ExecStart="));
    for line in lines.by_ref() {
        let line = line.trim();
        cmd.push_str(line.trim_end_matches('\\'));
        cmd.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    cmd
}

#[test]
fn every_flag_the_unit_names_is_in_sipreg_help() {
    let out = Command::new(SIPREG)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let known = flags_in(&help);
    assert!(
        known.contains("--data-dir") && known.contains("--listen"),
        "{help}"
    );

    let started = flags_in(&exec_start());
    assert!(started.contains("--data-dir"), "{}", exec_start());
    let named: BTreeSet<String> = flags_in(UNIT)
        .into_iter()
        .filter(|f| !OTHER_PROGRAMS_FLAGS.contains(&f.as_str()))
        .collect();
    assert!(named.is_superset(&started));
    let unknown: Vec<_> = named.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "flags not in `sipreg --help`: {unknown:?}"
    );
}

#[test]
fn the_unit_keeps_what_an_operator_relies_on() {
    let has = |line: &str| UNIT.lines().any(|l| l.trim() == line);
    // The data directory is the one systemd creates and keeps across restarts.
    assert!(has("StateDirectory=sipreg"));
    assert!(exec_start().contains("--data-dir /var/lib/sipreg "));
    assert!(has("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(has("NoNewPrivileges=yes") && has("ProtectSystem=strict"));
    let ambient = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities=");
    assert!(ambient.contains("CAP_NET_BIND_SERVICE"), "{ambient}");
    assert!(UNIT.lines().any(|l| l.starts_with("LimitMEMLOCK=")));
    assert!(UNIT.lines().any(|l| l.starts_with("LimitNOFILE=")));
}

#[test]
fn the_unit_parses_with_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipped: systemd-analyze is not installed on this machine");
        return;
    };
    if !version.status.success() {
        println!("skipped: systemd-analyze --version failed");
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under
    // test, in a copy of the unit under its own name.
    let dir = std::env::temp_dir().join(format!("sipreg-unit-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sipreg.service");
    let bin = Path::new(SIPREG).canonicalize().unwrap();
    let unit = UNIT.replace("/usr/local/bin/sipreg", &bin.display().to_string());
    assert_ne!(unit, UNIT, "ExecStart names /usr/local/bin/sipreg");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and unparsable values: it only warns, naming the
    // file. Any warning about the unit is a failure here.
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("sipreg.service"),
        "systemd-analyze verify warned:\n{err}"
    );
}
