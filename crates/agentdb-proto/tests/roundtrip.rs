//! Every request and response through encode → frame → decode, and the wire episode forms
//! against core's types.

#![allow(clippy::unwrap_used)]

use agentdb_core::{
    AgentId, Embedding, Episode, EpisodeId, EpisodeUpdate, Filter, HubId, MetadataMatch, ModelId,
    NewEpisode, Outcome, SessionId, TaskCount, TenantId, TenantStats, Timestamp,
};
use agentdb_proto::{
    decode_request, decode_response, encode_frame, kind, Change, ChangeItem, DecodeError,
    DeleteRequest, ErrorCode, ExchangeRequest, FrameDecoder, GetRequest, Hello, ListRequest,
    ListResponse, MatchesResponse, PageResponse, PullRequest, QueryInput, QueryRequest,
    RefreshRequest, Request, Response, StoreRequest, StoredItem, StoredResponse, TokenGrant,
    UpdateRequest, Welcome, WireEpisode, WireError, WireMatch, WireNewEpisode, MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};
use proptest::prelude::*;
use serde_json::json;

fn model() -> ModelId {
    ModelId::new("agentdb-lexical-v1").unwrap()
}

fn episode(n: u8, metadata: serde_json::Value) -> Episode {
    Episode {
        id: EpisodeId::from_parts(1_700_000_000_000 + u64::from(n), [n; 10]),
        tenant: TenantId::new("acme").unwrap(),
        agent: Some(AgentId::new("agent-7").unwrap()),
        session: Some(SessionId::from_random([n; 16])),
        task: "summarise invoice".into(),
        input: "invoice #42".into(),
        output: "total 12.50 EUR".into(),
        reward: 0.85,
        critique: Some("missed VAT".into()),
        success: true,
        tags: vec!["billing".into(), "eu".into()],
        metadata,
        tokens_used: 1234,
        latency_ms: 56,
        created: Timestamp(1_700_000_000_999),
        origin: Some(HubId::new("hub-eu-1").unwrap()),
        embedding_model: model(),
        expires_at: Some(Timestamp(1_700_000_060_000)),
    }
}

