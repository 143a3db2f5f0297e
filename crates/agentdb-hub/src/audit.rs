//! The hub's audit log (docs/compliance.md#audit-log): one record for every authentication,
//! operation, administrative call and federation link event, written through
//! [`agentdb_audit::AuditLog`]. Each kind of event has one function here, called from the one
//! place that decides it:
//!
//! ```text
//! auth.rs            verify, verify_uncertified, still_valid,      ─► authenticated,
//!                    chain_identity, TLS handshakes                     authentication_refused
//! connection.rs      session refusals (no Hello in time, a request  ─► authentication_refused,
//!                    before Hello, agent limit), refresh, Goodbye       session
//! ops.rs             execute: every request of QUIC and HTTPS       ─► operation
//! credentials.rs     exchange: the QUIC Exchange, POST /v1/token    ─► exchange
//! gateway/token.rs   DELETE /v1/token                               ─► session
//! admin.rs           every /v1/ route of the admin listener         ─► admin_calls (middleware)
//! federation/link.rs a link up, down or refused                     ─► link
//! control.rs         erasures and revocations applied from a peer   ─► control
//! ```
//!
//! A record names episodes by id and carries stable error codes; it never carries episode
//! content, and never an error's message where that message could quote a request (operation
//! and admin failures give their code only). With no log configured every function here
//! returns at once.

use std::sync::Arc;

use agentdb_audit::{AuditEvent, AuditLog, OpenError, Operation, Outcome};
use agentdb_core::{ControlRecord, EpisodeId, ErasureScope, HubId, TenantId};
use agentdb_proto::{Change, ErrorCode, Request, Response, WireError};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy::VerifiedIdentity;
use agentdb_security::signing::HubSigner;
use agentdb_security::token::Claims;
use axum::extract::{Request as HttpRequest, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response as HttpResponse;
use parking_lot::Mutex;

use crate::config::AuditSettings;
use crate::state::{unix_ms, HubState};

/// The hub's audit log, or none.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    log: Option<AuditLog>,
}

impl Audit {
    /// Opens the log `settings` describe, sealed with the hub certificate's key.
    pub fn open(
        settings: &AuditSettings,
        hub: HubId,
        signer: Arc<HubSigner>,
    ) -> Result<Self, OpenError> {
        let log = AuditLog::open(
            &settings.dir,
            hub,
            Some(signer),
            settings.log.clone(),
            unix_ms,
        )?;
        Ok(Self { log: Some(log) })
    }

    /// The log, when the hub keeps one.
    pub fn log(&self) -> Option<&AuditLog> {
        self.log.as_ref()
    }

    /// Whether the hub keeps a log.
    pub fn is_enabled(&self) -> bool {
        self.log.is_some()
    }

    /// Records `event` (queued; no I/O on this thread).
    pub fn record(&self, event: AuditEvent) {
        if let Some(log) = &self.log {
            log.record(event);
        }
    }

    /// Records the hub's start.
    pub fn started(&self) {
        self.record(AuditEvent::new(Operation::HubStart, Outcome::Ok));
    }

    /// Records the hub's stop and seals the chain with a checkpoint, waiting until it is
    /// durable. Records written later (by tasks still ending) are sealed when the log closes.
    pub fn stopped(&self) {
        let Some(log) = &self.log else { return };
        log.record(AuditEvent::new(Operation::HubStop, Outcome::Ok));
        if let Err(e) = log.checkpoint_now() {
            tracing::error!(error = %e, "cannot seal the audit log");
        }
    }
}

/// How a refusal or failure is recorded: not allowed (authentication, policy, limits) or
/// allowed but failed.
fn outcome_of(code: ErrorCode) -> Outcome {
    match code {
        ErrorCode::Unauthenticated
        | ErrorCode::TokenExpired
        | ErrorCode::Forbidden
        | ErrorCode::TenantMismatch
        | ErrorCode::Overloaded
        | ErrorCode::AgentExpired
        | ErrorCode::QuotaExceeded
        | ErrorCode::TooLarge => Outcome::Refused,
        _ => Outcome::Failed,
    }
}

