//! Turning a connection's certificate and Hello token into a verified identity. Whether that
//! identity may do something is decided by `agentdb_security::policy`, nowhere else.

use agentdb_proto::{ErrorCode, WireError};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy::{self, PolicyError, VerifiedIdentity};
use agentdb_security::token::VerifyError;

use crate::state::{unix_secs, HubState};

/// The identity the certificate proves, if the peer presented one.
pub(crate) fn certificate_identity(
    conn: &quinn::Connection,
) -> Result<Option<PeerIdentity>, WireError> {
    let Some(any) = conn.peer_identity() else {
        return Ok(None);
    };
    let Ok(chain) = any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>() else {
        return Ok(None);
    };
    let Some(leaf) = chain.first() else {
        return Ok(None);
    };
    PeerIdentity::from_der(leaf).map(Some).map_err(|e| {
        error(
            ErrorCode::Unauthenticated,
            format!("client certificate: {e}"),
        )
    })
}

pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError {
        code,
        message: message.into(),
    }
}

pub(crate) fn verify_error(e: &VerifyError) -> WireError {
    let code = match e {
        VerifyError::Expired { .. } => ErrorCode::TokenExpired,
        _ => ErrorCode::Unauthenticated,
    };
    error(code, e.to_string())
}

pub(crate) fn policy_error(e: &PolicyError) -> WireError {
    let code = match e {
        PolicyError::TenantMismatch { .. } | PolicyError::CertificateTenantMismatch { .. } => {
            ErrorCode::TenantMismatch
        }
        _ => ErrorCode::Forbidden,
    };
    error(code, e.to_string())
}

/// Verifies `token` and checks it against the certificate identity.
pub(crate) fn verify(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    token: &str,
) -> Result<VerifiedIdentity, WireError> {
    if state.config.require_client_cert && certificate.is_none() {
        return Err(error(
            ErrorCode::Unauthenticated,
            "a client certificate is required",
        ));
    }
    identity(state, certificate, token)
}

/// Verifies `token` (signature, expiry, audience, revocation) for a caller that presented no
/// certificate because its transport cannot carry one: the plain-HTTP admin listener, which
/// answers tenant-revealing requests only to loopback callers when client certificates are
/// required.
pub(crate) fn verify_uncertified(
    state: &HubState,
    token: &str,
) -> Result<VerifiedIdentity, WireError> {
    identity(state, None, token)
}

/// The token checks every transport shares, then the certificate/token agreement.
fn identity(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    token: &str,
) -> Result<VerifiedIdentity, WireError> {
    let now = unix_secs();
    let claims = state
        .verifier
        .verify(token, now)
        .map_err(|e| verify_error(&e))?;
    if state.revoked.is_revoked(&claims.jti, now) {
        return Err(error(ErrorCode::Unauthenticated, "token has been revoked"));
    }
    let identity = VerifiedIdentity {
        certificate: certificate.cloned(),
        claims,
    };
    policy::check_identity(&identity).map_err(|e| policy_error(&e))?;
    Ok(identity)
}
