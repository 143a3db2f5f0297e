//! Credentials worth one tenant: API keys, and the exchange of a key or of a client
//! certificate naming a tenant for a short-lived token signed by this hub.
//!
//! ```text
//! operator: agentdb tenant key create --tenant acme ──admin HTTP──► create_key
//!              prints adb_<id>_<secret> once; the hub keeps HMAC(secret) under api-key/<id>, sealed
//! agent:    POST /v1/token  Authorization: ApiKey adb_…   ─┐
//!           QUIC Exchange { api_key }                      ─┴─► exchange ─► JWT (kid hub/<hub>, ≤ key's scope, 5 min)
//! ```
//!
//! The hub's own signing key is an Ed25519 key kept sealed in its data (`token-signing-key`),
//! made on first start. Tokens it signs carry the key id `hub/<hub id>` and are accepted by this
//! hub only (other hubs do not hold its public key); the operator's key stays the only one
//! that other hubs accept. A key is looked up by its id and checked by keyed hash in constant
//! time; a revoked or expired key yields no new token from the moment it is revoked, while
//! tokens already issued run out within their (short) lifetime.

use std::str::FromStr;

use agentdb_core::{AgentId, TenantId};
use agentdb_memory::MemoryEngine;
use agentdb_proto::{ErrorCode, ExchangeRequest, TokenGrant, WireError};
use agentdb_security::apikey::{ApiKeyHasher, ApiKeyId, ApiKeySecret};
use agentdb_security::identity::PeerIdentity;
use agentdb_security::token::{
    Ed25519KeyPem, Scope, TokenIssuer, TokenRequest, TokenVerifier, DEFAULT_TTL_SECS,
};
use serde::{Deserialize, Serialize};

use crate::auth::{self, error};
use crate::state::{unix_secs, HubState};

/// Where keys live among the hub's sealed settings: `api-key/<id>`.
const KEY_PREFIX: &str = "api-key/";
/// The sealed setting that holds the hub's token signing key (PKCS#8 PEM).
const SIGNING_KEY: &str = "token-signing-key";
/// The label the API-key hashing key is derived under from the master key.
const HASH_LABEL: &str = "agentdb api-key hash v1";
/// Longest lifetime of an exchanged token: one hour.
pub const MAX_EXCHANGE_TTL_SECS: u64 = 3600;
/// Scopes a token from a tenant certificate gets (no API key to bound it).
const CERTIFICATE_SCOPES: [Scope; 3] = Scope::DEFAULT;

/// What the hub knows of an API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The key's id (the public part of the key).
    pub id: String,
    /// The tenant its tokens are for.
    pub tenant: TenantId,
    /// The most its tokens may grant.
    pub scopes: Vec<Scope>,
    /// A note for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// When it stops working (Unix seconds), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// When it was revoked (Unix seconds), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
}

/// A key as stored: what is known of it and the keyed hash of its secret.
#[derive(Debug, Serialize, Deserialize)]
struct StoredKey {
    info: ApiKeyInfo,
    hash: Vec<u8>,
}

/// A new key: its secret (shown once) and what is kept of it.
#[derive(Debug)]
pub struct NewApiKey {
    /// The secret to hand to the agent.
    pub secret: ApiKeySecret,
    /// What the hub keeps.
    pub info: ApiKeyInfo,
}

/// The hub's signing key and key hasher.
pub(crate) struct Credentials {
    issuer: TokenIssuer,
    hasher: ApiKeyHasher,
    audience: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// The key id of tokens signed by hub `hub`.
fn key_id(hub: &agentdb_core::HubId) -> String {
    format!("hub/{hub}")
}

impl Credentials {
    /// Loads the hub's signing key (making it on first start) and returns it with the
    /// verifier of the tokens it signs.
    pub fn load(
        engine: &MemoryEngine,
        hub: &agentdb_core::HubId,
        audience: &str,
    ) -> Result<(Self, TokenVerifier), String> {
        let private = match engine
            .sealed_setting(SIGNING_KEY)
            .map_err(|e| format!("cannot read the hub's signing key: {e}"))?
        {
            Some(pem) => pem.to_vec(),
            None => {
                let pair = Ed25519KeyPem::generate().map_err(|e| e.to_string())?;
                engine
                    .put_sealed_setting(SIGNING_KEY, pair.private_pem.as_bytes())
                    .map_err(|e| format!("cannot store the hub's signing key: {e}"))?;
                pair.private_pem.as_bytes().to_vec()
            }
        };
        let kid = key_id(hub);
        let issuer = TokenIssuer::from_ed25519_pem(&private)
            .map_err(|e| format!("the hub's signing key: {e}"))?
            .with_key_id(kid.clone());
        let public = public_pem(&private)?;
        let verifier = TokenVerifier::from_ed25519_public_pem(public.as_bytes())
            .map_err(|e| format!("the hub's signing key: {e}"))?
            .with_audience(audience)
            .with_key_id(kid);
        let hasher = ApiKeyHasher::new(&engine.derived_key(HASH_LABEL));
        Ok((
            Self {
                issuer,
                hasher,
                audience: audience.to_owned(),
            },
            verifier,
        ))
    }

