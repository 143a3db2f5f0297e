//! Re-embedding a tenant with another embedder (`MemoryEngine::reindex`), on the redb backend,
//! with a small deterministic embedder defined here (no model files needed).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentdb_core::{EpisodeId, ModelId, NewEpisode, TenantId};
use agentdb_memory::{
    EmbedError, Embedder, LexicalEmbedder, MemoryEngine, Query, QueryError, RedbStorage,
    ReindexError, StoreError, DB_FILE, REINDEX_BATCH,
};
use agentdb_security::MasterKey;

/// The lexical vector folded into 64 dimensions under another model id: a different model
/// (id and dimension) that still ranks exact text first.
#[derive(Debug)]
struct Folded {
    model: ModelId,
    lexical: LexicalEmbedder,
    /// Batches left before `embed_batch` fails; `usize::MAX` never fails.
    fail_after: AtomicUsize,
}

impl Folded {
    const DIMS: usize = 64;

    fn new() -> Self {
        Self::failing_after(usize::MAX)
    }

    fn failing_after(batches: usize) -> Self {
        Self {
            model: ModelId::new("test-folded-64").unwrap(),
            lexical: LexicalEmbedder::new(),
            fail_after: AtomicUsize::new(batches),
        }
    }
}

impl Embedder for Folded {
    fn model(&self) -> &ModelId {
        &self.model
    }

    fn dimensions(&self) -> usize {
        Self::DIMS
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = vec![0f32; Self::DIMS];
        for (i, x) in self.lexical.embed_text(text).into_iter().enumerate() {
            v[i % Self::DIMS] += x;
        }
        agentdb_memory::embedder::normalize(&mut v);
        Ok(v)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let left = self.fail_after.load(Ordering::SeqCst);
        if left == 0 {
            return Err(EmbedError::Model {
                model: self.model.clone(),
                reason: "injected failure".into(),
            });
        }
        if left != usize::MAX {
            self.fail_after.store(left - 1, Ordering::SeqCst);
        }
        texts.iter().map(|t| self.embed(t)).collect()
    }
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn open(dir: &Path, key: &MasterKey, embedder: Arc<dyn Embedder>) -> MemoryEngine {
    let storage = Arc::new(RedbStorage::open(&dir.join(DB_FILE)).unwrap());
    MemoryEngine::builder(storage, key.clone())
        .embedder(embedder)
        .open()
        .unwrap()
}

fn task(n: usize) -> String {
    format!(
        "task number {n} about {}",
        ["invoices", "logins", "flights"][n % 3]
    )
}

/// Stores `n` episodes (with a key rotation half way, so rows are sealed under two key
/// versions) and deletes the first one, whose id it returns.
fn fill(db: &MemoryEngine, t: &TenantId, n: usize) -> EpisodeId {
    let mut batch = Vec::new();
    let mut first = None;
    for i in 0..n {
        batch.push(NewEpisode::new(task(i), format!("input {i}"), "out", 0.9));
        if batch.len() == 100 || i == n / 2 || i + 1 == n {
            let stored = db.store_batch(t, std::mem::take(&mut batch)).unwrap();
            first = first.or(Some(stored[0].id));
        }
        if i == n / 2 {
            db.rotate_tenant_key(t).unwrap();
        }
    }
    let first = first.unwrap();
    assert!(db.delete(t, &first).unwrap());
    first
}

fn folded_model() -> ModelId {
    ModelId::new("test-folded-64").unwrap()
}

fn lexical_model() -> ModelId {
    ModelId::new(LexicalEmbedder::MODEL).unwrap()
}

#[test]
fn reindex_moves_a_tenant_to_the_new_model_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let (acme, beta) = (tenant("acme"), tenant("beta"));
    let n = 2 * REINDEX_BATCH + 50;
    let (changes_before, deleted);
    {
        let db = open(dir.path(), &key, Arc::new(LexicalEmbedder::new()));
        deleted = fill(&db, &acme, n);
        db.store(&beta, NewEpisode::new("beta task", "", "o", 0.5))
            .unwrap();
        changes_before = db.changes_since(&acme, 0, 1000).unwrap().changes.len();
    }

    // Reopened with the new embedder, the old tenants still open, bound to their model.
    let folded = Arc::new(Folded::new());
    let db = open(dir.path(), &key, folded.clone());
    assert_eq!(db.tenant_model(&acme), Some(lexical_model()));
    assert!(matches!(
        db.query(&acme, &Query::text(task(7), 3)).unwrap_err(),
        QueryError::EmbedderMismatch { .. }
    ));
    assert!(matches!(
        db.store(&acme, NewEpisode::new("new", "", "o", 0.5))
            .unwrap_err(),
        StoreError::EmbedderMismatch { .. }
    ));

