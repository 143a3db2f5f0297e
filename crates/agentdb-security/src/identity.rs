//! The identity named by a peer certificate.
//!
//! Every certificate the deployment CA issues carries exactly one SPIFFE ID as a URI subject
//! alternative name. The path says what the holder is:
//!
//! | SPIFFE ID                                          | [`PeerIdentity`]           |
//! |----------------------------------------------------|----------------------------|
//! | `spiffe://<trust-domain>/hub/<hub>`                | [`PeerIdentity::Hub`]      |
//! | `spiffe://<trust-domain>/hub/<hub>/region/<region>` | [`PeerIdentity::Hub`], bound to a region |
//! | `spiffe://<trust-domain>/tenant/<tenant>/agent/<agent>` | [`PeerIdentity::Agent`] |
//! | `spiffe://<trust-domain>/tenant/<tenant>`          | [`PeerIdentity::Tenant`]   |
//!
//! Hub, tenant and agent names follow the narrow alphabet of `agentdb_core` ids, so a SPIFFE ID
//! never needs escaping. The CA certificate itself carries `spiffe://<trust-domain>` (no path):
//! that is where `ca.pem` records its trust domain.
//!
//! [`PeerIdentity::from_der`] reads the identity from a certificate that the TLS layer has
//! already verified against the CA. It does not check signatures or validity dates itself.

use std::fmt;
use std::str::FromStr;

use agentdb_core::{AgentId, HubId, IdError, Region, TenantId};
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

/// The URI scheme of SPIFFE IDs, with its separator.
const SPIFFE_PREFIX: &str = "spiffe://";

/// Longest accepted trust domain, in bytes (the SPIFFE limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a valid trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustDomainError {
    /// The trust domain is empty.
    #[error("the trust domain must not be empty")]
    Empty,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("the trust domain is {len} bytes long; the limit is {MAX_TRUST_DOMAIN_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The trust domain holds a character outside `[a-z0-9._-]`.
    #[error(
        "the trust domain may only contain lowercase letters, digits, '.', '_' and '-' \
         (found {found:?})"
    )]
    BadChar {
        /// The first offending character.
        found: char,
    },
}

/// A SPIFFE trust domain, such as `agentdb.local`: the name of one deployment's CA.
///
/// It is lowercase `[a-z0-9._-]`, as the SPIFFE specification requires.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The trust domain used when none is given.
    pub const DEFAULT: &'static str = "agentdb.local";

    /// Validates `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self, TrustDomainError> {
        let s = s.into();
        if s.is_empty() {
            return Err(TrustDomainError::Empty);
        }
        if s.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(TrustDomainError::TooLong { len: s.len() });
        }
        if let Some(found) = s.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(TrustDomainError::BadChar { found });
        }
        Ok(Self(s))
    }

    /// The trust domain as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, `spiffe://<domain>`, as carried by the CA
    /// certificate.
    pub fn spiffe_uri(&self) -> String {
        format!("{SPIFFE_PREFIX}{}", self.0)
    }
}

