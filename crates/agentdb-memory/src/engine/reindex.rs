//! Re-embedding a tenant with another model.

use std::ops::ControlFlow;
use std::sync::Arc;

use agentdb_core::{Hlc, TenantId};

use crate::embedder::{EmbedError, Embedder};
use crate::error::ReindexError;
use crate::storage::{StoredEpisode, Write};

use super::body;
use super::tenant::{encode_model, TenantState, MODEL_META};
use super::types::REINDEX_BATCH;
use super::write::embedding_text;
use super::{load_tenant, MemoryEngine};

impl MemoryEngine {
    /// Re-embeds every live episode of `tenant` with `embedder` and binds the tenant to its
    /// model; returns how many episodes were re-embedded.
    ///
    /// Each episode's body is decrypted, the text the engine embeds (task, and input when there
    /// is one) is embedded again, and the new vector is sealed under the key that sealed the
    /// body. Rows are rewritten [`REINDEX_BATCH`] at a time, each batch one durable
    /// transaction; the first batch also records the new model as the tenant's model. Finally
    /// the tenant's index is rebuilt from storage for the new model.
    ///
    /// Episodes already embedded with `embedder`'s model are skipped, so a re-index that was
    /// interrupted (a crash, an embedding error) is finished by running it again; until then
    /// the episodes still on the old model are not searchable (opening the store says how
    /// many). `progress(done, total)` is called before the first batch and after each one.
    ///
    /// Writes, deletes, key rotation and erasure of this tenant wait while it is re-indexed;
    /// queries keep being answered from the old index until the new one replaces it. Text
    /// queries use the engine's own embedder, so re-index with that embedder (see the module
    /// docs) unless only vector queries follow.
    pub fn reindex(
        &self,
        tenant: &TenantId,
        embedder: &dyn Embedder,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, ReindexError> {
        loop {
            let state = self
                .tenant(tenant)
                .ok_or_else(|| ReindexError::UnknownTenant(tenant.clone()))?;
            let mut gate = state.erased.write();
            if *gate {
                // Erased or replaced by another re-index while we waited: look again.
                continue;
            }
            let outcome = self.reindex_locked(&state, embedder, progress);
            if let Ok(None) = outcome {
                return Ok(0);
            }
            // The index is derived data: rebuild it from the rows as they are now (all of them
            // re-embedded, or, after a failure, those of the committed batches), then retire
            // the old state so that writers waiting on its gate look up the new one.
            let fresh = Arc::new(load_tenant(
                &*self.storage,
                &self.keyring.read(),
                &self.config,
                tenant,
                &mut Hlc::default(),
            )?);
            self.tenants
                .write()
                .insert(tenant.clone(), Arc::clone(&fresh));
            *gate = true;
            drop(gate);
            self.indexer.notify(&fresh);
            return outcome.map(|done| done.unwrap_or(0));
        }
    }

    /// The rewriting part of [`Self::reindex`], with the tenant's gate held exclusively.
    /// `None` when there was nothing to do (the tenant is already on `embedder`'s model).
    pub(super) fn reindex_locked(
        &self,
        state: &TenantState,
        embedder: &dyn Embedder,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Option<u64>, ReindexError> {
        let model = embedder.model().clone();
        let dims = embedder.dimensions();
        let mut stale = Vec::new();
        self.storage.scan_episodes(&state.id, &mut |row| {
            if row.deleted.is_none() && row.model != model {
                stale.push(row.id);
            }
            ControlFlow::Continue(())
        })?;
        let rebind = state.model() != &model || state.index.dimensions() != dims;
        if stale.is_empty() && !rebind {
            return Ok(None);
        }
        let total = stale.len() as u64;
        let mut done = 0u64;
        progress(done, total);
        let mut model_write = rebind.then(|| Write::PutTenantMeta {
            tenant: state.id.clone(),
            name: MODEL_META.into(),
            value: encode_model(&model, dims),
        });
        if stale.is_empty() {
            self.commit
                .submit(model_write.take().into_iter().collect())?;
        }
        for ids in stale.chunks(REINDEX_BATCH) {
            let mut rows = Vec::with_capacity(ids.len());
            let mut texts = Vec::with_capacity(ids.len());
            for id in ids {
                // Rows cannot change under the gate; a missing one is simply skipped.
                let Some(row) = self.storage.episode(&state.id, id)? else {
                    continue;
                };
                let key = state.key_for(&row)?;
                let episode = body::open_episode(&key, &row)?;
                texts.push(embedding_text(&episode.task, &episode.input));
                rows.push((row, key));
            }
            let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = embedder.embed_batch(&text_refs)?;
            if vectors.len() != rows.len() {
                return Err(ReindexError::Embed(EmbedError::Model {
                    model,
                    reason: format!("{} vectors for {} texts", vectors.len(), rows.len()),
                }));
            }
            let mut writes: Vec<Write> = model_write.take().into_iter().collect();
            for ((row, key), vector) in rows.into_iter().zip(vectors) {
                if vector.len() != dims {
                    return Err(ReindexError::Dimensions {
                        model,
                        expected: dims,
                        found: vector.len(),
                    });
                }
                // Sealed under the body's key, so the row opens with one key version.
                let sealed_vector = body::seal_vector(&key, &row.id, &vector)?;
                writes.push(Write::ReplaceEpisode {
                    tenant: state.id.clone(),
                    row: StoredEpisode {
                        model: model.clone(),
                        sealed_vector,
                        ..row
                    },
                });
            }
            self.commit.submit(writes)?;
            done += ids.len() as u64;
            progress(done, total);
        }
        Ok(Some(done))
    }
}
