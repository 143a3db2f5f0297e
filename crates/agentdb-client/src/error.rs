//! Errors of agent operations.

use agentdb_proto::{ErrorCode, Response};

/// Why an agent operation failed.
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
    Unreachable(String),
    /// The configuration is unusable.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// No token could be obtained.
    #[error("cannot obtain a token: {0}")]
    Token(String),
    /// The local cache or outbox failed.
    #[error("local memory: {0}")]
    Local(String),
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

    pub(crate) fn from_connection(e: &quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => {
                let code = u16::try_from(c.error_code.into_inner()).unwrap_or(u16::MAX);
                if code == 0 {
                    return AgentError::Unreachable("the hub closed the connection".into());
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
            other => AgentError::Unreachable(other.to_string()),
        }
    }

    pub(crate) fn unexpected(r: &Response) -> Self {
        AgentError::Unreachable(format!("unexpected response from hub: {:?}", kind(r)))
    }
}

fn kind(r: &Response) -> &'static str {
    match r {
        Response::Welcome(_) => "welcome",
        Response::Stored(_) => "stored",
        Response::Matches(_) => "matches",
        Response::Page(_) => "page",
        Response::Stats(_) => "stats",
        Response::Refreshed { .. } => "refreshed",
        Response::Bye => "bye",
        Response::Error(_) => "error",
        Response::Done { .. } => "done",
    }
}
