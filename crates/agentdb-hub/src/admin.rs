//! The admin HTTP API (axum): health, Prometheus metrics and per-tenant statistics.
//!
//! `GET /health` → `{"status":"healthy","connected_agents":n,"episodes":n,"tenants":n,"uptime_s":x}`
//! `GET /metrics` → Prometheus text.
//! `GET /v1/federation` with `Authorization: Bearer <token with the operator scope>` → this
//! hub's links (peer, region, state, last sync, ops sent/received, lag) and per-tenant version
//! vectors ([`crate::FederationStatus`]).
//! `DELETE /v1/federation/peers/{hub}` (operator scope) → `{"forgotten": bool}`: a hub that
//! left the federation for good no longer holds back tombstone collection.
//! `GET /v1/tenants/{tenant}/stats` with `Authorization: Bearer <token with admin scope for that
//! tenant>` → the tenant's statistics.
//!
//! `POST /v1/tenants/{tenant}/keys` (admin scope for that tenant) with `{"scopes": [...],
//! "expires_in_secs": n, "label": "..."}` (all optional) → the new API key, its secret shown
//! this once; `GET /v1/tenants/{tenant}/keys` → the tenant's keys (never their secrets);
//! `DELETE /v1/tenants/{tenant}/keys/{id}` → `{"revoked": true}`, or 404 for a key the tenant
//! does not have. A key grants at most the
//! scopes of the token that made it.
//!
//! `GET /v1/tenants/{tenant}/quota` (admin scope for that tenant, or the operator scope) → the
//! tenant's quota (`quota`: what it is held to; `configured`; `override`) and `usage`
//! (`episodes`, `bytes`); `PUT` of the same path (operator scope: a tenant does not set its own
//! quota) with `{"max_episodes": n, "max_bytes": n, "max_writes_per_sec": n}` (each optional;
//! absent or `null` leaves the configured limit, `{}` drops the override) sets the run-time
//! override, kept across restarts, and answers as `GET`.
//! `GET /v1/tenants/{tenant}/retention` (admin scope for that tenant, or the operator scope)
//! → how long the tenant keeps its episodes (`retention`: `"30d"` or `"forever"`;
//! `retention_secs`; `configured`; `runtime`); `PUT` of the same path (operator scope) with
//! `{"retention": "30d"}` (or `"forever"`) sets the run-time value, kept across restarts and
//! winning over the configuration, `{"retention": null}` drops it; answers as `GET`.
//! `GET /v1/metrics/tenants` (operator scope) → per-tenant Prometheus text
//! (`agentdb_tenant_episodes`, `agentdb_tenant_stored_bytes`,
//! `agentdb_tenant_quota_refusals_total`), at most `max_metric_tenants` tenants by name.
//!
//! `/health` and `/metrics` name no tenant and need no token. The routes that reveal tenants
//! verify their token exactly as the QUIC Hello does (`auth`: signature, expiry, audience,
//! revocation) and ask `policy` whether it may see what it asks for. This listener is plain
//! HTTP and carries no client certificate, so when the hub requires client certificates it
//! answers those routes only to callers on a loopback address.

use std::net::SocketAddr;
use std::sync::Arc;

use agentdb_core::{HubId, TenantId};
use agentdb_proto::WireError;
use agentdb_security::policy::{self, Operation, PolicyError, VerifiedIdentity};
use agentdb_security::token::Scope;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};

use crate::config::TenantQuota;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{self, policy_error};
use crate::state::HubState;

