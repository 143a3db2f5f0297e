//! The store model: an in-memory replica store written from the rules alone, the reference the
//! replication protocol is simulated over.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use agentdb_core::{
    AppliedOps, ClockSkew, EpisodeId, HlcClock, HubId, LiveEpisode, ModelId, Op, Region,
    ReplicaState, Stamp, TenantId, VersionVector,
};
use agentdb_memory::storage::PeerAck;
use agentdb_proto::fed::{ReplicaStore, StoreFailure};

use super::{SimStore, TenantData, WriteKind};

/// Everything a store holds, behind the [`RefCell`] that [`ReplicaStore`]'s `&self` methods
/// need.
#[derive(Debug)]
struct StoreState {
    /// Per tenant.
    tenants: BTreeMap<TenantId, TenantData>,
    /// The hub's clock: stamps local writes, observes received ones. Lost in a crash.
    clock: HlcClock,
    /// The largest stamp ever stored, kept durably next to the states: a tombstone absorbs
    /// the later stamps of the updates it wins over, so the states alone may no longer hold
    /// it.
    highest: Option<Stamp>,
    /// The peer hubs linked with, and their regions. Durable.
    peers: BTreeMap<HubId, Region>,
    /// What each peer has acknowledged holding, per tenant. Durable.
    acks: BTreeMap<(TenantId, HubId), VersionVector>,
}

/// An in-memory replica store. Everything applied is durable: a crash loses only the clock,
/// which restarts from the largest stamp stored.
#[derive(Debug)]
pub struct ModelStore {
    /// The hub it belongs to.
    hub: HubId,
    /// The clock-skew bound.
    max_skew_ms: u64,
    /// The contents.
    state: RefCell<StoreState>,
}

impl ModelStore {
    /// The largest stamp ever stored.
    fn highest(&self) -> Option<Stamp> {
        self.state.borrow().highest.clone().max(self.max_stamp())
    }
}

impl SimStore for ModelStore {
    fn open(hub: &HubId, max_skew_ms: u64) -> Self {
        Self {
            hub: hub.clone(),
            max_skew_ms,
            state: RefCell::new(StoreState {
                tenants: BTreeMap::new(),
                clock: HlcClock::new(max_skew_ms),
                highest: None,
                peers: BTreeMap::new(),
                acks: BTreeMap::new(),
            }),
        }
    }

    /// The clock resumes from the largest stamp ever stored (kept durably, as the engine keeps
    /// its clock's high-water mark).
    fn restart(&mut self) {
        let last = self.highest().map(|s| s.hlc).unwrap_or_default();
        self.state.borrow_mut().clock = HlcClock::resume(last, self.max_skew_ms);
    }

    /// The physical time comes with each call that needs it.
    fn set_clock(&self, _now_ms: u64) {}

    fn embedding_model(&self) -> (ModelId, usize) {
        (ModelId::new("agentdb-lexical-v1").expect("valid model"), 4)
    }

    fn write(
        &self,
        tenant: &TenantId,
        episode: EpisodeId,
        kind: &WriteKind,
        now_ms: u64,
    ) -> (u64, Stamp) {
        let mut st = self.state.borrow_mut();
        let StoreState {
            tenants,
            clock,
            highest,
            ..
        } = &mut *st;
        let stamp = Stamp::new(clock.now(now_ms), self.hub.clone());
        *highest = highest.take().max(Some(stamp.clone()));
        let data = tenants.entry(tenant.clone()).or_default();
        let current = data.episodes.get(&episode);
        let written = match kind {
            WriteKind::Put {
                content,
                reward,
                critique,
                tags,
            } => ReplicaState::Live(Box::new(LiveEpisode::new(
                stamp.clone(),
                (**content).clone(),
                *reward,
                critique.clone(),
                tags.clone(),
            ))),
            WriteKind::Update(update) => match current {
                Some(ReplicaState::Live(live)) => {
                    let mut live = live.clone();
                    live.update(update, &stamp);
                    ReplicaState::Live(live)
                }
                other => panic!("update of an episode that is not live: {other:?}"),
            },
            WriteKind::Delete => ReplicaState::Deleted(stamp.clone()),
        };
        let merged = match current {
            Some(c) => c.clone().join(&written),
            None => written,
        };
        data.episodes.insert(episode, merged);
        let seq = data.vv.get(&self.hub) + 1;
        assert!(data.vv.advance(&self.hub, seq));
        data.log.entry(self.hub.clone()).or_default().push(episode);
        (seq, stamp)
    }

