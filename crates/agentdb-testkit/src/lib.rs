//! Test helpers for Federated AgentDB: a throwaway PKI (CA, hub certificate, agent
//! certificates, token signing key) held in memory, in-process hubs on `127.0.0.1:0` over a
//! redb store in a temporary directory, and a deterministic simulation of federation
//! ([`fedsim`]). For tests and benchmarks only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod disk;
pub mod fedsim;
pub mod https;
pub mod postgres;
pub mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentdb_client::{AgentConfig, SigningKeyTokens, StaticToken};
use agentdb_core::{AgentId, HubId, Region, TenantId};
use agentdb_hub::{FederationConfig, HubConfig, HubHandle, HubLimits, TokenKey};
use agentdb_memory::{EngineConfig, MemoryEngine};
use agentdb_security::ca::{CertificateAuthority, HostName, IssuedCertificate, Subject};
use agentdb_security::identity::TrustDomain;
use agentdb_security::tls::TlsMaterial;
use agentdb_security::token::{Ed25519KeyPem, Scope, TokenIssuer, TokenRequest};
use time::OffsetDateTime;

/// A CA with a hub certificate and a token signing key.
pub struct TestPki {
    /// The CA.
    pub ca: CertificateAuthority,
    /// The hub's certificate.
    pub hub: IssuedCertificate,
    /// The token signing key pair.
    pub signing: Ed25519KeyPem,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki(..)")
    }
}

/// Environment variables that change what the `agentdb` binary does: tests and harnesses that
/// start it remove them, so the machine's environment cannot change a result.
pub const AMBIENT_ENV: &[&str] = &[
    "JWT_SECRET",
    "ENABLE_MTLS",
    "FEDERATION_HUB_ENDPOINT",
    "AGENTDB_MASTER_KEY",
    "AGENTDB_LOG",
    "AGENTDB_TOKEN",
    "AGENTDB_API_KEY",
    "EU_HUB",
    "US_HUB",
    "AP_HUB",
    "AGENTDB_STORAGE",
    "AGENTDB_TENANT",
];

/// The `agentdb hub` flags that put every listener (QUIC, admin HTTP, HTTPS) on a free
/// loopback port, so that hubs started side by side never collide.
pub const FREE_PORT_ARGS: [&str; 6] = [
    "--quic",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--https",
    "127.0.0.1:0",
];

/// Reads the first line a child process prints (a hub's "listening" line) on a thread and
/// sends it on the returned channel, then keeps draining the pipe so the child never writes
/// into a closed one.
pub fn first_line(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    rx
}

/// Current Unix seconds.
pub fn unix_now() -> u64 {
    agentdb_memory::SystemClock::unix_secs()
}

impl TestPki {
    /// A fresh PKI (trust domain `agentdb.test`).
    pub fn new() -> Self {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate(
            TrustDomain::new("agentdb.test").unwrap(),
            Duration::from_secs(3600 * 24),
            now,
        )
        .unwrap();
        let hub = ca
            .issue(
                &Subject::Hub {
                    hub: HubId::new("test-hub").unwrap(),
                    hosts: HostName::defaults(),
                    region: None,
                },
                Duration::from_secs(3600),
                now,
            )
            .unwrap();
        Self {
            ca,
            hub,
            signing: Ed25519KeyPem::generate().unwrap(),
        }
    }

    /// TLS material of hub `name` (certificate for localhost and 127.0.0.1, binding the hub to
    /// `region` when one is given), for hubs that link to each other.
    pub fn hub_tls_for(&self, name: &str, region: Option<&str>) -> TlsMaterial {
        let (cert_pem, key_pem) = self.issue(&Subject::Hub {
            hub: HubId::new(name).unwrap(),
            hosts: HostName::defaults(),
            region: region.map(|r| Region::new(r).unwrap()),
        });
        TlsMaterial {
            ca_pem: self.ca_pem(),
            cert_pem,
            key_pem,
        }
    }

    /// A client certificate for `agent` of `tenant`: (cert PEM, key PEM).
    pub fn agent_cert(&self, tenant: &str, agent: &str) -> (Vec<u8>, Vec<u8>) {
        self.issue(&Subject::Agent {
            tenant: TenantId::new(tenant).unwrap(),
            agent: AgentId::new(agent).unwrap(),
        })
    }

    /// A tenant-wide client certificate: (cert PEM, key PEM).
    pub fn tenant_cert(&self, tenant: &str) -> (Vec<u8>, Vec<u8>) {
        self.issue(&Subject::Tenant {
            tenant: TenantId::new(tenant).unwrap(),
        })
    }

