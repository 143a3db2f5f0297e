//! The all-MiniLM-L6-v2 embedder against the real model files.
//!
//! Needs the `model` feature and the model directory in `AGENTDB_MODEL_DIR`:
//!
//! ```sh
//! scripts/fetch-model.sh target/models/all-minilm-l6-v2
//! AGENTDB_MODEL_DIR=target/models/all-minilm-l6-v2 \
//!     cargo test -p agentdb-memory --features model --test model -- --nocapture
//! ```
//!
//! Without `AGENTDB_MODEL_DIR` every test here fails (it does not pass silently).
//!
//! The fidelity fixture `fixtures/minilm_reference.json` holds vectors computed by
//! sentence-transformers (the reference implementation) on the same files, on the CPU in f32;
//! `fixtures/minilm_reference.py` is the script that wrote it, with the exact commands, and the
//! fixture records the library versions used.

#![cfg(feature = "model")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use agentdb_core::{ModelId, NewEpisode, TenantId};
use agentdb_memory::embedder::MODEL_FILES;
use agentdb_memory::{
    embedder_from_env_or_dir, Embedder, LexicalEmbedder, MemStorage, MemoryEngine, MiniLmEmbedder,
    ModelLoadError, Query, QueryError, RedbStorage, StoreError, DB_FILE, MODEL_DIR_ENV,
};
use agentdb_security::MasterKey;

fn model_dir() -> PathBuf {
    match std::env::var_os(MODEL_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "{MODEL_DIR_ENV} is not set: the model tests need the all-MiniLM-L6-v2 files. Run \
             `scripts/fetch-model.sh target/models/all-minilm-l6-v2` and set \
             {MODEL_DIR_ENV}=target/models/all-minilm-l6-v2 (relative paths are relative to \
             crates/agentdb-memory under cargo test; an absolute path is safest)"
        ),
    }
}

/// The model, loaded once for all tests of this file.
fn minilm() -> Arc<MiniLmEmbedder> {
    static MODEL: OnceLock<Arc<MiniLmEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir();
            Arc::new(
                MiniLmEmbedder::load(&dir)
                    .unwrap_or_else(|e| panic!("cannot load the model from {dir:?}: {e}")),
            )
        })
        .clone()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<ReferenceSentence>,
}

