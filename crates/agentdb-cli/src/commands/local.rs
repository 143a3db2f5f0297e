//! `agentdb local`: the embedded memory store, used directly with no hub.

use std::path::PathBuf;

use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{
    embedder_from_env_or_dir, open_data_dir_with_embedder, EngineConfig, Filter, Outcome, Query,
};
use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::output;

/// Arguments of `agentdb local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Data directory (created if missing). The master key is read from AGENTDB_MASTER_KEY or
    /// DIR/master.key, created on first use.
    #[arg(long, default_value = "./agentdb-data", global = true)]
    data: PathBuf,
    /// Directory of the sentence-embedding model (also AGENTDB_MODEL_DIR); needs a build with
    /// the `model` feature. Without it episodes are embedded lexically.
    #[arg(long, value_name = "DIR", global = true)]
    model_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Store one episode and print its id.
    Store(StoreArgs),
    /// Search a tenant's episodes by meaning (lexical by default).
    Query(QueryArgs),
    /// Print a tenant's statistics.
    Stats(TenantArgs),
    /// Erase a tenant: destroy its keys and delete its episodes.
    Erase(TenantArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: TenantId,
    /// What was asked.
    #[arg(long)]
    pub(crate) task: String,
    /// The input.
    #[arg(long, default_value = "")]
    pub(crate) input: String,
    /// The output.
    #[arg(long, default_value = "")]
    pub(crate) output: String,
    /// The reward (success when at least 0.7).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) reward: f64,
    /// An optional critique.
    #[arg(long)]
    pub(crate) critique: Option<String>,
    /// Metadata: a JSON object (e.g. '{"user_id":"u-1"}').
    #[arg(long, value_name = "JSON", value_parser = parse_metadata)]
    pub(crate) metadata: Option<serde_json::Value>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A `--metadata` value: a JSON object.
fn parse_metadata(text: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("metadata must be a JSON object".into()),
        Err(e) => Err(format!("metadata is not JSON: {e}")),
    }
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: TenantId,
    /// The text to search for.
    pub(crate) text: String,
    /// How many results.
    #[arg(short, long, default_value_t = 5)]
    pub(crate) k: usize,
    /// Only episodes with at least this reward.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) min_reward: Option<f64>,
    /// Only successes.
    #[arg(long, conflicts_with = "only_failures")]
    pub(crate) only_successes: bool,
    /// Only failures.
    #[arg(long)]
    pub(crate) only_failures: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TenantArgs {
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: TenantId,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl StoreArgs {
    /// The episode to store (without the tenant).
    pub(crate) fn episode(&self) -> NewEpisode {
        let mut episode = NewEpisode::new(
            self.task.clone(),
            self.input.clone(),
            self.output.clone(),
            self.reward,
        );
        episode.critique = self.critique.clone();
        match &self.metadata {
            Some(metadata) => episode.with_metadata(metadata.clone()),
            None => episode,
        }
    }
}

impl QueryArgs {
    /// The filter the flags ask for.
    pub(crate) fn filter(&self) -> Filter {
        Filter {
            min_reward: self.min_reward,
            outcome: if self.only_successes {
                Outcome::Successes
            } else if self.only_failures {
                Outcome::Failures
            } else {
                Outcome::Any
            },
            ..Filter::default()
        }
    }
}

/// Runs `agentdb local`.
pub fn run(args: LocalArgs) -> anyhow::Result<()> {
    let embedder = embedder_from_env_or_dir(args.model_dir.as_deref())?;
    let engine = open_data_dir_with_embedder(&args.data, EngineConfig::default(), embedder)
        .with_context(|| format!("cannot open data directory {}", args.data.display()))?;
    match args.command {
        LocalCommand::Store(a) => {
            let stored = engine.store(&a.tenant, a.episode())?;
            if a.json {
                output::json(&serde_json::json!({ "id": stored.id.to_string() }))
            } else {
                output::line(stored.id)
            }
        }
        LocalCommand::Query(a) => {
            let filter = a.filter();
            let matches = engine.query(&a.tenant, &Query::text(a.text, a.k).with_filter(filter))?;
            let found: Vec<_> = matches.iter().map(|m| (&m.episode, m.score)).collect();
            output::matches(&found, a.json)
        }
        LocalCommand::Stats(a) => {
            let s = engine.stats(&a.tenant)?;
            output::stats(&a.tenant, &s, a.json)
        }
        LocalCommand::Erase(a) => {
            let report = engine.erase_tenant(&a.tenant)?;
            if a.json {
                output::json(&serde_json::json!({
                    "tenant": a.tenant,
                    "existed": report.existed,
                    "episodes_erased": report.episodes,
                }))
            } else {
                output::line(format_args!(
                    "erased tenant {}: {} episodes, keys destroyed",
                    a.tenant, report.episodes
                ))
            }
        }
    }
}
