//! `agentdb hub`: run a hub — QUIC with mutual TLS for agents, admin HTTP for operators.
//!
//! Settings come in four layers; for each setting the first layer that names it wins:
//! command-line flags, then the environment (`JWT_SECRET`, `ENABLE_MTLS`), then the TOML file
//! given with `--config`, then the defaults. Relative paths in the file are relative to the
//! file's directory.
//!
//! With no `[tls]` section the hub runs in *dev mode*: it creates (once) a CA, a hub
//! certificate, a client certificate for tenant `demo` and an Ed25519 token signing key under
//! `DATA/dev/`, reuses them on later starts, and logs one line saying how to use them.
//!
//! On start the hub prints one line on stdout,
//! `agentdb hub listening quic=ADDR http=ADDR hub=ID embedder=MODEL`, then serves until
//! Ctrl-C or SIGTERM and drains its connections before exiting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{HubId, TenantId};
use agentdb_hub::parse_retention;
use agentdb_hub::{AuditSettings, HubConfig, HubLimits, Quotas, TenantQuota, TokenKey};
use agentdb_memory::{
    embedder_from_env_or_dir, open_data_dir_with_embedder, EngineConfig, MemoryEngine,
    MASTER_KEY_FILE,
};
use agentdb_security::ca::{
    CertificateAuthority, HostName, Subject, CA_CERT_FILE, DEFAULT_CA_VALIDITY,
};
use agentdb_security::identity::TrustDomain;
use agentdb_security::tls::TlsMaterial;
use agentdb_security::token::{Ed25519KeyPem, DEFAULT_AUDIENCE, JWT_SECRET_ENV};
use agentdb_security::{write_private_file, write_public_file};
use anyhow::{bail, Context as _};
use clap::Args;
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::federation::{
    DurationValue, FederationFlags, FederationKeys, TenantSection, TuningSection,
};
use crate::output;

/// Where the hub keeps its data unless told otherwise.
pub const DEFAULT_DATA: &str = "./agentdb-data";
/// The QUIC address agents connect to unless told otherwise.
pub const DEFAULT_QUIC: &str = "127.0.0.1:4433";
/// The admin HTTP address unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8444";
/// The HTTPS/JSON gateway address unless told otherwise.
pub const DEFAULT_HTTPS: &str = "127.0.0.1:8443";
/// The hub's name unless told otherwise.
pub const DEFAULT_HUB_ID: &str = "hub-1";
/// The audit log's directory inside the data directory, unless `[audit] dir` says otherwise.
pub const DEFAULT_AUDIT_DIR: &str = "audit";
/// Environment variable choosing the hub's storage (see `--storage`).
pub const STORAGE_ENV: &str = "AGENTDB_STORAGE";

/// Where a hub keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StorageChoice {
    /// One redb file in the data directory.
    Redb,
    /// A PostgreSQL database other hubs may share.
    Postgres(String),
}

impl StorageChoice {
    fn parse(value: &str) -> anyhow::Result<Self> {
        let value = value.trim();
        if value == "redb" {
            return Ok(Self::Redb);
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Self::Postgres(value.to_owned()));
        }
        bail!("storage must be `redb` or a postgres:// URL")
    }
}
/// Environment variable that turns mutual TLS off (`false`/`0`) or on (`true`/`1`).
pub const ENABLE_MTLS_ENV: &str = "ENABLE_MTLS";

/// The dev directory inside the data directory.
pub const DEV_DIR: &str = "dev";
/// The dev hub certificate and key.
pub const DEV_HUB_CERT: &str = "hub.pem";
/// See [`DEV_HUB_CERT`].
pub const DEV_HUB_KEY: &str = "hub.key";
/// The dev client certificate (tenant-wide, for [`DEV_TENANT`]) and key.
pub const DEV_CLIENT_CERT: &str = "client.pem";
/// See [`DEV_CLIENT_CERT`].
pub const DEV_CLIENT_KEY: &str = "client.key";
/// The dev token signing key (Ed25519, PKCS#8 PEM); its public half is `signing.key.pub`.
pub const DEV_SIGNING_KEY: &str = "signing.key";
/// See [`DEV_SIGNING_KEY`].
pub const DEV_SIGNING_PUB: &str = "signing.key.pub";
/// The tenant of the dev client certificate.
pub const DEV_TENANT: &str = "demo";
/// Lifetime of the dev hub and client certificates.
const DEV_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Arguments of `agentdb hub`.
#[derive(Debug, Args)]
pub struct HubArgs {
    /// TOML configuration file (every key is described in docs/hub.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory, created if missing [default: ./agentdb-data]. The master key is read
    /// from AGENTDB_MASTER_KEY or DIR/master.key, created on first use.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// QUIC address agents connect to; port 0 picks a free port [default: 127.0.0.1:4433].
    #[arg(long, value_name = "ADDR")]
    quic: Option<SocketAddr>,
    /// Admin HTTP address (/health, /metrics, tenant stats) [default: 127.0.0.1:8444].
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// HTTPS/JSON gateway address (docs/http.md), with the hub's certificate and the QUIC
    /// listener's client-certificate rule [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    https: Option<SocketAddr>,
    /// Where the hub keeps its data: `redb` (one file in the data directory, the default) or
    /// a PostgreSQL URL (postgres://user@host:port/db) that several hubs of a region can share
    /// (docs/postgres.md). Also AGENTDB_STORAGE or the `storage` key.
    #[arg(long, value_name = "URL", env = STORAGE_ENV, hide_env_values = true)]
    storage: Option<String>,
    /// This hub's name [default: hub-1].
    #[arg(long, value_name = "ID")]
    hub_id: Option<HubId>,
    /// Directory of the sentence-embedding model (config.json, tokenizer.json,
    /// model.safetensors); also AGENTDB_MODEL_DIR or the `model_dir` key. Needs a build with the
    /// `model` feature. Without it the hub embeds lexically.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Lets a dev-mode hub (no `[tls]` section: a self-made CA and signing key in the data
    /// directory) bind a non-loopback address. Without it, dev mode refuses to.
    #[arg(long)]
    insecure_dev_bind: bool,
    #[command(flatten)]
    federation: FederationFlags,
}

