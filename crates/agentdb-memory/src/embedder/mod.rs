//! Turning text into vectors.
//!
//! An [`Embedder`] reports the model it implements and its dimension. Both are stored with the
//! data: a tenant's index is bound to one model, and vectors from another model are refused
//! rather than compared (a cosine between two models' vectors means nothing).
//!
//! The embedders (docs/semantic.md compares them):
//! - [`LexicalEmbedder`] (`agentdb-lexical-v1`), the default: word and trigram hashing, offline
//!   and instant, but it only matches shared words.
//! - `StaticEmbedder` (`potion-base-8m`, cargo feature `static-model`): a model2vec table of
//!   token vectors, mean pooled. Microseconds per text, and it matches many paraphrases.
//! - `MiniLmEmbedder` (`all-minilm-l6-v2`, feature `model`): the all-MiniLM-L6-v2
//!   sentence-embedding model in f32 with candle. The best at paraphrases, milliseconds per text.
//! - `OnnxEmbedder` (`all-minilm-l6-v2-int8`, feature `onnx`): the same model with int8 weights
//!   on ONNX Runtime, loaded at run time; about a sixth of the f32 model's cost per query.
//!
//! Every model is read from a local directory; nothing is downloaded at run time.
//! [`embedder_from_env_or_dir`] picks one the way the binary does: an explicit model directory,
//! else `AGENTDB_MODEL_DIR`, else the lexical default; the directory's files say which model it
//! holds ([`ModelKind::of_dir`]). A model that was asked for and cannot be loaded is an error,
//! never a silent fallback to the lexical embedder.

mod lexical;
#[cfg(feature = "model")]
mod minilm;
#[cfg(feature = "onnx")]
mod onnx;
#[cfg(feature = "static-model")]
mod static_model;

pub use lexical::LexicalEmbedder;
#[cfg(feature = "model")]
pub use minilm::MiniLmEmbedder;
#[cfg(feature = "onnx")]
pub use onnx::{OnnxConfig, OnnxEmbedder};
#[cfg(feature = "static-model")]
pub use static_model::StaticEmbedder;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentdb_core::ModelId;

/// Environment variable naming the directory of the sentence-embedding model.
pub const MODEL_DIR_ENV: &str = "AGENTDB_MODEL_DIR";

/// Files a model directory must hold (all-MiniLM-L6-v2 for candle, or potion-base-8M).
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Files the directory of the ONNX model must hold: the graph, the tokenizer and the ONNX
/// Runtime library that runs it.
pub const ONNX_FILES: [&str; 3] = ["model.onnx", "tokenizer.json", "libonnxruntime.so"];

/// The models a directory can hold, told apart by its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelKind {
    /// all-MiniLM-L6-v2 in f32 for candle: [`MODEL_FILES`] with a BERT `config.json`.
    MiniLm,
    /// all-MiniLM-L6-v2 int8 for ONNX Runtime: a directory with `model.onnx` ([`ONNX_FILES`]).
    Onnx,
    /// potion-base-8M: [`MODEL_FILES`] with `"model_type": "model2vec"` in `config.json`.
    Static,
}

impl ModelKind {
    /// Which model `dir` holds: `model.onnx` makes it the ONNX model, a model2vec
    /// `config.json` the static one, anything else all-MiniLM-L6-v2 for candle (whose loader
    /// then says what is missing or wrong).
    pub fn of_dir(dir: &Path) -> Self {
        if dir.join("model.onnx").exists() {
            return Self::Onnx;
        }
        let model2vec =
            std::fs::read(dir.join("config.json")).is_ok_and(|config| is_model2vec_config(&config));
        if model2vec {
            Self::Static
        } else {
            Self::MiniLm
        }
    }

    /// The cargo feature that builds this model's embedder.
    pub fn feature(self) -> &'static str {
        match self {
            Self::MiniLm => "model",
            Self::Onnx => "onnx",
            Self::Static => "static-model",
        }
    }

    /// The model's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::MiniLm => "all-MiniLM-L6-v2 (f32, candle)",
            Self::Onnx => "all-MiniLM-L6-v2 (int8, ONNX Runtime)",
            Self::Static => "potion-base-8M (static)",
        }
    }

    /// The script that fetches this model's files.
    fn fetch_script(self) -> &'static str {
        match self {
            Self::MiniLm => "scripts/fetch-model.sh",
            Self::Onnx => "scripts/fetch-onnx.sh",
            Self::Static => "scripts/fetch-static-model.sh",
        }
    }
}

