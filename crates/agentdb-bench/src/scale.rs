//! Scale probes: hub memory per idle connected agent (the hub runs as its own `agentdb hub`
//! process, so its RSS is its own), many tenants, and many memories in one tenant. Figures beyond
//! what this machine holds are extrapolated linearly from the measured per-unit cost, and the
//! output says so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{AgentId, Embedding, EpisodeId, ModelId, NewEpisode, TenantId};
use agentdb_memory::{
    EngineConfig, Filter, LexicalEmbedder, MemoryEngine, Query, RedbStorage, DB_FILE,
};
use agentdb_proto::{decode_response, Hello, Request, Response, MAX_FRAME_LEN};
use agentdb_security::token::{TokenIssuer, TokenRequest};
use anyhow::Context as _;
use indicatif::ProgressBar;

use crate::data::{episode, query, Rng};
use crate::stats::Run;

/// Resident set size of `pid` in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// An `agentdb hub` child process; killed on drop.
struct HubProcess {
    child: Child,
    quic: std::net::SocketAddr,
    dev: PathBuf,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_hub(dir: &Path, max_agents: usize) -> anyhow::Result<HubProcess> {
    let exe = std::env::current_exe()?
        .parent()
        .context("no exe dir")?
        .join("agentdb");
    anyhow::ensure!(
        exe.exists(),
        "{} not found: build it with `cargo build --release -p agentdb-cli`",
        exe.display()
    );
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!("[limits]\nmax_agents = {max_agents}\nmax_agents_per_tenant = {max_agents}\nidle_timeout_secs = 600\n"),
    )?;
    let mut child = Command::new(exe)
        .args(["hub", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.join("data"))
        .args(agentdb_testkit::FREE_PORT_ARGS)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let quic = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("quic="))
        .context("no quic= in the hub's first line")?
        .parse()?;
    Ok(HubProcess {
        child,
        quic,
        dev: dir.join("data").join("dev"),
    })
}

/// Hub RSS per idle, authenticated agent connection, for each count in `counts`.
pub async fn connections(counts: &[usize], pb: &ProgressBar) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for &n in counts {
        let dir = tempfile::tempdir()?;
        let hub = start_hub(dir.path(), n + 10)?;
        let read = |f: &str| std::fs::read(hub.dev.join(f));
        let tls = agentdb_security::tls::client_config(
            &read("ca.pem")?,
            Some((&read("client.pem")?, &read("client.key")?)),
            agentdb_proto::ALPN,
        )?;
        let tls = Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?);
        let issuer = TokenIssuer::from_ed25519_pem(&read("signing.key")?)?;
        // The agents' socket, with buffers sized for bursts of handshakes as agents have it.
        let socket = agentdb_security::socket::quic_socket("127.0.0.1:0".parse()?)?;
        let runtime = quinn::default_runtime().context("no async runtime")?;
        let mut endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(20)));
        let mut client = quinn::ClientConfig::new(tls);
        client.transport_config(Arc::new(transport));
        endpoint.set_default_client_config(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss(hub.child.id())?;
        pb.set_message(format!("{n} idle agents"));
        let started = Instant::now();
        let mut conns = Vec::with_capacity(n);
        let tenant = TenantId::new("demo")?;
        for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
            let mut tasks = Vec::new();
            for &i in chunk {
                let ep = endpoint.clone();
                let token = issuer.issue(
                    &TokenRequest::new(tenant.clone(), AgentId::new(format!("idle-{i}"))?)
                        .ttl_secs(3600),
                    agentdb_memory::SystemClock::unix_secs(),
                )?;
                let addr = hub.quic;
                tasks.push(tokio::spawn(async move {
                    let conn = ep.connect(addr, "localhost")?.await?;
                    let (mut send, mut recv) = conn.open_bi().await?;
                    send.write_all(&Request::Hello(Hello::new(token)).encode())
                        .await?;
                    send.finish()?;
                    let answer = recv.read_to_end(MAX_FRAME_LEN).await?;
                    match decode_response(&answer, MAX_FRAME_LEN)? {
                        Response::Welcome(_) => Ok::<_, anyhow::Error>(conn),
                        other => anyhow::bail!("hub answered {other:?}"),
                    }
                }));
            }
            for t in tasks {
                conns.push(t.await??);
            }
        }
        let connect_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss(hub.child.id())?;
        let per = after.saturating_sub(before) as f64 / n as f64;
        // None was closed meanwhile (by the hub, a limit, or lost packets).
        let alive = conns.iter().filter(|c| c.close_reason().is_none()).count();
        let extrapolated = if n < 100_000 {
            format!(
                "; extrapolated to 100k agents: {:.2} GiB",
                per * 100_000.0 / 1073741824.0
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{n} idle agents (mTLS + token): hub RSS {:.1} MiB → {:.1} MiB, {:.1} KiB per agent; connected in {connect_secs:.1} s ({:.0} agents/s, 64 handshakes at a time); {alive} still connected after every connect{extrapolated}",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per / 1024.0,
            n as f64 / connect_secs,
        ));
        for c in conns {
            c.close(0u32.into(), b"done");
        }
        endpoint.close(0u32.into(), b"done");
        pb.inc(1);
    }
    Ok(out)
}

