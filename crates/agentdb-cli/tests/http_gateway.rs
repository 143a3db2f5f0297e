//! The HTTPS/JSON gateway of a real `agentdb hub` process: every endpoint, the QUIC path's
//! adversarial cases over HTTP, the change stream, API keys, and one memory for both
//! transports.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentdb_client::{AgentConfig, EphemeralAgent, SigningKeyTokens};
use agentdb_core::{AgentId, NewEpisode, TenantId};
use agentdb_security::token::{Ed25519KeyPem, Scope, TokenIssuer, TokenRequest};
use agentdb_testkit::https::{HttpsClient, HttpsResponse};
use agentdb_testkit::{unix_now, TestPki};
use base64::Engine as _;
use serde_json::{json, Value};

use common::{pki_hub, Hub};

/// A hub with its PKI and a client per tenant certificate.
struct Gateway {
    pki: TestPki,
    hub: Hub,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(extra: &str) -> Gateway {
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        let hub = pki_hub(&pki, dir.path(), extra);
        Gateway {
            pki,
            hub,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.hub.https.parse().unwrap()
    }

    /// A client presenting a tenant-wide certificate of `tenant`.
    fn client(&self, tenant: &str) -> HttpsClient {
        let (cert, key) = self.pki.tenant_cert(tenant);
        HttpsClient::new(self.addr(), &self.pki.ca_pem(), Some((&cert, &key)))
    }

    fn token(&self, tenant: &str) -> String {
        self.pki.token(tenant, "agent-1", 300)
    }
}

/// A client-chosen episode id (ids are UUIDs; these share their first 64 bits on purpose).
fn uid(n: u32) -> String {
    format!("0190a000-0000-7000-8000-{n:012x}")
}

fn episode(task: &str, reward: f64, tags: &[&str]) -> Value {
    json!({
        "task": task,
        "input": format!("input of {task}"),
        "output": format!("output of {task}"),
        "reward": reward,
        "tags": tags,
        "metadata": { "team": "billing", "n": 1 }
    })
}

async fn stats(client: &HttpsClient, token: &str) -> Value {
    let r = client.get("/v1/stats", token).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn ids(page: &Value, key: &str) -> Vec<String> {
    page[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_over_https() {
    let gw = Gateway::start("");
    let client = gw.client("acme");
    let token = gw.token("acme");

    // Health and the document need no token.
    let health = client.request("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    // One episode without an id: the hub mints one.
    let one = client
        .send_json(
            "POST",
            "/v1/episodes",
            &token,
            &episode("summarise invoice", 0.9, &["invoice"]),
        )
        .await;
    assert_eq!(one.status, 201, "{}", String::from_utf8_lossy(&one.body));
    let minted = one.json()["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(one.json()["results"][0]["inserted"], true);

    // A batch with client ids; sent again, nothing new is written.
    let mut batch = Vec::new();
    for i in 0..4 {
        let mut e = episode(&format!("refund order {i}"), 0.2 * i as f64, &["refund"]);
        e["id"] = json!(uid(i));
        batch.push(e);
    }
    let body = json!({ "episodes": batch });
    let first = client
        .send_json("POST", "/v1/episodes", &token, &body)
        .await;
    assert_eq!(first.status, 201);
    let again = client
        .send_json("POST", "/v1/episodes", &token, &body)
        .await;
    assert_eq!(again.status, 200);
    assert!(again.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["inserted"] == false));
    assert_eq!(stats(&client, &token).await["episodes"], 5);

    // Read one.
    let got = client.get(&format!("/v1/episodes/{minted}"), &token).await;
    assert_eq!(got.status, 200);
    let got = got.json();
    assert_eq!(got["task"], "summarise invoice");
    assert_eq!(got["metadata"]["team"], "billing");
    assert_eq!(got["agent"], "agent-1", "the agent is the token's");

    // Change it.
    let patched = client
        .send_json(
            "PATCH",
            &format!("/v1/episodes/{}", uid(0)),
            &token,
            &json!({ "reward": 1.0, "tags": ["refund", "fixed"], "critique": "checked" }),
        )
        .await;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    let patched = patched.json();
    assert_eq!(patched["reward"], 1.0);
    assert_eq!(patched["critique"], "checked");
    assert_eq!(patched["tags"], json!(["refund", "fixed"]));

    // Query with filters: tags and metadata narrow the matches; best first.
    let q = client
        .send_json(
            "POST",
            "/v1/query",
            &token,
            &json!({ "text": "refund order", "k": 10, "filter": { "tags": ["refund"] } }),
        )
        .await;
    assert_eq!(q.status, 200, "{}", String::from_utf8_lossy(&q.body));
    let matches = q.json()["matches"].as_array().unwrap().clone();
    assert_eq!(matches.len(), 4);
    let scores: Vec<f64> = matches
        .iter()
        .map(|m| m["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let fixed = client
        .send_json(
            "POST",
            "/v1/query",
            &token,
            &json!({ "text": "refund", "filter": { "tags": ["fixed"], "min_reward": 0.5,
                     "metadata": { "team": "billing" } } }),
        )
        .await
        .json();
    assert_eq!(fixed["matches"][0]["episode"]["id"], uid(0));
    assert_eq!(fixed["matches"].as_array().unwrap().len(), 1);
    let none = client
        .send_json(
            "POST",
            "/v1/query",
            &token,
            &json!({ "text": "refund", "filter": { "metadata": { "team": "sales" } } }),
        )
        .await
        .json();
    assert_eq!(none["matches"].as_array().unwrap().len(), 0);

    // Delete one; it is gone.
    let del = client
        .request(
            "DELETE",
            &format!("/v1/episodes/{}", uid(3)),
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(del.status, 204);
    assert_eq!(
        client
            .get(&format!("/v1/episodes/{}", uid(3)), &token)
            .await
            .status,
        404
    );

    // List in pages of 2: every live episode exactly once, then no cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/episodes?limit=2&cursor={c}"),
            None => "/v1/episodes?limit=2".to_owned(),
        };
        let page = client.get(&path, &token).await;
        assert_eq!(page.status, 200);
        let page = page.json();
        seen.extend(ids(&page, "episodes"));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let mut expected = vec![minted.clone(), uid(0), uid(1), uid(2)];
    expected.sort();
    assert_eq!(seen, expected);

    // The change feed as JSON: puts, the update, then the delete, in order.
    let changes = client.get("/v1/changes?limit=100", &token).await.json();
    let kinds: Vec<&str> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"deleted"));
    assert!(kinds.iter().filter(|k| **k == "put").count() >= 4);
    assert_eq!(changes["more"], false);
    let after = changes["next_cursor"].as_str().unwrap();
    let empty = client
        .get(&format!("/v1/changes?since={after}"), &token)
        .await
        .json();
    assert_eq!(empty["changes"].as_array().unwrap().len(), 0);

    // Stats, and the OpenAPI document served by the hub is the one `agentdb openapi` prints.
    let s = stats(&client, &token).await;
    assert_eq!(s["episodes"], 4);
    let doc = client
        .request("GET", "/v1/openapi.json", &[], None)
        .await
        .unwrap()
        .json();
    let printed: Value =
        serde_json::from_slice(&common::run_ok(&["openapi"]).stdout).expect("JSON document");
    assert_eq!(doc, printed);
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/episodes", &["post", "get"][..]),
        ("/v1/episodes/{id}", &["get", "patch", "delete"][..]),
        ("/v1/query", &["post"][..]),
        ("/v1/stats", &["get"][..]),
        ("/v1/changes", &["get"][..]),
        ("/v1/token", &["post", "delete"][..]),
        ("/v1/openapi.json", &["get"][..]),
        ("/healthz", &["get"][..]),
    ] {
        for m in methods {
            assert!(
                paths[path].get(*m).is_some(),
                "{m} {path} is not documented"
            );
        }
    }
    assert_eq!(paths.len(), 8, "{:?}", paths.keys().collect::<Vec<_>>());
    // Every documented answer declares the request id header the hub adds to it.
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["headers"]["x-request-id"].is_object(),
                    "{method} {path} {status} does not declare x-request-id"
                );
            }
        }
    }
}

