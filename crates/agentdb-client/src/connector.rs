//! What the agents of a process share to reach hubs: QUIC endpoints and TLS client
//! configurations.
//!
//! An agent used to open its own UDP endpoint (a socket and a driver task) and build its own
//! rustls configuration, so every spawn paid for both and did a full TLS handshake with
//! certificates. A [`Connector`] keeps
//!
//! - one client endpoint per tokio runtime and address family, created on first use and
//!   replaced when its runtime has shut down;
//! - one TLS client configuration per (CA, client certificate, client key), and with it
//!   rustls's session store, so a later connection of the same identity to the same hub resumes
//!   the TLS session (no certificate chains sent or verified, no signatures) instead of a full
//!   handshake. The hub sees the same client certificate: TLS 1.3 resumption carries the
//!   identity of the session it resumes.
//!
//! The hub issues stateless session tickets; a connector keeps up to [`TICKETS_PER_HUB`]
//! unused ones per hub name and identity (each ticket is used once), so a burst of concurrent
//! spawns resumes too. [`Connector::tls_resumptions`] counts the connections that offered one.
//!
//! No 0-RTT data is sent: agent requests (stores, updates, deletes, the Hello that opens a
//! session) are not safe to replay, and 0-RTT data can be replayed by the network.
//!
//! [`EphemeralAgent::spawn`](crate::EphemeralAgent::spawn) uses [`Connector::shared`], the
//! process-wide connector, unless [`AgentConfig::connector`](crate::AgentConfig::connector)
//! names another.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{AgentError, ConfigError, Unreachable};

/// Most TLS client configurations one connector keeps; past that it starts afresh (the
/// identities used after that resume again from their next connection on).
const MAX_TLS_CONFIGS: usize = 64;

/// Most unused TLS 1.3 session tickets kept per hub name and identity. A hub sends two after
/// every handshake and each resumption takes one, so a steady stream of spawns never runs out;
/// a burst of more concurrent spawns than this does full handshakes for the rest.
pub const TICKETS_PER_HUB: usize = 256;

/// How often an idle connection pings the hub.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// QUIC endpoints and TLS client configurations shared by agents (see the module docs).
/// Cloning is cheap and shares the same state.
#[derive(Clone, Default)]
pub struct Connector {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("endpoints", &self.inner.endpoints.lock().len())
            .field("tls_configs", &self.inner.tls.lock().len())
            .finish()
    }
}

#[derive(Default)]
struct Shared {
    endpoints: Mutex<HashMap<EndpointKey, RuntimeEndpoint>>,
    /// By SHA-256 of the CA, client certificate, client key and ALPN.
    tls: Mutex<HashMap<[u8; 32], quinn::ClientConfig>>,
    /// Connections that offered a saved TLS session.
    resumptions: Arc<AtomicU64>,
}

/// A runtime and whether the endpoint is for IPv6 hubs.
type EndpointKey = (tokio::runtime::Id, bool);

/// An endpoint driven by one runtime, and whether that runtime has shut down.
struct RuntimeEndpoint {
    endpoint: quinn::Endpoint,
    gone: Arc<AtomicBool>,
}

