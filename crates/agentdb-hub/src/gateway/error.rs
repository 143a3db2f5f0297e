//! Errors as the gateway answers them: `{"error": {"code": "<ErrorCode name>", "message":
//! "<one line>"}}` with the HTTP status that matches the code.
//!
//! | code              | status | notes                                            |
//! |-------------------|--------|--------------------------------------------------|
//! | `invalid_request` | 400    | malformed JSON, an unknown field, a bad cursor    |
//! | `invalid_request` | 422    | well-formed, but breaks a rule (e.g. reward > 1) |
//! | `unauthenticated` | 401    | no, a forged, a revoked or a foreign token       |
//! | `token_expired`   | 401    | refresh the token                                |
//! | `agent_expired`   | 401    |                                                  |
//! | `forbidden`       | 403    | the token's scope does not allow it              |
//! | `tenant_mismatch` | 403    | token and certificate name different tenants     |
//! | `quota_exceeded`  | 403    | a tenant quota; not retried (see below)          |
//! | `not_found`       | 404    | no such id for this tenant (another tenant's too) |
//! | `too_large`       | 413    | the body is over the hub's frame limit           |
//! | `overloaded`      | 429    | with `Retry-After`                               |
//! | `unavailable`     | 503    | with `Retry-After`                               |
//! | `internal`        | 500    |                                                  |
//!
//! `quota_exceeded` is 403, not 429: clients retry 429 on their own, and most quota refusals
//! (episodes, stored bytes) stay true until someone deletes episodes or raises the quota, so a
//! retry could only fail again. The message names the quota, its limit and the current value.

use agentdb_proto::{ErrorCode, WireError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client is asked to wait after `overloaded` or `unavailable`.
const RETRY_AFTER_SECS: &str = "1";

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: WireError,
}

impl ApiError {
    /// An error whose status follows from its code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::from(WireError::new(code, message))
    }

    /// A request the gateway could not read: malformed JSON, an unknown field, a bad query
    /// string (400; a well-formed request that breaks a rule is 422).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: WireError::new(ErrorCode::InvalidRequest, message),
        }
    }

    /// The code and message, as the QUIC session would carry them.
    pub fn into_wire(self) -> WireError {
        self.error
    }

    /// The error's code.
    #[cfg(test)]
    pub fn code(&self) -> ErrorCode {
        self.error.code
    }
}

impl From<WireError> for ApiError {
    fn from(error: WireError) -> Self {
        Self {
            status: status(error.code),
            error,
        }
    }
}

/// The HTTP status for a code.
fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthenticated | ErrorCode::TokenExpired | ErrorCode::AgentExpired => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::Forbidden | ErrorCode::TenantMismatch | ErrorCode::QuotaExceeded => {
            StatusCode::FORBIDDEN
        }
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::UnknownMessage => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable code (`unauthenticated`, `token_expired`, `forbidden`, `tenant_mismatch`,
    /// `invalid_request`, `too_large`, `overloaded`, `unavailable`, `not_found`,
    /// `quota_exceeded`, `internal`, …).
    pub code: &'static str,
    /// One line for a human; not to be parsed.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // One line, whatever the cause said.
        let message = self.error.message.lines().next().unwrap_or("").to_owned();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.error.code.as_str(),
                message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_malformed_input_is_400() {
        for code in ErrorCode::ALL {
            let response = ApiError::new(*code, "x").into_response();
            assert!(
                response.status().is_client_error() || response.status().is_server_error(),
                "{code}"
            );
        }
        let e = ApiError::malformed("bad json");
        assert_eq!(e.code(), ErrorCode::InvalidRequest);
        assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
        let e = ApiError::new(ErrorCode::InvalidRequest, "reward above 1");
        assert_eq!(e.into_response().status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = ApiError::new(ErrorCode::Overloaded, "busy").into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::new(ErrorCode::QuotaExceeded, "full").into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
        let r = ApiError::new(ErrorCode::TokenExpired, "old").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
