//! Federation: the hub's federation settings (TOML keys, flags and the regional-hub environment
//! variables) and `agentdb federation status`.

use std::collections::BTreeMap;
use std::time::Duration;

use agentdb_core::{Region, Residency, TenantId};
use agentdb_hub::federation::{FederationConfig, FederationStatus, Topology};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::{admin_http, output};

/// The environment variables naming regional hubs: `(region, variable)`.
pub const REGIONAL_HUB_ENV: [(&str, &str); 3] =
    [("eu", "EU_HUB"), ("us", "US_HUB"), ("ap", "AP_HUB")];

/// The federation keys of the hub's TOML file (top level, next to `hub_id`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationKeys {
    /// This hub's region.
    pub region: Option<Region>,
    /// `hierarchical`, `mesh` or `hub-and-spoke`.
    pub topology: Option<Topology>,
    /// The hub this one dials (hierarchical, hub-and-spoke).
    pub upstream: Option<String>,
    /// The hubs this one dials (mesh).
    pub peers: Option<Vec<String>>,
    /// Anti-entropy interval: seconds (`2`, `0.5`) or text (`"500ms"`, `"2s"`, `"1m"`).
    pub sync_interval: Option<DurationValue>,
    /// `[tenants.NAME]`: per-tenant settings.
    pub tenants: Option<BTreeMap<TenantId, TenantSection>>,
    /// `[federation]`: link tuning.
    pub federation: Option<TuningSection>,
}

/// `[tenants.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// Regions the tenant's memory may be stored in.
    pub residency: Option<Vec<Region>>,
}

/// `[federation]`: tuning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningSection {
    /// Most ops per page.
    pub page_ops: Option<usize>,
    /// Most unacknowledged pages per link.
    pub window: Option<usize>,
    /// Least time a tombstone is kept (seconds).
    pub tombstone_retention_secs: Option<u64>,
    /// Longest wait between attempts to reach a hub (seconds).
    pub max_backoff_secs: Option<u64>,
}

/// A duration written as seconds or as text with a unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Int(s) => Some(Duration::from_secs(s)),
            // `try_`: a value too large for a `Duration` (e.g. 1e20) is refused, not a panic.
            Raw::Float(s) => Duration::try_from_secs_f64(s).ok(),
            Raw::Text(t) => parse_duration(&t),
        };
        parsed.map(DurationValue).ok_or_else(|| {
            serde::de::Error::custom(
                "expected seconds (2, 0.5) or a duration like \"500ms\", \"2s\", \"1m\"",
            )
        })
    }
}

/// `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Federation flags of `agentdb hub` (they override the file).
#[derive(Debug, Default, Args)]
pub struct FederationFlags {
    /// This hub's region (residency rules name regions) [default: default].
    #[arg(long, value_name = "REGION")]
    pub region: Option<Region>,
    /// How this hub links: hierarchical, mesh or hub-and-spoke [default: hierarchical].
    #[arg(long, value_name = "TOPOLOGY")]
    pub topology: Option<String>,
    /// The hub this one dials (quic://host:port): hierarchical, hub-and-spoke.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// A hub this one dials (quic://host:port), repeatable: mesh.
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// Anti-entropy interval, e.g. 500ms or 2s [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub sync_interval: Option<Duration>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 500ms, 2s or 1m"))
}

/// Expands `$EU_HUB`-style references from `env`.
fn expand(url: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    match url.strip_prefix('$') {
        Some(var) => env(var).with_context(|| format!("{url} is not set in the environment")),
        None => Ok(url.to_owned()),
    }
}

