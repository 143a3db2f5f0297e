//! An in-memory backend: the plain model the redb backend is tested against, and a fast store
//! for tests. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use agentdb_core::{EpisodeId, HubId, Region, TenantId, VersionVector};
use agentdb_security::WrappedTenantKey;
use parking_lot::RwLock;

use super::{
    log_entry_name, merge_keeps, peers, raised_clock, reseal_replaces, tombstone_row, OpSeq,
    Storage, StorageError, StoredEpisode, Write, CLOCK_META,
};

#[derive(Debug, Default)]
struct Tables {
    episodes: BTreeMap<(TenantId, EpisodeId), StoredEpisode>,
    keys: BTreeMap<(TenantId, u32), Vec<u8>>,
    tenant_meta: BTreeMap<(TenantId, String), Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    changes: BTreeMap<(TenantId, u64), EpisodeId>,
    ops: BTreeMap<(TenantId, HubId, u64), EpisodeId>,
    vv: BTreeMap<(TenantId, HubId), u64>,
    peers: BTreeMap<HubId, Region>,
    /// Encoded as the redb backend stores them, so both join alike.
    peer_acks: BTreeMap<(TenantId, HubId), Vec<u8>>,
    /// The last number given to a store-wide log entry.
    log_number: u64,
}

impl Tables {
    fn log_change(&mut self, tenant: &TenantId, id: EpisodeId) {
        let last = self
            .changes
            .range((tenant.clone(), 0)..=(tenant.clone(), u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| *seq);
        self.changes.insert((tenant.clone(), last + 1), id);
    }

    fn record_op(&mut self, tenant: &TenantId, op: &OpSeq, id: EpisodeId) -> bool {
        let key = (tenant.clone(), op.origin().clone());
        let last = self.vv.get(&key).copied().unwrap_or(0);
        let Some(seq) = op.seq_after(last) else {
            return false;
        };
        self.ops
            .insert((tenant.clone(), op.origin().clone(), seq), id);
        self.vv.insert(key, seq);
        true
    }
}

/// In-memory storage with the same contract as [`super::RedbStorage`].
#[derive(Debug, Default)]
pub struct MemStorage {
    tables: RwLock<Tables>,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemStorage {
    fn group_commit_pays(&self) -> bool {
        false
    }

    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError> {
        // No step below can fail, so applying in place is atomic under the lock.
        let mut t = self.tables.write();
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            out.push(match w {
                Write::PutEpisode {
                    tenant,
                    row,
                    origin,
                } => match t.episodes.entry((tenant.clone(), row.id)) {
                    std::collections::btree_map::Entry::Occupied(_) => false,
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(row.clone());
                        t.log_change(tenant, row.id);
                        t.record_op(tenant, &OpSeq::Next(origin.clone()), row.id)
                    }
                },
                Write::ReplaceEpisode { tenant, row } => {
                    match t.episodes.get_mut(&(tenant.clone(), row.id)) {
                        Some(old) if old.deleted.is_none() => {
                            *old = row.clone();
                            true
                        }
                        _ => false,
                    }
                }
                Write::ResealEpisode { tenant, row } => {
                    match t.episodes.get_mut(&(tenant.clone(), row.id)) {
                        Some(old) if reseal_replaces(Some(old), row) => {
                            *old = row.clone();
                            true
                        }
                        _ => false,
                    }
                }
                Write::Tombstone {
                    tenant,
                    id,
                    stamp,
                    model,
                    origin,
                } => {
                    let key = (tenant.clone(), *id);
                    match tombstone_row(t.episodes.get(&key), *id, stamp, model) {
                        Some(tomb) => {
                            t.episodes.insert(key, tomb);
                            t.log_change(tenant, *id);
                            t.record_op(tenant, &OpSeq::Next(origin.clone()), *id)
                        }
                        None => false,
                    }
                }
                Write::Merge {
                    tenant,
                    id,
                    row,
                    op,
                } => {
                    if !t.record_op(tenant, op, *id) {
                        false
                    } else {
                        if let Some(row) = row {
                            let key = (tenant.clone(), *id);
                            if !merge_keeps(t.episodes.get(&key), row) {
                                t.episodes.insert(key, row.clone());
                                t.log_change(tenant, *id);
                            }
                        }
                        true
                    }
                }
                Write::CollectTombstone { tenant, id } => {
                    let key = (tenant.clone(), *id);
                    if t.episodes.get(&key).is_some_and(|r| r.deleted.is_some()) {
                        t.episodes.remove(&key);
                        true
                    } else {
                        false
                    }
                }
                Write::CreateTenant {
                    tenant,
                    key,
                    settings,
                } => {
                    let exists = t
                        .keys
                        .range((tenant.clone(), 0)..=(tenant.clone(), u32::MAX))
                        .next()
                        .is_some();
                    if !exists {
                        t.keys
                            .insert((tenant.clone(), key.version), key.bytes.clone());
                        for (name, value) in settings {
                            t.tenant_meta
                                .insert((tenant.clone(), name.clone()), value.clone());
                        }
                    }
                    !exists
                }
                Write::PutTenantKey { tenant, key } => {
                    t.keys
                        .insert((tenant.clone(), key.version), key.bytes.clone());
                    true
                }
                Write::DeleteTenantKey { tenant, version } => {
                    let newest = t
                        .keys
                        .range((tenant.clone(), 0)..=(tenant.clone(), u32::MAX))
                        .next_back()
                        .map(|((_, v), _)| *v);
                    match newest {
                        Some(newest) if newest != *version => {
                            t.keys.remove(&(tenant.clone(), *version)).is_some()
                        }
                        _ => false,
                    }
                }
                Write::PutTenantMeta {
                    tenant,
                    name,
                    value,
                } => {
                    t.tenant_meta
                        .insert((tenant.clone(), name.clone()), value.clone());
                    true
                }
                Write::PutMeta { name, value } => {
                    t.meta.insert(name.clone(), value.clone());
                    true
                }
                Write::AppendMeta { log, value } => {
                    t.log_number += 1;
                    let name = log_entry_name(log, t.log_number);
                    t.meta.insert(name, value.clone());
                    true
                }
                Write::DeleteMeta { name } => t.meta.remove(name).is_some(),
                Write::ClockAtLeast { hlc } => {
                    match raised_clock(t.meta.get(CLOCK_META).map(Vec::as_slice), *hlc) {
                        Some(value) => {
                            t.meta.insert(CLOCK_META.into(), value);
                            true
                        }
                        None => false,
                    }
                }
                Write::KnowPeer { peer, region } => {
                    t.peers.insert(peer.clone(), region.clone()).as_ref() != Some(region)
                }
                Write::JoinPeerAck {
                    tenant,
                    peer,
                    acked,
                } => {
                    let key = (tenant.clone(), peer.clone());
                    // Every record here was encoded by `joined_acked`: it decodes.
                    match peers::joined_acked(t.peer_acks.get(&key).map(Vec::as_slice), acked) {
                        Ok(Some(value)) => {
                            t.peer_acks.insert(key, value);
                            true
                        }
                        Ok(None) | Err(_) => false,
                    }
                }
                Write::ForgetPeer { peer } => {
                    let known = t.peers.remove(peer).is_some();
                    let before = t.peer_acks.len();
                    t.peer_acks.retain(|(_, p), _| p != peer);
                    known || before != t.peer_acks.len()
                }
                Write::EraseTenant { tenant } => {
                    let before = t.episodes.len() + t.keys.len();
                    t.episodes.retain(|(owner, _), _| owner != tenant);
                    t.keys.retain(|(owner, _), _| owner != tenant);
                    t.tenant_meta.retain(|(owner, _), _| owner != tenant);
                    t.changes.retain(|(owner, _), _| owner != tenant);
                    before != t.episodes.len() + t.keys.len()
                }
            });
        }
        Ok(out)
    }