pub(crate) fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/federation", get(federation))
        .route("/v1/federation/peers/{hub}", delete(forget_peer))
        .route("/v1/tenants/{tenant}/stats", get(tenant_stats))
        .route("/v1/tenants/{tenant}/keys", get(list_keys).post(create_key))
        .route("/v1/tenants/{tenant}/keys/{id}", delete(revoke_key))
        .route("/v1/tenants/{tenant}/quota", get(quota).put(set_quota))
        .route(
            "/v1/tenants/{tenant}/retention",
            get(retention).put(set_retention),
        )
        .route("/v1/metrics/tenants", get(tenant_metrics))
        .merge(crate::admin_erasure::routes())
        .merge(crate::key_ops::routes())
        .merge(crate::admin_revocations::routes())
        .merge(crate::admin_audit::routes())
        // Last: it records every /v1/ route above in the audit log.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::audit::admin_calls,
        ))
        // Outermost: the audit middleware records the id it mints.
        .layer(axum::middleware::from_fn(crate::request_id::tag))
        .with_state(state)
}

pub(crate) fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response();
    let code = crate::audit::AdminErrorCode(code.to_owned());
    response.extensions_mut().insert(code);
    response
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

async fn federation(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&state, peer, &headers, policy::authorize_operator) {
        return refusal;
    }
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

/// Forgets a peer hub that has left the federation for good, so that tombstone collection
/// stops waiting for its acknowledgements. A hub that links again is recorded again.
async fn forget_peer(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(hub): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&state, peer, &headers, policy::authorize_operator) {
        return refusal;
    }
    let Ok(hub) = HubId::new(hub) else {
        return failure(StatusCode::BAD_REQUEST, "invalid_request", "invalid hub id");
    };
    let st = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || st.engine.forget_peer(&hub)).await {
        Ok(Ok(forgotten)) => Json(json!({ "forgotten": forgotten })).into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "forgetting the peer failed",
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match tenant_admin(&state, peer, &headers, tenant) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || {
        state
            .engine
            .stats(&tenant)
            .map_err(|e| auth::error(agentdb_proto::ErrorCode::Internal, e.to_string()))
    })
    .await
}

/// The body of `POST /v1/tenants/{tenant}/keys`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// The most the key's tokens may grant; default read, write and sync.
    #[serde(default)]
    scopes: Option<Vec<Scope>>,
    /// Lifetime of the key; forever when absent.
    expires_in_secs: Option<u64>,
    /// A note for people.
    label: Option<String>,
}

/// A tenant path segment, or the answer refusing it.
pub(crate) fn parse_tenant(tenant: String) -> Result<TenantId, Box<Response>> {
    TenantId::new(tenant).map_err(|_| {
        Box::new(failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid tenant id",
        ))
    })
}

/// A JSON request body describing `what` (strict: unknown fields are refused where the type
/// says so), or the answer refusing it. A blank body is `T::default()` when `blank` gives one.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
    blank: Option<fn() -> T>,
) -> Result<T, Box<Response>> {
    if let Some(default) = blank.filter(|_| body.iter().all(u8::is_ascii_whitespace)) {
        return Ok(default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("malformed {what}: {e}"),
        ))
    })
}

/// Checks that the caller is the hub's operator, then the tenant path segment.
pub(crate) fn operator_tenant(
    state: &HubState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: String,
) -> Result<TenantId, Box<Response>> {
    if let Some(refused) = refusal(state, peer, headers, policy::authorize_operator) {
        return Err(Box::new(refused));
    }
    parse_tenant(tenant)
}

/// Checks a tenant path segment and that the caller administers that tenant; on success the
/// caller's identity.
fn tenant_admin(
    state: &HubState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: String,
) -> Result<(TenantId, VerifiedIdentity), Box<Response>> {
    tenant_caller(state, peer, headers, tenant, Operation::Admin)
}

/// Checks a tenant path segment and that the caller may do `operation` on that tenant; on
/// success the caller's identity.
pub(crate) fn tenant_caller(
    state: &HubState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: String,
    operation: Operation,
) -> Result<(TenantId, VerifiedIdentity), Box<Response>> {
    let tenant = parse_tenant(tenant)?;
    let mut verified = None;
    let allowed = |identity: &VerifiedIdentity| {
        policy::authorize(identity, operation, &tenant)?;
        verified = Some(identity.clone());
        Ok(())
    };
    if let Some(refusal) = refusal(state, peer, headers, allowed) {
        return Err(Box::new(refusal));
    }
    match verified {
        Some(identity) => Ok((tenant, identity)),
        None => Err(Box::new(failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no identity",
        ))),
    }
}

