//! What `GET /v1/federation` and `agentdb federation status` report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A hub's federation state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederationStatus {
    /// This hub.
    pub hub: String,
    /// Its region.
    pub region: String,
    /// Its topology.
    pub topology: String,
    /// Its links: every hub it dials (connected or not) and every hub connected to it.
    pub links: Vec<LinkStatus>,
    /// Per tenant: the version vector (origin hub → highest op held) and residency.
    pub tenants: Vec<TenantVector>,
}

/// One link.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkStatus {
    /// `outbound` (this hub dials) or `inbound`.
    pub direction: String,
    /// The URL dialled (outbound links).
    pub address: Option<String>,
    /// The peer hub, once known.
    pub peer: Option<String>,
    /// The peer's region, once known.
    pub region: Option<String>,
    /// `connecting`, `connected`, `down`, or `standby`.
    pub state: LinkState,
    /// When the peer last reported what it holds (ms since the Unix epoch).
    pub last_sync_ms: Option<u64>,
    /// Ops sent over this link (this connection).
    pub ops_sent: u64,
    /// Ops received and applied from this link (this connection).
    pub ops_received: u64,
    /// Ops this hub holds that the peer has not acknowledged (tenants shared with it).
    pub lag_ops: u64,
    /// Pages awaiting acknowledgement.
    pub in_flight: usize,
    /// The last error or refusal, as one line.
    pub last_error: Option<String>,
}

/// The state of a link, shown as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Dialling (outbound), or set up and not yet running.
    #[default]
    Connecting,
    /// Running.
    Connected,
    /// Ended; an outbound link is dialled again after a wait.
    Down,
    /// An outbound link to a peer that dials this hub too, whose own link (the one the smaller
    /// hub id dialled) carries the pair.
    Standby,
}

impl LinkState {
    /// The name the status report shows.
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Down => "down",
            LinkState::Standby => "standby",
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tenant's replication state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantVector {
    /// The tenant.
    pub tenant: String,
    /// Origin hub → highest op held.
    pub version_vector: BTreeMap<String, u64>,
    /// Regions the tenant is restricted to (absent: everywhere).
    pub residency: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_states_show_as_their_lowercase_names() {
        for (state, name) in [
            (LinkState::Connecting, "connecting"),
            (LinkState::Connected, "connected"),
            (LinkState::Down, "down"),
            (LinkState::Standby, "standby"),
        ] {
            let status = LinkStatus {
                state,
                ..LinkStatus::default()
            };
            let json = serde_json::to_value(&status).unwrap_or_default();
            assert_eq!(json["state"], name);
            assert_eq!(state.to_string(), name);
            let back: LinkStatus = serde_json::from_value(json).unwrap_or_default();
            assert_eq!(back.state, state);
        }
    }
}
