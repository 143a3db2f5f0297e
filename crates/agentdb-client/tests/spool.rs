//! The spool against real hubs on 127.0.0.1 and a scripted one: what a store promises, sealed
//! spool files, dead letters for episodes the hub refuses for good, and retries with a growing
//! wait for everything else.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentdb_client::{
    AgentConfig, AgentError, Durability, EphemeralAgent, SigningKeyTokens, Source, SpoolFileError,
    SpoolKey, StaticToken,
};
use agentdb_core::{NewEpisode, Region, TenantId, Timestamp};
use agentdb_memory::ManualClock;
use agentdb_proto::{ErrorCode, Response, StoredItem, StoredResponse};
use agentdb_testkit::disk::{assert_no_plaintext, assert_private_spool, files};
use agentdb_testkit::{hub_config, TestHub, TestPki};
use common::{FakeHub, Reply};

fn episode(task: &str) -> NewEpisode {
    NewEpisode::new(
        task,
        format!("input of {task}"),
        format!("output of {task}"),
        0.9,
    )
}

/// The URL of a hub that is no longer there.
async fn stopped_hub(pki: &TestPki) -> String {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(pki), dir.path()).await;
    let url = hub.url();
    hub.handle.shutdown().await;
    url
}

/// An agent of `tenant` at `url` with a tenant certificate (`cert`), refreshable tokens and a
/// short connect timeout.
fn config(pki: &TestPki, tenant: &str, url: &str, cert: &(Vec<u8>, Vec<u8>)) -> AgentConfig {
    let mut config = AgentConfig::new(
        TenantId::new(tenant).unwrap(),
        url,
        pki.ca_pem(),
        Arc::new(SigningKeyTokens::new(pki.issuer(), 300)),
    )
    .client_cert(cert.0.clone(), cert.1.clone())
    .server_name("localhost");
    config.connect_timeout = Duration::from_millis(500);
    config
}

/// The `.ep` files directly in `dir`.
fn queued(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            p.is_file() && p.extension().is_some_and(|x| x == "ep")
        })
        .count()
}

#[tokio::test]
async fn without_a_spool_an_unreachable_hub_is_an_error_and_nothing_is_kept() {
    let pki = TestPki::new();
    let cert = pki.tenant_cert("acme");
    let agent = EphemeralAgent::spawn(config(&pki, "acme", &stopped_hub(&pki).await, &cert))
        .await
        .unwrap();
    let err = agent.store(episode("lost in memory")).await.unwrap_err();
    assert!(matches!(err, AgentError::HubUnreachable(_)), "{err}");
    assert_eq!(err.kind(), "hub_unreachable");
    assert!(err.is_retryable());
    assert_eq!(agent.pending(), 0);
    let err = agent
        .store_episode(episode("lost in memory too"))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::HubUnreachable(_)), "{err}");
    // Not even the agent's own cache pretends to have them.
    let recall = agent.query_memories("lost in memory", 5).await.unwrap();
    assert_eq!(recall.source, Source::LocalOnly);
    assert!(recall.memories.is_empty(), "{:?}", recall.memories);
    agent.destroy().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let agent = EphemeralAgent::spawn(config(&pki, "acme", &hub.url(), &cert))
        .await
        .unwrap();
    let stored = agent.store(episode("acknowledged")).await.unwrap();
    assert_eq!(stored.durability, Durability::Acknowledged);
    assert!(stored.is_acknowledged());
    let all = agent
        .store_all(vec![episode("one"), episode("two")])
        .await
        .unwrap();
    assert!(all.iter().all(|s| s.is_acknowledged()));
    assert_eq!(agent.stats().await.unwrap().episodes, 3);
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn a_spooled_episode_is_sealed_in_a_private_directory_and_the_next_agent_sends_it() {
    const MARKER: &str = "marker-b7c1e9-plaintext";
    let pki = TestPki::new();
    let cert = pki.tenant_cert("acme");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let down = stopped_hub(&pki).await;
    // The spool key is derived from the client key: the same certificate and key next time.
    let agent = EphemeralAgent::spawn(config(&pki, "acme", &down, &cert).spool_dir(spool.clone()))
        .await
        .unwrap();
    let mut e = episode(MARKER);
    e.critique = Some(format!("critique {MARKER}"));
    let stored = agent.store(e).await.unwrap();
    assert_eq!(stored.durability, Durability::Spooled);
    assert_eq!(agent.pending(), 1);
    agent.destroy().await.unwrap();

    let all = files(&spool);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_no_plaintext(&all, MARKER);
    assert_private_spool(&spool, "acme", &all[0]);

    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let next =
        EphemeralAgent::spawn(config(&pki, "acme", &hub.url(), &cert).spool_dir(spool.clone()))
            .await
            .unwrap();
    assert_eq!(next.pending(), 0);
    assert!(next.unreadable_spool_files().is_empty());
    assert_eq!(queued(&spool.join("acme")), 0);
    let recall = next.query_memories(MARKER, 1).await.unwrap();
    assert_eq!(recall.memories[0].episode.id, stored.id);
    assert_eq!(
        recall.memories[0].episode.critique.as_deref(),
        Some(format!("critique {MARKER}").as_str())
    );
    next.destroy().await.unwrap();
}

