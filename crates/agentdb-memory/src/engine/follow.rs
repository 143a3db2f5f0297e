//! Following a shared store: when several hubs write to one database (PostgreSQL), each keeps
//! its own in-memory indexes and brings them up to date from the tenants' change logs.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use agentdb_core::{EpisodeId, TenantId};

use super::tenant::TenantState;
use super::MemoryEngine;
use crate::error::{ReplicaError, StoreError};
use crate::storage::StoredEpisode;

/// Most changes read in one request while following.
const FOLLOW_PAGE: usize = 1_000;

impl MemoryEngine {
    /// One pass over the store's change heads: for every tenant whose change log grew since
    /// the last pass (whoever wrote it), indexes the rows the new changes touched; a tenant
    /// another writer created is loaded, one another writer erased is dropped. Change
    /// listeners hear of every tenant that changed. Returns how many tenants changed.
    ///
    /// Only meaningful over a store other writers share; a store without change heads (see
    /// [`crate::Storage::change_heads`]) is an error. Changes this engine made itself are
    /// seen again and change nothing.
    pub fn follow_storage(&self) -> Result<usize, StoreError> {
        let heads = self.storage.change_heads()?;
        let mut changed = Vec::new();
        let mut seen = HashSet::new();
        for (tenant, head) in heads {
            seen.insert(tenant.clone());
            let state = match self.tenant(&tenant) {
                Some(state) => state,
                None => {
                    if self.adopt(&tenant, head)? {
                        changed.push(tenant);
                    }
                    continue;
                }
            };
            let cursor = state.followed.load(Ordering::Acquire);
            if head == cursor {
                continue;
            }
            if head < cursor {
                // The log restarted: the tenant was erased and written again elsewhere.
                self.tenants.write().remove(&tenant);
                self.adopt(&tenant, head)?;
            } else {
                self.catch_up(&state, cursor)?;
            }
            changed.push(tenant);
        }
        // A tenant erased elsewhere has no change log and no key left.
        let local: Vec<TenantId> = self.tenants.read().keys().cloned().collect();
        for tenant in local.into_iter().filter(|t| !seen.contains(t)) {
            if self.storage.tenant_keys(&tenant)?.is_empty() {
                self.tenants.write().remove(&tenant);
                changed.push(tenant);
            }
        }
        for tenant in &changed {
            self.changed(tenant);
        }
        Ok(changed.len())
    }

    /// Loads a tenant another writer created, following its log from `head`. False when it
    /// has no key (yet), or this engine created it meanwhile.
    fn adopt(&self, tenant: &TenantId, head: u64) -> Result<bool, StoreError> {
        let _creating = self.creating.lock();
        if self.tenant(tenant).is_some() || self.storage.tenant_keys(tenant)?.is_empty() {
            return Ok(false);
        }
        let state = self.load_stored_tenant(tenant)?;
        state.followed.store(head, Ordering::Release);
        let state = Arc::new(state);
        self.indexer.notify(&state);
        self.tenants.write().insert(tenant.clone(), state);
        Ok(true)
    }

    /// Indexes the rows of the tenant's changes after `cursor`: each page of changes, then
    /// the rows it names in one read (one round trip to a database, not one per row).
    fn catch_up(&self, state: &Arc<TenantState>, mut cursor: u64) -> Result<(), StoreError> {
        loop {
            let page = self.storage.changes(&state.id, cursor, FOLLOW_PAGE)?;
            // A row changed twice in the page is read (as it is now) and indexed once.
            let mut seen = HashSet::with_capacity(page.len());
            let ids: Vec<EpisodeId> = page
                .iter()
                .filter(|(_, id)| seen.insert(*id))
                .map(|(_, id)| *id)
                .collect();
            for row in self
                .storage
                .episodes(&state.id, &ids)?
                .into_iter()
                .flatten()
            {
                self.index_followed(state, &row)?;
            }
            if let Some((last, _)) = page.last() {
                cursor = *last;
            }
            state.followed.fetch_max(cursor, Ordering::AcqRel);
            if page.len() < FOLLOW_PAGE {
                self.indexer.notify(state);
                return Ok(());
            }
        }
    }

    /// Indexes one row another writer may have written, loading the tenant's newer key
    /// versions when the row is sealed with one this engine has not seen.
    fn index_followed(&self, state: &TenantState, row: &StoredEpisode) -> Result<(), StoreError> {
        if row.deleted.is_some() && state.index.contains(&row.id) {
            state.tombstones.fetch_add(1, Ordering::Relaxed);
        }
        match self.index_row(state, row, None) {
            Err(ReplicaError::Read(_)) if row.deleted.is_none() => {
                self.load_new_keys(state)?;
                self.index_row(state, row, None).map_err(replica_to_store)
            }
            other => other.map_err(replica_to_store),
        }
    }

    /// Adds the tenant's key versions in the store that this engine has not unwrapped yet.
    fn load_new_keys(&self, state: &TenantState) -> Result<(), StoreError> {
        let wrapped = self.storage.tenant_keys(&state.id)?;
        let keyring = self.keyring.read();
        let mut keys = state.keys.write();
        for w in wrapped {
            if keys.contains_key(&w.version) {
                continue;
            }
            let key = keyring
                .unwrap(&state.id, &w)
                .map_err(|e| StoreError::Crypto(e.to_string()))?;
            keys.insert(w.version, Arc::new(key));
        }
        Ok(())
    }
}

fn replica_to_store(e: ReplicaError) -> StoreError {
    match e {
        ReplicaError::Store(e) => e,
        other => StoreError::Crypto(other.to_string()),
    }
}
