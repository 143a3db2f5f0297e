//! The ephemeral agent: spawn, execute, query, store, destroy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{
    AgentId, Episode, EpisodeId, EpisodeUpdate, Filter, Limits, NewEpisode, SessionId, TenantStats,
    Timestamp,
};
use agentdb_memory::{MemStorage, MemoryEngine, Query};
use agentdb_proto::{
    DeleteRequest, ErrorCode, ExchangeRequest, GetRequest, QueryInput, QueryRequest,
    RefreshRequest, Request, Response, StoreRequest, UpdateRequest, Welcome, WireNewEpisode,
};
use agentdb_security::apikey::ApiKeySecret;
use agentdb_security::MasterKey;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::config::AgentConfig;
use crate::connection::{HubAddress, HubConnection, Requester};
use crate::connector::Connector;
use crate::error::{
    is_permanent, AgentError, ConfigError, LocalCacheError, ProtocolError, Unreachable,
};
use crate::outbox::{Backoff, DeadLetter, Outbox, UnreadableSpoolFile};
use crate::spool_key::SpoolKey;

/// Most spooled episodes sent in one request.
const FLUSH_CHUNK: usize = 100;

/// How durable an episode is when a store returns `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// The hub acknowledged it: it is fsynced in the hub's store.
    Acknowledged,
    /// The hub could not take it now (unreachable, or a refusal that is not about the
    /// episode, such as `overloaded`): it is sealed and fsynced in the agent's spool. This
    /// agent's syncs, or the next agent of the tenant with the same spool directory and key,
    /// send it; it is not in the hub yet.
    Spooled,
}

/// A store that succeeded: the episode's id and how durable it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stored {
    /// The episode.
    pub id: EpisodeId,
    /// Acknowledged by the hub, or spooled.
    pub durability: Durability,
}

impl Stored {
    /// Whether the hub acknowledged the episode.
    pub fn is_acknowledged(&self) -> bool {
        self.durability == Durability::Acknowledged
    }
}

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
    connector: Connector,
    /// The QUIC client configuration, shared (with its TLS sessions) through the connector.
    client: quinn::ClientConfig,
    conn: tokio::sync::Mutex<Option<HubConnection>>,
    welcome: Mutex<Option<Welcome>>,
    /// The local cache, created when first needed (see [`local`]).
    local: Mutex<Option<Arc<MemoryEngine>>>,
    /// Episodes stored or read, not yet in the local cache (see [`Held`]).
    held: Mutex<Held>,
    /// Present when the agent has a spool directory.
    outbox: Option<Outbox>,
    /// Spool files found at spawn that this agent cannot open.
    unreadable: Vec<UnreadableSpoolFile>,
    /// Spooled episodes the hub refused for good since spawn.
    dead: Mutex<Vec<DeadLetter>>,
    /// When spooled episodes may next be sent after a transient failure.
    retry: Mutex<Backoff>,
    /// One flush of the spool at a time.
    flushing: tokio::sync::Mutex<()>,
    deadline_ms: u64,
    /// Unix seconds when the current token expires, and when it was obtained.
    token_exp: AtomicU64,
    token_got: AtomicU64,
    destroyed: AtomicBool,
    session: SessionId,
    /// When (clock ms) the last connection attempt failed as unreachable.
    failed_at: Mutex<Option<u64>>,
    /// When (clock ms) the last exchange of the API key for a refreshed token failed: the next
    /// is not tried before [`AgentConfig::reconnect_backoff`] has passed.
    refresh_failed_at: Mutex<Option<u64>>,
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

    /// See [`EphemeralAgent::store`].
    pub async fn store(&self, episode: NewEpisode) -> Result<Stored, AgentError> {
        store(&self.inner, episode).await
    }
}

fn now_ms(inner: &Inner) -> u64 {
    inner.config.clock.now().unix_ms()
}

fn now_secs(inner: &Inner) -> u64 {
    now_ms(inner) / 1000
}

