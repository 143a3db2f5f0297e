//! The hub's side of one agent connection, as a sans-IO state machine.
//!
//! # Message flow
//!
//! ```text
//!  agent                                   hub (ServerSession)
//!    │ ── connect (QUIC, ALPN agentdb/1, mTLS) ──►│  new(now): auth deadline = now + 5 s
//!    │ ── stream: Exchange { api_key?, … } ──────►│  Step::Exchange ─► hub checks the credential
//!    │ ◄──────────── Token { token, … } | Error   │  handle_exchanged (state unchanged)
//!    │ ── stream: Hello { version, token } ──────►│  Step::Authenticate ─► hub verifies token
//!    │ ◄──────────── Welcome { agent, tenant, … } │  handle_auth(Ok)        (token expiry armed)
//!    │ ◄──────────── Error + close               │  handle_auth(Err), or no Hello by the deadline
//!    │                                            │
//!    │ ── stream n: Store | Query | Get | List … ►│  Step::Dispatch ─► hub runs it, replies
//!    │ ◄──────────── Stored | Matches | Episode … │
//!    │ ◄──────────── Error { token_expired }      │  once now ≥ expires_at (connection stays)
//!    │ ── stream m: RefreshToken { token } ──────►│  Step::Refresh ─► hub verifies new token
//!    │ ◄──────────── Refreshed { expires_at }     │  handle_token_refreshed(Ok): expiry moves
//!    │ ── stream k: Goodbye ─────────────────────►│  Step::ReplyAndClose
//!    │ ◄──────────── Bye + close (code 0)         │
//! ```
//!
//! Each request is one bi-stream: the agent writes one request frame and finishes; the hub writes
//! one response frame and finishes.
//!
//! Rules:
//! - Until the Welcome is sent, the connection carries Exchange streams and exactly one Hello.
//!   Any other message, a second stream other than an Exchange while the token is being
//!   verified, a Hello in another protocol version, a stream that does not decode, or no Hello
//!   within [`SessionConfig::auth_timeout_ms`] closes the connection with an error
//!   (`unauthenticated`, or the decoding error's code).
//! - An Exchange (trading an API key, or the connection's client certificate, for a token) is
//!   accepted in every state but closed: before the Hello, while it is verified, and after the
//!   Welcome, expired token or not. It never authenticates the connection and never moves the
//!   authentication deadline; a failed Exchange is answered on its stream and changes nothing.
//! - Once authenticated, errors are answered on their stream and the connection stays open:
//!   `unknown_message` for a kind this side does not know, `too_large` for an oversized frame,
//!   `invalid_request` for anything malformed and for a second Hello.
//! - When the token expires (`expires_at * 1000 ≤ now_ms`) every request except RefreshToken and
//!   Goodbye is answered `token_expired`. If no refresh succeeds within
//!   [`SessionConfig::expired_grace_ms`] after expiry, the connection closes with `token_expired`.
//!
//! # Driving it
//!
//! The hub owns one `ServerSession` per connection and calls, in any order as events happen:
//! - [`ServerSession::handle_stream`] with the bytes of each request stream (read to its end, at
//!   most `max_frame_len + 4` bytes; for a longer stream pass what was read: the length prefix
//!   alone is enough to answer `too_large`). Act on the returned [`Step`].
//! - [`ServerSession::handle_auth`] / [`ServerSession::handle_token_refreshed`] with the outcome
//!   of verifying a token, then send the returned frame on that stream.
//! - [`ServerSession::handle_exchanged`] with the outcome of an Exchange, then send the returned
//!   frame on that stream.
//! - [`ServerSession::poll_timeout`] for the next deadline, and [`ServerSession::handle_timeout`]
//!   when it passes.
//!
//! Whenever a [`Close`] comes out, finish the stream, let its bytes be delivered (a QUIC close
//! discards unsent stream data) and close the connection with [`Close::app_error_code`].

use crate::frame::MAX_FRAME_LEN;
use crate::message::{
    decode_request, ErrorCode, ExchangeRequest, Hello, RefreshRequest, Request, Response,
    TokenGrant, Welcome, WireError,
};
use crate::PROTOCOL_VERSION;

/// Settings of a [`ServerSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long after the connection opens the Welcome must be sent. Default 5 000 ms.
    pub auth_timeout_ms: u64,
    /// Largest accepted request frame (`kind + version + body`), capped at [`MAX_FRAME_LEN`].
    /// Default [`MAX_FRAME_LEN`].
    pub max_frame_len: usize,
    /// How long after the token expires the connection stays open for a refresh. Default
    /// 60 000 ms.
    pub expired_grace_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            auth_timeout_ms: 5_000,
            max_frame_len: MAX_FRAME_LEN,
            expired_grace_ms: 60_000,
        }
    }
}