impl Default for TrustDomain {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({:?})", self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = TrustDomainError;
    fn from_str(s: &str) -> Result<Self, TrustDomainError> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// Why no identity could be read from a certificate or SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The bytes are not a DER-encoded X.509 certificate.
    #[error("the peer certificate is not valid DER X.509: {reason}")]
    NotACertificate {
        /// What the parser reported.
        reason: String,
    },
    /// The certificate is not valid now: not yet, or no longer.
    #[error(
        "the peer certificate is valid from {not_before} to {not_after} (Unix seconds), not at \
         {now}"
    )]
    OutsideValidity {
        /// Start of the validity period, Unix seconds.
        not_before: i64,
        /// End of the validity period, Unix seconds.
        not_after: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },
    /// The certificate is a CA certificate, not one issued to a hub or agent.
    #[error("the peer certificate is a CA certificate, not a hub or agent certificate")]
    CaCertificate,
    /// The subject alternative name extension cannot be read (for example, it appears twice).
    #[error("the peer certificate's subject alternative names are malformed: {reason}")]
    BadSubjectAltName {
        /// What the parser reported.
        reason: String,
    },
    /// The certificate carries no `spiffe://` URI, so it names no hub, tenant or agent.
    #[error(
        "the peer certificate carries no SPIFFE ID (no spiffe:// URI subject alternative name)"
    )]
    NoSpiffeId,
    /// The certificate carries more than one `spiffe://` URI.
    #[error("the peer certificate carries {count} SPIFFE IDs; exactly one is allowed")]
    MultipleSpiffeIds {
        /// How many were found.
        count: usize,
    },
    /// The SPIFFE ID's trust domain is invalid.
    #[error("SPIFFE ID {uri:?} has an invalid trust domain: {source}")]
    BadTrustDomain {
        /// The SPIFFE ID, cut to 256 characters.
        uri: String,
        /// Why the trust domain is invalid.
        source: TrustDomainError,
    },
    /// The SPIFFE ID's path is not one of the shapes this deployment issues.
    #[error(
        "SPIFFE ID {uri:?} has an unrecognised path (expected /hub/<name>, /tenant/<tenant> \
         or /tenant/<tenant>/agent/<agent>)"
    )]
    BadPath {
        /// The SPIFFE ID, cut to 256 characters.
        uri: String,
    },
    /// A hub, tenant or agent name in the SPIFFE ID is invalid.
    #[error("SPIFFE ID {uri:?} holds an invalid name: {source}")]
    BadName {
        /// The SPIFFE ID, cut to 256 characters.
        uri: String,
        /// Why the name is invalid.
        source: IdError,
    },
}

/// Who a verified peer certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PeerIdentity {
    /// A hub: serves agents and federates with other hubs.
    Hub {
        /// The trust domain of the issuing CA.
        trust_domain: TrustDomain,
        /// The hub's name.
        hub: HubId,
        /// The region the CA placed the hub in, when it did: federation then takes the hub to
        /// be in that region and no other.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<Region>,
    },
    /// One agent of one tenant.
    Agent {
        /// The trust domain of the issuing CA.
        trust_domain: TrustDomain,
        /// The agent's tenant.
        tenant: TenantId,
        /// The agent.
        agent: AgentId,
    },
    /// Any agent of one tenant (a tenant-wide workload certificate).
    Tenant {
        /// The trust domain of the issuing CA.
        trust_domain: TrustDomain,
        /// The tenant.
        tenant: TenantId,
    },
}

