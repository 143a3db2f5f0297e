//! `verify` against every kind of tampering: each is reported, at the right seq and line,
//! and an untouched log has no problem at all.

#![allow(clippy::unwrap_used)]

mod common;

use agentdb_audit::{
    line_hash, verify, AuditConfig, AuditRecord, ProblemKind, Severity, Trust, VerifyReport,
    HEAD_FILE,
};
use common::{event, only_segment, read_lines, standard_log, write_lines, Fixture};

/// Records in the standard log: `log_open`, 300 events, 6 checkpoints, the closing one
/// (after the 300th event there is already a checkpoint, so close adds none).
const N: u64 = 300;

fn setup() -> (Fixture, std::path::PathBuf, Vec<Vec<u8>>) {
    let fixture = Fixture::new();
    standard_log(&fixture, N);
    let segment = only_segment(&fixture.dir());
    let lines = read_lines(&segment);
    (fixture, segment, lines)
}

fn check(fixture: &Fixture) -> VerifyReport {
    verify(&fixture.dir(), &fixture.trust()).unwrap()
}

/// The errors as (kind, seq, line).
fn errors(report: &VerifyReport) -> Vec<(ProblemKind, Option<u64>, Option<u64>)> {
    report.errors().map(|p| (p.kind, p.seq, p.line)).collect()
}

fn seq_of(line: &[u8]) -> u64 {
    AuditRecord::from_line(line).unwrap().seq
}

fn is_checkpoint(line: &[u8]) -> bool {
    AuditRecord::from_line(line).unwrap().checkpoint.is_some()
}

/// The index of a line holding an ordinary event, with ordinary events around it.
fn plain_line(lines: &[Vec<u8>], near: usize) -> usize {
    (near..lines.len())
        .find(|&i| {
            !is_checkpoint(&lines[i])
                && !is_checkpoint(&lines[i + 1])
                && !is_checkpoint(&lines[i - 1])
        })
        .unwrap()
}

/// Replaces the first occurrence of `from` in `line` with `to` (same length).
fn replace(line: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = line.windows(from.len()).position(|w| w == from).unwrap();
    line[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn untouched_log_verifies_without_any_problem() {
    let (fixture, _, lines) = setup();
    let report = check(&fixture);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(report.is_ok());
    assert_eq!(report.records, lines.len() as u64);
    assert_eq!(report.first_seq, Some(0));
    assert_eq!(report.last_seq, Some(lines.len() as u64 - 1));
    assert_eq!(report.checkpoints, N / 50);
    // Every line is its seq's line, and the log ends with a checkpoint.
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(seq_of(line), i as u64);
    }
    assert!(is_checkpoint(lines.last().unwrap()));
}

#[test]
fn a_flipped_byte_is_reported_at_its_record() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 100);
    let mut tampered = lines.clone();
    // In the agent name: still valid JSON, a different record.
    replace(
        &mut tampered[i],
        b"\"agent\":\"agent-",
        b"\"agent\":\"agenT-",
    );
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(ProblemKind::Changed, Some(i as u64), Some(i as u64 + 1))],
        "{:#?}",
        report.problems
    );
    let problem = report.errors().next().unwrap();
    assert_eq!(
        problem.file.as_deref(),
        Some("audit-00000000000000000000.jsonl")
    );
    assert_eq!(problem.severity, Severity::Error);
}

#[test]
fn a_changed_prev_is_reported_at_its_record() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 120);
    let mut tampered = lines.clone();
    let prev = line_hash(&lines[i - 1]);
    let mut forged = prev.clone().into_bytes();
    forged[10] = if forged[10] == b'0' { b'1' } else { b'0' };
    replace(&mut tampered[i], prev.as_bytes(), &forged);
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(ProblemKind::Changed, Some(i as u64), Some(i as u64 + 1))],
        "{:#?}",
        report.problems
    );
}

#[test]
fn any_flipped_byte_of_a_record_is_detected() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 200);
    for at in 0..lines[i].len() {
        let mut tampered = lines.clone();
        tampered[i][at] ^= 0x01;
        write_lines(&segment, &tampered);
        let report = check(&fixture);
        assert!(
            !report.is_ok(),
            "flipping byte {at} of line {} went unnoticed",
            i + 1
        );
        let lines_reported: Vec<Option<u64>> = report.errors().map(|p| p.line).collect();
        assert!(
            lines_reported.contains(&Some(i as u64 + 1)),
            "byte {at}: {:#?}",
            report.problems
        );
    }
}

#[test]
fn a_dropped_record_is_reported_as_removed() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 150);
    let mut tampered = lines.clone();
    tampered.remove(i);
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    // Reported at the record after the gap, which now sits on line i + 1.
    assert_eq!(
        errors(&report),
        [(ProblemKind::Removed, Some(i as u64), Some(i as u64 + 1))],
        "{:#?}",
        report.problems
    );
}