fn own_rss() -> u64 {
    rss(std::process::id()).unwrap_or(0)
}

/// Many tenants with a few memories each: RSS and query latency.
pub fn tenants(count: usize, per_tenant: usize, pb: &ProgressBar) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let before = own_rss();
    let engine = Arc::new(
        MemoryEngine::builder(
            Arc::new(RedbStorage::open(&dir.path().join(DB_FILE))?),
            agentdb_security::MasterKey::generate()?,
        )
        .open()?,
    );
    pb.set_message(format!("{count} tenants"));
    let started = Instant::now();
    // Eight writers so that tenant creation shares commits.
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let engine = Arc::clone(&engine);
                s.spawn(move || -> anyhow::Result<()> {
                    let mut rng = Rng(0x7e + w as u64);
                    for t in (w..count).step_by(8) {
                        let tenant = TenantId::new(format!("tenant-{t}"))?;
                        let batch = (0..per_tenant).map(|i| episode(&mut rng, i)).collect();
                        engine.store_batch(&tenant, batch)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })?;
    let load = started.elapsed().as_secs_f64();
    let after = own_rss();
    let mut r = Run::new()?;
    let mut rng = Rng(0x51);
    for _ in 0..5_000 {
        let tenant = TenantId::new(format!("tenant-{}", rng.next() % count as u64))?;
        let t0 = Instant::now();
        let found = engine.query(&tenant, &Query::text(query(&mut rng), 5))?;
        r.hist.record(t0.elapsed().as_nanos() as u64)?;
        anyhow::ensure!(found.len() == per_tenant.min(5));
    }
    pb.inc(1);
    Ok(format!(
        "{count} tenants × {per_tenant} episodes: loaded in {load:.1} s; process RSS +{:.1} MiB ({:.1} KiB per tenant); query k=5 on a random tenant p50 {:.3} ms, p99 {:.3} ms",
        after.saturating_sub(before) as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / count as f64 / 1024.0,
        r.ms(0.5),
        r.ms(0.99)
    ))
}

/// Many memories in one tenant: build time, index memory, query p99 and recall@10 vs exact.
pub fn memories(n: usize, pb: &ProgressBar) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let before = own_rss();
    let engine = MemoryEngine::builder(
        Arc::new(RedbStorage::open(&dir.path().join(DB_FILE))?),
        agentdb_security::MasterKey::generate()?,
    )
    .config(EngineConfig::default())
    .open()?;
    let tenant = TenantId::new("big")?;
    let embedder = LexicalEmbedder::new();
    let model = ModelId::new(LexicalEmbedder::MODEL)?;
    pb.set_message(format!("{n} memories"));
    let mut rng = Rng(0xb16);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let k = 1000.min(n - i);
        let batch: Vec<NewEpisode> = (i..i + k)
            .map(|j| {
                let e = episode(&mut rng, j);
                let v = embedder.embed_text(&format!("{}\n{}", e.task, e.input));
                e.with_id(EpisodeId::from_parts(j as u64 + 1, [0; 10]))
                    .with_embedding(Embedding {
                        model: model.clone(),
                        vector: v,
                    })
            })
            .collect();
        engine.store_batch(&tenant, batch)?;
        i += k;
    }
    let stored = started.elapsed().as_secs_f64();
    let started = Instant::now();
    engine.build_indexes()?;
    let built = started.elapsed().as_secs_f64();
    let after = own_rss();
    let index = engine.index(&tenant).context("index")?;
    let graph = index.graph_memory();
    let flat = n * index.dimensions() * 4;
    let mut r = Run::new()?;
    let (mut hit, mut total) = (0usize, 0usize);
    let queries: Vec<Vec<f32>> = (0..300)
        .map(|_| embedder.embed_text(&query(&mut rng)))
        .collect();
    for q in &queries {
        let t0 = Instant::now();
        let got = index.search(&model, q, 10, &Filter::default())?;
        r.hist.record(t0.elapsed().as_nanos() as u64)?;
        let exact = index.exact_search(&model, q, 10, &Filter::default())?;
        total += exact.len();
        hit += got
            .iter()
            .filter(|g| exact.iter().any(|e| e.id == g.id))
            .count();
    }
    pb.inc(1);
    let per_vector = (graph + flat) as f64 / n as f64;
    Ok(format!(
        "{n} memories in one tenant: stored (durable, encrypted) in {stored:.1} s, HNSW built in {built:.1} s; graph {:.0} MiB + f32 vectors {:.0} MiB ({per_vector:.0} B per memory); process RSS +{:.0} MiB; vector search k=10 p50 {:.3} ms, p99 {:.3} ms, recall@10 vs exact {:.3} (300 queries); extrapolated to 100M memories: {:.0} GiB of index memory at {per_vector:.0} B each (linear model: graph + f32 vectors; one tenant per hub shard)",
        graph as f64 / 1048576.0,
        flat as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1048576.0,
        r.ms(0.5),
        r.ms(0.99),
        hit as f64 / total.max(1) as f64,
        per_vector * 1e8 / 1073741824.0
    ))
}
