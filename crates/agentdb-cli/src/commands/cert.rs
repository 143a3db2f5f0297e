//! `agentdb cert`: issue hub and agent certificates from the CA made by `agentdb ca init`.

use std::path::PathBuf;
use std::time::Duration;

use agentdb_core::{AgentId, HubId, Region, TenantId};
use agentdb_security::ca::{CertificateAuthority, HostName, Subject};
use anyhow::{bail, Context as _};
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use time::OffsetDateTime;

use super::ca::{days, rfc3339};
use crate::output;

/// Certificate commands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate and key for a hub (--hub) or an agent (--agent with --tenant).
    ///
    /// Writes OUT/NAME.pem and OUT/NAME.key (mode 0600), where NAME is the hub name, the
    /// agent id, or tenant-T for a tenant-wide certificate (--agent '*').
    Issue(IssueArgs),
}

/// Arguments of `agentdb cert issue`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("holder").required(true).args(["hub", "agent"])))]
pub struct IssueArgs {
    /// Directory holding ca.pem and ca.key.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Directory to write the certificate and key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Issue a hub certificate (TLS server and client) for this hub name.
    #[arg(long, value_name = "NAME", conflicts_with = "tenant")]
    hub: Option<HubId>,
    /// Issue a client certificate for this agent id; '*' issues a tenant-wide certificate.
    #[arg(long, value_name = "ID", requires = "tenant")]
    agent: Option<String>,
    /// The agent's tenant.
    #[arg(long, value_name = "T")]
    tenant: Option<TenantId>,
    /// DNS name or IP address the hub is reached at (repeatable). Default: localhost,
    /// 127.0.0.1 and ::1.
    #[arg(long, value_name = "HOST_OR_IP", conflicts_with = "agent")]
    san: Vec<HostName>,
    /// The region the hub serves (e.g. eu), bound into its certificate: federated hubs close
    /// a link whose Hello claims another region, and the hub does not start configured for
    /// another.
    #[arg(long, value_name = "REGION", requires = "hub")]
    region: Option<Region>,
    /// Lifetime in days (default: 90 for hubs, 1 for agents).
    #[arg(long, value_name = "N", conflicts_with = "hours")]
    days: Option<u64>,
    /// Lifetime in hours (default: 24 for agents).
    #[arg(long, value_name = "N")]
    hours: Option<u64>,
    /// Replace existing certificate and key files.
    #[arg(long)]
    force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct IssueReport {
    spiffe_id: String,
    cert: PathBuf,
    key: PathBuf,
    not_after: String,
}

/// Runs a `cert` subcommand.
pub fn run(cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Issue(args) => issue(args),
    }
}

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let subject = subject(&args)?;
    let validity = match (args.days, args.hours) {
        (Some(d), _) => days(d)?,
        (None, Some(0)) => bail!("--hours must be at least 1"),
        (None, Some(h)) => h
            .checked_mul(3600)
            .map(Duration::from_secs)
            .context("--hours is too large")?,
        (None, None) => subject.default_validity(),
    };
    let ca = CertificateAuthority::load(&args.ca)
        .with_context(|| format!("cannot load the CA from {}", args.ca.display()))?;
    let issued = ca
        .issue(&subject, validity, OffsetDateTime::now_utc())
        .context("cannot issue the certificate")?;
    let (cert, key) = issued
        .save(&args.out, args.force)
        .context("cannot write the certificate (pass --force to replace existing files)")?;
    let report = IssueReport {
        spiffe_id: issued.identity().spiffe_uri(),
        cert,
        key,
        not_after: rfc3339(issued.not_after()),
    };
    if args.json {
        return output::json(&report);
    }
    output::line(format_args!(
        "issued {} -> {} (key {}); valid until {}",
        report.spiffe_id,
        report.cert.display(),
        report.key.display(),
        report.not_after
    ))
}

fn subject(args: &IssueArgs) -> anyhow::Result<Subject> {
    if let Some(hub) = &args.hub {
        let hosts = if args.san.is_empty() {
            HostName::defaults()
        } else {
            args.san.clone()
        };
        return Ok(Subject::Hub {
            hub: hub.clone(),
            hosts,
            region: args.region.clone(),
        });
    }
    let (Some(agent), Some(tenant)) = (&args.agent, &args.tenant) else {
        bail!("pass --hub NAME, or --agent ID with --tenant T");
    };
    if agent == "*" {
        return Ok(Subject::Tenant {
            tenant: tenant.clone(),
        });
    }
    let agent = AgentId::new(agent.as_str()).context("invalid --agent")?;
    Ok(Subject::Agent {
        tenant: tenant.clone(),
        agent,
    })
}
