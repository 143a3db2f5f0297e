//! Short-lived bearer tokens (JWT) that tell a hub which agent of which tenant is calling and
//! what it may do.
//!
//! ```text
//! issuer (CLI, control plane)                         hub
//!   TokenIssuer::issue(&TokenRequest, now) ──token──▶ TokenVerifier::verify(token, now)
//!     EdDSA (Ed25519 PKCS#8 key)                        EdDSA (Ed25519 public key)
//!     or HS256 (shared secret)                          or HS256 (the same secret)
//! ```
//!
//! A token's claims ([`Claims`]) are `iss`, `aud`, `sub` (the agent), `tenant`, `scope` (a JSON
//! list of [`Scope`]s), `iat`, `exp` (both in seconds since the Unix epoch) and `jti` (a random
//! UUID, the handle used to revoke the token, see [`crate::revocation`]). Tokens live
//! [`DEFAULT_TTL_SECS`] by default; agents refresh them before they expire.
//!
//! Keys may be named: an issuer built [`TokenIssuer::with_key_id`] writes a `kid` header, and
//! [`TokenKeys`] holds several verifiers and picks the one whose key id the token names (a
//! token without `kid` goes to the default verifier), so signing keys can be rotated while
//! tokens signed with the previous key are still valid. The `kid` is read before any signature
//! check and only selects a key: the token must still verify under it.
//!
//! The verifier accepts exactly one algorithm, the one its key is for, and rejects everything
//! else before looking at the signature: `alg: none`, and an HS256 token presented to an EdDSA
//! verifier (the classic key-confusion attack), both fail with [`VerifyError::WrongAlgorithm`].
//! Signature checks are done by `jsonwebtoken` on the aws-lc-rs backend (HMAC tags are
//! compared in constant time there). Times are checked here against the caller's `now`, with
//! at most [`MAX_CLOCK_SKEW_SECS`] of leeway; `jsonwebtoken` is told not to read the clock.

use std::fmt;
use std::str::FromStr;

use agentdb_core::{AgentId, TenantId};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The issuer (`iss`) written into tokens and expected by verifiers unless configured otherwise.
pub const DEFAULT_ISSUER: &str = "agentdb";
/// The audience (`aud`) written into tokens and expected by verifiers unless configured
/// otherwise.
pub const DEFAULT_AUDIENCE: &str = "agentdb-hub";
/// Default token lifetime: five minutes.
pub const DEFAULT_TTL_SECS: u64 = 300;
/// Longest lifetime a token may be issued with: one day.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// The most the verifier's clock may disagree with the issuer's, in seconds.
pub const MAX_CLOCK_SKEW_SECS: u64 = 30;
/// The environment variable that holds the HS256 shared secret.
pub const JWT_SECRET_ENV: &str = "JWT_SECRET";
/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;
/// Longest token the verifier will look at, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest accepted `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 128;
/// How much of an unknown `kid` [`VerifyError::UnknownKey`] repeats, in characters.
pub const MAX_REPORTED_KID_CHARS: usize = 64;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A permission a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Query the tenant's memory and read its statistics.
    Read,
    /// Store episodes and update them.
    Write,
    /// Pull changes (synchronise a local cache).
    Sync,
    /// Administer the tenant (keys, settings).
    Admin,
    /// Erase the tenant's data for good.
    Erase,
    /// Operate the hub: see hub-wide state that names every tenant (federation links and
    /// version vectors). Never among the defaults; only whoever holds the signing key can
    /// mint it.
    Operator,
}

impl Scope {
    /// Every scope, in a fixed order.
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Write,
        Scope::Sync,
        Scope::Admin,
        Scope::Erase,
        Scope::Operator,
    ];
    /// The scopes a token gets when none are requested: read, write and sync.
    pub const DEFAULT: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Sync];

    /// The lowercase name used in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Sync => "sync",
            Scope::Admin => "admin",
            Scope::Erase => "erase",
            Scope::Operator => "operator",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (expected read, write, sync, admin, erase or operator)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.chars().take(64).collect()))
    }
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who issued the token.
    pub iss: String,
    /// Who the token is for (the hubs of a deployment).
    pub aud: String,
    /// The agent the token was issued to.
    pub sub: AgentId,
    /// The tenant the agent acts for.
    pub tenant: TenantId,
    /// What the token allows.
    pub scope: Vec<Scope>,
    /// When the token was issued, in seconds since the Unix epoch.
    pub iat: u64,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp: u64,
    /// The earliest time the token is valid, in seconds since the Unix epoch. Tokens issued
    /// here do not set it; it is honoured when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// A unique token id, used to revoke the token.
    pub jti: String,
}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scope.contains(&scope)
    }

    /// Seconds until the token expires, or zero if it has.
    pub fn remaining_secs(&self, now: u64) -> u64 {
        self.exp.saturating_sub(now)
    }
}

