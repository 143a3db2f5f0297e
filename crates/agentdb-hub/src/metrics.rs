//! Prometheus metrics of the hub.

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