/// Sets its flag when dropped: held by a task of the runtime, so dropped when the runtime
/// shuts down.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Connector {
    /// A connector of its own: its agents share endpoints and TLS sessions with each other,
    /// not with other agents of the process.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide connector, created on first use.
    pub fn shared() -> Self {
        static SHARED: OnceLock<Connector> = OnceLock::new();
        SHARED.get_or_init(Connector::new).clone()
    }

    /// How many connections made through this connector offered a saved TLS session (the hub
    /// resumes it unless its ticket keys have rotated since).
    pub fn tls_resumptions(&self) -> u64 {
        self.inner.resumptions.load(Ordering::Relaxed)
    }

    /// The QUIC client configuration for this identity: built once, then shared with its
    /// session store.
    pub(crate) fn client_config(
        &self,
        ca_pem: &[u8],
        client_cert: Option<(&[u8], &[u8])>,
        alpn: &[u8],
    ) -> Result<quinn::ClientConfig, ConfigError> {
        let key = identity_key(ca_pem, client_cert, alpn);
        if let Some(config) = self.inner.tls.lock().get(&key) {
            return Ok(config.clone());
        }
        let mut tls = agentdb_security::tls::client_config(ca_pem, client_cert, alpn)
            .map_err(|e| ConfigError::Tls(Arc::new(e)))?;
        tls.resumption = rustls::client::Resumption::store(Arc::new(SessionStore::new(
            Arc::clone(&self.inner.resumptions),
        )));
        // `enable_early_data` stays off (see the module docs).
        let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|_| ConfigError::QuicCipherSuite)?;
        let mut config = quinn::ClientConfig::new(Arc::new(tls));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        config.transport_config(Arc::new(transport));
        let mut configs = self.inner.tls.lock();
        if configs.len() >= MAX_TLS_CONFIGS {
            configs.clear();
        }
        Ok(configs.entry(key).or_insert(config).clone())
    }

    /// Starts a connection to `addr` on this runtime's endpoint for `addr`'s family; returns
    /// the endpoint too, which the connection keeps.
    pub(crate) fn connect(
        &self,
        config: quinn::ClientConfig,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<(quinn::Endpoint, quinn::Connecting), AgentError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Unreachable::Socket(Arc::new(std::io::Error::other(e))))?;
        let key = (runtime.id(), addr.is_ipv6());
        // A second attempt only when the endpoint found had lost its driver.
        for _ in 0..2 {
            let endpoint = self.endpoint(key, &runtime)?;
            match endpoint.connect_with(config.clone(), addr, server_name) {
                Ok(connecting) => return Ok((endpoint, connecting)),
                Err(quinn::ConnectError::EndpointStopping) => {
                    self.inner.endpoints.lock().remove(&key);
                }
                Err(reason) => return Err(Unreachable::Connect { addr, reason }.into()),
            }
        }
        Err(Unreachable::Connect {
            addr,
            reason: quinn::ConnectError::EndpointStopping,
        }
        .into())
    }

    /// This runtime's endpoint for one address family, bound on first use.
    fn endpoint(
        &self,
        key: EndpointKey,
        runtime: &tokio::runtime::Handle,
    ) -> Result<quinn::Endpoint, AgentError> {
        let mut endpoints = self.inner.endpoints.lock();
        // Endpoints of runtimes that have shut down can never be driven again.
        endpoints.retain(|_, e| !e.gone.load(Ordering::Acquire));
        if let Some(e) = endpoints.get(&key) {
            return Ok(e.endpoint.clone());
        }
        let bind = if key.1 {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
        };
        // The socket's buffers are sized for bursts of handshakes (agentdb_security::socket).
        let endpoint = agentdb_security::socket::quic_socket(bind)
            .and_then(|socket| {
                let runtime = quinn::default_runtime()
                    .ok_or_else(|| std::io::Error::other("no async runtime found"))?;
                quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            })
            .map_err(|e| Unreachable::Socket(Arc::new(e)))?;
        let gone = Arc::new(AtomicBool::new(false));
        let flag = SetOnDrop(Arc::clone(&gone));
        runtime.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        endpoints.insert(
            key,
            RuntimeEndpoint {
                endpoint: endpoint.clone(),
                gone,
            },
        );
        Ok(endpoint)
    }
}

/// The TLS sessions of one identity: rustls's in-memory cache for key-exchange hints (and TLS
/// 1.2, which agents never use), and a deeper queue of TLS 1.3 tickets per hub name than that
/// cache keeps, counted as they are taken.
#[derive(Debug)]
struct SessionStore {
    hints: rustls::client::ClientSessionMemoryCache,
    tickets: Mutex<HashMap<rustls::pki_types::ServerName<'static>, VecDeque<Tls13Ticket>>>,
    taken: Arc<AtomicU64>,
}

type Tls13Ticket = rustls::client::Tls13ClientSessionValue;

impl SessionStore {
    fn new(taken: Arc<AtomicU64>) -> Self {
        Self {
            hints: rustls::client::ClientSessionMemoryCache::new(MAX_TLS_CONFIGS),
            tickets: Mutex::new(HashMap::new()),
            taken,
        }
    }
}