/// What to put in a new token. Built with [`TokenRequest::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent (the `sub` claim).
    pub agent: AgentId,
    /// The scopes to grant; [`Scope::DEFAULT`] unless set.
    pub scopes: Vec<Scope>,
    /// The lifetime in seconds; [`DEFAULT_TTL_SECS`] unless set.
    pub ttl_secs: u64,
    /// The audience; [`DEFAULT_AUDIENCE`] unless set.
    pub audience: String,
}

impl TokenRequest {
    /// A request for a token for `agent` of `tenant` with the default scopes, lifetime and
    /// audience.
    pub fn new(tenant: TenantId, agent: AgentId) -> Self {
        Self {
            tenant,
            agent,
            scopes: Scope::DEFAULT.to_vec(),
            ttl_secs: DEFAULT_TTL_SECS,
            audience: DEFAULT_AUDIENCE.to_owned(),
        }
    }

    /// Sets the scopes to grant.
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = scopes.into_iter().collect();
        self
    }

    /// Sets the lifetime in seconds.
    pub fn ttl_secs(mut self, ttl_secs: u64) -> Self {
        self.ttl_secs = ttl_secs;
        self
    }

    /// Sets the audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }
}

/// The signature algorithm of a token key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenAlgorithm {
    /// Ed25519 signatures (the default).
    EdDsa,
    /// HMAC-SHA256 with a shared secret (for compatibility).
    Hs256,
}

impl TokenAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAlgorithm::EdDsa => "EdDSA",
            TokenAlgorithm::Hs256 => "HS256",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::EdDsa => Algorithm::EdDSA,
            TokenAlgorithm::Hs256 => Algorithm::HS256,
        }
    }
}

impl fmt::Display for TokenAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a signing or verification key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not PEM with the expected label.
    #[error("not a PEM {expected} block: {reason}")]
    NotPem {
        /// The expected PEM label.
        expected: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The private key is not an Ed25519 PKCS#8 key.
    #[error("the signing key is not an Ed25519 PKCS#8 private key")]
    BadPrivateKey,
    /// The public key is not an Ed25519 SubjectPublicKeyInfo.
    #[error("the public key is not an Ed25519 public key")]
    BadPublicKey,
    /// The HS256 secret is too short.
    #[error("the HS256 secret is {len} bytes long; at least {MIN_SECRET_LEN} are required")]
    SecretTooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// The system could not generate a key.
    #[error("key generation failed")]
    Generate,
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The lifetime is zero or longer than [`MAX_TTL_SECS`].
    #[error("token lifetime must be between 1 and {MAX_TTL_SECS} seconds (got {ttl_secs})")]
    BadTtl {
        /// The requested lifetime.
        ttl_secs: u64,
    },
    /// No scope was requested.
    #[error("a token must grant at least one scope")]
    NoScope,
    /// The audience is empty.
    #[error("the audience must not be empty")]
    EmptyAudience,
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Signing failed.
    #[error("cannot sign the token: {reason}")]
    Sign {
        /// What went wrong.
        reason: String,
    },
}

