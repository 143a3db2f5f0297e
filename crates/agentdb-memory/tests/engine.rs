//! The memory engine through its public API, on the real redb backend in temp dirs (and the
//! in-memory store where the two differ in how writes are committed).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use agentdb_core::{Embedding, EpisodeError, EpisodeId, ModelId, NewEpisode, TenantId, Timestamp};
use agentdb_memory::{
    EngineConfig, Filter, ManualClock, MemStorage, MemoryEngine, OpenError, Outcome, Query,
    QueryError, RedbStorage, StoreError, DB_FILE,
};
use agentdb_security::MasterKey;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn open(dir: &Path, key: &MasterKey) -> Result<MemoryEngine, OpenError> {
    let storage = Arc::new(RedbStorage::open(&dir.join(DB_FILE)).unwrap());
    MemoryEngine::builder(storage, key.clone()).open()
}

fn id(n: u64) -> EpisodeId {
    EpisodeId::from_parts(1_700_000_000_000 + n, [n as u8; 10])
}

#[test]
fn store_then_query_returns_the_episode_with_success_by_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let db = open(dir.path(), &key).unwrap();
    let acme = tenant("acme");
    let good = db
        .store(
            &acme,
            NewEpisode::new(
                "summarise invoice",
                "invoice #42 for ACME",
                "Total 300 EUR",
                0.95,
            )
            .with_critique("concise"),
        )
        .unwrap();
    let bad = db
        .store(
            &acme,
            NewEpisode::new("deploy cluster", "k8s manifests", "failed", 0.5),
        )
        .unwrap();
    assert!(good.inserted && bad.inserted);

    let found = db
        .query(&acme, &Query::text("summarise the invoice", 5))
        .unwrap();
    assert_eq!(found.len(), 2);
    let top = &found[0];
    assert_eq!(top.episode.id, good.id);
    assert_eq!(top.episode.task, "summarise invoice");
    assert_eq!(top.episode.input, "invoice #42 for ACME");
    assert_eq!(top.episode.output, "Total 300 EUR");
    assert_eq!(top.episode.critique.as_deref(), Some("concise"));
    assert_eq!(top.episode.tenant, acme);
    assert!(
        top.episode.success,
        "reward 0.95 is a success at threshold 0.7"
    );
    assert!(top.score > found[1].score);
    let failed = db.get(&acme, &bad.id).unwrap().unwrap();
    assert!(!failed.success, "reward 0.5 is a failure at threshold 0.7");
}

#[test]
fn persistence_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let acme = tenant("acme");
    let mut ids = Vec::new();
    {
        let db = open(dir.path(), &key).unwrap();
        for i in 0..1500u64 {
            let e = NewEpisode::new(format!("task number {i}"), format!("input {i}"), "out", 0.9);
            ids.push(db.store(&acme, e).unwrap().id);
        }
        assert!(db.delete(&acme, &ids[7]).unwrap());
    }
    let db = open(dir.path(), &key).unwrap();
    assert_eq!(db.tenants(), vec![acme.clone()]);
    let stats = db.stats(&acme).unwrap();
    assert_eq!(stats.episodes, 1499);
    assert_eq!(stats.deleted, 1);
    assert!(db.get(&acme, &ids[7]).unwrap().is_none());
    let e = db.get(&acme, &ids[1234]).unwrap().unwrap();
    assert_eq!(e.task, "task number 1234");
    // The index was rebuilt: a query finds the exact task.
    db.build_indexes().unwrap();
    let hits = db
        .query(&acme, &Query::text("task number 1234 input 1234", 1))
        .unwrap();
    assert_eq!(hits[0].episode.id, ids[1234]);
}

#[test]
fn nothing_sensitive_reaches_disk_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let marker = "ZQXJ-marker-7731";
    {
        let db = open(dir.path(), &key).unwrap();
        let e = common::marked_episode(marker);
        db.store(&tenant("acme"), e).unwrap();
    }
    common::assert_no_plaintext(dir.path(), marker);
}

