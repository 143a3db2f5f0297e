//! Hubs in one process linked over real QUIC with hub certificates: ops replicate, relay and
//! respect residency; links refuse what is not a hub, resume after a break, report their state
//! and let tombstones go once every hub holds them — including hubs that are away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::{AgentError, EphemeralAgent};
use agentdb_core::{
    EpisodeId, EpisodeUpdate, HubId, NewEpisode, Op, Region, Residency, TenantId, Timestamp,
    VersionVector,
};
use agentdb_hub::federation::{LinkState, LinkStatus};
use agentdb_hub::{FederationConfig, HubConfig, Topology};
use agentdb_memory::{EngineConfig, ManualClock, MemoryEngine, RedbStorage, Storage};
use agentdb_proto::fed::{FedHello, FedMessage, LinkError, OpsPage, FED_ALPN};
use agentdb_security::tls::TlsMaterial;
use agentdb_security::token::Scope;
use agentdb_security::MasterKey;
use agentdb_testkit::{federated_hub_config, json_body, TestHub, TestPki};

/// Sync interval of the hubs under test.
const SYNC: Duration = Duration::from_millis(200);
/// QUIC close code of a link refused for its peer's certificate.
const CLOSE_REFUSED: u64 = 3;
/// QUIC close code of a link closed for a protocol violation.
const CLOSE_PROTOCOL: u64 = 5;

