//! The `ca`, `cert` and `token` commands through the real binary.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_agentdb");
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn agentdb(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("JWT_SECRET")
        .output()
        .expect("the agentdb binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `agentdb` and asserts success.
fn ok(args: &[&str]) -> String {
    let out = agentdb(args);
    assert!(
        out.status.success(),
        "agentdb {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `agentdb`, asserts failure with a single line on stderr, and returns that line.
fn fails(args: &[&str]) -> String {
    fails_with(agentdb(args), args)
}

fn fails_with(out: Output, args: &[&str]) -> String {
    assert!(!out.status.success(), "agentdb {args:?} should fail");
    let err = stderr(&out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "agentdb {args:?}: stderr should be one line: {err:?}"
    );
    assert!(stdout(&out).is_empty(), "nothing on stdout on failure");
    err.trim_end().to_owned()
}

/// Runs `agentdb` with arguments the command-line parser rejects, and returns its stderr
/// (the reason, then usage hints).
fn usage_error(args: &[&str]) -> String {
    let out = agentdb(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "agentdb {args:?} should be a usage error"
    );
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn openssl_verify(ca: &Path, cert: &Path) -> bool {
    Command::new("openssl")
        .args(["verify", "-CAfile", s(ca), s(cert)])
        .output()
        .expect("openssl runs")
        .status
        .success()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).expect("valid JSON")
}

#[test]
fn ca_cert_and_token_workflow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = tmp.path().join("ca");
    let certs = tmp.path().join("certs");
    let key = tmp.path().join("signing.key");

    let out = ok(&[
        "ca",
        "init",
        "--out",
        s(&ca),
        "--trust-domain",
        "test.example",
    ]);
    assert!(out.contains("test.example"), "{out}");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);

    let out = ok(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&certs),
        "--hub",
        "eu-1",
        "--san",
        "hub.example.com",
        "--san",
        "10.0.0.7",
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["spiffe_id"], "spiffe://test.example/hub/eu-1");
    assert!(openssl_verify(&ca.join("ca.pem"), &certs.join("eu-1.pem")));
    assert_eq!(mode(&certs.join("eu-1.key")), 0o600);

    let out = ok(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&certs),
        "--agent",
        "a1",
        "--tenant",
        "acme",
    ]);
    assert!(
        out.contains("spiffe://test.example/tenant/acme/agent/a1"),
        "{out}"
    );
    assert!(openssl_verify(&ca.join("ca.pem"), &certs.join("a1.pem")));
    assert_eq!(mode(&certs.join("a1.key")), 0o600);

    let out = ok(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&certs),
        "--agent",
        "*",
        "--tenant",
        "acme",
        "--hours",
        "2",
        "--json",
    ]);
    assert_eq!(json(&out)["spiffe_id"], "spiffe://test.example/tenant/acme");
    assert!(openssl_verify(
        &ca.join("ca.pem"),
        &certs.join("tenant-acme.pem")
    ));

    ok(&["token", "keygen", "--out", s(&key)]);
    assert_eq!(mode(&key), 0o600);
    let public = tmp.path().join("signing.key.pub");
    assert!(std::fs::read_to_string(&public)
        .expect("public key")
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    let token = ok(&[
        "token",
        "issue",
        "--signing-key",
        s(&key),
        "--tenant",
        "acme",
        "--agent",
        "a1",
        "--ttl",
        "120",
        "--scope",
        "read,sync",
    ]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3);

    let out = ok(&[
        "token",
        "verify",
        "--public-key",
        s(&public),
        token,
        "--json",
    ]);
    let claims = json(&out);
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["sub"], "a1");
    assert_eq!(claims["scope"], serde_json::json!(["read", "sync"]));
    assert_eq!(claims["aud"], "agentdb-hub");
    assert_eq!(claims["iss"], "agentdb");
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["exp"].as_u64().expect("exp") - iat, 120);

    let human = ok(&["token", "verify", "--public-key", s(&public), token]);
    assert!(human.contains("tenant:   acme"), "{human}");
    assert!(human.contains("scope:    read,sync"), "{human}");
}

#[test]
fn hs256_from_flag_and_environment() {
    let token = ok(&[
        "token", "issue", "--secret", SECRET, "--tenant", "acme", "--agent", "a1",
    ]);
    let out = Command::new(BIN)
        .args(["token", "verify", "--json", token.trim()])
        .env("JWT_SECRET", SECRET)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&stdout(&out))["scope"],
        serde_json::json!(["read", "write", "sync"])
    );

    let err = fails(&[
        "token",
        "verify",
        "--secret",
        "another-shared-secret-of-32-bytes-or-more",
        token.trim(),
    ]);
    assert!(err.contains("bad token signature"), "{err}");
    let err = fails(&[
        "token", "issue", "--secret", "short", "--tenant", "a", "--agent", "b",
    ]);
    assert!(err.contains("at least 32"), "{err}");
    let err = fails(&["token", "issue", "--tenant", "a", "--agent", "b"]);
    assert!(err.contains("no signing key"), "{err}");
}

