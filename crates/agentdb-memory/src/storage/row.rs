//! The stored form of an episode row.
//!
//! Value layout (postcard, after a format byte): see [`StoredEpisode`]. Everything sensitive is in
//! the two sealed fields; the rest is what the design allows in the clear.

use agentdb_core::{EpisodeId, Hlc, HubId, ModelId, Stamp, Timestamp};
use serde::{Deserialize, Serialize};

const ROW_FORMAT_V1: u8 = 1;
const ROW_FORMAT_V2: u8 = 2;
const ROW_FORMAT_V3: u8 = 3;
const ROW_FORMAT_V4: u8 = 4;

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
    /// When the metadata was last written (format 3; rows of formats 1 and 2 were written
    /// when metadata could not change, and read with the content's stamp here).
    pub metadata: Stamp,
}

impl RowStamps {
    /// Every field written at `stamp`.
    pub fn all(stamp: Stamp) -> Self {
        Self {
            created: stamp.clone(),
            reward: stamp.clone(),
            critique: stamp.clone(),
            tags: stamp.clone(),
            metadata: stamp,
        }
    }

    /// The latest of the stamps (content and registers).
    pub fn latest(&self) -> &Stamp {
        [&self.reward, &self.critique, &self.tags, &self.metadata]
            .into_iter()
            .fold(&self.created, std::cmp::max)
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
    /// When the episode expires, if it does (format 4; older rows have no expiry). In the
    /// clear, like `created`, so that the expiry sweep finds expired rows without opening them.
    pub expires_at: Option<Timestamp>,
}

impl StoredEpisode {
    /// Whether the row is an episode that has expired at `now` (a tombstone never is).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.deleted.is_none() && self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A row that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored episode row is corrupt or of an unknown format")]
pub struct RowError;

/// Room in an encoded row beyond its sealed parts: the format byte, ids, stamps, the model id.
const ROW_SLACK: usize = 256;

impl StoredEpisode {
    /// The row's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Sized for the sealed parts up front: one allocation and one pass, not a growing
        // vector copied again.
        let mut out =
            Vec::with_capacity(self.sealed_body.len() + self.sealed_vector.len() + ROW_SLACK);
        out.push(ROW_FORMAT_V4);
        // Serialising plain fields into a Vec cannot fail.
        postcard::to_extend(self, out).unwrap_or_else(|_| vec![ROW_FORMAT_V4])
    }

