//! `POST /v1/token`: trade an API key (`Authorization: ApiKey <secret>`) or a client
//! certificate that names a tenant for a short-lived token signed by this hub
//! ([`crate::credentials::exchange`], which the QUIC `Exchange` request uses too).
//! `DELETE /v1/token` revokes the bearer token, as an agent's goodbye does over QUIC.

use std::sync::Arc;

use agentdb_proto::{ErrorCode, ExchangeRequest};
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::Json;

use super::dto::{TokenBody, TokenOut};
use super::error::{ApiError, ErrorBody};
use super::extract::{body_bytes, connection, credential, parse_json, Caller};
use crate::credentials;
use crate::state::{unix_secs, HubState};

/// The body and credential of a token request.
pub(crate) struct TokenCall {
    api_key: Option<String>,
    body: TokenBody,
    certificate: Option<agentdb_security::identity::PeerIdentity>,
}

impl FromRequest<Arc<HubState>> for TokenCall {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<HubState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let certificate = connection(&parts)?.certificate()?.cloned();
        let api_key = credential(&parts.headers, "ApiKey")?.map(str::to_owned);
        let bytes = body_bytes(Request::from_parts(parts, body), state).await?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            TokenBody::default()
        } else {
            parse_json(&bytes)?
        };
        Ok(Self {
            api_key,
            body,
            certificate,
        })
    }
}

/// A token for the credential's tenant, with at most the credential's scopes.
#[utoipa::path(
    post, path = "/v1/token", tag = "credentials",
    request_body(content = Option<TokenBody>, description = "Optional: agent, scopes, ttl_secs"),
    responses(
        (status = 200, body = TokenOut),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []), ())
)]
pub(crate) async fn issue(
    State(state): State<Arc<HubState>>,
    call: TokenCall,
) -> Result<Json<TokenOut>, ApiError> {
    let request = ExchangeRequest {
        api_key: call.api_key,
        agent: call.body.agent,
        scopes: call.body.scopes,
        ttl_secs: call.body.ttl_secs,
    };
    let st = Arc::clone(&state);
    let grant = tokio::task::spawn_blocking(move || {
        credentials::exchange(&st, call.certificate.as_ref(), &request)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "token exchange failed"))??;
    Ok(Json(TokenOut::from_grant(grant, unix_secs())))
}

/// Revokes the bearer token at once (until it would have expired), on this hub.
#[utoipa::path(
    delete, path = "/v1/token", tag = "credentials",
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke(
    State(state): State<Arc<HubState>>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let claims = &caller.identity.claims;
    let revoked = state.revoke(&claims.jti, claims.exp).await;
    let failure = revoked
        .is_err()
        .then(|| crate::auth::error(ErrorCode::Internal, "revocation failed"));
    crate::audit::session(
        &state,
        agentdb_audit::Operation::Revoke,
        &caller.identity,
        failure.as_ref(),
    );
    match failure {
        Some(e) => Err(ApiError::from(e)),
        None => Ok(StatusCode::NO_CONTENT),
    }
}
