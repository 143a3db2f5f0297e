//! Hubs in one process linked over real QUIC with hub certificates: ops replicate, relay and
//! respect residency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agentdb_client::EphemeralAgent;
use agentdb_core::{EpisodeId, NewEpisode, Region, TenantId};
use agentdb_hub::{FederationConfig, Topology};
use agentdb_testkit::{federated_hub_config, TestHub, TestPki};

fn fed(upstream: Option<String>) -> FederationConfig {
    FederationConfig {
        topology: Topology::Hierarchical,
        upstream,
        sync_interval: Duration::from_millis(200),
        ..FederationConfig::default()
    }
}

/// Waits up to 10 s for `cond`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_stored_at_an_edge_reaches_the_upstream_and_back_down() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let global = TestHub::start(
        federated_hub_config(&pki, "global", "global", fed(None)),
        dirs[0].path(),
    )
    .await;
    let eu = TestHub::start(
        federated_hub_config(&pki, "eu", "eu", fed(Some(global.url()))),
        dirs[1].path(),
    )
    .await;
    let us = TestHub::start(
        federated_hub_config(&pki, "us", "us", fed(Some(global.url()))),
        dirs[2].path(),
    )
    .await;

    let writer = EphemeralAgent::spawn(eu.agent_config(&pki, "acme"))
        .await
        .unwrap();
    let id = EpisodeId::from_parts(1_700_000_000_000, [3; 10]);
    writer
        .store_episode(
            NewEpisode::new("summarise invoice", "invoice 42", "Total: 300 EUR", 0.9).with_id(id),
        )
        .await
        .unwrap();
    writer.destroy().await.unwrap();

    let tenant = TenantId::new("acme").unwrap();
    let us_engine = std::sync::Arc::clone(us.handle.engine());
    eventually("the episode at us", || {
        us_engine.get(&tenant, &id).unwrap().is_some()
    })
    .await;
    let reader = EphemeralAgent::spawn(us.agent_config(&pki, "acme"))
        .await
        .unwrap();
    let recall = reader.query_memories("summarise invoice", 3).await.unwrap();
    assert_eq!(recall.memories[0].episode.output, "Total: 300 EUR");
    reader.destroy().await.unwrap();

    let status = global.handle.federation_status();
    assert_eq!(status.links.len(), 2, "{status:?}");
    assert!(status.links.iter().all(|l| l.state == "connected"));
    let acme = status.tenants.iter().find(|t| t.tenant == "acme").unwrap();
    assert_eq!(acme.version_vector.get("eu"), Some(&1));
    let _ = Region::new("eu");
}
