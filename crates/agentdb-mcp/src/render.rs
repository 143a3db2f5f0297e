//! What the tools answer: JSON a model reads (structured content, and the same JSON as text),
//! and errors as tool results with a stable code.

use agentdb_client::{AgentError, Memory};
use agentdb_core::Episode;
use agentdb_proto::ErrorCode;
use rmcp::model::CallToolResult;
use serde_json::{json, Value};

/// A successful answer.
pub(crate) fn ok(value: Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// A failed call: `{"error": {"code", "message"}}` with `isError: true`.
pub(crate) fn error(code: &str, message: impl Into<String>) -> CallToolResult {
    let message: String = message.into();
    // One line, whatever the cause chain said.
    let message = message.lines().collect::<Vec<_>>().join(" ");
    CallToolResult::structured_error(json!({ "error": { "code": code, "message": message } }))
}

/// An agent's failure as a tool error, coded with the hub's stable codes.
pub(crate) fn agent_error(e: &AgentError) -> CallToolResult {
    let code = match e {
        AgentError::Rejected { code, .. } => *code,
        AgentError::InvalidEpisode(_) => ErrorCode::InvalidRequest,
        AgentError::HubUnreachable(_) => ErrorCode::Unavailable,
        AgentError::Token(_) => ErrorCode::Unauthenticated,
        AgentError::AgentExpired => ErrorCode::AgentExpired,
        _ => ErrorCode::Internal,
    };
    error(code.as_str(), e.to_string())
}

/// No live episode with this id for the tenant.
pub(crate) fn not_found(id: &str) -> CallToolResult {
    error(
        ErrorCode::NotFound.as_str(),
        format!("no episode {id} (or it was deleted)"),
    )
}

/// An episode as the tools show it: what a model needs to use a memory, without the
/// bookkeeping (agent, session, origin hub, model) the HTTPS gateway also returns.
pub(crate) fn episode(e: &Episode) -> Value {
    json!({
        "id": e.id.to_string(),
        "task": e.task,
        "input": e.input,
        "output": e.output,
        "reward": e.reward,
        "success": e.success,
        "critique": e.critique,
        "tags": e.tags,
        "metadata": e.metadata,
        "created_ms": e.created.unix_ms(),
    })
}

/// A search match: the episode and its similarity to the query.
pub(crate) fn memory(m: &Memory) -> Value {
    let mut value = episode(&m.episode);
    value["score"] = json!(m.score);
    value
}
