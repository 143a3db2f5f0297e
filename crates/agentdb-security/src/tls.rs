//! rustls configurations for hubs and agents: TLS 1.3 only, one ALPN protocol, the deployment
//! CA as the only trust root, and — on hubs, unless mutual TLS is turned off — client
//! certificates verified against that CA. The QUIC layer wraps these.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Why the TLS material could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input holds no certificate.
    #[error("{what}: no certificate found in PEM")]
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// A PEM input could not be parsed.
    #[error("{what}: invalid PEM: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// PEM-encoded certificates and keys the hub presents and trusts.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The deployment CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
    /// The hub's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The hub's private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial(..)")
    }
}

/// Every certificate in `pem`; at least one.
pub fn certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// The private key in `pem`.
pub fn key(what: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what,
        reason: e.to_string(),
    })
}

/// A root store holding every certificate in `pem`.
pub fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs("CA certificate", pem)? {
        roots.add(c).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A hub's server configuration, offering the ALPN protocols `alpns`. With
/// `require_client_cert`, a client without a certificate signed by the CA fails the handshake;
/// without it, a client may present none, but one it presents must still be signed by the CA
/// (hub-to-hub links always need one).
pub fn server_config(
    material: &TlsMaterial,
    require_client_cert: bool,
    alpns: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&material.ca_pem)?), provider);
    let verifier = if require_client_cert {
        verifier
    } else {
        verifier.allow_unauthenticated()
    };
    let builder = builder.with_client_cert_verifier(
        verifier
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?,
    );
    let mut config = builder
        .with_single_cert(
            certs("hub certificate", &material.cert_pem)?,
            key("hub key", &material.key_pem)?,
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    // Stateless TLS 1.3 session tickets (AES-GCM under keys rotated every few hours), so any
    // number of clients can resume without the hub keeping per-session state. A resumed session
    // carries the client certificate of the handshake it resumes; the hub checks that
    // certificate's revocation and validity again for every connection. No early (0-RTT) data
    // is accepted.
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(config)
}

/// A client configuration: trusts `ca_pem` only, presents `client_cert` (certificate PEM, key
/// PEM) when given.
pub fn client_config(
    ca_pem: &[u8],
    client_cert: Option<(&[u8], &[u8])>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match client_cert {
        Some((cert, key_pem)) => builder
            .with_client_auth_cert(
                certs("client certificate", cert)?,
                key("client key", key_pem)?,
            )
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}
