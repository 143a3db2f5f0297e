//! Turning text into vectors.
//!
//! An [`Embedder`] reports the model it implements and its dimension. Both are stored with the
//! data: a tenant's index is bound to one model, and vectors from another model are refused
//! rather than compared (a cosine between two models' vectors means nothing).
//!
//! Two embedders ship with the engine:
//! - [`LexicalEmbedder`] (`agentdb-lexical-v1`), the default: word and trigram hashing, offline
//!   and instant, but it only matches shared words.
//! - `MiniLmEmbedder` (`all-minilm-l6-v2`, with the `model` cargo feature): the
//!   all-MiniLM-L6-v2 sentence-embedding model, run on the CPU from a local directory. It
//!   matches paraphrases.
//!
//! [`embedder_from_env_or_dir`] picks one the way the binary does: an explicit model directory,
//! else `AGENTDB_MODEL_DIR`, else the lexical default. A model that was asked for and cannot be
//! loaded is an error, never a silent fallback to the lexical embedder.

mod lexical;
#[cfg(feature = "model")]
mod minilm;

pub use lexical::LexicalEmbedder;
#[cfg(feature = "model")]
pub use minilm::MiniLmEmbedder;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentdb_core::ModelId;

/// Environment variable naming the directory of the sentence-embedding model.
pub const MODEL_DIR_ENV: &str = "AGENTDB_MODEL_DIR";

/// Files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Why a sentence-embedding model could not be loaded. The engine does not start with a model
/// it cannot load; it never falls back to another embedder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelLoadError {
    /// A model directory was given, but this build has no model support.
    #[error(
        "model directory {} was given, but this build of agentdb has no sentence-embedding \
         model support: rebuild with `--features model`, or unset {MODEL_DIR_ENV} / \
         --model-dir to use the lexical embedder",
        dir.display()
    )]
    NotBuilt {
        /// The directory asked for.
        dir: PathBuf,
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
    #[error("model directory {} has no {file} (scripts/fetch-model.sh fetches it)", dir.display())]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The missing file's name.
        file: &'static str,
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
/// 1. `model_dir`, when given: the sentence-embedding model in that directory;
/// 2. else the directory in `AGENTDB_MODEL_DIR`, when set and not empty;
/// 3. else the lexical default ([`LexicalEmbedder`]).
///
/// A directory that was asked for and cannot be loaded is an error — in particular in a build
/// without the `model` feature ([`ModelLoadError::NotBuilt`]). Nothing falls back silently.
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

#[cfg(feature = "model")]
fn load_model_dir(dir: &Path) -> Result<Arc<dyn Embedder>, ModelLoadError> {
    Ok(Arc::new(MiniLmEmbedder::load(dir)?))
}

#[cfg(not(feature = "model"))]
fn load_model_dir(dir: &Path) -> Result<Arc<dyn Embedder>, ModelLoadError> {
    Err(ModelLoadError::NotBuilt {
        dir: dir.to_owned(),
    })
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
        let err = embedder_from_env_or_dir(Some(Path::new("/models/minilm"))).unwrap_err();
        assert!(matches!(err, ModelLoadError::NotBuilt { .. }), "{err}");
        assert!(err.to_string().contains("--features model"), "{err}");
    }

    #[cfg(feature = "model")]
    #[test]
    fn a_missing_model_dir_is_an_error_not_a_fallback() {
        let err = embedder_from_env_or_dir(Some(Path::new("/nonexistent/minilm"))).unwrap_err();
        assert!(matches!(err, ModelLoadError::MissingDir { .. }), "{err}");
    }
}
