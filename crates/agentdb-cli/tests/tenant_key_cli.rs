//! `agentdb tenant key create|list|revoke` and `agentdb agent … --api-key` through the real
//! binary against a dev-mode hub: a key stores and queries over QUIC, a revoked key is refused,
//! a key is worth one tenant and at most its scopes, and keys survive a restart of the hub.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ok_json, Hub};

/// An `agentdb` command without ambient credentials.
fn agentdb(env: &[(&str, &str)]) -> Command {
    let mut cmd = common::agentdb();
    cmd.env_remove("AGENTDB_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    agentdb(env).args(args).output().unwrap()
}

/// A dev-mode hub over `data` on free ports.
fn dev_hub(data: &Path) -> Hub {
    let mut cmd = agentdb(&[]);
    cmd.arg("hub")
        .arg("--data")
        .arg(data)
        .args(agentdb_testkit::FREE_PORT_ARGS);
    Hub::spawn(cmd, &data.with_extension("log")).unwrap_or_else(|e| panic!("{e}"))
}

/// Stops `hub` with SIGTERM and waits for it to exit cleanly.
fn stop(mut hub: Hub) {
    let pid = hub.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = hub.child.try_wait().unwrap() {
            assert!(status.success(), "hub exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "hub did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one line a failed command printed on stderr (exit code 1).
fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    stderr
}

/// A hub and its dev directory.
struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    hub: Hub,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let hub = dev_hub(&data);
        Setup {
            _tmp: tmp,
            data,
            hub,
        }
    }

    fn dev(&self) -> PathBuf {
        self.data.join("dev")
    }

    fn signing_key(&self) -> String {
        self.dev().join("signing.key").to_str().unwrap().to_owned()
    }

    /// `agentdb tenant key SUB --tenant T --http … --signing-key DEV/signing.key ARGS`.
    fn key_cmd(&self, sub: &str, tenant: &str, args: &[&str]) -> Output {
        let signing = self.signing_key();
        let mut all = vec!["tenant", "key", sub, "--tenant", tenant, "--http"];
        all.push(&self.hub.http);
        all.extend_from_slice(&["--signing-key", &signing]);
        all.extend_from_slice(args);
        run(&all, &[])
    }

    /// Creates a key of `tenant` with `args`; (secret, id).
    fn create(&self, tenant: &str, args: &[&str]) -> (String, String) {
        let mut all = args.to_vec();
        all.push("--json");
        let made = ok_json(&self.key_cmd("create", tenant, &all));
        let secret = made["secret"].as_str().unwrap().to_owned();
        let id = made["key"]["id"].as_str().unwrap().to_owned();
        assert!(secret.starts_with(&format!("adb_{id}_")), "{made}");
        assert_eq!(made["key"]["tenant"], tenant);
        (secret, id)
    }

    /// The dev directory's CA and the tenant-wide client certificate of `demo`, and no
    /// signing key: the API key is the only token source.
    fn demo_tls(&self) -> Vec<String> {
        let dev = self.dev();
        let path = |name: &str| dev.join(name).to_str().unwrap().to_owned();
        vec![
            "--ca".into(),
            path("ca.pem"),
            "--cert".into(),
            path("client.pem"),
            "--key".into(),
            path("client.key"),
        ]
    }

    /// `agentdb agent SUB --hub … CREDS --tenant T ARGS`.
    fn agent(&self, sub: &str, creds: &[String], tenant: &str, args: &[&str]) -> Output {
        self.agent_env(sub, creds, tenant, args, &[])
    }

    fn agent_env(
        &self,
        sub: &str,
        creds: &[String],
        tenant: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = agentdb(env);
        cmd.args(["agent", sub, "--hub", &self.hub.quic])
            .args(creds)
            .args(["--tenant", tenant])
            .args(args);
        cmd.output().unwrap()
    }

    fn store(&self, creds: &[String], tenant: &str) -> Output {
        self.agent(
            "store",
            creds,
            tenant,
            &[
                "--task",
                "summarise invoice",
                "--input",
                "invoice #42 from ACME",
                "--output",
                "Total: 300 EUR",
                "--reward",
                "0.9",
                "--json",
            ],
        )
    }

    fn query(&self, creds: &[String], tenant: &str) -> Output {
        self.agent("query", creds, tenant, &["summarise the invoice", "--json"])
    }
}

fn with_key(mut creds: Vec<String>, key: &str) -> Vec<String> {
    creds.extend(["--api-key".to_owned(), key.to_owned()]);
    creds
}

#[test]
fn a_key_stores_and_queries_until_it_is_revoked() {
    let s = Setup::new();
    let (secret, id) = s.create("demo", &["--label", "ci runner", "--expires", "90d"]);
    let creds = with_key(s.demo_tls(), &secret);

    let stored = ok_json(&s.store(&creds, "demo"));
    assert_eq!(stored["spooled"], false);
    let hits = ok_json(&s.query(&creds, "demo"));
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["id"], stored["id"]);

    // The key in AGENTDB_API_KEY works the same, and wins over another token source.
    let mut env_creds = s.demo_tls();
    env_creds.extend(["--token".to_owned(), "not-a-jwt".to_owned()]);
    let hits = ok_json(&s.agent_env(
        "query",
        &env_creds,
        "demo",
        &["invoice", "--json"],
        &[("AGENTDB_API_KEY", &secret)],
    ));
    assert_eq!(hits[0]["id"], stored["id"]);

    // The listing shows the key, never its secret.
    let listed = s.key_cmd("list", "demo", &["--json"]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(!text.contains(&secret), "{text}");
    let listed = ok_json(&listed);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["id"], id.as_str());
    assert_eq!(keys[0]["label"], "ci runner");
    assert_eq!(
        keys[0]["scopes"],
        serde_json::json!(["read", "write", "sync"])
    );
    let expires = keys[0]["expires"].as_u64().unwrap();
    let created = keys[0]["created"].as_u64().unwrap();
    assert_eq!(expires - created, 90 * 86_400);
    assert!(keys[0]["revoked"].is_null(), "{listed}");
    let text = common::run_ok(&[
        "tenant",
        "key",
        "list",
        "--tenant",
        "demo",
        "--http",
        &s.hub.http,
        "--signing-key",
        &s.signing_key(),
    ]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&id) && text.contains("active") && text.contains("ci runner"),
        "{text}"
    );

    // Revoked: the next agent with the key is refused, in one line naming the revocation.
    let revoked = s.key_cmd("revoke", "demo", &[&id]);
    let said = String::from_utf8_lossy(&ok_out(&revoked).stdout).into_owned();
    assert!(said.contains(&format!("revoked API key {id}")), "{said}");
    let err = one_line_error(&s.query(&creds, "demo"));
    assert!(err.contains("revoked"), "{err}");
    let err = one_line_error(&s.store(&creds, "demo"));
    assert!(err.contains("revoked"), "{err}");
    let listed = ok_json(&s.key_cmd("list", "demo", &["--json"]));
    assert!(listed["keys"][0]["revoked"].is_u64(), "{listed}");

    // Revoking is idempotent; an id the tenant has no key of is an error.
    ok_json(&s.key_cmd("revoke", "demo", &[&id, "--json"]));
    let err = one_line_error(&s.key_cmd("revoke", "demo", &["0123456789abcdef"]));
    assert!(err.contains("no such key for this tenant"), "{err}");
    let err = one_line_error(&s.key_cmd("revoke", "other", &[&id]));
    assert!(err.contains("no such key for this tenant"), "{err}");
    let err = one_line_error(&s.key_cmd("revoke", "demo", &[&secret]));
    assert!(!err.contains(&secret), "{err}");
}

