//! The PostgreSQL backend beside the embedded one, on one machine: an engine over each
//! (redb in a temporary directory, PostgreSQL at `--url`) takes the same episodes and queries.
//!
//! - **Writes**: `writers` threads store episodes one at a time; every store returns only
//!   when it is durable (redb fsynced; PostgreSQL committed). Latency per store, and
//!   acknowledged writes per second over the phase.
//! - **Queries**: one thread runs text queries (k = 10) against what the writers stored:
//!   p50 / p99 at light load.
//! - **Hubs over one database**: 1, 2 and 3 engines ("hubs") open the same database (each
//!   rebuilds its own index) and `query_threads` threads query them round-robin: queries per
//!   second. On one machine every hub shares the same cores, so this shows the cost of the
//!   arrangement, not the capacity of several machines.
//! - **Visibility**: a write on one hub until it is in another hub's index, that hub following
//!   the database every 25 ms as a hub process does.
//! - **Catch-up**: another hub writes `episodes` episodes in batches; the rows per second at
//!   which one pass of a following hub indexes them (a burst of other hubs' writes).
//! - **Rebuild**: a database holding `rebuild` episodes, and how long a hub takes to open it
//!   (every row read and opened, every vector indexed) before it can serve.
//!
//! Every phase but the rebuild runs `runs` times on fresh databases; medians are reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{EpisodeId, TenantId};
use agentdb_memory::storage::Storage;
use agentdb_memory::{EngineConfig, MemoryEngine, Query, RedbStorage};
use agentdb_postgres::PostgresStorage;
use agentdb_security::MasterKey;
use agentdb_testkit::postgres::fresh_database_on;
use anyhow::Context as _;
use serde::Serialize;

use crate::data::{episode, query, Rng};
use crate::stats::{median, summarize, Run};

/// How large each phase is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Episodes the writers store (in total).
    pub episodes: usize,
    /// Concurrent writers.
    pub writers: usize,
    /// Queries at light load.
    pub queries: usize,
    /// Queries per hub-count phase.
    pub hub_queries: usize,
    /// Query threads in the hub-count phase.
    pub query_threads: usize,
    /// Writes timed until visible on another hub.
    pub visibility: usize,
    /// Episodes in the rebuild phase.
    pub rebuild: usize,
    /// Runs of every phase but the rebuild.
    pub runs: usize,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        episodes: 16_000,
        writers: 16,
        queries: 2_000,
        hub_queries: 6_000,
        query_threads: 8,
        visibility: 200,
        rebuild: 1_000_000,
        runs: 3,
    };
    pub const QUICK: Sizes = Sizes {
        episodes: 800,
        writers: 16,
        queries: 200,
        hub_queries: 300,
        query_threads: 4,
        visibility: 20,
        rebuild: 2_000,
        runs: 1,
    };
}

/// What one backend did.
#[derive(Debug, Serialize)]
struct Backend {
    backend: &'static str,
    writes_per_sec: f64,
    store_p50_ms: f64,
    store_p99_ms: f64,
    query_p50_ms: f64,
    query_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    sizes: String,
    backends: Vec<Backend>,
    /// (hubs, queries per second).
    hubs: Vec<(usize, f64)>,
    visibility_p50_ms: f64,
    visibility_p99_ms: f64,
    /// Rows per second one follow pass indexes (median of the runs).
    catch_up_per_sec: f64,
    rebuild_episodes: usize,
    rebuild_secs: f64,
}

const MASTER: [u8; 32] = [9; 32];

fn tenant() -> TenantId {
    TenantId::new("bench").unwrap_or_else(|_| unreachable!())
}

fn engine(storage: Arc<dyn Storage>, hub: &str) -> anyhow::Result<MemoryEngine> {
    Ok(
        MemoryEngine::builder(storage, MasterKey::from_bytes(MASTER))
            .config(EngineConfig {
                origin: Some(agentdb_core::HubId::new(hub)?),
                ..EngineConfig::default()
            })
            .open()?,
    )
}

fn postgres(url: &str) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(Arc::new(PostgresStorage::connect(url)?))
}

/// `writers` threads store `episodes` episodes between them, one at a time.
fn writes(e: &Arc<MemoryEngine>, sizes: Sizes, seed: u64) -> anyhow::Result<Run> {
    let per = sizes.episodes / sizes.writers;
    let started = Instant::now();
    let threads: Vec<_> = (0..sizes.writers)
        .map(|w| {
            let e = Arc::clone(e);
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                let mut rng = Rng(seed ^ ((w as u64 + 1) * 0x9e37_79b9));
                let mut ns = Vec::with_capacity(per);
                for i in 0..per {
                    let ep = episode(&mut rng, w * per + i);
                    let t = Instant::now();
                    e.store(&tenant(), ep)?;
                    ns.push(t.elapsed().as_nanos() as u64);
                }
                Ok(ns)
            })
        })
        .collect();
    let mut run = Run::new()?;
    for t in threads {
        let ns = t
            .join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
        for v in ns {
            run.hist.record(v.max(1))?;
        }
    }
    run.per_sec = (per * sizes.writers) as f64 / started.elapsed().as_secs_f64();
    Ok(run)
}