/// Why a token was rejected. Each kind of failure has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token has expired (more than [`MAX_CLOCK_SKEW_SECS`] ago).
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// The token is not valid yet: its `iat` or `nbf` is more than [`MAX_CLOCK_SKEW_SECS`]
    /// in the future.
    #[error("token not valid until {valid_from} (now {now})")]
    NotYetValid {
        /// The token's `nbf`, or its `iat` if that is later.
        valid_from: u64,
        /// The verifier's time.
        now: u64,
    },
    /// The signature does not match the key (the token was tampered with or signed by
    /// another key).
    #[error("bad token signature")]
    BadSignature,
    /// The token is for another audience.
    #[error("token is for another audience (expected {expected:?})")]
    WrongAudience {
        /// The audience this verifier accepts.
        expected: String,
    },
    /// The token was issued by someone else.
    #[error("token was issued by another issuer (expected {expected:?})")]
    WrongIssuer {
        /// The issuer this verifier accepts.
        expected: String,
    },
    /// The token is signed with an algorithm this verifier does not accept (including
    /// `none`).
    #[error("token uses algorithm {found:?}; only {expected} is accepted")]
    WrongAlgorithm {
        /// The `alg` in the token header, cut to 32 characters.
        found: String,
        /// The algorithm of this verifier's key.
        expected: TokenAlgorithm,
    },
    /// The token is not a well-formed JWT with the claims this system requires.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The token's header names a key id (`kid`) that no verifier of the [`TokenKeys`] has.
    #[error("token is signed with unknown key {kid:?}")]
    UnknownKey {
        /// The `kid` in the token header, cut to [`MAX_REPORTED_KID_CHARS`] characters.
        kid: String,
    },
}

impl VerifyError {
    /// A stable code for the failure, suitable for the wire: `token_expired`,
    /// `token_not_yet_valid`, or `unauthenticated` for everything else.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Expired { .. } => "token_expired",
            VerifyError::NotYetValid { .. } => "token_not_yet_valid",
            VerifyError::BadSignature
            | VerifyError::WrongAudience { .. }
            | VerifyError::WrongIssuer { .. }
            | VerifyError::WrongAlgorithm { .. }
            | VerifyError::Malformed { .. }
            | VerifyError::UnknownKey { .. } => "unauthenticated",
        }
    }

    fn malformed(reason: impl Into<String>) -> Self {
        VerifyError::Malformed {
            reason: reason.into(),
        }
    }
}

/// A fresh Ed25519 signing key, PEM-encoded, as written by `agentdb token keygen`.
pub struct Ed25519KeyPem {
    /// The private key, PKCS#8 v1 PEM (`PRIVATE KEY`).
    pub private_pem: Zeroizing<String>,
    /// The public key, SubjectPublicKeyInfo PEM (`PUBLIC KEY`).
    pub public_pem: String,
}

impl Ed25519KeyPem {
    /// The public half of an Ed25519 PKCS#8 PEM private key, as SubjectPublicKeyInfo PEM.
    pub fn public_of(private_pem: &[u8]) -> Result<String, KeyError> {
        let der = pem_decode(private_pem, "PRIVATE KEY")?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| KeyError::BadPrivateKey)?;
        let public: aws_lc_rs::encoding::PublicKeyX509Der<'static> = pair
            .public_key()
            .as_der()
            .map_err(|_| KeyError::BadPrivateKey)?;
        Ok(pem_encode("PUBLIC KEY", public.as_ref()))
    }

    /// Generates a new Ed25519 key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?;
        let private: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
            pair.as_der().map_err(|_| KeyError::Generate)?;
        let public: aws_lc_rs::encoding::PublicKeyX509Der<'static> =
            pair.public_key().as_der().map_err(|_| KeyError::Generate)?;
        Ok(Self {
            private_pem: Zeroizing::new(pem_encode("PRIVATE KEY", private.as_ref())),
            public_pem: pem_encode("PUBLIC KEY", public.as_ref()),
        })
    }
}

impl fmt::Debug for Ed25519KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519KeyPem")
            .field("private_pem", &"[redacted]")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Signs tokens.
pub struct TokenIssuer {
    key: EncodingKey,
    algorithm: TokenAlgorithm,
    issuer: String,
    kid: Option<String>,
}