fn ok_out(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn create_prints_the_secret_once_in_text() {
    let s = Setup::new();
    let out = s.key_cmd("create", "demo", &["--scope", "read", "--expires", "12h"]);
    let text = String::from_utf8_lossy(&ok_out(&out).stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("adb_") && lines[0].len() == 64,
        "{text}"
    );
    assert!(lines[1].contains("will not be shown again"), "{text}");
    assert!(lines[1].contains("read"), "{text}");
    // The secret works.
    let creds = with_key(s.demo_tls(), lines[0]);
    ok_json(&s.query(&creds, "demo"));
}

#[test]
fn a_read_only_key_queries_but_cannot_store() {
    let s = Setup::new();
    let (writer, _) = s.create("demo", &[]);
    let (reader, _) = s.create("demo", &["--scope", "read"]);
    let stored = ok_json(&s.store(&with_key(s.demo_tls(), &writer), "demo"));

    let reader = with_key(s.demo_tls(), &reader);
    let hits = ok_json(&s.query(&reader, "demo"));
    assert_eq!(hits[0]["id"], stored["id"]);
    let err = one_line_error(&s.store(&reader, "demo"));
    assert!(err.contains("forbidden"), "{err}");
    let listed = ok_json(&s.key_cmd("list", "demo", &["--json"]));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "{listed}");
}

