//! An in-memory backend: the plain model the redb backend is tested against, and a fast store
//! for tests. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use agentdb_core::{EpisodeId, TenantId};
use agentdb_security::WrappedTenantKey;
use parking_lot::RwLock;

use super::{Storage, StorageError, StoredEpisode, Write};

#[derive(Debug, Default)]
struct Tables {
    episodes: BTreeMap<(TenantId, EpisodeId), StoredEpisode>,
    keys: BTreeMap<(TenantId, u32), Vec<u8>>,
    tenant_meta: BTreeMap<(TenantId, String), Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    changes: BTreeMap<(TenantId, u64), EpisodeId>,
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
    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError> {
        // No step below can fail, so applying in place is atomic under the lock.
        let mut t = self.tables.write();
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            out.push(match w {
                Write::PutEpisode { tenant, row } => {
                    match t.episodes.entry((tenant.clone(), row.id)) {
                        std::collections::btree_map::Entry::Occupied(_) => false,
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(row.clone());
                            t.log_change(tenant, row.id);
                            true
                        }
                    }
                }
                Write::ReplaceEpisode { tenant, row } => {
                    match t.episodes.get_mut(&(tenant.clone(), row.id)) {
                        Some(old) if old.deleted.is_none() => {
                            *old = row.clone();
                            true
                        }
                        _ => false,
                    }
                }
                Write::Tombstone { tenant, id, at } => {
                    match t.episodes.get_mut(&(tenant.clone(), *id)) {
                        Some(row) if row.deleted.is_none() => {
                            *row = row.clone().into_tombstone(*at);
                            t.log_change(tenant, *id);
                            true
                        }
                        _ => false,
                    }
                }
                Write::PutTenantKey { tenant, key } => {
                    t.keys
                        .insert((tenant.clone(), key.version), key.bytes.clone());
                    true
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
}
