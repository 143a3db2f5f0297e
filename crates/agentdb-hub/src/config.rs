//! The hub's settings: a plain struct; the binary fills it from flags, environment and TOML.

use std::net::SocketAddr;
use std::time::Duration;

use agentdb_core::HubId;
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
        }
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
}
