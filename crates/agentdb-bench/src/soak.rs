//! Soak: a real `agentdb hub` process under many concurrent agents that spawn, recall, store and
//! are destroyed, over and over, for minutes. Per interval: operations, errors, latency
//! percentiles and the hub's resident memory; at the end the totals, p99 over time and the slope
//! of the hub's RSS (least squares over all samples).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::EphemeralAgent;
use agentdb_core::{EpisodeId, TenantId};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::crash::{hub_binary, rss_kib, store_acknowledged, DevCredentials, HubProcess};
use crate::data::{episode, query, Rng};

/// Settings of a soak.
#[derive(Debug, Clone)]
pub struct Options {
    pub agents: usize,
    pub duration: Duration,
    pub interval: Duration,
    pub tenants: usize,
    pub seed: u64,
    /// Distinct episodes per agent slot (then stores repeat ids); `None`: every store is new.
    pub working_set: Option<usize>,
    /// Lifetime of the agents' tokens (a destroyed agent's token stays revoked until then).
    pub token_ttl_secs: u64,
    pub hub_bin: Option<PathBuf>,
}

/// Most tasks (a recall and a store) one agent runs before it is destroyed.
const MAX_TASKS: u64 = 10;
/// Episodes an agent keeps from what it reads.
const READ_CACHE: usize = 100;
/// How often the hub's RSS is sampled for the slope.
const RSS_EVERY: Duration = Duration::from_secs(5);

const KINDS: [&str; 4] = ["spawn", "store", "query", "destroy"];

/// Latencies (µs) and errors of one interval, per kind of operation.
struct Window {
    hist: [Histogram<u64>; 4],
    errors: u64,
}

impl Window {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hist: [
                Histogram::new(3)?,
                Histogram::new(3)?,
                Histogram::new(3)?,
                Histogram::new(3)?,
            ],
            errors: 0,
        })
    }

    fn all(&self) -> anyhow::Result<Histogram<u64>> {
        let mut h = Histogram::new(3)?;
        for k in &self.hist {
            h.add(k)?;
        }
        Ok(h)
    }
}

struct Shared {
    window: Mutex<Window>,
    first_errors: Mutex<Vec<String>>,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn record(&self, kind: usize, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        let _ = self.window.lock().hist[kind].record(us.max(1));
    }

    fn error(&self, what: String) {
        self.window.lock().errors += 1;
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock();
        if first.len() < 10 {
            first.push(what);
        }
    }
}

