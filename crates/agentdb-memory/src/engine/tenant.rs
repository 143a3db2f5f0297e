//! One tenant's in-memory state: its unwrapped keys and its vector index.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use agentdb_core::{ModelId, TenantId};
use agentdb_security::{sealed_key_version, TenantKey};
use parking_lot::{Mutex, RwLock};

use crate::error::ReadError;
use crate::index::VectorIndex;
use crate::storage::StoredEpisode;

/// Name of the per-tenant setting that records the embedding model and dimension.
pub(crate) const MODEL_META: &str = "embedding_model";

/// A tenant's loaded state.
#[derive(Debug)]
pub(crate) struct TenantState {
    pub id: TenantId,
    /// Key versions, oldest first; the last one seals new records.
    pub keys: RwLock<BTreeMap<u32, Arc<TenantKey>>>,
    pub index: Arc<VectorIndex>,
    /// Held shared by writers, exclusively by erasure; `true` once erased.
    pub erased: RwLock<bool>,
    /// Whether the background builder already has this tenant queued.
    pub queued: AtomicBool,
    /// Held by every read-modify-write of a row (updates, deletes, replicated ops), so that
    /// merges of one tenant apply one at a time.
    pub merge: Mutex<()>,
    /// About how many tombstones the tenant holds (never 0 while one exists), so that
    /// collection can skip tenants without any.
    pub tombstones: AtomicU64,
    /// The tenant's change log is reflected in the index up to this sequence number (see
    /// `MemoryEngine::follow_storage`).
    pub followed: AtomicU64,
}

impl TenantState {
    pub fn new(id: TenantId, keys: Vec<TenantKey>, index: VectorIndex) -> Self {
        Self {
            id,
            keys: RwLock::new(
                keys.into_iter()
                    .map(|k| (k.version(), Arc::new(k)))
                    .collect(),
            ),
            index: Arc::new(index),
            erased: RwLock::new(false),
            queued: AtomicBool::new(false),
            merge: Mutex::new(()),
            tombstones: AtomicU64::new(0),
            followed: AtomicU64::new(0),
        }
    }

    pub fn model(&self) -> &ModelId {
        self.index.model()
    }

    /// The key new records are sealed with.
    pub fn current_key(&self) -> Option<Arc<TenantKey>> {
        self.keys.read().values().next_back().cloned()
    }

    /// The key that sealed `row`.
    pub fn key_for(&self, row: &StoredEpisode) -> Result<Arc<TenantKey>, ReadError> {
        let sealed = if row.sealed_body.is_empty() {
            &row.sealed_vector
        } else {
            &row.sealed_body
        };
        let version = sealed_key_version(sealed)?;
        self.keys.read().get(&version).cloned().ok_or_else(|| {
            ReadError::Crypto(format!(
                "key version {version} of tenant {} is gone",
                self.id
            ))
        })
    }
}

/// Encodes the model setting: `model_id '\n' dimensions`.
pub(crate) fn encode_model(model: &ModelId, dims: usize) -> Vec<u8> {
    format!("{model}\n{dims}").into_bytes()
}

/// Parses [`encode_model`]'s output.
pub(crate) fn decode_model(bytes: &[u8]) -> Option<(ModelId, usize)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (model, dims) = text.split_once('\n')?;
    Some((ModelId::new(model).ok()?, dims.parse().ok()?))
}