#[test]
fn wrong_master_key_is_refused_and_damages_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let acme = tenant("acme");
    let stored = {
        let db = open(dir.path(), &key).unwrap();
        db.store(&acme, NewEpisode::new("t", "i", "o", 0.9))
            .unwrap()
    };
    for _ in 0..2 {
        let err = open(dir.path(), &MasterKey::generate().unwrap()).unwrap_err();
        assert!(matches!(err, OpenError::WrongMasterKey), "{err}");
        assert!(err.to_string().contains("wrong master key"));
    }
    // The right key still opens everything, and the store keeps working.
    let db = open(dir.path(), &key).unwrap();
    assert_eq!(db.get(&acme, &stored.id).unwrap().unwrap().task, "t");
    assert_eq!(db.stats(&acme).unwrap().episodes, 1);
    db.store(&acme, NewEpisode::new("t2", "i", "o", 0.9))
        .unwrap();
    assert_eq!(db.stats(&acme).unwrap().episodes, 2);
}

#[test]
fn erase_tenant_shreds_its_keys_and_leaves_others() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let storage = Arc::new(RedbStorage::open(&dir.path().join(DB_FILE)).unwrap());
    let db = MemoryEngine::builder(storage.clone(), key.clone())
        .open()
        .unwrap();
    let (a, b) = (tenant("a"), tenant("b"));
    let ea = db
        .store(&a, NewEpisode::new("shared task", "secret a", "o", 0.9))
        .unwrap();
    let eb = db
        .store(&b, NewEpisode::new("shared task", "secret b", "o", 0.9))
        .unwrap();
    use agentdb_memory::Storage as _;
    let row = storage.episode(&a, &ea.id).unwrap().unwrap();
    assert_eq!(storage.tenant_keys(&a).unwrap().len(), 1);

    let report = db.erase_tenant(&a).unwrap();
    assert!(report.existed);
    assert_eq!(report.episodes, 1);
    assert!(db
        .query(&a, &Query::text("shared task", 5))
        .unwrap()
        .is_empty());
    assert!(db.get(&a, &ea.id).unwrap().is_none());
    assert_eq!(db.stats(&a).unwrap().episodes, 0);
    // The keys are gone from storage, so the captured ciphertext can never be opened again.
    assert!(storage.tenant_keys(&a).unwrap().is_empty());
    assert!(storage.episode(&a, &ea.id).unwrap().is_none());
    assert!(!row.sealed_body.is_empty());
    // B is untouched.
    assert_eq!(db.get(&b, &eb.id).unwrap().unwrap().input, "secret b");
    assert_eq!(
        db.query(&b, &Query::text("shared task", 5)).unwrap().len(),
        1
    );
    // A can start afresh, with a new key.
    db.store(&a, NewEpisode::new("again", "x", "y", 0.1))
        .unwrap();
    assert_eq!(db.stats(&a).unwrap().episodes, 1);
    drop(db);
    drop(storage);
    let db = open(dir.path(), &key).unwrap();
    assert_eq!(db.stats(&a).unwrap().episodes, 1);
    assert_eq!(db.stats(&b).unwrap().episodes, 1);
}

#[test]
fn bad_input_gets_typed_errors_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let acme = tenant("acme");
    db.store(&acme, NewEpisode::new("ok", "i", "o", 0.9))
        .unwrap();

    assert!(TenantId::new("").is_err());
    let nan = db
        .store(&acme, NewEpisode::new("t", "i", "o", f64::NAN))
        .unwrap_err();
    assert!(
        matches!(nan, StoreError::Invalid(EpisodeError::NonFiniteReward)),
        "{nan}"
    );
    let big = db
        .store(&acme, NewEpisode::new("t", "x".repeat(70 * 1024), "o", 0.5))
        .unwrap_err();
    assert!(matches!(
        big,
        StoreError::Invalid(EpisodeError::TooLarge { field: "input", .. })
    ));
    // A batch with one bad episode stores none of them.
    let batch = vec![
        NewEpisode::new("fine", "i", "o", 0.5),
        NewEpisode::new("", "i", "o", 0.5),
    ];
    assert!(matches!(
        db.store_batch(&acme, batch).unwrap_err(),
        StoreError::Invalid(EpisodeError::EmptyTask)
    ));
    assert!(matches!(
        db.query(&acme, &Query::text("x", 0)).unwrap_err(),
        QueryError::BadK { .. }
    ));
    assert_eq!(db.stats(&acme).unwrap().episodes, 1);
}