    let mut calls = Vec::new();
    let done = db
        .reindex(&acme, &*folded, &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap();
    let live = (n - 1) as u64;
    assert_eq!(done, live);
    assert_eq!(calls.first(), Some(&(0, live)));
    assert_eq!(calls.last(), Some(&(live, live)));
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(calls.len(), 1 + n.div_ceil(REINDEX_BATCH));

    // Text queries now work with the new model and find the exact episode first.
    assert_eq!(db.tenant_model(&acme), Some(folded_model()));
    let stats = db.stats(&acme).unwrap();
    assert_eq!(stats.embedding_model, Some(folded_model()));
    assert_eq!(stats.episodes, live);
    assert_eq!(stats.deleted, 1);
    let hits = db
        .query(&acme, &Query::text(format!("{}\ninput 7", task(7)), 3))
        .unwrap();
    assert_eq!(hits[0].episode.task, task(7));
    assert!(hits[0].score > 0.999);
    assert_eq!(hits[0].episode.embedding_model, folded_model());
    assert_eq!(db.index(&acme).unwrap().live_len() as u64, live);
    // The deleted episode stays deleted; re-embedding is not a change of content.
    assert_eq!(db.get(&acme, &deleted).unwrap(), None);
    assert_eq!(
        db.changes_since(&acme, 0, 1000).unwrap().changes.len(),
        changes_before
    );
    // Writes go on with the new model; the other tenant was not touched.
    db.store(&acme, NewEpisode::new("fresh task", "", "o", 0.5))
        .unwrap();
    assert_eq!(db.tenant_model(&beta), Some(lexical_model()));

    // Nothing left to do: no batch, no progress.
    let mut again = 0;
    assert_eq!(
        db.reindex(&acme, &*folded, &mut |_, _| again += 1).unwrap(),
        0
    );
    assert_eq!(again, 0);
    assert!(matches!(
        db.reindex(&tenant("nobody"), &*folded, &mut |_, _| {})
            .unwrap_err(),
        ReindexError::UnknownTenant(_)
    ));
    drop(db);

    // A reopen keeps the new model and every vector.
    let db = open(dir.path(), &key, folded);
    assert_eq!(db.tenant_model(&acme), Some(folded_model()));
    assert_eq!(db.index(&acme).unwrap().live_len() as u64, live + 1);
    let hits = db.query(&acme, &Query::text(task(42), 1)).unwrap();
    assert_eq!(hits[0].episode.task, task(42));
}

#[test]
fn an_interrupted_reindex_is_finished_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let acme = tenant("acme");
    let n = 2 * REINDEX_BATCH + 10;
    {
        let db = open(dir.path(), &key, Arc::new(LexicalEmbedder::new()));
        fill(&db, &acme, n);
    }
    let live = (n - 1) as u64;
    {
        let db = open(dir.path(), &key, Arc::new(Folded::new()));
        // The first batch commits, the second fails.
        let failing = Folded::failing_after(1);
        let err = db.reindex(&acme, &failing, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, ReindexError::Embed(_)), "{err}");
        // The tenant is on the new model from the first batch on; the rest is not searchable.
        assert_eq!(db.tenant_model(&acme), Some(folded_model()));
        assert_eq!(
            db.index(&acme).unwrap().live_len(),
            REINDEX_BATCH,
            "only the committed batch is indexed"
        );
    }
    // A crash now leaves the same state: the store still opens.
    let folded = Folded::new();
    let db = open(dir.path(), &key, Arc::new(Folded::new()));
    assert_eq!(db.tenant_model(&acme), Some(folded_model()));
    assert_eq!(db.index(&acme).unwrap().live_len(), REINDEX_BATCH);
    let done = db.reindex(&acme, &folded, &mut |_, _| {}).unwrap();
    assert_eq!(done, live - REINDEX_BATCH as u64);
    assert_eq!(db.index(&acme).unwrap().live_len() as u64, live);
    assert_eq!(db.stats(&acme).unwrap().episodes, live);
    let hits = db.query(&acme, &Query::text(task(n - 1), 1)).unwrap();
    assert_eq!(hits[0].episode.task, task(n - 1));
}

#[test]
fn writers_and_erasure_after_a_reindex_use_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let acme = tenant("acme");
    {
        let db = open(dir.path(), &key, Arc::new(LexicalEmbedder::new()));
        fill(&db, &acme, 20);
    }
    let folded = Arc::new(Folded::new());
    let db = Arc::new(open(dir.path(), &key, folded.clone()));
    // Writers race the re-index: each either fails with a model mismatch (it ran before) or
    // lands on the new model (after). None is lost and none lands on the old model.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut stored = 0;
                for i in 0..50 {
                    let e = NewEpisode::new(format!("writer {w} item {i}"), "", "o", 0.5);
                    match db.store(&tenant("acme"), e) {
                        Ok(_) => stored += 1,
                        Err(StoreError::EmbedderMismatch { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                stored
            })
        })
        .collect();
    db.reindex(&acme, &*folded, &mut |_, _| {}).unwrap();
    let stored: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(db.stats(&acme).unwrap().episodes, 19 + stored);
    assert_eq!(db.index(&acme).unwrap().live_len() as u64, 19 + stored);
    assert_eq!(db.rotate_tenant_key(&acme).unwrap(), 3);
    let report = db.erase_tenant(&acme).unwrap();
    assert!(report.existed);
    assert_eq!(db.tenant_model(&acme), None);
    drop(db);
    let db = open(dir.path(), &key, folded);
    assert!(db.tenants().is_empty());
}
