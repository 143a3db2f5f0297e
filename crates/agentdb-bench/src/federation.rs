//! Federation measured over loopback with real QUIC links between in-process hubs:
//! propagation latency edge → global → other region (direct, and with latency injected on
//! every link by a UDP delay relay), and replication throughput between two hubs (catching up
//! on a pre-filled hub, and following one that takes writes).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{EpisodeId, NewEpisode, TenantId, VersionVector};
use agentdb_hub::{FederationConfig, Topology};
use agentdb_memory::MemoryEngine;
use agentdb_testkit::{federated_hub_config, TestHub, TestPki};
use anyhow::Context as _;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::data::{episode, Rng};
use crate::stats::{median, summarize, Run};

/// Sizes of one benchmark pass.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Episodes stored one at a time at the edge, per latency run.
    pub writes: usize,
    /// One of those writes starts every `spacing` (a steady stream).
    pub spacing: Duration,
    /// One-way latency injected on every link in the second latency measure.
    pub delay: Duration,
    /// Episodes pre-filled at the hub a new hub catches up on.
    pub episodes: usize,
    /// How long the writers store while the second hub follows.
    pub phase: Duration,
    /// Concurrent writers in the live measure.
    pub writers: usize,
    /// Episodes per writer batch.
    pub batch: usize,
    /// Runs of each measure (medians reported).
    pub runs: usize,
}

impl Sizes {
    pub const QUICK: Sizes = Sizes {
        writes: 30,
        spacing: Duration::from_millis(5),
        delay: Duration::from_millis(50),
        episodes: 5_000,
        phase: Duration::from_secs(3),
        writers: 4,
        batch: 100,
        runs: 1,
    };
    pub const FULL: Sizes = Sizes {
        writes: 200,
        spacing: Duration::from_millis(5),
        delay: Duration::from_millis(50),
        episodes: 50_000,
        phase: Duration::from_secs(10),
        writers: 4,
        batch: 100,
        runs: 3,
    };
}

/// How often linked hubs exchange version vectors; new ops are pushed at once regardless.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for anything to arrive before a run is declared failed.
const PATIENCE: Duration = Duration::from_secs(120);

/// One line of the table. Latency rows have no rate and rate rows no latency (`null` in JSON).
#[derive(Debug, Serialize)]
pub struct Row {
    pub measure: String,
    pub target: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub per_sec: f64,
    /// Whether the figure meets the target.
    pub met: bool,
    pub note: String,
}

/// Number of progress steps of [`run`].
pub fn steps(sizes: Sizes) -> u64 {
    (sizes.runs * 4 + 1) as u64
}

fn fed(upstream: Option<String>) -> FederationConfig {
    FederationConfig {
        topology: Topology::Hierarchical,
        upstream,
        sync_interval: SYNC_INTERVAL,
        ..FederationConfig::default()
    }
}

fn tenant() -> anyhow::Result<TenantId> {
    Ok(TenantId::new("bench")?)
}

/// Wakes whoever waits on the returned [`Notify`] after every change of `engine`'s episodes.
fn on_change(engine: &MemoryEngine) -> Arc<Notify> {
    let changed = Arc::new(Notify::new());
    let n = Arc::clone(&changed);
    engine.add_change_listener(Arc::new(move |_: &TenantId| n.notify_one()));
    changed
}

/// Waits until `done` holds, checking again each time `changed` fires (at least every 50 ms).
async fn until(
    what: &str,
    changed: &Notify,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if done()? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        let _ = tokio::time::timeout(Duration::from_millis(50), changed.notified()).await;
    }
}