    fn episode(
        &self,
        tenant: &TenantId,
        id: &EpisodeId,
    ) -> Result<Option<StoredEpisode>, StorageError> {
        Ok(self
            .tables
            .read()
            .episodes
            .get(&(tenant.clone(), *id))
            .cloned())
    }

    fn scan_episodes(
        &self,
        tenant: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let rows: Vec<StoredEpisode> = self
            .tables
            .read()
            .episodes
            .iter()
            .filter(|((owner, _), _)| owner == tenant)
            .map(|(_, row)| row.clone())
            .collect();
        for row in rows {
            if visit(row).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn scan_episodes_after(
        &self,
        tenant: &TenantId,
        after: Option<&EpisodeId>,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        // The map orders a tenant's rows by id, so the rows after `after` are one range.
        let start = match after {
            Some(id) => Bound::Excluded((tenant.clone(), *id)),
            None => Bound::Included((tenant.clone(), EpisodeId::from_bytes([0; 16]))),
        };
        let rows: Vec<StoredEpisode> = self
            .tables
            .read()
            .episodes
            .range((start, Bound::Unbounded))
            .take_while(|((owner, _), _)| owner == tenant)
            .map(|(_, row)| row.clone())
            .collect();
        for row in rows {
            if visit(row).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        Ok(self
            .tables
            .read()
            .changes
            .range((tenant.clone(), after.saturating_add(1))..=(tenant.clone(), u64::MAX))
            .take(limit)
            .map(|((_, seq), id)| (*seq, *id))
            .collect())
    }

    fn change_heads(&self) -> Result<Vec<(TenantId, u64)>, StorageError> {
        let tables = self.tables.read();
        let mut out: Vec<(TenantId, u64)> = Vec::new();
        // Keys sort by tenant, then seq: the last of each run is the head.
        for (tenant, seq) in tables.changes.keys() {
            match out.last_mut() {
                Some((t, head)) if t == tenant => *head = *seq,
                _ => out.push((tenant.clone(), *seq)),
            }
        }
        Ok(out)
    }

    fn ops(
        &self,
        tenant: &TenantId,
        origin: &HubId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        let from = (tenant.clone(), origin.clone(), after.saturating_add(1));
        let to = (tenant.clone(), origin.clone(), u64::MAX);
        Ok(self
            .tables
            .read()
            .ops
            .range(from..=to)
            .take(limit)
            .map(|((_, _, seq), id)| (*seq, *id))
            .collect())
    }

    fn version_vector(&self, tenant: &TenantId) -> Result<VersionVector, StorageError> {
        Ok(self
            .tables
            .read()
            .vv
            .iter()
            .filter(|((owner, _), _)| owner == tenant)
            .map(|((_, hub), seq)| (hub.clone(), *seq))
            .collect())
    }

    fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        let mut out: Vec<TenantId> = self
            .tables
            .read()
            .keys
            .keys()
            .map(|(t, _)| t.clone())
            .collect();
        out.dedup();
        Ok(out)
    }

    fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<WrappedTenantKey>, StorageError> {
        Ok(self
            .tables
            .read()
            .keys
            .iter()
            .filter(|((owner, _), _)| owner == tenant)
            .map(|((_, version), bytes)| WrappedTenantKey {
                version: *version,
                bytes: bytes.clone(),
            })
            .collect())
    }

    fn tenant_meta(&self, tenant: &TenantId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tables
            .read()
            .tenant_meta
            .get(&(tenant.clone(), name.to_owned()))
            .cloned())
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables.read().meta.get(name).cloned())
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(self
            .tables
            .read()
            .meta
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect())
    }

    fn peers(&self) -> Result<Vec<(HubId, Region)>, StorageError> {
        Ok(self
            .tables
            .read()
            .peers
            .iter()
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect())
    }

    fn peer_acks(&self, tenant: &TenantId) -> Result<Vec<(HubId, VersionVector)>, StorageError> {
        let t = self.tables.read();
        let mut out = Vec::new();
        for ((owner, peer), bytes) in &t.peer_acks {
            if owner == tenant {
                out.push((peer.clone(), peers::decode_acked(bytes)?));
            }
        }
        Ok(out)
    }
}
