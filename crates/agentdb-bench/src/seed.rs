//! The seed's performance table, measured over loopback with the real stack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::EphemeralAgent;
use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{MemoryEngine, Query};
use agentdb_testkit::{hub_config, TestHub, TestPki};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::data::{episode, query, Rng};
use crate::stats::{merged, summarize, Run};

/// Sizes of one benchmark pass.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub episodes: usize,
    pub spawns: usize,
    pub phase: Duration,
    pub syncs: usize,
    pub runs: usize,
    pub agents: usize,
    /// Concurrent spawners of the spawn row's rate.
    pub spawners: usize,
}

impl Sizes {
    pub const QUICK: Sizes = Sizes {
        episodes: 2_000,
        spawns: 30,
        phase: Duration::from_millis(700),
        syncs: 10,
        runs: 3,
        agents: 100,
        // A debug build (the smoke run) handshakes slowly: fewer spawners keep every one
        // inside the hub's authentication timeout.
        spawners: 16,
    };
    pub const FULL: Sizes = Sizes {
        episodes: 100_000,
        spawns: 200,
        phase: Duration::from_secs(5),
        syncs: 50,
        runs: 3,
        agents: 100,
        spawners: crate::spawn::SPAWNERS,
    };
}

/// One line of the table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub measure: String,
    pub seed: String,
    pub seed_ms: f64,
    pub seed_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub per_sec: f64,
    /// Seed latency ÷ our p99 (above 1: better than the seed's figure).
    pub latency_ratio: f64,
    /// Our rate ÷ the seed's rate.
    pub rate_ratio: f64,
    pub note: String,
    /// How the figures were taken.
    pub method: Method,
}

/// How a row was measured: the load behind each figure and the data it ran against.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    /// Concurrent clients while the latency percentiles were taken.
    pub latency_concurrency: usize,
    /// Concurrent clients while the rate was taken.
    pub rate_concurrency: usize,
    /// Episodes in the tenant when the measure started.
    pub episodes: usize,
    /// Latency while the rate was taken, when that was a separate, loaded phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_p99_ms: Option<f64>,
}

impl Method {
    /// Latency and rate from the same phase, with `concurrency` clients.
    fn same(concurrency: usize, episodes: usize) -> Self {
        Self {
            latency_concurrency: concurrency,
            rate_concurrency: concurrency,
            episodes,
            load_p50_ms: None,
            load_p99_ms: None,
        }
    }

    /// One line for the printed table.
    pub fn describe(&self) -> String {
        let mut s = if self.latency_concurrency == self.rate_concurrency {
            format!(
                "latency and rate at concurrency {}",
                self.latency_concurrency
            )
        } else {
            format!(
                "latency at concurrency {}, rate at concurrency {}",
                self.latency_concurrency, self.rate_concurrency
            )
        };
        if let (Some(p50), Some(p99)) = (self.load_p50_ms, self.load_p99_ms) {
            s += &format!(" (latency under that load: p50 {p50:.3} ms, p99 {p99:.3} ms)");
        }
        s + &format!("; tenant of {} episodes", self.episodes)
    }
}

pub(crate) fn row(
    measure: &str,
    seed_ms: f64,
    seed_per_sec: f64,
    runs: &[Run],
    note: String,
    method: Method,
) -> Row {
    let (p50, p99, rate) = summarize(runs);
    Row {
        measure: measure.to_owned(),
        seed: format!("< {seed_ms} ms at {seed_per_sec}/s"),
        seed_ms,
        seed_per_sec,
        p50_ms: p50,
        p99_ms: p99,
        per_sec: rate,
        latency_ratio: seed_ms / p99,
        rate_ratio: rate / seed_per_sec,
        note,
        method,
    }
}

/// A row whose latency comes from `light` runs (one client) and whose rate comes from `load`
/// runs (`concurrency` clients), with the latency under that load in its method.
fn loaded_row(
    measure: &str,
    (seed_ms, seed_per_sec): (f64, f64),
    light: &[Run],
    load: &[Run],
    note: String,
    concurrency: usize,
    episodes: usize,
) -> Row {
    let (load_p50, load_p99, rate) = summarize(load);
    let method = Method {
        latency_concurrency: 1,
        rate_concurrency: concurrency,
        episodes,
        load_p50_ms: Some(load_p50),
        load_p99_ms: Some(load_p99),
    };
    Row {
        per_sec: rate,
        rate_ratio: rate / seed_per_sec,
        ..row(measure, seed_ms, seed_per_sec, light, note, method)
    }
}