fn requests() -> Vec<Request> {
    let with_everything = NewEpisode::new("t", "i", "o", 0.25)
        .with_id(EpisodeId::from_parts(9, [9; 10]))
        .with_agent(AgentId::new("a").unwrap())
        .with_critique("c")
        .with_tags(vec!["x".into()])
        .with_metadata(json!({"tool": "grep", "n": [1, 2.5, null], "ok": true}))
        .with_embedding(Embedding {
            model: model(),
            vector: vec![0.1, -0.2, 3.0e-7],
        });
    let bare = NewEpisode::new("t2", "", "", -1.0).with_id(EpisodeId::from_parts(10, [1; 10]));
    vec![
        Request::Hello(Hello::new("eyJhbGciOi.e30.sig")),
        Request::Store(StoreRequest::from_episodes([with_everything, bare])),
        Request::Store(StoreRequest {
            episodes: Vec::new(),
        }),
        Request::Query(QueryRequest {
            input: QueryInput::Text("how to summarise an invoice".into()),
            k: 10,
            filter: Filter::default(),
        }),
        Request::Query(QueryRequest {
            input: QueryInput::Vector(Embedding {
                model: model(),
                vector: vec![1.0, 0.0, -0.5, f32::MIN_POSITIVE],
            }),
            k: 3,
            filter: Filter {
                min_reward: Some(0.7),
                outcome: Outcome::Failures,
                created_from: Some(Timestamp(1)),
                created_until: Some(Timestamp(u64::MAX)),
                tags: Vec::new(),
                metadata: Vec::new(),
            },
        }),
        Request::Query(QueryRequest {
            input: QueryInput::Text("invoices in euros".into()),
            k: 7,
            filter: Filter {
                tags: vec!["billing".into(), "eu".into()],
                metadata: vec![
                    MetadataMatch::new("tool", &json!("grep")),
                    MetadataMatch::new("attempt", &json!({"n": [1, 2.5, null]})),
                ],
                ..Filter::default()
            },
        }),
        Request::Pull(PullRequest {
            cursor: u64::MAX,
            limit: 500,
        }),
        Request::Stats,
        Request::RefreshToken(RefreshRequest {
            token: "new-token".into(),
        }),
        Request::Goodbye,
        Request::Get(GetRequest {
            id: EpisodeId::from_parts(11, [4; 10]),
        }),
        Request::List(ListRequest {
            after: None,
            limit: 100,
        }),
        Request::List(ListRequest {
            after: Some(EpisodeId::from_parts(12, [0xff; 10])),
            limit: u32::MAX,
        }),
        Request::Exchange(ExchangeRequest {
            api_key: Some("adb_live_secret".into()),
            agent: Some(AgentId::new("agent-7").unwrap()),
            scopes: vec!["memory:read".into(), "memory:write".into()],
            ttl_secs: Some(600),
        }),
        Request::Exchange(ExchangeRequest {
            api_key: None,
            agent: None,
            scopes: Vec::new(),
            ttl_secs: None,
        }),
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::Welcome(Welcome {
            agent: AgentId::new("agent-7").unwrap(),
            tenant: TenantId::new("acme").unwrap(),
            hub: HubId::new("hub-eu-1").unwrap(),
            session: SessionId::from_random([5; 16]),
            expires_at: 1_700_000_300,
            embedder: model(),
        }),
        Response::Stored(StoredResponse {
            results: vec![
                StoredItem {
                    id: EpisodeId::from_parts(1, [1; 10]),
                    inserted: true,
                },
                StoredItem {
                    id: EpisodeId::from_parts(2, [2; 10]),
                    inserted: false,
                },
            ],
        }),
        Response::Matches(MatchesResponse {
            matches: vec![
                WireMatch {
                    episode: episode(1, json!({"k": "v", "nested": {"a": [1, 2, 3]}})).into(),
                    score: 0.93,
                },
                WireMatch {
                    episode: episode(2, serde_json::Value::Null).into(),
                    score: -0.1,
                },
            ],
            model: model(),
            query_vector: vec![0.5; 384],
        }),
        Response::Page(PageResponse {
            changes: vec![
                ChangeItem {
                    seq: 41,
                    change: Change::Put(episode(3, json!({})).into()),
                },
                ChangeItem {
                    seq: 42,
                    change: Change::Deleted {
                        id: EpisodeId::from_parts(3, [3; 10]),
                    },
                },
            ],
            next_cursor: 42,
            more: true,
        }),
        Response::Stats(TenantStats {
            episodes: 10,
            deleted: 2,
            success_rate: 0.6,
            avg_reward: 0.55,
            top_tasks: vec![TaskCount {
                task: "summarise invoice".into(),
                count: 7,
                avg_reward: 0.8,
            }],
            embedding_model: Some(model()),
            key_version: 3,
        }),
        Response::Stats(TenantStats {
            episodes: 0,
            deleted: 0,
            success_rate: 0.0,
            avg_reward: 0.0,
            top_tasks: Vec::new(),
            embedding_model: None,
            key_version: 0,
        }),
        Response::Refreshed {
            expires_at: 1_700_000_600,
        },
        Response::Bye,
        Response::error(ErrorCode::TokenExpired, "refresh it"),
        Response::error(ErrorCode::NotFound, "no such episode"),
        Response::Episode(Some(episode(5, json!({"tool": "grep"})).into())),
        Response::Episode(None),
        Response::Listed(ListResponse {
            episodes: vec![
                episode(6, json!({})).into(),
                episode(7, serde_json::Value::Null).into(),
            ],
            next: Some(EpisodeId::from_parts(7, [7; 10])),
        }),
        Response::Listed(ListResponse {
            episodes: Vec::new(),
            next: None,
        }),
        Response::Token(TokenGrant {
            token: "eyJhbGciOi.e30.sig".into(),
            expires_at: 1_700_000_900,
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new("agent-7").unwrap(),
            scopes: vec!["memory:read".into()],
        }),
    ]
}

#[test]
fn every_request_round_trips() {
    let mut kinds = Vec::new();
    for r in requests() {
        let bytes = r.encode();
        assert_eq!(decode_request(&bytes, MAX_FRAME_LEN).unwrap(), r);
        // Same through the incremental decoder.
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&bytes);
        let frame = d.next_frame().unwrap().unwrap();
        assert_eq!(frame.kind, r.kind());
        assert_eq!(frame.version, PROTOCOL_VERSION);
        assert_eq!(Request::decode(&frame).unwrap(), r);
        kinds.push(r.kind());
    }
    kinds.dedup();
    assert_eq!(kinds, [1, 2, 3, 4, 5, 6, 7, 10, 11, 12]);
}

#[test]
fn every_response_round_trips() {
    let mut kinds = Vec::new();
    for r in responses() {
        let bytes = r.encode();
        assert_eq!(decode_response(&bytes, MAX_FRAME_LEN).unwrap(), r);
        kinds.push(r.kind());
    }
    kinds.dedup();
    assert_eq!(
        kinds,
        [101, 102, 103, 104, 105, 106, 107, 108, 110, 111, 112]
    );
}

#[test]
fn every_error_code_round_trips() {
    for &code in ErrorCode::ALL {
        let r = Response::Error(WireError::new(code, code.as_str()));
        assert_eq!(decode_response(&r.encode(), MAX_FRAME_LEN).unwrap(), r);
    }
}

