//! Writing episodes: validate, embed, seal, commit durably, index; and deletes.

use std::sync::atomic::Ordering;

use agentdb_core::{Embedding, EpisodeId, NewEpisode, Stamp, TenantId, Timestamp};
use agentdb_security::TenantKey;

use crate::embedder::EmbedError;
use crate::error::{ReadError, StoreError};
use crate::index::EpisodeFacts;
use crate::storage::{RowStamps, StoredEpisode, Write};

use super::body::{self, Body};
use super::tenant::TenantState;
use super::types::{Stored, MAX_BATCH};
use super::MemoryEngine;

impl MemoryEngine {
    /// Stores one episode for `tenant`. Idempotent by episode id.
    pub fn store(&self, tenant: &TenantId, episode: NewEpisode) -> Result<Stored, StoreError> {
        let mut out = self.store_batch(tenant, vec![episode])?;
        out.pop()
            .ok_or_else(|| StoreError::Crypto("empty store result".into()))
    }

    /// Stores episodes atomically: all are durable when this returns, or none was stored.
    /// Episodes whose id already exists are left as they are (`inserted: false`).
    pub fn store_batch(
        &self,
        tenant: &TenantId,
        episodes: Vec<NewEpisode>,
    ) -> Result<Vec<Stored>, StoreError> {
        if episodes.len() > MAX_BATCH {
            return Err(StoreError::BatchTooLarge {
                len: episodes.len(),
                limit: MAX_BATCH,
            });
        }
        if episodes.is_empty() {
            return Ok(Vec::new());
        }
        for e in &episodes {
            e.validate(&self.config.limits)?;
        }
        // Embed what the caller did not (in one batch: models run batches much faster than
        // single texts), and check every vector's model agrees.
        let texts: Vec<String> = episodes
            .iter()
            .filter(|e| e.embedding.is_none())
            .map(|e| embedding_text(&e.task, &e.input))
            .collect();
        let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut embedded = self.embedder.embed_batch(&text_refs)?.into_iter();
        let mut vectors = Vec::with_capacity(episodes.len());
        for e in &episodes {
            vectors.push(match &e.embedding {
                Some(emb) => emb.clone(),
                None => Embedding {
                    model: self.embedder.model().clone(),
                    vector: embedded.next().ok_or_else(|| EmbedError::Model {
                        model: self.embedder.model().clone(),
                        reason: format!("no vector for each of {} texts", texts.len()),
                    })?,
                },
            });
        }
        let model = vectors[0].model.clone();
        let dims = vectors[0].vector.len();
        if let Some(v) = vectors
            .iter()
            .find(|v| v.model != model || v.vector.len() != dims)
        {
            return Err(StoreError::EmbedderMismatch {
                tenant: tenant.clone(),
                tenant_model: model,
                given: v.model.clone(),
            });
        }
        loop {
            let state = self.tenant_or_create(tenant, &model, dims)?;
            if state.model() != &model || state.index.dimensions() != dims {
                return Err(StoreError::EmbedderMismatch {
                    tenant: tenant.clone(),
                    tenant_model: state.model().clone(),
                    given: model,
                });
            }
            let gate = state.erased.read();
            if *gate {
                // Erased while we looked it up: start over with a fresh tenant.
                drop(gate);
                continue;
            }
            let result = self.write_episodes(&state, &episodes, &vectors);
            drop(gate);
            self.indexer.notify(&state);
            if result.as_ref().is_ok_and(|r| r.iter().any(|s| s.inserted)) {
                self.changed(tenant);
            }
            return result;
        }
    }

    pub(super) fn write_episodes(
        &self,
        state: &TenantState,
        episodes: &[NewEpisode],
        vectors: &[Embedding],
    ) -> Result<Vec<Stored>, StoreError> {
        let key = state
            .current_key()
            .ok_or_else(|| StoreError::Crypto(format!("tenant {} has no key", state.id)))?;
        let now = self.clock.now();
        let stamp = self.next_stamp();
        let mut writes = Vec::with_capacity(episodes.len());
        let mut metas = Vec::with_capacity(episodes.len());
        for (e, v) in episodes.iter().zip(vectors) {
            let id = e.id.unwrap_or_else(|| mint_episode_id(now));
            let row = self.seal_row(&key, id, e, v, now, &stamp)?;
            metas.push((
                id,
                EpisodeFacts {
                    reward: row.reward,
                    success: row.success,
                    created: row.created,
                },
            ));
            writes.push(Write::PutEpisode {
                tenant: state.id.clone(),
                row,
                origin: self.hub.clone(),
            });
        }
        writes.push(Write::ClockAtLeast { hlc: stamp.hlc });
        let inserted = self.commit.submit(writes)?;
        let mut out = Vec::with_capacity(metas.len());
        for (((id, meta), v), inserted) in metas.into_iter().zip(vectors).zip(inserted) {
            if inserted {
                state.index.insert(id, &v.model, &v.vector, meta)?;
            }
            out.push(Stored { id, inserted });
        }
        Ok(out)
    }

