//! The JSON bodies of the HTTPS gateway, and their conversion to and from the requests and
//! responses the QUIC session carries. Every body refuses unknown fields: a misspelt filter
//! must not silently match everything.

use std::collections::BTreeMap;

use agentdb_core::{
    AgentId, Embedding, EpisodeId, EpisodeUpdate, Filter, MetadataMatch, ModelId, NewEpisode,
    Outcome, SessionId, TenantStats, Timestamp,
};
use agentdb_proto::{ChangeItem, TokenGrant, WireEpisode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An episode to store. Without an `id` the hub mints one; with one, storing it again is not a
/// second episode (retries are safe).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EpisodeIn {
    /// A client-chosen id: a UUID (version 7 keeps ids in time order).
    #[schema(value_type = Option<String>)]
    pub id: Option<EpisodeId>,
    /// The session the episode belongs to.
    #[schema(value_type = Option<String>)]
    pub session: Option<SessionId>,
    /// What the agent was asked to do.
    pub task: String,
    /// What it was given.
    #[serde(default)]
    pub input: String,
    /// What it produced.
    #[serde(default)]
    pub output: String,
    /// How well it went, 0 to 1.
    pub reward: f64,
    /// What could have gone better.
    #[serde(default)]
    pub critique: Option<String>,
    /// Labels to filter by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Any JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Tokens the task used.
    #[serde(default)]
    pub tokens_used: u64,
    /// How long the task took.
    #[serde(default)]
    pub latency_ms: u64,
    /// A vector the caller embedded itself, with the tenant's model; without it the hub embeds
    /// the episode.
    #[serde(default)]
    pub embedding: Option<VectorIn>,
    /// Seconds from now until the episode expires (at least 1): from then on it is not
    /// returned, and every hub deletes it. Give this or `expires_at_ms`, not both.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ttl_secs: Option<u64>,
    /// When the episode expires, in milliseconds since the Unix epoch (a time already past
    /// stores an episode that is deleted at once). Give this or `ttl_secs`, not both.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

impl EpisodeIn {
    /// The episode for the store request; `id` is the one to use (given or minted), `now` the
    /// time a `ttl_secs` counts from. Refuses a `ttl_secs` of 0 and a body that gives both
    /// `ttl_secs` and `expires_at_ms`.
    pub fn into_new(self, id: EpisodeId, now: Timestamp) -> Result<NewEpisode, String> {
        let expires_at = match (self.ttl_secs, self.expires_at_ms) {
            (Some(_), Some(_)) => {
                return Err("give ttl_secs or expires_at_ms, not both".into());
            }
            (Some(0), None) => return Err("ttl_secs must be at least 1".into()),
            (Some(ttl), None) => Some(Timestamp(
                now.unix_ms().saturating_add(ttl.saturating_mul(1000)),
            )),
            (None, at) => at.map(Timestamp),
        };
        Ok(NewEpisode {
            id: Some(id),
            agent: None,
            session: self.session,
            task: self.task,
            input: self.input,
            output: self.output,
            reward: self.reward,
            critique: self.critique,
            tags: self.tags,
            metadata: self.metadata,
            tokens_used: self.tokens_used,
            latency_ms: self.latency_ms,
            embedding: self.embedding.map(VectorIn::into_embedding),
            expires_at,
        })
    }
}

/// A vector and the model that made it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VectorIn {
    /// The embedding model's id, as `GET /v1/stats` reports it.
    #[schema(value_type = String)]
    pub model: ModelId,
    /// The vector.
    pub vector: Vec<f32>,
}

impl VectorIn {
    fn into_embedding(self) -> Embedding {
        Embedding {
            model: self.model,
            vector: self.vector,
        }
    }
}

/// `POST /v1/episodes`: one episode, or `{"episodes": [...]}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // The schema of the body; the handler reads it as JSON first.
pub(crate) enum StoreBody {
    /// One episode.
    One(Box<EpisodeIn>),
    /// A batch, stored atomically.
    Batch(EpisodeBatch),
}

/// A batch of episodes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EpisodeBatch {
    /// The episodes, stored together or not at all.
    pub episodes: Vec<EpisodeIn>,
}

/// What happened to each stored episode, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoreResult {
    /// One entry per episode.
    pub results: Vec<StoredId>,
}

/// One stored episode.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoredId {
    /// Its id.
    #[schema(value_type = String)]
    pub id: EpisodeId,
    /// False when an episode with this id already existed (nothing was written).
    pub inserted: bool,
}