impl TokenIssuer {
    /// An EdDSA issuer from an Ed25519 PKCS#8 PEM private key.
    pub fn from_ed25519_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = pem_decode(pem, "PRIVATE KEY")?;
        Ed25519KeyPair::from_pkcs8(&der).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(Self {
            key: EncodingKey::from_ed_der(&der),
            algorithm: TokenAlgorithm::EdDsa,
            issuer: DEFAULT_ISSUER.to_owned(),
            kid: None,
        })
    }

    /// An HS256 issuer from a shared secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_hs256_secret(secret: &[u8]) -> Result<Self, KeyError> {
        check_secret(secret)?;
        Ok(Self {
            key: EncodingKey::from_secret(secret),
            algorithm: TokenAlgorithm::Hs256,
            issuer: DEFAULT_ISSUER.to_owned(),
            kid: None,
        })
    }

    /// Sets the issuer (`iss`) written into tokens; [`DEFAULT_ISSUER`] unless set.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Names this issuer's key: tokens carry `kid` in their header, which [`TokenKeys`] uses to
    /// pick the verifier. Unnamed unless set.
    pub fn with_key_id(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id written into tokens, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm of this issuer's key.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// Builds the claims for `request` at time `now` (seconds since the Unix epoch), with a
    /// fresh random `jti`.
    pub fn claims(&self, request: &TokenRequest, now: u64) -> Result<Claims, IssueError> {
        if request.ttl_secs == 0 || request.ttl_secs > MAX_TTL_SECS {
            return Err(IssueError::BadTtl {
                ttl_secs: request.ttl_secs,
            });
        }
        if request.scopes.is_empty() {
            return Err(IssueError::NoScope);
        }
        if request.audience.is_empty() {
            return Err(IssueError::EmptyAudience);
        }
        let mut scope = request.scopes.clone();
        scope.sort_unstable();
        scope.dedup();
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| IssueError::Random)?;
        Ok(Claims {
            iss: self.issuer.clone(),
            aud: request.audience.clone(),
            sub: request.agent.clone(),
            tenant: request.tenant.clone(),
            scope,
            iat: now,
            exp: now.saturating_add(request.ttl_secs),
            nbf: None,
            jti: uuid::Builder::from_random_bytes(random)
                .into_uuid()
                .to_string(),
        })
    }

    /// Signs `claims` as they are. Prefer [`Self::issue`]; this exists for callers that need
    /// to build claims themselves.
    pub fn sign(&self, claims: &Claims) -> Result<String, IssueError> {
        let mut header = Header::new(self.algorithm.jwt());
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| IssueError::Sign {
            reason: e.to_string(),
        })
    }

    /// Issues a token for `request` at time `now` (seconds since the Unix epoch).
    pub fn issue(&self, request: &TokenRequest, now: u64) -> Result<String, IssueError> {
        self.sign(&self.claims(request, now)?)
    }
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Checks tokens.
pub struct TokenVerifier {
    key: DecodingKey,
    algorithm: TokenAlgorithm,
    issuer: String,
    audience: String,
    kid: Option<String>,
}

