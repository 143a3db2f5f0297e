//! Errors of agent operations.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::EpisodeError;
use agentdb_proto::{DecodeError, ErrorCode, Response};

use crate::outbox::OutboxError;
use crate::spool_key::SpoolKeyError;

/// Why an agent operation failed. Every message is one line; [`AgentError::kind`] is a stable
/// name for programs.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent's lifetime is over (or it was destroyed).
    #[error("agent expired: its lifetime is over")]
    AgentExpired,
    /// The hub refused the request.
    #[error("hub refused: {code}: {message}")]
    Rejected {
        /// The hub's error code.
        code: ErrorCode,
        /// The hub's message.
        message: String,
    },
    /// The hub could not be reached (the operation may be retried).
    #[error("hub unreachable: {0}")]
    HubUnreachable(Unreachable),
    /// The hub answered something this agent cannot use: a response of the wrong kind, or bytes
    /// that do not decode. Not a reason to fall back to the local cache.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// The configuration is unusable.
    #[error("invalid agent configuration: {0}")]
    Config(ConfigError),
    /// No token could be obtained (the token provider's message).
    #[error("cannot obtain a token: {0}")]
    Token(String),
    /// The episode breaks a rule (empty task, a field over its limit, …); nothing was stored.
    #[error("invalid episode: {0}")]
    InvalidEpisode(EpisodeError),
    /// The agent's local cache failed.
    #[error("local cache: {0}")]
    LocalCache(Arc<LocalCacheError>),
    /// The spool could not be read or written.
    #[error("spool: {0}")]
    Spool(Arc<OutboxError>),
}

impl AgentError {
    /// The hub's error code, when the hub refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AgentError::Rejected { code, .. } => Some(*code),
            AgentError::AgentExpired => Some(ErrorCode::AgentExpired),
            _ => None,
        }
    }

    /// A stable name for the kind of failure: `agent_expired`, `rejected`, `hub_unreachable`,
    /// `protocol`, `config`, `token`, `invalid_episode`, `local_cache` or `spool`.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::AgentExpired => "agent_expired",
            AgentError::Rejected { .. } => "rejected",
            AgentError::HubUnreachable(_) => "hub_unreachable",
            AgentError::Protocol(_) => "protocol",
            AgentError::Config(_) => "config",
            AgentError::Token(_) => "token",
            AgentError::InvalidEpisode(_) => "invalid_episode",
            AgentError::LocalCache(_) => "local_cache",
            AgentError::Spool(_) => "spool",
        }
    }

    /// Whether trying the same request later may succeed: the hub was unreachable, or it
    /// refused with a code that is not about the request itself (see [`is_permanent`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::HubUnreachable(_) => true,
            AgentError::Rejected { code, .. } => {
                !is_permanent(*code) && *code != ErrorCode::AgentExpired
            }
            _ => false,
        }
    }

    pub(crate) fn from_connection(e: &quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => {
                let code = u16::try_from(c.error_code.into_inner()).unwrap_or(u16::MAX);
                if code == 0 {
                    return AgentError::HubUnreachable(Unreachable::Closed);
                }
                AgentError::Rejected {
                    code: ErrorCode::from_u16(code),
                    message: String::from_utf8_lossy(&c.reason).into_owned(),
                }
            }
            // A refused certificate surfaces as a TLS alert: during the handshake on our side,
            // or (TLS 1.3 verifies the client last) as the hub closing with a crypto error.
            quinn::ConnectionError::TransportError(t) => AgentError::Rejected {
                code: ErrorCode::Unauthenticated,
                message: format!("TLS handshake failed: {t}"),
            },
            quinn::ConnectionError::ConnectionClosed(c)
                if (0x100..0x200).contains(&u64::from(c.error_code)) =>
            {
                AgentError::Rejected {
                    code: ErrorCode::Unauthenticated,
                    message: format!("the hub refused the TLS handshake: {c}"),
                }
            }
            other => AgentError::HubUnreachable(Unreachable::ConnectionLost(other.clone())),
        }
    }

    pub(crate) fn unexpected(request: &'static str, r: &Response) -> Self {
        AgentError::Protocol(ProtocolError::UnexpectedResponse {
            request,
            response: r.name(),
        })
    }
}

/// Whether the hub's refusal of a store is about the episodes themselves, so that sending them
/// again can never succeed at that hub: `forbidden` (the tenant's residency excludes the hub's
/// region, or the token lacks the write scope), `invalid_request` (a rule, e.g. a vector of
/// another model than the tenant's) and `too_large`. Every other code is about the moment or
/// the session (`overloaded`, `unavailable`, `internal`, `token_expired`, `unauthenticated`,
/// …): the episodes are sent again later. So is `quota_exceeded`: a tenant's quota frees up
/// when episodes are deleted, the rate passes or the quota is raised.
pub fn is_permanent(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Forbidden | ErrorCode::InvalidRequest | ErrorCode::TooLarge
    )
}

