//! The id of one request. The hub mints one for every request of both front doors and records
//! it with the request in the audit log; HTTP callers (the gateway and the admin listener) get
//! it back in the `x-request-id` response header, so that a caller can name its request to an
//! operator and an operator can find that request's record.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The response header that carries a request's id.
pub(crate) const HEADER: &str = "x-request-id";

/// A request's id: a random UUID, minted by this hub (never taken from the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(String);

impl RequestId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Middleware of both HTTP routers (outermost): mints the request's id, hands it to the
/// handlers and the audit middleware in the request's extensions, and returns it in
/// [`HEADER`] on every answer.
pub(crate) async fn tag(mut request: Request, next: Next) -> Response {
    let id = RequestId::new();
    let value = HeaderValue::from_str(id.as_str()).ok();
    request.extensions_mut().insert(id);
    let mut response = next.run(request).await;
    if let Some(value) = value {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The id [`tag`] gave `extensions`' request, or a fresh one (a request that did not come
/// through a router).
pub(crate) fn of(extensions: &axum::http::Extensions) -> RequestId {
    extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::new)
}