impl TokenVerifier {
    /// An EdDSA verifier from an Ed25519 public key PEM (SubjectPublicKeyInfo, `PUBLIC KEY`).
    pub fn from_ed25519_public_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = pem_decode(pem, "PUBLIC KEY")?;
        let raw = der
            .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
            .filter(|raw| raw.len() == 32)
            .ok_or(KeyError::BadPublicKey)?;
        Ok(Self::new(
            DecodingKey::from_ed_der(raw),
            TokenAlgorithm::EdDsa,
        ))
    }

    /// An HS256 verifier from a shared secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_hs256_secret(secret: &[u8]) -> Result<Self, KeyError> {
        check_secret(secret)?;
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            TokenAlgorithm::Hs256,
        ))
    }

    fn new(key: DecodingKey, algorithm: TokenAlgorithm) -> Self {
        Self {
            key,
            algorithm,
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            kid: None,
        }
    }

    /// Sets the issuer tokens must name; [`DEFAULT_ISSUER`] unless set.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Sets the audience tokens must name; [`DEFAULT_AUDIENCE`] unless set.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Names this verifier's key, so that [`TokenKeys`] selects it for tokens whose `kid`
    /// header is `kid`. [`Self::verify`] itself does not look at a token's `kid`.
    pub fn with_key_id(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id this verifier answers to, if it has one.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this verifier accepts.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// Checks `token` at time `now` (seconds since the Unix epoch) and returns its claims.
    ///
    /// In order: the token's shape and header algorithm, the signature, the presence and
    /// types of the claims, the issuer and audience, then the times. A token is accepted from `iat - MAX_CLOCK_SKEW_SECS` until
    /// just before `exp + MAX_CLOCK_SKEW_SECS`. Revocation is checked separately
    /// ([`crate::revocation::RevocationList`]).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, VerifyError> {
        check_length(token)?;
        self.check_header(token)?;

        let mut validation = Validation::new(self.algorithm.jwt());
        // Times are checked below against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.validate_aud = true;
        validation.set_audience(&[self.audience.as_str()]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims: Claims = jsonwebtoken::decode(token, &self.key, &validation)
            .map_err(|e| self.map_error(e.into_kind()))?
            .claims;

        if claims.exp <= claims.iat {
            return Err(VerifyError::malformed("exp is not after iat"));
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
            return Err(VerifyError::malformed(format!(
                "jti must be 1 to {MAX_JTI_LEN} bytes long"
            )));
        }
        if claims.scope.is_empty() {
            return Err(VerifyError::malformed("scope is empty"));
        }
        let valid_from = claims.nbf.map_or(claims.iat, |nbf| nbf.max(claims.iat));
        if valid_from > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(VerifyError::NotYetValid { valid_from, now });
        }
        if now >= claims.exp.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(VerifyError::Expired {
                exp: claims.exp,
                now,
            });
        }
        Ok(claims)
    }

    /// Checks that the token has three parts and that its header names exactly this
    /// verifier's algorithm, before any key is used.
    fn check_header(&self, token: &str) -> Result<(), VerifyError> {
        let header = parse_header(token)?;
        let alg = match header.get("alg") {
            Some(serde_json::Value::String(alg)) => alg,
            Some(_) => return Err(VerifyError::malformed("header alg is not a string")),
            None => return Err(VerifyError::malformed("header has no alg")),
        };
        if alg != self.algorithm.as_str() {
            return Err(VerifyError::WrongAlgorithm {
                found: alg.chars().take(32).collect(),
                expected: self.algorithm,
            });
        }
        // RFC 7515 §4.1.11: extensions marked critical must be understood, and none are.
        if header.contains_key("crit") {
            return Err(VerifyError::malformed(
                "header has unsupported crit extensions",
            ));
        }
        Ok(())
    }

    fn map_error(&self, kind: ErrorKind) -> VerifyError {
        match kind {
            ErrorKind::InvalidSignature => VerifyError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                VerifyError::WrongAlgorithm {
                    found: "unknown".to_owned(),
                    expected: self.algorithm,
                }
            }
            ErrorKind::InvalidAudience => VerifyError::WrongAudience {
                expected: self.audience.clone(),
            },
            ErrorKind::InvalidIssuer => VerifyError::WrongIssuer {
                expected: self.issuer.clone(),
            },
            ErrorKind::MissingRequiredClaim(claim) => {
                VerifyError::malformed(format!("missing claim {claim}"))
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                VerifyError::malformed(format!("claim {claim} has the wrong type"))
            }
            ErrorKind::Json(e) => VerifyError::malformed(format!("bad claims: {e}")),
            ErrorKind::Base64(_) => VerifyError::malformed("not base64url"),
            ErrorKind::Utf8(_) => VerifyError::malformed("not UTF-8"),
            ErrorKind::InvalidToken => VerifyError::malformed("not a JWT"),
            other => VerifyError::malformed(format!("{other:?}")),
        }
    }
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Several token verifiers, selected by the `kid` header of each token: the set a hub holds
/// while signing keys rotate.
///
/// A token without `kid` is checked by the default verifier. A token with a `kid` is checked by
/// the verifier with that key id (the default one included, if it has a key id); a `kid` no
/// verifier has is refused with [`VerifyError::UnknownKey`]. The selected verifier then checks
/// the token in full ([`TokenVerifier::verify`]): naming a key never skips its signature,
/// algorithm, issuer, audience or time checks.
#[derive(Debug)]
pub struct TokenKeys {
    default: TokenVerifier,
    named: Vec<TokenVerifier>,
}

impl TokenKeys {
    /// A set whose default verifier (for tokens without `kid`) is `default`.
    pub fn new(default: TokenVerifier) -> Self {
        Self {
            default,
            named: Vec::new(),
        }
    }

    /// Adds `verifier`, selected for tokens whose `kid` equals its key id
    /// ([`TokenVerifier::with_key_id`]). It replaces an added verifier with the same key id.
    /// A verifier without a key id could never be selected and is not added.
    pub fn with(mut self, verifier: TokenVerifier) -> Self {
        if let Some(kid) = verifier.key_id() {
            self.named.retain(|v| v.key_id() != Some(kid));
            self.named.push(verifier);
        }
        self
    }

