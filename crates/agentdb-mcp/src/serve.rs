//! The two transports: stdio, and streamable HTTP on a loopback address.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::tools::MemoryTools;

/// Where the streamable HTTP transport answers.
pub const MCP_PATH: &str = "/mcp";

/// Serves `tools` on stdin and stdout until the client closes stdin, then ends the agent.
pub async fn serve_stdio(tools: MemoryTools) -> std::io::Result<()> {
    let running = tools
        .clone()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    let waited = running.waiting().await;
    tools.agents().close().await;
    waited.map(drop).map_err(std::io::Error::other)
}

/// Serves `tools` over streamable HTTP at [`MCP_PATH`] on `listener` until `shutdown` is
/// cancelled, then ends the agent. Only requests whose `Host` is a loopback name are answered
/// (against DNS rebinding); the caller binds a loopback address, since whoever reaches the
/// server acts with its credential.
pub async fn serve_http(
    tools: MemoryTools,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    let handler = tools.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service(MCP_PATH, service);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    tools.agents().close().await;
    served
}
