//! Federation: this hub's links to other hubs.
//!
//! ```text
//!  dial loop (per upstream / peer URL) ──QUIC, ALPN agentdb-fed/1, hub cert both ways──► peer
//!  accept (connection.rs sees ALPN agentdb-fed/1) ──► serve_inbound
//!      └─► run_link: reader task (frames → events) ─► link thread (LinkSession + EngineStore)
//!                                                     └─► writer task (frames → stream)
//!  engine change listener ─► wake every link thread (push new ops at once)
//!  collector (every sync interval) ─► collect tombstones every link has acknowledged
//! ```
//!
//! The link thread owns the sans-IO [`LinkSession`](agentdb_proto::fed::LinkSession) and calls
//! the engine synchronously (reads, fsynced commits) off the async executor; a bounded channel
//! to the writer task carries back-pressure from the network into the session.

mod config;
mod link;
mod status;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use agentdb_core::{HubId, Region, TenantId, Timestamp, VersionVector};
use agentdb_security::identity::PeerIdentity;
use parking_lot::Mutex;
use tokio::sync::watch;

pub use config::{FederationConfig, FederationConfigError, Topology};
pub use status::{FederationStatus, LinkStatus, TenantVector};

pub(crate) use link::serve_inbound;

use crate::state::{unix_ms, HubState};

/// The state of a dialled link whose pair a link the peer dialled carries.
const STANDBY: &str = "standby";

/// Which side dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Outbound,
    Inbound,
}

/// What wakes a link thread.
#[derive(Debug)]
pub(crate) enum Event {
    /// A message from the peer.
    Message(agentdb_proto::fed::FedMessage),
    /// The local store changed.
    Changed,
    /// The connection ended (with why).
    Closed(String),
    /// The peer broke the protocol (a bad frame or message): the link is closed with an error.
    Failed(String),
}

/// A link's last published state.
#[derive(Debug, Clone)]
pub(crate) struct LinkSnapshot {
    /// As the status report shows it.
    pub status: LinkStatus,
    /// What the peer has acknowledged, per tenant (for tombstone collection; refreshed with
    /// the lag, so at most slightly behind — which only delays a collection).
    pub acked: BTreeMap<TenantId, VersionVector>,
}

impl LinkSnapshot {
    /// Whether the link is up.
    pub fn connected(&self) -> bool {
        self.status.state == "connected"
    }
}

/// One link (a dial target, or an accepted connection while it lasts).
#[derive(Debug)]
pub(crate) struct LinkEntry {
    pub id: u64,
    pub direction: Direction,
    pub snapshot: Mutex<LinkSnapshot>,
    wake: Mutex<Option<mpsc::Sender<Event>>>,
    /// Tenants changed since the link thread last looked.
    changed: Mutex<BTreeSet<TenantId>>,
}

impl LinkEntry {
    /// Records that `tenant` changed and wakes the link thread (once until it has looked).
    fn notify(&self, tenant: &TenantId) {
        let mut changed = self.changed.lock();
        let first = changed.is_empty();
        changed.insert(tenant.clone());
        drop(changed);
        if first {
            self.wake_up();
        }
    }

    fn wake_up(&self) {
        self.send(Event::Changed);
    }

    fn send(&self, event: Event) {
        if let Some(tx) = self.wake.lock().as_ref() {
            let _ = tx.send(event);
        }
    }

    /// Whether this is a connected link with `peer` in `direction`.
    fn carries(&self, direction: Direction, peer: &str) -> bool {
        if self.direction != direction {
            return false;
        }
        let snapshot = self.snapshot.lock();
        snapshot.connected() && snapshot.status.peer.as_deref() == Some(peer)
    }

    /// The tenants changed since the last call.
    pub fn take_changed(&self) -> BTreeSet<TenantId> {
        std::mem::take(&mut *self.changed.lock())
    }
}

/// The federation state of a hub.
#[derive(Debug)]
pub(crate) struct Federation {
    pub config: FederationConfig,
    links: Mutex<Vec<Arc<LinkEntry>>>,
    next_id: AtomicU64,
    /// Set when the hub shuts down: link threads stop.
    pub stopping: AtomicBool,
}