    /// Makes a key for `tenant` granting at most `scopes`, valid for `ttl_secs` (forever when
    /// `None`).
    pub fn create_key(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        scopes: Vec<Scope>,
        ttl_secs: Option<u64>,
        label: Option<String>,
    ) -> Result<NewApiKey, WireError> {
        if scopes.is_empty() {
            return Err(error(
                ErrorCode::InvalidRequest,
                "a key must grant at least one scope",
            ));
        }
        if scopes.contains(&Scope::Operator) {
            return Err(error(
                ErrorCode::Forbidden,
                "API keys are worth one tenant; the operator scope is not for them",
            ));
        }
        if label
            .as_ref()
            .is_some_and(|l| l.len() > 256 || l.chars().any(char::is_control))
        {
            return Err(error(
                ErrorCode::InvalidRequest,
                "a label is at most 256 bytes of text without control characters",
            ));
        }
        if ttl_secs == Some(0) {
            return Err(error(
                ErrorCode::InvalidRequest,
                "a key's lifetime must be at least one second",
            ));
        }
        let now = unix_secs();
        let secret =
            ApiKeySecret::generate().map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
        let mut scopes = scopes;
        scopes.sort_unstable();
        scopes.dedup();
        let info = ApiKeyInfo {
            id: secret.id().to_string(),
            tenant: tenant.clone(),
            scopes,
            label,
            created: now,
            expires: ttl_secs.map(|t| now.saturating_add(t)),
            revoked: None,
        };
        let stored = StoredKey {
            info: info.clone(),
            hash: self.hasher.hash(&secret).to_vec(),
        };
        put(engine, &stored)?;
        Ok(NewApiKey { secret, info })
    }

    /// The keys of `tenant`, revoked ones included, oldest first.
    pub fn keys(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
    ) -> Result<Vec<ApiKeyInfo>, WireError> {
        let mut keys = Vec::new();
        for (_, value) in engine.sealed_settings(KEY_PREFIX).map_err(internal)? {
            let stored: StoredKey = serde_json::from_slice(&value).map_err(internal)?;
            if &stored.info.tenant == tenant {
                keys.push(stored.info);
            }
        }
        keys.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(keys)
    }

