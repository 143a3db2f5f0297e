//! Key life cycle: crypto-erasing a tenant, rotating its key, re-wrapping under a new
//! master key.

use std::ops::ControlFlow;
use std::sync::Arc;

use agentdb_core::TenantId;
use agentdb_security::{Keyring, MasterKey};

use crate::error::{KeyError, ReadError};
use crate::storage::{StoredEpisode, Write};

use super::tenant::TenantState;
use super::types::EraseReport;
use super::{MemoryEngine, KEY_CHECK_META};

impl MemoryEngine {
    /// Erases a tenant: its keys are destroyed (crypto-shredding) and its rows deleted in one
    /// durable transaction; its index is dropped. Other tenants are untouched. The tenant's op
    /// log and version vector stay (episode ids and sequence numbers, no content): the ops
    /// this hub accepts afterwards are numbered after the erased ones, and links do not send
    /// the erased ops back. A hub that lacks them gets them from here without a state (as if
    /// their tombstones had been collected): it advances past them and deletes any copy it
    /// holds. This erases one hub; [`Self::apply_erasure`] applies an order every hub of a
    /// federation applies, and that keeps erased episodes from coming back.
    ///
    /// Storage engines do not overwrite freed pages, so ciphertext (and the wrapped key) may
    /// linger in free space until reused. The wrapped key is only useful together with the
    /// master key; rotating the master key afterwards ([`Self::rewrap_master_key`]) makes any
    /// such remnant permanently unreadable.
    pub fn erase_tenant(&self, tenant: &TenantId) -> Result<EraseReport, ReadError> {
        self.erase_tenant_with(tenant, &mut |_, _| Ok(()))
    }

    /// [`Self::erase_tenant`], showing each row to `visit` (with the tenant's keys, before
    /// they are destroyed, and no write able to land in between).
    pub(super) fn erase_tenant_with(
        &self,
        tenant: &TenantId,
        visit: &mut dyn FnMut(&TenantState, StoredEpisode) -> Result<(), ReadError>,
    ) -> Result<EraseReport, ReadError> {
        let _creating = self.creating.lock();
        loop {
            let state = self.tenant(tenant);
            let gate = state.as_ref().map(|s| s.erased.write());
            if gate.as_ref().is_some_and(|g| **g) {
                // Replaced by a re-index while we waited: erase its successor.
                continue;
            }
            let mut episodes = 0u64;
            let mut failure = None;
            self.storage.scan_episodes(tenant, &mut |row| {
                episodes += 1;
                if let Some(state) = &state {
                    if let Err(e) = visit(state, row) {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            let flags = self.commit.submit(vec![Write::EraseTenant {
                tenant: tenant.clone(),
            }])?;
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

    /// Re-wraps every tenant key and the store secret under `new_master` and records the new
    /// check value, in one transaction. No record is re-encrypted. After this, only
    /// `new_master` opens the store.
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
        // The store secret is re-wrapped too, so sealed settings and derived keys survive.
        writes.push(self.settings.rewrapped(&new)?);
        writes.push(Write::PutMeta {
            name: KEY_CHECK_META.into(),
            value: new.check_value()?,
        });
        self.commit.submit(writes)?;
        *keyring = new;
        Ok(())
    }
}
