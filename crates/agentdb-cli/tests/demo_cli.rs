//! `agentdb demo` through the real binary: it runs with no arguments, in a few seconds, leaves
//! nothing behind, and shows isolation and recall.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

fn demo(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agentdb"))
        .arg("demo")
        .args(args)
        .current_dir(cwd)
        .env_remove("JWT_SECRET")
        .env_remove("ENABLE_MTLS")
        .env_remove("AGENTDB_LOG")
        .output()
        .unwrap()
}

#[test]
fn demo_shows_isolation_and_recall() {
    let cwd = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = demo(&[], cwd.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        stdout.contains("isolation: tenant globex got 0 of acme's 3 memories"),
        "{stdout}"
    );
    assert!(
        stdout.contains("recall: 3 of the 3 memories came from the destroyed agent"),
        "{stdout}"
    );
    assert!(stdout.contains("Total: 300 EUR"), "{stdout}");
    assert!(stdout.contains("connected agents: 0"), "{stdout}");
    assert!(stdout.contains("acme    3 episodes"), "{stdout}");
    assert!(stdout.contains("globex  1 episode"), "{stdout}");
    // Everything lived in a temporary directory elsewhere.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

#[test]
fn demo_json_summary() {
    let cwd = tempfile::tempdir().unwrap();
    let out = demo(&["--json"], cwd.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stored"]["acme"].as_array().unwrap().len(), 3);
    assert_eq!(v["isolation"]["of_acme"], 0);
    assert_eq!(v["isolation"]["memories"], 1);
    assert_eq!(v["recall"]["from_destroyed_agent"], 3);
    assert_eq!(v["stats"]["acme"]["episodes"], 3);
    assert_eq!(v["stats"]["globex"]["episodes"], 1);
    assert_eq!(v["connected_agents"]["before"], 2);
    assert_eq!(v["connected_agents"]["after"], 0);
}