#[tokio::test]
async fn a_spool_sealed_with_another_key_is_reported_and_left_in_place() {
    let pki = TestPki::new();
    let cert = pki.tenant_cert("acme");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mine = SpoolKey::from_bytes([1; 32]);
    let other = SpoolKey::derive(b"another secret of at least 32 bytes, really").unwrap();
    let down = stopped_hub(&pki).await;
    let agent = EphemeralAgent::spawn(
        config(&pki, "acme", &down, &cert)
            .spool_dir(spool.clone())
            .spool_key(mine.clone()),
    )
    .await
    .unwrap();
    let stored = agent.store(episode("sealed for one key")).await.unwrap();
    assert_eq!(stored.durability, Durability::Spooled);
    agent.destroy().await.unwrap();
    let file = spool.join("acme").join(format!("{}.ep", stored.id));
    assert!(file.is_file());

    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let foreign = EphemeralAgent::spawn(
        config(&pki, "acme", &hub.url(), &cert)
            .spool_dir(spool.clone())
            .spool_key(other),
    )
    .await
    .unwrap();
    let unreadable = foreign.unreadable_spool_files();
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].path, file);
    assert!(matches!(unreadable[0].reason, SpoolFileError::Sealed(_)));
    assert!(unreadable[0].reason.to_string().contains("another key"));
    assert_eq!(foreign.pending(), 0);
    // Its own work goes on.
    assert!(foreign
        .store(episode("mine"))
        .await
        .unwrap()
        .is_acknowledged());
    foreign.destroy().await.unwrap();
    assert!(file.is_file(), "left in place");
    assert!(hub
        .handle
        .engine()
        .get(&TenantId::new("acme").unwrap(), &stored.id)
        .unwrap()
        .is_none());

    // The right key still sends it.
    let owner = EphemeralAgent::spawn(
        config(&pki, "acme", &hub.url(), &cert)
            .spool_dir(spool.clone())
            .spool_key(mine),
    )
    .await
    .unwrap();
    assert!(owner.unreadable_spool_files().is_empty());
    assert_eq!(owner.pending(), 0);
    assert!(!file.exists());
    owner.destroy().await.unwrap();
    assert!(hub
        .handle
        .engine()
        .get(&TenantId::new("acme").unwrap(), &stored.id)
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_spooled_episode_refused_for_residency_is_dead_lettered_and_holds_nothing_back() {
    let pki = TestPki::new();
    let eu_cert = pki.tenant_cert("acme-eu");
    let cert = pki.tenant_cert("acme");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let key = SpoolKey::from_bytes([2; 32]);
    let with_spool = |c: AgentConfig| c.spool_dir(spool.clone()).spool_key(key.clone());

    let down = stopped_hub(&pki).await;
    let agent = EphemeralAgent::spawn(with_spool(config(&pki, "acme-eu", &down, &eu_cert)))
        .await
        .unwrap();
    let refused = agent.store(episode("kept in the eu")).await.unwrap();
    assert_eq!(refused.durability, Durability::Spooled);
    agent.destroy().await.unwrap();

    // A hub in region us, where acme-eu may not be stored.
    let mut hub_cfg = hub_config(&pki);
    hub_cfg.federation.region = Region::new("us").unwrap();
    hub_cfg.federation.residency.restrict(
        TenantId::new("acme-eu").unwrap(),
        vec![Region::new("eu").unwrap()],
    );
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_cfg, dir.path()).await;

    // The next agent of the tenant starts; the refused episode leaves the queue.
    let next = EphemeralAgent::spawn(with_spool(config(&pki, "acme-eu", &hub.url(), &eu_cert)))
        .await
        .unwrap();
    assert_eq!(next.pending(), 0);
    let dead = next.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, refused.id);
    assert_eq!(dead[0].code, ErrorCode::Forbidden);
    assert!(dead[0].message.contains("residency"), "{}", dead[0].message);
    let tenant_dir = spool.join("acme-eu");
    assert_eq!(queued(&tenant_dir), 0);
    assert_eq!(
        dead[0].path,
        tenant_dir
            .join("dead-letter")
            .join(format!("{}.ep", refused.id))
    );
    assert!(dead[0].path.is_file());
    let reason: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            tenant_dir
                .join("dead-letter")
                .join(format!("{}.json", refused.id)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(reason["code"], "forbidden");
    assert!(!reason.to_string().contains("kept in the eu"));
    // Its own store is refused on its own account, not the old episode's, and is not kept.
    let err = next.store(episode("eu again")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(next.pending(), 0);
    assert_eq!(next.dead_letters().len(), 1);
    next.destroy().await.unwrap();

    // A later agent finds nothing left to send; another tenant of the same spool is not held
    // back either.
    let later = EphemeralAgent::spawn(with_spool(config(&pki, "acme-eu", &hub.url(), &eu_cert)))
        .await
        .unwrap();
    assert!(later.dead_letters().is_empty());
    later.destroy().await.unwrap();
    let acme = EphemeralAgent::spawn(with_spool(config(&pki, "acme", &hub.url(), &cert)))
        .await
        .unwrap();
    assert!(acme
        .store(episode("us is fine"))
        .await
        .unwrap()
        .is_acknowledged());
    acme.destroy().await.unwrap();
}

#[tokio::test]
async fn a_batch_refused_whole_is_sent_one_by_one_and_only_the_bad_episode_is_dead_lettered() {
    let pki = TestPki::new();
    let cert = pki.tenant_cert("acme");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let key = SpoolKey::from_bytes([3; 32]);
    let with_spool = |c: AgentConfig| c.spool_dir(spool.clone()).spool_key(key.clone());

    let down = stopped_hub(&pki).await;
    let agent = EphemeralAgent::spawn(with_spool(config(&pki, "acme", &down, &cert)))
        .await
        .unwrap();
    let first = agent.store(episode("first good one")).await.unwrap();
    // Valid, but over the frame limit of the hub below.
    let mut big = episode("too big for this hub");
    big.output = "x".repeat(40 * 1024);
    let big = agent.store(big).await.unwrap();
    let last = agent.store(episode("last good one")).await.unwrap();
    assert_eq!(agent.pending(), 3);
    agent.destroy().await.unwrap();

    let mut hub_cfg = hub_config(&pki);
    hub_cfg.limits.max_frame_len = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_cfg, dir.path()).await;
    let next = EphemeralAgent::spawn(with_spool(config(&pki, "acme", &hub.url(), &cert)))
        .await
        .unwrap();
    assert_eq!(next.pending(), 0);
    let dead = next.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, big.id);
    assert_eq!(dead[0].code, ErrorCode::TooLarge);
    let engine = hub.handle.engine();
    let acme = TenantId::new("acme").unwrap();
    assert!(engine.get(&acme, &first.id).unwrap().is_some());
    assert!(engine.get(&acme, &last.id).unwrap().is_some());
    assert!(engine.get(&acme, &big.id).unwrap().is_none());
    next.destroy().await.unwrap();
}

