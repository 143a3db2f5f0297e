//! The embedded default backend: one redb file.
//!
//! Tables (every per-tenant key starts with the tenant name; the key functions below are the
//! only place that prefix is built):
//!
//! | table         | key                      | value                          |
//! |---------------|--------------------------|--------------------------------|
//! | `episodes`    | (tenant, episode id u128)| [`StoredEpisode::encode`]      |
//! | `tenant_keys` | (tenant, version u32)    | wrapped tenant key             |
//! | `tenant_meta` | (tenant, name)           | setting bytes                  |
//! | `changes`     | (tenant, seq u64)        | episode id (16 bytes)          |
//! | `ops`         | (tenant, origin, seq u64)| episode id (16 bytes)          |
//! | `vv`          | (tenant, origin)         | highest op seq (u64)           |
//! | `peers`       | peer hub                 | `0x01` postcard(region)        |
//! | `peer_acks`   | (tenant, peer hub)       | `0x01` postcard(version vector)|
//! | `meta`        | name                     | setting bytes                  |
//!
//! Names in `meta` written by the engine: `clock` (the clock's high-water mark),
//! `master_key_check` (the master-key check value), `store_secret` (the store secret wrapped
//! under the master key) and `sealed/<name>` (a sealed setting; see the engine's `settings`
//! module). [`Storage::meta_with_prefix`] is a range scan of this table.
//!
//! Commits use `Durability::Immediate`: `apply` returns after the data is fsynced.

use std::ops::ControlFlow;
use std::path::Path;

use agentdb_core::{EpisodeId, HubId, Region, TenantId, VersionVector};
use agentdb_security::WrappedTenantKey;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    log_entry_name, merge_keeps, peers, raised_clock, reseal_replaces, tombstone_row, OpSeq,
    Storage, StorageError, StoredEpisode, Write, CLOCK_META, LOG_NUMBER_META,
};

const EPISODES: TableDefinition<'_, (&str, u128), &[u8]> = TableDefinition::new("episodes");
const TENANT_KEYS: TableDefinition<'_, (&str, u32), &[u8]> = TableDefinition::new("tenant_keys");
const TENANT_META: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("tenant_meta");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const CHANGES: TableDefinition<'_, (&str, u64), u128> = TableDefinition::new("changes");
const OPS: TableDefinition<'_, (&str, &str, u64), u128> = TableDefinition::new("ops");
const VV: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("vv");
const PEERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("peers");
const PEER_ACKS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("peer_acks");

/// Sorts after every hub id (ids are ASCII letters, digits, `.`, `_`, `-`).
const MAX_NAME: &str = "\u{10ffff}";

fn op_range<'a>(
    tenant: &'a TenantId,
    origin: &'a HubId,
    after: u64,
) -> std::ops::RangeInclusive<(&'a str, &'a str, u64)> {
    (tenant.as_str(), origin.as_str(), after.saturating_add(1))
        ..=(tenant.as_str(), origin.as_str(), u64::MAX)
}

fn vv_range(tenant: &TenantId) -> std::ops::RangeInclusive<(&str, &str)> {
    (tenant.as_str(), "")..=(tenant.as_str(), MAX_NAME)
}

/// Records `op` for episode `id` in the tenant's op log; false when `op` is not the next of
/// its origin.
fn record_op(
    ops: &mut redb::Table<'_, (&'static str, &'static str, u64), u128>,
    vv: &mut redb::Table<'_, (&'static str, &'static str), u64>,
    tenant: &TenantId,
    op: &OpSeq,
    id: &EpisodeId,
) -> Result<bool, StorageError> {
    let key = (tenant.as_str(), op.origin().as_str());
    let last = vv.get(key).map_err(backend)?.map_or(0, |v| v.value());
    let Some(seq) = op.seq_after(last) else {
        return Ok(false);
    };
    ops.insert((key.0, key.1, seq), id.as_uuid().as_u128())
        .map_err(backend)?;
    vv.insert(key, seq).map_err(backend)?;
    Ok(true)
}

