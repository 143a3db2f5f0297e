//! A hub that answers wrongly is a protocol fault, not an unreachable hub: no local-only
//! fallback, and a typed error.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use agentdb_client::{AgentConfig, AgentError, EphemeralAgent, ProtocolError, StaticToken};
use agentdb_core::{NewEpisode, TenantId};
use agentdb_proto::{Request, Response};
use agentdb_testkit::TestPki;
use common::{FakeHub, Reply};

fn config(pki: &TestPki, hub: &FakeHub) -> AgentConfig {
    let mut config = AgentConfig::new(
        TenantId::new("acme").unwrap(),
        hub.url(),
        pki.ca_pem(),
        Arc::new(StaticToken("scripted".into())),
    )
    .server_name("localhost");
    config.read_cache = 0;
    config
}

#[tokio::test]
async fn an_answer_of_the_wrong_kind_is_a_protocol_error_not_a_local_answer() {
    let pki = TestPki::new();
    let hub = FakeHub::start(&pki, "acme", |req| match req {
        Request::Query(_) | Request::Stats => {
            Reply::Response(Box::new(Response::Done { found: true }))
        }
        _ => Reply::Response(Box::new(Response::Bye)),
    });
    let agent = EphemeralAgent::spawn(config(&pki, &hub)).await.unwrap();
    let err = agent.query_memories("anything", 3).await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Protocol(ProtocolError::UnexpectedResponse {
                request: "query",
                response: "done"
            })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), "protocol");
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "protocol error: unexpected done response to a query request"
    );
    let err = agent.stats().await.unwrap_err();
    assert!(matches!(err, AgentError::Protocol(_)), "{err}");
    // A store answered with the wrong kind is not taken as stored, nor as unreachable.
    let err = agent
        .store(NewEpisode::new("t", "i", "o", 0.5))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Protocol(_)), "{err}");
    agent.destroy().await.unwrap();
}

#[tokio::test]
async fn an_undecodable_answer_is_a_protocol_error_not_a_local_answer() {
    let pki = TestPki::new();
    let hub = FakeHub::start(&pki, "acme", |_| {
        Reply::Raw(vec![0, 0, 0, 4, 0xff, 0xff, 0, 1, 1, 2, 3, 4])
    });
    let agent = EphemeralAgent::spawn(config(&pki, &hub)).await.unwrap();
    let err = agent.query_memories("anything", 3).await.unwrap_err();
    assert!(
        matches!(err, AgentError::Protocol(ProtocolError::Decode(_))),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'));
    agent.destroy().await.unwrap();
}

#[test]
fn error_kinds_are_stable_names() {
    use agentdb_client::{is_permanent, Unreachable};
    use agentdb_proto::ErrorCode;
    assert_eq!(AgentError::AgentExpired.kind(), "agent_expired");
    assert_eq!(
        AgentError::HubUnreachable(Unreachable::RequestTimeout).kind(),
        "hub_unreachable"
    );
    let refused = |code| AgentError::Rejected {
        code,
        message: String::new(),
    };
    assert_eq!(refused(ErrorCode::Forbidden).kind(), "rejected");
    for code in ErrorCode::ALL {
        let permanent = matches!(
            code,
            ErrorCode::Forbidden | ErrorCode::InvalidRequest | ErrorCode::TooLarge
        );
        assert_eq!(is_permanent(*code), permanent, "{code}");
        assert_eq!(
            refused(*code).is_retryable(),
            !permanent && *code != ErrorCode::AgentExpired,
            "{code}"
        );
    }
}