/// An `alg: none` token with otherwise valid claims.
fn unsigned_token(tenant: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = unix_now();
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = json!({
        "iss": "agentdb", "aud": "agentdb-hub", "sub": "agent-1", "tenant": tenant,
        "scope": ["read", "write", "sync"], "iat": now, "exp": now + 300, "jti": "none-1"
    });
    format!("{header}.{}.", b64.encode(claims.to_string()))
}

fn issuer_token(issuer: &TokenIssuer, request: TokenRequest, now: u64) -> String {
    issuer.issue(&request, now).unwrap()
}

fn request(tenant: &str) -> TokenRequest {
    TokenRequest::new(
        TenantId::new(tenant).unwrap(),
        AgentId::new("agent-1").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_name_their_code_and_write_nothing() {
    let gw = Gateway::start("[limits]\nmax_frame_len = 65536\n");
    let acme = gw.client("acme");
    let globex = gw.client("globex");
    let acme_token = gw.token("acme");
    let globex_token = gw.token("globex");
    for (client, token, task, id) in [
        (&acme, &acme_token, "acme task", uid(1)),
        (&globex, &globex_token, "globex task", uid(2)),
    ] {
        let mut e = episode(task, 0.8, &[]);
        e["id"] = json!(id);
        let r = client.send_json("POST", "/v1/episodes", token, &e).await;
        assert_eq!(r.status, 201);
    }

    // TLS: no client certificate, and a certificate of another CA, fail the handshake.
    let bare = HttpsClient::new(gw.addr(), &gw.pki.ca_pem(), None);
    assert!(bare.request("GET", "/v1/stats", &[], None).await.is_err());
    let foreign = TestPki::new();
    let (fc, fk) = foreign.tenant_cert("acme");
    let foreign_client = HttpsClient::new(gw.addr(), &gw.pki.ca_pem(), Some((&fc, &fk)));
    assert!(foreign_client
        .request("GET", "/v1/stats", &[], None)
        .await
        .is_err());
    let trusting_foreign = HttpsClient::new(gw.addr(), &foreign.ca_pem(), Some((&fc, &fk)));
    assert!(trusting_foreign
        .request("GET", "/healthz", &[], None)
        .await
        .is_err());

    // Tokens.
    let now = unix_now();
    let issuer = gw.pki.issuer();
    let expired = issuer_token(&issuer, request("acme").ttl_secs(60), now - 3600);
    let other_key =
        TokenIssuer::from_ed25519_pem(Ed25519KeyPem::generate().unwrap().private_pem.as_bytes())
            .unwrap();
    let forged = issuer_token(&other_key, request("acme"), now);
    let wrong_audience = issuer_token(&issuer, request("acme").audience("elsewhere"), now);
    let read_only = gw.pki.token_with("acme", "agent-1", 300, vec![Scope::Read]);
    let write = episode("should not be stored", 0.5, &[]);
    let cases: Vec<(&str, String, &HttpsClient, u16, &str)> = vec![
        ("no token", String::new(), &acme, 401, "unauthenticated"),
        ("expired", expired, &acme, 401, "token_expired"),
        ("forged", forged, &acme, 401, "unauthenticated"),
        (
            "alg none",
            unsigned_token("acme"),
            &acme,
            401,
            "unauthenticated",
        ),
        (
            "wrong audience",
            wrong_audience,
            &acme,
            401,
            "unauthenticated",
        ),
        (
            "token A, certificate B",
            acme_token.clone(),
            &globex,
            403,
            "tenant_mismatch",
        ),
        (
            "read-only token writing",
            read_only,
            &acme,
            403,
            "forbidden",
        ),
    ];
    for (what, token, client, status, code) in cases {
        let r = if token.is_empty() {
            client
                .request(
                    "POST",
                    "/v1/episodes",
                    &[],
                    Some(write.to_string().as_bytes()),
                )
                .await
                .unwrap()
        } else {
            client
                .send_json("POST", "/v1/episodes", &token, &write)
                .await
        };
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), code, "{what}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{what}: {message}"
        );
        if status == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        }
    }

    // A token accepted on a connection, then revoked there, is refused on that same
    // connection (the connection remembers the verified token, not its validity).
    let kept = gw.pki.token("acme", "agent-3", 300);
    let auth = format!("Bearer {kept}");
    let mut conn = acme.connect().await.unwrap();
    let headers = [("authorization", auth.as_str())];
    for (method, path, status) in [
        ("GET", "/v1/stats", 200),
        ("GET", "/v1/stats", 200),
        ("DELETE", "/v1/token", 204),
        ("GET", "/v1/stats", 401),
    ] {
        let r = conn.request(method, path, &headers, None).await.unwrap();
        assert_eq!(r.status, status, "{method} {path}");
    }

    // A revoked token: DELETE /v1/token, then it is refused.
    let doomed = gw.pki.token("acme", "agent-2", 300);
    let auth = format!("Bearer {doomed}");
    let r = acme
        .request("DELETE", "/v1/token", &[("authorization", &auth)], None)
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = acme.get("/v1/stats", &doomed).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "unauthenticated")
    );

    // Another tenant's id answers exactly as a missing one.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"reward": 0.0}))),
        ("DELETE", None),
    ] {
        for id in [uid(2), uid(99), "not-a-uuid".to_owned()] {
            let path = format!("/v1/episodes/{id}");
            let r = match &body {
                Some(b) => acme.send_json(method, &path, &acme_token, b).await,
                None => acme
                    .request(
                        method,
                        &path,
                        &[("authorization", &format!("Bearer {acme_token}"))],
                        None,
                    )
                    .await
                    .unwrap(),
            };
            assert_eq!(
                (r.status, r.error_code().as_str()),
                (404, "not_found"),
                "{method} {id}"
            );
            assert_eq!(r.json()["error"]["message"], "no such episode");
        }
    }

    // Bodies: over the limit, malformed, an unknown field, a rule broken.
    let mut big = episode("big", 0.5, &[]);
    big["input"] = json!("x".repeat(70_000));
    let r = acme
        .send_json("POST", "/v1/episodes", &acme_token, &big)
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (413, "too_large"));
    let auth = format!("Bearer {acme_token}");
    let r = acme
        .request(
            "POST",
            "/v1/episodes",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(b"{\"task\": \"half"),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    let mut unknown = episode("typo", 0.5, &[]);
    unknown["rewrad"] = json!(1);
    let r = acme
        .send_json("POST", "/v1/episodes", &acme_token, &unknown)
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "invalid_request")
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rewrad"));
    let r = acme
        .send_json(
            "POST",
            "/v1/episodes",
            &acme_token,
            &episode("  ", 0.5, &[]),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (422, "invalid_request")
    );
    let r = acme
        .send_json("POST", "/v1/query", &acme_token, &json!({"k": 3}))
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (422, "invalid_request")
    );

    // Nothing was written; the other tenant is as it was; the hub still serves.
    assert_eq!(stats(&acme, &acme_token).await["episodes"], 1);
    let g = stats(&globex, &globex_token).await;
    assert_eq!(g["episodes"], 1);
    let list = globex.get("/v1/episodes", &globex_token).await.json();
    assert_eq!(ids(&list, "episodes"), vec![uid(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_change_stream_delivers_every_change_once_in_order() {
    let gw = Gateway::start("");
    let acme = gw.client("acme");
    let globex = gw.client("globex");
    let token = gw.token("acme");
    let globex_token = gw.token("globex");
    let auth = format!("Bearer {token}");

    let (status, mut stream) = acme
        .events("/v1/changes", &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let store = |client: &HttpsClient, token: &str, n: u32| {
        let mut e = episode(&format!("task {n}"), 0.7, &[]);
        e["id"] = json!(uid(n));
        let (client, token) = (client.clone(), token.to_owned());
        async move {
            let r = client.send_json("POST", "/v1/episodes", &token, &e).await;
            assert_eq!(r.status, 201);
        }
    };
    store(&acme, &token, 11).await;
    store(&globex, &globex_token, 21).await;
    store(&acme, &token, 12).await;
    store(&acme, &token, 13).await;
    let mut received = Vec::new();
    let mut last_id = String::new();
    for _ in 0..2 {
        let event = stream
            .next(Duration::from_secs(10))
            .await
            .expect("an event");
        assert_eq!(event.event.as_deref(), Some("put"));
        let change: Value = serde_json::from_str(&event.data).unwrap();
        received.push(change["id"].as_str().unwrap().to_owned());
        last_id = event.id.unwrap();
    }
    // The client goes away mid-stream (one event unread), and more changes happen.
    drop(stream);
    store(&globex, &globex_token, 22).await;
    store(&acme, &token, 14).await;
    let r = acme
        .request(
            "DELETE",
            &format!("/v1/episodes/{}", uid(11)),
            &[("authorization", &auth)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);

    let (status, mut resumed) = acme
        .events(
            "/v1/changes",
            &[("authorization", &auth), ("last-event-id", &last_id)],
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mut kinds = Vec::new();
    while let Some(event) = resumed.next(Duration::from_secs(3)).await {
        let change: Value = serde_json::from_str(&event.data).unwrap();
        received.push(change["id"].as_str().unwrap().to_owned());
        kinds.push(event.event.unwrap());
        if received.len() == 5 {
            break;
        }
    }
    assert_eq!(received, [uid(11), uid(12), uid(13), uid(14), uid(11)]);
    assert_eq!(kinds, ["put", "put", "deleted"]);
    // Nothing more: no duplicate, no other tenant's change.
    assert!(resumed.next(Duration::from_millis(500)).await.is_none());
}

/// `POST path` on the admin HTTP with a bearer token and a JSON body.
fn admin(hub: &Hub, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.unwrap_or(json!({})).to_string();
    let (status, text) = hub.admin_http(method, path, Some(token), Some(&body));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn exchange(client: &HttpsClient, key: &str, body: Option<Value>) -> HttpsResponse {
    let auth = format!("ApiKey {key}");
    let body = body.map(|b| b.to_string());
    client
        .request(
            "POST",
            "/v1/token",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_deref().map(str::as_bytes),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_yield_tokens_worth_one_tenant() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = pki_hub(&pki, dir.path(), "");
    let addr: SocketAddr = hub.https.parse().unwrap();
    let (cert, key) = pki.tenant_cert("acme");
    let acme = HttpsClient::new(addr, &pki.ca_pem(), Some((&cert, &key)));
    let (gcert, gkey) = pki.tenant_cert("globex");
    let globex = HttpsClient::new(addr, &pki.ca_pem(), Some((&gcert, &gkey)));

    // A tenant admin makes a read-write key and a read-only key.
    let admin_token = pki.token_with(
        "acme",
        "operator",
        60,
        vec![Scope::Admin, Scope::Read, Scope::Write, Scope::Sync],
    );
    let (status, made) = admin(
        &hub,
        "POST",
        "/v1/tenants/acme/keys",
        &admin_token,
        Some(json!({"label": "lambda"})),
    );
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("adb_"));
    let (_, ro) = admin(
        &hub,
        "POST",
        "/v1/tenants/acme/keys",
        &admin_token,
        Some(json!({"scopes": ["read"]})),
    );
    let read_only = ro["secret"].as_str().unwrap().to_owned();
    // A key cannot be worth more than the token that made it.
    let (status, _) = admin(
        &hub,
        "POST",
        "/v1/tenants/acme/keys",
        &admin_token,
        Some(json!({"scopes": ["erase"]})),
    );
    assert_eq!(status, 403);
    // Another tenant's admin cannot see or make acme's keys.
    let globex_admin = pki.token_with("globex", "operator", 60, vec![Scope::Admin]);
    assert_eq!(
        admin(&hub, "GET", "/v1/tenants/acme/keys", &globex_admin, None).0,
        403
    );

    // Key → token → store and query.
    let t = exchange(&acme, &secret, None).await;
    assert_eq!(t.status, 200, "{}", String::from_utf8_lossy(&t.body));
    let t = t.json();
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].as_u64().unwrap() <= 300);
    let token = t["token"].as_str().unwrap().to_owned();
    let r = acme
        .send_json(
            "POST",
            "/v1/episodes",
            &token,
            &episode("from a key", 0.9, &[]),
        )
        .await;
    assert_eq!(r.status, 201);
    let q = acme
        .send_json("POST", "/v1/query", &token, &json!({"text": "from a key"}))
        .await;
    assert_eq!(q.json()["matches"].as_array().unwrap().len(), 1);

    // The key's scope bounds the token.
    let t = exchange(&acme, &read_only, None).await.json();
    assert_eq!(t["scopes"], json!(["read"]));
    let ro_token = t["token"].as_str().unwrap().to_owned();
    let r = acme
        .send_json("POST", "/v1/episodes", &ro_token, &episode("no", 0.1, &[]))
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));
    assert_eq!(acme.get("/v1/stats", &ro_token).await.status, 200);
    let r = exchange(&acme, &read_only, Some(json!({"scopes": ["write"]}))).await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));

    // A key of acme never yields a token for globex: with globex's certificate it is refused.
    let r = exchange(&globex, &secret, None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "tenant_mismatch")
    );
    // A tenant certificate alone yields a token for its own tenant.
    let r = globex
        .request("POST", "/v1/token", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tenant"], "globex");
    // A made-up key, and a key with a flipped character, are unknown.
    let mut flipped = secret.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    for bad in [
        "adb_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
        &String::from_utf8(flipped).unwrap(),
    ] {
        let r = exchange(&acme, bad, None).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "unauthenticated"),
            "{bad}"
        );
    }

    // Listed (no secrets), revoked, and no new token from then on.
    let (_, listed) = admin(&hub, "GET", "/v1/tenants/acme/keys", &admin_token, None);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!listed.to_string().contains(&secret[20..]));
    let id = made["key"]["id"].as_str().unwrap();
    let (status, revoked) = admin(
        &hub,
        "DELETE",
        &format!("/v1/tenants/acme/keys/{id}"),
        &admin_token,
        None,
    );
    assert_eq!((status, revoked["revoked"].clone()), (200, json!(true)));
    let r = exchange(&acme, &secret, None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "unauthenticated")
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));

    // A token revoked before a restart stays revoked after it; keys survive too.
    let goner = exchange(&acme, &read_only, None).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {goner}");
    assert_eq!(
        acme.request("DELETE", "/v1/token", &[("authorization", &auth)], None)
            .await
            .unwrap()
            .status,
        204
    );
    drop(hub);
    let hub = common::pki_hub_again(dir.path());
    let acme = HttpsClient::new(
        hub.https.parse().unwrap(),
        &pki.ca_pem(),
        Some((&cert, &key)),
    );
    let r = acme.get("/v1/stats", &goner).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "unauthenticated")
    );
    assert_eq!(exchange(&acme, &read_only, None).await.status, 200);
    assert_eq!(exchange(&acme, &secret, None).await.status, 401);
    // A token the hub signed before the restart still verifies (the hub's key is kept).
    assert_eq!(acme.get("/v1/stats", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_quic_share_one_memory() {
    let gw = Gateway::start("");
    let client = gw.client("acme");
    let token = gw.token("acme");
    let mut e = episode("written over https", 0.9, &["https"]);
    e["id"] = json!(uid(7));
    assert_eq!(
        client
            .send_json("POST", "/v1/episodes", &token, &e)
            .await
            .status,
        201
    );

    let (cert, key) = gw.pki.tenant_cert("acme");
    let config = AgentConfig::new(
        TenantId::new("acme").unwrap(),
        gw.hub.quic.clone(),
        gw.pki.ca_pem(),
        Arc::new(SigningKeyTokens::new(gw.pki.issuer(), 300)),
    )
    .client_cert(cert, key)
    .server_name("localhost");
    let agent = EphemeralAgent::spawn(config).await.unwrap();
    let found = agent.query_memories("written over https", 5).await.unwrap();
    assert!(
        found
            .memories
            .iter()
            .any(|m| m.episode.id.to_string() == uid(7)),
        "{found:?}"
    );
    let stored = agent
        .store(NewEpisode::new("written over quic", "in", "out", 0.8))
        .await
        .unwrap();
    agent.destroy().await.unwrap();

    let got = client
        .get(&format!("/v1/episodes/{}", stored.id), &token)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["task"], "written over quic");
}
