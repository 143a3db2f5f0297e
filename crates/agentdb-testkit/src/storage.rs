//! The storage conformance harness: random batches of writes applied to a backend and to the
//! in-memory model ([`MemStorage`]) must give the same outcomes and the same state, seen
//! through every read of the [`Storage`] trait. Every backend's tests run it: redb in
//! `agentdb-memory`, PostgreSQL in `agentdb-postgres`.

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::sync::Arc;

use agentdb_core::{
    EpisodeId, Hlc, HubId, ModelId, Region, Stamp, TenantId, Timestamp, VersionVector,
};
use agentdb_memory::storage::{
    MemStorage, OpSeq, RowStamps, Storage, StorageError, StoredEpisode, Write,
};
use agentdb_security::WrappedTenantKey;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn hub(h: &str) -> HubId {
    HubId::new(h).unwrap()
}

fn stamp(ms: u64, h: &str) -> Stamp {
    Stamp::new(Hlc::new(ms, 0), hub(h))
}

fn row(n: u8) -> StoredEpisode {
    StoredEpisode {
        id: EpisodeId::from_parts(u64::from(n), [n; 10]),
        created: Timestamp(u64::from(n)),
        reward: f64::from(n) / 10.0,
        success: n.is_multiple_of(2),
        task_hash: [n; 16],
        model: ModelId::new("m").unwrap(),
        deleted: None,
        stamps: RowStamps::all(stamp(u64::from(n), "h1")),
        sealed_body: vec![n; 8],
        sealed_vector: vec![n; 4],
        expires_at: None,
    }
}

/// A re-embedded version of `row(n)`: same id, another model and vector.
fn reembedded(n: u8) -> StoredEpisode {
    StoredEpisode {
        model: ModelId::new("m2").unwrap(),
        sealed_vector: vec![n.wrapping_add(100); 4],
        ..row(n)
    }
}

/// `row(n)` re-sealed: same id and stamps, other sealed bytes; with `changed`, as if an
/// update had landed since it was read (another stamp).
fn resealed(n: u8, changed: bool) -> StoredEpisode {
    let mut out = StoredEpisode {
        sealed_body: vec![n.wrapping_add(50); 8],
        sealed_vector: vec![n.wrapping_add(50); 4],
        ..row(n)
    };
    if changed {
        out.stamps.reward = stamp(150, "h2");
    }
    out
}

/// Store-wide setting names, some sharing prefixes.
fn meta_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("s/a"),
        Just("s/a/x"),
        Just("s/b"),
        Just("s"),
        Just("t")
    ]
    .prop_map(String::from)
}

/// A random write of every kind the engine makes, over a few tenants, ids and origins that
/// collide often.
pub fn write() -> impl Strategy<Value = Write> {
    let tenant =
        prop_oneof![Just("a"), Just("b"), Just("a-b")].prop_map(|t| TenantId::new(t).unwrap());
    let origin = prop_oneof![Just("h1"), Just("h2")].prop_map(hub);
    prop_oneof![
        5 => (tenant.clone(), 0..16u8, origin.clone()).prop_map(|(tenant, n, origin)| Write::PutEpisode { tenant, row: row(n), origin }),
        2 => (tenant.clone(), 0..16u8).prop_map(|(tenant, n)| Write::ReplaceEpisode { tenant, row: reembedded(n) }),
        2 => (tenant.clone(), 0..20u8, origin.clone()).prop_map(|(tenant, n, origin)| Write::Tombstone {
            tenant, id: row(n).id, stamp: stamp(99, "h1"), model: ModelId::new("m").unwrap(), origin }),
        2 => (tenant.clone(), 0..16u8, any::<bool>(), origin.clone(), 0..4u64).prop_map(|(tenant, n, dead, origin, seq)| Write::Merge {
            tenant,
            id: row(n).id,
            row: Some(if dead { row(n).into_tombstone(stamp(120, "h2")) } else { reembedded(n) }),
            op: if seq == 0 { OpSeq::Next(origin) } else { OpSeq::Exactly(origin, seq) },
        }),
        2 => (tenant.clone(), 0..16u8, any::<bool>()).prop_map(|(tenant, n, changed)| Write::ResealEpisode { tenant, row: resealed(n, changed) }),
        1 => (tenant.clone(), 0..16u8).prop_map(|(tenant, n)| Write::CollectTombstone { tenant, id: row(n).id }),
        1 => (tenant.clone(), 0..4u32).prop_map(|(tenant, version)| Write::DeleteTenantKey { tenant, version }),
        1 => (tenant.clone(), 1..3u32).prop_map(|(tenant, version)| Write::PutTenantKey {
            tenant, key: WrappedTenantKey { version, bytes: vec![version as u8; 4] } }),
        1 => (tenant.clone(), 1..3u32, 0..3u8).prop_map(|(tenant, version, v)| Write::CreateTenant {
            tenant, key: WrappedTenantKey { version, bytes: vec![v; 4] }, settings: vec![("x".into(), vec![v])] }),
        1 => tenant.clone().prop_map(|tenant| Write::PutTenantMeta { tenant, name: "x".into(), value: vec![1] }),
        1 => tenant.prop_map(|tenant| Write::EraseTenant { tenant }),
        1 => (0..4u64, 0..3u32).prop_map(|(w, c)| Write::ClockAtLeast { hlc: Hlc::new(w, c) }),
        1 => (meta_name(), 0..3u8).prop_map(|(name, v)| Write::PutMeta { name, value: vec![v] }),
        1 => meta_name().prop_map(|name| Write::DeleteMeta { name }),
    ]
}