impl rustls::client::ClientSessionStore for SessionStore {
    fn set_kx_hint(
        &self,
        server_name: rustls::pki_types::ServerName<'static>,
        group: rustls::NamedGroup,
    ) {
        self.hints.set_kx_hint(server_name, group);
    }

    fn kx_hint(
        &self,
        server_name: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::NamedGroup> {
        self.hints.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.hints.set_tls12_session(server_name, value);
    }

    fn tls12_session(
        &self,
        server_name: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.hints.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &rustls::pki_types::ServerName<'static>) {
        self.hints.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: rustls::pki_types::ServerName<'static>,
        value: Tls13Ticket,
    ) {
        let mut tickets = self.tickets.lock();
        // Hub names are few; a process that reaches very many starts afresh.
        if tickets.len() >= MAX_TLS_CONFIGS && !tickets.contains_key(&server_name) {
            tickets.clear();
        }
        let queue = tickets.entry(server_name).or_default();
        if queue.len() >= TICKETS_PER_HUB {
            queue.pop_front();
        }
        queue.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &rustls::pki_types::ServerName<'static>,
    ) -> Option<Tls13Ticket> {
        // The newest ticket: the likeliest to be under the hub's current ticket key.
        let ticket = self.tickets.lock().get_mut(server_name)?.pop_back();
        if ticket.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        ticket
    }
}

/// SHA-256 over the length-prefixed CA, client certificate, client key and ALPN: agents share
/// a TLS configuration (and its sessions) only when all four are equal.
fn identity_key(ca_pem: &[u8], client_cert: Option<(&[u8], &[u8])>, alpn: &[u8]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut part = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    part(ca_pem);
    match client_cert {
        Some((cert, key)) => {
            part(b"client certificate");
            part(cert);
            part(key);
        }
        None => part(b"no client certificate"),
    }
    part(alpn);
    let digest = ctx.finish();
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_by_every_part() {
        let base = identity_key(b"ca", Some((b"cert", b"key")), b"alpn");
        assert_eq!(base, identity_key(b"ca", Some((b"cert", b"key")), b"alpn"));
        for other in [
            identity_key(b"ca2", Some((b"cert", b"key")), b"alpn"),
            identity_key(b"ca", Some((b"cert2", b"key")), b"alpn"),
            identity_key(b"ca", Some((b"cert", b"key2")), b"alpn"),
            identity_key(b"ca", Some((b"cert", b"key")), b"alpn2"),
            identity_key(b"ca", None, b"alpn"),
            // Lengths are part of the key: moving a byte across a boundary changes it.
            identity_key(b"c", Some((b"acert", b"key")), b"alpn"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[tokio::test]
    async fn agents_of_a_runtime_share_one_endpoint_per_family() {
        let connector = Connector::new();
        let runtime = tokio::runtime::Handle::current();
        let key = (runtime.id(), false);
        let a = connector.endpoint(key, &runtime).unwrap();
        let b = connector.endpoint(key, &runtime).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
        let v6 = connector.endpoint((runtime.id(), true), &runtime);
        if let Ok(v6) = v6 {
            assert!(v6.local_addr().unwrap().is_ipv6());
        }
    }

    #[test]
    fn an_endpoint_of_a_runtime_that_shut_down_is_replaced() {
        let connector = Connector::new();
        let first = tokio::runtime::Runtime::new().unwrap();
        let key = first.block_on(async {
            let runtime = tokio::runtime::Handle::current();
            let key = (runtime.id(), false);
            connector.endpoint(key, &runtime).unwrap();
            key
        });
        let gone = |c: &Connector| c.inner.endpoints.lock()[&key].gone.load(Ordering::Acquire);
        assert!(!gone(&connector));
        drop(first);
        assert!(gone(&connector), "the runtime's shutdown is noticed");
        let second = tokio::runtime::Runtime::new().unwrap();
        second.block_on(async {
            let runtime = tokio::runtime::Handle::current();
            // Even under the same id, the first runtime's endpoint is not used again.
            connector.endpoint(key, &runtime).unwrap();
            assert!(!gone(&connector));
            assert_eq!(connector.inner.endpoints.lock().len(), 1);
        });
    }
}
