//! What a handler gets from a request: the caller, verified by the function the QUIC Hello
//! uses ([`crate::auth::verify`]), and a JSON body read within the hub's frame limit.

use std::sync::Arc;

use agentdb_proto::{ErrorCode, WireError};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy::VerifiedIdentity;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::auth;
use crate::request_id::RequestId;
use crate::state::HubState;

/// A token and the identity it was verified as.
type Verified = (String, Arc<VerifiedIdentity>);

/// What a connection established: the TLS handshake's client certificate, and the last token
/// verified on it. Every request on the connection carries this.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The identity its client certificate names, or why that certificate is unusable.
    pub certificate: Arc<Result<Option<PeerIdentity>, WireError>>,
    /// The last token [`auth::verify`] accepted on this connection, and the identity it gave.
    /// A request presenting the same token is not verified again (signature, claims): like a
    /// QUIC session, it only has its expiry and revocation checked ([`auth::still_valid`]).
    verified: Arc<Mutex<Option<Verified>>>,
}

impl Connection {
    /// A connection whose client certificate names `certificate`.
    pub fn new(certificate: Result<Option<PeerIdentity>, WireError>) -> Self {
        Self {
            certificate: Arc::new(certificate),
            verified: Arc::new(Mutex::new(None)),
        }
    }

    /// The identity of `token` if it is the token last verified on this connection.
    fn remembered(&self, token: &str) -> Option<Arc<VerifiedIdentity>> {
        match self.verified.lock().as_ref() {
            Some((t, identity)) if t == token => Some(Arc::clone(identity)),
            _ => None,
        }
    }

    /// The certificate identity, if any; an unusable certificate fails the request.
    pub fn certificate(&self) -> Result<Option<&PeerIdentity>, ApiError> {
        match self.certificate.as_ref() {
            Ok(c) => Ok(c.as_ref()),
            Err(e) => Err(ApiError::from(e.clone())),
        }
    }
}

/// The connection a request arrived on.
pub(crate) fn connection(parts: &Parts) -> Result<&Connection, ApiError> {
    parts
        .extensions
        .get::<Connection>()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "request without a connection"))
}

/// A caller whose token (and certificate) passed [`auth::verify`], and the id of its request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub identity: Arc<VerifiedIdentity>,
    pub request: RequestId,
}

impl FromRequestParts<Arc<HubState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HubState>,
    ) -> Result<Self, ApiError> {
        let conn = connection(parts)?;
        let certificate = conn.certificate()?;
        let token = match credential(&parts.headers, "Bearer") {
            Ok(Some(token)) => token,
            Ok(None) => {
                let e = auth::error(
                    ErrorCode::Unauthenticated,
                    "an Authorization: Bearer <token> header is required",
                );
                crate::audit::authentication_refused(state, certificate, None, &e);
                return Err(ApiError::from(e));
            }
            Err(e) => {
                let e = e.into_wire();
                crate::audit::authentication_refused(state, certificate, None, &e);
                return Err(ApiError::from(e));
            }
        };
        let refused = |e: WireError| {
            auth::count_failure(state, &e);
            ApiError::from(e)
        };
        let request = crate::request_id::of(&parts.extensions);
        if let Some(identity) = conn.remembered(token) {
            auth::still_valid(state, &identity).map_err(refused)?;
            return Ok(Caller { identity, request });
        }
        let identity = Arc::new(auth::verify(state, certificate, token).map_err(refused)?);
        *conn.verified.lock() = Some((token.to_owned(), Arc::clone(&identity)));
        Ok(Caller { identity, request })
    }
}

/// The credential of `scheme` in the `Authorization` header: `None` when the header is
/// absent, an error when it names another scheme or is not text.
pub(crate) fn credential<'h>(
    headers: &'h HeaderMap,
    scheme: &str,
) -> Result<Option<&'h str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::Unauthenticated, "Authorization is not text"))?;
    match value.split_once(' ') {
        Some((s, rest)) if s.eq_ignore_ascii_case(scheme) => Ok(Some(rest.trim())),
        _ => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            format!("Authorization must use the {scheme} scheme here"),
        )),
    }
}

/// A JSON body, read whole within the hub's frame limit (413 above it) and parsed strictly
/// (400 for malformed JSON or an unknown field).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<HubState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<HubState>) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The body, within the hub's frame limit.
pub(crate) async fn body_bytes(req: Request, state: &HubState) -> Result<Bytes, ApiError> {
    let limit = state.config.limits.max_frame_len;
    let too_large = || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("the body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        // Read what a client a little over the limit is still sending before answering, so
        // that it sees the answer rather than a connection closed under its feet; a body far
        // over the limit is not read at all.
        if n <= 2 * limit as u64 {
            drain(req.into_body()).await;
        }
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let cause = e.into_inner();
            if cause.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::malformed(format!("cannot read the body: {cause}"))
            }
        })
}

/// Reads a body to its end (at most [`DRAIN_TIME`]), discarding it.
async fn drain(body: axum::body::Body) {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// Longest the gateway reads an oversized body it refuses.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Parses JSON strictly, with serde's one-line reason.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::malformed(format!("malformed JSON: {e}")))
}

/// Reads a JSON value already parsed as such into `T`, strictly.
pub(crate) fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::malformed(format!("malformed JSON: {e}")))
}