/// The connection must close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Why, as an error code; `None` for a normal close (after Goodbye).
    pub code: Option<ErrorCode>,
    /// Details for a human, sent as the close reason.
    pub reason: String,
}

impl Close {
    fn error(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            reason: reason.into(),
        }
    }

    /// The QUIC application close code: 0 for a normal close, else [`ErrorCode::to_u16`].
    pub fn app_error_code(&self) -> u32 {
        self.code.map_or(0, |c| u32::from(c.to_u16()))
    }
}

/// What the hub does with a request stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The first stream is a valid Hello: verify its token, then call
    /// [`ServerSession::handle_auth`] and send the frame it returns.
    Authenticate(Hello),
    /// An authenticated data request (Store, Query, Pull, Stats, Update, Delete, Get or List)
    /// with an unexpired token: run it and send its response. Store requests have passed
    /// [`crate::StoreRequest::validate`].
    Dispatch(Request),
    /// A token refresh: verify the new token (same agent and tenant), then call
    /// [`ServerSession::handle_token_refreshed`] and send the frame it returns.
    Refresh(RefreshRequest),
    /// A credential exchange, in any open state: check the credential (the API key, or with
    /// none the connection's client certificate) and mint a token, then call
    /// [`ServerSession::handle_exchanged`] and send the frame it returns. The session's state
    /// is unchanged.
    Exchange(ExchangeRequest),
    /// The session answered by itself: send these bytes and finish the stream.
    Reply(Vec<u8>),
    /// Send these bytes, finish the stream, then close the connection.
    ReplyAndClose(Vec<u8>, Close),
    /// The session is closed; drop the stream.
    Closed,
}

#[derive(Debug, Clone)]
enum State {
    /// Waiting for the Hello.
    AwaitingHello,
    /// The Hello arrived; the hub is verifying its token.
    Authenticating,
    /// Welcome sent.
    Authenticated {
        welcome: Welcome,
        /// The token's expiry, in Unix ms.
        expires_ms: u64,
    },
    /// Nothing more happens.
    Closed(Close),
}

/// The hub's side of one connection. See the module documentation for the flow and the call
/// order. Times are Unix milliseconds supplied by the caller.
#[derive(Debug, Clone)]
pub struct ServerSession {
    config: SessionConfig,
    auth_deadline_ms: u64,
    state: State,
}

impl ServerSession {
    /// A session for a connection opened at `now_ms`.
    pub fn new(now_ms: u64, config: SessionConfig) -> Self {
        let config = SessionConfig {
            max_frame_len: config.max_frame_len.min(MAX_FRAME_LEN),
            ..config
        };
        Self {
            auth_deadline_ms: now_ms.saturating_add(config.auth_timeout_ms),
            config,
            state: State::AwaitingHello,
        }
    }

    /// Feeds the bytes of one whole request stream and says what to do with it.
    pub fn handle_stream(&mut self, now_ms: u64, bytes: &[u8]) -> Step {
        if self.is_closed() {
            return Step::Closed;
        }
        let decoded = decode_request(bytes, self.config.max_frame_len);
        match &self.state {
            State::Closed(_) => Step::Closed,
            State::AwaitingHello => {
                if now_ms >= self.auth_deadline_ms {
                    return self.reply_and_close(Close::error(
                        ErrorCode::Unauthenticated,
                        "the connection did not authenticate in time",
                    ));
                }
                match decoded {
                    Err(e) => self.reply_and_close(Close::error(e.code(), e.to_string())),
                    Ok(Request::Hello(hello)) if hello.protocol_version != PROTOCOL_VERSION => self
                        .reply_and_close(Close::error(
                            ErrorCode::InvalidRequest,
                            format!(
                                "protocol version {} is not supported; this hub speaks {}",
                                hello.protocol_version, PROTOCOL_VERSION
                            ),
                        )),
                    Ok(Request::Hello(hello)) => {
                        self.state = State::Authenticating;
                        Step::Authenticate(hello)
                    }
                    Ok(Request::Exchange(exchange)) => Step::Exchange(exchange),
                    Ok(_) => self.reply_and_close(Close::error(
                        ErrorCode::Unauthenticated,
                        "the first stream of a connection must carry Hello",
                    )),
                }
            }
            State::Authenticating => match decoded {
                Ok(Request::Exchange(exchange)) => Step::Exchange(exchange),
                _ => self.reply_and_close(Close::error(
                    ErrorCode::Unauthenticated,
                    "a request arrived before authentication completed",
                )),
            },
            State::Authenticated { expires_ms, .. } => {
                let expired = *expires_ms <= now_ms;
                match decoded {
                    Err(e) => reply(WireError::from(e)),
                    Ok(Request::Hello(_)) => reply(WireError::new(
                        ErrorCode::InvalidRequest,
                        "the connection is already authenticated",
                    )),
                    Ok(Request::Goodbye) => {
                        let bye = Response::Bye.encode();
                        let close = Close {
                            code: None,
                            reason: "goodbye".into(),
                        };
                        self.state = State::Closed(close.clone());
                        Step::ReplyAndClose(bye, close)
                    }
                    Ok(Request::RefreshToken(refresh)) => Step::Refresh(refresh),
                    Ok(Request::Exchange(exchange)) => Step::Exchange(exchange),
                    Ok(_) if expired => reply(WireError::new(
                        ErrorCode::TokenExpired,
                        "the token has expired; refresh it",
                    )),
                    Ok(Request::Store(store)) => match store.validate() {
                        Ok(()) => Step::Dispatch(Request::Store(store)),
                        Err(e) => reply(e),
                    },
                    Ok(request) => Step::Dispatch(request),
                }
            }
        }
    }

