//! Online key operations on a real `agentdb hub` process: a tenant's key rotated with
//! `agentdb tenant rotate-key` while the hub serves, its episodes re-sealed in the background,
//! the old version destroyed with a signed receipt (`agentdb tenant key-status`); the master
//! key rewrapped with `agentdb admin rewrap-master-key` (operators only), the hub restarting
//! with the new key file, and the old key no longer opening the store.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use agentdb_core::TenantId;
use agentdb_memory::storage::{RedbStorage, Storage};
use agentdb_security::token::Scope;
use agentdb_testkit::https::HttpsClient;
use agentdb_testkit::TestPki;
use serde_json::{json, Value};

use common::{agentdb, pki_hub, pki_hub_again, Hub};

/// A client-chosen episode id.
fn uid(n: u32) -> String {
    format!("0190b000-0000-7000-8000-0000{n:08x}")
}

fn task(n: u32) -> String {
    format!("reconcile ledger {n} quarter{n}")
}

struct Setup {
    pki: TestPki,
    hub: Hub,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Setup {
    fn client(&self) -> (HttpsClient, String) {
        let (cert, key) = self.pki.tenant_cert("acme");
        (
            HttpsClient::new(
                self.hub.https.parse().unwrap(),
                &self.pki.ca_pem(),
                Some((&cert, &key)),
            ),
            self.pki.token("acme", "agent-1", 300),
        )
    }

    fn store(&self, range: std::ops::Range<u32>) {
        let (client, token) = self.client();
        let episodes: Vec<Value> = range
            .map(|n| json!({ "id": uid(n), "task": task(n), "input": "", "output": format!("out {n}"), "reward": 0.5 }))
            .collect();
        let r = self.rt.block_on(client.send_json(
            "POST",
            "/v1/episodes",
            &token,
            &json!({ "episodes": episodes }),
        ));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }

    /// Every episode `0..n` reads back and is found by its task.
    fn all_readable(&self, n: u32) {
        let (client, token) = self.client();
        self.rt.block_on(async {
            for i in 0..n {
                let r = client
                    .get(&format!("/v1/episodes/{}", uid(i)), &token)
                    .await;
                assert_eq!(r.status, 200, "episode {i}");
                assert_eq!(r.json()["output"], format!("out {i}"));
                let q = client
                    .send_json(
                        "POST",
                        "/v1/query",
                        &token,
                        &json!({ "text": task(i), "k": 3 }),
                    )
                    .await;
                assert_eq!(q.status, 200);
                assert_eq!(q.json()["matches"][0]["episode"]["id"], uid(i), "query {i}");
            }
        });
    }

    fn admin_token(&self) -> String {
        self.pki
            .token_with("acme", "operator", 300, vec![Scope::Admin])
    }

    /// `agentdb tenant key-status --json`.
    fn key_status(&self) -> Value {
        let out = agentdb()
            .args(["tenant", "key-status", "--tenant", "acme", "--http"])
            .arg(&self.hub.http)
            .args(["--token", &self.admin_token(), "--json"])
            .output()
            .unwrap();
        common::ok_json(&out)
    }

    fn stop(&mut self) {
        let _ = self.hub.child.kill();
        let _ = self.hub.child.wait();
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

fn start() -> Setup {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = pki_hub(&pki, dir.path(), "");
    Setup {
        pki,
        hub,
        dir,
        rt: tokio::runtime::Runtime::new().unwrap(),
    }
}

/// Polls `key-status` until `done` holds of it (at most a minute).
fn wait_for(setup: &Setup, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = setup.key_status();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wrapped_fingerprints(data: &Path) -> Vec<(u32, String)> {
    let storage = RedbStorage::open(&data.join("agentdb.redb")).unwrap();
    storage
        .tenant_keys(&TenantId::new("acme").unwrap())
        .unwrap()
        .iter()
        .map(|k| (k.version, k.fingerprint()))
        .collect()
}

#[test]
fn a_rotated_key_is_resealed_and_destroyed_with_a_receipt_and_the_master_key_rewrapped() {
    let mut setup = start();
    setup.store(0..12);
    let before = setup.key_status();
    assert_eq!(before["current"], 1);
    assert_eq!(before["versions"][0]["records"], 12);
    let v1 = before["versions"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // Rotate on the running hub; new writes use version 2 at once.
    let out = agentdb()
        .args(["tenant", "rotate-key", "--tenant", "acme", "--http"])
        .arg(&setup.hub.http)
        .args(["--token", &setup.admin_token(), "--json"])
        .output()
        .unwrap();
    assert_eq!(common::ok_json(&out)["version"], 2);
    setup.store(12..15);

    // The pass re-seals the older rows and destroys version 1 with a verified receipt.
    let status = wait_for(&setup, "the pass to destroy version 1", |s| {
        s["pass"]["state"] == "done" && s["receipts"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert_eq!(status["current"], 2);
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{status:#}");
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["records"], 15);
    assert_eq!(status["pass"]["destroyed"], json!([1]));
    let receipt = &status["receipts"][0];
    assert_eq!(receipt["version"], 1);
    assert_eq!(receipt["tenant"], "acme");
    assert_eq!(receipt["hub"], "test-hub");
    assert_eq!(receipt["fingerprint"], v1.as_str());
    assert_eq!(receipt["verified"], true, "{receipt:#}");
    assert!(versions.iter().all(|v| v["fingerprint"] != v1.as_str()));
    setup.all_readable(15);
    let text = agentdb()
        .args(["tenant", "key-status", "--tenant", "acme", "--http"])
        .arg(&setup.hub.http)
        .args(["--token", &setup.admin_token()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("destroyed key version 1 by test-hub") && text.contains("verified"),
        "{text}"
    );

    // A tenant administrator cannot rewrap the master key: that is the operator's.
    let key_file = setup.data().join("master.key");
    let old_key = std::fs::read(&key_file).unwrap();
    let refused = agentdb()
        .args(["admin", "rewrap-master-key", "--http"])
        .arg(&setup.hub.http)
        .args(["--token", &setup.admin_token()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("operator"), "{stderr}");
    assert_eq!(std::fs::read(&key_file).unwrap(), old_key);

    // The operator can, with a token minted from the signing key.
    let signing = setup.dir.path().join("signing.key");
    std::fs::write(&signing, setup.pki.signing.private_pem.as_bytes()).unwrap();
    let out = agentdb()
        .args(["admin", "rewrap-master-key", "--http"])
        .arg(&setup.hub.http)
        .arg("--signing-key")
        .arg(&signing)
        .arg("--json")
        .output()
        .unwrap();
    let answer = common::ok_json(&out);
    assert_eq!(answer["rewrapped"], true);
    assert_eq!(answer["check"].as_str().unwrap().len(), 32);
    let new_key = std::fs::read(&key_file).unwrap();
    assert_ne!(new_key, old_key);
    assert!(!setup.data().join("master.key.new").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The hub keeps working, and restarts with the new key file.
    setup.store(15..17);
    setup.all_readable(17);
    setup.stop();
    // What the redb file holds: version 2 only, not the destroyed one.
    let stored = wrapped_fingerprints(&setup.data());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, 2);
    assert_ne!(stored[0].1, v1);
    setup.hub = pki_hub_again(setup.dir.path());
    setup.all_readable(17);
    setup.stop();

    // The old key opens nothing any more.
    std::fs::write(&key_file, &old_key).unwrap();
    let mut cmd = agentdb();
    cmd.args(["hub", "--config"])
        .arg(setup.dir.path().join("hub.toml"));
    let failed = Hub::spawn(cmd, &setup.dir.path().join("old-key.log"))
        .err()
        .expect("a hub with the old master key does not start");
    assert!(failed.contains("master key"), "{failed}");
    std::fs::write(&key_file, &new_key).unwrap();
    setup.hub = pki_hub_again(setup.dir.path());
    setup.all_readable(17);
}

#[test]
fn a_hub_with_its_master_key_in_the_environment_refuses_to_rewrap_and_changes_nothing() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    // The config as `pki_hub` writes it, started with AGENTDB_MASTER_KEY.
    let hub = pki_hub(&pki, dir.path(), "");
    drop(hub);
    let key = agentdb_security::MasterKey::generate().unwrap();
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let mut cmd = agentdb();
    cmd.args(["hub", "--config"])
        .arg(dir.path().join("hub.toml"))
        .env(agentdb_security::MASTER_KEY_ENV, key.to_base64().as_str());
    let hub = Hub::spawn(cmd, &dir.path().join("env.log")).unwrap();
    let operator = pki.token_with("ops", "operator", 300, vec![Scope::Operator]);
    let out = agentdb()
        .args(["admin", "rewrap-master-key", "--http"])
        .arg(&hub.http)
        .args(["--token", &operator])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AGENTDB_MASTER_KEY"), "{stderr}");
    assert!(!dir.path().join("data/master.key").exists());
    assert!(!dir.path().join("data/master.key.new").exists());
    drop(hub);
    // The same key still opens the store.
    let mut cmd = agentdb();
    cmd.args(["hub", "--config"])
        .arg(dir.path().join("hub.toml"))
        .env(agentdb_security::MASTER_KEY_ENV, key.to_base64().as_str());
    Hub::spawn(cmd, &dir.path().join("env-again.log")).unwrap();
}