    pub(super) fn seal_row(
        &self,
        key: &TenantKey,
        id: EpisodeId,
        e: &NewEpisode,
        v: &Embedding,
        now: Timestamp,
        stamp: &Stamp,
    ) -> Result<StoredEpisode, StoreError> {
        let body = Body {
            agent: e.agent.clone(),
            session: e.session,
            task: e.task.clone(),
            input: e.input.clone(),
            output: e.output.clone(),
            critique: e.critique.clone(),
            tags: e.tags.clone(),
            metadata_json: agentdb_core::metadata_to_text(&e.metadata),
            tokens_used: e.tokens_used,
            latency_ms: e.latency_ms,
            origin: self.config.origin.clone(),
        };
        Ok(StoredEpisode {
            id,
            created: now,
            reward: e.reward,
            success: e.reward >= self.config.success_threshold,
            task_hash: key.keyed_hash(normalize_task(&e.task).as_bytes()),
            model: v.model.clone(),
            deleted: None,
            stamps: RowStamps::all(stamp.clone()),
            sealed_body: body::seal_body(key, &id, &body)?,
            sealed_vector: body::seal_vector(key, &id, &v.vector)?,
            expires_at: e.expires_at,
        })
    }

    /// Deletes an episode, leaving a tombstone so that a later copy of it (a retried write, a
    /// replica) cannot bring it back. Returns whether it was live.
    pub fn delete(&self, tenant: &TenantId, id: &EpisodeId) -> Result<bool, ReadError> {
        let was_live = self.delete_episodes(tenant, std::slice::from_ref(id))?;
        Ok(was_live.first().copied().unwrap_or(false))
    }

    /// Deletes episodes of `tenant` in one commit, each as [`Self::delete`] does (a tombstone
    /// and an op of this store, so the deletes replicate). Returns, per id, whether it was
    /// live.
    pub(super) fn delete_episodes(
        &self,
        tenant: &TenantId,
        ids: &[EpisodeId],
    ) -> Result<Vec<bool>, ReadError> {
        loop {
            let Some(state) = self.tenant(tenant) else {
                return Ok(vec![false; ids.len()]);
            };
            let gate = state.erased.read();
            if *gate {
                // Erased (then the lookup finds nothing) or replaced by a re-index (then it
                // finds the successor): look again.
                continue;
            }
            let _merge = state.merge.lock();
            let was_live: Vec<bool> = self
                .storage
                .episodes(tenant, ids)?
                .into_iter()
                .map(|row| row.is_some_and(|row| row.deleted.is_none()))
                .collect();
            let stamp = self.next_stamp();
            let mut writes: Vec<Write> = ids
                .iter()
                .map(|id| Write::Tombstone {
                    tenant: tenant.clone(),
                    id: *id,
                    stamp: stamp.clone(),
                    model: state.model().clone(),
                    origin: self.hub.clone(),
                })
                .collect();
            writes.push(Write::ClockAtLeast { hlc: stamp.hlc });
            let flags = self.commit.submit(writes)?;
            for id in ids {
                state.index.remove(id);
            }
            let tombstoned = flags.iter().take(ids.len()).filter(|f| **f).count() as u64;
            if tombstoned > 0 {
                state.tombstones.fetch_add(tombstoned, Ordering::Relaxed);
                self.changed(tenant);
            }
            return Ok(was_live);
        }
    }
}

/// The text an episode is embedded from: what was asked and on what.
pub(super) fn embedding_text(task: &str, input: &str) -> String {
    if input.is_empty() {
        task.to_owned()
    } else {
        format!("{task}\n{input}")
    }
}

/// Tasks that differ only in case or spacing count as the same task.
pub(super) fn normalize_task(task: &str) -> String {
    task.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new episode id: `now` and 80 random bits (UUIDv7 layout, so ids sort by creation time).
/// The engine and agents mint ids with this one function.
pub fn mint_episode_id(now: Timestamp) -> EpisodeId {
    let mut random = [0u8; 10];
    random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
    EpisodeId::from_parts(now.unix_ms(), random)
}