/// The TOML configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    hub_id: Option<HubId>,
    storage: Option<String>,
    model_dir: Option<PathBuf>,
    data: Option<PathBuf>,
    quic: Option<SocketAddr>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    mtls: Option<bool>,
    tls: Option<TlsSection>,
    token: Option<TokenSection>,
    limits: Option<LimitsSection>,
    quotas: Option<QuotasSection>,
    audit: Option<AuditSection>,
    // Federation (see `federation::FederationKeys`).
    region: Option<agentdb_core::Region>,
    topology: Option<agentdb_hub::Topology>,
    upstream: Option<String>,
    peers: Option<Vec<String>>,
    sync_interval: Option<DurationValue>,
    tenants: Option<std::collections::BTreeMap<TenantId, HubTenantSection>>,
    federation: Option<TuningSection>,
    retention: Option<RetentionSection>,
}

/// `[tenants.<tenant>]`: the federation's keys (residency) and the tenant's retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HubTenantSection {
    residency: Option<Vec<agentdb_core::Region>>,
    /// `"30d"`, `"24h"`, … or `"forever"` (see [`agentdb_hub::Retention`]).
    retention: Option<String>,
}

/// `[retention]`: every tenant's retention and how often the hub sweeps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    /// Every tenant's retention unless its own says otherwise.
    default: Option<String>,
    /// How often expired episodes are looked for (`"60s"`, `"100ms"`).
    sweep_interval: Option<String>,
}

/// `[tls]`: the deployment CA, the hub's certificate and its key (PEM files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// `[token]`: how tokens are verified.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    public_key: Option<PathBuf>,
    secret: Option<String>,
    audience: Option<String>,
}

/// `[limits]`: see [`HubLimits`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_agents: Option<usize>,
    max_agents_per_tenant: Option<usize>,
    max_inflight_per_tenant: Option<usize>,
    max_frame_len: Option<usize>,
    auth_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_metric_tenants: Option<usize>,
}

/// `[quotas]`: every tenant's limits, and `[quotas.tenants.<tenant>]` a tenant's own (see
/// [`agentdb_hub::Quotas`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotasSection {
    max_episodes: Option<u64>,
    max_bytes: Option<u64>,
    max_writes_per_sec: Option<u32>,
    tenants: Option<std::collections::BTreeMap<TenantId, TenantQuota>>,
}

/// `[audit]`: the audit log (docs/compliance.md#audit-log). On unless `enabled = false`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    /// Default true.
    enabled: Option<bool>,
    /// Default `<data>/audit`.
    dir: Option<PathBuf>,
    /// How often a signed checkpoint seals the chain. Default 60 s.
    checkpoint_interval: Option<DurationValue>,
    /// How long records are kept (`"90d"`), or `"forever"` (the default).
    retention: Option<String>,
}

/// The environment variables the hub reads.
#[derive(Default)]
struct Env {
    jwt_secret: Option<Zeroizing<String>>,
    enable_mtls: Option<String>,
}

impl Env {
    fn read() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            jwt_secret: var(JWT_SECRET_ENV).map(Zeroizing::new),
            enable_mtls: var(ENABLE_MTLS_ENV),
        }
    }
}

/// How the hub will verify tokens.
enum TokenSource {
    /// HS256 with a shared secret; `origin` says where it came from.
    Hs256 {
        secret: Zeroizing<Vec<u8>>,
        origin: &'static str,
    },
    /// EdDSA with this public key file.
    Ed25519PublicKey(PathBuf),
    /// EdDSA with the public half of the dev signing key.
    DevSigningKey,
}

/// The PEM files of `[tls]`, resolved.
struct TlsPaths {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// The hub's settings after flags, environment, file and defaults are merged.
struct Settings {
    hub_id: HubId,
    data: PathBuf,
    storage: StorageChoice,
    quic: SocketAddr,
    http: SocketAddr,
    https: SocketAddr,
    mtls: bool,
    tls: Option<TlsPaths>,
    token: TokenSource,
    audience: String,
    limits: HubLimits,
    /// The audit log, unless turned off.
    audit: Option<AuditSettings>,
    federation: agentdb_hub::FederationConfig,
}

/// Runs `agentdb hub`.
pub fn run(args: HubArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => load_config(path)?,
        None => FileConfig::default(),
    };
    let base = args
        .config
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_default();
    let model_dir = args
        .model_dir
        .clone()
        .or_else(|| file.model_dir.as_ref().map(|p| base.join(p)));
    let settings = resolve(&args, &Env::read(), file, &base)?;

