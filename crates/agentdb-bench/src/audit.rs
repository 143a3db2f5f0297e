//! The audit log's cost on the write path: the storage measure of the seed's table (16 agents,
//! one episode per request, acknowledged after fsync) against two hubs that differ only in
//! whether they keep an audit log, runs interleaved (off, on, off, on, …) so that both see the
//! same machine. Medians of the runs, and the ratio on ÷ off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_hub::AuditSettings;
use agentdb_testkit::{hub_config, TestHub, TestPki};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::data::{episode, Rng};
use crate::seed::agent;
use crate::stats::{merged, summarize, Run};

/// Concurrent writers, as in the seed's storage measure.
const WRITERS: usize = 16;

/// Sizes of one benchmark pass.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Length of one run.
    pub phase: Duration,
    /// Runs per configuration.
    pub runs: usize,
}

impl Sizes {
    pub const QUICK: Sizes = Sizes {
        phase: Duration::from_secs(1),
        runs: 3,
    };
    pub const FULL: Sizes = Sizes {
        phase: Duration::from_secs(5),
        runs: 5,
    };
}

/// The medians of one configuration.
#[derive(Debug, Serialize)]
pub struct Side {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Each run's rate, in order.
    pub runs_per_sec: Vec<f64>,
}

/// Both configurations and the ratio.
#[derive(Debug, Serialize)]
pub struct Report {
    pub off: Side,
    pub on: Side,
    /// Rate with the log ÷ rate without it.
    pub rate_ratio: f64,
    /// Audit records the hub with the log wrote (its whole log, checkpoints included).
    pub records: u64,
    pub phase_secs: f64,
    pub runs: usize,
}

/// One run of the storage workload on `hub`.
async fn store_run(
    hub: &TestHub,
    pki: &TestPki,
    seed: u64,
    phase: Duration,
) -> anyhow::Result<Run> {
    let mut agents = Vec::new();
    for _ in 0..WRITERS {
        agents.push(agent(hub, pki, "writers").await?);
    }
    let started = Instant::now();
    let deadline = started + phase;
    let mut tasks = Vec::new();
    for (w, a) in agents.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut r = Run::new()?;
            let mut wrng = Rng(seed * 64 + w as u64);
            let mut n = 0;
            while Instant::now() < deadline {
                let e = episode(&mut wrng, n);
                n += 1;
                let t0 = Instant::now();
                a.store_episode(e).await?;
                r.hist.record(t0.elapsed().as_nanos() as u64)?;
            }
            anyhow::ensure!(a.pending() == 0, "unacknowledged episodes");
            a.destroy().await?;
            Ok::<_, anyhow::Error>(r)
        }));
    }
    merged(tasks, started).await
}

fn side(runs: &[Run]) -> Side {
    let (p50_ms, p99_ms, per_sec) = summarize(runs);
    Side {
        per_sec,
        p50_ms,
        p99_ms,
        runs_per_sec: runs.iter().map(|r| r.per_sec).collect(),
    }
}

/// Runs the measure and returns the report.
pub async fn run(sizes: Sizes, pb: &ProgressBar) -> anyhow::Result<Report> {
    let pki = Arc::new(TestPki::new());
    let off_dir = tempfile::tempdir()?;
    let on_dir = tempfile::tempdir()?;
    let off = TestHub::start(hub_config(&pki), off_dir.path()).await;
    let audit_dir = on_dir.path().join("audit");
    let mut config = hub_config(&pki);
    config.limits.audit = Some(AuditSettings::new(&audit_dir));
    let on = TestHub::start(config, on_dir.path()).await;

    let (mut off_runs, mut on_runs) = (Vec::new(), Vec::new());
    for run in 0..sizes.runs {
        pb.set_message("store, audit log off");
        off_runs.push(store_run(&off, &pki, 2 * run as u64, sizes.phase).await?);
        pb.inc(1);
        pb.set_message("store, audit log on");
        on_runs.push(store_run(&on, &pki, 2 * run as u64 + 1, sizes.phase).await?);
        pb.inc(1);
    }
    drop(off);
    // A graceful stop seals the log (its final checkpoint) before the records are counted.
    on.handle.shutdown().await;
    let records = count_records(&audit_dir)?;
    let (off, on) = (side(&off_runs), side(&on_runs));
    Ok(Report {
        rate_ratio: on.per_sec / off.per_sec,
        off,
        on,
        records,
        phase_secs: sizes.phase.as_secs_f64(),
        runs: sizes.runs,
    })
}

/// Lines of every segment of the log in `dir`.
fn count_records(dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            n += std::fs::read(&path)?
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
        }
    }
    Ok(n)
}

/// Number of progress steps of [`run`].
pub fn steps(sizes: Sizes) -> u64 {
    (sizes.runs * 2) as u64
}

/// Prints the report as a table, or as JSON.
pub fn print(report: &Report, quick: bool, json: bool, machine: &str) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"machine": machine, "quick": quick, "report": report})
            )?
        );
        return Ok(());
    }
    println!(
        "agentdb audit log overhead ({WRITERS} agents, one episode per request, acked after \
         fsync; medians of {} runs of {} s each, interleaved) — {machine}",
        report.runs, report.phase_secs
    );
    println!(
        "{:<16} {:>10} {:>9} {:>9}   runs (stores/s)",
        "audit log", "stores/s", "p50 ms", "p99 ms"
    );
    for (name, s) in [("off", &report.off), ("on", &report.on)] {
        let runs: Vec<String> = s.runs_per_sec.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<16} {:>10.0} {:>9.3} {:>9.3}   {}",
            name,
            s.per_sec,
            s.p50_ms,
            s.p99_ms,
            runs.join(" ")
        );
    }
    println!(
        "on ÷ off: {:.3} of the rate; {} audit records written by the hub with the log",
        report.rate_ratio, report.records
    );
    Ok(())
}
