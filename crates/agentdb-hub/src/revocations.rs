//! Operators' revocations on a running hub: a token (by id), an agent (every token of it
//! issued so far), an API key, or a certificate (by serial number). Each is kept as a control
//! record (sealed setting named by [`Revocation::name`]), takes effect at once, survives
//! restarts and is passed on to every federated hub, which applies it in turn.
//!
//! Checks: a token's id and its agent in [`crate::auth`]'s one token check (QUIC, HTTPS and
//! admin HTTP alike); a certificate's serial wherever a connection's certificate is read
//! (agents over QUIC and HTTPS, federation links); an API key by the key record itself (a
//! revoked key yields no token).

use std::collections::{HashMap, HashSet};

use agentdb_core::{AgentId, ControlRecord, Revocation, Revoked, TenantId};
use agentdb_proto::{ErrorCode, WireError};
use agentdb_security::token::Claims;
use parking_lot::RwLock;

use crate::auth::error;
use crate::state::{unix_ms, unix_secs, HubState};

/// The sealed-setting prefix of revocation records.
const PREFIX: &str = "revocation/";

/// What is revoked besides token ids (those live in the hub's `RevocationList`).
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    /// (tenant, agent) → tokens issued up to this time (Unix seconds) are refused.
    agents: RwLock<HashMap<(TenantId, AgentId), u64>>,
    /// Revoked certificate serial numbers, lower-case hex.
    certificates: RwLock<HashSet<String>>,
}

impl Revocations {
    /// Refuses a token of a revoked agent.
    pub fn check_claims(&self, claims: &Claims) -> Result<(), WireError> {
        let key = (claims.tenant.clone(), claims.sub.clone());
        match self.agents.read().get(&key) {
            Some(&until) if claims.iat <= until => Err(error(
                ErrorCode::Unauthenticated,
                format!(
                    "agent {} of tenant {} has been revoked",
                    claims.sub, claims.tenant
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a revoked certificate.
    pub fn check_certificate(&self, serial: &str) -> Result<(), WireError> {
        if self.certificates.read().contains(serial) {
            return Err(error(
                ErrorCode::Unauthenticated,
                format!("the certificate with serial {serial} has been revoked"),
            ));
        }
        Ok(())
    }

    /// Records `revoked` in memory (tokens go to the hub's token list).
    fn remember(&self, state: &HubState, revoked: &Revoked) {
        match revoked {
            Revoked::Token { jti, expires } => state.revoked.revoke(jti.clone(), *expires),
            Revoked::Agent {
                tenant,
                agent,
                issued_until,
            } => {
                let mut agents = self.agents.write();
                let entry = agents.entry((tenant.clone(), agent.clone())).or_insert(0);
                *entry = (*entry).max(*issued_until);
            }
            Revoked::Certificate { serial } => {
                self.certificates.write().insert(serial.clone());
            }
            Revoked::ApiKey { .. } => {}
        }
    }
}

/// Revokes `revoked` on this hub, keeps it, and passes it on to the federation.
pub(crate) fn issue(state: &HubState, revoked: Revoked) -> Result<Revocation, WireError> {
    let revocation = Revocation {
        revoked,
        issued_by: state.config.hub_id.clone(),
        issued_ms: unix_ms(),
    };
    apply(state, &revocation)?;
    state.federation.notify_control();
    Ok(revocation)
}

/// Applies a revocation here and keeps it (as a control record, so that it is passed on).
pub(crate) fn apply(state: &HubState, revocation: &Revocation) -> Result<(), WireError> {
    if let Revoked::ApiKey { tenant, id } = &revocation.revoked {
        // A key this hub does not hold (keys are kept per hub, or per shared database) has
        // nothing to revoke here; the record is kept and passed on all the same.
        state.credentials.revoke_key(&state.engine, tenant, id)?;
    }
    state.revocations.remember(state, &revocation.revoked);
    let record = ControlRecord::Revocation(revocation.clone());
    let value = postcard::to_stdvec(&record)
        .map_err(|e| error(ErrorCode::Internal, format!("encoding a revocation: {e}")))?;
    state
        .engine
        .put_sealed_setting(&record.name(), &value)
        .map_err(|e| error(ErrorCode::Internal, format!("keeping a revocation: {e}")))
}

/// The revocations kept in the hub's data.
pub(crate) fn records(state: &HubState) -> Result<Vec<Revocation>, String> {
    let mut out = Vec::new();
    for (name, value) in state
        .engine
        .sealed_settings(PREFIX)
        .map_err(|e| e.to_string())?
    {
        match postcard::from_bytes::<ControlRecord>(&value) {
            Ok(ControlRecord::Revocation(r)) => out.push(r),
            Ok(_) => return Err(format!("{name} is not a revocation")),
            Err(e) => return Err(format!("revocation {name} does not decode: {e}")),
        }
    }
    Ok(out)
}

/// Loads the revocations kept in the hub's data into memory: at start, and each second on a
/// hub over a shared database (what another hub of the group issued). Loading one again
/// changes nothing.
pub(crate) fn load(state: &HubState) -> Result<usize, String> {
    let records = records(state)?;
    let now = unix_secs();
    for r in &records {
        match &r.revoked {
            // A token past its expiry needs no entry.
            Revoked::Token { expires, .. }
                if !agentdb_security::revocation::live(*expires, now) => {}
            revoked => state.revocations.remember(state, revoked),
        }
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use agentdb_security::identity::{certificate_serial, normalize_serial};

    #[test]
    fn the_serial_of_an_issued_certificate_is_read() {
        let pki = agentdb_testkit::TestPki::new();
        let (cert_pem, _) = pki.tenant_cert("acme");
        let der =
            agentdb_security::signing::certificate_der(&cert_pem).unwrap_or_else(|e| panic!("{e}"));
        let serial = certificate_serial(&der).unwrap_or_else(|e| panic!("{e}"));
        assert!(serial.len() > 8 && serial.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(normalize_serial(&serial), serial);
    }
}
