//! Every embedder side by side: paraphrase retrieval quality, and the static and ONNX embedders
//! against their real model files.
//!
//! Needs the model directories, each fetched by its script:
//!
//! ```sh
//! scripts/fetch-static-model.sh target/models/potion-base-8m
//! scripts/fetch-onnx.sh target/models/minilm-onnx-int8
//! AGENTDB_STATIC_MODEL_DIR=$PWD/target/models/potion-base-8m \
//! AGENTDB_ONNX_DIR=$PWD/target/models/minilm-onnx-int8 \
//!     cargo test -p agentdb-memory --features static-model,onnx --test embedders -- --nocapture
//! ```
//!
//! With `--features model` and `AGENTDB_MODEL_DIR` the f32 candle model is measured too. A test
//! whose model directory variable is unset says so on stderr and checks nothing; one that is set
//! must load.
//!
//! The paraphrase pairs are the 60 of `tests/model.rs`, read from that file so that both tests
//! measure the same set.

#![cfg(any(feature = "static-model", feature = "onnx"))]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{
    embedder_from_env_or_dir, Embedder, LexicalEmbedder, MemStorage, MemoryEngine, ModelLoadError,
    Query,
};
use agentdb_security::MasterKey;

/// The directory of the potion-base-8M files.
#[cfg(feature = "static-model")]
const STATIC_DIR_ENV: &str = "AGENTDB_STATIC_MODEL_DIR";
/// The directory of the ONNX model, its tokenizer and ONNX Runtime.
#[cfg(feature = "onnx")]
const ONNX_DIR_ENV: &str = "AGENTDB_ONNX_DIR";

fn dir_from(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("{var} is not set: skipped (see the top of tests/embedders.rs)");
            None
        }
    }
}

/// The (query, relevant episode) pairs of `tests/model.rs`: the string literals of its
/// `PARAPHRASES` constant, taken two by two.
fn paraphrases() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model.rs");
    let source = std::fs::read_to_string(path).unwrap();
    let start = source.find("const PARAPHRASES").unwrap();
    let body = &source[start..];
    let body = &body[body.find("= &[").unwrap()..body.find("\n];").unwrap()];
    // The literals hold no escaped quotes: every other '"' opens one.
    let literals: Vec<String> = body
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert_eq!(literals.len() % 2, 0);
    let pairs: Vec<(String, String)> = literals
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    assert_eq!(pairs.len(), 60, "tests/model.rs has 60 paraphrase pairs");
    pairs
}

/// Recall@1 and recall@5 of `embedder`: every relevant episode stored in one tenant (each a
/// distractor for the others), then every query asked by text through the engine.
fn recall(embedder: Arc<dyn Embedder>) -> (f64, f64) {
    let pairs = paraphrases();
    let db = MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate().unwrap())
        .embedder(embedder)
        .open()
        .unwrap();
    let t = TenantId::new("bench").unwrap();
    let stored = db
        .store_batch(
            &t,
            pairs
                .iter()
                .map(|(_, episode)| NewEpisode::new(episode.as_str(), "", "done", 0.9))
                .collect(),
        )
        .unwrap();
    let (mut at1, mut at5) = (0, 0);
    for ((query, _), s) in pairs.iter().zip(&stored) {
        let hits = db.query(&t, &Query::text(query.as_str(), 5)).unwrap();
        let rank = hits.iter().position(|h| h.episode.id == s.id);
        at1 += usize::from(rank == Some(0));
        at5 += usize::from(rank.is_some());
    }
    let n = pairs.len() as f64;
    (at1 as f64 / n, at5 as f64 / n)
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn paraphrase_recall_of_every_embedder() {
    let (lex1, lex5) = recall(Arc::new(LexicalEmbedder::new()));
    eprintln!("paraphrase recall@1 / @5 over 60 pairs:");
    eprintln!("  agentdb-lexical-v1     {lex1:.3} / {lex5:.3}");
    // Measured: 0.083 / 0.267.
    assert!(
        lex5 < 0.5,
        "the lexical embedder is not meant to find paraphrases"
    );

    #[cfg(feature = "static-model")]
    if let Some(dir) = dir_from(STATIC_DIR_ENV) {
        let (r1, r5) = recall(embedder_from_env_or_dir(Some(&dir)).unwrap());
        eprintln!("  potion-base-8m         {r1:.3} / {r5:.3}");
        // Measured: 0.833 / 0.983.
        assert!(r1 >= 0.75 && r5 >= 0.9, "potion-base-8m: {r1} / {r5}");
        assert!(r5 >= lex5 + 0.4, "potion-base-8m @5 {r5} vs lexical {lex5}");
    }

    #[cfg(feature = "model")]
    if let Some(dir) = dir_from(agentdb_memory::MODEL_DIR_ENV) {
        let (r1, r5) = recall(embedder_from_env_or_dir(Some(&dir)).unwrap());
        eprintln!("  all-minilm-l6-v2       {r1:.3} / {r5:.3}");
        // Measured: 0.933 / 1.000.
        assert!(r1 >= 0.85 && r5 >= 0.95, "all-minilm-l6-v2: {r1} / {r5}");
    }

    #[cfg(feature = "onnx")]
    if let Some(dir) = dir_from(ONNX_DIR_ENV) {
        let (r1, r5) = recall(embedder_from_env_or_dir(Some(&dir)).unwrap());
        eprintln!("  all-minilm-l6-v2-int8  {r1:.3} / {r5:.3}");
        // Measured: 0.933 / 1.000, as the f32 model.
        assert!(
            r1 >= 0.85 && r5 >= 0.95,
            "all-minilm-l6-v2-int8: {r1} / {r5}"
        );
    }
}