/// Waits until each hub has its number of links, all connected.
async fn linked(hubs: &[(&TestHub, usize)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let up = hubs.iter().all(|(hub, n)| {
            let links = hub.handle.federation_status().links;
            links.len() == *n && links.iter().all(|l| l.state.as_str() == "connected")
        });
        if up {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for links");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stores one episode at `engine` off the executor; returns its id.
async fn store_one(
    engine: &Arc<MemoryEngine>,
    tenant: &TenantId,
    e: NewEpisode,
) -> anyhow::Result<EpisodeId> {
    let (engine, tenant) = (Arc::clone(engine), tenant.clone());
    Ok(
        tokio::task::spawn_blocking(move || engine.store(&tenant, e))
            .await??
            .id,
    )
}

/// A UDP relay on loopback in front of `target` that holds every datagram `delay` before
/// passing it on, both ways. Each client address gets its own socket towards the target (so the
/// target sees one peer per client); datagrams keep their boundaries and their order. Stops
/// when dropped.
struct DelayRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Delayed = mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>)>;

/// Sends what arrives on the returned channel with `send`, each datagram at its due time.
fn delivery<F, Fut>(tasks: &mut JoinSet<()>, send: F) -> Delayed
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tasks.spawn(async move {
        while let Some((due, datagram)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            send(datagram).await;
        }
    });
    tx
}

impl DelayRelay {
    async fn start(target: SocketAddr, delay: Duration) -> anyhow::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            let mut clients: HashMap<SocketAddr, Delayed> = HashMap::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                let due = tokio::time::Instant::now() + delay;
                let to_target = match clients.entry(client) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        let Ok(back) = Self::towards(target).await else {
                            continue;
                        };
                        e.insert(Self::client(&mut tasks, &front, back, client, delay))
                    }
                };
                let _ = to_target.send((due, buf[..n].to_vec()));
            }
        });
        Ok(Self { addr, task })
    }

    /// Relays between `client` and the target through `back`; returns where to put the
    /// client's datagrams.
    fn client(
        tasks: &mut JoinSet<()>,
        front: &Arc<UdpSocket>,
        back: Arc<UdpSocket>,
        client: SocketAddr,
        delay: Duration,
    ) -> Delayed {
        let f = Arc::clone(front);
        let to_client = delivery(tasks, move |d| {
            let f = Arc::clone(&f);
            async move {
                let _ = f.send_to(&d, client).await;
            }
        });
        let b = Arc::clone(&back);
        let to_target = delivery(tasks, move |d| {
            let b = Arc::clone(&b);
            async move {
                let _ = b.send(&d).await;
            }
        });
        tasks.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match back.recv(&mut buf).await {
                    Ok(n) => {
                        let due = tokio::time::Instant::now() + delay;
                        if to_client.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    // The target's port was closed for a while (ICMP).
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(_) => return,
                }
            }
        });
        to_target
    }

    async fn towards(target: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(target).await?;
        Ok(Arc::new(back))
    }

    fn url(&self) -> String {
        format!("quic://{}", self.addr)
    }
}

/// The URL an edge dials to reach `hub`: the hub itself, or a delay relay in front of it.
async fn upstream(hub: &TestHub, delay: Duration) -> anyhow::Result<(String, Option<DelayRelay>)> {
    if delay.is_zero() {
        return Ok((hub.url(), None));
    }
    let relay = DelayRelay::start(hub.handle.quic_addr(), delay).await?;
    Ok((relay.url(), Some(relay)))
}

/// Episode `i` of a latency run, with an id chosen here (so that it is known before the write).
fn identified(rng: &mut Rng, i: usize) -> NewEpisode {
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&rng.next().to_le_bytes());
    let ms = agentdb_memory::SystemClock::unix_ms();
    episode(rng, i).with_id(EpisodeId::from_parts(ms, random))
}

