//! Turning a connection's certificate and Hello token into a verified identity. Whether that
//! identity may do something is decided by `agentdb_security::policy`, nowhere else.

use agentdb_proto::{ErrorCode, WireError};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::policy::{self, PolicyError, VerifiedIdentity};
use agentdb_security::token::{Claims, VerifyError};

use crate::metrics::ReasonLabels;
use crate::state::{unix_secs, HubState};

/// The identity the certificate of a QUIC connection proves, if the peer presented one.
pub(crate) fn certificate_identity(
    state: &HubState,
    conn: &quinn::Connection,
) -> Result<Option<PeerIdentity>, WireError> {
    let Some(any) = conn.peer_identity() else {
        return Ok(None);
    };
    let Ok(chain) = any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>() else {
        return Ok(None);
    };
    chain_identity(state, Some(&chain))
}

/// The identity the leaf of a verified client certificate chain proves (QUIC and HTTPS,
/// agents and hubs alike); a revoked certificate is refused here. A refusal is audited.
pub(crate) fn chain_identity(
    state: &HubState,
    chain: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<Option<PeerIdentity>, WireError> {
    let Some(leaf) = chain.and_then(|c| c.first()) else {
        return Ok(None);
    };
    let result = leaf_identity(state, leaf);
    if let Err(e) = &result {
        let named = PeerIdentity::from_der(leaf).ok();
        crate::audit::authentication_refused(state, named.as_ref(), None, e);
    }
    result.map(Some)
}

fn leaf_identity(
    state: &HubState,
    leaf: &rustls::pki_types::CertificateDer<'static>,
) -> Result<PeerIdentity, WireError> {
    let refused = |e: agentdb_security::identity::IdentityError| {
        error(
            ErrorCode::Unauthenticated,
            format!("client certificate: {e}"),
        )
    };
    let serial = agentdb_security::identity::certificate_serial(leaf).map_err(refused)?;
    state.revocations.check_certificate(&serial)?;
    // A resumed TLS session was not verified again: its certificate may have expired since.
    agentdb_security::identity::check_validity(leaf, unix_secs()).map_err(refused)?;
    PeerIdentity::from_der(leaf).map_err(refused)
}

/// Counts and audits a failed TLS handshake on `transport` (`quic`, `https`) from `remote`:
/// no certificate when one is required, another CA, a wrong ALPN, a stalled client.
pub(crate) fn count_handshake_failure(
    state: &HubState,
    transport: &str,
    remote: std::net::SocketAddr,
    why: &str,
) {
    crate::audit::handshake_refused(state, transport, remote, why);
    state
        .metrics
        .auth_failures
        .get_or_create(&ReasonLabels {
            reason: "tls_handshake",
        })
        .inc();
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

/// Verifies `token` and checks it against the certificate identity. The QUIC Hello, token
/// refresh and every HTTPS request use this one function. Every call is audited, accepted or
/// refused.
pub(crate) fn verify(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    token: &str,
) -> Result<VerifiedIdentity, WireError> {
    if let Err(e) = check_transport(state, certificate) {
        crate::audit::authentication_refused(state, certificate, None, &e);
        return Err(e);
    }
    identity(state, certificate, token)
}

/// Refuses a caller without a client certificate when the hub requires one.
pub(crate) fn check_transport(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
) -> Result<(), WireError> {
    if state.config.require_client_cert && certificate.is_none() {
        return Err(error(
            ErrorCode::Unauthenticated,
            "a client certificate is required",
        ));
    }
    Ok(())
}

/// Whether an identity verified earlier still holds now: its token has not expired and has
/// not been revoked since. Long-lived answers (event streams) ask before each page. A refusal
/// is audited; an identity still valid is not recorded again.
pub(crate) fn still_valid(state: &HubState, identity: &VerifiedIdentity) -> Result<(), WireError> {
    let result = still_holds(state, identity);
    if let Err(e) = &result {
        crate::audit::authentication_refused(
            state,
            identity.certificate.as_ref(),
            Some(&identity.claims),
            e,
        );
    }
    result
}

fn still_holds(state: &HubState, identity: &VerifiedIdentity) -> Result<(), WireError> {
    let now = unix_secs();
    let claims = &identity.claims;
    if now
        >= claims
            .exp
            .saturating_add(agentdb_security::token::MAX_CLOCK_SKEW_SECS)
    {
        return Err(verify_error(&VerifyError::Expired {
            exp: claims.exp,
            now,
        }));
    }
    if state.revoked.is_revoked(&claims.jti, now) {
        return Err(error(ErrorCode::Unauthenticated, "token has been revoked"));
    }
    state.revocations.check_claims(claims)
}

/// Counts a refused credential in the metrics, by code.
pub(crate) fn count_failure(state: &HubState, e: &WireError) {
    state
        .metrics
        .auth_failures
        .get_or_create(&ReasonLabels {
            reason: e.code.as_str(),
        })
        .inc();
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

/// The token checks every transport shares, then the certificate/token agreement; audited,
/// accepted or refused.
fn identity(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    token: &str,
) -> Result<VerifiedIdentity, WireError> {
    match checked_identity(state, certificate, token) {
        Ok(identity) => {
            crate::audit::authenticated(state, &identity);
            Ok(identity)
        }
        Err((e, claims)) => {
            crate::audit::authentication_refused(state, certificate, claims.as_deref(), &e);
            Err(e)
        }
    }
}

/// [`identity`]'s checks; a refusal carries the token's claims when the token itself
/// verified.
fn checked_identity(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    token: &str,
) -> Result<VerifiedIdentity, (WireError, Option<Box<Claims>>)> {
    let now = unix_secs();
    let claims = state
        .tokens
        .verify(token, now)
        .map_err(|e| (verify_error(&e), None))?;
    if state.revoked.is_revoked(&claims.jti, now) {
        return Err((
            error(ErrorCode::Unauthenticated, "token has been revoked"),
            Some(Box::new(claims)),
        ));
    }
    if let Err(e) = state.revocations.check_claims(&claims) {
        return Err((e, Some(Box::new(claims))));
    }
    let identity = VerifiedIdentity {
        certificate: certificate.cloned(),
        claims,
    };
    match policy::check_identity(&identity) {
        Ok(()) => Ok(identity),
        Err(e) => Err((policy_error(&e), Some(Box::new(identity.claims)))),
    }
}
