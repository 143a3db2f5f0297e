//! EphemeralAgent against a real hub on 127.0.0.1 (real QUIC, real certificates, real tokens).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use agentdb_client::{
    AgentError, Connector, Durability, EphemeralAgent, SigningKeyTokens, Source, StaticToken,
};
use agentdb_core::{EpisodeUpdate, NewEpisode, TenantId, Timestamp};
use agentdb_memory::{ManualClock, SystemClock};
use agentdb_proto::ErrorCode;
use agentdb_testkit::{hub_config, TestHub, TestPki};

fn episode(task: &str, reward: f64) -> NewEpisode {
    NewEpisode::new(
        task,
        format!("input of {task}"),
        format!("output of {task}"),
        reward,
    )
}

/// A hub over a fresh directory (kept while the returned one lives) and an agent of `acme`.
async fn hub_with_acme_agent() -> (TestPki, tempfile::TempDir, TestHub, EphemeralAgent) {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let agent = EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
        .await
        .unwrap();
    (pki, dir, hub, agent)
}

#[tokio::test]
async fn spawn_store_query_destroy_and_a_new_agent_recalls() {
    let (pki, _dir, hub, agent) = hub_with_acme_agent().await;
    assert!(agent.is_alive());
    let welcome = agent.welcome().unwrap();
    assert_eq!(welcome.tenant.as_str(), "acme");
    assert_eq!(&welcome.agent, agent.id());
    let id = agent
        .execute(|memory| async move {
            let before = memory.query("summarise invoice", 5).await?;
            assert!(before.memories.is_empty());
            memory.store(episode("summarise invoice", 0.95)).await
        })
        .await
        .unwrap();
    assert!(id.is_acknowledged());
    let id = id.id;
    assert_eq!(agent.pending(), 0, "the hub acknowledged the episode");
    let recall = agent
        .query_memories("summarise the invoice", 5)
        .await
        .unwrap();
    assert_eq!(recall.source, Source::Hub);
    assert_eq!(recall.memories[0].episode.id, id);
    assert_eq!(
        &recall.memories[0].episode.agent.clone().unwrap(),
        agent.id()
    );
    agent.destroy().await.unwrap();

    let next = EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
        .await
        .unwrap();
    let recall = next.query_memories("invoice", 5).await.unwrap();
    assert_eq!(recall.memories.len(), 1);
    assert_eq!(recall.memories[0].episode.id, id);
    assert!(recall.memories[0].episode.success);
    next.destroy().await.unwrap();
    assert_eq!(hub.wait_connected(0).await, 0);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let a = EphemeralAgent::spawn(hub.agent_config(&pki, "alpha"))
        .await
        .unwrap();
    let b = EphemeralAgent::spawn(hub.agent_config(&pki, "beta"))
        .await
        .unwrap();
    for i in 0..5 {
        a.store_episode(episode(&format!("alpha secret plan {i}"), 0.9))
            .await
            .unwrap();
    }
    b.store_episode(episode("beta note", 0.9)).await.unwrap();
    // B asks for A's words, pulls everything, reads stats: none of A's episodes appear.
    let recall = b.query_memories("alpha secret plan", 10).await.unwrap();
    assert_eq!(recall.memories.len(), 1);
    assert!(recall
        .memories
        .iter()
        .all(|m| m.episode.tenant.as_str() == "beta"));
    b.sync().await.unwrap();
    assert_eq!(b.stats().await.unwrap().episodes, 1);
    assert_eq!(a.stats().await.unwrap().episodes, 5);
    // An episode that claims another tenant's agent is stored as the authenticated agent.
    let mut lying = episode("beta claims to be alpha", 0.9);
    lying.agent = Some(agentdb_core::AgentId::new("alpha-agent").unwrap());
    let id = b.store_episode(lying).await.unwrap();
    let recall = b
        .query_memories("beta claims to be alpha", 1)
        .await
        .unwrap();
    assert_eq!(recall.memories[0].episode.id, id);
    assert_eq!(recall.memories[0].episode.tenant.as_str(), "beta");
    assert_eq!(recall.memories[0].episode.agent.as_ref(), Some(b.id()));
    assert_eq!(a.stats().await.unwrap().episodes, 5);

    // A certificate of tenant alpha with a token of tenant beta is refused.
    let (cert, key) = pki.tenant_cert("alpha");
    let cross = hub.agent_config(&pki, "beta").client_cert(cert, key);
    let err = EphemeralAgent::spawn(cross).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TenantMismatch), "{err}");
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
}

