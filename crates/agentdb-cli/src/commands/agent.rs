//! `agentdb agent`: one short-lived agent per command. Each command spawns an
//! `EphemeralAgent`, stores or queries through the hub, and destroys the agent.
//!
//! Credentials come either from a hub's dev directory (`--dev DATA/dev`: trust its CA, issue a
//! one-hour tenant-wide client certificate for `--tenant` in memory, sign tokens with its signing
//! key) or from files (`--ca`, optionally `--cert`/`--key` for mutual TLS) plus a token source:
//! `--api-key` (a tenant API key the agent trades at the hub for short-lived tokens), `--token`,
//! `--signing-key`, or `JWT_SECRET` (HS256). When several token sources are given, the first in
//! that list wins, and any of them wins over the dev signing key.
//!
//! A hub that cannot be reached within `--connect-timeout` is an error, and nothing is stored.
//! With `--spool DIR`, `agent store` keeps the episode durably in `DIR` instead, sealed with a
//! key derived from `--key` (else the API key, else the token signing key: `--signing-key`,
//! `JWT_SECRET` or the dev signing key), and exits successfully; the next agent of the tenant
//! run with the same `--spool` and key sends it. Spooled episodes the hub refuses for good are moved to
//! `DIR/<tenant>/dead-letter/` and reported on stderr (and in `--json` output).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::{
    AgentConfig, AgentError, Durability, EphemeralAgent, SigningKeyTokens, Source, SpoolKey,
    StaticToken, TokenProvider,
};
use agentdb_core::{AgentId, EpisodeId, EpisodeUpdate, TenantId};
use agentdb_proto::HubUrl;
use agentdb_security::apikey::ApiKeySecret;
use agentdb_security::ca::{CertificateAuthority, Subject};
use agentdb_security::token::{TokenIssuer, DEFAULT_AUDIENCE, DEFAULT_TTL_SECS, JWT_SECRET_ENV};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::hub::{self, DEV_SIGNING_KEY};
use super::local;
use crate::output;

/// The hub agents talk to unless told otherwise.
pub const DEFAULT_HUB: &str = "quic://127.0.0.1:4433";
/// Environment variable naming the hub (`quic://host:port`).
pub const HUB_ENDPOINT_ENV: &str = "FEDERATION_HUB_ENDPOINT";
/// Environment variable holding a tenant API key (`adb_…`), the agent's first token source.
pub const API_KEY_ENV: &str = "AGENTDB_API_KEY";
/// Lifetime of the client certificate issued in memory with `--dev`.
const DEV_CLIENT_VALIDITY: Duration = Duration::from_secs(3600);

/// Agent commands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Store one episode through the hub and print its id.
    Store(StoreArgs),
    /// Search the tenant's memory in the hub (lexical by default).
    Query(QueryArgs),
    /// Print the tenant's statistics from the hub.
    Stats(StatsArgs),
    /// Change an episode's reward, critique or tags (the last write wins across hubs).
    Update(UpdateArgs),
    /// Delete an episode (on every hub it reaches; a delete wins over concurrent updates).
    Delete(EpisodeArgs),
}

/// Arguments of `agentdb agent update`.
#[derive(Debug, Args)]
#[group(skip)]
pub struct UpdateArgs {
    #[command(flatten)]
    episode: EpisodeArgs,
    /// A new reward.
    #[arg(long)]
    reward: Option<f64>,
    /// A new critique.
    #[arg(long, conflicts_with = "clear_critique")]
    critique: Option<String>,
    /// Remove the critique.
    #[arg(long)]
    clear_critique: bool,
    /// New tags (repeat for several; replaces all tags).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Remove all tags.
    #[arg(long, conflicts_with = "tags")]
    clear_tags: bool,
}

/// The episode `agentdb agent update` and `delete` act on, and where: the arguments of `delete`.
#[derive(Debug, Args)]
#[group(skip)]
pub struct EpisodeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    tenant: local::TenantArgs,
    /// The episode.
    #[arg(long)]
    id: EpisodeId,
}

