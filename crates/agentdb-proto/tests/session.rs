//! The hub's session state machine, driven with bytes and a hand-moved clock: no sockets.

#![allow(clippy::unwrap_used)]

use agentdb_core::{AgentId, EpisodeId, HubId, ModelId, NewEpisode, SessionId, TenantId};
use agentdb_proto::{
    decode_response, encode_frame, Close, ErrorCode, ExchangeRequest, GetRequest, Hello,
    ListRequest, PullRequest, RefreshRequest, Request, Response, ServerSession, SessionConfig,
    Step, StoreRequest, TokenGrant, Welcome, WireError, MAX_FRAME_LEN,
};

const T0: u64 = 1_700_000_000_000;

fn welcome(expires_at: u64) -> Welcome {
    Welcome {
        agent: AgentId::new("agent-1").unwrap(),
        tenant: TenantId::new("acme").unwrap(),
        hub: HubId::new("hub-1").unwrap(),
        session: SessionId::from_random([9; 16]),
        expires_at,
        embedder: ModelId::new("agentdb-lexical-v1").unwrap(),
    }
}

fn response(bytes: &[u8]) -> Response {
    decode_response(bytes, MAX_FRAME_LEN).unwrap()
}

fn error_code(bytes: &[u8]) -> ErrorCode {
    match response(bytes) {
        Response::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The code of a `Reply` step that carries an error.
fn replied_error(step: Step) -> ErrorCode {
    match step {
        Step::Reply(bytes) => error_code(&bytes),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// The code of a `ReplyAndClose` step, checking the reply and the close agree.
fn closed_with(step: Step) -> ErrorCode {
    match step {
        Step::ReplyAndClose(bytes, close) => {
            let code = error_code(&bytes);
            assert_eq!(close.code, Some(code));
            code
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A session authenticated at `T0` whose token expires at `expires_at` (Unix seconds).
fn authenticated(expires_at: u64) -> ServerSession {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    let step = s.handle_stream(T0 + 10, &Request::Hello(Hello::new("tok")).encode());
    let Step::Authenticate(hello) = step else {
        panic!("expected Authenticate, got {step:?}");
    };
    assert_eq!(hello.token, "tok");
    let bytes = s.handle_auth(T0 + 20, Ok(welcome(expires_at)));
    assert_eq!(response(&bytes), Response::Welcome(welcome(expires_at)));
    assert!(s.is_authenticated());
    s
}

#[test]
fn first_message_must_be_hello() {
    for first in [
        Request::Stats,
        Request::Goodbye,
        Request::Pull(PullRequest {
            cursor: 0,
            limit: 1,
        }),
        Request::RefreshToken(RefreshRequest { token: "t".into() }),
        Request::Get(GetRequest {
            id: EpisodeId::from_parts(1, [1; 10]),
        }),
        Request::List(ListRequest {
            after: None,
            limit: 10,
        }),
    ] {
        let mut s = ServerSession::new(T0, SessionConfig::default());
        assert_eq!(
            closed_with(s.handle_stream(T0, &first.encode())),
            ErrorCode::Unauthenticated
        );
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
        // Everything after the close is dropped.
        assert_eq!(
            s.handle_stream(T0, &Request::Hello(Hello::new("t")).encode()),
            Step::Closed
        );
        assert!(s.handle_auth(T0, Ok(welcome(0))).is_empty());
    }
}

#[test]
fn undecodable_first_streams_close_with_their_code() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    assert_eq!(
        closed_with(s.handle_stream(T0, &encode_frame(555, &()))),
        ErrorCode::UnknownMessage
    );
    let mut s = ServerSession::new(T0, SessionConfig::default());
    assert_eq!(
        closed_with(s.handle_stream(T0, &[1, 2, 3])),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn hello_in_another_protocol_version_is_refused() {
    for protocol_version in [
        agentdb_proto::PROTOCOL_VERSION - 1,
        agentdb_proto::PROTOCOL_VERSION + 1,
    ] {
        let mut s = ServerSession::new(T0, SessionConfig::default());
        let hello = Request::Hello(Hello {
            protocol_version,
            token: "t".into(),
        });
        assert_eq!(
            closed_with(s.handle_stream(T0, &hello.encode())),
            ErrorCode::InvalidRequest
        );
    }
}

#[test]
fn auth_deadline_closes_with_unauthenticated() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    assert_eq!(s.poll_timeout(), Some(T0 + 5_000));
    assert_eq!(s.handle_timeout(T0 + 4_999), None);
    assert!(!s.is_closed());
    let close = s.handle_timeout(T0 + 5_000).unwrap();
    assert_eq!(close.code, Some(ErrorCode::Unauthenticated));
    assert_eq!(close.app_error_code(), 1);
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(&close));
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.handle_timeout(T0 + 10_000), None);
}

#[test]
fn the_deadline_also_covers_token_verification() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    let step = s.handle_stream(T0 + 1, &Request::Hello(Hello::new("t")).encode());
    assert!(matches!(step, Step::Authenticate(_)));
    assert_eq!(s.poll_timeout(), Some(T0 + 5_000));
    let close = s.handle_timeout(T0 + 5_000).unwrap();
    assert_eq!(close.code, Some(ErrorCode::Unauthenticated));
    assert!(s.handle_auth(T0 + 5_001, Ok(welcome(0))).is_empty());
}

#[test]
fn a_hello_after_the_deadline_is_refused() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    let step = s.handle_stream(T0 + 5_000, &Request::Hello(Hello::new("t")).encode());
    assert_eq!(closed_with(step), ErrorCode::Unauthenticated);
}

#[test]
fn failed_auth_replies_and_closes() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    s.handle_stream(T0, &Request::Hello(Hello::new("forged")).encode());
    let bytes = s.handle_auth(
        T0 + 1,
        Err(WireError::new(
            ErrorCode::TenantMismatch,
            "cert names another tenant",
        )),
    );
    assert_eq!(error_code(&bytes), ErrorCode::TenantMismatch);
    assert!(s.is_closed());
    assert_eq!(
        s.close_reason().unwrap().code,
        Some(ErrorCode::TenantMismatch)
    );
}

#[test]
fn authenticated_requests_are_dispatched() {
    let expires_at = T0 / 1000 + 300;
    let mut s = authenticated(expires_at);
    assert_eq!(s.welcome(), Some(&welcome(expires_at)));
    let grace = SessionConfig::default().expired_grace_ms;
    assert_eq!(s.poll_timeout(), Some(expires_at * 1000 + grace));
    let pull = Request::Pull(PullRequest {
        cursor: 3,
        limit: 100,
    });
    assert_eq!(
        s.handle_stream(T0 + 100, &pull.encode()),
        Step::Dispatch(pull)
    );
    assert_eq!(
        s.handle_stream(T0 + 100, &Request::Stats.encode()),
        Step::Dispatch(Request::Stats)
    );
    let store = Request::Store(StoreRequest::from_episodes([NewEpisode::new(
        "t", "i", "o", 1.0,
    )
    .with_id(EpisodeId::from_parts(T0, [1; 10]))]));
    assert_eq!(
        s.handle_stream(T0 + 100, &store.encode()),
        Step::Dispatch(store)
    );
    let get = Request::Get(GetRequest {
        id: EpisodeId::from_parts(T0, [2; 10]),
    });
    assert_eq!(
        s.handle_stream(T0 + 100, &get.encode()),
        Step::Dispatch(get)
    );
    let list = Request::List(ListRequest {
        after: Some(EpisodeId::from_parts(T0, [1; 10])),
        limit: 50,
    });
    assert_eq!(
        s.handle_stream(T0 + 100, &list.encode()),
        Step::Dispatch(list)
    );
}

#[test]
fn get_and_list_need_an_unexpired_token() {
    let expires_at = T0 / 1000 + 1;
    let mut s = authenticated(expires_at);
    let after = expires_at * 1000;
    for request in [
        Request::Get(GetRequest {
            id: EpisodeId::from_parts(T0, [2; 10]),
        }),
        Request::List(ListRequest {
            after: None,
            limit: 50,
        }),
    ] {
        assert_eq!(
            replied_error(s.handle_stream(after, &request.encode())),
            ErrorCode::TokenExpired
        );
    }
    assert!(s.is_authenticated());
}

fn exchange(api_key: Option<&str>) -> ExchangeRequest {
    ExchangeRequest {
        api_key: api_key.map(str::to_owned),
        agent: Some(AgentId::new("agent-1").unwrap()),
        scopes: vec!["memory:read".into()],
        ttl_secs: Some(300),
    }
}

fn grant(expires_at: u64) -> TokenGrant {
    TokenGrant {
        token: "minted".into(),
        expires_at,
        tenant: TenantId::new("acme").unwrap(),
        agent: AgentId::new("agent-1").unwrap(),
        scopes: vec!["memory:read".into()],
    }
}

#[test]
fn exchange_before_hello_does_not_authenticate() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    let deadline = s.poll_timeout();
    let request = exchange(Some("key"));
    assert_eq!(
        s.handle_stream(T0 + 1, &Request::Exchange(request.clone()).encode()),
        Step::Exchange(request)
    );
    let expires_at = T0 / 1000 + 300;
    let bytes = s.handle_exchanged(T0 + 2, Ok(grant(expires_at)));
    assert_eq!(response(&bytes), Response::Token(grant(expires_at)));
    assert!(!s.is_authenticated());
    assert_eq!(s.welcome(), None);
    assert_eq!(
        s.poll_timeout(),
        deadline,
        "the auth deadline must not move"
    );
    // A failed exchange is answered and leaves the session waiting for its Hello.
    let step = s.handle_stream(T0 + 3, &Request::Exchange(exchange(None)).encode());
    assert_eq!(step, Step::Exchange(exchange(None)));
    let bytes = s.handle_exchanged(
        T0 + 4,
        Err(WireError::new(ErrorCode::Unauthenticated, "unknown key")),
    );
    assert_eq!(error_code(&bytes), ErrorCode::Unauthenticated);
    assert!(!s.is_closed());
    assert_eq!(s.poll_timeout(), deadline);
    // The granted token then authenticates through an ordinary Hello.
    let step = s.handle_stream(T0 + 5, &Request::Hello(Hello::new("minted")).encode());
    assert!(matches!(step, Step::Authenticate(h) if h.token == "minted"));
    let bytes = s.handle_auth(T0 + 6, Ok(welcome(expires_at)));
    assert_eq!(response(&bytes), Response::Welcome(welcome(expires_at)));
    assert!(s.is_authenticated());
}

#[test]
fn exchanges_do_not_extend_the_auth_deadline() {
    let config = SessionConfig::default();
    let mut s = ServerSession::new(T0, config);
    let deadline = T0 + config.auth_timeout_ms;
    let request = Request::Exchange(exchange(Some("key"))).encode();
    assert!(matches!(
        s.handle_stream(deadline - 1, &request),
        Step::Exchange(_)
    ));
    let bytes = s.handle_exchanged(deadline - 1, Ok(grant(T0 / 1000 + 300)));
    assert!(matches!(response(&bytes), Response::Token(_)));
    assert_eq!(s.handle_timeout(deadline - 1), None);
    let close = s.handle_timeout(deadline).unwrap();
    assert_eq!(close.code, Some(ErrorCode::Unauthenticated));
    assert!(s
        .handle_exchanged(deadline, Ok(grant(T0 / 1000 + 300)))
        .is_empty());
    // An exchange arriving after the deadline is refused like any other stream.
    let mut late = ServerSession::new(T0, config);
    assert_eq!(
        closed_with(late.handle_stream(deadline, &request)),
        ErrorCode::Unauthenticated
    );
}

#[test]
fn exchange_while_the_hello_is_verified() {
    let mut s = ServerSession::new(T0, SessionConfig::default());
    let step = s.handle_stream(T0 + 1, &Request::Hello(Hello::new("tok")).encode());
    assert!(matches!(step, Step::Authenticate(_)));
    let request = exchange(Some("key"));
    assert_eq!(
        s.handle_stream(T0 + 2, &Request::Exchange(request.clone()).encode()),
        Step::Exchange(request)
    );
    let expires_at = T0 / 1000 + 300;
    let bytes = s.handle_exchanged(T0 + 3, Ok(grant(expires_at)));
    assert!(matches!(response(&bytes), Response::Token(_)));
    // The pending Hello still completes.
    let bytes = s.handle_auth(T0 + 4, Ok(welcome(expires_at)));
    assert_eq!(response(&bytes), Response::Welcome(welcome(expires_at)));
    assert!(s.is_authenticated());
}

#[test]
fn exchange_after_welcome_works_with_an_expired_token() {
    let expires_at = T0 / 1000 + 1;
    let mut s = authenticated(expires_at);
    let request = exchange(Some("key"));
    let after = expires_at * 1000 + 5;
    assert_eq!(
        s.handle_stream(after, &Request::Exchange(request.clone()).encode()),
        Step::Exchange(request)
    );
    let fresh = expires_at + 600;
    let bytes = s.handle_exchanged(after, Ok(grant(fresh)));
    assert_eq!(response(&bytes), Response::Token(grant(fresh)));
    // The exchange did not refresh the session: its token is still the expired one.
    assert_eq!(s.welcome().unwrap().expires_at, expires_at);
    assert_eq!(
        replied_error(s.handle_stream(after, &Request::Stats.encode())),
        ErrorCode::TokenExpired
    );
    // A grant that has already expired is not handed out.
    let bytes = s.handle_exchanged(after, Ok(grant(expires_at)));
    assert_eq!(error_code(&bytes), ErrorCode::TokenExpired);
    assert!(s.is_authenticated());
}

#[test]
fn store_without_ids_is_invalid() {
    let mut s = authenticated(T0 / 1000 + 300);
    let store = Request::Store(StoreRequest::from_episodes([NewEpisode::new(
        "t", "i", "o", 1.0,
    )]));
    assert_eq!(
        replied_error(s.handle_stream(T0 + 100, &store.encode())),
        ErrorCode::InvalidRequest
    );
    assert!(s.is_authenticated());
}

#[test]
fn errors_after_auth_keep_the_connection() {
    let mut s = authenticated(T0 / 1000 + 300);
    // Unknown kind.
    assert_eq!(
        replied_error(s.handle_stream(T0 + 1, &encode_frame(4242, &"future"))),
        ErrorCode::UnknownMessage
    );
    // A second Hello.
    assert_eq!(
        replied_error(s.handle_stream(T0 + 2, &Request::Hello(Hello::new("t")).encode())),
        ErrorCode::InvalidRequest
    );
    // Garbage.
    assert_eq!(
        replied_error(s.handle_stream(T0 + 3, &[0, 0, 0, 5, 0, 3, 0, 1, 0xff])),
        ErrorCode::InvalidRequest
    );
    assert!(s.is_authenticated());
    assert!(!s.is_closed());
    assert_eq!(
        s.handle_stream(T0 + 4, &Request::Stats.encode()),
        Step::Dispatch(Request::Stats)
    );
}

#[test]
fn oversized_frames_get_too_large() {
    let config = SessionConfig {
        max_frame_len: 64,
        ..SessionConfig::default()
    };
    let mut s = ServerSession::new(T0, config);
    s.handle_stream(T0, &Request::Hello(Hello::new("t")).encode());
    s.handle_auth(T0, Ok(welcome(T0 / 1000 + 300)));
    let big = Request::Hello(Hello::new("x".repeat(100))).encode();
    assert_eq!(
        replied_error(s.handle_stream(T0 + 1, &big)),
        ErrorCode::TooLarge
    );
    // The length prefix alone is enough.
    assert_eq!(
        replied_error(s.handle_stream(T0 + 1, &big[..4])),
        ErrorCode::TooLarge
    );
    assert!(s.is_authenticated());
}

#[test]
fn oversized_hello_closes_with_too_large() {
    let config = SessionConfig {
        max_frame_len: 16,
        ..SessionConfig::default()
    };
    let mut s = ServerSession::new(T0, config);
    let big = Request::Hello(Hello::new("x".repeat(100))).encode();
    assert_eq!(closed_with(s.handle_stream(T0, &big)), ErrorCode::TooLarge);
}

#[test]
fn token_expiry_then_refresh() {
    let expires_at = T0 / 1000 + 60;
    let mut s = authenticated(expires_at);
    let expiry_ms = expires_at * 1000;
    // Just before expiry: served.
    assert_eq!(
        s.handle_stream(expiry_ms - 1, &Request::Stats.encode()),
        Step::Dispatch(Request::Stats)
    );
    // At expiry: token_expired, connection open.
    assert_eq!(
        replied_error(s.handle_stream(expiry_ms, &Request::Stats.encode())),
        ErrorCode::TokenExpired
    );
    assert_eq!(s.handle_timeout(expiry_ms + 1), None);
    assert!(s.is_authenticated());
    // Refresh still goes through.
    let refresh = RefreshRequest {
        token: "fresh".into(),
    };
    assert_eq!(
        s.handle_stream(
            expiry_ms + 5,
            &Request::RefreshToken(refresh.clone()).encode()
        ),
        Step::Refresh(refresh)
    );
    let new_expires_at = expires_at + 300;
    let bytes = s.handle_token_refreshed(expiry_ms + 6, Ok(new_expires_at));
    assert_eq!(
        response(&bytes),
        Response::Refreshed {
            expires_at: new_expires_at
        }
    );
    assert_eq!(s.welcome().unwrap().expires_at, new_expires_at);
    assert_eq!(
        s.poll_timeout(),
        Some(new_expires_at * 1000 + SessionConfig::default().expired_grace_ms)
    );
    assert_eq!(
        s.handle_stream(expiry_ms + 7, &Request::Stats.encode()),
        Step::Dispatch(Request::Stats)
    );
}

#[test]
fn a_failed_refresh_changes_nothing() {
    let expires_at = T0 / 1000 + 60;
    let mut s = authenticated(expires_at);
    let bytes = s.handle_token_refreshed(
        T0 + 1,
        Err(WireError::new(ErrorCode::Forbidden, "other agent")),
    );
    assert_eq!(error_code(&bytes), ErrorCode::Forbidden);
    assert_eq!(s.welcome().unwrap().expires_at, expires_at);
    // A "refreshed" token that is already expired is refused.
    let bytes = s.handle_token_refreshed(T0 + 2, Ok(T0 / 1000));
    assert_eq!(error_code(&bytes), ErrorCode::TokenExpired);
    assert!(s.is_authenticated());
}

#[test]
fn unrefreshed_tokens_close_after_the_grace_period() {
    let expires_at = T0 / 1000 + 60;
    let mut s = authenticated(expires_at);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(
        deadline,
        expires_at * 1000 + SessionConfig::default().expired_grace_ms
    );
    assert_eq!(s.handle_timeout(deadline - 1), None);
    let close = s.handle_timeout(deadline).unwrap();
    assert_eq!(close.code, Some(ErrorCode::TokenExpired));
    assert!(s.is_closed());
}

#[test]
fn goodbye_says_bye_and_closes() {
    let mut s = authenticated(T0 / 1000 + 60);
    let step = s.handle_stream(T0 + 1, &Request::Goodbye.encode());
    let Step::ReplyAndClose(bytes, close) = step else {
        panic!("expected ReplyAndClose, got {step:?}");
    };
    assert_eq!(response(&bytes), Response::Bye);
    assert_eq!(
        close,
        Close {
            code: None,
            reason: "goodbye".into()
        }
    );
    assert_eq!(close.app_error_code(), 0);
    assert!(s.is_closed());
    assert_eq!(
        s.handle_stream(T0 + 2, &Request::Stats.encode()),
        Step::Closed
    );
    assert!(s.handle_token_refreshed(T0 + 3, Ok(T0)).is_empty());
}

#[test]
fn goodbye_works_with_an_expired_token() {
    let expires_at = T0 / 1000 + 1;
    let mut s = authenticated(expires_at);
    let step = s.handle_stream(expires_at * 1000 + 10, &Request::Goodbye.encode());
    assert!(matches!(
        step,
        Step::ReplyAndClose(_, Close { code: None, .. })
    ));
}
