//! The HNSW index against the exact scan: recall@10 on random vectors.

#![allow(clippy::unwrap_used)]

use agentdb_core::{EpisodeId, ModelId, Timestamp};
use agentdb_memory::index::{EpisodeFacts, Filter, IndexConfig, VectorIndex};

/// A small deterministic generator (xorshift64*), so the test data is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Roughly normal, by summing uniforms.
    fn gauss(&mut self) -> f32 {
        (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum::<f32>()
            - 2.0
    }
}

fn vectors(rng: &mut Rng, n: usize, dims: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..dims).map(|_| rng.gauss()).collect())
        .collect()
}

/// Lexical embeddings (the default embedder's output) of random six-word texts over a
/// 3,000-word vocabulary: the vectors the engine actually indexes by default.
fn lexical_texts(rng: &mut Rng, n: usize) -> Vec<Vec<f32>> {
    let e = agentdb_memory::LexicalEmbedder::new();
    (0..n)
        .map(|_| {
            let words: Vec<String> = (0..6)
                .map(|_| format!("w{}x{}", rng.next() % 3000, rng.next() % 7))
                .collect();
            e.embed_text(&words.join(" "))
        })
        .collect()
}

/// Unit vectors around 100 random centres (spread 0.3 of a centre's length per dimension):
/// data with clear neighbourhoods, like agents' episodes written from a few kinds of task.
fn clustered(rng: &mut Rng, n: usize, dims: usize) -> Vec<Vec<f32>> {
    let centres = vectors(&mut Rng(0x5eed), 100, dims);
    (0..n)
        .map(|_| {
            let c = &centres[(rng.next() % 100) as usize];
            c.iter().map(|x| x + 0.3 * rng.gauss()).collect()
        })
        .collect()
}

fn recall_at_10(n: usize, dims: usize, filter: &Filter) -> f64 {
    recall_with(n, dims, filter, |rng, n| vectors(rng, n, dims))
}

fn recall_with(
    n: usize,
    dims: usize,
    filter: &Filter,
    make: impl Fn(&mut Rng, usize) -> Vec<Vec<f32>>,
) -> f64 {
    measure(n, dims, filter, IndexConfig::default(), make).0
}

/// Recall@10 of 200 queries from the same generator, and the search breadth the index chose.
fn measure(
    n: usize,
    dims: usize,
    filter: &Filter,
    config: IndexConfig,
    make: impl Fn(&mut Rng, usize) -> Vec<Vec<f32>>,
) -> (f64, usize) {
    let model = ModelId::new("random").unwrap();
    let index = VectorIndex::new(model.clone(), dims, config);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (i, v) in make(&mut rng, n).into_iter().enumerate() {
        let meta = EpisodeFacts {
            reward: (i % 10) as f64 / 10.0,
            success: i % 10 >= 7,
            created: Timestamp(i as u64),
        };
        index
            .insert(EpisodeId::from_parts(i as u64, [0; 10]), &model, &v, meta)
            .unwrap();
    }
    while index.build_pending(4096).unwrap() > 0 {}
    assert_eq!(index.pending(), 0);
    assert!(index.graph_memory() > 0, "the graph was built");
    let queries = make(&mut rng, 200);
    let (mut found, mut total) = (0usize, 0usize);
    for q in &queries {
        let exact = index.exact_search(&model, q, 10, filter).unwrap();
        let approx = index.search(&model, q, 10, filter).unwrap();
        assert_eq!(approx.len(), exact.len());
        total += exact.len();
        found += approx
            .iter()
            .filter(|a| exact.iter().any(|e| e.id == a.id))
            .count();
    }
    (found as f64 / total as f64, index.expansion_search())
}

#[test]
fn recall_at_10_on_10k_lexical_embeddings_of_random_texts_is_at_least_095() {
    let r = recall_with(10_000, 384, &Filter::default(), lexical_texts);
    println!("recall@10 (10k x 384, lexical embeddings of random texts) = {r:.4}");
    assert!(r >= 0.95, "recall@10 = {r}");
}

#[test]
fn recall_at_10_on_10k_isotropic_random_64d_vectors_is_at_least_095() {
    let r = recall_at_10(10_000, 64, &Filter::default());
    println!("recall@10 (10k x 64, isotropic, unfiltered) = {r:.4}");
    assert!(r >= 0.95, "recall@10 = {r}");
}