/// Where [`Storage::scan_episodes_after`] is asked to start: from the beginning, at ids that
/// may be stored, between them, and at the extremes.
fn afters() -> Vec<Option<EpisodeId>> {
    let mut out = vec![
        None,
        Some(EpisodeId::from_bytes([0; 16])),
        Some(EpisodeId::from_bytes([0xff; 16])),
    ];
    for n in [0, 3, 7, 15, 19] {
        out.push(Some(row(n).id));
        // Just above `row(n)`'s id, below `row(n + 1)`'s.
        out.push(Some(EpisodeId::from_parts(u64::from(n), [0xff; 10])));
    }
    out
}

/// [`MemStorage`] without its own `scan_episodes_after`: what the trait's default gives.
#[derive(Debug, Default)]
pub struct DefaultScan(MemStorage);

impl Storage for DefaultScan {
    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError> {
        self.0.apply(writes)
    }
    fn episode(&self, t: &TenantId, id: &EpisodeId) -> Result<Option<StoredEpisode>, StorageError> {
        self.0.episode(t, id)
    }
    fn scan_episodes(
        &self,
        t: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        self.0.scan_episodes(t, visit)
    }
    fn changes(
        &self,
        t: &TenantId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.0.changes(t, after, limit)
    }
    fn ops(
        &self,
        t: &TenantId,
        origin: &HubId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.0.ops(t, origin, after, limit)
    }
    fn version_vector(&self, t: &TenantId) -> Result<VersionVector, StorageError> {
        self.0.version_vector(t)
    }
    fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        self.0.tenants()
    }
    fn tenant_keys(&self, t: &TenantId) -> Result<Vec<WrappedTenantKey>, StorageError> {
        self.0.tenant_keys(t)
    }
    fn tenant_meta(&self, t: &TenantId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.tenant_meta(t, name)
    }
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.meta(name)
    }
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.0.meta_with_prefix(prefix)
    }
    fn change_heads(&self) -> Result<Vec<(TenantId, u64)>, StorageError> {
        self.0.change_heads()
    }
    fn episodes(
        &self,
        t: &TenantId,
        ids: &[EpisodeId],
    ) -> Result<Vec<Option<StoredEpisode>>, StorageError> {
        self.0.episodes(t, ids)
    }
}