    let embedder = embedder_from_env_or_dir(model_dir.as_deref())?;
    tracing::info!(embedder = %embedder.model(), dimensions = embedder.dimensions(), "embedder ready");
    let engine_config = EngineConfig {
        origin: Some(settings.hub_id.clone()),
        ..EngineConfig::default()
    };
    let engine = Arc::new(match &settings.storage {
        StorageChoice::Redb => open_data_dir_with_embedder(&settings.data, engine_config, embedder)
            .with_context(|| format!("cannot open data directory {}", settings.data.display()))?,
        StorageChoice::Postgres(url) => {
            open_postgres(url, &settings.data, engine_config, embedder)?
        }
    });
    let (tls, dev) = match &settings.tls {
        Some(paths) => (paths.read()?, None),
        None => {
            let dir = settings.data.join(DEV_DIR);
            let pki = DevPki::load_or_create(&dir, &settings.hub_id)
                .with_context(|| format!("dev mode: cannot prepare {}", dir.display()))?;
            (pki.hub_tls(), Some((dir, pki)))
        }
    };
    let token_key = match &settings.token {
        TokenSource::Hs256 { secret, .. } => TokenKey::Hs256Secret(secret.to_vec()),
        TokenSource::Ed25519PublicKey(path) => TokenKey::Ed25519PublicPem(
            std::fs::read(path)
                .with_context(|| format!("cannot read token public key {}", path.display()))?,
        ),
        TokenSource::DevSigningKey => match &dev {
            Some((_, pki)) => TokenKey::Ed25519PublicPem(pki.signing.public_pem.clone().into()),
            None => bail!("no token key"),
        },
    };
    let config = HubConfig {
        hub_id: settings.hub_id.clone(),
        quic_addr: settings.quic,
        http_addr: Some(settings.http),
        https_addr: Some(settings.https),
        tls,
        require_client_cert: settings.mtls,
        token_key,
        audience: settings.audience.clone(),
        limits: HubLimits {
            audit: settings.audit.clone(),
            ..settings.limits.clone()
        },
        federation: settings.federation.clone(),
        master_key: master_key_source(&settings.data),
    };
    let runtime = super::runtime()?;
    runtime.block_on(serve(config, engine, &settings, dev.map(|(dir, _)| dir)))
}

/// Where the engine's master key came from (the rule of `MasterKey::from_env_or_file`), so
/// that a rewrap on the running hub keeps the new key there.
fn master_key_source(data: &Path) -> agentdb_hub::MasterKeySource {
    if std::env::var(agentdb_security::MASTER_KEY_ENV).is_ok() {
        agentdb_hub::MasterKeySource::Environment
    } else {
        agentdb_hub::MasterKeySource::File(data.join(MASTER_KEY_FILE))
    }
}

/// Opens the engine over a PostgreSQL database (its index rebuilt from the sealed rows), with
/// the master key from AGENTDB_MASTER_KEY or `data/master.key`: every hub sharing the database
/// must hold the same master key, and a hub with another one is refused.
fn open_postgres(
    url: &str,
    data: &Path,
    config: EngineConfig,
    embedder: Arc<dyn agentdb_memory::Embedder>,
) -> anyhow::Result<MemoryEngine> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let master = agentdb_security::MasterKey::from_env_or_file(&data.join(MASTER_KEY_FILE))
        .context("cannot read the master key")?;
    let started = std::time::Instant::now();
    let storage = agentdb_postgres::PostgresStorage::connect(url)
        .context("cannot open the PostgreSQL storage")?;
    let target = storage.target().to_owned();
    let engine = MemoryEngine::builder(Arc::new(storage), master)
        .embedder(embedder)
        .config(config)
        .open()
        .with_context(|| format!("cannot open the store in {target}"))?;
    tracing::info!(
        database = %target,
        episodes = engine.episode_count(),
        index_ms = started.elapsed().as_millis() as u64,
        "storage: PostgreSQL; indexes rebuilt from the database"
    );
    Ok(engine)
}

