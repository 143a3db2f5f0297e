//! The Federated AgentDB hub: a QUIC endpoint (quinn) with mutual TLS (rustls) where agents
//! authenticate with short-lived tokens and store and query their tenant's memory, plus an admin
//! HTTP API (axum).
//!
//! ```text
//! agent ──QUIC+mTLS──► accept ─► connection::serve ─► ServerSession (sans-IO, agentdb-proto)
//!                                    │ Hello ─► auth::verify (token + certificate, policy::check_identity)
//!                                    │ Store/Query/Pull/Stats ─► ops::execute ─► policy::authorize ─► MemoryEngine
//! client ──HTTPS──► gateway::serve ─► gateway::router (/v1/episodes, /v1/query, /v1/changes, /v1/token, …)
//!                                    │ Bearer ─► auth::verify (the same function) ─► ops::execute ─► policy ─► MemoryEngine
//! admin ──HTTP──► admin::router (/health, /metrics; with tokens: /v1/federation, /v1/metrics/tenants,
//!                                 /v1/tenants/{t}/stats|keys|quota|retention)
//! ```
//!
//! **Invariant:** a request's tenant is the verified token's tenant; request bodies carry none.

mod admin;
mod admin_audit;
mod admin_erasure;
mod admin_revocations;
mod audit;
mod auth;
pub mod config;
mod connection;
mod control;
pub mod credentials;
mod erasure;
pub mod federation;
mod follow;
mod gateway;
mod key_ops;
mod metrics;
mod ops;
mod quota;
mod request_id;
mod retention;
mod revocations;
mod revoked_tokens;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentdb_memory::MemoryEngine;
use agentdb_security::token::{TokenKeys, TokenVerifier};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::AuditSettings;
pub use config::Retention;
pub use config::{HubConfig, HubLimits, MasterKeySource, Quotas, TenantQuota, TokenKey};
pub use federation::{FederationConfig, FederationStatus, Topology};
pub use follow::{follow_shared_storage, DEFAULT_FOLLOW_INTERVAL, REVOCATION_INTERVAL};
pub use gateway::openapi;
pub use retention::{format_retention, parse_retention, FOREVER};

use state::HubState;

/// Why a hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The TLS material is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] agentdb_security::tls::TlsError),
    /// The token key is unusable.
    #[error("token key: {0}")]
    TokenKey(String),
    /// The hub's own credentials (its signing key, its revoked tokens) cannot be loaded.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The quota overrides kept in the hub's data cannot be loaded.
    #[error("quotas: {0}")]
    Quotas(String),
    /// The hub's certificate key cannot sign (receipts are signed with it).
    #[error("the hub's certificate key: {0}")]
    Signer(String),
    /// The audit log cannot be opened.
    #[error("{0}")]
    Audit(#[from] agentdb_audit::OpenError),
    /// An erasure order held here could not be applied.
    #[error("erasure: {0}")]
    Erasure(String),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The hub's certificate binds it to another region than its configuration names.
    #[error(
        "this hub's certificate places it in region {certified}, but its configuration says \
         region {configured}"
    )]
    Region {
        /// From the certificate.
        certified: agentdb_core::Region,
        /// From the configuration.
        configured: agentdb_core::Region,
    },
}

/// A running hub. Dropping it aborts the hub; call [`HubHandle::shutdown`] to drain it.
#[derive(Debug)]
pub struct HubHandle {
    quic_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    https: Option<JoinHandle<()>>,
    state: Arc<HubState>,
}

impl HubHandle {
    /// The bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The bound admin HTTP address, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound HTTPS gateway address, if enabled.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Agents connected and authenticated now.
    pub fn connected_agents(&self) -> usize {
        self.state.connected_agents()
    }

    /// This hub's federation state (links, version vectors).
    pub fn federation_status(&self) -> FederationStatus {
        self.state.federation.status(&self.state)
    }

    /// The memory engine behind the hub.
    pub fn engine(&self) -> &Arc<MemoryEngine> {
        &self.state.engine
    }

    /// Stops accepting connections, lets every connection finish the requests it has accepted
    /// (so no acknowledged write is lost), closes them and waits for the endpoint to go idle.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        if let Some(http) = self.http.take() {
            http.abort();
        }
        if let Some(https) = self.https.take() {
            let _ = https.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
        let state = Arc::clone(&self.state);
        let _ = tokio::task::spawn_blocking(move || state.audit.stopped()).await;
    }
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.accept.take() {
            t.abort();
        }
        if let Some(t) = self.http.take() {
            t.abort();
        }
        if let Some(t) = self.https.take() {
            t.abort();
        }
    }
}

