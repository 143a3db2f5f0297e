//! The frame decoder against a reference model, on arbitrary bytes in arbitrary chunkings.
//!
//! Input: one byte choosing the decoder's limit, one byte giving the number of chunk sizes,
//! that many chunk-size bytes, then the stream. A second part round-trips a frame built from
//! the stream's first bytes through `Frame::to_bytes` and the decoder.
#![no_main]

use agentdb_fuzz::model_frames;
use agentdb_proto::{Frame, FrameDecoder, FrameError, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fn limit(selector: u8) -> usize {
    match selector % 8 {
        0 => MAX_FRAME_LEN,
        1 => usize::MAX,
        2 => 0,
        3 => 4,
        _ => usize::from(selector) * 3,
    }
}

/// Feeds `stream` in chunks of the given sizes (cycled; 0 means 1), taking frames out after
/// every push as the decoder requires. Returns the frames and how the stream ended.
fn decode_chunked(
    stream: &[u8],
    max_len: usize,
    sizes: &[u8],
) -> (Vec<Frame>, Result<(), FrameError>) {
    let mut decoder = FrameDecoder::new(max_len);
    assert!(decoder.max_len() <= MAX_FRAME_LEN);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |&s| usize::from(s).max(1));
        i += 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.body.len() + 4 <= decoder.max_len());
                    frames.push(frame);
                }
                Ok(None) => {
                    // Never more than one frame's worth of bytes waits in the buffer.
                    assert!(
                        decoder.buffered() < 4 + decoder.max_len().max(4),
                        "buffered {} with limit {}",
                        decoder.buffered(),
                        decoder.max_len()
                    );
                    break;
                }
                Err(e) => {
                    assert_eq!(decoder.buffered(), 0, "a failed decoder keeps no bytes");
                    // Sticky: the same error again, and later bytes are ignored.
                    decoder.push(rest);
                    assert_eq!(decoder.buffered(), 0);
                    assert_eq!(decoder.next_frame(), Err(e.clone()));
                    assert_eq!(decoder.finish(), Err(e.clone()));
                    return (frames, Err(e));
                }
            }
        }
    }
    let end = decoder.finish();
    if decoder.buffered() == 0 {
        assert_eq!(end, Ok(()));
    } else {
        assert_eq!(end, Err(FrameError::Truncated));
    }
    (frames, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let Some((&count, data)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(data.len());
    let (sizes, stream) = data.split_at(count);
    let max_len = limit(selector);

    let model = model_frames(stream, max_len);
    let (frames, end) = decode_chunked(stream, max_len, sizes);
    assert_eq!(frames, model.frames, "frames differ from the model");
    match (&end, &model.end) {
        (Err(got), Err(want)) => assert_eq!(got, want),
        (Ok(()), Ok(0)) => {}
        (Err(FrameError::Truncated), Ok(n)) if *n > 0 => {}
        other => panic!("stream end differs from the model: {other:?}"),
    }
    // Every frame re-encodes to the very bytes it came from.
    let mut offset = 0;
    for frame in &frames {
        let bytes = frame.to_bytes().expect("a decoded frame fits the prefix");
        assert_eq!(&stream[offset..offset + bytes.len()], bytes.as_slice());
        offset += bytes.len();
    }

    // Encode then decode: a frame made of the stream's bytes comes back whole.
    if stream.len() >= 4 {
        let frame = Frame {
            kind: u16::from_be_bytes([stream[0], stream[1]]),
            version: u16::from_be_bytes([stream[2], stream[3]]),
            body: stream[4..].to_vec(),
        };
        let bytes = frame.to_bytes().expect("small frames fit the prefix");
        let (back, end) = decode_chunked(&bytes, MAX_FRAME_LEN, sizes);
        assert_eq!(end, Ok(()));
        assert_eq!(back, vec![frame]);
    }
});
