//! `agentdb local` through the real binary.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn agentdb(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentdb"))
        .arg("local")
        .arg("--data")
        .arg(dir)
        .args(args)
        .env_remove("AGENTDB_MASTER_KEY")
        .output()
        .expect("run agentdb")
}

fn ok_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = agentdb(dir, args);
    assert!(
        out.status.success(),
        "agentdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn store_query_stats_erase_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stored = ok_json(
        d,
        &[
            "store",
            "--tenant",
            "acme",
            "--task",
            "summarise invoice",
            "--input",
            "invoice 42",
            "--output",
            "total 300",
            "--reward",
            "0.95",
            "--critique",
            "good",
            "--json",
        ],
    );
    let id = stored["id"].as_str().unwrap().to_owned();
    ok_json(
        d,
        &[
            "store",
            "--tenant",
            "acme",
            "--task",
            "triage bug",
            "--reward",
            "0.5",
            "--json",
        ],
    );
    ok_json(
        d,
        &[
            "store",
            "--tenant",
            "other",
            "--task",
            "summarise invoice",
            "--reward",
            "0.9",
            "--json",
        ],
    );

    let hits = ok_json(
        d,
        &[
            "query",
            "--tenant",
            "acme",
            "summarise the invoice",
            "-k",
            "5",
            "--json",
        ],
    );
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2, "only acme's two episodes: {hits:?}");
    let top = &hits[0];
    assert_eq!(top["id"], id.as_str());
    for field in [
        "task", "input", "output", "reward", "critique", "success", "score",
    ] {
        assert!(top.get(field).is_some(), "missing {field}");
    }
    assert_eq!(top["task"], "summarise invoice");
    assert_eq!(top["critique"], "good");
    assert_eq!(top["success"], true);

    let only_fail = ok_json(
        d,
        &[
            "query",
            "--tenant",
            "acme",
            "invoice",
            "--only-failures",
            "--json",
        ],
    );
    assert_eq!(only_fail.as_array().unwrap().len(), 1);
    assert_eq!(only_fail[0]["success"], false);
    let min = ok_json(
        d,
        &[
            "query",
            "--tenant",
            "acme",
            "invoice",
            "--min-reward",
            "0.9",
            "--json",
        ],
    );
    assert_eq!(min.as_array().unwrap().len(), 1);

    let stats = ok_json(d, &["stats", "--tenant", "acme", "--json"]);
    assert_eq!(stats["episodes"], 2);
    assert_eq!(stats["success_rate"], 0.5);
    assert!((stats["avg_reward"].as_f64().unwrap() - 0.725).abs() < 1e-9);
    assert_eq!(stats["top_tasks"].as_array().unwrap().len(), 2);

    let erased = ok_json(d, &["erase", "--tenant", "acme", "--json"]);
    assert_eq!(erased["episodes_erased"], 2);
    let hits = ok_json(d, &["query", "--tenant", "acme", "invoice", "--json"]);
    assert!(hits.as_array().unwrap().is_empty());
    let other = ok_json(d, &["query", "--tenant", "other", "invoice", "--json"]);
    assert_eq!(other.as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_is_one_line_on_stderr_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        vec![
            "store", "--tenant", "acme", "--task", "t", "--reward", "NaN",
        ],
        vec!["store", "--tenant", "", "--task", "t", "--reward", "0.5"],
        vec!["store", "--tenant", "a/b", "--task", "t", "--reward", "0.5"],
        vec!["store", "--tenant", "acme", "--task", "", "--reward", "0.5"],
        vec!["store", "--tenant", "..", "--task", "t", "--reward", "0.5"],
        vec!["store", "--tenant", ".", "--task", "t", "--reward", "0.5"],
    ] {
        let out = agentdb(d, &args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty());
        assert!(err.contains("error"), "{err}");
    }
    let big = "x".repeat(70 * 1024);
    let out = agentdb(
        d,
        &[
            "store", "--tenant", "acme", "--task", "t", "--input", &big, "--reward", "0.5",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("input is too large"), "{err}");
    let stats = ok_json(d, &["stats", "--tenant", "acme", "--json"]);
    assert_eq!(stats["episodes"], 0);
}

#[test]
fn wrong_master_key_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok_json(
        d,
        &[
            "store", "--tenant", "acme", "--task", "t", "--reward", "0.5", "--json",
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agentdb"))
        .args(["local", "--data"])
        .arg(d)
        .args(["stats", "--tenant", "acme"])
        .env(
            "AGENTDB_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong master key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
    // Still fine with the right key.
    let stats = ok_json(d, &["stats", "--tenant", "acme", "--json"]);
    assert_eq!(stats["episodes"], 1);
}
