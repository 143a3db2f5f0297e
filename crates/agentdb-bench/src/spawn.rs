//! The spawn row: latency at light load and throughput under concurrent load.
//!
//! Both halves spawn agents with the default `AgentConfig` of one process (one tenant
//! certificate, tokens minted per agent) against one in-process hub, into a tenant that holds
//! the data set, so that a spawn that did work growing with the tenant would show it.
//!
//! - **Latency at light load**: one agent at a time — spawn (timed), destroy (not timed), next.
//! - **Throughput under load**: `concurrency` spawners, each spawning and destroying agents back
//!   to back for `phase`; the rate is the spawns completed ÷ the wall time, so every destroy's
//!   cost is inside it. The spawn latencies under that load are reported beside it.

use std::time::{Duration, Instant};

use agentdb_client::{AgentConfig, EphemeralAgent};
use serde::Serialize;

use crate::seed::{Method, Row};
use crate::stats::{median, merged, Run};

/// Sizes of the spawn measure.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Spawns timed one at a time, per run.
    pub spawns: usize,
    /// Concurrent spawners of the throughput phase.
    pub concurrency: usize,
    /// How long the throughput phase runs.
    pub phase: Duration,
    /// Runs (medians reported).
    pub runs: usize,
}

/// Concurrent spawners of the throughput phase unless told otherwise.
pub const SPAWNERS: usize = 64;

impl Sizes {
    /// The spawn measure of the table at `sizes`.
    pub fn of(sizes: &crate::seed::Sizes) -> Self {
        Self {
            spawns: sizes.spawns,
            concurrency: sizes.spawners,
            phase: sizes.phase,
            runs: sizes.runs,
        }
    }
}

/// What the spawn measure found: medians over runs.
#[derive(Debug, Clone, Serialize)]
pub struct SpawnReport {
    /// The first spawn of the process (its endpoint, its first full TLS handshake).
    pub first_ms: f64,
    /// Light load: one agent at a time.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Under load: spawns per second with `concurrency` spawners.
    pub per_sec: f64,
    /// Spawn latency under that load.
    pub load_p50_ms: f64,
    pub load_p99_ms: f64,
    pub concurrency: usize,
    pub spawns: usize,
    pub phase_secs: f64,
    pub runs: usize,
    /// Episodes in the tenant the agents spawn into.
    pub episodes: usize,
}

/// Measures spawns of agents configured like `config` against `hub`, whose tenant holds
/// `episodes` episodes.
pub async fn measure(
    config: &AgentConfig,
    episodes: usize,
    sizes: Sizes,
    mut step: impl FnMut(&str),
) -> anyhow::Result<SpawnReport> {
    let mut first_ms = f64::NAN;
    let mut light = Vec::new();
    let mut load = Vec::new();
    for run in 0..sizes.runs {
        step("agent spawn, one at a time");
        let mut r = Run::new()?;
        for i in 0..sizes.spawns {
            let t0 = Instant::now();
            let agent = EphemeralAgent::spawn(config.clone()).await?;
            let took = t0.elapsed();
            if run == 0 && i == 0 {
                first_ms = took.as_secs_f64() * 1e3;
            }
            r.hist.record(took.as_nanos() as u64)?;
            agent.destroy().await?;
        }
        light.push(r);

        step(&format!("agent spawn, {} spawners", sizes.concurrency));
        let started = Instant::now();
        let deadline = started + sizes.phase;
        let mut tasks = Vec::new();
        for _ in 0..sizes.concurrency {
            let config = config.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = Run::new()?;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let agent = EphemeralAgent::spawn(config.clone()).await?;
                    r.hist.record(t0.elapsed().as_nanos() as u64)?;
                    agent.destroy().await?;
                }
                Ok::<_, anyhow::Error>(r)
            }));
        }
        let r = merged(tasks, started).await?;
        load.push(r);
    }
    let pick =
        |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Ok(SpawnReport {
        first_ms,
        p50_ms: pick(&light, &|r| r.ms(0.5)),
        p99_ms: pick(&light, &|r| r.ms(0.99)),
        per_sec: pick(&load, &|r| r.per_sec),
        load_p50_ms: pick(&load, &|r| r.ms(0.5)),
        load_p99_ms: pick(&load, &|r| r.ms(0.99)),
        concurrency: sizes.concurrency,
        spawns: sizes.spawns,
        phase_secs: sizes.phase.as_secs_f64(),
        runs: sizes.runs,
        episodes,
    })
}

/// The table's spawn row.
pub fn row(report: &SpawnReport) -> Row {
    let (seed_ms, seed_per_sec) = (50.0, 1000.0);
    Row {
        measure: "agent spawn (connect + mTLS + auth + spool)".to_owned(),
        seed: format!("< {seed_ms} ms at {seed_per_sec}/s"),
        seed_ms,
        seed_per_sec,
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
        per_sec: report.per_sec,
        latency_ratio: seed_ms / report.p99_ms,
        rate_ratio: report.per_sec / seed_per_sec,
        note: format!(
            "latency: {} spawns one at a time (destroy not timed); rate: {} spawners spawning and \
             destroying for {:.1} s, spawns ÷ wall time; first spawn of the process {:.3} ms",
            report.spawns, report.concurrency, report.phase_secs, report.first_ms
        ),
        method: Method {
            latency_concurrency: 1,
            rate_concurrency: report.concurrency,
            episodes: report.episodes,
            load_p50_ms: Some(report.load_p50_ms),
            load_p99_ms: Some(report.load_p99_ms),
        },
    }
}

/// The spawn measure alone: a hub whose tenant holds `episodes` episodes, then [`measure`].
pub async fn standalone(
    sizes: Sizes,
    episodes: usize,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<SpawnReport> {
    let pki = agentdb_testkit::TestPki::new();
    let dir = tempfile::tempdir()?;
    let hub = agentdb_testkit::TestHub::start(agentdb_testkit::hub_config(&pki), dir.path()).await;
    let tenant = agentdb_core::TenantId::new("bench")?;
    pb.set_message("loading episodes");
    crate::seed::preload(
        hub.handle.engine(),
        &tenant,
        episodes,
        &mut crate::data::Rng(0x5eed),
    )?;
    let config = hub.agent_config(&pki, tenant.as_str());
    measure(&config, episodes, sizes, |m| {
        pb.set_message(m.to_owned());
        pb.inc(1);
    })
    .await
}
