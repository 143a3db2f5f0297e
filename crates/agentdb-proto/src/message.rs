//! The messages: requests from agent to hub, responses from hub to agent, and their error codes.
//!
//! Every message travels as one frame (see `frame.rs`) whose `kind` says which message it is and
//! whose body is the postcard encoding of the message's payload:
//!
//! | kind | message                  | body                   |
//! |------|--------------------------|------------------------|
//! | 1    | `Request::Hello`         | [`Hello`]              |
//! | 2    | `Request::Store`         | [`StoreRequest`]       |
//! | 3    | `Request::Query`         | [`QueryRequest`]       |
//! | 4    | `Request::Pull`          | [`PullRequest`]        |
//! | 5    | `Request::Stats`         | empty                  |
//! | 6    | `Request::RefreshToken`  | [`RefreshRequest`]     |
//! | 7    | `Request::Goodbye`       | empty                  |
//! | 8    | `Request::Update`        | [`UpdateRequest`]      |
//! | 9    | `Request::Delete`        | [`DeleteRequest`]      |
//! | 10   | `Request::Get`           | [`GetRequest`]         |
//! | 11   | `Request::List`          | [`ListRequest`]        |
//! | 12   | `Request::Exchange`      | [`ExchangeRequest`]    |
//! | 101  | `Response::Welcome`      | [`Welcome`]            |
//! | 102  | `Response::Stored`       | [`StoredResponse`]     |
//! | 103  | `Response::Matches`      | [`MatchesResponse`]    |
//! | 104  | `Response::Page`         | [`PageResponse`]       |
//! | 105  | `Response::Stats`        | [`TenantStats`]        |
//! | 106  | `Response::Refreshed`    | `expires_at` (u64)     |
//! | 107  | `Response::Bye`          | empty                  |
//! | 108  | `Response::Error`        | [`WireError`]          |
//! | 109  | `Response::Done`         | `found` (bool)         |
//! | 110  | `Response::Episode`      | `Option<WireEpisode>`  |
//! | 111  | `Response::Listed`       | [`ListResponse`]       |
//! | 112  | `Response::Token`        | [`TokenGrant`]         |
//!
//! Kinds are never reused. A kind this side does not know decodes to
//! [`DecodeError::UnknownMessage`], which the hub answers with `unknown_message` and keeps the
//! connection. A frame whose version is not [`PROTOCOL_VERSION`] decodes to
//! [`DecodeError::UnsupportedVersion`]. A body must be consumed exactly; trailing bytes are
//! malformed. One older layout is still read: a Query whose filter ends before `tags` and
//! `metadata` (as agents wrote it before filters had content conditions) decodes with both
//! empty.
//!
//! Error codes travel as a `u16` (table on [`ErrorCode`]); the same numbers serve as QUIC
//! application close codes, with 0 for a normal close.

use std::fmt;