fn decode_row(
    v: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<StoredEpisode>, StorageError> {
    Ok(match v {
        Some(v) => Some(StoredEpisode::decode(v.value())?),
        None => None,
    })
}

fn episode_key<'a>(tenant: &'a TenantId, id: &EpisodeId) -> (&'a str, u128) {
    (tenant.as_str(), id.as_uuid().as_u128())
}

fn episode_range(tenant: &TenantId) -> std::ops::RangeInclusive<(&str, u128)> {
    (tenant.as_str(), 0)..=(tenant.as_str(), u128::MAX)
}

/// The keys of a tenant's episodes with an id above `after` (all of them for `None`), or
/// `None` when no id is above it.
fn episode_range_after<'a>(
    tenant: &'a TenantId,
    after: Option<&EpisodeId>,
) -> Option<std::ops::RangeInclusive<(&'a str, u128)>> {
    let start = match after {
        Some(id) => id.as_uuid().as_u128().checked_add(1)?,
        None => 0,
    };
    Some((tenant.as_str(), start)..=(tenant.as_str(), u128::MAX))
}

fn key_range(tenant: &TenantId) -> std::ops::RangeInclusive<(&str, u32)> {
    (tenant.as_str(), 0)..=(tenant.as_str(), u32::MAX)
}

fn change_range(tenant: &TenantId, after: u64) -> std::ops::RangeInclusive<(&str, u64)> {
    (tenant.as_str(), after.saturating_add(1))..=(tenant.as_str(), u64::MAX)
}

/// Appends `id` to the tenant's change log.
fn log_change(
    changes: &mut redb::Table<'_, (&'static str, u64), u128>,
    tenant: &TenantId,
    id: &EpisodeId,
) -> Result<(), StorageError> {
    let last = changes
        .range(change_range(tenant, 0))
        .map_err(backend)?
        .next_back()
        .transpose()
        .map_err(backend)?
        .map_or(0, |(k, _)| k.value().1);
    changes
        .insert((tenant.as_str(), last + 1), id.as_uuid().as_u128())
        .map_err(backend)?;
    Ok(())
}

fn meta_key<'a>(tenant: &'a TenantId, name: &'a str) -> (&'a str, &'a str) {
    (tenant.as_str(), name)
}

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// A redb database file.
#[derive(Debug)]
pub struct RedbStorage {
    db: Database,
}

impl RedbStorage {
    /// Opens the database at `path`, creating it (and its tables) if needed.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path).map_err(|e| StorageError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let has_tables = {
            let tx = db.begin_read().map_err(backend)?;
            // `peers` and `peer_acks` came later than the others: a database without them
            // gets them here.
            tx.open_table(OPS).is_ok()
                && tx.open_table(PEERS).is_ok()
                && tx.open_table(PEER_ACKS).is_ok()
        };
        if has_tables {
            return Ok(Self { db });
        }
        let tx = db.begin_write().map_err(backend)?;
        {
            tx.open_table(EPISODES).map_err(backend)?;
            tx.open_table(TENANT_KEYS).map_err(backend)?;
            tx.open_table(TENANT_META).map_err(backend)?;
            tx.open_table(META).map_err(backend)?;
            tx.open_table(CHANGES).map_err(backend)?;
            tx.open_table(OPS).map_err(backend)?;
            tx.open_table(VV).map_err(backend)?;
            tx.open_table(PEERS).map_err(backend)?;
            tx.open_table(PEER_ACKS).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(Self { db })
    }
}