async fn serve(
    config: HubConfig,
    engine: Arc<MemoryEngine>,
    settings: &Settings,
    dev: Option<PathBuf>,
) -> anyhow::Result<()> {
    let handle = agentdb_hub::start(config, Arc::clone(&engine))
        .await
        .context("cannot start the hub")?;
    // Other hubs write to a shared database: follow them.
    let follower = matches!(settings.storage, StorageChoice::Postgres(_))
        .then(|| agentdb_hub::follow_shared_storage(&handle, agentdb_hub::DEFAULT_FOLLOW_INTERVAL));
    let quic = handle.quic_addr();
    if let Some(dir) = dev {
        let hub_flag = if quic.to_string() == DEFAULT_QUIC {
            String::new()
        } else {
            format!(" --hub quic://{quic}")
        };
        tracing::info!(
            "dev mode: credentials in {dir} (CA {CA_CERT_FILE}, hub {DEV_HUB_CERT}, client \
             {DEV_CLIENT_CERT} for tenant {DEV_TENANT}, token key {DEV_SIGNING_KEY}) — try: \
             agentdb agent store --dev {dir}{hub_flag} --tenant acme --task \"summarise invoice\" \
             --output \"Total: 300 EUR\" --reward 0.9",
            dir = dir.display(),
        );
    }
    if !settings.mtls {
        tracing::warn!(
            "mutual TLS is off ({ENABLE_MTLS_ENV}=false or mtls = false): agents are \
             authenticated by their token alone"
        );
    }
    match &settings.token {
        TokenSource::Hs256 { origin, .. } => {
            tracing::info!("tokens: HS256 with the shared secret from {origin}");
        }
        TokenSource::Ed25519PublicKey(path) => {
            tracing::info!("tokens: EdDSA, public key {}", path.display());
        }
        TokenSource::DevSigningKey => {
            tracing::info!("tokens: EdDSA, the dev signing key");
        }
    }
    output::line(format_args!(
        "agentdb hub listening quic={quic} http={} https={} hub={} embedder={}",
        handle
            .http_addr()
            .map_or_else(|| "off".to_owned(), |a| a.to_string()),
        handle
            .https_addr()
            .map_or_else(|| "off".to_owned(), |a| a.to_string()),
        settings.hub_id,
        engine.embedder().model(),
    ))?;
    shutdown_signal()
        .await
        .context("cannot listen for shutdown signals")?;
    tracing::info!(
        connected_agents = handle.connected_agents(),
        "shutting down: draining connections"
    );
    if let Some(follower) = follower {
        follower.abort();
    }
    handle.shutdown().await;
    tracing::info!("hub stopped");
    Ok(())
}

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Reads and parses the TOML file; errors are one line naming the file and the position.
fn load_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    parse_config(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
}

/// Why the text of a config file is not a valid config: one line, with the position when the
/// parser reports one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Line and column (both from 1) of the offending text, if known.
    pub position: Option<(usize, usize)>,
    /// What is wrong, on one line.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses the text of a hub config file (syntax, keys and the type of each value).
pub fn parse_config(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().lines().collect::<Vec<_>>().join("; ");
        let position = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        });
        ConfigError { position, message }
    })
}

/// Checks the text of a hub config file as `agentdb hub --config FILE` would read it with no
/// flags and none of the hub's environment variables: parsing, then merging with the defaults.
/// Opens no file.
pub fn check_config(text: &str) -> anyhow::Result<()> {
    let file = parse_config(text)?;
    let args = HubArgs {
        config: None,
        data: None,
        quic: None,
        http: None,
        https: None,
        storage: None,
        hub_id: None,
        model_dir: None,
        insecure_dev_bind: false,
        federation: FederationFlags::default(),
    };
    resolve(&args, &Env::default(), file, Path::new("")).map(drop)
}

/// Merges flags, environment, file and defaults (in that order of precedence).
fn resolve(args: &HubArgs, env: &Env, file: FileConfig, base: &Path) -> anyhow::Result<Settings> {
    let in_file = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let parse = |addr: &str| -> anyhow::Result<SocketAddr> {
        addr.parse()
            .with_context(|| format!("bad default address {addr}"))
    };
    let hub_id = match args.hub_id.clone().or(file.hub_id) {
        Some(id) => id,
        None => HubId::new(DEFAULT_HUB_ID).context("bad default hub id")?,
    };
    let data = args
        .data
        .clone()
        .or_else(|| file.data.map(in_file))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    let storage = match args.storage.as_deref().or(file.storage.as_deref()) {
        Some(value) => StorageChoice::parse(value)?,
        None => StorageChoice::Redb,
    };
    let quic = match args.quic.or(file.quic) {
        Some(a) => a,
        None => parse(DEFAULT_QUIC)?,
    };
    let http = match args.http.or(file.http) {
        Some(a) => a,
        None => parse(DEFAULT_HTTP)?,
    };
    let https = match args.https.or(file.https) {
        Some(a) => a,
        None => parse(DEFAULT_HTTPS)?,
    };
    let mtls = match &env.enable_mtls {
        Some(v) => parse_bool(ENABLE_MTLS_ENV, v)?,
        None => file.mtls.unwrap_or(true),
    };
    let tls = file.tls.map(|t| TlsPaths {
        ca: in_file(t.ca),
        cert: in_file(t.cert),
        key: in_file(t.key),
    });
    let token_section = file.token.unwrap_or_default();
    let token = if let Some(secret) = &env.jwt_secret {
        if let Some(path) = &token_section.public_key {
            // Two token keys of different algorithms: silently taking one would leave tokens
            // signed for the other refused (or accepted) to the operator's surprise.
            bail!(
                "{JWT_SECRET_ENV} is set and the config names an EdDSA public key ({}): choose one",
                path.display()
            );
        }
        TokenSource::Hs256 {
            secret: Zeroizing::new(secret.as_bytes().to_vec()),
            origin: JWT_SECRET_ENV,
        }
    } else {
        match (token_section.secret, token_section.public_key) {
            (Some(_), Some(_)) => {
                bail!("config: [token] has both `secret` and `public_key`; choose one")
            }
            (Some(secret), None) => TokenSource::Hs256 {
                secret: Zeroizing::new(secret.into_bytes()),
                origin: "the config file",
            },
            (None, Some(path)) => TokenSource::Ed25519PublicKey(in_file(path)),
            (None, None) if tls.is_none() => TokenSource::DevSigningKey,
            (None, None) => bail!(
                "no token key: set [token] public_key or secret in the config, or {JWT_SECRET_ENV}"
            ),
        }
    };
    let audience = token_section
        .audience
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
    let federation = super::federation::resolve(
        &args.federation,
        FederationKeys {
            region: file.region,
            topology: file.topology,
            upstream: file.upstream,
            peers: file.peers,
            sync_interval: file.sync_interval,
            tenants: file.tenants.as_ref().map(|tenants| {
                tenants
                    .iter()
                    .map(|(t, s)| {
                        let section = TenantSection {
                            residency: s.residency.clone(),
                        };
                        (t.clone(), section)
                    })
                    .collect()
            }),
            federation: file.federation,
        },
        &|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()),
    )?;
    if tls.is_none() && !args.insecure_dev_bind {
        // Dev mode makes its own CA and signing key and keeps both in the data directory:
        // fine on one machine, not for a hub others can reach.
        for (what, addr) in [("QUIC", quic), ("admin HTTP", http), ("HTTPS", https)] {
            if !addr.ip().is_loopback() {
                bail!(
                    "dev mode (no [tls] section) binds loopback addresses only, and the {what} \
                     address is {addr}: configure [tls] and [token], or pass --insecure-dev-bind"
                );
            }
        }
    }
    let audit = audit(file.audit.unwrap_or_default(), &data, &in_file)?;
    Ok(Settings {
        hub_id,
        audit,
        data,
        storage,
        quic,
        http,
        https,
        mtls,
        tls,
        token,
        audience,
        limits: HubLimits {
            quotas: quotas(file.quotas.unwrap_or_default())?,
            retention: retention(file.retention.unwrap_or_default(), file.tenants)?,
            ..limits(file.limits.unwrap_or_default())?
        },
        federation,
    })
}