impl PeerIdentity {
    /// Reads the identity from a DER-encoded certificate.
    ///
    /// The certificate must carry exactly one `spiffe://` URI subject alternative name (other
    /// URIs, DNS names and IP addresses are ignored) and must not be a CA certificate. The
    /// caller is responsible for having verified the certificate chain first.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
            IdentityError::NotACertificate {
                reason: e.to_string(),
            }
        })?;
        let basic_constraints =
            cert.basic_constraints()
                .map_err(|e| IdentityError::NotACertificate {
                    reason: e.to_string(),
                })?;
        if basic_constraints.is_some_and(|bc| bc.value.ca) {
            return Err(IdentityError::CaCertificate);
        }
        let san =
            cert.subject_alternative_name()
                .map_err(|e| IdentityError::BadSubjectAltName {
                    reason: e.to_string(),
                })?;
        let mut spiffe_uris = san
            .iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .filter_map(|name| match name {
                GeneralName::URI(uri) if is_spiffe_uri(uri) => Some(*uri),
                _ => None,
            });
        let Some(uri) = spiffe_uris.next() else {
            return Err(IdentityError::NoSpiffeId);
        };
        let extra = spiffe_uris.count();
        if extra > 0 {
            return Err(IdentityError::MultipleSpiffeIds { count: extra + 1 });
        }
        Self::from_spiffe_uri(uri)
    }

    /// Parses a SPIFFE ID such as `spiffe://agentdb.local/tenant/acme/agent/a1`.
    pub fn from_spiffe_uri(uri: &str) -> Result<Self, IdentityError> {
        let shown = || uri.chars().take(256).collect::<String>();
        let bad_path = || IdentityError::BadPath { uri: shown() };
        let rest = uri.strip_prefix(SPIFFE_PREFIX).ok_or_else(bad_path)?;
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let trust_domain =
            TrustDomain::new(domain).map_err(|source| IdentityError::BadTrustDomain {
                uri: shown(),
                source,
            })?;
        let name_err = |source| IdentityError::BadName {
            uri: shown(),
            source,
        };
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(bad_path());
        }
        match segments.as_slice() {
            ["hub", hub] => Ok(Self::Hub {
                trust_domain,
                hub: HubId::new(*hub).map_err(name_err)?,
                region: None,
            }),
            ["hub", hub, "region", region] => Ok(Self::Hub {
                trust_domain,
                hub: HubId::new(*hub).map_err(name_err)?,
                region: Some(Region::new(*region).map_err(name_err)?),
            }),
            ["tenant", tenant] => Ok(Self::Tenant {
                trust_domain,
                tenant: TenantId::new(*tenant).map_err(name_err)?,
            }),
            ["tenant", tenant, "agent", agent] => Ok(Self::Agent {
                trust_domain,
                tenant: TenantId::new(*tenant).map_err(name_err)?,
                agent: AgentId::new(*agent).map_err(name_err)?,
            }),
            _ => Err(bad_path()),
        }
    }

    /// The SPIFFE ID naming this identity.
    pub fn spiffe_uri(&self) -> String {
        match self {
            Self::Hub {
                trust_domain,
                hub,
                region: None,
            } => format!("{}/hub/{hub}", trust_domain.spiffe_uri()),
            Self::Hub {
                trust_domain,
                hub,
                region: Some(region),
            } => format!("{}/hub/{hub}/region/{region}", trust_domain.spiffe_uri()),
            Self::Agent {
                trust_domain,
                tenant,
                agent,
            } => format!(
                "{}/tenant/{tenant}/agent/{agent}",
                trust_domain.spiffe_uri()
            ),
            Self::Tenant {
                trust_domain,
                tenant,
            } => format!("{}/tenant/{tenant}", trust_domain.spiffe_uri()),
        }
    }

    /// The trust domain of the CA that issued the certificate.
    pub fn trust_domain(&self) -> &TrustDomain {
        match self {
            Self::Hub { trust_domain, .. }
            | Self::Agent { trust_domain, .. }
            | Self::Tenant { trust_domain, .. } => trust_domain,
        }
    }

    /// The tenant the certificate is bound to, if any (hubs are bound to none).
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Self::Hub { .. } => None,
            Self::Agent { tenant, .. } | Self::Tenant { tenant, .. } => Some(tenant),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_uri())
    }
}

/// Whether a URI uses the `spiffe` scheme, compared case-insensitively so that a mis-cased
/// second SPIFFE ID still counts as one (and is then rejected as malformed).
fn is_spiffe_uri(uri: &str) -> bool {
    uri.get(..SPIFFE_PREFIX.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SPIFFE_PREFIX))
}

/// The serial number of a certificate (DER) as revocations name it: lower-case hex of its
/// bytes, no separators, no leading zero byte.
pub fn certificate_serial(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| IdentityError::NotACertificate {
            reason: e.to_string(),
        })?;
    Ok(normalize_serial(
        &cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ))
}

/// Checks that `now` (Unix seconds) lies within the certificate's validity period. The TLS
/// verifier checks it at a full handshake; a resumed TLS session skips the verifier, so a hub
/// checks it again for every connection it accepts.
pub fn check_validity(der: &[u8], now: u64) -> Result<(), IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| IdentityError::NotACertificate {
            reason: e.to_string(),
        })?;
    let validity = cert.validity();
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before || now > not_after {
        return Err(IdentityError::OutsideValidity {
            not_before,
            not_after,
            now,
        });
    }
    Ok(())
}