impl EphemeralAgent {
    /// Spawns an agent: connects to the hub (mutual TLS when a client certificate is
    /// configured; a TLS session of an earlier agent of the process with the same identity is
    /// resumed, see [`Connector`]), authenticates, and sends what earlier agents of the tenant
    /// left in the spool. Nothing of the tenant's memory is copied: the local cache is created
    /// when first needed and holds what this agent stores and reads.
    ///
    /// A hub that cannot be reached is not fatal: the agent starts with its local cache and
    /// keeps retrying in the background. A hub that *refuses* the agent (bad token, wrong CA,
    /// tenant mismatch) is: that is returned as [`AgentError::Rejected`].
    pub async fn spawn(config: AgentConfig) -> Result<Self, AgentError> {
        let address = HubAddress::parse(&config.hub)?;
        let server_name = config
            .server_name
            .clone()
            .unwrap_or_else(|| address.host().to_owned());
        let client_cert = config
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()));
        let connector = config.connector.clone().unwrap_or_else(Connector::shared);
        let client = connector.client_config(&config.ca_pem, client_cert, agentdb_proto::ALPN)?;
        let now_ms = config.clock.now().unix_ms();
        let agent = match &config.agent {
            Some(a) => a.clone(),
            // UUIDv7 + random: unique even for many agents spawned in the same millisecond.
            None => AgentId::new(format!(
                "agent-{}",
                agentdb_memory::mint_episode_id(Timestamp(now_ms))
            ))
            .map_err(ConfigError::AgentId)?,
        };
        let (outbox, unreadable) = match &config.spool_dir {
            None => (None, Vec::new()),
            Some(dir) => {
                let key = match (&config.spool_key, &config.client_cert, &config.api_key) {
                    (Some(key), _, _) => key.clone(),
                    (None, Some((_, key_pem)), _) => {
                        SpoolKey::from_private_key_pem(key_pem).map_err(ConfigError::SpoolKey)?
                    }
                    (None, None, Some(api_key)) => {
                        SpoolKey::from_api_key(api_key).map_err(ConfigError::SpoolKey)?
                    }
                    (None, None, None) => return Err(ConfigError::NoSpoolKey.into()),
                };
                let (outbox, unreadable) = Outbox::open(dir, &config.tenant, &key)?;
                (Some(outbox), unreadable)
            }
        };
        let deadline_ms = now_ms.saturating_add(config.lifetime.as_millis() as u64);
        let retry = Backoff::new(
            config.reconnect_backoff.as_millis() as u64,
            config.max_retry_backoff.as_millis() as u64,
        );
        let inner = Arc::new(Inner {
            agent,
            address,
            server_name,
            connector,
            client,
            conn: tokio::sync::Mutex::new(None),
            welcome: Mutex::new(None),
            local: Mutex::new(None),
            held: Mutex::new(Held::new(config.read_cache)),
            outbox,
            unreadable,
            dead: Mutex::new(Vec::new()),
            retry: Mutex::new(retry),
            flushing: tokio::sync::Mutex::new(()),
            deadline_ms,
            token_exp: AtomicU64::new(0),
            token_got: AtomicU64::new(0),
            destroyed: AtomicBool::new(false),
            session: SessionId::from_random(*uuid::Uuid::new_v4().as_bytes()),
            failed_at: Mutex::new(None),
            refresh_failed_at: Mutex::new(None),
            config,
        });
        match connect(&inner).await {
            Ok(()) => {}
            Err(e @ AgentError::HubUnreachable(_)) => {
                tracing::warn!(error = %e, "hub unreachable at spawn; starting with the local cache");
            }
            Err(e) => return Err(e),
        }
        // What earlier agents spooled never keeps this one from starting: episodes the hub
        // refuses for good go to the dead letters, the rest wait for a later sync.
        if let Err(e) = flush_spool(&inner, true).await {
            tracing::debug!(error = %e, "spooled episodes not sent yet");
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

    /// Episodes in the spool, not yet acknowledged by the hub (always 0 without a spool).
    pub fn pending(&self) -> usize {
        self.inner.outbox.as_ref().map_or(0, Outbox::len)
    }

    /// Spooled episodes the hub refused for good since the agent spawned (forbidden, invalid,
    /// too large): they left the queue for the tenant's dead-letter directory, so they no
    /// longer hold anything back.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.dead.lock().clone()
    }

    /// Files in the tenant's spool this agent could not open at spawn (sealed with another key,
    /// or damaged); they were left in place.
    pub fn unreadable_spool_files(&self) -> &[UnreadableSpoolFile] {
        &self.inner.unreadable
    }

    /// Runs a task: pre-sync (send spooled episodes), the task, post-sync (send what it
    /// spooled). Fails with [`AgentError::AgentExpired`] when the agent is no longer
    /// alive.
    pub async fn execute<F, Fut, T>(&self, task: F) -> Result<T, AgentError>
    where
        F: FnOnce(MemoryHandle) -> Fut,
        Fut: Future<Output = Result<T, AgentError>>,
    {
        ensure_alive(&self.inner)?;
        if let Err(e) = sync(&self.inner, false).await {
            tracing::debug!(error = %e, "pre-sync incomplete");
        }
        let out = task(MemoryHandle {
            inner: Arc::clone(&self.inner),
        })
        .await?;
        if let Err(e) = flush_spool(&self.inner, false).await {
            tracing::debug!(error = %e, "post-sync incomplete; episodes stay in the spool");
        }
        Ok(out)
    }

    /// The `k` memories nearest to `text`: the hub's answer merged with this agent's unsynced
    /// episodes, or the local cache alone when the hub is unreachable ([`Recall::source`] says
    /// which). The local cache holds what this agent stored and what it read from the hub
    /// (up to [`AgentConfig::read_cache`] episodes).
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

    /// Stores an episode: sends it to the hub and says how durable it is on return.
    ///
    /// - [`Durability::Acknowledged`]: the hub has it, fsynced.
    /// - [`Durability::Spooled`] (only with a spool directory): the hub was unreachable or
    ///   refused for a passing reason (`overloaded`, `unavailable`, …); the episode is sealed and
    ///   fsynced in the spool and is sent later, by this agent or the next one of the tenant.
    /// - `Err`: nothing was kept — [`AgentError::HubUnreachable`] without a spool, the hub's
    ///   refusal ([`AgentError::Rejected`]: `forbidden`, `invalid_request`, `too_large`, or a
    ///   passing one without a spool), or an invalid episode.
    ///
    /// Sending again is harmless: the hub stores an episode id once.
    pub async fn store(&self, episode: NewEpisode) -> Result<Stored, AgentError> {
        store(&self.inner, episode).await
    }

    /// Stores episodes in one request, whole or not at all (see [`Self::store`]): all of them
    /// are acknowledged, or all spooled, or none is kept.
    pub async fn store_all(&self, episodes: Vec<NewEpisode>) -> Result<Vec<Stored>, AgentError> {
        store_many(&self.inner, episodes).await
    }

    /// [`Self::store`], returning only the id: `Ok` means acknowledged by the hub or, for an
    /// agent with a spool, durably spooled.
    pub async fn store_episode(&self, episode: NewEpisode) -> Result<EpisodeId, AgentError> {
        Ok(store(&self.inner, episode).await?.id)
    }

    /// [`Self::store_all`], returning only the ids.
    pub async fn store_batch(
        &self,
        episodes: Vec<NewEpisode>,
    ) -> Result<Vec<EpisodeId>, AgentError> {
        let stored = store_many(&self.inner, episodes).await?;
        Ok(stored.into_iter().map(|s| s.id).collect())
    }

    /// The tenant's statistics from the hub.
    pub async fn stats(&self) -> Result<TenantStats, AgentError> {
        ensure_alive(&self.inner)?;
        match request(&self.inner, &Request::Stats).await? {
            Response::Stats(s) => Ok(s),
            other => Err(AgentError::unexpected("stats", &other)),
        }
    }

    /// One episode of the tenant, read from the hub: `None` when the tenant has no live episode
    /// with this id (another tenant's id is the same as an unknown one).
    pub async fn get_episode(&self, id: EpisodeId) -> Result<Option<Episode>, AgentError> {
        ensure_alive(&self.inner)?;
        match request(&self.inner, &Request::Get(GetRequest { id })).await? {
            Response::Episode(None) => Ok(None),
            Response::Episode(Some(wire)) => {
                let episode = Episode::try_from(wire)
                    .map_err(|e| AgentError::Protocol(ProtocolError::Decode(e)))?;
                self.inner.held.lock().read([&episode]);
                Ok(Some(episode))
            }
            other => Err(AgentError::unexpected("get", &other)),
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
        let found = done("update", request(&self.inner, &req).await?)?;
        let tenant = &self.inner.config.tenant;
        // A held copy goes into the local cache, where it takes the update as a cached one does.
        let held = self.inner.held.lock().forget(&id);
        if let Some(e) = held {
            if let Ok(local) = local(&self.inner) {
                let _ = local.store(tenant, e);
            }
        }
        if let Some(local) = cached(&self.inner) {
            let _ = local.update(tenant, &id, &update);
        }
        Ok(found)
    }

    /// Deletes an episode in the hub (and, through federation, on every hub); a delete wins
    /// over any concurrent update. Returns whether the episode was live in the hub.
    pub async fn delete_episode(&self, id: EpisodeId) -> Result<bool, AgentError> {
        ensure_alive(&self.inner)?;
        let req = Request::Delete(DeleteRequest { id });
        let found = done("delete", request(&self.inner, &req).await?)?;
        self.inner.held.lock().forget(&id);
        if let Some(local) = cached(&self.inner) {
            let _ = local.delete(&self.inner.config.tenant, &id);
        }
        Ok(found)
    }

    /// Sends spooled episodes now, whatever the retry wait after a failure.
    pub async fn sync(&self) -> Result<(), AgentError> {
        ensure_alive(&self.inner)?;
        sync(&self.inner, true).await
    }

    /// Ends the agent: a last attempt to send spooled episodes, goodbye (the hub revokes its
    /// token), close. Its memory stays in the hub; anything spooled and not acknowledged stays
    /// in the spool.
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

/// Trades the API key for a token on `requester`'s connection (before or after its Hello).
/// The hub's refusal (an unknown, revoked or expired key, a certificate of another tenant) is
/// [`AgentError::Rejected`], like the refusal of a token; a grant for another tenant than the
/// agent's is refused here, before it is ever presented.
async fn exchange_api_key(
    inner: &Inner,
    requester: &Requester,
    key: &ApiKeySecret,
) -> Result<String, AgentError> {
    let now = now_secs(inner);
    let req = Request::Exchange(ExchangeRequest {
        api_key: Some(key.expose().to_owned()),
        agent: Some(inner.agent.clone()),
        scopes: Vec::new(),
        ttl_secs: None,
    });
    match requester.exchange(&req).await? {
        Response::Token(grant) if grant.tenant != inner.config.tenant => {
            Err(AgentError::Rejected {
                code: ErrorCode::TenantMismatch,
                message: format!(
                    "the API key is for tenant {}, not {}",
                    grant.tenant, inner.config.tenant
                ),
            })
        }
        Response::Token(grant) => {
            inner.token_got.store(now, Ordering::Release);
            Ok(grant.token)
        }
        Response::Error(e) => Err(AgentError::Rejected {
            code: e.code,
            message: e.message,
        }),
        other => Err(AgentError::unexpected("exchange", &other)),
    }
}

/// Opens a connection and authenticates it: with the provider's token, or with one the API
/// key is traded for on the new connection first.
async fn open_connection(inner: &Inner) -> Result<(HubConnection, Welcome), AgentError> {
    // A provider's token is obtained before touching the network, as it always was.
    let token = match &inner.config.api_key {
        None => Some(fresh_token(inner)?),
        Some(_) => None,
    };
    let conn = HubConnection::open(
        &inner.connector,
        &inner.address,
        &inner.server_name,
        inner.client.clone(),
        inner.config.connect_timeout,
        inner.config.request_timeout,
    )
    .await?;
    let token = match (token, &inner.config.api_key) {
        (Some(token), _) => token,
        (None, Some(key)) => exchange_api_key(inner, &conn.requester(), key).await?,
        (None, None) => fresh_token(inner)?,
    };
    let welcome = conn.hello(token).await?;
    Ok((conn, welcome))
}

async fn connect(inner: &Inner) -> Result<(), AgentError> {
    let mut guard = inner.conn.lock().await;
    if guard.as_ref().is_some_and(HubConnection::is_open) {
        return Ok(());
    }
    if let Some(at) = *inner.failed_at.lock() {
        let due = at.saturating_add(inner.config.reconnect_backoff.as_millis() as u64);
        let now = now_ms(inner);
        if now < due {
            return Err(Unreachable::Backoff {
                retry_in: Duration::from_millis(due - now),
            }
            .into());
        }
    }
    let (conn, welcome) = match open_connection(inner).await {
        Ok(c) => {
            *inner.failed_at.lock() = None;
            c
        }
        Err(e) => {
            if matches!(e, AgentError::HubUnreachable(_)) {
                *inner.failed_at.lock() = Some(now_ms(inner));
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

/// One request, connecting first if needed; a hub error response is
/// [`AgentError::Rejected`]. A lost connection is dropped so the next call reconnects.
async fn request(inner: &Inner, req: &Request) -> Result<Response, AgentError> {
    match exchange(inner, req).await? {
        Response::Error(e) => Err(AgentError::Rejected {
            code: e.code,
            message: e.message,
        }),
        r => Ok(r),
    }
}

/// Like [`request`], but the hub's error response comes back as a response: an `Err` is never
/// the hub's answer to this request.
async fn exchange(inner: &Inner, req: &Request) -> Result<Response, AgentError> {
    connect(inner).await?;
    // Take a handle and let go of the lock: requests of one agent run concurrently.
    let requester = inner
        .conn
        .lock()
        .await
        .as_ref()
        .map(HubConnection::requester);
    let Some(requester) = requester else {
        return Err(Unreachable::Closed.into());
    };
    let result = requester.exchange(req).await;
    if let Err(AgentError::HubUnreachable(_)) = &result {
        inner.conn.lock().await.take();
    }
    result
}

/// Why a store request did not store.
enum StoreFailure {
    /// The hub refused the episodes for good (see [`is_permanent`]).
    Refused { code: ErrorCode, message: String },
    /// Anything else: unreachable, a passing refusal, a protocol fault. Worth another try.
    Failed(AgentError),
}

/// Sends `episodes` (which carry ids) in one store request; the ids on success.
async fn send_store(
    inner: &Inner,
    episodes: &[WireNewEpisode],
) -> Result<Vec<EpisodeId>, StoreFailure> {
    let sent: Vec<EpisodeId> = episodes.iter().filter_map(|e| e.id).collect();
    let req = Request::Store(StoreRequest {
        episodes: episodes.to_vec(),
    });
    match exchange(inner, &req).await {
        Ok(Response::Stored(s)) => {
            let answered: HashSet<EpisodeId> = s.results.iter().map(|r| r.id).collect();
            if sent.iter().all(|id| answered.contains(id)) {
                Ok(sent)
            } else {
                Err(StoreFailure::Failed(
                    ProtocolError::IncompleteStore {
                        sent: sent.len(),
                        answered: answered.len(),
                    }
                    .into(),
                ))
            }
        }
        Ok(Response::Error(e)) if is_permanent(e.code) => Err(StoreFailure::Refused {
            code: e.code,
            message: e.message,
        }),
        Ok(Response::Error(e)) => Err(StoreFailure::Failed(AgentError::Rejected {
            code: e.code,
            message: e.message,
        })),
        Ok(other) => Err(StoreFailure::Failed(AgentError::unexpected(
            "store", &other,
        ))),
        Err(e) => Err(StoreFailure::Failed(e)),
    }
}

/// What became of spooled episodes sent to the hub.
#[derive(Default)]
struct Delivery {
    acked: Vec<EpisodeId>,
    refused: Vec<(EpisodeId, ErrorCode, String)>,
    /// The failure that stopped the delivery; the episodes neither acked nor refused wait.
    interrupted: Option<AgentError>,
}

/// Sends spooled episodes in chunks. A chunk the hub refuses for good is sent again one
/// episode at a time, so that only the episodes it refuses alone are refused: one bad episode
/// (or one too many for a frame) never takes good ones with it.
async fn deliver(inner: &Inner, episodes: &[WireNewEpisode]) -> Delivery {
    let mut d = Delivery::default();
    for chunk in episodes.chunks(FLUSH_CHUNK) {
        match send_store(inner, chunk).await {
            Ok(ids) => d.acked.extend(ids),
            Err(StoreFailure::Failed(e)) => {
                d.interrupted = Some(e);
                return d;
            }
            Err(StoreFailure::Refused { code, message }) if chunk.len() == 1 => {
                d.refused
                    .extend(chunk[0].id.map(|id| (id, code, message.clone())));
            }
            Err(StoreFailure::Refused { .. }) => {
                for one in chunk {
                    match send_store(inner, std::slice::from_ref(one)).await {
                        Ok(ids) => d.acked.extend(ids),
                        Err(StoreFailure::Refused { code, message }) => {
                            d.refused.extend(one.id.map(|id| (id, code, message)));
                        }
                        Err(StoreFailure::Failed(e)) => {
                            d.interrupted = Some(e);
                            return d;
                        }
                    }
                }
            }
        }
    }
    d
}

/// Records a transient failure for the spool's retry wait (once per wait).
fn retry_later(inner: &Inner) {
    let now = now_ms(inner);
    let mut retry = inner.retry.lock();
    if retry.due(now) {
        let wait = retry.failed(now);
        tracing::debug!(
            wait_ms = wait,
            "spooled episodes wait before the next attempt"
        );
    }
}

/// Sends what the spool holds. Unless `force`, does nothing while the retry wait after a
/// transient failure runs. Episodes the hub refuses for good move to the dead letters;
/// `Err` is the transient failure that stopped the flush (the rest waits).
async fn flush_spool(inner: &Inner, force: bool) -> Result<(), AgentError> {
    let Some(outbox) = &inner.outbox else {
        return Ok(());
    };
    let _one_at_a_time = inner.flushing.lock().await;
    if !force && !inner.retry.lock().due(now_ms(inner)) {
        return Ok(());
    }
    let pending = outbox.pending();
    if pending.is_empty() {
        return Ok(());
    }
    let delivery = deliver(inner, &pending).await;
    outbox.remove(&delivery.acked);
    let mut spool_error = None;
    for (id, code, message) in delivery.refused {
        match outbox.dead_letter(id, code, &message, now_ms(inner)) {
            Ok(dead) => {
                tracing::warn!(
                    episode = %id, %code, %message, path = %dead.path.display(),
                    "the hub refused a spooled episode for good; moved to the dead letters"
                );
                if let Some(local) = cached(inner) {
                    let _ = local.delete(&inner.config.tenant, &id);
                }
                inner.dead.lock().push(dead);
            }
            Err(e) => {
                tracing::warn!(episode = %id, error = %e, "cannot move a refused episode to the dead letters");
                spool_error = Some(AgentError::from(e));
            }
        }
    }
    if let Some(e) = delivery.interrupted {
        retry_later(inner);
        return Err(e);
    }
    inner.retry.lock().succeeded();
    spool_error.map_or(Ok(()), Err)
}

/// The answer to an update or delete.
fn done(request: &'static str, response: Response) -> Result<bool, AgentError> {
    match response {
        Response::Done { found } => Ok(found),
        other => Err(AgentError::unexpected(request, &other)),
    }
}

async fn sync(inner: &Inner, force: bool) -> Result<(), AgentError> {
    flush_spool(inner, force).await
}

/// Episodes waiting to go into the local cache, as they are: they go in only when the cache
/// must answer (see [`fill_local`]), so reading and storing cost nothing more while the hub
/// answers. Holds every episode the hub acknowledged from this agent, and the newest
/// `capacity` episodes it read from the hub.
struct Held {
    capacity: usize,
    episodes: HashMap<EpisodeId, NewEpisode>,
    /// The read episodes, oldest first; acknowledged ones are not in it and stay.
    reads: VecDeque<EpisodeId>,
}

impl Held {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            episodes: HashMap::new(),
            reads: VecDeque::new(),
        }
    }

    /// Keeps copies of episodes read from the hub (a newer copy replaces an older one),
    /// dropping the oldest read past the capacity.
    fn read<'a>(&mut self, episodes: impl IntoIterator<Item = &'a Episode>) {
        if self.capacity == 0 {
            return;
        }
        for e in episodes {
            let mut new = NewEpisode::new(&e.task, &e.input, &e.output, e.reward).with_id(e.id);
            new.critique = e.critique.clone();
            new.agent = e.agent.clone();
            new.tags = e.tags.clone();
            new.metadata = e.metadata.clone();
            if self.episodes.insert(e.id, new).is_none() {
                self.reads.push_back(e.id);
            }
        }
        while self.reads.len() > self.capacity {
            let Some(old) = self.reads.pop_front() else {
                break;
            };
            self.episodes.remove(&old);
        }
    }

    /// Keeps episodes the hub acknowledged (they carry their ids); an acknowledged copy is
    /// never dropped, even one that replaces a read copy.
    fn acknowledged(&mut self, episodes: Vec<NewEpisode>) {
        for e in episodes {
            if let Some(id) = e.id {
                if self.episodes.insert(id, e).is_some() {
                    self.reads.retain(|k| *k != id);
                }
            }
        }
    }

    /// Drops the copy of `id`, returning it.
    fn forget(&mut self, id: &EpisodeId) -> Option<NewEpisode> {
        let e = self.episodes.remove(id)?;
        self.reads.retain(|k| k != id);
        Some(e)
    }

    fn take(&mut self) -> Vec<NewEpisode> {
        self.reads.clear();
        self.episodes.drain().map(|(_, e)| e).collect()
    }
}

/// The local cache, created on first use (an in-memory engine under a key of its own).
fn local(inner: &Inner) -> Result<Arc<MemoryEngine>, LocalCacheError> {
    let mut local = inner.local.lock();
    if let Some(engine) = local.as_ref() {
        return Ok(Arc::clone(engine));
    }
    let mut builder = MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate()?);
    if let Some(e) = &inner.config.embedder {
        builder = builder.embedder(Arc::clone(e));
    }
    let engine = Arc::new(builder.open()?);
    *local = Some(Arc::clone(&engine));
    Ok(engine)
}

/// The local cache if it exists.
fn cached(inner: &Inner) -> Option<Arc<MemoryEngine>> {
    inner.local.lock().clone()
}

/// The local cache with every held episode in it (see [`Held`]).
fn fill_local(inner: &Inner) -> Result<Arc<MemoryEngine>, LocalCacheError> {
    let local = local(inner)?;
    let tenant = &inner.config.tenant;
    let held = inner.held.lock().take();
    for e in held {
        let Some(id) = e.id else { continue };
        let update = EpisodeUpdate {
            reward: Some(e.reward),
            critique: Some(e.critique.clone()),
            tags: Some(e.tags.clone()),
            // Metadata never set stays as it is (an update sets objects).
            metadata_json: e
                .metadata
                .is_object()
                .then(|| agentdb_core::metadata_to_text(&e.metadata)),
        };
        // Already cached (spooled, or stored before): take the newer copy's reward, critique,
        // tags and metadata, which may have been updated since.
        if let Ok(stored) = local.store(tenant, e) {
            if !stored.inserted {
                let _ = local.update(tenant, &id, &update);
            }
        }
    }
    Ok(local)
}

/// Gives a new episode its id and the agent's identity; returns the id.
fn prepare(inner: &Inner, episode: &mut NewEpisode, now_ms: u64) -> EpisodeId {
    episode.agent = Some(inner.agent.clone());
    episode.session = Some(inner.session);
    *episode
        .id
        .get_or_insert_with(|| agentdb_memory::mint_episode_id(Timestamp(now_ms)))
}

async fn store(inner: &Inner, mut episode: NewEpisode) -> Result<Stored, AgentError> {
    ensure_alive(inner)?;
    let id = prepare(inner, &mut episode, now_ms(inner));
    let durability = store_prepared(inner, vec![episode], &[id]).await?;
    Ok(Stored { id, durability })
}

async fn store_many(
    inner: &Inner,
    mut episodes: Vec<NewEpisode>,
) -> Result<Vec<Stored>, AgentError> {
    ensure_alive(inner)?;
    if episodes.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms(inner);
    let ids: Vec<EpisodeId> = episodes
        .iter_mut()
        .map(|e| prepare(inner, e, now))
        .collect();
    let durability = store_prepared(inner, episodes, &ids).await?;
    Ok(ids
        .into_iter()
        .map(|id| Stored { id, durability })
        .collect())
}

/// Stores episodes that carry their ids: one request to the hub; on a passing failure, the
/// spool and the local cache (where a query finds them until they are delivered). Acknowledged
/// episodes are held for the local cache (see [`Held`]).
async fn store_prepared(
    inner: &Inner,
    episodes: Vec<NewEpisode>,
    ids: &[EpisodeId],
) -> Result<Durability, AgentError> {
    // A bad batch goes nowhere.
    for e in &episodes {
        e.validate(&Limits::DEFAULT)
            .map_err(AgentError::InvalidEpisode)?;
    }
    let wire: Vec<WireNewEpisode> = episodes.iter().map(WireNewEpisode::from).collect();
    match send_store(inner, &wire).await {
        Ok(_) => {
            inner.held.lock().acknowledged(episodes);
            inner.retry.lock().succeeded();
            // The hub takes stores: a good moment for what waits in the spool.
            if let Err(e) = flush_spool(inner, false).await {
                tracing::debug!(error = %e, "spooled episodes not sent yet");
            }
            Ok(Durability::Acknowledged)
        }
        Err(StoreFailure::Refused { code, message }) => Err(AgentError::Rejected { code, message }),
        Err(StoreFailure::Failed(e)) => {
            retry_later(inner);
            let Some(outbox) = &inner.outbox else {
                return Err(e);
            };
            let local = local(inner)?;
            local
                .store_batch(&inner.config.tenant, episodes)
                .map_err(LocalCacheError::from)?;
            let pairs: Vec<(EpisodeId, WireNewEpisode)> = ids.iter().copied().zip(wire).collect();
            if let Err(spool) = outbox.add(&pairs) {
                for id in ids {
                    let _ = local.delete(&inner.config.tenant, id);
                }
                return Err(spool.into());
            }
            tracing::info!(episodes = ids.len(), error = %e, "hub did not take the episodes; spooled");
            Ok(Durability::Spooled)
        }
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
            inner.held.lock().read(merged.values().map(|m| &m.episode));
            // Spooled local episodes, scored with the hub's query vector when the models agree.
            let pending = inner.outbox.as_ref().filter(|o| o.len() > 0);
            let local = cached(inner).filter(|l| &m.model == l.embedder().model());
            if let (Some(pending), Some(local)) = (pending, local) {
                let q = Query::vector(
                    agentdb_core::Embedding {
                        model: m.model.clone(),
                        vector: m.query_vector.clone(),
                    },
                    k,
                )
                .with_filter(filter);
                if let Ok(local) = local.query(tenant, &q) {
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
        Ok(other) => Err(AgentError::unexpected("query", &other)),
        // Only an unreachable hub falls back to the local cache; a refusal or a protocol fault
        // is the caller's to see.
        Err(AgentError::HubUnreachable(reason)) => {
            tracing::debug!(%reason, "hub unreachable; answering from the local cache");
            let local = fill_local(inner)?
                .query(tenant, &Query::text(text, k).with_filter(filter))
                .map_err(LocalCacheError::from)?;
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
    let token = match &inner.config.api_key {
        None => fresh_token(inner)?,
        Some(key) => {
            // A failed exchange (a revoked key, a hub not answering) is not asked again at
            // every tick of the background task.
            let backoff = inner.config.reconnect_backoff.as_millis() as u64;
            if let Some(at) = *inner.refresh_failed_at.lock() {
                if now_ms(inner) < at.saturating_add(backoff) {
                    return Ok(());
                }
            }
            // Exchanged on the connection the new token is for; without one, the next request
            // connects afresh (and exchanges then).
            let requester = inner
                .conn
                .lock()
                .await
                .as_ref()
                .filter(|c| c.is_open())
                .map(HubConnection::requester);
            let Some(requester) = requester else {
                return Ok(());
            };
            match exchange_api_key(inner, &requester, key).await {
                Ok(token) => {
                    *inner.refresh_failed_at.lock() = None;
                    token
                }
                Err(e) => {
                    *inner.refresh_failed_at.lock() = Some(now_ms(inner));
                    return Err(e);
                }
            }
        }
    };
    match request(inner, &Request::RefreshToken(RefreshRequest { token })).await? {
        Response::Refreshed { expires_at } => {
            inner.token_exp.store(expires_at, Ordering::Release);
            Ok(())
        }
        other => Err(AgentError::unexpected("refresh", &other)),
    }
}

async fn destroy(inner: &Inner) -> Result<(), AgentError> {
    if inner.destroyed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    if let Err(e) = flush_spool(inner, true).await {
        let pending = inner.outbox.as_ref().map_or(0, Outbox::len);
        tracing::warn!(error = %e, pending, "final sync incomplete; episodes stay in the spool");
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
            if let Err(e) = sync(&inner, false).await {
                tracing::debug!(error = %e, "background sync incomplete");
            }
        }
    }
}
