//! `agentdb`: the command-line tool for Federated AgentDB.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod output;

/// Federated AgentDB: secure, federated, persistent memory for short-lived agents.
#[derive(Debug, Parser)]
#[command(name = "agentdb", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Use an embedded memory store directly, with no hub.
    Local(commands::local::LocalArgs),
    /// Manage the deployment's certificate authority.
    #[command(subcommand)]
    Ca(commands::ca::CaCommand),
    /// Issue certificates for hubs and agents.
    #[command(subcommand)]
    Cert(commands::cert::CertCommand),
    /// Create signing keys and issue or verify tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Local(args) => commands::local::run(args),
        Command::Ca(cmd) => commands::ca::run(cmd),
        Command::Cert(cmd) => commands::cert::run(cmd),
        Command::Token(cmd) => commands::token::run(cmd),
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