use agentdb_core::{
    AgentId, Embedding, EpisodeId, EpisodeUpdate, Filter, HubId, ModelId, NewEpisode, Outcome,
    SessionId, TenantId, TenantStats, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::frame::{encode_frame, Frame, FrameDecoder, FrameError, MAX_FRAME_LEN};
use crate::wire::{WireEpisode, WireNewEpisode};
use crate::PROTOCOL_VERSION;

/// The message kinds, as written in the frame header.
pub mod kind {
    /// `Request::Hello`.
    pub const HELLO: u16 = 1;
    /// `Request::Store`.
    pub const STORE: u16 = 2;
    /// `Request::Query`.
    pub const QUERY: u16 = 3;
    /// `Request::Pull`.
    pub const PULL: u16 = 4;
    /// `Request::Stats`.
    pub const STATS: u16 = 5;
    /// `Request::RefreshToken`.
    pub const REFRESH_TOKEN: u16 = 6;
    /// `Request::Goodbye`.
    pub const GOODBYE: u16 = 7;
    /// `Request::Update`.
    pub const UPDATE: u16 = 8;
    /// `Request::Delete`.
    pub const DELETE: u16 = 9;
    /// `Request::Get`.
    pub const GET: u16 = 10;
    /// `Request::List`.
    pub const LIST: u16 = 11;
    /// `Request::Exchange`.
    pub const EXCHANGE: u16 = 12;
    /// `Response::Welcome`.
    pub const WELCOME: u16 = 101;
    /// `Response::Stored`.
    pub const STORED: u16 = 102;
    /// `Response::Matches`.
    pub const MATCHES: u16 = 103;
    /// `Response::Page`.
    pub const PAGE: u16 = 104;
    /// `Response::Stats`.
    pub const STATS_RESPONSE: u16 = 105;
    /// `Response::Refreshed`.
    pub const REFRESHED: u16 = 106;
    /// `Response::Bye`.
    pub const BYE: u16 = 107;
    /// `Response::Error`.
    pub const ERROR: u16 = 108;
    /// `Response::Done`.
    pub const DONE: u16 = 109;
    /// `Response::Episode`.
    pub const EPISODE: u16 = 110;
    /// `Response::Listed`.
    pub const LISTED: u16 = 111;
    /// `Response::Token`.
    pub const TOKEN: u16 = 112;
}

// ---------------------------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------------------------

/// A typed error as the wire carries it. The string form ([`ErrorCode::as_str`]) and the number
/// ([`ErrorCode::to_u16`]) are both stable:
///
/// | number | code              | meaning                                                   |
/// |--------|-------------------|-----------------------------------------------------------|
/// | 1      | `unauthenticated` | no valid Hello yet, or the token was refused              |
/// | 2      | `token_expired`   | the session's token expired; refresh it                   |
/// | 3      | `forbidden`       | the token's scope does not allow the request              |
/// | 4      | `tenant_mismatch` | token and certificate name different tenants              |
/// | 5      | `invalid_request` | the request is malformed or breaks a rule                 |
/// | 6      | `too_large`       | a frame or an item is over its size limit                 |
/// | 7      | `unknown_message` | the message kind is not known to this side                |
/// | 8      | `overloaded`      | the hub sheds load; retry later                           |
/// | 9      | `agent_expired`   | the agent's lifetime is over                              |
/// | 10     | `unavailable`     | the hub cannot serve the request now (e.g. shutting down) |
/// | 11     | `internal`        | a fault on the hub                                        |
/// | 12     | `not_found`       | the id does not exist for this tenant                     |
/// | 13     | `quota_exceeded`  | the write would pass one of the tenant's quotas; nothing  |
/// |        |                   | was written                                               |
///
/// A number this side does not know (sent by a newer peer) decodes as [`ErrorCode::Internal`]:
/// the caller cannot act on a code it does not know, and `internal` already means "fail, with
/// the message for a human". Numbers are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No valid Hello yet, or the token was refused.
    Unauthenticated,
    /// The session's token expired; refresh it.
    TokenExpired,
    /// The token's scope does not allow the request.
    Forbidden,
    /// The token and the client certificate name different tenants.
    TenantMismatch,
    /// The request is malformed or breaks a rule.
    InvalidRequest,
    /// A frame or an item is over its size limit.
    TooLarge,
    /// The message kind is not known to this side.
    UnknownMessage,
    /// The hub sheds load; retry later.
    Overloaded,
    /// The agent's lifetime is over.
    AgentExpired,
    /// The hub cannot serve the request now.
    Unavailable,
    /// A fault on the hub.
    Internal,
    /// The id does not exist for this tenant.
    NotFound,
    /// The write would pass one of the tenant's quotas (episodes, stored bytes, writes per
    /// second); nothing was written.
    QuotaExceeded,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Unauthenticated,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::TenantMismatch,
        ErrorCode::InvalidRequest,
        ErrorCode::TooLarge,
        ErrorCode::UnknownMessage,
        ErrorCode::Overloaded,
        ErrorCode::AgentExpired,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::NotFound,
        ErrorCode::QuotaExceeded,
    ];

    /// The stable snake_case name, e.g. `token_expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TenantMismatch => "tenant_mismatch",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::AgentExpired => "agent_expired",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }

    /// The stable number, as carried on the wire and used as a QUIC close code.
    pub const fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Unauthenticated => 1,
            ErrorCode::TokenExpired => 2,
            ErrorCode::Forbidden => 3,
            ErrorCode::TenantMismatch => 4,
            ErrorCode::InvalidRequest => 5,
            ErrorCode::TooLarge => 6,
            ErrorCode::UnknownMessage => 7,
            ErrorCode::Overloaded => 8,
            ErrorCode::AgentExpired => 9,
            ErrorCode::Unavailable => 10,
            ErrorCode::Internal => 11,
            ErrorCode::NotFound => 12,
            ErrorCode::QuotaExceeded => 13,
        }
    }

    /// The code for a number; numbers this side does not know map to [`ErrorCode::Internal`].
    pub const fn from_u16(value: u16) -> Self {
        match value {
            1 => ErrorCode::Unauthenticated,
            2 => ErrorCode::TokenExpired,
            3 => ErrorCode::Forbidden,
            4 => ErrorCode::TenantMismatch,
            5 => ErrorCode::InvalidRequest,
            6 => ErrorCode::TooLarge,
            7 => ErrorCode::UnknownMessage,
            8 => ErrorCode::Overloaded,
            9 => ErrorCode::AgentExpired,
            10 => ErrorCode::Unavailable,
            12 => ErrorCode::NotFound,
            13 => ErrorCode::QuotaExceeded,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.to_u16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u16::deserialize(d).map(ErrorCode::from_u16)
    }
}

