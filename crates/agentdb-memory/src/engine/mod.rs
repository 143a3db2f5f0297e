//! The memory engine: validated, encrypted, tenant-isolated episodes with vector search.
//!
//! A write goes: validate → embed (unless the caller supplied a vector) → seal body and vector
//! under the tenant's current key → group commit (durable on return) → add to the tenant's
//! index. A query goes: embed → search the tenant's index with the filters applied inside the
//! search → read and open the hits.
//!
//! # Changing the embedding model
//!
//! A tenant's index holds vectors of one model, recorded with the data. To move a store to
//! another embedder: open the engine with the new embedder (tenants bound to the old model
//! still open; their text queries fail with `EmbedderMismatch` until re-indexed), then call
//! [`MemoryEngine::reindex`] for every tenant whose [`MemoryEngine::tenant_model`] differs from
//! the engine's embedder. `agentdb reindex` does exactly that.

mod body;
mod commit;
mod indexer;
mod replicate;
mod tenant;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use agentdb_core::{
    validate_vector, Embedding, Episode, EpisodeId, Hlc, HlcClock, HubId, Limits, ModelId,
    NewEpisode, Stamp, TaskCount, TenantId, TenantStats, Timestamp, DEFAULT_MAX_SKEW_MS,
    DEFAULT_SUCCESS_THRESHOLD,
};
use agentdb_security::{Keyring, MasterKey, TenantKey};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::embedder::{EmbedError, Embedder, LexicalEmbedder};
use crate::error::{KeyError, OpenError, QueryError, ReadError, ReindexError, StoreError};
use crate::index::{EpisodeFacts, Filter, IndexConfig, VectorIndex};
use crate::storage::{
    decode_hlc, local_hub, RowError, RowStamps, Storage, StorageError, StoredEpisode, Write,
    CLOCK_META,
};
use body::Body;
use commit::GroupCommit;
use indexer::Indexer;
use tenant::{decode_model, encode_model, TenantState, ERASED_META, MODEL_META};

/// Store-wide setting holding the master-key check value.
const KEY_CHECK_META: &str = "master_key_check";

/// Most episodes in one [`MemoryEngine::store_batch`].
pub const MAX_BATCH: usize = 1000;
/// Largest `k` a query may ask for.
pub const MAX_K: usize = 1000;
/// Episodes re-embedded per storage transaction by [`MemoryEngine::reindex`].
pub const REINDEX_BATCH: usize = 256;

/// Settings of a [`MemoryEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Size limits on episodes.
    pub limits: Limits,
    /// Reward at or above which an episode is a success. Default 0.7.
    pub success_threshold: f64,
    /// Vector index tuning.
    pub index: IndexConfig,
    /// Most write requests sharing one commit. Default 1024.
    pub max_commit_group: usize,
    /// The hub stamped as origin on new episodes, when the engine runs inside a hub. It also
    /// names this store's ops in the replication op log (`local` when unset).
    pub origin: Option<HubId>,
    /// How far ahead of this store's clock a replicated op's stamp may be (ms); ops stamped
    /// further ahead are refused. Default 60 s.
    pub max_clock_skew_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::DEFAULT,
            success_threshold: DEFAULT_SUCCESS_THRESHOLD,
            index: IndexConfig::default(),
            max_commit_group: 1024,
            origin: None,
            max_clock_skew_ms: DEFAULT_MAX_SKEW_MS,
        }
    }
}

/// What a query asks with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryInput {
    /// Text, embedded by the engine's embedder.
    Text(String),
    /// A vector the caller computed.
    Vector(Embedding),
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Text or vector.
    pub input: QueryInput,
    /// How many results at most.
    pub k: usize,
    /// Conditions every result meets.
    pub filter: Filter,
}

impl Query {
    /// A text query for the `k` nearest episodes.
    pub fn text(text: impl Into<String>, k: usize) -> Self {
        Self {
            input: QueryInput::Text(text.into()),
            k,
            filter: Filter::default(),
        }
    }

    /// A vector query for the `k` nearest episodes.
    pub fn vector(embedding: Embedding, k: usize) -> Self {
        Self {
            input: QueryInput::Vector(embedding),
            k,
            filter: Filter::default(),
        }
    }

    /// Sets the filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
}

/// One query result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The episode.
    pub episode: Episode,
    /// Cosine similarity to the query; higher is closer.
    pub score: f32,
}

