//! Online key operations: rotation, re-sealing under the new version, destroying old versions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use agentdb_core::{EpisodeId, EpisodeUpdate, HubId, NewEpisode, TenantId};
use agentdb_memory::storage::{RedbStorage, Storage, StoredEpisode};
use agentdb_memory::{KeyError, MemStorage, MemoryEngine, Query};
use agentdb_security::{sealed_key_version, MasterKey};

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn open(storage: Arc<dyn Storage>) -> MemoryEngine {
    MemoryEngine::builder(storage, MasterKey::from_bytes([9; 32]))
        .open()
        .unwrap()
}

fn redb(dir: &Path) -> Arc<RedbStorage> {
    Arc::new(RedbStorage::open(&dir.join("agentdb.redb")).unwrap())
}

fn episode(n: usize) -> NewEpisode {
    NewEpisode::new(
        format!("task {n} invoice{n}"),
        format!("input {n}"),
        format!("output {n}"),
        0.5,
    )
}

/// Every row of the tenant, by id.
fn rows(storage: &dyn Storage) -> BTreeMap<EpisodeId, StoredEpisode> {
    let mut out = BTreeMap::new();
    storage
        .scan_episodes(&acme(), &mut |row| {
            out.insert(row.id, row);
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

/// The key versions of a live row's body and vector.
fn versions(row: &StoredEpisode) -> (u32, u32) {
    (
        sealed_key_version(&row.sealed_body).unwrap(),
        sealed_key_version(&row.sealed_vector).unwrap(),
    )
}

fn live_versions(storage: &dyn Storage) -> BTreeMap<EpisodeId, (u32, u32)> {
    rows(storage)
        .into_iter()
        .filter(|(_, r)| r.deleted.is_none())
        .map(|(id, r)| (id, versions(&r)))
        .collect()
}

/// What must not change when rows are re-sealed: each row's clear fields and stamps, the
/// change log, the op log and the version vector.
fn bookkeeping(storage: &dyn Storage) -> String {
    let t = acme();
    let clear: Vec<String> = rows(storage)
        .into_values()
        .map(|r| {
            format!(
                "{} {:?} {} {} {:?} {} {:?} {:?}",
                r.id, r.created, r.reward, r.success, r.task_hash, r.model, r.deleted, r.stamps
            )
        })
        .collect();
    let vv = storage.version_vector(&t).unwrap();
    let ops: Vec<_> = vv
        .iter()
        .map(|(hub, _)| storage.ops(&t, hub, 0, usize::MAX).unwrap())
        .collect();
    format!(
        "{clear:?}\n{:?}\n{ops:?}\n{vv:?}",
        storage.changes(&t, 0, usize::MAX).unwrap()
    )
}

fn finds(engine: &MemoryEngine, n: usize, id: EpisodeId) -> bool {
    engine
        .query(&acme(), &Query::text(format!("task {n} invoice{n}"), 5))
        .unwrap()
        .iter()
        .any(|m| m.episode.id == id)
}

#[test]
fn after_rotation_new_writes_use_the_new_version_and_old_rows_still_read() {
    let storage = Arc::new(MemStorage::new());
    let engine = open(storage.clone());
    let old: Vec<EpisodeId> = (0..5)
        .map(|n| engine.store(&acme(), episode(n)).unwrap().id)
        .collect();
    assert_eq!(engine.rotate_tenant_key(&acme()).unwrap(), 2);
    let new: Vec<EpisodeId> = (5..8)
        .map(|n| engine.store(&acme(), episode(n)).unwrap().id)
        .collect();
    let v = live_versions(storage.as_ref());
    for id in &old {
        assert_eq!(v[id], (1, 1));
    }
    for id in &new {
        assert_eq!(v[id], (2, 2));
    }
    for (n, id) in old.iter().chain(&new).enumerate() {
        assert_eq!(
            engine.get(&acme(), id).unwrap().unwrap().task,
            format!("task {n} invoice{n}")
        );
        assert!(finds(&engine, n, *id));
    }
    let listed = engine.key_versions(&acme()).unwrap();
    let summary: Vec<(u32, u64, bool)> = listed
        .iter()
        .map(|k| (k.version, k.records, k.current))
        .collect();
    assert_eq!(summary, vec![(1, 5, false), (2, 3, true)]);
}

#[test]
fn reseal_moves_every_row_to_the_current_version_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let storage = redb(dir.path());
    let engine = open(storage.clone());
    let ids: Vec<EpisodeId> = (0..20)
        .map(|n| engine.store(&acme(), episode(n)).unwrap().id)
        .collect();
    let update = EpisodeUpdate {
        reward: Some(0.9),
        critique: Some(Some("checked".into())),
        ..EpisodeUpdate::default()
    };
    assert!(engine.update(&acme(), &ids[3], &update).unwrap());
    assert!(engine.delete(&acme(), &ids[4]).unwrap());
    engine.rotate_tenant_key(&acme()).unwrap();
    let before = bookkeeping(storage.as_ref());
    let vv = engine.version_vector(&acme()).unwrap();

    let mut seen = Vec::new();
    let done = engine
        .reseal_with(&acme(), 3, &mut |p| seen.push(p.resealed))
        .unwrap();
    assert_eq!(
        (done.version, done.found, done.resealed, done.skipped),
        (2, 19, 19, 0)
    );
    // Progress after every batch of three.
    assert_eq!(seen, vec![0, 3, 6, 9, 12, 15, 18, 19]);
    assert!(live_versions(storage.as_ref())
        .values()
        .all(|v| *v == (2, 2)));
    assert_eq!(bookkeeping(storage.as_ref()), before);
    assert_eq!(engine.version_vector(&acme()).unwrap(), vv);

    // Nothing left to do.
    assert_eq!(engine.reseal(&acme(), 3).unwrap().found, 0);
    for (n, id) in ids.iter().enumerate() {
        let got = engine.get(&acme(), id).unwrap();
        if n == 4 {
            assert!(got.is_none());
            continue;
        }
        let got = got.unwrap();
        assert_eq!(got.output, format!("output {n}"));
        assert!(finds(&engine, n, *id), "episode {n}");
    }
    let updated = engine.get(&acme(), &ids[3]).unwrap().unwrap();
    assert_eq!(updated.critique.as_deref(), Some("checked"));
    assert_eq!(updated.reward, 0.9);

    // The old version can go now, and the store opens and reads without it.
    engine.destroy_key_version(&acme(), 1).unwrap();
    drop(engine);
    let engine = open(storage.clone());
    for (n, id) in ids.iter().enumerate().filter(|(n, _)| *n != 4) {
        assert!(finds(&engine, n, *id), "episode {n} after reopening");
    }
}

#[test]
fn a_version_is_destroyed_only_when_no_row_uses_it_and_it_is_not_current() {
    let dir = tempfile::tempdir().unwrap();
    let storage = redb(dir.path());
    let engine = open(storage.clone());
    let ids: Vec<EpisodeId> = (0..4)
        .map(|n| engine.store(&acme(), episode(n)).unwrap().id)
        .collect();
    engine.rotate_tenant_key(&acme()).unwrap();
    let v1 = engine.key_versions(&acme()).unwrap()[0].clone();
    assert_eq!((v1.version, v1.records), (1, 4));

    assert!(matches!(
        engine.destroy_key_version(&acme(), 1),
        Err(KeyError::VersionInUse {
            version: 1,
            records: 4,
            ..
        })
    ));
    assert!(matches!(
        engine.destroy_key_version(&acme(), 2),
        Err(KeyError::CurrentVersion { version: 2, .. })
    ));
    assert!(matches!(
        engine.destroy_key_version(&acme(), 7),
        Err(KeyError::UnknownVersion { version: 7, .. })
    ));
    assert!(matches!(
        engine.destroy_key_version(&TenantId::new("nobody").unwrap(), 1),
        Err(KeyError::UnknownTenant(_))
    ));
    assert_eq!(storage.tenant_keys(&acme()).unwrap().len(), 2);

    engine.reseal(&acme(), 100).unwrap();
    let destroyed = engine.destroy_key_version(&acme(), 1).unwrap();
    assert_eq!(destroyed.version, 1);
    assert_eq!(destroyed.fingerprint, v1.fingerprint);
    // Gone from storage, durably; the current version stays.
    let left: Vec<u32> = storage
        .tenant_keys(&acme())
        .unwrap()
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(left, vec![2]);
    assert!(matches!(
        engine.destroy_key_version(&acme(), 1),
        Err(KeyError::UnknownVersion { .. })
    ));
    for id in &ids {
        assert!(engine.get(&acme(), id).unwrap().is_some());
    }
    drop(engine);
    drop(storage);
    let reopened = redb(dir.path());
    assert_eq!(reopened.tenant_keys(&acme()).unwrap().len(), 1);
    let engine = open(reopened);
    // Rotation after a destruction goes on from the current version.
    assert_eq!(engine.rotate_tenant_key(&acme()).unwrap(), 3);
    let after = engine.store(&acme(), episode(9)).unwrap().id;
    assert!(finds(&engine, 9, after));
}

#[test]
fn stores_and_updates_during_a_reseal_lose_nothing() {
    let storage = Arc::new(MemStorage::new());
    let engine = Arc::new(open(storage.clone()));
    let first: Vec<EpisodeId> = (0..300)
        .map(|n| engine.store(&acme(), episode(n)).unwrap().id)
        .collect();
    engine.rotate_tenant_key(&acme()).unwrap();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let engine = Arc::clone(&engine);
            let first = first.clone();
            std::thread::spawn(move || {
                let mut stored = Vec::new();
                for i in 0..60 {
                    let n = 300 + w * 60 + i;
                    stored.push((n, engine.store(&acme(), episode(n)).unwrap().id));
                    let update = EpisodeUpdate {
                        reward: Some(0.75),
                        ..EpisodeUpdate::default()
                    };
                    assert!(engine.update(&acme(), &first[w * 60 + i], &update).unwrap());
                }
                stored
            })
        })
        .collect();
    let mut passes = 0;
    loop {
        passes += 1;
        let done = engine.reseal(&acme(), 16).unwrap();
        if done.found == 0 && writers.iter().all(|w| w.is_finished()) {
            break;
        }
        assert!(passes < 1_000, "re-sealing does not converge");
    }
    let mut all: Vec<(usize, EpisodeId)> = first.iter().copied().enumerate().collect();
    for w in writers {
        all.extend(w.join().unwrap());
    }
    assert_eq!(all.len(), 480);
    assert!(live_versions(storage.as_ref())
        .values()
        .all(|v| *v == (2, 2)));
    for (n, id) in &all {
        let got = engine.get(&acme(), id).unwrap().unwrap();
        assert_eq!(got.output, format!("output {n}"));
        if *n < 180 {
            assert_eq!(got.reward, 0.75, "the update of episode {n} survived");
        }
    }
    assert_eq!(engine.stats(&acme()).unwrap().episodes, 480);
    engine.destroy_key_version(&acme(), 1).unwrap();
    for (n, id) in all.iter().step_by(37) {
        assert!(finds(&engine, *n, *id));
    }
    assert_eq!(
        engine
            .version_vector(&acme())
            .unwrap()
            .get(&HubId::new("local").unwrap()),
        300 + 180 + 180
    );
}