/// An error response: a stable code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// Details for a human; not to be parsed.
    pub message: String,
}

impl WireError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<DecodeError> for WireError {
    fn from(e: DecodeError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A request from an agent to its hub; one per bi-stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Authenticate; must be the first stream of a connection.
    Hello(Hello),
    /// Store a batch of episodes, idempotently by id.
    Store(StoreRequest),
    /// Find similar episodes.
    Query(QueryRequest),
    /// Read the tenant's changes after a cursor, a page at a time.
    Pull(PullRequest),
    /// The tenant's numbers.
    Stats,
    /// Replace the session's token with a fresher one.
    RefreshToken(RefreshRequest),
    /// End the session; the hub answers `Bye` and closes.
    Goodbye,
    /// Change an episode's reward, critique or tags (last writer wins across hubs).
    Update(UpdateRequest),
    /// Delete an episode (the delete wins over any concurrent update, on every hub).
    Delete(DeleteRequest),
    /// Read one live episode by id.
    Get(GetRequest),
    /// Read the tenant's live episodes, a page at a time.
    List(ListRequest),
    /// Trade a credential (an API key, or the connection's client certificate) for a
    /// short-lived token. Accepted before and after Hello; it does not authenticate the
    /// connection.
    Exchange(ExchangeRequest),
}

/// Change an episode's mutable fields; fields left `None` keep their value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRequest {
    /// The episode.
    pub id: EpisodeId,
    /// The new values.
    pub update: EpisodeUpdate,
}

/// Delete an episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// The episode.
    pub id: EpisodeId,
}

/// Read one live episode by id; answered by [`Response::Episode`] (`None` when the tenant has no
/// live episode with this id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The episode.
    pub id: EpisodeId,
}

/// Read the tenant's live episodes in id order, at most `limit` of them; answered by
/// [`Response::Listed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Where to continue: `None` to start from the beginning, else the `next` of an earlier
    /// page; the page holds the live episodes with an id above it.
    pub after: Option<EpisodeId>,
    /// Most episodes to return; the hub may return fewer (and clamps it to its own limits).
    pub limit: u32,
}

/// Trade a credential for a short-lived token; answered by [`Response::Token`].
///
/// With `api_key` set, the key is the credential. With `api_key` `None`, the credential is the
/// client certificate of the connection the request arrives on. The request does not
/// authenticate the connection: a Hello with the granted token does.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRequest {
    /// The API key, or `None` to use the connection's client certificate.
    pub api_key: Option<String>,
    /// The agent the token is for; `None` lets the credential decide.
    pub agent: Option<AgentId>,
    /// The scopes asked for; empty means whatever the credential allows.
    pub scopes: Vec<String>,
    /// The lifetime asked for, in seconds; `None` for the hub's default. The hub may grant less.
    pub ttl_secs: Option<u64>,
}

impl fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("agent", &self.agent)
            .field("scopes", &self.scopes)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// The first message of a connection.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the agent speaks; must be [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The agent's token (a JWT).
    pub token: String,
}