    /// Parses [`Self::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, RowError> {
        match bytes.split_first() {
            Some((&ROW_FORMAT_V4, rest)) => postcard::from_bytes(rest).map_err(|_| RowError),
            Some((&ROW_FORMAT_V3, rest)) => postcard::from_bytes::<RowV3>(rest)
                .map(RowV3::upgrade)
                .map_err(|_| RowError),
            Some((&ROW_FORMAT_V2, rest)) => postcard::from_bytes::<RowV2>(rest)
                .map(RowV2::upgrade)
                .map_err(|_| RowError),
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
            expires_at: None,
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

/// Rows written before episodes could expire: format 4 without `expires_at`.
#[derive(Serialize, Deserialize)]
struct RowV3 {
    id: EpisodeId,
    created: Timestamp,
    reward: f64,
    success: bool,
    task_hash: [u8; 16],
    model: ModelId,
    deleted: Option<Stamp>,
    stamps: RowStamps,
    #[serde(with = "serde_bytes")]
    sealed_body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed_vector: Vec<u8>,
}

impl RowV3 {
    fn upgrade(self) -> StoredEpisode {
        StoredEpisode {
            id: self.id,
            created: self.created,
            reward: self.reward,
            success: self.success,
            task_hash: self.task_hash,
            model: self.model,
            deleted: self.deleted,
            stamps: self.stamps,
            sealed_body: self.sealed_body,
            sealed_vector: self.sealed_vector,
            expires_at: None,
        }
    }
}

/// Rows written before metadata became a register: the stamps of content, reward, critique
/// and tags. Their metadata was last written with the content.
#[derive(Serialize, Deserialize)]
struct RowV2 {
    id: EpisodeId,
    created: Timestamp,
    reward: f64,
    success: bool,
    task_hash: [u8; 16],
    model: ModelId,
    deleted: Option<Stamp>,
    stamps: RowStampsV2,
    #[serde(with = "serde_bytes")]
    sealed_body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed_vector: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct RowStampsV2 {
    created: Stamp,
    reward: Stamp,
    critique: Stamp,
    tags: Stamp,
}

impl RowV2 {
    fn upgrade(self) -> StoredEpisode {
        let s = self.stamps;
        StoredEpisode {
            id: self.id,
            created: self.created,
            reward: self.reward,
            success: self.success,
            task_hash: self.task_hash,
            model: self.model,
            deleted: self.deleted,
            stamps: RowStamps {
                metadata: s.created.clone(),
                created: s.created,
                reward: s.reward,
                critique: s.critique,
                tags: s.tags,
            },
            sealed_body: self.sealed_body,
            sealed_vector: self.sealed_vector,
            expires_at: None,
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
            expires_at: None,
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
            expires_at: Some(Timestamp(9)),
        };
        assert_eq!(StoredEpisode::decode(&row.encode()).unwrap(), row);
        assert_eq!(StoredEpisode::decode(&[]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[9, 1, 2]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[2, 0xff]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[3, 0xff]), Err(RowError));
        assert_eq!(StoredEpisode::decode(&[4, 0xff]), Err(RowError));
    }

    /// A format-2 row as the encoder before format 3 wrote it (`0x02 | postcard(row)`; `RowV2`
    /// is the former `StoredEpisode` field for field, and the bytes are kept here as they
    /// were): it reads with the metadata stamped as the content.
    #[test]
    fn format_2_rows_still_decode() {
        let created = Stamp::new(Hlc::new(5, 1), HubId::new("hub-a").unwrap());
        let tags = Stamp::new(Hlc::new(9, 0), HubId::new("hub-b").unwrap());
        let v2 = RowV2 {
            id: EpisodeId::from_parts(5, [1; 10]),
            created: Timestamp(5),
            reward: 0.5,
            success: false,
            task_hash: [7; 16],
            model: ModelId::new("m").unwrap(),
            deleted: None,
            stamps: RowStampsV2 {
                created: created.clone(),
                reward: created.clone(),
                critique: created.clone(),
                tags: tags.clone(),
            },
            sealed_body: vec![1, 2, 3],
            sealed_vector: vec![4],
        };
        let mut bytes = vec![ROW_FORMAT_V2];
        bytes.extend(postcard::to_stdvec(&v2).unwrap());
        let fixed: &[u8] = &[
            2, 16, 0, 0, 0, 0, 0, 5, 113, 1, 129, 1, 1, 1, 1, 1, 1, 1, 5, 0, 0, 0, 0, 0, 0, 224,
            63, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 109, 0, 5, 1, 5, 104, 117,
            98, 45, 97, 5, 1, 5, 104, 117, 98, 45, 97, 5, 1, 5, 104, 117, 98, 45, 97, 9, 0, 5, 104,
            117, 98, 45, 98, 3, 1, 2, 3, 1, 4,
        ];
        assert_eq!(bytes, fixed);
        let row = StoredEpisode::decode(fixed).unwrap();
        assert_eq!(
            row.stamps,
            RowStamps {
                created: created.clone(),
                reward: created.clone(),
                critique: created.clone(),
                tags,
                metadata: created,
            }
        );
        assert_eq!(row.sealed_body, vec![1, 2, 3]);
        assert_eq!(row.sealed_vector, vec![4]);
        assert_eq!(row.expires_at, None);
        assert_eq!(row.encode()[0], ROW_FORMAT_V4);
        assert_eq!(StoredEpisode::decode(&row.encode()).unwrap(), row);
    }

    /// A format-3 row as the encoder before format 4 wrote it (`0x03 | postcard(row)`; `RowV3`
    /// is the former `StoredEpisode` field for field, and the bytes are kept here as they
    /// were): it reads with no expiry, and is written back as format 4.
    #[test]
    fn format_3_rows_still_decode() {
        let stamp = Stamp::new(Hlc::new(5, 1), HubId::new("hub-a").unwrap());
        let v3 = RowV3 {
            id: EpisodeId::from_parts(5, [1; 10]),
            created: Timestamp(5),
            reward: 0.5,
            success: false,
            task_hash: [7; 16],
            model: ModelId::new("m").unwrap(),
            deleted: None,
            stamps: RowStamps::all(stamp.clone()),
            sealed_body: vec![1, 2, 3],
            sealed_vector: vec![4],
        };
        let mut bytes = vec![ROW_FORMAT_V3];
        bytes.extend(postcard::to_stdvec(&v3).unwrap());
        let fixed: &[u8] = &[
            3, 16, 0, 0, 0, 0, 0, 5, 113, 1, 129, 1, 1, 1, 1, 1, 1, 1, 5, 0, 0, 0, 0, 0, 0, 224,
            63, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 109, 0, 5, 1, 5, 104, 117,
            98, 45, 97, 5, 1, 5, 104, 117, 98, 45, 97, 5, 1, 5, 104, 117, 98, 45, 97, 5, 1, 5, 104,
            117, 98, 45, 97, 5, 1, 5, 104, 117, 98, 45, 97, 3, 1, 2, 3, 1, 4,
        ];
        assert_eq!(bytes, fixed);
        let row = StoredEpisode::decode(fixed).unwrap();
        assert_eq!(row.stamps, RowStamps::all(stamp));
        assert_eq!(row.expires_at, None);
        assert_eq!(row.sealed_body, vec![1, 2, 3]);
        assert_eq!(row.encode()[0], ROW_FORMAT_V4);
        assert_eq!(StoredEpisode::decode(&row.encode()).unwrap(), row);
    }
}