/// Arguments of `agentdb agent store`.
#[derive(Debug, Args)]
#[group(skip)]
pub struct StoreArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    episode: local::StoreArgs,
    /// Keep the episode in DIR, sealed, when the hub cannot be reached (and exit successfully);
    /// the next agent of the tenant with the same --spool sends it.
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
}

/// Arguments of `agentdb agent query`.
#[derive(Debug, Args)]
#[group(skip)]
pub struct QueryArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    query: local::QueryArgs,
}

/// Arguments of `agentdb agent stats`.
#[derive(Debug, Args)]
#[group(skip)]
pub struct StatsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    tenant: local::TenantArgs,
}

/// Where the hub is and how to authenticate to it.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The hub, as quic://HOST:PORT [default: the --region hub, else quic://127.0.0.1:4433].
    #[arg(long = "hub", value_name = "URL", env = HUB_ENDPOINT_ENV)]
    hub_flag: Option<String>,
    /// Use the regional hub named by EU_HUB, US_HUB or AP_HUB (eu, us, ap) when --hub is not
    /// given.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// The hub, resolved from --hub, --region and the default.
    #[arg(skip)]
    pub(crate) hub: String,
    /// The name the hub's certificate must carry [default: the host of --hub, or localhost
    /// when it is an IP address].
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// A hub's dev directory (DATA/dev): trust its CA, use a fresh client certificate for
    /// --tenant issued in memory, and sign tokens with its signing key.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["ca", "cert", "key"])]
    dev: Option<PathBuf>,
    /// The deployment CA certificate (PEM) that signed the hub's certificate.
    #[arg(long, value_name = "FILE", required_unless_present = "dev")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; it must be for --tenant (or tenant-wide).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A tenant API key (adb_…, from `agentdb tenant key create`): the agent trades it at the
    /// hub for short-lived tokens of the key's tenant and scopes, and trades it again to refresh
    /// them. First among the token sources: it wins over --token, --signing-key, JWT_SECRET and
    /// the dev signing key.
    #[arg(
        long,
        value_name = "KEY",
        env = API_KEY_ENV,
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// A token to present as is. It is not refreshed, and the hub revokes it when the agent
    /// ends: one token serves one command.
    #[arg(long, value_name = "JWT", conflicts_with = "signing_key")]
    token: Option<String>,
    /// Ed25519 signing key (from `agentdb token keygen`) to mint tokens with.
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// The audience of minted tokens.
    #[arg(long, value_name = "A", default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// The agent's id [default: a fresh one].
    #[arg(long, value_name = "ID")]
    agent: Option<AgentId>,
    /// Seconds to wait for the hub to answer.
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    connect_timeout: u64,
}

impl ConnectArgs {
    /// Fills in `hub`: --hub (or FEDERATION_HUB_ENDPOINT), else the --region hub from its
    /// environment variable, else the default.
    pub(crate) fn resolve_hub(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        self.hub = match (&self.hub_flag, &self.region) {
            (Some(url), _) => url.clone(),
            (None, Some(region)) => {
                let var = super::federation::REGIONAL_HUB_ENV
                    .iter()
                    .find(|(r, _)| r.eq_ignore_ascii_case(region))
                    .map(|(_, v)| *v)
                    .with_context(|| format!("unknown region {region:?}: use eu, us or ap"))?;
                env(var).with_context(|| format!("--region {region} needs {var} set"))?
            }
            (None, None) => DEFAULT_HUB.to_owned(),
        };
        Ok(())
    }
}

/// Runs an `agent` subcommand.
pub fn run(mut cmd: AgentCommand) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match &mut cmd {
        AgentCommand::Store(a) => a.connect.resolve_hub(&env)?,
        AgentCommand::Query(a) => a.connect.resolve_hub(&env)?,
        AgentCommand::Stats(a) => a.connect.resolve_hub(&env)?,
        AgentCommand::Update(a) => a.episode.connect.resolve_hub(&env)?,
        AgentCommand::Delete(a) => a.connect.resolve_hub(&env)?,
    }
    let runtime = super::runtime()?;
    match cmd {
        AgentCommand::Store(args) => runtime.block_on(store(args)),
        AgentCommand::Query(args) => runtime.block_on(query(args)),
        AgentCommand::Stats(args) => runtime.block_on(stats(args)),
        AgentCommand::Update(args) => runtime.block_on(update(args)),
        AgentCommand::Delete(args) => runtime.block_on(delete(args)),
    }
}

