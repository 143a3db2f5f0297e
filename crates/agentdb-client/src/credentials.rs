//! Where an agent's tokens come from.

use agentdb_core::{AgentId, TenantId};
use agentdb_security::token::{Scope, TokenIssuer, TokenRequest};

/// A source of tokens for an agent. Called at spawn and whenever the current token nears its
/// expiry.
pub trait TokenProvider: Send + Sync + 'static {
    /// A token for `agent` of `tenant`, valid now (`now` in Unix seconds).
    fn token(&self, tenant: &TenantId, agent: &AgentId, now: u64) -> Result<String, String>;
}

/// One fixed token (it cannot be refreshed; the agent lives at most as long as the token).
#[derive(Debug, Clone)]
pub struct StaticToken(pub String);

impl TokenProvider for StaticToken {
    fn token(&self, _: &TenantId, _: &AgentId, _: u64) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// Mints tokens with a signing key the agent holds (a trusted workload or development setups).
#[derive(Debug)]
pub struct SigningKeyTokens {
    issuer: TokenIssuer,
    ttl_secs: u64,
    scopes: Vec<Scope>,
    audience: Option<String>,
}

impl SigningKeyTokens {
    /// Tokens from `issuer`, each valid `ttl_secs`, with the default scopes.
    pub fn new(issuer: TokenIssuer, ttl_secs: u64) -> Self {
        Self {
            issuer,
            ttl_secs,
            scopes: Scope::DEFAULT.to_vec(),
            audience: None,
        }
    }

    /// Sets the scopes.
    pub fn scopes(mut self, scopes: Vec<Scope>) -> Self {
        self.scopes = scopes;
        self
    }

    /// Sets the audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
}

impl TokenProvider for SigningKeyTokens {
    fn token(&self, tenant: &TenantId, agent: &AgentId, now: u64) -> Result<String, String> {
        let mut req = TokenRequest::new(tenant.clone(), agent.clone())
            .scopes(self.scopes.clone())
            .ttl_secs(self.ttl_secs);
        if let Some(a) = &self.audience {
            req = req.audience(a.clone());
        }
        self.issuer.issue(&req, now).map_err(|e| e.to_string())
    }
}
