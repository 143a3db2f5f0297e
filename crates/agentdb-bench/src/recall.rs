//! Recall of a tenant's vector index against its exact scan.

use agentdb_memory::index::VectorIndex;
use agentdb_memory::Filter;

/// The share of the exact top `k` that the index's search returns, over `queries`.
pub fn recall(index: &VectorIndex, queries: &[Vec<f32>], k: usize) -> anyhow::Result<f64> {
    let (mut found, mut total) = (0usize, 0usize);
    for q in queries {
        let exact = index.exact_search(index.model(), q, k, &Filter::default())?;
        let approx = index.search(index.model(), q, k, &Filter::default())?;
        total += exact.len();
        found += approx
            .iter()
            .filter(|a| exact.iter().any(|e| e.id == a.id))
            .count();
    }
    Ok(found as f64 / total.max(1) as f64)
}
