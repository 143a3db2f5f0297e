//! The memory engine as a simulated hub's store: [`MemoryEngine`] over in-memory storage, its
//! clock driven by the simulation.
//!
//! Agents' writes go through the engine's own API (`store`, `update`, `delete`), replication
//! through `ops_since` / `apply_ops`. A crash drops the engine and opens it again over the same
//! storage and master key, which are exactly its durable state. What the engine holds is read
//! back through `ops_since` (every op from the start, with the state it carries), `get`, and
//! the stored rows (for what they hold in the clear: ids and stamps).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use agentdb_core::{
    AppliedOps, Episode, EpisodeContent, EpisodeId, HubId, LiveEpisode, Lww, ModelId, NewEpisode,
    Op, Region, ReplicaState, Stamp, TenantId, Timestamp, VersionVector,
};
use agentdb_memory::storage::{PeerAck, StoredEpisode};
use agentdb_memory::{EngineConfig, ManualClock, MemStorage, MemoryEngine, Storage};
use agentdb_proto::fed::{ReplicaStore, StoreFailure};
use agentdb_security::MasterKey;

use super::{SimStore, TenantData, WriteKind};

/// A memory engine as one hub's store.
#[derive(Debug)]
pub struct EngineStore {
    /// The hub it belongs to.
    hub: HubId,
    /// The clock-skew bound.
    max_skew_ms: u64,
    /// The durable state.
    storage: Arc<MemStorage>,
    /// The hub's physical clock, set by the simulation.
    clock: Arc<ManualClock>,
    /// The running engine (absent only while it restarts).
    engine: Option<MemoryEngine>,
}

/// The master key of every simulated hub.
fn master_key() -> MasterKey {
    MasterKey::from_bytes([0x5A; 32])
}

impl EngineStore {
    /// The running engine.
    fn engine(&self) -> &MemoryEngine {
        self.engine.as_ref().expect("the engine is running")
    }

    /// Opens the engine over the store's storage.
    fn open_engine(&self) -> MemoryEngine {
        let config = EngineConfig {
            origin: Some(self.hub.clone()),
            max_clock_skew_ms: self.max_skew_ms,
            ..EngineConfig::default()
        };
        let storage: Arc<dyn Storage> = self.storage.clone();
        MemoryEngine::builder(storage, master_key())
            .clock(self.clock.clone())
            .config(config)
            .open()
            .unwrap_or_else(|e| panic!("hub {}: the engine does not open: {e}", self.hub))
    }

    /// One stored row (live or tombstone).
    fn row(&self, tenant: &TenantId, episode: &EpisodeId) -> Option<StoredEpisode> {
        self.storage
            .episode(tenant, episode)
            .unwrap_or_else(|e| panic!("hub {}: reading {episode}: {e}", self.hub))
    }

    /// Every stored row of `tenant`, in id order.
    fn rows(&self, tenant: &TenantId) -> Vec<StoredEpisode> {
        let mut rows = Vec::new();
        self.storage
            .scan_episodes(tenant, &mut |row| {
                rows.push(row);
                ControlFlow::Continue(())
            })
            .unwrap_or_else(|e| panic!("hub {}: scanning {tenant}: {e}", self.hub));
        rows
    }

    /// The op seq this hub has reached in `tenant`.
    fn own_seq(&self, tenant: &TenantId) -> u64 {
        ReplicaStore::version_vector(self, tenant).get(&self.hub)
    }
}

/// The largest stamp of the state a row holds.
fn row_max_stamp(row: &StoredEpisode) -> Stamp {
    match &row.deleted {
        Some(stamp) => stamp.clone(),
        None => row.stamps.latest().clone(),
    }
}

/// An agent's new episode as the engine takes it.
fn new_episode(
    episode: EpisodeId,
    content: &EpisodeContent,
    reward: f64,
    critique: &Option<String>,
    tags: &[String],
) -> NewEpisode {
    NewEpisode {
        id: Some(episode),
        agent: content.agent.clone(),
        session: content.session,
        task: content.task.clone(),
        input: content.input.clone(),
        output: content.output.clone(),
        reward,
        critique: critique.clone(),
        tags: tags.to_vec(),
        metadata: agentdb_core::metadata_from_text(&content.metadata_json).expect("valid metadata"),
        tokens_used: content.tokens_used,
        latency_ms: content.latency_ms,
        embedding: content.embedding.clone(),
        expires_at: content.expires_at,
    }
}