impl Federation {
    pub fn new(config: FederationConfig) -> Self {
        Self {
            config,
            links: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
        }
    }

    fn add_link(&self, direction: Direction, address: Option<String>) -> Arc<LinkEntry> {
        let entry = Arc::new(LinkEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            direction,
            snapshot: Mutex::new(LinkSnapshot {
                status: LinkStatus {
                    direction: match direction {
                        Direction::Outbound => "outbound",
                        Direction::Inbound => "inbound",
                    }
                    .into(),
                    address,
                    state: "connecting".into(),
                    ..LinkStatus::default()
                },
                acked: BTreeMap::new(),
            }),
            wake: Mutex::new(None),
            changed: Mutex::new(BTreeSet::new()),
        });
        self.links.lock().push(Arc::clone(&entry));
        entry
    }

    fn remove_link(&self, id: u64) {
        self.links.lock().retain(|l| l.id != id);
    }

    /// Whether this hub leaves the pair it forms with `peer` to the link `peer` dialled: two
    /// hubs that dial each other (a mesh) keep one link, the one the smaller hub id dialled,
    /// whenever it is connected.
    pub fn yields_to(&self, me: &HubId, peer: &HubId) -> bool {
        me > peer
            && self
                .links
                .lock()
                .iter()
                .any(|l| l.carries(Direction::Inbound, peer.as_str()))
    }

    /// Closes this hub's connected links to `peer` that it dialled itself: a link `peer`
    /// dialled now carries the pair (see [`Self::yields_to`]). Their dial loops wait on standby.
    pub fn yield_outbound_to(&self, peer: &HubId) {
        for link in self.links.lock().iter() {
            if link.carries(Direction::Outbound, peer.as_str()) {
                link.send(Event::Closed(format!(
                    "the link {peer} dialled carries the pair"
                )));
            }
        }
    }

    /// Tells every link that `tenant` has something new.
    pub fn notify(&self, tenant: &TenantId) {
        for link in self.links.lock().iter() {
            link.notify(tenant);
        }
    }

    /// Wakes every link thread (to notice shutdown).
    fn wake_all(&self) {
        for link in self.links.lock().iter() {
            link.wake_up();
        }
    }

    fn links(&self) -> Vec<Arc<LinkEntry>> {
        self.links.lock().clone()
    }

    /// The status report.
    pub fn status(&self, state: &HubState) -> FederationStatus {
        let links = self
            .links()
            .iter()
            .map(|l| l.snapshot.lock().status.clone())
            .collect();
        let restricted: HashMap<&TenantId, Vec<String>> = self
            .config
            .residency
            .restrictions()
            .map(|(t, r)| (t, r.iter().map(ToString::to_string).collect()))
            .collect();
        let tenants = state
            .engine
            .tenants()
            .into_iter()
            .map(|t| TenantVector {
                version_vector: state
                    .engine
                    .version_vector(&t)
                    .unwrap_or_default()
                    .iter()
                    .map(|(h, s)| (h.to_string(), s))
                    .collect(),
                residency: restricted.get(&t).cloned(),
                tenant: t.to_string(),
            })
            .collect();
        FederationStatus {
            hub: state.config.hub_id.to_string(),
            region: self.config.region.to_string(),
            topology: self.config.topology.as_str().into(),
            links,
            tenants,
        }
    }

    /// Collects the tombstones every link has acknowledged, when every hub this one dials is
    /// connected, or on standby behind a connected link it dialled to us (a hub that is down
    /// may still hold an older state of the episode). Links to regions a tenant may not be
    /// stored in hold none of its ops (they are refused) and do not count for it. Decided on
    /// one copy of every link's state.
    fn collect_tombstones(&self, state: &HubState) {
        let links: Vec<(Direction, LinkSnapshot)> = self
            .links()
            .iter()
            .map(|l| (l.direction, l.snapshot.lock().clone()))
            .collect();
        let connected: Vec<&LinkSnapshot> = links
            .iter()
            .filter(|(_, s)| s.connected())
            .map(|(_, s)| s)
            .collect();
        let inbound_from = |peer: &Option<String>| {
            links
                .iter()
                .any(|(d, s)| *d == Direction::Inbound && s.connected() && s.status.peer == *peer)
        };
        let all_dialled_up =
            links
                .iter()
                .filter(|(d, _)| *d == Direction::Outbound)
                .all(|(_, s)| {
                    s.connected() || (s.status.state == STANDBY && inbound_from(&s.status.peer))
                });
        if connected.is_empty() || !all_dialled_up {
            return;
        }
        let retention = self.config.tombstone_retention.as_millis() as u64;
        let before = Timestamp(unix_ms().saturating_sub(retention));
        for tenant in state.engine.tenants() {
            let mut acked: Option<VersionVector> = None;
            for snapshot in &connected {
                let region = snapshot.status.region.as_deref().map(Region::new);
                if let Some(Ok(region)) = region {
                    if !self.config.residency.allows(&tenant, &region) {
                        continue;
                    }
                }
                let peer_vv = snapshot.acked.get(&tenant).cloned().unwrap_or_default();
                acked = Some(match acked {
                    None => peer_vv,
                    Some(a) => a.meet(&peer_vv),
                });
            }
            // No link carries the tenant: no linked hub holds any of its ops.
            let acked = match acked {
                Some(a) => a,
                None => match state.engine.version_vector(&tenant) {
                    Ok(held) => held,
                    Err(_) => continue,
                },
            };
            match state.engine.collect_tombstones(&tenant, &acked, before) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(%tenant, collected = n, "tombstones collected"),
                Err(e) => tracing::warn!(%tenant, error = %e, "tombstone collection failed"),
            }
        }
    }
}

