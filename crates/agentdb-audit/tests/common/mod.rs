//! Shared by the audit log tests: a CA and a hub certificate, a clock moved by hand, and
//! line-level access to a log's files.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use agentdb_audit::{AuditConfig, AuditEvent, AuditLog, AuditRecord, Operation, Outcome, Trust};
use agentdb_core::{EpisodeId, HubId, TenantId};
use agentdb_security::ca::{CertificateAuthority, HostName, Subject, DEFAULT_CA_VALIDITY};
use agentdb_security::identity::TrustDomain;
use agentdb_security::signing::HubSigner;
use time::OffsetDateTime;

/// 2023-11-14T22:13:20Z.
pub const START_MS: u64 = 1_700_000_000_000;

pub struct Pki {
    pub ca_der: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub signer: Arc<HubSigner>,
}

/// A CA and a certificate for hub `eu-1` valid at [`START_MS`] for 90 days.
pub fn pki() -> Pki {
    let now = OffsetDateTime::from_unix_timestamp((START_MS / 1000) as i64).unwrap();
    let ca =
        CertificateAuthority::generate(TrustDomain::default(), DEFAULT_CA_VALIDITY, now).unwrap();
    let subject = Subject::Hub {
        hub: hub(),
        hosts: HostName::defaults(),
        region: None,
    };
    let cert = ca.issue(&subject, subject.default_validity(), now).unwrap();
    Pki {
        ca_der: ca.cert_der().to_vec(),
        cert_der: cert.cert_der().to_vec(),
        cert_pem: cert.cert_pem().to_owned(),
        signer: Arc::new(HubSigner::from_pem(cert.cert_pem(), cert.key_pem()).unwrap()),
    }
}

pub fn hub() -> HubId {
    HubId::new("eu-1").unwrap()
}

/// A clock moved by hand.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub fn new() -> Self {
        Self(Arc::new(AtomicU64::new(START_MS)))
    }

    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn source(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let inner = self.0.clone();
        move || inner.load(Ordering::SeqCst)
    }
}

/// A log directory, its signer and its clock.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub pki: Pki,
    pub clock: TestClock,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
            pki: pki(),
            clock: TestClock::new(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("audit")
    }

    pub fn open(&self, config: AuditConfig) -> AuditLog {
        AuditLog::open(
            self.dir(),
            hub(),
            Some(self.pki.signer.clone()),
            config,
            self.clock.source(),
        )
        .unwrap()
    }

    pub fn trust(&self) -> Trust {
        Trust::certificate(self.pki.cert_der.clone())
    }
}

/// The `i`th test event: a store for tenant `acme` (even) or `globex` (odd).
pub fn event(i: u64) -> AuditEvent {
    let tenant = if i.is_multiple_of(2) {
        "acme"
    } else {
        "globex"
    };
    AuditEvent::new(Operation::Store, Outcome::Ok)
        .tenant(TenantId::new(tenant).unwrap())
        .agent(format!("agent-{i}"))
        .identity(format!(
            "spiffe://agentdb.local/tenant/{tenant}/agent/agent-{i}"
        ))
        .episodes([EpisodeId::from_parts(START_MS + i, [i as u8; 10])])
        .request_id(format!("req-{i}"))
}

/// A closed log of `n` events with a checkpoint after every 50th, in one segment.
pub fn standard_log(fixture: &Fixture, n: u64) {
    let log = fixture.open(AuditConfig::default());
    for i in 0..n {
        log.record(event(i));
        if i % 50 == 49 {
            log.checkpoint_now().unwrap();
        }
    }
    log.close().unwrap();
}

/// The only segment of a log.
pub fn only_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().unwrap()
}

/// The lines of a segment, without newlines.
pub fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

/// Writes `lines` back, each with a newline.
pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    std::fs::write(path, bytes).unwrap();
}

/// Every record of a log, in file order.
pub fn records(dir: &Path) -> Vec<AuditRecord> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|s| read_lines(s))
        .map(|l| AuditRecord::from_line(&l).unwrap())
        .collect()
}