#[test]
fn storage_backends_destroy_keys_and_reseal_alike() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    agentdb_testkit::storage::key_destruction_and_reseal_persist(&|| {
        Box::new(RedbStorage::open(&path).unwrap())
    });
    let mem: Arc<MemStorage> = Arc::new(MemStorage::new());
    agentdb_testkit::storage::key_destruction_and_reseal_persist(&|| {
        Box::new(SharedMem(Arc::clone(&mem)))
    });
}

/// One in-memory store behind every `open`.
#[derive(Debug)]
struct SharedMem(Arc<MemStorage>);

impl Storage for SharedMem {
    fn apply(
        &self,
        writes: &[agentdb_memory::storage::Write],
    ) -> Result<Vec<bool>, agentdb_memory::storage::StorageError> {
        self.0.apply(writes)
    }
    fn episode(
        &self,
        t: &TenantId,
        id: &EpisodeId,
    ) -> Result<Option<StoredEpisode>, agentdb_memory::storage::StorageError> {
        self.0.episode(t, id)
    }
    fn scan_episodes(
        &self,
        t: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), agentdb_memory::storage::StorageError> {
        self.0.scan_episodes(t, visit)
    }
    fn changes(
        &self,
        t: &TenantId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, agentdb_memory::storage::StorageError> {
        self.0.changes(t, after, limit)
    }
    fn ops(
        &self,
        t: &TenantId,
        origin: &HubId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, agentdb_memory::storage::StorageError> {
        self.0.ops(t, origin, after, limit)
    }
    fn version_vector(
        &self,
        t: &TenantId,
    ) -> Result<agentdb_core::VersionVector, agentdb_memory::storage::StorageError> {
        self.0.version_vector(t)
    }
    fn tenants(&self) -> Result<Vec<TenantId>, agentdb_memory::storage::StorageError> {
        self.0.tenants()
    }
    fn tenant_keys(
        &self,
        t: &TenantId,
    ) -> Result<Vec<agentdb_security::WrappedTenantKey>, agentdb_memory::storage::StorageError>
    {
        self.0.tenant_keys(t)
    }
    fn tenant_meta(
        &self,
        t: &TenantId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, agentdb_memory::storage::StorageError> {
        self.0.tenant_meta(t, name)
    }
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, agentdb_memory::storage::StorageError> {
        self.0.meta(name)
    }
}