async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let update = EpisodeUpdate {
        reward: args.reward,
        critique: match (args.critique, args.clear_critique) {
            (Some(c), _) => Some(Some(c)),
            (None, true) => Some(None),
            (None, false) => None,
        },
        tags: (!args.tags.is_empty() || args.clear_tags).then_some(args.tags),
        metadata_json: None,
    };
    if update.is_empty() {
        bail!(
            "nothing to update: give --reward, --critique, --clear-critique, --tag or --clear-tags"
        );
    }
    let args = args.episode;
    let agent = spawn(&args.connect, &args.tenant.tenant, None).await?;
    let found = agent
        .update_episode(args.id, update)
        .await
        .context("cannot update the episode")?;
    agent.destroy().await.context("cannot end the agent")?;
    report(args.id, found, "updated", args.tenant.json)
}

async fn delete(args: EpisodeArgs) -> anyhow::Result<()> {
    let agent = spawn(&args.connect, &args.tenant.tenant, None).await?;
    let found = agent
        .delete_episode(args.id)
        .await
        .context("cannot delete the episode")?;
    agent.destroy().await.context("cannot end the agent")?;
    report(args.id, found, "deleted", args.tenant.json)
}

/// Prints the outcome of an update or delete; an episode the hub does not hold is an error.
fn report(id: EpisodeId, found: bool, done: &str, json: bool) -> anyhow::Result<()> {
    if !found {
        bail!("episode {id} not found (or already deleted)");
    }
    if json {
        return output::json(&serde_json::json!({ "id": id.to_string(), done: true }));
    }
    output::line(format_args!("{done} {id}"))
}

async fn store(args: StoreArgs) -> anyhow::Result<()> {
    let tenant = &args.episode.tenant;
    let spool = match &args.spool {
        Some(dir) => Some((dir.as_path(), spool_key(&args.connect)?)),
        None => None,
    };
    let agent = spawn(&args.connect, tenant, spool).await?;
    report_spool(&agent)?;
    let stored = match agent.store(args.episode.episode()).await {
        Ok(stored) => stored,
        Err(AgentError::HubUnreachable(_)) if args.spool.is_none() => bail!(
            "hub unreachable: {} did not acknowledge the episode; nothing was stored (pass \
             --spool DIR to keep it for a later agent)",
            args.connect.hub
        ),
        Err(e) => return Err(e).context("cannot store the episode"),
    };
    let id = stored.id;
    let dead = agent.dead_letters();
    let spooled = match (stored.durability, &args.spool) {
        (Durability::Acknowledged, _) | (_, None) => {
            agent.destroy().await.context("cannot end the agent")?;
            None
        }
        // Nothing to say goodbye to; the episode is already sealed on disk in the spool.
        (_, Some(dir)) => {
            drop(agent);
            Some(dir)
        }
    };
    if args.episode.json {
        let mut value = serde_json::json!({ "id": id.to_string(), "spooled": spooled.is_some() });
        if let Some(dir) = spooled {
            value["spool"] = serde_json::json!(dir);
        }
        add_dead_letters(&mut value, &dead);
        return output::json(&value);
    }
    match spooled {
        Some(dir) => output::line(format_args!(
            "{id} spooled in {} (hub {} unreachable); the next agent of {tenant} with --spool {} \
             sends it",
            dir.display(),
            args.connect.hub,
            dir.display()
        )),
        None => output::line(id),
    }
}

/// Adds `dead_lettered: [{id, code, message, path}]` to a `--json` answer when there are any.
fn add_dead_letters(value: &mut serde_json::Value, dead: &[agentdb_client::DeadLetter]) {
    if dead.is_empty() {
        return;
    }
    value["dead_lettered"] = dead
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d.id.to_string(),
                "code": d.code.as_str(),
                "message": d.message,
                "path": d.path,
            })
        })
        .collect();
}

