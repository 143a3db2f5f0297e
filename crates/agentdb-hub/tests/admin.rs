//! The admin HTTP API: health, metrics and tenant stats with admin tokens.

#![allow(clippy::unwrap_used)]

use agentdb_client::EphemeralAgent;
use agentdb_core::NewEpisode;
use agentdb_security::token::Scope;
use agentdb_testkit::{hub_config, json_body, TestHub, TestPki};

/// GET `path` on the hub's admin port.
async fn get(hub: &TestHub, path: &str, bearer: Option<&str>) -> (u16, String) {
    hub.http_get(path, bearer).await
}

#[tokio::test]
async fn health_metrics_and_tenant_stats() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;

    let (status, body) = get(&hub, "/health", None).await;
    assert_eq!(status, 200);
    let h = json_body(&body);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["episodes"], 0);
    assert_eq!(h["tenants"], 0);
    assert_eq!(h["connected_agents"], 0);
    assert!(h["uptime_s"].as_f64().unwrap() >= 0.0);

    let agent = EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
        .await
        .unwrap();
    for i in 0..3 {
        agent
            .store_episode(NewEpisode::new(
                format!("task {i}"),
                "i",
                "o",
                0.5 + 0.2 * i as f64,
            ))
            .await
            .unwrap();
    }
    agent.query_memories("task", 2).await.unwrap();
    let h = json_body(&get(&hub, "/health", None).await.1);
    assert_eq!(h["episodes"], 3);
    assert_eq!(h["tenants"], 1);
    assert_eq!(h["connected_agents"], 1);

    let (status, metrics) = get(&hub, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("agentdb_requests_total{kind=\"store\",outcome=\"ok\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentdb_requests_total{kind=\"query\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("agentdb_connected_agents 1"), "{metrics}");
    assert!(
        metrics.contains("agentdb_episodes_stored_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentdb_request_duration_seconds_bucket"),
        "{metrics}"
    );

    // Tenant stats need an admin token of that tenant.
    let admin = pki.token_with("acme", "ops", 60, vec![Scope::Admin]);
    let (status, body) = get(&hub, "/v1/tenants/acme/stats", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let s = json_body(&body);
    assert_eq!(s["episodes"], 3);
    assert!((s["avg_reward"].as_f64().unwrap() - 0.7).abs() < 1e-9);
    assert_eq!(get(&hub, "/v1/tenants/acme/stats", None).await.0, 401);
    let reader = pki.token("acme", "ops", 60);
    assert_eq!(
        get(&hub, "/v1/tenants/acme/stats", Some(&reader)).await.0,
        403
    );
    let other_admin = pki.token_with("beta", "ops", 60, vec![Scope::Admin]);
    assert_eq!(
        get(&hub, "/v1/tenants/acme/stats", Some(&other_admin))
            .await
            .0,
        403
    );
    let forged = TestPki::new().token_with("acme", "ops", 60, vec![Scope::Admin]);
    assert_eq!(
        get(&hub, "/v1/tenants/acme/stats", Some(&forged)).await.0,
        401
    );
    assert_eq!(
        get(&hub, "/v1/tenants/a%20b/stats", Some(&admin)).await.0,
        400
    );

    agent.destroy().await.unwrap();
    // The hub lets go of the agent once its connection task ends, shortly after the Bye.
    let mut m = String::new();
    for _ in 0..50 {
        m = get(&hub, "/metrics", None).await.1;
        if m.contains("agentdb_connected_agents 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(m.contains("agentdb_connected_agents 0"), "{m}");
}

/// The routes that reveal tenants check revocation and the operator scope; the open routes
/// name no tenant.
#[tokio::test]
async fn tenant_revealing_routes_need_an_unrevoked_token_and_open_routes_name_no_tenant() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;

    // An agent whose token also grants admin stores, then says goodbye: the hub revokes it.
    let admin = pki.token_with(
        "secret-tenant-name",
        "ops",
        60,
        vec![Scope::Read, Scope::Write, Scope::Sync, Scope::Admin],
    );
    let (cert, key) = pki.tenant_cert("secret-tenant-name");
    let agent = EphemeralAgent::spawn(
        hub.agent_config_with_token(&pki, "secret-tenant-name", admin.clone())
            .client_cert(cert, key),
    )
    .await
    .unwrap();
    agent
        .store_episode(NewEpisode::new("task", "i", "o", 0.9))
        .await
        .unwrap();
    let stats = "/v1/tenants/secret-tenant-name/stats";
    assert_eq!(get(&hub, stats, Some(&admin)).await.0, 200);
    agent.destroy().await.unwrap();
    // The hub revokes the token when the connection ends, shortly after the Bye.
    let (mut status, mut body) = (0, String::new());
    for _ in 0..100 {
        (status, body) = get(&hub, stats, Some(&admin)).await;
        if status != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 401, "a revoked token is refused: {body}");
    assert!(body.contains("revoked"), "{body}");

    // /health and /metrics need no token and name no tenant.
    for path in ["/health", "/metrics"] {
        let (status, body) = get(&hub, path, None).await;
        assert_eq!(status, 200);
        assert!(!body.contains("secret-tenant-name"), "{path}: {body}");
    }

    // The federation status names every tenant: it needs the operator scope.
    assert_eq!(get(&hub, "/v1/federation", None).await.0, 401);
    let tenant_admin = pki.token_with(
        "secret-tenant-name",
        "ops",
        60,
        vec![Scope::Admin, Scope::Read, Scope::Erase],
    );
    let (status, body) = get(&hub, "/v1/federation", Some(&tenant_admin)).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("secret-tenant-name"), "{body}");
    let forged = TestPki::new().token_with("ops", "op", 60, vec![Scope::Operator]);
    assert_eq!(get(&hub, "/v1/federation", Some(&forged)).await.0, 401);
    let operator = pki.token_with("ops", "op", 60, vec![Scope::Operator]);
    let (status, body) = get(&hub, "/v1/federation", Some(&operator)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("secret-tenant-name"), "{body}");
}

/// An operator forgets a hub that left the federation for good; nobody else can.
#[tokio::test]
async fn an_operator_forgets_a_retired_peer() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let engine = hub.handle.engine();
    let retired = agentdb_core::HubId::new("retired").unwrap();
    engine
        .record_peer(&retired, &agentdb_core::Region::new("eu").unwrap())
        .unwrap();
    let path = "/v1/federation/peers/retired";

    assert_eq!(hub.http_request("DELETE", path, None).await.0, 401);
    let tenant_admin = pki.token_with("acme", "ops", 60, vec![Scope::Admin]);
    assert_eq!(
        hub.http_request("DELETE", path, Some(&tenant_admin))
            .await
            .0,
        403
    );
    assert!(engine.peers().unwrap().contains_key(&retired));

    let operator = pki.token_with("ops", "op", 60, vec![Scope::Operator]);
    let (status, body) = hub.http_request("DELETE", path, Some(&operator)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body(&body)["forgotten"], true);
    assert!(engine.peers().unwrap().is_empty());
    let (status, body) = hub.http_request("DELETE", path, Some(&operator)).await;
    assert_eq!(
        (status, json_body(&body)["forgotten"].clone()),
        (200, false.into())
    );
    assert_eq!(
        hub.http_request("DELETE", "/v1/federation/peers/a%20b", Some(&operator))
            .await
            .0,
        400
    );
}
