//! The MCP server's succession of agents, against a real hub on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{NewEpisode, Timestamp};
use agentdb_mcp::{Agents, RENEW_BEFORE};
use agentdb_memory::ManualClock;
use agentdb_testkit::{hub_config, unix_now, TestHub, TestPki};

#[tokio::test]
async fn an_agent_near_the_end_of_its_lifetime_is_replaced_and_memory_carries_over() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    // The clock starts in the past and ends near the hub's time: the tokens the agents mint
    // with it must not be from the future for the hub.
    let clock = Arc::new(ManualClock::new(Timestamp((unix_now() - 95) * 1000)));
    let lifetime = Duration::from_secs(120);
    let mut config = hub.agent_config(&pki, "acme").lifetime(lifetime);
    config.clock = clock.clone();
    let agents = Agents::new(config);

    let first = agents.get().await.unwrap().id().clone();
    let stored = agents
        .get()
        .await
        .unwrap()
        .store_episode(NewEpisode::new("summarise invoice", "#7", "12 EUR", 0.9))
        .await
        .unwrap();

    // Just more than RENEW_BEFORE left: the same agent.
    let almost = lifetime - RENEW_BEFORE - Duration::from_secs(1);
    clock.advance(almost.as_millis() as u64);
    assert_eq!(agents.get().await.unwrap().id(), &first);

    // Less left: a fresh agent, which reads what the first one stored.
    clock.advance(2_000);
    let second = agents.get().await.unwrap();
    assert_ne!(second.id(), &first);
    assert!(second.is_alive());
    // The first one was destroyed (said goodbye), not left connected.
    assert_eq!(hub.wait_connected(1).await, 1);
    let got = second.get_episode(stored).await.unwrap().unwrap();
    assert_eq!(got.output, "12 EUR");
    let second_id = second.id().clone();
    drop(second);

    // Closing ends the current agent; the next call spawns another.
    agents.close().await;
    let third = agents.get().await.unwrap();
    assert_ne!(third.id(), &second_id);
    assert_eq!(third.stats().await.unwrap().episodes, 1);
}
