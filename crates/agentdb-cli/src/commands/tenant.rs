//! `agentdb tenant key create|list|revoke`: a tenant's API keys, through the hub's admin HTTP.
//!
//! An API key (`adb_<id>_<secret>`) is a long-lived credential of one tenant that agents trade
//! at the hub for short-lived tokens (`agentdb agent … --api-key KEY`). The hub keeps only a
//! keyed hash of it, so `create` prints the secret this once.
//!
//! The admin HTTP wants a token of the tenant with the admin scope — and, to create a key,
//! every scope the key is to grant (a key is worth no more than the token that made it). It is
//! `--token` (or AGENTDB_TOKEN), else minted here for one minute (tenant T, agent `operator`,
//! scopes admin plus the key's) with `--signing-key`, else `JWT_SECRET` (HS256), else the
//! signing key of a hub's dev directory (`--dev DIR`): the keys `agentdb agent` mints with.

use std::path::PathBuf;

use agentdb_core::{AgentId, TenantId};
use agentdb_memory::SystemClock;
use agentdb_security::apikey::ApiKeyId;
use agentdb_security::token::{Scope, TokenRequest, DEFAULT_AUDIENCE, JWT_SECRET_ENV};
use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::agent;
use super::hub::DEFAULT_HTTP;
use crate::admin_http::{self, Method};
use crate::output;

/// Lifetime of the admin tokens minted here.
const ADMIN_TOKEN_TTL_SECS: u64 = 60;
/// The agent id of the admin tokens minted here.
const ADMIN_AGENT: &str = "operator";

/// `agentdb tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create, list and revoke the tenant's API keys (agents trade them at the hub for
    /// short-lived tokens).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Erase the tenant (or one subject's episodes) on every hub of the federation, with a
    /// signed receipt from each.
    Erase(super::tenant_erase::EraseArgs),
    /// Show the tenant's erasures and which hubs have confirmed them.
    EraseStatus(super::tenant_erase::StatusArgs),
    /// Start a new encryption key version: new episodes are sealed with it at once, older
    /// ones re-sealed in the background, then the older versions destroyed (signed receipts).
    RotateKey(super::tenant_keys::KeyArgs),
    /// Show the tenant's key versions in use, the re-seal pass and the destruction receipts.
    KeyStatus(super::tenant_keys::KeyArgs),
}

/// `agentdb tenant key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print its secret, this once (the hub keeps only a hash of it).
    Create(CreateArgs),
    /// List the tenant's API keys (never their secrets), revoked and expired ones included.
    List(ListArgs),
    /// Revoke an API key: the hub grants no token for it from now on (tokens it granted
    /// already run out within minutes).
    Revoke(RevokeArgs),
}

/// The tenant, and how to reach the hub's admin HTTP as its administrator.
#[derive(Debug, Args)]
pub(super) struct AdminArgs {
    /// The tenant.
    #[arg(long, value_name = "T")]
    pub tenant: TenantId,
    /// The hub's admin HTTP address (host:port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
    pub http: String,
    /// A token of the tenant with the admin scope (to create a key, also every scope the key
    /// grants).
    #[arg(
        long,
        value_name = "JWT",
        env = "AGENTDB_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Ed25519 signing key (PKCS#8 PEM) to mint a one-minute admin token with, instead of
    /// --token. Without either: JWT_SECRET (HS256), else the --dev signing key.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    signing_key: Option<PathBuf>,
    /// A hub's dev directory (DATA/dev): mint the admin token with its signing key.
    #[arg(long, value_name = "DIR")]
    dev: Option<PathBuf>,
    /// The audience of minted tokens.
    #[arg(long, value_name = "A", default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// Print the hub's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `agentdb tenant key create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Comma-separated scopes the key's tokens may carry: read, write, sync, admin, erase
    /// [default: read,write,sync].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    scope: Vec<Scope>,
    /// How long the key works: 90d, 12h, 30m, 45s or plain seconds [default: until revoked].
    #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
    expires: Option<u64>,
    /// A note for people, shown by `list`.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
}

/// Arguments of `agentdb tenant key list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `agentdb tenant key revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The key's id (16 hex characters, as `list` shows).
    #[arg(value_name = "ID")]
    id: String,
}

/// What the hub says of a key.
#[derive(Debug, Deserialize)]
struct KeyInfo {
    id: String,
    tenant: String,
    scopes: Vec<String>,
    #[serde(default)]
    label: Option<String>,
    created: u64,
    #[serde(default)]
    expires: Option<u64>,
    #[serde(default)]
    revoked: Option<u64>,
}

/// The hub's answer to a create.
#[derive(Debug, Deserialize)]
struct Created {
    secret: String,
    key: KeyInfo,
}

/// The hub's answer to a list.
#[derive(Debug, Deserialize)]
struct Listed {
    keys: Vec<KeyInfo>,
}

impl AdminArgs {
    /// The Bearer token: given, or minted for the tenant with the admin scope and `scopes`.
    pub(super) fn token(&self, scopes: &[Scope]) -> anyhow::Result<String> {
        if let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(token.trim().to_owned());
        }
        let Some(issuer) = agent::signing_issuer(self.signing_key.as_deref(), self.dev.as_deref())?
        else {
            bail!(
                "this needs an admin token of tenant {}: pass --token JWT (or AGENTDB_TOKEN), \
                 --signing-key FILE or --dev DIR, or set {JWT_SECRET_ENV}",
                self.tenant
            );
        };
        let mut all = vec![Scope::Admin];
        all.extend_from_slice(scopes);
        all.sort_unstable();
        all.dedup();
        let request = TokenRequest::new(self.tenant.clone(), AgentId::new(ADMIN_AGENT)?)
            .scopes(all)
            .ttl_secs(ADMIN_TOKEN_TTL_SECS)
            .audience(self.audience.clone());
        issuer
            .issue(&request, SystemClock::unix_secs())
            .context("cannot mint an admin token")
    }

    /// `/v1/tenants/{T}/keys` followed by `rest`.
    fn path(&self, rest: &str) -> String {
        format!("/v1/tenants/{}/keys{rest}", self.tenant)
    }
}

