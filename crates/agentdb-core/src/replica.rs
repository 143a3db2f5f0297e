//! The replicated state of one episode and its merge rule.
//!
//! An episode's content (task, input, output, embedding, …) is immutable once written. Its
//! mutable fields — reward, critique, tags, metadata — are last-writer-wins registers ordered
//! by [`Stamp`] (HLC, then hub id). A delete is a tombstone that wins over every
//! update, concurrent or not, and keeps the largest delete stamp.
//!
//! [`ReplicaState::join`] is the least upper bound of a join-semilattice: commutative,
//! associative and idempotent, so hubs that have seen the same set of states — in any order,
//! any number of times — hold the same state. The property tests in `tests/merge.rs` check it.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{AgentId, Embedding, HubId, SessionId, Stamp, Timestamp};

/// A last-writer-wins register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lww<T> {
    /// When and where the value was written.
    pub stamp: Stamp,
    /// The value.
    pub value: T,
}

/// A total order on register values, used only to break (impossible in practice) ties
/// between equal stamps deterministically.
pub trait TieBreak {
    /// Compares two values totally.
    fn tie_break(&self, other: &Self) -> Ordering;
}

impl TieBreak for f64 {
    fn tie_break(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

impl TieBreak for Option<String> {
    fn tie_break(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

impl TieBreak for String {
    fn tie_break(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

impl TieBreak for Vec<String> {
    fn tie_break(&self, other: &Self) -> Ordering {
        self.cmp(other)
    }
}

impl<T: Clone + TieBreak> Lww<T> {
    /// A register holding `value` written at `stamp`.
    pub fn new(stamp: Stamp, value: T) -> Self {
        Self { stamp, value }
    }

    /// Keeps the later write.
    pub fn join(&mut self, other: &Self) {
        let later = match other.stamp.cmp(&self.stamp) {
            Ordering::Equal => other.value.tie_break(&self.value) == Ordering::Greater,
            o => o == Ordering::Greater,
        };
        if later {
            *self = other.clone();
        }
    }
}

/// The immutable part of an episode, as it replicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeContent {
    /// The agent that ran the task.
    pub agent: Option<AgentId>,
    /// The agent's session.
    pub session: Option<SessionId>,
    /// What was asked.
    pub task: String,
    /// The input.
    pub input: String,
    /// The output.
    pub output: String,
    /// JSON metadata as text (empty when none) that the episode is created with.
    /// [`LiveEpisode::new`] moves it into the `metadata` register, so the content of a live
    /// episode carries it empty (and stays immutable while the metadata changes).
    pub metadata_json: String,
    /// Tokens used.
    pub tokens_used: u64,
    /// Task latency.
    pub latency_ms: u64,
    /// When the first hub accepted it (wall time, for filters).
    pub created: Timestamp,
    /// The hub that first accepted it.
    pub origin: Option<HubId>,
    /// The embedding, so that receivers need not embed again (absent when the sender's model
    /// is not wanted).
    pub embedding: Option<Embedding>,
    /// When the episode expires, if it does: every hub deletes it then (protocol version 3).
    pub expires_at: Option<Timestamp>,
}

/// A live episode: content plus its registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEpisode {
    /// When the content was written (the put's stamp).
    pub created: Stamp,
    /// The content.
    pub content: EpisodeContent,
    /// The reward register.
    pub reward: Lww<f64>,
    /// The critique register.
    pub critique: Lww<Option<String>>,
    /// The tags register.
    pub tags: Lww<Vec<String>>,
    /// The metadata register: a JSON object as compact text (empty when none).
    pub metadata: Lww<String>,
}

impl LiveEpisode {
    /// A new episode written at `stamp`: every register starts at that stamp, the metadata
    /// register with the content's metadata (which it takes out of the content).
    pub fn new(
        stamp: Stamp,
        mut content: EpisodeContent,
        reward: f64,
        critique: Option<String>,
        tags: Vec<String>,
    ) -> Self {
        Self {
            reward: Lww::new(stamp.clone(), reward),
            critique: Lww::new(stamp.clone(), critique),
            tags: Lww::new(stamp.clone(), tags),
            metadata: Lww::new(stamp.clone(), std::mem::take(&mut content.metadata_json)),
            created: stamp,
            content,
        }
    }

    /// Applies an update written at `stamp` (each given field becomes that register's value
    /// if `stamp` is later than its current one).
    pub fn update(&mut self, update: &EpisodeUpdate, stamp: &Stamp) {
        if let Some(r) = update.reward {
            self.reward.join(&Lww::new(stamp.clone(), r));
        }
        if let Some(c) = &update.critique {
            self.critique.join(&Lww::new(stamp.clone(), c.clone()));
        }
        if let Some(t) = &update.tags {
            self.tags.join(&Lww::new(stamp.clone(), t.clone()));
        }
        if let Some(m) = &update.metadata_json {
            self.metadata.join(&Lww::new(stamp.clone(), m.clone()));
        }
    }

    fn join(&mut self, other: &Self) {
        // Content is immutable: both sides hold the same one. Should two writes ever have used
        // one id, the earliest write's content wins everywhere.
        if other.created < self.created {
            self.created = other.created.clone();
            self.content = other.content.clone();
        }
        self.reward.join(&other.reward);
        self.critique.join(&other.critique);
        self.tags.join(&other.tags);
        self.metadata.join(&other.metadata);
    }
}

/// A change to an episode's mutable fields; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpisodeUpdate {
    /// A new reward (finite).
    pub reward: Option<f64>,
    /// A new critique (`Some(None)` clears it).
    pub critique: Option<Option<String>>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New metadata: a JSON object as text (JSON text, not a JSON value, because postcard
    /// cannot carry an untyped value). Stores check that it is an object within their
    /// metadata limit and keep it as compact JSON; [`Self::with_metadata`] writes it.
    pub metadata_json: Option<String>,
}

impl EpisodeUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.reward.is_none()
            && self.critique.is_none()
            && self.tags.is_none()
            && self.metadata_json.is_none()
    }

    /// Sets new metadata (as its compact JSON text; `null` becomes the empty text, which
    /// stores refuse: metadata replaced by an update must be an object).
    pub fn with_metadata(mut self, metadata: &serde_json::Value) -> Self {
        self.metadata_json = Some(crate::metadata_to_text(metadata));
        self
    }
}

/// What a hub holds of one episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// The episode exists.
    Live(Box<LiveEpisode>),
    /// The episode was deleted (the largest delete stamp seen).
    Deleted(Stamp),
}

impl ReplicaState {
    /// The least upper bound of two states of the same episode. A tombstone absorbs any live
    /// state; two tombstones keep the later stamp; two live states join field by field.
    pub fn join(self, other: &Self) -> Self {
        match (self, other) {
            (Self::Deleted(a), Self::Deleted(b)) => Self::Deleted(a.max(b.clone())),
            (Self::Deleted(a), Self::Live(_)) => Self::Deleted(a),
            (Self::Live(_), Self::Deleted(b)) => Self::Deleted(b.clone()),
            (Self::Live(mut a), Self::Live(b)) => {
                a.join(b);
                Self::Live(a)
            }
        }
    }

    /// Whether the episode is deleted.
    pub fn is_deleted(&self) -> bool {
        matches!(self, Self::Deleted(_))
    }

    /// The largest stamp in the state. Not a safe basis alone for resuming a hub's clock: a
    /// tombstone absorbs the later stamps of the updates it wins over, so hubs also keep their
    /// clock's high-water mark.
    pub fn max_stamp(&self) -> &Stamp {
        match self {
            Self::Deleted(s) => s,
            Self::Live(l) => [
                &l.reward.stamp,
                &l.critique.stamp,
                &l.tags.stamp,
                &l.metadata.stamp,
            ]
            .into_iter()
            .fold(&l.created, std::cmp::max),
        }
    }
}