/// Why the hub could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Unreachable {
    /// The host name does not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The host.
        host: String,
    },
    /// No local UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(Arc<std::io::Error>),
    /// The connection could not be started.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The hub's address.
        addr: SocketAddr,
        /// Why.
        reason: quinn::ConnectError,
    },
    /// The handshake and authentication took longer than the connect timeout.
    #[error("connecting to {addr} timed out")]
    ConnectTimeout {
        /// The hub's address.
        addr: SocketAddr,
    },
    /// A request got no answer within the request timeout.
    #[error("the hub did not answer in time")]
    RequestTimeout,
    /// The connection broke.
    #[error("the connection was lost: {0}")]
    ConnectionLost(quinn::ConnectionError),
    /// The hub closed the connection normally (e.g. while shutting down).
    #[error("the hub closed the connection")]
    Closed,
    /// The hub stopped or reset the request's stream.
    #[error("the hub dropped the request (stream code {code})")]
    StreamReset {
        /// The stream error code.
        code: u64,
    },
    /// The request's stream closed before the answer.
    #[error("the request's stream closed before the answer")]
    StreamClosed,
    /// A connection attempt failed moments ago; the next one is not due yet.
    #[error("the hub was unreachable moments ago; next attempt in {} ms", .retry_in.as_millis())]
    Backoff {
        /// Time until the next attempt.
        retry_in: Duration,
    },
}

/// What was wrong with the hub's answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The hub answered a request with a response of another kind.
    #[error("unexpected {response} response to a {request} request")]
    UnexpectedResponse {
        /// The request.
        request: &'static str,
        /// What came back.
        response: &'static str,
    },
    /// The answer does not decode.
    #[error("undecodable response: {0}")]
    Decode(DecodeError),
    /// The answer is over the frame limit.
    #[error("response over {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// A store was answered without one of the episodes it carried.
    #[error("the answer to a store of {sent} episodes covers {answered}")]
    IncompleteStore {
        /// Episodes sent.
        sent: usize,
        /// Episodes the answer names.
        answered: usize,
    },
}

/// Why the configuration is unusable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The hub address is not `quic://host:port`.
    #[error("hub address {url:?} is not quic://host:port")]
    HubAddress {
        /// The address given.
        url: String,
    },
    /// The CA, certificate or key cannot be used.
    #[error("{0}")]
    Tls(Arc<agentdb_security::tls::TlsError>),
    /// The TLS configuration offers no cipher suite QUIC can use.
    #[error("the TLS configuration offers no cipher suite QUIC can use")]
    QuicCipherSuite,
    /// The generated agent id is invalid.
    #[error("agent id: {0}")]
    AgentId(agentdb_core::IdError),
    /// A spool directory is set, but nothing to seal it with.
    #[error(
        "a spool needs a key: set AgentConfig::spool_key, or give the agent a client certificate \
         and key"
    )]
    NoSpoolKey,
    /// The spool key could not be derived.
    #[error("spool key: {0}")]
    SpoolKey(SpoolKeyError),
}

/// Why the agent's local cache failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalCacheError {
    /// Its key could not be made.
    #[error("cannot make its key: {0}")]
    Key(#[from] agentdb_security::MasterKeyError),
    /// It could not be opened.
    #[error("cannot open: {0}")]
    Open(#[from] agentdb_memory::OpenError),
    /// A store failed.
    #[error("cannot store: {0}")]
    Store(#[from] agentdb_memory::StoreError),
    /// A query failed.
    #[error("cannot query: {0}")]
    Query(#[from] agentdb_memory::QueryError),
}

impl From<LocalCacheError> for AgentError {
    fn from(e: LocalCacheError) -> Self {
        match e {
            LocalCacheError::Store(agentdb_memory::StoreError::Invalid(e)) => {
                AgentError::InvalidEpisode(e)
            }
            other => AgentError::LocalCache(Arc::new(other)),
        }
    }
}

impl From<OutboxError> for AgentError {
    fn from(e: OutboxError) -> Self {
        AgentError::Spool(Arc::new(e))
    }
}

impl From<ConfigError> for AgentError {
    fn from(e: ConfigError) -> Self {
        AgentError::Config(e)
    }
}

impl From<Unreachable> for AgentError {
    fn from(e: Unreachable) -> Self {
        AgentError::HubUnreachable(e)
    }
}

impl From<ProtocolError> for AgentError {
    fn from(e: ProtocolError) -> Self {
        AgentError::Protocol(e)
    }
}