    fn issue(&self, subject: &Subject) -> (Vec<u8>, Vec<u8>) {
        let c = self
            .ca
            .issue(
                subject,
                Duration::from_secs(3600),
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        (
            c.cert_pem().as_bytes().to_vec(),
            c.key_pem().as_bytes().to_vec(),
        )
    }

    /// The token issuer of this PKI's signing key.
    pub fn issuer(&self) -> TokenIssuer {
        TokenIssuer::from_ed25519_pem(self.signing.private_pem.as_bytes()).unwrap()
    }

    /// A token for `agent` of `tenant`, valid `ttl` seconds, with the default scopes.
    pub fn token(&self, tenant: &str, agent: &str, ttl: u64) -> String {
        self.token_with(tenant, agent, ttl, Scope::DEFAULT.to_vec())
    }

    /// A token with explicit scopes.
    pub fn token_with(&self, tenant: &str, agent: &str, ttl: u64, scopes: Vec<Scope>) -> String {
        let req = TokenRequest::new(TenantId::new(tenant).unwrap(), AgentId::new(agent).unwrap())
            .ttl_secs(ttl)
            .scopes(scopes);
        self.issuer().issue(&req, unix_now()).unwrap()
    }

    /// The hub's TLS material.
    pub fn hub_tls(&self) -> TlsMaterial {
        TlsMaterial {
            ca_pem: self.ca.cert_pem().as_bytes().to_vec(),
            cert_pem: self.hub.cert_pem().as_bytes().to_vec(),
            key_pem: self.hub.key_pem().as_bytes().to_vec(),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca.cert_pem().as_bytes().to_vec()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// An in-process hub over a redb store in `dir`.
#[derive(Debug)]
pub struct TestHub {
    /// The running hub.
    pub handle: HubHandle,
    /// Its data directory.
    pub dir: PathBuf,
}

/// A hub configuration for `pki` on free loopback ports.
pub fn hub_config(pki: &TestPki) -> HubConfig {
    HubConfig {
        hub_id: HubId::new("test-hub").unwrap(),
        quic_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        https_addr: Some("127.0.0.1:0".parse().unwrap()),
        tls: pki.hub_tls(),
        require_client_cert: true,
        token_key: TokenKey::Ed25519PublicPem(pki.signing.public_pem.as_bytes().to_vec()),
        audience: agentdb_security::token::DEFAULT_AUDIENCE.to_owned(),
        limits: HubLimits::default(),
        federation: FederationConfig::default(),
        master_key: agentdb_hub::config::MasterKeySource::default(),
    }
}

/// The JSON object in an HTTP body (bodies may be chunked: the text from the first `{` to the
/// last `}`).
pub fn json_body(body: &str) -> serde_json::Value {
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

/// A configuration of hub `name` in `region` with `federation` (its region is overwritten); its
/// certificate binds it to `region`.
pub fn federated_hub_config(
    pki: &TestPki,
    name: &str,
    region: &str,
    mut federation: FederationConfig,
) -> HubConfig {
    federation.region = Region::new(region).unwrap();
    HubConfig {
        hub_id: HubId::new(name).unwrap(),
        tls: pki.hub_tls_for(name, Some(region)),
        federation,
        ..hub_config(pki)
    }
}

impl TestHub {
    /// Starts a hub with `config` on the store in `dir` (created, or reopened). The store
    /// names its ops after the hub.
    pub async fn start(config: HubConfig, dir: &Path) -> Self {
        let engine_config = EngineConfig {
            origin: Some(config.hub_id.clone()),
            ..EngineConfig::default()
        };
        let engine = Arc::new(agentdb_memory::open_data_dir(dir, engine_config).unwrap());
        Self::start_with(config, dir, engine).await
    }

    /// Starts a hub with `config` over `engine`.
    pub async fn start_with(config: HubConfig, dir: &Path, engine: Arc<MemoryEngine>) -> Self {
        let handle = agentdb_hub::start(config, engine).await.unwrap();
        Self {
            handle,
            dir: dir.to_owned(),
        }
    }

    /// Waits (up to 5 s) until `n` agents are connected; the hub releases an agent when its
    /// connection task ends, shortly after the agent's goodbye. Returns the last count seen.
    pub async fn wait_connected(&self, n: usize) -> usize {
        for _ in 0..250 {
            if self.handle.connected_agents() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.handle.connected_agents()
    }

    /// A minimal HTTP/1.1 GET on the admin port, with a bearer token when given: (status,
    /// body).
    pub async fn http_get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        self.http_request("GET", path, bearer).await
    }

    /// A minimal HTTP/1.1 request without a body on the admin port, with a bearer token when
    /// given: (status, body).
    pub async fn http_request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
    ) -> (u16, String) {
        self.http_send(method, path, bearer, None).await
    }

    /// A minimal HTTP/1.1 request on the admin port, with a bearer token and a JSON body when
    /// given: (status, body).
    pub async fn http_send(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        json: Option<&str>,
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.handle.http_addr().unwrap())
            .await
            .unwrap();
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = json
            .map(|j| {
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{j}",
                    j.len()
                )
            })
            .unwrap_or_else(|| "\r\n".to_owned());
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n{body}"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// A raw QUIC connection to this hub with `alpn`, trusting `ca_pem` and presenting `cert`
    /// (certificate PEM, key PEM) when given.
    pub async fn raw_connect(
        &self,
        ca_pem: &[u8],
        cert: Option<(&[u8], &[u8])>,
        alpn: &[u8],
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let tls = agentdb_security::tls::client_config(ca_pem, cert, alpn).unwrap();
        let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(tls)));
        endpoint
            .connect(self.handle.quic_addr(), "localhost")
            .unwrap()
            .await
    }

    /// `quic://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("quic://{}", self.handle.quic_addr())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http(&self) -> String {
        format!("http://{}", self.handle.http_addr().unwrap())
    }

    /// An agent configuration for `tenant` with a tenant-wide certificate and refreshable tokens.
    pub fn agent_config(&self, pki: &TestPki, tenant: &str) -> AgentConfig {
        let (cert, key) = pki.tenant_cert(tenant);
        AgentConfig::new(
            TenantId::new(tenant).unwrap(),
            self.url(),
            pki.ca_pem(),
            Arc::new(SigningKeyTokens::new(pki.issuer(), 300)),
        )
        .client_cert(cert, key)
        .server_name("localhost")
    }

    /// An agent configuration with a fixed token and no client certificate.
    pub fn agent_config_with_token(
        &self,
        pki: &TestPki,
        tenant: &str,
        token: String,
    ) -> AgentConfig {
        AgentConfig::new(
            TenantId::new(tenant).unwrap(),
            self.url(),
            pki.ca_pem(),
            Arc::new(StaticToken(token)),
        )
        .server_name("localhost")
    }
}
