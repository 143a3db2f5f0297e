//! The hub's two front doors side by side: QUIC (the agents' protocol, driven by real
//! `EphemeralAgent`s) and the HTTPS/JSON gateway (TLS 1.3 with a client certificate, HTTP/1.1,
//! bearer token on every request), against one in-process hub and one tenant's data.
//!
//! Every benchmark client is real and keeps one connection for the whole benchmark: an agent (one QUIC
//! connection, one bi-stream per request) or one keep-alive HTTP/1.1 connection (hyper's
//! client connection, requests one after another on it). For each transport, each concurrency
//! (1 client, then 100 clients as 100 tokio tasks) and each operation (store one episode with a
//! client-chosen id; text query, k = 10), a fixed number of requests is timed one by one; the
//! rate is requests ÷ wall time of the phase.
//!
//! Order: every query run comes first, so every query phase of both transports searches
//! exactly the preloaded data; then the store runs, each store phase followed (untimed) by the
//! graph taking its episodes, so no phase pays for the previous one's indexing. The transport
//! that goes first alternates from run to run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::EphemeralAgent;
use agentdb_core::{EpisodeId, NewEpisode, TenantId};
use agentdb_memory::SystemClock;
use agentdb_testkit::{hub_config, TestHub, TestPki};
use anyhow::{bail, ensure, Context as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::data::{episode, query, Rng};
use crate::stats::{summarize, Run};

/// The tenant every client works for.
const TENANT: &str = "bench";
/// Matches asked for by every query.
const K: usize = 10;
/// Longest any one HTTPS step (connect, handshake, answer) may take.
const STEP: Duration = Duration::from_secs(20);
/// HTTPS p50 and p99 at one client may be at most this many times QUIC's.
const LATENCY_TARGET: f64 = 1.5;
/// HTTPS requests per second at many clients must be at least this share of QUIC's.
const RATE_TARGET: f64 = 0.8;

/// Sizes of one benchmark pass.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Episodes in the tenant before anything is timed.
    pub preload: usize,
    /// Requests per phase (one transport, one operation, one concurrency), spread evenly over
    /// the phase's clients.
    pub ops: usize,
    /// Clients of the concurrent phases.
    pub clients: usize,
    /// Runs of every phase (medians reported).
    pub runs: usize,
}

impl Sizes {
    pub const QUICK: Sizes = Sizes {
        preload: 1_000,
        ops: 200,
        clients: 100,
        runs: 1,
    };
    pub const FULL: Sizes = Sizes {
        preload: 2_000,
        ops: 2_000,
        clients: 100,
        runs: 5,
    };
}

/// Number of progress steps of [`run`].
pub fn steps(sizes: Sizes) -> u64 {
    (sizes.runs * 8) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Transport {
    Quic,
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Store,
    Query,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Query => "query",
        }
    }
}

/// One transport's figures for one row (medians over runs).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Side {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub per_sec: f64,
}

/// One line of the table: an operation at a concurrency, both transports and the ratios.
#[derive(Debug, Serialize)]
pub struct Row {
    pub op: &'static str,
    pub clients: usize,
    pub quic: Side,
    pub https: Side,
    /// HTTPS p50 ÷ QUIC p50.
    pub p50_ratio: f64,
    /// HTTPS p99 ÷ QUIC p99.
    pub p99_ratio: f64,
    /// HTTPS rate ÷ QUIC rate.
    pub rate_ratio: f64,
    /// The target of this row, if it has one.
    pub target: Option<String>,
    /// Whether the target is met (`None` without a target).
    pub met: Option<bool>,
}

/// What [`run`] measured, and how.
#[derive(Debug, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    pub preload: usize,
    pub ops: usize,
    pub runs: usize,
    /// Reconnections of HTTPS clients whose connection the hub closed (0 expected).
    pub https_reconnects: usize,
    pub http_version: &'static str,
}

/// A keep-alive HTTP/1.1 connection to the gateway over TLS with a client certificate.
struct HttpsClient {
    addr: SocketAddr,
    tls: TlsConnector,
    sender: SendRequest<Full<Bytes>>,
    auth: HeaderValue,
    host: HeaderValue,
    reconnects: usize,
}

