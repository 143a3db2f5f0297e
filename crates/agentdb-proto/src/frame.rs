//! Frames: the length-prefixed envelope around every message, in both directions.
//!
//! # Format
//!
//! ```text
//! offset  size  field
//! 0       4     len      u32, big-endian: the number of bytes that follow (kind + version + body)
//! 4       2     kind     u16, big-endian: the message kind (see the table in `message.rs`)
//! 6       2     version  u16, big-endian: the protocol version the body is written in
//! 8       len-4 body     postcard encoding of the message's body
//! ```
//!
//! `len` is at least 4 (an empty body) and at most the decoder's limit, which is itself at most
//! [`MAX_FRAME_LEN`]. The limit is checked as soon as the four length bytes are in, before any of
//! the body is buffered, so a peer cannot make the decoder hold more than one limit's worth of a
//! frame it will refuse.
//!
//! On a QUIC stream of this protocol each direction carries exactly one frame and then ends; the
//! decoder still handles any number of frames in a row, split at arbitrary points.

use serde::Serialize;

use crate::PROTOCOL_VERSION;

/// The largest frame any decoder accepts: 8 MiB of `kind + version + body`. Decoders may be
/// configured lower, never higher.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Bytes of the length prefix.
const LEN_BYTES: usize = 4;
/// Bytes of kind + version: the smallest valid `len`.
const HEADER_BYTES: usize = 4;

/// One decoded frame: the message kind, the protocol version and the still-encoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message kind.
    pub kind: u16,
    /// The protocol version the body is written in.
    pub version: u16,
    /// The postcard-encoded body.
    pub body: Vec<u8>,
}

impl Frame {
    /// Encodes the frame as it travels, length prefix included.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let len = HEADER_BYTES.saturating_add(self.body.len());
        let prefix = u32::try_from(len).map_err(|_| EncodeError::TooLarge { len })?;
        let mut out = Vec::with_capacity(LEN_BYTES + len);
        out.extend_from_slice(&prefix.to_be_bytes());
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The body's `Serialize` implementation failed (postcard needs sequence lengths up front).
    #[error("the message body could not be serialised: {reason}")]
    Serialize {
        /// What postcard reported.
        reason: String,
    },
    /// The frame does not fit the 32-bit length prefix.
    #[error("a frame of {len} bytes does not fit the 32-bit length prefix")]
    TooLarge {
        /// `kind + version + body`, in bytes.
        len: usize,
    },
}

/// Encodes `body` as a frame of message `kind` in the current [`PROTOCOL_VERSION`].
///
/// Size is not checked against [`MAX_FRAME_LEN`]: a frame over a receiver's limit is refused by
/// that receiver with `too_large`. Use [`crate::Response::encode_bounded`] to stay within a limit.
/// A body beyond the 32-bit length prefix gets the prefix `u32::MAX`, which every decoder refuses.
///
/// # Panics
///
/// If `body`'s `Serialize` implementation fails, which the message types of this crate never
/// do. Use [`try_encode_frame`] for other types.
pub fn encode_frame(kind: u16, body: &impl Serialize) -> Vec<u8> {
    match try_encode_frame(kind, body) {
        Ok(frame) => frame,
        Err(EncodeError::TooLarge { .. }) => oversized_frame(kind, body),
        Err(e @ EncodeError::Serialize { .. }) => {
            panic!("message bodies of this crate always serialise: {e}")
        }
    }
}

/// Encodes `body` as a frame of message `kind` in the current [`PROTOCOL_VERSION`], reporting
/// serialisation failures and frames that do not fit the length prefix.
pub fn try_encode_frame(kind: u16, body: &impl Serialize) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; LEN_BYTES]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let mut out = postcard::to_extend(body, out).map_err(|e| EncodeError::Serialize {
        reason: e.to_string(),
    })?;
    let len = out.len() - LEN_BYTES;
    let prefix = u32::try_from(len).map_err(|_| EncodeError::TooLarge { len })?;
    out[..LEN_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(out)
}

