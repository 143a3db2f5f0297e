//! Prometheus metrics of the hub: [`Metrics`] (served at `/metrics`, naming no tenant) and
//! [`TenantMetrics`] (per tenant, served to operators at `/v1/metrics/tenants`).

use std::collections::HashMap;

use agentdb_core::TenantId;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Request kind: hello, store, query, pull, stats, refresh, goodbye, unknown.
    pub kind: &'static str,
    /// `ok` or an error code.
    pub outcome: &'static str,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Request kind.
    pub kind: &'static str,
}

/// Labels of the auth-failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Error code.
    pub reason: &'static str,
}

/// The hub's metrics.
/// Labels of per-link federation metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer hub.
    pub peer: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connections accepted (handshake completed).
    pub connections_total: Counter,
    /// Connected, authenticated agents.
    pub connected_agents: Gauge,
    /// Requests by kind and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by kind, seconds.
    pub latency: Family<KindLabels, Histogram>,
    /// Failed authentications by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Episodes stored (new, not retries).
    pub episodes_stored: Counter,
    /// Ops sent to each peer hub.
    pub fed_ops_sent: Family<PeerLabels, Counter>,
    /// Ops received and applied from each peer hub.
    pub fed_ops_received: Family<PeerLabels, Counter>,
    /// Ops held here that each peer has not acknowledged.
    pub fed_lag: Family<PeerLabels, Gauge>,
    /// Connected hub-to-hub links.
    pub fed_links: Gauge,
    /// Attempts to connect to the hubs this hub dials.
    pub fed_dials: Counter,
    /// From an op's stamp at its origin to its application here.
    pub fed_propagation: Histogram,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agentdb");
        let connections_total = Counter::default();
        let connected_agents = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let episodes_stored = Counter::default();
        registry.register(
            "connections",
            "QUIC connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "connected_agents",
            "Authenticated agents connected now",
            connected_agents.clone(),
        );
        registry.register("requests", "Requests by kind and outcome", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Request latency by kind",
            latency.clone(),
        );
        registry.register(
            "auth_failures",
            "Failed authentications by reason",
            auth_failures.clone(),
        );
        registry.register(
            "episodes_stored",
            "New episodes stored",
            episodes_stored.clone(),
        );
        let fed_ops_sent = Family::<PeerLabels, Counter>::default();
        let fed_ops_received = Family::<PeerLabels, Counter>::default();
        let fed_lag = Family::<PeerLabels, Gauge>::default();
        let fed_links = Gauge::default();
        let fed_dials = Counter::default();
        let fed_propagation = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "federation_ops_sent",
            "Replicated ops sent, by peer hub",
            fed_ops_sent.clone(),
        );
        registry.register(
            "federation_ops_received",
            "Replicated ops received and applied, by peer hub",
            fed_ops_received.clone(),
        );
        registry.register(
            "federation_lag_ops",
            "Ops held here that the peer hub has not acknowledged (replication lag)",
            fed_lag.clone(),
        );
        registry.register(
            "federation_links",
            "Connected hub-to-hub links",
            fed_links.clone(),
        );
        registry.register(
            "federation_dials",
            "Attempts to connect to the hubs this hub dials",
            fed_dials.clone(),
        );
        registry.register(
            "federation_propagation_seconds",
            "Time from an op's stamp at its origin hub to its application here",
            fed_propagation.clone(),
        );
        Self {
            registry,
            connections_total,
            connected_agents,
            requests,
            latency,
            auth_failures,
            episodes_stored,
            fed_ops_sent,
            fed_ops_received,
            fed_lag,
            fed_links,
            fed_dials,
            fed_propagation,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The label of the tenants beyond the first [`TenantMetrics`] names.
pub const OTHER_TENANTS: &str = "_other";

/// Labels of a per-tenant metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant, or `_other`.
    pub tenant: String,
}

/// Labels of the quota-refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The tenant, or `_other`.
    pub tenant: String,
    /// `episodes`, `bytes` or `writes_per_sec`.
    pub quota: &'static str,
}