impl HttpsClient {
    async fn connect(addr: SocketAddr, tls: TlsConnector, token: &str) -> anyhow::Result<Self> {
        let sender = Self::open(addr, &tls).await?;
        Ok(Self {
            addr,
            tls,
            sender,
            auth: HeaderValue::from_str(&format!("Bearer {token}"))?,
            host: HeaderValue::from_str(&format!("localhost:{}", addr.port()))?,
            reconnects: 0,
        })
    }

    /// TCP, TLS, HTTP/1.1 handshake; the connection is driven by its own task.
    async fn open(
        addr: SocketAddr,
        tls: &TlsConnector,
    ) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost")?.to_owned();
        let stream = tokio::time::timeout(STEP, tls.connect(name, tcp))
            .await
            .context("TLS handshake timed out")??;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// `POST path` with a JSON body on this connection: (status, body).
    async fn post(&mut self, path: &str, body: Vec<u8>) -> anyhow::Result<(u16, Bytes)> {
        if self.sender.is_closed() {
            self.sender = Self::open(self.addr, &self.tls).await?;
            self.reconnects += 1;
        }
        self.sender.ready().await?;
        let request = hyper::Request::post(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = tokio::time::timeout(STEP, self.sender.send_request(request))
            .await
            .context("no answer in time")??;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(STEP, response.into_body().collect())
            .await
            .context("the body did not arrive in time")??
            .to_bytes();
        Ok((status, body))
    }
}

/// The parts of a `/v1/query` answer a client reads, typed as a client would declare them
/// (the QUIC client decodes its answer into typed episodes too).
#[derive(Debug, Deserialize)]
struct QueryAnswer {
    matches: Vec<MatchAnswer>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded as a client would; the benchmark only counts the matches.
struct MatchAnswer {
    score: f32,
    episode: EpisodeAnswer,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // As above.
struct EpisodeAnswer {
    id: EpisodeId,
    agent: Option<String>,
    task: String,
    input: String,
    output: String,
    reward: f64,
    critique: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: serde_json::Value,
    created_ms: u64,
}

/// One benchmark client: a real agent, or a real gateway connection.
enum Client {
    Quic(EphemeralAgent),
    Https(Box<HttpsClient>),
}

impl Client {
    /// Stores `e` (which carries its id); checks the hub took it as new.
    async fn store(&mut self, e: NewEpisode) -> anyhow::Result<()> {
        let id = e.id.context("episodes carry their ids")?;
        match self {
            Client::Quic(agent) => {
                let stored = agent.store(e).await?;
                ensure!(
                    stored.id == id && stored.is_acknowledged(),
                    "store not acknowledged"
                );
            }
            Client::Https(c) => {
                let body = serde_json::to_vec(&serde_json::json!({
                    "id": id.to_string(),
                    "task": e.task,
                    "input": e.input,
                    "output": e.output,
                    "reward": e.reward,
                }))?;
                let (status, body) = c.post("/v1/episodes", body).await?;
                ensure!(
                    status == 201,
                    "store: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                ensure!(
                    v["results"][0]["id"].as_str() == Some(&id.to_string())
                        && v["results"][0]["inserted"] == true,
                    "store answered {v}"
                );
            }
        }
        Ok(())
    }