#[tokio::test]
async fn a_passing_refusal_spools_and_is_retried_with_a_growing_wait_never_dead_lettered() {
    let pki = TestPki::new();
    let accept = Arc::new(AtomicBool::new(false));
    let hub = FakeHub::start(&pki, "acme", {
        let accept = Arc::clone(&accept);
        move |req| match req {
            agentdb_proto::Request::Store(s) if accept.load(Ordering::SeqCst) => {
                Reply::Response(Box::new(Response::Stored(StoredResponse {
                    results: s
                        .episodes
                        .iter()
                        .map(|e| StoredItem {
                            id: e.id.unwrap(),
                            inserted: true,
                        })
                        .collect(),
                })))
            }
            _ => Reply::Response(Box::new(Response::error(ErrorCode::Overloaded, "busy"))),
        }
    });
    let clock = Arc::new(ManualClock::new(Timestamp(
        agentdb_testkit::unix_now() * 1000,
    )));
    let tmp = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::new(
        TenantId::new("acme").unwrap(),
        hub.url(),
        pki.ca_pem(),
        Arc::new(StaticToken("scripted".into())),
    )
    .server_name("localhost")
    .spool_dir(tmp.path().to_owned())
    .spool_key(SpoolKey::from_bytes([4; 32]))
    .sync_interval(Duration::from_secs(3600))
    .clock(clock.clone());
    config.read_cache = 0;
    config.reconnect_backoff = Duration::from_secs(2);
    config.max_retry_backoff = Duration::from_secs(60);
    let agent = EphemeralAgent::spawn(config).await.unwrap();
    let noop = || agent.execute(|_| async { Ok::<_, AgentError>(()) });

    let stored = agent.store(episode("while busy")).await.unwrap();
    assert_eq!(stored.durability, Durability::Spooled);
    assert_eq!(hub.store_count(), 1);
    // Within the first wait (2 s), syncs leave the spool alone.
    noop().await.unwrap();
    assert_eq!(hub.store_count(), 1);
    clock.advance(2_000);
    noop().await.unwrap();
    assert_eq!(hub.store_count(), 2, "retried once the wait was over");
    // The wait doubled: 4 s from the last failure.
    clock.advance(2_000);
    noop().await.unwrap();
    assert_eq!(hub.store_count(), 2);
    accept.store(true, Ordering::SeqCst);
    clock.advance(2_000);
    noop().await.unwrap();
    assert_eq!(hub.store_count(), 3);
    assert_eq!(agent.pending(), 0);
    assert!(agent.dead_letters().is_empty());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("acme"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count(),
        0
    );
    agent.destroy().await.unwrap();
}