/// An event with `error`'s outcome and code, or `ok`.
fn event(operation: Operation, error: Option<&WireError>) -> AuditEvent {
    match error {
        None => AuditEvent::new(operation, Outcome::Ok),
        Some(e) => AuditEvent::new(operation, outcome_of(e.code)).error_code(e.code.as_str()),
    }
}

/// Adds who acted: the token's tenant and agent, the certificate's SPIFFE id.
fn by(mut event: AuditEvent, identity: &VerifiedIdentity) -> AuditEvent {
    event = event
        .tenant(identity.claims.tenant.clone())
        .agent(identity.claims.sub.to_string());
    match &identity.certificate {
        Some(c) => event.identity(c.spiffe_uri()),
        None => event,
    }
}

/// Adds what a certificate (and, when the token verified, its claims) says of the caller.
fn by_parts(
    mut event: AuditEvent,
    certificate: Option<&PeerIdentity>,
    claims: Option<&Claims>,
) -> AuditEvent {
    if let Some(c) = certificate {
        event = event.identity(c.spiffe_uri());
    }
    let cert_agent = match certificate {
        Some(PeerIdentity::Agent { agent, .. }) => Some(agent.to_string()),
        _ => None,
    };
    // Only verified names: the claims of a token that failed to verify are not looked at.
    let tenant = claims
        .map(|c| &c.tenant)
        .or_else(|| certificate.and_then(PeerIdentity::tenant));
    if let Some(t) = tenant {
        event = event.tenant(t.clone());
    }
    match claims.map(|c| c.sub.to_string()).or(cert_agent) {
        Some(agent) => event.agent(agent),
        None => event,
    }
}

/// A token (and the certificate beside it) accepted.
pub(crate) fn authenticated(state: &HubState, identity: &VerifiedIdentity) {
    if !state.audit.is_enabled() {
        return;
    }
    state.audit.record(by(
        AuditEvent::new(Operation::Authenticate, Outcome::Ok),
        identity,
    ));
}

/// A credential refused, and why. `claims` are those of a token that verified but was
/// refused all the same (revoked, or presented with another tenant's certificate).
pub(crate) fn authentication_refused(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    claims: Option<&Claims>,
    e: &WireError,
) {
    if !state.audit.is_enabled() {
        return;
    }
    let event = event(Operation::Authenticate, Some(e)).detail(e.message.clone());
    state.audit.record(by_parts(event, certificate, claims));
}

/// A TLS handshake that failed (no certificate where one is required, another CA, a stalled
/// client), on `transport` (`quic`, `https`) from `remote`.
pub(crate) fn handshake_refused(
    state: &HubState,
    transport: &str,
    remote: std::net::SocketAddr,
    why: &str,
) {
    if !state.audit.is_enabled() {
        return;
    }
    state.audit.record(
        AuditEvent::new(Operation::Authenticate, Outcome::Refused)
            .error_code(ErrorCode::Unauthenticated.as_str())
            .detail(format!("{transport} handshake from {remote}: {why}")),
    );
}

/// The operation a request is recorded as.
pub(crate) fn request_operation(req: &Request) -> Operation {
    match req {
        Request::Hello(_) => Operation::Authenticate,
        Request::Store(_) => Operation::Store,
        Request::Query(_) => Operation::Query,
        Request::Pull(_) => Operation::Pull,
        Request::Stats => Operation::Stats,
        Request::RefreshToken(_) => Operation::TokenRefresh,
        Request::Goodbye => Operation::SessionEnd,
        Request::Update(_) => Operation::Update,
        Request::Delete(_) => Operation::Delete,
        Request::Get(_) => Operation::Get,
        Request::List(_) => Operation::List,
        Request::Exchange(_) => Operation::TokenExchange,
    }
}

/// The episodes a request names by id (stored, updated, deleted, read).
pub(crate) fn request_episodes(req: &Request) -> Vec<EpisodeId> {
    match req {
        Request::Store(s) => s.episodes.iter().filter_map(|e| e.id).collect(),
        Request::Update(u) => vec![u.id],
        Request::Delete(d) => vec![d.id],
        Request::Get(g) => vec![g.id],
        _ => Vec::new(),
    }
}

