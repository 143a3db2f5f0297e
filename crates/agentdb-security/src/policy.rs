//! The tenant access policy: the one place that decides whether a caller may perform an
//! operation on a tenant.
//!
//! A caller is known by a [`VerifiedIdentity`]: the claims of a token that
//! [`crate::token::TokenVerifier`] accepted, and the identity from the client certificate that
//! the TLS layer verified ([`PeerIdentity::from_der`]), absent when mutual TLS is off.
//! [`authorize`] applies these rules in order:
//!
//! 1. A hub certificate is never accepted for agent operations. Hub-to-hub federation is
//!    authorised separately.
//! 2. If the certificate names a tenant (an agent or tenant-wide certificate), the token's
//!    tenant must be that tenant ([`PolicyError::CertificateTenantMismatch`]).
//! 3. If the certificate names an agent, the token's subject must be that agent
//!    ([`PolicyError::AgentMismatch`]): a stolen token cannot be used over another agent's
//!    connection. A tenant-wide certificate accepts any agent of its tenant.
//! 4. The token's tenant must be the tenant the operation targets
//!    ([`PolicyError::TenantMismatch`]).
//! 5. The token must grant the operation's [`Operation::required_scope`]
//!    ([`PolicyError::Forbidden`]).
//!
//! The tenant is therefore always taken from verified credentials, never from a request body.

use std::fmt;

use agentdb_core::{AgentId, HubId, Region, TenantId};

use crate::identity::PeerIdentity;
use crate::token::{Claims, Scope};

/// Something a caller asks to do to a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Semantic search over the tenant's memory.
    Query,
    /// Store a new episode or update one.
    Store,
    /// Pull changes to synchronise a local cache.
    Pull,
    /// Read the tenant's statistics.
    Stats,
    /// Administer the tenant (keys, settings).
    Admin,
    /// Erase all of the tenant's data.
    Erase,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 6] = [
        Operation::Query,
        Operation::Store,
        Operation::Pull,
        Operation::Stats,
        Operation::Admin,
        Operation::Erase,
    ];

    /// The scope a token must grant for this operation.
    pub fn required_scope(self) -> Scope {
        match self {
            Operation::Query | Operation::Stats => Scope::Read,
            Operation::Store => Scope::Write,
            Operation::Pull => Scope::Sync,
            Operation::Admin => Scope::Admin,
            Operation::Erase => Scope::Erase,
        }
    }

    /// The lowercase name of the operation.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Query => "query",
            Operation::Store => "store",
            Operation::Pull => "pull",
            Operation::Stats => "stats",
            Operation::Admin => "admin",
            Operation::Erase => "erase",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified credentials of a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The identity from the verified client certificate; `None` when mutual TLS is off.
    pub certificate: Option<PeerIdentity>,
    /// The claims of the verified token.
    pub claims: Claims,
}

/// Why a caller may not perform an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A hub certificate was presented for an agent operation.
    #[error("hub certificate {hub} cannot be used for agent operations")]
    HubCertificate {
        /// The hub the certificate names.
        hub: HubId,
    },
    /// The certificate names a different tenant from the token.
    #[error("the certificate is for tenant {certificate} but the token is for tenant {token}")]
    CertificateTenantMismatch {
        /// The certificate's tenant.
        certificate: TenantId,
        /// The token's tenant.
        token: TenantId,
    },
    /// The certificate names a different agent from the token's subject.
    #[error("the certificate is for agent {certificate} but the token is for agent {token}")]
    AgentMismatch {
        /// The certificate's agent.
        certificate: AgentId,
        /// The token's subject.
        token: AgentId,
    },
    /// The token is for a different tenant from the one the operation targets.
    #[error("the token is for tenant {token}, not tenant {requested}")]
    TenantMismatch {
        /// The tenant the operation targets.
        requested: TenantId,
        /// The token's tenant.
        token: TenantId,
    },
    /// A hub-to-hub link was opened without a hub certificate.
    #[error("hub-to-hub links need a hub certificate; the peer presented {presented}")]
    NotAHub {
        /// What the peer presented ("no certificate", or the identity it names).
        presented: String,
    },
    /// The token does not grant the scope the operation needs.
    #[error("{operation} needs the {needed} scope, which the token does not grant")]
    Forbidden {
        /// The operation.
        operation: Operation,
        /// The scope it needs.
        needed: Scope,
    },
    /// Hub-wide state was asked for with a token that does not grant the operator scope.
    #[error("hub-wide state needs the operator scope, which the token does not grant")]
    NotOperator,
}