/// Runs `agentdb tenant …`.
pub fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Key(KeyCommand::Create(args)) => create(args),
        TenantCommand::Key(KeyCommand::List(args)) => list(args),
        TenantCommand::Key(KeyCommand::Revoke(args)) => revoke(args),
        TenantCommand::Erase(args) => super::tenant_erase::erase(args),
        TenantCommand::EraseStatus(args) => super::tenant_erase::status(args),
        TenantCommand::RotateKey(args) => super::tenant_keys::rotate(args),
        TenantCommand::KeyStatus(args) => super::tenant_keys::status(args),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let mut body = serde_json::Map::new();
    // No --scope: the hub's default (read, write, sync), which the minted token then carries.
    let token_scopes: Vec<Scope> = if args.scope.is_empty() {
        Scope::DEFAULT.to_vec()
    } else {
        body.insert("scopes".into(), serde_json::json!(args.scope));
        args.scope.clone()
    };
    if let Some(secs) = args.expires {
        body.insert("expires_in_secs".into(), secs.into());
    }
    if let Some(label) = &args.label {
        body.insert("label".into(), label.clone().into());
    }
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&token_scopes)?,
        Method::Post,
        &admin.path(""),
        Some(&serde_json::Value::Object(body)),
    )?;
    let created: Created = serde_json::from_value(answer.clone())
        .context("unexpected answer from the hub: no key in it")?;
    if admin.json {
        return output::json(&answer);
    }
    let key = &created.key;
    output::line(&created.secret)?;
    output::line(format_args!(
        "API key {} of tenant {} ({}; {}): keep the secret above now, it will not be shown again",
        key.id,
        key.tenant,
        key.scopes.join(","),
        key.expires.map_or_else(
            || "no expiry".to_owned(),
            |e| format!("expires {}", date(e))
        ),
    ))
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&[])?,
        Method::Get,
        &admin.path(""),
        None,
    )?;
    if admin.json {
        return output::json(&answer);
    }
    let listed: Listed =
        serde_json::from_value(answer).context("unexpected answer from the hub: no keys in it")?;
    if listed.keys.is_empty() {
        return output::line(format_args!("no API keys for tenant {}", admin.tenant));
    }
    let now = SystemClock::unix_secs();
    for key in &listed.keys {
        let state = match (key.revoked, key.expires) {
            (Some(at), _) => format!("revoked {}", date(at)),
            (None, Some(exp)) if exp <= now => format!("expired {}", date(exp)),
            (None, _) => "active".to_owned(),
        };
        output::line(format_args!(
            "{}  {state}  scopes {}  created {}  expires {}{}",
            key.id,
            key.scopes.join(","),
            date(key.created),
            key.expires.map_or_else(|| "never".to_owned(), date),
            key.label
                .as_deref()
                .map(|l| format!("  label {}", output::one_line(l)))
                .unwrap_or_default(),
        ))?;
    }
    Ok(())
}

fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    // The text is not echoed: it may be a whole key pasted by mistake.
    let id: ApiKeyId = args.id.trim().parse().map_err(|_| {
        anyhow!(
            "ID is not a key id: 16 lowercase hex characters, as `agentdb tenant key list` shows"
        )
    })?;
    let answer: serde_json::Value = admin_http::call(
        &admin.http,
        &admin.token(&[])?,
        Method::Delete,
        &admin.path(&format!("/{id}")),
        None,
    )?;
    // A key the tenant does not have is refused by the hub (404), with its one-line reason.
    if admin.json {
        return output::json(&answer);
    }
    output::line(format_args!(
        "revoked API key {id} of tenant {}; tokens it was traded for run out within minutes",
        admin.tenant
    ))
}

/// `90d`, `12h`, `30m`, `45s` or plain seconds, as seconds (at least 1).
fn parse_expiry(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.chars().last() {
        Some('d') => (&t[..t.len() - 1], 86_400),
        Some('h') => (&t[..t.len() - 1], 3_600),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('s') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let bad = || format!("{text:?} is not a duration like 90d, 12h, 30m, 45s or seconds");
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(0) => Err(format!("{text:?}: a key must work for at least one second")),
        Some(secs) => Ok(secs),
        None => Err(bad()),
    }
}

/// Unix seconds as RFC 3339 (UTC), or the number when out of range.
fn date(unix: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries() {
        assert_eq!(parse_expiry("90d"), Ok(90 * 86_400));
        assert_eq!(parse_expiry("12h"), Ok(12 * 3_600));
        assert_eq!(parse_expiry("30m"), Ok(1_800));
        assert_eq!(parse_expiry("45s"), Ok(45));
        assert_eq!(parse_expiry("7776000"), Ok(7_776_000));
        assert!(parse_expiry("0").is_err());
        assert!(parse_expiry("0d").is_err());
        assert!(parse_expiry("-1d").is_err());
        assert!(parse_expiry("1w").is_err());
        assert!(parse_expiry("d").is_err());
        assert!(parse_expiry("1.5h").is_err());
        assert!(parse_expiry("99999999999999999999d").is_err());
        assert!(parse_expiry("999999999999999999d").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(u64::MAX), u64::MAX.to_string());
    }
}