/// One thread, `n` text queries (k = 10).
fn queries(e: &MemoryEngine, n: usize, seed: u64) -> anyhow::Result<Run> {
    let mut rng = Rng(seed);
    let mut run = Run::new()?;
    let started = Instant::now();
    for _ in 0..n {
        let q = Query::text(query(&mut rng), 10);
        let t = Instant::now();
        let hits = e.query(&tenant(), &q)?;
        run.hist.record((t.elapsed().as_nanos() as u64).max(1))?;
        anyhow::ensure!(!hits.is_empty(), "a query found nothing");
    }
    run.per_sec = n as f64 / started.elapsed().as_secs_f64();
    Ok(run)
}

/// Queries per second from `threads` threads spread over `hubs`.
fn hub_rate(hubs: &[Arc<MemoryEngine>], sizes: Sizes, seed: u64) -> anyhow::Result<f64> {
    let per = sizes.hub_queries / sizes.query_threads;
    let started = Instant::now();
    let threads: Vec<_> = (0..sizes.query_threads)
        .map(|t| {
            let e = Arc::clone(&hubs[t % hubs.len()]);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut rng = Rng(seed ^ (t as u64 + 7));
                for _ in 0..per {
                    e.query(&tenant(), &Query::text(query(&mut rng), 10))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a query thread panicked"))??;
    }
    Ok((per * sizes.query_threads) as f64 / started.elapsed().as_secs_f64())
}

/// Stores on `a` and times until each episode is in `b`'s index, `b` following the database.
fn visibility(url: &str, n: usize, seed: u64) -> anyhow::Result<Vec<f64>> {
    let a = engine(postgres(url)?, "hub-a")?;
    let b = Arc::new(engine(postgres(url)?, "hub-b")?);
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = b.follow_storage() {
                    eprintln!("follow: {e}");
                }
                std::thread::sleep(agentdb_hub::DEFAULT_FOLLOW_INTERVAL);
            }
        })
    };
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id: EpisodeId = a.store(&tenant(), episode(&mut rng, i))?.id;
        let t = Instant::now();
        loop {
            if b.index(&tenant()).is_some_and(|x| x.contains(&id)) {
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(10), "never visible");
            std::thread::sleep(Duration::from_micros(200));
        }
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    Ok(out)
}

/// Hub A writes `n` episodes in batches of 500 to a tenant hub B already follows; returns the
/// rows per second of B's one pass that indexes them.
fn catch_up(url: &str, n: usize, seed: u64) -> anyhow::Result<f64> {
    let a = engine(postgres(url)?, "hub-a")?;
    let b = engine(postgres(url)?, "hub-b")?;
    let mut rng = Rng(seed);
    a.store(&tenant(), episode(&mut rng, 0))?;
    b.follow_storage()?;
    let mut i = 1;
    while i <= n {
        let batch: Vec<_> = (i..(i + 500).min(n + 1))
            .map(|j| episode(&mut rng, j))
            .collect();
        i += batch.len();
        a.store_batch(&tenant(), batch)?;
    }
    let started = Instant::now();
    b.follow_storage()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        b.episode_count() == (n + 1) as u64,
        "the follower misses episodes"
    );
    Ok(n as f64 / secs)
}

/// Loads `n` episodes into the database at `url` (batches from 4 threads), then times a hub
/// opening it.
fn rebuild(url: &str, n: usize, progress: &indicatif::ProgressBar) -> anyhow::Result<f64> {
    let loader = Arc::new(engine(postgres(url)?, "loader")?);
    let threads = 4;
    let per = n / threads;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (e, progress) = (Arc::clone(&loader), progress.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut rng = Rng(0xfeed ^ t as u64);
                let mut i = 0;
                while i < per {
                    let batch: Vec<_> = (i..(i + 500).min(per))
                        .map(|j| episode(&mut rng, t * per + j))
                        .collect();
                    i += batch.len();
                    progress.inc(batch.len() as u64);
                    e.store_batch(&tenant(), batch)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a loader panicked"))??;
    }
    drop(loader);
    let started = Instant::now();
    let hub = engine(postgres(url)?, "hub-new")?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        hub.episode_count() == (per * threads) as u64,
        "the rebuilt index misses episodes"
    );
    Ok(secs)
}