#[test]
fn swapped_records_are_reported_as_reordered() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 120);
    let mut tampered = lines.clone();
    tampered.swap(i, i + 1);
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    // Seq i now sits on line i + 2, after seq i + 1.
    assert_eq!(
        errors(&report),
        [(ProblemKind::Reordered, Some(i as u64), Some(i as u64 + 2))],
        "{:#?}",
        report.problems
    );
}

#[test]
fn an_inserted_record_is_reported() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 200);
    // A forged record that chains correctly to record i and takes the next seq.
    let mut forged = AuditRecord::from_line(&lines[i + 1]).unwrap();
    forged.prev = line_hash(&lines[i]);
    forged.event.agent = Some("intruder".to_owned());
    let mut tampered = lines.clone();
    tampered.insert(i + 1, forged.to_line());
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(
            ProblemKind::Inserted,
            Some(i as u64 + 1),
            Some(i as u64 + 2)
        )],
        "{:#?}",
        report.problems
    );
}

#[test]
fn an_inserted_record_with_the_chain_rewritten_fails_the_next_checkpoint() {
    let (fixture, segment, lines) = setup();
    let i = plain_line(&lines, 200);
    let mut records: Vec<AuditRecord> = lines
        .iter()
        .map(|l| AuditRecord::from_line(l).unwrap())
        .collect();
    let mut forged = records[i].clone();
    forged.event.agent = Some("intruder".to_owned());
    records.insert(i + 1, forged);
    // Renumber and re-hash everything after, as someone without the hub's key can.
    let mut rewritten: Vec<Vec<u8>> = Vec::new();
    for (seq, mut record) in records.into_iter().enumerate() {
        record.seq = seq as u64;
        if let Some(seal) = &mut record.checkpoint {
            seal.seals = seq as u64 - 1;
        }
        if seq > 0 {
            record.prev = line_hash(&rewritten[seq - 1]);
        }
        rewritten.push(record.to_line());
    }
    write_lines(&segment, &rewritten);
    let report = check(&fixture);
    assert!(!report.is_ok());
    let first_checkpoint_after = (i + 2..rewritten.len())
        .find(|&j| is_checkpoint(&rewritten[j]))
        .unwrap();
    let first_error = report.errors().next().unwrap();
    assert_eq!(
        first_error.kind,
        ProblemKind::BadCheckpoint,
        "{:#?}",
        report.problems
    );
    assert_eq!(first_error.seq, Some(first_checkpoint_after as u64));
    // HEAD still names the old last record, which now hashes differently.
    assert!(report.errors().any(|p| p.kind == ProblemKind::Changed));
}

#[test]
fn a_truncated_tail_is_reported_with_or_without_the_last_checkpoint() {
    let (fixture, segment, lines) = setup();
    let last = lines.len() as u64 - 1;
    // Without the closing checkpoint.
    write_lines(&segment, &lines[..lines.len() - 1]);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(ProblemKind::TruncatedTail, Some(last), None)],
        "{:#?}",
        report.problems
    );
    // Without the last ten records.
    write_lines(&segment, &lines[..lines.len() - 10]);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(ProblemKind::TruncatedTail, Some(last - 9), None)],
        "{:#?}",
        report.problems
    );
    // Cut inside the last line.
    let mut bytes = std::fs::read(&segment).unwrap();
    let full = lines.iter().map(|l| l.len() + 1).sum::<usize>();
    write_lines(&segment, &lines);
    bytes.clear();
    bytes.extend_from_slice(&std::fs::read(&segment).unwrap()[..full - 20]);
    std::fs::write(&segment, &bytes).unwrap();
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(ProblemKind::TruncatedTail, Some(last), Some(last + 1))],
        "{:#?}",
        report.problems
    );
}

#[test]
fn truncating_unsealed_records_is_reported() {
    // A log copied while the hub runs: its tail is not sealed by a checkpoint yet, but HEAD
    // covers it.
    let fixture = Fixture::new();
    let log = fixture.open(AuditConfig::default());
    for i in 0..40 {
        log.record(event(i));
        if i == 19 {
            log.checkpoint_now().unwrap();
        }
    }
    log.flush().unwrap();
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture.dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    log.close().unwrap();

    let report = verify(copy.path(), &fixture.trust()).unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    let warnings: Vec<ProblemKind> = report.warnings().map(|p| p.kind).collect();
    assert_eq!(warnings, [ProblemKind::Unsealed]);

    let segment = only_segment(copy.path());
    let lines = read_lines(&segment);
    write_lines(&segment, &lines[..lines.len() - 2]);
    let report = verify(copy.path(), &fixture.trust()).unwrap();
    assert_eq!(
        errors(&report),
        [(
            ProblemKind::TruncatedTail,
            Some(lines.len() as u64 - 2),
            None
        )],
        "{:#?}",
        report.problems
    );
}

#[test]
fn a_missing_head_is_reported() {
    let (fixture, _, _) = setup();
    std::fs::remove_file(fixture.dir().join(HEAD_FILE)).unwrap();
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [(ProblemKind::MissingHead, None, None)],
        "{:#?}",
        report.problems
    );
}

