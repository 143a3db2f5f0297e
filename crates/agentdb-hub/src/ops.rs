//! Executing an authenticated request against the memory engine.

use std::sync::Arc;
use std::time::Instant;

use agentdb_memory::{
    index::IndexError, Change as EngineChange, Query, QueryError, QueryInput as EngineInput,
    ReplicaError, StoreError,
};
use agentdb_proto::{
    Change, ChangeItem, ErrorCode, ListResponse, MatchesResponse, PageResponse, QueryInput,
    Request, Response, StoredItem, StoredResponse, WireEpisode, WireError, WireMatch,
};
use agentdb_security::policy::{self, Operation, VerifiedIdentity};

use crate::auth::{error, policy_error};
use crate::metrics::{KindLabels, RequestLabels};
use crate::quota::AdmitError;
use crate::request_id::RequestId;
use crate::state::HubState;

/// Most changes one pull returns.
const MAX_PULL: usize = 1000;

/// Runs `req` for `identity` and returns the response. Counts it in the metrics and records
/// it in the audit log (operation, episode ids, outcome; never content) under `request_id`:
/// the HTTP request's, or (`None`, a QUIC request) one minted here when the log records it.
pub(crate) async fn execute(
    state: Arc<HubState>,
    identity: Arc<VerifiedIdentity>,
    req: Request,
    request_id: Option<&RequestId>,
) -> Response {
    let kind = req.name();
    let started = Instant::now();
    let audited = state.audit.is_enabled().then(|| {
        (
            crate::audit::request_operation(&req),
            crate::audit::request_episodes(&req),
        )
    });
    let audit_identity = audited.as_ref().map(|_| Arc::clone(&identity));
    let response = match state.begin_request(&identity.claims.tenant) {
        None => Response::Error(error(
            ErrorCode::Overloaded,
            "too many requests of this tenant in flight; retry shortly",
        )),
        Some(slot) => {
            let st = Arc::clone(&state);
            let result = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                run(&st, &identity, req)
            })
            .await;
            match result {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Response::Error(e),
                Err(_) => Response::Error(error(ErrorCode::Internal, "request handler failed")),
            }
        }
    };
    let outcome = match &response {
        Response::Error(e) => e.code.as_str(),
        _ => "ok",
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { kind, outcome })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    if let (Some((operation, requested)), Some(identity)) = (audited, audit_identity) {
        let request_id = request_id.cloned().unwrap_or_else(RequestId::new);
        crate::audit::operation(
            &state,
            &identity,
            operation,
            requested,
            &response,
            request_id.as_str(),
        );
    }
    response
}