#[test]
fn a_key_is_worth_its_tenant_only() {
    let s = Setup::new();
    let (secret, _) = s.create("demo", &[]);
    // A certificate for tenant other (--dev issues one for --tenant) with demo's key.
    let dev = s.dev().to_str().unwrap().to_owned();
    let creds = with_key(vec!["--dev".into(), dev.clone()], &secret);
    let err = one_line_error(&s.query(&creds, "other"));
    assert!(err.contains("tenant"), "{err}");
    let err = one_line_error(&s.store(&creds, "other"));
    assert!(err.contains("tenant"), "{err}");
    // With a certificate for demo, the dev directory's key and --dev's minting unused.
    let hits = ok_json(&s.query(&with_key(vec!["--dev".into(), dev], &secret), "demo"));
    assert_eq!(hits, serde_json::json!([]));

    // A key of another tenant is not listed for demo.
    s.create("other", &[]);
    let listed = ok_json(&s.key_cmd("list", "demo", &["--json"]));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "{listed}");

    // Not a key at all: refused before the hub is asked, without echoing it.
    let err = one_line_error(&s.query(&with_key(s.demo_tls(), "adb_nonsense-key"), "demo"));
    assert!(err.contains("malformed API key"), "{err}");
    assert!(!err.contains("nonsense"), "{err}");
    // Well-formed but unknown to the hub.
    let unknown = format!("adb_0123456789abcdef_{}", "A".repeat(43));
    let err = one_line_error(&s.query(&with_key(s.demo_tls(), &unknown), "demo"));
    assert!(err.contains("unauthenticated"), "{err}");
}

