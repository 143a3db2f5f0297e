//! Throughput and latency of the all-MiniLM-L6-v2 embedder on this machine.
//!
//! ```sh
//! scripts/fetch-model.sh target/models/all-minilm-l6-v2
//! cargo run --release -p agentdb-memory --features model --example embed_bench -- \
//!     target/models/all-minilm-l6-v2
//! ```
//!
//! (The directory may also come from `AGENTDB_MODEL_DIR`.) For 1 thread and for every
//! available core it reports: model load time, sentences per second at batch 1 and at batch 32
//! (with the CPU share the process actually got while batching: on a shared machine it is less
//! than the thread count × 100 %),
//! and the latency of a text query through the engine (embed the query + search + decrypt the
//! hits; what a hub does for an agent before the network round trip) over 2,000 stored episodes.
//! Each thread count runs in its own child process with `RAYON_NUM_THREADS` set, because candle
//! sizes its thread pools once per process.

#![allow(clippy::print_stdout)] // A benchmark prints its table.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{Embedder, MemStorage, MemoryEngine, MiniLmEmbedder, Query, MODEL_DIR_ENV};
use agentdb_security::MasterKey;

/// Short agent-task sentences (8–20 tokens), the texts the engine embeds.
const SUBJECTS: &[&str] = &[
    "summarise the invoice from",
    "fix the failing login page reported by",
    "draft a polite reply to the email from",
    "book a flight to Berlin for",
    "analyse last quarter's churn numbers for",
    "translate the support ticket opened by",
    "renew the TLS certificate of the service run by",
    "schedule a follow-up meeting with",
];
const OBJECTS: &[&str] = &[
    "ACME Corporation",
    "the finance team",
    "a customer in Lisbon",
    "our largest client",
    "the on-call engineer",
    "the marketing department",
];

fn sentence(i: usize) -> String {
    format!(
        "{} {} (case {i})",
        SUBJECTS[i % SUBJECTS.len()],
        OBJECTS[(i / SUBJECTS.len()) % OBJECTS.len()]
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--child") {
        let dir = PathBuf::from(args.next().ok_or("--child needs the model directory")?);
        return child(&dir);
    }
    let dir = first
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(MODEL_DIR_ENV).map(PathBuf::from))
        .ok_or("usage: embed_bench MODEL_DIR (or set AGENTDB_MODEL_DIR)")?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("all-minilm-l6-v2 on the CPU, {cores} cores available");
    println!(
        "{:>7} {:>9} {:>14} {:>14} {:>9} {:>12} {:>12}",
        "threads",
        "load ms",
        "batch 1 s/s",
        "batch 32 s/s",
        "cpu (32)",
        "query p50 ms",
        "query p99 ms"
    );
    let mut counts = vec![1];
    if cores > 1 {
        counts.push(cores);
    }
    for threads in counts {
        let out = Command::new(std::env::current_exe()?)
            .arg("--child")
            .arg(&dir)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "benchmark with {threads} threads failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        print!("{:>7} {}", threads, String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

/// Measures with the thread count the parent set; prints one table row (without the first
/// column).
fn child(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let model = Arc::new(MiniLmEmbedder::load(dir)?);
    let load = started.elapsed();

    let texts: Vec<String> = (0..4096).map(sentence).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Warm up (page in the weights, size the thread pools).
    model.embed_batch(&refs[..64])?;

    let budget = Duration::from_secs(4);
    let (mut n, started) = (0usize, Instant::now());
    while started.elapsed() < budget {
        model.embed(refs[n % refs.len()])?;
        n += 1;
    }
    let batch1 = n as f64 / started.elapsed().as_secs_f64();

    let (mut n, started, cpu_before) = (0usize, Instant::now(), cpu_seconds());
    while started.elapsed() < budget {
        let at = (n * 32) % (refs.len() - 32);
        model.embed_batch(&refs[at..at + 32])?;
        n += 1;
    }
    let wall = started.elapsed().as_secs_f64();
    let batch32 = (n * 32) as f64 / wall;
    // How much CPU the process got: on a shared machine, less than `threads` × 100 %.
    let cpu_share = cpu_seconds()
        .zip(cpu_before)
        .map(|(a, b)| (a - b) / wall * 100.0);

    // Engine text queries over 2,000 episodes: embed + exact search + decrypt 5 hits.
    let db = MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate()?)
        .embedder(model.clone())
        .open()?;
    let tenant = TenantId::new("bench")?;
    for chunk in texts[..2000].chunks(500) {
        let vectors = model.embed_batch(&chunk.iter().map(String::as_str).collect::<Vec<_>>())?;
        let episodes = chunk
            .iter()
            .zip(vectors)
            .map(|(t, v)| {
                NewEpisode::new(t.clone(), "", "done", 0.9).with_embedding(
                    agentdb_core::Embedding {
                        model: model.model().clone(),
                        vector: v,
                    },
                )
            })
            .collect();
        db.store_batch(&tenant, episodes)?;
    }
    let mut latencies = Vec::new();
    for i in 0..200 {
        let q = Query::text(format!("please {}", sentence(i * 7 + 3)), 5);
        let t = Instant::now();
        let hits = db.query(&tenant, &q)?;
        latencies.push(t.elapsed());
        assert_eq!(hits.len(), 5);
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:>9.0} {:>14.0} {:>14.0} {:>9} {:>12.2} {:>12.2}",
        ms(load),
        batch1,
        batch32,
        cpu_share.map_or("?".into(), |c| format!("{c:.0}%")),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 99 / 100])
    );
    Ok(())
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (Linux; `None`
/// elsewhere). Assumes the usual 100 clock ticks per second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
