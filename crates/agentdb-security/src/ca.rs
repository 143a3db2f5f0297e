//! The deployment's certificate authority: it issues the certificates hubs and agents present
//! on mutual TLS.
//!
//! ```text
//! CertificateAuthority::generate(trust_domain, validity, now)   ca.pem + ca.key
//!        │ save(dir) / load(dir)
//!        ├── issue(Subject::Hub { hub, sans }, 90 days, now)     serverAuth + clientAuth
//!        │       URI spiffe://<domain>/hub/<hub>, DNS/IP SANs
//!        ├── issue(Subject::Agent { tenant, agent }, 24 h, now)  clientAuth
//!        │       URI spiffe://<domain>/tenant/<tenant>/agent/<agent>
//!        └── issue(Subject::Tenant { tenant }, 24 h, now)        clientAuth
//!                URI spiffe://<domain>/tenant/<tenant>
//! ```
//!
//! All keys are ECDSA P-256. The CA certificate has `basicConstraints CA:TRUE, pathlen:0` and
//! key usage `keyCertSign, cRLSign`, and carries the trust domain as its only URI subject
//! alternative name, `spiffe://<domain>`. That signed name is where the trust domain is stored:
//! [`CertificateAuthority::load`] reads it back from `ca.pem`, so there is no second file to keep
//! in step. Issued certificates carry exactly one SPIFFE ID, which [`PeerIdentity::from_der`]
//! reads back on the other side of a connection.
//!
//! Times are passed in (`now`) rather than read here. Certificates start
//! [`NOT_BEFORE_BACKDATE`] before `now` so that peers whose clocks run slightly behind accept
//! them at once.

use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use agentdb_core::{AgentId, HubId, Region, TenantId};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use crate::file::{write_private_file, write_public_file, FileError};
use crate::identity::{PeerIdentity, TrustDomain, TrustDomainError};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// Default lifetime of the CA certificate: ten years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Default lifetime of a hub certificate: 90 days.
pub const DEFAULT_HUB_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default lifetime of an agent or tenant-wide certificate: 24 hours.
pub const DEFAULT_AGENT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// How long before `now` a new certificate becomes valid, to absorb clock skew between peers.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Organisation name written into every subject.
const ORGANIZATION: &str = "Federated AgentDB";

/// Why a certificate authority could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaInitError {
    /// The requested validity is zero or does not fit in a certificate date.
    #[error("invalid CA validity of {validity:?}")]
    BadValidity {
        /// The requested validity.
        validity: Duration,
    },
    /// Key generation or certificate signing failed.
    #[error("cannot create the CA certificate: {reason}")]
    Generate {
        /// What went wrong.
        reason: String,
    },
}

/// Why a certificate authority could not be loaded from disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaLoadError {
    /// A CA file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CA certificate is not a PEM X.509 certificate.
    #[error("the CA certificate is malformed: {reason}")]
    BadCertificate {
        /// What the parser reported.
        reason: String,
    },
    /// The certificate is not a CA certificate (no `basicConstraints CA:TRUE`).
    #[error("the certificate is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotACa,
    /// The CA certificate does not carry exactly one `spiffe://<trust-domain>` URI.
    #[error("the CA certificate does not name its trust domain: {reason}")]
    NoTrustDomain {
        /// What is wrong.
        reason: String,
    },
    /// The trust domain named by the CA certificate is invalid.
    #[error("the CA certificate names an invalid trust domain: {0}")]
    BadTrustDomain(#[from] TrustDomainError),
    /// The private key is not a PKCS#8 PEM ECDSA P-256 key.
    #[error("the CA private key is malformed: {reason}")]
    BadKey {
        /// What the parser reported.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("the CA private key does not match the CA certificate")]
    KeyMismatch,
}

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertIssueError {
    /// The requested validity is zero or does not fit in a certificate date.
    #[error("invalid certificate validity of {validity:?}")]
    BadValidity {
        /// The requested validity.
        validity: Duration,
    },
    /// The certificate would outlive the CA certificate that signs it.
    #[error(
        "the certificate would expire after the CA certificate (unix {not_after} > \
         unix {ca_not_after}); shorten its validity or renew the CA"
    )]
    OutlivesCa {
        /// When the certificate would expire, in Unix seconds.
        not_after: i64,
        /// When the CA certificate expires, in Unix seconds.
        ca_not_after: i64,
    },
    /// Key generation or certificate signing failed.
    #[error("cannot create the certificate: {reason}")]
    Generate {
        /// What went wrong.
        reason: String,
    },
}