/// The outcome of storing one episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The episode id (minted by the engine when the writer gave none).
    pub id: EpisodeId,
    /// False when an episode with this id already existed (the write was a retry).
    pub inserted: bool,
}

/// One entry of a tenant's change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// The episode exists (as it is now).
    Put(Box<Episode>),
    /// The episode was deleted.
    Deleted(EpisodeId),
}

/// A page of a tenant's change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePage {
    /// Changes with their sequence numbers, oldest first.
    pub changes: Vec<(u64, Change)>,
    /// The cursor to ask with next time (the last sequence number seen, or the cursor given).
    pub next_cursor: u64,
    /// Whether more changes were waiting beyond this page.
    pub more: bool,
}

/// Most bytes of episode text one change page carries (it must fit in one wire frame).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// What erasing a tenant removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseReport {
    /// Whether the tenant had anything stored.
    pub existed: bool,
    /// Episode rows (live and tombstones) removed.
    pub episodes: u64,
}

/// The memory engine. Cheap to share behind an `Arc`; every method takes `&self` and may be
/// called from many threads at once.
#[derive(Debug)]
pub struct MemoryEngine {
    storage: Arc<dyn Storage>,
    keyring: RwLock<Keyring>,
    embedder: Arc<dyn Embedder>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    tenants: RwLock<HashMap<TenantId, Arc<TenantState>>>,
    creating: Mutex<()>,
    /// The id of this store's ops.
    hub: HubId,
    hlc: Mutex<HlcClock>,
    listeners: Listeners,
    // Declared after `tenants` so that it stops before tenant state is dropped.
    indexer: Indexer,
    commit: GroupCommit,
}

/// Called with a tenant after its episodes changed (stored, updated, deleted or replicated).
pub type ChangeListener = Arc<dyn Fn(&TenantId) + Send + Sync>;

/// The registered change listeners.
#[derive(Default)]
struct Listeners(RwLock<Vec<ChangeListener>>);

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listeners({})", self.0.read().len())
    }
}

/// Builder for [`MemoryEngine::open`].
#[derive(Debug)]
pub struct EngineBuilder {
    storage: Arc<dyn Storage>,
    master_key: MasterKey,
    embedder: Arc<dyn Embedder>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
}

impl EngineBuilder {
    /// Uses `embedder` instead of the default lexical one.
    pub fn embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = embedder;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Opens the engine: checks the master key, unwraps every tenant's keys and rebuilds every
    /// tenant's index from storage.
    pub fn open(self) -> Result<MemoryEngine, OpenError> {
        MemoryEngine::open_with(self)
    }
}

impl MemoryEngine {
    /// Starts building an engine over `storage` with `master_key`.
    pub fn builder(storage: Arc<dyn Storage>, master_key: MasterKey) -> EngineBuilder {
        EngineBuilder {
            storage,
            master_key,
            embedder: Arc::new(LexicalEmbedder::new()),
            clock: Arc::new(SystemClock),
            config: EngineConfig::default(),
        }
    }

    fn open_with(b: EngineBuilder) -> Result<Self, OpenError> {
        let keyring = Keyring::new(&b.master_key)?;
        match b.storage.meta(KEY_CHECK_META)? {
            Some(check) => keyring
                .verify_check_value(&check)
                .map_err(|_| OpenError::WrongMasterKey)?,
            None => {
                let value = keyring.check_value()?;
                b.storage.apply(&[Write::PutMeta {
                    name: KEY_CHECK_META.into(),
                    value,
                }])?;
            }
        }
        let mut tenants = HashMap::new();
        // The clock resumes after every stamp issued or accepted before: the durable
        // high-water mark (a tombstone may have absorbed the stamps of the updates it won
        // over), and the stamps in the rows.
        let mut last_stamp = match b.storage.meta(CLOCK_META)? {
            Some(bytes) => {
                decode_hlc(&bytes).ok_or(OpenError::Storage(StorageError::Row(RowError)))?
            }
            None => Hlc::default(),
        };
        for id in b.storage.tenants()? {
            let state = load_tenant(&*b.storage, &keyring, &b.config, &id, &mut last_stamp)?;
            tenants.insert(id, Arc::new(state));
        }
        let hub = b.config.origin.clone().unwrap_or_else(local_hub);
        let hlc = Mutex::new(HlcClock::resume(last_stamp, b.config.max_clock_skew_ms));
        let engine = Self {
            commit: GroupCommit::start(Arc::clone(&b.storage), b.config.max_commit_group),
            storage: b.storage,
            keyring: RwLock::new(keyring),
            embedder: b.embedder,
            clock: b.clock,
            config: b.config,
            tenants: RwLock::new(tenants),
            creating: Mutex::new(()),
            hub,
            hlc,
            listeners: Listeners::default(),
            indexer: Indexer::start(),
        };
        for t in engine.tenants.read().values() {
            engine.indexer.notify(t);
        }
        Ok(engine)
    }

