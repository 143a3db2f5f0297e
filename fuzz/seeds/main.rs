//! Writes the committed seed inputs under fuzz/corpus/TARGET/seed-NAME (relative to the current
//! directory, the repository root): valid frames, messages of every kind, the fixed tokens and
//! a few hub configs. The output is deterministic. Every message seed is decoded back, the way
//! its target reads it, before it is written: a seed that does not decode fails the run.
//!
//! Built like the fuzz targets (with the same instrumentation, so it links libFuzzer) and run
//! once by `scripts/fuzz.sh --seeds`: the seeds are written on the first input.
#![no_main]

use std::path::Path;

use agentdb_core::{
    AgentId, Embedding, EpisodeContent, EpisodeId, EpisodeUpdate, Filter, Hlc, HubId, LiveEpisode,
    ModelId, NewEpisode, Op, Region, ReplicaState, SessionId, Stamp, TenantId, TenantStats,
    Timestamp, VersionVector,
};
use agentdb_fuzz::{frame_from, tokens};
use agentdb_proto::fed::{
    Ack, Control, FedHello, FedMessage, OpsPage, RefusalReason, Refused, Vectors,
};
use agentdb_proto::{
    decode_request, decode_response, encode_frame, DeleteRequest, ErrorCode, ExchangeRequest,
    FrameDecoder, GetRequest, Hello, ListRequest, ListResponse, PullRequest, QueryInput,
    QueryRequest, RefreshRequest, Request, Response, StoreRequest, StoredItem, StoredResponse,
    TokenGrant, UpdateRequest, Welcome, WireEpisode, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

/// A message frame as the `messages` and `fed_messages` targets read it: selector 0 (frame
/// mode, current version), kind, body.
fn frame_input(frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&frame[4..6]);
    out.extend_from_slice(&frame[8..]);
    out
}

/// A whole stream as those targets read it: selector 255 (stream mode, full limit).
fn stream_input(frame: &[u8]) -> Vec<u8> {
    let mut out = vec![255];
    out.extend_from_slice(frame);
    out
}

/// The frame a `frame_input` seed stands for, as the targets rebuild it.
fn input_frame(input: &[u8]) -> agentdb_proto::Frame {
    frame_from(input[0], &input[1..]).expect("a frame input has a kind")
}

libfuzzer_sys::fuzz_target!(|_data: &[u8]| {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(write_all);
});

