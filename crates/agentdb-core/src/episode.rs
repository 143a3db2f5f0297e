//! Episodes: what an agent did and how well it went.

use serde::{Deserialize, Serialize};

use crate::{AgentId, EpisodeId, HubId, Limits, ModelId, SessionId, TenantId, Timestamp};

/// Reward at or above which an episode counts as a success, unless configured otherwise.
pub const DEFAULT_SUCCESS_THRESHOLD: f64 = 0.7;

/// An embedding vector together with the model that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// The model that produced the vector. Vectors of different models are never compared.
    pub model: ModelId,
    /// The vector itself.
    pub vector: Vec<f32>,
}

/// An episode as a writer submits it. The store adds tenant, time, success and origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEpisode {
    /// The id, minted by the writer so that a retried write is idempotent. When absent the
    /// store mints one (and a retry would then store a second copy).
    pub id: Option<EpisodeId>,
    /// The agent that ran the task.
    pub agent: Option<AgentId>,
    /// The agent's session.
    pub session: Option<SessionId>,
    /// What was asked, e.g. "summarise invoice". Must not be empty.
    pub task: String,
    /// The input the agent worked on.
    pub input: String,
    /// What the agent produced.
    pub output: String,
    /// How well it went; any finite number (conventionally 0.0 to 1.0).
    pub reward: f64,
    /// An optional critique of the output.
    pub critique: Option<String>,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// Free-form JSON metadata (bounded in size).
    pub metadata: serde_json::Value,
    /// Tokens the task used.
    pub tokens_used: u64,
    /// How long the task took.
    pub latency_ms: u64,
    /// A caller-supplied embedding; when absent the store embeds the text itself.
    pub embedding: Option<Embedding>,
    /// When the episode expires: from then on it is not returned, and stores delete it (as a
    /// delete that replicates). Part of the immutable content. `None` keeps it until deleted
    /// (or until its tenant's retention, if any, removes it).
    pub expires_at: Option<Timestamp>,
}