/// One latency run: global, eu and us (both with upstream global), `delay` one way on each
/// link. A writer stores one episode at a time at eu, one every `sizes.spacing`; each is timed
/// from its store call until us can read it.
async fn propagation(sizes: Sizes, delay: Duration, run: usize) -> anyhow::Result<Run> {
    let pki = TestPki::new();
    let tenant = tenant()?;
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let global = TestHub::start(
        federated_hub_config(&pki, "global", "global", fed(None)),
        dirs[0].path(),
    )
    .await;
    let (eu_up, _eu_relay) = upstream(&global, delay).await?;
    let (us_up, _us_relay) = upstream(&global, delay).await?;
    let eu = TestHub::start(
        federated_hub_config(&pki, "eu", "eu", fed(Some(eu_up))),
        dirs[1].path(),
    )
    .await;
    let us = TestHub::start(
        federated_hub_config(&pki, "us", "us", fed(Some(us_up))),
        dirs[2].path(),
    )
    .await;
    linked(&[(&global, 2), (&eu, 1), (&us, 1)]).await?;
    let at_us = on_change(us.handle.engine());
    let (eu_engine, us_engine) = (
        Arc::clone(eu.handle.engine()),
        Arc::clone(us.handle.engine()),
    );
    let mut rng = Rng(0xfed0 + run as u64);

    // The first episode creates the tenant at every hub: not timed.
    let first = identified(&mut rng, 0);
    let id = first.id.context("an id")?;
    store_one(&eu_engine, &tenant, first).await?;
    until("the first episode at us", &at_us, || {
        Ok(us_engine.get(&tenant, &id)?.is_some())
    })
    .await?;

    // Written, not yet seen at us: (id, when its store call began).
    let pending: Arc<Mutex<Vec<(EpisodeId, Instant)>>> = Arc::default();
    let writer = {
        let (pending, tenant) = (Arc::clone(&pending), tenant.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(sizes.spacing);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in 1..=sizes.writes {
                every.tick().await;
                let e = identified(&mut rng, i);
                let id = e.id.context("an id")?;
                pending.lock().push((id, Instant::now()));
                store_one(&eu_engine, &tenant, e).await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let mut r = Run::new()?;
    let deadline = Instant::now() + PATIENCE;
    while (r.hist.len() as usize) < sizes.writes {
        let waiting = pending.lock().clone();
        let mut arrived = Vec::new();
        for (id, t0) in waiting {
            if us_engine.get(&tenant, &id)?.is_some() {
                r.hist.record(t0.elapsed().as_nanos() as u64)?;
                arrived.push(id);
            }
        }
        pending.lock().retain(|(id, _)| !arrived.contains(id));
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out waiting for episodes at us"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), at_us.notified()).await;
    }
    writer.await??;
    us.handle.shutdown().await;
    eu.handle.shutdown().await;
    global.handle.shutdown().await;
    Ok(r)
}

/// Stores `n` episodes at `engine` in batches of 1000, off the executor.
async fn fill(engine: &Arc<MemoryEngine>, tenant: &TenantId, n: usize) -> anyhow::Result<()> {
    let (engine, tenant) = (Arc::clone(engine), tenant.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut rng = Rng(0xf111);
        let mut i = 0;
        while i < n {
            let k = 1000.min(n - i);
            let batch: Vec<NewEpisode> = (i..i + k).map(|j| episode(&mut rng, j)).collect();
            engine.store_batch(&tenant, batch)?;
            i += k;
        }
        Ok(())
    })
    .await?
}

fn vv(engine: &MemoryEngine, tenant: &TenantId) -> anyhow::Result<VersionVector> {
    Ok(engine.version_vector(tenant)?)
}

/// Catch-up runs: a new hub B with upstream A (pre-filled with `sizes.episodes`), timed from
/// B's start until B's version vector equals A's. Returns ops/s per run.
async fn catch_up(sizes: Sizes, pb: &ProgressBar) -> anyhow::Result<Vec<f64>> {
    let pki = TestPki::new();
    let tenant = tenant()?;
    let dir_a = tempfile::tempdir()?;
    let a = TestHub::start(
        federated_hub_config(&pki, "a", "a", fed(None)),
        dir_a.path(),
    )
    .await;
    pb.set_message("pre-filling the upstream");
    fill(a.handle.engine(), &tenant, sizes.episodes).await?;
    // A's graph complete, so that its background indexer takes no CPU from the link.
    let engine = Arc::clone(a.handle.engine());
    tokio::task::spawn_blocking(move || engine.build_indexes()).await??;
    pb.inc(1);
    let target = vv(a.handle.engine(), &tenant)?;
    let mut rates = Vec::new();
    for _ in 0..sizes.runs {
        pb.set_message("replication catch-up");
        let dir_b = tempfile::tempdir()?;
        let started = Instant::now();
        let b = TestHub::start(
            federated_hub_config(&pki, "b", "b", fed(Some(a.url()))),
            dir_b.path(),
        )
        .await;
        let at_b = on_change(b.handle.engine());
        let b_engine = Arc::clone(b.handle.engine());
        until("B to catch up", &at_b, || {
            Ok(vv(&b_engine, &tenant)? == target)
        })
        .await?;
        rates.push(target.total() as f64 / started.elapsed().as_secs_f64());
        b.handle.shutdown().await;
        pb.inc(1);
    }
    a.handle.shutdown().await;
    Ok(rates)
}

/// What one live run measured.
#[derive(Debug)]
struct Live {
    /// Ops B applied per second while the writers stored.
    followed: f64,
    /// Ops A took per second.
    written: f64,
    /// Ops A held that B did not when the writers stopped.
    lag: f64,
    /// From the writers' stop until B held everything, ms.
    drain_ms: f64,
}

/// A live run: A and B linked, `sizes.writers` writers store batches at A for `sizes.phase`
/// while B follows.
async fn live(sizes: Sizes, run: usize) -> anyhow::Result<Live> {
    let pki = TestPki::new();
    let tenant = tenant()?;
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = TestHub::start(
        federated_hub_config(&pki, "a", "a", fed(None)),
        dirs[0].path(),
    )
    .await;
    let b = TestHub::start(
        federated_hub_config(&pki, "b", "b", fed(Some(a.url()))),
        dirs[1].path(),
    )
    .await;
    linked(&[(&a, 1), (&b, 1)]).await?;
    let (a_engine, b_engine) = (Arc::clone(a.handle.engine()), Arc::clone(b.handle.engine()));
    let at_b = on_change(&b_engine);
    // Create the tenant at both hubs before the clock starts.
    let id = store_one(&a_engine, &tenant, episode(&mut Rng(0x11fe), 0)).await?;
    until("the first episode at B", &at_b, || {
        Ok(b_engine.get(&tenant, &id)?.is_some())
    })
    .await?;

    let (a0, b0) = (
        vv(&a_engine, &tenant)?.total(),
        vv(&b_engine, &tenant)?.total(),
    );
    let deadline = Instant::now() + sizes.phase;
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..sizes.writers {
        let (engine, tenant) = (Arc::clone(&a_engine), tenant.clone());
        let mut rng = Rng(0x2000 + (run * sizes.writers + w) as u64);
        let batch = sizes.batch;
        writers.push(tokio::task::spawn_blocking(
            move || -> anyhow::Result<()> {
                let mut n = 0;
                while Instant::now() < deadline {
                    let episodes: Vec<NewEpisode> =
                        (n..n + batch).map(|j| episode(&mut rng, j)).collect();
                    engine.store_batch(&tenant, episodes)?;
                    n += batch;
                }
                Ok(())
            },
        ));
    }
    for w in writers {
        w.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (a1, b1) = (vv(&a_engine, &tenant)?, vv(&b_engine, &tenant)?);
    let stopped = Instant::now();
    until("B to drain", &at_b, || Ok(vv(&b_engine, &tenant)? == a1)).await?;
    let drain_ms = stopped.elapsed().as_secs_f64() * 1e3;
    b.handle.shutdown().await;
    a.handle.shutdown().await;
    Ok(Live {
        followed: (b1.total() - b0) as f64 / elapsed,
        written: (a1.total() - a0) as f64 / elapsed,
        lag: a1.lead_over(&b1) as f64,
        drain_ms,
    })
}

/// Runs every measure `sizes.runs` times and returns the table.
pub async fn run(sizes: Sizes, pb: &ProgressBar) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    for delay in [Duration::ZERO, sizes.delay] {
        let mut runs = Vec::new();
        for run in 0..sizes.runs {
            pb.set_message(format!("propagation, +{} ms", delay.as_millis()));
            runs.push(propagation(sizes, delay, run).await?);
            pb.inc(1);
        }
        let (p50, p99, _) = summarize(&runs);
        // The path eu → global → us crosses two links.
        let injected_ms = 2.0 * delay.as_secs_f64() * 1e3;
        let target_ms = 1000.0 + injected_ms;
        rows.push(Row {
            measure: if delay.is_zero() {
                "propagation eu → global → us, loopback".into()
            } else {
                format!(
                    "propagation eu → global → us, +{} ms one-way/link",
                    delay.as_millis()
                )
            },
            target: format!("p99 < {target_ms:.0} ms"),
            p50_ms: p50,
            p99_ms: p99,
            per_sec: f64::NAN,
            met: p99 < target_ms,
            note: format!(
                "{} episodes stored one at a time at eu, one every {} ms; each timed from its store \
                 call at eu (fsynced) until us reads it (woken by us's change listener); 2 links{}",
                sizes.writes,
                sizes.spacing.as_millis(),
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(
                        ", each through a UDP relay delaying every datagram {} ms each way: \
                         ≥ {injected_ms:.0} ms added",
                        delay.as_millis()
                    )
                }
            ),
        });
    }

    let mut rates = catch_up(sizes, pb).await?;
    let rate = median(&mut rates);
    rows.push(Row {
        measure: format!("replication catch-up A → B, {} episodes", sizes.episodes),
        target: "≥ 20000 ops/s".into(),
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        per_sec: rate,
        met: rate >= 20_000.0,
        note:
            "A pre-filled (and its vector graph built) before B starts; timed from B's start \
               (QUIC+TLS connect included) until B's version vector equals A's; ops_since → wire → \
               apply_ops, one fsync per page; B builds its vector graph in the background meanwhile"
                .into(),
    });

    let mut runs = Vec::new();
    for run in 0..sizes.runs {
        pb.set_message("live replication");
        runs.push(live(sizes, run).await?);
        pb.inc(1);
    }
    let mid = |f: fn(&Live) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let followed = mid(|l| l.followed);
    rows.push(Row {
        measure: format!("live replication A → B, {} writers at A", sizes.writers),
        target: "≥ 20000 ops/s".into(),
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        per_sec: followed,
        met: followed >= 20_000.0,
        note: format!(
            "ops B applied per second during {} s of writes (batches of {}); A took {:.0} ops/s; \
             lag when the writers stopped {:.0} ops, drained in {:.0} ms",
            sizes.phase.as_secs(),
            sizes.batch,
            mid(|l| l.written),
            mid(|l| l.lag),
            mid(|l| l.drain_ms)
        ),
    });
    Ok(rows)
}

/// The 1-, 5- and 15-minute load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn cell(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// Prints the table (or JSON).
pub fn print(
    rows: &[Row],
    sizes: Sizes,
    quick: bool,
    json: bool,
    machine: &str,
    load_before: &str,
) -> anyhow::Result<()> {
    let load_after = load();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine,
                "load_before": load_before,
                "load_after": load_after,
                "quick": quick,
                "runs": sizes.runs,
                "sync_interval_ms": SYNC_INTERVAL.as_millis() as u64,
                "rows": rows,
            }))
            .context("JSON")?
        );
        return Ok(());
    }
    println!(
        "agentdb federation benchmark ({} mode, medians of {} run{}) — {machine}",
        if quick { "quick" } else { "full" },
        sizes.runs,
        if sizes.runs == 1 { "" } else { "s" },
    );
    println!(
        "load average before {load_before}, after {load_after}; hubs in one process, real QUIC \
         on 127.0.0.1; hierarchical; sync interval {} ms (new ops are pushed at once)",
        SYNC_INTERVAL.as_millis()
    );
    println!(
        "{:<52} {:>16} {:>9} {:>9} {:>10} {:>4}",
        "measure", "target", "p50 ms", "p99 ms", "ops/s", "met"
    );
    for r in rows {
        println!(
            "{:<52} {:>16} {:>9} {:>9} {:>10} {:>4}",
            r.measure,
            r.target,
            cell(r.p50_ms, 1),
            cell(r.p99_ms, 1),
            cell(r.per_sec, 0),
            if r.met { "yes" } else { "no" }
        );
    }
    println!("injected latency is one-way per link: eu → global → us crosses two links.");
    for r in rows {
        println!("  {}: {}", r.measure, r.note);
    }
    Ok(())
}
