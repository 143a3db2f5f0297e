//! `agentdb mcp`: an MCP server giving an LLM agent one tenant's memory through a hub.
//!
//! It connects like `agentdb agent` (`--hub`, `--ca`/`--cert`/`--key` or `--dev`, and a token
//! source, `--api-key` first) and serves the memory tools over stdio, or over streamable HTTP
//! at `--http ADDR` (a loopback address; the path is `/mcp`). The tenant is fixed here, by the
//! operator, and must be the credential's: no tool takes a tenant.

use std::net::SocketAddr;
use std::time::Duration;

use agentdb_core::TenantId;
use agentdb_mcp::{Agents, MemoryTools, MCP_PATH};
use anyhow::{bail, Context as _};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::agent::{agent_config, ConnectArgs};
use crate::output;

/// Environment variable naming the tenant of `agentdb mcp`.
pub const TENANT_ENV: &str = "AGENTDB_TENANT";

/// Arguments of `agentdb mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The tenant whose memory the tools use; the credential must be for it.
    #[arg(long, env = TENANT_ENV)]
    tenant: TenantId,
    /// Serve streamable HTTP on ADDR (loopback only, e.g. 127.0.0.1:8765; port 0 picks one),
    /// at /mcp, instead of stdio. The first line on stdout says where.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Seconds each agent lives; a fresh one (with a fresh token) replaces it 30 s before the
    /// end.
    #[arg(long, value_name = "SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(60..=86_400))]
    lifetime: u64,
}

/// Runs the MCP server until stdin closes (stdio) or a termination signal (both).
pub fn run(mut args: McpArgs) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    args.connect.resolve_hub(&env)?;
    if let Some(addr) = args.http {
        if !addr.ip().is_loopback() {
            bail!(
                "--http {addr}: the MCP server acts with its credential for whoever reaches it, \
                 so it listens on loopback addresses only (127.0.0.1, ::1)"
            );
        }
    }
    let config =
        agent_config(&args.connect, &args.tenant)?.lifetime(Duration::from_secs(args.lifetime));
    super::runtime()?.block_on(serve(args, config))
}

async fn serve(args: McpArgs, config: agentdb_client::AgentConfig) -> anyhow::Result<()> {
    let tools = MemoryTools::new(Agents::new(config));
    // A credential the hub refuses is a configuration error: say so now, not at the first call.
    // An unreachable hub is not; the tools answer `unavailable` until it is back.
    match tools.agents().get().await {
        Ok(agent) => {
            if agent.welcome().is_none() {
                tracing::warn!(hub = %args.connect.hub, "hub unreachable; serving anyway");
            }
        }
        Err(e) => return Err(e).context("cannot start an agent"),
    }
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = super::hub::shutdown_signal().await {
            tracing::warn!(error = %e, "cannot listen for shutdown signals");
            return;
        }
        on_signal.cancel();
    });
    match args.http {
        None => {
            tokio::select! {
                served = agentdb_mcp::serve_stdio(tools.clone()) => {
                    served.context("MCP over stdio")?;
                }
                () = shutdown.cancelled() => tools.agents().close().await,
            }
        }
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener
                .local_addr()
                .context("cannot read the bound address")?;
            output::line(format_args!(
                "agentdb mcp listening http://{local}{MCP_PATH}"
            ))?;
            agentdb_mcp::serve_http(tools, listener, shutdown)
                .await
                .context("MCP over HTTP")?;
        }
    }
    Ok(())
}
