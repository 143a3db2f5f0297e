//! Episodes as they travel.
//!
//! Core's [`NewEpisode`] and [`Episode`] hold their metadata as a `serde_json::Value`, which
//! postcard cannot decode (it is self-describing data, and postcard is not a self-describing
//! format). The wire forms below carry the metadata as compact JSON text instead, the empty string
//! standing for `null`; every other field is carried as is. The conversions are lossless in both
//! directions; only the direction that parses JSON can fail.

use agentdb_core::{
    AgentId, Embedding, Episode, EpisodeId, HubId, ModelId, NewEpisode, SessionId, TenantId,
    Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// A [`NewEpisode`] on the wire: metadata as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireNewEpisode {
    /// The id, minted by the writer. Required in a store request (see
    /// [`crate::StoreRequest::validate`]), optional here so the conversion is lossless.
    pub id: Option<EpisodeId>,
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
    /// The reward.
    pub reward: f64,
    /// The critique, if any.
    pub critique: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// The metadata as compact JSON; empty for `null`.
    pub metadata_json: String,
    /// Tokens used.
    pub tokens_used: u64,
    /// Task latency.
    pub latency_ms: u64,
    /// A caller-supplied embedding.
    pub embedding: Option<Embedding>,
    /// When the episode expires, if it does (protocol version 3).
    pub expires_at: Option<Timestamp>,
}

/// An [`Episode`] on the wire: metadata as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEpisode {
    /// The episode id.
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
    /// The reward.
    pub reward: f64,
    /// The critique, if any.
    pub critique: Option<String>,
    /// Whether the reward reached the success threshold when stored.
    pub success: bool,
    /// Labels.
    pub tags: Vec<String>,
    /// The metadata as compact JSON; empty for `null`.
    pub metadata_json: String,
    /// Tokens used.
    pub tokens_used: u64,
    /// Task latency.
    pub latency_ms: u64,
    /// When the store accepted it.
    pub created: Timestamp,
    /// The hub that first accepted it.
    pub origin: Option<HubId>,
    /// The model of the stored embedding.
    pub embedding_model: ModelId,
    /// When it expires, if it does (protocol version 3).
    pub expires_at: Option<Timestamp>,
}

/// Parses metadata from the wire; the empty string is `null`.
pub(crate) fn metadata_from_wire(json: &str) -> Result<serde_json::Value, DecodeError> {
    agentdb_core::metadata_from_text(json).map_err(|e| DecodeError::Malformed {
        reason: format!("metadata is not valid JSON: {e}"),
    })
}

impl From<&NewEpisode> for WireNewEpisode {
    fn from(e: &NewEpisode) -> Self {
        Self::from(e.clone())
    }
}

impl From<NewEpisode> for WireNewEpisode {
    fn from(e: NewEpisode) -> Self {
        Self {
            metadata_json: agentdb_core::metadata_to_text(&e.metadata),
            id: e.id,
            agent: e.agent,
            session: e.session,
            task: e.task,
            input: e.input,
            output: e.output,
            reward: e.reward,
            critique: e.critique,
            tags: e.tags,
            tokens_used: e.tokens_used,
            latency_ms: e.latency_ms,
            embedding: e.embedding,
            expires_at: e.expires_at,
        }
    }
}

impl TryFrom<WireNewEpisode> for NewEpisode {
    type Error = DecodeError;

    /// Fails with [`DecodeError::Malformed`] when the metadata is not valid JSON.
    fn try_from(w: WireNewEpisode) -> Result<Self, DecodeError> {
        Ok(Self {
            metadata: metadata_from_wire(&w.metadata_json)?,
            id: w.id,
            agent: w.agent,
            session: w.session,
            task: w.task,
            input: w.input,
            output: w.output,
            reward: w.reward,
            critique: w.critique,
            tags: w.tags,
            tokens_used: w.tokens_used,
            latency_ms: w.latency_ms,
            embedding: w.embedding,
            expires_at: w.expires_at,
        })
    }
}

impl From<&Episode> for WireEpisode {
    fn from(e: &Episode) -> Self {
        Self::from(e.clone())
    }
}