/// Why a sentence-embedding model could not be loaded. The engine does not start with a model
/// it cannot load; it never falls back to another embedder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelLoadError {
    /// A model directory was given, but this build has no support for the model in it.
    #[error(
        "model directory {} holds {}, but this build of agentdb has no support for it: \
         rebuild with `--features {}`, or unset {MODEL_DIR_ENV} / --model-dir to use the \
         lexical embedder",
        dir.display(), kind.name(), kind.feature()
    )]
    NotBuilt {
        /// The directory asked for.
        dir: PathBuf,
        /// The model the directory holds.
        kind: ModelKind,
    },
    /// The model directory does not exist or is not a directory.
    #[error(
        "model directory {} does not exist or is not a directory (it must hold config.json, \
         tokenizer.json and model.safetensors; scripts/fetch-model.sh fetches them)",
        dir.display()
    )]
    MissingDir {
        /// The directory.
        dir: PathBuf,
    },
    /// One of the model's files is missing.
    #[error("model directory {} has no {file} ({script} fetches it)", dir.display())]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The missing file's name.
        file: &'static str,
        /// The script that fetches the model's files.
        script: &'static str,
    },
    /// The ONNX Runtime library in the model directory cannot be opened or is too old.
    #[error("cannot load the ONNX Runtime library {}: {reason}", path.display())]
    Runtime {
        /// The library.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A model file could not be read.
    #[error("cannot read model file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` is not a valid BERT configuration.
    #[error("model config {} is corrupt or not a BERT config: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.json` is not a valid tokenizer (or does not fit the model).
    #[error("model tokenizer {} is corrupt: {reason}", path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `model.safetensors` is not valid or lacks tensors the model needs.
    #[error("model weights {} are corrupt or incomplete: {reason}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model produces vectors of another size than the embedder promises.
    #[error("model in {} has {found} dimensions; expected {expected}", dir.display())]
    Dimensions {
        /// The directory.
        dir: PathBuf,
        /// What the embedder promises.
        expected: usize,
        /// What the config says.
        found: usize,
    },
}

/// The embedder for text, chosen the way the `agentdb` binary chooses it:
///
/// 1. `model_dir`, when given: the model in that directory ([`ModelKind::of_dir`] tells which);
/// 2. else the directory in `AGENTDB_MODEL_DIR`, when set and not empty;
/// 3. else the lexical default ([`LexicalEmbedder`]).
///
/// A directory that was asked for and cannot be loaded is an error — in particular in a build
/// without the model's cargo feature ([`ModelLoadError::NotBuilt`]). Nothing falls back
/// silently.
pub fn embedder_from_env_or_dir(
    model_dir: Option<&Path>,
) -> Result<Arc<dyn Embedder>, ModelLoadError> {
    let from_env = std::env::var_os(MODEL_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    match model_dir.map(Path::to_path_buf).or(from_env) {
        Some(dir) => load_model_dir(&dir),
        None => Ok(Arc::new(LexicalEmbedder::new())),
    }
}

fn load_model_dir(dir: &Path) -> Result<Arc<dyn Embedder>, ModelLoadError> {
    if !dir.is_dir() {
        return Err(ModelLoadError::MissingDir {
            dir: dir.to_owned(),
        });
    }
    let kind = ModelKind::of_dir(dir);
    match kind {
        #[cfg(feature = "model")]
        ModelKind::MiniLm => Ok(Arc::new(MiniLmEmbedder::load(dir)?)),
        #[cfg(feature = "onnx")]
        ModelKind::Onnx => Ok(Arc::new(OnnxEmbedder::load(dir)?)),
        #[cfg(feature = "static-model")]
        ModelKind::Static => Ok(Arc::new(StaticEmbedder::load(dir)?)),
        #[allow(unreachable_patterns)] // Reached in builds without some of the features.
        _ => Err(ModelLoadError::NotBuilt {
            dir: dir.to_owned(),
            kind,
        }),
    }
}

/// Whether `config` (the bytes of a `config.json`) describes a model2vec model.
fn is_model2vec_config(config: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get("model_type")?.as_str().map(|t| t == "model2vec"))
        .unwrap_or(false)
}