impl PolicyError {
    /// A stable code for the failure, suitable for the wire: `tenant_mismatch` when the
    /// credentials name another tenant, `agent_mismatch` when certificate and token name
    /// different agents, `forbidden` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::CertificateTenantMismatch { .. } | PolicyError::TenantMismatch { .. } => {
                "tenant_mismatch"
            }
            PolicyError::AgentMismatch { .. } => "agent_mismatch",
            PolicyError::HubCertificate { .. }
            | PolicyError::Forbidden { .. }
            | PolicyError::NotAHub { .. }
            | PolicyError::NotOperator => "forbidden",
        }
    }
}

/// Decides whether a peer may open a hub-to-hub link (and so send replicated ops): only a
/// certificate naming a hub may. Returns the hub, and the region its certificate binds it to.
pub fn check_hub_peer(
    certificate: Option<&PeerIdentity>,
) -> Result<(&HubId, Option<&Region>), PolicyError> {
    match certificate {
        Some(PeerIdentity::Hub { hub, region, .. }) => Ok((hub, region.as_ref())),
        Some(other) => Err(PolicyError::NotAHub {
            presented: other.to_string(),
        }),
        None => Err(PolicyError::NotAHub {
            presented: "no certificate".into(),
        }),
    }
}

/// Decides whether `identity` may perform `operation` on `tenant`. See the module
/// documentation for the rules.
pub fn authorize(
    identity: &VerifiedIdentity,
    operation: Operation,
    tenant: &TenantId,
) -> Result<(), PolicyError> {
    check_identity(identity)?;
    let claims = &identity.claims;
    if claims.tenant != *tenant {
        return Err(PolicyError::TenantMismatch {
            requested: tenant.clone(),
            token: claims.tenant.clone(),
        });
    }
    let needed = operation.required_scope();
    if !claims.has_scope(needed) {
        return Err(PolicyError::Forbidden { operation, needed });
    }
    Ok(())
}

/// Decides whether `identity` may see hub-wide state, which names every tenant (federation
/// links and version vectors): the token must grant [`Scope::Operator`], and a certificate, if
/// any, must agree with the token as for every operation. The token's tenant does not matter:
/// without the operator scope, no tenant's credentials reveal another tenant's name.
pub fn authorize_operator(identity: &VerifiedIdentity) -> Result<(), PolicyError> {
    check_identity(identity)?;
    if !identity.claims.has_scope(Scope::Operator) {
        return Err(PolicyError::NotOperator);
    }
    Ok(())
}

/// The part of [`authorize`] that does not depend on the operation: the certificate (when there
/// is one) and the token must name the same tenant and agent, and a hub certificate never acts
/// for an agent. The hub checks this when a connection authenticates, before any operation.
pub fn check_identity(identity: &VerifiedIdentity) -> Result<(), PolicyError> {
    let claims = &identity.claims;
    match &identity.certificate {
        None => Ok(()),
        Some(PeerIdentity::Hub { hub, .. }) => {
            Err(PolicyError::HubCertificate { hub: hub.clone() })
        }
        Some(PeerIdentity::Tenant {
            tenant: cert_tenant,
            ..
        }) => check_certificate_tenant(cert_tenant, claims),
        Some(PeerIdentity::Agent {
            tenant: cert_tenant,
            agent,
            ..
        }) => {
            check_certificate_tenant(cert_tenant, claims)?;
            if *agent != claims.sub {
                return Err(PolicyError::AgentMismatch {
                    certificate: agent.clone(),
                    token: claims.sub.clone(),
                });
            }
            Ok(())
        }
    }
}