#[test]
fn recall_holds_with_a_filter_applied_inside_the_search() {
    let filter = Filter {
        outcome: agentdb_memory::Outcome::Successes,
        ..Default::default()
    };
    let r = recall_at_10(10_000, 64, &filter);
    println!("recall@10 (10k x 64, successes only = 30%) = {r:.4}");
    assert!(r >= 0.95, "recall@10 = {r}");
}

#[test]
fn the_search_breadth_is_calibrated_to_the_data() {
    let widest = IndexConfig::default().expansion_search;
    let (easy, easy_ef) = measure(
        10_000,
        64,
        &Filter::default(),
        IndexConfig::default(),
        |rng, n| clustered(rng, n, 64),
    );
    let (hard, hard_ef) = measure(
        10_000,
        64,
        &Filter::default(),
        IndexConfig::default(),
        |rng, n| vectors(rng, n, 64),
    );
    println!("clustered: ef {easy_ef}, recall@10 {easy:.4}; isotropic: ef {hard_ef}, recall@10 {hard:.4}");
    assert!(easy >= 0.95 && hard >= 0.95, "recall@10 {easy} / {hard}");
    assert!(
        easy_ef < hard_ef,
        "clustered data searched at {easy_ef}, isotropic at {hard_ef}"
    );
    assert!(hard_ef <= widest);
    // Without a target every search walks the configured breadth.
    let fixed = IndexConfig {
        recall_target: None,
        ..IndexConfig::default()
    };
    let (_, ef) = measure(2_000, 64, &Filter::default(), fixed, |rng, n| {
        clustered(rng, n, 64)
    });
    assert_eq!(ef, widest);
}

/// An index of 500 random 8-d vectors (episode `i` holds vector `i`), none in the graph yet
/// (graphs start at 100 vectors), with its model and the vectors.
fn small_index(seed: u64) -> (VectorIndex, ModelId, Vec<Vec<f32>>) {
    let model = ModelId::new("random").unwrap();
    let config = IndexConfig {
        exact_below: 100,
        ..Default::default()
    };
    let index = VectorIndex::new(model.clone(), 8, config);
    let data = vectors(&mut Rng(seed), 500, 8);
    for (i, v) in data.iter().enumerate() {
        let meta = EpisodeFacts {
            reward: 1.0,
            success: true,
            created: Timestamp(0),
        };
        index
            .insert(EpisodeId::from_parts(i as u64, [0; 10]), &model, v, meta)
            .unwrap();
    }
    (index, model, data)
}

#[test]
fn fresh_vectors_are_found_before_they_reach_the_graph() {
    let (index, model, _) = small_index(7);
    index.build_pending(300).unwrap();
    assert_eq!(index.pending(), 200);
    // A vector only in the exact tail is its own nearest neighbour.
    let probe = vec![9.0, -3.0, 2.0, 7.0, 1.0, 0.5, -8.0, 4.0];
    let id = EpisodeId::from_parts(9999, [1; 10]);
    let meta = EpisodeFacts {
        reward: 1.0,
        success: true,
        created: Timestamp(0),
    };
    index.insert(id, &model, &probe, meta).unwrap();
    let hits = index.search(&model, &probe, 1, &Filter::default()).unwrap();
    assert_eq!(hits[0].id, id);
    assert!((hits[0].score - 1.0).abs() < 1e-4);
    // Removed vectors disappear from results at once.
    assert!(index.remove(&id));
    let hits = index.search(&model, &probe, 1, &Filter::default()).unwrap();
    assert_ne!(hits[0].id, id);
}

#[test]
fn a_vector_removed_from_the_graph_is_never_returned() {
    let (index, model, data) = small_index(11);
    index.build_pending(500).unwrap();
    assert_eq!(index.pending(), 0);
    // Every vector of the graph is its own nearest neighbour, found by the walk...
    let id = EpisodeId::from_parts(42, [0; 10]);
    let hits = index
        .search(&model, &data[42], 1, &Filter::default())
        .unwrap();
    assert_eq!(hits[0].id, id);
    // ...until it is removed: it stays in the graph, and the walk must pass over it.
    assert!(index.remove(&id));
    for k in [1, 10] {
        let hits = index
            .search(&model, &data[42], k, &Filter::default())
            .unwrap();
        assert_eq!(hits.len(), k);
        assert!(hits.iter().all(|h| h.id != id), "removed vector returned");
    }
}
