//! Checking a log directory: [`verify`] reads every segment once, in order, and reports each
//! place where the log is not what the hub wrote.
//!
//! What is checked:
//!
//! - the chain: each record's `prev` is the hash of the record with the seq before it, so a
//!   changed byte anywhere shows as a [`ProblemKind::Changed`] record (the one whose hash no
//!   longer matches what its successor, or `HEAD`, recorded);
//! - the numbering: seqs run from the first record to the last without gaps
//!   ([`ProblemKind::Removed`]), repeats ([`ProblemKind::Inserted`]: the copy the next record
//!   does not chain to) or going back ([`ProblemKind::Reordered`]);
//! - the start: a log that does not start at seq 0 must hold a `log_retention` record naming
//!   the seq before its first ([`ProblemKind::RemovedStart`]);
//! - the seals: every checkpoint's signature, by a trusted certificate (and, given a CA, one
//!   issued by it and valid when the checkpoint was signed); a chain rewritten and re-hashed
//!   from some record on fails at the first checkpoint after it;
//! - the tail: `HEAD` must be present, signed, and reached by the log
//!   ([`ProblemKind::TruncatedTail`]).
//!
//! Records after the last valid checkpoint, and records after `HEAD` (a crash between a write
//! and the HEAD update leaves some), are reported as warnings: nothing protects them yet.
//!
//! Verification streams: it keeps a window of [`WINDOW`] recent records, so a log of any
//! size is checked in constant memory; a record moved farther than that is reported as a
//! removal and an insertion rather than as a reordering.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use agentdb_security::signing::{certificate_fingerprint, verify_issued_by, verify_signature};

use crate::record::{line_hash, AuditRecord, Operation, Outcome, ZERO_HASH};
use crate::seal::{checkpoint_message, decode_signature, Head, HEAD_FILE};
use crate::segment::{list_segments, LineReader, SegmentFile};

/// How many recent records verification keeps to match repeats and reorderings.
pub const WINDOW: usize = 4096;
/// Most problems reported; past it, one last problem says how many more there were.
pub const MAX_PROBLEMS: usize = 10_000;

/// What signatures are checked against.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    certificates: Vec<Vec<u8>>,
    ca: Option<Vec<u8>>,
}

impl Trust {
    /// Trusts signatures by the hub certificate `der` (DER; see
    /// [`agentdb_security::signing::certificate_der`] for PEM).
    pub fn certificate(der: Vec<u8>) -> Self {
        Self {
            certificates: vec![der],
            ca: None,
        }
    }

    /// Also trusts signatures by `der` (the hub's earlier or later certificate).
    pub fn and_certificate(mut self, der: Vec<u8>) -> Self {
        self.certificates.push(der);
        self
    }

    /// Requires the certificates to be issued by the CA certificate `der` and valid when
    /// they signed.
    pub fn with_ca(mut self, der: Vec<u8>) -> Self {
        self.ca = Some(der);
        self
    }

