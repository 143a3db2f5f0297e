//! `agentdb agent store --spool` through the real binary: spooled episodes are sealed in
//! private directories, an episode the hub refuses for good is dead-lettered and reported
//! instead of blocking every later store of its tenant, and a spool sealed with another key is
//! reported and left alone.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use agentdb_testkit::disk::{assert_no_plaintext, assert_private_spool, files};
use common::{ok_json, run_ok, Hub};

/// A hub address where nothing listens.
const DOWN: &str = "quic://127.0.0.1:1";

/// A dev directory made with the identity commands (a CA and a token signing key), as a hub
/// with `--data` at its parent would make it.
fn dev_dir(data: &Path) -> PathBuf {
    let dev = data.join("dev");
    run_ok(&["ca", "init", "--out", dev.to_str().unwrap()]);
    run_ok(&[
        "token",
        "keygen",
        "--out",
        dev.join("signing.key").to_str().unwrap(),
    ]);
    dev
}

/// A dev-mode hub over `data` with the TOML `config` (written next to it), on free ports.
fn hub(data: &Path, config: &str) -> Hub {
    let file = data.with_extension("toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = common::agentdb();
    cmd.arg("hub")
        .arg("--config")
        .arg(&file)
        .arg("--data")
        .arg(data)
        .args(agentdb_testkit::FREE_PORT_ARGS);
    Hub::spawn(cmd, &data.with_extension("log")).unwrap_or_else(|e| panic!("{e}"))
}

/// `agentdb agent store` of `task` (and `output`) for `tenant` at `hub`, spooling in `spool`.
fn store(hub: &str, dev: &Path, spool: &Path, tenant: &str, task: &str, output: &str) -> Output {
    common::agentdb()
        .args([
            "agent",
            "store",
            "--hub",
            hub,
            "--connect-timeout",
            "1",
            "--dev",
        ])
        .arg(dev)
        .arg("--spool")
        .arg(spool)
        .args(["--tenant", tenant, "--task", task, "--output", output])
        .args(["--reward", "0.9", "--json"])
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Episodes waiting in a tenant's spool.
fn queued(tenant_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tenant_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "ep"))
        .collect()
}

/// The tasks `agentdb agent query` finds for `text`.
fn query(hub: &str, dev: &Path, tenant: &str, text: &str) -> Vec<String> {
    let out = common::agentdb()
        .args(["agent", "query", "--hub", hub, "--dev"])
        .arg(dev)
        .args(["--tenant", tenant, text, "-k", "10", "--json"])
        .output()
        .unwrap();
    ok_json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["task"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_spooled_episode_the_hub_refuses_for_good_is_dead_lettered_not_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dev = dev_dir(&data);
    let spool = tmp.path().join("spool");

    // While the hub is down: an episode of a tenant the hub's region may not hold, and for
    // another tenant one episode too large for the hub's frame limit between two good ones.
    let refused = ok_json(&store(DOWN, &dev, &spool, "acme-eu", "kept in the eu", "o"));
    assert_eq!(refused["spooled"], true);
    let first = ok_json(&store(DOWN, &dev, &spool, "acme", "first good one", "o"));
    let big = ok_json(&store(
        DOWN,
        &dev,
        &spool,
        "acme",
        "far too big",
        &"x".repeat(40_000),
    ));
    let last = ok_json(&store(DOWN, &dev, &spool, "acme", "last good one", "o"));
    for stored in [&first, &big, &last] {
        assert_eq!(stored["spooled"], true, "{stored}");
    }
    assert_eq!(queued(&spool.join("acme")).len(), 3);

    let hub = hub(
        &data,
        "region = \"us\"\n\n[tenants.acme-eu]\nresidency = [\"eu\"]\n\n[limits]\nmax_frame_len = 16384\n",
    );

    // The next store of acme-eu starts its agent: the old episode is dead-lettered and said so,
    // and the new one is refused on its own account.
    let out = store(&hub.quic, &dev, &spool, "acme-eu", "eu again", "o");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!err.contains("cannot start an agent"), "{err}");
    let id = refused["id"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "warning: the hub refused spooled episode {id} for good (forbidden:"
        )),
        "{err}"
    );
    assert!(
        err.contains("cannot store the episode: hub refused: forbidden"),
        "{err}"
    );
    let eu_dir = spool.join("acme-eu");
    assert!(queued(&eu_dir).is_empty());
    assert!(eu_dir
        .join("dead-letter")
        .join(format!("{id}.ep"))
        .is_file());
    let reason: serde_json::Value = serde_json::from_slice(
        &std::fs::read(eu_dir.join("dead-letter").join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(reason["code"], "forbidden");
    assert!(reason["message"].as_str().unwrap().contains("residency"));
    // Said once: the next agent has nothing left to refuse.
    let out = store(&hub.quic, &dev, &spool, "acme-eu", "eu once more", "o");
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));

    // acme's next store sends the two good episodes and dead-letters the big one alone.
    let out = store(&hub.quic, &dev, &spool, "acme", "after the outage", "o");
    let stored = ok_json(&out);
    assert_eq!(stored["spooled"], false);
    let dead = stored["dead_lettered"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{stored}");
    assert_eq!(dead[0]["id"], big["id"]);
    assert_eq!(dead[0]["code"], "too_large");
    assert!(stderr(&out).contains("warning: the hub refused spooled episode"));
    assert!(queued(&spool.join("acme")).is_empty());
    let tasks = query(&hub.quic, &dev, "acme", "good one after the outage");
    for task in ["first good one", "last good one", "after the outage"] {
        assert!(tasks.iter().any(|t| t == task), "{task} not in {tasks:?}");
    }
    assert!(!tasks.iter().any(|t| t == "far too big"));
}

