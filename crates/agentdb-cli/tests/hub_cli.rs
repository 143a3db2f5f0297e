//! `agentdb hub` and `agentdb agent` through the real binary: dev mode, persistence across
//! restarts, tenant isolation, the admin health endpoint, HS256 tokens, mutual TLS off, the
//! config file, and an unreachable hub.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ok_json, Hub};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = common::agentdb();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Hub {
    /// Starts `agentdb hub ARGS` and waits for its "listening" line.
    fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Hub {
        let mut cmd = command(env);
        cmd.arg("hub").args(args);
        Hub::spawn(cmd, log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a hub in dev mode on free ports over `data`.
    fn dev(data: &Path, env: &[(&str, &str)]) -> Hub {
        let log = data.with_extension("log");
        let mut args = vec!["--data", data.to_str().unwrap()];
        args.extend(agentdb_testkit::FREE_PORT_ARGS);
        Hub::start(&args, env, &log)
    }

    /// Stops the hub with SIGTERM and waits for it to drain and exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "hub exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "hub did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.log_text().contains("hub stopped"),
            "{}",
            self.log_text()
        );
    }
}

fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(env).arg("agent").args(args).output().unwrap()
}

/// The one line a failed command printed on stderr.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    stderr
}

fn store_args<'a>(hub: &'a str, creds: &[&'a str], tenant: &'a str) -> Vec<&'a str> {
    let mut args = vec!["store", "--hub", hub];
    args.extend_from_slice(creds);
    args.extend_from_slice(&[
        "--tenant",
        tenant,
        "--task",
        "summarise invoice",
        "--input",
        "invoice #42 from ACME",
        "--output",
        "Total: 300 EUR",
        "--reward",
        "0.95",
        "--critique",
        "correct total",
        "--json",
    ]);
    args
}

fn query(hub: &str, creds: &[&str], tenant: &str) -> serde_json::Value {
    let mut args = vec!["query", "--hub", hub];
    args.extend_from_slice(creds);
    args.extend_from_slice(&["--tenant", tenant, "summarise the invoice", "--json"]);
    ok_json(&agent(&args, &[]))
}

/// GET `path` from `addr` with a minimal HTTP/1.1 client: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn dev_mode_store_query_isolation_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hub = Hub::dev(&data, &[]);
    assert_eq!(hub.field("hub"), "hub-1");
    assert_eq!(hub.field("embedder"), "agentdb-lexical-v1");

    // Dev credentials, private keys 0600, and one log line saying how to use them.
    let dev = data.join("dev");
    for name in [
        "ca.pem",
        "ca.key",
        "hub.pem",
        "hub.key",
        "client.pem",
        "client.key",
        "signing.key",
        "signing.key.pub",
    ] {
        assert!(dev.join(name).is_file(), "{name} missing");
    }
    #[cfg(unix)]
    for name in ["ca.key", "hub.key", "client.key", "signing.key"] {
        assert_eq!(mode(&dev.join(name)), 0o600, "{name}");
    }
    let log = hub.log_text();
    let dev_lines: Vec<&str> = log.lines().filter(|l| l.contains("dev mode")).collect();
    assert_eq!(dev_lines.len(), 1, "{log}");
    assert!(
        dev_lines[0].contains(&format!("--dev {}", dev.display())),
        "{log}"
    );
    let ca_before = std::fs::read(dev.join("ca.pem")).unwrap();

    let dev_arg = dev.to_str().unwrap();
    let creds = ["--dev", dev_arg];
    let stored = ok_json(&agent(&store_args(&hub.quic, &creds, "acme"), &[]));
    let id = stored["id"].as_str().unwrap().to_owned();
    assert_eq!(stored["spooled"], false);

    let hits = query(&hub.quic, &creds, "acme");
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(hit["id"], id.as_str());
    assert_eq!(hit["task"], "summarise invoice");
    assert_eq!(hit["input"], "invoice #42 from ACME");
    assert_eq!(hit["output"], "Total: 300 EUR");
    assert_eq!(hit["reward"], 0.95);
    assert_eq!(hit["critique"], "correct total");
    assert_eq!(hit["success"], true);
    assert!(hit["score"].as_f64().unwrap() > 0.1, "{hit}");

    // Another tenant sees nothing of acme's.
    assert_eq!(query(&hub.quic, &creds, "other"), serde_json::json!([]));

    // FEDERATION_HUB_ENDPOINT names the hub when --hub is absent.
    let stats = ok_json(&agent(
        &["stats", "--dev", dev_arg, "--tenant", "acme", "--json"],
        &[("FEDERATION_HUB_ENDPOINT", &hub.quic)],
    ));
    assert_eq!(stats["episodes"], 1);

    // Restart on the same data: the dev files are reused and the episode is still there.
    hub.stop();
    let hub = Hub::dev(&data, &[]);
    assert_eq!(std::fs::read(dev.join("ca.pem")).unwrap(), ca_before);
    let hits = query(&hub.quic, &creds, "acme");
    assert_eq!(hits[0]["id"], id.as_str());
}