#[test]
fn requests_and_responses_do_not_cross() {
    for r in requests() {
        assert_eq!(
            decode_response(&r.encode(), MAX_FRAME_LEN)
                .unwrap_err()
                .code(),
            ErrorCode::UnknownMessage
        );
    }
    for r in responses() {
        assert_eq!(
            decode_request(&r.encode(), MAX_FRAME_LEN)
                .unwrap_err()
                .code(),
            ErrorCode::UnknownMessage
        );
    }
}

#[test]
fn episodes_survive_the_wire_with_metadata() {
    let e = episode(
        4,
        json!({"f": 0.1, "g": 1e-300, "s": "ünïcode ✓", "a": [[], {}], "i": -9007199254740993i64}),
    );
    let page = Response::Page(PageResponse {
        changes: vec![ChangeItem {
            seq: 1,
            change: Change::Put(WireEpisode::from(&e)),
        }],
        next_cursor: 1,
        more: false,
    });
    let Response::Page(p) = decode_response(&page.encode(), MAX_FRAME_LEN).unwrap() else {
        panic!("not a page");
    };
    let Change::Put(w) = p.changes.into_iter().next().unwrap().change else {
        panic!("not a put");
    };
    assert_eq!(Episode::try_from(w).unwrap(), e);
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_new_episodes_round_trip(
        task in ".{0,40}",
        input in ".{0,40}",
        reward in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        tags in prop::collection::vec(".{0,10}", 0..5),
        metadata in json_value(),
        vector in prop::option::of(prop::collection::vec(any::<f32>().prop_filter("finite", |f| f.is_finite()), 1..20)),
        tokens in any::<u64>(),
        id in any::<u64>(),
    ) {
        let mut e = NewEpisode::new(task, input, "out", reward)
            .with_id(EpisodeId::from_parts(id, [1; 10]))
            .with_tags(tags)
            .with_metadata(metadata);
        e.tokens_used = tokens;
        e.embedding = vector.map(|vector| Embedding { model: model(), vector });
        let request = Request::Store(StoreRequest::from_episodes([e.clone()]));
        let Request::Store(back) = decode_request(&request.encode(), MAX_FRAME_LEN).unwrap() else {
            panic!("not a store");
        };
        prop_assert_eq!(back.into_episodes().unwrap(), vec![e]);
    }

    #[test]
    fn arbitrary_episodes_round_trip(metadata in json_value(), reward in -1e6f64..1e6, created in any::<u64>()) {
        let mut e = episode(1, metadata);
        e.reward = reward;
        e.created = Timestamp(created);
        let w = WireEpisode::from(&e);
        let bytes = postcard::to_allocvec(&w).unwrap();
        let back: WireEpisode = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(Episode::try_from(back).unwrap(), e);
    }
}

#[test]
fn wire_new_episode_keeps_a_missing_id() {
    let e = NewEpisode::new("t", "i", "o", 0.5);
    let w = WireNewEpisode::from(&e);
    assert_eq!(w.id, None);
    assert_eq!(NewEpisode::try_from(w).unwrap(), e);
}

