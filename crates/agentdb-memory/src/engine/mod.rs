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
//!
//! # Sealed settings
//!
//! Besides tenants' episodes the engine keeps a hub's small store-wide secrets (API-key
//! records, revoked token ids), sealed under a key that master-key rotation does not change,
//! and derives keys for the hub's own use; see [`MemoryEngine::put_sealed_setting`] and
//! [`MemoryEngine::derived_key`].

mod body;
mod commit;
mod erasure;
mod expiry;
mod follow;
mod indexer;
mod keys;
mod read;
mod reindex;
mod replicate;
mod reseal;
mod settings;
mod tenant;
mod types;
mod write;

pub use erasure::ErasureOutcome;
pub use reseal::{KeyVersion, ResealProgress, RESEAL_BATCH};
pub use settings::{
    SealedLogEntry, SealedSetting, SettingsError, MAX_SETTING_NAME_LEN, MAX_SETTING_VALUE_LEN,
    SEALED_LOG_PREFIX, SEALED_SETTING_PREFIX, STORE_SECRET_META,
};
pub use types::{
    Change, ChangePage, EngineConfig, EpisodeList, EraseReport, Match, Query, QueryInput, Stored,
    MAX_BATCH, MAX_K, MAX_PAGE_BYTES, REINDEX_BATCH,
};
pub use write::mint_episode_id;
use write::{embedding_text, normalize_task};

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use agentdb_core::{Hlc, HlcClock, HubId, ModelId, Stamp, TenantId};
use agentdb_security::{Keyring, MasterKey};
use parking_lot::{Mutex, RwLock};

use crate::clock::{Clock, SystemClock};
use crate::embedder::{Embedder, LexicalEmbedder};
use crate::error::{OpenError, StoreError};
use crate::index::{EpisodeFacts, VectorIndex};
use crate::storage::{decode_hlc, local_hub, RowError, Storage, StorageError, Write, CLOCK_META};
use commit::GroupCommit;
use indexer::Indexer;
use settings::SettingsKeys;
use tenant::{decode_model, encode_model, TenantState, MODEL_META};

/// Store-wide setting holding the master-key check value.
const KEY_CHECK_META: &str = "master_key_check";

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
    /// The store secret and the key that seals settings.
    settings: SettingsKeys,
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
        let settings = SettingsKeys::load_or_create(&*b.storage, &keyring)?;
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
        // Where each tenant's change log stands before its rows are read: a shared store's
        // followers start there (a backend without change heads is not shared).
        let heads: HashMap<TenantId, u64> = b
            .storage
            .change_heads()
            .map(|h| h.into_iter().collect())
            .unwrap_or_default();
        for id in b.storage.tenants()? {
            let state = load_tenant(&*b.storage, &keyring, &b.config, &id, &mut last_stamp)?;
            let head = heads.get(&id).copied().unwrap_or(0);
            state.followed.store(head, Ordering::Release);
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
            settings,
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
        let created = self.commit.submit(vec![Write::CreateTenant {
            tenant: tenant.clone(),
            key: wrapped,
            settings: vec![(MODEL_META.into(), encode_model(model, dims))],
        }])?;
        let state = if created.first().copied().unwrap_or(false) {
            let index = VectorIndex::new(model.clone(), dims, self.config.index.clone());
            Arc::new(TenantState::new(tenant.clone(), vec![key], index))
        } else {
            // Another writer of a shared store created the tenant first: use its key.
            Arc::new(self.load_stored_tenant(tenant)?)
        };
        self.tenants
            .write()
            .insert(tenant.clone(), Arc::clone(&state));
        Ok(state)
    }

    /// Loads `tenant` as the store holds it (another writer of a shared store made it), and
    /// lets the clock observe its stamps.
    fn load_stored_tenant(&self, tenant: &TenantId) -> Result<TenantState, StoreError> {
        let mut last_stamp = Hlc::default();
        let state = load_tenant(
            &*self.storage,
            &self.keyring.read(),
            &self.config,
            tenant,
            &mut last_stamp,
        )
        .map_err(|e| StoreError::Crypto(e.to_string()))?;
        // Stamps too far ahead are refused when they arrive as ops; here they only seed the
        // clock.
        let _ = self
            .hlc
            .lock()
            .observe(last_stamp, self.clock.now().unix_ms());
        Ok(state)
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
        for s in [stamps.latest()].into_iter().chain(row.deleted.as_ref()) {
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