impl Storage for RedbStorage {
    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError> {
        let tx = self.db.begin_write().map_err(backend)?;
        let mut out = Vec::with_capacity(writes.len());
        {
            let mut episodes = tx.open_table(EPISODES).map_err(backend)?;
            let mut keys = tx.open_table(TENANT_KEYS).map_err(backend)?;
            let mut tmeta = tx.open_table(TENANT_META).map_err(backend)?;
            let mut meta = tx.open_table(META).map_err(backend)?;
            let mut changes = tx.open_table(CHANGES).map_err(backend)?;
            let mut ops = tx.open_table(OPS).map_err(backend)?;
            let mut vv = tx.open_table(VV).map_err(backend)?;
            let mut peer_hubs = tx.open_table(PEERS).map_err(backend)?;
            let mut peer_acks = tx.open_table(PEER_ACKS).map_err(backend)?;
            for w in writes {
                let applied = match w {
                    Write::PutEpisode {
                        tenant,
                        row,
                        origin,
                    } => {
                        let key = episode_key(tenant, &row.id);
                        if episodes.get(key).map_err(backend)?.is_some() {
                            false
                        } else {
                            episodes
                                .insert(key, row.encode().as_slice())
                                .map_err(backend)?;
                            log_change(&mut changes, tenant, &row.id)?;
                            let op = OpSeq::Next(origin.clone());
                            record_op(&mut ops, &mut vv, tenant, &op, &row.id)?
                        }
                    }
                    Write::ReplaceEpisode { tenant, row } => {
                        let key = episode_key(tenant, &row.id);
                        let live = match episodes.get(key).map_err(backend)? {
                            Some(v) => StoredEpisode::decode(v.value())?.deleted.is_none(),
                            None => false,
                        };
                        if live {
                            episodes
                                .insert(key, row.encode().as_slice())
                                .map_err(backend)?;
                        }
                        live
                    }
                    Write::ResealEpisode { tenant, row } => {
                        let key = episode_key(tenant, &row.id);
                        let existing = decode_row(episodes.get(key).map_err(backend)?)?;
                        let replaces = reseal_replaces(existing.as_ref(), row);
                        if replaces {
                            episodes
                                .insert(key, row.encode().as_slice())
                                .map_err(backend)?;
                        }
                        replaces
                    }
                    Write::Tombstone {
                        tenant,
                        id,
                        stamp,
                        model,
                        origin,
                    } => {
                        let key = episode_key(tenant, id);
                        let existing = decode_row(episodes.get(key).map_err(backend)?)?;
                        match tombstone_row(existing.as_ref(), *id, stamp, model) {
                            Some(tomb) => {
                                episodes
                                    .insert(key, tomb.encode().as_slice())
                                    .map_err(backend)?;
                                log_change(&mut changes, tenant, id)?;
                                let op = OpSeq::Next(origin.clone());
                                record_op(&mut ops, &mut vv, tenant, &op, id)?
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
                        if !record_op(&mut ops, &mut vv, tenant, op, id)? {
                            false
                        } else {
                            if let Some(row) = row {
                                let key = episode_key(tenant, id);
                                let existing = decode_row(episodes.get(key).map_err(backend)?)?;
                                if !merge_keeps(existing.as_ref(), row) {
                                    episodes
                                        .insert(key, row.encode().as_slice())
                                        .map_err(backend)?;
                                    log_change(&mut changes, tenant, id)?;
                                }
                            }
                            true
                        }
                    }
                    Write::CollectTombstone { tenant, id } => {
                        let key = episode_key(tenant, id);
                        let existing = decode_row(episodes.get(key).map_err(backend)?)?;
                        match existing {
                            Some(row) if row.deleted.is_some() => {
                                episodes.remove(key).map_err(backend)?;
                                true
                            }
                            _ => false,
                        }
                    }
                    Write::CreateTenant {
                        tenant,
                        key,
                        settings,
                    } => {
                        let exists = keys
                            .range(key_range(tenant))
                            .map_err(backend)?
                            .next()
                            .is_some();
                        if !exists {
                            keys.insert((tenant.as_str(), key.version), key.bytes.as_slice())
                                .map_err(backend)?;
                            for (name, value) in settings {
                                tmeta
                                    .insert(meta_key(tenant, name), value.as_slice())
                                    .map_err(backend)?;
                            }
                        }
                        !exists
                    }
                    Write::PutTenantKey { tenant, key } => {
                        keys.insert((tenant.as_str(), key.version), key.bytes.as_slice())
                            .map_err(backend)?;
                        true
                    }
                    Write::DeleteTenantKey { tenant, version } => {
                        let newest = keys
                            .range(key_range(tenant))
                            .map_err(backend)?
                            .next_back()
                            .transpose()
                            .map_err(backend)?
                            .map(|(k, _)| k.value().1);
                        match newest {
                            Some(newest) if newest != *version => keys
                                .remove((tenant.as_str(), *version))
                                .map_err(backend)?
                                .is_some(),
                            _ => false,
                        }
                    }
                    Write::PutTenantMeta {
                        tenant,
                        name,
                        value,
                    } => {
                        tmeta
                            .insert(meta_key(tenant, name), value.as_slice())
                            .map_err(backend)?;
                        true
                    }
                    Write::PutMeta { name, value } => {
                        meta.insert(name.as_str(), value.as_slice())
                            .map_err(backend)?;
                        true
                    }
                    Write::AppendMeta { log, value } => {
                        let number = {
                            let last = meta.get(LOG_NUMBER_META).map_err(backend)?;
                            last.as_ref()
                                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                                .map_or(0, u64::from_be_bytes)
                                + 1
                        };
                        meta.insert(LOG_NUMBER_META, number.to_be_bytes().as_slice())
                            .map_err(backend)?;
                        meta.insert(log_entry_name(log, number).as_str(), value.as_slice())
                            .map_err(backend)?;
                        true
                    }
                    Write::DeleteMeta { name } => {
                        meta.remove(name.as_str()).map_err(backend)?.is_some()
                    }
                    Write::ClockAtLeast { hlc } => {
                        let raised = {
                            let current = meta.get(CLOCK_META).map_err(backend)?;
                            raised_clock(current.as_ref().map(|v| v.value()), *hlc)
                        };
                        match raised {
                            Some(value) => {
                                meta.insert(CLOCK_META, value.as_slice()).map_err(backend)?;
                                true
                            }
                            None => false,
                        }
                    }
                    Write::KnowPeer { peer, region } => {
                        let value = peers::encode_region(region);
                        let same = peer_hubs
                            .get(peer.as_str())
                            .map_err(backend)?
                            .is_some_and(|v| v.value() == value.as_slice());
                        if !same {
                            peer_hubs
                                .insert(peer.as_str(), value.as_slice())
                                .map_err(backend)?;
                        }
                        !same
                    }
                    Write::JoinPeerAck {
                        tenant,
                        peer,
                        acked,
                    } => {
                        let key = (tenant.as_str(), peer.as_str());
                        let joined = {
                            let existing = peer_acks.get(key).map_err(backend)?;
                            peers::joined_acked(existing.as_ref().map(|v| v.value()), acked)?
                        };
                        match joined {
                            Some(value) => {
                                peer_acks.insert(key, value.as_slice()).map_err(backend)?;
                                true
                            }
                            None => false,
                        }
                    }
                    Write::ForgetPeer { peer } => {
                        let mut any = peer_hubs.remove(peer.as_str()).map_err(backend)?.is_some();
                        peer_acks
                            .retain(|(_, p), _| {
                                let gone = p == peer.as_str();
                                any |= gone;
                                !gone
                            })
                            .map_err(backend)?;
                        any
                    }
                    Write::EraseTenant { tenant } => {
                        let mut any = false;
                        episodes
                            .retain_in(episode_range(tenant), |_, _| {
                                any = true;
                                false
                            })
                            .map_err(backend)?;
                        keys.retain_in(key_range(tenant), |_, _| {
                            any = true;
                            false
                        })
                        .map_err(backend)?;
                        changes
                            .retain_in(change_range(tenant, 0), |_, _| false)
                            .map_err(backend)?;
                        let t = tenant.as_str();
                        tmeta
                            .retain_in((t, "")..(t, "\u{10ffff}"), |_, _| false)
                            .map_err(backend)?;
                        any
                    }
                };
                out.push(applied);
            }
        }
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn episode(
        &self,
        tenant: &TenantId,
        id: &EpisodeId,
    ) -> Result<Option<StoredEpisode>, StorageError> {
        Ok(self
            .episodes(tenant, std::slice::from_ref(id))?
            .pop()
            .flatten())
    }

    /// One read transaction and one table for all of `ids` (a search's hits): opening them
    /// per id cost each hit a transaction and the table's allocations.
    fn episodes(
        &self,
        tenant: &TenantId,
        ids: &[EpisodeId],
    ) -> Result<Vec<Option<StoredEpisode>>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(EPISODES).map_err(backend)?;
        ids.iter()
            .map(
                |id| match table.get(episode_key(tenant, id)).map_err(backend)? {
                    Some(v) => Ok(Some(StoredEpisode::decode(v.value())?)),
                    None => Ok(None),
                },
            )
            .collect()
    }

    fn scan_episodes(
        &self,
        tenant: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(EPISODES).map_err(backend)?;
        for item in table.range(episode_range(tenant)).map_err(backend)? {
            let (_, v) = item.map_err(backend)?;
            if visit(StoredEpisode::decode(v.value())?).is_break() {
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
        let Some(range) = episode_range_after(tenant, after) else {
            // `after` is the greatest id: nothing follows it.
            return Ok(());
        };
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(EPISODES).map_err(backend)?;
        for item in table.range(range).map_err(backend)? {
            let (_, v) = item.map_err(backend)?;
            if visit(StoredEpisode::decode(v.value())?).is_break() {
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
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(CHANGES).map_err(backend)?;
        let mut out = Vec::new();
        for item in table
            .range(change_range(tenant, after))
            .map_err(backend)?
            .take(limit)
        {
            let (k, v) = item.map_err(backend)?;
            out.push((
                k.value().1,
                EpisodeId::from_uuid(uuid::Uuid::from_u128(v.value())),
            ));
        }
        Ok(out)
    }

    fn change_heads(&self) -> Result<Vec<(TenantId, u64)>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(CHANGES).map_err(backend)?;
        let mut out: Vec<(TenantId, u64)> = Vec::new();
        for item in table.iter().map_err(backend)? {
            let (k, _) = item.map_err(backend)?;
            let (tenant, seq) = k.value();
            match out.last_mut() {
                Some((t, head)) if t.as_str() == tenant => *head = seq,
                _ => out.push((TenantId::new(tenant).map_err(backend)?, seq)),
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
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(OPS).map_err(backend)?;
        let mut out = Vec::new();
        for item in table
            .range(op_range(tenant, origin, after))
            .map_err(backend)?
            .take(limit)
        {
            let (k, v) = item.map_err(backend)?;
            out.push((
                k.value().2,
                EpisodeId::from_uuid(uuid::Uuid::from_u128(v.value())),
            ));
        }
        Ok(out)
    }

    fn version_vector(&self, tenant: &TenantId) -> Result<VersionVector, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(VV).map_err(backend)?;
        let mut out = VersionVector::new();
        for item in table.range(vv_range(tenant)).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            out.set(HubId::new(k.value().1).map_err(backend)?, v.value());
        }
        Ok(out)
    }

    fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TENANT_KEYS).map_err(backend)?;
        let mut out: Vec<TenantId> = Vec::new();
        for item in table.iter().map_err(backend)? {
            let (k, _) = item.map_err(backend)?;
            let (name, _) = k.value();
            if out.last().is_none_or(|t| t.as_str() != name) {
                out.push(TenantId::new(name).map_err(backend)?);
            }
        }
        Ok(out)
    }

    fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<WrappedTenantKey>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TENANT_KEYS).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(key_range(tenant)).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            out.push(WrappedTenantKey {
                version: k.value().1,
                bytes: v.value().to_vec(),
            });
        }
        Ok(out)
    }

    fn tenant_meta(&self, tenant: &TenantId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TENANT_META).map_err(backend)?;
        Ok(table
            .get(meta_key(tenant, name))
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(META).map_err(backend)?;
        Ok(table
            .get(name)
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(META).map_err(backend)?;
        let mut out = Vec::new();
        // Names sort in byte order, so those with the prefix form one run starting at it.
        for item in table.range(prefix..).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let name = k.value();
            if !name.starts_with(prefix) {
                break;
            }
            out.push((name.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn peers(&self) -> Result<Vec<(HubId, Region)>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(PEERS).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let peer = HubId::new(k.value()).map_err(backend)?;
            out.push((peer, peers::decode_region(v.value())?));
        }
        Ok(out)
    }

    fn peer_acks(&self, tenant: &TenantId) -> Result<Vec<(HubId, VersionVector)>, StorageError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(PEER_ACKS).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(vv_range(tenant)).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let peer = HubId::new(k.value().1).map_err(backend)?;
            out.push((peer, peers::decode_acked(v.value())?));
        }
        Ok(out)
    }
}