#[test]
fn a_forged_head_is_reported() {
    let (fixture, _, _) = setup();
    let path = fixture.dir().join(HEAD_FILE);
    let head = std::fs::read_to_string(&path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&head).unwrap();
    let seq = value["seq"].as_u64().unwrap();
    // Claim an earlier record as the last one.
    let forged = head.replace(&format!("\"seq\":{seq}"), &format!("\"seq\":{}", seq - 1));
    std::fs::write(&path, forged).unwrap();
    let report = check(&fixture);
    let kinds: Vec<ProblemKind> = report.errors().map(|p| p.kind).collect();
    assert!(
        kinds.contains(&ProblemKind::BadHead),
        "{:#?}",
        report.problems
    );
}

#[test]
fn an_edited_checkpoint_signature_is_reported() {
    let (fixture, segment, lines) = setup();
    let checkpoints: Vec<usize> = (0..lines.len())
        .filter(|&i| is_checkpoint(&lines[i]))
        .collect();
    let (a, b) = (checkpoints[1], checkpoints[2]);
    // Give checkpoint a the (valid, base64) signature of checkpoint b.
    let mut record = AuditRecord::from_line(&lines[a]).unwrap();
    let other = AuditRecord::from_line(&lines[b]).unwrap();
    record.checkpoint.as_mut().unwrap().signature = other.checkpoint.unwrap().signature;
    let mut tampered = lines.clone();
    tampered[a] = record.to_line();
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [
            (
                ProblemKind::BadCheckpoint,
                Some(a as u64),
                Some(a as u64 + 1)
            ),
            (ProblemKind::Changed, Some(a as u64), Some(a as u64 + 1)),
        ],
        "{:#?}",
        report.problems
    );
}

#[test]
fn records_removed_from_the_start_are_reported() {
    let (fixture, segment, lines) = setup();
    write_lines(&segment, &lines[10..]);
    let report = check(&fixture);
    let kinds: Vec<(ProblemKind, Option<u64>)> = report.errors().map(|p| (p.kind, p.seq)).collect();
    assert!(
        kinds.contains(&(ProblemKind::RemovedStart, Some(0))),
        "{:#?}",
        report.problems
    );
}

#[test]
fn signatures_are_checked_against_the_given_certificate_and_ca() {
    let (fixture, _, _) = setup();
    let other = common::pki();
    // Another hub's certificate: nothing it signed is here.
    let report = verify(&fixture.dir(), &Trust::certificate(other.cert_der.clone())).unwrap();
    let kinds: Vec<ProblemKind> = report.errors().map(|p| p.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ProblemKind::BadCheckpoint)
            .count(),
        6
    );
    assert!(kinds.contains(&ProblemKind::BadHead));

    // The right certificate, from the right CA.
    let trust = fixture.trust().with_ca(fixture.pki.ca_der.clone());
    let report = verify(&fixture.dir(), &trust).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);

    // The right certificate, another CA.
    let trust = fixture.trust().with_ca(other.ca_der);
    let report = verify(&fixture.dir(), &trust).unwrap();
    assert_eq!(
        errors(&report),
        [(ProblemKind::UntrustedCertificate, None, None)],
        "{:#?}",
        report.problems
    );

    // The chain alone: intact, with a warning that signatures were not checked.
    let report = verify(&fixture.dir(), &Trust::chain_only()).unwrap();
    assert!(report.is_ok());
    let warnings: Vec<ProblemKind> = report.warnings().map(|p| p.kind).collect();
    assert_eq!(warnings, [ProblemKind::Unverified]);
}

#[test]
fn an_empty_directory_is_not_a_log() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.dir()).unwrap();
    let report = check(&fixture);
    assert_eq!(errors(&report), [(ProblemKind::Empty, None, None)]);
}

#[test]
fn a_log_longer_than_the_window_is_checked_in_one_pass() {
    let fixture = Fixture::new();
    standard_log(&fixture, 3 * agentdb_audit::WINDOW as u64);
    let segment = only_segment(&fixture.dir());
    let lines = read_lines(&segment);
    let report = check(&fixture);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);

    // A change early (settled long before the end), a swap and a removal later.
    let a = plain_line(&lines, 100);
    let b = plain_line(&lines, 5_000);
    let c = plain_line(&lines, 9_000);
    let mut tampered = lines.clone();
    replace(
        &mut tampered[a],
        b"\"agent\":\"agent-",
        b"\"agent\":\"agenT-",
    );
    tampered.swap(b, b + 1);
    tampered.remove(c);
    write_lines(&segment, &tampered);
    let report = check(&fixture);
    assert_eq!(
        errors(&report),
        [
            (ProblemKind::Changed, Some(a as u64), Some(a as u64 + 1)),
            (ProblemKind::Reordered, Some(b as u64), Some(b as u64 + 2)),
            (ProblemKind::Removed, Some(c as u64), Some(c as u64 + 1)),
        ],
        "{:#?}",
        report.problems
    );
}