/// The replicated state of a live row, from the row's stamps and the episode as `get` reads
/// it. The embedding is left out.
fn live_state(row: &StoredEpisode, e: Episode) -> ReplicaState {
    let s = &row.stamps;
    ReplicaState::Live(Box::new(LiveEpisode {
        created: s.created.clone(),
        content: EpisodeContent {
            agent: e.agent,
            session: e.session,
            task: e.task,
            input: e.input,
            output: e.output,
            // Held by the metadata register.
            metadata_json: String::new(),
            tokens_used: e.tokens_used,
            latency_ms: e.latency_ms,
            created: e.created,
            origin: e.origin,
            embedding: None,
            expires_at: e.expires_at,
        },
        reward: Lww::new(s.reward.clone(), e.reward),
        critique: Lww::new(s.critique.clone(), e.critique),
        tags: Lww::new(s.tags.clone(), e.tags),
        metadata: Lww::new(
            s.metadata.clone(),
            agentdb_core::metadata_to_text(&e.metadata),
        ),
    }))
}

impl SimStore for EngineStore {
    fn open(hub: &HubId, max_skew_ms: u64) -> Self {
        let mut store = Self {
            hub: hub.clone(),
            max_skew_ms,
            storage: Arc::new(MemStorage::new()),
            clock: Arc::new(ManualClock::new(Timestamp(0))),
            engine: None,
        };
        store.engine = Some(store.open_engine());
        store
    }

    /// Drops the engine (its threads stop; nothing is pending, since every call waits for its
    /// commit) and opens it again over the same storage.
    fn restart(&mut self) {
        drop(self.engine.take());
        self.engine = Some(self.open_engine());
    }

    fn set_clock(&self, now_ms: u64) {
        self.clock.set(Timestamp(now_ms));
    }

    fn embedding_model(&self) -> (ModelId, usize) {
        let embedder = self.engine().embedder();
        (embedder.model().clone(), embedder.dimensions())
    }

    /// The engine does not tell the stamp it gave a write: it is read back from the row, where
    /// it is every stamp of a put, the stamp of the registers an update set, or the delete's.
    fn write(
        &self,
        tenant: &TenantId,
        episode: EpisodeId,
        kind: &WriteKind,
        now_ms: u64,
    ) -> (u64, Stamp) {
        self.set_clock(now_ms);
        let engine = self.engine();
        let hub = &self.hub;
        let before = self.own_seq(tenant);
        match kind {
            WriteKind::Put {
                content,
                reward,
                critique,
                tags,
            } => {
                let stored = engine
                    .store(
                        tenant,
                        new_episode(episode, content, *reward, critique, tags),
                    )
                    .unwrap_or_else(|e| panic!("hub {hub}: storing {episode}: {e}"));
                assert!(
                    stored.id == episode && stored.inserted,
                    "hub {hub}: storing {episode} gave {stored:?}"
                );
            }
            WriteKind::Update(update) => {
                let live = engine
                    .update(tenant, &episode, update)
                    .unwrap_or_else(|e| panic!("hub {hub}: updating {episode}: {e}"));
                assert!(live, "hub {hub}: {episode}, live here, was not updated");
            }
            WriteKind::Delete => {
                let live = engine
                    .delete(tenant, &episode)
                    .unwrap_or_else(|e| panic!("hub {hub}: deleting {episode}: {e}"));
                assert!(live, "hub {hub}: {episode}, live here, was not deleted");
            }
        }
        let seq = self.own_seq(tenant);
        assert_eq!(
            seq,
            before + 1,
            "hub {hub}: one write to {tenant} must add one op of its own"
        );
        let row = self
            .row(tenant, &episode)
            .unwrap_or_else(|| panic!("hub {hub}: {episode} has no row after a write"));
        let stamp = match kind {
            WriteKind::Put { .. } => {
                assert!(row.deleted.is_none(), "hub {hub}: {episode} stored deleted");
                row.stamps.created
            }
            WriteKind::Update(u) => {
                assert!(
                    row.deleted.is_none(),
                    "hub {hub}: {episode} deleted by an update"
                );
                let s = row.stamps;
                [
                    u.reward.map(|_| s.reward),
                    u.critique.as_ref().map(|_| s.critique),
                    u.tags.as_ref().map(|_| s.tags),
                    u.metadata_json.as_ref().map(|_| s.metadata),
                ]
                .into_iter()
                .flatten()
                .max()
                .expect("an update sets a register")
            }
            WriteKind::Delete => row
                .deleted
                .unwrap_or_else(|| panic!("hub {hub}: {episode} is live after its delete")),
        };
        (seq, stamp)
    }

