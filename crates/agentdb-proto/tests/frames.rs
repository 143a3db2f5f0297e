//! Frames and message decoding under hostile input: arbitrary chunking, oversize and truncated
//! streams, unknown kinds and versions, and random bytes that must never panic.

#![allow(clippy::unwrap_used)]

use agentdb_core::EpisodeId;
use agentdb_proto::{
    decode_request, decode_response, encode_frame, kind, DecodeError, ErrorCode, ExchangeRequest,
    Frame, FrameDecoder, FrameError, Hello, ListRequest, ListResponse, PullRequest, Request,
    Response, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use proptest::prelude::*;

fn frames_in(stream: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Frame>, FrameError> {
    let mut d = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&stream.len()]) {
        let cut = cut.clamp(at, stream.len());
        d.push(&stream[at..cut]);
        at = cut;
        while let Some(f) = d.next_frame()? {
            frames.push(f);
        }
    }
    d.finish()?;
    Ok(frames)
}

#[test]
fn oversized_length_is_refused_from_the_prefix_alone() {
    let mut d = FrameDecoder::new(1024);
    d.push(&[0, 0, 4]);
    assert_eq!(d.next_frame(), Ok(None));
    d.push(&[1]);
    assert_eq!(
        d.next_frame(),
        Err(FrameError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    // The default limit refuses 8 MiB + 1 the same way.
    let mut d = FrameDecoder::new(MAX_FRAME_LEN);
    d.push(&u32::try_from(MAX_FRAME_LEN + 1).unwrap().to_be_bytes());
    assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    let e = decode_request(&u32::MAX.to_be_bytes(), MAX_FRAME_LEN).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge);
}

#[test]
fn frames_at_the_limit_are_accepted() {
    let body = vec![7u8; 100];
    let bytes = encode_frame(kind::HELLO, &body);
    let len = bytes.len() - 4;
    let mut d = FrameDecoder::new(len);
    d.push(&bytes);
    assert!(d.next_frame().unwrap().is_some());
    let mut d = FrameDecoder::new(len - 1);
    d.push(&bytes);
    assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
}

#[test]
fn truncation_is_reported_at_finish() {
    let bytes = Request::Hello(Hello::new("token")).encode();
    for cut in 1..bytes.len() {
        assert_eq!(
            frames_in(&bytes[..cut], &[], MAX_FRAME_LEN),
            Err(FrameError::Truncated),
            "cut at {cut}"
        );
        assert_eq!(
            decode_request(&bytes[..cut], MAX_FRAME_LEN),
            Err(DecodeError::Frame(FrameError::Truncated))
        );
    }
    assert_eq!(frames_in(&[], &[], MAX_FRAME_LEN), Ok(Vec::new()));
}

#[test]
fn unknown_kinds_and_versions_are_typed_errors() {
    let unknown = encode_frame(999, &());
    assert_eq!(
        decode_request(&unknown, MAX_FRAME_LEN),
        Err(DecodeError::UnknownMessage { kind: 999 })
    );
    assert_eq!(
        decode_response(&unknown, MAX_FRAME_LEN),
        Err(DecodeError::UnknownMessage { kind: 999 })
    );
    for version in [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
        let other = Frame {
            kind: kind::STATS,
            version,
            body: Vec::new(),
        };
        assert_eq!(
            decode_request(&other.to_bytes().unwrap(), MAX_FRAME_LEN),
            Err(DecodeError::UnsupportedVersion { version })
        );
    }
    assert_eq!(
        DecodeError::UnsupportedVersion { version: 2 }.code(),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn garbage_bodies_are_malformed() {
    for kind in [kind::HELLO, kind::STORE, kind::QUERY, kind::PULL] {
        let frame = Frame {
            kind,
            version: PROTOCOL_VERSION,
            body: vec![0xff; 3],
        };
        let e = decode_request(&frame.to_bytes().unwrap(), MAX_FRAME_LEN).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed { .. }), "{kind}: {e:?}");
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
    }
    // A valid body followed by junk is malformed too.
    let mut body = postcard::to_allocvec(&PullRequest {
        cursor: 1,
        limit: 2,
    })
    .unwrap();
    body.push(0);
    let frame = Frame {
        kind: kind::PULL,
        version: PROTOCOL_VERSION,
        body,
    };
    assert!(matches!(
        Request::decode(&frame),
        Err(DecodeError::Malformed { .. })
    ));
    // An invalid identifier inside a body is malformed, not a panic.
    let mut welcome = postcard::to_allocvec(&("bad tenant/name",)).unwrap();
    welcome.extend_from_slice(&[0; 40]);
    let frame = Frame {
        kind: kind::WELCOME,
        version: PROTOCOL_VERSION,
        body: welcome,
    };
    assert!(matches!(
        Response::decode(&frame),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn huge_declared_collection_lengths_do_not_allocate_or_panic() {
    // A store body claiming u32::MAX episodes in a handful of bytes.
    let mut body = Vec::new();
    let mut n = u64::from(u32::MAX);
    while n >= 0x80 {
        body.push((n as u8) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    let frame = Frame {
        kind: kind::STORE,
        version: PROTOCOL_VERSION,
        body,
    };
    assert!(matches!(
        Request::decode(&frame),
        Err(DecodeError::Malformed { .. })
    ));
}

/// Deterministic xorshift, so the random-body test is reproducible without a seed file.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_bodies_of_every_kind_never_panic() {
    let kinds = [
        1u16, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110,
        111, 112,
    ];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20_000 {
        let kind = kinds[round % kinds.len()];
        let len = (xorshift(&mut s) % 96) as usize;
        let body: Vec<u8> = (0..len).map(|_| xorshift(&mut s) as u8).collect();
        let frame = Frame {
            kind,
            version: PROTOCOL_VERSION,
            body,
        };
        let _ = Request::decode(&frame);
        let _ = Response::decode(&frame);
    }
}

/// Valid frames mutated at a few bytes: near-valid input reaches deep into the body decoders.
#[test]
fn mutated_valid_frames_never_panic() {
    let samples = [
        Request::Hello(Hello::new("t")).encode(),
        Request::Pull(PullRequest {
            cursor: 5,
            limit: 6,
        })
        .encode(),
        Response::error(ErrorCode::Forbidden, "no").encode(),
        Response::Refreshed { expires_at: 77 }.encode(),
        Request::Exchange(ExchangeRequest {
            api_key: Some("k".into()),
            agent: None,
            scopes: vec!["memory:read".into()],
            ttl_secs: Some(60),
        })
        .encode(),
        Response::Listed(ListResponse {
            episodes: Vec::new(),
            next: Some(EpisodeId::from_parts(9, [9; 10])),
        })
        .encode(),
    ];
    let mut s = 12345u64;
    for sample in &samples {
        for _ in 0..5_000 {
            let mut b = sample.clone();
            for _ in 0..(1 + xorshift(&mut s) % 3) {
                let i = (xorshift(&mut s) as usize) % b.len();
                b[i] = xorshift(&mut s) as u8;
            }
            let _ = decode_request(&b, MAX_FRAME_LEN);
            let _ = decode_response(&b, MAX_FRAME_LEN);
        }
    }
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        ".{0,64}".prop_map(|t| Request::Hello(Hello::new(t))),
        (any::<u64>(), any::<u32>())
            .prop_map(|(cursor, limit)| Request::Pull(PullRequest { cursor, limit })),
        Just(Request::Stats),
        Just(Request::Goodbye),
        (prop::option::of(any::<u128>()), any::<u32>()).prop_map(|(after, limit)| {
            Request::List(ListRequest {
                after: after.map(|a| EpisodeId::from_bytes(a.to_be_bytes())),
                limit,
            })
        }),
        (
            prop::option::of(".{0,32}"),
            prop::collection::vec(".{0,16}", 0..4),
            prop::option::of(any::<u64>())
        )
            .prop_map(
                |(api_key, scopes, ttl_secs)| Request::Exchange(ExchangeRequest {
                    api_key,
                    agent: None,
                    scopes,
                    ttl_secs,
                })
            ),
    ]
}

proptest! {
    #[test]
    fn chunking_does_not_change_the_frames(
        requests in prop::collection::vec(any_request(), 1..8),
        mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(Request::encode).collect();
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let frames = frames_in(&stream, &cuts, MAX_FRAME_LEN).unwrap();
        let decoded: Vec<Request> = frames.iter().map(|f| Request::decode(f).unwrap()).collect();
        prop_assert_eq!(decoded, requests);
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once(requests in prop::collection::vec(any_request(), 1..4)) {
        let stream: Vec<u8> = requests.iter().flat_map(Request::encode).collect();
        let cuts: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(
            frames_in(&stream, &cuts, MAX_FRAME_LEN).unwrap(),
            frames_in(&stream, &[], MAX_FRAME_LEN).unwrap()
        );
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        max in 0usize..1024,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let _ = frames_in(&bytes, &cuts, max);
        let _ = decode_request(&bytes, max);
        let _ = decode_response(&bytes, max);
    }

    #[test]
    fn random_bodies_never_panic(kind in any::<u16>(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        let frame = Frame { kind, version: PROTOCOL_VERSION, body };
        let bytes = frame.to_bytes().unwrap();
        let _ = decode_request(&bytes, MAX_FRAME_LEN);
        let _ = decode_response(&bytes, MAX_FRAME_LEN);
    }
}
