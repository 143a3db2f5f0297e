//! `agentdb audit`: check a hub's audit log and export a tenant's records from it.
//!
//! `verify` prints one line per problem (`error: <segment>:<line>: seq <n>: <what>`, or
//! `warning: …`) and ends with `ok: N records, M checkpoints` when there is no error; it
//! exits with 1 when there is one. `export` prints the stored records as JSON lines.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use agentdb_audit::{export, parse_since, verify, ExportFilter, Trust};
use agentdb_core::TenantId;
use agentdb_security::signing::certificate_der;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use crate::output;

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that a log is what the hub wrote: no record changed, removed, inserted, reordered
    /// or cut from the end, and every checkpoint signed by the hub.
    Verify(VerifyArgs),
    /// Print records as JSON lines, exactly as stored, optionally one tenant's since a time.
    Export(ExportArgs),
}

/// Arguments of `agentdb audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The audit log directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The hub certificate (PEM or DER) the checkpoints and HEAD are signed with. Repeat it
    /// for each certificate the hub has had over the log's life.
    #[arg(long, value_name = "FILE", required = true)]
    cert: Vec<PathBuf>,
    /// The CA certificate that must have issued the hub certificates; they must also have
    /// been valid when they signed.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

/// Arguments of `agentdb audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The audit log directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only this tenant's records.
    #[arg(long, value_name = "T")]
    tenant: Option<TenantId>,
    /// Only records from this time on: RFC 3339 (2025-01-31T12:00:00Z) or Unix milliseconds.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<u64>,
}

/// Runs an audit command.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify(args) => run_verify(args),
        AuditCommand::Export(args) => run_export(args),
    }
}

fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    certificate_der(&bytes).with_context(|| format!("{}", path.display()))
}

fn run_verify(args: VerifyArgs) -> anyhow::Result<()> {
    let mut certs = args.cert.iter();
    let Some(first) = certs.next() else {
        bail!("give the hub certificate with --cert");
    };
    let mut trust = Trust::certificate(read_certificate(first)?);
    for path in certs {
        trust = trust.and_certificate(read_certificate(path)?);
    }
    if let Some(ca) = &args.ca {
        trust = trust.with_ca(read_certificate(ca)?);
    }
    let report = verify(&args.dir, &trust)?;
    for problem in &report.problems {
        output::line(problem)?;
    }
    let errors = report.errors().count();
    if errors > 0 {
        bail!(
            "the audit log in {} failed verification: {errors} error(s)",
            args.dir.display()
        );
    }
    output::line(format_args!(
        "ok: {} records, {} checkpoints",
        report.records, report.checkpoints
    ))
}

fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let filter = ExportFilter {
        tenant: args.tenant,
        since_ms: args.since,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = export(&args.dir, &filter, &mut out)?;
    out.flush()?;
    if summary.malformed > 0 {
        eprintln!(
            "warning: {} lines were not audit records and were skipped; run `agentdb audit verify`",
            summary.malformed
        );
    }
    Ok(())
}
