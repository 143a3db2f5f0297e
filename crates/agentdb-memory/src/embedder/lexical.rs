//! The default embedder: lexical feature hashing. Fast, offline, deterministic — and *not
//! semantic*.
//!
//! It finds episodes that share words (and word pieces) with the query: "summarise invoice"
//! matches "invoice summary" through the shared stem n-grams, but it will not match "condense the
//! billing document", which shares no words. For meaning-level retrieval, configure a sentence
//! embedding model or supply your own vectors.
//!
//! Features, each hashed (FNV-1a 64, a fixed function so vectors are stable across builds and
//! platforms) into one of 384 buckets with a hash-derived sign:
//! - every lower-cased word (runs of alphanumeric characters), weight 1.0;
//! - every character trigram of `"^" + word + "$"`, weight 0.5, so inflections and typos still
//!   overlap.
//!
//! The vector is L2-normalised, so cosine similarity is a dot product.

use agentdb_core::ModelId;

use super::{normalize, EmbedError, Embedder};

/// Dimensions of the lexical embedding.
pub const LEXICAL_DIMENSIONS: usize = 384;
const WORD_WEIGHT: f32 = 1.0;
const TRIGRAM_WEIGHT: f32 = 0.5;

/// Lexical feature-hashing embedder. Model id `agentdb-lexical-v1`, 384 dimensions.
#[derive(Debug, Clone)]
pub struct LexicalEmbedder {
    model: ModelId,
}

impl LexicalEmbedder {
    /// The model id this embedder writes with its vectors.
    pub const MODEL: &'static str = "agentdb-lexical-v1";

    /// A new embedder.
    pub fn new() -> Self {
        Self {
            // The literal is a valid model id; `new` cannot fail on it.
            model: ModelId::new(Self::MODEL).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// Embeds without allocating the error path; the lexical model cannot fail.
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; LEXICAL_DIMENSIONS];
        let mut word = String::new();
        let mut gram = Vec::with_capacity(64);
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            word.clear();
            word.extend(w.chars().flat_map(char::to_lowercase));
            add(&mut v, fnv1a(b"w:", word.as_bytes()), WORD_WEIGHT);
            gram.clear();
            gram.push('^');
            gram.extend(word.chars());
            gram.push('$');
            let mut buf = [0u8; 12];
            for tri in gram.windows(3) {
                let mut n = 0;
                for c in tri {
                    n += c.encode_utf8(&mut buf[n..]).len();
                }
                add(&mut v, fnv1a(b"g:", &buf[..n]), TRIGRAM_WEIGHT);
            }
        }
        normalize(&mut v);
        v
    }
}

impl Default for LexicalEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

impl Embedder for LexicalEmbedder {
    fn model(&self) -> &ModelId {
        &self.model
    }

    fn dimensions(&self) -> usize {
        LEXICAL_DIMENSIONS
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(self.embed_text(text))
    }
}

fn add(v: &mut [f32], h: u64, weight: f32) {
    let bucket = (h % LEXICAL_DIMENSIONS as u64) as usize;
    let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
    v[bucket] += sign * weight;
}

fn fnv1a(prefix: &[u8], data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix.iter().chain(data) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn vectors_are_normalised_and_deterministic() {
        let e = LexicalEmbedder::new();
        let a = e.embed_text("Summarise the invoice");
        assert_eq!(a.len(), LEXICAL_DIMENSIONS);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(a, e.embed_text("summarise THE invoice!"));
        assert!(e.embed_text("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn shared_words_score_higher_than_unrelated_text() {
        let e = LexicalEmbedder::new();
        let q = e.embed_text("summarise invoice");
        let near = e.embed_text("summarise this invoice for the customer");
        let inflected = e.embed_text("invoices summarised");
        let far = e.embed_text("deploy the kubernetes cluster");
        assert!(cos(&q, &near) > cos(&q, &far) + 0.3);
        assert!(cos(&q, &inflected) > cos(&q, &far));
    }

    #[test]
    fn fixed_hash_keeps_vectors_stable() {
        // The model id promises stable vectors; this pins the hash function.
        assert_eq!(fnv1a(b"", b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