    /// Every op from the start, with the state each carries (the episode's current one),
    /// checked against the stored rows: each op log is contiguous, every op of an episode
    /// carries the same state, and every row has an op.
    fn tenant(&self, tenant: &TenantId) -> TenantData {
        let hub = &self.hub;
        let engine = self.engine();
        let vv = engine
            .version_vector(tenant)
            .unwrap_or_else(|e| panic!("hub {hub}: version vector of {tenant}: {e}"));
        let ops = engine
            .ops_since(tenant, &VersionVector::new(), usize::MAX, usize::MAX)
            .unwrap_or_else(|e| panic!("hub {hub}: ops of {tenant}: {e}"));
        let mut data = TenantData {
            vv,
            ..TenantData::default()
        };
        for op in ops {
            let log = data.log.entry(op.origin.clone()).or_default();
            assert_eq!(
                op.seq,
                log.len() as u64 + 1,
                "hub {hub}: ops_since skipped or repeated an op of {} in {tenant}",
                op.origin
            );
            log.push(op.episode);
            if let Some(state) = op.state {
                if let Some(held) = data.episodes.get(&op.episode) {
                    assert!(
                        *held == state,
                        "hub {hub}: two ops of {} carry different states",
                        op.episode
                    );
                } else {
                    data.episodes.insert(op.episode, state);
                }
            }
        }
        let rows: BTreeSet<EpisodeId> = self.rows(tenant).into_iter().map(|r| r.id).collect();
        let logged: BTreeSet<EpisodeId> = data.episodes.keys().copied().collect();
        assert_eq!(
            rows, logged,
            "hub {hub}: the rows of {tenant} and its op log"
        );
        data
    }

    fn get(&self, tenant: &TenantId, episode: &EpisodeId) -> Option<ReplicaState> {
        let row = self.row(tenant, episode)?;
        if let Some(stamp) = row.deleted {
            return Some(ReplicaState::Deleted(stamp));
        }
        let hub = &self.hub;
        let e = self
            .engine()
            .get(tenant, episode)
            .unwrap_or_else(|e| panic!("hub {hub}: reading {episode}: {e}"))
            .unwrap_or_else(|| panic!("hub {hub}: {episode} has a live row but no episode"));
        Some(live_state(&row, e))
    }

    fn episode_ids(&self, tenant: &TenantId) -> Vec<EpisodeId> {
        self.rows(tenant).into_iter().map(|r| r.id).collect()
    }

    fn max_stamp(&self) -> Option<Stamp> {
        let tenants = self
            .storage
            .tenants()
            .unwrap_or_else(|e| panic!("hub {}: listing tenants: {e}", self.hub));
        tenants
            .iter()
            .flat_map(|t| self.rows(t))
            .map(|row| row_max_stamp(&row))
            .max()
    }

    /// Every tombstone is old enough: the simulation collects as soon as the rule allows.
    fn collect_tombstones(&self, tenant: &TenantId, acked: &VersionVector) -> u64 {
        self.engine()
            .collect_tombstones(tenant, acked, Timestamp(u64::MAX))
            .unwrap_or_else(|e| panic!("hub {}: collecting tombstones of {tenant}: {e}", self.hub))
    }

    fn peers(&self) -> BTreeSet<HubId> {
        self.engine()
            .peers()
            .unwrap_or_else(|e| panic!("hub {}: peer records: {e}", self.hub))
            .into_keys()
            .collect()
    }

    fn peer_acks(&self, tenant: &TenantId) -> BTreeMap<HubId, PeerAck> {
        self.engine()
            .peer_acks(tenant)
            .unwrap_or_else(|e| panic!("hub {}: peer records of {tenant}: {e}", self.hub))
    }

    fn record_peer(&self, peer: &HubId, region: &Region) {
        self.engine()
            .record_peer(peer, region)
            .unwrap_or_else(|e| panic!("hub {}: recording peer {peer}: {e}", self.hub));
    }

    fn record_peer_acks(&self, peer: &HubId, region: &Region, acked: &[(TenantId, VersionVector)]) {
        self.engine()
            .record_peer_acks(peer, region, acked)
            .unwrap_or_else(|e| panic!("hub {}: recording what {peer} holds: {e}", self.hub));
    }
}

impl ReplicaStore for EngineStore {
    fn tenants(&self) -> Vec<TenantId> {
        self.engine().tenants()
    }

    fn version_vector(&self, tenant: &TenantId) -> VersionVector {
        self.engine()
            .version_vector(tenant)
            .unwrap_or_else(|e| panic!("hub {}: version vector of {tenant}: {e}", self.hub))
    }

    /// A failure is a failure of the run, not left to the session to retry.
    fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, StoreFailure> {
        Ok(self
            .engine()
            .ops_since(tenant, known, limit, max_bytes)
            .unwrap_or_else(|e| panic!("hub {}: ops of {tenant}: {e}", self.hub)))
    }

    /// A failure is a failure of the run, not left to the session to refuse.
    fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        now_ms: u64,
    ) -> Result<AppliedOps, StoreFailure> {
        self.set_clock(now_ms);
        Ok(self
            .engine()
            .apply_ops(tenant, ops, now_ms)
            .unwrap_or_else(|e| panic!("hub {}: applying ops of {tenant}: {e}", self.hub)))
    }
}
