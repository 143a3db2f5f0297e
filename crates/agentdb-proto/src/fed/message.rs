//! Hub-to-hub messages.
//!
//! | kind | message                 | body             |
//! |------|-------------------------|------------------|
//! | 201  | `FedMessage::Hello`     | [`FedHello`]     |
//! | 202  | `FedMessage::Vectors`   | [`Vectors`]      |
//! | 203  | `FedMessage::Ops`       | [`OpsPage`]      |
//! | 204  | `FedMessage::Ack`       | [`Ack`]          |
//! | 205  | `FedMessage::Refused`   | [`Refused`]      |
//! | 206  | `FedMessage::Control`   | [`Control`]      |
//!
//! Frames are the agent protocol's frames (`frame.rs`); a link carries a sequence of them on
//! one bi-stream each way.

use agentdb_core::{ControlRecord, HubId, Op, Region, TenantId, VersionVector};
use serde::{Deserialize, Serialize};

use crate::frame::{encode_frame, Frame};
use crate::message::{check_version, decode_body, DecodeError};

/// Kinds of hub-to-hub messages.
pub mod fed_kind {
    /// `FedMessage::Hello`.
    pub const HELLO: u16 = 201;
    /// `FedMessage::Vectors`.
    pub const VECTORS: u16 = 202;
    /// `FedMessage::Ops`.
    pub const OPS: u16 = 203;
    /// `FedMessage::Ack`.
    pub const ACK: u16 = 204;
    /// `FedMessage::Refused`.
    pub const REFUSED: u16 = 205;
    /// `FedMessage::Control`.
    pub const CONTROL: u16 = 206;
}

/// The first message each side sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FedHello {
    /// The sender's protocol version.
    pub protocol_version: u16,
    /// The sender's hub id (must match its certificate).
    pub hub: HubId,
    /// The sender's region.
    pub region: Region,
}

/// The sender's version vector of each tenant it may share with the receiver. One round of
/// anti-entropy may take several messages (each well under the frame limit, however many
/// tenants there are); all but the last say `more`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vectors {
    /// Per tenant.
    pub tenants: Vec<(TenantId, VersionVector)>,
    /// Whether more `Vectors` of this round follow.
    pub more: bool,
}

/// A page of one tenant's ops, each origin's in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsPage {
    /// The tenant.
    pub tenant: TenantId,
    /// The ops.
    pub ops: Vec<Op>,
}

/// The receiver applied (durably) a page; its version vector of the tenant afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The tenant.
    pub tenant: TenantId,
    /// What the receiver now holds.
    pub vv: VersionVector,
}

/// Why a page (or part of it) was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The tenant's residency does not allow the receiver's region.
    Residency,
    /// An op was stamped further in the future than the receiver's clock-skew bound.
    ClockSkew,
    /// The receiver could not store the ops (its storage failed).
    Storage,
}

/// A page the receiver refused (after applying the ops before the refused one, which its
/// [`Ack`] reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The tenant.
    pub tenant: TenantId,
    /// Why.
    pub reason: RefusalReason,
    /// A one-line explanation.
    pub message: String,
    /// What the receiver holds of the tenant (including ops of the page applied before the
    /// refused one).
    pub vv: VersionVector,
}

/// Control records (erasure orders, receipts) the receiver may not hold yet. Each side sends
/// the records the other may hold after its Hello, before its first `Vectors` (so a hub that
/// was away applies an erasure before the ops that follow it), and new ones as they appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// The records.
    pub records: Vec<ControlRecord>,
}

/// A hub-to-hub message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FedMessage {
    /// Identification, first on each side.
    Hello(FedHello),
    /// Version vectors (on connect and every sync interval: anti-entropy).
    Vectors(Vectors),
    /// Ops the receiver lacks.
    Ops(OpsPage),
    /// A page was applied.
    Ack(Ack),
    /// A page was refused.
    Refused(Refused),
    /// Control records.
    Control(Control),
}

impl FedMessage {
    /// The frame kind.
    pub const fn kind(&self) -> u16 {
        match self {
            FedMessage::Hello(_) => fed_kind::HELLO,
            FedMessage::Vectors(_) => fed_kind::VECTORS,
            FedMessage::Ops(_) => fed_kind::OPS,
            FedMessage::Ack(_) => fed_kind::ACK,
            FedMessage::Refused(_) => fed_kind::REFUSED,
            FedMessage::Control(_) => fed_kind::CONTROL,
        }
    }

    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let kind = self.kind();
        match self {
            FedMessage::Hello(m) => encode_frame(kind, m),
            FedMessage::Vectors(m) => encode_frame(kind, m),
            FedMessage::Ops(m) => encode_frame(kind, m),
            FedMessage::Ack(m) => encode_frame(kind, m),
            FedMessage::Refused(m) => encode_frame(kind, m),
            FedMessage::Control(m) => encode_frame(kind, m),
        }
    }

    /// The message a frame carries.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        check_version(frame)?;
        let body = frame.body.as_slice();
        Ok(match frame.kind {
            fed_kind::HELLO => FedMessage::Hello(decode_body(body)?),
            fed_kind::VECTORS => FedMessage::Vectors(decode_body(body)?),
            fed_kind::OPS => FedMessage::Ops(decode_body(body)?),
            fed_kind::ACK => FedMessage::Ack(decode_body(body)?),
            fed_kind::REFUSED => FedMessage::Refused(decode_body(body)?),
            fed_kind::CONTROL => FedMessage::Control(decode_body(body)?),
            kind => return Err(DecodeError::UnknownMessage { kind }),
        })
    }
}