/// An agent of `tenant` on `hub` that keeps no copies of what it reads (the measures time
/// requests, not the local cache).
pub(crate) async fn agent(
    hub: &TestHub,
    pki: &TestPki,
    tenant: &str,
) -> anyhow::Result<EphemeralAgent> {
    let mut config = hub.agent_config(pki, tenant);
    config.read_cache = 0;
    Ok(EphemeralAgent::spawn(config).await?)
}

/// Stores `episodes` synthetic episodes in `tenant` straight into the engine, in batches of
/// 1,000, and builds the vector indexes.
pub(crate) fn preload(
    engine: &MemoryEngine,
    tenant: &TenantId,
    episodes: usize,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let mut i = 0;
    while i < episodes {
        let n = 1000.min(episodes - i);
        let batch: Vec<NewEpisode> = (i..i + n).map(|j| episode(rng, j)).collect();
        engine.store_batch(tenant, batch)?;
        i += n;
    }
    engine.build_indexes()?;
    Ok(())
}

/// Queries of the local query row's recall.
const RECALL_QUERIES: usize = 500;

/// Recall@10 of the tenant's index against its exact scan for [`RECALL_QUERIES`] queries of
/// the benchmark's kind, and the search breadth the index uses.
fn recall_at_10(
    engine: &MemoryEngine,
    tenant: &TenantId,
    rng: &mut Rng,
) -> anyhow::Result<(f64, usize)> {
    let index = engine
        .index(tenant)
        .ok_or_else(|| anyhow::anyhow!("the tenant has no index"))?;
    let queries = (0..RECALL_QUERIES)
        .map(|_| engine.embedder().embed(&query(rng)))
        .collect::<Result<Vec<_>, _>>()?;
    let recall = crate::recall::recall(&index, &queries, 10)?;
    Ok((recall, index.expansion_search()))
}

/// The rows of the table, to measure some alone (`run --rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RowKind {
    Spawn,
    Local,
    Hub,
    Storage,
    Sync,
    /// Not in the table: the hub query's rows with a request that does no engine work, what
    /// the transport alone costs (measured only when asked for).
    HubFloor,
}

impl RowKind {
    /// Every row `run --rows` knows, in the order they run.
    pub const ALL: [RowKind; 6] = [
        RowKind::Spawn,
        RowKind::Local,
        RowKind::Hub,
        RowKind::HubFloor,
        RowKind::Storage,
        RowKind::Sync,
    ];

    /// Whether the row is one of the seed's table (measured when no row is named).
    pub fn in_table(self) -> bool {
        self != RowKind::HubFloor
    }

    /// Progress steps the row takes per run.
    fn steps(self) -> usize {
        match self {
            RowKind::Spawn | RowKind::Hub | RowKind::HubFloor => 2,
            RowKind::Local | RowKind::Storage | RowKind::Sync => 1,
        }
    }

    /// Whether the row runs against the tenant holding the data set.
    fn needs_data(self) -> bool {
        matches!(
            self,
            RowKind::Spawn | RowKind::Local | RowKind::Hub | RowKind::HubFloor
        )
    }
}

/// What the rows measure against: one hub, its PKI, and the tenant holding the data set.
struct Bench<'a> {
    hub: Arc<TestHub>,
    pki: Arc<TestPki>,
    engine: Arc<MemoryEngine>,
    tenant: TenantId,
    sizes: Sizes,
    pb: &'a ProgressBar,
}

/// Runs each of `kinds` (in the table's order) `sizes.runs` times and returns their rows.
/// The data set is loaded only when a row needs it. A row measured alone runs on a colder
/// machine than in the whole table (the rows before it warm the hub's caches).
pub async fn run(sizes: Sizes, kinds: &[RowKind], pb: &ProgressBar) -> anyhow::Result<Vec<Row>> {
    let pki = Arc::new(TestPki::new());
    let dir = tempfile::tempdir()?;
    let hub = Arc::new(TestHub::start(hub_config(&pki), dir.path()).await);
    let engine = Arc::clone(hub.handle.engine());
    let tenant = TenantId::new("bench")?;
    if kinds.iter().any(|k| k.needs_data()) {
        pb.set_message("loading episodes");
        preload(&engine, &tenant, sizes.episodes, &mut Rng(0x5eed))?;
    }
    let b = Bench {
        hub,
        pki,
        engine,
        tenant,
        sizes,
        pb,
    };
    let mut rows = Vec::new();
    for kind in RowKind::ALL.into_iter().filter(|k| kinds.contains(k)) {
        rows.extend(match kind {
            RowKind::Spawn => vec![spawn_row(&b).await?],
            RowKind::Local => vec![local_row(&b).await?],
            RowKind::Hub => hub_rows(&b, HubRequest::Query).await?,
            RowKind::HubFloor => hub_rows(&b, HubRequest::MissingEpisode).await?,
            RowKind::Storage => vec![storage_row(&b).await?],
            RowKind::Sync => vec![sync_row(&b).await?],
        });
    }
    Ok(rows)
}