#[test]
fn updates_deletes_and_their_answers_round_trip() {
    let id = EpisodeId::from_parts(7, [2; 10]);
    let update = Request::Update(UpdateRequest {
        id,
        update: EpisodeUpdate {
            reward: Some(0.25),
            critique: Some(None),
            tags: Some(vec!["late".into()]),
            metadata_json: Some(r#"{"reviewed":true}"#.into()),
        },
    });
    assert_eq!(
        decode_request(&update.encode(), MAX_FRAME_LEN).unwrap(),
        update
    );
    let delete = Request::Delete(DeleteRequest { id });
    assert_eq!(
        decode_request(&delete.encode(), MAX_FRAME_LEN).unwrap(),
        delete
    );
    for found in [true, false] {
        let done = Response::Done { found };
        assert_eq!(
            decode_response(&done.encode(), MAX_FRAME_LEN).unwrap(),
            done
        );
    }
}

#[test]
fn new_messages_have_their_kinds_and_names() {
    let get = Request::Get(GetRequest {
        id: EpisodeId::from_parts(1, [1; 10]),
    });
    let list = Request::List(ListRequest {
        after: None,
        limit: 1,
    });
    let exchange = Request::Exchange(ExchangeRequest {
        api_key: None,
        agent: None,
        scopes: Vec::new(),
        ttl_secs: None,
    });
    assert_eq!((get.kind(), get.name()), (kind::GET, "get"));
    assert_eq!((list.kind(), list.name()), (kind::LIST, "list"));
    assert_eq!(
        (exchange.kind(), exchange.name()),
        (kind::EXCHANGE, "exchange")
    );
    assert_eq!((kind::GET, kind::LIST, kind::EXCHANGE), (10, 11, 12));
    let episode = Response::Episode(None);
    let listed = Response::Listed(ListResponse {
        episodes: Vec::new(),
        next: None,
    });
    let token = Response::Token(TokenGrant {
        token: "t".into(),
        expires_at: 1,
        tenant: TenantId::new("acme").unwrap(),
        agent: AgentId::new("a").unwrap(),
        scopes: Vec::new(),
    });
    assert_eq!((episode.kind(), episode.name()), (110, "episode"));
    assert_eq!((listed.kind(), listed.name()), (111, "listed"));
    assert_eq!((token.kind(), token.name()), (112, "token"));
    assert_eq!(ErrorCode::NotFound.to_u16(), 12);
    assert_eq!(ErrorCode::NotFound.as_str(), "not_found");
    assert_eq!(ErrorCode::from_u16(12), ErrorCode::NotFound);
}

#[test]
fn kinds_past_the_known_ones_are_unknown_messages() {
    for kind in [13u16, 100, 113, 999] {
        let bytes = encode_frame(kind, &());
        assert_eq!(
            decode_request(&bytes, MAX_FRAME_LEN),
            Err(DecodeError::UnknownMessage { kind })
        );
        assert_eq!(
            decode_response(&bytes, MAX_FRAME_LEN),
            Err(DecodeError::UnknownMessage { kind })
        );
    }
}

#[test]
fn new_bodies_must_be_consumed_exactly() {
    let get = Request::Get(GetRequest {
        id: EpisodeId::from_parts(1, [1; 10]),
    });
    let mut bytes = get.encode();
    bytes.push(0);
    // Fix up the length prefix so that only the body is wrong.
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) + 1;
    bytes[..4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        decode_request(&bytes, MAX_FRAME_LEN),
        Err(DecodeError::Malformed { .. })
    ));
    // A Listed body cut short is malformed, not a shorter page.
    let listed = Response::Listed(ListResponse {
        episodes: Vec::new(),
        next: Some(EpisodeId::from_parts(5, [5; 10])),
    });
    let full = listed.encode();
    let cut = encode_frame(kind::LISTED, &0u8);
    assert_ne!(full, cut);
    assert!(matches!(
        decode_response(&cut, MAX_FRAME_LEN),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn secrets_are_not_in_debug_output() {
    let exchange = format!(
        "{:?}",
        Request::Exchange(ExchangeRequest {
            api_key: Some("adb_live_secret".into()),
            agent: Some(AgentId::new("agent-7").unwrap()),
            scopes: vec!["memory:read".into()],
            ttl_secs: Some(60),
        })
    );
    assert!(!exchange.contains("secret"), "{exchange}");
    assert!(exchange.contains("agent-7") && exchange.contains("memory:read"));
    let without = format!(
        "{:?}",
        ExchangeRequest {
            api_key: None,
            agent: None,
            scopes: Vec::new(),
            ttl_secs: None,
        }
    );
    assert!(without.contains("api_key: None"), "{without}");
    let grant = format!(
        "{:?}",
        Response::Token(TokenGrant {
            token: "eyJ.secret.sig".into(),
            expires_at: 99,
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new("agent-7").unwrap(),
            scopes: Vec::new(),
        })
    );
    assert!(!grant.contains("secret"), "{grant}");
    assert!(grant.contains("acme") && grant.contains("99"));
}

#[test]
fn queries_from_agents_without_content_filters_still_decode() {
    // The query layout before filters had tags and metadata: the filter's four first fields.
    let legacy = (
        QueryInput::Text("invoice".into()),
        5u32,
        (
            Some(0.5f64),
            Outcome::Successes,
            Some(Timestamp(10)),
            None::<Timestamp>,
        ),
    );
    let bytes = encode_frame(kind::QUERY, &legacy);
    assert_eq!(
        decode_request(&bytes, MAX_FRAME_LEN).unwrap(),
        Request::Query(QueryRequest {
            input: QueryInput::Text("invoice".into()),
            k: 5,
            filter: Filter {
                min_reward: Some(0.5),
                outcome: Outcome::Successes,
                created_from: Some(Timestamp(10)),
                ..Filter::default()
            },
        })
    );
    // Anything else that fits neither layout is still malformed.
    let mut longer = postcard::to_allocvec(&legacy).unwrap();
    longer.extend_from_slice(&[0, 0, 0]);
    let frame = agentdb_proto::Frame {
        kind: kind::QUERY,
        version: PROTOCOL_VERSION,
        body: longer,
    };
    assert!(matches!(
        Request::decode(&frame),
        Err(DecodeError::Malformed { .. })
    ));
}