/// An episode as the hub holds it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EpisodeOut {
    /// Its id.
    #[schema(value_type = String)]
    pub id: EpisodeId,
    /// The agent that stored it.
    #[schema(value_type = Option<String>)]
    pub agent: Option<AgentId>,
    /// Its session.
    #[schema(value_type = Option<String>)]
    pub session: Option<SessionId>,
    /// The task.
    pub task: String,
    /// The input.
    pub input: String,
    /// The output.
    pub output: String,
    /// The reward.
    pub reward: f64,
    /// Whether the reward reached the success threshold.
    pub success: bool,
    /// The critique.
    pub critique: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Tokens used.
    pub tokens_used: u64,
    /// Latency.
    pub latency_ms: u64,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The hub that first accepted it.
    #[schema(value_type = Option<String>)]
    pub origin: Option<agentdb_core::HubId>,
    /// The model its vector was made with.
    #[schema(value_type = String)]
    pub embedding_model: ModelId,
    /// When it expires, in milliseconds since the Unix epoch; `null` when it does not (its
    /// tenant's retention may still remove it).
    pub expires_at_ms: Option<u64>,
}

impl EpisodeOut {
    /// The JSON form of a wire episode. Its metadata was checked when it was stored; text that
    /// no longer parses is shown as a string rather than failing the whole answer.
    pub fn from_wire(w: WireEpisode) -> Self {
        let metadata = if w.metadata_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&w.metadata_json)
                .unwrap_or(serde_json::Value::String(w.metadata_json))
        };
        Self {
            id: w.id,
            agent: w.agent,
            session: w.session,
            task: w.task,
            input: w.input,
            output: w.output,
            reward: w.reward,
            success: w.success,
            critique: w.critique,
            tags: w.tags,
            metadata,
            tokens_used: w.tokens_used,
            latency_ms: w.latency_ms,
            created_ms: w.created.unix_ms(),
            origin: w.origin,
            embedding_model: w.embedding_model,
            expires_at_ms: w.expires_at.map(Timestamp::unix_ms),
        }
    }
}

/// `PATCH /v1/episodes/{id}`: the fields to change; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EpisodePatch {
    /// A new reward.
    pub reward: Option<f64>,
    /// A new critique; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub critique: Option<Option<String>>,
    /// New tags (replacing the old ones).
    pub tags: Option<Vec<String>>,
    /// New metadata (replacing the old as a whole): a JSON object; anything else, `null`
    /// included, is refused (422).
    #[serde(default, deserialize_with = "present_value")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Tells an absent field (`None`) from a `null` one (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Keeps a `null` value as `Some(Null)` (absent is `None`), for the engine to refuse.
fn present_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl EpisodePatch {
    /// The engine's update. Metadata that is not an object is passed on as it is; the engine
    /// refuses it.
    pub fn into_update(self) -> EpisodeUpdate {
        let update = EpisodeUpdate {
            reward: self.reward,
            critique: self.critique,
            tags: self.tags,
            metadata_json: None,
        };
        match &self.metadata {
            Some(m) => update.with_metadata(m),
            None => update,
        }
    }
}

/// `POST /v1/query`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    /// Text to search for (the hub embeds it). Give this or `vector`.
    pub text: Option<String>,
    /// A vector to search with. Give this or `text`.
    pub vector: Option<VectorIn>,
    /// How many matches at most (default 10).
    #[serde(default = "default_k")]
    pub k: u32,
    /// Conditions every match meets.
    #[serde(default)]
    pub filter: FilterIn,
}

fn default_k() -> u32 {
    10
}

/// Which outcomes a query wants.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutcomeIn {
    /// Successes and failures.
    #[default]
    Any,
    /// Successes only.
    Successes,
    /// Failures only.
    Failures,
}

/// Conditions on matches.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterIn {
    /// Lowest reward.
    pub min_reward: Option<f64>,
    /// Successes, failures or any.
    #[serde(default)]
    pub outcome: OutcomeIn,
    /// Created at or after this time (ms since the Unix epoch).
    pub created_from_ms: Option<u64>,
    /// Created before this time (ms since the Unix epoch).
    pub created_until_ms: Option<u64>,
    /// Tags every match carries.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata fields every match has, with these exact values.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl FilterIn {
    /// The engine's filter.
    pub fn into_filter(self) -> Filter {
        Filter {
            min_reward: self.min_reward,
            outcome: match self.outcome {
                OutcomeIn::Any => Outcome::Any,
                OutcomeIn::Successes => Outcome::Successes,
                OutcomeIn::Failures => Outcome::Failures,
            },
            created_from: self.created_from_ms.map(Timestamp),
            created_until: self.created_until_ms.map(Timestamp),
            tags: self.tags,
            metadata: self
                .metadata
                .into_iter()
                .map(|(key, value)| MetadataMatch {
                    key,
                    value: value.to_string(),
                })
                .collect(),
        }
    }
}

