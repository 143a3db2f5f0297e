//! Identifiers, episodes, their validation, and the merge rules of federation (hybrid logical
//! clocks, version vectors, last-writer-wins registers and tombstones) for Federated AgentDB.
//!
//! This crate is pure: it never opens a socket, spawns a task or reads the clock. Callers pass
//! timestamps and randomness in, which keeps every rule here deterministic and testable.

mod control;
mod episode;
mod erasure;
mod filter;
mod hlc;
mod ids;
mod limits;
mod op;
mod replica;
mod residency;
mod revocation;
mod stats;
mod timestamp;
mod version_vector;

pub use control::ControlRecord;
pub use episode::{
    metadata_from_text, metadata_to_text, validate_vector, Embedding, Episode, EpisodeError,
    NewEpisode, DEFAULT_SUCCESS_THRESHOLD,
};
pub use erasure::{DestroyedKey, Erasure, ErasureReceipt, ErasureScope, ReceiptBody};
pub use filter::{EpisodeFacts, Filter, FilterError, MetadataMatch, Outcome};
pub use hlc::{ClockSkew, Hlc, HlcClock, Stamp, DEFAULT_MAX_SKEW_MS};
pub use ids::{
    AgentId, EpisodeId, ErasureId, HubId, IdError, ModelId, Region, SessionId, TenantId,
};
pub use limits::Limits;
pub use op::{AppliedOps, Op};
pub use replica::{EpisodeContent, EpisodeUpdate, LiveEpisode, Lww, ReplicaState, TieBreak};
pub use residency::Residency;
pub use revocation::{Revocation, Revoked};
pub use stats::{TaskCount, TenantStats};
pub use timestamp::Timestamp;
pub use version_vector::{Causality, VersionVector};