impl Hello {
    /// A Hello in the current protocol version.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            token: token.into(),
        }
    }
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("protocol_version", &self.protocol_version)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Store episodes. Each must carry its id (minted by the agent) so that a retried batch is
/// idempotent; see [`StoreRequest::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRequest {
    /// The episodes, in order.
    pub episodes: Vec<WireNewEpisode>,
}

impl StoreRequest {
    /// A request carrying `episodes`.
    pub fn from_episodes(episodes: impl IntoIterator<Item = NewEpisode>) -> Self {
        Self {
            episodes: episodes.into_iter().map(WireNewEpisode::from).collect(),
        }
    }

    /// Checks the rule the wire itself imposes: every episode carries an id. Fails with
    /// `invalid_request` naming the first episode without one.
    pub fn validate(&self) -> Result<(), WireError> {
        match self.episodes.iter().position(|e| e.id.is_none()) {
            None => Ok(()),
            Some(i) => Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "episode {i} has no id; stored episodes need a client-minted id so that \
                     retries are idempotent"
                ),
            )),
        }
    }

    /// The episodes as core types. Fails with [`DecodeError::Malformed`] if any metadata is not
    /// valid JSON.
    pub fn into_episodes(self) -> Result<Vec<NewEpisode>, DecodeError> {
        self.episodes
            .into_iter()
            .map(NewEpisode::try_from)
            .collect()
    }
}

/// Find the `k` episodes most similar to the input that pass the filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// What to search for.
    pub input: QueryInput,
    /// How many matches to return at most.
    pub k: u32,
    /// Conditions every match meets.
    pub filter: Filter,
}

/// A query body as agents wrote it before filters had content conditions: the same layout
/// without the filter's trailing `tags` and `metadata`. Still accepted, as a filter without
/// content conditions, so that such agents keep working.
#[derive(Deserialize)]
struct LegacyQueryRequest {
    input: QueryInput,
    k: u32,
    filter: LegacyFilter,
}

/// The filter of a [`LegacyQueryRequest`].
#[derive(Deserialize)]
struct LegacyFilter {
    min_reward: Option<f64>,
    outcome: Outcome,
    created_from: Option<Timestamp>,
    created_until: Option<Timestamp>,
}

/// Decodes a query body in the current layout or, failing that, the legacy one. The two cannot
/// both fit the same bytes: the legacy layout is the current one minus its last fields.
fn decode_query(body: &[u8]) -> Result<QueryRequest, DecodeError> {
    let current = match decode_body::<QueryRequest>(body) {
        Ok(query) => return Ok(query),
        Err(e) => e,
    };
    let Ok(legacy) = decode_body::<LegacyQueryRequest>(body) else {
        return Err(current);
    };
    Ok(QueryRequest {
        input: legacy.input,
        k: legacy.k,
        filter: Filter {
            min_reward: legacy.filter.min_reward,
            outcome: legacy.filter.outcome,
            created_from: legacy.filter.created_from,
            created_until: legacy.filter.created_until,
            tags: Vec::new(),
            metadata: Vec::new(),
        },
    })
}

/// What a query searches for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueryInput {
    /// Text the hub embeds with the tenant's model.
    Text(String),
    /// A vector the agent embedded itself; its model must be the tenant's.
    Vector(Embedding),
}

/// Read the tenant's changes with a sequence number above `cursor`, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The last sequence number already seen (0 to start from the beginning).
    pub cursor: u64,
    /// Most changes to return; the hub may return fewer.
    pub limit: u32,
}

