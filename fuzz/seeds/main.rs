//! Writes the committed seed inputs under fuzz/corpus/TARGET/seed-NAME (relative to the current
//! directory, the repository root): valid frames, messages of every kind, the fixed tokens and
//! a few hub configs. The output is deterministic.
//!
//! Built like the fuzz targets (with the same instrumentation, so it links libFuzzer) and run
//! once by `scripts/fuzz.sh --seeds`: the seeds are written on the first input.
#![no_main]

use std::path::Path;

use agentdb_core::{
    AgentId, Embedding, EpisodeId, EpisodeUpdate, Filter, Hlc, HubId, ModelId, NewEpisode, Op,
    Region, ReplicaState, SessionId, Stamp, TenantId, TenantStats, VersionVector,
};
use agentdb_fuzz::tokens;
use agentdb_proto::fed::{Ack, FedHello, FedMessage, OpsPage, RefusalReason, Refused, Vectors};
use agentdb_proto::{
    encode_frame, DeleteRequest, ErrorCode, Hello, PullRequest, QueryInput, QueryRequest,
    RefreshRequest, Request, Response, StoreRequest, StoredItem, StoredResponse, UpdateRequest,
    Welcome, PROTOCOL_VERSION,
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
    ];
    for (name, request) in requests {
        let frame = request.encode();
        write("messages", &format!("req-{name}"), &frame_input(&frame));
        write(
            "messages",
            &format!("req-{name}-stream"),
            &stream_input(&frame),
        );
    }
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
    ];
    for (name, response) in responses {
        let frame = response.encode();
        write("messages", &format!("resp-{name}"), &frame_input(&frame));
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
    for (name, message) in fed {
        let frame = message.encode();
        write("fed_messages", &name, &frame_input(&frame));
        link.extend_from_slice(&frame);
    }
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
