//! Files the binary puts in place survive a crash once it has said so: after a key,
//! certificate or master-key file is renamed (or linked) to its name, its directory is synced.
//! A power loss cannot be staged in a test, so this watches the system calls with `strace`
//! (which `scripts/test.sh` installs): every rename or link that creates a file must be
//! followed by an `fsync` of that file's directory.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

/// Runs `agentdb ARGS` under `strace` and returns the traced calls that create names
/// (rename, link) or sync (fsync), one per line, with file descriptors shown as paths.
fn traced(args: &[&str], log: &Path) -> String {
    let probe = Command::new("strace").arg("-V").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test needs strace (scripts/test.sh installs it)"
    );
    let bin = common::agentdb().get_program().to_owned();
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-o"])
        .arg(log)
        .args([
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat",
        ])
        .arg(bin)
        .args(args)
        .env_remove("AGENTDB_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agentdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(log).unwrap()
}

/// The file names created under `dir` by renames and links in `trace`, each with whether a
/// later `fsync` of `dir` made it durable.
fn created_and_synced(trace: &str, dir: &Path) -> Vec<(String, bool)> {
    let dir = dir.to_str().unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // `PID call(args) = result`, the PID there with -f.
        let call = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        let creates = call.starts_with("rename") || call.starts_with("link");
        if !creates || line.contains("= -1") {
            continue;
        }
        // The destination is the last quoted path of the call.
        let Some(target) = line.rsplit('"').nth(1) else {
            continue;
        };
        let Some(name) = target
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            continue;
        };
        if name.contains('/') {
            continue;
        }
        let synced = lines[i + 1..]
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&format!("<{dir}>)")));
        out.push((name.to_owned(), synced));
    }
    out
}

#[test]
fn key_and_certificate_files_are_synced_into_their_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let trace = traced(
        &["ca", "init", "--out", pki.to_str().unwrap()],
        &tmp.path().join("trace"),
    );
    let created = created_and_synced(&trace, &pki);
    let names: Vec<&str> = created.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"ca.key") && names.contains(&"ca.pem"),
        "{names:?}\n{trace}"
    );
    for (name, synced) in &created {
        assert!(
            synced,
            "{name} was put in place but its directory never synced:\n{trace}"
        );
    }
}

#[test]
fn the_master_key_file_is_synced_into_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let trace = traced(
        &[
            "local",
            "--data",
            data.to_str().unwrap(),
            "store",
            "--tenant",
            "acme",
            "--task",
            "t",
            "--reward",
            "0.5",
        ],
        &tmp.path().join("trace"),
    );
    let created = created_and_synced(&trace, &data);
    assert!(
        created.iter().any(|(n, _)| n == "master.key"),
        "{created:?}\n{trace}"
    );
    for (name, synced) in &created {
        assert!(
            synced,
            "{name} was put in place but its directory never synced:\n{trace}"
        );
    }
}
