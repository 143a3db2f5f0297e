//! Hub signatures: a hub signs bytes with its certificate key; the signature verifies against
//! that certificate only, for those bytes only, and the certificate against its CA only.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agentdb_core::{HubId, TenantId};
use agentdb_security::ca::{
    CertificateAuthority, HostName, IssuedCertificate, Subject, DEFAULT_CA_VALIDITY,
    DEFAULT_HUB_VALIDITY, NOT_BEFORE_BACKDATE,
};
use agentdb_security::identity::TrustDomain;
use agentdb_security::signing::{
    certificate_der, certificate_fingerprint, verify_issued_by, verify_signature, HubSigner,
    SignatureError, SignerError,
};
use time::OffsetDateTime;

const NOW: i64 = 1_700_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn ca() -> CertificateAuthority {
    CertificateAuthority::generate(TrustDomain::default(), DEFAULT_CA_VALIDITY, now()).unwrap()
}

fn hub_cert(ca: &CertificateAuthority, name: &str) -> IssuedCertificate {
    ca.issue(
        &Subject::Hub {
            hub: HubId::new(name).unwrap(),
            hosts: HostName::defaults(),
            region: None,
        },
        DEFAULT_HUB_VALIDITY,
        now(),
    )
    .unwrap()
}

#[test]
fn signature_verifies_for_its_message_and_certificate_only() {
    let ca = ca();
    let hub = hub_cert(&ca, "eu-1");
    let other = hub_cert(&ca, "eu-2");
    let signer = HubSigner::from_pem(hub.cert_pem(), hub.key_pem()).unwrap();
    assert_eq!(signer.certificate_der(), hub.cert_der());
    assert_eq!(
        signer.fingerprint(),
        certificate_fingerprint(hub.cert_der())
    );

    let message = b"agentdb-test/v1\nseq 7\n";
    let signature = signer.sign(message).unwrap();
    verify_signature(hub.cert_der(), message, &signature).unwrap();

    assert_eq!(
        verify_signature(hub.cert_der(), b"agentdb-test/v1\nseq 8\n", &signature),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_signature(other.cert_der(), message, &signature),
        Err(SignatureError::Invalid)
    );
    let mut flipped = signature.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        verify_signature(hub.cert_der(), message, &flipped),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_signature(hub.cert_der(), message, b""),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn signer_refuses_a_key_of_another_certificate() {
    let ca = ca();
    let hub = hub_cert(&ca, "eu-1");
    let other = hub_cert(&ca, "eu-2");
    assert!(matches!(
        HubSigner::from_pem(hub.cert_pem(), other.key_pem()),
        Err(SignerError::KeyMismatch)
    ));
    assert!(matches!(
        HubSigner::from_pem(hub.cert_pem(), hub.cert_pem()),
        Err(SignerError::BadKey { .. })
    ));
    assert!(matches!(
        HubSigner::from_pem("garbage", hub.key_pem()),
        Err(SignerError::Certificate(
            SignatureError::BadCertificate { .. }
        ))
    ));
}

#[test]
fn signer_loads_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let hub = hub_cert(&ca, "eu-1");
    let (cert_path, key_path) = hub.save(dir.path(), false).unwrap();
    let signer = HubSigner::load(&cert_path, &key_path).unwrap();
    let signature = signer.sign(b"m").unwrap();
    verify_signature(hub.cert_der(), b"m", &signature).unwrap();
    assert!(matches!(
        HubSigner::load(&dir.path().join("missing.pem"), &key_path),
        Err(SignerError::Read { .. })
    ));
}

#[test]
fn certificate_is_checked_against_its_ca_and_validity() {
    let ca = ca();
    let other_ca = self::ca();
    let hub = hub_cert(&ca, "eu-1");
    verify_issued_by(hub.cert_der(), ca.cert_der(), NOW).unwrap();
    assert_eq!(
        verify_issued_by(hub.cert_der(), other_ca.cert_der(), NOW),
        Err(SignatureError::NotIssuedBy)
    );
    // A leaf certificate is no CA, even for a certificate it did not sign.
    let leaf = ca
        .issue(
            &Subject::Tenant {
                tenant: TenantId::new("acme").unwrap(),
            },
            Duration::from_secs(3600),
            now(),
        )
        .unwrap();
    assert_eq!(
        verify_issued_by(hub.cert_der(), leaf.cert_der(), NOW),
        Err(SignatureError::NotACa)
    );
    // Before its start (less the backdate) and after its end, the certificate vouches for
    // nothing.
    let backdate = i64::try_from(NOT_BEFORE_BACKDATE.as_secs()).unwrap();
    let validity = i64::try_from(DEFAULT_HUB_VALIDITY.as_secs()).unwrap();
    assert!(matches!(
        verify_issued_by(hub.cert_der(), ca.cert_der(), NOW - backdate - 1),
        Err(SignatureError::OutsideValidity { .. })
    ));
    assert!(matches!(
        verify_issued_by(hub.cert_der(), ca.cert_der(), NOW + validity + 1),
        Err(SignatureError::OutsideValidity { .. })
    ));
    verify_issued_by(hub.cert_der(), ca.cert_der(), NOW + validity).unwrap();
}

#[test]
fn certificates_are_accepted_as_pem_or_der() {
    let ca = ca();
    let hub = hub_cert(&ca, "eu-1");
    assert_eq!(
        certificate_der(hub.cert_pem().as_bytes()).unwrap(),
        hub.cert_der()
    );
    assert_eq!(certificate_der(hub.cert_der()).unwrap(), hub.cert_der());
    assert!(matches!(
        certificate_der(hub.key_pem().as_bytes()),
        Err(SignatureError::BadCertificate { .. })
    ));
}
