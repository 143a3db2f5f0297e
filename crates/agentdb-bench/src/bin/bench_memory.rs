//! Benchmark of the embedded memory engine (no network): query latency and throughput at a
//! given size, recall against the exact scan, and durable write throughput under concurrency.
//!
//! ```text
//! cargo run --release -p agentdb-bench --bin agentdb-bench-memory -- --episodes 100000
//! ```
//!
//! Data is synthetic but shaped like agent episodes (task templates over a vocabulary), written
//! through the public API into a redb store in a temporary directory, embedded with the default
//! lexical embedder. Every figure printed is measured in this run.

#![allow(clippy::print_stdout)] // A benchmark prints its table.

#[path = "../data.rs"]
mod data;
#[path = "../recall.rs"]
mod recall;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{
    EngineConfig, Filter, LexicalEmbedder, MemoryEngine, Query, RedbStorage, DB_FILE,
};
use agentdb_security::MasterKey;
use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use data::{episode, query, Rng};

/// Benchmark the embedded memory engine.
#[derive(Debug, Parser)]
#[command(name = "agentdb-bench-memory")]
struct Args {
    /// Episodes loaded into one tenant before querying.
    #[arg(long, default_value_t = 100_000)]
    episodes: usize,
    /// Queries measured (single thread).
    #[arg(long, default_value_t = 5_000)]
    queries: usize,
    /// Seconds each write-concurrency level runs.
    #[arg(long, default_value_t = 5.0)]
    write_secs: f64,
    /// Concurrent writer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    writers: Vec<usize>,
    /// Directory for the database (a temporary one when absent).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// HNSW search breadth (ef), fixed; the engine calibrates it to the data when absent.
    #[arg(long)]
    ef_search: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    measure: String,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    per_sec: Option<f64>,
    note: String,
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(msg.to_owned());
    pb
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let storage = Arc::new(RedbStorage::open(&dir.join(DB_FILE))?);
    let mut config = EngineConfig::default();
    if let Some(ef) = args.ef_search {
        config.index.expansion_search = ef;
        config.index.recall_target = None;
    }
    let engine = Arc::new(
        MemoryEngine::builder(storage, MasterKey::generate()?)
            .config(config)
            .open()?,
    );
    let tenant = TenantId::new("bench")?;
    let mut rows = Vec::new();
    let mut rng = Rng(0x1234_5678_9abc_def1);

    // Load.
    let pb = bar(args.episodes as u64, "loading episodes");
    let started = Instant::now();
    let mut i = 0;
    while i < args.episodes {
        let n = 1000.min(args.episodes - i);
        let batch: Vec<NewEpisode> = (i..i + n).map(|j| episode(&mut rng, j)).collect();
        engine.store_batch(&tenant, batch)?;
        i += n;
        pb.set_position(i as u64);
    }
    let load = started.elapsed();
    pb.finish_and_clear();
    let started = Instant::now();
    engine.build_indexes().context("building the index")?;
    let build = started.elapsed();
    rows.push(Row {
        measure: format!("load {} episodes (batches of 1000)", args.episodes),
        p50_us: None,
        p99_us: None,
        per_sec: Some(args.episodes as f64 / load.as_secs_f64()),
        note: format!(
            "{:.1} s stored+acked; graph build {:.1} s",
            load.as_secs_f64(),
            build.as_secs_f64()
        ),
    });

    // Queries, single thread: text → embed → HNSW → read + decrypt 5.
    let texts: Vec<String> = (0..args.queries).map(|_| query(&mut rng)).collect();
    let mut h = Histogram::<u64>::new(3)?;
    let pb = bar(texts.len() as u64, "query k=5");
    let started = Instant::now();
    for (n, t) in texts.iter().enumerate() {
        let t0 = Instant::now();
        let found = engine.query(&tenant, &Query::text(t.as_str(), 5))?;
        h.record(t0.elapsed().as_nanos() as u64)?;
        anyhow::ensure!(found.len() == 5, "query returned {} results", found.len());
        if n % 256 == 0 {
            pb.set_position(n as u64);
        }
    }
    let wall = started.elapsed();
    pb.finish_and_clear();

