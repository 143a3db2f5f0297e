//! The hub against a raw QUIC client that speaks the protocol by hand: what a buggy or hostile
//! client can send, and what it gets back.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentdb_core::NewEpisode;
use agentdb_proto::{
    decode_response, encode_frame, ErrorCode, Hello, QueryInput, QueryRequest, Request, Response,
    StoreRequest, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use agentdb_testkit::{hub_config, TestHub, TestPki};

async fn connect(
    hub: &TestHub,
    pki: &TestPki,
    cert: Option<(Vec<u8>, Vec<u8>)>,
) -> quinn::Connection {
    let cert = cert.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
    hub.raw_connect(&pki.ca_pem(), cert, agentdb_proto::ALPN)
        .await
        .unwrap()
}

/// Sends `bytes` on a new stream and returns the decoded answer.
async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<Response, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let answer = recv
        .read_to_end(MAX_FRAME_LEN)
        .await
        .map_err(|e| e.to_string())?;
    decode_response(&answer, MAX_FRAME_LEN).map_err(|e| e.to_string())
}

fn error_code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error(e) => Some(e.code),
        _ => None,
    }
}

async fn closed_with(conn: &quinn::Connection) -> Option<u64> {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => Some(c.error_code.into_inner()),
        _ => None,
    }
}

async fn hub_and_pki() -> (TestHub, TestPki, tempfile::TempDir) {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    (hub, pki, dir)
}

async fn authenticated(hub: &TestHub, pki: &TestPki) -> quinn::Connection {
    let conn = connect(hub, pki, Some(pki.tenant_cert("acme"))).await;
    let hello = Request::Hello(Hello::new(pki.token("acme", "raw", 300))).encode();
    let r = exchange(&conn, &hello).await.unwrap();
    assert!(matches!(r, Response::Welcome(_)), "{r:?}");
    conn
}

#[tokio::test]
async fn first_message_must_be_hello() {
    let (hub, pki, _dir) = hub_and_pki().await;
    let conn = connect(&hub, &pki, Some(pki.tenant_cert("acme"))).await;
    let r = exchange(&conn, &Request::Stats.encode()).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::Unauthenticated));
    assert_eq!(
        closed_with(&conn).await,
        Some(u64::from(ErrorCode::Unauthenticated.to_u16()))
    );
}

#[tokio::test]
async fn garbage_first_stream_closes_the_connection() {
    let (hub, pki, _dir) = hub_and_pki().await;
    let conn = connect(&hub, &pki, Some(pki.tenant_cert("acme"))).await;
    let r = exchange(&conn, b"\x00\x00\x00\x08GET / HTTP")
        .await
        .unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::InvalidRequest));
    assert!(closed_with(&conn).await.is_some());
}

#[tokio::test]
async fn silent_clients_are_closed_after_the_auth_deadline() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = hub_config(&pki);
    config.limits.auth_timeout = Duration::from_millis(300);
    let hub = TestHub::start(config, dir.path()).await;
    let conn = connect(&hub, &pki, Some(pki.tenant_cert("acme"))).await;
    assert_eq!(
        closed_with(&conn).await,
        Some(u64::from(ErrorCode::Unauthenticated.to_u16()))
    );
}

#[tokio::test]
async fn oversized_unknown_and_malformed_requests_get_typed_errors_and_the_connection_lives() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = hub_config(&pki);
    config.limits.max_frame_len = 64 * 1024;
    let hub = TestHub::start(config, dir.path()).await;
    let conn = authenticated(&hub, &pki).await;

    // Oversized: a frame past the hub's limit.
    let big = NewEpisode::new("t", "x".repeat(60 * 1024), "o", 0.5)
        .with_id(agentdb_core::EpisodeId::from_parts(1, [1; 10]));
    let mut store = StoreRequest::from_episodes([big.clone(), big]);
    store.episodes[1].id = Some(agentdb_core::EpisodeId::from_parts(2, [2; 10]));
    let r = exchange(&conn, &Request::Store(store).encode())
        .await
        .unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::TooLarge), "{r:?}");

    // An unknown message kind.
    let r = exchange(&conn, &encode_frame(999, &())).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::UnknownMessage));

    // A known kind with a body that does not decode.
    let mut junk = encode_frame(agentdb_proto::kind::QUERY, &());
    junk.extend_from_slice(&[0xff; 3]);
    let len = (junk.len() - 4) as u32;
    junk[..4].copy_from_slice(&len.to_be_bytes());
    let r = exchange(&conn, &junk).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::InvalidRequest));

    // An unsupported protocol version in the frame header.
    let mut v2 = Request::Stats.encode();
    v2[6..8].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    let r = exchange(&conn, &v2).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::InvalidRequest));

    // k = 0 is refused by the engine's validation.
    let q = Request::Query(QueryRequest {
        input: QueryInput::Text("x".into()),
        k: 0,
        filter: Default::default(),
    });
    let r = exchange(&conn, &q.encode()).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::InvalidRequest));

    // The connection still works and nothing was stored.
    let r = exchange(&conn, &Request::Stats.encode()).await.unwrap();
    match r {
        Response::Stats(s) => assert_eq!(s.episodes, 0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn store_without_client_minted_ids_is_refused() {
    let (hub, pki, _dir) = hub_and_pki().await;
    let conn = authenticated(&hub, &pki).await;
    let store = StoreRequest::from_episodes([NewEpisode::new("t", "i", "o", 0.5)]);
    let r = exchange(&conn, &Request::Store(store).encode())
        .await
        .unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::InvalidRequest));
}

#[tokio::test]
async fn per_tenant_agent_limit_answers_overloaded() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = hub_config(&pki);
    config.limits.max_agents_per_tenant = 1;
    let hub = TestHub::start(config, dir.path()).await;
    let first = authenticated(&hub, &pki).await;
    let second = connect(&hub, &pki, Some(pki.tenant_cert("acme"))).await;
    let hello = Request::Hello(Hello::new(pki.token("acme", "raw2", 300))).encode();
    let r = exchange(&second, &hello).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::Overloaded));
    // Another tenant is not affected.
    let other = connect(&hub, &pki, Some(pki.tenant_cert("beta"))).await;
    let hello = Request::Hello(Hello::new(pki.token("beta", "b", 300))).encode();
    assert!(matches!(
        exchange(&other, &hello).await.unwrap(),
        Response::Welcome(_)
    ));
    // When the first leaves, a new agent of the tenant is admitted.
    let bye = exchange(&first, &Request::Goodbye.encode()).await.unwrap();
    assert!(matches!(bye, Response::Bye));
    first.closed().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = connect(&hub, &pki, Some(pki.tenant_cert("acme"))).await;
    let hello = Request::Hello(Hello::new(pki.token("acme", "raw3", 300))).encode();
    assert!(matches!(
        exchange(&third, &hello).await.unwrap(),
        Response::Welcome(_)
    ));
}

#[tokio::test]
async fn a_hub_certificate_cannot_act_as_an_agent() {
    let (hub, pki, _dir) = hub_and_pki().await;
    let hub_cert = (
        pki.hub.cert_pem().as_bytes().to_vec(),
        pki.hub.key_pem().as_bytes().to_vec(),
    );
    let conn = connect(&hub, &pki, Some(hub_cert)).await;
    let hello = Request::Hello(Hello::new(pki.token("acme", "a", 300))).encode();
    let r = exchange(&conn, &hello).await.unwrap();
    assert_eq!(error_code(&r), Some(ErrorCode::Forbidden), "{r:?}");
}
