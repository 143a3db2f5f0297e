//! One agent connection: the thin async driver around the sans-IO `ServerSession`.
//!
//! Each request arrives on its own bi-stream: read it whole (bounded by the frame limit), feed it
//! to the session, act on the step it returns, write one response frame and finish the stream.
//! Authentication and token refresh happen in order on the connection task; data requests run
//! concurrently as tasks owned by the connection, which waits for them before it ends (so a
//! shutdown never drops an acknowledgement that is being written).

use std::sync::Arc;
use std::time::Duration;

use agentdb_audit::Operation;
use agentdb_proto::{
    Close, ErrorCode, Response, ServerSession, SessionConfig, Step, Welcome, WireError,
};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy::VerifiedIdentity;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{self, error};
use crate::ops;
use crate::state::{unix_ms, AgentSlot, HubState};

/// QUIC application close code for an orderly close.
const CLOSE_OK: u32 = 0;
/// Longest a client may take to send one request, or to take one response.
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve(
    state: Arc<HubState>,
    incoming: quinn::Incoming,
    mut shutdown: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            auth::count_handshake_failure(&state, "quic", remote, &e.to_string());
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() == Some(agentdb_proto::fed::FED_ALPN) {
        crate::federation::serve_inbound(state, conn, shutdown).await;
        return;
    }
    state.metrics.connections_total.inc();
    let certificate = match auth::certificate_identity(&state, &conn) {
        Ok(c) => c,
        Err(e) => {
            auth::count_failure(&state, &e);
            conn.close(
                quinn::VarInt::from_u32(u32::from(e.code.to_u16())),
                e.message.as_bytes(),
            );
            return;
        }
    };
    let limits = &state.config.limits;
    let mut session = ServerSession::new(
        unix_ms(),
        SessionConfig {
            auth_timeout_ms: limits.auth_timeout.as_millis() as u64,
            max_frame_len: limits.max_frame_len,
            ..SessionConfig::default()
        },
    );
    let mut identity: Option<Arc<VerifiedIdentity>> = None;
    let mut slot: Option<AgentSlot> = None;
    let mut requests = JoinSet::new();
    let close = loop {
        let timeout = session
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(unix_ms()))
            });
        tokio::select! {
            _ = shutdown.changed() => break None,
            _ = tokio::time::sleep(timeout) => {
                if let Some(close) = session.handle_timeout(unix_ms()) {
                    if let Some(code) = close.code.filter(|_| !session.is_authenticated()) {
                        let e = error(code, close.reason.clone());
                        auth::count_failure(&state, &e);
                        crate::audit::authentication_refused(&state, certificate.as_ref(), None, &e);
                    }
                    break Some(close);
                }
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            stream = conn.accept_bi() => {
                let Ok((mut send, mut recv)) = stream else { break None };
                let read = tokio::time::timeout(STREAM_TIMEOUT, recv.read_to_end(limits.max_frame_len));
                let bytes = match read.await {
                    Err(_) => {
                        // Slow, not wrong: a passing failure the client retries (its spool
                        // keeps the episodes of a store that timed out).
                        let e = error(ErrorCode::Unavailable, "request not completed in time");
                        respond(&mut send, &Response::Error(e).encode()).await;
                        continue;
                    }
                    Ok(Ok(b)) => b,
                    Ok(Err(quinn::ReadToEndError::TooLong)) => {
                        let e = error(ErrorCode::TooLarge, format!("frame exceeds {} bytes", limits.max_frame_len));
                        respond(&mut send, &Response::Error(e).encode()).await;
                        continue;
                    }
                    Ok(Err(_)) => continue,
                };
                match session.handle_stream(unix_ms(), &bytes) {
                    Step::Authenticate(hello) => {
                        let result = auth::verify(&state, certificate.as_ref(), &hello.token)
                            .and_then(|id| {
                                let admitted = state.admit(&id.claims.tenant).ok_or_else(|| {
                                    let e = error(ErrorCode::Overloaded, "the hub is at its agent limit; retry later");
                                    crate::audit::authentication_refused(&state, id.certificate.as_ref(), Some(&id.claims), &e);
                                    e
                                })?;
                                Ok((id, admitted))
                            });
                        let result = match result {
                            Ok((id, admitted)) => {
                                let welcome = welcome(&state, &id);
                                identity = Some(Arc::new(id));
                                slot = Some(admitted);
                                Ok(welcome)
                            }
                            Err(e) => {
                                auth::count_failure(&state, &e);
                                Err(e)
                            }
                        };
                        let failed = result.is_err();
                        let frame = session.handle_auth(unix_ms(), result);
                        if failed || session.is_closed() {
                            respond_confirmed(&mut send, &frame).await;
                        } else {
                            respond(&mut send, &frame).await;
                        }
                        if failed || session.is_closed() {
                            break Some(session.close_reason().cloned().unwrap_or(Close {
                                code: Some(ErrorCode::Unauthenticated),
                                reason: "authentication failed".into(),
                            }));
                        }
                    }
                    Step::Dispatch(req) => {
                        let Some(id) = identity.clone() else { continue };
                        let st = Arc::clone(&state);
                        requests.spawn(async move {
                            let response = ops::execute(st, id, req, None).await;
                            respond_confirmed(&mut send, &response.encode()).await;
                        });
                    }
                    Step::Refresh(refresh) => {
                        let result = match &identity {
                            Some(current) => {
                                let result = refreshed(&state, certificate.as_ref(), current, &refresh.token);
                                let failure = result.as_ref().err();
                                crate::audit::session(&state, Operation::TokenRefresh, current, failure);
                                result.map(|(id, exp)| { identity = Some(Arc::new(id)); exp })
                            }
                            None => Err(error(ErrorCode::Unauthenticated, "not authenticated")),
                        };
                        let frame = session.handle_token_refreshed(unix_ms(), result);
                        respond(&mut send, &frame).await;
                    }
                    Step::Exchange(request) => {
                        let st = Arc::clone(&state);
                        let cert = certificate.clone();
                        let result = tokio::task::spawn_blocking(move || {
                            crate::credentials::exchange(&st, cert.as_ref(), &request)
                        })
                        .await
                        .unwrap_or_else(|_| Err(error(ErrorCode::Internal, "token exchange failed")));
                        let frame = session.handle_exchanged(unix_ms(), result);
                        respond(&mut send, &frame).await;
                    }
                    Step::Reply(frame) => respond(&mut send, &frame).await,
                    Step::ReplyAndClose(frame, close) => {
                        // A close without an error code is the answer to Goodbye. An agent that
                        // said goodbye is done: its token is revoked until it expires, durably,
                        // before the answer leaves, so no later connection can still use it.
                        if let (Some(id), None) = (&identity, close.code) {
                            let revoked = state.revoke(&id.claims.jti, id.claims.exp).await;
                            let failure = revoked
                                .is_err()
                                .then(|| error(ErrorCode::Internal, "revocation failed"));
                            crate::audit::session(&state, Operation::SessionEnd, id, failure.as_ref());
                        }
                        respond_confirmed(&mut send, &frame).await;
                        if let Some(code) = close.code.filter(|_| !session.is_authenticated()) {
                            let e = error(code, close.reason.clone());
                            auth::count_failure(&state, &e);
                            crate::audit::authentication_refused(&state, certificate.as_ref(), None, &e);
                        }
                        break Some(close);
                    }
                    Step::Closed => break session.close_reason().cloned(),
                }
            }
        }
    };
    // Drain: every request already accepted gets its answer.
    while requests.join_next().await.is_some() {}
    match close {
        Some(c) => conn.close(
            quinn::VarInt::from_u32(c.app_error_code()),
            c.reason.as_bytes(),
        ),
        None => conn.close(quinn::VarInt::from_u32(CLOSE_OK), b"hub shutting down"),
    }
    drop(slot);
}

