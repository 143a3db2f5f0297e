//! Speed of every embedder on this machine, on one core.
//!
//! ```sh
//! scripts/fetch-model.sh target/models/all-minilm-l6-v2
//! scripts/fetch-onnx.sh target/models/minilm-onnx-int8
//! scripts/fetch-static-model.sh target/models/potion-base-8m
//! cargo run --release -p agentdb-memory --features model,onnx,static-model \
//!     --example embed_bench -- target/models/potion-base-8m target/models/minilm-onnx-int8 \
//!     target/models/all-minilm-l6-v2
//! ```
//!
//! The lexical embedder is always measured; each model directory given adds its model (the
//! build needs the model's cargo feature). For each it reports: load time, the latency of one
//! short sentence (batch 1; p50 and p99 over a few seconds) and sentences per second at batch 1
//! and at batch 32, and the latency of a text query through the engine (embed the query +
//! search + decrypt the hits; what a hub does for an agent before the network round trip) over
//! 2,000 stored episodes. Each embedder runs in its own child process, on one thread
//! (`RAYON_NUM_THREADS=1` for candle; ONNX Runtime runs each inference on one thread, in one of
//! a session per core, which the load time includes), so the figures are per core and one
//! model's thread pools do not disturb the next.

#![allow(clippy::print_stdout)] // A benchmark prints its table.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{
    embedder_from_env_or_dir, Embedder, LexicalEmbedder, MemStorage, MemoryEngine, Query,
};
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(args.get(1).map(PathBuf::from));
    }
    println!(
        "one core of {} available; short sentences of about 15 tokens",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!(
        "{:<30} {:>8} {:>10} {:>10} {:>12} {:>13} {:>11} {:>11}",
        "embedder",
        "load ms",
        "b1 p50 µs",
        "b1 p99 µs",
        "batch 1 s/s",
        "batch 32 s/s",
        "query p50",
        "query p99"
    );
    let mut runs: Vec<Option<String>> = vec![None];
    runs.extend(args.into_iter().map(Some));
    for dir in runs {
        let mut child = Command::new(std::env::current_exe()?);
        child.arg("--child").env("RAYON_NUM_THREADS", "1");
        if let Some(dir) = &dir {
            child.arg(dir);
        }
        let out = child.output()?;
        if !out.status.success() {
            return Err(format!(
                "benchmark of {} failed: {}",
                dir.as_deref().unwrap_or("the lexical embedder"),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!("(query: ms through the engine over 2,000 episodes, k = 5)");
    Ok(())
}

/// Measures one embedder (the lexical one without a directory) on one thread; prints one row.
fn child(dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let model: Arc<dyn Embedder> = match &dir {
        None => Arc::new(LexicalEmbedder::new()),
        Some(dir) => embedder_from_env_or_dir(Some(dir))?,
    };
    let load = started.elapsed();

    let texts: Vec<String> = (0..4096).map(sentence).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Warm up (page in the weights, size the thread pools).
    model.embed_batch(&refs[..64])?;

    let budget = Duration::from_secs(4);
    let mut one = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget {
        let t = Instant::now();
        model.embed(refs[one.len() % refs.len()])?;
        one.push(t.elapsed());
    }
    let batch1 = one.len() as f64 / started.elapsed().as_secs_f64();
    one.sort();

    let (mut n, started) = (0usize, Instant::now());
    while started.elapsed() < budget {
        let at = (n * 32) % (refs.len() - 32);
        model.embed_batch(&refs[at..at + 32])?;
        n += 1;
    }
    let batch32 = (n * 32) as f64 / started.elapsed().as_secs_f64();

    // Engine text queries over 2,000 episodes: embed + search + decrypt 5 hits.
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
    for i in 0..400 {
        let q = Query::text(format!("please {}", sentence(i * 7 + 3)), 5);
        let t = Instant::now();
        let hits = db.query(&tenant, &q)?;
        latencies.push(t.elapsed());
        assert_eq!(hits.len(), 5);
    }
    latencies.sort();
    let at = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{:<30} {:>8.0} {:>10.1} {:>10.1} {:>12.0} {:>13.0} {:>11.3} {:>11.3}",
        model.model().as_str(),
        ms(load),
        us(at(&one, 0.5)),
        us(at(&one, 0.99)),
        batch1,
        batch32,
        ms(at(&latencies, 0.5)),
        ms(at(&latencies, 0.99)),
    );
    Ok(())
}