/// Starts a hub serving `engine`. Must be called inside a tokio runtime.
pub async fn start(config: HubConfig, engine: Arc<MemoryEngine>) -> Result<HubHandle, StartError> {
    let verifier = match &config.token_key {
        TokenKey::Ed25519PublicPem(pem) => TokenVerifier::from_ed25519_public_pem(pem),
        TokenKey::Hs256Secret(secret) => TokenVerifier::from_hs256_secret(secret),
    }
    .map_err(|e| StartError::TokenKey(e.to_string()))?
    .with_audience(config.audience.clone());
    federation::check_own_region(&config)?;
    let (credentials, own_tokens) =
        credentials::Credentials::load(&engine, &config.hub_id, &config.audience)
            .map_err(StartError::Credentials)?;
    let tokens = TokenKeys::new(verifier).with(own_tokens);

    let crypto = agentdb_security::tls::server_config(
        &config.tls,
        config.require_client_cert,
        &[agentdb_proto::ALPN, agentdb_proto::fed::FED_ALPN],
    )?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| StartError::Tls(agentdb_security::tls::TlsError::Config(e.to_string())))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(256u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.congestion_controller_factory(congestion());
    if let Ok(idle) = config.limits.idle_timeout.try_into() {
        transport.max_idle_timeout(Some(idle));
    }
    server.transport_config(Arc::new(transport));
    let endpoint = agentdb_security::socket::quic_socket(config.quic_addr)
        .and_then(|socket| {
            let runtime = quinn::default_runtime()
                .ok_or_else(|| std::io::Error::other("no async runtime found"))?;
            quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server),
                socket,
                runtime,
            )
        })
        .map_err(|source| StartError::Bind {
            addr: config.quic_addr,
            source,
        })?;
    let quic_addr = endpoint.local_addr().map_err(|source| StartError::Bind {
        addr: config.quic_addr,
        source,
    })?;

    let http_listener = match config.http_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let https_listener = match config.https_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    let https_addr = https_listener.as_ref().and_then(|l| l.local_addr().ok());

    let signer = agentdb_security::signing::HubSigner::from_pem(
        &String::from_utf8_lossy(&config.tls.cert_pem),
        &String::from_utf8_lossy(&config.tls.key_pem),
    )
    .map_err(|e| StartError::Signer(e.to_string()))?;
    let signer = Arc::new(signer);
    let audit = match &config.limits.audit {
        Some(settings) => audit::Audit::open(settings, config.hub_id.clone(), Arc::clone(&signer))?,
        None => audit::Audit::default(),
    };
    audit.started();
    let state = Arc::new(HubState::new(
        config,
        engine,
        tokens,
        credentials,
        signer,
        audit,
    ));
    revoked_tokens::load(&state).map_err(StartError::Credentials)?;
    revocations::load(&state).map_err(StartError::Credentials)?;
    state
        .quotas
        .load(&state.engine)
        .map_err(StartError::Quotas)?;
    erasure::catch_up(&state).map_err(StartError::Erasure)?;
    let https_tls = gateway::serve::tls_config(&state)?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    federation::start(&state, &endpoint, shutdown_rx.clone())?;
    retention::start(&state, shutdown_rx.clone());
    let accept = tokio::spawn(accept_loop(
        endpoint.clone(),
        Arc::clone(&state),
        shutdown_rx.clone(),
    ));
    let https = https_listener.map(|listener| {
        let app = gateway::router(Arc::clone(&state));
        tokio::spawn(gateway::serve::run(
            listener,
            https_tls,
            app,
            Arc::clone(&state),
            shutdown_rx.clone(),
        ))
    });
    let http = http_listener.map(|listener| {
        let app = admin::router(Arc::clone(&state));
        let mut rx = shutdown_rx;
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
        })
    });
    tracing::info!(%quic_addr, ?http_addr, ?https_addr, hub = %state.config.hub_id, "hub listening");
    Ok(HubHandle {
        quic_addr,
        http_addr,
        https_addr,
        endpoint,
        shutdown,
        accept: Some(accept),
        http,
        https,
        state,
    })
}

/// Cubic with a 256 KiB initial window (quinn's default is about 12 KB): a hub link carrying a
/// stream of small pages is rarely busy enough to grow its window, and would otherwise wait a
/// round trip every few pages.
pub(crate) fn congestion() -> Arc<quinn::congestion::CubicConfig> {
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(256 * 1024);
    Arc::new(cubic)
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    state: Arc<HubState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                connections.spawn(connection::serve(Arc::clone(&state), incoming, for_connections.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Refuse new connections; let the open ones drain.
    endpoint.set_server_config(None);
    while connections.join_next().await.is_some() {}
}
