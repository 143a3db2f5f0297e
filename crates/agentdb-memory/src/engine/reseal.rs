//! Re-sealing a tenant's rows under its current key version, and destroying the versions no
//! row uses any more.
//!
//! After [`MemoryEngine::rotate_tenant_key`] new records are sealed with the new version at
//! once, and older rows keep opening with the versions that sealed them. A re-seal pass
//! ([`MemoryEngine::reseal`]) rewrites those rows' sealed body and vector under the current
//! version, a batch at a time; then [`MemoryEngine::destroy_key_version`] deletes an old
//! version's wrapped key for good.
//!
//! A re-sealed row is the same episode: its clear fields, merge stamps, op log, change log and
//! version vector stay as they are (`Write::ResealEpisode` is not an op), and its vector does
//! not change, so neither does the index.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use agentdb_core::{DestroyedKey, EpisodeId, TenantId};
use agentdb_security::{sealed_key_version, TenantKey};
use zeroize::Zeroizing;

use crate::error::{KeyError, ReadError};
use crate::storage::{StoredEpisode, Write};

use super::body::{self, BODY_KIND, VECTOR_KIND};
use super::tenant::TenantState;
use super::MemoryEngine;

/// Default number of rows re-sealed per transaction.
pub const RESEAL_BATCH: usize = 256;

/// What a re-seal pass has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResealProgress {
    /// The key version rows are re-sealed under (the tenant's current one).
    pub version: u32,
    /// Live rows sealed with an older version when the pass started.
    pub found: u64,
    /// Rows re-sealed.
    pub resealed: u64,
    /// Rows left alone because they changed or were deleted while the pass ran (a row
    /// updated meanwhile may still be on its older version: run another pass).
    pub skipped: u64,
}

/// One key version of a tenant, as [`MemoryEngine::key_versions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyVersion {
    /// The version.
    pub version: u32,
    /// SHA-256 of its wrapped form, hex (as a destruction receipt names it).
    pub fingerprint: String,
    /// Rows (live) with a sealed part under this version.
    pub records: u64,
    /// Whether new records are sealed with it.
    pub current: bool,
}

impl MemoryEngine {
    /// Re-seals every live row of `tenant` whose body or vector is sealed with an older key
    /// version than the tenant's current one, under the current one; see
    /// [`Self::reseal_with`].
    pub fn reseal(&self, tenant: &TenantId, batch: usize) -> Result<ResealProgress, KeyError> {
        self.reseal_with(tenant, batch, &mut |_| {})
    }