#[test]
fn duplicate_episode_id_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let acme = tenant("acme");
    let e = NewEpisode::new("t", "i", "o", 0.9).with_id(id(1));
    assert!(db.store(&acme, e.clone()).unwrap().inserted);
    let again = db.store(&acme, e.clone().with_critique("changed")).unwrap();
    assert_eq!(again.id, id(1));
    assert!(!again.inserted);
    // Within one batch too.
    let out = db.store_batch(&acme, vec![e.clone(), e]).unwrap();
    assert!(out.iter().all(|s| !s.inserted));
    assert_eq!(db.stats(&acme).unwrap().episodes, 1);
    assert_eq!(db.query(&acme, &Query::text("t", 10)).unwrap().len(), 1);
    assert!(db.get(&acme, &id(1)).unwrap().unwrap().critique.is_none());
}

#[test]
fn deleted_episodes_stay_deleted_against_retries() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let acme = tenant("acme");
    let e = NewEpisode::new("t", "i", "o", 0.9).with_id(id(2));
    db.store(&acme, e.clone()).unwrap();
    assert!(db.delete(&acme, &id(2)).unwrap());
    assert!(!db.delete(&acme, &id(2)).unwrap());
    assert!(!db.store(&acme, e).unwrap().inserted);
    assert!(db.get(&acme, &id(2)).unwrap().is_none());
    assert!(db.query(&acme, &Query::text("t", 5)).unwrap().is_empty());
}

#[test]
fn filters_apply_inside_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(1_000_000)));
    let storage = Arc::new(RedbStorage::open(&dir.path().join(DB_FILE)).unwrap());
    let db = MemoryEngine::builder(storage, MasterKey::generate().unwrap())
        .clock(clock.clone())
        .open()
        .unwrap();
    let acme = tenant("acme");
    // 3000 near-identical failures and 6 successes: over-fetching the nearest and filtering
    // afterwards would return (almost) nothing.
    let mut batch = Vec::new();
    for i in 0..3000 {
        batch.push(NewEpisode::new(
            "classify ticket",
            format!("ticket {i}"),
            "label",
            0.1,
        ));
        if batch.len() == 1000 {
            db.store_batch(&acme, std::mem::take(&mut batch)).unwrap();
        }
    }
    clock.advance(60_000);
    for i in 0..6 {
        db.store(
            &acme,
            NewEpisode::new(
                "unrelated words entirely",
                format!("{i}"),
                "x",
                0.9 + i as f64 / 100.0,
            ),
        )
        .unwrap();
    }
    db.build_indexes().unwrap();
    assert_eq!(db.index(&acme).unwrap().pending(), 0);
    let q = |f: Filter| {
        db.query(&acme, &Query::text("classify ticket", 5).with_filter(f))
            .unwrap()
    };
    let ok = q(Filter {
        outcome: Outcome::Successes,
        ..Default::default()
    });
    assert_eq!(ok.len(), 5);
    assert!(ok.iter().all(|m| m.episode.success));
    let high = q(Filter {
        min_reward: Some(0.94),
        ..Default::default()
    });
    assert_eq!(high.len(), 2);
    assert!(high.iter().all(|m| m.episode.reward >= 0.94));
    let fails = q(Filter {
        outcome: Outcome::Failures,
        ..Default::default()
    });
    assert_eq!(fails.len(), 5);
    assert!(fails.iter().all(|m| !m.episode.success));
    let late = q(Filter {
        created_from: Some(Timestamp(1_030_000)),
        ..Default::default()
    });
    assert_eq!(late.len(), 5);
    assert!(late
        .iter()
        .all(|m| m.episode.created >= Timestamp(1_030_000)));
    let early = q(Filter {
        created_until: Some(Timestamp(1_030_000)),
        outcome: Outcome::Successes,
        ..Default::default()
    });
    assert!(early.is_empty());
}