    /// Reports the outcome of verifying the Hello's token and returns the frame to send on the
    /// Hello's stream: Welcome, or an error after which the connection closes (see
    /// [`ServerSession::close_reason`]). Empty when there is nothing to send: no Hello was
    /// pending, or the session is already closed.
    pub fn handle_auth(&mut self, now_ms: u64, result: Result<Welcome, WireError>) -> Vec<u8> {
        if !matches!(self.state, State::Authenticating) {
            return Vec::new();
        }
        if now_ms >= self.auth_deadline_ms {
            let close = Close::error(
                ErrorCode::Unauthenticated,
                "the connection did not authenticate in time",
            );
            return self.close_with_error(close);
        }
        match result {
            Ok(welcome) => {
                let bytes = Response::Welcome(welcome.clone()).encode();
                self.state = State::Authenticated {
                    expires_ms: welcome.expires_at.saturating_mul(1000),
                    welcome,
                };
                bytes
            }
            Err(e) => self.close_with_error(Close::error(e.code, e.message)),
        }
    }

    /// Reports the outcome of verifying a refreshed token (`Ok(expires_at)` in Unix seconds) and
    /// returns the frame to send on the refresh's stream: Refreshed, or the error. A failed
    /// refresh leaves the session as it was. Empty when the session is not authenticated.
    pub fn handle_token_refreshed(
        &mut self,
        now_ms: u64,
        result: Result<u64, WireError>,
    ) -> Vec<u8> {
        let State::Authenticated {
            welcome,
            expires_ms,
        } = &mut self.state
        else {
            return Vec::new();
        };
        match result {
            Ok(expires_at) if expires_at.saturating_mul(1000) <= now_ms => {
                Response::error(ErrorCode::TokenExpired, "the new token has already expired")
                    .encode()
            }
            Ok(expires_at) => {
                welcome.expires_at = expires_at;
                *expires_ms = expires_at.saturating_mul(1000);
                Response::Refreshed { expires_at }.encode()
            }
            Err(e) => Response::Error(e).encode(),
        }
    }

    /// Reports the outcome of an Exchange (a token granted for a credential, or why not) and
    /// returns the frame to send on the Exchange's stream: Token, or the error (`token_expired`
    /// for a grant that has already expired at `now_ms`). The session's state, its
    /// authentication and its deadlines are unchanged. Empty when the session is closed.
    pub fn handle_exchanged(
        &mut self,
        now_ms: u64,
        result: Result<TokenGrant, WireError>,
    ) -> Vec<u8> {
        if self.is_closed() {
            return Vec::new();
        }
        match result {
            Ok(grant) if grant.expires_at.saturating_mul(1000) <= now_ms => Response::error(
                ErrorCode::TokenExpired,
                "the granted token has already expired",
            )
            .encode(),
            Ok(grant) => Response::Token(grant).encode(),
            Err(e) => Response::Error(e).encode(),
        }
    }