/// Agent spawn: latency one at a time; rate under concurrent spawners. The agents are the
/// tenant's that holds the data, with the default configuration.
async fn spawn_row(b: &Bench<'_>) -> anyhow::Result<Row> {
    let (hub, pki, tenant, sizes, pb) = (&b.hub, &b.pki, &b.tenant, &b.sizes, b.pb);
    let spawn_sizes = crate::spawn::Sizes::of(sizes);
    let report = crate::spawn::measure(
        &hub.agent_config(pki, tenant.as_str()),
        sizes.episodes,
        spawn_sizes,
        |m| {
            pb.set_message(m.to_owned());
            pb.inc(1);
        },
    )
    .await?;
    Ok(crate::spawn::row(&report))
}

/// Local query: the engine in-process; latency on one thread, rate on one thread per core.
async fn local_row(b: &Bench<'_>) -> anyhow::Result<Row> {
    let (engine, tenant, sizes, pb) = (&b.engine, &b.tenant, &b.sizes, b.pb);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (mut light, mut load) = (Vec::new(), Vec::new());
    for run in 0..sizes.runs {
        for (clients, runs) in [(1, &mut light), (threads, &mut load)] {
            pb.set_message(format!("local query, {clients} threads"));
            let deadline = Instant::now() + sizes.phase;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..clients {
                let e = Arc::clone(engine);
                let t = tenant.clone();
                let mut qrng = Rng(0x51 + (run * 64 + c) as u64);
                tasks.push(tokio::task::spawn_blocking(
                    move || -> anyhow::Result<Run> {
                        let mut r = Run::new()?;
                        while Instant::now() < deadline {
                            let q = query(&mut qrng);
                            let t0 = Instant::now();
                            let found = e.query(&t, &Query::text(q, 5))?;
                            r.hist.record(t0.elapsed().as_nanos() as u64)?;
                            anyhow::ensure!(found.len() == 5);
                        }
                        Ok(r)
                    },
                ));
            }
            let r = merged(tasks, started).await?;
            runs.push(r);
        }
        pb.inc(1);
    }
    let (recall, ef) = recall_at_10(engine, tenant, &mut Rng(0x7ec))?;
    Ok(loaded_row(
        "local query k=5 (in-process engine)",
        (5.0, 10_000.0),
        &light,
        &load,
        format!(
            "{} episodes; embed + search + decrypt; latency on 1 thread, rate on {threads}; \
             search breadth {ef} (calibrated), recall@10 {recall:.3} against the exact scan \
             ({RECALL_QUERIES} queries)",
            sizes.episodes
        ),
        threads,
        sizes.episodes,
    ))
}

/// What the agents of [`hub_rows`] ask.
#[derive(Debug, Clone, Copy)]
enum HubRequest {
    /// A text query, k = 5: the table's row.
    Query,
    /// A read of an episode id that does not exist: the round trip through QUIC, TLS, the
    /// session, the policy and the blocking hand-off, with one index lookup as its only
    /// engine work — the floor under the query's latency and above its rate.
    MissingEpisode,
}

/// Hub query (or `request`) at 1 and N concurrent agents.
async fn hub_rows(b: &Bench<'_>, request: HubRequest) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let (hub, pki, sizes, pb) = (&b.hub, &b.pki, &b.sizes, b.pb);
    for agents in [1, sizes.agents] {
        let mut runs = Vec::new();
        for _ in 0..sizes.runs {
            pb.set_message(format!("hub query, {agents} agents"));
            let mut spawned = Vec::new();
            for _ in 0..agents {
                spawned.push(Arc::new(agent(hub, pki, "bench").await?));
            }
            let deadline = Instant::now() + sizes.phase;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (n, a) in spawned.iter().enumerate() {
                let a = Arc::clone(a);
                tasks.push(tokio::spawn(async move {
                    let mut r = Run::new()?;
                    let mut qrng = Rng(0xabc + n as u64);
                    while Instant::now() < deadline {
                        // What is asked is made before the clock starts.
                        let t0;
                        match request {
                            HubRequest::Query => {
                                let q = query(&mut qrng);
                                t0 = Instant::now();
                                let got = a.query_memories(&q, 5).await?;
                                anyhow::ensure!(got.memories.len() == 5);
                            }
                            HubRequest::MissingEpisode => {
                                // Stored ids carry their write time; none was written at 1 ms
                                // past the epoch.
                                let id = qrng.episode_id(1);
                                t0 = Instant::now();
                                anyhow::ensure!(a.get_episode(id).await?.is_none());
                            }
                        }
                        r.hist.record(t0.elapsed().as_nanos() as u64)?;
                    }
                    Ok::<_, anyhow::Error>(r)
                }));
            }
            let r = merged(tasks, started).await?;
            for a in spawned {
                if let Ok(a) = Arc::try_unwrap(a) {
                    a.destroy().await?;
                }
            }
            runs.push(r);
            pb.inc(1);
        }
        let (measure, note) = match request {
            HubRequest::Query => (
                format!("hub query k=5, {agents} concurrent agents"),
                "the hub embeds the text",
            ),
            HubRequest::MissingEpisode => (
                format!("hub no-op round trip, {agents} concurrent agents"),
                "each request reads an episode id that does not exist (compare the hub query)",
            ),
        };
        rows.push(row(
            &measure,
            50.0,
            2000.0,
            &runs,
            format!("{} episodes; {note}", sizes.episodes),
            Method::same(agents, sizes.episodes),
        ));
    }
    Ok(rows)
}

