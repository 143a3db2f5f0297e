//! `agentdb`: the command-line tool for Federated AgentDB.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use agentdb_cli::commands;
use clap::{Parser, Subcommand};

/// Federated AgentDB: secure, federated, persistent memory for short-lived agents.
#[derive(Debug, Parser)]
#[command(name = "agentdb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a hub: QUIC with mutual TLS for agents, admin HTTP for operators.
    Hub(commands::hub::HubArgs),
    /// Spawn a short-lived agent that stores or queries through a hub, then destroy it.
    #[command(subcommand)]
    Agent(Box<commands::agent::AgentCommand>),
    /// Run a hub and agents of two tenants in this process and show what they remember.
    Demo(commands::demo::DemoArgs),
    /// Use an embedded memory store directly, with no hub.
    Local(commands::local::LocalArgs),
    /// Re-embed stored episodes with the configured embedder (after switching models).
    Reindex(commands::reindex::ReindexArgs),
    /// Inspect a hub's links to other hubs.
    #[command(subcommand)]
    Federation(commands::federation::FederationCommand),
    /// Manage a tenant's API keys through a hub's admin HTTP.
    #[command(subcommand)]
    Tenant(commands::tenant::TenantCommand),
    /// Revoke a token, an agent, an API key or a certificate on a running hub and its
    /// federation.
    #[command(subcommand)]
    Revoke(commands::revoke::RevokeCommand),
    /// Hub-wide operations on a running hub (operator token): master-key rewrap.
    #[command(subcommand)]
    Admin(commands::admin::AdminCommand),
    /// Manage the deployment's certificate authority.
    #[command(subcommand)]
    Ca(commands::ca::CaCommand),
    /// Issue certificates for hubs and agents.
    #[command(subcommand)]
    Cert(commands::cert::CertCommand),
    /// Create signing keys and issue or verify tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Serve one tenant's memory to an LLM agent as MCP tools (stdio, or streamable HTTP).
    Mcp(Box<commands::mcp::McpArgs>),
    /// Print the OpenAPI document of the hub's HTTPS gateway (docs/http.md).
    Openapi,
    /// Check a hub's audit log, or export a tenant's records from it.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                err.exit();
            }
            // Usage errors are one line too (the message without clap's usage and tip
            // paragraphs); `--help` has the details.
            let text = err.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            eprintln!("{}", message.join(" "));
            return ExitCode::from(2);
        }
    };
    // Logs go to stderr, filtered by AGENTDB_LOG (e.g. `debug`, `agentdb_hub=trace`). A hub
    // logs its own events at info by default; one-shot commands only report errors, which they
    // print themselves as one line.
    let default_filter = match cli.command {
        Command::Hub(_) => "warn,agentdb=info,agentdb_hub=info",
        Command::Agent(_) | Command::Demo(_) => "error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Hub(args) => commands::hub::run(args),
        Command::Agent(cmd) => commands::agent::run(*cmd),
        Command::Demo(args) => commands::demo::run(args),
        Command::Local(args) => commands::local::run(args),
        Command::Reindex(args) => commands::reindex::run(args),
        Command::Ca(cmd) => commands::ca::run(cmd),
        Command::Cert(cmd) => commands::cert::run(cmd),
        Command::Token(cmd) => commands::token::run(cmd),
        Command::Federation(cmd) => commands::federation::run(cmd),
        Command::Tenant(cmd) => commands::tenant::run(cmd),
        Command::Admin(cmd) => commands::admin::run(cmd),
        Command::Mcp(args) => commands::mcp::run(*args),
        Command::Openapi => commands::print_openapi(),
        Command::Audit(cmd) => commands::audit::run(cmd),
        Command::Revoke(cmd) => commands::revoke::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, joined.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
