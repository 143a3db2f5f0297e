//! State shared by every connection of a hub.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use agentdb_core::TenantId;
use agentdb_memory::{MemoryEngine, SystemClock};
use agentdb_security::revocation::RevocationList;
use agentdb_security::token::TokenVerifier;
use parking_lot::Mutex;

use crate::config::HubConfig;
use crate::federation::Federation;
use crate::metrics::Metrics;

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs() -> u64 {
    SystemClock::unix_secs()
}

/// Milliseconds since the Unix epoch (the sans-IO session's clock).
pub(crate) fn unix_ms() -> u64 {
    SystemClock::unix_ms()
}

/// Shared hub state.
#[derive(Debug)]
pub(crate) struct HubState {
    pub config: HubConfig,
    pub engine: Arc<MemoryEngine>,
    pub verifier: TokenVerifier,
    pub revoked: RevocationList,
    pub metrics: Metrics,
    pub started: Instant,
    pub federation: Arc<Federation>,
    agents_total: AtomicUsize,
    agents: Mutex<HashMap<TenantId, usize>>,
    inflight: Mutex<HashMap<TenantId, usize>>,
}

impl HubState {
    pub fn new(config: HubConfig, engine: Arc<MemoryEngine>, verifier: TokenVerifier) -> Self {
        Self {
            federation: Arc::new(Federation::new(config.federation.clone())),
            config,
            engine,
            verifier,
            revoked: RevocationList::new(),
            metrics: Metrics::new(),
            started: Instant::now(),
            agents_total: AtomicUsize::new(0),
            agents: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        }
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