    /// The verifier for tokens without `kid`.
    pub fn default_verifier(&self) -> &TokenVerifier {
        &self.default
    }

    /// Checks `token` at time `now` (seconds since the Unix epoch) with the verifier its `kid`
    /// header selects, and returns its claims.
    ///
    /// The token's length and shape are checked first, as [`TokenVerifier::verify`] does, and
    /// the `kid` is read from the header before any key is used. A `kid` that is not a string
    /// makes the token malformed.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, VerifyError> {
        check_length(token)?;
        let header = parse_header(token)?;
        let verifier = match header.get("kid") {
            None => &self.default,
            Some(serde_json::Value::String(kid)) => self.select(kid)?,
            Some(_) => return Err(VerifyError::malformed("header kid is not a string")),
        };
        verifier.verify(token, now)
    }

    fn select(&self, kid: &str) -> Result<&TokenVerifier, VerifyError> {
        std::iter::once(&self.default)
            .chain(&self.named)
            .find(|v| v.key_id() == Some(kid))
            .ok_or_else(|| VerifyError::UnknownKey {
                kid: kid.chars().take(MAX_REPORTED_KID_CHARS).collect(),
            })
    }
}

/// Refuses tokens longer than [`MAX_TOKEN_LEN`].
fn check_length(token: &str) -> Result<(), VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::malformed(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    Ok(())
}

/// Checks that `token` has three dot-separated parts, that payload and signature are base64url
/// and that the header is a base64url JSON object, and returns the header. Uses no key.
fn parse_header(token: &str) -> Result<serde_json::Map<String, serde_json::Value>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::malformed("not three dot-separated parts"));
    };
    if !is_base64url(payload) || !is_base64url(signature) {
        return Err(VerifyError::malformed(
            "payload or signature is not base64url",
        ));
    }
    let header = B64URL
        .decode(header)
        .map_err(|_| VerifyError::malformed("header is not base64url"))?;
    serde_json::from_slice(&header)
        .map_err(|_| VerifyError::malformed("header is not a JSON object"))
}

/// Parses a comma-separated scope list such as `read,write`. Whitespace around names is
/// ignored; duplicates are removed; the result is sorted.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, UnknownScope> {
    let mut scopes = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Scope::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes)
}