/// Matches, best first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueryResult {
    /// The matches.
    pub matches: Vec<MatchOut>,
    /// The model the query was embedded with.
    #[schema(value_type = String)]
    pub model: ModelId,
}

/// One match.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MatchOut {
    /// Cosine similarity; higher is closer.
    pub score: f32,
    /// The episode.
    pub episode: EpisodeOut,
}

/// `GET /v1/episodes`: a page.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EpisodePage {
    /// Live episodes, in a stable order.
    pub episodes: Vec<EpisodeOut>,
    /// Pass as `cursor` for the next page; `null` when there is no more.
    pub next_cursor: Option<String>,
}

/// One change to the tenant's memory.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangeOut {
    /// Its position; resume after it with `since` (or `Last-Event-ID`).
    pub cursor: String,
    /// `put` (stored or updated: `episode` is its state now) or `deleted`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The episode's id.
    #[schema(value_type = String)]
    pub id: EpisodeId,
    /// The episode, for `put`.
    pub episode: Option<EpisodeOut>,
}

impl ChangeOut {
    /// The JSON form of a change.
    pub fn from_item(item: ChangeItem) -> Self {
        let cursor = item.seq.to_string();
        match item.change {
            agentdb_proto::Change::Put(e) => Self {
                cursor,
                kind: "put",
                id: e.id,
                episode: Some(EpisodeOut::from_wire(e)),
            },
            agentdb_proto::Change::Deleted { id } => Self {
                cursor,
                kind: "deleted",
                id,
                episode: None,
            },
        }
    }
}

/// `GET /v1/changes` without a stream: a page of changes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangePage {
    /// The changes, oldest first.
    pub changes: Vec<ChangeOut>,
    /// Pass as `since` for the next page.
    pub next_cursor: String,
    /// Whether more changes are waiting now.
    pub more: bool,
}

/// The tenant's numbers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsOut {
    /// Live episodes.
    pub episodes: u64,
    /// Deleted episodes whose tombstones remain.
    pub deleted: u64,
    /// Share of live episodes that succeeded.
    pub success_rate: f64,
    /// Mean reward.
    pub avg_reward: f64,
    /// The most frequent tasks.
    #[schema(value_type = Vec<Object>)]
    pub top_tasks: Vec<agentdb_core::TaskCount>,
    /// The tenant's embedding model.
    #[schema(value_type = Option<String>)]
    pub embedding_model: Option<ModelId>,
    /// The tenant's current key version.
    pub key_version: u32,
}

impl From<TenantStats> for StatsOut {
    fn from(s: TenantStats) -> Self {
        Self {
            episodes: s.episodes,
            deleted: s.deleted,
            success_rate: s.success_rate,
            avg_reward: s.avg_reward,
            top_tasks: s.top_tasks,
            embedding_model: s.embedding_model,
            key_version: s.key_version,
        }
    }
}

/// `POST /v1/token`: what the token should carry (all optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// The agent the token is for (its `sub`); defaults to one named after the credential.
    #[schema(value_type = Option<String>)]
    pub agent: Option<AgentId>,
    /// Scopes to grant, at most the credential's; default all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime in seconds (default 300, at most 3600, never past the key's expiry).
    pub ttl_secs: Option<u64>,
}

/// A token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenOut {
    /// The JWT; send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// Seconds from now until it expires.
    pub expires_in: u64,
    /// Its tenant.
    #[schema(value_type = String)]
    pub tenant: agentdb_core::TenantId,
    /// Its agent.
    #[schema(value_type = String)]
    pub agent: AgentId,
    /// Its scopes.
    pub scopes: Vec<String>,
}

impl TokenOut {
    /// The JSON form of a grant at `now` (Unix seconds).
    pub fn from_grant(g: TokenGrant, now: u64) -> Self {
        Self {
            expires_in: g.expires_at.saturating_sub(now),
            token: g.token,
            token_type: "Bearer",
            expires_at: g.expires_at,
            tenant: g.tenant,
            agent: g.agent,
            scopes: g.scopes,
        }
    }
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` while the hub serves.
    pub status: &'static str,
    /// This hub.
    #[schema(value_type = String)]
    pub hub: agentdb_core::HubId,
}
