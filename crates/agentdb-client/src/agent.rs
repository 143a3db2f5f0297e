//! The ephemeral agent: spawn, execute, query, store, destroy.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{
    AgentId, Episode, EpisodeId, EpisodeUpdate, Filter, NewEpisode, SessionId, TenantStats,
    Timestamp,
};
use agentdb_memory::{MemStorage, MemoryEngine, Query};
use agentdb_proto::{
    Change, DeleteRequest, ErrorCode, PullRequest, QueryInput, QueryRequest, RefreshRequest,
    Request, Response, StoreRequest, UpdateRequest, Welcome, WireNewEpisode,
};
use agentdb_security::MasterKey;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::config::AgentConfig;
use crate::connection::{HubAddress, HubConnection};
use crate::error::AgentError;
use crate::outbox::Outbox;

/// Where query results came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The hub answered; unsynced local episodes were merged in.
    Hub,
    /// The hub was unreachable; only the agent's local cache answered.
    LocalOnly,
}

/// One remembered episode and how close it is to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// The episode.
    pub episode: Episode,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// The answer to [`EphemeralAgent::query_memories`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recall {
    /// Best first, deduplicated by id.
    pub memories: Vec<Memory>,
    /// Who answered.
    pub source: Source,
}

struct Inner {
    config: AgentConfig,
    agent: AgentId,
    address: HubAddress,
    server_name: String,
    tls: Arc<quinn::crypto::rustls::QuicClientConfig>,
    conn: tokio::sync::Mutex<Option<HubConnection>>,
    welcome: Mutex<Option<Welcome>>,
    local: MemoryEngine,
    outbox: Outbox,
    cursor: AtomicU64,
    deadline_ms: u64,
    /// Unix seconds when the current token expires, and when it was obtained.
    token_exp: AtomicU64,
    token_got: AtomicU64,
    destroyed: AtomicBool,
    session: SessionId,
    /// When the last connection attempt failed as unreachable.
    failed_at: Mutex<Option<std::time::Instant>>,
}

/// A short-lived agent with memory that outlives it. See the crate docs.
pub struct EphemeralAgent {
    inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EphemeralAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralAgent")
            .field("tenant", &self.inner.config.tenant)
            .field("agent", &self.inner.agent)
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// A handle to the agent's memory inside [`EphemeralAgent::execute`].
#[derive(Clone)]
pub struct MemoryHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryHandle(..)")
    }
}

impl MemoryHandle {
    /// See [`EphemeralAgent::query_memories`].
    pub async fn query(&self, text: &str, k: usize) -> Result<Recall, AgentError> {
        query(&self.inner, text, k, Filter::default()).await
    }

    /// See [`EphemeralAgent::store_episode`].
    pub async fn store(&self, episode: NewEpisode) -> Result<EpisodeId, AgentError> {
        store(&self.inner, episode).await
    }
}

fn mint_id(now_ms: u64) -> EpisodeId {
    let mut random = [0u8; 10];
    random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
    EpisodeId::from_parts(now_ms, random)
}

fn now_secs(inner: &Inner) -> u64 {
    inner.config.clock.now().unix_ms() / 1000
}

