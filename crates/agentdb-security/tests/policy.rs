//! The tenant access policy over every combination of certificate, token tenant, scope and
//! operation, checked against a plain restatement of the rules.

#![allow(clippy::unwrap_used)]

use agentdb_core::{AgentId, HubId, TenantId};
use agentdb_security::identity::{PeerIdentity, TrustDomain};
use agentdb_security::policy::{authorize, Operation, PolicyError, VerifiedIdentity};
use agentdb_security::token::{Claims, Scope};

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).expect("valid tenant")
}

fn agent(s: &str) -> AgentId {
    AgentId::new(s).expect("valid agent")
}

fn claims(tenant_name: &str, agent_name: &str, scope: Vec<Scope>) -> Claims {
    Claims {
        iss: "agentdb".to_owned(),
        aud: "agentdb-hub".to_owned(),
        sub: agent(agent_name),
        tenant: tenant(tenant_name),
        scope,
        iat: 1000,
        exp: 1300,
        nbf: None,
        jti: "jti".to_owned(),
    }
}

/// Every certificate a caller might present: none, each kind for tenant `acme` or `globex`,
/// agent certificates for the token's agent and another one, and a hub.
fn certificates() -> Vec<Option<PeerIdentity>> {
    let domain = TrustDomain::default();
    let mut certs = vec![None];
    for t in ["acme", "globex"] {
        certs.push(Some(PeerIdentity::Tenant {
            trust_domain: domain.clone(),
            tenant: tenant(t),
        }));
        for a in ["a1", "a2"] {
            certs.push(Some(PeerIdentity::Agent {
                trust_domain: domain.clone(),
                tenant: tenant(t),
                agent: agent(a),
            }));
        }
    }
    certs.push(Some(PeerIdentity::Hub {
        trust_domain: domain,
        hub: HubId::new("eu").expect("valid hub"),
        region: None,
    }));
    certs
}

/// Every subset of the scopes.
fn scope_sets() -> Vec<Vec<Scope>> {
    (0u32..(1 << Scope::ALL.len()))
        .map(|mask| {
            Scope::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| s)
                .collect()
        })
        .collect()
}

/// The expected stable code, straight from the rules as written in the documentation.
fn expected_code(
    cert: Option<&PeerIdentity>,
    token_tenant: &str,
    scope: &[Scope],
    op: Operation,
    requested: &str,
) -> Option<&'static str> {
    match cert {
        Some(PeerIdentity::Hub { .. }) => return Some("forbidden"),
        Some(PeerIdentity::Tenant { tenant, .. }) if tenant.as_str() != token_tenant => {
            return Some("tenant_mismatch")
        }
        Some(PeerIdentity::Agent { tenant, .. }) if tenant.as_str() != token_tenant => {
            return Some("tenant_mismatch")
        }
        Some(PeerIdentity::Agent { agent, .. }) if agent.as_str() != "a1" => {
            return Some("agent_mismatch")
        }
        _ => {}
    }
    if token_tenant != requested {
        return Some("tenant_mismatch");
    }
    let needed = match op {
        Operation::Query | Operation::Stats => Scope::Read,
        Operation::Store => Scope::Write,
        Operation::Pull => Scope::Sync,
        Operation::Admin => Scope::Admin,
        Operation::Erase => Scope::Erase,
    };
    if !scope.contains(&needed) {
        return Some("forbidden");
    }
    None
}

#[test]
fn matrix_of_certificate_token_tenant_scope_and_operation() {
    let mut allowed = 0;
    let mut checked = 0;
    for cert in certificates() {
        for token_tenant in ["acme", "globex"] {
            for scope in scope_sets() {
                for op in Operation::ALL {
                    for requested in ["acme", "globex"] {
                        let identity = VerifiedIdentity {
                            certificate: cert.clone(),
                            claims: claims(token_tenant, "a1", scope.clone()),
                        };
                        let result = authorize(&identity, op, &tenant(requested));
                        let expected =
                            expected_code(cert.as_ref(), token_tenant, &scope, op, requested);
                        assert_eq!(
                            result.as_ref().err().map(PolicyError::code),
                            expected,
                            "cert {cert:?}, token tenant {token_tenant}, scope {scope:?}, \
                             {op} on {requested}: {result:?}"
                        );
                        if result.is_ok() {
                            allowed += 1;
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 8 * 2 * 64 * 6 * 2);
    assert!(allowed > 0);
}

#[test]
fn errors_name_what_did_not_match() {
    let identity = VerifiedIdentity {
        certificate: Some(PeerIdentity::Tenant {
            trust_domain: TrustDomain::default(),
            tenant: tenant("acme"),
        }),
        claims: claims("globex", "a1", Scope::ALL.to_vec()),
    };
    assert_eq!(
        authorize(&identity, Operation::Query, &tenant("globex")),
        Err(PolicyError::CertificateTenantMismatch {
            certificate: tenant("acme"),
            token: tenant("globex"),
        })
    );

    let identity = VerifiedIdentity {
        certificate: None,
        claims: claims("acme", "a1", vec![Scope::Read]),
    };
    assert_eq!(
        authorize(&identity, Operation::Store, &tenant("acme")),
        Err(PolicyError::Forbidden {
            operation: Operation::Store,
            needed: Scope::Write,
        })
    );
    assert_eq!(
        authorize(&identity, Operation::Query, &tenant("globex")),
        Err(PolicyError::TenantMismatch {
            requested: tenant("globex"),
            token: tenant("acme"),
        })
    );
    let err = authorize(&identity, Operation::Erase, &tenant("acme")).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "erase needs the erase scope, which the token does not grant"
    );
}