/// `[audit]`: a log in `dir` (default `<data>/audit`), unless `enabled = false`.
fn audit(
    section: AuditSection,
    data: &Path,
    in_file: &dyn Fn(PathBuf) -> PathBuf,
) -> anyhow::Result<Option<AuditSettings>> {
    if section.enabled == Some(false) {
        return Ok(None);
    }
    let mut settings = AuditSettings::new(
        section
            .dir
            .map_or_else(|| data.join(DEFAULT_AUDIT_DIR), in_file),
    );
    if let Some(DurationValue(interval)) = section.checkpoint_interval {
        if interval.is_zero() {
            bail!("config: audit.checkpoint_interval must be longer than zero");
        }
        settings.log.checkpoint_interval = interval;
    }
    if let Some(text) = section.retention {
        settings.log.retention =
            parse_retention(&text).map_err(|e| anyhow::anyhow!("config: audit.retention: {e}"))?;
    }
    Ok(Some(settings))
}

fn limits(section: LimitsSection) -> anyhow::Result<HubLimits> {
    let mut limits = HubLimits::default();
    let positive = |name: &str, v: u64| -> anyhow::Result<u64> {
        if v == 0 {
            bail!("config: limits.{name} must be at least 1");
        }
        Ok(v)
    };
    if let Some(v) = section.max_agents {
        limits.max_agents = positive("max_agents", v as u64)? as usize;
    }
    if let Some(v) = section.max_agents_per_tenant {
        limits.max_agents_per_tenant = positive("max_agents_per_tenant", v as u64)? as usize;
    }
    if let Some(v) = section.max_inflight_per_tenant {
        limits.max_inflight_per_tenant = positive("max_inflight_per_tenant", v as u64)? as usize;
    }
    if let Some(v) = section.max_frame_len {
        limits.max_frame_len = positive("max_frame_len", v as u64)? as usize;
    }
    if let Some(v) = section.auth_timeout_secs {
        limits.auth_timeout = Duration::from_secs(positive("auth_timeout_secs", v)?);
    }
    if let Some(v) = section.idle_timeout_secs {
        limits.idle_timeout = Duration::from_secs(positive("idle_timeout_secs", v)?);
    }
    if let Some(v) = section.max_metric_tenants {
        limits.max_metric_tenants = v;
    }
    Ok(limits)
}

/// `[retention]` and the tenants' `retention` keys.
fn retention(
    section: RetentionSection,
    tenants: Option<std::collections::BTreeMap<TenantId, HubTenantSection>>,
) -> anyhow::Result<agentdb_hub::Retention> {
    let parse = |key: &str, text: &str| {
        parse_retention(text).map_err(|e| anyhow::anyhow!("config: {key}: {e}"))
    };
    let mut retention = agentdb_hub::Retention::default();
    if let Some(text) = &section.default {
        retention.default = parse("retention.default", text)?;
    }
    if let Some(text) = &section.sweep_interval {
        retention.sweep_interval = parse("retention.sweep_interval", text)?
            .ok_or_else(|| anyhow::anyhow!("config: retention.sweep_interval cannot be forever"))?;
    }
    for (tenant, s) in tenants.unwrap_or_default() {
        if let Some(text) = &s.retention {
            let value = parse(&format!("[tenants.{tenant}] retention"), text)?;
            retention.per_tenant.insert(tenant, value);
        }
    }
    Ok(retention)
}