    /// Checks the chain only: signatures are not checked (and a warning says so).
    pub fn chain_only() -> Self {
        Self::default()
    }
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The log is not what the hub wrote.
    Error,
    /// Not proof of tampering, but not protected either.
    Warning,
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A record's bytes are not those its successor (or `HEAD`) chained to.
    Changed,
    /// A line is not an audit record.
    Malformed,
    /// Records are missing from the middle or the end of the seq range.
    Removed,
    /// Records are missing from the start, and no `log_retention` record accounts for them.
    RemovedStart,
    /// A record repeats a seq and is not the one the chain continues from.
    Inserted,
    /// A record comes after one with a higher seq.
    Reordered,
    /// A segment's name does not match its first record.
    Misnamed,
    /// A checkpoint is malformed, unsigned, or its signature does not verify.
    BadCheckpoint,
    /// A signing certificate is not issued by the CA, or was not valid when it signed.
    UntrustedCertificate,
    /// `HEAD` names a record the log does not reach.
    TruncatedTail,
    /// `HEAD` is missing.
    MissingHead,
    /// `HEAD` is unreadable, unsigned, or its signature does not verify.
    BadHead,
    /// The log noted, when it was reopened, something found wrong (`log_repair`).
    Repaired,
    /// Records come after the record `HEAD` names.
    AfterHead,
    /// Records come after the last valid checkpoint.
    Unsealed,
    /// Signatures were not checked (no trusted certificate).
    Unverified,
    /// A segment could not be read.
    Unreadable,
    /// The directory holds no segment.
    Empty,
}

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What kind.
    pub kind: ProblemKind,
    /// The segment (file name), when it is in one.
    pub file: Option<String>,
    /// The 1-based line in that segment.
    pub line: Option<u64>,
    /// The seq concerned (for a range, its first).
    pub seq: Option<u64>,
    /// One line saying what is wrong.
    pub description: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => f.write_str("error: ")?,
            Severity::Warning => f.write_str("warning: ")?,
        }
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        f.write_str(&self.description)
    }
}

/// The result of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Records read (lines that parse).
    pub records: u64,
    /// Checkpoints whose seal verified.
    pub checkpoints: u64,
    /// The lowest seq in the log.
    pub first_seq: Option<u64>,
    /// The highest seq in the log.
    pub last_seq: Option<u64>,
    /// Every problem found, in log order (the summary ones last).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no error was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }
}

/// Why a directory could not be verified at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The directory could not be listed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Verifies the log in `dir` against `trust`.
pub fn verify(dir: &Path, trust: &Trust) -> Result<VerifyReport, VerifyError> {
    let segments = list_segments(dir).map_err(|source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut v = Verifier::new(trust, &segments);
    // HEAD is read first: a log being written is then checked against a HEAD no newer than
    // the segments read (records after it are reported as not covered, not as missing).
    v.head = load_head(dir);
    if segments.is_empty() {
        v.report(
            Severity::Error,
            ProblemKind::Empty,
            None,
            None,
            format!("no audit segment in {}", dir.display()),
        );
    }
    for (index, segment) in segments.iter().enumerate() {
        v.read_segment(index, segment, index + 1 == segments.len());
    }
    v.finish();
    Ok(v.report)
}

/// Where a line is: segment index and 1-based line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    file: usize,
    line: u64,
}

/// A record waiting in the window.
#[derive(Debug, Clone)]
struct Entry {
    hash: String,
    /// `None` for a line that did not parse.
    prev: Option<String>,
    pos: Pos,
    malformed: bool,
}

/// The last record whose place in the chain is settled.
#[derive(Debug, Clone)]
struct Settled {
    seq: u64,
    hash: String,
    pos: Pos,
    malformed: bool,
}

struct Verifier<'a> {
    trust: &'a Trust,
    names: Vec<String>,
    report: VerifyReport,
    suppressed: u64,

    window: BTreeMap<u64, Vec<Entry>>,
    window_len: usize,
    last_line_seq: Option<u64>,
    settled: Option<Settled>,
    /// The lower record of a broken link not yet attributed.
    broken: Option<(u64, Pos)>,
    first_settled: Option<u64>,

    pruned_through: Option<u64>,
    last_checkpoint: Option<u64>,
    /// For each trusted certificate: the earliest and latest time (Unix s) it signed.
    signed_times: Vec<Option<(i64, i64)>>,
    fingerprints: Vec<String>,
    unverified: bool,
    torn: Option<Pos>,

    head: HeadState,
}

enum HeadState {
    Missing,
    Unreadable(String),
    Present {
        head: Head,
        /// Whether the record `head.seq` hashed to `head.hash`, once seen.
        matched: Option<(bool, Pos)>,
    },
}