/// A serial number as an operator may type it (`0A:1b:…`, `0x0a1b…`) in the one form
/// revocations use.
pub fn normalize_serial(text: &str) -> String {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod serial_tests {
    use super::normalize_serial;

    #[test]
    fn serials_have_one_form() {
        assert_eq!(normalize_serial("0A:1b:ff"), "a1bff");
        assert_eq!(normalize_serial("0x00a1"), "a1");
        assert_eq!(normalize_serial(" A1 "), "a1");
        assert_eq!(normalize_serial("00"), "0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> TrustDomain {
        TrustDomain::new("example.org").expect("valid trust domain")
    }

    #[test]
    fn trust_domains_are_validated() {
        assert_eq!(TrustDomain::default().as_str(), "agentdb.local");
        assert!(TrustDomain::new("prod-eu.agentdb_1").is_ok());
        assert_eq!(TrustDomain::new(""), Err(TrustDomainError::Empty));
        assert_eq!(
            TrustDomain::new("Example.org"),
            Err(TrustDomainError::BadChar { found: 'E' })
        );
        assert_eq!(
            TrustDomain::new("a:443"),
            Err(TrustDomainError::BadChar { found: ':' })
        );
        assert!(matches!(
            TrustDomain::new("a".repeat(256)),
            Err(TrustDomainError::TooLong { len: 256 })
        ));
    }

    #[test]
    fn spiffe_ids_round_trip() {
        let ids = [
            PeerIdentity::Hub {
                trust_domain: domain(),
                hub: HubId::new("eu-1").expect("valid"),
                region: None,
            },
            PeerIdentity::Hub {
                trust_domain: domain(),
                hub: HubId::new("eu-1").expect("valid"),
                region: Some(Region::new("eu").expect("valid")),
            },
            PeerIdentity::Agent {
                trust_domain: domain(),
                tenant: TenantId::new("acme").expect("valid"),
                agent: AgentId::new("a.1").expect("valid"),
            },
            PeerIdentity::Tenant {
                trust_domain: domain(),
                tenant: TenantId::new("acme").expect("valid"),
            },
        ];
        let uris = [
            "spiffe://example.org/hub/eu-1",
            "spiffe://example.org/hub/eu-1/region/eu",
            "spiffe://example.org/tenant/acme/agent/a.1",
            "spiffe://example.org/tenant/acme",
        ];
        for (id, uri) in ids.iter().zip(uris) {
            assert_eq!(id.spiffe_uri(), uri);
            assert_eq!(PeerIdentity::from_spiffe_uri(uri).as_ref(), Ok(id));
        }
    }

    #[test]
    fn malformed_spiffe_ids_are_rejected() {
        for uri in [
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://example.org/hub",
            "spiffe://example.org/hub/",
            "spiffe://example.org/hub/a/b",
            "spiffe://example.org/hub/a/region",
            "spiffe://example.org/hub/a/region/",
            "spiffe://example.org/hub/a/region/eu/x",
            "spiffe://example.org/hub/a/zone/eu",
            "spiffe://example.org/tenant/acme/agent",
            "spiffe://example.org/tenant/acme/agent/",
            "spiffe://example.org/tenant/acme/agents/a1",
            "spiffe://example.org/tenant//agent/a1",
            "spiffe://example.org//hub/a",
            "spiffe://example.org/hub/a/",
            "spiffe://example.org/something/else",
            "https://example.org/hub/a",
        ] {
            assert!(
                matches!(
                    PeerIdentity::from_spiffe_uri(uri),
                    Err(IdentityError::BadPath { .. })
                ),
                "{uri} should be a bad path"
            );
        }
        assert!(matches!(
            PeerIdentity::from_spiffe_uri("spiffe://Example.org/hub/a"),
            Err(IdentityError::BadTrustDomain { .. })
        ));
        assert!(matches!(
            PeerIdentity::from_spiffe_uri("spiffe:///hub/a"),
            Err(IdentityError::BadTrustDomain {
                source: TrustDomainError::Empty,
                ..
            })
        ));
        assert!(matches!(
            PeerIdentity::from_spiffe_uri("spiffe://example.org/hub/a%2Fb"),
            Err(IdentityError::BadName { .. })
        ));
        assert!(matches!(
            PeerIdentity::from_spiffe_uri("spiffe://example.org/tenant/acme/agent/*"),
            Err(IdentityError::BadName { .. })
        ));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            PeerIdentity::from_der(b"not a certificate"),
            Err(IdentityError::NotACertificate { .. })
        ));
    }

    #[test]
    fn spiffe_scheme_is_detected_case_insensitively() {
        assert!(is_spiffe_uri("spiffe://x"));
        assert!(is_spiffe_uri("SPIFFE://x"));
        assert!(!is_spiffe_uri("spiff"));
        assert!(!is_spiffe_uri("https://x"));
    }
}