#[test]
fn the_admin_api_wants_an_admin_token_worth_the_key() {
    let s = Setup::new();
    let token = |scope: &str| {
        let out = common::run_ok(&[
            "token",
            "issue",
            "--signing-key",
            &s.signing_key(),
            "--tenant",
            "demo",
            "--agent",
            "operator",
            "--ttl",
            "60",
            "--scope",
            scope,
        ]);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let base = |sub: &str| {
        vec![
            "tenant".to_owned(),
            "key".to_owned(),
            sub.to_owned(),
            "--tenant".to_owned(),
            "demo".to_owned(),
            "--http".to_owned(),
            s.hub.http.clone(),
        ]
    };
    let with = |sub: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = base(sub);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, env)
    };

    // No admin scope: refused.
    let read = token("read");
    let err = one_line_error(&with("list", &["--token", &read], &[]));
    assert!(err.contains("403"), "{err}");
    // Admin and read cannot make a key that writes; it can make one that reads.
    let admin_read = token("admin,read");
    let err = one_line_error(&with(
        "create",
        &["--token", &admin_read, "--scope", "read,write"],
        &[],
    ));
    assert!(err.contains("write"), "{err}");
    let made = ok_json(&with(
        "create",
        &["--scope", "read", "--json"],
        &[("AGENTDB_TOKEN", &admin_read)],
    ));
    assert_eq!(made["key"]["scopes"], serde_json::json!(["read"]));
    // A token of another tenant administers nothing here.
    let out = run(
        &[
            "tenant",
            "key",
            "list",
            "--tenant",
            "other",
            "--http",
            &s.hub.http,
            "--token",
            &admin_read,
        ],
        &[],
    );
    one_line_error(&out);
    // The dev directory's signing key mints the admin token too.
    let dev = s.dev().to_str().unwrap().to_owned();
    ok_json(&with("list", &["--dev", &dev, "--json"], &[]));
    // No token source at all.
    let err = one_line_error(&with("list", &[], &[]));
    assert!(err.contains("--token"), "{err}");
    // A bad expiry is a usage error.
    let out = with("create", &["--dev", &dev, "--expires", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));
    // No hub there.
    let out = run(
        &[
            "tenant",
            "key",
            "list",
            "--tenant",
            "demo",
            "--http",
            "127.0.0.1:9",
            "--dev",
            &dev,
        ],
        &[],
    );
    let err = one_line_error(&out);
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn keys_survive_a_restart_of_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hub = dev_hub(&data);
    let signing = data.join("dev").join("signing.key");
    let made = ok_json(&run(
        &[
            "tenant",
            "key",
            "create",
            "--tenant",
            "demo",
            "--http",
            &hub.http,
            "--signing-key",
            signing.to_str().unwrap(),
            "--json",
        ],
        &[],
    ));
    let secret = made["secret"].as_str().unwrap().to_owned();
    stop(hub);

    let hub = dev_hub(&data);
    let dev = data.join("dev");
    let out = agentdb(&[])
        .args(["agent", "store", "--hub", &hub.quic, "--ca"])
        .arg(dev.join("ca.pem"))
        .arg("--cert")
        .arg(dev.join("client.pem"))
        .arg("--key")
        .arg(dev.join("client.key"))
        .args(["--api-key", &secret, "--tenant", "demo"])
        .args(["--task", "t", "--output", "o", "--reward", "0.5", "--json"])
        .output()
        .unwrap();
    let stored = ok_json(&out);
    assert_eq!(stored["spooled"], false);
}

#[test]
fn a_spool_sealed_with_the_api_key_is_sent_by_the_next_agent_with_it() {
    let s = Setup::new();
    let (secret, _) = s.create("demo", &[]);
    let spool = s.data.with_file_name("spool");
    let spool_arg = spool.to_str().unwrap();
    // The dev certificate is made afresh by each command; the API key seals the spool.
    let dev = s.dev().to_str().unwrap().to_owned();
    let store = |hub: &str, task: &str| {
        agentdb(&[])
            .args(["agent", "store", "--hub", hub, "--connect-timeout", "1"])
            .args(["--dev", &dev, "--api-key", &secret, "--spool", spool_arg])
            .args(["--tenant", "demo", "--task", task, "--output", "o"])
            .args(["--reward", "0.5", "--json"])
            .output()
            .unwrap()
    };
    let spooled = ok_json(&store("quic://127.0.0.1:1", "kept while the hub was away"));
    assert_eq!(spooled["spooled"], true, "{spooled}");
    let sent = ok_json(&store(&s.hub.quic, "sent at once"));
    assert_eq!(sent["spooled"], false, "{sent}");
    let hits = ok_json(&s.agent(
        "query",
        &with_key(vec!["--dev".into(), dev.clone()], &secret),
        "demo",
        &["kept while the hub was away", "--json"],
    ));
    assert_eq!(hits[0]["id"], spooled["id"], "{hits}");
}
