//! The certificate authority against the real `openssl` binary: issued certificates verify
//! against their CA and no other, carry the right key usages and lifetimes, and key files are
//! private.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agentdb_core::{AgentId, HubId, TenantId};
use agentdb_security::ca::{
    CertificateAuthority, HostName, Subject, CA_CERT_FILE, CA_KEY_FILE, DEFAULT_AGENT_VALIDITY,
    DEFAULT_CA_VALIDITY, DEFAULT_HUB_VALIDITY, NOT_BEFORE_BACKDATE,
};
use agentdb_security::identity::TrustDomain;
use agentdb_security::FileError;
use time::OffsetDateTime;

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl binary runs")
}

fn new_ca(dir: &Path) -> CertificateAuthority {
    let ca = CertificateAuthority::generate(
        TrustDomain::default(),
        DEFAULT_CA_VALIDITY,
        OffsetDateTime::now_utc(),
    )
    .expect("CA generation");
    ca.save(dir, false).expect("save CA");
    ca
}

fn hub_subject() -> Subject {
    Subject::Hub {
        hub: HubId::new("eu-1").expect("valid"),
        hosts: vec![
            "hub.eu.example.com".parse().expect("valid"),
            "10.1.2.3".parse().expect("valid"),
        ],
        region: None,
    }
}

fn agent_subject() -> Subject {
    Subject::Agent {
        tenant: TenantId::new("acme").expect("valid"),
        agent: AgentId::new("a1").expect("valid"),
    }
}

fn tenant_subject() -> Subject {
    Subject::Tenant {
        tenant: TenantId::new("acme").expect("valid"),
    }
}