/// One agent slot: spawn an agent, run 1..=MAX_TASKS tasks (recall k=5, store one episode),
/// destroy it; again until stopped.
async fn worker(
    w: usize,
    shared: Arc<Shared>,
    creds: Arc<DevCredentials>,
    url: String,
    tenant: TenantId,
    seed: u64,
    working_set: Option<usize>,
) {
    let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut n = 0;
    while !shared.stop.load(Ordering::Acquire) {
        let config = match creds.agent_config(&url, &tenant) {
            Ok(mut c) => {
                c.read_cache = READ_CACHE;
                c
            }
            Err(e) => {
                shared.error(format!("config: {e:#}"));
                return;
            }
        };
        let t0 = Instant::now();
        let agent = match EphemeralAgent::spawn(config).await {
            Ok(a) if a.welcome().is_some() => a,
            Ok(_) => {
                shared.error("spawn: the agent did not connect".into());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                shared.error(format!("spawn: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        shared.record(0, t0);
        let tasks = 1 + rng.next() % MAX_TASKS;
        for _ in 0..tasks {
            if shared.stop.load(Ordering::Acquire) {
                break;
            }
            let t0 = Instant::now();
            match agent.query_memories(&query(&mut rng), 5).await {
                Ok(r) if r.source == agentdb_client::Source::Hub => shared.record(2, t0),
                Ok(_) => shared.error("query: answered from the local cache only".into()),
                Err(e) => shared.error(format!("query: {e}")),
            }
            let e = match working_set {
                // The same slot, the same index: the same id and content, so a repeat is an
                // idempotent store of what the hub holds.
                Some(set) => {
                    let i = n % set;
                    let mut random = [0u8; 10];
                    random[..4].copy_from_slice(&(w as u32).to_be_bytes());
                    random[4..8].copy_from_slice(&(i as u32).to_be_bytes());
                    let id = EpisodeId::from_parts(seed & 0xFFFF_FFFF, random);
                    episode(&mut Rng(seed ^ ((w as u64) << 32 | i as u64) | 1), i).with_id(id)
                }
                None => episode(&mut rng, n),
            };
            n += 1;
            let t0 = Instant::now();
            match store_acknowledged(&agent, e).await {
                Ok(true) => shared.record(1, t0),
                Ok(false) => shared.error("store: not acknowledged by the hub".into()),
                Err(e) => shared.error(format!("store: {e}")),
            }
        }
        let t0 = Instant::now();
        match agent.destroy().await {
            Ok(()) => shared.record(3, t0),
            Err(e) => shared.error(format!("destroy: {e}")),
        }
    }
}

/// The hub's live episode count from `GET /health`.
async fn health_episodes(http: std::net::SocketAddr) -> Option<u64> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        let json = &body[body.find("\r\n\r\n")? + 4..];
        let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
        v.get("episodes")?.as_u64()
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the soak; fails on any error or if the hub died.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.agents > 0 && opts.tenants > 0,
        "need agents and tenants"
    );
    let bin = hub_binary(opts.hub_bin.clone())?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut hub = tokio::task::block_in_place(|| {
        HubProcess::start(&bin, &data, None, &dir.path().join("hub.log"))
    })?;
    let creds = Arc::new(DevCredentials::load(
        &data.join("dev"),
        opts.token_ttl_secs,
    )?);
    println!(
        "soak: {} agents over {} tenants for {:.0} s (report every {:.0} s), hub {} pid {} — {}",
        opts.agents,
        opts.tenants,
        opts.duration.as_secs_f64(),
        opts.interval.as_secs_f64(),
        bin.display(),
        hub.pid(),
        crate::machine()
    );
    println!("each agent: spawn (mTLS, token, keeps up to {READ_CACHE} episodes it reads), 1–{MAX_TASKS} tasks of (recall k=5, store 1 episode acknowledged), destroy; again until the end");
    if let Some(set) = opts.working_set {
        println!(
            "working set: {set} distinct episodes per agent slot ({} in all), then stores repeat ids",
            set * opts.agents
        );
    }

    let shared = Arc::new(Shared {
        window: Mutex::new(Window::new()?),
        first_errors: Mutex::new(Vec::new()),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let tenants: Vec<TenantId> = (0..opts.tenants)
        .map(|i| TenantId::new(format!("soak-{i}")))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let mut workers = Vec::with_capacity(opts.agents);
    for w in 0..opts.agents {
        workers.push(tokio::spawn(worker(
            w,
            Arc::clone(&shared),
            Arc::clone(&creds),
            hub.url(),
            tenants[w % tenants.len()].clone(),
            opts.seed,
            opts.working_set,
        )));
    }

    let mut total = Window::new()?;
    let own = std::process::id();
    let mut rss_points: Vec<(f64, f64)> = vec![(0.0, rss_kib(hub.pid())? as f64)];
    let mut own_points: Vec<(f64, f64)> = vec![(0.0, rss_kib(own)? as f64)];
    let mut p99s = Vec::new();
    let mut next_rss = start + RSS_EVERY;
    let mut next_report = start + opts.interval;
    let end = start + opts.duration;
    let mut last_report = start;
    let mut hub_died = false;
    loop {
        let now = Instant::now();
        let wake = next_rss.min(next_report).min(end);
        if wake > now {
            tokio::time::sleep(wake - now).await;
        }
        let now = Instant::now();
        if !hub.running() {
            hub_died = true;
            break;
        }
        if now >= next_rss {
            let minutes = now.duration_since(start).as_secs_f64() / 60.0;
            rss_points.push((minutes, rss_kib(hub.pid())? as f64));
            own_points.push((minutes, rss_kib(own)? as f64));
            next_rss += RSS_EVERY;
        }
        if now >= next_report || now >= end {
            let window = std::mem::replace(&mut *shared.window.lock(), Window::new()?);
            let all = window.all()?;
            let secs = now.duration_since(last_report).as_secs_f64();
            last_report = now;
            let rss = rss_kib(hub.pid())?;
            let episodes = health_episodes(hub.http)
                .await
                .map_or_else(|| "?".into(), |n| n.to_string());
            let per_kind: Vec<String> = KINDS
                .iter()
                .zip(&window.hist)
                .map(|(k, h)| format!("{k} {:.1}", ms(h, 0.99)))
                .collect();
            println!(
                "[{:>5.0} s] ops {:>7} ({:>5.0}/s) errors {} p50 {:.2} ms p99 {:.2} ms (p99 {} ms) | hub RSS {:.1} MiB, bench RSS {:.1} MiB, episodes {}",
                now.duration_since(start).as_secs_f64(),
                all.len(),
                all.len() as f64 / secs.max(1e-9),
                window.errors,
                ms(&all, 0.5),
                ms(&all, 0.99),
                per_kind.join(", "),
                rss as f64 / 1024.0,
                rss_kib(own).unwrap_or(0) as f64 / 1024.0,
                episodes
            );
            p99s.push(ms(&all, 0.99));
            for (t, w) in total.hist.iter_mut().zip(&window.hist) {
                t.add(w)?;
            }
            total.errors += window.errors;
            next_report += opts.interval;
        }
        if now >= end {
            break;
        }
    }
    shared.stop.store(true, Ordering::Release);
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        for w in workers {
            let _ = w.await;
        }
    })
    .await
    .is_ok();
    // What finished after the last report.
    let tail = std::mem::replace(&mut *shared.window.lock(), Window::new()?);
    for (t, w) in total.hist.iter_mut().zip(&tail.hist) {
        t.add(w)?;
    }
    total.errors += tail.errors;
    let end_rss = rss_kib(hub.pid()).unwrap_or(0);
    let episodes = health_episodes(hub.http).await;

    let all = total.all()?;
    let elapsed = start.elapsed().as_secs_f64();
    let half = rss_points.last().map_or(0.0, |p| p.0) / 2.0;
    let late = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
        points.iter().copied().filter(|p| p.0 >= half).collect()
    };
    println!(
        "total: {} ops in {:.0} s ({:.0}/s), {} errors; p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed,
        shared.errors.load(Ordering::Relaxed),
        ms(&all, 0.5),
        ms(&all, 0.99),
        ms(&all, 1.0)
    );
    for (k, h) in KINDS.iter().zip(&total.hist) {
        println!(
            "  {k:<8} {:>8} ops  p50 {:>7.2} ms  p99 {:>7.2} ms",
            h.len(),
            ms(h, 0.5),
            ms(h, 0.99)
        );
    }
    let p99_text: Vec<String> = p99s.iter().map(|p| format!("{p:.1}")).collect();
    println!("p99 per interval (ms): {}", p99_text.join(", "));
    let per_episode = episodes.map_or_else(
        || "?".into(),
        |n| {
            format!(
                "{:.1}",
                (end_rss as f64 - rss_points[0].1) / n.max(1) as f64
            )
        },
    );
    println!(
        "hub RSS: {:.1} MiB at start, {:.1} MiB at the end; slope {:.0} KiB/min over the run, {:.0} KiB/min over its second half ({} samples); episodes held at the end: {} ({per_episode} KiB of RSS growth per episode held)",
        rss_points[0].1 / 1024.0,
        end_rss as f64 / 1024.0,
        slope(&rss_points),
        slope(&late(&rss_points)),
        rss_points.len(),
        episodes.map_or_else(|| "?".into(), |n| n.to_string())
    );
    println!(
        "bench process (the agents) RSS: {:.1} MiB at start, {:.1} MiB at the end; slope {:.0} KiB/min over the run, {:.0} KiB/min over its second half",
        own_points[0].1 / 1024.0,
        own_points.last().map_or(0.0, |p| p.1) / 1024.0,
        slope(&own_points),
        slope(&late(&own_points))
    );
    let errors = shared.errors.load(Ordering::Relaxed);
    for e in shared.first_errors.lock().iter() {
        println!("  error: {e}");
    }
    anyhow::ensure!(
        !hub_died,
        "the hub process died; its log: {}",
        hub.log_tail()
    );
    anyhow::ensure!(drained, "agents did not finish within 60 s of the end");
    anyhow::ensure!(errors == 0, "{errors} operations failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn least_squares_slope() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 6.0)]), 0.0);
    }
}
