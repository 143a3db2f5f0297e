//! The tools: store, search, get, update and delete episodes, and the tenant's statistics.

use std::sync::Arc;

use agentdb_client::{AgentError, Durability, Source};
use agentdb_core::EpisodeId;
use agentdb_proto::ErrorCode;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde_json::json;

use crate::agents::Agents;
use crate::params::{IdParams, NoParams, SearchParams, StoreParams, UpdateParams, MAX_K};
use crate::render;

/// The memory tools of one tenant: an MCP server handler. Cheap to clone; clones share the
/// agents.
#[derive(Debug, Clone)]
pub struct MemoryTools {
    agents: Arc<Agents>,
    tool_router: ToolRouter<Self>,
}

impl MemoryTools {
    /// Tools working through `agents`.
    pub fn new(agents: Agents) -> Self {
        Self {
            agents: Arc::new(agents),
            tool_router: Self::tool_router(),
        }
    }

    /// The agents the tools work through (to close them at shutdown).
    pub fn agents(&self) -> &Agents {
        &self.agents
    }
}

/// Parses an episode id given as text.
fn episode_id(text: &str) -> Result<EpisodeId, CallToolResult> {
    text.trim().parse().map_err(|e: agentdb_core::IdError| {
        render::error(ErrorCode::InvalidRequest.as_str(), e.to_string())
    })
}

/// The answer of a call that ran through the agent: its value, or its error as a tool error.
fn answer(result: Result<CallToolResult, CallToolResult>) -> CallToolResult {
    result.unwrap_or_else(|e| e)
}

fn failed(e: AgentError) -> CallToolResult {
    render::agent_error(&e)
}

#[tool_router]
impl MemoryTools {
    #[tool(
        description = "Remember an episode: a task the agent did, what it was given, what it \
                       produced, how well it went (reward 0 to 1) and a critique. Returns the new \
                       episode's id. Later searches find it by meaning.",
        annotations(
            title = "Store an episode",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn store_episode(&self, Parameters(p): Parameters<StoreParams>) -> CallToolResult {
        answer(
            async {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let episode = p
                    .into_episode(agentdb_core::Timestamp(now))
                    .map_err(|m| render::error(ErrorCode::InvalidRequest.as_str(), m))?;
                let agent = self.agents.get().await.map_err(failed)?;
                let stored = agent.store(episode).await.map_err(failed)?;
                let durability = match stored.durability {
                    Durability::Acknowledged => "acknowledged",
                    _ => "spooled",
                };
                Ok(render::ok(
                    json!({ "id": stored.id.to_string(), "durability": durability }),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Search the memory for the k episodes most similar in meaning to a \
                       query, best first, optionally only those with a minimum reward, an \
                       outcome, every one of some tags, exact metadata values or a time range. \
                       Each match has the episode and its similarity score.",
        annotations(
            title = "Search memories",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn search_memories(&self, Parameters(p): Parameters<SearchParams>) -> CallToolResult {
        answer(
            async {
                if p.query.trim().is_empty() {
                    return Err(render::error(
                        ErrorCode::InvalidRequest.as_str(),
                        "query is empty: say what to look for",
                    ));
                }
                if !(1..=MAX_K).contains(&p.k) {
                    return Err(render::error(
                        ErrorCode::InvalidRequest.as_str(),
                        format!("k is {}: it must be 1 to {MAX_K}", p.k),
                    ));
                }
                let agent = self.agents.get().await.map_err(failed)?;
                let recall = agent
                    .query_filtered(&p.query, p.k as usize, p.filter())
                    .await
                    .map_err(failed)?;
                if recall.source == Source::LocalOnly {
                    return Err(render::error(
                        ErrorCode::Unavailable.as_str(),
                        "hub unreachable: the search could not reach the hub",
                    ));
                }
                let memories: Vec<_> = recall.memories.iter().map(render::memory).collect();
                Ok(render::ok(json!({ "memories": memories })))
            }
            .await,
        )
    }

    #[tool(
        description = "Read one episode by its id.",
        annotations(
            title = "Get an episode",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_episode(&self, Parameters(p): Parameters<IdParams>) -> CallToolResult {
        answer(
            async {
                let id = episode_id(&p.id)?;
                let agent = self.agents.get().await.map_err(failed)?;
                match agent.get_episode(id).await.map_err(failed)? {
                    Some(episode) => Ok(render::ok(render::episode(&episode))),
                    None => Err(render::not_found(&p.id)),
                }
            }
            .await,
        )
    }

    #[tool(
        description = "Change an episode's reward, critique, tags or metadata; fields not given \
                       keep their value. Tags and metadata replace the old ones as a whole.",
        annotations(
            title = "Update an episode",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_episode(&self, Parameters(p): Parameters<UpdateParams>) -> CallToolResult {
        answer(
            async {
                let id = episode_id(&p.id)?;
                let update = p.update();
                if update.is_empty() {
                    return Err(render::error(
                        ErrorCode::InvalidRequest.as_str(),
                        "nothing to update: give reward, critique, tags or metadata",
                    ));
                }
                let agent = self.agents.get().await.map_err(failed)?;
                if !agent.update_episode(id, update).await.map_err(failed)? {
                    return Err(render::not_found(&p.id));
                }
                Ok(render::ok(json!({ "id": id.to_string(), "updated": true })))
            }
            .await,
        )
    }

    #[tool(
        description = "Delete an episode for good, on every hub of the federation. It cannot \
                       be undone.",
        annotations(
            title = "Delete an episode",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_episode(&self, Parameters(p): Parameters<IdParams>) -> CallToolResult {
        answer(
            async {
                let id = episode_id(&p.id)?;
                let agent = self.agents.get().await.map_err(failed)?;
                if !agent.delete_episode(id).await.map_err(failed)? {
                    return Err(render::not_found(&p.id));
                }
                Ok(render::ok(json!({ "id": id.to_string(), "deleted": true })))
            }
            .await,
        )
    }

    #[tool(
        description = "The memory's numbers: live and deleted episodes, success rate, average \
                       reward, the most frequent tasks and the embedding model.",
        annotations(
            title = "Memory statistics",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn memory_stats(&self, Parameters(_): Parameters<NoParams>) -> CallToolResult {
        answer(
            async {
                let agent = self.agents.get().await.map_err(failed)?;
                let stats = agent.stats().await.map_err(failed)?;
                let value = serde_json::to_value(&stats).map_err(|e| {
                    render::error(ErrorCode::Internal.as_str(), format!("statistics: {e}"))
                })?;
                Ok(render::ok(value))
            }
            .await,
        )
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "agentdb",
    instructions = "Long-term memory of past tasks, shared by every agent of one tenant. Before \
                    a task, search_memories for similar past episodes and learn from their \
                    rewards and critiques; after it, store_episode with an honest reward (0 to \
                    1) and critique. The tenant is fixed by the server's credential."
)]
impl ServerHandler for MemoryTools {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let call = ToolCallContext::new(self, request, context);
        let response = self.tool_router.call(call).await?;
        Ok(match response {
            // Arguments that do not fit the schema come back from the router as a text error;
            // they get the same shape and code as every other error.
            CallToolResponse::Complete(r)
                if r.is_error == Some(true) && r.structured_content.is_none() =>
            {
                let text: Vec<&str> = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
                    .collect();
                render::error(ErrorCode::InvalidRequest.as_str(), text.join(" ")).into()
            }
            other => other,
        })
    }
}
