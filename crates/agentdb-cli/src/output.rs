//! Printing results: human text or JSON on stdout. Query results and tenant statistics print the
//! same way whether they come from the embedded store (`agentdb local`) or a hub
//! (`agentdb agent`).

use std::io::Write;

use agentdb_core::{Episode, TenantId, TenantStats};
use serde::Serialize;

/// Prints `value` as one line of JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a line of text on stdout.
pub fn line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
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

impl<'a> MatchJson<'a> {
    /// The JSON form of `episode` found with `score`.
    fn new(episode: &'a Episode, score: f32) -> Self {
        Self {
            id: episode.id.to_string(),
            task: &episode.task,
            input: &episode.input,
            output: &episode.output,
            reward: episode.reward,
            critique: episode.critique.as_deref(),
            success: episode.success,
            score,
            created_ms: episode.created.unix_ms(),
            embedding_model: episode.embedding_model.as_str(),
        }
    }
}

/// Prints query results, best first: a JSON array of [`MatchJson`] with `json`, else a few
/// lines per episode.
pub fn matches(found: &[(&Episode, f32)], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<MatchJson<'_>> = found.iter().map(|(e, s)| MatchJson::new(e, *s)).collect();
        return self::json(&rows);
    }
    if found.is_empty() {
        return line("no matching episodes");
    }
    for (e, score) in found {
        line(format_args!(
            "{:.3}  {}  reward {:.2} ({})  {}",
            score,
            e.id,
            e.reward,
            if e.success { "success" } else { "failure" },
            e.task
        ))?;
        line(format_args!("       input:  {}", one_line(&e.input)))?;
        line(format_args!("       output: {}", one_line(&e.output)))?;
        if let Some(c) = &e.critique {
            line(format_args!("       critique: {}", one_line(c)))?;
        }
    }
    Ok(())
}

/// Prints a tenant's statistics: `{episodes, success_rate, avg_reward, top_tasks, deleted,
/// embedding_model, key_version}` with `json`, else a small table.
pub fn stats(tenant: &TenantId, s: &TenantStats, json: bool) -> anyhow::Result<()> {
    if json {
        return self::json(&serde_json::json!({
            "episodes": s.episodes,
            "success_rate": s.success_rate,
            "avg_reward": s.avg_reward,
            "top_tasks": s.top_tasks,
            "deleted": s.deleted,
            "embedding_model": s.embedding_model,
            "key_version": s.key_version,
        }));
    }
    line(format_args!("tenant        {tenant}"))?;
    line(format_args!("episodes      {}", s.episodes))?;
    line(format_args!("success rate  {:.1}%", s.success_rate * 100.0))?;
    line(format_args!("avg reward    {:.3}", s.avg_reward))?;
    for t in &s.top_tasks {
        line(format_args!(
            "  {:>6} × {}  (avg reward {:.2})",
            t.count,
            one_line(&t.task),
            t.avg_reward
        ))?;
    }
    Ok(())
}

/// The first line of `text`, cut to 120 characters.
pub fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
