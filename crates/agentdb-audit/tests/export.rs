//! Exporting a tenant's records since a time: the stored lines, unchanged, filtered.

#![allow(clippy::unwrap_used)]

mod common;

use agentdb_audit::{export, AuditConfig, AuditRecord, ExportFilter};
use agentdb_core::TenantId;
use common::{event, only_segment, read_lines, Fixture, START_MS};

#[test]
fn export_filters_by_tenant_and_time() {
    let fixture = Fixture::new();
    let log = fixture.open(AuditConfig::default());
    for i in 0..20 {
        log.record(event(i));
        if i == 9 {
            log.flush().unwrap();
            fixture.clock.advance_ms(10_000);
        }
    }
    log.close().unwrap();
    let stored = read_lines(&only_segment(&fixture.dir()));

    let run = |filter: ExportFilter| {
        let mut out = Vec::new();
        let summary = export(&fixture.dir(), &filter, &mut out).unwrap();
        assert_eq!(summary.malformed, 0);
        let lines: Vec<Vec<u8>> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(summary.written, lines.len() as u64);
        lines
    };

    let everything = run(ExportFilter::default());
    assert_eq!(everything, stored);

    let acme = TenantId::new("acme").unwrap();
    let lines = run(ExportFilter {
        tenant: Some(acme.clone()),
        since_ms: None,
    });
    assert_eq!(lines.len(), 10);
    for line in &lines {
        assert!(stored.contains(line), "exported lines are the stored bytes");
        let record = AuditRecord::from_line(line).unwrap();
        assert_eq!(record.event.tenant.as_ref(), Some(&acme));
    }

    let lines = run(ExportFilter {
        tenant: Some(acme),
        since_ms: Some(START_MS + 10_000),
    });
    let agents: Vec<String> = lines
        .iter()
        .map(|l| AuditRecord::from_line(l).unwrap().event.agent.unwrap())
        .collect();
    assert_eq!(
        agents,
        ["agent-10", "agent-12", "agent-14", "agent-16", "agent-18"]
    );

    let lines = run(ExportFilter {
        tenant: Some(TenantId::new("nobody").unwrap()),
        since_ms: None,
    });
    assert!(lines.is_empty());
}
