//! The sealed parts of an episode row and how they are opened.

use agentdb_core::{AgentId, Episode, EpisodeId, HubId, SessionId, TenantId};
use agentdb_security::{RecordAad, TenantKey};
use serde::{Deserialize, Serialize};

use crate::error::ReadError;
use crate::storage::StoredEpisode;

/// AAD kind of a sealed episode body.
pub(crate) const BODY_KIND: &str = "episode";
/// AAD kind of a sealed episode vector.
pub(crate) const VECTOR_KIND: &str = "episode-vector";

/// Everything sensitive about an episode except its vector. Metadata is kept as JSON text
/// because postcard cannot carry an untyped JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Body {
    pub agent: Option<AgentId>,
    pub session: Option<SessionId>,
    pub task: String,
    pub input: String,
    pub output: String,
    pub critique: Option<String>,
    pub tags: Vec<String>,
    pub metadata_json: String,
    pub tokens_used: u64,
    pub latency_ms: u64,
    pub origin: Option<HubId>,
}

pub(crate) fn aad<'a>(kind: &'static str, tenant: &'a TenantId, id: &'a [u8; 16]) -> RecordAad<'a> {
    RecordAad {
        kind,
        tenant,
        record_id: id,
    }
}

pub(crate) fn seal_body(
    key: &TenantKey,
    id: &EpisodeId,
    body: &Body,
) -> Result<Vec<u8>, agentdb_security::SealError> {
    // A body that cannot be encoded is refused, never sealed as an empty record.
    let plain = zeroize::Zeroizing::new(
        postcard::to_stdvec(body).map_err(|_| agentdb_security::SealError::Encrypt)?,
    );
    key.seal(aad(BODY_KIND, key.tenant(), &id.to_bytes()), &plain)
}

pub(crate) fn seal_vector(
    key: &TenantKey,
    id: &EpisodeId,
    v: &[f32],
) -> Result<Vec<u8>, agentdb_security::SealError> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    key.seal(aad(VECTOR_KIND, key.tenant(), &id.to_bytes()), &bytes)
}

pub(crate) fn open_vector(key: &TenantKey, row: &StoredEpisode) -> Result<Vec<f32>, ReadError> {
    let bytes = key.open(
        aad(VECTOR_KIND, key.tenant(), &row.id.to_bytes()),
        &row.sealed_vector,
    )?;
    if bytes.len() % 4 != 0 {
        return Err(ReadError::Corrupt(
            "vector length is not a multiple of 4".into(),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Opens a row's sealed body.
pub(crate) fn open_body(key: &TenantKey, row: &StoredEpisode) -> Result<Body, ReadError> {
    let plain = zeroize::Zeroizing::new(key.open(
        aad(BODY_KIND, key.tenant(), &row.id.to_bytes()),
        &row.sealed_body,
    )?);
    postcard::from_bytes(&plain).map_err(|e| ReadError::Corrupt(e.to_string()))
}

pub(crate) fn open_episode(key: &TenantKey, row: &StoredEpisode) -> Result<Episode, ReadError> {
    let body = open_body(key, row)?;
    let metadata = agentdb_core::metadata_from_text(&body.metadata_json)
        .map_err(|e| ReadError::Corrupt(e.to_string()))?;
    Ok(Episode {
        id: row.id,
        tenant: key.tenant().clone(),
        agent: body.agent,
        session: body.session,
        task: body.task,
        input: body.input,
        output: body.output,
        reward: row.reward,
        critique: body.critique,
        success: row.success,
        tags: body.tags,
        metadata,
        tokens_used: body.tokens_used,
        latency_ms: body.latency_ms,
        created: row.created,
        origin: body.origin,
        embedding_model: row.model.clone(),
        expires_at: row.expires_at,
    })
}
