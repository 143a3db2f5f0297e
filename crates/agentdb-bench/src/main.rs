//! `agentdb-bench`: the seed's performance table measured over loopback, and the data for the
//! peer comparison.
//!
//! ```text
//! cargo run --release -p agentdb-bench -- run [--quick] [--json]      # the table
//! cargo run --release -p agentdb-bench -- run --rows storage,sync     # some rows alone
//! cargo run --release -p agentdb-bench -- spawn [--quick] [--json]    # the spawn row alone
//! cargo run --release -p agentdb-bench -- export --episodes 10000 --queries 1000 --out bench/data/10k
//! cargo run --release -p agentdb-bench -- peers-self --dir bench/data/10k
//! cargo run --release -p agentdb-bench -- gateway [--quick] [--json]  # QUIC vs the HTTPS gateway
//! cargo run --release -p agentdb-bench -- audit [--quick] [--json]    # the audit log's write cost
//! cargo run --release -p agentdb-bench -- crash --trials 100          # kill -9 a hub process, check it
//! cargo run --release -p agentdb-bench -- postgres --url postgres://…  # PostgreSQL beside redb
//! cargo run --release -p agentdb-bench -- soak --agents 100 --minutes 10
//! ```

#![allow(clippy::print_stdout)] // A benchmark prints its table.

