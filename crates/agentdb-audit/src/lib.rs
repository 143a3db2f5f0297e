//! The audit log of a Federated AgentDB hub: every authentication, operation and federation
//! link event as one record, append-only, hash-chained and sealed by signed checkpoints, so
//! that any change, removal, insertion, reordering or truncation is found by [`verify`].
//!
//! ```text
//! dir/ (0700)
//!   audit-00000000000000000000.jsonl   one JSON record per line (0600); records chain:
//!   audit-00000000000000052311.jsonl     record n's "prev" = SHA-256 of line n-1
//!   HEAD                               {"seq","hash",…,"signature"}: the last durable record
//! ```
//!
//! - [`AuditLog`]: open a directory, [`AuditLog::record`] events (cheap for the caller: a
//!   background thread numbers, chains, writes, syncs, checkpoints, rotates and prunes),
//!   [`AuditLog::close`].
//! - [`AuditEvent`] / [`AuditRecord`]: what is submitted and what is stored.
//! - [`verify`]: check a log directory against the hub's certificate (and CA).
//! - [`export`]: a tenant's records since a time, as JSON lines.
//!
//! The format and what verification proves are described in `docs/compliance.md`.

mod export;
mod log;
mod record;
mod seal;
mod segment;
mod verify;
mod writer;

pub use export::{export, parse_since, ExportError, ExportFilter, ExportSummary, SinceError};
pub use log::{AuditConfig, AuditError, AuditLog, Clock, OpenError};
pub use record::{
    line_hash, AuditEvent, AuditRecord, CheckpointSeal, Operation, Outcome, UnknownOperation,
    MAX_DETAIL_LEN, MAX_EPISODES, MAX_FIELD_LEN, ZERO_HASH,
};
pub use seal::{checkpoint_message, head_message, Head, HEAD_FILE};
pub use segment::segment_name;
pub use verify::{
    verify, Problem, ProblemKind, Severity, Trust, VerifyError, VerifyReport, MAX_PROBLEMS, WINDOW,
};
