//! Operators' revocations of credentials, as hubs keep them and pass them on.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, HubId, TenantId};

/// What an operator revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revoked {
    /// One token, by its id (`jti`), until it would have expired (Unix seconds).
    Token {
        /// The token id.
        jti: String,
        /// The token's expiry: the revocation matters until then.
        expires: u64,
    },
    /// Every token of an agent of a tenant issued at or before `issued_until` (Unix seconds).
    Agent {
        /// The tenant.
        tenant: TenantId,
        /// The agent.
        agent: AgentId,
        /// Tokens issued up to this time are refused.
        issued_until: u64,
    },
    /// A tenant API key, by its id: it yields no token any more.
    ApiKey {
        /// The tenant.
        tenant: TenantId,
        /// The key id (16 hex characters).
        id: String,
    },
    /// A client or hub certificate, by serial number (lower-case hex, no separators): no
    /// connection presenting it is served.
    Certificate {
        /// The serial number.
        serial: String,
    },
}

/// An operator's revocation, as hubs keep and pass it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub revoked: Revoked,
    /// The hub where the operator revoked it.
    pub issued_by: HubId,
    /// When, Unix ms.
    pub issued_ms: u64,
}

impl Revocation {
    /// A name unique to what is revoked (an agent's revocations are told apart by time).
    pub fn name(&self) -> String {
        match &self.revoked {
            Revoked::Token { jti, .. } => format!("revocation/token/{jti}"),
            Revoked::Agent {
                tenant,
                agent,
                issued_until,
            } => format!("revocation/agent/{tenant}/{agent}/{issued_until}"),
            Revoked::ApiKey { tenant, id } => format!("revocation/api-key/{tenant}/{id}"),
            Revoked::Certificate { serial } => format!("revocation/certificate/{serial}"),
        }
    }

    /// The tenant the revocation concerns, if one (a token's or a certificate's is not known
    /// from the record: those go to every hub).
    pub fn tenant(&self) -> Option<&TenantId> {
        match &self.revoked {
            Revoked::Agent { tenant, .. } | Revoked::ApiKey { tenant, .. } => Some(tenant),
            Revoked::Token { .. } | Revoked::Certificate { .. } => None,
        }
    }
}