fn check_certificate_tenant(cert_tenant: &TenantId, claims: &Claims) -> Result<(), PolicyError> {
    if *cert_tenant != claims.tenant {
        return Err(PolicyError::CertificateTenantMismatch {
            certificate: cert_tenant.clone(),
            token: claims.tenant.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod hub_peer_tests {
    use super::*;
    use crate::identity::TrustDomain;

    #[test]
    fn only_hub_certificates_may_link() {
        let domain = TrustDomain::new("agentdb.local").unwrap();
        let hub = PeerIdentity::Hub {
            trust_domain: domain.clone(),
            hub: HubId::new("eu-1").unwrap(),
            region: None,
        };
        assert_eq!(check_hub_peer(Some(&hub)).unwrap().0.as_str(), "eu-1");
        let placed = PeerIdentity::Hub {
            trust_domain: domain.clone(),
            hub: HubId::new("eu-1").unwrap(),
            region: Some(Region::new("eu").unwrap()),
        };
        let (hub_id, region) = check_hub_peer(Some(&placed)).unwrap();
        assert_eq!(
            (hub_id.as_str(), region.map(Region::as_str)),
            ("eu-1", Some("eu"))
        );
        let agent = PeerIdentity::Tenant {
            trust_domain: domain,
            tenant: TenantId::new("acme").unwrap(),
        };
        assert!(matches!(
            check_hub_peer(Some(&agent)),
            Err(PolicyError::NotAHub { .. })
        ));
        assert!(matches!(
            check_hub_peer(None),
            Err(PolicyError::NotAHub { .. })
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::TrustDomain;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).expect("valid tenant")
    }

    fn agent(s: &str) -> AgentId {
        AgentId::new(s).expect("valid agent")
    }

    fn claims(t: &str, a: &str, scope: &[Scope]) -> Claims {
        Claims {
            iss: "agentdb".to_owned(),
            aud: "agentdb-hub".to_owned(),
            sub: agent(a),
            tenant: tenant(t),
            scope: scope.to_vec(),
            iat: 0,
            exp: 300,
            nbf: None,
            jti: "j".to_owned(),
        }
    }

    #[test]
    fn every_operation_needs_its_scope() {
        for op in Operation::ALL {
            let only = VerifiedIdentity {
                certificate: None,
                claims: claims("acme", "a1", &[op.required_scope()]),
            };
            assert_eq!(authorize(&only, op, &tenant("acme")), Ok(()));
            let others: Vec<Scope> = Scope::ALL
                .into_iter()
                .filter(|s| *s != op.required_scope())
                .collect();
            let without = VerifiedIdentity {
                certificate: None,
                claims: claims("acme", "a1", &others),
            };
            let err = authorize(&without, op, &tenant("acme")).expect_err("must be refused");
            assert_eq!(err.code(), "forbidden");
        }
    }

    #[test]
    fn hub_wide_state_needs_the_operator_scope() {
        let every_tenant_scope: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != Scope::Operator)
            .collect();
        let tenant_admin = VerifiedIdentity {
            certificate: None,
            claims: claims("acme", "a1", &every_tenant_scope),
        };
        assert_eq!(
            authorize_operator(&tenant_admin),
            Err(PolicyError::NotOperator)
        );
        let operator = VerifiedIdentity {
            certificate: None,
            claims: claims("ops", "op", &[Scope::Operator]),
        };
        assert_eq!(authorize_operator(&operator), Ok(()));
        // The operator scope grants nothing inside a tenant.
        for op in Operation::ALL {
            assert!(authorize(&operator, op, &tenant("ops")).is_err(), "{op}");
        }
        // A certificate that disagrees with the token is refused as everywhere else.
        let mismatched = VerifiedIdentity {
            certificate: Some(PeerIdentity::Tenant {
                trust_domain: TrustDomain::default(),
                tenant: tenant("acme"),
            }),
            claims: claims("ops", "op", &[Scope::Operator]),
        };
        assert!(authorize_operator(&mismatched).is_err());
    }

    #[test]
    fn hub_certificates_are_refused() {
        let identity = VerifiedIdentity {
            certificate: Some(PeerIdentity::Hub {
                trust_domain: TrustDomain::default(),
                hub: HubId::new("eu").expect("valid"),
                region: None,
            }),
            claims: claims("acme", "a1", &Scope::ALL),
        };
        let err = authorize(&identity, Operation::Query, &tenant("acme")).expect_err("refused");
        assert!(matches!(err, PolicyError::HubCertificate { .. }));
        assert_eq!(err.code(), "forbidden");
    }

    #[test]
    fn agent_certificate_must_match_subject() {
        let identity = VerifiedIdentity {
            certificate: Some(PeerIdentity::Agent {
                trust_domain: TrustDomain::default(),
                tenant: tenant("acme"),
                agent: agent("a2"),
            }),
            claims: claims("acme", "a1", &Scope::ALL),
        };
        let err = authorize(&identity, Operation::Query, &tenant("acme")).expect_err("refused");
        assert_eq!(
            err,
            PolicyError::AgentMismatch {
                certificate: agent("a2"),
                token: agent("a1")
            }
        );
        assert_eq!(err.code(), "agent_mismatch");
    }
}