/// Replace the session's token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The new token (a JWT) for the same agent and tenant.
    pub token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Request {
    /// The request's name, as metrics and logs show it.
    pub const fn name(&self) -> &'static str {
        match self {
            Request::Hello(_) => "hello",
            Request::Store(_) => "store",
            Request::Query(_) => "query",
            Request::Pull(_) => "pull",
            Request::Stats => "stats",
            Request::RefreshToken(_) => "refresh",
            Request::Goodbye => "goodbye",
            Request::Update(_) => "update",
            Request::Delete(_) => "delete",
            Request::Get(_) => "get",
            Request::List(_) => "list",
            Request::Exchange(_) => "exchange",
        }
    }

    /// The message kind written in the frame header.
    pub const fn kind(&self) -> u16 {
        match self {
            Request::Hello(_) => kind::HELLO,
            Request::Store(_) => kind::STORE,
            Request::Query(_) => kind::QUERY,
            Request::Pull(_) => kind::PULL,
            Request::Stats => kind::STATS,
            Request::RefreshToken(_) => kind::REFRESH_TOKEN,
            Request::Goodbye => kind::GOODBYE,
            Request::Update(_) => kind::UPDATE,
            Request::Delete(_) => kind::DELETE,
            Request::Get(_) => kind::GET,
            Request::List(_) => kind::LIST,
            Request::Exchange(_) => kind::EXCHANGE,
        }
    }

    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let kind = self.kind();
        match self {
            Request::Hello(m) => encode_frame(kind, m),
            Request::Store(m) => encode_frame(kind, m),
            Request::Query(m) => encode_frame(kind, m),
            Request::Pull(m) => encode_frame(kind, m),
            Request::RefreshToken(m) => encode_frame(kind, m),
            Request::Update(m) => encode_frame(kind, m),
            Request::Delete(m) => encode_frame(kind, m),
            Request::Get(m) => encode_frame(kind, m),
            Request::List(m) => encode_frame(kind, m),
            Request::Exchange(m) => encode_frame(kind, m),
            Request::Stats | Request::Goodbye => encode_frame(kind, &()),
        }
    }

    /// The request a frame carries.
    pub fn decode(frame: &Frame) -> Result<Request, DecodeError> {
        check_version(frame)?;
        let body = frame.body.as_slice();
        Ok(match frame.kind {
            kind::HELLO => Request::Hello(decode_body(body)?),
            kind::STORE => Request::Store(decode_body(body)?),
            kind::QUERY => Request::Query(decode_query(body)?),
            kind::PULL => Request::Pull(decode_body(body)?),
            kind::STATS => {
                decode_body::<()>(body)?;
                Request::Stats
            }
            kind::REFRESH_TOKEN => Request::RefreshToken(decode_body(body)?),
            kind::GOODBYE => {
                decode_body::<()>(body)?;
                Request::Goodbye
            }
            kind::UPDATE => Request::Update(decode_body(body)?),
            kind::DELETE => Request::Delete(decode_body(body)?),
            kind::GET => Request::Get(decode_body(body)?),
            kind::LIST => Request::List(decode_body(body)?),
            kind::EXCHANGE => Request::Exchange(decode_body(body)?),
            kind => return Err(DecodeError::UnknownMessage { kind }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A response from the hub; exactly one per request stream.
// A response lives only until it is encoded; boxing its episode would cost an allocation and
// save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// The Hello was accepted.
    Welcome(Welcome),
    /// The outcome of a store, per episode.
    Stored(StoredResponse),
    /// The matches of a query.
    Matches(MatchesResponse),
    /// A page of changes.
    Page(PageResponse),
    /// The tenant's numbers.
    Stats(TenantStats),
    /// The new token was accepted.
    Refreshed {
        /// When the new token expires, in Unix seconds.
        expires_at: u64,
    },
    /// The answer to Goodbye; the hub closes the connection next.
    Bye,
    /// The request failed.
    Error(WireError),
    /// An update or delete was applied; `found` says whether the episode was live.
    Done {
        /// Whether the episode existed (and was not deleted) before.
        found: bool,
    },
    /// The answer to Get: the episode, or `None` when the tenant has no live episode with
    /// that id.
    Episode(Option<WireEpisode>),
    /// A page of the tenant's live episodes.
    Listed(ListResponse),
    /// The token an Exchange granted.
    Token(TokenGrant),
}

/// A page of a tenant's live episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The episodes, in id order.
    pub episodes: Vec<WireEpisode>,
    /// The id to continue after (the last episode's), or `None` when no live episode follows
    /// this page.
    pub next: Option<EpisodeId>,
}

/// A short-lived token granted for a credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    /// The token (a JWT), to be sent in a Hello or as a Bearer token.
    pub token: String,
    /// When the token expires, in Unix seconds.
    pub expires_at: u64,
    /// The tenant the token is for.
    pub tenant: TenantId,
    /// The agent the token is for.
    pub agent: AgentId,
    /// The scopes the token carries.
    pub scopes: Vec<String>,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("tenant", &self.tenant)
            .field("agent", &self.agent)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Who the hub authenticated, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The agent named by the token.
    pub agent: AgentId,
    /// The tenant named by the token (and the certificate, when it names one).
    pub tenant: TenantId,
    /// The hub.
    pub hub: HubId,
    /// The session the hub opened for this connection.
    pub session: SessionId,
    /// When the token expires, in Unix seconds.
    pub expires_at: u64,
    /// The tenant's embedding model.
    pub embedder: ModelId,
}

/// The outcome of a store, one item per episode in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// One item per stored episode.
    pub results: Vec<StoredItem>,
}

