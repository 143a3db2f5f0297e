//! The data set shared with the peer benchmarks under `bench/peers`, and this engine's own run
//! on it.
//!
//! Layout of a data set directory (all integers and floats little-endian):
//! `meta.json` `{"n","q","dims","model","k"}`; `vectors.f32` (n × dims); `episodes.jsonl`
//! (`{"id","task","input","output","reward"}` per line); `queries.f32` (q × dims);
//! `truth.i32` (q × k exact nearest episode indices by cosine).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use agentdb_core::{Embedding, EpisodeId, ModelId, NewEpisode, TenantId};
use agentdb_memory::index::Quantization;
use agentdb_memory::{
    Embedder, EngineConfig, LexicalEmbedder, MemoryEngine, Query, RedbStorage, DB_FILE,
};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::data::{episode, query, Rng};
use crate::stats::{median, Run};

/// `meta.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Meta {
    pub n: usize,
    pub q: usize,
    pub dims: usize,
    pub model: String,
    pub k: usize,
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        for x in r {
            out.write_all(&x.to_le_bytes())?;
        }
    }
    Ok(())
}

fn read_f32(path: &Path, dims: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    anyhow::ensure!(
        bytes.len() % (4 * dims) == 0,
        "{} is not rows of {dims} f32",
        path.display()
    );
    Ok(bytes
        .chunks_exact(4 * dims)
        .map(|row| {
            row.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
        .collect())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Writes a data set of `n` synthetic episodes (embedded with the lexical embedder) and `q`
/// queries with exact top-`k` ground truth.
pub fn export(dir: &Path, n: usize, q: usize, k: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let embedder = LexicalEmbedder::new();
    let mut rng = Rng(0xda7a);
    let mut vectors = Vec::with_capacity(n);
    let mut lines = std::io::BufWriter::new(std::fs::File::create(dir.join("episodes.jsonl"))?);
    for i in 0..n {
        let e = episode(&mut rng, i);
        vectors.push(embedder.embed_text(&format!("{}\n{}", e.task, e.input)));
        serde_json::to_writer(
            &mut lines,
            &serde_json::json!({"id": i, "task": e.task, "input": e.input, "output": e.output, "reward": e.reward}),
        )?;
        lines.write_all(b"\n")?;
    }
    lines.flush()?;
    let queries: Vec<Vec<f32>> = (0..q)
        .map(|_| embedder.embed_text(&query(&mut rng)))
        .collect();
    let mut truth = std::io::BufWriter::new(std::fs::File::create(dir.join("truth.i32"))?);
    for qv in &queries {
        let mut scored: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (dot(qv, v), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in scored.iter().take(k) {
            truth.write_all(&(*i as i32).to_le_bytes())?;
        }
    }
    truth.flush()?;
    write_f32(&dir.join("vectors.f32"), &vectors)?;
    write_f32(&dir.join("queries.f32"), &queries)?;
    let meta = Meta {
        n,
        q,
        dims: embedder.dimensions(),
        model: LexicalEmbedder::MODEL.into(),
        k,
    };
    std::fs::write(dir.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

/// How the engine's graph stores vectors in a run of [`run_self`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Graph {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 8-bit integers (the engine's default).
    I8,
}

impl Graph {
    fn quantization(self) -> Quantization {
        match self {
            Self::F32 => Quantization::F32,
            Self::F16 => Quantization::F16,
            Self::I8 => Quantization::I8,
        }
    }
}

/// Runs this engine on the data set `runs` times (a fresh encrypted redb store each run) and
/// writes `results-agentdb-rs.json` in the peers' schema. `ef_search` fixes the search breadth
/// (calibrated to the data when `None`) and `graph` the graph's vectors; a run that changes
/// either is named by it (`results-agentdb-rs-ef128.json`, `-f16-ef128`).
pub fn run_self(
    dir: &Path,
    runs: usize,
    ef_search: Option<usize>,
    graph: Graph,
) -> anyhow::Result<serde_json::Value> {
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
    let vectors = read_f32(&dir.join("vectors.f32"), meta.dims)?;
    let queries = read_f32(&dir.join("queries.f32"), meta.dims)?;
    let truth_bytes = std::fs::read(dir.join("truth.i32"))?;
    let truth: Vec<i32> = truth_bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let texts: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("episodes.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let model = ModelId::new(meta.model.clone())?;
    let tenant = TenantId::new("peers")?;
    let (mut inserts, mut p50s, mut p99s, mut qps, mut recalls) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut breadths = Vec::new();
    for _ in 0..runs {
        let tmp = tempfile::tempdir()?;
        let storage = Arc::new(RedbStorage::open(&tmp.path().join(DB_FILE))?);
        let mut config = EngineConfig::default();
        if let Some(ef) = ef_search {
            config.index.expansion_search = ef;
            config.index.recall_target = None;
        }
        config.index.quantization = graph.quantization();
        let engine = MemoryEngine::builder(storage, agentdb_security::MasterKey::generate()?)
            .config(config)
            .open()?;
        let id_of = |i: usize| EpisodeId::from_parts(1_700_000_000_000 + i as u64, [0; 10]);
        let started = Instant::now();
        for chunk in (0..meta.n).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<NewEpisode> = chunk
                .iter()
                .map(|&i| {
                    let t = &texts[i];
                    NewEpisode::new(
                        t["task"].as_str().unwrap_or(""),
                        t["input"].as_str().unwrap_or(""),
                        t["output"].as_str().unwrap_or(""),
                        t["reward"].as_f64().unwrap_or(0.0),
                    )
                    .with_id(id_of(i))
                    .with_embedding(Embedding {
                        model: model.clone(),
                        vector: vectors[i].clone(),
                    })
                })
                .collect();
            engine.store_batch(&tenant, batch)?;
        }
        engine.build_indexes()?;
        breadths.push(engine.index(&tenant).map_or(0, |i| i.expansion_search()));
        inserts.push(meta.n as f64 / started.elapsed().as_secs_f64());
        let index_of: std::collections::HashMap<EpisodeId, usize> =
            (0..meta.n).map(|i| (id_of(i), i)).collect();
        // Warm-up, then timed single queries.
        let ask = |qv: &[f32]| {
            let embedding = Embedding {
                model: model.clone(),
                vector: qv.to_vec(),
            };
            engine.query(&tenant, &Query::vector(embedding, meta.k))
        };
        for qv in queries.iter().take(50) {
            ask(qv)?;
        }
        let mut r = Run::new()?;
        let (mut hit, mut total) = (0usize, 0usize);
        let started = Instant::now();
        for (qi, qv) in queries.iter().enumerate() {
            let t0 = Instant::now();
            let found = ask(qv)?;
            r.hist.record(t0.elapsed().as_nanos() as u64)?;
            let want = &truth[qi * meta.k..(qi + 1) * meta.k];
            total += meta.k;
            hit += found
                .iter()
                .filter(|m| {
                    index_of
                        .get(&m.episode.id)
                        .is_some_and(|i| want.contains(&(*i as i32)))
                })
                .count();
        }
        qps.push(meta.q as f64 / started.elapsed().as_secs_f64());
        p50s.push(r.ms(0.5));
        p99s.push(r.ms(0.99));
        recalls.push(hit as f64 / total as f64);
    }
    let recall = recalls.iter().sum::<f64>() / recalls.len().max(1) as f64;
    // The name the command line gives the graph's vectors.
    let graph_name = clap::ValueEnum::to_possible_value(&graph)
        .map_or_else(String::new, |v| v.get_name().to_owned());
    // The default configuration is `agentdb-rs`; others are named by what they change.
    let mut system = String::from("agentdb-rs");
    if graph != Graph::I8 {
        system.push_str(&format!("-{graph_name}"));
    }
    if let Some(ef) = ef_search {
        system.push_str(&format!("-ef{ef}"));
    }
    let breadth = match ef_search {
        Some(ef) => format!("ef={ef} fixed"),
        None => format!("ef calibrated to recall@10 0.97: {breadths:?} in the runs"),
    };
    let result = serde_json::json!({
        "system": system,
        "version": env!("CARGO_PKG_VERSION"),
        "n": meta.n,
        "runs": runs,
        "insert_per_sec": median(&mut inserts),
        "query_p50_ms": median(&mut p50s),
        "query_p99_ms": median(&mut p99s),
        "qps": median(&mut qps),
        "recall_at_10": recall,
        "notes": format!("encrypted redb store + usearch HNSW ({graph_name}, M=16, ef_add=128, {breadth}) with f32 re-scoring; insert = durable batches of 1000 + graph build (calibration included); query returns decrypted episodes"),
    });
    std::fs::write(
        dir.join(format!("results-{system}.json")),
        serde_json::to_vec_pretty(&result)?,
    )?;
    Ok(result)
}