#[tokio::test]
async fn lifetime_ends_and_the_token_is_revoked_after_destroy() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let clock = Arc::new(ManualClock::new(Timestamp(SystemClock::unix_ms())));
    let token = pki.token("acme", "short-lived", 300);
    let (cert, key) = pki.tenant_cert("acme");
    let config = hub
        .agent_config_with_token(&pki, "acme", token.clone())
        .agent(agentdb_core::AgentId::new("short-lived").unwrap())
        .client_cert(cert.clone(), key.clone())
        .lifetime(Duration::from_secs(2))
        .clock(clock.clone());
    let agent = EphemeralAgent::spawn(config.clone()).await.unwrap();
    assert!(agent.is_alive());
    assert!(agent.remaining_lifetime() > Duration::ZERO);
    assert!(agent.remaining_lifetime() <= Duration::from_secs(2));
    clock.advance(2_001);
    assert!(!agent.is_alive());
    assert_eq!(agent.remaining_lifetime(), Duration::ZERO);
    let err = agent
        .execute(|_| async { Ok::<_, AgentError>(()) })
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::AgentExpired), "{err}");
    assert!(matches!(
        agent.store_episode(episode("late", 0.5)).await.unwrap_err(),
        AgentError::AgentExpired
    ));
    agent.destroy().await.unwrap();

    // The same token no longer opens a session.
    let again = config
        .lifetime(Duration::from_secs(600))
        .clock(Arc::new(SystemClock));
    let err = EphemeralAgent::spawn(again).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
}