/// Runs `f` on the blocking pool and answers with its JSON, or its error.
pub(crate) async fn blocking<T: serde::Serialize + Send + 'static>(
    status: StatusCode,
    f: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => (status, Json(value)).into_response(),
        Ok(Err(e)) => {
            let status = match e.code {
                agentdb_proto::ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                agentdb_proto::ErrorCode::InvalidRequest => StatusCode::UNPROCESSABLE_ENTITY,
                agentdb_proto::ErrorCode::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            failure(status, e.code.as_str(), e.message)
        }
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed",
        ),
    }
}

async fn create_key(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (tenant, identity) = match tenant_admin(&state, peer, &headers, tenant) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    let body: NewKey = match json_body(&body, "JSON", Some(NewKey::default)) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let scopes = body.scopes.unwrap_or_else(|| Scope::DEFAULT.to_vec());
    // A key is worth no more than the token that made it.
    if let Some(extra) = scopes.iter().find(|s| !identity.claims.has_scope(**s)) {
        return failure(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token does not grant the {extra} scope, so its keys cannot"),
        );
    }
    blocking(StatusCode::CREATED, move || {
        let made = state.credentials.create_key(
            &state.engine,
            &tenant,
            scopes,
            body.expires_in_secs,
            body.label,
        )?;
        Ok(json!({ "secret": made.secret.expose(), "key": made.info }))
    })
    .await
}

async fn list_keys(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match tenant_admin(&state, peer, &headers, tenant) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || {
        let keys = state.credentials.keys(&state.engine, &tenant)?;
        Ok(json!({ "keys": keys }))
    })
    .await
}

async fn revoke_key(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match tenant_admin(&state, peer, &headers, tenant) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || {
        if state.credentials.revoke_key(&state.engine, &tenant, &id)? {
            Ok(json!({ "revoked": true }))
        } else {
            Err(auth::error(
                agentdb_proto::ErrorCode::NotFound,
                "no such key for this tenant",
            ))
        }
    })
    .await
}

/// Checks a tenant path segment and that the caller administers that tenant or the hub.
pub(crate) fn tenant_or_operator(
    state: &HubState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: String,
) -> Result<TenantId, Box<Response>> {
    let tenant = parse_tenant(tenant)?;
    let allowed = |identity: &VerifiedIdentity| {
        policy::authorize(identity, Operation::Admin, &tenant)
            .or_else(|e| policy::authorize_operator(identity).map_err(|_| e))
    };
    match refusal(state, peer, headers, allowed) {
        Some(refusal) => Err(Box::new(refusal)),
        None => Ok(tenant),
    }
}

async fn quota(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let tenant = match tenant_or_operator(&state, peer, &headers, tenant) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || {
        state
            .quotas
            .report(&state.engine, &tenant)
            .map_err(|e| auth::error(agentdb_proto::ErrorCode::Internal, e))
    })
    .await
}

async fn set_quota(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (tenant, quota) = match operator_tenant(&state, peer, &headers, tenant)
        .and_then(|t| Ok((t, json_body::<TenantQuota>(&body, "quota", None)?)))
    {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    if quota.max_writes_per_sec == Some(0) {
        return failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "max_writes_per_sec must be at least 1 (to stop new episodes, set max_episodes)",
        );
    }
    blocking(StatusCode::OK, move || {
        let internal = |e: String| auth::error(agentdb_proto::ErrorCode::Internal, e);
        state
            .quotas
            .set_override(&state.engine, &tenant, quota)
            .map_err(internal)?;
        state
            .quotas
            .report(&state.engine, &tenant)
            .map_err(internal)
    })
    .await
}