/// Refuses to start a hub whose certificate binds it to another region than its configuration
/// names: its peers would close its links (their Hello would claim another region).
pub(crate) fn check_own_region(config: &crate::HubConfig) -> Result<(), crate::StartError> {
    let certs = agentdb_security::tls::certs("hub certificate", &config.tls.cert_pem)?;
    let Some(leaf) = certs.first() else {
        return Ok(());
    };
    let configured = &config.federation.region;
    match PeerIdentity::from_der(leaf) {
        Ok(PeerIdentity::Hub {
            region: Some(certified),
            ..
        }) if certified != *configured => Err(crate::StartError::Region {
            certified,
            configured: configured.clone(),
        }),
        _ => Ok(()),
    }
}

/// Starts federation: wakes links on every engine change, dials the configured hubs and
/// collects tombstones periodically. Tasks end when `shutdown` turns true.
pub(crate) fn start(
    state: &Arc<HubState>,
    endpoint: &quinn::Endpoint,
    shutdown: watch::Receiver<bool>,
) -> Result<(), agentdb_security::tls::TlsError> {
    let fed = Arc::clone(&state.federation);
    let weak = Arc::downgrade(&fed);
    state
        .engine
        .add_change_listener(Arc::new(move |tenant: &TenantId| {
            if let Some(fed) = weak.upgrade() {
                fed.notify(tenant);
            }
        }));
    let client = link::client_config(state)?;
    for url in fed.config.dial_targets() {
        let entry = fed.add_link(Direction::Outbound, Some(url.clone()));
        tokio::spawn(link::dial_loop(
            Arc::clone(state),
            endpoint.clone(),
            client.clone(),
            url,
            entry,
            shutdown.clone(),
        ));
    }
    let st = Arc::clone(state);
    let mut stop = shutdown;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(st.federation.config.sync_interval);
        // A collection that outlasts the interval is not followed by a burst of catch-up runs.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                _ = every.tick() => {
                    let st2 = Arc::clone(&st);
                    let _ = tokio::task::spawn_blocking(move || {
                        st2.federation.collect_tombstones(&st2);
                    })
                    .await;
                }
            }
        }
        st.federation.stopping.store(true, Ordering::Release);
        st.federation.wake_all();
    });
    Ok(())
}
