//! This store's side of federation: updates of mutable fields, the op log as the replication
//! protocol reads it, applying replicated ops, tombstone collection, and what peer hubs are
//! known to hold (the records tombstone collection waits on).
//!
//! Rows carry the merge stamps of `agentdb_core::replica` in the clear (`RowStamps`, the
//! delete stamp); the registers' values live in the row (reward) and the sealed body
//! (critique, tags, metadata). Merging opens the row, joins its [`ReplicaState`] with the incoming one
//! and, when that changed anything, seals the result again. All of it happens under the
//! tenant's merge lock, so read-modify-write cycles of one tenant never interleave.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use agentdb_core::{
    validate_vector, AppliedOps, Embedding, EpisodeContent, EpisodeError, EpisodeId, EpisodeUpdate,
    HubId, Limits, LiveEpisode, Lww, NewEpisode, Op, Region, ReplicaState, Stamp, TenantId,
    Timestamp, VersionVector,
};

use super::body::{self, Body};
use super::tenant::TenantState;
use super::{embedding_text, normalize_task, MemoryEngine};
use crate::error::{ReadError, ReplicaError, StoreError};
use crate::index::EpisodeFacts;
use crate::storage::{OpSeq, PeerAck, RowStamps, StoredEpisode, Write};

impl MemoryEngine {
    /// The tenant's version vector: per origin hub, the highest op it holds.
    pub fn version_vector(&self, tenant: &TenantId) -> Result<VersionVector, ReadError> {
        Ok(self.storage.version_vector(tenant)?)
    }

    /// Now, by the engine's clock (the one its stamps are made from).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// About how many tombstones `tenant` holds: 0 only when it holds none.
    pub fn tombstone_count(&self, tenant: &TenantId) -> u64 {
        self.tenant(tenant)
            .map_or(0, |state| state.tombstones.load(Ordering::Relaxed))
    }

    /// Every peer hub this store's hub has linked with (see [`Self::record_peer`]) as
    /// tombstone collection sees it for `tenant`: its region and the ops of the tenant it has
    /// acknowledged holding (empty when none yet). Kept across restarts and erasure.
    pub fn peer_acks(&self, tenant: &TenantId) -> Result<BTreeMap<HubId, PeerAck>, ReadError> {
        let mut acks: BTreeMap<HubId, VersionVector> =
            self.storage.peer_acks(tenant)?.into_iter().collect();
        Ok(self
            .storage
            .peers()?
            .into_iter()
            .map(|(peer, region)| {
                let acked = acks.remove(&peer).unwrap_or_default();
                (peer, PeerAck { region, acked })
            })
            .collect())
    }

    /// The peer hubs this store's hub has linked with (see [`Self::record_peer`]), and their
    /// regions.
    pub fn peers(&self) -> Result<BTreeMap<HubId, Region>, ReadError> {
        Ok(self.storage.peers()?.into_iter().collect())
    }

    /// Records, durably, that this store's hub links with hub `peer` in `region`. From then
    /// on tombstone collection waits for `peer` to acknowledge every op of a tombstone of any
    /// tenant its region may hold, whether it is linked or not. Returns whether anything
    /// changed.
    pub fn record_peer(&self, peer: &HubId, region: &Region) -> Result<bool, ReplicaError> {
        let known = self
            .storage
            .peers()?
            .into_iter()
            .any(|(p, r)| p == *peer && r == *region);
        if known {
            return Ok(false);
        }
        let flags = self.commit.submit(vec![Write::KnowPeer {
            peer: peer.clone(),
            region: region.clone(),
        }])?;
        Ok(flags.first().copied().unwrap_or(false))
    }

    /// Records, durably and in one commit, that hub `peer` in `region` (recorded as by
    /// [`Self::record_peer`]) has acknowledged holding at least the given ops of each tenant
    /// listed. An acknowledgement only grows (pointwise maximum); only those that grow are
    /// written. Returns how many records changed.
    pub fn record_peer_acks(
        &self,
        peer: &HubId,
        region: &Region,
        acked: &[(TenantId, VersionVector)],
    ) -> Result<usize, ReplicaError> {
        let mut writes = Vec::new();
        let known = self
            .storage
            .peers()?
            .into_iter()
            .any(|(p, r)| p == *peer && r == *region);
        if !known {
            writes.push(Write::KnowPeer {
                peer: peer.clone(),
                region: region.clone(),
            });
        }
        for (tenant, vv) in acked.iter().filter(|(_, vv)| !vv.is_empty()) {
            let held = self
                .storage
                .peer_acks(tenant)?
                .into_iter()
                .find_map(|(p, acked)| (p == *peer).then_some(acked))
                .unwrap_or_default();
            if vv.missing_from(&held).next().is_some() {
                writes.push(Write::JoinPeerAck {
                    tenant: tenant.clone(),
                    peer: peer.clone(),
                    acked: vv.clone(),
                });
            }
        }
        if writes.is_empty() {
            return Ok(0);
        }
        let flags = self.commit.submit(writes)?;
        Ok(flags.into_iter().filter(|f| *f).count())
    }