/// Says on stderr what the agent found in the spool that it will not send: episodes the hub
/// refused for good (moved to the dead letters) and files it cannot open (left in place).
fn report_spool(agent: &EphemeralAgent) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    for d in agent.dead_letters() {
        writeln!(
            err,
            "warning: the hub refused spooled episode {} for good ({}: {}); moved to {}",
            d.id,
            d.code,
            d.message,
            d.path.display()
        )?;
    }
    for f in agent.unreadable_spool_files() {
        writeln!(
            err,
            "warning: spool file {} left in place: {}",
            f.path.display(),
            f.reason
        )?;
    }
    Ok(())
}

/// The key that seals the spool: derived from the client key (`--key`), else from the API key
/// (`--api-key`, as an agent with an API key and no client key derives it), else from the
/// token signing key (`--signing-key`, `JWT_SECRET`, or the dev directory's signing key). The
/// dev client certificate is made afresh by every command, so it cannot seal a spool.
fn spool_key(args: &ConnectArgs) -> anyhow::Result<SpoolKey> {
    let from_pem = |path: &Path| -> anyhow::Result<SpoolKey> {
        let pem = Zeroizing::new(read(path)?);
        SpoolKey::from_private_key_pem(&pem)
            .with_context(|| format!("cannot seal the spool with {}", path.display()))
    };
    if let Some(key) = &args.key {
        return from_pem(key);
    }
    if let Some(key) = api_key(args)? {
        return SpoolKey::from_api_key(&key).context("cannot seal the spool with the API key");
    }
    if let Some(key) = &args.signing_key {
        return from_pem(key);
    }
    let secret = std::env::var(JWT_SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .map(Zeroizing::new);
    if let Some(secret) = secret {
        return SpoolKey::derive(secret.as_bytes())
            .with_context(|| format!("cannot seal the spool with {JWT_SECRET_ENV}"));
    }
    if let Some(dir) = &args.dev {
        return from_pem(&dir.join(DEV_SIGNING_KEY));
    }
    bail!(
        "--spool needs a key to seal the spool with: pass --cert/--key, --api-key or \
         --signing-key, set {JWT_SECRET_ENV}, or use --dev"
    )
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let q = &args.query;
    let agent = spawn(&args.connect, &q.tenant, None).await?;
    let recall = agent
        .query_filtered(&q.text, q.k, q.filter())
        .await
        .context("query failed")?;
    if recall.source == Source::LocalOnly {
        bail!(
            "hub unreachable: lost the connection to {}",
            args.connect.hub
        );
    }
    agent.destroy().await.context("cannot end the agent")?;
    let found: Vec<_> = recall
        .memories
        .iter()
        .map(|m| (&m.episode, m.score))
        .collect();
    output::matches(&found, q.json)
}

async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let t = &args.tenant;
    let agent = spawn(&args.connect, &t.tenant, None).await?;
    let stats = agent.stats().await.context("cannot read statistics")?;
    agent.destroy().await.context("cannot end the agent")?;
    output::stats(&t.tenant, &stats, t.json)
}