/// Builds the hub's federation settings: flags over file over defaults. Addresses may be
/// written `$EU_HUB` (taken from the environment). A mesh hub with no peers defaults to the
/// regional hubs `EU_HUB`, `US_HUB`, `AP_HUB` that are set, except its own region's.
pub fn resolve(
    flags: &FederationFlags,
    file: FederationKeys,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<FederationConfig> {
    let mut config = FederationConfig::default();
    if let Some(region) = flags.region.clone().or(file.region) {
        config.region = region;
    }
    let topology = match &flags.topology {
        Some(t) => match t.as_str() {
            "hierarchical" => Some(Topology::Hierarchical),
            "mesh" => Some(Topology::Mesh),
            "hub-and-spoke" => Some(Topology::HubAndSpoke),
            other => bail!("unknown topology {other:?}: use hierarchical, mesh or hub-and-spoke"),
        },
        None => file.topology,
    };
    config.topology = topology.unwrap_or_default();
    config.upstream = match flags.upstream.clone().or(file.upstream) {
        Some(u) => Some(expand(&u, env)?),
        None => None,
    };
    let peers = if flags.peers.is_empty() {
        file.peers
    } else {
        Some(flags.peers.clone())
    };
    config.peers = match peers {
        Some(list) => list
            .iter()
            .map(|u| expand(u, env))
            .collect::<anyhow::Result<_>>()?,
        None if config.topology == Topology::Mesh => REGIONAL_HUB_ENV
            .iter()
            .filter(|(region, _)| *region != config.region.as_str())
            .filter_map(|(_, var)| env(var))
            .collect(),
        None => Vec::new(),
    };
    if let Some(d) = flags.sync_interval.or(file.sync_interval.map(|d| d.0)) {
        config.sync_interval = d;
    }
    let mut residency = Residency::everywhere();
    for (tenant, section) in file.tenants.unwrap_or_default() {
        if let Some(regions) = section.residency {
            if regions.is_empty() {
                bail!("config: [tenants.{tenant}] residency lists no region");
            }
            residency.restrict(tenant, regions);
        }
    }
    config.residency = residency;
    let tuning = file.federation.unwrap_or_default();
    if let Some(n) = tuning.page_ops {
        config.link.page_ops = n.max(1);
    }
    if let Some(n) = tuning.window {
        config.link.window = n.max(1);
    }
    if let Some(s) = tuning.tombstone_retention_secs {
        config.tombstone_retention = Duration::from_secs(s);
    }
    if let Some(s) = tuning.max_backoff_secs {
        config.max_backoff = Duration::from_secs(s.max(1));
    }
    config.validate()?;
    Ok(config)
}

/// `agentdb federation …`.
#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Show a hub's links and per-tenant version vectors.
    Status(StatusArgs),
    /// Forget a peer hub that has left the federation for good: tombstone collection stops
    /// waiting for its acknowledgements (a hub that links again is recorded again).
    ForgetPeer(ForgetPeerArgs),
}

/// How `agentdb federation` commands reach a hub's admin HTTP as an operator.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// The hub's admin HTTP address (host:port).
    #[arg(long, value_name = "ADDR", default_value = super::hub::DEFAULT_HTTP)]
    pub(super) http: String,
    /// A token with the operator scope (`agentdb token issue … --scope operator`).
    #[arg(
        long,
        value_name = "JWT",
        env = "AGENTDB_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Ed25519 signing key (PKCS#8 PEM) to mint a one-minute operator token with, instead of
    /// `--token`.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    signing_key: Option<std::path::PathBuf>,
}

/// Arguments of `agentdb federation status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `agentdb federation forget-peer`.
#[derive(Debug, Args)]
pub struct ForgetPeerArgs {
    /// The hub to forget.
    #[arg(value_name = "HUB")]
    hub: agentdb_core::HubId,
    #[command(flatten)]
    operator: OperatorArgs,
}

impl OperatorArgs {
    /// The Bearer token: given, or minted with the signing key.
    pub(super) fn token(&self) -> anyhow::Result<String> {
        use agentdb_security::token::{Scope, TokenRequest};
        if let Some(token) = &self.token {
            return Ok(token.trim().to_owned());
        }
        let Some(path) = &self.signing_key else {
            bail!("this needs an operator token: pass --token JWT (or AGENTDB_TOKEN) or --signing-key FILE");
        };
        let issuer = super::agent::ed25519_issuer(path)?;
        let request = TokenRequest::new(
            TenantId::new("operator")?,
            agentdb_core::AgentId::new("operator")?,
        )
        .scopes([Scope::Operator])
        .ttl_secs(60);
        issuer
            .issue(&request, agentdb_memory::SystemClock::unix_secs())
            .context("cannot mint an operator token")
    }

    /// Sends `method path` to the admin HTTP with the operator token; the parsed answer, or an
    /// error with the hub's one-line message.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: admin_http::Method,
        path: &str,
    ) -> anyhow::Result<T> {
        admin_http::call(&self.http, &self.token()?, method, path, None)
    }
}

/// Runs `agentdb federation …`.
pub fn run(command: FederationCommand) -> anyhow::Result<()> {
    match command {
        FederationCommand::Status(args) => status(args),
        FederationCommand::ForgetPeer(args) => forget_peer(args),
    }
}