    // Recall of the index against the exact scan, on the same queries' vectors.
    let index = engine.index(&tenant).context("tenant index")?;
    let ef = match args.ef_search {
        Some(ef) => format!("ef {ef} (fixed)"),
        None => format!("ef {} (calibrated)", index.expansion_search()),
    };
    let embedder = LexicalEmbedder::new();
    let model = index.model().clone();
    let vectors: Vec<Vec<f32>> = texts
        .iter()
        .take(500)
        .map(|t| embedder.embed_text(t))
        .collect();
    // Timed in a loop of its own: the exact scans below sweep every vector through the cache.
    let mut hs = Histogram::<u64>::new(3)?;
    for v in &vectors {
        let t0 = Instant::now();
        index.search(&model, v, 5, &Filter::default())?;
        hs.record(t0.elapsed().as_nanos() as u64)?;
    }
    // The exact scan (what tenants below the graph threshold, the fresh tail and calibration
    // run), timed on the same vectors.
    let mut he = Histogram::<u64>::new(3)?;
    for v in vectors.iter().take(100) {
        let t0 = Instant::now();
        index.exact_search(&model, v, 5, &Filter::default())?;
        he.record(t0.elapsed().as_nanos() as u64)?;
    }
    // Recall@5 (the queries timed above) and recall@10, against the exact scan.
    let recall = [
        recall::recall(&index, &vectors, 5)?,
        recall::recall(&index, &vectors, 10)?,
    ];
    rows.push(Row {
        measure: format!("query k=5 @ {} episodes, 1 thread", args.episodes),
        p50_us: Some(micros(&h, 0.5)),
        p99_us: Some(micros(&h, 0.99)),
        per_sec: Some(args.queries as f64 / wall.as_secs_f64()),
        note: format!(
            "recall@5 {:.3}, recall@10 {:.3} vs exact ({} queries); {ef}; embed + search + read + decrypt",
            recall[0],
            recall[1],
            vectors.len()
        ),
    });
    rows.push(Row {
        measure: "  of which vector search only".into(),
        p50_us: Some(micros(&hs, 0.5)),
        p99_us: Some(micros(&hs, 0.99)),
        per_sec: None,
        note: "the same query vectors, index.search alone".into(),
    });
    rows.push(Row {
        measure: "  exact scan of every vector".into(),
        p50_us: Some(micros(&he, 0.5)),
        p99_us: Some(micros(&he, 0.99)),
        per_sec: None,
        note: "100 of the query vectors, index.exact_search".into(),
    });

    // Durable writes under concurrency.
    for &writers in &args.writers {
        let deadline = Instant::now() + Duration::from_secs_f64(args.write_secs);
        let pb = bar(writers as u64, &format!("{writers} writers"));
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let engine = Arc::clone(&engine);
                let tenant = tenant.clone();
                std::thread::spawn(move || -> anyhow::Result<Histogram<u64>> {
                    let mut rng = Rng(0xabcd_0000 + w as u64 * 7919);
                    let mut h = Histogram::<u64>::new(3)?;
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let e = episode(&mut rng, n);
                        let t0 = Instant::now();
                        engine.store(&tenant, e)?;
                        h.record(t0.elapsed().as_nanos() as u64)?;
                        n += 1;
                    }
                    Ok(h)
                })
            })
            .collect();
        let started = Instant::now();
        let mut all = Histogram::<u64>::new(3)?;
        for t in threads {
            let h = t
                .join()
                .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
            all.add(&h)?;
            pb.inc(1);
        }
        let wall = started.elapsed();
        pb.finish_and_clear();
        rows.push(Row {
            measure: format!("durable store, {writers} concurrent writers"),
            p50_us: Some(micros(&all, 0.5)),
            p99_us: Some(micros(&all, 0.99)),
            per_sec: Some(all.len() as f64 / wall.as_secs_f64()),
            note: format!("{} writes acked (fsync per group commit)", all.len()),
        });
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("agentdb memory engine benchmark — {cpu}, {cores} cores");
    println!(
        "{:<44} {:>10} {:>10} {:>12}  note",
        "measure", "p50 µs", "p99 µs", "per second"
    );
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
    for r in &rows {
        println!(
            "{:<44} {:>10} {:>10} {:>12}  {}",
            r.measure,
            fmt(r.p50_us),
            fmt(r.p99_us),
            r.per_sec
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}")),
            r.note
        );
    }
    Ok(())
}