pub fn run(server: &str, sizes: Sizes, json: bool, machine: &str) -> anyhow::Result<()> {
    let steps = (sizes.runs * sizes.episodes * 3 + sizes.rebuild) as u64;
    let progress = crate::progress(steps);
    progress.set_message("postgres");
    let mut redb_w = Vec::new();
    let mut redb_q = Vec::new();
    let mut pg_w = Vec::new();
    let mut pg_q = Vec::new();
    let mut hubs: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut visible = Vec::new();
    let mut caught_up = Vec::new();
    for r in 0..sizes.runs {
        let seed = 1 + r as u64;
        let dir = tempfile::tempdir()?;
        let redb = Arc::new(engine(
            Arc::new(RedbStorage::open(&dir.path().join("db"))?),
            "hub-a",
        )?);
        redb_w.push(writes(&redb, sizes, seed)?);
        progress.inc(sizes.episodes as u64);
        redb.build_indexes()?;
        redb_q.push(queries(&redb, sizes.queries, seed)?);
        drop(redb);

        let url = fresh_database_on(server);
        let pg = Arc::new(engine(postgres(&url)?, "hub-a")?);
        pg_w.push(writes(&pg, sizes, seed)?);
        progress.inc(sizes.episodes as u64);
        pg.build_indexes()?;
        pg_q.push(queries(&pg, sizes.queries, seed)?);
        drop(pg);

        for (h, rates) in hubs.iter_mut().enumerate() {
            let engines = (0..=h)
                .map(|i| -> anyhow::Result<Arc<MemoryEngine>> {
                    let e = engine(postgres(&url)?, &format!("hub-{i}"))?;
                    e.build_indexes()?;
                    Ok(Arc::new(e))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            rates.push(hub_rate(&engines, sizes, seed)?);
        }
        visible.extend(visibility(
            &fresh_database_on(server),
            sizes.visibility,
            seed,
        )?);
        caught_up.push(catch_up(&fresh_database_on(server), sizes.episodes, seed)?);
        progress.inc(sizes.episodes as u64);
    }
    let rebuild_secs =
        rebuild(&fresh_database_on(server), sizes.rebuild, &progress).context("rebuild phase")?;
    progress.finish_and_clear();

    let backend = |name, w: &[Run], q: &[Run]| {
        let (s50, s99, rate) = summarize(w);
        let (q50, q99, _) = summarize(q);
        Backend {
            backend: name,
            writes_per_sec: rate,
            store_p50_ms: s50,
            store_p99_ms: s99,
            query_p50_ms: q50,
            query_p99_ms: q99,
        }
    };
    visible.sort_by(f64::total_cmp);
    let quantile = |q: f64| visible[((visible.len() - 1) as f64 * q).round() as usize];
    let report = Report {
        machine: machine.to_owned(),
        sizes: format!(
            "{} episodes from {} writers, {} queries, {} run(s)",
            sizes.episodes, sizes.writers, sizes.queries, sizes.runs
        ),
        backends: vec![
            backend("redb", &redb_w, &redb_q),
            backend("postgres", &pg_w, &pg_q),
        ],
        hubs: hubs
            .iter_mut()
            .enumerate()
            .map(|(h, rates)| (h + 1, median(rates)))
            .collect(),
        visibility_p50_ms: quantile(0.5),
        visibility_p99_ms: quantile(0.99),
        catch_up_per_sec: median(&mut caught_up),
        rebuild_episodes: sizes.rebuild,
        rebuild_secs,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}", report.machine);
    println!("{}", report.sizes);
    println!(
        "{:<10} {:>12} {:>18} {:>18}",
        "backend", "writes/s", "store p50/p99 ms", "query p50/p99 ms"
    );
    for b in &report.backends {
        println!(
            "{:<10} {:>12.0} {:>8.2} / {:>7.2} {:>8.2} / {:>7.2}",
            b.backend,
            b.writes_per_sec,
            b.store_p50_ms,
            b.store_p99_ms,
            b.query_p50_ms,
            b.query_p99_ms
        );
    }
    for (h, rate) in &report.hubs {
        println!(
            "{h} hub(s) over one database: {rate:.0} queries/s ({} threads)",
            sizes.query_threads
        );
    }
    println!(
        "a write on one hub in another's index after: p50 {:.1} ms, p99 {:.1} ms ({} writes)",
        report.visibility_p50_ms,
        report.visibility_p99_ms,
        visible.len()
    );
    println!(
        "another hub's {} writes indexed by one follow pass: {:.0} rows/s",
        sizes.episodes, report.catch_up_per_sec
    );
    println!(
        "index rebuild: {} episodes in {:.1} s ({:.0} s per million)",
        report.rebuild_episodes,
        report.rebuild_secs,
        report.rebuild_secs * 1e6 / report.rebuild_episodes as f64
    );
    Ok(())
}