    /// Forgets hub `peer` and what it acknowledged, of every tenant: for a hub that has left
    /// the federation for good (tombstone collection would wait for it forever). A hub that
    /// links again is recorded again. Returns whether it was known.
    pub fn forget_peer(&self, peer: &HubId) -> Result<bool, ReplicaError> {
        let flags = self
            .commit
            .submit(vec![Write::ForgetPeer { peer: peer.clone() }])?;
        Ok(flags.first().copied().unwrap_or(false))
    }

    /// Changes an episode's mutable fields (reward, critique, tags, metadata) — last writer
    /// wins across hubs. New metadata replaces the old as a whole; it must be a JSON object
    /// within the metadata limit. Returns false when the episode is not live here (unknown or deleted).
    pub fn update(
        &self,
        tenant: &TenantId,
        id: &EpisodeId,
        update: &EpisodeUpdate,
    ) -> Result<bool, ReplicaError> {
        validate_update(update, &self.config.limits).map_err(StoreError::Invalid)?;
        // Metadata is kept as compact JSON, however the caller wrote it.
        let normalized;
        let update = match &update.metadata_json {
            Some(text) => {
                normalized = EpisodeUpdate {
                    metadata_json: Some(compact_metadata(text)?),
                    ..update.clone()
                };
                &normalized
            }
            None => update,
        };
        loop {
            let Some(state) = self.tenant(tenant) else {
                return Ok(false);
            };
            let gate = state.erased.read();
            if *gate {
                continue;
            }
            let _merge = state.merge.lock();
            // An episode past its expiry is gone for readers; it is gone for writers too.
            let now = self.clock.now();
            let row = match self.storage.episode(tenant, id)? {
                Some(row) if row.deleted.is_none() && !row.is_expired(now) => row,
                _ => return Ok(false),
            };
            if update.is_empty() {
                return Ok(true);
            }
            let ReplicaState::Live(mut live) = row_state(&state, &row, false)? else {
                return Ok(false);
            };
            let stamp = self.next_stamp();
            live.update(update, &stamp);
            let (new, _) = self.state_row(&state, Some(&row), *id, &ReplicaState::Live(live))?;
            self.commit.submit(vec![
                Write::Merge {
                    tenant: tenant.clone(),
                    id: *id,
                    row: Some(new.clone()),
                    op: OpSeq::Next(self.hub.clone()),
                },
                Write::ClockAtLeast { hlc: stamp.hlc },
            ])?;
            self.index_row(&state, &new, None)?;
            drop(_merge);
            drop(gate);
            self.changed(tenant);
            return Ok(true);
        }
    }

