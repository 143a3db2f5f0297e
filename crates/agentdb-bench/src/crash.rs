//! Crash loop: a real `agentdb hub` process takes episodes from concurrent agents and is killed
//! with SIGKILL at a random (seeded) moment; restarted on the same data directory, it must hold
//! every episode it acknowledged, readable and equal to what was sent, and none twice.
//!
//! Also home of what the process benchmarks share: finding the `agentdb` binary, a hub child
//! process (killed on drop), the credentials of a dev-mode hub, and a bare protocol client.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::{AgentConfig, AgentError, EphemeralAgent, SigningKeyTokens, TokenProvider};
use agentdb_core::{AgentId, Episode, EpisodeId, NewEpisode, TenantId};
use agentdb_proto::{
    decode_response, Change, Hello, PullRequest, QueryInput, QueryRequest, Request, Response,
    MAX_FRAME_LEN,
};
use agentdb_security::ca::{CertificateAuthority, Subject};
use agentdb_security::token::{TokenIssuer, TokenRequest};
use anyhow::Context as _;
use parking_lot::Mutex;

use crate::data::{episode, Rng};

/// How long a hub may take to print its listening line.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// The `agentdb` binary: `explicit` if given, else the one next to this binary (the same
/// `target/<profile>/`), built with `cargo build -p agentdb-cli` in that profile when missing.
pub fn hub_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "{} is not a file", path.display());
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("this binary has no directory")?;
    let bin = dir.join(format!("agentdb{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        return Ok(bin);
    }
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "{} is missing; building it: cargo build{} -p agentdb-cli",
        bin.display(),
        if release { " --release" } else { "" }
    );
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "agentdb-cli", "--bin", "agentdb"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cannot run cargo")?;
    anyhow::ensure!(status.success(), "cargo build -p agentdb-cli failed");
    anyhow::ensure!(
        bin.is_file(),
        "{} still missing after the build; pass --hub-bin",
        bin.display()
    );
    Ok(bin)
}

/// An `agentdb hub` child process in dev mode on free loopback ports; killed on drop.
pub struct HubProcess {
    child: Child,
    /// The QUIC address from the listening line.
    pub quic: SocketAddr,
    /// The admin HTTP address from the listening line.
    pub http: SocketAddr,
    log: PathBuf,
}

impl HubProcess {
    /// Starts `bin hub --data DATA --quic 127.0.0.1:0 --http 127.0.0.1:0 [--config CONFIG]`
    /// with stderr to `log`, and waits for its listening line.
    pub fn start(
        bin: &Path,
        data: &Path,
        config: Option<&Path>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        for name in agentdb_testkit::AMBIENT_ENV {
            cmd.env_remove(name);
        }
        cmd.arg("hub");
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--data")
            .arg(data)
            .args(agentdb_testkit::FREE_PORT_ARGS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let rx = agentdb_testkit::first_line(stdout);
        let mut hub = Self {
            child,
            quic: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
        };
        let line = rx.recv_timeout(START_PATIENCE).unwrap_or_default();
        let field = |key: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
        };
        match (field("quic="), field("http=")) {
            (Some(quic), Some(http)) => {
                hub.quic = quic;
                hub.http = http;
            }
            _ => anyhow::bail!(
                "the hub did not start (first line {:?}); its log: {}",
                line.trim(),
                hub.log_tail()
            ),
        }
        Ok(hub)
    }