    /// The id this store's ops carry (the hub's id, or `local`).
    pub fn hub_id(&self) -> &HubId {
        &self.hub
    }

    /// Calls `listener` after every change to a tenant's episodes (from any source).
    pub fn add_change_listener(&self, listener: ChangeListener) {
        self.listeners.0.write().push(listener);
    }

    fn changed(&self, tenant: &TenantId) {
        for l in self.listeners.0.read().iter() {
            l(tenant);
        }
    }

    /// A new stamp of this store, later than every stamp it has issued or accepted.
    fn next_stamp(&self) -> Stamp {
        let hlc = self.hlc.lock().now(self.clock.now().unix_ms());
        Stamp::new(hlc, self.hub.clone())
    }

    /// The embedder used for text.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tenants that have data.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut v: Vec<TenantId> = self.tenants.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// The embedding model `tenant`'s index is bound to, if the tenant has data.
    pub fn tenant_model(&self, tenant: &TenantId) -> Option<ModelId> {
        self.tenant(tenant).map(|t| t.model().clone())
    }

    /// Live episodes across all tenants, from the in-memory indexes (no storage scan).
    pub fn episode_count(&self) -> u64 {
        self.tenants
            .read()
            .values()
            .map(|t| t.index.live_len() as u64)
            .sum()
    }

    fn tenant(&self, tenant: &TenantId) -> Option<Arc<TenantState>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// The tenant's state, creating it (a new key, bound to `model`) on first write.
    fn tenant_or_create(
        &self,
        tenant: &TenantId,
        model: &ModelId,
        dims: usize,
    ) -> Result<Arc<TenantState>, StoreError> {
        if let Some(t) = self.tenant(tenant) {
            return Ok(t);
        }
        let _creating = self.creating.lock();
        if let Some(t) = self.tenant(tenant) {
            return Ok(t);
        }
        let (key, wrapped) = self
            .keyring
            .read()
            .generate(tenant)
            .map_err(|e| StoreError::Crypto(e.to_string()))?;
        self.commit.submit(vec![
            Write::PutTenantKey {
                tenant: tenant.clone(),
                key: wrapped,
            },
            Write::PutTenantMeta {
                tenant: tenant.clone(),
                name: MODEL_META.into(),
                value: encode_model(model, dims),
            },
        ])?;
        let index = VectorIndex::new(model.clone(), dims, self.config.index.clone());
        let state = Arc::new(TenantState::new(tenant.clone(), vec![key], index));
        self.tenants
            .write()
            .insert(tenant.clone(), Arc::clone(&state));
        Ok(state)
    }

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

