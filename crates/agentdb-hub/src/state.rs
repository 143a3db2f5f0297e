//! State shared by every connection of a hub.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use agentdb_core::TenantId;
use agentdb_memory::{MemoryEngine, SystemClock};
use agentdb_security::revocation::RevocationList;
use agentdb_security::signing::HubSigner;
use agentdb_security::token::TokenKeys;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::config::HubConfig;
use crate::credentials::Credentials;
use crate::federation::Federation;
use crate::metrics::{Metrics, TenantMetrics};
use crate::quota::QuotaBook;

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs() -> u64 {
    SystemClock::unix_secs()
}

/// Milliseconds since the Unix epoch (the sans-IO session's clock).
pub(crate) fn unix_ms() -> u64 {
    SystemClock::unix_ms()
}

/// Changes queued for slow event streams before they are told to look again.
const CHANGE_QUEUE: usize = 1024;

/// Shared hub state.
#[derive(Debug)]
pub(crate) struct HubState {
    pub config: HubConfig,
    pub engine: Arc<MemoryEngine>,
    /// The operator's token key, and this hub's own (for the tokens it issues).
    pub tokens: TokenKeys,
    pub credentials: Credentials,
    pub revoked: RevocationList,
    /// How far the log of revoked tokens has been read.
    pub revoked_read: Mutex<crate::revoked_tokens::Cursor>,
    /// Operators' revocations of agents and certificates.
    pub revocations: crate::revocations::Revocations,
    /// Key re-seal passes and master-key rewraps under way.
    pub key_passes: crate::key_ops::KeyPasses,
    /// The tenant of every change to the engine's episodes, for event streams.
    pub changes: broadcast::Sender<TenantId>,
    pub metrics: Metrics,
    /// Per-tenant metrics, for operators only.
    pub tenant_metrics: TenantMetrics,
    /// Quotas and what each tenant holds.
    pub quotas: QuotaBook,
    pub started: Instant,
    pub federation: Arc<Federation>,
    /// The key of the hub's certificate: signs erasure receipts and seals the audit log.
    pub signer: Arc<HubSigner>,
    /// The audit log (a no-op when the hub keeps none).
    pub audit: crate::audit::Audit,
    agents_total: AtomicUsize,
    agents: Mutex<HashMap<TenantId, usize>>,
    inflight: Mutex<HashMap<TenantId, usize>>,
}

impl HubState {
    pub fn new(
        config: HubConfig,
        engine: Arc<MemoryEngine>,
        tokens: TokenKeys,
        credentials: Credentials,
        signer: Arc<HubSigner>,
        audit: crate::audit::Audit,
    ) -> Self {
        let (changes, _) = broadcast::channel(CHANGE_QUEUE);
        let notify = changes.clone();
        engine.add_change_listener(Arc::new(move |tenant: &TenantId| {
            let _ = notify.send(tenant.clone());
        }));
        let tenant_metrics = TenantMetrics::new(config.limits.max_metric_tenants);
        let quotas = QuotaBook::new(config.limits.quotas.clone());
        Self {
            signer,
            audit,
            federation: Arc::new(Federation::new(config.federation.clone())),
            config,
            engine,
            tokens,
            credentials,
            revoked: RevocationList::new(),
            revoked_read: Mutex::default(),
            revocations: crate::revocations::Revocations::default(),
            key_passes: crate::key_ops::KeyPasses::default(),
            changes,
            metrics: Metrics::new(),
            tenant_metrics,
            quotas,
            started: Instant::now(),
            agents_total: AtomicUsize::new(0),
            agents: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Revokes token `jti` (expiring at `exp`): at once in memory, and in the hub's data (the
    /// log of revoked tokens, which a restart and the other hubs sharing the store read). The
    /// write runs on the blocking pool; await the handle to know it is durable.
    pub fn revoke(self: &Arc<Self>, jti: &str, exp: u64) -> JoinHandle<()> {
        self.revoked.revoke(jti.to_owned(), exp);
        let state = Arc::clone(self);
        let jti = jti.to_owned();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::revoked_tokens::record(&state, &jti, exp) {
                tracing::warn!(error = %e, "cannot record a revoked token durably");
            }
        })
    }

    /// Connected, authenticated agents.
    pub fn connected_agents(&self) -> usize {
        self.agents_total.load(Ordering::Acquire)
    }

    /// Registers an authenticated agent of `tenant`, unless a limit is reached.
    pub fn admit(self: &Arc<Self>, tenant: &TenantId) -> Option<AgentSlot> {
        let limits = &self.config.limits;
        let mut agents = self.agents.lock();
        let of_tenant = agents.entry(tenant.clone()).or_default();
        if *of_tenant >= limits.max_agents_per_tenant
            || self.agents_total.load(Ordering::Acquire) >= limits.max_agents
        {
            return None;
        }
        *of_tenant += 1;
        self.agents_total.fetch_add(1, Ordering::AcqRel);
        self.metrics.connected_agents.inc();
        Some(AgentSlot {
            state: Arc::clone(self),
            tenant: tenant.clone(),
        })
    }

    /// Claims one of the tenant's in-flight request slots, unless all are taken.
    pub fn begin_request(self: &Arc<Self>, tenant: &TenantId) -> Option<RequestSlot> {
        let mut inflight = self.inflight.lock();
        let n = inflight.entry(tenant.clone()).or_default();
        if *n >= self.config.limits.max_inflight_per_tenant {
            return None;
        }
        *n += 1;
        Some(RequestSlot {
            state: Arc::clone(self),
            tenant: tenant.clone(),
        })
    }
}

/// An admitted agent; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct AgentSlot {
    state: Arc<HubState>,
    tenant: TenantId,
}

impl Drop for AgentSlot {
    fn drop(&mut self) {
        let mut agents = self.state.agents.lock();
        if let Some(n) = agents.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                agents.remove(&self.tenant);
            }
        }
        self.state.agents_total.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.connected_agents.dec();
    }
}

/// A request being served; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct RequestSlot {
    state: Arc<HubState>,
    tenant: TenantId,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let mut inflight = self.state.inflight.lock();
        if let Some(n) = inflight.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inflight.remove(&self.tenant);
            }
        }
    }
}
