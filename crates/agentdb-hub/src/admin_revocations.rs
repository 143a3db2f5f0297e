//! The admin routes of operators' revocations (operator scope).
//!
//! `POST /v1/revocations` with one of
//! `{"kind": "token", "jti": "…", "expires": unix_secs}` (expires: when the token runs out;
//! default one day from now), `{"kind": "agent", "tenant": "t", "agent": "a"}` (every token
//! of that agent issued until now), `{"kind": "api_key", "tenant": "t", "id": "…"}`,
//! `{"kind": "certificate", "serial": "0a:1b:…"}` → `201` with the revocation as kept; it
//! takes effect at once on this hub and travels to every federated hub.
//! `GET /v1/revocations` → every revocation this hub keeps, wherever it was issued.

use std::net::SocketAddr;
use std::sync::Arc;

use agentdb_core::{AgentId, Revoked, TenantId};
use agentdb_security::identity::normalize_serial;
use agentdb_security::policy;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::admin::{blocking, failure, json_body, refusal};
use crate::auth::error;
use crate::state::{unix_secs, HubState};

/// How long a token revocation lasts when its expiry is not given: the longest a token this
/// project issues lives.
const DEFAULT_TOKEN_REVOCATION_SECS: u64 = 86_400;

pub(crate) fn routes() -> Router<Arc<HubState>> {
    Router::new().route("/v1/revocations", get(list).post(revoke))
}

/// The body of `POST /v1/revocations`.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RevokeBody {
    Token { jti: String, expires: Option<u64> },
    Agent { tenant: TenantId, agent: AgentId },
    ApiKey { tenant: TenantId, id: String },
    Certificate { serial: String },
}

async fn revoke(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = refusal(&state, peer, &headers, policy::authorize_operator) {
        return refused;
    }
    let body: RevokeBody = match json_body(&body, "revocation", None) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let revoked = match body {
        RevokeBody::Token { jti, expires } if !jti.is_empty() && jti.len() <= 256 => {
            Revoked::Token {
                jti,
                expires: expires.unwrap_or(unix_secs() + DEFAULT_TOKEN_REVOCATION_SECS),
            }
        }
        RevokeBody::Agent { tenant, agent } => Revoked::Agent {
            tenant,
            agent,
            issued_until: unix_secs(),
        },
        RevokeBody::ApiKey { tenant, id } if id.len() == 16 => Revoked::ApiKey { tenant, id },
        RevokeBody::Certificate { serial }
            if serial.chars().any(|c| c.is_ascii_hexdigit()) && serial.len() <= 128 =>
        {
            Revoked::Certificate {
                serial: normalize_serial(&serial),
            }
        }
        _ => {
            return failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "a token id is 1 to 256 characters, an API key id 16 hex characters, a \
                 certificate serial hex digits",
            )
        }
    };
    blocking(StatusCode::CREATED, move || {
        let kept = crate::revocations::issue(&state, revoked)?;
        Ok(json!({ "name": agentdb_core::ControlRecord::Revocation(kept.clone()).name(), "revocation": kept }))
    })
    .await
}

async fn list(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&state, peer, &headers, policy::authorize_operator) {
        return refused;
    }
    blocking(StatusCode::OK, move || {
        let records = crate::revocations::records(&state)
            .map_err(|e| error(agentdb_proto::ErrorCode::Internal, e))?;
        Ok(json!({ "revocations": records }))
    })
    .await
}
