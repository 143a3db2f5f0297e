//! `agentdb admin …`: hub-wide operations through a running hub's admin HTTP, with an operator
//! token.
//!
//! `rewrap-master-key` has the hub generate a new master key, re-wrap every tenant key and its
//! store secret under it, and replace its key file with it; the old key opens nothing any
//! more. A hub whose master key comes from AGENTDB_MASTER_KEY refuses (it could not keep the
//! new key), and changes nothing.

use clap::{Args, Subcommand};

use super::federation::OperatorArgs;
use crate::admin_http::{self, Method};
use crate::output;

/// `agentdb admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Re-wrap every key of the hub's store under a new master key, kept in the hub's key
    /// file (the old key stops opening the store).
    RewrapMasterKey(RewrapArgs),
}

/// Arguments of `agentdb admin rewrap-master-key`.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// Print the hub's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `agentdb admin …`.
pub fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::RewrapMasterKey(args) => rewrap(args),
    }
}

fn rewrap(args: RewrapArgs) -> anyhow::Result<()> {
    let answer: serde_json::Value = admin_http::call(
        &args.operator.http,
        &args.operator.token()?,
        Method::Post,
        "/v1/admin/rewrap-master-key",
        None,
    )?;
    if args.json {
        return output::json(&answer);
    }
    output::line(format_args!(
        "master key rewrapped; the hub keeps the new key in its key file (check {})",
        answer["check"].as_str().unwrap_or("?")
    ))
}
