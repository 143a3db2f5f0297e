//! Reading records back: a tenant's records since a time, as the JSON lines the log holds.
//!
//! Exported lines are the stored bytes, unchanged, so each exported record still hashes to
//! the `prev` of its successor in the full log: an auditor holding the full log (or its
//! checkpoints) can check that an export is genuine.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agentdb_core::TenantId;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::record::AuditRecord;
use crate::segment::{list_segments, LineReader};

/// Which records to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Only records of this tenant (records without a tenant, such as checkpoints and
    /// federation events, are left out).
    pub tenant: Option<TenantId>,
    /// Only records at or after this time, in Unix milliseconds.
    pub since_ms: Option<u64>,
}

impl ExportFilter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|t| record.event.tenant.as_ref() == Some(t))
            && self.since_ms.is_none_or(|since| record.time_ms >= since)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records written.
    pub written: u64,
    /// Lines that were not audit records and were skipped (`agentdb audit verify` says
    /// more).
    pub malformed: u64,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A segment or the directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The output could not be written.
    #[error("cannot write the export: {0}")]
    Write(io::Error),
}

/// Writes the records of the log in `dir` that pass `filter` to `out`, one JSON line each,
/// in log order.
pub fn export(
    dir: &Path,
    filter: &ExportFilter,
    out: &mut dyn Write,
) -> Result<ExportSummary, ExportError> {
    let read = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Read { path, source }
    };
    let mut summary = ExportSummary::default();
    for segment in list_segments(dir).map_err(read(dir))? {
        let mut reader = LineReader::open(&segment.path).map_err(read(&segment.path))?;
        while let Some(line) = reader.next_line().map_err(read(&segment.path))? {
            match AuditRecord::from_line(line.bytes) {
                Ok(record) if filter.matches(&record) => {
                    out.write_all(line.bytes).map_err(ExportError::Write)?;
                    out.write_all(b"\n").map_err(ExportError::Write)?;
                    summary.written += 1;
                }
                Ok(_) => {}
                Err(_) => summary.malformed += 1,
            }
        }
    }
    out.flush().map_err(ExportError::Write)?;
    Ok(summary)
}

/// A `--since` value: Unix milliseconds (digits only) or an RFC 3339 time
/// (`2025-01-31T12:00:00Z`), as Unix milliseconds.
pub fn parse_since(s: &str) -> Result<u64, SinceError> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| SinceError(s.to_owned()));
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| SinceError(s.to_owned()))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| SinceError(s.to_owned()))
}

/// A time that is neither Unix milliseconds nor RFC 3339 (or is before 1970).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time: give Unix milliseconds or RFC 3339 (2025-01-31T12:00:00Z)")]
pub struct SinceError(pub String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn since_accepts_unix_ms_and_rfc3339() {
        assert_eq!(parse_since("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_since("2023-11-14T23:13:20.5+01:00").unwrap(),
            1_700_000_000_500
        );
        for bad in ["", "yesterday", "1969-12-31T23:59:59Z", "-5"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
