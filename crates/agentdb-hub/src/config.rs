//! The hub's settings: a plain struct; the binary fills it from flags, environment and TOML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agentdb_core::{HubId, TenantId};
use agentdb_security::tls::TlsMaterial;

/// How the hub checks tokens.
#[derive(Clone)]
pub enum TokenKey {
    /// EdDSA: the signing key's public half, PEM.
    Ed25519PublicPem(Vec<u8>),
    /// HS256 with a shared secret (compatibility with `JWT_SECRET`).
    Hs256Secret(Vec<u8>),
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenKey::Ed25519PublicPem(_) => f.write_str("TokenKey::Ed25519PublicPem(..)"),
            TokenKey::Hs256Secret(_) => f.write_str("TokenKey::Hs256Secret(..)"),
        }
    }
}

/// Limits that protect the hub and its tenants from each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubLimits {
    /// Most connected agents in total. Default 10,000.
    pub max_agents: usize,
    /// Most connected agents of one tenant. Default 1,000.
    pub max_agents_per_tenant: usize,
    /// Most requests of one tenant being served at once. Default 256.
    pub max_inflight_per_tenant: usize,
    /// Largest frame accepted, in bytes. Default 8 MiB.
    pub max_frame_len: usize,
    /// Time a new connection has to authenticate. Default 5 s.
    pub auth_timeout: Duration,
    /// Idle time after which QUIC closes a silent connection. Default 60 s.
    pub idle_timeout: Duration,
    /// What each tenant may hold and write (episodes, stored bytes, writes per second).
    /// Default: unlimited.
    pub quotas: Quotas,
    /// Most tenants named by a label of the per-tenant metrics (`GET /v1/metrics/tenants`);
    /// the others are summed under `tenant="_other"`. Default 100.
    pub max_metric_tenants: usize,
    /// How long each tenant keeps its episodes, and how often the hub deletes those past it.
    /// Default: kept until deleted, swept every 60 s (episodes that carry their own expiry are
    /// deleted then too).
    pub retention: Retention,
    /// The audit log (docs/compliance.md#audit-log): where it is written and how. Default
    /// `None`: a hub built as a library keeps no audit log unless given one; `agentdb hub`
    /// keeps one in `<data>/audit` unless told not to.
    pub audit: Option<AuditSettings>,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            max_agents: 10_000,
            max_agents_per_tenant: 1_000,
            max_inflight_per_tenant: 256,
            max_frame_len: agentdb_proto::MAX_FRAME_LEN,
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            quotas: Quotas::default(),
            max_metric_tenants: 100,
            retention: Retention::default(),
            audit: None,
        }
    }
}

/// Where and how a hub keeps its audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The log's directory (created, mode 0700). One hub writes a directory at a time.
    pub dir: PathBuf,
    /// Checkpoint interval, retention, segment size, sync interval and queue.
    pub log: agentdb_audit::AuditConfig,
}

impl AuditSettings {
    /// A log in `dir` with the default settings (a checkpoint every 60 s, kept forever).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            log: agentdb_audit::AuditConfig::default(),
        }
    }
}

/// The quotas of one tenant; `None` is no limit (or, in an override, "as below").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Most live episodes the tenant may hold.
    #[serde(default)]
    pub max_episodes: Option<u64>,
    /// Most bytes of episode content the tenant may store: task, input, output, critique,
    /// tags and metadata (compact JSON) of its live episodes, as the per-episode size limit
    /// counts them; not the embedding, and not the size on disk.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Most episodes written (stored, updated or deleted) per second, with a burst of as many.
    #[serde(default)]
    pub max_writes_per_sec: Option<u32>,
}

impl TenantQuota {
    /// No limit at all.
    pub const UNLIMITED: TenantQuota = TenantQuota {
        max_episodes: None,
        max_bytes: None,
        max_writes_per_sec: None,
    };

    /// Each limit of `self`, or `below`'s where `self` sets none.
    pub fn over(self, below: TenantQuota) -> TenantQuota {
        TenantQuota {
            max_episodes: self.max_episodes.or(below.max_episodes),
            max_bytes: self.max_bytes.or(below.max_bytes),
            max_writes_per_sec: self.max_writes_per_sec.or(below.max_writes_per_sec),
        }
    }

    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Self::UNLIMITED
    }
}

/// Quotas of every tenant: a default, and per-tenant values over it (limit by limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    /// What every tenant gets.
    pub default: TenantQuota,
    /// A tenant's own limits; those it leaves unset are the default's.
    pub per_tenant: BTreeMap<TenantId, TenantQuota>,
}

impl Quotas {
    /// The quota `tenant` is held to.
    pub fn for_tenant(&self, tenant: &TenantId) -> TenantQuota {
        self.per_tenant
            .get(tenant)
            .map_or(self.default, |q| q.over(self.default))
    }
}

/// Everything a hub needs to run.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This hub's name.
    pub hub_id: HubId,
    /// QUIC address to listen on (port 0 picks a free port).
    pub quic_addr: SocketAddr,
    /// Admin HTTP address (port 0 picks a free port); `None` disables it.
    pub http_addr: Option<SocketAddr>,
    /// HTTPS/JSON gateway address (port 0 picks a free port); `None` disables it. It uses the
    /// hub's certificate and the same client-certificate rule as QUIC.
    pub https_addr: Option<SocketAddr>,
    /// CA, certificate and key.
    pub tls: TlsMaterial,
    /// Require client certificates signed by the CA (mutual TLS). Default true.
    pub require_client_cert: bool,
    /// How tokens are verified.
    pub token_key: TokenKey,
    /// The audience tokens must name. Default `agentdb-hub`.
    pub audience: String,
    /// Limits.
    pub limits: HubLimits,
    /// Links to other hubs, region and residency.
    pub federation: crate::federation::FederationConfig,
    /// Where the engine's master key is kept, so that a master-key rewrap
    /// (`POST /v1/admin/rewrap-master-key`) can keep the new one there. Default: unknown, and
    /// the hub refuses to rewrap.
    pub master_key: MasterKeySource,
}

/// Where a hub's master key comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MasterKeySource {
    /// Not known to the hub (a hub embedded in another program): rewrapping is refused.
    #[default]
    Unknown,
    /// A key file (base64 text, mode 0600): a rewrap writes the new key beside it as
    /// `<name>.new`, re-wraps, then renames it over the old file.
    File(PathBuf),
    /// The `AGENTDB_MASTER_KEY` environment variable: the hub cannot keep a new key there, so
    /// a rewrap is refused before anything changes.
    Environment,
}

/// How long tenants keep their episodes: a default and per-tenant values (a run-time value,
/// `PUT /v1/tenants/{t}/retention`, wins over both). An episode older than its tenant's
/// retention (by its creation time) is deleted at the next sweep, as a delete that
/// replicates; `None` keeps episodes until they are deleted or reach their own expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Every tenant's retention unless its own says otherwise. Default `None`.
    pub default: Option<Duration>,
    /// A tenant's own retention; `None` keeps its episodes whatever the default.
    pub per_tenant: BTreeMap<TenantId, Option<Duration>>,
    /// How often the hub looks for expired episodes in every tenant. Default 60 s.
    pub sweep_interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            default: None,
            per_tenant: BTreeMap::new(),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl Retention {
    /// The retention the configuration gives `tenant`.
    pub fn for_tenant(&self, tenant: &TenantId) -> Option<Duration> {
        self.per_tenant.get(tenant).copied().unwrap_or(self.default)
    }
}
