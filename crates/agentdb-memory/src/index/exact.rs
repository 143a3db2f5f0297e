//! Exact nearest-neighbour scan: the oracle for the HNSW index and the search for small tenants.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate: its slot and cosine similarity. Ordered so that a max-heap pops the *worst*.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub slot: u64,
    pub score: f32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        // Higher score is better; ties broken by lower slot (older episode) first.
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.slot.cmp(&other.slot))
    }
}

/// Keeps the best `k` candidates seen.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn push(&mut self, c: Scored) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(worst) = self.heap.peek() {
            if c < *worst {
                self.heap.pop();
                self.heap.push(c);
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

/// Dot product; for unit vectors, the cosine similarity.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four accumulators let the compiler vectorise without reassociating a single sum.
    let mut acc = [0f32; 4];
    let chunks = a.len() / 4 * 4;
    for (x, y) in a[..chunks].chunks_exact(4).zip(b[..chunks].chunks_exact(4)) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let mut t = TopK::new(3);
        for (slot, score) in [(0, 0.1), (1, 0.9), (2, 0.5), (3, 0.7), (4, 0.2)] {
            t.push(Scored { slot, score });
        }
        let got: Vec<u64> = t.into_sorted().iter().map(|s| s.slot).collect();
        assert_eq!(got, vec![1, 3, 2]);
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..387).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..387).map(|i| (i as f32).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