fn quotas(section: QuotasSection) -> anyhow::Result<Quotas> {
    let rate = |name: &str, q: &TenantQuota| -> anyhow::Result<()> {
        if q.max_writes_per_sec == Some(0) {
            bail!(
                "config: {name}max_writes_per_sec must be at least 1 (to stop new episodes, set \
                 max_episodes = 0)"
            );
        }
        Ok(())
    };
    let default = TenantQuota {
        max_episodes: section.max_episodes,
        max_bytes: section.max_bytes,
        max_writes_per_sec: section.max_writes_per_sec,
    };
    rate("quotas.", &default)?;
    let per_tenant = section.tenants.unwrap_or_default();
    for (tenant, q) in &per_tenant {
        rate(&format!("quotas.tenants.{tenant}."), q)?;
    }
    Ok(Quotas {
        default,
        per_tenant,
    })
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name}={value:?}: expected true or false"),
    }
}

impl TlsPaths {
    fn read(&self) -> anyhow::Result<TlsMaterial> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
        };
        Ok(TlsMaterial {
            ca_pem: read("[tls] ca", &self.ca)?,
            cert_pem: read("[tls] cert", &self.cert)?,
            key_pem: read("[tls] key", &self.key)?,
        })
    }
}

/// A certificate and its private key, PEM.
pub(crate) struct CertPair {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

/// A development PKI: a CA (trust domain `agentdb.local`), a hub certificate for localhost,
/// 127.0.0.1 and ::1, and an Ed25519 token signing key. On disk it also holds a tenant-wide
/// client certificate for [`DEV_TENANT`], for clients that take certificate files.
pub(crate) struct DevPki {
    pub ca: CertificateAuthority,
    pub hub: CertPair,
    pub signing: Ed25519KeyPem,
}

impl DevPki {
    /// A fresh PKI held in memory.
    pub fn generate(hub: &HubId) -> anyhow::Result<Self> {
        let ca = CertificateAuthority::generate(
            TrustDomain::default(),
            DEFAULT_CA_VALIDITY,
            OffsetDateTime::now_utc(),
        )
        .context("cannot create the CA")?;
        Ok(Self {
            hub: issue_hub(&ca, hub)?,
            signing: Ed25519KeyPem::generate().context("cannot create the signing key")?,
            ca,
        })
    }

    /// The PKI stored in `dir`, creating what is missing. Files are reused as they are; when the
    /// CA itself is new, the certificates are issued anew from it. Private keys are written with
    /// mode 0600.
    fn load_or_create(dir: &Path, hub: &HubId) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        let (ca, ca_new) = if CertificateAuthority::exists_in(dir) {
            let ca = CertificateAuthority::load(dir).with_context(|| {
                format!(
                    "cannot load the dev CA (delete {} to start over)",
                    dir.display()
                )
            })?;
            (ca, false)
        } else {
            let ca = CertificateAuthority::generate(
                TrustDomain::default(),
                DEFAULT_CA_VALIDITY,
                OffsetDateTime::now_utc(),
            )
            .context("cannot create the CA")?;
            ca.save(dir, true).context("cannot write the CA")?;
            (ca, true)
        };
        let hub = load_or_issue(dir, DEV_HUB_CERT, DEV_HUB_KEY, ca_new, || {
            issue_hub(&ca, hub)
        })?;
        load_or_issue(dir, DEV_CLIENT_CERT, DEV_CLIENT_KEY, ca_new, || {
            issue_client(&ca)
        })?;
        let (private, public) = (dir.join(DEV_SIGNING_KEY), dir.join(DEV_SIGNING_PUB));
        let signing = if private.exists() && public.exists() {
            Ed25519KeyPem {
                private_pem: read_text(&private)?,
                public_pem: read_text(&public)?.to_string(),
            }
        } else {
            let keys = Ed25519KeyPem::generate().context("cannot create the signing key")?;
            write_private_file(&private, keys.private_pem.as_bytes(), true)?;
            write_public_file(&public, keys.public_pem.as_bytes(), true)?;
            keys
        };
        Ok(Self { ca, hub, signing })
    }

    /// The hub's TLS material.
    pub fn hub_tls(&self) -> TlsMaterial {
        TlsMaterial {
            ca_pem: self.ca.cert_pem().as_bytes().to_vec(),
            cert_pem: self.hub.cert_pem.as_bytes().to_vec(),
            key_pem: self.hub.key_pem.as_bytes().to_vec(),
        }
    }
}

fn issue_hub(ca: &CertificateAuthority, hub: &HubId) -> anyhow::Result<CertPair> {
    let subject = Subject::Hub {
        hub: hub.clone(),
        hosts: HostName::defaults(),
        region: None,
    };
    issue(ca, &subject, DEV_CERT_VALIDITY)
}

fn issue_client(ca: &CertificateAuthority) -> anyhow::Result<CertPair> {
    let subject = Subject::Tenant {
        tenant: TenantId::new(DEV_TENANT).context("bad dev tenant")?,
    };
    issue(ca, &subject, DEV_CERT_VALIDITY)
}