/// Episode storage: 16 agents, one episode per request, acknowledged after fsync.
async fn storage_row(b: &Bench<'_>) -> anyhow::Result<Row> {
    let (hub, pki, sizes, pb) = (&b.hub, &b.pki, &b.sizes, b.pb);
    let mut runs = Vec::new();
    for run in 0..sizes.runs {
        pb.set_message("episode storage");
        let deadline = Instant::now() + sizes.phase;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..16 {
            let a = agent(hub, pki, "writers").await?;
            tasks.push(tokio::spawn(async move {
                let mut r = Run::new()?;
                let mut wrng = Rng(0x1000 + (run * 16 + w) as u64);
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
        let r = merged(tasks, started).await?;
        runs.push(r);
        pb.inc(1);
    }
    Ok(row(
        "episode storage (acked, durable), 16 agents",
        10.0,
        5000.0,
        &runs,
        "one episode per request; fsynced (group commit) before the ack".into(),
        Method::same(16, 0),
    ))
}

/// Sync: push 100 episodes, acknowledged (an agent pulls nothing: it asks the hub). Latency
/// from one agent's rounds; rate from SYNCERS agents syncing at once.
async fn sync_row(b: &Bench<'_>) -> anyhow::Result<Row> {
    let (hub, pki, sizes, pb) = (&b.hub, &b.pki, &b.sizes, b.pb);
    let (mut light, mut load) = (Vec::new(), Vec::new());
    for run in 0..sizes.runs {
        pb.set_message("sync, one agent");
        let a = agent(hub, pki, "sync").await?;
        let mut r = Run::new()?;
        let mut srng = Rng(0x2000 + run as u64);
        let started = Instant::now();
        for round in 0..sizes.syncs {
            let t0 = Instant::now();
            a.store_batch(sync_batch(&mut srng, round)).await?;
            a.sync().await?;
            r.hist.record(t0.elapsed().as_nanos() as u64)?;
        }
        r.per_sec = sizes.syncs as f64 / started.elapsed().as_secs_f64();
        a.destroy().await?;
        light.push(r);

        pb.set_message(format!("sync, {SYNCERS} agents"));
        let mut agents = Vec::new();
        for _ in 0..SYNCERS {
            agents.push(agent(hub, pki, "sync").await?);
        }
        let deadline = Instant::now() + sizes.phase;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (n, a) in agents.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut r = Run::new()?;
                let mut srng = Rng(0x3000 + (run * SYNCERS + n) as u64);
                let mut round = 0;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    a.store_batch(sync_batch(&mut srng, round)).await?;
                    a.sync().await?;
                    r.hist.record(t0.elapsed().as_nanos() as u64)?;
                    round += 1;
                }
                a.destroy().await?;
                Ok::<_, anyhow::Error>(r)
            }));
        }
        let r = merged(tasks, started).await?;
        load.push(r);
        pb.inc(1);
    }
    Ok(loaded_row(
        "sync (push 100, acknowledged)",
        (100.0, 500.0),
        &light,
        &load,
        format!("100 episodes per round, acknowledged by the hub; rate: rounds per second of {SYNCERS} agents"),
        SYNCERS,
        0,
    ))
}

/// Agents syncing at once in the sync row's rate phase.
const SYNCERS: usize = 16;

/// The 100 episodes of one sync round.
fn sync_batch(rng: &mut Rng, round: usize) -> Vec<NewEpisode> {
    (0..100).map(|j| episode(rng, round * 100 + j)).collect()
}

/// Number of progress steps of [`run`].
pub fn steps(sizes: Sizes, kinds: &[RowKind]) -> u64 {
    (sizes.runs * kinds.iter().map(|k| k.steps()).sum::<usize>()) as u64
}