fn write_all() {
    let id = EpisodeId::from_parts(1_700_000_000_000, [7; 10]);
    let hub = HubId::new("hub-1").expect("hub id");
    let tenant = TenantId::new("acme").expect("tenant id");
    let model = ModelId::new("agentdb-lexical-v1").expect("model id");
    let episode = NewEpisode::new("summarise invoice", "invoice 42", "Total: 300 EUR", 0.9)
        .with_id(id)
        .with_agent(AgentId::new("agent-1").expect("agent id"))
        .with_tags(vec!["billing".into()])
        .with_metadata(serde_json::json!({"lang": "en", "pages": 2}));

    // Frames: selector (limit), chunk-size count, chunk sizes, stream.
    let two = [encode_frame(1, &"hello"), encode_frame(2, &(1u8, 2u8))].concat();
    write(
        "frame_decoder",
        "two-frames",
        &[[0u8, 3, 1, 5, 2].as_slice(), &two].concat(),
    );
    write(
        "frame_decoder",
        "one-byte-chunks",
        &[[0u8, 1, 1].as_slice(), &two].concat(),
    );
    write(
        "frame_decoder",
        "too-large",
        &[0u8, 0, 0x7f, 0xff, 0xff, 0xff],
    );
    write("frame_decoder", "too-short", &[0u8, 0, 0, 0, 0, 3, 0, 0, 0]);
    write(
        "frame_decoder",
        "small-limit",
        &[[5u8, 0].as_slice(), &two].concat(),
    );

    let requests = [
        (
            "hello",
            Request::Hello(Hello::new(tokens().eddsa_token.clone())),
        ),
        (
            "store",
            Request::Store(StoreRequest::from_episodes([episode.clone()])),
        ),
        (
            "query-text",
            Request::Query(QueryRequest {
                input: QueryInput::Text("invoice total".into()),
                k: 5,
                filter: Filter {
                    min_reward: Some(0.5),
                    ..Filter::default()
                },
            }),
        ),
        (
            "query-vector",
            Request::Query(QueryRequest {
                input: QueryInput::Vector(Embedding {
                    model: model.clone(),
                    vector: vec![0.5, -0.25, 0.0, 1.0],
                }),
                k: 3,
                filter: Filter::default(),
            }),
        ),
        (
            "pull",
            Request::Pull(PullRequest {
                cursor: 7,
                limit: 100,
            }),
        ),
        ("stats", Request::Stats),
        (
            "refresh",
            Request::RefreshToken(RefreshRequest {
                token: tokens().hs256_token.clone(),
            }),
        ),
        ("goodbye", Request::Goodbye),
        (
            "update",
            Request::Update(UpdateRequest {
                id,
                update: EpisodeUpdate {
                    reward: Some(0.1),
                    critique: Some(None),
                    tags: Some(vec!["x".into()]),
                    metadata_json: Some(r#"{"k":1}"#.into()),
                },
            }),
        ),
        ("delete", Request::Delete(DeleteRequest { id })),
        ("get", Request::Get(GetRequest { id })),
        (
            "list",
            Request::List(ListRequest {
                after: Some(id),
                limit: 50,
            }),
        ),
        (
            "exchange",
            Request::Exchange(ExchangeRequest {
                api_key: Some("adb_key_0123456789".into()),
                agent: Some(AgentId::new("agent-1").expect("agent id")),
                scopes: vec!["memory:read".into(), "memory:write".into()],
                ttl_secs: Some(300),
            }),
        ),
    ];
    for (name, request) in requests {
        let frame = request.encode();
        let input = frame_input(&frame);
        assert_eq!(
            Request::decode(&input_frame(&input)).as_ref(),
            Ok(&request),
            "seed req-{name}"
        );
        let stream = stream_input(&frame);
        assert_eq!(
            decode_request(&stream[1..], MAX_FRAME_LEN).as_ref(),
            Ok(&request),
            "seed req-{name}-stream"
        );
        write("messages", &format!("req-{name}"), &input);
        write("messages", &format!("req-{name}-stream"), &stream);
    }
    let stored = WireEpisode {
        id,
        tenant: tenant.clone(),
        agent: Some(AgentId::new("agent-1").expect("agent id")),
        session: Some(SessionId::from_random([3; 16])),
        task: "summarise invoice".into(),
        input: "invoice 42".into(),
        output: "Total: 300 EUR".into(),
        reward: 0.9,
        critique: Some("check the currency".into()),
        success: true,
        tags: vec!["billing".into()],
        metadata_json: r#"{"lang":"en","pages":2}"#.into(),
        tokens_used: 120,
        latency_ms: 850,
        created: Timestamp(1_700_000_000_000),
        origin: Some(hub.clone()),
        embedding_model: model.clone(),
        expires_at: None,
    };
    let responses = [
        (
            "welcome",
            Response::Welcome(Welcome {
                agent: AgentId::new("agent-1").expect("agent id"),
                tenant: tenant.clone(),
                hub: hub.clone(),
                session: SessionId::from_random([3; 16]),
                expires_at: 1_700_000_300,
                embedder: model.clone(),
            }),
        ),
        (
            "stored",
            Response::Stored(StoredResponse {
                results: vec![StoredItem { id, inserted: true }],
            }),
        ),
        (
            "stats",
            Response::Stats(TenantStats {
                episodes: 3,
                deleted: 1,
                success_rate: 0.5,
                avg_reward: 0.75,
                top_tasks: Vec::new(),
                embedding_model: Some(model.clone()),
                key_version: 1,
            }),
        ),
        ("refreshed", Response::Refreshed { expires_at: 99 }),
        ("bye", Response::Bye),
        ("error", Response::error(ErrorCode::TooLarge, "too big")),
        ("done", Response::Done { found: true }),
        ("episode", Response::Episode(Some(stored.clone()))),
        (
            "listed",
            Response::Listed(ListResponse {
                episodes: vec![stored],
                next: Some(id),
            }),
        ),
        (
            "token",
            Response::Token(TokenGrant {
                token: tokens().eddsa_token.clone(),
                expires_at: 1_700_000_300,
                tenant: tenant.clone(),
                agent: AgentId::new("agent-1").expect("agent id"),
                scopes: vec!["memory:read".into()],
            }),
        ),
    ];
    for (name, response) in responses {
        let frame = response.encode();
        let input = frame_input(&frame);
        assert_eq!(
            Response::decode(&input_frame(&input)).as_ref(),
            Ok(&response),
            "seed resp-{name}"
        );
        assert_eq!(
            decode_response(&frame, MAX_FRAME_LEN).as_ref(),
            Ok(&response),
            "resp-{name} as a stream"
        );
        write("messages", &format!("resp-{name}"), &input);
    }

    let mut vv = VersionVector::new();
    vv.set(hub.clone(), 42);
    let stamp = Stamp::new(
        Hlc {
            wall_ms: 1_700_000_000_000,
            counter: 1,
        },
        hub.clone(),
    );
    // A live episode whose metadata register was updated after the put.
    let mut live = LiveEpisode::new(
        stamp.clone(),
        EpisodeContent {
            agent: Some(AgentId::new("agent-1").expect("agent id")),
            session: None,
            task: "summarise invoice".into(),
            input: "invoice 43".into(),
            output: "Total: 120 EUR".into(),
            metadata_json: r#"{"lang":"en"}"#.into(),
            tokens_used: 80,
            latency_ms: 400,
            created: Timestamp(1_700_000_000_000),
            origin: Some(hub.clone()),
            expires_at: None,
            embedding: Some(Embedding {
                model: model.clone(),
                vector: vec![0.5, -0.25, 0.0, 1.0],
            }),
        },
        0.7,
        None,
        vec!["billing".into()],
    );
    live.update(
        &EpisodeUpdate {
            reward: None,
            critique: None,
            tags: None,
            metadata_json: Some(r#"{"lang":"de"}"#.into()),
        },
        &Stamp::new(
            Hlc {
                wall_ms: 1_700_000_000_500,
                counter: 0,
            },
            hub.clone(),
        ),
    );
    let fed = [
        (
            "hello",
            FedMessage::Hello(FedHello {
                protocol_version: PROTOCOL_VERSION,
                hub: hub.clone(),
                region: Region::new("eu").expect("region"),
            }),
        ),
        (
            "vectors",
            FedMessage::Vectors(Vectors {
                tenants: vec![(tenant.clone(), vv.clone())],
                more: false,
            }),
        ),
        (
            "ops",
            FedMessage::Ops(OpsPage {
                tenant: tenant.clone(),
                ops: vec![
                    Op {
                        origin: hub.clone(),
                        seq: 40,
                        episode: EpisodeId::from_parts(1_700_000_000_000, [8; 10]),
                        state: Some(ReplicaState::Live(Box::new(live))),
                    },
                    Op {
                        origin: hub.clone(),
                        seq: 41,
                        episode: id,
                        state: None,
                    },
                    Op {
                        origin: hub.clone(),
                        seq: 42,
                        episode: id,
                        state: Some(ReplicaState::Deleted(stamp)),
                    },
                ],
            }),
        ),
        (
            "ack",
            FedMessage::Ack(Ack {
                tenant: tenant.clone(),
                vv: vv.clone(),
            }),
        ),
        (
            "control",
            FedMessage::Control(Control {
                records: control_records(&tenant, &hub),
            }),
        ),
        (
            "refused",
            FedMessage::Refused(Refused {
                tenant,
                reason: RefusalReason::ClockSkew,
                message: "clock skew".into(),
                vv,
            }),
        ),
    ];
    let mut link = vec![255u8];
    let mut sent = Vec::new();
    for (name, message) in fed {
        let frame = message.encode();
        let input = frame_input(&frame);
        assert_eq!(
            FedMessage::decode(&input_frame(&input)).as_ref(),
            Ok(&message),
            "seed {name}"
        );
        write("fed_messages", name, &input);
        link.extend_from_slice(&frame);
        sent.push(message);
    }
    // The link stream as the target reads it (selector 255: limit 255 * 64 bytes).
    let mut decoder = FrameDecoder::new(255 * 64);
    decoder.push(&link[1..]);
    let mut received = Vec::new();
    while let Some(frame) = decoder.next_frame().expect("seed link-stream") {
        received.push(FedMessage::decode(&frame).expect("seed link-stream"));
    }
    assert_eq!(received, sent, "seed link-stream");
    write("fed_messages", "link-stream", &link);

    // Tokens: mode byte % 3 = 0 (as is), 1 (edits), 2 (header 0xFF payload, signed); bit 1 set
    // picks EdDSA.
    let t = tokens();
    write(
        "tokens",
        "hs256-valid",
        &[b"\0", t.hs256_token.as_bytes()].concat(),
    );
    write(
        "tokens",
        "eddsa-valid",
        &[b"\x03", t.eddsa_token.as_bytes()].concat(),
    );
    write("tokens", "hs256-edit-signature", &[1, 0, 60, b'A']);
    write("tokens", "eddsa-edit-header", &[7, 0, 1, b'x']);
    let claims = serde_json::to_vec(&t.claims).expect("claims json");
    write(
        "tokens",
        "hs256-signed-claims",
        &[
            b"\x05{\"alg\":\"HS256\",\"typ\":\"JWT\"}\xff".as_slice(),
            &claims,
        ]
        .concat(),
    );
    write(
        "tokens",
        "eddsa-signed-claims",
        &[
            b"\x02{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}\xff".as_slice(),
            &claims,
        ]
        .concat(),
    );
    write("tokens", "alg-none", b"\0eyJhbGciOiJub25lIn0.e30.");

    // Hub configs.
    write("hub_config", "empty", b"");
    write(
        "hub_config",
        "full",
        br#"hub_id = "hub-eu"
data = "data"
quic = "0.0.0.0:4433"
http = "127.0.0.1:8444"
mtls = true
region = "eu"
topology = "mesh"
peers = ["quic://10.0.0.2:4433", "$US_HUB"]
sync_interval = "500ms"

[tls]
ca = "ca.pem"
cert = "hub.pem"
key = "hub.key"

[token]
public_key = "signing.key.pub"
audience = "agentdb-hub"

[limits]
max_agents = 1000
max_agents_per_tenant = 100
max_inflight_per_tenant = 64
max_frame_len = 4194304
auth_timeout_secs = 5
idle_timeout_secs = 60

[tenants.acme]
residency = ["eu"]

[federation]
page_ops = 256
window = 4
tombstone_retention_secs = 604800
max_backoff_secs = 30
"#,
    );
    write(
        "hub_config",
        "hierarchical",
        b"topology = \"hierarchical\"\nupstream = \"quic://hub-root:4433\"\nsync_interval = 2.5\n\
          [token]\nsecret = \"a shared secret of at least 32 bytes\"\n",
    );
    write(
        "hub_config",
        "bad-key",
        b"hub_id = \"a\"\n[limits]\nmax_agent = 3\n",
    );
}

/// An erasure order of each scope, a receipt and a revocation of each kind.
fn control_records(tenant: &TenantId, hub: &HubId) -> Vec<agentdb_core::ControlRecord> {
    use agentdb_core::{
        ControlRecord, DestroyedKey, Erasure, ErasureId, ErasureReceipt, ErasureScope,
        MetadataMatch, ReceiptBody, Revocation, Revoked,
    };
    let stamp = Stamp::new(
        Hlc {
            wall_ms: 1_700_000_001_000,
            counter: 2,
        },
        hub.clone(),
    );
    let order = |scope, n| Erasure {
        id: ErasureId::from_parts(1_700_000_001_000, [n; 10]),
        tenant: tenant.clone(),
        scope,
        issued_by: hub.clone(),
        stamp: stamp.clone(),
    };
    let revocation = |revoked| {
        ControlRecord::Revocation(Revocation {
            revoked,
            issued_by: hub.clone(),
            issued_ms: 1_700_000_001_000,
        })
    };
    vec![
        ControlRecord::Erasure(order(ErasureScope::Tenant, 1)),
        ControlRecord::Erasure(order(
            ErasureScope::Subject(MetadataMatch::new("user_id", &serde_json::json!("u-1"))),
            2,
        )),
        ControlRecord::Receipt(ErasureReceipt {
            body: ReceiptBody {
                erasure: ErasureId::from_parts(1_700_000_001_000, [1; 10]),
                tenant: tenant.clone(),
                hub: hub.clone(),
                through: [(hub.clone(), 42)].into_iter().collect(),
                erased_ms: 1_700_000_002_000,
                episodes: 3,
                destroyed_keys: vec![DestroyedKey {
                    version: 1,
                    fingerprint: "ab".repeat(32),
                }],
            },
            certificate_der: vec![0x30, 0x82, 0x01, 0x00],
            signature: vec![0x30, 0x44, 0x02, 0x20],
        }),
        revocation(Revoked::Token {
            jti: "jti-1".into(),
            expires: 1_700_000_300,
        }),
        revocation(Revoked::Agent {
            tenant: tenant.clone(),
            agent: agentdb_core::AgentId::new("worker-1").expect("agent"),
            issued_until: 1_700_000_100,
        }),
        revocation(Revoked::ApiKey {
            tenant: tenant.clone(),
            id: "0123456789abcdef".into(),
        }),
        revocation(Revoked::Certificate {
            serial: "a1b2c3".into(),
        }),
    ]
}