impl EphemeralAgent {
    /// Spawns an agent: connects to the hub (mutual TLS when a client certificate is
    /// configured), authenticates, sends what earlier agents of the tenant left in the spool, and
    /// pulls what the tenant has learned into the local cache.
    ///
    /// A hub that cannot be reached is not fatal: the agent starts with its local cache and
    /// keeps retrying in the background. A hub that *refuses* the agent (bad token, wrong CA,
    /// tenant mismatch) is: that is returned as [`AgentError::Rejected`].
    pub async fn spawn(config: AgentConfig) -> Result<Self, AgentError> {
        let address = HubAddress::parse(&config.hub)?;
        let server_name = config
            .server_name
            .clone()
            .unwrap_or_else(|| address.host.clone());
        let client_cert = config
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()));
        let tls =
            agentdb_security::tls::client_config(&config.ca_pem, client_cert, agentdb_proto::ALPN)
                .map_err(|e| AgentError::Config(e.to_string()))?;
        let tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| AgentError::Config(e.to_string()))?;
        let now_ms = config.clock.now().unix_ms();
        let agent = match &config.agent {
            Some(a) => a.clone(),
            // UUIDv7 + random: unique even for many agents spawned in the same millisecond.
            None => AgentId::new(format!("agent-{}", mint_id(now_ms)))
                .map_err(|e| AgentError::Config(e.to_string()))?,
        };
        let mut local = MemoryEngine::builder(
            Arc::new(MemStorage::new()),
            MasterKey::generate().map_err(|e| AgentError::Local(e.to_string()))?,
        );
        if let Some(e) = &config.embedder {
            local = local.embedder(Arc::clone(e));
        }
        let local = local.open().map_err(|e| AgentError::Local(e.to_string()))?;
        let outbox = Outbox::open(config.spool_dir.as_deref(), &config.tenant)
            .map_err(|e| AgentError::Local(e.to_string()))?;
        let deadline_ms = now_ms.saturating_add(config.lifetime.as_millis() as u64);
        let inner = Arc::new(Inner {
            agent,
            address,
            server_name,
            tls: Arc::new(tls),
            conn: tokio::sync::Mutex::new(None),
            welcome: Mutex::new(None),
            local,
            outbox,
            cursor: AtomicU64::new(0),
            deadline_ms,
            token_exp: AtomicU64::new(0),
            token_got: AtomicU64::new(0),
            destroyed: AtomicBool::new(false),
            session: SessionId::from_random(*uuid::Uuid::new_v4().as_bytes()),
            failed_at: Mutex::new(None),
            config,
        });
        match connect(&inner).await {
            Ok(()) => {}
            Err(e @ AgentError::Unreachable(_)) => {
                tracing::warn!(error = %e, "hub unreachable at spawn; starting with the local cache");
            }
            Err(e) => return Err(e),
        }
        // Pre-sync: failures to reach the hub are tolerated here (retried in the background).
        if let Err(e) = sync(&inner).await {
            if !matches!(e, AgentError::Unreachable(_)) {
                return Err(e);
            }
        }
        let background = tokio::spawn(background(Arc::clone(&inner)));
        Ok(Self {
            inner,
            background: Some(background),
        })
    }

    /// The agent's id.
    pub fn id(&self) -> &AgentId {
        &self.inner.agent
    }

    /// The agent's session id (one per spawn).
    pub fn session(&self) -> SessionId {
        self.inner.session
    }

    /// What the hub said when it accepted the agent (absent while the hub is unreachable).
    pub fn welcome(&self) -> Option<Welcome> {
        self.inner.welcome.lock().clone()
    }

    /// Time left to live; zero once expired or destroyed.
    pub fn remaining_lifetime(&self) -> Duration {
        remaining(&self.inner)
    }

    /// Whether the agent is neither expired nor destroyed.
    pub fn is_alive(&self) -> bool {
        alive(&self.inner)
    }

    /// Episodes written but not yet acknowledged by the hub.
    pub fn pending(&self) -> usize {
        self.inner.outbox.len()
    }

    /// Runs a task: pre-sync (send pending episodes, pull new memory), the task, post-sync
    /// (send what it stored). Fails with [`AgentError::AgentExpired`] when the agent is no longer
    /// alive.
    pub async fn execute<F, Fut, T>(&self, task: F) -> Result<T, AgentError>
    where
        F: FnOnce(MemoryHandle) -> Fut,
        Fut: Future<Output = Result<T, AgentError>>,
    {
        ensure_alive(&self.inner)?;
        if let Err(e) = sync(&self.inner).await {
            tracing::debug!(error = %e, "pre-sync incomplete");
        }
        let out = task(MemoryHandle {
            inner: Arc::clone(&self.inner),
        })
        .await?;
        if let Err(e) = flush(&self.inner).await {
            tracing::debug!(error = %e, "post-sync incomplete; episodes stay in the outbox");
        }
        Ok(out)
    }

    /// The `k` memories nearest to `text`: the hub's answer merged with this agent's unsynced
    /// episodes, or the local cache alone when the hub is unreachable ([`Recall::source`] says
    /// which).
    pub async fn query_memories(&self, text: &str, k: usize) -> Result<Recall, AgentError> {
        query(&self.inner, text, k, Filter::default()).await
    }

    /// Like [`Self::query_memories`] with a filter.
    pub async fn query_filtered(
        &self,
        text: &str,
        k: usize,
        filter: Filter,
    ) -> Result<Recall, AgentError> {
        query(&self.inner, text, k, filter).await
    }

    /// Stores an episode: into the local cache and the durable outbox, then pushes it to the
    /// hub. A failed push is retried later (by this agent or, through the spool, the next one of
    /// the tenant); the episode is never lost and never duplicated.
    pub async fn store_episode(&self, episode: NewEpisode) -> Result<EpisodeId, AgentError> {
        store(&self.inner, episode).await
    }

    /// Stores several episodes with one push to the hub (see [`Self::store_episode`]).
    pub async fn store_batch(
        &self,
        episodes: Vec<NewEpisode>,
    ) -> Result<Vec<EpisodeId>, AgentError> {
        store_many(&self.inner, episodes).await
    }

    /// The tenant's statistics from the hub.
    pub async fn stats(&self) -> Result<TenantStats, AgentError> {
        ensure_alive(&self.inner)?;
        match request(&self.inner, &Request::Stats).await? {
            Response::Stats(s) => Ok(s),
            other => Err(AgentError::unexpected(&other)),
        }
    }

    /// Changes an episode's reward, critique or tags in the hub; across hubs the last write of
    /// each field wins. Returns whether the episode was live in the hub. Unlike stores, an
    /// update is not kept for later when the hub cannot be reached: the error says so.
    pub async fn update_episode(
        &self,
        id: EpisodeId,
        update: EpisodeUpdate,
    ) -> Result<bool, AgentError> {
        ensure_alive(&self.inner)?;
        let req = Request::Update(UpdateRequest {
            id,
            update: update.clone(),
        });
        let found = done(request(&self.inner, &req).await?)?;
        let _ = self
            .inner
            .local
            .update(&self.inner.config.tenant, &id, &update);
        Ok(found)
    }

    /// Deletes an episode in the hub (and, through federation, on every hub); a delete wins
    /// over any concurrent update. Returns whether the episode was live in the hub.
    pub async fn delete_episode(&self, id: EpisodeId) -> Result<bool, AgentError> {
        ensure_alive(&self.inner)?;
        let found = done(request(&self.inner, &Request::Delete(DeleteRequest { id })).await?)?;
        let _ = self.inner.local.delete(&self.inner.config.tenant, &id);
        Ok(found)
    }

    /// Sends pending episodes and pulls new memory now.
    pub async fn sync(&self) -> Result<(), AgentError> {
        ensure_alive(&self.inner)?;
        sync(&self.inner).await
    }

    /// Ends the agent: a final sync, goodbye (the hub revokes its token), close. Its memory
    /// stays in the hub; anything the hub did not acknowledge stays in the spool.
    pub async fn destroy(mut self) -> Result<(), AgentError> {
        if let Some(bg) = self.background.take() {
            bg.abort();
        }
        destroy(&self.inner).await
    }
}