    /// Revokes key `id` of `tenant`: no token is issued for it from now on. Returns whether
    /// such a key existed (another tenant's key does not).
    pub fn revoke_key(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        id: &str,
    ) -> Result<bool, WireError> {
        let Ok(id) = ApiKeyId::from_str(id) else {
            return Ok(false);
        };
        match stored(engine, &id)? {
            Some(mut key) if &key.info.tenant == tenant => {
                if key.info.revoked.is_none() {
                    key.info.revoked = Some(unix_secs());
                    put(engine, &key)?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> WireError {
    error(ErrorCode::Internal, format!("API key store: {e}"))
}

fn put(engine: &MemoryEngine, key: &StoredKey) -> Result<(), WireError> {
    let value = serde_json::to_vec(key).map_err(internal)?;
    engine
        .put_sealed_setting(&format!("{KEY_PREFIX}{}", key.info.id), &value)
        .map_err(internal)
}

fn stored(engine: &MemoryEngine, id: &ApiKeyId) -> Result<Option<StoredKey>, WireError> {
    match engine
        .sealed_setting(&format!("{KEY_PREFIX}{id}"))
        .map_err(internal)?
    {
        Some(value) => serde_json::from_slice(&value).map(Some).map_err(internal),
        None => Ok(None),
    }
}

/// The public half of a PKCS#8 Ed25519 private key, as PEM.
fn public_pem(private_pem: &[u8]) -> Result<String, String> {
    Ed25519KeyPem::public_of(private_pem).map_err(|e| e.to_string())
}

/// Trades the credential in `request` — an API key, else the connection's client certificate
/// naming a tenant — for a token of that tenant signed by this hub. Shared by `POST /v1/token`
/// and the QUIC `Exchange` request.
pub(crate) fn exchange(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    request: &ExchangeRequest,
) -> Result<TokenGrant, WireError> {
    let result = grant(state, certificate, request);
    if let Err(e) = &result {
        auth::count_failure(state, e);
    }
    crate::audit::exchange(state, certificate, &result);
    result
}

fn grant(
    state: &HubState,
    certificate: Option<&PeerIdentity>,
    request: &ExchangeRequest,
) -> Result<TokenGrant, WireError> {
    auth::check_transport(state, certificate)?;
    let credentials = &state.credentials;
    let now = unix_secs();
    let cert_tenant = match certificate {
        Some(PeerIdentity::Agent { tenant, .. } | PeerIdentity::Tenant { tenant, .. }) => {
            Some(tenant)
        }
        _ => None,
    };
    let cert_agent = match certificate {
        Some(PeerIdentity::Agent { agent, .. }) => Some(agent),
        _ => None,
    };
    // Whose token, at most which scopes, until when at the latest, and the default agent.
    let (tenant, allowed, not_after, default_agent) =
        match &request.api_key {
            Some(text) => {
                let refused = || error(ErrorCode::Unauthenticated, "unknown API key");
                let secret = ApiKeySecret::parse(text).map_err(|_| refused())?;
                let key = stored(&state.engine, &secret.id())?.ok_or_else(refused)?;
                if !credentials.hasher.verify(&secret, &key.hash) {
                    return Err(refused());
                }
                if key.info.revoked.is_some() {
                    return Err(error(
                        ErrorCode::Unauthenticated,
                        "the API key has been revoked",
                    ));
                }
                if key.info.expires.is_some_and(|exp| exp <= now) {
                    return Err(error(ErrorCode::Unauthenticated, "the API key has expired"));
                }
                if let Some(cert) = cert_tenant.filter(|t| **t != key.info.tenant) {
                    return Err(error(
                        ErrorCode::TenantMismatch,
                        format!(
                            "the certificate is for tenant {cert} but the API key is for tenant {}",
                            key.info.tenant
                        ),
                    ));
                }
                let agent = format!("key-{}", key.info.id);
                (key.info.tenant, key.info.scopes, key.info.expires, agent)
            }
            None => match cert_tenant {
                Some(tenant) => (
                    tenant.clone(),
                    CERTIFICATE_SCOPES.to_vec(),
                    None,
                    "certificate".to_owned(),
                ),
                None => return Err(error(
                    ErrorCode::Unauthenticated,
                    "send Authorization: ApiKey <secret>, or a client certificate naming a tenant",
                )),
            },
        };
    let scopes = granted(&allowed, &request.scopes)?;
    // An agent certificate fixes the agent: a token for another would not pass the policy.
    let agent = match (cert_agent, &request.agent) {
        (Some(cert), Some(asked)) if cert != asked => {
            return Err(error(
                ErrorCode::Forbidden,
                format!("the certificate is for agent {cert}, not {asked}"),
            ))
        }
        (Some(cert), _) => cert.clone(),
        (None, Some(asked)) => asked.clone(),
        (None, None) => {
            AgentId::new(default_agent).map_err(|e| error(ErrorCode::Internal, e.to_string()))?
        }
    };
    let ttl = request.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_EXCHANGE_TTL_SECS).contains(&ttl) {
        return Err(error(
            ErrorCode::InvalidRequest,
            format!("ttl_secs must be between 1 and {MAX_EXCHANGE_TTL_SECS}"),
        ));
    }
    let token_request = TokenRequest::new(tenant.clone(), agent.clone())
        .scopes(scopes.clone())
        .ttl_secs(ttl)
        .audience(credentials.audience.clone());
    let mut claims = credentials
        .issuer
        .claims(&token_request, now)
        .map_err(|e| error(ErrorCode::InvalidRequest, e.to_string()))?;
    if let Some(limit) = not_after {
        claims.exp = claims.exp.min(limit);
    }
    let token = credentials
        .issuer
        .sign(&claims)
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
    Ok(TokenGrant {
        token,
        expires_at: claims.exp,
        tenant,
        agent,
        scopes: claims.scope.iter().map(|s| s.as_str().to_owned()).collect(),
    })
}

/// The scopes to grant: those asked for, each of which the credential allows; all it allows
/// when none are asked for.
fn granted(allowed: &[Scope], asked: &[String]) -> Result<Vec<Scope>, WireError> {
    if asked.is_empty() {
        return Ok(allowed.to_vec());
    }
    asked
        .iter()
        .map(|name| {
            let scope = Scope::from_str(name.trim())
                .map_err(|e| error(ErrorCode::InvalidRequest, e.to_string()))?;
            if allowed.contains(&scope) {
                Ok(scope)
            } else {
                Err(error(
                    ErrorCode::Forbidden,
                    format!("the credential does not grant the {scope} scope"),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_at_most_the_credentials_scopes() {
        let allowed = [Scope::Read, Scope::Sync];
        assert_eq!(granted(&allowed, &[]).unwrap(), allowed.to_vec());
        assert_eq!(
            granted(&allowed, &["read".into()]).unwrap(),
            vec![Scope::Read]
        );
        let refused = granted(&allowed, &["read".into(), "write".into()]).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        let unknown = granted(&allowed, &["root".into()]).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::InvalidRequest);
    }
}