/// Issues a certificate for `subject` with its default lifetime and saves it into `dir`.
fn issue(ca: &CertificateAuthority, subject: &Subject, dir: &Path) -> (PathBuf, PathBuf) {
    ca.issue(
        subject,
        subject.default_validity(),
        OffsetDateTime::now_utc(),
    )
    .expect("issue")
    .save(dir, false)
    .expect("save")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn verify(ca_pem: &Path, cert: &Path, purpose: Option<&str>) -> Output {
    let mut args = vec!["verify", "-CAfile", path_str(ca_pem)];
    if let Some(purpose) = purpose {
        args.extend(["-purpose", purpose]);
    }
    args.push(path_str(cert));
    openssl(&args)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn issued_certificates_verify_with_openssl_against_their_ca_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let other_dir = tempfile::tempdir().expect("tempdir");
    let _other = new_ca(other_dir.path());
    let certs = dir.path().join("certs");

    for subject in [hub_subject(), agent_subject(), tenant_subject()] {
        let (cert, _) = issue(&ca, &subject, &certs);
        let ok = verify(&dir.path().join(CA_CERT_FILE), &cert, None);
        assert!(
            ok.status.success(),
            "openssl verify failed for {subject:?}: {}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(String::from_utf8_lossy(&ok.stdout).contains(": OK"));

        let wrong = verify(&other_dir.path().join(CA_CERT_FILE), &cert, None);
        assert!(
            !wrong.status.success(),
            "a certificate verified against the wrong CA for {subject:?}"
        );
    }
}

#[test]
fn hub_certificates_serve_and_connect_agent_certificates_only_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let ca_pem = dir.path().join(CA_CERT_FILE);
    let (hub, _) = issue(&ca, &hub_subject(), dir.path());
    let (agent, _) = issue(&ca, &agent_subject(), dir.path());

    assert!(verify(&ca_pem, &hub, Some("sslserver")).status.success());
    assert!(verify(&ca_pem, &hub, Some("sslclient")).status.success());
    assert!(verify(&ca_pem, &agent, Some("sslclient")).status.success());
    assert!(!verify(&ca_pem, &agent, Some("sslserver")).status.success());

    let eku = |cert: &Path| {
        let out = openssl(&[
            "x509",
            "-noout",
            "-in",
            path_str(cert),
            "-ext",
            "extendedKeyUsage,subjectAltName",
        ]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hub_ext = eku(&hub);
    assert!(
        hub_ext.contains("TLS Web Server Authentication"),
        "{hub_ext}"
    );
    assert!(
        hub_ext.contains("TLS Web Client Authentication"),
        "{hub_ext}"
    );
    assert!(
        hub_ext.contains("URI:spiffe://agentdb.local/hub/eu-1"),
        "{hub_ext}"
    );
    assert!(hub_ext.contains("DNS:hub.eu.example.com"), "{hub_ext}");
    assert!(hub_ext.contains("IP Address:10.1.2.3"), "{hub_ext}");

    let agent_ext = eku(&agent);
    assert!(
        agent_ext.contains("TLS Web Client Authentication"),
        "{agent_ext}"
    );
    assert!(
        !agent_ext.contains("TLS Web Server Authentication"),
        "{agent_ext}"
    );
    assert!(
        agent_ext.contains("URI:spiffe://agentdb.local/tenant/acme/agent/a1"),
        "{agent_ext}"
    );
}

#[test]
fn ca_certificate_is_a_path_length_zero_ca_naming_its_trust_domain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ca = new_ca(dir.path());
    let out = openssl(&[
        "x509",
        "-noout",
        "-in",
        path_str(&dir.path().join(CA_CERT_FILE)),
        "-ext",
        "basicConstraints,keyUsage,subjectAltName",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("URI:spiffe://agentdb.local"), "{text}");

    let key = openssl(&[
        "pkey",
        "-noout",
        "-text",
        "-in",
        path_str(&dir.path().join(CA_KEY_FILE)),
    ]);
    assert!(key.status.success());
    assert!(String::from_utf8_lossy(&key.stdout).contains("P-256"));
}

#[test]
fn lifetimes_follow_the_defaults() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate(TrustDomain::default(), DEFAULT_CA_VALIDITY, now)
        .expect("CA generation");
    let lifetime = |der: &[u8]| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse");
        let validity = cert.validity();
        (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    };
    let secs = |d: Duration| i64::try_from(d.as_secs()).expect("fits");
    let now_secs = now.unix_timestamp();

    let (nb, na) = lifetime(ca.cert_der());
    assert_eq!(nb, now_secs - secs(NOT_BEFORE_BACKDATE));
    assert_eq!(na, now_secs + secs(DEFAULT_CA_VALIDITY));

    for (subject, expected) in [
        (hub_subject(), DEFAULT_HUB_VALIDITY),
        (agent_subject(), DEFAULT_AGENT_VALIDITY),
        (tenant_subject(), Duration::from_secs(24 * 3600)),
    ] {
        let issued = ca
            .issue(&subject, subject.default_validity(), now)
            .expect("issue");
        let (nb, na) = lifetime(issued.cert_der());
        assert_eq!(nb, now_secs - secs(NOT_BEFORE_BACKDATE));
        assert_eq!(na, now_secs + secs(expected));
        assert_eq!(issued.not_after().unix_timestamp(), na);
    }

    let one_hour = ca
        .issue(&agent_subject(), Duration::from_secs(3600), now)
        .expect("issue");
    assert_eq!(lifetime(one_hour.cert_der()).1, now_secs + 3600);
}

#[test]
fn key_files_are_private_and_existing_files_are_not_clobbered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.path().join(CA_CERT_FILE)), 0o644);
    assert!(CertificateAuthority::exists_in(dir.path()));

    // A second CA does not replace the first unless asked to.
    let original = std::fs::read(dir.path().join(CA_KEY_FILE)).expect("read");
    let second = CertificateAuthority::generate(
        TrustDomain::default(),
        DEFAULT_CA_VALIDITY,
        OffsetDateTime::now_utc(),
    )
    .expect("CA generation");
    assert!(matches!(
        second.save(dir.path(), false),
        Err(FileError::Exists { .. })
    ));
    assert_eq!(
        std::fs::read(dir.path().join(CA_KEY_FILE)).expect("read"),
        original
    );
    second.save(dir.path(), true).expect("overwrite");
    assert_ne!(
        std::fs::read(dir.path().join(CA_KEY_FILE)).expect("read"),
        original
    );
    assert_eq!(mode(&dir.path().join(CA_KEY_FILE)), 0o600);
    let reloaded = CertificateAuthority::load(dir.path()).expect("load");
    assert_eq!(reloaded.cert_der(), second.cert_der());

    // Issued keys are private too, and are not clobbered either.
    let (cert, key) = issue(&ca, &agent_subject(), dir.path());
    assert_eq!(cert, dir.path().join("a1.pem"));
    assert_eq!(key, dir.path().join("a1.key"));
    assert_eq!(mode(&key), 0o600);
    let again = ca
        .issue(
            &agent_subject(),
            DEFAULT_AGENT_VALIDITY,
            OffsetDateTime::now_utc(),
        )
        .expect("issue");
    assert!(matches!(
        again.save(dir.path(), false),
        Err(FileError::Exists { .. })
    ));
    let (_, tenant_key) = issue(&ca, &tenant_subject(), dir.path());
    assert_eq!(tenant_key, dir.path().join("tenant-acme.key"));
}

#[test]
fn a_loaded_ca_issues_certificates_that_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = TrustDomain::new("prod.example").expect("valid");
    CertificateAuthority::generate(
        domain.clone(),
        DEFAULT_CA_VALIDITY,
        OffsetDateTime::now_utc(),
    )
    .expect("CA generation")
    .save(dir.path(), false)
    .expect("save");
    let ca = CertificateAuthority::load(dir.path()).expect("load");
    assert_eq!(ca.trust_domain(), &domain);
    let subject = Subject::Hub {
        hub: HubId::new("us").expect("valid"),
        hosts: HostName::defaults(),
        region: None,
    };
    let (cert, _) = issue(&ca, &subject, dir.path());
    let out = verify(&dir.path().join(CA_CERT_FILE), &cert, Some("sslserver"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        path_str(&cert),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("URI:spiffe://prod.example/hub/us"), "{text}");
    assert!(text.contains("DNS:localhost"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
}

#[test]
fn loading_reports_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = CertificateAuthority::load(dir.path()).expect_err("no CA there");
    assert!(err.to_string().contains("ca.pem"), "{err}");
}