fn fed(upstream: Option<String>) -> FederationConfig {
    FederationConfig {
        topology: Topology::Hierarchical,
        upstream,
        sync_interval: SYNC,
        max_backoff: Duration::from_millis(300),
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

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn hub_id(name: &str) -> HubId {
    HubId::new(name).unwrap()
}

fn episode_id(n: u8) -> EpisodeId {
    EpisodeId::from_parts(1_700_000_000_000 + u64::from(n), [n; 10])
}

/// Stores episode `n` of `tenant` directly in `hub`'s engine.
fn put(hub: &TestHub, tenant_name: &str, n: u8) -> EpisodeId {
    let id = episode_id(n);
    let episode = NewEpisode::new(
        format!("task {n} of {tenant_name}"),
        format!("input {n}"),
        format!("output {n}"),
        0.5,
    )
    .with_id(id);
    let stored = hub
        .handle
        .engine()
        .store(&tenant(tenant_name), episode)
        .unwrap();
    assert!(stored.inserted);
    id
}

fn holds(hub: &TestHub, tenant_name: &str, id: &EpisodeId) -> bool {
    hub.handle
        .engine()
        .get(&tenant(tenant_name), id)
        .unwrap()
        .is_some()
}

fn vv(hub: &TestHub, tenant_name: &str) -> VersionVector {
    hub.handle
        .engine()
        .version_vector(&tenant(tenant_name))
        .unwrap()
}

fn has_tenant(hub: &TestHub, tenant_name: &str) -> bool {
    hub.handle.engine().tenants().contains(&tenant(tenant_name))
}

/// Loopback addresses that were free a moment ago, for hubs that must know each other's
/// address before they start. Each socket is held until its hub is about to bind.
fn reserve_addrs(n: usize) -> Vec<(std::net::UdpSocket, SocketAddr)> {
    (0..n)
        .map(|_| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = s.local_addr().unwrap();
            (s, addr)
        })
        .collect()
}

/// Starts a hub on `dir` with `config` (its exact QUIC address), retrying briefly while the
/// store or the port is still held by a hub that just shut down.
async fn restart(config: HubConfig, dir: &Path) -> TestHub {
    let mut engine = None;
    for _ in 0..250 {
        let engine_config = EngineConfig {
            origin: Some(config.hub_id.clone()),
            ..EngineConfig::default()
        };
        match agentdb_memory::open_data_dir(dir, engine_config) {
            Ok(e) => {
                engine = Some(Arc::new(e));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let engine = engine.expect("the store reopens once the previous hub has let go of it");
    for _ in 0..250 {
        match agentdb_hub::start(config.clone(), Arc::clone(&engine)).await {
            Ok(handle) => {
                return TestHub {
                    handle,
                    dir: dir.to_owned(),
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the hub could not bind {} again", config.quic_addr);
}

/// A raw QUIC connection to `hub` with ALPN `agentdb-fed/1`, trusting `ca_pem` and presenting
/// `cert` (PEM certificate, PEM key).
async fn raw_link(
    hub: &TestHub,
    ca_pem: &[u8],
    cert: (&[u8], &[u8]),
) -> Result<quinn::Connection, quinn::ConnectionError> {
    hub.raw_connect(ca_pem, Some(cert), FED_ALPN).await
}

/// Real ops of `tenant_name` as hub `origin` would send them: one stored episode, read back
/// from a scratch store.
fn foreign_ops(origin: &str, tenant_name: &str, dir: &Path) -> Vec<Op> {
    let engine = agentdb_memory::open_data_dir(
        dir,
        EngineConfig {
            origin: Some(hub_id(origin)),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let t = tenant(tenant_name);
    engine
        .store(
            &t,
            NewEpisode::new("smuggled task", "in", "out", 0.9).with_id(episode_id(99)),
        )
        .unwrap();
    let ops = engine
        .ops_since(&t, &VersionVector::new(), 16, 1 << 20)
        .unwrap();
    assert_eq!(ops.len(), 1);
    ops
}

/// Opens the link stream and sends a Hello naming `claimed` and a page of `ops`, ignoring
/// failures (the hub may already be closing the connection).
async fn send_hello_and_ops(
    conn: &quinn::Connection,
    claimed: &str,
    tenant_name: &str,
    ops: Vec<Op>,
) -> Option<quinn::RecvStream> {
    // The receiving half is handed back, to be kept open: were it dropped, the hub could see
    // its writes stopped (and end the link for that) before it read the Hello.
    let Ok((mut send, recv)) = conn.open_bi().await else {
        return None;
    };
    let hello = FedMessage::Hello(FedHello {
        protocol_version: agentdb_proto::PROTOCOL_VERSION,
        hub: hub_id(claimed),
        region: Region::new("eu").unwrap(),
    });
    let page = FedMessage::Ops(OpsPage {
        tenant: tenant(tenant_name),
        ops,
    });
    let _ = send.write_all(&hello.encode()).await;
    let _ = send.write_all(&page.encode()).await;
    Some(recv)
}

/// How the hub ended the connection: (application close code, reason).
async fn application_close(conn: &quinn::Connection) -> (u64, String) {
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the hub closes the connection");
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => (
            c.error_code.into_inner(),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// An agent of `tenant_name` stores `episode` on `hub` and is destroyed; what the store
/// answered.
async fn store_as_agent(
    hub: &TestHub,
    pki: &TestPki,
    tenant_name: &str,
    episode: NewEpisode,
) -> Result<EpisodeId, AgentError> {
    let agent = EphemeralAgent::spawn(hub.agent_config(pki, tenant_name))
        .await
        .unwrap();
    let stored = agent.store_episode(episode).await;
    let destroyed = agent.destroy().await;
    if stored.is_ok() {
        destroyed.unwrap();
    }
    stored
}

/// GET `path` on the hub's admin port.
async fn http_get(hub: &TestHub, path: &str) -> (u16, String) {
    hub.http_get(path, None).await
}

/// The value of the first sample of `metric` (name plus labels, exactly) in a Prometheus text.
fn sample(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_stored_at_an_edge_reaches_the_upstream_and_back_down() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let global = start_hub(&pki, "global", "global", None, dirs[0].path()).await;
    let eu = start_hub(&pki, "eu", "eu", Some(&global), dirs[1].path()).await;
    let us = start_hub(&pki, "us", "us", Some(&global), dirs[2].path()).await;

    let id = EpisodeId::from_parts(1_700_000_000_000, [3; 10]);
    let episode =
        NewEpisode::new("summarise invoice", "invoice 42", "Total: 300 EUR", 0.9).with_id(id);
    store_as_agent(&eu, &pki, "acme", episode).await.unwrap();

    let tenant = TenantId::new("acme").unwrap();
    let us_engine = Arc::clone(us.handle.engine());
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
    assert!(status.links.iter().all(|l| l.state == LinkState::Connected));
    let acme = status.tenants.iter().find(|t| t.tenant == "acme").unwrap();
    assert_eq!(acme.version_vector.get("eu"), Some(&1));
    let _ = Region::new("eu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_certificate_cannot_open_a_hub_link() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let hub = start_hub(&pki, "global", "global", None, dir.path()).await;

    let (cert, key) = pki.tenant_cert("acme");
    let conn = raw_link(&hub, &pki.ca_pem(), (&cert, &key))
        .await
        .expect("a certificate of the deployment CA completes the handshake");
    let _recv = send_hello_and_ops(
        &conn,
        "eu",
        "acme",
        foreign_ops("eu", "acme", scratch.path()),
    )
    .await;

    let (code, reason) = application_close(&conn).await;
    assert_eq!(code, CLOSE_REFUSED, "{reason}");
    assert!(reason.contains("hub certificate"), "{reason}");
    assert!(
        reason.contains("acme"),
        "names what was presented: {reason}"
    );

    assert!(hub.handle.engine().tenants().is_empty());
    assert!(!holds(&hub, "acme", &episode_id(99)));
    assert!(hub.handle.federation_status().links.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_certificate_of_another_ca_fails_the_handshake() {
    let pki = TestPki::new();
    let foreign = TestPki::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = start_hub(&pki, "global", "global", None, dirs[0].path()).await;

    // Raw: a hub certificate of a foreign CA (the client trusts the hub's CA).
    let rogue_tls = foreign.hub_tls_for("eu", None);
    let outcome = raw_link(
        &hub,
        &pki.ca_pem(),
        (&rogue_tls.cert_pem, &rogue_tls.key_pem),
    )
    .await;
    if let Ok(conn) = outcome {
        // The client may finish its side of the handshake before the hub has checked its
        // certificate; the hub then closes at the TLS layer, never at the application layer.
        let _recv = send_hello_and_ops(
            &conn,
            "eu",
            "acme",
            foreign_ops("eu", "acme", dirs[2].path()),
        )
        .await;
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("the hub closes the connection");
        assert!(
            !matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
            "{closed:?}"
        );
    }

    // A real hub with such a certificate, dialling with an episode to share.
    let mut config = federated_hub_config(&pki, "eu", "eu", fed(Some(hub.url())));
    config.tls = TlsMaterial {
        ca_pem: pki.ca_pem(),
        ..foreign.hub_tls_for("eu", None)
    };
    let rogue = TestHub::start(config, dirs[1].path()).await;
    let id = put(&rogue, "acme", 1);
    eventually("the rogue hub's link to fail", || {
        let status = rogue.handle.federation_status();
        status.links[0].last_error.is_some() && status.links[0].state != LinkState::Connected
    })
    .await;
    let status = rogue.handle.federation_status();
    assert_eq!(status.links[0].ops_sent, 0, "{status:?}");

    assert!(hub.handle.engine().tenants().is_empty());
    assert!(!holds(&hub, "acme", &id));
    assert!(hub.handle.federation_status().links.is_empty());
    let metrics = http_get(&hub, "/metrics").await.1;
    assert!(
        sample(
            &metrics,
            "agentdb_auth_failures_total{reason=\"tls_handshake\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_naming_another_hub_or_region_than_the_certificate_closes_the_link() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let hub = start_hub(&pki, "global", "global", None, dir.path()).await;

    // `send_hello_and_ops` claims region eu.
    let cases = [
        (
            None,
            "eu",
            LinkError::PeerMismatch {
                certified: hub_id("mallory"),
                claimed: hub_id("eu"),
            },
        ),
        (
            Some("us"),
            "mallory",
            LinkError::RegionMismatch {
                certified: Region::new("us").unwrap(),
                claimed: Region::new("eu").unwrap(),
            },
        ),
    ];
    for (region, claimed, expected) in cases {
        let mallory = pki.hub_tls_for("mallory", region);
        let conn = raw_link(&hub, &pki.ca_pem(), (&mallory.cert_pem, &mallory.key_pem))
            .await
            .unwrap();
        let ops = foreign_ops(claimed, "acme", scratch.path());
        let _recv = send_hello_and_ops(&conn, claimed, "acme", ops).await;

        let (code, reason) = application_close(&conn).await;
        assert_eq!(code, CLOSE_PROTOCOL, "{reason}");
        assert_eq!(reason, expected.to_string());
        assert!(hub.handle.engine().tenants().is_empty());
        assert!(!holds(&hub, "acme", &episode_id(99)));
    }
}

/// A hub whose certificate binds it to one region does not start configured for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_configured_for_another_region_than_its_certificate_does_not_start() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = federated_hub_config(&pki, "liar", "eu", fed(None));
    config.tls = pki.hub_tls_for("liar", Some("us"));
    let engine =
        Arc::new(agentdb_memory::open_data_dir(dir.path(), EngineConfig::default()).unwrap());
    let err = agentdb_hub::start(config, engine).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "this hub's certificate places it in region us, but its configuration says region eu"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_tenant_stays_in_its_region() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut residency = Residency::everywhere();
    residency.restrict(tenant("acme-eu"), vec![Region::new("eu").unwrap()]);
    let us = TestHub::start(
        federated_hub_config(
            &pki,
            "us",
            "us",
            FederationConfig {
                residency: residency.clone(),
                ..fed(None)
            },
        ),
        dirs[0].path(),
    )
    .await;
    let eu = TestHub::start(
        federated_hub_config(
            &pki,
            "eu",
            "eu",
            FederationConfig {
                residency,
                ..fed(Some(us.url()))
            },
        ),
        dirs[1].path(),
    )
    .await;

    let restricted = put(&eu, "acme-eu", 1);
    let free = put(&eu, "beta", 2);
    eventually("the unrestricted tenant at us", || {
        holds(&us, "beta", &free)
    })
    .await;
    eventually("the link to have nothing left to send", || {
        let status = eu.handle.federation_status();
        status.links[0].lag_ops == 0 && status.links[0].in_flight == 0
    })
    .await;

    assert!(holds(&eu, "acme-eu", &restricted));
    assert!(!has_tenant(&us, "acme-eu"));
    assert!(!holds(&us, "acme-eu", &restricted));
    let reader = EphemeralAgent::spawn(us.agent_config(&pki, "acme-eu"))
        .await
        .unwrap();
    let recall = reader.query_memories("task 1 of acme-eu", 3).await.unwrap();
    assert!(recall.memories.is_empty(), "{:?}", recall.memories);
    reader.destroy().await.unwrap();

    let status = eu.handle.federation_status();
    assert_eq!(status.links[0].region.as_deref(), Some("us"));
    assert!(status.links[0].last_error.is_none(), "{status:?}");
    let acme_eu = status
        .tenants
        .iter()
        .find(|t| t.tenant == "acme-eu")
        .unwrap();
    assert_eq!(acme_eu.residency, Some(vec!["eu".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refuses_a_tenant_its_region_may_not_hold() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // Only the receiver knows the restriction.
    let mut residency = Residency::everywhere();
    residency.restrict(tenant("acme-eu"), vec![Region::new("eu").unwrap()]);
    let us = TestHub::start(
        federated_hub_config(
            &pki,
            "us",
            "us",
            FederationConfig {
                residency,
                ..fed(None)
            },
        ),
        dirs[0].path(),
    )
    .await;
    let eu = start_hub(&pki, "eu", "eu", Some(&us), dirs[1].path()).await;

    let restricted = put(&eu, "acme-eu", 1);
    let free = put(&eu, "beta", 2);
    eventually("the refusal reported at eu", || {
        eu.handle.federation_status().links[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused acme-eu") && e.contains("region us"))
    })
    .await;
    eventually("the unrestricted tenant at us", || {
        holds(&us, "beta", &free)
    })
    .await;

    assert!(!has_tenant(&us, "acme-eu"));
    assert!(!holds(&us, "acme-eu", &restricted));
    assert!(vv(&us, "acme-eu").is_empty());
    let status = us.handle.federation_status();
    assert_eq!(status.links.len(), 1, "{status:?}");
    assert!(
        status.links[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("acme-eu")),
        "{status:?}"
    );
    assert!(status.tenants.iter().all(|t| t.tenant != "acme-eu"));
    // The link stays up for everything else.
    assert_eq!(
        eu.handle.federation_status().links[0].state,
        LinkState::Connected
    );
}

/// Starts hub `name` in `region` with the tests' federation settings, linked to `upstream`
/// when one is given.
async fn start_hub(
    pki: &TestPki,
    name: &str,
    region: &str,
    upstream: Option<&TestHub>,
    dir: &Path,
) -> TestHub {
    let config = federated_hub_config(pki, name, region, fed(upstream.map(TestHub::url)));
    TestHub::start(config, dir).await
}

/// Starts mesh hub `name` (its region named alike) dialling `peers`, on the address reserved
/// for it.
async fn mesh_hub(
    pki: &TestPki,
    name: &str,
    peers: Vec<String>,
    (socket, addr): (std::net::UdpSocket, SocketAddr),
    dir: &Path,
) -> TestHub {
    let mut config = federated_hub_config(
        pki,
        name,
        name,
        FederationConfig {
            topology: Topology::Mesh,
            peers,
            ..fed(None)
        },
    );
    config.quic_addr = addr;
    drop(socket);
    TestHub::start(config, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_of_three_converges() {
    let pki = TestPki::new();
    let names = ["mesh-a", "mesh-b", "mesh-c"];
    let own: Vec<String> = names.iter().map(|n| format!("own-{n}")).collect();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let reserved = reserve_addrs(3);
    let urls: Vec<String> = reserved
        .iter()
        .map(|(_, addr)| format!("quic://{addr}"))
        .collect();
    let mut hubs = Vec::new();
    for (i, reserved) in reserved.into_iter().enumerate() {
        let peers = (0..3)
            .filter(|&j| j != i)
            .map(|j| urls[j].clone())
            .collect();
        hubs.push(mesh_hub(&pki, names[i], peers, reserved, dirs[i].path()).await);
    }

    let mut ids = Vec::new();
    for (i, hub) in hubs.iter().enumerate() {
        ids.push(put(hub, "acme", i as u8 + 1));
        put(hub, &own[i], 10 + i as u8);
    }
    let expected: VersionVector = names.iter().map(|n| (hub_id(n), 1)).collect();
    eventually("equal version vectors everywhere", || {
        hubs.iter().all(|h| vv(h, "acme") == expected)
            && hubs.iter().all(|h| {
                own.iter()
                    .all(|t| vv(h, t) == vv(&hubs[0], t) && !vv(h, t).is_empty())
            })
    })
    .await;
    for hub in &hubs {
        for id in &ids {
            assert!(holds(hub, "acme", id));
        }
        let status = hub.handle.federation_status();
        assert_eq!(status.topology, "mesh");
        let dialled = status.links.iter().filter(|l| l.direction == "outbound");
        assert_eq!(dialled.count(), 2, "{status:?}");
    }
    // Each pair keeps one link, the one its smaller hub id dialled (a hub that dialled before
    // its peers listened gets through once its handshake is retransmitted); the other waits
    // on standby.
    let one_link_per_pair = |i: usize| {
        let links = hubs[i].handle.federation_status().links;
        (0..3).filter(|&j| j != i).all(|j| {
            let with = |l: &&LinkStatus| l.peer.as_deref() == Some(names[j]);
            let connected: Vec<_> = links
                .iter()
                .filter(with)
                .filter(|l| l.state == LinkState::Connected)
                .collect();
            let standby = links
                .iter()
                .filter(with)
                .filter(|l| l.state == LinkState::Standby);
            let dialled_by = if i < j { "outbound" } else { "inbound" };
            connected.len() == 1
                && connected[0].direction == dialled_by
                && standby.count() == usize::from(i > j)
        })
    };
    eventually("one link per pair", || (0..3).all(one_link_per_pair)).await;
    // And it stays that way: the links on standby do not come back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!((0..3).all(one_link_per_pair));
    // Writes still reach every hub over the links that are left.
    let late = put(&hubs[2], "acme", 99);
    eventually("a write after the links settled", || {
        hubs.iter().all(|h| holds(h, "acme", &late))
    })
    .await;
}

/// When the smaller hub of a pair cannot reach the larger one, the link the larger one dialled
/// is the pair's only link and stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_link_stays_when_the_peer_cannot_dial_back() {
    let pki = TestPki::new();
    let names = ["pair-a", "pair-b"];
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let reserved = reserve_addrs(3);
    // pair-a dials an address nobody listens on; pair-b dials pair-a.
    let nowhere = format!("quic://{}", reserved[2].1);
    let urls = [nowhere, format!("quic://{}", reserved[0].1)];
    let mut hubs = Vec::new();
    for (i, reserved) in reserved.into_iter().take(2).enumerate() {
        let peers = vec![urls[i].clone()];
        hubs.push(mesh_hub(&pki, names[i], peers, reserved, dirs[i].path()).await);
    }
    let id = put(&hubs[0], "acme", 1);
    eventually("pair-b holds pair-a's write", || {
        holds(&hubs[1], "acme", &id)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let links = hubs[1].handle.federation_status().links;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        (links[0].direction.as_str(), links[0].state),
        ("outbound", LinkState::Connected)
    );
    let id = put(&hubs[1], "acme", 2);
    eventually("pair-a holds pair-b's write", || {
        holds(&hubs[0], "acme", &id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spokes_reach_each_other_through_the_center() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let spoke = |upstream: Option<String>| FederationConfig {
        topology: Topology::HubAndSpoke,
        ..fed(upstream)
    };
    let center = TestHub::start(
        federated_hub_config(&pki, "center", "core", spoke(None)),
        dirs[0].path(),
    )
    .await;
    let mut spokes = Vec::new();
    for (i, name) in ["s1", "s2", "s3"].iter().enumerate() {
        spokes.push(
            TestHub::start(
                federated_hub_config(&pki, name, name, spoke(Some(center.url()))),
                dirs[i + 1].path(),
            )
            .await,
        );
    }

    let id = put(&spokes[0], "acme", 1);
    eventually("the episode at every other spoke", || {
        spokes[1..].iter().all(|s| holds(s, "acme", &id))
    })
    .await;
    let back = put(&spokes[2], "acme", 2);
    let expected: VersionVector = [(hub_id("s1"), 1), (hub_id("s3"), 1)].into_iter().collect();
    eventually("equal version vectors on every hub", || {
        vv(&center, "acme") == expected && spokes.iter().all(|s| vv(s, "acme") == expected)
    })
    .await;
    assert!(spokes.iter().all(|s| holds(s, "acme", &back)));
    let status = center.handle.federation_status();
    assert_eq!(status.topology, "hub-and-spoke");
    assert_eq!(status.links.len(), 3, "{status:?}");
    assert!(status.links.iter().all(|l| l.direction == "inbound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_link_resumes_and_the_upstream_catches_up() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let global_config = federated_hub_config(&pki, "global", "global", fed(None));
    let global = TestHub::start(global_config.clone(), dirs[0].path()).await;
    let addr = global.handle.quic_addr();
    let edge = start_hub(&pki, "edge", "eu", Some(&global), dirs[1].path()).await;

    let first = put(&edge, "acme", 1);
    eventually("the first episode upstream", || {
        holds(&global, "acme", &first)
    })
    .await;

    global.handle.shutdown().await;
    eventually("the edge to see the link down", || {
        edge.handle.federation_status().links[0].state != LinkState::Connected
    })
    .await;
    let later: Vec<_> = (2..6).map(|n| put(&edge, "acme", n)).collect();

    let restarted_at = Instant::now();
    let global = restart(
        HubConfig {
            quic_addr: addr,
            ..global_config
        },
        dirs[0].path(),
    )
    .await;
    assert_eq!(global.handle.quic_addr(), addr);
    assert!(
        holds(&global, "acme", &first),
        "the upstream kept its store"
    );
    let edge_vv = vv(&edge, "acme");
    assert_eq!(edge_vv.get(&hub_id("edge")), 5);
    eventually("the upstream to catch up", || {
        vv(&global, "acme") == edge_vv
    })
    .await;
    let caught_up = restarted_at.elapsed();
    assert!(later.iter().all(|id| holds(&global, "acme", id)));
    assert_eq!(
        edge.handle.federation_status().links[0].state,
        LinkState::Connected
    );
    assert!(caught_up < Duration::from_secs(8), "{caught_up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_link_sends_only_what_the_peer_lacks() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let global_config = federated_hub_config(&pki, "global", "global", fed(None));
    let global = TestHub::start(global_config.clone(), dirs[0].path()).await;
    let addr = global.handle.quic_addr();
    let edge = start_hub(&pki, "edge", "eu", Some(&global), dirs[1].path()).await;
    for n in 1..=10 {
        put(&edge, "acme", n);
    }
    eventually("the first ten upstream", || {
        vv(&global, "acme").get(&hub_id("edge")) == 10
    })
    .await;

    global.handle.shutdown().await;
    eventually("the edge to see the link down", || {
        edge.handle.federation_status().links[0].state != LinkState::Connected
    })
    .await;
    put(&edge, "acme", 11);
    put(&edge, "acme", 12);
    let global = restart(
        HubConfig {
            quic_addr: addr,
            ..global_config
        },
        dirs[0].path(),
    )
    .await;
    eventually("the upstream to catch up", || {
        vv(&global, "acme") == vv(&edge, "acme")
    })
    .await;
    eventually("the link to settle", || {
        let links = edge.handle.federation_status().links;
        links[0].state == LinkState::Connected && links[0].lag_ops == 0 && links[0].in_flight == 0
    })
    .await;

    // The new connection starts from what the peer holds (its Vectors): the edge sends the
    // two ops the upstream lacked, the upstream sends the edge nothing of its own.
    let edge_link = edge.handle.federation_status().links[0].clone();
    let global_link = global.handle.federation_status().links[0].clone();
    assert_eq!(global_link.ops_received, 2, "{global_link:?}");
    assert_eq!(
        edge_link.ops_sent, 2,
        "ops the upstream held were sent again: {edge_link:?}"
    );
    assert_eq!(
        global_link.ops_sent, 0,
        "the edge's own ops were sent back to it: {global_link:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_replicate_and_a_delete_wins_over_a_concurrent_update() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let global = start_hub(&pki, "global", "global", None, dirs[0].path()).await;
    let edge = start_hub(&pki, "edge", "eu", Some(&global), dirs[1].path()).await;
    let t = tenant("acme");
    let reward =
        |hub: &TestHub, id: &EpisodeId| hub.handle.engine().get(&t, id).unwrap().map(|e| e.reward);

    let id = put(&edge, "acme", 1);
    eventually("the episode upstream", || holds(&global, "acme", &id)).await;
    let update = EpisodeUpdate {
        reward: Some(0.125),
        ..EpisodeUpdate::default()
    };
    assert!(edge.handle.engine().update(&t, &id, &update).unwrap());
    eventually("the new reward upstream", || {
        reward(&global, &id) == Some(0.125)
    })
    .await;
    assert!(edge.handle.engine().delete(&t, &id).unwrap());
    eventually("the delete upstream", || !holds(&global, "acme", &id)).await;

    // A delete upstream and an update at the edge at the same moment, neither (as a rule)
    // having seen the other.
    let contested = put(&edge, "acme", 2);
    eventually("the second episode upstream", || {
        holds(&global, "acme", &contested)
    })
    .await;
    let late = EpisodeUpdate {
        reward: Some(0.875),
        ..EpisodeUpdate::default()
    };
    let (deleted, updated) = std::thread::scope(|s| {
        let delete = s.spawn(|| global.handle.engine().delete(&t, &contested).unwrap());
        let update = s.spawn(|| edge.handle.engine().update(&t, &contested, &late).unwrap());
        (delete.join().unwrap(), update.join().unwrap())
    });
    assert!(deleted);
    // `updated` is false only when the delete had already arrived at the edge: either way the
    // delete wins.
    let _ = updated;
    eventually("both hubs to converge", || {
        let e = vv(&edge, "acme");
        e == vv(&global, "acme") && e.get(&hub_id("global")) == 1
    })
    .await;
    assert!(!holds(&edge, "acme", &contested));
    assert!(!holds(&global, "acme", &contested));
    // Anti-entropy rounds later, still deleted.
    tokio::time::sleep(SYNC * 3).await;
    for hub in [&edge, &global] {
        assert!(!holds(hub, "acme", &contested));
        assert!(!holds(hub, "acme", &id));
        assert_eq!(hub.handle.engine().stats(&t).unwrap().episodes, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_status_and_metrics_over_admin_http() {
    let pki = TestPki::new();
    let operator = pki.token_with("ops", "op", 300, vec![Scope::Operator]);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let global = start_hub(&pki, "global", "global", None, dirs[0].path()).await;
    let edge = start_hub(&pki, "edge", "eu", Some(&global), dirs[1].path()).await;
    put(&edge, "acme", 1);
    put(&edge, "acme", 2);
    put(&global, "acme", 3);
    let expected: VersionVector = [(hub_id("edge"), 2), (hub_id("global"), 1)]
        .into_iter()
        .collect();
    eventually("convergence", || {
        vv(&edge, "acme") == expected && vv(&global, "acme") == expected
    })
    .await;

    for (hub, peer, region, direction) in [
        (&edge, "global", "global", "outbound"),
        (&global, "edge", "eu", "inbound"),
    ] {
        let mut status = serde_json::Value::Null;
        for _ in 0..250 {
            let (code, body) = hub.http_get("/v1/federation", Some(&operator)).await;
            assert_eq!(code, 200, "{body}");
            status = json_body(&body);
            if status["links"][0]["lag_ops"] == 0 && status["links"][0]["in_flight"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let link = &status["links"][0];
        assert_eq!(status["links"].as_array().unwrap().len(), 1, "{status}");
        assert_eq!(status["topology"], "hierarchical");
        assert_eq!(link["peer"], peer, "{status}");
        assert_eq!(link["region"], region, "{status}");
        assert_eq!(link["direction"], direction, "{status}");
        assert_eq!(link["state"], "connected", "{status}");
        assert!(link["ops_sent"].as_u64().unwrap() > 0, "{status}");
        assert!(link["ops_received"].as_u64().unwrap() > 0, "{status}");
        assert_eq!(link["lag_ops"], 0, "{status}");
        assert!(link["last_sync_ms"].as_u64().is_some(), "{status}");
        let acme = status["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == "acme")
            .unwrap();
        assert_eq!(acme["version_vector"]["edge"], 2, "{status}");
        assert_eq!(acme["version_vector"]["global"], 1, "{status}");

        let lag = format!("agentdb_federation_lag_ops{{peer=\"{peer}\"}}");
        let mut metrics = String::new();
        for _ in 0..250 {
            metrics = http_get(hub, "/metrics").await.1;
            if sample(&metrics, &lag) == Some(0.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sample(&metrics, &lag), Some(0.0), "{metrics}");
        let sent = format!("agentdb_federation_ops_sent_total{{peer=\"{peer}\"}}");
        assert!(
            sample(&metrics, &sent).is_some_and(|n| n > 0.0),
            "{metrics}"
        );
        let received = format!("agentdb_federation_ops_received_total{{peer=\"{peer}\"}}");
        assert!(
            sample(&metrics, &received).is_some_and(|n| n > 0.0),
            "{metrics}"
        );
        assert!(
            sample(&metrics, "agentdb_federation_propagation_seconds_count")
                .is_some_and(|n| n > 0.0),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "agentdb_federation_links"),
            Some(1.0),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_every_hub_holds_are_collected() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let collecting = |upstream: Option<String>| {
        let mut config = FederationConfig {
            tombstone_retention: Duration::ZERO,
            ..fed(upstream)
        };
        config
            .residency
            .restrict(tenant("acme-eu"), vec![Region::new("eu").unwrap()]);
        config
    };
    let global = TestHub::start(
        federated_hub_config(&pki, "global", "global", collecting(None)),
        dirs[0].path(),
    )
    .await;
    let edge = TestHub::start(
        federated_hub_config(&pki, "edge", "eu", collecting(Some(global.url()))),
        dirs[1].path(),
    )
    .await;
    let t = tenant("acme");
    let deleted = |hub: &TestHub| hub.handle.engine().stats(&t).unwrap().deleted;

    let id = put(&edge, "acme", 1);
    let kept = put(&edge, "acme", 2);
    eventually("the episodes upstream", || {
        holds(&global, "acme", &id) && holds(&global, "acme", &kept)
    })
    .await;
    assert!(edge.handle.engine().delete(&t, &id).unwrap());
    eventually("the delete upstream", || !holds(&global, "acme", &id)).await;
    eventually("the tombstones collected on both hubs", || {
        deleted(&edge) == 0 && deleted(&global) == 0
    })
    .await;

    // Anti-entropy rounds later the episode is still gone and nothing came back.
    tokio::time::sleep(SYNC * 3).await;
    for hub in [&edge, &global] {
        assert!(!holds(hub, "acme", &id));
        assert!(holds(hub, "acme", &kept));
        let stats = hub.handle.engine().stats(&t).unwrap();
        assert_eq!((stats.episodes, stats.deleted), (1, 0));
    }
    assert_eq!(vv(&edge, "acme"), vv(&global, "acme"));
    assert_eq!(vv(&edge, "acme").get(&hub_id("edge")), 3);

    // A tenant the only link may not carry: its tombstones wait for no one.
    let eu = tenant("acme-eu");
    let local = put(&edge, "acme-eu", 3);
    assert!(edge.handle.engine().delete(&eu, &local).unwrap());
    eventually("the eu-only tombstone collected", || {
        edge.handle.engine().stats(&eu).unwrap().deleted == 0
    })
    .await;
    assert!(!has_tenant(&global, "acme-eu"));
}

/// Two hubs sending each other ops both ways at once, a page per op: the link threads' event
/// queues and the writers' queues fill up on both sides, and neither side may stop reading the
/// other (the queues are bounded) nor drop a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_sending_at_once_through_full_queues_converge() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let one_op_pages = |upstream: Option<String>| {
        let mut config = fed(upstream);
        config.link.page_ops = 1;
        config
    };
    let global = TestHub::start(
        federated_hub_config(&pki, "global", "global", one_op_pages(None)),
        dirs[0].path(),
    )
    .await;
    let edge = TestHub::start(
        federated_hub_config(&pki, "edge", "eu", one_op_pages(Some(global.url()))),
        dirs[1].path(),
    )
    .await;
    eventually("the link up", || {
        edge.handle.federation_status().links[0].state == LinkState::Connected
    })
    .await;
    let t = tenant("acme");
    let batch = |hub: &str, from: u32| -> Vec<NewEpisode> {
        (from..from + 100)
            .map(|n| NewEpisode::new(format!("{hub} task {n}"), "in", "out", 0.5))
            .collect()
    };
    std::thread::scope(|s| {
        for (hub, name) in [(&global, "global"), (&edge, "edge")] {
            let t = &t;
            s.spawn(move || {
                for round in 0..8 {
                    let stored = hub
                        .handle
                        .engine()
                        .store_batch(t, batch(name, round * 100))
                        .unwrap();
                    assert_eq!(stored.len(), 100);
                }
            });
        }
    });
    let expected: VersionVector = [(hub_id("edge"), 800), (hub_id("global"), 800)]
        .into_iter()
        .collect();
    eventually("both hubs to hold all 1,600 episodes", || {
        vv(&edge, "acme") == expected && vv(&global, "acme") == expected
    })
    .await;
    for hub in [&edge, &global] {
        assert_eq!(hub.handle.engine().stats(&t).unwrap().episodes, 1600);
        let links = hub.handle.federation_status().links;
        assert_eq!(links[0].state, LinkState::Connected, "{links:?}");
        assert_eq!(links[0].last_error, None, "{links:?}");
    }
}

/// How long the hubs of the test below keep tombstones: far longer than the test runs; it
/// passes by moving their clock.
const RETENTION: Duration = Duration::from_secs(3600);

/// Starts a hub with `config` on the store in `dir` (created, or reopened: retrying briefly
/// while a hub that just stopped still holds it or its port), its engine on `clock`. Each hub
/// keeps its own master key, the same across restarts.
async fn start_on_clock(config: HubConfig, dir: &Path, clock: &Arc<ManualClock>) -> TestHub {
    let key = config.hub_id.as_str().bytes().fold(7u8, u8::wrapping_add);
    let open = || -> Option<MemoryEngine> {
        let storage: Arc<dyn Storage> = Arc::new(RedbStorage::open(&dir.join("db.redb")).ok()?);
        MemoryEngine::builder(storage, MasterKey::from_bytes([key; 32]))
            .clock(Arc::clone(clock) as Arc<dyn agentdb_memory::Clock>)
            .config(EngineConfig {
                origin: Some(config.hub_id.clone()),
                ..EngineConfig::default()
            })
            .open()
            .ok()
    };
    let mut engine = None;
    for _ in 0..250 {
        engine = open();
        if engine.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let engine = Arc::new(engine.expect("the store opens once the previous hub let go of it"));
    for _ in 0..250 {
        if let Ok(handle) = agentdb_hub::start(config.clone(), Arc::clone(&engine)).await {
            return TestHub {
                handle,
                dir: dir.to_owned(),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("hub {} could not bind {}", config.hub_id, config.quic_addr);
}

/// The reliability report's lost delete: a spoke is stopped, an episode it holds is deleted on
/// the other spoke, the retention passes and the root (which dials nobody) restarts meanwhile;
/// the stopped spoke comes back and must get the delete, not a collected op that leaves its
/// copy live. Afterwards, with every hub caught up, the tombstone goes everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_away_longer_than_the_retention_does_not_keep_a_deleted_episode() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = Arc::new(ManualClock::new(Timestamp(
        agentdb_testkit::unix_now() * 1000,
    )));
    let reserved = reserve_addrs(2);
    let spoke_config = |name: &str, upstream: Option<String>, addr: Option<SocketAddr>| {
        let federation = FederationConfig {
            topology: Topology::HubAndSpoke,
            tombstone_retention: RETENTION,
            ..fed(upstream)
        };
        let config = federated_hub_config(&pki, name, name, federation);
        HubConfig {
            quic_addr: addr.unwrap_or(config.quic_addr),
            ..config
        }
    };
    let (root_addr, us_addr) = (reserved[0].1, reserved[1].1);
    let root_config = spoke_config("root", None, Some(root_addr));
    let root_url = format!("quic://{root_addr}");
    let us_config = spoke_config("us", Some(root_url.clone()), Some(us_addr));
    drop(reserved);
    let root = start_on_clock(root_config.clone(), dirs[0].path(), &clock).await;
    let eu = start_on_clock(
        spoke_config("eu", Some(root_url.clone()), None),
        dirs[1].path(),
        &clock,
    )
    .await;
    let us = start_on_clock(us_config.clone(), dirs[2].path(), &clock).await;
    let t = tenant("acme");
    let tombstones = |hub: &TestHub| hub.handle.engine().stats(&t).unwrap().deleted;

    let id = put(&eu, "acme", 1);
    eventually("the episode at every hub", || {
        holds(&root, "acme", &id) && holds(&us, "acme", &id)
    })
    .await;
    us.handle.shutdown().await;
    eventually("the root to see us gone", || {
        root.handle.federation_status().links.len() == 1
    })
    .await;

    assert!(eu.handle.engine().delete(&t, &id).unwrap());
    eventually("the delete at the root", || {
        !holds(&root, "acme", &id) && vv(&root, "acme") == vv(&eu, "acme")
    })
    .await;
    clock.advance(2 * RETENTION.as_millis() as u64);
    // eu's only peer, the root, holds the delete: eu lets its tombstone go.
    eventually("eu to collect its tombstone", || tombstones(&eu) == 0).await;

    // The root restarts while us is still away; it must remember us.
    root.handle.shutdown().await;
    let root = start_on_clock(root_config, dirs[0].path(), &clock).await;
    eventually("eu back on the root", || {
        root.handle.federation_status().links.len() == 1
            && root.handle.federation_status().links[0].state == LinkState::Connected
    })
    .await;
    tokio::time::sleep(SYNC * 5).await;

    let us = start_on_clock(us_config, dirs[2].path(), &clock).await;
    eventually("us to catch up with the root", || {
        vv(&us, "acme") == vv(&root, "acme")
    })
    .await;
    assert!(
        !holds(&us, "acme", &id),
        "us serves an episode deleted while it was away"
    );
    let found = us
        .handle
        .engine()
        .query(&t, &agentdb_memory::Query::text("task 1 of acme", 5))
        .unwrap();
    assert!(found.iter().all(|m| m.episode.id != id), "{found:?}");

    // Every hub has the delete now: the tombstone goes everywhere, and the episode stays gone.
    eventually("the tombstones collected everywhere", || {
        [&root, &eu, &us].iter().all(|h| tombstones(h) == 0)
    })
    .await;
    tokio::time::sleep(SYNC * 3).await;
    for hub in [&root, &eu, &us] {
        assert!(!holds(hub, "acme", &id));
        assert_eq!(vv(hub, "acme"), vv(&eu, "acme"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_store_a_tenant_outside_its_residency() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = fed(None);
    config
        .residency
        .restrict(tenant("acme-eu"), vec![Region::new("eu").unwrap()]);
    let us = TestHub::start(federated_hub_config(&pki, "us", "us", config), dir.path()).await;
    let episode = NewEpisode::new("summarise invoice", "", "Total: 1 EUR", 0.9);
    let err = store_as_agent(&us, &pki, "acme-eu", episode).await;
    let message = format!("{:?}", err.expect_err("the store must be refused"));
    assert!(message.contains("residency"), "{message}");
    assert!(!has_tenant(&us, "acme-eu"));
    // Another tenant is stored as usual.
    let episode = NewEpisode::new("summarise invoice", "", "Total: 2 EUR", 0.9);
    store_as_agent(&us, &pki, "acme", episode).await.unwrap();
    assert!(has_tenant(&us, "acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_update_and_delete_and_other_regions_see_it() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let global = start_hub(&pki, "global", "global", None, dirs[0].path()).await;
    let eu = start_hub(&pki, "eu", "eu", Some(&global), dirs[1].path()).await;
    let t = tenant("acme");
    let agent = EphemeralAgent::spawn(eu.agent_config(&pki, "acme"))
        .await
        .unwrap();
    let id = agent
        .store_episode(NewEpisode::new(
            "summarise invoice",
            "",
            "Total: 3 EUR",
            0.2,
        ))
        .await
        .unwrap();
    let found = agent
        .update_episode(
            id,
            EpisodeUpdate {
                reward: Some(0.95),
                critique: Some(Some("checked by a human".into())),
                tags: None,
                metadata_json: Some(r#"{"checked":true}"#.into()),
            },
        )
        .await
        .unwrap();
    assert!(found);
    let unknown = EpisodeId::from_parts(1, [9; 10]);
    assert!(!agent
        .update_episode(unknown, EpisodeUpdate::default())
        .await
        .unwrap());
    agent.destroy().await.unwrap();
    let g = Arc::clone(global.handle.engine());
    eventually("the update at global", || {
        g.get(&t, &id).unwrap().is_some_and(|e| {
            e.reward == 0.95
                && e.critique.as_deref() == Some("checked by a human")
                && e.metadata == serde_json::json!({"checked": true})
        })
    })
    .await;
    // A delete through the other hub reaches the first.
    let other = EphemeralAgent::spawn(global.agent_config(&pki, "acme"))
        .await
        .unwrap();
    assert!(other.delete_episode(id).await.unwrap());
    assert!(!other.delete_episode(id).await.unwrap());
    other.destroy().await.unwrap();
    let e = Arc::clone(eu.handle.engine());
    eventually("the delete at eu", || e.get(&t, &id).unwrap().is_none()).await;
    // An update with a NaN reward is refused.
    let again = EphemeralAgent::spawn(eu.agent_config(&pki, "acme"))
        .await
        .unwrap();
    let err = again
        .update_episode(
            id,
            EpisodeUpdate {
                reward: Some(f64::NAN),
                ..EpisodeUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("reward"), "{err}");
    again.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_on_a_link_close_only_that_link() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&pki, "global", "global", None, dir.path()).await;
    let eu = pki.hub_tls_for("eu", None);
    let hello = FedMessage::Hello(FedHello {
        protocol_version: agentdb_proto::PROTOCOL_VERSION,
        hub: hub_id("eu"),
        region: Region::new("eu").unwrap(),
    })
    .encode();
    // A valid Hello, then bytes that are no frame; then a prefix announcing 16 MiB.
    let oversized = (16u32 * 1024 * 1024).to_be_bytes().to_vec();
    let garbage = {
        let mut g = 20u32.to_be_bytes().to_vec();
        g.extend_from_slice(&[0xff; 20]);
        g
    };
    for bad in [garbage, oversized] {
        let conn = raw_link(&hub, &pki.ca_pem(), (&eu.cert_pem, &eu.key_pem))
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&hello).await.unwrap();
        send.write_all(&bad).await.unwrap();
        let (code, reason) = application_close(&conn).await;
        assert_eq!(code, CLOSE_PROTOCOL, "{reason}");
        assert!(reason.contains("from the peer"), "{reason}");
    }
    // The hub still serves agents and links.
    assert!(hub.handle.engine().tenants().is_empty());
    let episode = NewEpisode::new("summarise invoice", "", "Total: 4 EUR", 0.9);
    store_as_agent(&hub, &pki, "acme", episode).await.unwrap();
    assert!(has_tenant(&hub, "acme"));
}

/// A link the peer ends at once (here: both hubs were given one name) is retried with a
/// growing wait, not every 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_refused_at_once_is_retried_with_a_growing_wait() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let slow = |upstream: Option<String>| FederationConfig {
        max_backoff: Duration::from_secs(2),
        ..fed(upstream)
    };
    let first = TestHub::start(
        federated_hub_config(&pki, "twin", "global", slow(None)),
        dirs[0].path(),
    )
    .await;
    let second = TestHub::start(
        federated_hub_config(&pki, "twin", "eu", slow(Some(first.url()))),
        dirs[1].path(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Waits of 0.1, 0.2, 0.4 and 0.8 s fit in 2 s: about five attempts (every 100 ms it
    // would be over fifteen).
    let (_, metrics) = http_get(&second, "/metrics").await;
    let attempts = sample(&metrics, "agentdb_federation_dials_total").unwrap_or(0.0);
    assert!(
        (2.0..=7.0).contains(&attempts),
        "{attempts} attempts in 2 s"
    );
    // Either side may see the clash first; the other reports the reason it was closed with.
    // Between attempts the link may be mid-dial, with no error yet.
    eventually("the clash reported as the link's error", || {
        second.handle.federation_status().links[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("every hub needs its own id"))
    })
    .await;
}

/// Waits up to 10 s for the stored bytes `hub` reports to pass `want`.
async fn eventually_bytes(hub: &TestHub, admin: &str, want: impl Fn(u64) -> bool) {
    let mut last = 0;
    for _ in 0..500 {
        last = stored_bytes(hub, admin).await;
        if want(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stored bytes stayed at {last}");
}

/// The tenant's stored bytes as `hub`'s quota route reports them.
async fn stored_bytes(hub: &TestHub, admin: &str) -> u64 {
    let (status, body) = hub.http_get("/v1/tenants/acme/quota", Some(admin)).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    report["usage"]["bytes"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_stores_and_deletes_move_the_receivers_stored_bytes() {
    let pki = TestPki::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut config = federated_hub_config(&pki, "global", "global", fed(None));
    config.limits.quotas.default.max_bytes = Some(1_000_000);
    let global = TestHub::start(config, dirs[0].path()).await;
    let eu = start_hub(&pki, "eu", "eu", Some(&global), dirs[1].path()).await;
    let admin = pki.token_with("acme", "ops", 60, vec![Scope::Admin]);

    // The receiver has counted the tenant's bytes (one episode of its own).
    let local = NewEpisode::new("stored at global", "i", "o", 0.5);
    store_as_agent(&global, &pki, "acme", local).await.unwrap();
    let before = stored_bytes(&global, &admin).await;
    assert!(before > 0);

    // 5,000 bytes more arrive by replication, then leave by a replicated delete.
    let id = episode_id(9);
    let big = NewEpisode::new("stored at eu", "x".repeat(5_000), "o", 0.5).with_id(id);
    store_as_agent(&eu, &pki, "acme", big).await.unwrap();
    eventually_bytes(&global, &admin, |b| b >= before + 5_000).await;

    let agent = EphemeralAgent::spawn(eu.agent_config(&pki, "acme"))
        .await
        .unwrap();
    assert!(agent.delete_episode(id).await.unwrap());
    agent.destroy().await.unwrap();
    eventually_bytes(&global, &admin, |b| b == before).await;
    assert!(!holds(&global, "acme", &id));
}