/// The episodes an answer names: those stored, found, listed or pulled; otherwise
/// `requested`.
fn response_episodes(response: &Response, requested: Vec<EpisodeId>) -> Vec<EpisodeId> {
    match response {
        Response::Stored(s) => s.results.iter().map(|r| r.id).collect(),
        Response::Matches(m) => m.matches.iter().map(|m| m.episode.id).collect(),
        Response::Listed(l) => l.episodes.iter().map(|e| e.id).collect(),
        Response::Page(p) => p
            .changes
            .iter()
            .map(|c| match &c.change {
                Change::Put(e) => e.id,
                Change::Deleted { id } => *id,
            })
            .collect(),
        _ => requested,
    }
}

/// A request executed (or refused) for `identity`: its operation, the episodes it named or
/// returned (ids only), its outcome and error code. The error's message is left out: it may
/// quote what the request carried.
pub(crate) fn operation(
    state: &HubState,
    identity: &VerifiedIdentity,
    operation: Operation,
    requested: Vec<EpisodeId>,
    response: &Response,
    request_id: &str,
) {
    let error = match response {
        Response::Error(e) => Some(e),
        _ => None,
    };
    let event = event(operation, error)
        .episodes(response_episodes(response, requested))
        .request_id(request_id);
    state.audit.record(by(event, identity));
}

/// A credential exchanged for a token (the QUIC `Exchange`, `POST /v1/token`), or refused.
pub(crate) fn exchange(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    result: &Result<agentdb_proto::TokenGrant, WireError>,
) {
    if !state.audit.is_enabled() {
        return;
    }
    let event = match result {
        Ok(grant) => {
            let mut event = AuditEvent::new(Operation::TokenExchange, Outcome::Ok)
                .tenant(grant.tenant.clone())
                .agent(grant.agent.to_string());
            if let Some(c) = certificate {
                event = event.identity(c.spiffe_uri());
            }
            event
        }
        Err(e) => by_parts(
            event(Operation::TokenExchange, Some(e)).detail(e.message.clone()),
            certificate,
            None,
        ),
    };
    state.audit.record(event);
}

/// A session's token refreshed or revoked (`token_refresh`, `session_end`, `revoke`).
pub(crate) fn session(
    state: &HubState,
    operation: Operation,
    identity: &VerifiedIdentity,
    error: Option<&WireError>,
) {
    if !state.audit.is_enabled() {
        return;
    }
    let mut event = event(operation, error);
    if let Some(e) = error {
        event = event.detail(e.message.clone());
    }
    state.audit.record(by(event, identity));
}

/// A federation link event: `federation_link_up`, `federation_link_down` or
/// `federation_link_refused`, with the peer hub when known.
pub(crate) fn link(
    state: &HubState,
    operation: Operation,
    peer: Option<&HubId>,
    failure: Option<&str>,
) {
    if !state.audit.is_enabled() {
        return;
    }
    let mut event =
        match (operation, failure) {
            (Operation::FederationLinkRefused, _) => AuditEvent::new(operation, Outcome::Refused)
                .error_code(ErrorCode::Forbidden.as_str()),
            (_, Some(_)) => AuditEvent::new(operation, Outcome::Failed)
                .error_code(ErrorCode::Unavailable.as_str()),
            (_, None) => AuditEvent::new(operation, Outcome::Ok),
        };
    let peer = peer.map(|p| format!("peer {p}"));
    event.detail = match (peer, failure) {
        (Some(p), Some(f)) => Some(format!("{p}: {f}")),
        (Some(p), None) => Some(p),
        (None, f) => f.map(str::to_owned),
    };
    state.audit.record(event);
}

