//! `GET /v1/changes`: the tenant's changes in order — as Server-Sent Events when the client
//! accepts `text/event-stream`, else one JSON page.
//!
//! ```text
//! client                                   hub
//!   GET /v1/changes  (Last-Event-ID: 41) ─►  pull after 41 ─► event id 42, 43, … (type put|deleted)
//!                                           nothing more ─► wait for a change of this tenant
//!   (connection lost; reconnects)            (or the token's expiry: the stream ends)
//!   GET /v1/changes  (Last-Event-ID: 43) ─►  pull after 43 ─► event id 44, …
//! ```
//!
//! Every page is a `Pull` run through [`crate::ops::execute`] with the caller's identity, so
//! the stream carries only the token's tenant, and each page is authorised like any request.
//! Event ids are the change cursors: a client that resumes with the last id it received gets
//! every later change exactly once, in order. The stream ends when the token expires or is
//! revoked; the client reconnects with a fresh token and its last id.

// utoipa's path macro names the parameter types fully in the code it generates beside each
// handler.
#![allow(unused_qualifications)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::TenantId;
use agentdb_proto::{PullRequest, Request, Response};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;

use super::dto::{ChangeOut, ChangePage};
use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::{call, unexpected};
use crate::auth;
use crate::ops;
use crate::state::{unix_secs, HubState};

/// Changes per pull while streaming.
const STREAM_PAGE: u32 = 500;
/// Changes per JSON page unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 100;
/// Most changes per JSON page.
const MAX_PAGE: u32 = 1000;

/// `GET /v1/changes` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeParams {
    /// Changes after this cursor (a previous `next_cursor`, or an event id); from the start
    /// when absent. A stream prefers `Last-Event-ID`.
    since: Option<String>,
    /// Most changes per JSON page (1 to 1000, default 100).
    limit: Option<u32>,
}

/// The tenant's changes after a cursor: an SSE stream (`Accept: text/event-stream`; events
/// `put` and `deleted`, each with a JSON `ChangeOut` and the cursor as its id) or a JSON page.
#[utoipa::path(
    get, path = "/v1/changes", tag = "memory",
    params(
        ChangeParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume a stream after this event id"),
    ),
    responses(
        (status = 200, description = "A JSON page, or a text/event-stream of ChangeOut events", body = ChangePage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn changes(
    State(state): State<Arc<HubState>>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<HttpResponse, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::malformed(e.body_text()))?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_stream {
        let last = headers
            .get("last-event-id")
            .map(|v| v.to_str().unwrap_or("?"));
        let cursor = super::cursor(last.or(params.since.as_deref()))?;
        return Ok(stream(state, caller, cursor).into_response());
    }
    let cursor = super::cursor(params.since.as_deref())?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            agentdb_proto::ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    match call(
        &state,
        &caller,
        Request::Pull(PullRequest { cursor, limit }),
    )
    .await?
    {
        Response::Page(page) => Ok(Json(ChangePage {
            changes: page.changes.into_iter().map(ChangeOut::from_item).collect(),
            next_cursor: page.next_cursor.to_string(),
            more: page.more,
        })
        .into_response()),
        other => Err(unexpected(&other)),
    }
}

/// Where a stream is.
struct Streaming {
    state: Arc<HubState>,
    caller: Caller,
    cursor: u64,
    pending: VecDeque<Event>,
    changed: broadcast::Receiver<TenantId>,
    done: bool,
}

fn stream(state: Arc<HubState>, caller: Caller, cursor: u64) -> impl IntoResponse {
    // Subscribed before the first pull: a change made after it wakes the stream.
    let changed = state.changes.subscribe();
    let start = Streaming {
        state,
        caller,
        cursor,
        pending: VecDeque::new(),
        changed,
        done: false,
    };
    let events = futures_util::stream::unfold(start, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), s));
            }
            if s.done {
                return None;
            }
            s.next_events().await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

impl Streaming {
    /// Fills `pending` with the next changes, waiting for one if there are none; or marks the
    /// stream done (with an `error` event saying why) when the token no longer holds.
    async fn next_events(&mut self) {
        loop {
            if let Err(e) = auth::still_valid(&self.state, &self.caller.identity) {
                return self.end(e);
            }
            let pull = Request::Pull(PullRequest {
                cursor: self.cursor,
                limit: STREAM_PAGE,
            });
            let identity = Arc::clone(&self.caller.identity);
            let request = Some(&self.caller.request);
            match ops::execute(Arc::clone(&self.state), identity, pull, request).await {
                Response::Page(page) => {
                    self.cursor = page.next_cursor;
                    for item in page.changes {
                        let change = ChangeOut::from_item(item);
                        let event = Event::default()
                            .id(change.cursor.clone())
                            .event(change.kind)
                            .json_data(&change);
                        match event {
                            Ok(event) => self.pending.push_back(event),
                            Err(e) => {
                                return self.end(auth::error(
                                    agentdb_proto::ErrorCode::Internal,
                                    format!("cannot encode a change: {e}"),
                                ))
                            }
                        }
                    }
                    if !self.pending.is_empty() {
                        return;
                    }
                }
                Response::Error(e) => return self.end(e),
                other => return self.end(unexpected(&other).into_wire()),
            }
            self.wait().await;
        }
    }

    /// Waits until this tenant changes or the token expires.
    async fn wait(&mut self) {
        let tenant = &self.caller.identity.claims.tenant;
        let left = self
            .caller
            .identity
            .claims
            .exp
            .saturating_add(agentdb_security::token::MAX_CLOCK_SKEW_SECS)
            .saturating_sub(unix_secs());
        let expiry = tokio::time::sleep(Duration::from_secs(left));
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = &mut expiry => return,
                got = self.changed.recv() => match got {
                    Ok(t) if &t == tenant => return,
                    Ok(_) => {}
                    // Missed notifications: look again.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => {
                        self.done = true;
                        return;
                    }
                },
            }
        }
    }

    fn end(&mut self, why: agentdb_proto::WireError) {
        self.done = true;
        let body = serde_json::json!({
            "error": { "code": why.code.as_str(), "message": why.message }
        });
        self.pending
            .push_back(Event::default().event("error").data(body.to_string()));
    }
}
