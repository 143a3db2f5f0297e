//! Semantic queries end to end: a hub that embeds with a given model, and agents asking it in
//! plain text over QUIC. Per embedder: the hub query latency at one agent (p50, p99: embedding
//! the query on the hub, the search, decrypting the hits and the round trip) and the queries per
//! second of `AGENTS` concurrent agents.
//!
//! The lexical embedder is always measured; each `--model-dir` adds the model in it (the build
//! needs the model's cargo feature: `model`, `static-model`, `onnx`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{HubId, NewEpisode};
use agentdb_memory::{embedder_from_env_or_dir, Embedder, EngineConfig, LexicalEmbedder};
use agentdb_testkit::{hub_config, TestHub, TestPki};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::data::{episode, Rng};
use crate::seed::agent;
use crate::stats::{merged, summarize, Run};

/// Concurrent agents of the throughput phase.
pub const AGENTS: usize = 16;

/// Sizes of one pass.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Episodes in the tenant (stored through an agent, so the hub embeds them).
    pub episodes: usize,
    /// Queries of the one-agent phase.
    pub queries: usize,
    /// Length of the concurrent phase.
    pub phase: Duration,
    /// Runs (medians reported).
    pub runs: usize,
}

impl Sizes {
    pub const QUICK: Sizes = Sizes {
        episodes: 200,
        queries: 50,
        phase: Duration::from_secs(1),
        runs: 1,
    };
    pub const FULL: Sizes = Sizes {
        episodes: 2_000,
        queries: 400,
        phase: Duration::from_secs(5),
        runs: 3,
    };
}

/// One embedder's figures.
#[derive(Debug, Serialize)]
pub struct Report {
    pub embedder: String,
    pub dimensions: usize,
    /// One agent, queries back to back.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// `AGENTS` agents for the phase.
    pub per_sec: f64,
    pub load_p50_ms: f64,
    pub load_p99_ms: f64,
    pub agents: usize,
    pub episodes: usize,
    pub runs: usize,
}

/// Measures every embedder: the lexical one, then one per directory.
pub async fn run(dirs: &[PathBuf], sizes: Sizes, pb: &ProgressBar) -> anyhow::Result<Vec<Report>> {
    let mut embedders: Vec<Arc<dyn Embedder>> = vec![Arc::new(LexicalEmbedder::new())];
    for dir in dirs {
        embedders.push(embedder_from_env_or_dir(Some(dir))?);
    }
    let mut reports = Vec::new();
    for embedder in embedders {
        reports.push(measure(embedder, sizes, pb).await?);
    }
    Ok(reports)
}

async fn measure(
    embedder: Arc<dyn Embedder>,
    sizes: Sizes,
    pb: &ProgressBar,
) -> anyhow::Result<Report> {
    let name = embedder.model().as_str().to_owned();
    let dimensions = embedder.dimensions();
    let pki = TestPki::new();
    let dir = tempfile::tempdir()?;
    let config = hub_config(&pki);
    let engine_config = EngineConfig {
        origin: Some(HubId::new("test-hub")?),
        ..EngineConfig::default()
    };
    let engine = agentdb_memory::open_data_dir_with_embedder(dir.path(), engine_config, embedder)?;
    let hub = TestHub::start_with(config, dir.path(), Arc::new(engine)).await;

    pb.set_message(format!("{name}: storing {} episodes", sizes.episodes));
    let writer = agent(&hub, &pki, "semantic").await?;
    let mut rng = Rng(0x5e);
    let mut stored = 0;
    while stored < sizes.episodes {
        let n = 100.min(sizes.episodes - stored);
        let batch: Vec<NewEpisode> = (stored..stored + n).map(|i| episode(&mut rng, i)).collect();
        writer.store_batch(batch).await?;
        stored += n;
    }
    writer.destroy().await?;

    let (mut light, mut load) = (Vec::new(), Vec::new());
    for run in 0..sizes.runs {
        pb.set_message(format!("{name}: one agent"));
        let a = agent(&hub, &pki, "semantic").await?;
        let mut qrng = Rng(0x100 + run as u64);
        let mut r = Run::new()?;
        let started = Instant::now();
        for i in 0..sizes.queries {
            let q = episode(&mut qrng, i).task;
            let t0 = Instant::now();
            let got = a.query_memories(&q, 5).await?;
            r.hist.record(t0.elapsed().as_nanos() as u64)?;
            anyhow::ensure!(got.memories.len() == 5, "{name}: fewer than 5 hits");
        }
        r.per_sec = sizes.queries as f64 / started.elapsed().as_secs_f64();
        a.destroy().await?;
        light.push(r);

        pb.set_message(format!("{name}: {AGENTS} agents"));
        let mut agents = Vec::new();
        for _ in 0..AGENTS {
            agents.push(agent(&hub, &pki, "semantic").await?);
        }
        let started = Instant::now();
        let deadline = started + sizes.phase;
        let mut tasks = Vec::new();
        for (w, a) in agents.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut r = Run::new()?;
                let mut qrng = Rng(0x1000 * (run as u64 + 1) + w as u64);
                let mut i = 0;
                while Instant::now() < deadline {
                    let q = episode(&mut qrng, i).task;
                    i += 1;
                    let t0 = Instant::now();
                    a.query_memories(&q, 5).await?;
                    r.hist.record(t0.elapsed().as_nanos() as u64)?;
                }
                a.destroy().await?;
                Ok::<_, anyhow::Error>(r)
            }));
        }
        let r = merged(tasks, started).await?;
        load.push(r);
        pb.inc(1);
    }
    hub.handle.shutdown().await;
    let (p50_ms, p99_ms, _) = summarize(&light);
    let (load_p50_ms, load_p99_ms, per_sec) = summarize(&load);
    Ok(Report {
        embedder: name,
        dimensions,
        p50_ms,
        p99_ms,
        per_sec,
        load_p50_ms,
        load_p99_ms,
        agents: AGENTS,
        episodes: sizes.episodes,
        runs: sizes.runs,
    })
}

/// Number of progress steps of [`run`] for `models` embedders.
pub fn steps(sizes: Sizes, models: usize) -> u64 {
    (sizes.runs * models) as u64
}

/// Prints the reports as a table, or as JSON.
pub fn print(reports: &[Report], quick: bool, json: bool, machine: &str) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"machine": machine, "quick": quick, "reports": reports})
            )?
        );
        return Ok(());
    }
    let first = reports.first();
    println!(
        "agentdb semantic hub queries (text in, k=5, {} episodes embedded by the hub; medians \
         of {} runs) — {machine}",
        first.map_or(0, |r| r.episodes),
        first.map_or(0, |r| r.runs)
    );
    println!(
        "{:<24} {:>5} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "embedder",
        "dims",
        "1 agent p50",
        "1 agent p99",
        format!("{AGENTS} agents q/s"),
        format!("{AGENTS} agents p50"),
        format!("{AGENTS} agents p99"),
    );
    for r in reports {
        println!(
            "{:<24} {:>5} {:>9.3} ms {:>9.3} ms {:>12.0} {:>11.3} ms {:>11.3} ms",
            r.embedder, r.dimensions, r.p50_ms, r.p99_ms, r.per_sec, r.load_p50_ms, r.load_p99_ms
        );
    }
    Ok(())
}