#[test]
fn health_reports_the_documented_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hub = Hub::dev(&data, &[]);
    let dev = data.join("dev");
    ok_json(&agent(
        &store_args(&hub.quic, &["--dev", dev.to_str().unwrap()], "acme"),
        &[],
    ));
    // The hub releases the agent once its connection task ends, shortly after the goodbye.
    let deadline = Instant::now() + Duration::from_secs(5);
    let health = loop {
        let (status, body) = http_get(&hub.http, "/health");
        assert_eq!(status, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        if health["connected_agents"] == 0 || Instant::now() > deadline {
            break health;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["connected_agents"], 0);
    assert_eq!(health["episodes"], 1);
    assert_eq!(health["tenants"], 1);
    assert!(health["uptime_s"].as_f64().unwrap() >= 0.0, "{health}");
}

#[test]
fn hs256_mode_accepts_the_shared_secret_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hub = Hub::dev(&data, &[("JWT_SECRET", SECRET)]);
    assert!(hub.log_text().contains("HS256"), "{}", hub.log_text());
    let dev = data.join("dev");
    let (ca, cert, key) = (
        dev.join("ca.pem"),
        dev.join("client.pem"),
        dev.join("client.key"),
    );
    let creds = [
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    // The dev client certificate is for tenant demo.
    let args = store_args(&hub.quic, &creds, "demo");
    let stored = ok_json(&agent(&args, &[("JWT_SECRET", SECRET)]));
    assert!(stored["id"].is_string());

    let wrong = agent(
        &args,
        &[("JWT_SECRET", "another-secret-also-at-least-32-bytes")],
    );
    let err = one_line_error(&wrong);
    assert!(err.contains("unauthenticated"), "{err}");
}

#[test]
fn without_mutual_tls_a_token_and_the_ca_suffice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hub = Hub::dev(&data, &[("ENABLE_MTLS", "false")]);
    let dev = data.join("dev");
    // A token is revoked when its agent is destroyed, so each command gets its own.
    let token = || {
        let out = command(&[])
            .args(["token", "issue", "--signing-key"])
            .arg(dev.join("signing.key"))
            .args(["--tenant", "acme", "--agent", "cli-agent"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let ca = dev.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let first = token();
    let stored = ok_json(&agent(
        &store_args(&hub.quic, &["--ca", ca, "--token", &first], "acme"),
        &[],
    ));
    let second = token();
    let hits = query(&hub.quic, &["--ca", ca, "--token", &second], "acme");
    assert_eq!(hits[0]["id"], stored["id"]);
    // The first token died with its agent.
    let mut args = vec!["query", "--hub", hub.quic.as_str(), "--ca", ca];
    args.extend_from_slice(&["--token", &first, "--tenant", "acme", "invoice"]);
    let err = one_line_error(&agent(&args, &[]));
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn config_file_is_honoured_and_unknown_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "hub_id = \"x\"\nquic_port = 4433\n").unwrap();
    let out = command(&[])
        .args(["hub", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("bad.toml") && err.contains("unknown field `quic_port`"),
        "{err}"
    );

    let good = tmp.path().join("hub.toml");
    std::fs::write(
        &good,
        "hub_id = \"cfg-hub\"\ndata = \"store\"\nquic = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n\
         \n[limits]\nmax_agents = 50\n",
    )
    .unwrap();
    let hub = Hub::start(
        &["--config", good.to_str().unwrap()],
        &[],
        &tmp.path().join("hub.log"),
    );
    assert_eq!(hub.field("hub"), "cfg-hub");
    // `data` is relative to the config file.
    let dev = tmp.path().join("store").join("dev");
    assert!(dev.join("ca.pem").is_file());
    ok_json(&agent(
        &store_args(&hub.quic, &["--dev", dev.to_str().unwrap()], "acme"),
        &[],
    ));
}

#[test]
fn unreachable_hub_fails_in_bounded_time_or_spools() {
    let tmp = tempfile::tempdir().unwrap();
    // A dev directory made with the identity commands: a CA and a signing key.
    let dev = tmp.path().join("dev");
    for args in [
        vec!["ca", "init", "--out", dev.to_str().unwrap()],
        vec![
            "token",
            "keygen",
            "--out",
            dev.join("signing.key").to_str().unwrap(),
        ],
    ] {
        let out = command(&[]).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
    }
    let creds = ["--dev", dev.to_str().unwrap()];
    let started = Instant::now();
    let out = agent(&store_args("quic://127.0.0.1:1", &creds, "acme"), &[]);
    let err = one_line_error(&out);
    assert!(err.contains("hub unreachable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // With --spool the episode is kept on disk for a later agent, and the command succeeds.
    let spool = tmp.path().join("spool");
    let mut args = store_args("quic://127.0.0.1:1", &creds, "acme");
    args.extend_from_slice(&["--connect-timeout", "1", "--spool", spool.to_str().unwrap()]);
    let stored = ok_json(&agent(&args, &[]));
    assert_eq!(stored["spooled"], true);
    let file = spool
        .join("acme")
        .join(format!("{}.ep", stored["id"].as_str().unwrap()));
    assert!(file.is_file(), "{file:?}");
}