/// Whether `s` is unpadded base64url (the alphabet only; lengths are checked on decoding).
fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_secret(secret: &[u8]) -> Result<(), KeyError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(KeyError::SecretTooShort { len: secret.len() });
    }
    Ok(())
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(pem: &[u8], expected: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| KeyError::NotPem {
        expected,
        reason: e.to_string(),
    })?;
    let contents = Zeroizing::new(block.contents);
    if block.label != expected {
        return Err(KeyError::NotPem {
            expected,
            reason: format!(
                "found a {:?} block",
                block.label.chars().take(32).collect::<String>()
            ),
        });
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"an hs256 secret that is long enough!";

    fn request() -> TokenRequest {
        TokenRequest::new(
            TenantId::new("acme").expect("valid"),
            AgentId::new("a1").expect("valid"),
        )
    }

    #[test]
    fn scopes_parse_and_serialise_lowercase() {
        assert_eq!(
            parse_scopes("write, read,,write"),
            Ok(vec![Scope::Read, Scope::Write])
        );
        assert_eq!(
            parse_scopes("read,delete"),
            Err(UnknownScope("delete".to_owned()))
        );
        assert_eq!(
            serde_json::to_string(&Scope::ALL).expect("serialise"),
            r#"["read","write","sync","admin","erase","operator"]"#
        );
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            TokenIssuer::from_hs256_secret(b"short").err(),
            Some(KeyError::SecretTooShort { len: 5 })
        );
        assert!(TokenVerifier::from_hs256_secret(b"short").is_err());
    }

    #[test]
    fn issue_checks_the_request() {
        let issuer = TokenIssuer::from_hs256_secret(SECRET).expect("issuer");
        assert_eq!(
            issuer.issue(&request().ttl_secs(0), 1000),
            Err(IssueError::BadTtl { ttl_secs: 0 })
        );
        assert_eq!(
            issuer.issue(&request().ttl_secs(MAX_TTL_SECS + 1), 1000),
            Err(IssueError::BadTtl {
                ttl_secs: MAX_TTL_SECS + 1
            })
        );
        assert_eq!(
            issuer.issue(&request().scopes([]), 1000),
            Err(IssueError::NoScope)
        );
        assert_eq!(
            issuer.issue(&request().audience(""), 1000),
            Err(IssueError::EmptyAudience)
        );
    }

    #[test]
    fn jtis_are_unique_uuids() {
        let issuer = TokenIssuer::from_hs256_secret(SECRET).expect("issuer");
        let a = issuer.claims(&request(), 1000).expect("claims");
        let b = issuer.claims(&request(), 1000).expect("claims");
        assert_ne!(a.jti, b.jti);
        assert!(uuid::Uuid::parse_str(&a.jti).is_ok());
    }

    #[test]
    fn generated_keys_round_trip_through_pem() {
        let keys = Ed25519KeyPem::generate().expect("keygen");
        assert!(keys
            .private_pem
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(keys.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let issuer = TokenIssuer::from_ed25519_pem(keys.private_pem.as_bytes()).expect("issuer");
        let verifier =
            TokenVerifier::from_ed25519_public_pem(keys.public_pem.as_bytes()).expect("verifier");
        let token = issuer.issue(&request(), 1000).expect("issue");
        assert_eq!(verifier.verify(&token, 1001).expect("verify").iat, 1000);
        // A private key is not a public key, and vice versa.
        assert!(TokenVerifier::from_ed25519_public_pem(keys.private_pem.as_bytes()).is_err());
        assert!(TokenIssuer::from_ed25519_pem(keys.public_pem.as_bytes()).is_err());
        assert!(TokenIssuer::from_ed25519_pem(b"garbage").is_err());
        // The public half derived from the private key is the one generated with it.
        assert_eq!(
            Ed25519KeyPem::public_of(keys.private_pem.as_bytes()).expect("public half"),
            keys.public_pem
        );
        assert!(Ed25519KeyPem::public_of(keys.public_pem.as_bytes()).is_err());
    }

    #[test]
    fn skew_boundaries() {
        let issuer = TokenIssuer::from_hs256_secret(SECRET).expect("issuer");
        let verifier = TokenVerifier::from_hs256_secret(SECRET).expect("verifier");
        let token = issuer.issue(&request().ttl_secs(100), 1000).expect("issue");
        assert!(verifier.verify(&token, 1000 - MAX_CLOCK_SKEW_SECS).is_ok());
        assert!(matches!(
            verifier.verify(&token, 1000 - MAX_CLOCK_SKEW_SECS - 1),
            Err(VerifyError::NotYetValid {
                valid_from: 1000,
                ..
            })
        ));
        assert!(verifier
            .verify(&token, 1100 + MAX_CLOCK_SKEW_SECS - 1)
            .is_ok());
        assert_eq!(
            verifier.verify(&token, 1100 + MAX_CLOCK_SKEW_SECS),
            Err(VerifyError::Expired {
                exp: 1100,
                now: 1100 + MAX_CLOCK_SKEW_SECS
            })
        );
    }

    #[test]
    fn nbf_is_honoured() {
        let issuer = TokenIssuer::from_hs256_secret(SECRET).expect("issuer");
        let verifier = TokenVerifier::from_hs256_secret(SECRET).expect("verifier");
        let mut claims = issuer.claims(&request(), 1000).expect("claims");
        claims.nbf = Some(1200);
        let token = issuer.sign(&claims).expect("sign");
        assert!(matches!(
            verifier.verify(&token, 1100),
            Err(VerifyError::NotYetValid {
                valid_from: 1200,
                ..
            })
        ));
        assert!(verifier.verify(&token, 1200).is_ok());
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            VerifyError::Expired { exp: 1, now: 2 }.code(),
            "token_expired"
        );
        assert_eq!(VerifyError::BadSignature.code(), "unauthenticated");
        assert_eq!(
            VerifyError::NotYetValid {
                valid_from: 2,
                now: 1
            }
            .code(),
            "token_not_yet_valid"
        );
    }
}