/// A frame whose body exceeds 4 GiB: the prefix saturates at `u32::MAX`, which is above every
/// decoder's limit, so the receiver refuses it with `too_large` instead of misreading it.
fn oversized_frame(kind: u16, body: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    postcard::to_extend(body, out).unwrap_or_default()
}

/// Why a byte stream is not a sequence of valid frames. After an error the decoder stays failed:
/// a length-prefixed stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The declared length is over the limit; reported from the length prefix alone.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The declared length (kind + version + body).
        len: usize,
        /// The decoder's limit.
        max: usize,
    },
    /// The declared length is shorter than the kind and version fields.
    #[error("frame length {len} is shorter than the 4-byte kind and version header")]
    TooShort {
        /// The declared length.
        len: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("the stream ended in the middle of a frame")]
    Truncated,
}

/// Splits a byte stream into frames. Sans-IO: push bytes as they arrive, in chunks of any size,
/// and take frames out with [`FrameDecoder::next_frame`]; call [`FrameDecoder::finish`] when the
/// stream ends.
///
/// Call `next_frame` after every `push`: that is where the limit is enforced, so pushing without
/// taking frames out buffers without bound.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_len: usize,
    buf: Vec<u8>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that refuses frames whose `len` exceeds `max_len` (capped at [`MAX_FRAME_LEN`]).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len: max_len.min(MAX_FRAME_LEN),
            buf: Vec::new(),
            failed: None,
        }
    }

    /// The limit in force.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes. Ignored once the decoder has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the error that ended the
    /// stream (returned again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(len) = self.declared_len() else {
            return Ok(None);
        };
        if len > self.max_len {
            return Err(self.fail(FrameError::TooLarge {
                len,
                max: self.max_len,
            }));
        }
        if len < HEADER_BYTES {
            return Err(self.fail(FrameError::TooShort { len }));
        }
        let end = LEN_BYTES + len;
        let Some(frame) = self.buf.get(LEN_BYTES..end) else {
            return Ok(None);
        };
        let (header, body) = frame.split_at(HEADER_BYTES);
        let frame = Frame {
            kind: u16::from_be_bytes([header[0], header[1]]),
            version: u16::from_be_bytes([header[2], header[3]]),
            body: body.to_vec(),
        };
        self.buf.drain(..end);
        Ok(Some(frame))
    }

    /// Checks that the stream ended on a frame boundary. Take every complete frame out with
    /// [`FrameDecoder::next_frame`] first: any byte still buffered counts as a partial frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }

    /// The length prefix, once its four bytes are in.
    fn declared_len(&self) -> Option<usize> {
        let prefix: [u8; LEN_BYTES] = self.buf.get(..LEN_BYTES)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(prefix)).ok()
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.buf = Vec::new();
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let bytes = encode_frame(7, &(1u8, 2u8));
        assert_eq!(bytes, [0, 0, 0, 6, 0, 7, 0, 3, 1, 2]);
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&bytes);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                kind: 7,
                version: PROTOCOL_VERSION,
                body: vec![1, 2]
            }
        );
        assert_eq!(f.to_bytes().unwrap(), bytes);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn limit_is_capped_and_checked_from_the_prefix() {
        assert_eq!(FrameDecoder::new(usize::MAX).max_len(), MAX_FRAME_LEN);
        let mut d = FrameDecoder::new(10);
        d.push(&[0, 0, 0, 11]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        // Sticky, and nothing more is buffered.
        d.push(&[0; 100]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.finish(), Err(FrameError::TooLarge { len: 11, max: 10 }));
    }

    #[test]
    fn short_length_is_an_error() {
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&[0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::TooShort { len: 3 }));
    }

    #[test]
    fn partial_frames_wait_and_truncation_is_reported() {
        let bytes = encode_frame(1, &"hello");
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&bytes[..2]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated));
        d.push(&bytes[2..bytes.len() - 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated));
        d.push(&bytes[bytes.len() - 1..]);
        assert!(d.next_frame().unwrap().is_some());
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn unserialisable_bodies_are_reported() {
        struct NoLen;
        impl Serialize for NoLen {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        assert!(matches!(
            try_encode_frame(1, &NoLen),
            Err(EncodeError::Serialize { .. })
        ));
    }
}
