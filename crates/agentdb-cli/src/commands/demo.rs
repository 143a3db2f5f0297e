//! `agentdb demo`: a hub and short-lived agents of two tenants in one process, step by step.
//!
//! The hub runs on free loopback ports over a store in a temporary directory, with a CA,
//! certificates and a token signing key made in memory for the occasion. Agents of `acme` and
//! `globex` store and query over QUIC with mutual TLS; the demo shows that `globex` sees none of
//! `acme`'s memories, destroys the agents, and shows that new agents recall what the old ones
//! stored. Every claim it prints is checked: a broken isolation or a failed recall makes it exit
//! with an error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_client::{AgentConfig, EphemeralAgent, Memory, SigningKeyTokens};
use agentdb_core::{EpisodeId, HubId, NewEpisode, TenantId, TenantStats};
use agentdb_hub::{HubConfig, HubHandle, HubLimits, TokenKey};
use agentdb_memory::{MemoryEngine, RedbStorage, DB_FILE};
use agentdb_security::ca::Subject;
use agentdb_security::token::{TokenIssuer, DEFAULT_AUDIENCE, DEFAULT_TTL_SECS};
use agentdb_security::MasterKey;
use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::json;

use super::hub::{self, DevPki};
use crate::output;

/// Arguments of `agentdb demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print a JSON summary instead of the narrated steps.
    #[arg(long)]
    json: bool,
}

/// The question both tenants ask.
const QUESTION: &str = "summarise the invoice";

/// What the agents of each tenant store: task, input, output, reward, critique.
type Lesson = (
    &'static str,
    &'static str,
    &'static str,
    f64,
    Option<&'static str>,
);

const ACME: &[Lesson] = &[
    (
        "summarise invoice",
        "invoice #42 from ACME Corp, 3 items",
        "Total: 300 EUR",
        0.95,
        Some("correct total and currency"),
    ),
    (
        "summarise invoice",
        "invoice #43, a blurry photo",
        "Total: unreadable",
        0.2,
        Some("ask for a scan before summarising"),
    ),
    (
        "triage bug report",
        "app crashes on login after the update",
        "severity high, assigned to team auth",
        0.8,
        None,
    ),
];

const GLOBEX: &[Lesson] = &[(
    "summarise invoice",
    "invoice G-7 from Globex Inc",
    "Total: 1,200 USD",
    0.9,
    None,
)];

/// Runs `agentdb demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = super::runtime()?;
    runtime.block_on(demo(args.json))
}

/// Prints numbered steps and their details (nothing in JSON mode).
struct Narrator {
    quiet: bool,
    step: usize,
}

impl Narrator {
    fn step(&mut self, text: impl std::fmt::Display) -> anyhow::Result<()> {
        self.step += 1;
        if self.quiet {
            return Ok(());
        }
        if self.step > 1 {
            output::line("")?;
        }
        output::line(format_args!("{}. {text}", self.step))
    }

    fn detail(&self, text: impl std::fmt::Display) -> anyhow::Result<()> {
        if self.quiet {
            return Ok(());
        }
        output::line(format_args!("   {text}"))
    }

    fn memories(&self, memories: &[Memory]) -> anyhow::Result<()> {
        for m in memories {
            let e = &m.episode;
            self.detail(format_args!(
                "{:.3}  {:<18} reward {:.2} ({})  -> {}{}",
                m.score,
                e.task,
                e.reward,
                if e.success { "success" } else { "failure" },
                output::one_line(&e.output),
                e.critique
                    .as_deref()
                    .map(|c| format!("  [critique: {}]", output::one_line(c)))
                    .unwrap_or_default(),
            ))?;
        }
        Ok(())
    }
}

/// A hub with its own PKI, and how to make agents for it.
struct DemoHub {
    handle: HubHandle,
    pki: DevPki,
    url: String,
}