/// The outcome for one episode of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredItem {
    /// The episode.
    pub id: EpisodeId,
    /// `true` if this request stored it, `false` if it was already there (or deleted).
    pub inserted: bool,
}

/// The matches of a query, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchesResponse {
    /// The matches, best first.
    pub matches: Vec<WireMatch>,
    /// The model the query was embedded with.
    pub model: ModelId,
    /// The query's vector, so the agent can reuse it against its local cache.
    pub query_vector: Vec<f32>,
}

/// One match of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMatch {
    /// The episode.
    pub episode: WireEpisode,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// A page of a tenant's changes, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageResponse {
    /// The changes, by increasing `seq`.
    pub changes: Vec<ChangeItem>,
    /// The cursor for the next pull (the last `seq` of this page, or the request's cursor).
    pub next_cursor: u64,
    /// Whether more changes follow `next_cursor` now.
    pub more: bool,
}

/// One change with its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeItem {
    /// The change's sequence number in the tenant's log on this hub.
    pub seq: u64,
    /// The change.
    pub change: Change,
}

/// A change to a tenant's episodes.
// Most changes are puts; boxing them would cost an allocation each and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// An episode was stored.
    Put(WireEpisode),
    /// An episode was deleted.
    Deleted {
        /// The deleted episode.
        id: EpisodeId,
    },
}

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error(WireError::new(code, message))
    }

    /// The response's name, as errors and logs show it.
    pub const fn name(&self) -> &'static str {
        match self {
            Response::Welcome(_) => "welcome",
            Response::Stored(_) => "stored",
            Response::Matches(_) => "matches",
            Response::Page(_) => "page",
            Response::Stats(_) => "stats",
            Response::Refreshed { .. } => "refreshed",
            Response::Bye => "bye",
            Response::Error(_) => "error",
            Response::Done { .. } => "done",
            Response::Episode(_) => "episode",
            Response::Listed(_) => "listed",
            Response::Token(_) => "token",
        }
    }

    /// The message kind written in the frame header.
    pub const fn kind(&self) -> u16 {
        match self {
            Response::Welcome(_) => kind::WELCOME,
            Response::Stored(_) => kind::STORED,
            Response::Matches(_) => kind::MATCHES,
            Response::Page(_) => kind::PAGE,
            Response::Stats(_) => kind::STATS_RESPONSE,
            Response::Refreshed { .. } => kind::REFRESHED,
            Response::Bye => kind::BYE,
            Response::Error(_) => kind::ERROR,
            Response::Done { .. } => kind::DONE,
            Response::Episode(_) => kind::EPISODE,
            Response::Listed(_) => kind::LISTED,
            Response::Token(_) => kind::TOKEN,
        }
    }

    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let kind = self.kind();
        match self {
            Response::Welcome(m) => encode_frame(kind, m),
            Response::Stored(m) => encode_frame(kind, m),
            Response::Matches(m) => encode_frame(kind, m),
            Response::Page(m) => encode_frame(kind, m),
            Response::Stats(m) => encode_frame(kind, m),
            Response::Refreshed { expires_at } => encode_frame(kind, expires_at),
            Response::Bye => encode_frame(kind, &()),
            Response::Error(m) => encode_frame(kind, m),
            Response::Done { found } => encode_frame(kind, found),
            Response::Episode(m) => encode_frame(kind, m),
            Response::Listed(m) => encode_frame(kind, m),
            Response::Token(m) => encode_frame(kind, m),
        }
    }

    /// Like [`Response::encode`], but a response whose frame would exceed `max_len` (capped at
    /// [`MAX_FRAME_LEN`]) is replaced by a `too_large` error, which the receiver can decode.
    pub fn encode_bounded(&self, max_len: usize) -> Vec<u8> {
        let max = max_len.min(MAX_FRAME_LEN);
        let bytes = self.encode();
        let len = bytes.len().saturating_sub(4);
        if len <= max {
            return bytes;
        }
        Response::error(
            ErrorCode::TooLarge,
            format!("the response is {len} bytes; the frame limit is {max}"),
        )
        .encode()
    }

    /// The response a frame carries.
    pub fn decode(frame: &Frame) -> Result<Response, DecodeError> {
        check_version(frame)?;
        let body = frame.body.as_slice();
        Ok(match frame.kind {
            kind::WELCOME => Response::Welcome(decode_body(body)?),
            kind::STORED => Response::Stored(decode_body(body)?),
            kind::MATCHES => Response::Matches(decode_body(body)?),
            kind::PAGE => Response::Page(decode_body(body)?),
            kind::STATS_RESPONSE => Response::Stats(decode_body(body)?),
            kind::REFRESHED => Response::Refreshed {
                expires_at: decode_body(body)?,
            },
            kind::BYE => {
                decode_body::<()>(body)?;
                Response::Bye
            }
            kind::ERROR => Response::Error(decode_body(body)?),
            kind::DONE => Response::Done {
                found: decode_body(body)?,
            },
            kind::EPISODE => Response::Episode(decode_body(body)?),
            kind::LISTED => Response::Listed(decode_body(body)?),
            kind::TOKEN => Response::Token(decode_body(body)?),
            kind => return Err(DecodeError::UnknownMessage { kind }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message kind is not one this side knows.
    #[error("unknown message kind {kind}")]
    UnknownMessage {
        /// The kind from the frame header.
        kind: u16,
    },
    /// The frame is written in a protocol version this side does not speak.
    #[error(
        "unsupported protocol version {version}; this side speaks {}",
        PROTOCOL_VERSION
    )]
    UnsupportedVersion {
        /// The version from the frame header.
        version: u16,
    },
    /// The body does not decode as the message its kind names.
    #[error("malformed message: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl DecodeError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownMessage { .. } => ErrorCode::UnknownMessage,
            DecodeError::UnsupportedVersion { .. } | DecodeError::Malformed { .. } => {
                ErrorCode::InvalidRequest
            }
            DecodeError::Frame(FrameError::TooLarge { .. }) => ErrorCode::TooLarge,
            DecodeError::Frame(_) => ErrorCode::InvalidRequest,
        }
    }
}