/// A control record a peer sent, applied here (`Ok(true)`) or failed; records already held
/// and receipts are not recorded.
pub(crate) fn control(state: &HubState, record: &ControlRecord, result: &Result<bool, WireError>) {
    if !state.audit.is_enabled() || matches!(result, Ok(false)) {
        return;
    }
    let (operation, issuer) = match record {
        ControlRecord::Erasure(e) => match e.scope {
            ErasureScope::Tenant => (Operation::Erase, &e.issued_by),
            _ => (Operation::SubjectErase, &e.issued_by),
        },
        ControlRecord::Revocation(r) => (Operation::Revoke, &r.issued_by),
        ControlRecord::Receipt(_) => return,
    };
    let mut event = event(operation, result.as_ref().err())
        .detail(format!("{} from hub {issuer}", record.name()));
    if let Some(tenant) = record.tenant() {
        event = event.tenant(tenant.clone());
    }
    state.audit.record(event);
}

tokio::task_local! {
    /// What the handler of an admin call learnt for its record.
    static ADMIN_CALL: Arc<Mutex<AdminCall>>;
}

/// What an admin handler tells the middleware about its call.
#[derive(Debug, Default)]
struct AdminCall {
    /// The verified caller.
    caller: Option<(TenantId, String)>,
    /// A more precise operation than the route's.
    operation: Option<Operation>,
}

/// Notes the verified caller of the admin call being served (`admin::refusal`).
pub(crate) fn admin_caller(identity: &VerifiedIdentity) {
    let caller = (
        identity.claims.tenant.clone(),
        identity.claims.sub.to_string(),
    );
    let _ = ADMIN_CALL.try_with(|call| call.lock().caller = Some(caller));
}

/// Names the operation of the admin call being served, when its route alone does not tell
/// (a subject's erasure on the erase route).
pub(crate) fn admin_operation(operation: Operation) {
    let _ = ADMIN_CALL.try_with(|call| call.lock().operation = Some(operation));
}

/// The stable error code of an admin answer, attached by `admin::failure`.
#[derive(Debug, Clone)]
pub(crate) struct AdminErrorCode(pub String);

/// Middleware of the admin router: one record for every call to a `/v1/` route, with its
/// operation, the tenant it names, the verified caller, and its outcome and error code.
pub(crate) async fn admin_calls(
    State(state): State<Arc<HubState>>,
    req: HttpRequest,
    next: Next,
) -> HttpResponse {
    let path = req.uri().path().to_owned();
    if !state.audit.is_enabled() || !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let request_id = crate::request_id::of(req.extensions());
    let tenant = path_tenant(&path).or_else(|| query_tenant(req.uri().query()));
    let call = Arc::new(Mutex::new(AdminCall::default()));
    let response = ADMIN_CALL.scope(Arc::clone(&call), next.run(req)).await;
    let call = std::mem::take(&mut *call.lock());
    let status = response.status();
    let mut event = if status.is_success() {
        AuditEvent::new(
            call.operation
                .unwrap_or_else(|| admin_route_operation(&method, &path)),
            Outcome::Ok,
        )
    } else {
        let code = response
            .extensions()
            .get::<AdminErrorCode>()
            .map_or_else(|| status_code(status).to_owned(), |c| c.0.clone());
        let outcome = match status.as_u16() {
            401 | 403 | 413 | 429 => Outcome::Refused,
            _ => Outcome::Failed,
        };
        AuditEvent::new(
            call.operation
                .unwrap_or_else(|| admin_route_operation(&method, &path)),
            outcome,
        )
        .error_code(code)
    };
    let mut detail = format!("{method} {path}");
    if let Some((caller_tenant, agent)) = call.caller {
        if tenant.as_ref().is_some_and(|t| *t != caller_tenant) || tenant.is_none() {
            detail.push_str(&format!(" by tenant {caller_tenant}"));
        }
        event = event.agent(agent);
    }
    if let Some(t) = tenant {
        event = event.tenant(t);
    }
    state
        .audit
        .record(event.detail(detail).request_id(request_id.as_str()));
    response
}

/// The tenant of `/v1/tenants/{tenant}/…`.
fn path_tenant(path: &str) -> Option<TenantId> {
    let rest = path.strip_prefix("/v1/tenants/")?;
    let segment = rest.split('/').next()?;
    TenantId::new(segment).ok()
}

/// The `tenant` query parameter (`GET /v1/audit?tenant=…`).
fn query_tenant(query: Option<&str>) -> Option<TenantId> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("tenant="))
        .and_then(|t| TenantId::new(t).ok())
}