/// Spawns an agent of `tenant`. Without a `spool` directory (and its key), a hub that does not
/// answer within the connect timeout is an error; with one, the agent starts anyway and keeps
/// what it cannot send there.
async fn spawn(
    args: &ConnectArgs,
    tenant: &TenantId,
    spool: Option<(&Path, SpoolKey)>,
) -> anyhow::Result<EphemeralAgent> {
    let mut config = agent_config(args, tenant)?;
    let spooling = spool.is_some();
    if let Some((dir, key)) = spool {
        config = config.spool_dir(dir.to_owned()).spool_key(key);
    }
    // Spawning tolerates an unreachable hub (the agent would keep retrying in the background);
    // a one-shot command does not, and says why. A name that does not resolve is found here.
    if let Ok(hub) = HubUrl::parse(&args.hub) {
        if tokio::net::lookup_host((hub.host(), hub.port()))
            .await
            .is_err()
        {
            bail!(
                "hub unreachable: cannot resolve {} ({})",
                hub.host(),
                args.hub
            );
        }
    }
    let timeout = config.connect_timeout;
    let started = Instant::now();
    let agent = EphemeralAgent::spawn(config)
        .await
        .context("cannot start an agent")?;
    if agent.welcome().is_some() || spooling {
        return Ok(agent);
    }
    if started.elapsed() + Duration::from_millis(100) >= timeout {
        bail!(
            "hub unreachable: no answer from {} within {} s (is `agentdb hub` running there?)",
            args.hub,
            args.connect_timeout
        )
    }
    bail!(
        "hub unreachable: cannot connect to {} (AGENTDB_LOG=warn shows why)",
        args.hub
    )
}

/// The configuration of an agent of `tenant` with the hub, trust, client certificate and
/// token source of `args`, and no local copy of the tenant's memory (its operations go to the
/// hub).
pub(crate) fn agent_config(args: &ConnectArgs, tenant: &TenantId) -> anyhow::Result<AgentConfig> {
    let creds = credentials(args, tenant)?;
    let timeout = Duration::from_secs(args.connect_timeout);
    let server_name = args
        .server_name
        .clone()
        .unwrap_or_else(|| default_server_name(&args.hub));
    let hub = args.hub.clone();
    let mut config = match creds.tokens {
        Tokens::ApiKey(key) => AgentConfig::with_api_key(tenant.clone(), hub, creds.ca_pem, key),
        Tokens::Provider(p) => AgentConfig::new(tenant.clone(), hub, creds.ca_pem, p),
    }
    .server_name(server_name);
    if let Some((cert, key)) = creds.client_cert {
        config = config.client_cert(cert, key);
    }
    if let Some(agent) = &args.agent {
        config = config.agent(agent.clone());
    }
    config.connect_timeout = timeout;
    // One operation through the hub: nothing read is kept for later.
    config.read_cache = 0;
    Ok(config)
}

/// What the agent trusts and presents.
struct Credentials {
    ca_pem: Vec<u8>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    tokens: Tokens,
}

/// Where the agent's tokens come from.
enum Tokens {
    /// Traded at the hub for an API key.
    ApiKey(ApiKeySecret),
    /// Given or minted here.
    Provider(Arc<dyn TokenProvider>),
}

