//! How an agent is set up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{AgentId, TenantId};
use agentdb_memory::{Clock, Embedder, SystemClock};
use agentdb_security::apikey::ApiKeySecret;

use crate::connector::Connector;
use crate::credentials::{ExchangeOnly, TokenProvider};
use crate::spool_key::SpoolKey;

/// Settings of an [`crate::EphemeralAgent`].
#[derive(Clone)]
pub struct AgentConfig {
    /// The tenant the agent works for.
    pub tenant: TenantId,
    /// The agent's id; a unique one is generated when absent.
    pub agent: Option<AgentId>,
    /// How long the agent lives. Default 300 s.
    pub lifetime: Duration,
    /// The hub, as `quic://host:port`.
    pub hub: String,
    /// The name the hub's certificate must carry; defaults to the host of [`Self::hub`].
    pub server_name: Option<String>,
    /// The deployment CA (PEM) that signed the hub's certificate.
    pub ca_pem: Vec<u8>,
    /// The agent's client certificate and key (PEM), for mutual TLS.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Where tokens come from (unused when [`Self::api_key`] is set).
    pub tokens: Arc<dyn TokenProvider>,
    /// A tenant API key: when set, the agent trades it at the hub for its tokens (an
    /// `Exchange` on each connection before its `Hello`, and again to refresh), and
    /// [`Self::tokens`] is not used. See [`Self::with_api_key`].
    pub api_key: Option<ApiKeySecret>,
    /// How often the agent syncs in the background. Default 30 s.
    pub sync_interval: Duration,
    /// Where episodes the hub cannot take are kept, sealed, so that they survive the agent
    /// (see [`crate::Durability::Spooled`]). Without one, a store the hub does not acknowledge
    /// is an error and nothing is kept.
    pub spool_dir: Option<PathBuf>,
    /// The key that seals the spool; by default derived from the client key
    /// ([`SpoolKey::from_private_key_pem`]), else from the API key
    /// ([`SpoolKey::from_api_key`]). A spool without any of them is a configuration error.
    pub spool_key: Option<SpoolKey>,
    /// The longest wait between attempts to send spooled episodes after transient failures;
    /// the wait starts at [`Self::reconnect_backoff`] and doubles. Default 60 s.
    pub max_retry_backoff: Duration,
    /// How many episodes the agent keeps from what it read from the hub (query answers,
    /// [`crate::EphemeralAgent::get_episode`]) to answer from its local cache while the hub is
    /// unreachable; the oldest go first. Default 5,000; 0 keeps none. An agent never copies
    /// the tenant's memory: its local cache holds what it stored and what it read.
    pub read_cache: usize,
    /// How long a hub request may take. Default 10 s.
    pub request_timeout: Duration,
    /// How long connecting (handshake + authentication) may take. Default 3 s.
    pub connect_timeout: Duration,
    /// After a failed connection attempt, how long requests fail fast (as unreachable) before
    /// the next attempt, by [`Self::clock`]. Default 2 s.
    pub reconnect_backoff: Duration,
    /// The agent's clock (lifetime, token refresh, sync interval, retry waits); injected in
    /// tests.
    pub clock: Arc<dyn Clock>,
    /// The embedder of the local cache; it should be the hub's model (see
    /// `Welcome::embedder`) so that local and hub scores compare. Default: lexical.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// The endpoints and TLS sessions the agent shares with others (see [`Connector`]);
    /// [`Connector::shared`], the process-wide one, when absent.
    pub connector: Option<Connector>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("tenant", &self.tenant)
            .field("agent", &self.agent)
            .field("lifetime", &self.lifetime)
            .field("hub", &self.hub)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// An agent of `tenant` talking to `hub` (`quic://host:port`), trusting `ca_pem`, getting
    /// tokens from `tokens`.
    pub fn new(
        tenant: TenantId,
        hub: impl Into<String>,
        ca_pem: Vec<u8>,
        tokens: Arc<dyn TokenProvider>,
    ) -> Self {
        Self {
            tenant,
            agent: None,
            lifetime: Duration::from_secs(300),
            hub: hub.into(),
            server_name: None,
            ca_pem,
            client_cert: None,
            tokens,
            api_key: None,
            sync_interval: Duration::from_secs(30),
            spool_dir: None,
            spool_key: None,
            max_retry_backoff: Duration::from_secs(60),
            read_cache: 5_000,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
            embedder: None,
            connector: None,
        }
    }

    /// An agent of `tenant` talking to `hub`, trusting `ca_pem`, that gets its tokens by
    /// trading `api_key` at the hub: on every connection it sends `Exchange { api_key, agent }`
    /// before its `Hello` and authenticates with the token granted (the key's tenant, at most
    /// its scopes, signed by that hub); to refresh, it exchanges again. A key the hub does not
    /// know, revoked or expired is a refusal ([`crate::AgentError::Rejected`],
    /// `unauthenticated`), as a bad token is.
    pub fn with_api_key(
        tenant: TenantId,
        hub: impl Into<String>,
        ca_pem: Vec<u8>,
        api_key: ApiKeySecret,
    ) -> Self {
        let mut config = Self::new(tenant, hub, ca_pem, Arc::new(ExchangeOnly));
        config.api_key = Some(api_key);
        config
    }

    /// Sets the lifetime.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the agent id.
    pub fn agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Presents a client certificate (PEM) and key (PEM).
    pub fn client_cert(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.client_cert = Some((cert_pem, key_pem));
        self
    }

    /// Keeps episodes the hub cannot take in `dir`, sealed (see [`Self::spool_dir`]).
    pub fn spool_dir(mut self, dir: PathBuf) -> Self {
        self.spool_dir = Some(dir);
        self
    }

    /// Seals the spool with `key` (instead of a key derived from the client key).
    pub fn spool_key(mut self, key: SpoolKey) -> Self {
        self.spool_key = Some(key);
        self
    }

    /// Sets the background sync interval.
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Sets the server name checked against the hub certificate.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Embeds locally with `embedder` (e.g. the sentence model the hub uses).
    pub fn embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Connects through `connector` instead of the process-wide one: its agents share
    /// endpoints and TLS sessions only with each other.
    pub fn connector(mut self, connector: Connector) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Uses `clock` for lifetime and token refresh.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}