/// Everything a backend answers about its state, as text to compare with another backend's.
pub fn dump(s: &dyn Storage) -> Vec<String> {
    let mut out = vec![
        format!("tenants {:?}", s.tenants().unwrap()),
        format!("change heads {:?}", s.change_heads().unwrap()),
        format!("clock {:?}", s.meta("clock").unwrap()),
        format!("meta {:?}", s.meta_with_prefix("").unwrap()),
        format!("meta s/ {:?}", s.meta_with_prefix("s/").unwrap()),
        format!("meta s/a {:?}", s.meta_with_prefix("s/a").unwrap()),
    ];
    for t in ["a", "b", "a-b"] {
        let t = TenantId::new(t).unwrap();
        s.scan_episodes(&t, &mut |r| {
            out.push(format!("{t} {r:?}"));
            ControlFlow::Continue(())
        })
        .unwrap();
        for after in afters() {
            let mut ids = Vec::new();
            s.scan_episodes_after(&t, after.as_ref(), &mut |r| {
                ids.push(r.id);
                ControlFlow::Continue(())
            })
            .unwrap();
            out.push(format!("{t} after {after:?}: {ids:?}"));
            // Stopping early.
            let mut first = Vec::new();
            s.scan_episodes_after(&t, after.as_ref(), &mut |r| {
                first.push(r.id);
                if first.len() == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            out.push(format!("{t} first two after {after:?}: {first:?}"));
        }
        // Rows read at once: stored ids, missing ones and a repeat, in the order asked.
        let ids: Vec<EpisodeId> = [3, 0, 17, 3, 9].into_iter().map(|n| row(n).id).collect();
        out.push(format!("{t} rows {:?}", s.episodes(&t, &ids).unwrap()));
        out.push(format!("{t} keys {:?}", s.tenant_keys(&t).unwrap()));
        out.push(format!("{t} meta {:?}", s.tenant_meta(&t, "x").unwrap()));
        out.push(format!(
            "{t} changes {:?}",
            s.changes(&t, 0, usize::MAX).unwrap()
        ));
        out.push(format!(
            "{t} changes after 2 {:?}",
            s.changes(&t, 2, 3).unwrap()
        ));
        out.push(format!("{t} vv {:?}", s.version_vector(&t).unwrap()));
        for h in ["h1", "h2"] {
            out.push(format!(
                "{t} ops {h} {:?} / after 1 {:?}",
                s.ops(&t, &hub(h), 0, usize::MAX).unwrap(),
                s.ops(&t, &hub(h), 1, 2).unwrap()
            ));
        }
    }
    out
}

/// Batches of random writes, as the conformance property takes them.
pub fn batches() -> impl Strategy<Value = Vec<Vec<Write>>> {
    proptest::collection::vec(proptest::collection::vec(write(), 1..8), 1..12)
}

/// Applies `batches` to `backend` and to the model: every outcome and, at the end, the whole
/// state must agree (the model's default scan too). Returns the model, to compare a reopened
/// backend with.
pub fn matches_the_model(
    backend: &dyn Storage,
    batches: &[Vec<Write>],
) -> Result<MemStorage, TestCaseError> {
    let model = MemStorage::new();
    let default_scan = DefaultScan::default();
    for batch in batches {
        let applied = model.apply(batch).unwrap();
        prop_assert_eq!(backend.apply(batch).unwrap(), applied.clone());
        prop_assert_eq!(default_scan.apply(batch).unwrap(), applied);
    }
    prop_assert_eq!(dump(backend), dump(&model));
    prop_assert_eq!(dump(&default_scan), dump(&model));
    Ok(model)
}

/// Peer records through a backend: `open` gives the backend (the same store each time, so
/// that a backend that persists is checked after reopening).
pub fn peer_records_persist_and_match_the_model(open: &dyn Fn() -> Box<dyn Storage>) {
    let t = TenantId::new("acme").unwrap();
    let eu = Region::new("eu").unwrap();
    let vv = |n| [(hub("a"), n)].into_iter().collect::<VersionVector>();
    let writes = [
        Write::KnowPeer {
            peer: hub("p"),
            region: eu.clone(),
        },
        Write::KnowPeer {
            peer: hub("p"),
            region: eu.clone(),
        },
        Write::KnowPeer {
            peer: hub("q"),
            region: eu.clone(),
        },
        Write::JoinPeerAck {
            tenant: t.clone(),
            peer: hub("p"),
            acked: vv(4),
        },
        Write::JoinPeerAck {
            tenant: t.clone(),
            peer: hub("p"),
            acked: vv(2),
        },
        Write::JoinPeerAck {
            tenant: t.clone(),
            peer: hub("q"),
            acked: vv(1),
        },
        Write::ForgetPeer { peer: hub("q") },
        Write::ForgetPeer { peer: hub("q") },
    ];
    let model = MemStorage::new();
    let expected = model.apply(&writes).unwrap();
    assert_eq!(
        expected,
        [true, false, true, true, false, true, true, false]
    );
    assert_eq!(open().apply(&writes).unwrap(), expected);
    let db = open();
    for s in [db.as_ref(), &model] {
        assert_eq!(s.peers().ok(), Some(vec![(hub("p"), eu.clone())]));
        assert_eq!(s.peer_acks(&t).ok(), Some(vec![(hub("p"), vv(4))]));
    }
    // Erasing the tenant keeps them.
    db.apply(&[Write::EraseTenant { tenant: t.clone() }])
        .unwrap();
    assert_eq!(db.peer_acks(&t).ok(), Some(vec![(hub("p"), vv(4))]));
}

/// Store-wide settings, deletes and prefix scans through a backend (`open` as above).
pub fn settings_persist_and_match_the_model(open: &dyn Fn() -> Box<dyn Storage>) {
    let put = |name: &str, value: &[u8]| Write::PutMeta {
        name: name.into(),
        value: value.to_vec(),
    };
    let delete = |name: &str| Write::DeleteMeta { name: name.into() };
    let writes = [
        put("sealed/b", b"2"),
        put("sealed/a", b"1"),
        put("sealed", b"bare"),
        put("sealed0", b"after the slash"),
        put("sealed/\u{e9}", b"non-ascii"),
        put("sealed/a/deeper", b"3"),
        put("clock", b"c"),
        put("sealed/gone", b"x"),
        delete("sealed/gone"),
        delete("sealed/gone"),
        delete("never-set"),
        put("sealed/b", b"2 again"),
    ];
    let model = MemStorage::new();
    let expected = model.apply(&writes).unwrap();
    assert_eq!(
        expected,
        [true, true, true, true, true, true, true, true, true, false, false, true]
    );
    assert_eq!(open().apply(&writes).unwrap(), expected);
    let db = open();
    let entry = |name: &str, value: &[u8]| (name.to_owned(), value.to_vec());
    for s in [db.as_ref(), &model] {
        assert_eq!(
            s.meta_with_prefix("sealed/").ok(),
            Some(vec![
                entry("sealed/a", b"1"),
                entry("sealed/a/deeper", b"3"),
                entry("sealed/b", b"2 again"),
                entry("sealed/\u{e9}", b"non-ascii"),
            ])
        );
        assert_eq!(
            s.meta_with_prefix("sealed/a").ok(),
            Some(vec![
                entry("sealed/a", b"1"),
                entry("sealed/a/deeper", b"3")
            ])
        );
        assert_eq!(s.meta_with_prefix("sealed/gone").ok(), Some(vec![]));
        assert_eq!(s.meta_with_prefix("zzz").ok(), Some(vec![]));
        let all = s.meta_with_prefix("").unwrap();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "clock",
                "sealed",
                "sealed/a",
                "sealed/a/deeper",
                "sealed/b",
                "sealed/\u{e9}",
                "sealed0"
            ]
        );
        assert_eq!(s.meta("sealed/gone").ok(), Some(None));
    }
}

