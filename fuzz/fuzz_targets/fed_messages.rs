//! Hub-to-hub messages: arbitrary frames and streams. Decoding never panics; whatever decodes
//! re-encodes to a frame that decodes to the same value.
//!
//! Input: one selector byte, then either a frame's kind (2 bytes) and body, or a stream of
//! frames as a link reads them.
#![no_main]

use agentdb_fuzz::{assert_reencodes, frame_from};
use agentdb_proto::fed::FedMessage;
use agentdb_proto::{DecodeError, FrameDecoder, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fn decode_one(bytes: &[u8]) -> Result<FedMessage, DecodeError> {
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    decoder.push(bytes);
    let frame = decoder
        .next_frame()?
        .ok_or(DecodeError::Frame(agentdb_proto::FrameError::Truncated))?;
    assert_eq!(
        decoder.buffered(),
        0,
        "an encoded message is exactly one frame"
    );
    FedMessage::decode(&frame)
}

fn check(message: &FedMessage, kind: u16) {
    assert_eq!(message.kind(), kind);
    assert_reencodes(message, FedMessage::encode, decode_one);
    match message {
        FedMessage::Ops(page) => {
            for op in &page.ops {
                let _ = op.approx_size();
            }
        }
        FedMessage::Vectors(v) => {
            for (_, vv) in &v.tenants {
                let _ = vv.total();
            }
        }
        _ => {}
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
        match FedMessage::decode(&frame) {
            Ok(message) => check(&message, kind),
            Err(e) => {
                let _ = (e.code(), e.to_string());
            }
        }
    } else {
        // A link's read side: frames in a row, each decoded as it completes.
        let mut decoder = FrameDecoder::new(usize::from(selector) * 64);
        for chunk in rest.chunks(usize::from(selector >> 3).max(1)) {
            decoder.push(chunk);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        if let Ok(message) = FedMessage::decode(&frame) {
                            check(&message, frame.kind);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
});