#[test]
fn embedders_are_never_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let acme = tenant("acme");
    let other = ModelId::new("someone-elses-model").unwrap();
    db.store(&acme, NewEpisode::new("t", "i", "o", 0.9))
        .unwrap();
    let own = NewEpisode::new("t2", "i", "o", 0.9).with_embedding(Embedding {
        model: other.clone(),
        vector: vec![0.5; 384],
    });
    assert!(matches!(
        db.store(&acme, own).unwrap_err(),
        StoreError::EmbedderMismatch { .. }
    ));
    let q = Query::vector(
        Embedding {
            model: other.clone(),
            vector: vec![0.5; 384],
        },
        3,
    );
    assert!(matches!(
        db.query(&acme, &q).unwrap_err(),
        QueryError::EmbedderMismatch { .. }
    ));
    // A tenant that starts with caller-supplied vectors is bound to that model instead.
    let beta = tenant("beta");
    db.store(
        &beta,
        NewEpisode::new("t", "i", "o", 0.9).with_embedding(Embedding {
            model: other.clone(),
            vector: vec![1.0, 0.0, 0.0],
        }),
    )
    .unwrap();
    let hits = db
        .query(
            &beta,
            &Query::vector(
                Embedding {
                    model: other,
                    vector: vec![1.0, 0.1, 0.0],
                },
                3,
            ),
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!(matches!(
        db.query(&beta, &Query::text("t", 3)).unwrap_err(),
        QueryError::EmbedderMismatch { .. }
    ));
}

#[test]
fn key_rotation_and_master_key_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let old = MasterKey::generate().unwrap();
    let new = MasterKey::generate().unwrap();
    let acme = tenant("acme");
    let (first, second) = {
        let db = open(dir.path(), &old).unwrap();
        let first = db
            .store(&acme, NewEpisode::new("before rotation", "i", "o", 0.9))
            .unwrap();
        assert_eq!(db.rotate_tenant_key(&acme).unwrap(), 2);
        let second = db
            .store(&acme, NewEpisode::new("after rotation", "i", "o", 0.9))
            .unwrap();
        assert_eq!(db.stats(&acme).unwrap().key_version, 2);
        db.rewrap_master_key(&new).unwrap();
        // Still usable after the rewrap.
        assert_eq!(
            db.get(&acme, &first.id).unwrap().unwrap().task,
            "before rotation"
        );
        (first.id, second.id)
    };
    assert!(matches!(
        open(dir.path(), &old).unwrap_err(),
        OpenError::WrongMasterKey
    ));
    let db = open(dir.path(), &new).unwrap();
    assert_eq!(
        db.get(&acme, &first).unwrap().unwrap().task,
        "before rotation"
    );
    assert_eq!(
        db.get(&acme, &second).unwrap().unwrap().task,
        "after rotation"
    );
    assert_eq!(
        db.query(&acme, &Query::text("rotation", 5)).unwrap().len(),
        2
    );
}

#[test]
fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    {
        let db = Arc::new(open(dir.path(), &key).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let db = Arc::clone(&db);
                std::thread::spawn(move || {
                    let ten = tenant(if t % 2 == 0 { "even" } else { "odd" });
                    for i in 0..40 {
                        db.store(&ten, NewEpisode::new(format!("w{t} e{i}"), "i", "o", 0.8))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    let db = open(dir.path(), &key).unwrap();
    assert_eq!(db.stats(&tenant("even")).unwrap().episodes, 320);
    assert_eq!(db.stats(&tenant("odd")).unwrap().episodes, 320);
}

#[test]
fn concurrent_writers_on_an_in_memory_store_apply_one_at_a_time() {
    // An in-memory store has no committer thread: writers apply directly. Sixteen of them
    // racing to store the same ids must still see each id inserted exactly once.
    let db = Arc::new(
        MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate().unwrap())
            .open()
            .unwrap(),
    );
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                (0..40)
                    .filter(|i| {
                        let e = NewEpisode::new(format!("e{i}"), "i", "o", 0.8).with_id(id(*i));
                        db.store(&tenant("shared"), e).unwrap().inserted
                    })
                    .count()
            })
        })
        .collect();
    let inserted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(inserted, 40);
    assert_eq!(db.stats(&tenant("shared")).unwrap().episodes, 40);
}

