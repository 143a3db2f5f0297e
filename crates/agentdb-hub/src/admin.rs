//! The admin HTTP API (axum): health, Prometheus metrics and per-tenant statistics.
//!
//! `GET /health` → `{"status":"healthy","connected_agents":n,"episodes":n,"tenants":n,"uptime_s":x}`
//! `GET /metrics` → Prometheus text.
//! `GET /v1/federation` → this hub's links (peer, region, state, last sync, ops sent/received,
//! lag) and per-tenant version vectors ([`crate::FederationStatus`]).
//! `GET /v1/tenants/{tenant}/stats` with `Authorization: Bearer <token with admin scope for that
//! tenant>` → the tenant's statistics.

use std::sync::Arc;

use agentdb_core::TenantId;
use agentdb_security::policy::{self, Operation, VerifiedIdentity};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{policy_error, verify_error};
use crate::state::{unix_secs, HubState};

pub(crate) fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/federation", get(federation))
        .route("/v1/tenants/{tenant}/stats", get(tenant_stats))
        .with_state(state)
}

fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

async fn health(State(state): State<Arc<HubState>>) -> Response {
    let engine = &state.engine;
    Json(json!({
        "status": "healthy",
        "connected_agents": state.connected_agents(),
        "episodes": engine.episode_count(),
        "tenants": engine.tenants().len(),
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "hub": state.config.hub_id,
        "embedder": engine.embedder().model(),
    }))
    .into_response()
}

async fn federation(State(state): State<Arc<HubState>>) -> Response {
    let st = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || st.federation.status(&st)).await {
        Ok(status) => Json(status).into_response(),
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "federation status failed",
        ),
    }
}

async fn metrics(State(state): State<Arc<HubState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn tenant_stats(
    State(state): State<Arc<HubState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(tenant) = TenantId::new(tenant) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid tenant id",
        );
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return failure(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a Bearer token is required",
        );
    };
    let claims = match state.verifier.verify(token.trim(), unix_secs()) {
        Ok(c) => c,
        Err(e) => {
            let e = verify_error(&e);
            return failure(StatusCode::UNAUTHORIZED, e.code.as_str(), e.message);
        }
    };
    let identity = VerifiedIdentity {
        certificate: None,
        claims,
    };
    if let Err(e) = policy::authorize(&identity, Operation::Admin, &tenant) {
        let e = policy_error(&e);
        return failure(StatusCode::FORBIDDEN, e.code.as_str(), e.message);
    }
    let st = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || st.engine.stats(&tenant)).await {
        Ok(Ok(stats)) => Json(stats).into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "stats failed",
        ),
    }
}
