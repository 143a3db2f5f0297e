//! The hub-to-hub replication protocol (ALPN `agentdb-fed/1`), sans-IO.
//!
//! # Message flow
//!
//! ```text
//!  hub A (dials)                                              hub B
//!    │ ══ QUIC, ALPN "agentdb-fed/1", TLS 1.3, both sides present hub certificates ══►│
//!    │ ── one bi-stream, frames both ways ────────────────────────────────────────────│
//!    │ ── Hello { hub, region } ──────────►│◄── Hello { hub, region } ───────────────│
//!    │ ── Vectors { tenant → vv } ────────►│◄── Vectors { tenant → vv } ─────────────│
//!    │ ── Ops { tenant, ops[≤ page] } ────►│   B applies durably, in order per origin
//!    │ ◄── Ack { tenant, vv } ─────────────│   (or Refused { reason, vv })
//!    │      … at most `window` pages unacknowledged; new local ops are pushed as they come;
//!    │      Vectors again every sync interval (anti-entropy) …
//! ```
//!
//! Each side pushes what the other lacks; the protocol is symmetric after the QUIC handshake.
//! Ops carry their origin `(hub, seq)`, so a hub relays ops it received to its other links and
//! receivers drop the ones they already hold. When a tombstone may be collected (every peer
//! hub ever linked has acknowledged it) is decided by [`collectable_through`].

mod collect;
mod link;
mod message;

pub use collect::collectable_through;
pub use link::{LinkConfig, LinkError, LinkSession, LinkStats, ReplicaStore, StoreFailure};
pub use message::{
    fed_kind, Ack, Control, FedHello, FedMessage, OpsPage, RefusalReason, Refused, Vectors,
};

/// The ALPN protocol id of hub-to-hub links.
pub const FED_ALPN: &[u8] = b"agentdb-fed/1";