async fn respond(send: &mut quinn::SendStream, frame: &[u8]) {
    // Queued data is delivered for as long as the connection lives; nothing here waits on the
    // peer, so a vanished client cannot hold a request task (or a shutdown) hostage.
    if let Ok(Ok(())) = tokio::time::timeout(STREAM_TIMEOUT, send.write_all(frame)).await {
        let _ = send.finish();
    }
}

/// Like [`respond`], then waits (at most a second) until the peer has the bytes: used for the
/// last answer before a close and by request tasks, which the connection drains before it
/// closes — closing discards anything still unsent.
async fn respond_confirmed(send: &mut quinn::SendStream, frame: &[u8]) {
    respond(send, frame).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
}

fn welcome(state: &HubState, id: &VerifiedIdentity) -> Welcome {
    Welcome {
        agent: id.claims.sub.clone(),
        tenant: id.claims.tenant.clone(),
        hub: state.config.hub_id.clone(),
        session: agentdb_core::SessionId::from_random(*uuid::Uuid::new_v4().as_bytes()),
        expires_at: id.claims.exp,
        embedder: state.engine.embedder().model().clone(),
    }
}

/// A refreshed token must name the same tenant and agent as the session's.
fn refreshed(
    state: &Arc<HubState>,
    certificate: Option<&PeerIdentity>,
    current: &VerifiedIdentity,
    token: &str,
) -> Result<(VerifiedIdentity, u64), WireError> {
    let id = auth::verify(state, certificate, token)?;
    if id.claims.tenant != current.claims.tenant || id.claims.sub != current.claims.sub {
        return Err(error(
            ErrorCode::TenantMismatch,
            "a refreshed token must name the same tenant and agent",
        ));
    }
    // The old token is no longer needed by this session.
    // Revoked in memory at once; written to the data in the background.
    drop(state.revoke(&current.claims.jti, current.claims.exp));
    let exp = id.claims.exp;
    Ok((id, exp))
}