impl Drop for EphemeralAgent {
    fn drop(&mut self) {
        if let Some(bg) = self.background.take() {
            bg.abort();
        }
    }
}

fn remaining(inner: &Inner) -> Duration {
    if inner.destroyed.load(Ordering::Acquire) {
        return Duration::ZERO;
    }
    let now = inner.config.clock.now().unix_ms();
    Duration::from_millis(inner.deadline_ms.saturating_sub(now))
}

fn alive(inner: &Inner) -> bool {
    !remaining(inner).is_zero()
}

fn ensure_alive(inner: &Inner) -> Result<(), AgentError> {
    if alive(inner) {
        Ok(())
    } else {
        Err(AgentError::AgentExpired)
    }
}

fn fresh_token(inner: &Inner) -> Result<String, AgentError> {
    let now = now_secs(inner);
    let token = inner
        .config
        .tokens
        .token(&inner.config.tenant, &inner.agent, now)
        .map_err(AgentError::Token)?;
    inner.token_got.store(now, Ordering::Release);
    Ok(token)
}

async fn connect(inner: &Inner) -> Result<(), AgentError> {
    let mut guard = inner.conn.lock().await;
    if guard.as_ref().is_some_and(HubConnection::is_open) {
        return Ok(());
    }
    if let Some(at) = *inner.failed_at.lock() {
        if at.elapsed() < inner.config.reconnect_backoff {
            return Err(AgentError::Unreachable(
                "the hub was unreachable moments ago; retrying shortly".into(),
            ));
        }
    }
    let token = fresh_token(inner)?;
    let connected = HubConnection::connect(
        &inner.address,
        &inner.server_name,
        Arc::clone(&inner.tls),
        token,
        inner.config.connect_timeout,
        inner.config.request_timeout,
    )
    .await;
    let (conn, welcome) = match connected {
        Ok(c) => {
            *inner.failed_at.lock() = None;
            c
        }
        Err(e) => {
            if matches!(e, AgentError::Unreachable(_)) {
                *inner.failed_at.lock() = Some(std::time::Instant::now());
            }
            return Err(e);
        }
    };
    if welcome.tenant != inner.config.tenant {
        return Err(AgentError::Rejected {
            code: ErrorCode::TenantMismatch,
            message: format!(
                "the hub admitted tenant {} instead of {}",
                welcome.tenant, inner.config.tenant
            ),
        });
    }
    inner.token_exp.store(welcome.expires_at, Ordering::Release);
    *inner.welcome.lock() = Some(welcome);
    *guard = Some(conn);
    Ok(())
}