pub(crate) fn check_version(frame: &Frame) -> Result<(), DecodeError> {
    if frame.version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion {
            version: frame.version,
        })
    }
}

/// Decodes a body that must be consumed exactly.
pub(crate) fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed {
        reason: e.to_string(),
    })?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::Malformed {
            reason: format!("{} trailing bytes after the body", rest.len()),
        })
    }
}

/// The single frame of a whole stream: exactly one frame, nothing after it.
fn single_frame(bytes: &[u8], max_len: usize) -> Result<Frame, DecodeError> {
    let mut decoder = FrameDecoder::new(max_len);
    // The length prefix first, so an oversized frame is refused without copying its body.
    let (head, rest) = bytes.split_at(bytes.len().min(4));
    decoder.push(head);
    decoder.next_frame()?;
    decoder.push(rest);
    match decoder.next_frame()? {
        Some(frame) if decoder.buffered() == 0 => Ok(frame),
        Some(_) => Err(DecodeError::Malformed {
            reason: format!(
                "{} trailing bytes after the frame; a stream carries one frame",
                decoder.buffered()
            ),
        }),
        None if bytes.is_empty() => Err(DecodeError::Malformed {
            reason: "the stream carried no frame".into(),
        }),
        None => Err(DecodeError::Frame(FrameError::Truncated)),
    }
}

/// Decodes a whole request stream: exactly one frame of at most `max_len`, nothing after it.
pub fn decode_request(bytes: &[u8], max_len: usize) -> Result<Request, DecodeError> {
    Request::decode(&single_frame(bytes, max_len)?)
}