/// Per-tenant metrics with a bounded number of label values: the first `max_tenants` tenants
/// seen (in the order they are first counted; stable until the hub restarts, so counters
/// only grow) get their own `tenant` label, every other tenant is summed under `_other`. A
/// tenant named `_other` is always counted there.
#[derive(Debug)]
pub struct TenantMetrics {
    registry: Registry,
    max_tenants: usize,
    named: Mutex<HashMap<TenantId, String>>,
    /// Live episodes by tenant.
    pub episodes: Family<TenantLabels, Gauge>,
    /// Stored bytes (episode content) by tenant.
    pub stored_bytes: Family<TenantLabels, Gauge>,
    /// Writes refused by a quota, by tenant and quota.
    pub quota_refusals: Family<RefusalLabels, Counter>,
}

impl TenantMetrics {
    /// Registers the per-tenant metrics, labelling at most `max_tenants` tenants.
    pub fn new(max_tenants: usize) -> Self {
        let mut registry = Registry::with_prefix("agentdb_tenant");
        let episodes = Family::<TenantLabels, Gauge>::default();
        let stored_bytes = Family::<TenantLabels, Gauge>::default();
        let quota_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register("episodes", "Live episodes, by tenant", episodes.clone());
        registry.register(
            "stored_bytes",
            "Bytes of episode content stored, by tenant",
            stored_bytes.clone(),
        );
        registry.register(
            "quota_refusals",
            "Writes refused by a quota, by tenant and quota",
            quota_refusals.clone(),
        );
        Self {
            registry,
            max_tenants,
            named: Mutex::new(HashMap::new()),
            episodes,
            stored_bytes,
            quota_refusals,
        }
    }

    /// The label value of `tenant`: its name while fewer than `max_tenants` are named, else
    /// `_other`.
    pub fn label(&self, tenant: &TenantId) -> String {
        if tenant.as_str() == OTHER_TENANTS {
            return OTHER_TENANTS.to_owned();
        }
        let mut named = self.named.lock();
        if let Some(label) = named.get(tenant) {
            return label.clone();
        }
        if named.len() >= self.max_tenants {
            return OTHER_TENANTS.to_owned();
        }
        let label = tenant.as_str().to_owned();
        named.insert(tenant.clone(), label.clone());
        label
    }

    /// Counts a write of `tenant` refused by `quota`.
    pub fn refused(&self, tenant: &TenantId, quota: &'static str) {
        self.quota_refusals
            .get_or_create(&RefusalLabels {
                tenant: self.label(tenant),
                quota,
            })
            .inc();
    }

    /// Sets the gauges from every tenant's `(episodes, bytes)`: each named tenant's own (0 for
    /// one that has gone), the rest summed under `_other`.
    pub fn set_usage(&self, usage: &[(TenantId, u64, u64)]) {
        let mut sums: HashMap<String, (u64, u64)> = HashMap::new();
        for (tenant, episodes, bytes) in usage {
            let sum = sums.entry(self.label(tenant)).or_default();
            sum.0 += episodes;
            sum.1 += bytes;
        }
        let mut labels: Vec<String> = self.named.lock().values().cloned().collect();
        labels.push(OTHER_TENANTS.to_owned());
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for tenant in labels {
            let (episodes, bytes) = sums.get(&tenant).copied().unwrap_or_default();
            let labels = TenantLabels { tenant };
            self.episodes.get_or_create(&labels).set(gauge(episodes));
            self.stored_bytes.get_or_create(&labels).set(gauge(bytes));
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).unwrap()
    }

    #[test]
    fn tenant_labels_are_bounded_and_stable() {
        let m = TenantMetrics::new(2);
        assert_eq!(m.label(&tenant("a")), "a");
        assert_eq!(m.label(&tenant("b")), "b");
        assert_eq!(m.label(&tenant("c")), OTHER_TENANTS);
        assert_eq!(m.label(&tenant("a")), "a");
        assert_eq!(m.label(&tenant(OTHER_TENANTS)), OTHER_TENANTS);
        m.set_usage(&[
            (tenant("a"), 1, 10),
            (tenant("c"), 2, 20),
            (tenant("d"), 3, 30),
        ]);
        m.refused(&tenant("e"), "episodes");
        let text = m.encode();
        assert!(
            text.contains("agentdb_tenant_episodes{tenant=\"a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("agentdb_tenant_episodes{tenant=\"b\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("agentdb_tenant_episodes{tenant=\"_other\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("agentdb_tenant_stored_bytes{tenant=\"_other\"} 50"),
            "{text}"
        );
        assert!(
            text.contains(
                "agentdb_tenant_quota_refusals_total{tenant=\"_other\",quota=\"episodes\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("tenant=\"c\""), "{text}");
    }
}