    /// `quic://ADDR`.
    pub fn url(&self) -> String {
        format!("quic://{}", self.quic)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines the hub wrote on stderr.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// A client certificate and its key, PEM.
type CertPair = (Vec<u8>, Vec<u8>);

/// What a dev-mode hub wrote under `DATA/dev`: its CA (to trust it and to issue tenant client
/// certificates, as `agentdb agent --dev` does) and its token signing key.
pub struct DevCredentials {
    ca: CertificateAuthority,
    issuer: TokenIssuer,
    tokens: Arc<dyn TokenProvider>,
    certs: Mutex<HashMap<TenantId, CertPair>>,
}

impl DevCredentials {
    /// The dev PKI in `dev`; agents' tokens live `token_ttl_secs`.
    pub fn load(dev: &Path, token_ttl_secs: u64) -> anyhow::Result<Self> {
        let ca = CertificateAuthority::load(dev)
            .with_context(|| format!("cannot load the dev CA from {}", dev.display()))?;
        let key = std::fs::read(dev.join("signing.key"))?;
        let issuer = TokenIssuer::from_ed25519_pem(&key)?;
        let tokens: Arc<dyn TokenProvider> = Arc::new(SigningKeyTokens::new(
            TokenIssuer::from_ed25519_pem(&key)?,
            token_ttl_secs,
        ));
        Ok(Self {
            ca,
            issuer,
            tokens,
            certs: Mutex::new(HashMap::new()),
        })
    }

    /// A tenant-wide client certificate for `tenant` (cert PEM, key PEM), issued once.
    pub fn tenant_cert(&self, tenant: &TenantId) -> anyhow::Result<CertPair> {
        if let Some(pair) = self.certs.lock().get(tenant) {
            return Ok(pair.clone());
        }
        let issued = self.ca.issue(
            &Subject::Tenant {
                tenant: tenant.clone(),
            },
            Duration::from_secs(24 * 3600),
            std::time::SystemTime::now().into(),
        )?;
        let pair = (
            issued.cert_pem().as_bytes().to_vec(),
            issued.key_pem().as_bytes().to_vec(),
        );
        self.certs.lock().insert(tenant.clone(), pair.clone());
        Ok(pair)
    }

    /// An agent of `tenant` for the hub at `url`, with mutual TLS and minted tokens.
    pub fn agent_config(&self, url: &str, tenant: &TenantId) -> anyhow::Result<AgentConfig> {
        let (cert, key) = self.tenant_cert(tenant)?;
        Ok(AgentConfig::new(
            tenant.clone(),
            url,
            self.ca.cert_pem().as_bytes().to_vec(),
            Arc::clone(&self.tokens),
        )
        .client_cert(cert, key))
    }
}

/// A bare protocol client: one authenticated connection, one stream per request. It reads the
/// hub's answers as they are, with no cache or merging in between.
pub struct RawClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl RawClient {
    pub async fn connect(
        addr: SocketAddr,
        creds: &DevCredentials,
        tenant: &TenantId,
    ) -> anyhow::Result<Self> {
        let (cert, key) = creds.tenant_cert(tenant)?;
        let tls = agentdb_security::tls::client_config(
            creds.ca.cert_pem().as_bytes(),
            Some((&cert, &key)),
            agentdb_proto::ALPN,
        )?;
        let tls = Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?);
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(tls));
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            endpoint.connect(addr, "localhost")?,
        )
        .await
        .context("connecting timed out")??;
        let client = Self { endpoint, conn };
        let token = creds.issuer.issue(
            &TokenRequest::new(tenant.clone(), AgentId::new("checker")?).ttl_secs(3600),
            agentdb_memory::SystemClock::unix_secs(),
        )?;
        match client.request(&Request::Hello(Hello::new(token))).await? {
            Response::Welcome(_) => Ok(client),
            other => anyhow::bail!("the hub answered the Hello with {other:?}"),
        }
    }

    pub async fn request(&self, req: &Request) -> anyhow::Result<Response> {
        let exchange = async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            send.write_all(&req.encode()).await?;
            send.finish()?;
            let bytes = recv.read_to_end(MAX_FRAME_LEN).await?;
            Ok::<_, anyhow::Error>(decode_response(&bytes, MAX_FRAME_LEN)?)
        };
        match tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .context("the hub did not answer within 60 s")??
        {
            Response::Error(e) => anyhow::bail!("hub refused: {}: {}", e.code, e.message),
            r => Ok(r),
        }
    }

    pub fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.close(0u32.into(), b"done");
    }
}

/// Stores one episode and says whether the hub acknowledged it (`Ok(false)`: it was only
/// spooled by the agent, which the benchmarks' agents, having no spool, never do; they get
/// `Err` when the hub cannot take it).
pub async fn store_acknowledged(
    agent: &EphemeralAgent,
    episode: NewEpisode,
) -> Result<bool, AgentError> {
    Ok(agent.store(episode).await?.is_acknowledged())
}

