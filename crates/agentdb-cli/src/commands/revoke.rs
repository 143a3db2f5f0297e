//! `agentdb revoke token|agent|api-key|cert|list`: operators' revocations through a running
//! hub's admin HTTP (operator scope). A revocation takes effect at once on that hub, is kept
//! across restarts, and travels to every federated hub.

use std::path::PathBuf;

use agentdb_core::{AgentId, TenantId};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::json;

use super::federation::OperatorArgs;
use crate::admin_http::{self, Method};
use crate::output;

/// `agentdb revoke …`.
#[derive(Debug, Subcommand)]
pub enum RevokeCommand {
    /// Revoke one token by its id (`jti`, as `agentdb token verify` shows it).
    Token(TokenArgs),
    /// Revoke every token an agent of a tenant holds now (its sessions end at their next
    /// request; tokens issued later are not affected).
    Agent(AgentArgs),
    /// Revoke a tenant's API key: it yields no token any more.
    ApiKey(ApiKeyArgs),
    /// Revoke a client or hub certificate, by serial number or from its file: no connection
    /// presenting it is served.
    Cert(CertArgs),
    /// List the revocations the hub keeps.
    List(ListArgs),
}

/// Arguments of `agentdb revoke token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token id.
    #[arg(long)]
    jti: String,
    /// When the token expires (Unix seconds); the revocation lasts until then [default: one
    /// day from now].
    #[arg(long, value_name = "UNIX_SECS")]
    expires: Option<u64>,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// Arguments of `agentdb revoke agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The tenant.
    #[arg(long, value_name = "T")]
    tenant: TenantId,
    /// The agent.
    #[arg(long, value_name = "ID")]
    agent: AgentId,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// Arguments of `agentdb revoke api-key`.
#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    /// The tenant.
    #[arg(long, value_name = "T")]
    tenant: TenantId,
    /// The key's id (16 hex characters, as `agentdb tenant key list` shows).
    #[arg(long, value_name = "ID")]
    id: String,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// Arguments of `agentdb revoke cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// The certificate's serial number (hex; colons allowed).
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    serial: Option<String>,
    /// The certificate (PEM): its serial number is read from it.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    operator: OperatorArgs,
}

/// Arguments of `agentdb revoke list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `agentdb revoke …`.
pub fn run(command: RevokeCommand) -> anyhow::Result<()> {
    let (operator, body) = match command {
        RevokeCommand::List(args) => return list(&args),
        RevokeCommand::Token(a) => (
            a.operator,
            json!({ "kind": "token", "jti": a.jti, "expires": a.expires }),
        ),
        RevokeCommand::Agent(a) => (
            a.operator,
            json!({ "kind": "agent", "tenant": a.tenant, "agent": a.agent }),
        ),
        RevokeCommand::ApiKey(a) => (
            a.operator,
            json!({ "kind": "api_key", "tenant": a.tenant, "id": a.id.trim() }),
        ),
        RevokeCommand::Cert(a) => {
            let serial = match (a.serial, a.file) {
                (Some(serial), _) => serial,
                (None, Some(file)) => {
                    let pem = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let der = agentdb_security::signing::certificate_der(&pem)
                        .with_context(|| format!("{} holds no certificate", file.display()))?;
                    agentdb_security::identity::certificate_serial(&der)?
                }
                (None, None) => bail!("give --serial HEX or --file CERT"),
            };
            (
                a.operator,
                json!({ "kind": "certificate", "serial": serial }),
            )
        }
    };
    let answer: serde_json::Value = admin_http::call(
        &operator.http,
        &operator.token()?,
        Method::Post,
        "/v1/revocations",
        Some(&body),
    )?;
    output::line(format_args!(
        "revoked {}",
        answer["name"]
            .as_str()
            .unwrap_or("?")
            .trim_start_matches("revocation/")
    ))
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let operator = &args.operator;
    let answer: serde_json::Value = admin_http::call(
        &operator.http,
        &operator.token()?,
        Method::Get,
        "/v1/revocations",
        None,
    )?;
    if args.json {
        return output::json(&answer);
    }
    let revocations = answer["revocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if revocations.is_empty() {
        return output::line("no revocations");
    }
    for r in &revocations {
        output::line(format_args!(
            "{} issued by {} at {}",
            r["revoked"],
            r["issued_by"].as_str().unwrap_or("?"),
            r["issued_ms"]
        ))?;
    }
    Ok(())
}