#[tokio::test]
async fn token_refresh_keeps_a_long_lived_agent_working() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    // Tokens live 3 s; the agent outlives several of them.
    let mut config = hub.agent_config(&pki, "acme");
    config.tokens = Arc::new(SigningKeyTokens::new(pki.issuer(), 3));
    let agent = EphemeralAgent::spawn(config).await.unwrap();
    let first_exp = agent.welcome().unwrap().expires_at;
    agent
        .store_episode(episode("before expiry", 0.9))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert!(
        agentdb_testkit::unix_now() > first_exp,
        "the first token has expired"
    );
    agent
        .store_episode(episode("after expiry", 0.9))
        .await
        .unwrap();
    assert_eq!(
        agent.pending(),
        0,
        "the hub accepted the store on the refreshed token"
    );
    let recall = agent.query_memories("after expiry", 2).await.unwrap();
    assert_eq!(recall.source, Source::Hub);
    assert_eq!(recall.memories.len(), 2);
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn rejected_credentials_store_nothing() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let (cert, key) = pki.tenant_cert("acme");
    let valid = || pki.token("acme", "a1", 300);

    // No client certificate.
    let no_cert = hub.agent_config_with_token(&pki, "acme", valid());
    let err = EphemeralAgent::spawn(no_cert).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");

    // A certificate from another CA.
    let other = TestPki::new();
    let (ocert, okey) = other.tenant_cert("acme");
    let foreign = hub
        .agent_config_with_token(&pki, "acme", valid())
        .client_cert(ocert, okey);
    let err = EphemeralAgent::spawn(foreign).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");

    // An expired token (beyond the 30 s skew).
    let expired = {
        let req = agentdb_security::token::TokenRequest::new(
            TenantId::new("acme").unwrap(),
            agentdb_core::AgentId::new("a1").unwrap(),
        )
        .ttl_secs(10);
        pki.issuer()
            .issue(&req, agentdb_testkit::unix_now() - 120)
            .unwrap()
    };
    let cfg = hub
        .agent_config_with_token(&pki, "acme", expired)
        .client_cert(cert.clone(), key.clone());
    let err = EphemeralAgent::spawn(cfg).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TokenExpired), "{err}");

    // A token signed by another key.
    let cfg = hub
        .agent_config_with_token(&pki, "acme", other.token("acme", "a1", 300))
        .client_cert(cert.clone(), key.clone());
    let err = EphemeralAgent::spawn(cfg).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");

    // A token of another tenant than the certificate's.
    let cfg = hub
        .agent_config_with_token(&pki, "acme", pki.token("evil", "a1", 300))
        .client_cert(cert.clone(), key.clone());
    let err = EphemeralAgent::spawn(cfg).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TenantMismatch), "{err}");

    // A read-only token cannot store.
    let ro = pki.token_with(
        "acme",
        "a1",
        300,
        vec![
            agentdb_security::token::Scope::Read,
            agentdb_security::token::Scope::Sync,
        ],
    );
    let cfg = hub
        .agent_config_with_token(&pki, "acme", ro)
        .client_cert(cert, key);
    let agent = EphemeralAgent::spawn(cfg).await.unwrap();
    let err = agent
        .store_episode(episode("not allowed", 0.5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert_eq!(agent.pending(), 0, "a refused episode is not kept");

    let tenants = hub.handle.engine().tenants();
    assert!(tenants.is_empty(), "nothing was stored: {tenants:?}");
}

#[tokio::test]
async fn hub_restart_keeps_every_acknowledged_episode() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let hub = TestHub::start(hub_config(&pki), dir.path()).await;
        let agent = EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
            .await
            .unwrap();
        for i in 0..20 {
            ids.push(
                agent
                    .store_episode(episode(&format!("task {i}"), 0.8))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(agent.pending(), 0);
        agent.destroy().await.unwrap();
        hub.handle.shutdown().await;
    }
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let agent = EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
        .await
        .unwrap();
    assert_eq!(agent.stats().await.unwrap().episodes, 20);
    let recall = agent.query_memories("task 13", 1).await.unwrap();
    assert_eq!(recall.memories[0].episode.id, ids[13]);
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn outbox_survives_a_hub_outage_and_is_delivered_once() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let config = hub
        .agent_config(&pki, "acme")
        .spool_dir(spool.path().to_owned());
    let agent = EphemeralAgent::spawn(config.clone()).await.unwrap();
    let acked = agent
        .store_episode(episode("stored while up", 0.9))
        .await
        .unwrap();
    hub.handle.shutdown().await;

    // The hub is down: the store is spooled and waits there.
    let waiting = agent
        .store(episode("stored while down", 0.9))
        .await
        .unwrap();
    assert_eq!(waiting.durability, Durability::Spooled);
    let waiting = waiting.id;
    assert_eq!(agent.pending(), 1);
    let recall = agent.query_memories("stored while", 5).await.unwrap();
    assert_eq!(recall.source, Source::LocalOnly);
    let ids: Vec<_> = recall.memories.iter().map(|m| m.episode.id).collect();
    assert!(
        ids.contains(&waiting) && ids.contains(&acked),
        "the spooled and the acknowledged episode answer locally: {ids:?}"
    );
    agent.destroy().await.unwrap();
    let spooled: Vec<_> = std::fs::read_dir(spool.path().join("acme"))
        .unwrap()
        .collect();
    assert_eq!(spooled.len(), 1, "the undelivered episode is in the spool");

    // The hub comes back; the next agent of the tenant (with the same client key, from which
    // the spool key is derived) delivers the spool.
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let mut config = config;
    config.hub = hub.url();
    let next = EphemeralAgent::spawn(config).await.unwrap();
    assert_eq!(next.pending(), 0);
    assert_eq!(
        std::fs::read_dir(spool.path().join("acme"))
            .unwrap()
            .count(),
        0
    );
    let stats = next.stats().await.unwrap();
    assert_eq!(stats.episodes, 2, "both episodes, once each");
    let recall = next.query_memories("stored while", 5).await.unwrap();
    let ids: Vec<_> = recall.memories.iter().map(|m| m.episode.id).collect();
    assert!(ids.contains(&acked) && ids.contains(&waiting));
    next.destroy().await.unwrap();
}

#[tokio::test]
async fn many_agents_of_three_tenants_store_and_leave_cleanly() {
    let pki = Arc::new(TestPki::new());
    let dir = tempfile::tempdir().unwrap();
    let hub = Arc::new(TestHub::start(hub_config(&pki), dir.path()).await);
    let mut tasks = Vec::new();
    for t in ["t1", "t2", "t3"] {
        for n in 0..4 {
            let (pki, hub) = (Arc::clone(&pki), Arc::clone(&hub));
            tasks.push(tokio::spawn(async move {
                let agent = EphemeralAgent::spawn(hub.agent_config(&pki, t))
                    .await
                    .unwrap();
                for i in 0..(n + 1) {
                    agent
                        .store_episode(episode(&format!("{t} agent {n} item {i}"), 0.8))
                        .await
                        .unwrap();
                }
                let id = agent.id().clone();
                agent.destroy().await.unwrap();
                id
            }));
        }
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        assert!(ids.insert(t.await.unwrap()), "agent ids are unique");
    }
    for t in ["t1", "t2", "t3"] {
        let stats = hub
            .handle
            .engine()
            .stats(&TenantId::new(t).unwrap())
            .unwrap();
        assert_eq!(stats.episodes, 1 + 2 + 3 + 4);
    }
    assert_eq!(hub.wait_connected(0).await, 0);
}

#[tokio::test]
async fn a_static_token_agent_works_without_refresh() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let (cert, key) = pki.agent_cert("acme", "worker-1");
    let mut config = hub
        .agent_config_with_token(&pki, "acme", pki.token("acme", "worker-1", 300))
        .agent(agentdb_core::AgentId::new("worker-1").unwrap())
        .client_cert(cert, key);
    config.tokens = Arc::new(StaticToken(pki.token("acme", "worker-1", 300)));
    let agent = EphemeralAgent::spawn(config).await.unwrap();
    agent
        .store_episode(episode("with an agent certificate", 0.7))
        .await
        .unwrap();
    assert_eq!(agent.stats().await.unwrap().episodes, 1);
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn what_an_agent_read_from_the_hub_answers_while_the_hub_is_gone() {
    let (pki, _dir, hub, writer) = hub_with_acme_agent().await;
    let read = writer
        .store_episode(episode("learned by a sibling agent", 0.9))
        .await
        .unwrap();
    let unread = writer
        .store_episode(episode("never asked for by the reader", 0.9))
        .await
        .unwrap();
    writer.destroy().await.unwrap();

    // Spawning copies nothing of the tenant: the reader's cache starts empty and holds what
    // the hub answered it.
    let reader = EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
        .await
        .unwrap();
    let recall = reader
        .query_memories("learned by a sibling agent", 1)
        .await
        .unwrap();
    assert_eq!(recall.source, Source::Hub);
    assert_eq!(recall.memories[0].episode.id, read);
    hub.handle.shutdown().await;
    let recall = reader
        .query_memories("learned by a sibling agent", 5)
        .await
        .unwrap();
    assert_eq!(recall.source, Source::LocalOnly);
    let ids: Vec<_> = recall.memories.iter().map(|m| m.episode.id).collect();
    assert_eq!(
        ids,
        vec![read],
        "only what was read is cached, not {unread}"
    );
    reader.destroy().await.unwrap();
}

#[tokio::test]
async fn what_an_agent_stored_and_updated_answers_while_the_hub_is_gone() {
    let (_pki, _dir, hub, agent) = hub_with_acme_agent().await;
    let ids = agent
        .store_batch(vec![
            episode("rotate the signing keys", 0.2),
            episode("rotate the log files", 0.4),
        ])
        .await
        .unwrap();
    let updated = agent
        .update_episode(
            ids[0],
            EpisodeUpdate {
                reward: Some(0.95),
                critique: Some(Some("worked after the second try".into())),
                ..EpisodeUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(updated);
    assert!(agent.delete_episode(ids[1]).await.unwrap());
    let kept = agent
        .store_episode(episode("rotate the tyres", 0.7))
        .await
        .unwrap();
    hub.handle.shutdown().await;

    let recall = agent.query_memories("rotate", 5).await.unwrap();
    assert_eq!(recall.source, Source::LocalOnly);
    let mut got: Vec<_> = recall
        .memories
        .iter()
        .map(|m| (m.episode.id, m.episode.reward, m.episode.critique.clone()))
        .collect();
    got.sort_by_key(|(id, ..)| *id);
    let mut want = vec![
        (ids[0], 0.95, Some("worked after the second try".to_owned())),
        (kept, 0.7, None),
    ];
    want.sort_by_key(|(id, ..)| *id);
    assert_eq!(
        got, want,
        "acknowledged episodes, with the update, without the deleted one"
    );
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn an_episode_read_then_stored_again_is_not_dropped_with_the_oldest_reads() {
    let (pki, _dir, hub, writer) = hub_with_acme_agent().await;
    let ids = writer
        .store_batch(vec![
            episode("first lesson", 0.6),
            episode("second lesson", 0.8),
        ])
        .await
        .unwrap();
    writer.destroy().await.unwrap();

    let mut config = hub.agent_config(&pki, "acme");
    config.read_cache = 1;
    let agent = EphemeralAgent::spawn(config).await.unwrap();
    let first = agent.get_episode(ids[0]).await.unwrap().unwrap();
    // Stored again under its id: the hub keeps one copy, and this agent now holds it as its own.
    let again =
        NewEpisode::new(first.task, first.input, first.output, first.reward).with_id(ids[0]);
    assert_eq!(agent.store_episode(again).await.unwrap(), ids[0]);
    // A later read fills the read cache of one.
    agent.get_episode(ids[1]).await.unwrap().unwrap();
    hub.handle.shutdown().await;

    let recall = agent.query_memories("lesson", 5).await.unwrap();
    assert_eq!(recall.source, Source::LocalOnly);
    let mut got: Vec<_> = recall.memories.iter().map(|m| m.episode.id).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        got, want,
        "the stored copy stays; the read cache holds the later read"
    );
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn later_agents_resume_the_tls_session_and_the_hub_still_checks_the_certificate() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let connector = Connector::new();
    let (cert, key) = pki.tenant_cert("acme");
    let config = || {
        hub.agent_config(&pki, "acme")
            .client_cert(cert.clone(), key.clone())
            .connector(connector.clone())
    };
    let first = EphemeralAgent::spawn(config()).await.unwrap();
    first.store_episode(episode("first", 0.9)).await.unwrap();
    first.destroy().await.unwrap();
    assert_eq!(connector.tls_resumptions(), 0, "nothing to resume yet");

    // The second agent resumes the first one's session; the hub knows it by its certificate.
    let second = EphemeralAgent::spawn(config()).await.unwrap();
    assert_eq!(connector.tls_resumptions(), 1);
    second.store_episode(episode("second", 0.9)).await.unwrap();
    assert_eq!(second.stats().await.unwrap().episodes, 2);
    second.destroy().await.unwrap();

    // Revoking the certificate refuses a resumed session of it too.
    let der = agentdb_security::tls::certs("agent certificate", &cert).unwrap();
    let serial = agentdb_security::identity::certificate_serial(&der[0]).unwrap();
    let operator = pki.token_with(
        "ops",
        "op",
        60,
        vec![agentdb_security::token::Scope::Operator],
    );
    let (status, body) = hub
        .http_send(
            "POST",
            "/v1/revocations",
            Some(&operator),
            Some(&format!(
                r#"{{"kind": "certificate", "serial": "{serial}"}}"#
            )),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let err = EphemeralAgent::spawn(config()).await.unwrap_err();
    assert_eq!(connector.tls_resumptions(), 2);
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[tokio::test]
async fn one_agent_can_have_many_requests_in_flight() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let agent = Arc::new(
        EphemeralAgent::spawn(hub.agent_config(&pki, "acme"))
            .await
            .unwrap(),
    );
    agent
        .store_episode(episode("shared knowledge", 0.9))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let agent = Arc::clone(&agent);
            tokio::spawn(async move { agent.query_memories("shared knowledge", 3).await })
        })
        .collect();
    for t in tasks {
        let recall = t.await.unwrap().unwrap();
        assert_eq!(recall.source, Source::Hub);
        assert_eq!(recall.memories.len(), 1);
    }
    Arc::try_unwrap(agent).unwrap().destroy().await.unwrap();
}

#[tokio::test]
async fn get_episode_reads_the_tenants_own_episodes_only() {
    let (pki, _dir, hub, acme) = hub_with_acme_agent().await;
    let globex = EphemeralAgent::spawn(hub.agent_config(&pki, "globex"))
        .await
        .unwrap();
    let id = acme
        .store_episode(episode("summarise invoice", 0.9))
        .await
        .unwrap();

    let got = acme.get_episode(id).await.unwrap().unwrap();
    assert_eq!((got.id, got.task.as_str()), (id, "summarise invoice"));
    assert_eq!(got.tenant.as_str(), "acme");
    // Another tenant's id is no different from an unknown one.
    assert_eq!(globex.get_episode(id).await.unwrap(), None);
    let unknown = agentdb_memory::mint_episode_id(Timestamp(1));
    assert_eq!(acme.get_episode(unknown).await.unwrap(), None);
    // A deleted episode is gone.
    assert!(acme.delete_episode(id).await.unwrap());
    assert_eq!(acme.get_episode(id).await.unwrap(), None);
    acme.destroy().await.unwrap();
    globex.destroy().await.unwrap();
}
