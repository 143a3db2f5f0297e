//! The stored form of an episode row.
//!
//! Value layout (postcard, after a format byte): see [`StoredEpisode`]. Everything sensitive is in
//! the two sealed fields; the rest is what the design allows in the clear.

use agentdb_core::{EpisodeId, ModelId, Timestamp};
use serde::{Deserialize, Serialize};

const ROW_FORMAT_V1: u8 = 1;

/// An episode row as a backend stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEpisode {
    /// The episode id (also in the key).
    pub id: EpisodeId,
    /// When it was stored.
    pub created: Timestamp,
    /// The reward.
    pub reward: f64,
    /// Whether the reward reached the success threshold.
    pub success: bool,
    /// Keyed hash of the task text, for grouping without decrypting.
    pub task_hash: [u8; 16],
    /// The model of the embedding.
    pub model: ModelId,
    /// Set when the episode was deleted; the sealed fields are then empty.
    pub deleted: Option<Timestamp>,
    /// The sealed episode body (texts, tags, metadata, agent, session, counters).
    pub sealed_body: Vec<u8>,
    /// The sealed embedding vector.
    pub sealed_vector: Vec<u8>,
}

/// A row that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored episode row is corrupt or of an unknown format")]
pub struct RowError;

impl StoredEpisode {
    /// The row's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ROW_FORMAT_V1];
        // Serialising plain fields into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// Parses [`Self::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, RowError> {
        match bytes.split_first() {
            Some((&ROW_FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(|_| RowError),
            _ => Err(RowError),
        }
    }

    /// This row turned into a tombstone deleted at `at`.
    pub fn into_tombstone(self, at: Timestamp) -> Self {
        Self {
            deleted: Some(at),
            sealed_body: Vec::new(),
            sealed_vector: Vec::new(),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let row = StoredEpisode {
            id: EpisodeId::from_parts(5, [1; 10]),
            created: Timestamp(5),
            reward: 0.5,
            success: false,
            task_hash: [7; 16],
            model: ModelId::new("m").unwrap(),
            deleted: None,
            sealed_body: vec![1, 2, 3],
            sealed_vector: vec![4],
        };
        assert_eq!(StoredEpisode::decode(&row.encode()).unwrap(), row);
        assert_eq!(StoredEpisode::decode(&[]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[9, 1, 2]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[1, 0xff]), Err(RowError));
    }
}