impl NewEpisode {
    /// An episode with the four required parts; everything else empty.
    pub fn new(
        task: impl Into<String>,
        input: impl Into<String>,
        output: impl Into<String>,
        reward: f64,
    ) -> Self {
        Self {
            id: None,
            agent: None,
            session: None,
            task: task.into(),
            input: input.into(),
            output: output.into(),
            reward,
            critique: None,
            tags: Vec::new(),
            metadata: serde_json::Value::Null,
            tokens_used: 0,
            latency_ms: 0,
            embedding: None,
            expires_at: None,
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: EpisodeId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the critique.
    pub fn with_critique(mut self, critique: impl Into<String>) -> Self {
        self.critique = Some(critique.into());
        self
    }

    /// Sets the agent.
    pub fn with_agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Sets the tags.
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets when the episode expires (see [`Self::expires_at`]).
    pub fn with_expires_at(mut self, expires_at: Timestamp) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Supplies the embedding instead of letting the store compute one.
    pub fn with_embedding(mut self, embedding: Embedding) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// Checks the episode against `limits`. Returns the first problem found.
    pub fn validate(&self, limits: &Limits) -> Result<(), EpisodeError> {
        if self.task.trim().is_empty() {
            return Err(EpisodeError::EmptyTask);
        }
        if !self.reward.is_finite() {
            return Err(EpisodeError::NonFiniteReward);
        }
        let mut total = 0usize;
        let texts = [
            ("task", Some(&self.task)),
            ("input", Some(&self.input)),
            ("output", Some(&self.output)),
            ("critique", self.critique.as_ref()),
        ];
        for (field, text) in texts {
            let len = text.map_or(0, String::len);
            if len > limits.max_text_bytes {
                return Err(EpisodeError::TooLarge {
                    field,
                    len,
                    limit: limits.max_text_bytes,
                });
            }
            total += len;
        }
        if self.tags.len() > limits.max_tags {
            return Err(EpisodeError::TooLarge {
                field: "tags",
                len: self.tags.len(),
                limit: limits.max_tags,
            });
        }
        for tag in &self.tags {
            if tag.len() > limits.max_tag_bytes {
                return Err(EpisodeError::TooLarge {
                    field: "tag",
                    len: tag.len(),
                    limit: limits.max_tag_bytes,
                });
            }
            total += tag.len();
        }
        if !(self.metadata.is_null() || self.metadata.is_object()) {
            return Err(EpisodeError::MetadataNotObject);
        }
        let meta_len = if self.metadata.is_null() {
            0
        } else {
            serde_json::to_vec(&self.metadata).map_or(usize::MAX, |v| v.len())
        };
        if meta_len > limits.max_metadata_bytes {
            return Err(EpisodeError::TooLarge {
                field: "metadata",
                len: meta_len,
                limit: limits.max_metadata_bytes,
            });
        }
        total = total.saturating_add(meta_len);
        if let Some(e) = &self.embedding {
            validate_vector(&e.vector, limits)?;
            total += e.vector.len() * 4;
        }
        if total > limits.max_episode_bytes {
            return Err(EpisodeError::TooLarge {
                field: "episode",
                len: total,
                limit: limits.max_episode_bytes,
            });
        }
        Ok(())
    }
}

/// Metadata as text, the form it is sealed, replicated and sent in: `null` is the empty
/// string, anything else compact JSON.
pub fn metadata_to_text(metadata: &serde_json::Value) -> String {
    if metadata.is_null() {
        String::new()
    } else {
        metadata.to_string()
    }
}

/// Metadata from its text form ([`metadata_to_text`]); the empty string is `null`.
pub fn metadata_from_text(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    if text.is_empty() {
        Ok(serde_json::Value::Null)
    } else {
        serde_json::from_str(text)
    }
}

/// Checks a vector (stored or queried): non-empty, within the dimension limit, all finite.
pub fn validate_vector(vector: &[f32], limits: &Limits) -> Result<(), EpisodeError> {
    if vector.is_empty() || vector.len() > limits.max_dimensions {
        return Err(EpisodeError::BadDimensions {
            dims: vector.len(),
            limit: limits.max_dimensions,
        });
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(EpisodeError::NonFiniteEmbedding);
    }
    Ok(())
}

/// A stored episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The episode id (UUIDv7).
    pub id: EpisodeId,
    /// The tenant that owns it.
    pub tenant: TenantId,
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
    /// The reward (finite).
    pub reward: f64,
    /// The critique, if any.
    pub critique: Option<String>,
    /// Whether `reward` reached the success threshold when the episode was stored.
    pub success: bool,
    /// Labels.
    pub tags: Vec<String>,
    /// JSON metadata.
    pub metadata: serde_json::Value,
    /// Tokens used.
    pub tokens_used: u64,
    /// Task latency.
    pub latency_ms: u64,
    /// When the store accepted it.
    pub created: Timestamp,
    /// The hub that first accepted it, when it came through a hub.
    pub origin: Option<HubId>,
    /// The model of the stored embedding.
    pub embedding_model: ModelId,
    /// When it expires, if it does (see [`NewEpisode::expires_at`]).
    pub expires_at: Option<Timestamp>,
}

impl Episode {
    /// Whether the episode has expired at `now` (its expiry is at or before `now`).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Why an episode was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EpisodeError {
    /// The task is empty or only whitespace.
    #[error("task must not be empty")]
    EmptyTask,
    /// The reward is NaN or infinite.
    #[error("reward must be a finite number")]
    NonFiniteReward,
    /// A field is over its limit.
    #[error("{field} is too large: {len} (limit {limit})")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its size (bytes, or count for `tags`).
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Metadata must be a JSON object (or absent).
    #[error("metadata must be a JSON object")]
    MetadataNotObject,
    /// The embedding is empty or has too many dimensions.
    #[error("embedding has {dims} dimensions; expected 1 to {limit}")]
    BadDimensions {
        /// Dimensions found.
        dims: usize,
        /// The limit.
        limit: usize,
    },
    /// The embedding holds NaN or infinity.
    #[error("embedding values must be finite")]
    NonFiniteEmbedding,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> NewEpisode {
        NewEpisode::new("summarise invoice", "in", "out", 0.9)
    }

    #[test]
    fn valid_episode_passes() {
        assert_eq!(ok().validate(&Limits::DEFAULT), Ok(()));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let l = Limits::DEFAULT;
        let mut e = ok();
        e.reward = f64::NAN;
        assert_eq!(e.validate(&l), Err(EpisodeError::NonFiniteReward));
        e.reward = f64::INFINITY;
        assert_eq!(e.validate(&l), Err(EpisodeError::NonFiniteReward));
        let mut e = ok();
        e.task = "  ".into();
        assert_eq!(e.validate(&l), Err(EpisodeError::EmptyTask));
        let mut e = ok();
        e.output = "x".repeat(64 * 1024 + 1);
        assert!(matches!(
            e.validate(&l),
            Err(EpisodeError::TooLarge {
                field: "output",
                ..
            })
        ));
        let mut e = ok();
        e.metadata = serde_json::json!([1, 2]);
        assert_eq!(e.validate(&l), Err(EpisodeError::MetadataNotObject));
        let mut e = ok();
        e.tags = vec!["t".into(); 65];
        assert!(matches!(
            e.validate(&l),
            Err(EpisodeError::TooLarge { field: "tags", .. })
        ));
        let mut e = ok();
        e.embedding = Some(Embedding {
            model: ModelId::new("m").unwrap(),
            vector: vec![f32::NAN; 4],
        });
        assert_eq!(e.validate(&l), Err(EpisodeError::NonFiniteEmbedding));
    }

    #[test]
    fn whole_episode_limit_applies_to_the_sum() {
        let mut e = ok();
        let l = Limits {
            max_episode_bytes: 100,
            ..Limits::DEFAULT
        };
        e.input = "x".repeat(60);
        e.output = "y".repeat(60);
        assert!(matches!(
            e.validate(&l),
            Err(EpisodeError::TooLarge {
                field: "episode",
                ..
            })
        ));
    }
}