impl DemoHub {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let hub_id = HubId::new("demo-hub").context("bad hub id")?;
        let pki = DevPki::generate(&hub_id)?;
        let storage = RedbStorage::open(&dir.join(DB_FILE)).context("cannot create the store")?;
        let master = MasterKey::generate().context("cannot create a master key")?;
        let engine = MemoryEngine::builder(Arc::new(storage), master)
            .open()
            .context("cannot open the memory engine")?;
        let config = HubConfig {
            hub_id,
            quic_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: Some(([127, 0, 0, 1], 0).into()),
            https_addr: None,
            tls: pki.hub_tls(),
            require_client_cert: true,
            token_key: TokenKey::Ed25519PublicPem(pki.signing.public_pem.clone().into_bytes()),
            audience: DEFAULT_AUDIENCE.to_owned(),
            limits: HubLimits::default(),
            federation: agentdb_hub::FederationConfig::default(),
            master_key: agentdb_hub::MasterKeySource::Unknown,
        };
        let handle = agentdb_hub::start(config, Arc::new(engine))
            .await
            .context("cannot start the hub")?;
        let url = format!("quic://{}", handle.quic_addr());
        Ok(Self { handle, pki, url })
    }

    /// Spawns an agent of `tenant` with a tenant-wide client certificate and its own tokens.
    async fn agent(&self, tenant: &TenantId) -> anyhow::Result<EphemeralAgent> {
        let cert = hub::issue(
            &self.pki.ca,
            &Subject::Tenant {
                tenant: tenant.clone(),
            },
            Duration::from_secs(3600),
        )?;
        let issuer = TokenIssuer::from_ed25519_pem(self.pki.signing.private_pem.as_bytes())
            .context("cannot use the signing key")?;
        let config = AgentConfig::new(
            tenant.clone(),
            self.url.clone(),
            self.pki.ca.cert_pem().as_bytes().to_vec(),
            Arc::new(SigningKeyTokens::new(issuer, DEFAULT_TTL_SECS)),
        )
        .client_cert(cert.cert_pem.into_bytes(), cert.key_pem.as_bytes().to_vec())
        .server_name("localhost")
        .lifetime(Duration::from_secs(120));
        let agent = EphemeralAgent::spawn(config)
            .await
            .with_context(|| format!("cannot spawn an agent of {tenant}"))?;
        if agent.welcome().is_none() {
            bail!("the in-process hub did not answer");
        }
        Ok(agent)
    }

    /// Waits (up to 5 s) until the hub has seen every agent leave.
    async fn wait_for_no_agents(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.handle.connected_agents() > 0 {
            if Instant::now() > deadline {
                bail!(
                    "the hub still counts {} connected agents after they were destroyed",
                    self.handle.connected_agents()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn stats(&self, tenant: &TenantId) -> anyhow::Result<TenantStats> {
        self.handle
            .engine()
            .stats(tenant)
            .with_context(|| format!("cannot read the statistics of {tenant}"))
    }
}

async fn store_all(agent: &EphemeralAgent, lessons: &[Lesson]) -> anyhow::Result<Vec<EpisodeId>> {
    let mut ids = Vec::with_capacity(lessons.len());
    for (task, input, output, reward, critique) in lessons {
        let mut episode = NewEpisode::new(*task, *input, *output, *reward);
        episode.critique = critique.map(str::to_owned);
        ids.push(agent.store_episode(episode).await?);
    }
    if agent.pending() > 0 {
        bail!("the hub did not acknowledge every episode");
    }
    Ok(ids)
}

fn stats_line(tenant: &TenantId, s: &TenantStats) -> String {
    let top = s
        .top_tasks
        .first()
        .map(|t| format!(", top task \"{}\" ×{}", t.task, t.count))
        .unwrap_or_default();
    format!(
        "{:<7} {} episode{}, success rate {:.0}%, avg reward {:.2}{top}",
        tenant.as_str(),
        s.episodes,
        if s.episodes == 1 { "" } else { "s" },
        s.success_rate * 100.0,
        s.avg_reward
    )
}

async fn demo(json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut say = Narrator {
        quiet: json,
        step: 0,
    };
    let acme = TenantId::new("acme").context("bad tenant")?;
    let globex = TenantId::new("globex").context("bad tenant")?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;

    let hub = DemoHub::start(dir.path()).await?;
    let http = hub
        .handle
        .http_addr()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}"));
    say.step(format_args!(
        "Started hub demo-hub in this process: QUIC on {} with mutual TLS (a CA, certificates and \
         a token signing key made just now), admin HTTP on {http}, data in a temporary directory.",
        hub.url
    ))?;

    // Two agents, two tenants.
    let a1 = hub.agent(&acme).await?;
    say.step(format_args!(
        "Agent {} of tenant acme stores {} episodes:",
        a1.id(),
        ACME.len()
    ))?;
    let acme_ids = store_all(&a1, ACME).await?;
    for (id, (task, _, _, reward, _)) in acme_ids.iter().zip(ACME) {
        say.detail(format_args!("{id}  reward {reward:.2}  {task}"))?;
    }
    let g1 = hub.agent(&globex).await?;
    say.step(format_args!(
        "Agent {} of tenant globex stores {} episode:",
        g1.id(),
        GLOBEX.len()
    ))?;
    let globex_ids = store_all(&g1, GLOBEX).await?;
    for (id, (task, _, _, reward, _)) in globex_ids.iter().zip(GLOBEX) {
        say.detail(format_args!("{id}  reward {reward:.2}  {task}"))?;
    }
    let connected_before = hub.handle.connected_agents();
    say.detail(format_args!("connected agents: {connected_before}"))?;

    // Both ask the same question.
    let acme_recall = a1.query_memories(QUESTION, 5).await?;
    say.step(format_args!(
        "acme asks \"{QUESTION}\": {} memories, best first:",
        acme_recall.memories.len()
    ))?;
    say.memories(&acme_recall.memories)?;
    let globex_recall = g1.query_memories(QUESTION, 5).await?;
    let acme_set: HashSet<EpisodeId> = acme_ids.iter().copied().collect();
    let leaked = globex_recall
        .memories
        .iter()
        .filter(|m| acme_set.contains(&m.episode.id))
        .count();
    say.step(format_args!(
        "globex asks the same: {} memor{}:",
        globex_recall.memories.len(),
        if globex_recall.memories.len() == 1 {
            "y"
        } else {
            "ies"
        }
    ))?;
    say.memories(&globex_recall.memories)?;
    if leaked > 0 {
        bail!("isolation violated: globex got {leaked} of acme's memories");
    }
    say.detail(format_args!(
        "isolation: tenant globex got {leaked} of acme's {} memories; it sees only its own",
        acme_ids.len()
    ))?;

    // The agents end; their memory stays in the hub.
    a1.destroy().await?;
    g1.destroy().await?;
    hub.wait_for_no_agents().await?;
    say.step(format_args!(
        "Both agents destroyed; the hub counts {} connected agents.",
        hub.handle.connected_agents()
    ))?;

    let a2 = hub.agent(&acme).await?;
    let recall = a2.query_memories("summarise invoice", 5).await?;
    let recalled: HashSet<EpisodeId> = recall.memories.iter().map(|m| m.episode.id).collect();
    let from_predecessor = acme_ids.iter().filter(|id| recalled.contains(id)).count();
    say.step(format_args!(
        "A new agent {} of acme asks \"summarise invoice\" and recalls what the destroyed agent \
         learned:",
        a2.id()
    ))?;
    say.memories(&recall.memories)?;
    let invoices = ACME
        .iter()
        .zip(&acme_ids)
        .filter(|((task, ..), _)| *task == "summarise invoice")
        .map(|(_, id)| id);
    if invoices.clone().any(|id| !recalled.contains(id)) {
        bail!("recall failed: the new acme agent did not find the invoice episodes stored earlier");
    }
    if recall
        .memories
        .iter()
        .any(|m| !acme_set.contains(&m.episode.id))
    {
        bail!("isolation violated: the new acme agent recalled another tenant's memory");
    }
    say.detail(format_args!(
        "recall: {from_predecessor} of the {} memories came from the destroyed agent, including \
         the failure and its critique",
        recall.memories.len()
    ))?;
    let g2 = hub.agent(&globex).await?;
    let g_recall = g2.query_memories("summarise invoice", 5).await?;
    let g_leaked = g_recall
        .memories
        .iter()
        .filter(|m| acme_set.contains(&m.episode.id))
        .count();
    if g_leaked > 0 {
        bail!("isolation violated: the new globex agent got {g_leaked} of acme's memories");
    }
    say.detail(format_args!(
        "a new agent of globex recalls {} memor{} of its own, {g_leaked} of acme's",
        g_recall.memories.len(),
        if g_recall.memories.len() == 1 {
            "y"
        } else {
            "ies"
        }
    ))?;
    a2.destroy().await?;
    g2.destroy().await?;
    hub.wait_for_no_agents().await?;

    let acme_stats = hub.stats(&acme)?;
    let globex_stats = hub.stats(&globex)?;
    let connected = hub.handle.connected_agents();
    say.step("Hub statistics:")?;
    say.detail(stats_line(&acme, &acme_stats))?;
    say.detail(stats_line(&globex, &globex_stats))?;
    say.detail(format_args!("connected agents: {connected}"))?;

    let summary = json!({
        "hub": { "id": "demo-hub", "quic": hub.url, "http": http },
        "stored": {
            "acme": acme_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "globex": globex_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "isolation": {
            "tenant": "globex",
            "memories": globex_recall.memories.len(),
            "of_acme": leaked,
        },
        "recall": {
            "tenant": "acme",
            "memories": recall.memories.len(),
            "from_destroyed_agent": from_predecessor,
        },
        "stats": { "acme": acme_stats, "globex": globex_stats },
        "connected_agents": { "before": connected_before, "after": connected },
    });
    hub.handle.shutdown().await;
    drop(dir);
    if json {
        return output::json(&summary);
    }
    say.step(format_args!(
        "Done in {:.1} s; the temporary directory is gone. Next: run a real hub with `agentdb hub` \
         (docs/hub.md).",
        started.elapsed().as_secs_f64()
    ))
}