    /// A text query; returns the number of matches.
    async fn query(&mut self, text: String) -> anyhow::Result<usize> {
        match self {
            Client::Quic(agent) => Ok(agent.query_memories(&text, K).await?.memories.len()),
            Client::Https(c) => {
                let body = serde_json::to_vec(&serde_json::json!({"text": text, "k": K}))?;
                let (status, body) = c.post("/v1/query", body).await?;
                ensure!(
                    status == 200,
                    "query: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                let answer: QueryAnswer = serde_json::from_slice(&body)?;
                Ok(answer.matches.len())
            }
        }
    }

    fn reconnects(&self) -> usize {
        match self {
            Client::Quic(_) => 0,
            Client::Https(c) => c.reconnects,
        }
    }

    async fn close(self) {
        if let Client::Quic(agent) = self {
            let _ = agent.destroy().await;
        }
    }
}

/// Times `ops` requests of `op` spread over the first `n` of `clients`, all started together.
/// `seed` makes the queries and episodes: clients of the same seed ask the same queries.
async fn phase(
    clients: &mut Vec<Client>,
    n: usize,
    op: Op,
    ops: usize,
    seed: u64,
) -> anyhow::Result<Run> {
    let rest = clients.split_off(n);
    let working = std::mem::replace(clients, rest);
    let barrier = Arc::new(Barrier::new(working.len() + 1));
    let mut tasks = Vec::new();
    for (i, mut client) in working.into_iter().enumerate() {
        let count = ops / n + usize::from(i < ops % n);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut run = Run::new()?;
            let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)));
            barrier.wait().await;
            for j in 0..count {
                match op {
                    Op::Store => {
                        let e =
                            episode(&mut rng, j).with_id(rng.episode_id(SystemClock::unix_ms()));
                        let t0 = Instant::now();
                        client.store(e).await?;
                        run.hist.record(t0.elapsed().as_nanos() as u64)?;
                    }
                    Op::Query => {
                        let text = query(&mut rng);
                        let t0 = Instant::now();
                        let found = client.query(text).await?;
                        run.hist.record(t0.elapsed().as_nanos() as u64)?;
                        ensure!(found == K, "a query found {found} of {K}");
                    }
                }
            }
            Ok::<_, anyhow::Error>((client, run))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut total = Run::new()?;
    let mut back = Vec::new();
    for t in tasks {
        let (client, run) = t.await??;
        total.hist.add(&run.hist)?;
        back.push(client);
    }
    total.per_sec = total.hist.len() as f64 / started.elapsed().as_secs_f64();
    back.append(clients);
    *clients = back;
    Ok(total)
}

/// Starts the hub, preloads the tenant, connects `sizes.clients` clients of each transport and
/// runs every phase `sizes.runs` times.
pub async fn run(sizes: Sizes, pb: &ProgressBar) -> anyhow::Result<Report> {
    ensure!(
        sizes.ops > 0 && sizes.clients > 0 && sizes.runs > 0,
        "nothing to measure"
    );
    let pki = Arc::new(TestPki::new());
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(hub_config(&pki), dir.path()).await;
    let https_addr = hub
        .handle
        .https_addr()
        .context("the hub serves no HTTPS gateway")?;
    pb.set_message("loading episodes");
    let engine = Arc::clone(hub.handle.engine());
    let tenant = TenantId::new(TENANT)?;
    let mut rng = Rng(0x5eed);
    crate::seed::preload(&engine, &tenant, sizes.preload, &mut rng)?;

    pb.set_message("connecting clients");
    let (cert, key) = pki.tenant_cert(TENANT);
    let tls =
        agentdb_security::tls::client_config(&pki.ca_pem(), Some((&cert, &key)), b"http/1.1")?;
    let tls = TlsConnector::from(Arc::new(tls));
    let mut quic = Vec::new();
    let mut https = Vec::new();
    for i in 0..sizes.clients {
        quic.push(Client::Quic(crate::seed::agent(&hub, &pki, TENANT).await?));
        let token = pki.token(TENANT, &format!("https-{i}"), 3600);
        https.push(Client::Https(Box::new(
            HttpsClient::connect(https_addr, tls.clone(), &token).await?,
        )));
    }
    // One request each before anything is timed.
    for c in quic.iter_mut().chain(https.iter_mut()) {
        c.query("warm up".into()).await?;
    }

    let concurrency = [1, sizes.clients];
    let mut results: BTreeMap<(Op, usize, Transport), Vec<Run>> = BTreeMap::new();
    // Every query run first, on exactly the preloaded data; then the store runs.
    for op in [Op::Query, Op::Store] {
        for run in 0..sizes.runs {
            let order = if run % 2 == 0 {
                [Transport::Quic, Transport::Https]
            } else {
                [Transport::Https, Transport::Quic]
            };
            for (ci, &n) in concurrency.iter().enumerate() {
                for t in order {
                    pb.set_message(format!(
                        "{} {}, {n} client(s)",
                        transport_name(t),
                        op.name()
                    ));
                    let clients = match t {
                        Transport::Quic => &mut quic,
                        Transport::Https => &mut https,
                    };
                    // Same queries for both transports; distinct episodes everywhere.
                    let seed = match op {
                        Op::Query => 0x1000 + (run * 2 + ci) as u64,
                        Op::Store => 0x2000 + (run * 4 + ci * 2 + t as usize) as u64,
                    };
                    let r = phase(clients, n, op, sizes.ops, seed).await?;
                    results.entry((op, n, t)).or_default().push(r);
                    if op == Op::Store {
                        // The graph takes the phase's episodes now, untimed, rather than in
                        // the background during the next phase.
                        let engine = Arc::clone(&engine);
                        tokio::task::spawn_blocking(move || engine.build_indexes()).await??;
                    }
                    pb.inc(1);
                }
            }
        }
    }
    let https_reconnects = https.iter().map(Client::reconnects).sum();
    for c in quic.into_iter().chain(https) {
        c.close().await;
    }
    hub.handle.shutdown().await;

    let side = |key| -> anyhow::Result<Side> {
        let Some(runs) = results.get(&key) else {
            bail!("no runs of {key:?}");
        };
        let (p50_ms, p99_ms, per_sec) = summarize(runs);
        Ok(Side {
            p50_ms,
            p99_ms,
            per_sec,
        })
    };
    let mut rows = Vec::new();
    for &n in &concurrency {
        for op in [Op::Store, Op::Query] {
            let quic = side((op, n, Transport::Quic))?;
            let https = side((op, n, Transport::Https))?;
            let p50_ratio = https.p50_ms / quic.p50_ms;
            let p99_ratio = https.p99_ms / quic.p99_ms;
            let rate_ratio = https.per_sec / quic.per_sec;
            let (target, met) = if n == 1 {
                (
                    Some(format!("p50, p99 ≤ {LATENCY_TARGET}×")),
                    Some(p50_ratio <= LATENCY_TARGET && p99_ratio <= LATENCY_TARGET),
                )
            } else if n == sizes.clients {
                (
                    Some(format!("rate ≥ {RATE_TARGET}×")),
                    Some(rate_ratio >= RATE_TARGET),
                )
            } else {
                (None, None)
            };
            rows.push(Row {
                op: op.name(),
                clients: n,
                quic,
                https,
                p50_ratio,
                p99_ratio,
                rate_ratio,
                target,
                met,
            });
        }
    }
    Ok(Report {
        rows,
        preload: sizes.preload,
        ops: sizes.ops,
        runs: sizes.runs,
        https_reconnects,
        http_version: "HTTP/1.1",
    })
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Quic => "QUIC",
        Transport::Https => "HTTPS",
    }
}

/// Prints the table (or JSON).
pub fn print(
    report: &Report,
    quick: bool,
    json: bool,
    machine: &str,
    load_before: &str,
) -> anyhow::Result<()> {
    let load_after = crate::federation::load();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine,
                "load_before": load_before,
                "load_after": load_after,
                "quick": quick,
                "report": report,
            }))?
        );
        return Ok(());
    }
    println!(
        "agentdb gateway benchmark ({} mode, medians of {} run{}) — {machine}",
        if quick { "quick" } else { "full" },
        report.runs,
        if report.runs == 1 { "" } else { "s" },
    );
    println!(
        "load average before {load_before}, after {load_after}; one in-process hub on 127.0.0.1, \
         one tenant preloaded with {} episodes; {} requests per phase; QUIC: EphemeralAgent, one \
         connection each; HTTPS: mutual TLS, {} keep-alive, one connection each",
        report.preload, report.ops, report.http_version
    );
    println!(
        "{:<20} {:>26} {:>26} {:>20} {:>18} {:>4}",
        "", "QUIC", "HTTPS", "HTTPS ÷ QUIC", "", ""
    );
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>18} {:>4}",
        "measure",
        "p50 ms",
        "p99 ms",
        "req/s",
        "p50 ms",
        "p99 ms",
        "req/s",
        "p50",
        "p99",
        "rate",
        "target",
        "met"
    );
    for r in &report.rows {
        println!(
            "{:<20} {:>8.3} {:>8.3} {:>8.0} {:>8.3} {:>8.3} {:>8.0} {:>6.2} {:>6.2} {:>6.2} {:>18} {:>4}",
            format!(
                "{}, {} client{}",
                r.op,
                r.clients,
                if r.clients == 1 { "" } else { "s" }
            ),
            r.quic.p50_ms,
            r.quic.p99_ms,
            r.quic.per_sec,
            r.https.p50_ms,
            r.https.p99_ms,
            r.https.per_sec,
            r.p50_ratio,
            r.p99_ratio,
            r.rate_ratio,
            r.target.as_deref().unwrap_or(""),
            match r.met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            }
        );
    }
    println!(
        "store: one episode per request with a client id, acknowledged after fsync; query: text, \
         k = {K}. HTTPS reconnections: {}.",
        report.https_reconnects
    );
    Ok(())
}