    fn tenant(&self, tenant: &TenantId) -> TenantData {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    fn get(&self, tenant: &TenantId, episode: &EpisodeId) -> Option<ReplicaState> {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .and_then(|d| d.episodes.get(episode))
            .cloned()
    }

    fn episode_ids(&self, tenant: &TenantId) -> Vec<EpisodeId> {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .map(|d| d.episodes.keys().copied().collect())
            .unwrap_or_default()
    }

    fn max_stamp(&self) -> Option<Stamp> {
        let st = self.state.borrow();
        st.tenants
            .values()
            .flat_map(|d| d.episodes.values())
            .map(|s| s.max_stamp().clone())
            .max()
    }

    /// Removes the tombstones none of whose ops lie outside `acked`.
    fn collect_tombstones(&self, tenant: &TenantId, acked: &VersionVector) -> u64 {
        let mut st = self.state.borrow_mut();
        let Some(data) = st.tenants.get_mut(tenant) else {
            return 0;
        };
        if !data.episodes.values().any(ReplicaState::is_deleted) {
            return 0;
        }
        let mut pending = BTreeSet::new();
        for (origin, from, to) in data.vv.missing_from(acked) {
            let log = data.log.get(origin).map(Vec::as_slice).unwrap_or_default();
            let to = usize::try_from(to).unwrap_or(usize::MAX).min(log.len());
            let from = usize::try_from(from).unwrap_or(usize::MAX).min(to);
            pending.extend(log[from..to].iter().copied());
        }
        let before = data.episodes.len();
        data.episodes
            .retain(|id, state| !state.is_deleted() || pending.contains(id));
        (before - data.episodes.len()) as u64
    }

    fn peers(&self) -> BTreeSet<HubId> {
        self.state.borrow().peers.keys().cloned().collect()
    }

    fn peer_acks(&self, tenant: &TenantId) -> BTreeMap<HubId, PeerAck> {
        let st = self.state.borrow();
        st.peers
            .iter()
            .map(|(peer, region)| {
                let acked = st
                    .acks
                    .get(&(tenant.clone(), peer.clone()))
                    .cloned()
                    .unwrap_or_default();
                let region = region.clone();
                (peer.clone(), PeerAck { region, acked })
            })
            .collect()
    }

    fn record_peer(&self, peer: &HubId, region: &Region) {
        let mut st = self.state.borrow_mut();
        st.peers.insert(peer.clone(), region.clone());
    }

    fn record_peer_acks(&self, peer: &HubId, region: &Region, acked: &[(TenantId, VersionVector)]) {
        self.record_peer(peer, region);
        let mut st = self.state.borrow_mut();
        for (tenant, vv) in acked.iter().filter(|(_, vv)| !vv.is_empty()) {
            st.acks
                .entry((tenant.clone(), peer.clone()))
                .or_default()
                .merge(vv);
        }
    }
}

impl ReplicaStore for ModelStore {
    fn tenants(&self) -> Vec<TenantId> {
        self.state
            .borrow()
            .tenants
            .iter()
            .filter(|(_, d)| !d.vv.is_empty())
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn version_vector(&self, tenant: &TenantId) -> VersionVector {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .map(|d| d.vv.clone())
            .unwrap_or_default()
    }

    fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, StoreFailure> {
        let st = self.state.borrow();
        let Some(data) = st.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let mut ops = Vec::new();
        let mut bytes = 0;
        for (origin, from, to) in data.vv.missing_from(known) {
            let log = data
                .log
                .get(origin)
                .ok_or_else(|| StoreFailure(format!("no op log of {origin}")))?;
            for seq in from + 1..=to {
                if ops.len() >= limit {
                    return Ok(ops);
                }
                let episode = *usize::try_from(seq - 1)
                    .ok()
                    .and_then(|i| log.get(i))
                    .ok_or_else(|| StoreFailure(format!("op ({origin}, {seq}) not logged")))?;
                let op = Op {
                    origin: origin.clone(),
                    seq,
                    episode,
                    state: data.episodes.get(&episode).cloned(),
                };
                let size = postcard::to_allocvec(&op)
                    .map_err(|e| StoreFailure(e.to_string()))?
                    .len();
                if !ops.is_empty() && bytes + size > max_bytes {
                    return Ok(ops);
                }
                bytes += size;
                ops.push(op);
            }
        }
        Ok(ops)
    }

    fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        now_ms: u64,
    ) -> Result<AppliedOps, StoreFailure> {
        let mut st = self.state.borrow_mut();
        let StoreState {
            tenants,
            clock,
            highest,
            ..
        } = &mut *st;
        let data = tenants.entry(tenant.clone()).or_default();
        let mut applied = 0;
        let mut newest_ms = None;
        let mut skew: Option<ClockSkew> = None;
        for op in ops {
            if op.seq != data.vv.get(&op.origin) + 1 {
                continue;
            }
            if op.state.is_none() {
                // The sender collected the episode's tombstone: a copy live here is deleted,
                // stamped with its latest stamp.
                if let Some(ReplicaState::Live(live)) = data.episodes.get(&op.episode) {
                    let stamp = ReplicaState::Live(live.clone()).max_stamp().clone();
                    data.episodes
                        .insert(op.episode, ReplicaState::Deleted(stamp));
                }
            }
            if let Some(state) = &op.state {
                let hlc = state.max_stamp().hlc;
                if let Err(e) = clock.observe(hlc, now_ms) {
                    // This origin's later ops now lie beyond a gap; other origins go on.
                    skew.get_or_insert(e);
                    continue;
                }
                newest_ms = newest_ms.max(Some(hlc.wall_ms));
                *highest = highest.take().max(Some(state.max_stamp().clone()));
                let merged = match data.episodes.remove(&op.episode) {
                    Some(current) => current.join(state),
                    None => state.clone(),
                };
                data.episodes.insert(op.episode, merged);
            }
            assert!(data.vv.advance(&op.origin, op.seq));
            data.log
                .entry(op.origin.clone())
                .or_default()
                .push(op.episode);
            applied += 1;
        }
        Ok(AppliedOps {
            vv: data.vv.clone(),
            applied,
            newest_ms,
            skew,
        })
    }
}