mod audit;
mod chart;
mod crash;
mod data;
mod federation;
mod gateway;
mod peers;
mod postgres;
mod recall;
mod scale;
mod seed;
mod semantic;
mod soak;
mod spawn;
mod stats;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Benchmarks of Federated AgentDB.
#[derive(Debug, Parser)]
#[command(name = "agentdb-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The seed's table: spawn, local query, hub query, storage, sync — each run 3 times,
    /// medians reported.
    Run {
        /// Small sizes (about a minute on 2 cores).
        #[arg(long)]
        quick: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Measure only these rows (comma-separated; the table's five by default; hub-floor,
        /// the hub query without engine work, only when named).
        #[arg(long, value_enum, value_delimiter = ',')]
        rows: Vec<seed::RowKind>,
    },
    /// The table's spawn row alone: latency one agent at a time, and spawns per second under
    /// concurrent spawners, into a tenant holding the data set.
    Spawn {
        /// The quick run's sizes.
        #[arg(long)]
        quick: bool,
        /// Concurrent spawners of the throughput phase.
        #[arg(long, default_value_t = spawn::SPAWNERS)]
        concurrency: usize,
        /// Seconds of the throughput phase [default: the table's phase].
        #[arg(long)]
        seconds: Option<f64>,
        /// Episodes in the agents' tenant [default: the table's data set].
        #[arg(long)]
        episodes: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Federation: propagation latency edge → global → other region (direct and with injected
    /// latency per link) and replication throughput between two hubs — medians of 3 runs.
    Federation {
        /// Small sizes, one run.
        #[arg(long)]
        quick: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// QUIC against the HTTPS/JSON gateway on one hub and one tenant's data: store and query
    /// latency (p50, p99) and requests per second at 1 and 100 clients, with the HTTPS ÷ QUIC
    /// ratios and their targets.
    Gateway {
        /// Small sizes, one run (the full run: 5 runs, medians).
        #[arg(long)]
        quick: bool,
        /// Requests per phase (one transport, one operation, one concurrency), spread over the
        /// phase's clients [default: 2000, or 200 with --quick].
        #[arg(long)]
        ops: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The audit log's cost on the write path: the storage measure (16 agents, one episode per
    /// request, acked after fsync) on a hub without and a hub with the audit log, runs
    /// interleaved; medians and the ratio.
    Audit {
        /// Short runs, 3 of each (the full run: 5 of each, 5 s).
        #[arg(long)]
        quick: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Semantic queries end to end: a hub embedding with each model, agents asking in plain
    /// text — latency at one agent, queries per second of 16 (docs/semantic.md).
    Semantic {
        /// A model directory to measure besides the lexical embedder (repeatable; the build
        /// needs the model's feature: model, static-model, onnx).
        #[arg(long)]
        model_dir: Vec<PathBuf>,
        /// Small sizes, one run.
        #[arg(long)]
        quick: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// PostgreSQL beside redb: acknowledged writes per second and query latency on each; query
    /// throughput with 1, 2 and 3 hubs over one database; how long a write takes to reach
    /// another hub's index; the index rebuild time for a million episodes (docs/postgres.md).
    Postgres {
        /// The server (its `postgres` database; each phase creates a database of its own):
        /// `scripts/postgres.sh start DIR` prints one.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Small sizes, one run.
        #[arg(long)]
        quick: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Scale probes: hub RSS per idle agent, many tenants, many memories.
    Scale {
        /// Idle agent connection counts.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        connections: Vec<usize>,
        /// Tenants (3 episodes each); 0 skips the probe.
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        /// Memories in one tenant; 0 skips the probe.
        #[arg(long, default_value_t = 1_000_000)]
        memories: usize,
    },
    /// Draw the latency / throughput chart from results-*.json files.
    Chart {
        /// Data set directories (one per size).
        dirs: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long, default_value = "docs/benchmarks-chart.png")]
        out: PathBuf,
        /// A TrueType font for the labels.
        #[arg(
            long,
            default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
        )]
        font: PathBuf,
    },
    /// Write a data set for the peer benchmarks.
    Export {
        /// Episodes.
        #[arg(long, default_value_t = 10_000)]
        episodes: usize,
        /// Queries.
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Crash loop: an `agentdb hub` process takes episodes from concurrent agents, is killed with
    /// SIGKILL at a random moment and restarted on its data; every episode it acknowledged must
    /// be there, equal, and none twice. Exits non-zero on any loss.
    Crash {
        /// Trials (each: start, store, kill -9, restart, check).
        #[arg(long, default_value_t = 10)]
        trials: usize,
        /// Concurrent agents storing in each trial.
        #[arg(long, default_value_t = 8)]
        agents: usize,
        /// Seed of the kill moments and the episodes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The `agentdb` binary (default: next to this one, built when missing).
        #[arg(long)]
        hub_bin: Option<PathBuf>,
    },
    /// Soak: an `agentdb hub` process under agents that spawn, recall, store and are destroyed
    /// continuously; reports per interval and the hub's RSS slope. Exits non-zero on any error.
    Soak {
        /// Concurrent agents.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Duration in minutes.
        #[arg(long, conflicts_with = "seconds")]
        minutes: Option<f64>,
        /// Duration in seconds (for short runs).
        #[arg(long)]
        seconds: Option<f64>,
        /// Seconds between reports (default 30, or a sixth of a shorter run).
        #[arg(long)]
        interval: Option<f64>,
        /// Tenants the agents are spread over.
        #[arg(long, default_value_t = 10)]
        tenants: usize,
        /// Seed of the episodes and queries.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Distinct episodes each agent slot stores, over and over: once all are stored, a
        /// store repeats an id (idempotent), so the hub's data stops growing and its RSS slope
        /// shows what the work itself leaves behind. Unbounded (every store new) without it.
        #[arg(long)]
        working_set: Option<usize>,
        /// Lifetime of the agents' tokens in seconds: the hub keeps a destroyed agent's token
        /// on its revocation list until it would have expired.
        #[arg(long, default_value_t = 300)]
        token_ttl: u64,
        /// The `agentdb` binary (default: next to this one, built when missing).
        #[arg(long)]
        hub_bin: Option<PathBuf>,
    },
    /// Run this engine on a data set; writes results-agentdb-rs[-<graph>][-ef<N>].json beside it.
    PeersSelf {
        /// The data set directory.
        #[arg(long)]
        dir: PathBuf,
        /// Runs (medians reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// A fixed search breadth (ef) instead of the one calibrated to the data.
        #[arg(long)]
        ef_search: Option<usize>,
        /// How the graph stores vectors: f32, f16 or i8 (the engine's default).
        #[arg(long, default_value = "i8")]
        graph: peers::Graph,
    },
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// A progress bar of `len` steps.
fn progress(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// The multi-threaded runtime the networked measures run on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { quick, json, rows } => {
            let sizes = if quick {
                seed::Sizes::QUICK
            } else {
                seed::Sizes::FULL
            };
            let kinds = if rows.is_empty() {
                seed::RowKind::ALL
                    .into_iter()
                    .filter(|k| k.in_table())
                    .collect()
            } else {
                rows
            };
            let pb = progress(seed::steps(sizes, &kinds));
            let rows = runtime()?.block_on(seed::run(sizes, &kinds, &pb))?;
            pb.finish_and_clear();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"machine": machine(), "quick": quick, "rows": rows})
                    )?
                );
                return Ok(());
            }
            println!(
                "agentdb benchmark ({} mode, medians of {} runs) — {}",
                if quick { "quick" } else { "full" },
                sizes.runs,
                machine()
            );
            println!(
                "{:<44} {:>24} {:>9} {:>9} {:>10} {:>8} {:>8}",
                "measure", "seed's figure", "p50 ms", "p99 ms", "per sec", "lat ×", "rate ×"
            );
            for r in &rows {
                println!(
                    "{:<44} {:>24} {:>9.3} {:>9.3} {:>10.0} {:>8.1} {:>8.2}",
                    r.measure, r.seed, r.p50_ms, r.p99_ms, r.per_sec, r.latency_ratio, r.rate_ratio
                );
            }
            println!("lat × = seed latency ÷ our p99; rate × = our rate ÷ seed rate (above 1 beats the seed's figure).");
            for r in &rows {
                println!("  {}: {}; {}", r.measure, r.note, r.method.describe());
            }
        }
        Command::Spawn {
            quick,
            concurrency,
            seconds,
            episodes,
            json,
        } => {
            let table = if quick {
                seed::Sizes::QUICK
            } else {
                seed::Sizes::FULL
            };
            let mut sizes = spawn::Sizes::of(&table);
            sizes.concurrency = concurrency;
            if let Some(s) = seconds {
                anyhow::ensure!(s.is_finite() && s > 0.0, "--seconds must be positive");
                sizes.phase = std::time::Duration::from_secs_f64(s);
            }
            let episodes = episodes.unwrap_or(table.episodes);
            let pb = progress((sizes.runs * 2) as u64);
            let report = runtime()?.block_on(spawn::standalone(sizes, episodes, &pb))?;
            pb.finish_and_clear();
            let row = spawn::row(&report);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "machine": machine(), "quick": quick, "rows": [row], "spawn": report
                    }))?
                );
                return Ok(());
            }
            println!(
                "agent spawn (medians of {} runs) — {}",
                sizes.runs,
                machine()
            );
            println!(
                "light load: p50 {:.3} ms, p99 {:.3} ms ({} spawns one at a time per run; first spawn of the process {:.3} ms)",
                report.p50_ms, report.p99_ms, report.spawns, report.first_ms
            );
            println!(
                "under load: {:.0} spawns/s with {} spawners for {:.1} s (spawn latency p50 {:.3} ms, p99 {:.3} ms)",
                report.per_sec,
                report.concurrency,
                report.phase_secs,
                report.load_p50_ms,
                report.load_p99_ms
            );
            println!("tenant of {} episodes", report.episodes);
        }
        Command::Federation { quick, json } => {
            let sizes = if quick {
                federation::Sizes::QUICK
            } else {
                federation::Sizes::FULL
            };
            let load = federation::load();
            let pb = progress(federation::steps(sizes));
            let rows = runtime()?.block_on(federation::run(sizes, &pb))?;
            pb.finish_and_clear();
            federation::print(&rows, sizes, quick, json, &machine(), &load)?;
        }
        Command::Audit { quick, json } => {
            let sizes = if quick {
                audit::Sizes::QUICK
            } else {
                audit::Sizes::FULL
            };
            let pb = progress(audit::steps(sizes));
            let report = runtime()?.block_on(audit::run(sizes, &pb))?;
            pb.finish_and_clear();
            audit::print(&report, quick, json, &machine())?;
        }
        Command::Semantic {
            model_dir,
            quick,
            json,
        } => {
            let sizes = if quick {
                semantic::Sizes::QUICK
            } else {
                semantic::Sizes::FULL
            };
            let pb = progress(semantic::steps(sizes, model_dir.len() + 1));
            let reports = runtime()?.block_on(semantic::run(&model_dir, sizes, &pb))?;
            pb.finish_and_clear();
            semantic::print(&reports, quick, json, &machine())?;
        }
        Command::Postgres { url, quick, json } => {
            let sizes = if quick {
                postgres::Sizes::QUICK
            } else {
                postgres::Sizes::FULL
            };
            postgres::run(&url, sizes, json, &machine())?;
        }
        Command::Gateway { quick, ops, json } => {
            let mut sizes = if quick {
                gateway::Sizes::QUICK
            } else {
                gateway::Sizes::FULL
            };
            if let Some(ops) = ops {
                sizes.ops = ops;
            }
            let load = federation::load();
            let pb = progress(gateway::steps(sizes));
            let report = runtime()?.block_on(gateway::run(sizes, &pb))?;
            pb.finish_and_clear();
            gateway::print(&report, quick, json, &machine(), &load)?;
        }
        Command::Scale {
            connections,
            tenants,
            memories,
        } => {
            let pb = ProgressBar::new((connections.len() + 2) as u64);
            println!("agentdb scale probes — {}", machine());
            let rt = runtime()?;
            let say = |line: String| pb.suspend(|| println!("{line}"));
            for line in rt.block_on(scale::connections(&connections, &pb))? {
                say(line);
            }
            if tenants > 0 {
                say(scale::tenants(tenants, 3, &pb)?);
            }
            if memories > 0 {
                say(scale::memories(memories, &pb)?);
            }
            pb.finish_and_clear();
        }
        Command::Export {
            episodes,
            queries,
            out,
        } => {
            peers::export(&out, episodes, queries, 10)?;
            println!(
                "wrote {episodes} episodes and {queries} queries to {}",
                out.display()
            );
        }
        Command::Chart { dirs, out, font } => {
            chart::draw(&dirs, &out, &font)?;
            println!("wrote {}", out.display());
        }
        Command::Crash {
            trials,
            agents,
            seed,
            hub_bin,
        } => {
            runtime()?.block_on(crash::run(crash::Options {
                trials,
                agents,
                seed,
                hub_bin,
            }))?;
        }
        Command::Soak {
            agents,
            minutes,
            seconds,
            interval,
            tenants,
            seed,
            working_set,
            token_ttl,
            hub_bin,
        } => {
            let secs = match (minutes, seconds) {
                (Some(m), _) => m * 60.0,
                (None, Some(s)) => s,
                (None, None) => 60.0,
            };
            anyhow::ensure!(
                secs.is_finite() && secs > 0.0,
                "the duration must be positive"
            );
            let interval = interval.unwrap_or((secs / 6.0).min(30.0));
            anyhow::ensure!(
                interval.is_finite() && interval > 0.0,
                "the interval must be positive"
            );
            runtime()?.block_on(soak::run(soak::Options {
                agents,
                duration: std::time::Duration::from_secs_f64(secs),
                interval: std::time::Duration::from_secs_f64(interval),
                tenants,
                seed,
                working_set,
                token_ttl_secs: token_ttl,
                hub_bin,
            }))?;
        }
        Command::PeersSelf {
            dir,
            runs,
            ef_search,
            graph,
        } => {
            let r = peers::run_self(&dir, runs, ef_search, graph)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}