/// Settings of the crash loop.
#[derive(Debug, Clone)]
pub struct Options {
    pub trials: usize,
    pub agents: usize,
    pub seed: u64,
    pub hub_bin: Option<PathBuf>,
}

/// Tenants the agents of one trial are spread over.
const TENANTS: usize = 4;
/// The hub is killed this long after the agents start storing, at least…
const KILL_MIN: Duration = Duration::from_millis(20);
/// …and at most.
const KILL_MAX: Duration = Duration::from_millis(1500);
/// Most episodes one agent stores in a trial (a bound; the kill comes long before).
const MAX_PER_AGENT: usize = 50_000;
/// How long stores still in flight get after the kill before the agents are dropped.
const GRACE: Duration = Duration::from_millis(300);
/// Episodes per tenant looked up by query after the restart (all are read back through pull).
const QUERIED: usize = 5;

/// What one agent did in a trial.
#[derive(Default)]
struct AgentLog {
    /// Every episode sent, acknowledged or not, in order.
    sent: Vec<NewEpisode>,
    /// Those the hub acknowledged.
    acked: HashSet<EpisodeId>,
    /// The first store that was not acknowledged: when, and why.
    failed: Option<(Instant, String)>,
}

/// The outcome of one trial.
#[derive(Debug, Default, Clone)]
pub struct Trial {
    pub kill_after_ms: u64,
    pub acked: usize,
    pub present: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub differing: usize,
    pub unknown: usize,
    pub count_mismatch: usize,
    pub queried: usize,
    pub query_misses: usize,
    pub unacked: usize,
    pub unacked_present: usize,
    pub restart_ms: u64,
    /// Failures that are not the hub's durability (a store refused before the kill, …).
    pub problems: Vec<String>,
}

impl Trial {
    fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.differing == 0
            && self.unknown == 0
            && self.count_mismatch == 0
            && self.query_misses == 0
            && self.problems.is_empty()
    }
}

