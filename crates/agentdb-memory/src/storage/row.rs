//! The stored form of an episode row.
//!
//! Value layout (postcard, after a format byte): see [`StoredEpisode`]. Everything sensitive is in
//! the two sealed fields; the rest is what the design allows in the clear.

use agentdb_core::{EpisodeId, Hlc, HubId, ModelId, Stamp, Timestamp};
use serde::{Deserialize, Serialize};

const ROW_FORMAT_V1: u8 = 1;
const ROW_FORMAT_V2: u8 = 2;

/// The merge stamps of a row's content and registers (see `agentdb_core::replica`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowStamps {
    /// When the content was written.
    pub created: Stamp,
    /// When the reward was last written.
    pub reward: Stamp,
    /// When the critique was last written.
    pub critique: Stamp,
    /// When the tags were last written.
    pub tags: Stamp,
}

impl RowStamps {
    /// Every field written at `stamp`.
    pub fn all(stamp: Stamp) -> Self {
        Self {
            created: stamp.clone(),
            reward: stamp.clone(),
            critique: stamp.clone(),
            tags: stamp,
        }
    }
}

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
    /// Set when the episode was deleted (the delete's stamp); the sealed fields are then empty.
    pub deleted: Option<Stamp>,
    /// Merge stamps of the content and the mutable fields.
    pub stamps: RowStamps,
    /// The sealed episode body (texts, tags, metadata, agent, session, counters).
    // As bytes, not a sequence of u8: the same postcard encoding, decoded in one copy.
    #[serde(with = "serde_bytes")]
    pub sealed_body: Vec<u8>,
    /// The sealed embedding vector.
    #[serde(with = "serde_bytes")]
    pub sealed_vector: Vec<u8>,
}

/// A row that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored episode row is corrupt or of an unknown format")]
pub struct RowError;

impl StoredEpisode {
    /// The row's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ROW_FORMAT_V2];
        // Serialising plain fields into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// Parses [`Self::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, RowError> {
        match bytes.split_first() {
            Some((&ROW_FORMAT_V2, rest)) => postcard::from_bytes(rest).map_err(|_| RowError),
            Some((&ROW_FORMAT_V1, rest)) => postcard::from_bytes::<RowV1>(rest)
                .map(RowV1::upgrade)
                .map_err(|_| RowError),
            _ => Err(RowError),
        }
    }

    /// A tombstone for an episode never seen here (its delete arrived first).
    pub fn new_tombstone(id: EpisodeId, stamp: Stamp, model: ModelId) -> Self {
        Self {
            id,
            created: stamp.hlc.wall(),
            reward: 0.0,
            success: false,
            task_hash: [0; 16],
            model,
            deleted: Some(stamp.clone()),
            stamps: RowStamps::all(stamp),
            sealed_body: Vec::new(),
            sealed_vector: Vec::new(),
        }
    }

    /// This row turned into a tombstone deleted at `stamp`.
    pub fn into_tombstone(self, stamp: Stamp) -> Self {
        Self {
            deleted: Some(stamp),
            sealed_body: Vec::new(),
            sealed_vector: Vec::new(),
            ..self
        }
    }
}

/// Rows written before federation: no stamps; deletion times were wall-clock only. They are
/// read as written by hub `local` at their wall time.
#[derive(Deserialize)]
struct RowV1 {
    id: EpisodeId,
    created: Timestamp,
    reward: f64,
    success: bool,
    task_hash: [u8; 16],
    model: ModelId,
    deleted: Option<Timestamp>,
    #[serde(with = "serde_bytes")]
    sealed_body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed_vector: Vec<u8>,
}

impl RowV1 {
    fn upgrade(self) -> StoredEpisode {
        let stamp = |t: Timestamp| Stamp::new(Hlc::new(t.unix_ms(), 0), local_hub());
        StoredEpisode {
            id: self.id,
            created: self.created,
            reward: self.reward,
            success: self.success,
            task_hash: self.task_hash,
            model: self.model,
            deleted: self.deleted.map(stamp),
            stamps: RowStamps::all(stamp(self.created)),
            sealed_body: self.sealed_body,
            sealed_vector: self.sealed_vector,
        }
    }
}

/// The hub id of an engine that runs outside a hub.
pub fn local_hub() -> HubId {
    HubId::new("local").unwrap_or_else(|_| unreachable!("a valid id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_fields_keep_the_encoding_of_a_sequence_of_u8() {
        let v: Vec<u8> = (0..=255).collect();
        assert_eq!(
            postcard::to_stdvec(&v).unwrap(),
            postcard::to_stdvec(serde_bytes::Bytes::new(&v)).unwrap()
        );
    }

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
            stamps: RowStamps::all(Stamp::new(Hlc::new(5, 0), local_hub())),
            sealed_body: vec![1, 2, 3],
            sealed_vector: vec![4],
        };
        assert_eq!(StoredEpisode::decode(&row.encode()).unwrap(), row);
        assert_eq!(StoredEpisode::decode(&[]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[9, 1, 2]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[2, 0xff]), Err(RowError));
    }
}
