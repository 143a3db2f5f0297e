//! An MCP (Model Context Protocol) server that gives an LLM agent one tenant's memory.
//!
//! `agentdb mcp` runs it over stdio (the default, for assistants that start their tools as
//! child processes) or streamable HTTP on a loopback address. It is a client of a hub: it holds
//! the credential it was started with (an API key or a token source) and works through a
//! succession of [`EphemeralAgent`](agentdb_client::EphemeralAgent)s, each living at most the
//! configured lifetime ([`Agents`]).
//!
//! The tenant is the credential's. No tool has a tenant argument, and every tool refuses
//! arguments it does not know, so nothing a model writes can reach another tenant's memory.
//! Every failure — a refusal by the hub, an unreachable hub, arguments that do not parse — is
//! a tool result with `isError: true` and `{"error": {"code", "message"}}`, the code one of the
//! hub's stable codes; the server itself never fails because of a call.
//!
//! ```no_run
//! # async fn demo(config: agentdb_client::AgentConfig) -> std::io::Result<()> {
//! let tools = agentdb_mcp::MemoryTools::new(agentdb_mcp::Agents::new(config));
//! agentdb_mcp::serve_stdio(tools).await
//! # }
//! ```

mod agents;
mod params;
mod render;
mod serve;
mod tools;

pub use agents::{Agents, RENEW_BEFORE};
pub use serve::{serve_http, serve_stdio, MCP_PATH};
pub use tools::MemoryTools;