fn credentials(args: &ConnectArgs, tenant: &TenantId) -> anyhow::Result<Credentials> {
    let (ca_pem, client_cert) = match (&args.dev, &args.ca) {
        (Some(dir), _) => {
            let ca = CertificateAuthority::load(dir)
                .with_context(|| format!("cannot load the dev CA from {}", dir.display()))?;
            let pair = hub::issue(
                &ca,
                &Subject::Tenant {
                    tenant: tenant.clone(),
                },
                DEV_CLIENT_VALIDITY,
            )?;
            (
                ca.cert_pem().as_bytes().to_vec(),
                Some((pair.cert_pem.into_bytes(), pair.key_pem.as_bytes().to_vec())),
            )
        }
        (None, Some(ca)) => {
            let client = match (&args.cert, &args.key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            (read(ca)?, client)
        }
        (None, None) => bail!("no CA: pass --dev DIR or --ca FILE"),
    };
    Ok(Credentials {
        ca_pem,
        client_cert,
        tokens: tokens(args)?,
    })
}

/// The token source: `--api-key` (or AGENTDB_API_KEY), else `--token`, else `--signing-key`,
/// else `JWT_SECRET`, else the dev signing key.
fn tokens(args: &ConnectArgs) -> anyhow::Result<Tokens> {
    if let Some(key) = api_key(args)? {
        return Ok(Tokens::ApiKey(key));
    }
    if let Some(token) = &args.token {
        return Ok(Tokens::Provider(Arc::new(StaticToken(
            token.trim().to_owned(),
        ))));
    }
    match signing_issuer(args.signing_key.as_deref(), args.dev.as_deref())? {
        Some(issuer) => Ok(Tokens::Provider(Arc::new(
            SigningKeyTokens::new(issuer, DEFAULT_TTL_SECS).audience(args.audience.clone()),
        ))),
        None => bail!(
            "no token: pass --api-key KEY, --token JWT, --signing-key FILE or --dev DIR, or set \
             {JWT_SECRET_ENV}"
        ),
    }
}

/// The API key of `--api-key` (or AGENTDB_API_KEY), checked for its form; `None` when absent
/// or empty.
fn api_key(args: &ConnectArgs) -> anyhow::Result<Option<ApiKeySecret>> {
    let Some(text) = args.api_key.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    ApiKeySecret::parse(text)
        .map(Some)
        .with_context(|| format!("cannot use --api-key (or {API_KEY_ENV})"))
}

/// A token issuer from an Ed25519 signing key (PKCS#8 PEM, from `agentdb token keygen`).
pub(crate) fn ed25519_issuer(path: &Path) -> anyhow::Result<TokenIssuer> {
    let pem = Zeroizing::new(read(path)?);
    TokenIssuer::from_ed25519_pem(&pem)
        .with_context(|| format!("cannot use signing key {}", path.display()))
}

/// The key to mint tokens with: the Ed25519 `signing_key`, else the HS256 secret in
/// `JWT_SECRET`, else the signing key of the hub's dev directory `dev`; `None` without any.
pub(crate) fn signing_issuer(
    signing_key: Option<&Path>,
    dev: Option<&Path>,
) -> anyhow::Result<Option<TokenIssuer>> {
    if let Some(path) = signing_key {
        return ed25519_issuer(path).map(Some);
    }
    let secret = std::env::var(JWT_SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .map(Zeroizing::new);
    if let Some(secret) = secret {
        let issuer = TokenIssuer::from_hs256_secret(secret.as_bytes())
            .with_context(|| format!("cannot use {JWT_SECRET_ENV}"))?;
        return Ok(Some(issuer));
    }
    match dev {
        Some(dir) => ed25519_issuer(&dir.join(DEV_SIGNING_KEY)).map(Some),
        None => Ok(None),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `localhost` when the host of `url` is an IP address, else the host.
fn default_server_name(url: &str) -> String {
    match HubUrl::parse(url) {
        Ok(hub) if !hub.host_is_ip() => hub.host().to_owned(),
        _ => "localhost".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_comes_from_the_flag_then_the_region_then_the_default() {
        let env = |v: &str| (v == "US_HUB").then(|| "quic://us.example:4433".to_owned());
        let mut args = ConnectArgs {
            hub_flag: None,
            region: Some("us".into()),
            hub: String::new(),
            server_name: None,
            dev: None,
            ca: None,
            cert: None,
            key: None,
            api_key: None,
            token: None,
            signing_key: None,
            audience: DEFAULT_AUDIENCE.into(),
            agent: None,
            connect_timeout: 5,
        };
        args.resolve_hub(&env).unwrap();
        assert_eq!(args.hub, "quic://us.example:4433");
        args.region = Some("eu".into());
        assert!(args
            .resolve_hub(&env)
            .unwrap_err()
            .to_string()
            .contains("EU_HUB"));
        args.region = Some("mars".into());
        assert!(args.resolve_hub(&env).is_err());
        args.hub_flag = Some("quic://h:1".into());
        args.resolve_hub(&env).unwrap();
        assert_eq!(args.hub, "quic://h:1");
        args.hub_flag = None;
        args.region = None;
        args.resolve_hub(&env).unwrap();
        assert_eq!(args.hub, DEFAULT_HUB);
    }

    #[test]
    fn server_name_defaults() {
        assert_eq!(default_server_name("quic://127.0.0.1:4433"), "localhost");
        assert_eq!(default_server_name("quic://[::1]:4433"), "localhost");
        assert_eq!(
            default_server_name("quic://hub.eu.example.com:4433"),
            "hub.eu.example.com"
        );
        assert_eq!(default_server_name("hub:4433"), "hub");
    }
}