/// Issues a certificate for `subject` valid for `validity` from now.
pub(crate) fn issue(
    ca: &CertificateAuthority,
    subject: &Subject,
    validity: Duration,
) -> anyhow::Result<CertPair> {
    let issued = ca
        .issue(subject, validity, OffsetDateTime::now_utc())
        .context("cannot issue a certificate")?;
    Ok(CertPair {
        cert_pem: issued.cert_pem().to_owned(),
        key_pem: Zeroizing::new(issued.key_pem().to_owned()),
    })
}

fn load_or_issue(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
    reissue: bool,
    issue: impl FnOnce() -> anyhow::Result<CertPair>,
) -> anyhow::Result<CertPair> {
    let (cert, key) = (dir.join(cert_name), dir.join(key_name));
    if !reissue && cert.exists() && key.exists() {
        return Ok(CertPair {
            cert_pem: read_text(&cert)?.to_string(),
            key_pem: read_text(&key)?,
        });
    }
    let pair = issue()?;
    write_public_file(&cert, pair.cert_pem.as_bytes(), true)?;
    write_private_file(&key, pair.key_pem.as_bytes(), true)?;
    Ok(pair)
}

fn read_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Creates `dir` (mode 0700 on Unix) if it does not exist.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentdb_security::ca::CA_KEY_FILE;

    fn args(argv: &[&str]) -> HubArgs {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            hub: HubArgs,
        }
        let mut full = vec!["hub"];
        full.extend_from_slice(argv);
        Cli::parse_from(full).hub
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_apply_without_flags_env_or_file() {
        let s = resolve(
            &args(&[]),
            &Env::default(),
            FileConfig::default(),
            Path::new(""),
        )
        .unwrap();
        assert_eq!(s.hub_id.as_str(), DEFAULT_HUB_ID);
        assert_eq!(s.data, PathBuf::from(DEFAULT_DATA));
        assert_eq!(s.quic.to_string(), DEFAULT_QUIC);
        assert_eq!(s.http.to_string(), DEFAULT_HTTP);
        assert!(s.mtls);
        assert!(s.tls.is_none());
        assert!(matches!(s.token, TokenSource::DevSigningKey));
        assert_eq!(s.audience, DEFAULT_AUDIENCE);
        assert_eq!(s.limits, HubLimits::default());
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let f = file(
            "hub_id = \"from-file\"\ndata = \"d\"\nquic = \"127.0.0.1:1\"\nmtls = true\n\
             [token]\nsecret = \"file-secret-file-secret-file-secret\"\n",
        );
        let env = Env {
            jwt_secret: Some(Zeroizing::new("env-secret".into())),
            enable_mtls: Some("false".into()),
        };
        let s = resolve(
            &args(&["--quic", "127.0.0.1:2", "--hub-id", "from-flag"]),
            &env,
            f,
            Path::new("/etc/agentdb"),
        )
        .unwrap();
        assert_eq!(s.hub_id.as_str(), "from-flag");
        assert_eq!(s.quic.to_string(), "127.0.0.1:2");
        assert_eq!(s.data, PathBuf::from("/etc/agentdb/d"));
        assert!(!s.mtls, "ENABLE_MTLS beats the file");
        match s.token {
            TokenSource::Hs256 { secret, origin } => {
                assert_eq!(secret.as_slice(), b"env-secret");
                assert_eq!(origin, JWT_SECRET_ENV);
            }
            _ => panic!("JWT_SECRET selects HS256"),
        }
    }

    #[test]
    fn jwt_secret_beside_an_eddsa_public_key_is_an_error() {
        let f = file("[token]\npublic_key = \"signing.key.pub\"\n");
        let env = Env {
            jwt_secret: Some(Zeroizing::new("env-secret".into())),
            enable_mtls: None,
        };
        let err = resolve(&args(&[]), &env, f, Path::new("")).err().unwrap();
        let err = err.to_string();
        assert!(
            err.contains(JWT_SECRET_ENV) && err.contains("choose one"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn dev_mode_binds_loopback_unless_told_otherwise() {
        for flags in [
            &["--quic", "0.0.0.0:4433"][..],
            &["--http", "192.0.2.1:8444"][..],
            &["--quic", "[::]:4433"][..],
        ] {
            let err = resolve(&args(flags), &Env::default(), file(""), Path::new(""))
                .err()
                .unwrap();
            assert!(
                err.to_string().contains("--insecure-dev-bind"),
                "{flags:?}: {err}"
            );
            let mut allowed = flags.to_vec();
            allowed.push("--insecure-dev-bind");
            assert!(resolve(&args(&allowed), &Env::default(), file(""), Path::new("")).is_ok());
        }
        assert!(resolve(
            &args(&["--quic", "[::1]:0"]),
            &Env::default(),
            file(""),
            Path::new("")
        )
        .is_ok());
        // A configured PKI may bind anywhere.
        let f = file(
            "[tls]\nca = \"ca.pem\"\ncert = \"hub.pem\"\nkey = \"hub.key\"\n\
             [token]\npublic_key = \"signing.key.pub\"\n",
        );
        assert!(resolve(
            &args(&["--quic", "0.0.0.0:4433"]),
            &Env::default(),
            f,
            Path::new("")
        )
        .is_ok());
    }

    #[test]
    fn tls_without_a_token_key_is_an_error() {
        let f = file("[tls]\nca = \"ca.pem\"\ncert = \"hub.pem\"\nkey = \"hub.key\"\n");
        let err = resolve(&args(&[]), &Env::default(), f, Path::new(""))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no token key"), "{err}");
    }

    #[test]
    fn limits_are_read_and_zero_is_refused() {
        let f = file("[limits]\nmax_agents = 7\nauth_timeout_secs = 2\n");
        let s = resolve(&args(&[]), &Env::default(), f, Path::new("")).unwrap();
        assert_eq!(s.limits.max_agents, 7);
        assert_eq!(s.limits.auth_timeout, Duration::from_secs(2));
        let f = file("[limits]\nmax_agents = 0\n");
        assert!(resolve(&args(&[]), &Env::default(), f, Path::new("")).is_err());
    }

    #[test]
    fn quotas_are_read_with_tenant_overrides() {
        let s = resolve(&args(&[]), &Env::default(), file(""), Path::new("")).unwrap();
        assert_eq!(s.limits.quotas, Quotas::default());
        let f = file(
            "[limits]\nmax_metric_tenants = 5\n\
             [quotas]\nmax_episodes = 100\nmax_writes_per_sec = 10\n\
             [quotas.tenants.acme]\nmax_episodes = 3\nmax_bytes = 4096\n",
        );
        let s = resolve(&args(&[]), &Env::default(), f, Path::new("")).unwrap();
        assert_eq!(s.limits.max_metric_tenants, 5);
        let acme = TenantId::new("acme").unwrap();
        assert_eq!(
            s.limits.quotas.for_tenant(&acme),
            TenantQuota {
                max_episodes: Some(3),
                max_bytes: Some(4096),
                max_writes_per_sec: Some(10),
            }
        );
        let other = TenantId::new("other").unwrap();
        assert_eq!(s.limits.quotas.for_tenant(&other).max_episodes, Some(100));
        let f = file("[quotas.tenants.acme]\nmax_writes_per_sec = 0\n");
        let err = resolve(&args(&[]), &Env::default(), f, Path::new(""))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("quotas.tenants.acme.max_writes_per_sec"),
            "{err}"
        );
        assert!(parse_config("[quotas]\nmax_episode = 3\n").is_err());
    }

    #[test]
    fn the_audit_log_is_on_by_default_and_configurable() {
        let s = resolve(&args(&[]), &Env::default(), file(""), Path::new("")).unwrap();
        let audit = s.audit.unwrap();
        assert_eq!(
            audit.dir,
            PathBuf::from(DEFAULT_DATA).join(DEFAULT_AUDIT_DIR)
        );
        assert_eq!(audit.log.checkpoint_interval, Duration::from_secs(60));
        assert_eq!(audit.log.retention, None);
        let f = file(
            "[audit]\ndir = \"logs/audit\"\ncheckpoint_interval = \"5s\"\nretention = \"90d\"\n",
        );
        let s = resolve(&args(&[]), &Env::default(), f, Path::new("/etc/agentdb")).unwrap();
        let audit = s.audit.unwrap();
        assert_eq!(audit.dir, PathBuf::from("/etc/agentdb/logs/audit"));
        assert_eq!(audit.log.checkpoint_interval, Duration::from_secs(5));
        assert_eq!(
            audit.log.retention,
            Some(Duration::from_secs(90 * 24 * 3600))
        );
        let f = file("[audit]\nenabled = false\n");
        let s = resolve(&args(&[]), &Env::default(), f, Path::new("")).unwrap();
        assert!(s.audit.is_none());
        for bad in ["retention = \"soon\"", "checkpoint_interval = 0"] {
            let f = file(&format!("[audit]\n{bad}\n"));
            let err = resolve(&args(&[]), &Env::default(), f, Path::new(""))
                .err()
                .unwrap();
            assert!(err.to_string().contains("audit."), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, "hub_id = \"a\"\n[limits]\nmax_agent = 3\n").unwrap();
        let err = format!("{:#}", load_config(&path).err().unwrap());
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("line 3") && err.contains("max_agent"), "{err}");
        std::fs::write(&path, "quic = \"nowhere\"\n").unwrap();
        let err = format!("{:#}", load_config(&path).err().unwrap());
        assert!(!err.contains('\n') && err.contains("line 1"), "{err}");
    }

    #[test]
    fn enable_mtls_values() {
        for v in ["0", "false", "FALSE", "no", "off"] {
            assert!(!parse_bool("X", v).unwrap());
        }
        for v in ["1", "true", "Yes", "on"] {
            assert!(parse_bool("X", v).unwrap());
        }
        assert!(parse_bool("X", "maybe").is_err());
    }

    #[test]
    fn dev_pki_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        let hub = HubId::new("hub-1").unwrap();
        let first = DevPki::load_or_create(&dev, &hub).unwrap();
        let second = DevPki::load_or_create(&dev, &hub).unwrap();
        assert_eq!(first.ca.cert_pem(), second.ca.cert_pem());
        assert_eq!(first.hub.cert_pem, second.hub.cert_pem);
        assert_eq!(first.signing.public_pem, second.signing.public_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for name in [CA_KEY_FILE, DEV_HUB_KEY, DEV_CLIENT_KEY, DEV_SIGNING_KEY] {
                let mode = std::fs::metadata(dev.join(name))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
    }
}