#[test]
fn the_spool_is_sealed_in_private_directories_and_still_delivered() {
    const MARKER: &str = "marker-5d2e77-in-clear";
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dev = dev_dir(&data);
    let spool = tmp.path().join("spool");
    let stored = ok_json(&store(DOWN, &dev, &spool, "acme", MARKER, MARKER));
    assert_eq!(stored["spooled"], true);

    let all = files(&spool);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_no_plaintext(&all, MARKER);
    assert_private_spool(&spool, "acme", &all[0]);

    let hub = hub(&data, "");
    let next = ok_json(&store(&hub.quic, &dev, &spool, "acme", "next", "o"));
    assert_eq!(next["spooled"], false);
    assert!(queued(&spool.join("acme")).is_empty());
    assert!(query(&hub.quic, &dev, "acme", MARKER).contains(&MARKER.to_owned()));
}

#[test]
fn a_spool_sealed_with_another_key_is_reported_and_left_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let first_dev = dev_dir(&tmp.path().join("first"));
    let stored = ok_json(&store(
        DOWN,
        &first_dev,
        &spool,
        "acme",
        "sealed for the first key",
        "o",
    ));
    let file = spool
        .join("acme")
        .join(format!("{}.ep", stored["id"].as_str().unwrap()));
    assert!(file.is_file());

    // Another deployment's dev directory: another signing key, so another spool key.
    let data = tmp.path().join("second");
    let second_dev = dev_dir(&data);
    let hub = hub(&data, "");
    let out = store(&hub.quic, &second_dev, &spool, "acme", "mine", "o");
    let next = ok_json(&out);
    assert_eq!(next["spooled"], false);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: spool file {} left in place",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("another key"), "{err}");
    assert!(file.is_file(), "left in place");
    assert!(
        !query(&hub.quic, &second_dev, "acme", "sealed for the first key")
            .contains(&"sealed for the first key".to_owned())
    );
}

#[test]
fn spooling_needs_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = dev_dir(&tmp.path().join("data"));
    let out = common::agentdb()
        .args(["agent", "store", "--hub", DOWN, "--ca"])
        .arg(dev.join("ca.pem"))
        .args(["--token", "t", "--spool"])
        .arg(tmp.path().join("spool"))
        .args(["--tenant", "acme", "--task", "t", "--reward", "0.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--spool needs a key"), "{err}");
    assert!(!tmp.path().join("spool").exists());
}