/// Checks that `dir` is a directory holding every file of `files`.
#[cfg_attr(
    not(any(feature = "model", feature = "onnx", feature = "static-model")),
    allow(dead_code)
)]
fn check_files(dir: &Path, files: &[&'static str]) -> Result<(), ModelLoadError> {
    if !dir.is_dir() {
        return Err(ModelLoadError::MissingDir {
            dir: dir.to_owned(),
        });
    }
    let script = ModelKind::of_dir(dir).fetch_script();
    for &file in files {
        if !dir.join(file).is_file() {
            return Err(ModelLoadError::MissingFile {
                dir: dir.to_owned(),
                file,
                script,
            });
        }
    }
    Ok(())
}

/// Why text could not be embedded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The model failed on this input.
    #[error("embedding model {model} failed: {reason}")]
    Model {
        /// The model.
        model: ModelId,
        /// What went wrong.
        reason: String,
    },
}

/// A text embedding model.
pub trait Embedder: Send + Sync + std::fmt::Debug + 'static {
    /// The model's identity, stored with every vector it produces.
    fn model(&self) -> &ModelId;

    /// The length of every vector it produces.
    fn dimensions(&self) -> usize;

    /// Embeds one text. The result is L2-normalised (or all zeros for text with no features).
    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError>;

    /// Embeds many texts; models with batched inference override this.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed(t)).collect()
    }
}

/// Scales `v` to unit length in place; leaves an all-zero vector as it is.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "model"))]
    #[test]
    fn a_model_dir_without_the_feature_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), br#"{"model_type": "bert"}"#).unwrap();
        let err = embedder_from_env_or_dir(Some(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                ModelLoadError::NotBuilt {
                    kind: ModelKind::MiniLm,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("--features model"), "{err}");
    }

    #[cfg(not(feature = "static-model"))]
    #[test]
    fn a_static_model_dir_without_the_feature_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"model_type": "model2vec"}"#,
        )
        .unwrap();
        let err = embedder_from_env_or_dir(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("--features static-model"), "{err}");
    }

    #[cfg(not(feature = "onnx"))]
    #[test]
    fn an_onnx_model_dir_without_the_feature_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"").unwrap();
        let err = embedder_from_env_or_dir(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("--features onnx"), "{err}");
    }

    #[test]
    fn model2vec_configs_are_told_apart_from_bert_configs() {
        assert!(is_model2vec_config(
            br#"{"model_type": "model2vec", "hidden_dim": 256}"#
        ));
        assert!(!is_model2vec_config(
            br#"{"model_type": "bert", "hidden_size": 384}"#
        ));
        assert!(!is_model2vec_config(b"not json"));
    }

    #[test]
    fn the_files_of_a_directory_say_which_model_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ModelKind::of_dir(dir.path()), ModelKind::MiniLm);
        std::fs::write(dir.path().join("config.json"), br#"{"model_type": "bert"}"#).unwrap();
        assert_eq!(ModelKind::of_dir(dir.path()), ModelKind::MiniLm);
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"model_type": "model2vec"}"#,
        )
        .unwrap();
        assert_eq!(ModelKind::of_dir(dir.path()), ModelKind::Static);
        std::fs::write(dir.path().join("model.onnx"), b"").unwrap();
        assert_eq!(ModelKind::of_dir(dir.path()), ModelKind::Onnx);
    }

    #[test]
    fn a_missing_dir_is_an_error_whatever_the_build() {
        let err = embedder_from_env_or_dir(Some(Path::new("/nonexistent/minilm"))).unwrap_err();
        assert!(matches!(err, ModelLoadError::MissingDir { .. }), "{err}");
    }

    #[cfg(feature = "model")]
    #[test]
    fn a_missing_model_dir_is_an_error_not_a_fallback() {
        let err = embedder_from_env_or_dir(Some(Path::new("/nonexistent/minilm"))).unwrap_err();
        assert!(matches!(err, ModelLoadError::MissingDir { .. }), "{err}");
    }
}