    /// Ops of `tenant` that `known` does not cover, each origin's in sequence order from
    /// right after `known`'s entry, at most `limit` ops and about `max_bytes` (at least one op
    /// when any is missing). Each op carries the episode's current state here.
    pub fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, ReadError> {
        let Some(state) = self.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let vv = self.storage.version_vector(tenant)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // An op whose episode has no row here (its tombstone was collected, or it was erased)
        // goes without a state: the peer advances past it and deletes a copy it still holds.
        for (origin, from, to) in vv.missing_from(known) {
            let room = limit.saturating_sub(out.len());
            let want = usize::try_from(to - from).unwrap_or(usize::MAX).min(room);
            for (seq, id) in self.storage.ops(tenant, origin, from, want)? {
                let op_state = match self.storage.episode(tenant, &id)? {
                    Some(row) => Some(row_state(&state, &row, true)?),
                    None => None,
                };
                let op = Op {
                    origin: origin.clone(),
                    seq,
                    episode: id,
                    state: op_state,
                };
                let size = op.approx_size();
                if !out.is_empty() && bytes + size > max_bytes {
                    return Ok(out);
                }
                bytes += size;
                out.push(op);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Applies a page of ops received from another hub, durably (one commit) and in order. An
    /// op is applied only when it is the next of its origin; the others are skipped. An op
    /// stamped more than the skew bound ahead of `now_ms` is refused (reported in `skew`), and
    /// with it the rest of its origin's ops; other origins' ops still apply.
    pub fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        now_ms: u64,
    ) -> Result<AppliedOps, ReplicaError> {
        // Refuse bad content before anything changes (a join of valid states is valid).
        for op in ops {
            if let Some(ReplicaState::Live(live)) = &op.state {
                self.validate_live(op.episode, live)?;
            }
        }
        // Erasure orders: an op carrying an episode one of them erased stores nothing.
        let orders = self.orders_for(tenant)?;
        if self.tenant(tenant).is_none() {
            // Nothing held here (or only the op log of an erased tenant): a tenant is created
            // only when one of the ops applies.
            let vv = self.storage.version_vector(tenant)?;
            if !ops.iter().any(|op| op.seq == vv.get(&op.origin) + 1) {
                return Ok(AppliedOps {
                    vv,
                    applied: 0,
                    newest_ms: None,
                    skew: None,
                });
            }
        }
        loop {
            let state = match self.tenant(tenant) {
                Some(s) => s,
                None => self.tenant_or_create(
                    tenant,
                    self.embedder.model(),
                    self.embedder.dimensions(),
                )?,
            };
            let gate = state.erased.read();
            if *gate {
                continue;
            }
            let merge = state.merge.lock();
            let mut vv = self.storage.version_vector(tenant)?;
            // Rows as this page leaves them, so that two ops of one episode build on each other.
            let mut rows: HashMap<EpisodeId, StoredEpisode> = HashMap::new();
            // Vectors sealed in this page, so that indexing need not open them again.
            let mut vectors: HashMap<EpisodeId, Vec<f32>> = HashMap::new();
            let mut writes = Vec::new();
            let mut touched = Vec::new();
            let mut new_tombstones = 0u64;
            let mut out = AppliedOps {
                vv: VersionVector::new(),
                applied: 0,
                newest_ms: None,
                skew: None,
            };
            for op in ops {
                if op.seq != vv.get(&op.origin) + 1 {
                    continue;
                }
                let mut new_row = None;
                let erased = match &op.state {
                    Some(ReplicaState::Live(live)) => Self::erased_by_order(&orders, live),
                    _ => false,
                };
                if op.state.is_none() || erased {
                    // The sender collected the episode's tombstone: the episode was deleted,
                    // and every hub the sender knows to hold the tenant had the delete. A copy
                    // still live here (a hub it did not know of) is deleted too, with a
                    // tombstone stamped with the copy's latest stamp (the delete's own stamp
                    // is gone): it keeps the episode deleted and is collected in turn.
                    let current = match rows.get(&op.episode) {
                        Some(row) => Some(row.clone()),
                        None => self.storage.episode(tenant, &op.episode)?,
                    };
                    if let Some(row) = current.filter(|r| r.deleted.is_none()) {
                        let stamp = latest_stamp(&row.stamps);
                        let (row, _) = self.state_row(
                            &state,
                            Some(&row),
                            op.episode,
                            &ReplicaState::Deleted(stamp),
                        )?;
                        new_tombstones += 1;
                        rows.insert(op.episode, row.clone());
                        touched.push(op.episode);
                        new_row = Some(row);
                    }
                }
                if let Some(incoming) = op.state.as_ref().filter(|_| !erased) {
                    let stamp = incoming.max_stamp().hlc;
                    if let Err(skew) = self.hlc.lock().observe(stamp, now_ms) {
                        // This origin's later ops now lie beyond a gap and are skipped;
                        // other origins' ops still apply.
                        out.skew.get_or_insert(skew);
                        continue;
                    }
                    out.newest_ms = out.newest_ms.max(Some(stamp.wall_ms));
                    let current = match rows.get(&op.episode) {
                        Some(row) => Some(row.clone()),
                        None => self.storage.episode(tenant, &op.episode)?,
                    };
                    let merged = match &current {
                        None => Some(incoming.clone()),
                        Some(row) => {
                            let here = row_state(&state, row, false)?;
                            let joined = here.clone().join(incoming);
                            (joined != here).then_some(joined)
                        }
                    };
                    if let Some(merged) = merged {
                        if merged.is_deleted()
                            && current.as_ref().is_none_or(|r| r.deleted.is_none())
                        {
                            new_tombstones += 1;
                        }
                        let (row, vector) =
                            self.state_row(&state, current.as_ref(), op.episode, &merged)?;
                        if let Some(v) = vector {
                            vectors.insert(op.episode, v);
                        }
                        rows.insert(op.episode, row.clone());
                        touched.push(op.episode);
                        new_row = Some(row);
                    }
                }
                vv.advance(&op.origin, op.seq);
                writes.push(Write::Merge {
                    tenant: tenant.clone(),
                    id: op.episode,
                    row: new_row,
                    op: OpSeq::Exactly(op.origin.clone(), op.seq),
                });
                out.applied += 1;
            }
            if !writes.is_empty() {
                writes.push(Write::ClockAtLeast {
                    hlc: self.hlc.lock().last(),
                });
                self.commit.submit(writes)?;
                state
                    .tombstones
                    .fetch_add(new_tombstones, Ordering::Relaxed);
            }
            let mut seen = HashSet::new();
            for id in touched {
                if seen.insert(id) {
                    if let Some(row) = rows.get(&id) {
                        self.index_row(&state, row, vectors.get(&id).map(Vec::as_slice))?;
                    }
                }
            }
            drop(merge);
            drop(gate);
            self.indexer.notify(&state);
            if out.applied > 0 {
                self.changed(tenant);
            }
            out.vv = vv;
            return Ok(out);
        }
    }

    /// Removes the tombstones of `tenant` deleted before `deleted_before` whose ops are all
    /// covered by `acked` (what every linked hub has acknowledged holding). Returns how many
    /// were removed. Their op-log entries stay; they replicate as "collected" (no state).
    pub fn collect_tombstones(
        &self,
        tenant: &TenantId,
        acked: &VersionVector,
        deleted_before: Timestamp,
    ) -> Result<u64, ReplicaError> {
        let Some(state) = self.tenant(tenant) else {
            return Ok(0);
        };
        let counted_at_start = state.tombstones.load(Ordering::Relaxed);
        if counted_at_start == 0 {
            return Ok(0);
        }
        let gate = state.erased.read();
        if *gate {
            return Ok(0);
        }
        // No merge lock: every op of a candidate is acknowledged, so every linked hub holds its
        // tombstone; an op arriving meanwhile cannot make it live again, and the storage
        // removes a row only while it is still a tombstone.
        let vv = self.storage.version_vector(tenant)?;
        let mut pending = HashSet::new();
        for (origin, from, to) in vv.missing_from(acked) {
            let n = usize::try_from(to - from).unwrap_or(usize::MAX);
            for (_, id) in self.storage.ops(tenant, origin, from, n)? {
                pending.insert(id);
            }
        }
        let mut writes = Vec::new();
        let mut seen = 0u64;
        self.storage.scan_episodes(tenant, &mut |row| {
            seen += u64::from(row.deleted.is_some());
            if row
                .deleted
                .as_ref()
                .is_some_and(|s| s.hlc.wall() < deleted_before)
                && !pending.contains(&row.id)
            {
                writes.push(Write::CollectTombstone {
                    tenant: tenant.clone(),
                    id: row.id,
                });
            }
            ControlFlow::Continue(())
        })?;
        let removed = if writes.is_empty() {
            0
        } else {
            let flags = self.commit.submit(writes)?;
            flags.into_iter().filter(|f| *f).count() as u64
        };
        // The count becomes what the scan saw, less what was removed, plus what arrived since.
        let arrived = state
            .tombstones
            .load(Ordering::Relaxed)
            .saturating_sub(counted_at_start);
        state
            .tombstones
            .store(seen.saturating_sub(removed) + arrived, Ordering::Relaxed);
        Ok(removed)
    }

    /// The row holding `new`, given the episode's current row, and the vector it sealed when
    /// it sealed one. A row whose content is unchanged keeps its sealed vector (and the key
    /// version it was sealed with).
    pub(super) fn state_row(
        &self,
        state: &TenantState,
        current: Option<&StoredEpisode>,
        id: EpisodeId,
        new: &ReplicaState,
    ) -> Result<(StoredEpisode, Option<Vec<f32>>), ReplicaError> {
        let live = match new {
            ReplicaState::Deleted(stamp) => {
                let row = match current {
                    Some(row) => row.clone().into_tombstone(stamp.clone()),
                    None => StoredEpisode::new_tombstone(id, stamp.clone(), state.model().clone()),
                };
                return Ok((row, None));
            }
            ReplicaState::Live(live) => live,
        };
        let same_content =
            current.filter(|row| row.deleted.is_none() && row.stamps.created == live.created);
        let (key, model, sealed_vector, vector) = match same_content {
            Some(row) => (
                state.key_for(row)?,
                row.model.clone(),
                row.sealed_vector.clone(),
                None,
            ),
            None => {
                let key = state
                    .current_key()
                    .ok_or_else(|| StoreError::Crypto(format!("tenant {} has no key", state.id)))?;
                let vector = self.vector_for(state, id, &live.content)?;
                let sealed = body::seal_vector(&key, &id, &vector)?;
                (key, state.model().clone(), sealed, Some(vector))
            }
        };
        let c = &live.content;
        let body = Body {
            agent: c.agent.clone(),
            session: c.session,
            task: c.task.clone(),
            input: c.input.clone(),
            output: c.output.clone(),
            critique: live.critique.value.clone(),
            tags: live.tags.value.clone(),
            metadata_json: live.metadata.value.clone(),
            tokens_used: c.tokens_used,
            latency_ms: c.latency_ms,
            origin: c.origin.clone(),
        };
        let row = StoredEpisode {
            id,
            created: c.created,
            reward: live.reward.value,
            success: live.reward.value >= self.config.success_threshold,
            task_hash: key.keyed_hash(normalize_task(&c.task).as_bytes()),
            model,
            deleted: None,
            stamps: RowStamps {
                created: live.created.clone(),
                reward: live.reward.stamp.clone(),
                critique: live.critique.stamp.clone(),
                tags: live.tags.stamp.clone(),
                metadata: live.metadata.stamp.clone(),
            },
            sealed_body: body::seal_body(&key, &id, &body)?,
            sealed_vector,
            expires_at: c.expires_at,
        };
        Ok((row, vector))
    }

    /// The vector to store for replicated content: the sender's when it is of the tenant's
    /// model, else this store's embedding of the text (when this store embeds with the
    /// tenant's model).
    fn vector_for(
        &self,
        state: &TenantState,
        id: EpisodeId,
        content: &EpisodeContent,
    ) -> Result<Vec<f32>, ReplicaError> {
        if let Some(e) = &content.embedding {
            if &e.model == state.model() && e.vector.len() == state.index.dimensions() {
                validate_vector(&e.vector, &self.config.limits).map_err(StoreError::Invalid)?;
                return Ok(e.vector.clone());
            }
        }
        if self.embedder.model() == state.model() {
            let text = embedding_text(&content.task, &content.input);
            return Ok(self.embedder.embed(&text).map_err(StoreError::Embed)?);
        }
        Err(ReplicaError::Invalid {
            id,
            reason: format!(
                "tenant {} is bound to model {}, the episode carries no vector of it and this \
                 store embeds with {}",
                state.id,
                state.model(),
                self.embedder.model()
            ),
        })
    }

    /// Checks replicated content against this store's limits.
    fn validate_live(&self, id: EpisodeId, live: &LiveEpisode) -> Result<(), ReplicaError> {
        let invalid = |reason: String| ReplicaError::Invalid { id, reason };
        let c = &live.content;
        // The metadata register is what is stored; the content carries it only before the
        // episode is created (empty after), and is held to the same rule.
        if !c.metadata_json.is_empty() {
            let content_metadata = agentdb_core::metadata_from_text(&c.metadata_json)
                .map_err(|e| invalid(e.to_string()))?;
            if !content_metadata.is_object() {
                return Err(invalid(EpisodeError::MetadataNotObject.to_string()));
            }
        }
        let metadata = agentdb_core::metadata_from_text(&live.metadata.value)
            .map_err(|e| invalid(e.to_string()))?;
        let episode = NewEpisode {
            id: Some(id),
            agent: c.agent.clone(),
            session: c.session,
            task: c.task.clone(),
            input: c.input.clone(),
            output: c.output.clone(),
            reward: live.reward.value,
            critique: live.critique.value.clone(),
            tags: live.tags.value.clone(),
            metadata,
            tokens_used: c.tokens_used,
            latency_ms: c.latency_ms,
            embedding: None,
            expires_at: c.expires_at,
        };
        // Every field is held to this hub's limits, as the origin held it to its own; the
        // episode's total size is not: the origin counted it before embedding, and updates
        // (critique, tags) may have grown it since. Refusing what the origin accepted would
        // hold the tenant back on the link for good.
        let limits = Limits {
            max_episode_bytes: usize::MAX,
            ..self.config.limits
        };
        episode
            .validate(&limits)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(e) = &c.embedding {
            validate_vector(&e.vector, &limits).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// Brings the tenant's index in line with a row just written; `vector` is the row's vector
    /// when the caller has it in the clear.
    pub(super) fn index_row(
        &self,
        state: &TenantState,
        row: &StoredEpisode,
        vector: Option<&[f32]>,
    ) -> Result<(), ReplicaError> {
        if row.deleted.is_some() {
            state.index.remove(&row.id);
            return Ok(());
        }
        let facts = EpisodeFacts {
            reward: row.reward,
            success: row.success,
            created: row.created,
        };
        if state.index.contains(&row.id) {
            state.index.set_facts(&row.id, facts);
        } else if &row.model == state.model() {
            let opened;
            let vector = match vector {
                Some(v) => v,
                None => {
                    opened = body::open_vector(&*state.key_for(row)?, row)?;
                    &opened
                }
            };
            state
                .index
                .insert(row.id, &row.model, vector, facts)
                .map_err(StoreError::Index)?;
        }
        Ok(())
    }
}

/// The latest of a live row's stamps (content and registers).
fn latest_stamp(stamps: &RowStamps) -> Stamp {
    stamps.latest().clone()
}

/// The replicated state a row holds; the vector is opened only when asked for.
pub(super) fn row_state(
    state: &TenantState,
    row: &StoredEpisode,
    with_vector: bool,
) -> Result<ReplicaState, ReadError> {
    if let Some(stamp) = &row.deleted {
        return Ok(ReplicaState::Deleted(stamp.clone()));
    }
    let key = state.key_for(row)?;
    let body = body::open_body(&key, row)?;
    let embedding = if with_vector {
        Some(Embedding {
            model: row.model.clone(),
            vector: body::open_vector(&key, row)?,
        })
    } else {
        None
    };
    Ok(ReplicaState::Live(Box::new(LiveEpisode {
        created: row.stamps.created.clone(),
        content: EpisodeContent {
            agent: body.agent,
            session: body.session,
            task: body.task,
            input: body.input,
            output: body.output,
            // Held by the metadata register.
            metadata_json: String::new(),
            tokens_used: body.tokens_used,
            latency_ms: body.latency_ms,
            created: row.created,
            origin: body.origin,
            embedding,
            expires_at: row.expires_at,
        },
        reward: Lww::new(row.stamps.reward.clone(), row.reward),
        critique: Lww::new(row.stamps.critique.clone(), body.critique),
        tags: Lww::new(row.stamps.tags.clone(), body.tags),
        metadata: Lww::new(row.stamps.metadata.clone(), body.metadata_json),
    })))
}

/// Metadata of an update (checked by [`validate_update`]) as compact JSON.
fn compact_metadata(text: &str) -> Result<String, StoreError> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| agentdb_core::metadata_to_text(&v))
        .map_err(|_| StoreError::Invalid(EpisodeError::MetadataNotObject))
}

/// Checks an update against the limits new episodes meet.
fn validate_update(update: &EpisodeUpdate, limits: &Limits) -> Result<(), EpisodeError> {
    if update.reward.is_some_and(|r| !r.is_finite()) {
        return Err(EpisodeError::NonFiniteReward);
    }
    if let Some(Some(c)) = &update.critique {
        if c.len() > limits.max_text_bytes {
            return Err(EpisodeError::TooLarge {
                field: "critique",
                len: c.len(),
                limit: limits.max_text_bytes,
            });
        }
    }
    if let Some(tags) = &update.tags {
        if tags.len() > limits.max_tags {
            return Err(EpisodeError::TooLarge {
                field: "tags",
                len: tags.len(),
                limit: limits.max_tags,
            });
        }
        if let Some(t) = tags.iter().find(|t| t.len() > limits.max_tag_bytes) {
            return Err(EpisodeError::TooLarge {
                field: "tag",
                len: t.len(),
                limit: limits.max_tag_bytes,
            });
        }
    }
    if let Some(text) = &update.metadata_json {
        // An object, no larger than a new episode's (counted as compact JSON).
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| EpisodeError::MetadataNotObject)?;
        if !value.is_object() {
            return Err(EpisodeError::MetadataNotObject);
        }
        let len = agentdb_core::metadata_to_text(&value).len();
        if len > limits.max_metadata_bytes {
            return Err(EpisodeError::TooLarge {
                field: "metadata",
                len,
                limit: limits.max_metadata_bytes,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agentdb_core::NewEpisode;
    use agentdb_security::MasterKey;

    use super::*;
    use crate::storage::{MemStorage, Storage};
    use crate::{EngineConfig, ManualClock};

    fn hub(name: &str) -> HubId {
        HubId::new(name).unwrap_or_else(|_| unreachable!())
    }

    fn open(storage: &Arc<MemStorage>, name: &str) -> MemoryEngine {
        let storage: Arc<dyn Storage> = storage.clone();
        MemoryEngine::builder(storage, MasterKey::from_bytes([3; 32]))
            .clock(Arc::new(ManualClock::new(Timestamp(1_700_000_000_000))))
            .config(EngineConfig {
                origin: Some(hub(name)),
                ..EngineConfig::default()
            })
            .open()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_collected_op_deletes_a_copy_held_live() {
        let storage = Arc::new(MemStorage::new());
        let b = open(&storage, "b");
        let t = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        let id = b
            .store(&t, NewEpisode::new("task", "in", "out", 0.5))
            .unwrap_or_else(|e| panic!("{e}"))
            .id;
        // Hub a deleted the episode and collected the tombstone: its ops come as collected.
        let collected = Op {
            origin: hub("a"),
            seq: 1,
            episode: id,
            state: None,
        };
        let out = b
            .apply_ops(&t, std::slice::from_ref(&collected), 1_700_000_000_000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.applied, 1);
        assert!(b.get(&t, &id).unwrap_or_else(|e| panic!("{e}")).is_none());
        let row = storage
            .episode(&t, &id)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no tombstone"));
        assert!(row.deleted.is_some());
        assert_eq!(b.tombstone_count(&t), 1);
        // The copy's ops now carry the tombstone to hubs that lack them.
        let ops = b
            .ops_since(&t, &VersionVector::new(), 10, usize::MAX)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ops
            .iter()
            .all(|op| op.state.as_ref().is_some_and(ReplicaState::is_deleted)));
        // A duplicate changes nothing.
        let again = b
            .apply_ops(&t, &[collected], 1_700_000_000_000)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.applied, 0);
    }

    #[test]
    fn peers_and_their_acknowledgements_survive_a_restart_until_forgotten() {
        let storage = Arc::new(MemStorage::new());
        let engine = open(&storage, "root");
        let t = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        let (eu, us) = (
            Region::new("eu").unwrap_or_else(|_| unreachable!()),
            Region::new("us").unwrap_or_else(|_| unreachable!()),
        );
        let vv = |n| [(hub("root"), n)].into_iter().collect::<VersionVector>();
        assert_eq!(engine.record_peer(&hub("spoke-us"), &us).ok(), Some(true));
        assert_eq!(engine.record_peer(&hub("spoke-us"), &us).ok(), Some(false));
        let acked = [(t.clone(), vv(3))];
        assert_eq!(
            engine.record_peer_acks(&hub("spoke-eu"), &eu, &acked).ok(),
            Some(2)
        );
        // Behind what is recorded: nothing is written.
        let behind = [(t.clone(), vv(2))];
        assert_eq!(
            engine.record_peer_acks(&hub("spoke-eu"), &eu, &behind).ok(),
            Some(0)
        );
        drop(engine);

        let engine = open(&storage, "root");
        let peers = engine.peer_acks(&t).unwrap_or_else(|e| panic!("{e}"));
        let expected: BTreeMap<HubId, PeerAck> = [
            (
                hub("spoke-eu"),
                PeerAck {
                    region: eu.clone(),
                    acked: vv(3),
                },
            ),
            (
                hub("spoke-us"),
                PeerAck {
                    region: us.clone(),
                    acked: VersionVector::new(),
                },
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(peers, expected);
        assert_eq!(engine.forget_peer(&hub("spoke-eu")).ok(), Some(true));
        assert_eq!(engine.forget_peer(&hub("spoke-eu")).ok(), Some(false));
        let left: Vec<HubId> = engine
            .peer_acks(&t)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_keys()
            .collect();
        assert_eq!(left, vec![hub("spoke-us")]);
    }
}