/// The operation of an admin route, by method and path.
fn admin_route_operation(method: &Method, path: &str) -> Operation {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let writes = *method != Method::GET && *method != Method::HEAD;
    match segments.as_slice() {
        ["v1", "tenants", _, "keys"] if *method == Method::POST => Operation::KeyCreate,
        ["v1", "tenants", _, "keys", _] if *method == Method::DELETE => Operation::KeyRevoke,
        ["v1", "tenants", _, "erase"] if writes => Operation::Erase,
        ["v1", "tenants", _, "quota"] if writes => Operation::Quota,
        ["v1", "revocations", ..] if writes => Operation::Revoke,
        _ if writes && segments.iter().any(|s| s.contains("retention")) => Operation::Retention,
        _ if writes && segments.iter().any(|s| s.contains("rewrap")) => Operation::MasterKeyRewrap,
        _ if writes
            && segments
                .iter()
                .any(|s| s.contains("rotat") || s.contains("reseal")) =>
        {
            Operation::KeyRotate
        }
        _ if writes && segments.iter().any(|s| s.contains("reindex")) => Operation::Reindex,
        _ => Operation::Admin,
    }
}

/// The stable error code of an answer that did not name one.
fn status_code(status: axum::http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 415 | 422 => ErrorCode::InvalidRequest.as_str(),
        401 => ErrorCode::Unauthenticated.as_str(),
        403 => ErrorCode::Forbidden.as_str(),
        404 => ErrorCode::NotFound.as_str(),
        413 => ErrorCode::TooLarge.as_str(),
        429 | 503 => ErrorCode::Overloaded.as_str(),
        _ => ErrorCode::Internal.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_routes_map_to_operations() {
        let op = |m: Method, p: &str| admin_route_operation(&m, p);
        assert_eq!(
            op(Method::POST, "/v1/tenants/acme/keys"),
            Operation::KeyCreate
        );
        assert_eq!(op(Method::GET, "/v1/tenants/acme/keys"), Operation::Admin);
        assert_eq!(
            op(Method::DELETE, "/v1/tenants/acme/keys/k1"),
            Operation::KeyRevoke
        );
        assert_eq!(op(Method::POST, "/v1/tenants/acme/erase"), Operation::Erase);
        assert_eq!(op(Method::PUT, "/v1/tenants/acme/quota"), Operation::Quota);
        assert_eq!(op(Method::POST, "/v1/revocations"), Operation::Revoke);
        assert_eq!(op(Method::GET, "/v1/revocations"), Operation::Admin);
        assert_eq!(
            op(Method::PUT, "/v1/tenants/acme/retention"),
            Operation::Retention
        );
        assert_eq!(
            op(Method::POST, "/v1/tenants/acme/keys/rotate"),
            Operation::KeyRotate
        );
        assert_eq!(op(Method::GET, "/v1/audit"), Operation::Admin);
    }

    #[test]
    fn the_tenant_comes_from_the_path_or_the_query() {
        assert_eq!(
            path_tenant("/v1/tenants/acme/stats").map(|t| t.to_string()),
            Some("acme".to_owned())
        );
        assert!(path_tenant("/v1/federation").is_none());
        assert_eq!(
            query_tenant(Some("since=5&tenant=acme")).map(|t| t.to_string()),
            Some("acme".to_owned())
        );
        assert!(query_tenant(Some("tenant=a%2Fb")).is_none());
        assert!(query_tenant(None).is_none());
    }

    #[test]
    fn refusals_and_failures_are_told_apart() {
        assert_eq!(outcome_of(ErrorCode::Forbidden), Outcome::Refused);
        assert_eq!(outcome_of(ErrorCode::TokenExpired), Outcome::Refused);
        assert_eq!(outcome_of(ErrorCode::QuotaExceeded), Outcome::Refused);
        assert_eq!(outcome_of(ErrorCode::Internal), Outcome::Failed);
        assert_eq!(outcome_of(ErrorCode::InvalidRequest), Outcome::Failed);
    }
}
