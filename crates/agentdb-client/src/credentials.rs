//! Where an agent's tokens come from: a [`TokenProvider`], or a tenant API key the agent trades
//! at its hub ([`crate::AgentConfig::with_api_key`]).

use agentdb_core::{AgentId, TenantId};
use agentdb_security::apikey::ApiKeySecret;
use agentdb_security::token::{Scope, TokenIssuer, TokenRequest};

use crate::spool_key::{SpoolKey, SpoolKeyError};

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

/// The token provider of an agent configured with an API key: it never mints a token itself
/// (the agent exchanges the key at the hub instead), so being asked for one is an error.
#[derive(Debug)]
pub(crate) struct ExchangeOnly;

impl TokenProvider for ExchangeOnly {
    fn token(&self, _: &TenantId, _: &AgentId, _: u64) -> Result<String, String> {
        Err("this agent gets its tokens by exchanging its API key at the hub".to_owned())
    }
}

impl SpoolKey {
    /// Derives the key from a tenant API key (as [`SpoolKey::derive`] over the key's text): the
    /// key an agent with an API key and no client key seals its spool with. A spool sealed
    /// this way cannot be read after the API key is replaced.
    pub fn from_api_key(key: &ApiKeySecret) -> Result<Self, SpoolKeyError> {
        Self::derive(key.expose().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_seals_a_spool_of_its_own_and_mints_nothing() {
        let a = ApiKeySecret::generate().unwrap();
        let b = ApiKeySecret::generate().unwrap();
        let ka = SpoolKey::from_api_key(&a).unwrap();
        assert_eq!(
            ka.bytes(),
            SpoolKey::from_api_key(&a.clone()).unwrap().bytes()
        );
        assert_ne!(ka.bytes(), SpoolKey::from_api_key(&b).unwrap().bytes());
        let tenant = TenantId::new("acme").unwrap();
        let agent = AgentId::new("a1").unwrap();
        assert!(ExchangeOnly.token(&tenant, &agent, 0).is_err());
    }
}
