//! `agentdb reindex`: re-embeds stored episodes after the embedder changed.
//!
//! Opens the data directory with the embedder chosen like everywhere else (`--model-dir`, else
//! `AGENTDB_MODEL_DIR`, else the lexical default) and re-embeds every tenant — or the one given —
//! whose episodes are not all on that embedder's model. Tenants already on it are skipped
//! cheaply; an interrupted run is finished by running the command again.

use std::path::PathBuf;
use std::time::Instant;

use agentdb_core::TenantId;
use agentdb_memory::{embedder_from_env_or_dir, open_data_dir_with_embedder, EngineConfig};
use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::output;

/// Arguments of `agentdb reindex`.
#[derive(Debug, Args)]
pub struct ReindexArgs {
    /// Data directory. The master key is read from AGENTDB_MASTER_KEY or DIR/master.key.
    #[arg(long, default_value = "./agentdb-data")]
    data: PathBuf,
    /// Only this tenant (default: every tenant).
    #[arg(long)]
    tenant: Option<TenantId>,
    /// Directory of the sentence-embedding model (config.json, tokenizer.json,
    /// model.safetensors) to re-embed with; overrides AGENTDB_MODEL_DIR. Without either, the
    /// lexical embedder.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// What happened to one tenant.
#[derive(Debug, Serialize)]
struct TenantReport {
    tenant: String,
    /// The model the tenant was bound to before.
    from: Option<String>,
    /// Episodes re-embedded.
    episodes: u64,
}

/// The summary line.
#[derive(Debug, Serialize)]
struct Summary {
    model: String,
    dimensions: usize,
    tenants: Vec<TenantReport>,
    episodes: u64,
    seconds: f64,
}

/// Runs `agentdb reindex`.
pub fn run(args: ReindexArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let embedder = embedder_from_env_or_dir(args.model_dir.as_deref())
        .context("cannot load the embedding model")?;
    let model = embedder.model().clone();
    tracing::info!(embedder = %model, dimensions = embedder.dimensions(), "embedder");
    let engine = open_data_dir_with_embedder(&args.data, EngineConfig::default(), embedder.clone())
        .with_context(|| format!("cannot open {}", args.data.display()))?;
    let tenants = match args.tenant {
        Some(t) => {
            anyhow::ensure!(
                engine.tenant_model(&t).is_some(),
                "tenant {t} has no data in {}",
                args.data.display()
            );
            vec![t]
        }
        None => engine.tenants(),
    };

    let mut reports = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let from = engine.tenant_model(&tenant);
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(tenant.to_string());
        let done = engine
            .reindex(&tenant, &*embedder, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .with_context(|| format!("re-indexing tenant {tenant} with {model} failed"))?;
        bar.finish_and_clear();
        tracing::info!(%tenant, episodes = done, "re-indexed");
        reports.push(TenantReport {
            tenant: tenant.to_string(),
            from: from.map(|m| m.to_string()),
            episodes: done,
        });
    }

    let summary = Summary {
        model: model.to_string(),
        dimensions: embedder.dimensions(),
        episodes: reports.iter().map(|r| r.episodes).sum(),
        tenants: reports,
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        output::json(&summary)
    } else {
        let changed = summary
            .tenants
            .iter()
            .filter(|r| r.episodes > 0 || r.from.as_deref() != Some(summary.model.as_str()))
            .count();
        output::line(format_args!(
            "{} episodes re-embedded with {}; {changed} of {} tenants changed ({:.1} s)",
            summary.episodes,
            summary.model,
            summary.tenants.len(),
            summary.seconds
        ))
    }
}