fn run(state: &HubState, identity: &VerifiedIdentity, req: Request) -> Result<Response, WireError> {
    // The tenant is the token's — never anything the request says.
    let tenant = &identity.claims.tenant;
    let engine = &state.engine;
    match req {
        Request::Store(store) => {
            policy::authorize(identity, Operation::Store, tenant).map_err(|e| policy_error(&e))?;
            let fed = &state.federation.config;
            if !fed.residency.allows(tenant, &fed.region) {
                return Err(error(
                    ErrorCode::Forbidden,
                    format!(
                        "tenant {tenant} may not be stored in region {} (residency); use a hub \
                         of an allowed region",
                        fed.region
                    ),
                ));
            }
            // The session has already refused batches with episodes lacking an id.
            let mut episodes = store
                .into_episodes()
                .map_err(|e| error(ErrorCode::InvalidRequest, e.to_string()))?;
            for e in &mut episodes {
                // The agent is the authenticated one, whatever the episode says.
                e.agent = Some(identity.claims.sub.clone());
            }
            // Checked and reserved before the write; released if it fails.
            let ticket = state
                .quotas
                .admit_store(engine, tenant, &episodes, Instant::now())
                .map_err(|e| admit_error(state, tenant, e))?;
            let stored = engine
                .store_batch(tenant, episodes)
                .map_err(|e| store_error(&e))?;
            ticket.settle_store(&stored);
            let new = stored.iter().filter(|s| s.inserted).count() as u64;
            state.metrics.episodes_stored.inc_by(new);
            Ok(Response::Stored(StoredResponse {
                results: stored
                    .into_iter()
                    .map(|s| StoredItem {
                        id: s.id,
                        inserted: s.inserted,
                    })
                    .collect(),
            }))
        }
        Request::Query(q) => {
            policy::authorize(identity, Operation::Query, tenant).map_err(|e| policy_error(&e))?;
            let input = match q.input {
                QueryInput::Text(t) => {
                    // Embed here so that the agent gets the query vector back and can search its
                    // local cache with the same vector.
                    let v = engine
                        .embedder()
                        .embed(&t)
                        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
                    agentdb_core::Embedding {
                        model: engine.embedder().model().clone(),
                        vector: v,
                    }
                }
                QueryInput::Vector(v) => v,
            };
            let query = Query {
                input: EngineInput::Vector(input.clone()),
                k: q.k as usize,
                filter: q.filter,
            };
            let matches = engine.query(tenant, &query).map_err(|e| query_error(&e))?;
            Ok(Response::Matches(MatchesResponse {
                matches: matches
                    .into_iter()
                    .map(|m| WireMatch {
                        episode: WireEpisode::from(m.episode),
                        score: m.score,
                    })
                    .collect(),
                model: input.model,
                query_vector: input.vector,
            }))
        }
        Request::Pull(p) => {
            policy::authorize(identity, Operation::Pull, tenant).map_err(|e| policy_error(&e))?;
            let limit = (p.limit as usize).clamp(1, MAX_PULL);
            let page = engine
                .changes_since(tenant, p.cursor, limit)
                .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
            Ok(Response::Page(PageResponse {
                changes: page
                    .changes
                    .into_iter()
                    .map(|(seq, c)| ChangeItem {
                        seq,
                        change: match c {
                            EngineChange::Put(e) => Change::Put(WireEpisode::from(*e)),
                            EngineChange::Deleted(id) => Change::Deleted { id },
                        },
                    })
                    .collect(),
                next_cursor: page.next_cursor,
                more: page.more,
            }))
        }
        Request::Stats => {
            policy::authorize(identity, Operation::Stats, tenant).map_err(|e| policy_error(&e))?;
            let stats = engine
                .stats(tenant)
                .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
            Ok(Response::Stats(stats))
        }
        Request::Update(u) => {
            policy::authorize(identity, Operation::Store, tenant).map_err(|e| policy_error(&e))?;
            let ticket = state
                .quotas
                .admit_update(engine, tenant, &u.id, &u.update, Instant::now())
                .map_err(|e| admit_error(state, tenant, e))?;
            let found = engine
                .update(tenant, &u.id, &u.update)
                .map_err(|e| match e {
                    ReplicaError::Store(e) => store_error(&e),
                    e => error(ErrorCode::Internal, e.to_string()),
                })?;
            ticket.settle(found);
            Ok(Response::Done { found })
        }
        Request::Delete(d) => {
            policy::authorize(identity, Operation::Store, tenant).map_err(|e| policy_error(&e))?;
            let ticket = state
                .quotas
                .admit_delete(engine, tenant, &d.id, Instant::now())
                .map_err(|e| admit_error(state, tenant, e))?;
            let found = engine
                .delete(tenant, &d.id)
                .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
            ticket.settle_delete(found);
            Ok(Response::Done { found })
        }
        Request::Get(g) => {
            policy::authorize(identity, Operation::Query, tenant).map_err(|e| policy_error(&e))?;
            let episode = engine
                .get(tenant, &g.id)
                .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
            Ok(Response::Episode(episode.map(WireEpisode::from)))
        }
        Request::List(l) => {
            policy::authorize(identity, Operation::Query, tenant).map_err(|e| policy_error(&e))?;
            let page = engine
                .list(tenant, l.after, l.limit as usize)
                .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
            Ok(Response::Listed(ListResponse {
                episodes: page.episodes.into_iter().map(WireEpisode::from).collect(),
                next: page.next,
            }))
        }
        Request::Hello(_) | Request::RefreshToken(_) | Request::Goodbye | Request::Exchange(_) => {
            Err(error(
                ErrorCode::InvalidRequest,
                "session requests are handled by the session",
            ))
        }
    }
}

/// A write a quota refused (`quota_exceeded`, counted per tenant), or could not check.
fn admit_error(state: &HubState, tenant: &agentdb_core::TenantId, e: AdmitError) -> WireError {
    match e {
        AdmitError::Refused(refusal) => {
            state.tenant_metrics.refused(tenant, refusal.quota());
            refusal.to_error(tenant)
        }
        AdmitError::Count(message) => error(ErrorCode::Internal, message),
    }
}

fn store_error(e: &StoreError) -> WireError {
    let code = match e {
        StoreError::Invalid(agentdb_core::EpisodeError::TooLarge { .. })
        | StoreError::BatchTooLarge { .. } => ErrorCode::TooLarge,
        StoreError::Invalid(_)
        | StoreError::EmbedderMismatch { .. }
        | StoreError::Index(IndexError::Dimensions { .. } | IndexError::ModelMismatch { .. }) => {
            ErrorCode::InvalidRequest
        }
        _ => ErrorCode::Internal,
    };
    error(code, e.to_string())
}

fn query_error(e: &QueryError) -> WireError {
    let code = match e {
        QueryError::BadK { .. }
        | QueryError::BadFilter(_)
        | QueryError::InvalidVector(_)
        | QueryError::EmbedderMismatch { .. }
        | QueryError::Index(IndexError::Dimensions { .. } | IndexError::ModelMismatch { .. }) => {
            ErrorCode::InvalidRequest
        }
        _ => ErrorCode::Internal,
    };
    error(code, e.to_string())
}