#[test]
fn verify_failures_are_one_precise_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("k");
    let other = tmp.path().join("other");
    ok(&["token", "keygen", "--out", s(&key)]);
    ok(&["token", "keygen", "--out", s(&other)]);
    let public = format!("{}.pub", s(&key));
    let other_public = format!("{}.pub", s(&other));
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "issue",
            "--signing-key",
            s(&key),
            "--tenant",
            "acme",
            "--agent",
            "a1",
        ];
        args.extend_from_slice(extra);
        ok(&args).trim().to_owned()
    };

    let token = issue(&[]);
    let err = fails(&["token", "verify", "--public-key", &other_public, &token]);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("bad token signature"), "{err}");

    let err = fails(&[
        "token",
        "verify",
        "--public-key",
        &public,
        "--audience",
        "elsewhere",
        &token,
    ]);
    assert!(err.contains("another audience"), "{err}");

    let err = fails(&["token", "verify", "--public-key", &public, "not-a-token"]);
    assert!(err.contains("malformed token"), "{err}");

    let hs = ok(&[
        "token", "issue", "--secret", SECRET, "--tenant", "acme", "--agent", "a1",
    ]);
    let err = fails(&["token", "verify", "--public-key", &public, hs.trim()]);
    assert!(err.contains("algorithm \"HS256\""), "{err}");

    // Invalid values are refused while parsing the command line, with the reason first.
    let err = usage_error(&[
        "token",
        "issue",
        "--signing-key",
        s(&key),
        "--tenant",
        "acme",
        "--agent",
        "a1",
        "--scope",
        "read,root",
    ]);
    assert!(err.contains("unknown scope \"root\""), "{err}");
    let err = usage_error(&[
        "token",
        "issue",
        "--signing-key",
        s(&key),
        "--tenant",
        "ac/me",
        "--agent",
        "a1",
    ]);
    assert!(err.contains("tenant id may only contain"), "{err}");
}

#[test]
fn expired_token_is_reported_as_expired() {
    // A token with a one-second lifetime expires once the clock-skew allowance has passed.
    // Rather than wait, sign one by hand with an issue time in the past.
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("k");
    ok(&["token", "keygen", "--out", s(&key)]);
    let pem = std::fs::read(&key).expect("key");
    let issuer = agentdb_security::token::TokenIssuer::from_ed25519_pem(&pem).expect("issuer");
    let request = agentdb_security::token::TokenRequest::new(
        agentdb_core::TenantId::new("acme").expect("valid"),
        agentdb_core::AgentId::new("a1").expect("valid"),
    );
    let token = issuer.issue(&request, 1_000_000).expect("issue");
    let public = format!("{}.pub", s(&key));
    let err = fails(&["token", "verify", "--public-key", &public, &token]);
    assert!(err.contains("token expired at 1000300"), "{err}");
}

#[test]
fn ca_init_does_not_clobber_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = tmp.path().join("ca");
    ok(&["ca", "init", "--out", s(&ca)]);
    let before = std::fs::read(ca.join("ca.key")).expect("key");

    let err = fails(&["ca", "init", "--out", s(&ca)]);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(ca.join("ca.key")).expect("key"), before);

    let out = ok(&["ca", "init", "--out", s(&ca), "--force", "--json"]);
    assert_eq!(json(&out)["trust_domain"], "agentdb.local");
    assert_ne!(std::fs::read(ca.join("ca.key")).expect("key"), before);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
}

#[test]
fn cert_issue_failures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = tmp.path().join("ca");
    let out_dir = tmp.path().join("out");

    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--hub",
        "h",
    ]);
    assert!(err.contains("cannot load the CA"), "{err}");

    ok(&["ca", "init", "--out", s(&ca)]);
    ok(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--hub",
        "h",
    ]);
    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--hub",
        "h",
    ]);
    assert!(err.contains("already exists"), "{err}");
    ok(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--hub",
        "h",
        "--force",
    ]);

    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--hub",
        "h2",
        "--days",
        "5000",
    ]);
    assert!(err.contains("expire after the CA"), "{err}");

    let err = fails(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--agent",
        "bad/agent",
        "--tenant",
        "acme",
    ]);
    assert!(err.contains("agent id"), "{err}");

    let err = usage_error(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--agent",
        "a1",
    ]);
    assert!(err.contains("--tenant"), "{err}");
    let err = usage_error(&["cert", "issue", "--ca", s(&ca), "--out", s(&out_dir)]);
    assert!(err.contains("--hub") && err.contains("--agent"), "{err}");
    let err = usage_error(&[
        "cert",
        "issue",
        "--ca",
        s(&ca),
        "--out",
        s(&out_dir),
        "--agent",
        "a1",
        "--tenant",
        "acme",
        "--san",
        "example.com",
    ]);
    assert!(err.contains("--san") && err.contains("--agent"), "{err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "usage errors are one line: {err}"
    );
}