#[derive(serde::Deserialize)]
struct ReferenceSentence {
    text: String,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn vectors_match_the_reference_implementation() {
    let model = minilm();
    assert_eq!(model.model().as_str(), "all-minilm-l6-v2");
    assert_eq!(model.dimensions(), 384);
    let reference = reference();
    assert!(reference.sentences.len() >= 10);
    let texts: Vec<&str> = reference
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let batched = model.embed_batch(&texts).unwrap();
    for (s, batch_vector) in reference.sentences.iter().zip(&batched) {
        let single = model.embed(&s.text).unwrap();
        assert_eq!(single.len(), 384);
        let norm = single.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        let c = cos(&single, &s.vector);
        let cb = cos(batch_vector, &s.vector);
        eprintln!("cosine to reference {c:.6} (batched {cb:.6}): {:?}", s.text);
        assert!(c >= 0.999, "cosine {c} for {:?}", s.text);
        assert!(cb >= 0.999, "batched cosine {cb} for {:?}", s.text);
    }
}

#[test]
fn text_beyond_256_tokens_is_truncated() {
    let model = minilm();
    let long: String = (0..200).map(|i| format!("alpha{i} beta ")).collect();
    let longer = format!("{long} completely different words about the ocean and ships");
    let a = model.embed(&long).unwrap();
    let b = model.embed(&longer).unwrap();
    assert!(
        cos(&a, &b) > 0.99999,
        "the tail past 256 tokens changed the vector"
    );
}

#[test]
fn load_failures_are_typed_and_clear() {
    let real = model_dir();
    let tmp = tempfile::tempdir().unwrap();

    let missing = tmp.path().join("nope");
    let err = MiniLmEmbedder::load(&missing).unwrap_err();
    assert!(matches!(err, ModelLoadError::MissingDir { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // Asking for a model that is not there never falls back to the lexical embedder.
    assert!(matches!(
        embedder_from_env_or_dir(Some(&missing)).unwrap_err(),
        ModelLoadError::MissingDir { .. }
    ));

    // Links to the real files, so that each case breaks exactly one of them.
    let dir_with = |name: &str, files: &[&str]| {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for f in files {
            std::os::unix::fs::symlink(std::fs::canonicalize(real.join(f)).unwrap(), dir.join(f))
                .unwrap();
        }
        dir
    };

    let dir = dir_with("no-weights", &["config.json", "tokenizer.json"]);
    let err = MiniLmEmbedder::load(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            ModelLoadError::MissingFile {
                file: "model.safetensors",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("has no model.safetensors"),
        "{err}"
    );

    let dir = dir_with("bad-tokenizer", &["config.json", "model.safetensors"]);
    std::fs::write(
        dir.join("tokenizer.json"),
        b"{\"version\": \"1.0\", \"model\": 42}",
    )
    .unwrap();
    let err = MiniLmEmbedder::load(&dir).unwrap_err();
    assert!(matches!(err, ModelLoadError::Tokenizer { .. }), "{err}");
    assert!(
        err.to_string().contains("tokenizer.json is corrupt"),
        "{err}"
    );

    let dir = dir_with("bad-config", &["tokenizer.json", "model.safetensors"]);
    std::fs::write(dir.join("config.json"), b"not json").unwrap();
    let err = MiniLmEmbedder::load(&dir).unwrap_err();
    assert!(matches!(err, ModelLoadError::Config { .. }), "{err}");

    let dir = dir_with("wide", &["tokenizer.json", "model.safetensors"]);
    let config = std::fs::read_to_string(real.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"hidden_size\": 384", "\"hidden_size\": 768"),
    )
    .unwrap();
    let err = MiniLmEmbedder::load(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            ModelLoadError::Dimensions {
                expected: 384,
                found: 768,
                ..
            }
        ),
        "{err}"
    );

    let dir = dir_with("truncated-weights", &["config.json", "tokenizer.json"]);
    let weights = std::fs::read(real.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = MiniLmEmbedder::load(&dir).unwrap_err();
    assert!(matches!(err, ModelLoadError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // And all three real files load.
    let dir = dir_with("complete", &MODEL_FILES);
    let e = embedder_from_env_or_dir(Some(&dir)).unwrap();
    assert_eq!(e.model().as_str(), MiniLmEmbedder::MODEL);
}

/// (query, relevant episode) pairs written as paraphrases: few or no words in common.
const PARAPHRASES: &[(&str, &str)] = &[
    ("summarise this invoice", "condense the billing document"),
    (
        "repair the broken sign-in screen",
        "fix the failing login page",
    ),
    (
        "reserve plane tickets to Germany's capital",
        "book a flight to Berlin for next Tuesday",
    ),
    (
        "write a courteous response turning down the appointment",
        "draft a polite reply declining the meeting",
    ),
    (
        "look for budget accommodation close to the terminal",
        "find cheap hotels near the airport",
    ),
    (
        "turn the table of numbers into a graph",
        "convert the spreadsheet into a chart",
    ),
    (
        "help someone who cannot remember their credentials get back in",
        "reset the user's forgotten password",
    ),
    (
        "arrange a visit to the tooth doctor",
        "schedule a dentist appointment",
    ),
    (
        "calculate how much sales increased over three months",
        "compute the quarterly revenue growth",
    ),
    (
        "filter junk mail out of the inbox",
        "detect spam in incoming messages",
    ),
    (
        "add automated checks for the code that reads the syntax",
        "write unit tests for the parser",
    ),
    (
        "get food delivered for the staff's midday meal",
        "order pizza for the team lunch",
    ),
    (
        "end my fitness club subscription",
        "cancel my gym membership",
    ),
    (
        "will it rain the day after today",
        "check tomorrow's weather forecast",
    ),
    ("make the container smaller", "shrink the docker image size"),
    (
        "optimise the sluggish SQL statement",
        "speed up the slow database query",
    ),
    (
        "render the legal agreement in español",
        "translate the contract into Spanish",
    ),
    (
        "organise a kid's celebration",
        "plan a birthday party for a child",
    ),
    (
        "suggest a sci-fi book worth reading",
        "recommend a good science fiction novel",
    ),
    (
        "deduplicate the client database entries",
        "clean up duplicate customer records",
    ),
    (
        "how much would remodelling the cooking area cost",
        "estimate the cost of renovating the kitchen",
    ),
    (
        "figure out why the notebook computer gets too hot",
        "diagnose why the laptop overheats",
    ),
    (
        "compose a motivation letter for applying to a position",
        "write a cover letter for a job application",
    ),
    (
        "refresh the SSL cert ahead of its expiry date",
        "renew the TLS certificate before it expires",
    ),
    (
        "copy the pictures onto a separate drive for safekeeping",
        "back up the photos to external storage",
    ),
    (
        "prepare a menu of dinners for seven days",
        "create a weekly meal plan",
    ),
    (
        "understand why clients are leaving",
        "analyse customer churn",
    ),
    (
        "answer the furious customer's grievance",
        "respond to the angry complaint",
    ),
    (
        "make a secure secret passphrase",
        "generate a strong random password",
    ),
    (
        "configure automated builds on every commit",
        "set up continuous integration for the repository",
    ),
    (
        "locate the defect that makes RAM usage grow",
        "find the bug causing the memory leak",
    ),
    ("clean up the lounge", "tidy the living room"),
    (
        "irrigate the flowers outside",
        "water the plants in the garden",
    ),
    (
        "settle the power utility charges",
        "pay the electricity bill",
    ),
    (
        "study simple expressions in the language spoken in Rome",
        "learn basic Italian phrases",
    ),
    (
        "replace the access tokens with new credentials",
        "rotate the API keys",
    ),
    (
        "reduce the size of the recorded event history files",
        "compress the log files",
    ),
    (
        "get someone to repair the dripping tap",
        "call a plumber about the leaking sink",
    ),
    (
        "make a presentation deck for fundraising",
        "prepare slides for the investor pitch",
    ),
    (
        "keep an eye on processor load on the machine",
        "monitor the server's CPU usage",
    ),
    (
        "check the article for spelling and syntax errors",
        "proofread the essay for grammar mistakes",
    ),
    (
        "purchase a present for mum",
        "buy a birthday gift for my mother",
    ),
    (
        "port the legacy codebase to the modern version of the language",
        "migrate the app from Python 2 to Python 3",
    ),
    (
        "sort the hits so the best matches come first",
        "rank the search results by relevance",
    ),
    (
        "triage help desk requests by priority",
        "classify the support tickets by urgency",
    ),
    (
        "take the puppy out for exercise",
        "walk the dog in the park",
    ),
    (
        "how do I bake a cocoa dessert",
        "find a recipe for chocolate cake",
    ),
    (
        "ask the property owner to reduce what I pay for the apartment",
        "negotiate a lower rent with the landlord",
    ),
    (
        "compose a short Japanese poem on fall",
        "write a haiku about autumn",
    ),
    (
        "make the website cope with additional visitors",
        "scale the web service to handle more traffic",
    ),
    (
        "protect the saved copy with a cipher",
        "encrypt the backup archive",
    ),
    (
        "work out the gratuity for dinner",
        "calculate the tip on a restaurant bill",
    ),
    (
        "upgrade the stale third-party libraries",
        "update the outdated dependencies",
    ),
    (
        "pull out people, places and organisations mentioned in the story",
        "extract named entities from the news article",
    ),
    (
        "combine both code change proposals",
        "merge the two pull requests",
    ),
    (
        "say sorry to the customer because the shipment arrived late",
        "apologise to the client for the delayed delivery",
    ),
    (
        "where can I buy medicine close by at this hour",
        "find the nearest pharmacy that is open now",
    ),
    ("wake me up at 6 am", "set an alarm for six in the morning"),
    (
        "how many terms does this file contain",
        "count the words in the document",
    ),
    (
        "document what changed in the new major release",
        "write release notes for version 2.0",
    ),
];

/// Recall@1 and recall@5 of `embedder` on [`PARAPHRASES`]: every relevant episode is stored in
/// one tenant (each is a distractor for the others), then every query is asked.
fn recall(embedder: Arc<dyn Embedder>) -> (f64, f64) {
    let db = MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate().unwrap())
        .embedder(embedder)
        .open()
        .unwrap();
    let t = TenantId::new("bench").unwrap();
    let stored = db
        .store_batch(
            &t,
            PARAPHRASES
                .iter()
                .map(|(_, episode)| NewEpisode::new(*episode, "", "done", 0.9))
                .collect(),
        )
        .unwrap();
    let (mut at1, mut at5) = (0, 0);
    for ((query, _), s) in PARAPHRASES.iter().zip(&stored) {
        let hits = db.query(&t, &Query::text(*query, 5)).unwrap();
        let rank = hits.iter().position(|h| h.episode.id == s.id);
        at1 += usize::from(rank == Some(0));
        at5 += usize::from(rank.is_some());
    }
    let n = PARAPHRASES.len() as f64;
    (at1 as f64 / n, at5 as f64 / n)
}

#[test]
fn the_model_finds_paraphrases_the_lexical_embedder_misses() {
    assert!(PARAPHRASES.len() >= 50);
    let (lex1, lex5) = recall(Arc::new(LexicalEmbedder::new()));
    let (model1, model5) = recall(minilm());
    eprintln!(
        "paraphrase retrieval over {} pairs: lexical recall@1 {lex1:.3} recall@5 {lex5:.3}; \
         all-minilm-l6-v2 recall@1 {model1:.3} recall@5 {model5:.3}",
        PARAPHRASES.len()
    );
    // Measured: lexical 0.083 / 0.267, all-minilm-l6-v2 0.933 / 1.000.
    assert!(model1 >= 0.85, "model recall@1 {model1}");
    assert!(model5 >= 0.95, "model recall@5 {model5}");
    assert!(
        model1 >= lex1 + 0.5,
        "recall@1: model {model1} vs lexical {lex1}"
    );
    assert!(
        model5 >= lex5 + 0.5,
        "recall@5: model {model5} vs lexical {lex5}"
    );
}

#[test]
fn a_lexical_tenant_reindexed_with_the_model_finds_paraphrases() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let t = TenantId::new("acme").unwrap();
    let open = |embedder: Arc<dyn Embedder>| {
        let storage = Arc::new(RedbStorage::open(&dir.path().join(DB_FILE)).unwrap());
        MemoryEngine::builder(storage, key.clone())
            .embedder(embedder)
            .open()
            .unwrap()
    };
    {
        let db = open(Arc::new(LexicalEmbedder::new()));
        db.store_batch(
            &t,
            PARAPHRASES
                .iter()
                .map(|(_, episode)| NewEpisode::new(*episode, "", "done", 0.9))
                .collect(),
        )
        .unwrap();
    }
    let model = minilm();
    let minilm_id = ModelId::new(MiniLmEmbedder::MODEL).unwrap();
    let db = open(model.clone());
    // Bound to the lexical model until re-indexed: text is refused, not mixed.
    assert!(matches!(
        db.query(&t, &Query::text("summarise this invoice", 5))
            .unwrap_err(),
        QueryError::EmbedderMismatch { .. }
    ));
    assert!(matches!(
        db.store(&t, NewEpisode::new("x", "", "o", 0.5))
            .unwrap_err(),
        StoreError::EmbedderMismatch { .. }
    ));
    let done = db.reindex(&t, &*model, &mut |_, _| {}).unwrap();
    assert_eq!(done, PARAPHRASES.len() as u64);
    assert_eq!(db.tenant_model(&t), Some(minilm_id.clone()));
    assert_eq!(
        db.stats(&t).unwrap().embedding_model,
        Some(minilm_id.clone())
    );
    let hits = db
        .query(&t, &Query::text("summarise this invoice", 1))
        .unwrap();
    assert_eq!(hits[0].episode.task, "condense the billing document");
    assert_eq!(hits[0].episode.embedding_model, minilm_id);
    drop(db);

    let db = open(model);
    assert_eq!(db.tenant_model(&t), Some(minilm_id));
    let hits = db.query(&t, &Query::text("wake me up at 6 am", 1)).unwrap();
    assert_eq!(hits[0].episode.task, "set an alarm for six in the morning");
    // The lexical embedder is refused on the re-indexed tenant.
    let lexical = open_lexical_query(&db, &t);
    assert!(matches!(lexical, Err(QueryError::EmbedderMismatch { .. })));
}

fn open_lexical_query(
    db: &MemoryEngine,
    t: &TenantId,
) -> Result<Vec<agentdb_memory::Match>, QueryError> {
    let v = LexicalEmbedder::new().embed_text("wake me up");
    db.query(
        t,
        &Query::vector(
            agentdb_core::Embedding {
                model: ModelId::new(LexicalEmbedder::MODEL).unwrap(),
                vector: v,
            },
            1,
        ),
    )
}
