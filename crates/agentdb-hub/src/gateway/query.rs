//! `POST /v1/query` (semantic search with filters) and `GET /v1/stats`.

use std::sync::Arc;

use agentdb_core::Embedding;
use agentdb_proto::{ErrorCode, QueryInput, QueryRequest, Request, Response};
use axum::extract::State;
use axum::Json;

use super::dto::{EpisodeOut, MatchOut, QueryBody, QueryResult, StatsOut};
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use super::{call, unexpected};
use crate::state::HubState;

/// The `k` episodes most similar to `text` (or `vector`) that pass the filter, best first.
#[utoipa::path(
    post, path = "/v1/query", tag = "memory",
    request_body = QueryBody,
    responses(
        (status = 200, body = QueryResult),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn query(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    JsonBody(body): JsonBody<QueryBody>,
) -> Result<Json<QueryResult>, ApiError> {
    let input = match (body.text, body.vector) {
        (Some(text), None) => QueryInput::Text(text),
        (None, Some(v)) => QueryInput::Vector(Embedding {
            model: v.model,
            vector: v.vector,
        }),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "give exactly one of text and vector",
            ))
        }
    };
    let request = Request::Query(QueryRequest {
        input,
        k: body.k,
        filter: body.filter.into_filter(),
    });
    match call(&state, &caller, request).await? {
        Response::Matches(m) => Ok(Json(QueryResult {
            matches: m
                .matches
                .into_iter()
                .map(|m| MatchOut {
                    score: m.score,
                    episode: EpisodeOut::from_wire(m.episode),
                })
                .collect(),
            model: m.model,
        })),
        other => Err(unexpected(&other)),
    }
}

/// The tenant's numbers: episodes, deletes, success rate, mean reward, top tasks.
#[utoipa::path(
    get, path = "/v1/stats", tag = "memory",
    responses(
        (status = 200, body = StatsOut),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn stats(
    State(state): State<Arc<HubState>>,
    caller: Caller,
) -> Result<Json<StatsOut>, ApiError> {
    match call(&state, &caller, Request::Stats).await? {
        Response::Stats(s) => Ok(Json(StatsOut::from(s))),
        other => Err(unexpected(&other)),
    }
}