/// A DNS name or IP address for a hub certificate's subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostName {
    /// A DNS name, such as `hub.eu.example.com` or `*.eu.example.com`.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

/// Why a string is neither a DNS name nor an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a DNS name or IP address: {reason}")]
pub struct HostNameError {
    /// The rejected input, cut to 256 characters.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl HostName {
    /// The names a hub certificate carries when none are given: `localhost`, `127.0.0.1`
    /// and `::1`.
    pub fn defaults() -> Vec<HostName> {
        vec![
            HostName::Dns("localhost".to_owned()),
            HostName::Ip(IpAddr::from([127, 0, 0, 1])),
            HostName::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        ]
    }
}

impl FromStr for HostName {
    type Err = HostNameError;

    fn from_str(s: &str) -> Result<Self, HostNameError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        let err = |reason| HostNameError {
            value: s.chars().take(256).collect(),
            reason,
        };
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() {
            return Err(err("it is empty"));
        }
        if name.len() > 253 {
            return Err(err("it is longer than 253 bytes"));
        }
        let labels = name.strip_prefix("*.").unwrap_or(name);
        for label in labels.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(err("each label must be 1 to 63 characters long"));
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(err("labels may only contain letters, digits and '-'"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("labels may not start or end with '-'"));
            }
        }
        Ok(HostName::Dns(name.to_ascii_lowercase()))
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Dns(name) => f.write_str(name),
            HostName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What a certificate is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A hub. Its certificate is valid for both TLS server and client authentication, because
    /// hubs also connect to each other.
    Hub {
        /// The hub's name.
        hub: HubId,
        /// DNS names and IP addresses the hub is reached at.
        hosts: Vec<HostName>,
        /// The region the hub serves, bound into its SPIFFE ID (`…/hub/<hub>/region/<r>`);
        /// federated hubs then cannot claim another.
        region: Option<Region>,
    },
    /// One agent of one tenant (TLS client authentication only).
    Agent {
        /// The tenant.
        tenant: TenantId,
        /// The agent.
        agent: AgentId,
    },
    /// Any agent of one tenant: a tenant-wide workload certificate (TLS client authentication
    /// only).
    Tenant {
        /// The tenant.
        tenant: TenantId,
    },
}

impl Subject {
    /// The default lifetime for this kind of certificate: [`DEFAULT_HUB_VALIDITY`] for hubs,
    /// [`DEFAULT_AGENT_VALIDITY`] otherwise.
    pub fn default_validity(&self) -> Duration {
        match self {
            Subject::Hub { .. } => DEFAULT_HUB_VALIDITY,
            Subject::Agent { .. } | Subject::Tenant { .. } => DEFAULT_AGENT_VALIDITY,
        }
    }

    /// The file stem under which the certificate and key are saved: the hub name, the agent
    /// id, or `tenant-<tenant>` for a tenant-wide certificate.
    pub fn file_stem(&self) -> String {
        match self {
            Subject::Hub { hub, .. } => hub.to_string(),
            Subject::Agent { agent, .. } => agent.to_string(),
            Subject::Tenant { tenant } => format!("tenant-{tenant}"),
        }
    }

    fn identity(&self, trust_domain: &TrustDomain) -> PeerIdentity {
        let trust_domain = trust_domain.clone();
        match self {
            Subject::Hub { hub, region, .. } => PeerIdentity::Hub {
                trust_domain,
                hub: hub.clone(),
                region: region.clone(),
            },
            Subject::Agent { tenant, agent } => PeerIdentity::Agent {
                trust_domain,
                tenant: tenant.clone(),
                agent: agent.clone(),
            },
            Subject::Tenant { tenant } => PeerIdentity::Tenant {
                trust_domain,
                tenant: tenant.clone(),
            },
        }
    }

