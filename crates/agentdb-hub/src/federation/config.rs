//! Federation settings of a hub.

use std::time::Duration;

use agentdb_core::{Region, Residency};
use agentdb_proto::fed::LinkConfig;
use serde::{Deserialize, Serialize};

/// How a hub links to other hubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Each hub names one `upstream` (edge → regional → global); the upstream accepts.
    #[default]
    Hierarchical,
    /// Each hub links to every hub in `peers`.
    Mesh,
    /// Spokes name the center as `upstream`; the center names none.
    HubAndSpoke,
}

impl Topology {
    /// The configuration name (`hierarchical`, `mesh`, `hub-and-spoke`).
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Hierarchical => "hierarchical",
            Topology::Mesh => "mesh",
            Topology::HubAndSpoke => "hub-and-spoke",
        }
    }
}

/// A hub's federation settings. The default is a hub on its own (no links) in region
/// `default`, replicating every tenant everywhere once linked.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// This hub's region (residency rules name regions).
    pub region: Region,
    /// How links are formed.
    pub topology: Topology,
    /// The hub this one dials (`quic://host:port`): hierarchical and hub-and-spoke.
    pub upstream: Option<String>,
    /// The hubs this one dials (`quic://host:port`): mesh.
    pub peers: Vec<String>,
    /// How often version vectors are exchanged (anti-entropy); new ops are pushed at once.
    pub sync_interval: Duration,
    /// Which tenants may be stored in which regions.
    pub residency: Residency,
    /// Page size and window of a link.
    pub link: LinkConfig,
    /// How long a tombstone is kept at least, even once every link has acknowledged it.
    pub tombstone_retention: Duration,
    /// Longest wait between attempts to reach a hub this one dials.
    pub max_backoff: Duration,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            region: Region::new("default").unwrap_or_else(|_| unreachable!("a valid region")),
            topology: Topology::default(),
            upstream: None,
            peers: Vec::new(),
            sync_interval: Duration::from_secs(5),
            residency: Residency::everywhere(),
            link: LinkConfig::default(),
            tombstone_retention: Duration::from_secs(24 * 3600),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A federation setting that does not fit the topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("federation config: {0}")]
pub struct FederationConfigError(pub String);

impl FederationConfig {
    /// The hubs this one dials, by URL.
    pub fn dial_targets(&self) -> Vec<String> {
        match self.topology {
            Topology::Hierarchical | Topology::HubAndSpoke => {
                self.upstream.iter().cloned().collect()
            }
            Topology::Mesh => self.peers.clone(),
        }
    }

    /// Checks that the settings fit the topology.
    pub fn validate(&self) -> Result<(), FederationConfigError> {
        let fail = |m: &str| Err(FederationConfigError(m.to_owned()));
        match self.topology {
            Topology::Hierarchical | Topology::HubAndSpoke if !self.peers.is_empty() => fail(
                "`peers` is for the mesh topology; hierarchical and hub-and-spoke hubs name one `upstream`",
            ),
            Topology::Mesh if self.upstream.is_some() => {
                fail("`upstream` is for hierarchical and hub-and-spoke topologies; mesh hubs name `peers`")
            }
            _ if self.sync_interval.is_zero() => fail("`sync_interval` must be more than 0"),
            _ => {
                // A hub address that cannot be dialled is a startup error, not a link that
                // fails forever.
                for url in self.dial_targets() {
                    agentdb_proto::HubUrl::parse(&url)
                        .map_err(|e| FederationConfigError(e.to_string()))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_addresses_are_checked_at_start() {
        let mut config = FederationConfig {
            upstream: Some("quic://global.example:4433".into()),
            ..FederationConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        for bad in [
            "global.example",
            "quic://global.example:99999",
            "https://g:1",
        ] {
            config.upstream = Some(bad.into());
            let err = config.validate().expect_err(bad);
            assert!(err.to_string().contains("quic://host:port"), "{err}");
        }
        let mesh = FederationConfig {
            topology: Topology::Mesh,
            peers: vec!["quic://[::1]:4433".into(), "quic://::1:4433".into()],
            ..FederationConfig::default()
        };
        assert!(mesh.validate().is_err());
    }
}
