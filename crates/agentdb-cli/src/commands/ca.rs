//! `agentdb ca`: create the deployment's certificate authority.

use std::path::PathBuf;
use std::time::Duration;

use agentdb_security::ca::{CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE};
use agentdb_security::identity::TrustDomain;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::output;

/// Certificate authority commands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA: writes DIR/ca.pem and DIR/ca.key (mode 0600).
    Init(InitArgs),
}

/// Arguments of `agentdb ca init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write ca.pem and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// SPIFFE trust domain of the deployment; recorded in the CA certificate as
    /// spiffe://<domain>.
    #[arg(long, value_name = "NAME", default_value = TrustDomain::DEFAULT)]
    trust_domain: TrustDomain,
    /// Lifetime of the CA certificate in days.
    #[arg(long, value_name = "N", default_value_t = 3650)]
    days: u64,
    /// Replace an existing CA in DIR. Certificates issued by the old CA stop verifying.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct InitReport {
    trust_domain: String,
    cert: PathBuf,
    key: PathBuf,
    not_after: String,
}

/// Runs a `ca` subcommand.
pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    if !args.force && CertificateAuthority::exists_in(&args.out) {
        bail!(
            "a CA already exists in {} (pass --force to replace it)",
            args.out.display()
        );
    }
    let validity = days(args.days)?;
    let ca = CertificateAuthority::generate(
        args.trust_domain.clone(),
        validity,
        OffsetDateTime::now_utc(),
    )
    .context("cannot create the CA")?;
    let (cert, key) = ca
        .save(&args.out, args.force)
        .context("cannot write the CA")?;
    let report = InitReport {
        trust_domain: ca.trust_domain().to_string(),
        cert,
        key,
        not_after: rfc3339(ca.not_after()),
    };
    if args.json {
        return output::json(&report);
    }
    output::line(format_args!(
        "created CA for trust domain {} in {} ({CA_CERT_FILE}, {CA_KEY_FILE}); valid until {}",
        report.trust_domain,
        args.out.display(),
        report.not_after
    ))
}

/// Converts a number of days from the command line into a duration.
pub(crate) fn days(days: u64) -> anyhow::Result<Duration> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    days.checked_mul(24 * 3600)
        .map(Duration::from_secs)
        .context("--days is too large")
}

/// Formats a time as RFC 3339, falling back to Unix seconds.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
