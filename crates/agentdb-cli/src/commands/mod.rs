//! One module per top-level subcommand.

pub mod admin;
pub mod agent;
pub mod audit;
pub mod ca;
pub mod cert;
pub mod demo;
pub mod federation;
pub mod hub;
pub mod local;
pub mod mcp;
pub mod reindex;
pub mod revoke;
pub mod tenant;
pub mod tenant_erase;
pub mod tenant_keys;
pub mod token;

/// The tokio runtime of the commands that talk over the network (`hub`, `agent`, `demo`).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `agentdb openapi`: the gateway's OpenAPI document as JSON on stdout.
pub fn print_openapi() -> anyhow::Result<()> {
    crate::output::json(agentdb_hub::openapi())
}
