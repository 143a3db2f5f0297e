//! The HTTPS/JSON gateway: the same memory as the QUIC session, for runtimes that cannot speak
//! QUIC (Cloudflare Workers, browsers, most serverless functions) and for tools that expect
//! HTTPS with an OpenAPI description.
//!
//! ```text
//! client ──TLS 1.3 (client certificate requested; required with mutual TLS)──► serve::run
//!   ─► axum router (HTTP/1.1 or HTTP/2)
//!        /v1/episodes, /v1/query, /v1/stats, /v1/changes
//!            Caller: auth::verify (the QUIC Hello's check) ─► Request ─► ops::execute ─► policy ─► engine
//!        /v1/token: credentials::exchange (API key or tenant certificate ─► token signed by this hub)
//!        /v1/openapi.json, /healthz
//! ```
//!
//! **Invariant:** a handler only translates JSON to a [`agentdb_proto::Request`] and a
//! [`agentdb_proto::Response`] back; authentication, tenant choice, policy, limits and metrics
//! are the QUIC path's, called, never rewritten. The router and the OpenAPI document are built
//! from one list of handlers (`utoipa-axum`), so every served route is documented.

mod changes;
mod dto;
mod episodes;
pub(crate) mod error;
mod extract;
mod query;
pub(crate) mod serve;
mod token;

use std::sync::{Arc, OnceLock};

use agentdb_proto::{ErrorCode, Request, Response};
use axum::extract::State;
use axum::Json;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::dto::Health;
use self::error::ApiError;
use self::extract::Caller;
use crate::ops;
use crate::state::HubState;

pub(crate) use self::extract::Connection;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Federated AgentDB",
        description = "Persistent, tenant-isolated memory for short-lived agents. Authenticate with \
                       `Authorization: Bearer <token>`; get a token from `POST /v1/token` with \
                       `Authorization: ApiKey <secret>` or a client certificate naming a tenant."
    ),
    modifiers(&Security),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    tags(
        (name = "episodes", description = "Store, read, change, delete and list episodes"),
        (name = "memory", description = "Semantic search, statistics and the change stream"),
        (name = "credentials", description = "Tokens from API keys or certificates"),
        (name = "service", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// The security schemes the paths name.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`ApiKey <secret>`, as printed by `agentdb tenant key create`",
            ))),
        );
    }
}

/// Every route with its documentation, before the state is attached.
fn api() -> OpenApiRouter<Arc<HubState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(episodes::store, episodes::list))
        .routes(routes!(episodes::get, episodes::patch, episodes::delete))
        .routes(routes!(query::query))
        .routes(routes!(query::stats))
        .routes(routes!(changes::changes))
        .routes(routes!(token::issue, token::revoke))
        .routes(routes!(openapi_json))
        .routes(routes!(healthz))
}

/// The OpenAPI document of the gateway.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = api().split_for_parts().1;
        utoipa::Modify::modify(&RequestIdHeader, &mut document);
        document
    })
}

/// Declares [`crate::request_id::HEADER`] on every response of every path (the router's
/// outermost middleware adds it to every answer).
struct RequestIdHeader;

impl utoipa::Modify for RequestIdHeader {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{header::HeaderBuilder, ObjectBuilder, RefOr, Type};
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The hub's id of this request; its audit log records the request under it.",
            ))
            .build();
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        let name = crate::request_id::HEADER.to_owned();
                        response.headers.insert(name, header.clone());
                    }
                }
            }
        }
    }
}

/// The gateway's router, for `state`. An unknown path answers 404 in the error format.
pub(crate) fn router(state: Arc<HubState>) -> Router {
    let (router, _) = api().split_for_parts();
    router
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .layer(axum::middleware::from_fn(crate::request_id::tag))
        .with_state(state)
}

/// This document, as JSON.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// Whether the hub serves; needs no token.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses((status = 200, body = Health))
)]
async fn healthz(State(state): State<Arc<HubState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        hub: state.config.hub_id.clone(),
    })
}

/// Runs `request` for the caller through the QUIC path's operation layer.
async fn call(
    state: &Arc<HubState>,
    caller: &Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let identity = Arc::clone(&caller.identity);
    match ops::execute(Arc::clone(state), identity, request, Some(&caller.request)).await {
        Response::Error(e) => Err(ApiError::from(e)),
        response => Ok(response),
    }
}

/// An answer of the wrong kind: a fault on the hub.
fn unexpected(response: &Response) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("unexpected answer {}", response.name()),
    )
}

/// An opaque cursor as the gateway hands it out (absent: from the start).
fn cursor(text: Option<&str>) -> Result<u64, ApiError> {
    match text {
        None | Some("") => Ok(0),
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::malformed(format!("{t:?} is not a cursor this hub issued"))),
    }
}