/// Key versions deleted and rows re-sealed through a backend (`open` as above): a deleted
/// version is gone after reopening, the newest is never deleted, and a re-sealed row keeps its
/// place in the change log and the op log.
pub fn key_destruction_and_reseal_persist(open: &dyn Fn() -> Box<dyn Storage>) {
    let t = TenantId::new("acme").unwrap();
    let key = |version: u32| WrappedTenantKey {
        version,
        bytes: vec![version as u8; 8],
    };
    let delete = |version| Write::DeleteTenantKey {
        tenant: t.clone(),
        version,
    };
    let reseal = |row| Write::ResealEpisode {
        tenant: t.clone(),
        row,
    };
    let writes = [
        Write::PutTenantKey {
            tenant: t.clone(),
            key: key(1),
        },
        Write::PutTenantKey {
            tenant: t.clone(),
            key: key(2),
        },
        Write::PutTenantKey {
            tenant: t.clone(),
            key: key(3),
        },
        Write::PutEpisode {
            tenant: t.clone(),
            row: row(1),
            origin: hub("h1"),
        },
        Write::PutEpisode {
            tenant: t.clone(),
            row: row(2),
            origin: hub("h1"),
        },
        Write::Tombstone {
            tenant: t.clone(),
            id: row(2).id,
            stamp: stamp(99, "h1"),
            model: ModelId::new("m").unwrap(),
            origin: hub("h1"),
        },
        delete(2),
        delete(2),
        // The newest version seals new records: never deleted.
        delete(3),
        delete(9),
        reseal(resealed(1, false)),
        // Changed since it was read, deleted, or never stored: left alone.
        reseal(resealed(1, true)),
        reseal(resealed(2, false)),
        reseal(resealed(3, false)),
    ];
    let model = MemStorage::new();
    let expected = model.apply(&writes).unwrap();
    assert_eq!(
        expected,
        [
            true, true, true, true, true, true, true, false, false, false, true, false, false,
            false
        ]
    );
    assert_eq!(open().apply(&writes).unwrap(), expected);
    let db = open();
    for s in [db.as_ref(), &model] {
        assert_eq!(s.tenant_keys(&t).unwrap(), vec![key(1), key(3)]);
        assert_eq!(s.episode(&t, &row(1).id).unwrap(), Some(resealed(1, false)));
        let changes: Vec<EpisodeId> = s
            .changes(&t, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(changes, vec![row(1).id, row(2).id, row(2).id]);
        assert_eq!(s.version_vector(&t).unwrap().get(&hub("h1")), 3);
    }
    // The last version left is the newest: it stays.
    assert_eq!(db.apply(&[delete(1)]).unwrap(), vec![true]);
    assert_eq!(db.apply(&[delete(3)]).unwrap(), vec![false]);
    drop(db);
    assert_eq!(open().tenant_keys(&t).unwrap(), vec![key(3)]);
}

/// Two engines (hubs `hub-a` and `hub-b`, one master key) over one shared store, each
/// following the other's writes with [`MemoryEngine::follow_storage`]: creation, stores,
/// deletes, a tenant both create at once, key rotation and erasure all reach the other's
/// index. `open` gives a connection to the shared store.
pub fn engines_sharing_a_store_follow_each_other(open: &dyn Fn() -> Arc<dyn Storage>) {
    use agentdb_memory::{EngineConfig, MemoryEngine, Query};
    use agentdb_security::MasterKey;

    let engine = |hub: &str| {
        MemoryEngine::builder(open(), MasterKey::from_bytes([7; 32]))
            .config(EngineConfig {
                origin: Some(HubId::new(hub).unwrap()),
                ..EngineConfig::default()
            })
            .open()
            .unwrap()
    };
    let a = engine("hub-a");
    let b = engine("hub-b");
    let acme = TenantId::new("acme").unwrap();
    let found = |e: &MemoryEngine, text: &str| -> Vec<EpisodeId> {
        e.query(&acme, &Query::text(text, 10))
            .map(|m| m.into_iter().map(|m| m.episode.id).collect())
            .unwrap_or_default()
    };
    let episode = |task: &str| agentdb_core::NewEpisode::new(task, "in", "out", 0.9);

    // A creates the tenant and stores; B knows nothing until it follows.
    let invoice = a.store(&acme, episode("summarise invoice")).unwrap().id;
    assert!(found(&b, "summarise invoice").is_empty());
    assert_eq!(b.follow_storage().unwrap(), 1);
    assert_eq!(found(&b, "summarise invoice"), vec![invoice]);
    assert_eq!(
        b.get(&acme, &invoice).unwrap().unwrap().task,
        "summarise invoice"
    );
    // Nothing new: nothing changes.
    assert_eq!(b.follow_storage().unwrap(), 0);

    // B writes with the key A created; A follows.
    let triage = b.store(&acme, episode("triage bug report")).unwrap().id;
    a.follow_storage().unwrap();
    assert_eq!(found(&a, "triage bug report").first(), Some(&triage));
    assert_eq!(a.stats(&acme).unwrap().episodes, 2);

    // A delete on one reaches the other's index.
    assert!(b.delete(&acme, &invoice).unwrap());
    a.follow_storage().unwrap();
    assert!(!found(&a, "summarise invoice").contains(&invoice));
    assert_eq!(a.stats(&acme).unwrap().episodes, 1);

    // A burst of more changes than one page, one of its rows stored and deleted within it:
    // one pass brings all of it.
    let burst: Vec<EpisodeId> = (0..1_100)
        .map(|i| episode(&format!("burst {i}")))
        .collect::<Vec<_>>()
        .chunks(550)
        .flat_map(|batch| b.store_batch(&acme, batch.to_vec()).unwrap())
        .map(|s| s.id)
        .collect();
    assert!(b.delete(&acme, &burst[7]).unwrap());
    a.follow_storage().unwrap();
    assert_eq!(a.stats(&acme).unwrap().episodes, 1 + 1_099);
    let index = a.index(&acme).unwrap();
    assert!(!index.contains(&burst[7]));
    assert!(burst
        .iter()
        .filter(|id| **id != burst[7])
        .all(|id| index.contains(id)));

    // Both create a tenant before either follows: one key wins and both use it.
    let globex = TenantId::new("globex").unwrap();
    let from_a = a.store(&globex, episode("plan sprint")).unwrap().id;
    let from_b = b.store(&globex, episode("plan sprint review")).unwrap().id;
    a.follow_storage().unwrap();
    b.follow_storage().unwrap();
    for e in [&a, &b] {
        for id in [from_a, from_b] {
            assert!(e.get(&globex, &id).unwrap().is_some());
        }
        assert_eq!(e.stats(&globex).unwrap().episodes, 2);
    }

    // A new key version on A: B loads it when it meets a row sealed with it.
    a.rotate_tenant_key(&acme).unwrap();
    let after_rotation = a.store(&acme, episode("rotate credentials")).unwrap().id;
    b.follow_storage().unwrap();
    assert_eq!(
        found(&b, "rotate credentials").first(),
        Some(&after_rotation)
    );

    // Erased on A: B drops the tenant.
    a.erase_tenant(&acme).unwrap();
    b.follow_storage().unwrap();
    assert!(found(&b, "triage bug report").is_empty());
    assert!(b.get(&acme, &triage).unwrap().is_none());
    assert!(!b.tenants().contains(&acme));
    assert!(b.tenants().contains(&globex));
}

/// Store-wide logs through a backend (`open` as above): appended entries get numbers that rise
/// in the order of the appends, shared by every log, never given out again after a delete, and
/// kept across reopening; [`Storage::meta_log_after`] lists a log's entries above a number and
/// nothing of another log or of a setting that merely shares the prefix. The numbers' values
/// are the backend's; only their order is checked.
pub fn logs_number_entries_in_order(open: &dyn Fn() -> Box<dyn Storage>) {
    let append = |log: &str, value: &[u8]| Write::AppendMeta {
        log: log.into(),
        value: value.to_vec(),
    };
    let values = |entries: &[(u64, Vec<u8>)]| -> Vec<Vec<u8>> {
        entries.iter().map(|(_, v)| v.clone()).collect()
    };
    let db = open();
    assert_eq!(
        db.apply(&[
            append("log/a/", b"a1"),
            append("log/b/", b"b1"),
            Write::PutMeta {
                name: "log/a/not-an-entry".into(),
                value: b"x".to_vec(),
            },
        ])
        .unwrap(),
        [true, true, true]
    );
    assert_eq!(db.apply(&[append("log/a/", b"a2")]).unwrap(), [true]);
    let a = db.meta_log_after("log/a/", 0, 100).unwrap();
    let b = db.meta_log_after("log/b/", 0, 100).unwrap();
    assert_eq!(values(&a), [b"a1".to_vec(), b"a2".to_vec()]);
    assert_eq!(values(&b), [b"b1".to_vec()]);
    let (a1, a2, b1) = (a[0].0, a[1].0, b[0].0);
    assert!(0 < a1 && a1 < b1 && b1 < a2, "numbers {a1}, {b1}, {a2}");
    assert_eq!(
        db.meta(&agentdb_memory::storage::log_entry_name("log/a/", a2))
            .unwrap(),
        Some(b"a2".to_vec())
    );
    // Above a number: only what follows it; at most `limit`, the lowest numbers first.
    assert_eq!(
        values(&db.meta_log_after("log/a/", a1, 100).unwrap()),
        [b"a2".to_vec()]
    );
    assert_eq!(db.meta_log_after("log/a/", a2, 100).unwrap(), []);
    assert_eq!(
        values(&db.meta_log_after("log/a/", 0, 1).unwrap()),
        [b"a1".to_vec()]
    );
    assert_eq!(
        db.meta_log_after("log/", 0, 100).unwrap(),
        [],
        "entries sit right under their log"
    );
    // A deleted entry's number is not given out again, after reopening either.
    let deleted = Write::DeleteMeta {
        name: agentdb_memory::storage::log_entry_name("log/a/", a2),
    };
    assert_eq!(db.apply(&[deleted]).unwrap(), [true]);
    drop(db);
    let db = open();
    assert_eq!(db.meta_log_after("log/b/", 0, 100).unwrap(), b);
    db.apply(&[append("log/a/", b"a3")]).unwrap();
    let after = db.meta_log_after("log/a/", a1, 100).unwrap();
    assert_eq!(values(&after), [b"a3".to_vec()]);
    assert!(after[0].0 > a2, "number {} given out again", after[0].0);
}
