//! The replication protocol's view of the memory engine.

use std::sync::Arc;

use agentdb_core::{AppliedOps, ControlRecord, Op, TenantId, VersionVector};
use agentdb_proto::fed::{ReplicaStore, StoreFailure};

use crate::state::{unix_ms, HubState};

/// [`ReplicaStore`] over a [`MemoryEngine`]. Its methods block (storage reads, fsynced
/// commits): links call them from their own threads.
#[derive(Debug, Clone)]
pub(crate) struct EngineStore {
    pub state: Arc<HubState>,
}

impl ReplicaStore for EngineStore {
    fn tenants(&self) -> Vec<TenantId> {
        self.state.engine.tenants()
    }

    fn version_vector(&self, tenant: &TenantId) -> VersionVector {
        // A failed read reports "holds nothing": the peer then offers ops again, which are
        // skipped as duplicates. Nothing is lost.
        self.state.engine.version_vector(tenant).unwrap_or_default()
    }

    fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, StoreFailure> {
        self.state
            .engine
            .ops_since(tenant, known, limit, max_bytes)
            .map_err(|e| StoreFailure(e.to_string()))
    }

    /// Stamps are checked against the engine's clock (the one its own stamps come from), not
    /// the session's.
    fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        _now_ms: u64,
    ) -> Result<AppliedOps, StoreFailure> {
        let engine = &self.state.engine;
        let out = engine
            .apply_ops(tenant, ops, engine.now().unix_ms())
            .map_err(|e| StoreFailure(e.to_string()))?;
        if out.applied > 0 {
            // Episodes stored, changed or deleted here without passing the quota book: the
            // tenant's stored bytes are counted again when next needed.
            self.state.quotas.recount(tenant);
        }
        if let Some(newest) = out.newest_ms {
            let lag_ms = unix_ms().saturating_sub(newest);
            self.state
                .metrics
                .fed_propagation
                .observe(lag_ms as f64 / 1000.0);
        }
        Ok(out)
    }

    fn control_records(&self) -> Vec<ControlRecord> {
        // A failed read sends nothing now; the records go on the next notice or link.
        crate::control::records(&self.state).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the control records");
            Vec::new()
        })
    }

    fn receive_control(&self, records: Vec<ControlRecord>) -> Result<(), StoreFailure> {
        crate::control::receive(&self.state, records).map_err(StoreFailure)
    }
}
