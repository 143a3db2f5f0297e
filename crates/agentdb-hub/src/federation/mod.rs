//! Federation: this hub's links to other hubs.
//!
//! ```text
//!  dial loop (per upstream / peer URL) ──QUIC, ALPN agentdb-fed/1, hub cert both ways──► peer
//!  accept (connection.rs sees ALPN agentdb-fed/1) ──► serve_inbound
//!      └─► run_link: reader task (frames → events) ─► link thread (LinkSession + EngineStore)
//!                                                     └─► writer task (frames → stream)
//!  engine change listener ─► wake every link thread (push new ops at once)
//!  collector (every sync interval) ─► collect tombstones every peer ever linked has acknowledged
//! ```
//!
//! The link thread owns the sans-IO [`LinkSession`](agentdb_proto::fed::LinkSession) and calls
//! the engine synchronously (reads, fsynced commits) off the async executor. Both channels are
//! bounded: the writer's queue carries back-pressure from the network into the session, and
//! the events' queue back-pressure from the session to the reader (which then stops reading:
//! QUIC flow control holds the peer). The link thread never blocks on a full writer queue
//! without still taking events, so two hubs whose writers are both stuck keep reading each
//! other (no deadlock), and no message of the peer is ever dropped. Change notices are not
//! queued one per change: the tenants changed are kept in a set the thread drains on every
//! turn, and at most a wake-up is queued (none when the queue is full: the thread is busy and
//! drains the set on its next turn anyway).
//!
//! Tombstone collection waits for every peer hub this hub has ever linked with, inbound or
//! outbound, linked now or not: the link thread records the peer in the engine's storage
//! (durably) as soon as its Hello is in, and each collection first records what the peers
//! linked now have acknowledged. See [`collectable_through`] for the rule.

mod config;
mod link;
mod status;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use agentdb_core::{HubId, Region, TenantId, Timestamp, VersionVector};
use agentdb_proto::fed::collectable_through;
use agentdb_security::identity::PeerIdentity;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

pub use config::{FederationConfig, FederationConfigError, Topology};
pub use status::{FederationStatus, LinkState, LinkStatus, TenantVector};

pub(crate) use link::serve_inbound;

use crate::state::HubState;

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
    /// Look at the link's state: tenants changed in the local store, the link must close, or
    /// the hub is shutting down.
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
    /// The peer hub and its region, once its Hello is in (and recorded in storage).
    pub hello: Option<(HubId, Region)>,
    /// What the peer has acknowledged, per tenant (for tombstone collection; refreshed with
    /// the lag, so at most slightly behind — which only delays a collection).
    pub acked: BTreeMap<TenantId, VersionVector>,
}

impl LinkSnapshot {
    /// Whether the link is up.
    pub fn connected(&self) -> bool {
        self.status.state == LinkState::Connected
    }
}

/// One link (a dial target, or an accepted connection while it lasts).
#[derive(Debug)]
pub(crate) struct LinkEntry {
    pub id: u64,
    pub direction: Direction,
    pub snapshot: Mutex<LinkSnapshot>,
    /// The running link thread's event queue.
    wake: Mutex<Option<mpsc::Sender<Event>>>,
    /// Tenants changed since the link thread last looked.
    changed: Mutex<BTreeSet<TenantId>>,
    /// Whether the store has control records the link thread has not looked at.
    control: AtomicBool,
    /// Why the running link must close, when it must.
    close: Mutex<Option<String>>,
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

    /// Records that the store has new control records and wakes the link thread.
    fn notify_control(&self) {
        self.control.store(true, Ordering::Release);
        self.wake_up();
    }

    /// Whether the store has new control records since the last call.
    pub fn take_control(&self) -> bool {
        self.control.swap(false, Ordering::AcqRel)
    }

    /// Queues a wake-up unless the queue is full (the thread then has events to take, and
    /// looks at the link's state after each) or no thread runs.
    fn wake_up(&self) {
        if let Some(tx) = self.wake.lock().as_ref() {
            let _ = tx.try_send(Event::Changed);
        }
    }