    fn common_name(&self) -> String {
        match self {
            Subject::Hub { hub, .. } => format!("hub {hub}"),
            Subject::Agent { tenant, agent } => format!("agent {agent} of tenant {tenant}"),
            Subject::Tenant { tenant } => format!("tenant {tenant}"),
        }
    }
}

/// A certificate and its fresh private key, as issued by [`CertificateAuthority::issue`].
pub struct IssuedCertificate {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: Zeroizing<String>,
    identity: PeerIdentity,
    file_stem: String,
    not_after: OffsetDateTime,
}

impl IssuedCertificate {
    /// The certificate, PEM-encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate, DER-encoded.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The identity the certificate names.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The paths [`Self::save`] writes in `dir`: `<stem>.pem` and `<stem>.key`, where the stem
    /// is [`Subject::file_stem`].
    pub fn paths(&self, dir: &Path) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{}.pem", self.file_stem)),
            dir.join(format!("{}.key", self.file_stem)),
        )
    }

    /// Writes the certificate (mode 0644) and key (mode 0600) into `dir`, creating it if
    /// needed. Unless `overwrite` is set, nothing is written if either file exists.
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<(PathBuf, PathBuf), FileError> {
        let (cert_path, key_path) = self.paths(dir);
        write_pair(
            (&cert_path, self.cert_pem.as_bytes()),
            (&key_path, self.key_pem.as_bytes()),
            overwrite,
        )?;
        Ok((cert_path, key_path))
    }
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A certificate authority: its certificate, its signing key and its trust domain.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    cert_pem: String,
    cert_der: Vec<u8>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Creates a new CA with a fresh ECDSA P-256 key, valid from shortly before `now` for
    /// `validity` (usually [`DEFAULT_CA_VALIDITY`]).
    pub fn generate(
        trust_domain: TrustDomain,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, CaInitError> {
        let bad_validity = || CaInitError::BadValidity { validity };
        let (not_before, not_after) = validity_window(now, validity).ok_or_else(bad_validity)?;
        let generate = |e: rcgen::Error| CaInitError::Generate {
            reason: e.to_string(),
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;

        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial().map_err(|reason| CaInitError::Generate {
            reason: reason.to_owned(),
        })?);
        params.distinguished_name = distinguished_name(&format!("AgentDB CA {trust_domain}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(
            Ia5String::try_from(trust_domain.spiffe_uri()).map_err(|e| CaInitError::Generate {
                reason: e.to_string(),
            })?,
        )];
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Self {
            trust_domain,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from a PEM certificate and a PKCS#8 PEM private key, checking that the
    /// certificate is a CA certificate naming a trust domain and that the key belongs to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaLoadError> {
        let bad_cert = |reason: String| CaLoadError::BadCertificate { reason };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| bad_cert(e.to_string()))?;
        if pem.label != "CERTIFICATE" {
            return Err(bad_cert(format!(
                "expected a CERTIFICATE PEM block, found {:?}",
                pem.label
            )));
        }
        let cert_der = pem.contents;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad_cert(e.to_string()))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| bad_cert(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaLoadError::NotACa);
        }
        let trust_domain = ca_trust_domain(&cert)?;
        let not_after = cert.validity().not_after.to_datetime();

        let key =
            KeyPair::from_pem_and_sign_algo(key_pem, &PKCS_ECDSA_P256_SHA256).map_err(|e| {
                CaLoadError::BadKey {
                    reason: e.to_string(),
                }
            })?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(CaLoadError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| bad_cert(e.to_string()))?;
        Ok(Self {
            trust_domain,
            cert_pem: cert_pem.to_owned(),
            cert_der,
            not_after,
            issuer,
        })
    }

    /// Loads the CA stored in `dir` as [`CA_CERT_FILE`] and [`CA_KEY_FILE`].
    pub fn load(dir: &Path) -> Result<Self, CaLoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|source| CaLoadError::Read { path, source })
        };
        let cert_pem = read(CA_CERT_FILE)?;
        let key_pem = read(CA_KEY_FILE)?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// Whether `dir` already holds a CA certificate or key.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(CA_CERT_FILE).exists() || dir.join(CA_KEY_FILE).exists()
    }

    /// Writes [`CA_CERT_FILE`] (mode 0644) and [`CA_KEY_FILE`] (mode 0600) into `dir`, creating
    /// it if needed. Unless `overwrite` is set, nothing is written if either file exists.
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<(PathBuf, PathBuf), FileError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = Zeroizing::new(self.issuer.key().serialize_pem());
        write_pair(
            (&cert_path, self.cert_pem.as_bytes()),
            (&key_path, key_pem.as_bytes()),
            overwrite,
        )?;
        Ok((cert_path, key_path))
    }

    /// The trust domain this CA issues identities in.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificate, PEM-encoded (the content of `ca.pem`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER-encoded.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Issues a certificate with a fresh ECDSA P-256 key to `subject`, valid from shortly
    /// before `now` for `validity` (see [`Subject::default_validity`]).
    pub fn issue(
        &self,
        subject: &Subject,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CertIssueError> {
        let (not_before, not_after) =
            validity_window(now, validity).ok_or(CertIssueError::BadValidity { validity })?;
        if not_after > self.not_after {
            return Err(CertIssueError::OutlivesCa {
                not_after: not_after.unix_timestamp(),
                ca_not_after: self.not_after.unix_timestamp(),
            });
        }
        let generate = |reason: String| CertIssueError::Generate { reason };
        let identity = subject.identity(&self.trust_domain);

        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial().map_err(|r| generate(r.to_owned()))?);
        params.distinguished_name = distinguished_name(&subject.common_name());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let uri =
            Ia5String::try_from(identity.spiffe_uri()).map_err(|e| generate(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        match subject {
            Subject::Hub { hosts, .. } => {
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                for host in hosts {
                    params.subject_alt_names.push(match host {
                        HostName::Dns(name) => SanType::DnsName(
                            Ia5String::try_from(name.as_str())
                                .map_err(|e| generate(e.to_string()))?,
                        ),
                        HostName::Ip(ip) => SanType::IpAddress(*ip),
                    });
                }
            }
            Subject::Agent { .. } | Subject::Tenant { .. } => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }

        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| generate(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| generate(e.to_string()))?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            identity,
            file_stem: subject.file_stem(),
            not_after,
        })
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The validity window `[now - backdate, now + validity]`, or `None` if `validity` is zero or
/// the dates do not fit.
fn validity_window(
    now: OffsetDateTime,
    validity: Duration,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    if validity.is_zero() {
        return None;
    }
    let validity = time::Duration::try_from(validity).ok()?;
    let backdate = time::Duration::try_from(NOT_BEFORE_BACKDATE).ok()?;
    // Certificate dates have whole-second precision.
    let now = now.replace_nanosecond(0).ok()?;
    let not_after = now.checked_add(validity)?;
    // X.509 dates stop at the year 9999 (GeneralizedTime).
    if not_after.year() > 9999 {
        return None;
    }
    Some((now.checked_sub(backdate)?, not_after))
}

/// A random positive 128-bit serial number.
fn random_serial() -> Result<SerialNumber, &'static str> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system random number generator failed")?;
    // Keep the number positive and of full length.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Reads the trust domain from the CA certificate's single `spiffe://<domain>` URI.
fn ca_trust_domain(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<TrustDomain, CaLoadError> {
    let no_domain = |reason: &str| CaLoadError::NoTrustDomain {
        reason: reason.to_owned(),
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| no_domain(&e.to_string()))?;
    let mut uris = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris
        .next()
        .ok_or_else(|| no_domain("it has no spiffe:// URI"))?;
    if uris.next().is_some() {
        return Err(no_domain("it has more than one URI"));
    }
    let domain = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| no_domain("its URI is not a spiffe:// URI"))?;
    Ok(TrustDomain::new(domain)?)
}

/// Writes a certificate (0644) and its key (0600). Unless `overwrite` is set, both paths are
/// checked first so that an existing pair is never half replaced.
fn write_pair(
    (cert_path, cert): (&Path, &[u8]),
    (key_path, key): (&Path, &[u8]),
    overwrite: bool,
) -> Result<(), FileError> {
    if !overwrite {
        for path in [cert_path, key_path] {
            if path.exists() {
                return Err(FileError::Exists {
                    path: path.to_owned(),
                });
            }
        }
    }
    // The key goes first: a certificate without its key is useless, but harmless.
    write_private_file(key_path, key, overwrite)?;
    write_public_file(cert_path, cert, overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time")
    }

    fn ca() -> CertificateAuthority {
        CertificateAuthority::generate(TrustDomain::default(), DEFAULT_CA_VALIDITY, now())
            .expect("CA generation")
    }

    #[test]
    fn host_names_parse() {
        assert_eq!(
            "10.0.0.1".parse::<HostName>(),
            Ok(HostName::Ip(IpAddr::from([10, 0, 0, 1])))
        );
        assert!(matches!("::1".parse::<HostName>(), Ok(HostName::Ip(_))));
        assert_eq!(
            "Hub.EU.example.com.".parse::<HostName>(),
            Ok(HostName::Dns("hub.eu.example.com".to_owned()))
        );
        assert!("*.example.com".parse::<HostName>().is_ok());
        for bad in ["", "a..b", "-a.com", "a b", "a/b", "*", "x.*.com", "é.com"] {
            assert!(
                bad.parse::<HostName>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn pem_round_trip_keeps_trust_domain_and_key() {
        let domain = TrustDomain::new("prod.example").expect("valid");
        let ca = CertificateAuthority::generate(domain.clone(), DEFAULT_CA_VALIDITY, now())
            .expect("CA generation");
        let key_pem = ca.issuer.key().serialize_pem();
        let loaded = CertificateAuthority::from_pem(ca.cert_pem(), &key_pem).expect("load");
        assert_eq!(loaded.trust_domain(), &domain);
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert_eq!(loaded.not_after(), ca.not_after());
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = ca();
        let b = ca();
        let other_key = b.issuer.key().serialize_pem();
        assert!(matches!(
            CertificateAuthority::from_pem(a.cert_pem(), &other_key),
            Err(CaLoadError::KeyMismatch)
        ));
    }

    #[test]
    fn leaf_certificate_is_not_a_ca() {
        let ca = ca();
        let leaf = ca
            .issue(
                &Subject::Tenant {
                    tenant: TenantId::new("acme").expect("valid"),
                },
                DEFAULT_AGENT_VALIDITY,
                now(),
            )
            .expect("issue");
        assert!(matches!(
            CertificateAuthority::from_pem(leaf.cert_pem(), leaf.key_pem()),
            Err(CaLoadError::NotACa)
        ));
    }

    #[test]
    fn validity_is_checked() {
        let ca = ca();
        let subject = Subject::Tenant {
            tenant: TenantId::new("acme").expect("valid"),
        };
        assert!(matches!(
            ca.issue(&subject, Duration::ZERO, now()),
            Err(CertIssueError::BadValidity { .. })
        ));
        assert!(matches!(
            ca.issue(&subject, DEFAULT_CA_VALIDITY * 2, now()),
            Err(CertIssueError::OutlivesCa { .. })
        ));
        assert!(matches!(
            CertificateAuthority::generate(TrustDomain::default(), Duration::MAX, now()),
            Err(CaInitError::BadValidity { .. })
        ));
    }

    #[test]
    fn file_stems() {
        let tenant = TenantId::new("acme").expect("valid");
        assert_eq!(
            Subject::Tenant {
                tenant: tenant.clone()
            }
            .file_stem(),
            "tenant-acme"
        );
        assert_eq!(
            Subject::Agent {
                tenant,
                agent: AgentId::new("a1").expect("valid")
            }
            .file_stem(),
            "a1"
        );
        assert_eq!(
            Subject::Hub {
                hub: HubId::new("eu-1").expect("valid"),
                hosts: HostName::defaults(),
                region: None,
            }
            .file_stem(),
            "eu-1"
        );
    }
}
