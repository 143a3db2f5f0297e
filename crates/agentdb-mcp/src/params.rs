//! The arguments of the tools. Each refuses fields it does not know (so a misspelt filter
//! never silently matches everything, and there is no way to name a tenant); the JSON schema
//! the tools advertise is derived from these types and their documentation.

use std::collections::BTreeMap;

use agentdb_core::{EpisodeUpdate, Filter, MetadataMatch, NewEpisode, Outcome, Timestamp};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `store_episode`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreParams {
    /// What the agent was asked to do, e.g. "summarise invoice". Not empty.
    pub task: String,
    /// What it was given.
    #[serde(default)]
    pub input: String,
    /// What it produced.
    #[serde(default)]
    pub output: String,
    /// How well it went: 0 is a failure, 1 a full success.
    pub reward: f64,
    /// What could have gone better.
    #[serde(default)]
    pub critique: Option<String>,
    /// Labels to filter by later.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Any JSON object, e.g. {"user_id": "u-17"}; searches can require exact values of its
    /// top-level fields.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Forget the episode this many seconds from now (at least 1): it is then no longer found,
    /// and deleted everywhere. Omit to keep it.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub ttl_secs: Option<u64>,
}

impl StoreParams {
    /// The episode to store; a `ttl_secs` counts from `now`. Refuses a `ttl_secs` of 0.
    pub fn into_episode(self, now: Timestamp) -> Result<NewEpisode, String> {
        let mut episode = NewEpisode::new(self.task, self.input, self.output, self.reward);
        match self.ttl_secs {
            Some(0) => return Err("ttl_secs must be at least 1".into()),
            Some(ttl) => {
                episode.expires_at = Some(Timestamp(
                    now.unix_ms().saturating_add(ttl.saturating_mul(1000)),
                ));
            }
            None => {}
        }
        episode.critique = self.critique;
        episode.tags = self.tags;
        if let Some(metadata) = self.metadata {
            episode.metadata = serde_json::Value::Object(metadata);
        }
        Ok(episode)
    }
}

/// Which outcomes a search wants.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutcomeParam {
    /// Successes and failures.
    #[default]
    Any,
    /// Only episodes whose reward reached the success threshold.
    Successes,
    /// Only episodes whose reward did not.
    Failures,
}

/// Arguments of `search_memories`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    /// What to look for, in plain words; episodes similar in meaning come first.
    pub query: String,
    /// How many memories to return, 1 to 100 (default 5).
    #[serde(default = "default_k")]
    pub k: u32,
    /// Only episodes with at least this reward.
    #[serde(default)]
    pub min_reward: Option<f64>,
    /// Successes, failures or any (default any).
    #[serde(default)]
    pub outcome: OutcomeParam,
    /// Only episodes carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only episodes whose metadata has these top-level fields with exactly these values.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Only episodes stored at or after this time (milliseconds since the Unix epoch).
    #[serde(default)]
    pub created_from_ms: Option<u64>,
    /// Only episodes stored before this time (milliseconds since the Unix epoch).
    #[serde(default)]
    pub created_until_ms: Option<u64>,
}

fn default_k() -> u32 {
    5
}

/// The most memories one search returns.
pub(crate) const MAX_K: u32 = 100;

impl SearchParams {
    /// The filter every match meets.
    pub fn filter(&self) -> Filter {
        Filter {
            min_reward: self.min_reward,
            outcome: match self.outcome {
                OutcomeParam::Any => Outcome::Any,
                OutcomeParam::Successes => Outcome::Successes,
                OutcomeParam::Failures => Outcome::Failures,
            },
            created_from: self.created_from_ms.map(Timestamp),
            created_until: self.created_until_ms.map(Timestamp),
            tags: self.tags.clone(),
            metadata: self
                .metadata
                .iter()
                .map(|(key, value)| MetadataMatch {
                    key: key.clone(),
                    value: value.to_string(),
                })
                .collect(),
        }
    }
}

/// Arguments of `get_episode` and `delete_episode`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdParams {
    /// The episode's id (a UUID, as `store_episode` and `search_memories` return it).
    pub id: String,
}

/// Arguments of `update_episode`: the fields to change; absent ones keep their value.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateParams {
    /// The episode's id.
    pub id: String,
    /// A new reward.
    #[serde(default)]
    pub reward: Option<f64>,
    /// A new critique; an empty string removes it.
    #[serde(default)]
    pub critique: Option<String>,
    /// New tags, replacing all the old ones.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New metadata, replacing the old as a whole.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl UpdateParams {
    /// The update to apply.
    pub fn update(&self) -> EpisodeUpdate {
        let update = EpisodeUpdate {
            reward: self.reward,
            critique: self
                .critique
                .as_ref()
                .map(|c| Some(c.clone()).filter(|c| !c.is_empty())),
            tags: self.tags.clone(),
            metadata_json: None,
        };
        match &self.metadata {
            Some(m) => update.with_metadata(&serde_json::Value::Object(m.clone())),
            None => update,
        }
    }
}

/// `memory_stats` takes no arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}
