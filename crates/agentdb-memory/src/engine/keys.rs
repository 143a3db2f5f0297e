//! Key life cycle: crypto-erasing a tenant, rotating its key, re-wrapping under a new
//! master key.

use std::ops::ControlFlow;
use std::sync::Arc;

use agentdb_core::TenantId;
use agentdb_security::{Keyring, MasterKey};

use crate::error::{KeyError, ReadError};
use crate::storage::Write;

use super::tenant::ERASED_META;
use super::types::EraseReport;
use super::{MemoryEngine, KEY_CHECK_META};

impl MemoryEngine {
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
