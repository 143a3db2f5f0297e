//! Federation-wide erasure orders (see `agentdb_core::Erasure`): applying one here, keeping
//! the orders, and the rule that keeps erased episodes from coming back through replication.

use std::ops::ControlFlow;
use std::sync::Arc;

use agentdb_core::{
    DestroyedKey, EpisodeId, Erasure, ErasureScope, LiveEpisode, ReplicaState, TenantId,
    VersionVector,
};

use crate::error::{ErasureError, ReadError};
use crate::storage::{OpSeq, StoredEpisode, Write};

use super::replicate::row_state;
use super::MemoryEngine;

/// What applying an erasure order did here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// What this hub held of the tenant when it applied the order.
    pub through: VersionVector,
    /// Live episodes removed.
    pub episodes: u64,
    /// Key versions destroyed (a tenant erasure destroys them all).
    pub destroyed_keys: Vec<DestroyedKey>,
}

/// The sealed-setting prefix of a tenant's orders.
fn prefix(tenant: &TenantId) -> String {
    format!("erasure/{tenant}/")
}

impl MemoryEngine {
    /// The erasure orders this store holds for `tenant`.
    pub fn erasures(&self, tenant: &TenantId) -> Result<Vec<Erasure>, ErasureError> {
        self.sealed_settings(&prefix(tenant))?
            .into_iter()
            .map(|(name, value)| {
                postcard::from_bytes(&value)
                    .map_err(|e| ErasureError::Corrupt(format!("erasure order {name}: {e}")))
            })
            .collect()
    }

    /// Every erasure order this store holds.
    pub fn all_erasures(&self) -> Result<Vec<Erasure>, ErasureError> {
        self.sealed_settings("erasure/")?
            .into_iter()
            .map(|(name, value)| {
                postcard::from_bytes(&value)
                    .map_err(|e| ErasureError::Corrupt(format!("erasure order {name}: {e}")))
            })
            .collect()
    }

    /// A stamp for an order this hub issues now (later than everything it has seen).
    pub fn erasure_stamp(&self) -> agentdb_core::Stamp {
        self.next_stamp()
    }

    /// Applies an erasure order and keeps it, so that no op received later brings back what
    /// it erased. Applying an order twice erases nothing more than once.
    ///
    /// A tenant order destroys every key version of the tenant and deletes its rows (as
    /// [`Self::erase_tenant`] does) — except the episodes created after the order's stamp,
    /// which are written again under the tenant's new key (they are later writes, and every
    /// hub keeps them). A subject order deletes the matching episodes (tombstones, which
    /// replicate) and leaves the keys alone.
    pub fn apply_erasure(&self, order: &Erasure) -> Result<ErasureOutcome, ErasureError> {
        let outcome = match &order.scope {
            ErasureScope::Tenant => self.erase_through(order)?,
            ErasureScope::Subject(_) => self.erase_subject(order)?,
        };
        let value = postcard::to_stdvec(order)
            .map_err(|e| ErasureError::Corrupt(format!("erasure order: {e}")))?;
        self.put_sealed_setting(&format!("{}{}", prefix(&order.tenant), order.id), &value)?;
        Ok(outcome)
    }

    fn erase_through(&self, order: &Erasure) -> Result<ErasureOutcome, ErasureError> {
        let tenant = &order.tenant;
        let through = self
            .storage
            .version_vector(tenant)
            .map_err(ReadError::from)?;
        let destroyed_keys = self
            .storage
            .tenant_keys(tenant)
            .map_err(ReadError::from)?
            .iter()
            .map(|k| DestroyedKey {
                version: k.version,
                fingerprint: k.fingerprint(),
            })
            .collect();
        // Episodes created after the order, opened before their keys go.
        let mut survivors: Vec<(EpisodeId, LiveEpisode)> = Vec::new();
        let mut covered = 0u64;
        self.erase_tenant_with(tenant, &mut |state, row| {
            if row.deleted.is_some() {
                return Ok(());
            }
            if row.stamps.created <= order.stamp {
                covered += 1;
                return Ok(());
            }
            if let ReplicaState::Live(live) = row_state(state, &row, true)? {
                survivors.push((row.id, *live));
            }
            Ok(())
        })?;
        if !survivors.is_empty() {
            self.rewrite_survivors(tenant, survivors)?;
        }
        Ok(ErasureOutcome {
            through,
            episodes: covered,
            destroyed_keys,
        })
    }

    /// Writes episodes again after their tenant's keys were destroyed, under its new key, each
    /// as a new op of this hub (their state is unchanged, so peers merge it idempotently).
    fn rewrite_survivors(
        &self,
        tenant: &TenantId,
        survivors: Vec<(EpisodeId, LiveEpisode)>,
    ) -> Result<(), ErasureError> {
        let state =
            self.tenant_or_create(tenant, self.embedder.model(), self.embedder.dimensions())?;
        let _gate = state.erased.read();
        let _merge = state.merge.lock();
        let mut writes = Vec::new();
        let mut rows: Vec<(StoredEpisode, Option<Vec<f32>>)> = Vec::new();
        for (id, live) in survivors {
            let (row, vector) =
                self.state_row(&state, None, id, &ReplicaState::Live(Box::new(live)))?;
            writes.push(Write::Merge {
                tenant: tenant.clone(),
                id,
                row: Some(row.clone()),
                op: OpSeq::Next(self.hub.clone()),
            });
            rows.push((row, vector));
        }
        self.commit.submit(writes).map_err(ReadError::from)?;
        for (row, vector) in &rows {
            self.index_row(&state, row, vector.as_deref())?;
        }
        self.indexer.notify(&state);
        self.changed(tenant);
        Ok(())
    }

    fn erase_subject(&self, order: &Erasure) -> Result<ErasureOutcome, ErasureError> {
        let tenant = &order.tenant;
        let through = self
            .storage
            .version_vector(tenant)
            .map_err(ReadError::from)?;
        let Some(state) = self.tenant(tenant) else {
            return Ok(ErasureOutcome {
                through,
                episodes: 0,
                destroyed_keys: Vec::new(),
            });
        };
        let mut matching = Vec::new();
        let mut failure = None;
        self.storage
            .scan_episodes(tenant, &mut |row| {
                if row.deleted.is_some() || row.stamps.created > order.stamp {
                    return ControlFlow::Continue(());
                }
                match row_state(&state, &row, false) {
                    Ok(ReplicaState::Live(live)) if order.covers(&live) => matching.push(row.id),
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })
            .map_err(ReadError::from)?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        drop(state);
        let mut episodes = 0;
        for id in matching {
            if self.delete(tenant, &id)? {
                episodes += 1;
            }
        }
        Ok(ErasureOutcome {
            through,
            episodes,
            destroyed_keys: Vec::new(),
        })
    }

    /// Whether an order held for `tenant` erased `live` (so that a replicated copy of it is
    /// not stored again).
    pub(super) fn erased_by_order(orders: &[Erasure], live: &LiveEpisode) -> bool {
        orders.iter().any(|o| o.covers(live))
    }

    /// Orders of `tenant`, for the replication path (a failure to read them is a read error:
    /// the page is not applied, rather than applied without the rule).
    pub(super) fn orders_for(&self, tenant: &TenantId) -> Result<Arc<[Erasure]>, ReadError> {
        self.erasures(tenant)
            .map(Arc::from)
            .map_err(|e| ReadError::Corrupt(e.to_string()))
    }
}