    /// [`Self::reseal`], calling `progress` after each batch.
    ///
    /// The rows to re-seal are found by one scan; then `batch` of them at a time (at least
    /// one) are read, opened with the versions that sealed them, sealed under the current
    /// version and written back in one durable transaction, under the tenant's merge lock, so
    /// that updates, deletes and replicated ops of the tenant wait for the batch. Writes
    /// other than those (new episodes) go on meanwhile, and are sealed with the current
    /// version anyway. A row replaced only if its merge stamps are still those it was read
    /// with (`Write::ResealEpisode`), so a writer sharing the store cannot lose an update to
    /// a re-seal.
    ///
    /// A row written with an older version while the pass ran (a store that took the key
    /// just before a rotation) is left for the next pass; [`Self::destroy_key_version`]
    /// refuses while any row uses the version.
    pub fn reseal_with(
        &self,
        tenant: &TenantId,
        batch: usize,
        progress: &mut dyn FnMut(&ResealProgress),
    ) -> Result<ResealProgress, KeyError> {
        let state = self
            .tenant(tenant)
            .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
        let current = current_version(&state)?;
        let mut stale = Vec::new();
        let mut failure = None;
        self.storage.scan_episodes(tenant, &mut |row| {
            match row_versions(&row) {
                Ok(versions) if versions.iter().any(|v| *v != current) => stale.push(row.id),
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        let mut done = ResealProgress {
            version: current,
            found: stale.len() as u64,
            ..ResealProgress::default()
        };
        progress(&done);
        for ids in stale.chunks(batch.max(1)) {
            let (resealed, skipped, version) = self.reseal_batch(tenant, ids)?;
            done.resealed += resealed;
            done.skipped += skipped;
            done.version = version;
            progress(&done);
        }
        Ok(done)
    }

    /// Re-seals the rows `ids` in one transaction; how many were re-sealed and skipped, and
    /// the version they were sealed under.
    fn reseal_batch(
        &self,
        tenant: &TenantId,
        ids: &[EpisodeId],
    ) -> Result<(u64, u64, u32), KeyError> {
        loop {
            let state = self
                .tenant(tenant)
                .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
            let gate = state.erased.read();
            if *gate {
                // Erased or replaced by a re-index while we waited: look again.
                continue;
            }
            let _merge = state.merge.lock();
            let key = state
                .current_key()
                .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
            let mut writes = Vec::with_capacity(ids.len());
            let mut skipped = 0u64;
            for row in self.storage.episodes(tenant, ids)? {
                let Some(row) = row.filter(|r| r.deleted.is_none()) else {
                    skipped += 1;
                    continue;
                };
                if row_versions(&row)?.iter().all(|v| *v == key.version()) {
                    // Written again meanwhile, under the current version.
                    skipped += 1;
                    continue;
                }
                writes.push(Write::ResealEpisode {
                    tenant: tenant.clone(),
                    row: resealed_row(&state, &key, row)?,
                });
            }
            let flags = if writes.is_empty() {
                Vec::new()
            } else {
                self.commit.submit(writes)?
            };
            let resealed = flags.iter().filter(|f| **f).count() as u64;
            skipped += flags.len() as u64 - resealed;
            return Ok((resealed, skipped, key.version()));
        }
    }

    /// The tenant's key versions, oldest first, with how many live rows use each.
    pub fn key_versions(&self, tenant: &TenantId) -> Result<Vec<KeyVersion>, KeyError> {
        let wrapped = self.storage.tenant_keys(tenant)?;
        let newest = wrapped
            .last()
            .map(|w| w.version)
            .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
        let mut records: BTreeMap<u32, u64> = BTreeMap::new();
        let mut failure = None;
        self.storage.scan_episodes(tenant, &mut |row| {
            match row_versions(&row) {
                Ok(versions) => {
                    for v in versions {
                        *records.entry(v).or_default() += 1;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(wrapped
            .iter()
            .map(|w| KeyVersion {
                version: w.version,
                fingerprint: w.fingerprint(),
                records: records.get(&w.version).copied().unwrap_or(0),
                current: w.version == newest,
            })
            .collect())
    }

    /// Destroys key version `version` of `tenant`: deletes its wrapped key durably and drops
    /// it from memory. Refused while any row is sealed with it ([`KeyError::VersionInUse`]:
    /// re-seal first, see [`Self::reseal`]) and for the current version.
    ///
    /// No write of the tenant lands while the rows are checked and the key deleted. The
    /// storage may keep the deleted bytes in free pages until they are reused (see
    /// [`Self::erase_tenant`]); without the master key they open nothing, and a master-key
    /// rewrap ([`Self::rewrap_master_key`]) makes them useless for good.
    pub fn destroy_key_version(
        &self,
        tenant: &TenantId,
        version: u32,
    ) -> Result<DestroyedKey, KeyError> {
        loop {
            let state = self
                .tenant(tenant)
                .ok_or_else(|| KeyError::UnknownTenant(tenant.clone()))?;
            let gate = state.erased.write();
            if *gate {
                // Erased or replaced by a re-index while we waited: look again.
                continue;
            }
            if current_version(&state)? == version {
                return Err(KeyError::CurrentVersion {
                    tenant: tenant.clone(),
                    version,
                });
            }
            let wrapped = self
                .storage
                .tenant_keys(tenant)?
                .into_iter()
                .find(|w| w.version == version)
                .ok_or_else(|| KeyError::UnknownVersion {
                    tenant: tenant.clone(),
                    version,
                })?;
            let mut records = 0u64;
            let mut failure = None;
            self.storage.scan_episodes(tenant, &mut |row| {
                match row_versions(&row) {
                    Ok(versions) if versions.contains(&version) => records += 1,
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            if records > 0 {
                return Err(KeyError::VersionInUse {
                    tenant: tenant.clone(),
                    version,
                    records,
                });
            }
            let deleted = self.commit.submit(vec![Write::DeleteTenantKey {
                tenant: tenant.clone(),
                version,
            }])?;
            if !deleted.first().copied().unwrap_or(false) {
                // Another writer of a shared store rotated or destroyed it meanwhile.
                return Err(KeyError::UnknownVersion {
                    tenant: tenant.clone(),
                    version,
                });
            }
            state.keys.write().remove(&version);
            drop(gate);
            return Ok(DestroyedKey {
                version,
                fingerprint: wrapped.fingerprint(),
            });
        }
    }
}

/// The tenant's current (newest) key version.
fn current_version(state: &TenantState) -> Result<u32, KeyError> {
    state
        .current_key()
        .map(|k| k.version())
        .ok_or_else(|| KeyError::UnknownTenant(state.id.clone()))
}

/// The key versions a row's sealed parts are sealed with (none for a tombstone).
fn row_versions(row: &StoredEpisode) -> Result<Vec<u32>, ReadError> {
    let mut out = Vec::with_capacity(2);
    for sealed in [&row.sealed_body, &row.sealed_vector] {
        if !sealed.is_empty() {
            let v = sealed_key_version(sealed)?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// `row` with its body and vector opened with the versions that sealed them and sealed again
/// under `key`; everything else as it was.
fn resealed_row(
    state: &TenantState,
    key: &TenantKey,
    row: StoredEpisode,
) -> Result<StoredEpisode, ReadError> {
    let id = row.id.to_bytes();
    let reseal = |kind: &'static str, sealed: &[u8]| -> Result<Vec<u8>, ReadError> {
        if sealed.is_empty() || sealed_key_version(sealed)? == key.version() {
            return Ok(sealed.to_vec());
        }
        let version = sealed_key_version(sealed)?;
        let old = state.keys.read().get(&version).cloned().ok_or_else(|| {
            ReadError::Crypto(format!(
                "key version {version} of tenant {} is gone",
                state.id
            ))
        })?;
        let plain = Zeroizing::new(old.open(body::aad(kind, old.tenant(), &id), sealed)?);
        Ok(key.seal(body::aad(kind, key.tenant(), &id), &plain)?)
    };
    Ok(StoredEpisode {
        sealed_body: reseal(BODY_KIND, &row.sealed_body)?,
        sealed_vector: reseal(VECTOR_KIND, &row.sealed_vector)?,
        ..row
    })
}