/// One request, connecting first if needed. A lost connection is dropped so the next call
/// reconnects.
async fn request(inner: &Inner, req: &Request) -> Result<Response, AgentError> {
    connect(inner).await?;
    // Take a handle and let go of the lock: requests of one agent run concurrently.
    let requester = inner
        .conn
        .lock()
        .await
        .as_ref()
        .map(HubConnection::requester);
    let Some(requester) = requester else {
        return Err(AgentError::Unreachable("not connected".into()));
    };
    let result = requester.request(req).await;
    if let Err(AgentError::Unreachable(_)) = &result {
        inner.conn.lock().await.take();
    }
    result
}

async fn flush(inner: &Inner) -> Result<(), AgentError> {
    let pending = inner.outbox.pending();
    for chunk in pending.chunks(100) {
        let req = Request::Store(StoreRequest {
            episodes: chunk.to_vec(),
        });
        match request(inner, &req).await? {
            Response::Stored(s) => {
                let ids: Vec<EpisodeId> = s.results.iter().map(|r| r.id).collect();
                inner.outbox.remove(&ids);
            }
            other => return Err(AgentError::unexpected(&other)),
        }
    }
    Ok(())
}

/// The answer to an update or delete.
fn done(response: Response) -> Result<bool, AgentError> {
    match response {
        Response::Done { found } => Ok(found),
        other => Err(AgentError::unexpected(&other)),
    }
}

async fn pull(inner: &Inner) -> Result<(), AgentError> {
    let mut budget = inner.config.pull_budget;
    while budget > 0 {
        let cursor = inner.cursor.load(Ordering::Acquire);
        let limit = budget.min(1000) as u32;
        let page = match request(inner, &Request::Pull(PullRequest { cursor, limit })).await? {
            Response::Page(p) => p,
            other => return Err(AgentError::unexpected(&other)),
        };
        budget = budget.saturating_sub(page.changes.len().max(1));
        let tenant = &inner.config.tenant;
        for item in page.changes {
            match item.change {
                Change::Put(wire) => {
                    let Ok(e) = Episode::try_from(wire) else {
                        continue;
                    };
                    let mut new =
                        NewEpisode::new(e.task, e.input, e.output, e.reward).with_id(e.id);
                    new.critique = e.critique.clone();
                    new.agent = e.agent;
                    new.tags = e.tags.clone();
                    new.metadata = e.metadata;
                    // Already cached: take the hub's reward, critique and tags (updated since).
                    if let Ok(stored) = inner.local.store(tenant, new) {
                        if !stored.inserted {
                            let update = EpisodeUpdate {
                                reward: Some(e.reward),
                                critique: Some(e.critique),
                                tags: Some(e.tags),
                            };
                            let _ = inner.local.update(tenant, &e.id, &update);
                        }
                    }
                }
                Change::Deleted { id } => {
                    let _ = inner.local.delete(tenant, &id);
                }
            }
        }
        inner.cursor.store(page.next_cursor, Ordering::Release);
        if !page.more {
            break;
        }
    }
    Ok(())
}

async fn sync(inner: &Inner) -> Result<(), AgentError> {
    flush(inner).await?;
    pull(inner).await
}

async fn store(inner: &Inner, episode: NewEpisode) -> Result<EpisodeId, AgentError> {
    let ids = store_many(inner, vec![episode]).await?;
    ids.into_iter()
        .next()
        .ok_or_else(|| AgentError::Local("nothing was stored".into()))
}

async fn store_many(
    inner: &Inner,
    mut episodes: Vec<NewEpisode>,
) -> Result<Vec<EpisodeId>, AgentError> {
    ensure_alive(inner)?;
    let now = inner.config.clock.now().unix_ms();
    let mut ids = Vec::with_capacity(episodes.len());
    for e in &mut episodes {
        ids.push(*e.id.get_or_insert_with(|| mint_id(now)));
        e.agent = Some(inner.agent.clone());
        e.session = Some(inner.session);
    }
    // The local cache validates the episodes; a bad batch goes nowhere.
    inner
        .local
        .store_batch(&inner.config.tenant, episodes.clone())
        .map_err(|e| AgentError::Local(e.to_string()))?;
    for (id, e) in ids.iter().zip(&episodes) {
        inner
            .outbox
            .add(*id, WireNewEpisode::from(e))
            .map_err(|e| AgentError::Local(e.to_string()))?;
    }
    match flush(inner).await {
        Ok(()) | Err(AgentError::Unreachable(_)) => Ok(ids),
        Err(e) => Err(e),
    }
}