fn forget_peer(args: ForgetPeerArgs) -> anyhow::Result<()> {
    let path = format!("/v1/federation/peers/{}", args.hub);
    let answer: serde_json::Value = args.operator.call(admin_http::Method::Delete, &path)?;
    if answer["forgotten"] == true {
        output::line(format_args!("forgot hub {}", args.hub))
    } else {
        output::line(format_args!("hub {} was not known", args.hub))
    }
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    let status: FederationStatus = args
        .operator
        .call(admin_http::Method::Get, "/v1/federation")?;
    if args.json {
        return output::json(&status);
    }
    output::line(format_args!(
        "hub {} region {} topology {}",
        status.hub, status.region, status.topology
    ))?;
    if status.links.is_empty() {
        output::line("links: none")?;
    }
    for l in &status.links {
        let since = l.last_sync_ms.map_or_else(
            || "never".to_owned(),
            |ms| {
                let ago = now_ms().saturating_sub(ms);
                format!("{:.1}s ago", ago as f64 / 1000.0)
            },
        );
        output::line(format_args!(
            "link {dir} {peer} ({region}) {addr}: {state}, last sync {since}, sent {sent}, received {recv}, lag {lag}{err}",
            dir = l.direction,
            peer = l.peer.as_deref().unwrap_or("?"),
            region = l.region.as_deref().unwrap_or("?"),
            addr = l.address.as_deref().unwrap_or("-"),
            state = l.state,
            sent = l.ops_sent,
            recv = l.ops_received,
            lag = l.lag_ops,
            err = l
                .last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default(),
        ))?;
    }
    for t in &status.tenants {
        let vv: Vec<String> = t
            .version_vector
            .iter()
            .map(|(h, s)| format!("{h}:{s}"))
            .collect();
        let residency = t
            .residency
            .as_ref()
            .map(|r| format!(" residency [{}]", r.join(", ")))
            .unwrap_or_default();
        output::line(format_args!(
            "tenant {} {{{}}}{residency}",
            t.tenant,
            vv.join(", ")
        ))?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    agentdb_memory::SystemClock::unix_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("3h"), None);
        // Too large for a Duration: refused, not a panic (found by fuzzing the hub config).
        assert_eq!(parse_duration("100000000000000000000000s"), None);
        assert!(toml::from_str::<FederationKeys>("sync_interval = 1e20").is_err());
        assert!(toml::from_str::<FederationKeys>("sync_interval = -0.5").is_err());
        assert!(toml::from_str::<FederationKeys>("sync_interval = nan").is_err());
        assert_eq!(
            toml::from_str::<FederationKeys>("sync_interval = 0.5")
                .unwrap()
                .sync_interval,
            Some(DurationValue(Duration::from_millis(500)))
        );
    }

    #[test]
    fn file_keys_become_config() {
        let file: FederationKeys = toml::from_str(
            r#"
            region = "eu"
            topology = "hierarchical"
            upstream = "$GLOBAL"
            sync_interval = "250ms"
            [tenants.acme]
            residency = ["eu"]
            "#,
        )
        .unwrap();
        let env = |v: &str| (v == "GLOBAL").then(|| "quic://10.0.0.1:4433".to_owned());
        let c = resolve(&FederationFlags::default(), file, &env).unwrap();
        assert_eq!(c.region.as_str(), "eu");
        assert_eq!(c.upstream.as_deref(), Some("quic://10.0.0.1:4433"));
        assert_eq!(c.sync_interval, Duration::from_millis(250));
        let acme = TenantId::new("acme").unwrap();
        assert!(c.residency.allows(&acme, &Region::new("eu").unwrap()));
        assert!(!c.residency.allows(&acme, &Region::new("us").unwrap()));
    }

    #[test]
    fn mesh_defaults_to_the_other_regional_hubs() {
        let file: FederationKeys = toml::from_str("region = \"us\"\ntopology = \"mesh\"").unwrap();
        let env = |v: &str| match v {
            "EU_HUB" => Some("quic://eu:4433".to_owned()),
            "US_HUB" => Some("quic://us:4433".to_owned()),
            _ => None,
        };
        let c = resolve(&FederationFlags::default(), file, &env).unwrap();
        assert_eq!(c.peers, vec!["quic://eu:4433".to_owned()]);
    }

    #[test]
    fn bad_settings_are_one_line_errors() {
        let file: FederationKeys =
            toml::from_str("topology = \"mesh\"\nupstream = \"quic://x:1\"").unwrap();
        let e = resolve(&FederationFlags::default(), file, &no_env).unwrap_err();
        assert!(e.to_string().contains("upstream"), "{e}");
        let file: FederationKeys = toml::from_str("upstream = \"$NOPE\"").unwrap();
        let e = resolve(&FederationFlags::default(), file, &no_env).unwrap_err();
        assert!(e.to_string().contains("NOPE"), "{e}");
        assert!(toml::from_str::<FederationKeys>("sync_interval = \"soon\"").is_err());
        assert!(toml::from_str::<FederationKeys>("topology = \"ring\"").is_err());
    }
}
