//! Identifiers, episodes and their validation for Federated AgentDB.
//!
//! This crate is pure: it never opens a socket, spawns a task or reads the clock. Callers pass
//! timestamps and randomness in, which keeps every rule here deterministic and testable.

mod episode;
mod filter;
mod ids;
mod limits;
mod stats;
mod timestamp;

pub use episode::{
    validate_vector, Embedding, Episode, EpisodeError, NewEpisode, DEFAULT_SUCCESS_THRESHOLD,
};
pub use filter::{EpisodeFacts, Filter, Outcome};
pub use ids::{AgentId, EpisodeId, HubId, IdError, ModelId, SessionId, TenantId};
pub use limits::Limits;
pub use stats::{TaskCount, TenantStats};
pub use timestamp::Timestamp;