async fn query(inner: &Inner, text: &str, k: usize, filter: Filter) -> Result<Recall, AgentError> {
    ensure_alive(inner)?;
    let req = Request::Query(QueryRequest {
        input: QueryInput::Text(text.to_owned()),
        k: k as u32,
        filter: filter.clone(),
    });
    let tenant = &inner.config.tenant;
    match request(inner, &req).await {
        Ok(Response::Matches(m)) => {
            let mut merged: HashMap<EpisodeId, Memory> = HashMap::new();
            for wm in m.matches {
                if let Ok(e) = Episode::try_from(wm.episode) {
                    merged.insert(
                        e.id,
                        Memory {
                            episode: e,
                            score: wm.score,
                        },
                    );
                }
            }
            // Unsynced local episodes, scored with the hub's query vector when the models agree.
            let pending: Vec<EpisodeId> =
                inner.outbox.pending().iter().filter_map(|e| e.id).collect();
            if !pending.is_empty() && &m.model == inner.local.embedder().model() {
                let q = Query::vector(
                    agentdb_core::Embedding {
                        model: m.model.clone(),
                        vector: m.query_vector.clone(),
                    },
                    k,
                )
                .with_filter(filter);
                if let Ok(local) = inner.local.query(tenant, &q) {
                    for lm in local
                        .into_iter()
                        .filter(|lm| pending.contains(&lm.episode.id))
                    {
                        merged.entry(lm.episode.id).or_insert(Memory {
                            episode: lm.episode,
                            score: lm.score,
                        });
                    }
                }
            }
            let mut memories: Vec<Memory> = merged.into_values().collect();
            memories.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then(a.episode.id.cmp(&b.episode.id))
            });
            memories.truncate(k);
            Ok(Recall {
                memories,
                source: Source::Hub,
            })
        }
        Ok(other) => Err(AgentError::unexpected(&other)),
        Err(AgentError::Unreachable(reason)) => {
            tracing::debug!(%reason, "hub unreachable; answering from the local cache");
            let local = inner
                .local
                .query(tenant, &Query::text(text, k).with_filter(filter))
                .map_err(|e| AgentError::Local(e.to_string()))?;
            Ok(Recall {
                memories: local
                    .into_iter()
                    .map(|m| Memory {
                        episode: m.episode,
                        score: m.score,
                    })
                    .collect(),
                source: Source::LocalOnly,
            })
        }
        Err(e) => Err(e),
    }
}

async fn refresh_if_due(inner: &Inner) -> Result<(), AgentError> {
    let exp = inner.token_exp.load(Ordering::Acquire);
    let got = inner.token_got.load(Ordering::Acquire);
    let now = now_secs(inner);
    if exp == 0 {
        return Ok(());
    }
    // Refresh once two thirds of the token's life has passed.
    let due = got + exp.saturating_sub(got) * 2 / 3;
    if now < due {
        return Ok(());
    }
    let token = fresh_token(inner)?;
    match request(inner, &Request::RefreshToken(RefreshRequest { token })).await? {
        Response::Refreshed { expires_at } => {
            inner.token_exp.store(expires_at, Ordering::Release);
            Ok(())
        }
        other => Err(AgentError::unexpected(&other)),
    }
}

async fn destroy(inner: &Inner) -> Result<(), AgentError> {
    if inner.destroyed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    if let Err(e) = flush(inner).await {
        tracing::warn!(error = %e, pending = inner.outbox.len(), "final sync incomplete; episodes stay in the spool");
    }
    if let Some(conn) = inner.conn.lock().await.take() {
        conn.close().await;
    }
    Ok(())
}

/// Lifetime, token refresh and periodic sync.
async fn background(inner: Arc<Inner>) {
    let tick = Duration::from_millis(250);
    let mut last_sync = inner.config.clock.now();
    loop {
        tokio::time::sleep(tick.min(remaining(&inner).max(Duration::from_millis(1)))).await;
        if !alive(&inner) {
            // The lifetime is over: destroy (final sync, goodbye).
            let _ = destroy(&inner).await;
            return;
        }
        if let Err(e) = refresh_if_due(&inner).await {
            tracing::debug!(error = %e, "token refresh failed; will retry");
        }
        let now = inner.config.clock.now();
        if now.unix_ms().saturating_sub(last_sync.unix_ms())
            >= inner.config.sync_interval.as_millis() as u64
        {
            last_sync = Timestamp(now.unix_ms());
            if let Err(e) = sync(&inner).await {
                tracing::debug!(error = %e, "background sync incomplete");
            }
        }
    }
}