impl<'a> Verifier<'a> {
    fn new(trust: &'a Trust, segments: &[SegmentFile]) -> Self {
        Self {
            trust,
            names: segments.iter().map(SegmentFile::name).collect(),
            report: VerifyReport::default(),
            suppressed: 0,
            window: BTreeMap::new(),
            window_len: 0,
            last_line_seq: None,
            settled: None,
            broken: None,
            first_settled: None,
            pruned_through: None,
            last_checkpoint: None,
            signed_times: vec![None; trust.certificates.len()],
            fingerprints: trust
                .certificates
                .iter()
                .map(|c| certificate_fingerprint(c))
                .collect(),
            unverified: false,
            torn: None,
            head: HeadState::Missing,
        }
    }

    fn report(
        &mut self,
        severity: Severity,
        kind: ProblemKind,
        pos: Option<Pos>,
        seq: Option<u64>,
        description: String,
    ) {
        if self.report.problems.len() >= MAX_PROBLEMS {
            self.suppressed += 1;
            return;
        }
        self.report.problems.push(Problem {
            severity,
            kind,
            file: pos.and_then(|p| self.names.get(p.file).cloned()),
            line: pos.map(|p| p.line),
            seq,
            description,
        });
    }

    fn read_segment(&mut self, index: usize, segment: &SegmentFile, last: bool) {
        let mut reader = match LineReader::open(&segment.path) {
            Ok(reader) => reader,
            Err(e) => {
                let pos = Pos {
                    file: index,
                    line: 0,
                };
                self.report(
                    Severity::Error,
                    ProblemKind::Unreadable,
                    Some(pos),
                    None,
                    format!("cannot read the segment: {e}"),
                );
                return;
            }
        };
        let mut first = true;
        loop {
            let line = match reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    let pos = Pos {
                        file: index,
                        line: 0,
                    };
                    self.report(
                        Severity::Error,
                        ProblemKind::Unreadable,
                        Some(pos),
                        None,
                        format!("cannot read the segment: {e}"),
                    );
                    break;
                }
            };
            let pos = Pos {
                file: index,
                line: line.number,
            };
            if !line.complete && last {
                // Only the final line of the log may lack its newline: a crash tore it, or
                // the log was cut there. `HEAD` tells which.
                self.torn = Some(pos);
                self.report(
                    Severity::Warning,
                    ProblemKind::Malformed,
                    Some(pos),
                    None,
                    format!(
                        "the final line is incomplete ({} bytes without a newline)",
                        line.bytes.len()
                    ),
                );
                break;
            }
            let hash = line_hash(line.bytes);
            let parsed = AuditRecord::from_line(line.bytes);
            let bytes_len = line.bytes.len();
            match parsed {
                Ok(record) => {
                    if first && record.seq != segment.first_seq {
                        self.report(
                            Severity::Error,
                            ProblemKind::Misnamed,
                            Some(pos),
                            Some(record.seq),
                            format!(
                                "the segment is named for seq {} but starts at seq {}",
                                segment.first_seq, record.seq
                            ),
                        );
                    }
                    self.record(record, hash, pos);
                }
                Err(e) => {
                    let seq = self
                        .last_line_seq
                        .map_or(segment.first_seq, |s| s.saturating_add(1));
                    self.report(
                        Severity::Error,
                        ProblemKind::Malformed,
                        Some(pos),
                        Some(seq),
                        format!(
                            "not an audit record ({bytes_len} bytes): {e}; changed or corrupted"
                        ),
                    );
                    self.last_line_seq = Some(seq);
                    self.admit(
                        seq,
                        Entry {
                            hash,
                            prev: None,
                            pos,
                            malformed: true,
                        },
                    );
                }
            }
            first = false;
        }
    }

    /// Checks what a record says about itself, then admits it to the window.
    fn record(&mut self, record: AuditRecord, hash: String, pos: Pos) {
        self.report.records += 1;
        let seq = record.seq;
        if let Some(last) = self.last_line_seq {
            // A repeat of the seq just before is attributed once the next record shows which
            // copy it chains to; a step back is reported here.
            if seq < last {
                self.report(
                    Severity::Error,
                    ProblemKind::Reordered,
                    Some(pos),
                    Some(seq),
                    format!("out of order: it comes after seq {last}"),
                );
            }
        }
        self.last_line_seq = Some(seq);
        self.report.first_seq = Some(self.report.first_seq.map_or(seq, |f| f.min(seq)));
        self.report.last_seq = Some(self.report.last_seq.map_or(seq, |l| l.max(seq)));

        match record.event.operation {
            Operation::Checkpoint => self.checkpoint(&record, pos),
            Operation::LogRetention => {
                if let Some(through) = record.pruned_through {
                    self.pruned_through =
                        Some(self.pruned_through.map_or(through, |p| p.max(through)));
                }
            }
            Operation::LogRepair => {
                let severity = match record.event.outcome {
                    Outcome::Ok => Severity::Warning,
                    Outcome::Refused | Outcome::Failed => Severity::Error,
                };
                let detail = record.event.detail.clone().unwrap_or_default();
                let code = record.event.error_code.clone().unwrap_or_default();
                self.report(
                    severity,
                    ProblemKind::Repaired,
                    Some(pos),
                    Some(seq),
                    format!("the log noted on opening ({code}): {detail}"),
                );
            }
            _ => {}
        }
        self.admit(
            seq,
            Entry {
                hash,
                prev: Some(record.prev),
                pos,
                malformed: false,
            },
        );
    }

    fn checkpoint(&mut self, record: &AuditRecord, pos: Pos) {
        let seq = record.seq;
        let bad = |v: &mut Self, why: String| {
            v.report(
                Severity::Error,
                ProblemKind::BadCheckpoint,
                Some(pos),
                Some(seq),
                why,
            )
        };
        let Some(seal) = &record.checkpoint else {
            return bad(self, "a checkpoint without a seal".to_owned());
        };
        if seq == 0 || seal.seals != seq - 1 {
            return bad(
                self,
                format!(
                    "the checkpoint seals seq {} instead of the one before it",
                    seal.seals
                ),
            );
        }
        if self.trust.certificates.is_empty() {
            self.unverified = true;
            self.seal_valid(seq);
            return;
        }
        let (Some(signer), Some(signature)) = (&seal.signer, &seal.signature) else {
            return bad(self, "the checkpoint is not signed".to_owned());
        };
        let Some(index) = self.fingerprints.iter().position(|f| f == signer) else {
            return bad(
                self,
                format!("the checkpoint is signed by an untrusted certificate {signer}"),
            );
        };
        let Some(signature) = decode_signature(signature) else {
            return bad(self, "the checkpoint signature is not base64".to_owned());
        };
        let message =
            checkpoint_message(&record.hub, seq, record.time_ms, seal.seals, &record.prev);
        let cert = &self.trust.certificates[index];
        if let Err(e) = verify_signature(cert, &message, &signature) {
            return bad(
                self,
                format!("the checkpoint signature is invalid ({e}): the records it seals, or the checkpoint, were changed"),
            );
        }
        self.signed_at(index, record.time_ms);
        self.seal_valid(seq);
    }

    fn seal_valid(&mut self, seq: u64) {
        self.report.checkpoints += 1;
        self.last_checkpoint = Some(self.last_checkpoint.map_or(seq, |c| c.max(seq)));
    }

    fn signed_at(&mut self, index: usize, time_ms: u64) {
        let secs = i64::try_from(time_ms / 1000).unwrap_or(i64::MAX);
        if let Some(slot) = self.signed_times.get_mut(index) {
            *slot = Some(match *slot {
                None => (secs, secs),
                Some((lo, hi)) => (lo.min(secs), hi.max(secs)),
            });
        }
    }

    fn admit(&mut self, seq: u64, entry: Entry) {
        self.window.entry(seq).or_default().push(entry);
        self.window_len += 1;
        while self.window_len > WINDOW {
            self.settle_first();
        }
    }

    /// Settles the lowest seq in the window: which copy is genuine, gaps before it, and its
    /// link to the settled record before it.
    fn settle_first(&mut self) {
        let Some((seq, mut entries)) = self.window.pop_first() else {
            return;
        };
        self.window_len -= entries.len();
        let next_prev = match self.window.get(&(seq + 1)).map(Vec::as_slice) {
            Some([next]) => next.prev.clone(),
            _ => None,
        };
        let genuine = if entries.len() == 1 {
            0
        } else {
            let chained = next_prev
                .as_ref()
                .and_then(|p| entries.iter().position(|e| &e.hash == p));
            let keep = chained.unwrap_or(0);
            let lines: Vec<String> = entries.iter().map(|e| self.where_(e.pos)).collect();
            for (i, e) in entries.iter().enumerate() {
                if i == keep && chained.is_some() {
                    continue;
                }
                let description = if chained.is_some() {
                    format!(
                        "inserted: seq {seq} appears {} times ({}); the next record chains to {}",
                        entries.len(),
                        lines.join(", "),
                        lines[keep]
                    )
                } else {
                    format!(
                        "inserted: seq {seq} appears {} times ({}); the next record chains to none",
                        entries.len(),
                        lines.join(", ")
                    )
                };
                self.report(
                    Severity::Error,
                    ProblemKind::Inserted,
                    Some(e.pos),
                    Some(seq),
                    description,
                );
            }
            keep
        };
        let entry = entries.swap_remove(genuine);

        match self.settled.clone() {
            Some(prev) if seq <= prev.seq => {
                // A copy of a record settled long ago (farther back than the window).
                self.report(
                    Severity::Error,
                    ProblemKind::Inserted,
                    Some(entry.pos),
                    Some(seq),
                    format!(
                        "inserted: seq {seq} appears again, after seq {} (at {})",
                        prev.seq,
                        self.where_(prev.pos)
                    ),
                );
                return;
            }
            None => {
                self.first_settled = Some(seq);
                if seq == 0 && entry.prev.as_deref().is_some_and(|p| p != ZERO_HASH) {
                    self.report(
                        Severity::Error,
                        ProblemKind::Changed,
                        Some(entry.pos),
                        Some(0),
                        "the first record does not chain to the zero hash".to_owned(),
                    );
                }
            }
            Some(prev) if prev.seq + 1 == seq => match &entry.prev {
                Some(p) if *p != prev.hash => self.broken_link(&prev),
                _ => self.flush_broken(),
            },
            Some(prev) => {
                self.flush_broken();
                let (from, to) = (prev.seq + 1, seq - 1);
                let range = if from == to {
                    format!("seq {from} is missing")
                } else {
                    format!(
                        "seqs {from} to {to} ({} records) are missing",
                        to - from + 1
                    )
                };
                self.report(
                    Severity::Error,
                    ProblemKind::Removed,
                    Some(entry.pos),
                    Some(from),
                    format!("removed: {range} before this record"),
                );
            }
        }
        if let HeadState::Present { head, matched } = &mut self.head {
            if head.seq == seq {
                *matched = Some((entry.hash == head.hash, entry.pos));
            }
        }
        self.settled = Some(Settled {
            seq,
            hash: entry.hash,
            pos: entry.pos,
            malformed: entry.malformed,
        });
    }

    /// The link from `lower` to the record after it is broken. One changed record breaks the
    /// link after it; a changed `prev` breaks the link before it too, so two broken links in
    /// a row point at the record between them.
    fn broken_link(&mut self, lower: &Settled) {
        match self.broken.take() {
            Some((seq, _)) if seq + 1 == lower.seq => self.changed(
                lower.seq,
                lower.pos,
                lower.malformed,
                "its hash does not match the next record's prev",
            ),
            pending => {
                if let Some((seq, pos)) = pending {
                    self.changed(
                        seq,
                        pos,
                        false,
                        "its hash does not match the next record's prev",
                    );
                }
                self.broken = Some((lower.seq, lower.pos));
                if lower.malformed {
                    // Already reported as malformed.
                    self.broken = None;
                }
            }
        }
    }

    fn flush_broken(&mut self) {
        if let Some((seq, pos)) = self.broken.take() {
            self.changed(
                seq,
                pos,
                false,
                "its hash does not match the next record's prev",
            );
        }
    }

    fn changed(&mut self, seq: u64, pos: Pos, malformed: bool, why: &str) {
        if malformed {
            return;
        }
        self.report(
            Severity::Error,
            ProblemKind::Changed,
            Some(pos),
            Some(seq),
            format!("changed: {why}"),
        );
    }

    fn where_(&self, pos: Pos) -> String {
        format!(
            "{}:{}",
            self.names.get(pos.file).map_or("?", String::as_str),
            pos.line
        )
    }

    fn finish(&mut self) {
        while !self.window.is_empty() {
            self.settle_first();
        }
        let last = self.settled.clone();

        // The tail, against HEAD.
        match std::mem::replace(&mut self.head, HeadState::Missing) {
            HeadState::Missing => {
                self.flush_broken();
                if last.is_some() {
                    self.report(
                        Severity::Error,
                        ProblemKind::MissingHead,
                        None,
                        None,
                        format!("{HEAD_FILE} is missing: the end of the log cannot be checked"),
                    );
                }
            }
            HeadState::Unreadable(why) => {
                self.flush_broken();
                self.report(
                    Severity::Error,
                    ProblemKind::BadHead,
                    None,
                    None,
                    format!("{HEAD_FILE} is unreadable: {why}"),
                );
            }
            HeadState::Present { head, matched } => {
                self.check_head_signature(&head);
                match (&last, matched) {
                    (Some(last), _) if head.seq > last.seq => {
                        self.flush_broken();
                        let torn = self.torn.is_some();
                        self.report(
                            Severity::Error,
                            ProblemKind::TruncatedTail,
                            self.torn,
                            Some(last.seq + 1),
                            format!(
                                "truncated: HEAD names seq {} but the log ends at seq {}{}",
                                head.seq,
                                last.seq,
                                if torn { " and a cut line" } else { "" }
                            ),
                        );
                    }
                    (Some(last), Some((false, pos))) if head.seq == last.seq => {
                        // The link from the last record to HEAD is broken.
                        let lower = Settled {
                            seq: last.seq,
                            hash: last.hash.clone(),
                            pos,
                            malformed: last.malformed,
                        };
                        match self.broken.take() {
                            Some((seq, _)) if seq + 1 == lower.seq => {}
                            Some((seq, p)) => self.changed(
                                seq,
                                p,
                                false,
                                "its hash does not match the next record's prev",
                            ),
                            None => {}
                        }
                        self.changed(
                            lower.seq,
                            pos,
                            lower.malformed,
                            "its hash does not match HEAD",
                        );
                    }
                    (Some(last), matched) => {
                        self.flush_broken();
                        if let Some((false, pos)) = matched {
                            self.changed(head.seq, pos, false, "its hash does not match HEAD");
                        }
                        if head.seq < last.seq {
                            self.report(
                                Severity::Warning,
                                ProblemKind::AfterHead,
                                None,
                                Some(head.seq + 1),
                                format!(
                                    "{} records after seq {} (the record HEAD names) are not covered by HEAD",
                                    last.seq - head.seq,
                                    head.seq
                                ),
                            );
                        }
                    }
                    (None, _) => {
                        self.report(
                            Severity::Error,
                            ProblemKind::TruncatedTail,
                            None,
                            Some(0),
                            format!(
                                "truncated: HEAD names seq {} but the log has no record",
                                head.seq
                            ),
                        );
                    }
                }
            }
        }

        // The start.
        if let Some(first) = self.first_settled.filter(|f| *f > 0) {
            let accounted = self
                .pruned_through
                .is_some_and(|p| first <= p.saturating_add(1));
            if !accounted {
                self.report(
                    Severity::Error,
                    ProblemKind::RemovedStart,
                    None,
                    Some(0),
                    format!(
                        "removed: the log starts at seq {first} and no log_retention record accounts for seqs 0 to {}",
                        first - 1
                    ),
                );
            }
        }

        // The signers, against the CA.
        if let Some(ca) = &self.trust.ca {
            let checks: Vec<(usize, i64)> = self
                .signed_times
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|(lo, hi)| [(i, lo), (i, hi)]))
                .flatten()
                .collect();
            let mut failed = vec![false; self.signed_times.len()];
            for (i, at) in checks {
                if failed[i] {
                    continue;
                }
                if let Err(e) = verify_issued_by(&self.trust.certificates[i], ca, at) {
                    failed[i] = true;
                    let fp = self.fingerprints[i].clone();
                    self.report(
                        Severity::Error,
                        ProblemKind::UntrustedCertificate,
                        None,
                        None,
                        format!("the signing certificate {fp} is not trusted by the CA: {e}"),
                    );
                }
            }
        }

        // What nothing protects yet.
        if let Some(last) = &last {
            match self.last_checkpoint {
                Some(cp) if cp < last.seq => self.report(
                    Severity::Warning,
                    ProblemKind::Unsealed,
                    None,
                    Some(cp + 1),
                    format!(
                        "{} records after the last checkpoint (seq {cp}) are not sealed",
                        last.seq - cp
                    ),
                ),
                Some(_) => {}
                None => self.report(
                    Severity::Warning,
                    ProblemKind::Unsealed,
                    None,
                    None,
                    "no valid checkpoint: no record is sealed".to_owned(),
                ),
            }
        }
        if self.unverified {
            self.report(
                Severity::Warning,
                ProblemKind::Unverified,
                None,
                None,
                "no trusted certificate given: signatures were not checked".to_owned(),
            );
        }
        if self.suppressed > 0 {
            let suppressed = self.suppressed;
            self.suppressed = 0;
            self.report.problems.push(Problem {
                severity: Severity::Error,
                kind: ProblemKind::Unreadable,
                file: None,
                line: None,
                seq: None,
                description: format!("{suppressed} more problems not listed"),
            });
        }
    }

    fn check_head_signature(&mut self, head: &Head) {
        if self.trust.certificates.is_empty() {
            self.unverified = true;
            return;
        }
        let bad = |v: &mut Self, why: String| {
            v.report(
                Severity::Error,
                ProblemKind::BadHead,
                None,
                Some(head.seq),
                why,
            )
        };
        let (Some(signer), Some(signature)) = (&head.signer, &head.signature) else {
            return bad(self, format!("{HEAD_FILE} is not signed"));
        };
        let Some(index) = self.fingerprints.iter().position(|f| f == signer) else {
            return bad(
                self,
                format!("{HEAD_FILE} is signed by an untrusted certificate {signer}"),
            );
        };
        let Some(signature) = decode_signature(signature) else {
            return bad(self, format!("the {HEAD_FILE} signature is not base64"));
        };
        if let Err(e) =
            verify_signature(&self.trust.certificates[index], &head.message(), &signature)
        {
            return bad(self, format!("the {HEAD_FILE} signature is invalid: {e}"));
        }
        self.signed_at(index, head.time_ms);
    }
}

fn load_head(dir: &Path) -> HeadState {
    match std::fs::read(dir.join(HEAD_FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HeadState::Missing,
        Err(e) => HeadState::Unreadable(e.to_string()),
        Ok(bytes) => match serde_json::from_slice::<Head>(&bytes) {
            Ok(head) => HeadState::Present {
                head,
                matched: None,
            },
            Err(e) => HeadState::Unreadable(e.to_string()),
        },
    }
}
