//! The audit log of a real `agentdb hub` process: operations over QUIC (`agentdb agent …`)
//! and HTTPS, and the refused probes of the adversarial suites, each leave a record with the
//! right outcome and error code; the log verifies after a graceful stop; `agentdb audit
//! export --tenant` and `GET /v1/audit` give one tenant's records (the route to its admin
//! only); and no file of the log holds a marker planted in episode content.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use agentdb_core::{AgentId, TenantId};
use agentdb_security::token::{Ed25519KeyPem, Scope, TokenIssuer, TokenRequest};
use agentdb_testkit::https::{HttpsClient, HttpsConnection, HttpsResponse};
use agentdb_testkit::{unix_now, TestPki};
use serde_json::{json, Value};

use common::{ok_json, pki_hub, Hub};

/// Planted in every text field of every episode; must never reach the audit log.
const MARKER: &str = "zq7-audit-marker-4e1b";

/// A hub with its PKI, files and clients.
struct Setup {
    pki: TestPki,
    dir: tempfile::TempDir,
    hub: Hub,
}

impl Setup {
    fn start() -> Setup {
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        let hub = pki_hub(&pki, dir.path(), "");
        std::fs::write(
            dir.path().join("signing.key"),
            pki.signing.private_pem.as_bytes(),
        )
        .unwrap();
        for tenant in ["acme", "globex"] {
            let (cert, key) = pki.tenant_cert(tenant);
            std::fs::write(dir.path().join(format!("{tenant}.pem")), cert).unwrap();
            std::fs::write(dir.path().join(format!("{tenant}.key")), key).unwrap();
        }
        Setup { pki, dir, hub }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn https(&self, cert: Option<(Vec<u8>, Vec<u8>)>) -> HttpsClient {
        let addr: SocketAddr = self.hub.https.parse().unwrap();
        let cert = cert.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        HttpsClient::new(addr, &self.pki.ca_pem(), cert)
    }

    /// `agentdb agent ARGS` for `acme` as agent `quic-agent`, over QUIC with the tenant's
    /// certificate and tokens minted with the deployment's signing key.
    fn agent(&self, args: &[&str]) -> Output {
        let mut cmd = common::agentdb();
        cmd.arg("agent")
            .arg(args[0])
            .args(["--hub", &self.hub.quic, "--ca"])
            .arg(self.path("ca.pem"))
            .arg("--cert")
            .arg(self.path("acme.pem"))
            .arg("--key")
            .arg(self.path("acme.key"))
            .arg("--signing-key")
            .arg(self.path("signing.key"))
            .args(["--agent", "quic-agent", "--tenant", "acme", "--json"])
            .args(&args[1..]);
        cmd.output().unwrap()
    }

    /// `method path` on the admin listener with a bearer token; (status, body text).
    fn admin(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        self.hub.admin_http(method, path, token, Some("{}"))
    }
}

/// Stops `hub` with SIGTERM and waits for it to drain, seal its log and exit.
fn stop(mut hub: Hub) {
    let pid = hub.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = hub.child.try_wait().unwrap() {
            assert!(status.success(), "hub exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "hub did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn episode(task: &str) -> Value {
    json!({
        "task": format!("{task} {MARKER}"),
        "input": format!("input {MARKER}"),
        "output": format!("output {MARKER}"),
        "reward": 0.7,
        "critique": format!("critique {MARKER}"),
        "tags": [MARKER],
        "metadata": { "note": MARKER }
    })
}

/// `method path` with a bearer token (and a JSON body) on an open connection.
async fn call(
    conn: &mut HttpsConnection,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> HttpsResponse {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| b.to_string());
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    conn.request(method, path, &headers, body.as_deref().map(str::as_bytes))
        .await
        .unwrap()
}

/// Every record of the log in `dir`, in order.
fn records(dir: &Path) -> Vec<Value> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The records with `operation` and `outcome` that also pass `and`.
fn find<'a>(
    all: &'a [Value],
    operation: &str,
    outcome: &str,
    and: impl Fn(&Value) -> bool,
) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| r["operation"] == operation && r["outcome"] == outcome && and(r))
        .collect()
}

fn names_episode(record: &Value, id: &str) -> bool {
    record["episodes"]
        .as_array()
        .is_some_and(|ids| ids.iter().any(|e| e == id))
}

fn agent_is(record: &Value, agent: &str) -> bool {
    record["agent"] == agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_and_refused_probe_is_audited_and_no_content_is() {
    let s = Setup::start();

    // Operations over QUIC.
    let stored = ok_json(&s.agent(&[
        "store",
        "--task",
        &format!("summarise invoice {MARKER}"),
        "--input",
        &format!("input {MARKER}"),
        "--output",
        &format!("output {MARKER}"),
        "--reward",
        "0.9",
        "--critique",
        &format!("critique {MARKER}"),
        "--metadata",
        &json!({ "note": MARKER }).to_string(),
    ]));
    let quic_kept = stored["id"].as_str().unwrap().to_owned();
    let second = ok_json(&s.agent(&[
        "store",
        "--task",
        &format!("refund {MARKER}"),
        "--output",
        MARKER,
        "--reward",
        "0.1",
    ]));
    let quic_deleted = second["id"].as_str().unwrap().to_owned();
    ok_json(&s.agent(&["query", &format!("invoice {MARKER}")]));
    ok_json(&s.agent(&[
        "update",
        "--id",
        &quic_kept,
        "--reward",
        "0.2",
        "--critique",
        &format!("new critique {MARKER}"),
        "--tag",
        MARKER,
    ]));
    ok_json(&s.agent(&["delete", "--id", &quic_deleted]));
    ok_json(&s.agent(&["stats"]));

    // Operations over HTTPS, on one connection.
    let acme = s.https(Some(s.pki.tenant_cert("acme")));
    let token = s.pki.token("acme", "https-agent", 300);
    let mut conn = acme.connect().await.unwrap();
    let r = call(
        &mut conn,
        "POST",
        "/v1/episodes",
        &token,
        Some(episode("triage ticket")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let https_id = r.json()["results"][0]["id"].as_str().unwrap().to_owned();
    // Every answer names its request; the audit log records it under that id (below).
    let store_request = r.header("x-request-id").unwrap().to_owned();
    let path = format!("/v1/episodes/{https_id}");
    let r = call(&mut conn, "GET", &path, &token, None).await;
    assert_eq!(r.status, 200);
    let get_request = r.header("x-request-id").unwrap().to_owned();
    assert_ne!(get_request, store_request);
    let query = json!({ "text": format!("triage {MARKER}"), "k": 3 });
    let r = call(&mut conn, "POST", "/v1/query", &token, Some(query)).await;
    assert_eq!(r.status, 200);
    let found: Vec<String> = r.json()["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["episode"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(found.contains(&https_id), "{found:?}");
    let patch = json!({ "critique": MARKER, "tags": [MARKER] });
    let r = call(&mut conn, "PATCH", &path, &token, Some(patch)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = call(&mut conn, "DELETE", &path, &token, None).await;
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    // Another tenant's episode.
    let globex = s.https(Some(s.pki.tenant_cert("globex")));
    let globex_token = s.pki.token("globex", "globex-agent", 300);
    let r = globex
        .send_json("POST", "/v1/episodes", &globex_token, &episode("globex"))
        .await;
    assert_eq!(r.status, 201);
    let globex_id = r.json()["results"][0]["id"].as_str().unwrap().to_owned();

    // Refused probes, each with its own agent name so that its record can be told apart.
    let now = unix_now();
    let request = |agent: &str| {
        TokenRequest::new(TenantId::new("acme").unwrap(), AgentId::new(agent).unwrap())
    };
    let probe = |agent: &str| s.https(Some(s.pki.agent_cert("acme", agent)));
    // A forged token.
    let forger =
        TokenIssuer::from_ed25519_pem(Ed25519KeyPem::generate().unwrap().private_pem.as_bytes())
            .unwrap();
    let forged = forger.issue(&request("probe-forged"), now).unwrap();
    let r = probe("probe-forged").get("/v1/stats", &forged).await;
    assert_eq!((r.status, r.error_code()), (401, "unauthenticated".into()));
    // An expired token.
    let expired = s
        .pki
        .issuer()
        .issue(&request("probe-expired").ttl_secs(60), now - 3600)
        .unwrap();
    let r = probe("probe-expired").get("/v1/stats", &expired).await;
    assert_eq!((r.status, r.error_code()), (401, "token_expired".into()));
    assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
    // Another tenant's certificate.
    let wrong_cert = s.pki.token("acme", "probe-wrong-cert", 300);
    let r = globex.get("/v1/stats", &wrong_cert).await;
    assert_eq!((r.status, r.error_code()), (403, "tenant_mismatch".into()));
    // No certificate where one is required.
    let bare = s.https(None);
    assert!(bare
        .request(
            "GET",
            "/v1/stats",
            &[("authorization", &format!("Bearer {token}"))],
            None
        )
        .await
        .is_err());
    // A token without the scope a write needs.
    let read_only = s
        .pki
        .token_with("acme", "probe-read-only", 300, vec![Scope::Read]);
    let r = acme
        .send_json("POST", "/v1/episodes", &read_only, &episode("no scope"))
        .await;
    assert_eq!((r.status, r.error_code()), (403, "forbidden".into()));
    // Another tenant's admin token on this tenant's admin route.
    let globex_admin = s
        .pki
        .token_with("globex", "probe-other-admin", 300, vec![Scope::Admin]);
    let (status, _) = s.admin("GET", "/v1/tenants/acme/stats", Some(&globex_admin));
    assert_eq!(status, 403);
    // An erase without the erase scope.
    let acme_admin = s
        .pki
        .token_with("acme", "probe-no-erase", 300, vec![Scope::Admin]);
    let (status, _) = s.admin("POST", "/v1/tenants/acme/erase", Some(&acme_admin));
    assert_eq!(status, 403);

    // The admin route: the tenant's admin gets its records, as JSON lines; nothing more.
    let export = s
        .hub
        .admin_call("GET", "/v1/audit?tenant=acme", Some(&acme_admin), None);
    assert_eq!(export.status, 200, "{}", export.body);
    let body = export.body;
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|r| r["tenant"] == "acme"), "{body}");
    assert!(lines
        .iter()
        .any(|r| r["operation"] == "store" && names_episode(r, &quic_kept)));
    assert!(!body.contains(MARKER));
    for (path, token, want) in [
        ("/v1/audit", Some(acme_admin.as_str()), 403),
        ("/v1/audit?tenant=globex", Some(acme_admin.as_str()), 403),
        ("/v1/audit?tenant=acme", Some(token.as_str()), 403),
        ("/v1/audit?tenant=acme", None, 401),
    ] {
        assert_eq!(s.admin("GET", path, token).0, want, "{path}");
    }
    let operator = s
        .pki
        .token_with("ops", "operator", 300, vec![Scope::Operator]);
    let (status, all) = s.admin("GET", "/v1/audit?since=0", Some(&operator));
    assert_eq!(status, 200);
    assert!(all.contains("\"tenant\":\"globex\"") && all.contains("\"hub_start\""));

    let Setup { pki: _, dir, hub } = s;
    stop(hub);
    let audit_dir = dir.path().join("data").join("audit");
    let audit = audit_dir.to_str().unwrap();

    // The log verifies against the hub's certificate and the CA.
    let out = common::agentdb()
        .args(["audit", "verify", "--dir", audit, "--cert"])
        .arg(dir.path().join("hub.pem"))
        .arg("--ca")
        .arg(dir.path().join("ca.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok"), "{stdout}");

    let all = records(&audit_dir);
    // Every operation, with its ids.
    let ok = |op: &str, agent: &str, id: Option<&str>| {
        let hits = find(&all, op, "ok", |r| {
            agent_is(r, agent) && id.is_none_or(|id| names_episode(r, id))
        });
        assert!(!hits.is_empty(), "no {op} record of {agent} for {id:?}");
        for r in hits {
            assert_eq!(r["tenant"], "acme");
            if op != "authenticate" {
                assert!(r["request_id"].as_str().is_some_and(|id| !id.is_empty()));
            }
        }
    };
    ok("store", "quic-agent", Some(&quic_kept));
    ok("query", "quic-agent", Some(&quic_kept));
    ok("update", "quic-agent", Some(&quic_kept));
    ok("delete", "quic-agent", Some(&quic_deleted));
    ok("stats", "quic-agent", None);
    ok("store", "https-agent", Some(&https_id));
    ok("get", "https-agent", Some(&https_id));
    ok("query", "https-agent", Some(&https_id));
    ok("update", "https-agent", Some(&https_id));
    ok("delete", "https-agent", Some(&https_id));
    // An HTTP answer's x-request-id names its one record.
    let by_request =
        |id: &str| -> Vec<&Value> { all.iter().filter(|r| r["request_id"] == id).collect() };
    let stored = by_request(&store_request);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["operation"], "store");
    assert!(names_episode(stored[0], &https_id));
    let read = by_request(&get_request);
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["operation"], "get");
    let exported = by_request(export.request_id.as_deref().unwrap());
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_eq!(exported[0]["detail"], "GET /v1/audit");
    ok("authenticate", "quic-agent", None);
    ok("authenticate", "https-agent", None);
    assert!(!find(&all, "session_end", "ok", |r| agent_is(r, "quic-agent")).is_empty());
    let quic_identity = find(&all, "store", "ok", |r| agent_is(r, "quic-agent"))[0]["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(quic_identity.starts_with("spiffe://"), "{quic_identity}");
    // An HTTPS connection verifies its token once: its later requests are not authenticated
    // again. (The admin listener, which has no certificate, verifies each request.)
    let https_auth = find(&all, "authenticate", "ok", |r| {
        agent_is(r, "https-agent") && r["identity"].is_string()
    });
    assert_eq!(https_auth.len(), 1, "{https_auth:?}");

    // Every refused probe, with its outcome and code.
    let refused = |op: &str, code: &str, and: &dyn Fn(&Value) -> bool, what: &str| {
        let hits = find(&all, op, "refused", |r| r["error_code"] == code && and(r));
        assert!(!hits.is_empty(), "{what}: no refused {op} with {code}");
    };
    fn identity_of(agent: &'static str) -> impl Fn(&Value) -> bool {
        move |r: &Value| {
            r["identity"]
                .as_str()
                .is_some_and(|i| i.ends_with(&format!("/agent/{agent}")))
        }
    }
    refused(
        "authenticate",
        "unauthenticated",
        &identity_of("probe-forged"),
        "forged token",
    );
    refused(
        "authenticate",
        "token_expired",
        &identity_of("probe-expired"),
        "expired token",
    );
    refused(
        "authenticate",
        "tenant_mismatch",
        &|r| agent_is(r, "probe-wrong-cert"),
        "another tenant's certificate",
    );
    refused(
        "authenticate",
        "unauthenticated",
        &|r| {
            r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("https handshake"))
        },
        "no certificate",
    );
    refused(
        "store",
        "forbidden",
        &|r| agent_is(r, "probe-read-only"),
        "a token without the write scope",
    );
    refused(
        "admin",
        "tenant_mismatch",
        &|r| agent_is(r, "probe-other-admin") && r["tenant"] == "acme",
        "another tenant's admin token",
    );
    refused(
        "erase",
        "forbidden",
        &|r| agent_is(r, "probe-no-erase") && r["tenant"] == "acme",
        "an erase without the erase scope",
    );

    // The export of one tenant holds its records only.
    let out = common::agentdb()
        .args(["audit", "export", "--dir", audit, "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let exported: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(exported.len() > 10);
    assert!(exported.iter().all(|r| r["tenant"] == "acme"));
    assert!(!exported.iter().any(|r| names_episode(r, &globex_id)));
    assert!(all
        .iter()
        .any(|r| r["tenant"] == "globex" && names_episode(r, &globex_id)));

    // No file of the log holds episode content.
    let mut files = 0;
    for entry in std::fs::read_dir(&audit_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} holds episode content",
            path.display()
        );
        files += 1;
    }
    assert!(files >= 2, "segments and HEAD");
}
