//! Reading the identity back from issued certificates, and refusing certificates that name
//! none or more than one.

#![allow(clippy::unwrap_used)]

use agentdb_core::{AgentId, HubId, Region, TenantId};
use agentdb_security::ca::{CertificateAuthority, HostName, Subject, DEFAULT_CA_VALIDITY};
use agentdb_security::identity::{IdentityError, PeerIdentity, TrustDomain};
use rcgen::{CertificateParams, KeyPair, SanType};
use time::OffsetDateTime;

fn ca(domain: &str) -> CertificateAuthority {
    CertificateAuthority::generate(
        TrustDomain::new(domain).expect("valid"),
        DEFAULT_CA_VALIDITY,
        OffsetDateTime::now_utc(),
    )
    .expect("CA generation")
}

fn identity_of(
    ca: &CertificateAuthority,
    subject: &Subject,
) -> Result<PeerIdentity, IdentityError> {
    let issued = ca
        .issue(
            subject,
            subject.default_validity(),
            OffsetDateTime::now_utc(),
        )
        .expect("issue");
    let identity = PeerIdentity::from_der(issued.cert_der());
    if let Ok(id) = &identity {
        assert_eq!(id, issued.identity());
    }
    identity
}

/// A self-signed certificate with the given subject alternative names.
fn self_signed(sans: Vec<SanType>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let key = KeyPair::generate().expect("key");
    params.self_signed(&key).expect("sign").der().to_vec()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().expect("ASCII"))
}

#[test]
fn agent_certificate_names_tenant_and_agent() {
    let ca = ca("example.org");
    let id = identity_of(
        &ca,
        &Subject::Agent {
            tenant: TenantId::new("acme").expect("valid"),
            agent: AgentId::new("worker-7").expect("valid"),
        },
    )
    .expect("identity");
    assert_eq!(
        id,
        PeerIdentity::Agent {
            trust_domain: TrustDomain::new("example.org").expect("valid"),
            tenant: TenantId::new("acme").expect("valid"),
            agent: AgentId::new("worker-7").expect("valid"),
        }
    );
    assert_eq!(id.tenant().map(TenantId::as_str), Some("acme"));
    assert_eq!(
        id.to_string(),
        "spiffe://example.org/tenant/acme/agent/worker-7"
    );
}

#[test]
fn tenant_wide_certificate_names_only_the_tenant() {
    let ca = ca("agentdb.local");
    let id = identity_of(
        &ca,
        &Subject::Tenant {
            tenant: TenantId::new("acme").expect("valid"),
        },
    )
    .expect("identity");
    assert_eq!(
        id,
        PeerIdentity::Tenant {
            trust_domain: TrustDomain::default(),
            tenant: TenantId::new("acme").expect("valid"),
        }
    );
}

#[test]
fn hub_certificate_names_the_hub_and_ignores_dns_sans() {
    let ca = ca("agentdb.local");
    for region in [None, Some(Region::new("eu").expect("valid"))] {
        let id = identity_of(
            &ca,
            &Subject::Hub {
                hub: HubId::new("eu-1").expect("valid"),
                hosts: HostName::defaults(),
                region: region.clone(),
            },
        )
        .expect("identity");
        assert_eq!(
            id,
            PeerIdentity::Hub {
                trust_domain: TrustDomain::default(),
                hub: HubId::new("eu-1").expect("valid"),
                region: region.clone(),
            }
        );
        let uri = match &region {
            None => "spiffe://agentdb.local/hub/eu-1",
            Some(_) => "spiffe://agentdb.local/hub/eu-1/region/eu",
        };
        assert_eq!(id.spiffe_uri(), uri);
        assert_eq!(id.tenant(), None);
        assert_eq!(id.trust_domain().as_str(), "agentdb.local");
    }
}

#[test]
fn certificate_without_spiffe_id_is_refused_clearly() {
    let der = self_signed(vec![
        SanType::DnsName("localhost".try_into().expect("ASCII")),
        uri("https://example.org/not-spiffe"),
    ]);
    let err = PeerIdentity::from_der(&der).expect_err("no SPIFFE ID");
    assert_eq!(err, IdentityError::NoSpiffeId);
    assert!(err.to_string().contains("no SPIFFE ID"), "{err}");

    let bare = self_signed(Vec::new());
    assert_eq!(
        PeerIdentity::from_der(&bare),
        Err(IdentityError::NoSpiffeId)
    );
}

#[test]
fn certificate_with_two_spiffe_ids_is_refused() {
    let der = self_signed(vec![
        uri("spiffe://agentdb.local/tenant/acme/agent/a1"),
        uri("spiffe://agentdb.local/tenant/evil/agent/a1"),
    ]);
    assert_eq!(
        PeerIdentity::from_der(&der),
        Err(IdentityError::MultipleSpiffeIds { count: 2 })
    );
}

#[test]
fn certificate_with_malformed_path_is_refused() {
    for (path, bad_name) in [
        ("spiffe://agentdb.local/tenant/acme/agent", false),
        ("spiffe://agentdb.local/tenants/acme", false),
        ("spiffe://agentdb.local/tenant/acme/agent/a1/extra", false),
        ("spiffe://agentdb.local/tenant/ac%20me", true),
    ] {
        let der = self_signed(vec![uri(path)]);
        let err = PeerIdentity::from_der(&der).expect_err("malformed");
        if bad_name {
            assert!(
                matches!(err, IdentityError::BadName { .. }),
                "{path}: {err}"
            );
        } else {
            assert!(
                matches!(err, IdentityError::BadPath { .. }),
                "{path}: {err}"
            );
        }
    }
}

#[test]
fn ca_certificate_is_not_a_peer_identity() {
    let ca = ca("agentdb.local");
    assert_eq!(
        PeerIdentity::from_der(ca.cert_der()),
        Err(IdentityError::CaCertificate)
    );
}

#[test]
fn garbage_is_refused() {
    assert!(matches!(
        PeerIdentity::from_der(&[0x30, 0x03, 0x02, 0x01, 0x01]),
        Err(IdentityError::NotACertificate { .. })
    ));
    assert!(matches!(
        PeerIdentity::from_der(&[]),
        Err(IdentityError::NotACertificate { .. })
    ));
}

#[test]
fn validity_is_checked_at_both_ends_of_the_period() {
    let ca = ca("example.org");
    let now = OffsetDateTime::now_utc();
    let issued = ca
        .issue(
            &Subject::Tenant {
                tenant: TenantId::new("acme").expect("valid"),
            },
            std::time::Duration::from_secs(3_600),
            now,
        )
        .expect("issue");
    let from = issued.not_after().unix_timestamp() as u64 - 3_600;
    let until = issued.not_after().unix_timestamp() as u64;
    let check = |at| agentdb_security::identity::check_validity(issued.cert_der(), at);
    assert!(check(now.unix_timestamp() as u64).is_ok());
    assert!(check(until).is_ok());
    let expired = check(until + 1).unwrap_err();
    assert!(
        matches!(expired, IdentityError::OutsideValidity { .. }),
        "{expired}"
    );
    assert!(expired.to_string().contains("not at"), "{expired}");
    assert!(check(from.saturating_sub(86_400)).is_err());
    assert!(matches!(
        agentdb_security::identity::check_validity(b"not a certificate", 0),
        Err(IdentityError::NotACertificate { .. })
    ));
}
