//! The admin routes of federation-wide erasure.
//!
//! `POST /v1/tenants/{tenant}/erase` (a token with the `erase` scope for that tenant), with no
//! body (the whole tenant) or `{"subject": {"key": "user_id", "value": "u-1"}}` (the episodes
//! whose metadata field `key` equals the JSON value `value`) → `201` with the order's id and
//! this hub's signed receipt; the order then travels to every hub that holds the tenant.
//! `GET /v1/tenants/{tenant}/erasures` (`erase` or `admin` scope) → each order of the tenant,
//! the receipts this hub holds (checked against the deployment CA) and the hubs still pending.

use std::net::SocketAddr;
use std::sync::Arc;

use agentdb_core::{ErasureScope, MetadataMatch};
use agentdb_security::policy::Operation;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::admin::{blocking, failure, json_body, tenant_caller};
use crate::state::HubState;

pub(crate) fn routes() -> Router<Arc<HubState>> {
    Router::new()
        .route("/v1/tenants/{tenant}/erase", post(erase))
        .route("/v1/tenants/{tenant}/erasures", get(erasures))
}

/// The body of `POST /v1/tenants/{tenant}/erase`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    /// Erase only this subject's episodes.
    subject: Option<Subject>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    key: String,
    value: serde_json::Value,
}

async fn erase(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (tenant, _) = match tenant_caller(&state, peer, &headers, tenant, Operation::Erase) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    let body: EraseBody = match json_body(&body, "JSON", Some(EraseBody::default)) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let scope = match body.subject {
        None => ErasureScope::Tenant,
        Some(s) if s.key.is_empty() || s.key.len() > 128 => {
            return failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "the subject's metadata key must be 1 to 128 bytes",
            )
        }
        Some(s) => {
            crate::audit::admin_operation(agentdb_audit::Operation::SubjectErase);
            ErasureScope::Subject(MetadataMatch::new(s.key, &s.value))
        }
    };
    blocking(StatusCode::CREATED, move || {
        let (order, receipt) = crate::erasure::issue(&state, &tenant, scope)?;
        Ok(json!({
            "erasure": order.id,
            "tenant": order.tenant,
            "receipt": receipt.body,
        }))
    })
    .await
}

async fn erasures(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Whoever may erase, or administer, the tenant may see its erasures.
    let caller = tenant_caller(&state, peer, &headers, tenant.clone(), Operation::Erase)
        .or_else(|_| tenant_caller(&state, peer, &headers, tenant, Operation::Admin));
    let (tenant, _) = match caller {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    blocking(StatusCode::OK, move || {
        Ok(json!({ "erasures": crate::erasure::status(&state, &tenant)? }))
    })
    .await
}