    fn write_episodes(
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
            let id = e.id.unwrap_or_else(|| mint_id(now));
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

    fn seal_row(
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
        })
    }

    /// The `k` episodes of `tenant` nearest to the query that pass its filter, best first.
    pub fn query(&self, tenant: &TenantId, query: &Query) -> Result<Vec<Match>, QueryError> {
        if query.k == 0 || query.k > MAX_K {
            return Err(QueryError::BadK {
                k: query.k,
                limit: MAX_K,
            });
        }
        let Some(state) = self.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let embedding = match &query.input {
            QueryInput::Text(text) => Embedding {
                model: self.embedder.model().clone(),
                vector: self.embedder.embed(text)?,
            },
            QueryInput::Vector(e) => {
                validate_vector(&e.vector, &self.config.limits)?;
                e.clone()
            }
        };
        if &embedding.model != state.model() {
            return Err(QueryError::EmbedderMismatch {
                tenant: tenant.clone(),
                tenant_model: state.model().clone(),
                given: embedding.model,
            });
        }
        let hits =
            state
                .index
                .search(&embedding.model, &embedding.vector, query.k, &query.filter)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            // A hit deleted since the search is skipped, not an error.
            if let Some(episode) = self.read(&state, &hit.id)? {
                out.push(Match {
                    episode,
                    score: hit.score,
                });
            }
        }
        Ok(out)
    }

    fn read(&self, state: &TenantState, id: &EpisodeId) -> Result<Option<Episode>, ReadError> {
        match self.storage.episode(&state.id, id)? {
            Some(row) if row.deleted.is_none() => {
                let key = state.key_for(&row)?;
                Ok(Some(body::open_episode(&key, &row)?))
            }
            _ => Ok(None),
        }
    }

    /// One live episode of `tenant`.
    pub fn get(&self, tenant: &TenantId, id: &EpisodeId) -> Result<Option<Episode>, ReadError> {
        match self.tenant(tenant) {
            Some(state) => self.read(&state, id),
            None => Ok(None),
        }
    }

    /// Deletes an episode, leaving a tombstone so that a later copy of it (a retried write, a
    /// replica) cannot bring it back. Returns whether it was live.
    pub fn delete(&self, tenant: &TenantId, id: &EpisodeId) -> Result<bool, ReadError> {
        loop {
            let Some(state) = self.tenant(tenant) else {
                return Ok(false);
            };
            let gate = state.erased.read();
            if *gate {
                // Erased (then the lookup finds nothing) or replaced by a re-index (then it
                // finds the successor): look again.
                continue;
            }
            let _merge = state.merge.lock();
            let was_live = self
                .storage
                .episode(tenant, id)?
                .is_some_and(|row| row.deleted.is_none());
            let stamp = self.next_stamp();
            let flags = self.commit.submit(vec![
                Write::Tombstone {
                    tenant: tenant.clone(),
                    id: *id,
                    stamp: stamp.clone(),
                    model: state.model().clone(),
                    origin: self.hub.clone(),
                },
                Write::ClockAtLeast { hlc: stamp.hlc },
            ])?;
            state.index.remove(id);
            if flags.first().copied().unwrap_or(false) {
                state.tombstones.fetch_add(1, Ordering::Relaxed);
                self.changed(tenant);
            }
            return Ok(was_live);
        }
    }

    /// The changes to `tenant` after `cursor` (0 = from the beginning), at most `limit` and at
    /// most [`MAX_PAGE_BYTES`] of episode text per page (but always at least one change).
    pub fn changes_since(
        &self,
        tenant: &TenantId,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage, ReadError> {
        let empty = ChangePage {
            changes: Vec::new(),
            next_cursor: cursor,
            more: false,
        };
        let Some(state) = self.tenant(tenant) else {
            return Ok(empty);
        };
        let limit = limit.clamp(1, MAX_BATCH);
        // One extra entry tells whether more are waiting.
        let log = self.storage.changes(tenant, cursor, limit + 1)?;
        let mut page = ChangePage {
            more: log.len() > limit,
            ..empty
        };
        let mut bytes = 0usize;
        for (seq, id) in log.into_iter().take(limit) {
            let change = match self.read(&state, &id)? {
                Some(e) => {
                    bytes += e.task.len()
                        + e.input.len()
                        + e.output.len()
                        + e.critique.as_ref().map_or(0, String::len);
                    Change::Put(Box::new(e))
                }
                None => Change::Deleted(id),
            };
            if bytes > MAX_PAGE_BYTES && !page.changes.is_empty() {
                page.more = true;
                break;
            }
            page.changes.push((seq, change));
            page.next_cursor = seq;
        }
        Ok(page)
    }

    /// Counts, rates and the most common tasks of `tenant`.
    pub fn stats(&self, tenant: &TenantId) -> Result<TenantStats, ReadError> {
        let Some(state) = self.tenant(tenant) else {
            return Ok(TenantStats {
                episodes: 0,
                deleted: 0,
                success_rate: 0.0,
                avg_reward: 0.0,
                top_tasks: Vec::new(),
                embedding_model: None,
                key_version: 0,
            });
        };
        #[derive(Default)]
        struct Group {
            count: u64,
            reward: f64,
            sample: Option<StoredEpisode>,
        }
        let (mut live, mut deleted, mut successes, mut reward) = (0u64, 0u64, 0u64, 0f64);
        let mut groups: HashMap<[u8; 16], Group> = HashMap::new();
        self.storage.scan_episodes(tenant, &mut |row| {
            if row.deleted.is_some() {
                deleted += 1;
                return ControlFlow::Continue(());
            }
            live += 1;
            successes += u64::from(row.success);
            reward += row.reward;
            let g = groups.entry(row.task_hash).or_default();
            g.count += 1;
            g.reward += row.reward;
            if g.sample.is_none() {
                g.sample = Some(row);
            }
            ControlFlow::Continue(())
        })?;
        // Most frequent first; ties in hash order, so the answer does not depend on map order.
        let mut ranked: Vec<([u8; 16], Group)> = groups.into_iter().collect();
        ranked.sort_by_key(|(hash, g)| (std::cmp::Reverse(g.count), *hash));
        let mut top_tasks = Vec::new();
        for (_, g) in ranked.into_iter().take(5) {
            let Some(row) = g.sample else { continue };
            let key = state.key_for(&row)?;
            top_tasks.push(TaskCount {
                task: body::open_episode(&key, &row)?.task,
                count: g.count,
                avg_reward: g.reward / g.count as f64,
            });
        }
        let ratio = |x: f64| if live == 0 { 0.0 } else { x / live as f64 };
        Ok(TenantStats {
            episodes: live,
            deleted,
            success_rate: ratio(successes as f64),
            avg_reward: ratio(reward),
            top_tasks,
            embedding_model: Some(state.model().clone()),
            key_version: state.current_key().map_or(0, |k| k.version()),
        })
    }

    /// Erases a tenant: its keys are destroyed (crypto-shredding) and its rows deleted in one
    /// durable transaction; its index is dropped. Other tenants are untouched. The tenant's op
    /// log and version vector stay (episode ids and sequence numbers, no content): the ops
    /// this hub accepts afterwards are numbered after the erased ones, and links do not send
    /// the erased ops back. Nor does this hub pass the erased ops on (it has no content for
    /// them): a hub that lacks them gets them, and the later ops of their origins, from
    /// another hub that holds them.
    ///
    /// Storage engines do not overwrite freed pages, so ciphertext (and the wrapped key) may
    /// linger in free space until reused. The wrapped key is only useful together with the
    /// master key; rotating the master key afterwards ([`Self::rewrap_master_key`]) makes any
    /// such remnant permanently unreadable.
    pub fn erase_tenant(&self, tenant: &TenantId) -> Result<EraseReport, ReadError> {
        let _creating = self.creating.lock();
        loop {
            let state = self.tenant(tenant);
            let gate = state.as_ref().map(|s| s.erased.write());
            if gate.as_ref().is_some_and(|g| **g) {
                // Replaced by a re-index while we waited: erase its successor.
                continue;
            }
            let mut episodes = 0u64;
            self.storage.scan_episodes(tenant, &mut |_| {
                episodes += 1;
                ControlFlow::Continue(())
            })?;
            let held = self.storage.version_vector(tenant)?;
            let held = postcard::to_stdvec(&held)
                .map_err(|e| ReadError::Corrupt(format!("version vector: {e}")))?;
            let flags = self.commit.submit(vec![
                Write::EraseTenant {
                    tenant: tenant.clone(),
                },
                Write::PutTenantMeta {
                    tenant: tenant.clone(),
                    name: ERASED_META.into(),
                    value: held,
                },
            ])?;
            if let Some(mut gate) = gate {
                *gate = true;
            }
            if let Some(state) = &state {
                state.keys.write().clear();
            }
            self.tenants.write().remove(tenant);
            return Ok(EraseReport {
                existed: flags.first().copied().unwrap_or(false) || state.is_some(),
                episodes,
            });
        }
    }

    /// Starts a new key version for `tenant`; new records use it, old ones stay readable.
    /// Returns the new version.
    pub fn rotate_tenant_key(&self, tenant: &TenantId) -> Result<u32, KeyError> {
        loop {
            let state = self
                .tenant(tenant)
                .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
            let gate = state.erased.read();
            if *gate {
                // Erased or replaced by a re-index while we waited: look again.
                continue;
            }
            let mut keys = state.keys.write();
            let current = keys
                .values()
                .next_back()
                .cloned()
                .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
            let (key, wrapped) = self.keyring.read().rotate(&current)?;
            self.commit.submit(vec![Write::PutTenantKey {
                tenant: tenant.clone(),
                key: wrapped,
            }])?;
            let version = key.version();
            keys.insert(version, Arc::new(key));
            return Ok(version);
        }
    }

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
    fn reindex_locked(
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

    /// Re-wraps every tenant key under `new_master` and records the new check value, in one
    /// transaction. No record is re-encrypted. After this, only `new_master` opens the store.
    pub fn rewrap_master_key(&self, new_master: &MasterKey) -> Result<(), KeyError> {
        let _creating = self.creating.lock();
        let mut keyring = self.keyring.write();
        let new = Keyring::new(new_master)?;
        let mut writes = Vec::new();
        for tenant in self.storage.tenants()? {
            for wrapped in self.storage.tenant_keys(&tenant)? {
                writes.push(Write::PutTenantKey {
                    key: keyring.rewrap(&new, &tenant, &wrapped)?,
                    tenant: tenant.clone(),
                });
            }
        }
        writes.push(Write::PutMeta {
            name: KEY_CHECK_META.into(),
            value: new.check_value()?,
        });
        self.commit.submit(writes)?;
        *keyring = new;
        Ok(())
    }

    /// Adds every pending vector to the HNSW graphs on the calling thread and returns when none
    /// is pending. Searches are correct without this (pending vectors are scanned exactly); it
    /// exists for benchmarks and tests that want the steady state.
    pub fn build_indexes(&self) -> Result<(), crate::index::IndexError> {
        let tenants: Vec<Arc<TenantState>> = self.tenants.read().values().cloned().collect();
        for t in tenants {
            while t.index.build_pending(4096)? > 0 {}
        }
        Ok(())
    }

    /// The tenant's vector index, for inspection (sizes, exact search as an oracle).
    pub fn index(&self, tenant: &TenantId) -> Option<Arc<VectorIndex>> {
        self.tenant(tenant).map(|t| Arc::clone(&t.index))
    }
}

/// The text an episode is embedded from: what was asked and on what.
fn embedding_text(task: &str, input: &str) -> String {
    if input.is_empty() {
        task.to_owned()
    } else {
        format!("{task}\n{input}")
    }
}

/// Tasks that differ only in case or spacing count as the same task.
fn normalize_task(task: &str) -> String {
    task.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mint_id(now: Timestamp) -> EpisodeId {
    let mut random = [0u8; 10];
    random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
    EpisodeId::from_parts(now.unix_ms(), random)
}

fn load_tenant(
    storage: &dyn Storage,
    keyring: &Keyring,
    config: &EngineConfig,
    id: &TenantId,
    last_stamp: &mut Hlc,
) -> Result<TenantState, OpenError> {
    let fail = |reason: String| OpenError::Tenant {
        tenant: id.clone(),
        reason,
    };
    let mut keys = Vec::new();
    for wrapped in storage.tenant_keys(id)? {
        keys.push(
            keyring
                .unwrap(id, &wrapped)
                .map_err(|e| fail(e.to_string()))?,
        );
    }
    let (model, dims) = storage
        .tenant_meta(id, MODEL_META)?
        .and_then(|b| decode_model(&b))
        .ok_or_else(|| fail("embedding model setting is missing or corrupt".into()))?;
    let state = TenantState::new(
        id.clone(),
        keys,
        VectorIndex::new(model.clone(), dims, config.index.clone()),
    );
    let mut failure = None;
    let mut stale = 0u64;
    storage.scan_episodes(id, &mut |row| {
        let stamps = &row.stamps;
        for s in [
            &stamps.created,
            &stamps.reward,
            &stamps.critique,
            &stamps.tags,
        ]
        .into_iter()
        .chain(row.deleted.as_ref())
        {
            *last_stamp = (*last_stamp).max(s.hlc);
        }
        if row.deleted.is_some() {
            state.tombstones.fetch_add(1, Ordering::Relaxed);
            return ControlFlow::Continue(());
        }
        if row.model != model {
            // Left behind by an interrupted re-index: not searchable until it is finished.
            stale += 1;
            return ControlFlow::Continue(());
        }
        let loaded = state
            .key_for(&row)
            .and_then(|key| body::open_vector(&key, &row))
            .map_err(|e| e.to_string())
            .and_then(|v| {
                let meta = EpisodeFacts {
                    reward: row.reward,
                    success: row.success,
                    created: row.created,
                };
                state
                    .index
                    .insert(row.id, &row.model, &v, meta)
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(fail(format!("episode {}: {e}", row.id)));
                ControlFlow::Break(())
            }
        }
    })?;
    if stale > 0 {
        tracing::warn!(
            tenant = %id,
            %model,
            episodes = stale,
            "episodes are embedded with another model than the tenant's and are not searchable; \
             finish the re-index (agentdb reindex)"
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(state),
    }
}