/// Decodes a whole response stream: exactly one frame of at most `max_len`, nothing after it.
pub fn decode_response(bytes: &[u8], max_len: usize) -> Result<Response, DecodeError> {
    Response::decode(&single_frame(bytes, max_len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stable() {
        let names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "unauthenticated",
                "token_expired",
                "forbidden",
                "tenant_mismatch",
                "invalid_request",
                "too_large",
                "unknown_message",
                "overloaded",
                "agent_expired",
                "unavailable",
                "internal",
                "not_found",
                "quota_exceeded"
            ]
        );
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(c.to_u16()), i + 1);
            assert_eq!(ErrorCode::from_u16(c.to_u16()), *c);
            assert_eq!(c.to_string(), c.as_str());
        }
    }

    #[test]
    fn unknown_error_numbers_decode_as_internal() {
        let bytes = postcard::to_allocvec(&(999u16, "from the future")).unwrap();
        let e: WireError = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(ErrorCode::from_u16(0), ErrorCode::Internal);
    }

    #[test]
    fn decode_errors_map_to_codes() {
        assert_eq!(
            DecodeError::UnknownMessage { kind: 9 }.code(),
            ErrorCode::UnknownMessage
        );
        assert_eq!(
            DecodeError::UnsupportedVersion { version: 2 }.code(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            DecodeError::Malformed { reason: "x".into() }.code(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            DecodeError::Frame(FrameError::TooLarge { len: 2, max: 1 }).code(),
            ErrorCode::TooLarge
        );
        assert_eq!(
            DecodeError::Frame(FrameError::Truncated).code(),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn tokens_are_not_in_debug_output() {
        let h = format!("{:?}", Request::Hello(Hello::new("secret-jwt")));
        let r = format!(
            "{:?}",
            Request::RefreshToken(RefreshRequest {
                token: "secret-jwt".into()
            })
        );
        assert!(!h.contains("secret") && !r.contains("secret"), "{h} {r}");
    }

    #[test]
    fn empty_bodies_must_be_empty() {
        let frame = Frame {
            kind: kind::STATS,
            version: PROTOCOL_VERSION,
            body: vec![0],
        };
        assert!(matches!(
            Request::decode(&frame),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn whole_stream_decoding() {
        let one = Request::Stats.encode();
        assert_eq!(decode_request(&one, MAX_FRAME_LEN), Ok(Request::Stats));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert!(matches!(
            decode_request(&two, MAX_FRAME_LEN),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_request(&[], MAX_FRAME_LEN),
            Err(DecodeError::Malformed { .. })
        ));
        assert_eq!(
            decode_request(&one[..5], MAX_FRAME_LEN),
            Err(DecodeError::Frame(FrameError::Truncated))
        );
        assert_eq!(
            decode_request(&one[..2], MAX_FRAME_LEN),
            Err(DecodeError::Frame(FrameError::Truncated))
        );
        // An oversized prefix is enough to refuse.
        assert_eq!(
            decode_request(&[0, 0, 1, 0], 255),
            Err(DecodeError::Frame(FrameError::TooLarge {
                len: 256,
                max: 255
            }))
        );
    }

    #[test]
    fn bounded_encoding_replaces_oversized_responses() {
        let big = Response::Matches(MatchesResponse {
            matches: Vec::new(),
            model: ModelId::new("m").unwrap(),
            query_vector: vec![0.5; 100],
        });
        assert_eq!(big.encode_bounded(MAX_FRAME_LEN), big.encode());
        let small = big.encode_bounded(64);
        match decode_response(&small, 64).unwrap() {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn store_requests_need_ids() {
        let with = NewEpisode::new("t", "i", "o", 1.0).with_id(EpisodeId::from_parts(1, [0; 10]));
        let without = NewEpisode::new("t", "i", "o", 1.0);
        assert_eq!(
            StoreRequest::from_episodes([with.clone()]).validate(),
            Ok(())
        );
        let e = StoreRequest::from_episodes([with.clone(), without])
            .validate()
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("episode 1"), "{e}");
        assert_eq!(
            StoreRequest::from_episodes([with.clone()]).into_episodes(),
            Ok(vec![with])
        );
    }
}