#[cfg(feature = "static-model")]
mod static_model {
    use super::*;
    use agentdb_memory::StaticEmbedder;

    #[test]
    fn vectors_are_unit_length_256_wide_and_deterministic() {
        let Some(dir) = dir_from(STATIC_DIR_ENV) else {
            return;
        };
        let e = embedder_from_env_or_dir(Some(&dir)).unwrap();
        assert_eq!(e.model().as_str(), StaticEmbedder::MODEL);
        assert_eq!(e.dimensions(), 256);
        let texts = [
            "summarise this invoice",
            "condense the billing document",
            "",
        ];
        let batched = e.embed_batch(&texts).unwrap();
        for (t, b) in texts.iter().zip(&batched) {
            let single = e.embed(t).unwrap();
            assert_eq!(single.len(), 256);
            assert_eq!(&single, b, "batched and single differ for {t:?}");
        }
        assert!((norm(&batched[0]) - 1.0).abs() < 1e-4);
        // Text with no known token has no features: the zero vector.
        assert_eq!(norm(&batched[2]), 0.0);
        // Paraphrases are closer than unrelated text.
        let unrelated = e.embed("deploy the kubernetes cluster").unwrap();
        assert!(cos(&batched[0], &batched[1]) > cos(&batched[0], &unrelated));
    }

    #[test]
    fn load_failures_are_typed_and_never_fall_back() {
        let Some(real) = dir_from(STATIC_DIR_ENV) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir_with = |name: &str, files: &[&str]| {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            for f in files {
                std::fs::copy(real.join(f), dir.join(f)).unwrap();
            }
            dir
        };

        let dir = dir_with("no-table", &["config.json", "tokenizer.json"]);
        let err = embedder_from_env_or_dir(Some(&dir)).unwrap_err();
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
            err.to_string().contains("scripts/fetch-static-model.sh"),
            "{err}"
        );

        let dir = dir_with("truncated", &["config.json", "tokenizer.json"]);
        let table = std::fs::read(real.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("model.safetensors"), &table[..table.len() / 2]).unwrap();
        let err = embedder_from_env_or_dir(Some(&dir)).unwrap_err();
        assert!(matches!(err, ModelLoadError::Weights { .. }), "{err}");

        let dir = dir_with("bad-tokenizer", &["config.json", "model.safetensors"]);
        std::fs::write(dir.join("tokenizer.json"), b"{\"model\": 42}").unwrap();
        let err = embedder_from_env_or_dir(Some(&dir)).unwrap_err();
        assert!(matches!(err, ModelLoadError::Tokenizer { .. }), "{err}");