    /// Asks the running link to close, with why.
    fn request_close(&self, why: String) {
        *self.close.lock() = Some(why);
        self.wake_up();
    }

    /// Why the running link must close, if it must (asked once).
    pub fn take_close(&self) -> Option<String> {
        self.close.lock().take()
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

    /// What the collector needs of the link: its direction and its last published state.
    fn view(&self) -> (Direction, LinkSnapshot) {
        (self.direction, self.snapshot.lock().clone())
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
                    state: LinkState::Connecting,
                    ..LinkStatus::default()
                },
                hello: None,
                acked: BTreeMap::new(),
            }),
            wake: Mutex::new(None),
            changed: Mutex::new(BTreeSet::new()),
            control: AtomicBool::new(false),
            close: Mutex::new(None),
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
                link.request_close(format!("the link {peer} dialled carries the pair"));
            }
        }
    }

    /// Tells every link that `tenant` has something new.
    pub fn notify(&self, tenant: &TenantId) {
        for link in self.links.lock().iter() {
            link.notify(tenant);
        }
    }

    /// Tells every link that the store has new control records (erasure orders, receipts).
    pub fn notify_control(&self) {
        for link in self.links.lock().iter() {
            link.notify_control();
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

    /// Collects the tombstones that every peer hub this hub has ever linked with (whose
    /// region may hold the tenant) has acknowledged, linked now or not, and older than the
    /// retention by the engine's clock; see [`collectable_through`]. First records what the
    /// links up now have acknowledged; nothing is collected when that fails, nor before every
    /// hub this one dials has been reached once since it started and recorded (a hub it has
    /// never reached may hold the tenant without this hub knowing). Decided on one copy of
    /// every link's state.
    fn collect_tombstones(&self, state: &HubState) {
        let engine = &state.engine;
        let links: Vec<(Direction, LinkSnapshot)> = self.links().iter().map(|l| l.view()).collect();
        let recorded = match engine.peers() {
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the peers recorded; no tombstones collected");
                return;
            }
        };
        // A dialled link on standby was reached: the peer's own link carries the pair.
        let unreached = links.iter().any(|(d, s)| {
            *d == Direction::Outbound
                && !s
                    .status
                    .peer
                    .as_deref()
                    .and_then(|p| HubId::new(p).ok())
                    .is_some_and(|p| recorded.contains_key(&p))
        });
        if unreached {
            return;
        }
        for (_, snapshot) in links.iter().filter(|(_, s)| s.connected()) {
            let Some((peer, region)) = &snapshot.hello else {
                continue;
            };
            let acked: Vec<(TenantId, VersionVector)> = snapshot
                .acked
                .iter()
                .map(|(t, vv)| (t.clone(), vv.clone()))
                .collect();
            if let Err(e) = engine.record_peer_acks(peer, region, &acked) {
                tracing::warn!(%peer, error = %e, "cannot record what a peer holds; no tombstones collected");
                return;
            }
        }
        let retention =
            u64::try_from(self.config.tombstone_retention.as_millis()).unwrap_or(u64::MAX);
        let before = Timestamp(engine.now().unix_ms().saturating_sub(retention));
        for tenant in engine.tenants() {
            if engine.tombstone_count(&tenant) == 0 {
                continue;
            }
            let (held, peers) = match (engine.version_vector(&tenant), engine.peer_acks(&tenant)) {
                (Ok(held), Ok(peers)) => (held, peers),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(%tenant, error = %e, "tombstone collection failed");
                    continue;
                }
            };
            let peers = peers.values().map(|p| (&p.region, &p.acked));
            let Some(acked) = collectable_through(&tenant, &held, &self.config.residency, peers)
            else {
                continue;
            };
            match engine.collect_tombstones(&tenant, &acked, before) {
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
