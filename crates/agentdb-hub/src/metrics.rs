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
        Self {
            registry,
            connections_total,
            connected_agents,
            requests,
            latency,
            auth_failures,
            episodes_stored,
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