#[test]
fn stats_report_real_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let acme = tenant("acme");
    for r in [1.0, 0.8, 0.2] {
        db.store(&acme, NewEpisode::new("Summarise  Invoice", "i", "o", r))
            .unwrap();
    }
    db.store(&acme, NewEpisode::new("triage bug", "i", "o", 0.6))
        .unwrap();
    let s = db.stats(&acme).unwrap();
    assert_eq!(s.episodes, 4);
    assert!((s.success_rate - 0.5).abs() < 1e-9);
    assert!((s.avg_reward - 0.65).abs() < 1e-9);
    assert_eq!(s.top_tasks[0].task, "Summarise  Invoice");
    assert_eq!(s.top_tasks[0].count, 3);
    assert!((s.top_tasks[0].avg_reward - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(s.top_tasks[1].count, 1);
    assert_eq!(s.embedding_model.unwrap().as_str(), "agentdb-lexical-v1");
    let empty = db.stats(&tenant("nobody")).unwrap();
    assert_eq!((empty.episodes, empty.success_rate), (0, 0.0));
}

#[test]
fn config_threshold_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(RedbStorage::open(&dir.path().join(DB_FILE)).unwrap());
    let config = EngineConfig {
        success_threshold: 0.95,
        ..Default::default()
    };
    let db = MemoryEngine::builder(storage, MasterKey::generate().unwrap())
        .config(config)
        .open()
        .unwrap();
    let s = db
        .store(&tenant("a"), NewEpisode::new("t", "i", "o", 0.9))
        .unwrap();
    assert!(!db.get(&tenant("a"), &s.id).unwrap().unwrap().success);
}

#[test]
fn change_feed_pages_through_puts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let (acme, other) = (tenant("acme"), tenant("other"));
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            db.store(&acme, NewEpisode::new(format!("task {i}"), "i", "o", 0.5))
                .unwrap()
                .id,
        );
    }
    db.store(&other, NewEpisode::new("not yours", "i", "o", 0.5))
        .unwrap();
    db.delete(&acme, &ids[3]).unwrap();
    // A retried write adds nothing to the feed.
    db.store(
        &acme,
        NewEpisode::new("task 0", "i", "o", 0.5).with_id(ids[0]),
    )
    .unwrap();

    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let page = db.changes_since(&acme, cursor, 10).unwrap();
        assert!(page.changes.len() <= 10);
        for (seq, change) in &page.changes {
            assert!(*seq > cursor);
            seen.push(change.clone());
        }
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(seen.len(), 26, "25 puts and one delete");
    assert!(seen.iter().all(|c| match c {
        agentdb_memory::Change::Put(e) => e.tenant == acme,
        agentdb_memory::Change::Deleted(id) => *id == ids[3],
    }));
    // The put of the deleted episode now reads as deleted too.
    assert_eq!(
        seen.iter()
            .filter(|c| matches!(c, agentdb_memory::Change::Deleted(_)))
            .count(),
        2
    );
    // Nothing new after the last cursor; a new write shows up.
    assert!(db
        .changes_since(&acme, cursor, 10)
        .unwrap()
        .changes
        .is_empty());
    db.store(&acme, NewEpisode::new("late", "i", "o", 0.5))
        .unwrap();
    let page = db.changes_since(&acme, cursor, 10).unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.next_cursor, cursor + 1);
    assert!(db
        .changes_since(&tenant("nobody"), 0, 10)
        .unwrap()
        .changes
        .is_empty());
}

#[test]
fn episode_count_follows_stores_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    let a = db
        .store(&tenant("a"), NewEpisode::new("t", "i", "o", 0.5))
        .unwrap();
    db.store(&tenant("b"), NewEpisode::new("t", "i", "o", 0.5))
        .unwrap();
    db.store(&tenant("b"), NewEpisode::new("u", "i", "o", 0.5))
        .unwrap();
    assert_eq!(db.episode_count(), 3);
    db.delete(&tenant("a"), &a.id).unwrap();
    assert_eq!(db.episode_count(), 2);
    db.erase_tenant(&tenant("b")).unwrap();
    assert_eq!(db.episode_count(), 0);
}
