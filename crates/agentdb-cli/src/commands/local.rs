//! `agentdb local`: the embedded memory store, used directly with no hub.

use std::path::PathBuf;

use agentdb_core::{NewEpisode, TenantId};
use agentdb_memory::{open_data_dir, EngineConfig, Filter, Outcome, Query};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::output;

/// Arguments of `agentdb local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Data directory (created if missing). The master key is read from AGENTDB_MASTER_KEY or
    /// DIR/master.key, created on first use.
    #[arg(long, default_value = "./agentdb-data", global = true)]
    data: PathBuf,
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
struct StoreArgs {
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// What was asked.
    #[arg(long)]
    task: String,
    /// The input.
    #[arg(long, default_value = "")]
    input: String,
    /// The output.
    #[arg(long, default_value = "")]
    output: String,
    /// The reward (success when at least 0.7).
    #[arg(long, allow_negative_numbers = true)]
    reward: f64,
    /// An optional critique.
    #[arg(long)]
    critique: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The text to search for.
    text: String,
    /// How many results.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// Only episodes with at least this reward.
    #[arg(long, allow_negative_numbers = true)]
    min_reward: Option<f64>,
    /// Only successes.
    #[arg(long, conflicts_with = "only_failures")]
    only_successes: bool,
    /// Only failures.
    #[arg(long)]
    only_failures: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TenantArgs {
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One query result as printed by `--json`.
#[derive(Debug, Serialize)]
struct MatchJson<'a> {
    id: String,
    task: &'a str,
    input: &'a str,
    output: &'a str,
    reward: f64,
    critique: Option<&'a str>,
    success: bool,
    score: f32,
    created_ms: u64,
    embedding_model: &'a str,
}

/// Runs `agentdb local`.
pub fn run(args: LocalArgs) -> anyhow::Result<()> {
    let engine = open_data_dir(&args.data, EngineConfig::default())
        .with_context(|| format!("cannot open data directory {}", args.data.display()))?;
    match args.command {
        LocalCommand::Store(a) => {
            let mut episode = NewEpisode::new(a.task, a.input, a.output, a.reward);
            episode.critique = a.critique;
            let stored = engine.store(&a.tenant, episode)?;
            if a.json {
                output::json(&serde_json::json!({ "id": stored.id.to_string() }))
            } else {
                output::line(stored.id)
            }
        }
        LocalCommand::Query(a) => {
            let filter = Filter {
                min_reward: a.min_reward,
                outcome: if a.only_successes {
                    Outcome::Successes
                } else if a.only_failures {
                    Outcome::Failures
                } else {
                    Outcome::Any
                },
                ..Filter::default()
            };
            let matches = engine.query(&a.tenant, &Query::text(a.text, a.k).with_filter(filter))?;
            if a.json {
                let rows: Vec<MatchJson<'_>> = matches
                    .iter()
                    .map(|m| MatchJson {
                        id: m.episode.id.to_string(),
                        task: &m.episode.task,
                        input: &m.episode.input,
                        output: &m.episode.output,
                        reward: m.episode.reward,
                        critique: m.episode.critique.as_deref(),
                        success: m.episode.success,
                        score: m.score,
                        created_ms: m.episode.created.unix_ms(),
                        embedding_model: m.episode.embedding_model.as_str(),
                    })
                    .collect();
                return output::json(&rows);
            }
            if matches.is_empty() {
                return output::line("no matching episodes");
            }
            for m in &matches {
                let e = &m.episode;
                output::line(format_args!(
                    "{:.3}  {}  reward {:.2} ({})  {}",
                    m.score,
                    e.id,
                    e.reward,
                    if e.success { "success" } else { "failure" },
                    e.task
                ))?;
                output::line(format_args!("       input:  {}", one_line(&e.input)))?;
                output::line(format_args!("       output: {}", one_line(&e.output)))?;
                if let Some(c) = &e.critique {
                    output::line(format_args!("       critique: {}", one_line(c)))?;
                }
            }
            Ok(())
        }
        LocalCommand::Stats(a) => {
            let s = engine.stats(&a.tenant)?;
            if a.json {
                return output::json(&serde_json::json!({
                    "episodes": s.episodes,
                    "success_rate": s.success_rate,
                    "avg_reward": s.avg_reward,
                    "top_tasks": s.top_tasks,
                    "deleted": s.deleted,
                    "embedding_model": s.embedding_model,
                    "key_version": s.key_version,
                }));
            }
            output::line(format_args!("tenant        {}", a.tenant))?;
            output::line(format_args!("episodes      {}", s.episodes))?;
            output::line(format_args!("success rate  {:.1}%", s.success_rate * 100.0))?;
            output::line(format_args!("avg reward    {:.3}", s.avg_reward))?;
            for t in &s.top_tasks {
                output::line(format_args!(
                    "  {:>6} × {}  (avg reward {:.2})",
                    t.count,
                    one_line(&t.task),
                    t.avg_reward
                ))?;
            }
            Ok(())
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

/// The first line of `text`, cut to 120 characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
