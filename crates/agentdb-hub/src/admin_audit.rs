//! The admin route of the audit log.
//!
//! `GET /v1/audit?tenant=T&since=S` → the hub's audit records as JSON lines
//! (`application/x-ndjson`), each exactly as the log stores it (so each still hashes to the
//! `prev` of its successor in the full log), in log order. With `tenant`, only that tenant's
//! records: a token with the `admin` scope for the tenant, or the operator scope. Without it,
//! every record, the hub's own included: operator scope only. `since` (Unix milliseconds or
//! RFC 3339) leaves out older records. The log is flushed first, so the answer holds every
//! record written before the request. `404 not_found` when the hub keeps no audit log.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use agentdb_audit::{export, parse_since, ExportFilter};
use agentdb_core::TenantId;
use agentdb_security::policy::{self, Operation, VerifiedIdentity};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;

use crate::admin::{failure, refusal};
use crate::state::HubState;

/// Bytes gathered before a piece of the answer is sent.
const CHUNK: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<HubState>> {
    Router::new().route("/v1/audit", get(audit))
}

/// The query of `GET /v1/audit`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    tenant: Option<String>,
    since: Option<String>,
}

async fn audit(
    State(state): State<Arc<HubState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<AuditQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(query)) = query else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the query takes tenant and since",
        );
    };
    let tenant = match query.tenant.map(TenantId::new) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "invalid tenant id",
            )
        }
    };
    // A tenant's admin sees the tenant's records; the whole log is the operator's.
    let allowed = |identity: &VerifiedIdentity| match &tenant {
        Some(t) => policy::authorize(identity, Operation::Admin, t)
            .or_else(|e| policy::authorize_operator(identity).map_err(|_| e)),
        None => policy::authorize_operator(identity),
    };
    if let Some(refused) = refusal(&state, peer, &headers, allowed) {
        return refused;
    }
    let since_ms = match query.since.as_deref().map(parse_since) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => return failure(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    let Some(dir) = state.audit.log().map(|log| log.dir().to_owned()) else {
        return failure(
            StatusCode::NOT_FOUND,
            "not_found",
            "this hub keeps no audit log",
        );
    };
    let st = Arc::clone(&state);
    let flushed = tokio::task::spawn_blocking(move || st.audit.log().map(|log| log.flush())).await;
    if !matches!(flushed, Ok(Some(Ok(())))) {
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the audit log cannot be flushed; try again",
        );
    }
    let filter = ExportFilter { tenant, since_ms };
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = export(&dir, &filter, &mut out) {
            tracing::warn!(error = %e, "audit export failed");
            // Ends the answer with an error rather than a complete-looking one.
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Sends what an export writes to the answer, in pieces of about [`CHUNK`] bytes.
struct Chunks {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Chunks {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}
