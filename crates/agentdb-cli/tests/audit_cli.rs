//! `agentdb audit verify` and `agentdb audit export` through the real binary, on a log
//! written by the library.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use agentdb_audit::{AuditConfig, AuditEvent, AuditLog, AuditRecord, Operation, Outcome};
use agentdb_core::{EpisodeId, HubId, TenantId};
use agentdb_security::ca::{CertificateAuthority, HostName, Subject, DEFAULT_CA_VALIDITY};
use agentdb_security::identity::TrustDomain;
use agentdb_security::signing::HubSigner;
use time::OffsetDateTime;

const BIN: &str = env!("CARGO_BIN_EXE_agentdb");
/// 2023-11-14T22:13:20Z.
const START_MS: u64 = 1_700_000_000_000;

fn agentdb(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the agentdb binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cert: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A closed log of 40 stores (tenants alternating `acme` and `globex`; the last 20 ten
/// seconds later) with a checkpoint in the middle, and the hub's certificate and CA.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::from_unix_timestamp((START_MS / 1000) as i64).unwrap();
    let ca =
        CertificateAuthority::generate(TrustDomain::default(), DEFAULT_CA_VALIDITY, now).unwrap();
    let other_ca =
        CertificateAuthority::generate(TrustDomain::default(), DEFAULT_CA_VALIDITY, now).unwrap();
    let subject = Subject::Hub {
        hub: HubId::new("eu-1").unwrap(),
        hosts: HostName::defaults(),
        region: None,
    };
    let issued = ca.issue(&subject, subject.default_validity(), now).unwrap();
    let (cert, _) = issued.save(tmp.path(), false).unwrap();
    let ca_path = tmp.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let other_ca_path = tmp.path().join("other-ca.pem");
    std::fs::write(&other_ca_path, other_ca.cert_pem()).unwrap();

    let signer = Arc::new(HubSigner::from_pem(issued.cert_pem(), issued.key_pem()).unwrap());
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(START_MS));
    let dir = tmp.path().join("audit");
    let log = {
        let clock = clock.clone();
        AuditLog::open(
            &dir,
            HubId::new("eu-1").unwrap(),
            Some(signer),
            AuditConfig::default(),
            move || clock.load(std::sync::atomic::Ordering::SeqCst),
        )
        .unwrap()
    };
    for i in 0..40u64 {
        let tenant = if i.is_multiple_of(2) {
            "acme"
        } else {
            "globex"
        };
        log.record(
            AuditEvent::new(Operation::Store, Outcome::Ok)
                .tenant(TenantId::new(tenant).unwrap())
                .agent(format!("agent-{i}"))
                .episodes([EpisodeId::from_parts(START_MS + i, [1; 10])]),
        );
        if i == 19 {
            log.checkpoint_now().unwrap();
            clock.fetch_add(10_000, std::sync::atomic::Ordering::SeqCst);
        }
    }
    log.close().unwrap();
    Setup {
        _tmp: tmp,
        dir,
        cert,
        ca: ca_path,
        other_ca: other_ca_path,
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(agentdb_audit::segment_name(0))
}

#[test]
fn verify_passes_an_intact_log_and_names_each_problem_of_a_tampered_one() {
    let s = setup();
    let out = agentdb(&[
        "audit",
        "verify",
        "--dir",
        path(&s.dir),
        "--cert",
        path(&s.cert),
        "--ca",
        path(&s.ca),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // log_open, 40 stores, 2 checkpoints.
    assert_eq!(text(&out.stdout), "ok: 43 records, 2 checkpoints\n");

    // A certificate from another CA is refused.
    let out = agentdb(&[
        "audit",
        "verify",
        "--dir",
        path(&s.dir),
        "--cert",
        path(&s.cert),
        "--ca",
        path(&s.other_ca),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("not trusted by the CA"));

    // Change a record: one line names its segment, line and seq.
    let segment = segment(&s.dir);
    let original = std::fs::read_to_string(&segment).unwrap();
    let tampered = original.replacen("\"agent\":\"agent-7\"", "\"agent\":\"agent-8\"", 1);
    assert_ne!(tampered, original);
    std::fs::write(&segment, &tampered).unwrap();
    let out = agentdb(&[
        "audit",
        "verify",
        "--dir",
        path(&s.dir),
        "--cert",
        path(&s.cert),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // agent-7 is the 8th store: seq 8, line 9.
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("error: audit-00000000000000000000.jsonl:9: seq 8: changed"),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("failed verification: 1 error"), "{stderr}");

    // Cut the tail, and remove HEAD: each is a line.
    let mut kept: Vec<&str> = original.lines().collect();
    kept.truncate(kept.len() - 2);
    std::fs::write(&segment, format!("{}\n", kept.join("\n"))).unwrap();
    std::fs::remove_file(s.dir.join("HEAD")).unwrap();
    let out = agentdb(&[
        "audit",
        "verify",
        "--dir",
        path(&s.dir),
        "--cert",
        path(&s.cert),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("HEAD is missing"), "{stdout}");
    assert!(
        stdout.contains("records after the last checkpoint"),
        "{stdout}"
    );
}

#[test]
fn verify_reports_unreadable_arguments_in_one_line() {
    let s = setup();
    let out = agentdb(&[
        "audit",
        "verify",
        "--dir",
        path(&s.dir),
        "--cert",
        path(&s.dir.join("missing.pem")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).lines().count(), 1);
    let out = agentdb(&["audit", "verify", "--dir", path(&s.dir)]);
    assert_eq!(out.status.code(), Some(2), "--cert is required");
}

#[test]
fn export_prints_a_tenants_records_since_a_time() {
    let s = setup();
    let stored = std::fs::read_to_string(segment(&s.dir)).unwrap();

    let out = agentdb(&["audit", "export", "--dir", path(&s.dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), stored);

    let out = agentdb(&[
        "audit",
        "export",
        "--dir",
        path(&s.dir),
        "--tenant",
        "acme",
        "--since",
        "2023-11-14T22:13:30Z",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let agents: Vec<String> = stdout
        .lines()
        .map(|l| {
            assert!(stored.contains(l));
            let record = AuditRecord::from_line(l.as_bytes()).unwrap();
            assert_eq!(record.event.tenant.unwrap().as_str(), "acme");
            record.event.agent.unwrap()
        })
        .collect();
    assert_eq!(
        agents,
        [
            "agent-20", "agent-22", "agent-24", "agent-26", "agent-28", "agent-30", "agent-32",
            "agent-34", "agent-36", "agent-38"
        ]
    );

    // Unix milliseconds work too.
    let since = (START_MS + 10_000).to_string();
    let out = agentdb(&[
        "audit",
        "export",
        "--dir",
        path(&s.dir),
        "--tenant",
        "acme",
        "--since",
        &since,
    ]);
    assert_eq!(text(&out.stdout), stdout);

    let out = agentdb(&[
        "audit",
        "export",
        "--dir",
        path(&s.dir),
        "--since",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