        // A BERT config in the same files is another model: StaticEmbedder refuses it.
        let dir = dir_with("bert-config", &["tokenizer.json", "model.safetensors"]);
        std::fs::write(dir.join("config.json"), br#"{"model_type": "bert"}"#).unwrap();
        let err = StaticEmbedder::load(&dir).unwrap_err();
        assert!(matches!(err, ModelLoadError::Config { .. }), "{err}");
    }
}

#[cfg(feature = "onnx")]
mod onnx {
    use super::*;
    use agentdb_memory::{OnnxConfig, OnnxEmbedder};

    #[derive(serde::Deserialize)]
    struct Reference {
        sentences: Vec<ReferenceSentence>,
    }

    #[derive(serde::Deserialize)]
    struct ReferenceSentence {
        text: String,
        vector: Vec<f32>,
    }

    /// Vectors of sentence-transformers (f32, PyTorch) for ten sentences; see tests/model.rs.
    fn reference() -> Reference {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn vectors_are_close_to_the_f32_reference() {
        let Some(dir) = dir_from(ONNX_DIR_ENV) else {
            return;
        };
        let config = OnnxConfig {
            intra_threads: 1,
            sessions: 2,
        };
        let e = OnnxEmbedder::load_with(&dir, &config).unwrap();
        assert_eq!(e.model().as_str(), OnnxEmbedder::MODEL);
        assert_eq!(e.dimensions(), 384);
        let reference = reference();
        let texts: Vec<&str> = reference
            .sentences
            .iter()
            .map(|s| s.text.as_str())
            .collect();
        let batched = e.embed_batch(&texts).unwrap();
        let mut sum = 0.0;
        for (s, b) in reference.sentences.iter().zip(&batched) {
            let single = e.embed(&s.text).unwrap();
            assert!((norm(&single) - 1.0).abs() < 1e-4);
            let c = cos(&single, &s.vector);
            eprintln!(
                "cosine to the f32 reference {c:.4} (batched {:.4}): {:?}",
                cos(b, &s.vector),
                s.text
            );
            sum += c;
            // Measured: 0.980 (empty text) to 0.996.
            assert!(c >= 0.97, "cosine {c} for {:?}", s.text);
            // A text's vector does not depend on the texts embedded with it.
            assert_eq!(&single, b, "batched vs single for {:?}", s.text);
        }
        let mean = sum / reference.sentences.len() as f32;
        eprintln!("mean cosine to the f32 reference: {mean:.4}");
        // Measured: 0.991.
        assert!(mean >= 0.985, "mean cosine {mean}");
    }

    #[test]
    fn load_failures_are_typed_and_never_fall_back() {
        let Some(real) = dir_from(ONNX_DIR_ENV) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir_with = |name: &str, files: &[&str]| {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            for f in files {
                std::os::unix::fs::symlink(
                    std::fs::canonicalize(real.join(f)).unwrap(),
                    dir.join(f),
                )
                .unwrap();
            }
            dir
        };

        let dir = dir_with("no-runtime", &["model.onnx", "tokenizer.json"]);
        let err = embedder_from_env_or_dir(Some(&dir)).unwrap_err();
        assert!(
            matches!(
                err,
                ModelLoadError::MissingFile {
                    file: "libonnxruntime.so",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("scripts/fetch-onnx.sh"), "{err}");

        let dir = dir_with("truncated-graph", &["tokenizer.json", "libonnxruntime.so"]);
        let graph = std::fs::read(real.join("model.onnx")).unwrap();
        std::fs::write(dir.join("model.onnx"), &graph[..graph.len() / 2]).unwrap();
        let err = embedder_from_env_or_dir(Some(&dir)).unwrap_err();
        assert!(matches!(err, ModelLoadError::Weights { .. }), "{err}");

        let dir = dir_with("bad-tokenizer", &["model.onnx", "libonnxruntime.so"]);
        std::fs::write(dir.join("tokenizer.json"), b"{\"model\": 42}").unwrap();
        let err = embedder_from_env_or_dir(Some(&dir)).unwrap_err();
        assert!(matches!(err, ModelLoadError::Tokenizer { .. }), "{err}");

        let e = embedder_from_env_or_dir(Some(&real)).unwrap();
        assert_eq!(e.model().as_str(), OnnxEmbedder::MODEL);
    }
}
