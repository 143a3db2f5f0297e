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