async fn retention(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let tenant = match tenant_or_operator(&state, peer, &headers, tenant) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || {
        crate::retention::report(&state, &tenant)
            .map_err(|e| auth::error(agentdb_proto::ErrorCode::Internal, e))
    })
    .await
}

/// The body of `PUT /v1/tenants/{tenant}/retention`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    /// `"30d"`, `"forever"`, or `null` (back to the configuration).
    #[serde(default)]
    retention: Option<String>,
}

async fn set_retention(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (tenant, body) = match operator_tenant(&state, peer, &headers, tenant)
        .and_then(|t| Ok((t, json_body::<RetentionBody>(&body, "retention", None)?)))
    {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    let retention = match body
        .retention
        .as_deref()
        .map(crate::retention::parse_retention)
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return failure(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e),
    };
    blocking(StatusCode::OK, move || {
        let internal = |e: String| auth::error(agentdb_proto::ErrorCode::Internal, e);
        crate::retention::set_runtime(&state.engine, &tenant, retention).map_err(internal)?;
        crate::retention::report(&state, &tenant).map_err(internal)
    })
    .await
}

/// Per-tenant metrics: hub-wide state that names tenants, so for operators only.
async fn tenant_metrics(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&state, peer, &headers, policy::authorize_operator) {
        return refusal;
    }
    let st = Arc::clone(&state);
    let text = tokio::task::spawn_blocking(move || {
        let mut usage = Vec::new();
        for (tenant, counted) in st.quotas.all_usage(&st.engine) {
            usage.push((tenant, counted?));
        }
        let usage: Vec<_> = usage
            .into_iter()
            .map(|(t, u)| (t, u.episodes, u.bytes))
            .collect();
        st.tenant_metrics.set_usage(&usage);
        Ok::<_, String>(st.tenant_metrics.encode())
    })
    .await;
    match text {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "tenant metrics failed",
        ),
    }
}

/// Authenticates a tenant-revealing request and asks `policy` (through `allowed`) whether its
/// identity may see the answer: `Some` is the response to send instead.
pub(crate) fn refusal(
    state: &HubState,
    peer: SocketAddr,
    headers: &HeaderMap,
    allowed: impl FnOnce(&VerifiedIdentity) -> Result<(), PolicyError>,
) -> Option<Response> {
    let refused = |status, e: WireError| Some(failure(status, e.code.as_str(), e.message));
    if let Some(e) = remote_without_certificate(state.config.require_client_cert, peer) {
        return refused(StatusCode::FORBIDDEN, e);
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Some(failure(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a Bearer token is required",
        ));
    };
    match auth::verify_uncertified(state, token.trim()) {
        Err(e) => refused(StatusCode::UNAUTHORIZED, e),
        Ok(identity) => {
            crate::audit::admin_caller(&identity);
            match allowed(&identity) {
                Err(e) => refused(StatusCode::FORBIDDEN, policy_error(&e)),
                Ok(()) => None,
            }
        }
    }
}

/// Refuses a remote caller when client certificates are required: this plain-HTTP listener
/// cannot see one, so only the hub's own machine may ask.
fn remote_without_certificate(require_client_cert: bool, peer: SocketAddr) -> Option<WireError> {
    (require_client_cert && !peer.ip().is_loopback()).then(|| {
        auth::error(
            agentdb_proto::ErrorCode::Unauthenticated,
            "client certificates are required, and this listener cannot carry one: ask from the hub's own machine",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_callers_are_refused_when_certificates_are_required() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
        for local in ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1"] {
            assert!(
                remote_without_certificate(true, addr(local)).is_none(),
                "{local}"
            );
        }
        for remote in ["192.0.2.7:1", "[2001:db8::1]:1", "0.0.0.0:1"] {
            let refused = remote_without_certificate(true, addr(remote)).expect(remote);
            assert_eq!(refused.code, agentdb_proto::ErrorCode::Unauthenticated);
            assert!(
                remote_without_certificate(false, addr(remote)).is_none(),
                "{remote}"
            );
        }
    }
}