    /// The next deadline, in Unix ms: the authentication deadline until the Welcome is sent,
    /// then the end of the grace period after the token's expiry. `None` once closed.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.state {
            State::AwaitingHello | State::Authenticating => Some(self.auth_deadline_ms),
            State::Authenticated { expires_ms, .. } => {
                Some(expires_ms.saturating_add(self.config.expired_grace_ms))
            }
            State::Closed(_) => None,
        }
    }

    /// Tells the session the time is `now_ms` (call when [`ServerSession::poll_timeout`] passes).
    /// Returns the close when a deadline has passed: `unauthenticated` before the Welcome,
    /// `token_expired` after the grace period of an expired token.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Option<Close> {
        let deadline = self.poll_timeout()?;
        if now_ms < deadline {
            return None;
        }
        let close = match self.state {
            State::Authenticated { .. } => Close::error(
                ErrorCode::TokenExpired,
                "the token expired and was not refreshed",
            ),
            _ => Close::error(
                ErrorCode::Unauthenticated,
                "the connection did not authenticate in time",
            ),
        };
        self.state = State::Closed(close.clone());
        Some(close)
    }

    /// Whether the Welcome has been sent and the session is open.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated { .. })
    }

    /// Whether the connection must be (or has been) closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<&Close> {
        match &self.state {
            State::Closed(close) => Some(close),
            _ => None,
        }
    }

    /// What the Welcome said (with `expires_at` updated by refreshes), while authenticated.
    pub fn welcome(&self) -> Option<&Welcome> {
        match &self.state {
            State::Authenticated { welcome, .. } => Some(welcome),
            _ => None,
        }
    }

    /// Closes with an error and returns the error frame and the close.
    fn reply_and_close(&mut self, close: Close) -> Step {
        let bytes = self.close_with_error(close.clone());
        Step::ReplyAndClose(bytes, close)
    }

    /// Closes with an error and returns the error frame.
    fn close_with_error(&mut self, close: Close) -> Vec<u8> {
        let code = close.code.unwrap_or(ErrorCode::Internal);
        let bytes = Response::error(code, close.reason.clone()).encode();
        self.state = State::Closed(close);
        bytes
    }
}

fn reply(e: WireError) -> Step {
    Step::Reply(Response::Error(e).encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_response;
    use agentdb_core::{AgentId, HubId, ModelId, SessionId, TenantId};

    fn welcome(expires_at: u64) -> Welcome {
        Welcome {
            agent: AgentId::new("a").unwrap(),
            tenant: TenantId::new("t").unwrap(),
            hub: HubId::new("h").unwrap(),
            session: SessionId::from_random([1; 16]),
            expires_at,
            embedder: ModelId::new("m").unwrap(),
        }
    }

    #[test]
    fn config_defaults() {
        let c = SessionConfig::default();
        assert_eq!(c.auth_timeout_ms, 5_000);
        assert_eq!(c.max_frame_len, MAX_FRAME_LEN);
    }

    #[test]
    fn a_second_stream_during_authentication_closes() {
        let mut s = ServerSession::new(0, SessionConfig::default());
        let hello = Request::Hello(Hello::new("tok")).encode();
        assert!(matches!(s.handle_stream(1, &hello), Step::Authenticate(_)));
        let Step::ReplyAndClose(_, close) = s.handle_stream(2, &Request::Stats.encode()) else {
            panic!("expected a close");
        };
        assert_eq!(close.code, Some(ErrorCode::Unauthenticated));
        assert!(s.handle_auth(3, Ok(welcome(10))).is_empty());
    }

    #[test]
    fn a_late_auth_result_closes() {
        let mut s = ServerSession::new(0, SessionConfig::default());
        let hello = Request::Hello(Hello::new("tok")).encode();
        assert!(matches!(s.handle_stream(1, &hello), Step::Authenticate(_)));
        let bytes = s.handle_auth(5_000, Ok(welcome(10)));
        match decode_response(&bytes, MAX_FRAME_LEN).unwrap() {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::Unauthenticated),
            other => panic!("{other:?}"),
        }
        assert!(s.is_closed());
    }

    #[test]
    fn refresh_results_outside_a_session_are_ignored() {
        let mut s = ServerSession::new(0, SessionConfig::default());
        assert!(s.handle_token_refreshed(1, Ok(10)).is_empty());
        assert!(!s.is_closed());
    }

    #[test]
    fn close_codes() {
        assert_eq!(
            Close {
                code: None,
                reason: String::new()
            }
            .app_error_code(),
            0
        );
        assert_eq!(
            Close::error(ErrorCode::TooLarge, "").app_error_code(),
            u32::from(ErrorCode::TooLarge.to_u16())
        );
    }
}
