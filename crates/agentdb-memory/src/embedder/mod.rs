//! Turning text into vectors.
//!
//! An [`Embedder`] reports the model it implements and its dimension. Both are stored with the
//! data: a tenant's index is bound to one model, and vectors from another model are refused
//! rather than compared (a cosine between two models' vectors means nothing).

mod lexical;

pub use lexical::LexicalEmbedder;

use agentdb_core::ModelId;

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
