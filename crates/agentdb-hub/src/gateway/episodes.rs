//! `/v1/episodes`: store one or a batch, read, change, delete and list a tenant's episodes.
//! Each handler translates JSON into the request the QUIC session carries and runs it through
//! [`crate::ops::execute`]; the tenant is the token's.

// utoipa's path macro names the parameter types fully in the code it generates beside each
// handler.
#![allow(unused_qualifications)]

use std::sync::Arc;

use agentdb_core::{EpisodeId, NewEpisode, Timestamp};
use agentdb_proto::{
    DeleteRequest, ErrorCode, GetRequest, ListRequest, Request, Response, StoreRequest,
    UpdateRequest,
};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::{
    EpisodeBatch, EpisodeIn, EpisodeOut, EpisodePage, EpisodePatch, StoreBody, StoreResult,
    StoredId,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{parse_value, Caller, JsonBody};
use super::{call, unexpected};
use crate::state::{unix_ms, HubState};

/// Most episodes one list page returns.
pub(crate) const MAX_LIST: u32 = 1000;
/// Episodes per list page unless `limit` says otherwise.
const DEFAULT_LIST: u32 = 100;

/// Stores one episode, or a batch given as `{"episodes": [...]}` (all or nothing).
#[utoipa::path(
    post, path = "/v1/episodes", tag = "episodes",
    request_body(content = StoreBody, description = "One episode, or {\"episodes\": [...]}"),
    responses(
        (status = 201, description = "At least one episode was new", body = StoreResult),
        (status = 200, description = "Every id existed already; nothing was written", body = StoreResult),
        (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn store(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<(StatusCode, Json<StoreResult>), ApiError> {
    let episodes: Vec<EpisodeIn> = match &body {
        serde_json::Value::Object(fields) if fields.contains_key("episodes") => {
            parse_value::<EpisodeBatch>(body)?.episodes
        }
        _ => vec![parse_value::<EpisodeIn>(body)?],
    };
    if episodes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "a batch needs at least one episode",
        ));
    }
    let now = Timestamp(unix_ms());
    let episodes: Vec<NewEpisode> = episodes
        .into_iter()
        .map(|e| {
            let id = e.id.unwrap_or_else(|| agentdb_memory::mint_episode_id(now));
            e.into_new(id, now)
                .map_err(|message| ApiError::new(ErrorCode::InvalidRequest, message))
        })
        .collect::<Result<_, _>>()?;
    let request = Request::Store(StoreRequest::from_episodes(episodes));
    match call(&state, &caller, request).await? {
        Response::Stored(stored) => {
            let status = if stored.results.iter().any(|s| s.inserted) {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let results = stored
                .results
                .into_iter()
                .map(|s| StoredId {
                    id: s.id,
                    inserted: s.inserted,
                })
                .collect();
            Ok((status, Json(StoreResult { results })))
        }
        other => Err(unexpected(&other)),
    }
}

/// The id in the path; one that cannot exist answers 404, like one that does not.
fn episode_id(path: Result<Path<String>, PathRejection>) -> Result<EpisodeId, ApiError> {
    path.ok()
        .and_then(|Path(id)| id.parse::<EpisodeId>().ok())
        .ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such episode")
}

/// One episode. Another tenant's id answers 404, exactly as an id that does not exist.
#[utoipa::path(
    get, path = "/v1/episodes/{id}", tag = "episodes",
    params(("id" = String, Path, description = "The episode's id")),
    responses(
        (status = 200, body = EpisodeOut),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EpisodeOut>, ApiError> {
    let id = episode_id(path)?;
    read(&state, &caller, id).await.map(Json)
}

async fn read(
    state: &Arc<HubState>,
    caller: &Caller,
    id: EpisodeId,
) -> Result<EpisodeOut, ApiError> {
    match call(state, caller, Request::Get(GetRequest { id })).await? {
        Response::Episode(Some(e)) => Ok(EpisodeOut::from_wire(e)),
        Response::Episode(None) => Err(not_found()),
        other => Err(unexpected(&other)),
    }
}

/// Changes an episode's reward, critique, tags or metadata (last writer wins across hubs) and
/// answers with the episode as it is now.
#[utoipa::path(
    patch, path = "/v1/episodes/{id}", tag = "episodes",
    params(("id" = String, Path, description = "The episode's id")),
    request_body = EpisodePatch,
    responses(
        (status = 200, body = EpisodeOut),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn patch(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<EpisodePatch>,
) -> Result<Json<EpisodeOut>, ApiError> {
    let id = episode_id(path)?;
    let update = body.into_update();
    if update.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "nothing to change: give reward, critique, tags or metadata",
        ));
    }
    let request = Request::Update(UpdateRequest { id, update });
    match call(&state, &caller, request).await? {
        Response::Done { found: true } => read(&state, &caller, id).await.map(Json),
        Response::Done { found: false } => Err(not_found()),
        other => Err(unexpected(&other)),
    }
}

/// Deletes an episode; the delete wins over any concurrent update, on every hub.
#[utoipa::path(
    delete, path = "/v1/episodes/{id}", tag = "episodes",
    params(("id" = String, Path, description = "The episode's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = episode_id(path)?;
    match call(&state, &caller, Request::Delete(DeleteRequest { id })).await? {
        Response::Done { found: true } => Ok(StatusCode::NO_CONTENT),
        Response::Done { found: false } => Err(not_found()),
        other => Err(unexpected(&other)),
    }
}

/// `GET /v1/episodes` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Where to continue: a previous page's `next_cursor`.
    cursor: Option<String>,
    /// Most episodes to return (1 to 1000, default 100).
    limit: Option<u32>,
}

/// The tenant's live episodes, a page at a time. A page may hold fewer than `limit`; only a
/// `null` `next_cursor` means there is no more.
#[utoipa::path(
    get, path = "/v1/episodes", tag = "episodes",
    params(ListParams),
    responses(
        (status = 200, body = EpisodePage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<EpisodePage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::malformed(e.body_text()))?;
    // The cursor is the id of the previous page's last episode; absent or empty, the page
    // starts from the first.
    let after = params
        .cursor
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<EpisodeId>()
                .map_err(|_| ApiError::malformed(format!("{t:?} is not a cursor this hub issued")))
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {MAX_LIST}"),
        ));
    }
    match call(&state, &caller, Request::List(ListRequest { after, limit })).await? {
        Response::Listed(page) => Ok(Json(EpisodePage {
            episodes: page
                .episodes
                .into_iter()
                .map(EpisodeOut::from_wire)
                .collect(),
            next_cursor: page.next.map(|id| id.to_string()),
        })),
        other => Err(unexpected(&other)),
    }
}
