//! The engine's settings and the values its operations take and return.

use agentdb_core::{
    Embedding, Episode, EpisodeId, HubId, Limits, DEFAULT_MAX_SKEW_MS, DEFAULT_SUCCESS_THRESHOLD,
};
use serde::{Deserialize, Serialize};

use crate::index::{Filter, IndexConfig};

/// Most episodes in one [`MemoryEngine::store_batch`].
pub const MAX_BATCH: usize = 1000;
/// Largest `k` a query may ask for.
pub const MAX_K: usize = 1000;
/// Episodes re-embedded per storage transaction by [`MemoryEngine::reindex`].
pub const REINDEX_BATCH: usize = 256;

/// Settings of a [`MemoryEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Size limits on episodes.
    pub limits: Limits,
    /// Reward at or above which an episode is a success. Default 0.7.
    pub success_threshold: f64,
    /// Vector index tuning.
    pub index: IndexConfig,
    /// Most write requests sharing one commit. Default 1024.
    pub max_commit_group: usize,
    /// The hub stamped as origin on new episodes, when the engine runs inside a hub. It also
    /// names this store's ops in the replication op log (`local` when unset).
    pub origin: Option<HubId>,
    /// How far ahead of this store's clock a replicated op's stamp may be (ms); ops stamped
    /// further ahead are refused. Default 60 s.
    pub max_clock_skew_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::DEFAULT,
            success_threshold: DEFAULT_SUCCESS_THRESHOLD,
            index: IndexConfig::default(),
            max_commit_group: 1024,
            origin: None,
            max_clock_skew_ms: DEFAULT_MAX_SKEW_MS,
        }
    }
}

/// What a query asks with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryInput {
    /// Text, embedded by the engine's embedder.
    Text(String),
    /// A vector the caller computed.
    Vector(Embedding),
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Text or vector.
    pub input: QueryInput,
    /// How many results at most.
    pub k: usize,
    /// Conditions every result meets.
    pub filter: Filter,
}

impl Query {
    /// A text query for the `k` nearest episodes.
    pub fn text(text: impl Into<String>, k: usize) -> Self {
        Self {
            input: QueryInput::Text(text.into()),
            k,
            filter: Filter::default(),
        }
    }

    /// A vector query for the `k` nearest episodes.
    pub fn vector(embedding: Embedding, k: usize) -> Self {
        Self {
            input: QueryInput::Vector(embedding),
            k,
            filter: Filter::default(),
        }
    }

    /// Sets the filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
}

/// One query result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The episode.
    pub episode: Episode,
    /// Cosine similarity to the query; higher is closer.
    pub score: f32,
}

/// The outcome of storing one episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The episode id (minted by the engine when the writer gave none).
    pub id: EpisodeId,
    /// False when an episode with this id already existed (the write was a retry).
    pub inserted: bool,
}

/// One entry of a tenant's change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// The episode exists (as it is now).
    Put(Box<Episode>),
    /// The episode was deleted.
    Deleted(EpisodeId),
}

/// A page of a tenant's change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePage {
    /// Changes with their sequence numbers, oldest first.
    pub changes: Vec<(u64, Change)>,
    /// The cursor to ask with next time (the last sequence number seen, or the cursor given).
    pub next_cursor: u64,
    /// Whether more changes were waiting beyond this page.
    pub more: bool,
}

/// Most bytes of episode text one change page carries, and about the most bytes of episode
/// content one listing page carries (it must fit in one wire frame).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A page of a tenant's live episodes, from [`MemoryEngine::list`](super::MemoryEngine::list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeList {
    /// The episodes, in id order.
    pub episodes: Vec<Episode>,
    /// Where the next page starts: the id of this page's last episode, to pass back as `after`,
    /// or `None` when no live episode follows this page.
    pub next: Option<EpisodeId>,
}

/// What erasing a tenant removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseReport {
    /// Whether the tenant had anything stored.
    pub existed: bool,
    /// Episode rows (live and tombstones) removed.
    pub episodes: u64,
}
