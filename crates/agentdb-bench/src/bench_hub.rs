//! Benchmark of a hub over loopback with the real stack: QUIC, mutual TLS, Ed25519 tokens, the
//! encrypted redb store. Hub and load generator share this machine.
//!
//! ```text
//! cargo run --release -p agentdb-bench --bin agentdb-bench-hub
//! ```
//!
//! Measures: agent spawn (connect + mTLS + auth + pre-sync) latency and spawns/s; hub query
//! (k = 5, hub-side embedding) at 1 and 100 concurrent agents; acknowledged stores/s; sync
//! (push 100 + pull the delta).

#![allow(clippy::print_stdout)] // A benchmark prints its table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::EphemeralAgent;
use agentdb_core::{NewEpisode, TenantId};
use agentdb_testkit::{hub_config, TestHub, TestPki};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Benchmark a hub over loopback.
#[derive(Debug, Parser)]
#[command(name = "agentdb-bench-hub")]
struct Args {
    /// Episodes preloaded into the queried tenant.
    #[arg(long, default_value_t = 10_000)]
    episodes: usize,
    /// Sequential spawns measured.
    #[arg(long, default_value_t = 200)]
    spawns: usize,
    /// Seconds each query / store phase runs.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Sync rounds (push 100 + pull).
    #[arg(long, default_value_t = 50)]
    syncs: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    measure: String,
    p50_ms: f64,
    p99_ms: f64,
    per_sec: f64,
    note: String,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

fn episode(i: usize) -> NewEpisode {
    const VERBS: [&str; 6] = [
        "summarise",
        "classify",
        "translate",
        "refund",
        "triage",
        "draft",
    ];
    const OBJECTS: [&str; 6] = [
        "invoice",
        "ticket",
        "contract",
        "bug report",
        "order",
        "email",
    ];
    NewEpisode::new(
        format!("{} {}", VERBS[i % 6], OBJECTS[(i / 6) % 6]),
        format!("item {i} for customer c{}", i % 997),
        format!("done {i}"),
        (i % 100) as f64 / 100.0,
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pki = Arc::new(TestPki::new());
    let dir = tempfile::tempdir()?;
    let hub = Arc::new(TestHub::start(hub_config(&pki), dir.path()).await);
    let tenant = TenantId::new("bench")?;
    let mut rows = Vec::new();

    // Preload through the engine (the measured phases go through the network).
    let engine = Arc::clone(hub.handle.engine());
    let mut i = 0;
    while i < args.episodes {
        let n = 1000.min(args.episodes - i);
        let batch: Vec<NewEpisode> = (i..i + n).map(episode).collect();
        engine.store_batch(&tenant, batch)?;
        i += n;
    }
    engine.build_indexes()?;

    // Spawn: sequential, each agent destroyed before the next.
    let mut h = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for _ in 0..args.spawns {
        let mut config = hub.agent_config(&pki, "spawn");
        config.pull_budget = 0;
        let t0 = Instant::now();
        let agent = EphemeralAgent::spawn(config).await?;
        h.record(t0.elapsed().as_nanos() as u64)?;
        agent.destroy().await?;
    }
    let wall = started.elapsed();
    rows.push(Row {
        measure: "agent spawn (connect+mTLS+auth+pre-sync)".into(),
        p50_ms: ms(&h, 0.5),
        p99_ms: ms(&h, 0.99),
        per_sec: args.spawns as f64 / wall.as_secs_f64(),
        note: format!(
            "{} sequential spawns, each destroyed before the next",
            args.spawns
        ),
    });

    // Spawn rate: 32 spawners at once, agents destroyed after the measurement.
    {
        let total = args.spawns * 4;
        let started = Instant::now();
        let mut handles = Vec::new();
        for s in 0..32 {
            let (pki, hub) = (Arc::clone(&pki), Arc::clone(&hub));
            let n = total / 32 + usize::from(s < total % 32);
            handles.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3)?;
                let mut agents = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut config = hub.agent_config(&pki, "spawn");
                    config.pull_budget = 0;
                    let t0 = Instant::now();
                    agents.push(EphemeralAgent::spawn(config).await?);
                    h.record(t0.elapsed().as_nanos() as u64)?;
                }
                Ok::<_, anyhow::Error>((h, agents))
            }));
        }
        let mut all = Histogram::<u64>::new(3)?;
        let mut agents = Vec::new();
        for hd in handles {
            let (h, a) = hd.await??;
            all.add(&h)?;
            agents.extend(a);
        }
        let wall = started.elapsed();
        for a in agents {
            a.destroy().await?;
        }
        rows.push(Row {
            measure: "agent spawn, 32 concurrent spawners".into(),
            p50_ms: ms(&all, 0.5),
            p99_ms: ms(&all, 0.99),
            per_sec: total as f64 / wall.as_secs_f64(),
            note: format!("{total} spawns; hub and clients share the 2 cores"),
        });
    }

    // Queries at 1 and 100 concurrent agents.
    for agents in [1usize, 100] {
        let mut handles = Vec::new();
        let deadline = Instant::now() + Duration::from_secs_f64(args.secs);
        let mut spawned = Vec::new();
        for _ in 0..agents {
            let mut config = hub.agent_config(&pki, "bench");
            config.pull_budget = 0;
            spawned.push(Arc::new(EphemeralAgent::spawn(config).await?));
        }
        let started = Instant::now();
        for (n, agent) in spawned.iter().enumerate() {
            let agent = Arc::clone(agent);
            handles.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3)?;
                let mut q = n;
                while Instant::now() < deadline {
                    let text = episode(q).task;
                    q += 7;
                    let t0 = Instant::now();
                    let r = agent.query_memories(&text, 5).await?;
                    h.record(t0.elapsed().as_nanos() as u64)?;
                    anyhow::ensure!(r.memories.len() == 5, "got {} results", r.memories.len());
                }
                Ok::<_, anyhow::Error>(h)
            }));
        }
        let mut all = Histogram::<u64>::new(3)?;
        for hd in handles {
            all.add(&hd.await??)?;
        }
        let wall = started.elapsed();
        for a in spawned {
            if let Ok(a) = Arc::try_unwrap(a) {
                a.destroy().await?;
            }
        }
        rows.push(Row {
            measure: format!("hub query k=5, {agents} concurrent agents"),
            p50_ms: ms(&all, 0.5),
            p99_ms: ms(&all, 0.99),
            per_sec: all.len() as f64 / wall.as_secs_f64(),
            note: format!("{} episodes in tenant; hub embeds the text", args.episodes),
        });
    }

    // Acknowledged stores, 16 agents.
    {
        let deadline = Instant::now() + Duration::from_secs_f64(args.secs);
        let mut handles = Vec::new();
        let started = Instant::now();
        for w in 0..16 {
            let mut config = hub.agent_config(&pki, "writers");
            config.pull_budget = 0;
            let agent = EphemeralAgent::spawn(config).await?;
            handles.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3)?;
                let mut n = w * 1_000_000;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    agent.store_episode(episode(n)).await?;
                    h.record(t0.elapsed().as_nanos() as u64)?;
                    n += 1;
                }
                anyhow::ensure!(agent.pending() == 0, "unacknowledged episodes left");
                agent.destroy().await?;
                Ok::<_, anyhow::Error>(h)
            }));
        }
        let mut all = Histogram::<u64>::new(3)?;
        for hd in handles {
            all.add(&hd.await??)?;
        }
        let wall = started.elapsed();
        rows.push(Row {
            measure: "store episode (acked, durable), 16 agents".into(),
            p50_ms: ms(&all, 0.5),
            p99_ms: ms(&all, 0.99),
            per_sec: all.len() as f64 / wall.as_secs_f64(),
            note: "one episode per request; fsynced before the ack".into(),
        });
    }

    // Sync: push 100 + pull the delta.
    {
        let mut config = hub.agent_config(&pki, "sync");
        config.pull_budget = 0;
        let agent = EphemeralAgent::spawn(config).await?;
        let mut h = Histogram::<u64>::new(3)?;
        let started = Instant::now();
        for round in 0..args.syncs {
            let batch: Vec<NewEpisode> = (0..100).map(|j| episode(round * 100 + j)).collect();
            let t0 = Instant::now();
            agent.store_batch(batch).await?;
            agent.sync().await?;
            h.record(t0.elapsed().as_nanos() as u64)?;
        }
        let wall = started.elapsed();
        agent.destroy().await?;
        rows.push(Row {
            measure: "sync (push 100 + pull delta)".into(),
            p50_ms: ms(&h, 0.5),
            p99_ms: ms(&h, 0.99),
            per_sec: args.syncs as f64 / wall.as_secs_f64(),
            note: "per round; pull returns the 100 just pushed".into(),
        });
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("agentdb hub benchmark (loopback, QUIC + mTLS + JWT) — {cpu}, {cores} cores");
    println!(
        "{:<44} {:>9} {:>9} {:>11}  note",
        "measure", "p50 ms", "p99 ms", "per second"
    );
    for r in &rows {
        println!(
            "{:<44} {:>9.3} {:>9.3} {:>11.0}  {}",
            r.measure, r.p50_ms, r.p99_ms, r.per_sec, r.note
        );
    }
    Ok(())
}
