//! Agent requests and responses: arbitrary frames (kind, version, body) and arbitrary whole
//! streams. Decoding never panics; whatever decodes re-encodes to a stream that decodes to the
//! same value, and the conversions a hub applies to a decoded request never panic either.
//!
//! Input: one selector byte, then either a frame's kind (2 bytes) and body, or a whole stream.
#![no_main]

use agentdb_core::{Episode, Limits};
use agentdb_fuzz::{assert_reencodes, frame_from};
use agentdb_proto::{
    decode_request, decode_response, Change, DecodeError, Request, Response, WireError,
    MAX_FRAME_LEN,
};
use libfuzzer_sys::fuzz_target;

fn check_error(e: &DecodeError) {
    let wire = WireError::from(e.clone());
    assert_eq!(wire.code, e.code());
    let _ = wire.to_string();
}

fn check_request(request: &Request) {
    assert_reencodes(request, Request::encode, |b| {
        decode_request(b, MAX_FRAME_LEN)
    });
    let limits = Limits::default();
    match request {
        Request::Store(store) => {
            let _ = store.validate();
            if let Ok(episodes) = store.clone().into_episodes() {
                for episode in episodes {
                    let _ = episode.validate(&limits);
                    let _ = agentdb_proto::WireNewEpisode::from(&episode);
                }
            }
        }
        Request::Query(query) => {
            if let agentdb_proto::QueryInput::Vector(embedding) = &query.input {
                let _ = agentdb_core::validate_vector(&embedding.vector, &limits);
            }
        }
        _ => {}
    }
}

fn check_response(response: &Response) {
    assert_reencodes(response, Response::encode, |b| {
        decode_response(b, MAX_FRAME_LEN)
    });
    // Bounded encoding always yields something the receiver can decode within the bound.
    for max in [64usize, 4096] {
        let bytes = response.encode_bounded(max);
        if bytes.len() - 4 <= max {
            decode_response(&bytes, max).expect("a bounded response decodes");
        }
    }
    let episodes: Vec<_> = match response {
        Response::Matches(m) => m.matches.iter().map(|m| m.episode.clone()).collect(),
        Response::Page(p) => p
            .changes
            .iter()
            .filter_map(|c| match &c.change {
                Change::Put(e) => Some(e.clone()),
                Change::Deleted { .. } => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for wire in episodes {
        if let Ok(episode) = Episode::try_from(wire) {
            let _ = agentdb_proto::WireEpisode::from(&episode);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        let Some(frame) = frame_from(selector, rest) else {
            return;
        };
        let kind = frame.kind;
        match Request::decode(&frame) {
            Ok(request) => {
                assert_eq!(request.kind(), kind);
                check_request(&request);
            }
            Err(e) => check_error(&e),
        }
        match Response::decode(&frame) {
            Ok(response) => {
                assert_eq!(response.kind(), kind);
                check_response(&response);
            }
            Err(e) => check_error(&e),
        }
    } else {
        // A whole stream, with a limit chosen by the selector.
        let max = match selector >> 1 {
            0 => 0,
            n if n < 64 => usize::from(n) * 16,
            _ => MAX_FRAME_LEN,
        };
        match decode_request(rest, max) {
            Ok(request) => check_request(&request),
            Err(e) => check_error(&e),
        }
        match decode_response(rest, max) {
            Ok(response) => check_response(&response),
            Err(e) => check_error(&e),
        }
    }
});