impl From<Episode> for WireEpisode {
    fn from(e: Episode) -> Self {
        Self {
            metadata_json: agentdb_core::metadata_to_text(&e.metadata),
            id: e.id,
            tenant: e.tenant,
            agent: e.agent,
            session: e.session,
            task: e.task,
            input: e.input,
            output: e.output,
            reward: e.reward,
            critique: e.critique,
            success: e.success,
            tags: e.tags,
            tokens_used: e.tokens_used,
            latency_ms: e.latency_ms,
            created: e.created,
            origin: e.origin,
            embedding_model: e.embedding_model,
            expires_at: e.expires_at,
        }
    }
}

impl TryFrom<WireEpisode> for Episode {
    type Error = DecodeError;

    /// Fails with [`DecodeError::Malformed`] when the metadata is not valid JSON.
    fn try_from(w: WireEpisode) -> Result<Self, DecodeError> {
        Ok(Self {
            metadata: metadata_from_wire(&w.metadata_json)?,
            id: w.id,
            tenant: w.tenant,
            agent: w.agent,
            session: w.session,
            task: w.task,
            input: w.input,
            output: w.output,
            reward: w.reward,
            critique: w.critique,
            success: w.success,
            tags: w.tags,
            tokens_used: w.tokens_used,
            latency_ms: w.latency_ms,
            created: w.created,
            origin: w.origin,
            embedding_model: w.embedding_model,
            expires_at: w.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn episode(metadata: serde_json::Value) -> Episode {
        Episode {
            id: EpisodeId::from_parts(1_700_000_000_000, [7; 10]),
            tenant: TenantId::new("acme").unwrap(),
            agent: Some(AgentId::new("a1").unwrap()),
            session: Some(SessionId::from_random([3; 16])),
            task: "summarise invoice".into(),
            input: "in".into(),
            output: "out".into(),
            reward: 0.9,
            critique: Some("fine".into()),
            success: true,
            tags: vec!["x".into(), "y".into()],
            metadata,
            tokens_used: 12,
            latency_ms: 34,
            created: Timestamp(1_700_000_000_001),
            origin: Some(HubId::new("hub-1").unwrap()),
            embedding_model: ModelId::new("agentdb-lexical-v1").unwrap(),
            expires_at: Some(Timestamp(1_700_000_060_000)),
        }
    }

    #[test]
    fn metadata_null_is_the_empty_string() {
        assert_eq!(agentdb_core::metadata_to_text(&serde_json::Value::Null), "");
        assert_eq!(metadata_from_wire(""), Ok(serde_json::Value::Null));
        // A JSON empty string is not confused with null.
        assert_eq!(agentdb_core::metadata_to_text(&json!("")), "\"\"");
    }

    #[test]
    fn episodes_convert_losslessly() {
        for metadata in [
            serde_json::Value::Null,
            json!({}),
            json!({"k": [1, 2.5, 0.30000000000000004, -1e300, "s", null, true], "n": {"x": {}}}),
            json!(""),
        ] {
            let e = episode(metadata);
            let w = WireEpisode::from(&e);
            assert_eq!(WireEpisode::from(e.clone()), w);
            assert_eq!(Episode::try_from(w).unwrap(), e);
        }
    }

    #[test]
    fn new_episodes_convert_losslessly() {
        let e = NewEpisode::new("t", "i", "o", 0.5)
            .with_id(EpisodeId::from_parts(5, [1; 10]))
            .with_metadata(json!({"a": 1}))
            .with_expires_at(Timestamp(60_000))
            .with_embedding(Embedding {
                model: ModelId::new("m").unwrap(),
                vector: vec![0.25, -1.0],
            });
        let w = WireNewEpisode::from(&e);
        assert_eq!(WireNewEpisode::from(e.clone()), w);
        assert_eq!(NewEpisode::try_from(w).unwrap(), e);
    }

    #[test]
    fn bad_metadata_is_malformed() {
        let mut w = WireEpisode::from(episode(json!({})));
        w.metadata_json = "{not json".into();
        assert!(matches!(
            Episode::try_from(w),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