fn mix(seed: u64, trial: usize) -> u64 {
    // splitmix64 of the pair: distinct, non-zero xorshift states.
    let mut z = seed ^ (trial as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// Episode `n` of agent `a` in trial `t`: unique text, a client-minted id, and a critique and
/// tags on some, so that the read-back compares every field an agent sets.
fn crash_episode(rng: &mut Rng, t: usize, a: usize, n: usize) -> NewEpisode {
    let mut e = episode(rng, n);
    e.input = format!("{} (trial {t} agent {a} episode {n})", e.input);
    if rng.next().is_multiple_of(3) {
        e.critique = Some(format!("critique {:x}", rng.next()));
    }
    if rng.next().is_multiple_of(4) {
        e.tags = vec![format!("t{}", rng.next() % 16), "crash".into()];
    }
    e.with_id(rng.episode_id(agentdb_memory::SystemClock::unix_ms()))
}

/// Whether the hub's `got` carries what was sent in `sent`.
fn same(sent: &NewEpisode, got: &Episode) -> bool {
    Some(got.id) == sent.id
        && got.task == sent.task
        && got.input == sent.input
        && got.output == sent.output
        && got.reward == sent.reward
        && got.critique == sent.critique
        && got.tags == sent.tags
}

/// Reads every change of `tenant` from the hub: the episodes by id and how many ids came twice.
async fn read_all(client: &RawClient) -> anyhow::Result<(HashMap<EpisodeId, Episode>, usize)> {
    let mut held = HashMap::new();
    let mut twice = 0;
    let mut cursor = 0;
    for _ in 0..100_000 {
        let page = match client
            .request(&Request::Pull(PullRequest {
                cursor,
                limit: 1000,
            }))
            .await?
        {
            Response::Page(p) => p,
            other => anyhow::bail!("pull answered {other:?}"),
        };
        for item in page.changes {
            match item.change {
                Change::Put(w) => {
                    let e = Episode::try_from(w)?;
                    if held.insert(e.id, e).is_some() {
                        twice += 1;
                    }
                }
                Change::Deleted { id } => anyhow::bail!("episode {id} reads as deleted"),
            }
        }
        cursor = page.next_cursor;
        if !page.more {
            return Ok((held, twice));
        }
    }
    anyhow::bail!("the change log did not end")
}

/// One trial: start, store, kill -9, restart, check.
async fn trial(bin: &Path, opts: &Options, t: usize) -> anyhow::Result<Trial> {
    let mut rng = Rng(mix(opts.seed, t));
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut hub = tokio::task::block_in_place(|| {
        HubProcess::start(bin, &data, None, &dir.path().join("hub-1.log"))
    })?;
    let creds = Arc::new(DevCredentials::load(&data.join("dev"), 300)?);
    let tenants: Vec<TenantId> = (0..TENANTS.min(opts.agents))
        .map(|i| TenantId::new(format!("crash-{i}")))
        .collect::<Result<_, _>>()?;

    let mut agents = Vec::with_capacity(opts.agents);
    for a in 0..opts.agents {
        let mut config = creds.agent_config(&hub.url(), &tenants[a % tenants.len()])?;
        config.read_cache = 0;
        // No spool (a store the hub does not acknowledge fails) and no background sync: an
        // episode is acknowledged by the store that sent it or not at all.
        config.sync_interval = Duration::from_secs(24 * 3600);
        config.spool_dir = None;
        let agent = EphemeralAgent::spawn(config).await?;
        anyhow::ensure!(agent.welcome().is_some(), "agent {a} did not connect");
        agents.push(agent);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<AgentLog>>> = (0..opts.agents).map(|_| Arc::default()).collect();
    let mut tasks = Vec::with_capacity(opts.agents);
    for (a, agent) in agents.into_iter().enumerate() {
        let (stop, log) = (Arc::clone(&stop), Arc::clone(&logs[a]));
        let mut arng = Rng(mix(rng.next(), a));
        tasks.push(tokio::spawn(async move {
            for n in 0..MAX_PER_AGENT {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let e = crash_episode(&mut arng, t, a, n);
                log.lock().sent.push(e.clone());
                let id = e.id;
                match store_acknowledged(&agent, e).await {
                    Ok(true) => {
                        if let Some(id) = id {
                            log.lock().acked.insert(id);
                        }
                    }
                    Ok(false) => {
                        log.lock().failed = Some((Instant::now(), "not acknowledged".into()));
                        break;
                    }
                    Err(err) => {
                        log.lock().failed = Some((Instant::now(), err.to_string()));
                        break;
                    }
                }
            }
            drop(agent);
        }));
    }

    let span = (KILL_MAX - KILL_MIN).as_millis() as u64;
    let kill_after = KILL_MIN + Duration::from_millis(rng.next() % (span + 1));
    tokio::time::sleep(kill_after).await;
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| hub.kill9())?;
    stop.store(true, Ordering::Release);
    tokio::time::sleep(GRACE).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(hub);

    let mut out = Trial {
        kill_after_ms: kill_after.as_millis() as u64,
        ..Trial::default()
    };
    for (a, log) in logs.iter().enumerate() {
        if let Some((at, why)) = &log.lock().failed {
            if *at < killed_at {
                out.problems
                    .push(format!("agent {a}: a store failed before the kill: {why}"));
            }
        }
    }

    let started = Instant::now();
    let hub = tokio::task::block_in_place(|| {
        HubProcess::start(bin, &data, None, &dir.path().join("hub-2.log"))
    })?;
    out.restart_ms = started.elapsed().as_millis() as u64;

    for (i, tenant) in tenants.iter().enumerate() {
        let client = RawClient::connect(hub.quic, &creds, tenant).await?;
        let (held, twice) = read_all(&client).await?;
        out.duplicated += twice;
        let stats = match client.request(&Request::Stats).await? {
            Response::Stats(s) => s,
            other => anyhow::bail!("stats answered {other:?}"),
        };
        if stats.episodes != held.len() as u64 {
            out.count_mismatch += 1;
            out.problems.push(format!(
                "tenant {tenant}: the hub counts {} episodes but its log reads {} distinct ids",
                stats.episodes,
                held.len()
            ));
        }
        let mut sent_ids = HashSet::new();
        let mut acked = Vec::new();
        for log in logs.iter().skip(i).step_by(tenants.len()) {
            let log = log.lock();
            for e in &log.sent {
                let Some(id) = e.id else { continue };
                sent_ids.insert(id);
                if log.acked.contains(&id) {
                    acked.push(e.clone());
                    match held.get(&id) {
                        None => out.lost += 1,
                        Some(got) if !same(e, got) => out.differing += 1,
                        Some(_) => out.present += 1,
                    }
                } else {
                    out.unacked += 1;
                    out.unacked_present += usize::from(held.contains_key(&id));
                }
            }
        }
        out.acked += acked.len();
        out.unknown += held.keys().filter(|id| !sent_ids.contains(id)).count();
        // A few acknowledged episodes found again by query on their own text.
        for _ in 0..QUERIED.min(acked.len()) {
            let e = &acked[(rng.next() % acked.len() as u64) as usize];
            out.queried += 1;
            let matches = match client
                .request(&Request::Query(QueryRequest {
                    input: QueryInput::Text(format!("{}\n{}", e.task, e.input)),
                    k: 5,
                    filter: Default::default(),
                }))
                .await?
            {
                Response::Matches(m) => m.matches,
                other => anyhow::bail!("query answered {other:?}"),
            };
            let found = matches.into_iter().any(|m| {
                Episode::try_from(m.episode)
                    .map(|got| same(e, &got))
                    .unwrap_or(false)
            });
            out.query_misses += usize::from(!found);
        }
        client.close();
    }
    drop(hub);
    Ok(out)
}

/// Runs the trials, printing one line each and a summary; fails if any trial lost, duplicated
/// or altered an acknowledged episode, or could not run.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    anyhow::ensure!(opts.trials > 0 && opts.agents > 0, "need trials and agents");
    let bin = hub_binary(opts.hub_bin.clone())?;
    println!(
        "crash loop: {} trials, {} agents over {} tenants, seed {}, hub {} — {}",
        opts.trials,
        opts.agents,
        TENANTS.min(opts.agents),
        opts.seed,
        bin.display(),
        crate::machine()
    );
    let started = Instant::now();
    let mut total = Trial::default();
    let (mut failed, mut restart_max) = (0, 0);
    for t in 0..opts.trials {
        let r = match trial(&bin, &opts, t).await {
            Ok(r) => r,
            Err(e) => Trial {
                problems: vec![format!("the trial could not run: {e:#}")],
                ..Trial::default()
            },
        };
        println!(
            "trial {:>3}/{}: {} killed after {:>4} ms: {} acked, {} present, {} lost, {} duplicated, {} differing, {} unknown; {} queried, {} missed; {} unacked ({} present); restart {} ms",
            t + 1,
            opts.trials,
            if r.ok() { "ok  " } else { "FAIL" },
            r.kill_after_ms,
            r.acked,
            r.present,
            r.lost,
            r.duplicated,
            r.differing,
            r.unknown,
            r.queried,
            r.query_misses,
            r.unacked,
            r.unacked_present,
            r.restart_ms
        );
        for p in &r.problems {
            println!("    {p}");
        }
        failed += usize::from(!r.ok());
        restart_max = restart_max.max(r.restart_ms);
        total.acked += r.acked;
        total.present += r.present;
        total.lost += r.lost;
        total.duplicated += r.duplicated;
        total.differing += r.differing;
        total.unknown += r.unknown;
        total.count_mismatch += r.count_mismatch;
        total.queried += r.queried;
        total.query_misses += r.query_misses;
        total.unacked += r.unacked;
        total.unacked_present += r.unacked_present;
    }
    println!(
        "summary: {} trials, {} failed; {} acknowledged episodes checked: {} present and equal, {} lost, {} duplicated, {} differing, {} unknown, {} count mismatches; {} found by query, {} missed; {} unacknowledged at the kill ({} present after restart); slowest restart {} ms; {:.0} s",
        opts.trials,
        failed,
        total.acked,
        total.present,
        total.lost,
        total.duplicated,
        total.differing,
        total.unknown,
        total.count_mismatch,
        total.queried - total.query_misses,
        total.query_misses,
        total.unacked,
        total.unacked_present,
        restart_max,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed == 0, "{failed} of {} trials failed", opts.trials);
    Ok(())
}
