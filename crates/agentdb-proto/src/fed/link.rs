//! [`LinkSession`]: one hub's side of a hub-to-hub link, sans-IO.
//!
//! Both sides run the same state machine; each pushes to the other what the other lacks. The
//! driver feeds it received messages ([`LinkSession::handle`]), asks it for messages to send
//! ([`LinkSession::poll_transmit`], whenever it is woken: a message arrived, the local store
//! changed, or a timer fired) and calls [`LinkSession::tick`] on a timer. Store access goes
//! through the [`ReplicaStore`] trait, so the same code runs in the hub (over the memory engine)
//! and in the deterministic simulation (`agentdb_testkit::fedsim`, over an in-memory model and
//! over the engine).
//!
//! Per tenant the session tracks two vectors of the peer: `acked` (what the peer has told us it
//! holds — from its `Vectors`, `Ack`s, `Refused`s and the ops it sent us, since a hub holds every
//! op it sends) and `sent` (`acked` plus what is in flight). It sends the ops `sent` does not
//! cover, in pages of at most `page_ops` ops / `page_bytes` bytes, with at most `window` pages
//! and about `window_bytes` bytes unacknowledged (back-pressure). When a tenant has no page in
//! flight, `sent` is reset to `acked`, so whatever the peer did not take (a gap, a refusal, a
//! broken link — a new link starts from the peer's `Vectors`) is sent again: transfer resumes
//! where the peer really is.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use agentdb_core::{
    AppliedOps, ControlRecord, HubId, Op, Region, Residency, TenantId, VersionVector,
};

use super::message::{
    Ack, Control, FedHello, FedMessage, OpsPage, RefusalReason, Refused, Vectors,
};
use crate::PROTOCOL_VERSION;

/// About the most bytes of version vectors in one `Vectors` message (a frame holds 8 MiB).
const VECTORS_BYTES: usize = 1 << 20;

/// About the most bytes of records in one `Control` message.
const CONTROL_BYTES: usize = 1 << 20;

/// What the replication protocol needs from a hub's store. Every method is synchronous; the
/// hub's driver runs them off the async executor.
pub trait ReplicaStore {
    /// Tenants that have ops.
    fn tenants(&self) -> Vec<TenantId>;

    /// What the store holds of `tenant`.
    fn version_vector(&self, tenant: &TenantId) -> VersionVector;

    /// Ops of `tenant` that `known` does not cover, each origin's in sequence order starting
    /// right after `known`'s entry, at most `limit` ops and about `max_bytes` bytes (at least
    /// one op when any is missing).
    fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, StoreFailure>;

    /// Applies, durably and in order, the ops of a page received from a peer. An op is applied
    /// only when it is the next of its origin (others are duplicates or beyond a gap, and are
    /// skipped). An op stamped too far in the future is refused (reported in
    /// [`AppliedOps::skew`]), and with it the rest of its origin's ops; other origins go on.
    fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        now_ms: u64,
    ) -> Result<AppliedOps, StoreFailure>;

    /// The control records (erasure orders, receipts) the store holds.
    fn control_records(&self) -> Vec<ControlRecord> {
        Vec::new()
    }

    /// Takes in control records received from a peer (records already held are ignored), and
    /// acts on them (an erasure order is applied before this returns).
    fn receive_control(&self, records: Vec<ControlRecord>) -> Result<(), StoreFailure> {
        let _ = records;
        Ok(())
    }
}

/// A store failure, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailure(pub String);

/// A fatal protocol violation by the peer: the link is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer's first message was not a Hello.
    #[error("the peer's first message must be Hello")]
    HelloFirst,
    /// The peer sent a second Hello.
    #[error("the peer sent Hello twice")]
    DuplicateHello,
    /// The peer speaks another protocol version.
    #[error("the peer speaks protocol version {0}; this hub speaks {PROTOCOL_VERSION}")]
    Version(u16),
    /// The peer's Hello names another hub than its certificate.
    #[error("the peer's certificate names hub {certified} but its Hello says {claimed}")]
    PeerMismatch {
        /// From the certificate.
        certified: HubId,
        /// From the Hello.
        claimed: HubId,
    },
    /// The peer's Hello claims another region than its certificate binds it to.
    #[error("the peer's certificate places it in region {certified} but its Hello says {claimed}")]
    RegionMismatch {
        /// From the certificate.
        certified: Region,
        /// From the Hello.
        claimed: Region,
    },
    /// The peer has this hub's own id: two hubs sharing an id would number different ops
    /// alike, and each would drop the other's as duplicates.
    #[error("the peer is also hub {0}: every hub needs its own id")]
    SameHub(HubId),
    /// The peer acknowledged a page that was never sent.
    #[error("the peer acknowledged a page of tenant {0} that was not in flight")]
    UnexpectedAck(TenantId),
}

/// Tuning of a link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Most ops per page.
    pub page_ops: usize,
    /// About the most bytes per page.
    pub page_bytes: usize,
    /// Most unacknowledged pages.
    pub window: usize,
    /// About the most unacknowledged bytes (at least one page is always allowed).
    pub window_bytes: usize,
    /// How often version vectors are exchanged (anti-entropy), and how long a refused tenant
    /// waits before it is tried again.
    pub sync_interval_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            page_ops: 512,
            page_bytes: 4 * 1024 * 1024,
            window: 64,
            window_bytes: 8 * 1024 * 1024,
            sync_interval_ms: 5_000,
        }
    }
}

/// Counters of a link, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Ops sent.
    pub ops_sent: u64,
    /// Ops received and applied.
    pub ops_received: u64,
    /// Pages sent.
    pub pages_sent: u64,
    /// Pages refused by the peer.
    pub refused_by_peer: u64,
    /// Pages this side refused.
    pub refused_here: u64,
    /// When the peer last told us what it holds (Vectors or Ack), ms.
    pub last_sync_ms: Option<u64>,
    /// The last refusal or store failure, as one line.
    pub last_error: Option<String>,
    /// Control records sent.
    pub control_sent: u64,
    /// Control records received.
    pub control_received: u64,
}

/// One side of a hub-to-hub link. See the module docs.
#[derive(Debug)]
pub struct LinkSession {
    me: FedHello,
    certified_peer: HubId,
    certified_region: Option<Region>,
    residency: Residency,
    config: LinkConfig,
    peer: Option<FedHello>,
    /// Whether the peer's first `Vectors` has arrived: no ops are sent before it, so a new link
    /// starts from what the peer really holds.
    peer_vectors: bool,
    acked: BTreeMap<TenantId, VersionVector>,
    sent: BTreeMap<TenantId, VersionVector>,
    /// Unacknowledged pages, oldest first, with their approximate sizes.
    in_flight: VecDeque<(TenantId, usize)>,
    in_flight_bytes: usize,
    paused_until: BTreeMap<TenantId, u64>,
    outbox: VecDeque<FedMessage>,
    next_vectors_ms: u64,
    /// Tenants that may have ops to send; only these are looked at when sending.
    candidates: BTreeSet<TenantId>,
    /// Whether every tenant of the store must be looked at again (after the peer's first
    /// `Vectors`, at every anti-entropy tick, after [`Self::notify_all`]).
    look_at_all: bool,
    /// The tenant of the last page sent (pages rotate over tenants).
    last_sent: Option<TenantId>,
    /// Names of the control records the peer holds (it sent them, or they were sent to it).
    control_known: BTreeSet<String>,
    /// Whether the store may hold control records the peer lacks.
    control_changed: bool,
    stats: LinkStats,
}

impl LinkSession {
    /// A session of hub `me` in `region` with the peer whose certificate names
    /// `certified_peer` (and, when it binds one, `certified_region`). Its Hello is queued.
    pub fn new(
        me: HubId,
        region: Region,
        certified_peer: HubId,
        certified_region: Option<Region>,
        residency: Residency,
        config: LinkConfig,
    ) -> Self {
        let me = FedHello {
            protocol_version: PROTOCOL_VERSION,
            hub: me,
            region,
        };
        Self {
            outbox: VecDeque::from([FedMessage::Hello(me.clone())]),
            me,
            certified_peer,
            certified_region,
            residency,
            config,
            peer: None,
            peer_vectors: false,
            acked: BTreeMap::new(),
            sent: BTreeMap::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            paused_until: BTreeMap::new(),
            next_vectors_ms: 0,
            candidates: BTreeSet::new(),
            look_at_all: true,
            last_sent: None,
            control_known: BTreeSet::new(),
            control_changed: false,
            stats: LinkStats::default(),
        }
    }

    /// The peer's Hello, once received.
    pub fn peer(&self) -> Option<&FedHello> {
        self.peer.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// What the peer has acknowledged holding, per tenant.
    pub fn acked(&self) -> &BTreeMap<TenantId, VersionVector> {
        &self.acked
    }

    /// Ops the store holds that the peer has not acknowledged, over the tenants shared with it.
    pub fn lag(&self, store: &dyn ReplicaStore) -> u64 {
        store
            .tenants()
            .into_iter()
            .filter(|t| self.shares(t))
            .map(|t| {
                let acked = self.acked.get(&t).cloned().unwrap_or_default();
                store.version_vector(&t).lead_over(&acked)
            })
            .sum()
    }

    /// Pages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether `tenant` may be shared with the peer (known after its Hello).
    pub fn shares(&self, tenant: &TenantId) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| self.residency.allows(tenant, &p.region))
    }

    /// Handles one message from the peer. An error is fatal: close the link.
    pub fn handle(
        &mut self,
        msg: FedMessage,
        store: &dyn ReplicaStore,
        now_ms: u64,
    ) -> Result<(), LinkError> {
        let FedMessage::Hello(hello) = msg else {
            if self.peer.is_none() {
                return Err(LinkError::HelloFirst);
            }
            return self.handle_data(msg, store, now_ms);
        };
        if self.peer.is_some() {
            return Err(LinkError::DuplicateHello);
        }
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(LinkError::Version(hello.protocol_version));
        }
        if hello.hub == self.me.hub {
            return Err(LinkError::SameHub(hello.hub));
        }
        if hello.hub != self.certified_peer {
            return Err(LinkError::PeerMismatch {
                certified: self.certified_peer.clone(),
                claimed: hello.hub,
            });
        }
        // Residency decisions trust the peer's region: only the CA's word for it counts.
        if let Some(certified) = self.certified_region.as_ref() {
            if *certified != hello.region {
                return Err(LinkError::RegionMismatch {
                    certified: certified.clone(),
                    claimed: hello.region,
                });
            }
        }
        self.peer = Some(hello);
        // Control records first: the peer applies an erasure before any op that follows it.
        self.queue_control(store);
        self.queue_vectors(store, now_ms);
        Ok(())
    }

    fn handle_data(
        &mut self,
        msg: FedMessage,
        store: &dyn ReplicaStore,
        now_ms: u64,
    ) -> Result<(), LinkError> {
        match msg {
            FedMessage::Hello(_) => return Err(LinkError::DuplicateHello),
            FedMessage::Vectors(v) => {
                // Ops start once the peer has said what it holds of every tenant.
                self.peer_vectors |= !v.more;
                self.stats.last_sync_ms = Some(now_ms);
                for (tenant, vv) in v.tenants {
                    if self.shares(&tenant) {
                        self.learn(&tenant, &vv);
                    }
                }
            }
            FedMessage::Ops(page) => self.receive(page, store, now_ms),
            FedMessage::Control(control) => {
                self.stats.control_received += control.records.len() as u64;
                self.control_known
                    .extend(control.records.iter().map(ControlRecord::name));
                if let Err(e) = store.receive_control(control.records) {
                    self.stats.last_error = Some(format!("control records: {e}"));
                }
            }
            FedMessage::Ack(ack) => {
                self.settle(&ack.tenant)?;
                self.stats.last_sync_ms = Some(now_ms);
                self.learn(&ack.tenant, &ack.vv);
            }
            FedMessage::Refused(r) => {
                self.settle(&r.tenant)?;
                self.stats.refused_by_peer += 1;
                self.stats.last_error = Some(format!("peer refused {}: {}", r.tenant, r.message));
                self.paused_until
                    .insert(r.tenant.clone(), now_ms + self.config.sync_interval_ms);
                self.learn(&r.tenant, &r.vv);
            }
        }
        Ok(())
    }

    /// Removes the oldest in-flight page, which must be `tenant`'s (pages are answered in
    /// order on the link's stream).
    fn settle(&mut self, tenant: &TenantId) -> Result<(), LinkError> {
        match self.in_flight.front() {
            Some((t, bytes)) if t == tenant => {
                self.in_flight_bytes -= bytes;
                self.in_flight.pop_front();
                Ok(())
            }
            _ => Err(LinkError::UnexpectedAck(tenant.clone())),
        }
    }

    /// Folds in what the peer holds of `tenant`; with nothing in flight for the tenant, what
    /// was sent is reset to what the peer holds.
    fn learn(&mut self, tenant: &TenantId, vv: &VersionVector) {
        let acked = self.acked.entry(tenant.clone()).or_default();
        acked.merge(vv);
        let acked = acked.clone();
        self.candidates.insert(tenant.clone());
        if self.in_flight.iter().any(|(t, _)| t == tenant) {
            self.sent.entry(tenant.clone()).or_default().merge(&acked);
        } else {
            self.sent.insert(tenant.clone(), acked);
        }
    }

    fn receive(&mut self, page: OpsPage, store: &dyn ReplicaStore, now_ms: u64) {
        let OpsPage { tenant, ops } = page;
        let refuse = |this: &mut Self, reason, message: String, vv| {
            this.stats.refused_here += 1;
            this.stats.last_error = Some(message.clone());
            this.outbox.push_back(FedMessage::Refused(Refused {
                tenant: tenant.clone(),
                reason,
                message,
                vv,
            }));
        };
        // Neither this hub nor the peer may hold a tenant its residency keeps out of their
        // regions: a peer in such a region has no ops of it to give (it is misconfigured).
        let outside = [&self.me.region]
            .into_iter()
            .chain(self.peer.as_ref().map(|p| &p.region))
            .find(|region| !self.residency.allows(&tenant, region));
        if let Some(region) = outside {
            let message = format!("tenant {tenant} may not be stored in region {region}");
            refuse(
                self,
                RefusalReason::Residency,
                message,
                VersionVector::new(),
            );
            return;
        }
        // The peer holds every op it sends: it needs none of them back.
        let held: VersionVector = ops.iter().map(|op| (op.origin.clone(), op.seq)).collect();
        match store.apply_ops(&tenant, &ops, now_ms) {
            Ok(applied) => {
                self.stats.ops_received += applied.applied;
                if self.shares(&tenant) {
                    self.learn_from_page(&tenant, &held);
                }
                match applied.skew {
                    Some(skew) => refuse(
                        self,
                        RefusalReason::ClockSkew,
                        format!("op refused: {skew}"),
                        applied.vv,
                    ),
                    None => self.outbox.push_back(FedMessage::Ack(Ack {
                        tenant,
                        vv: applied.vv,
                    })),
                }
            }
            Err(e) => {
                let vv = store.version_vector(&tenant);
                refuse(self, RefusalReason::Storage, e.to_string(), vv);
            }
        }
    }

    /// The sender of a page holds its ops, and (each origin's ops being contiguous at every
    /// hub) everything of those origins before them.
    fn learn_from_page(&mut self, tenant: &TenantId, held: &VersionVector) {
        self.acked.entry(tenant.clone()).or_default().merge(held);
        self.sent.entry(tenant.clone()).or_default().merge(held);
    }

    /// Queues anti-entropy if it is due.
    pub fn tick(&mut self, store: &dyn ReplicaStore, now_ms: u64) {
        if self.peer.is_some() && now_ms >= self.next_vectors_ms {
            self.queue_vectors(store, now_ms);
            self.look_at_all = true;
        }
    }

    /// When [`Self::tick`] next has something to do.
    pub fn next_tick_ms(&self) -> u64 {
        self.next_vectors_ms
    }

    fn queue_vectors(&mut self, store: &dyn ReplicaStore, now_ms: u64) {
        let mut tenants = Vec::new();
        let mut bytes = 0;
        let shared: Vec<TenantId> = store
            .tenants()
            .into_iter()
            .filter(|t| self.shares(t))
            .collect();
        for t in shared {
            let vv = store.version_vector(&t);
            let size = 16
                + t.as_str().len()
                + vv.iter().map(|(h, _)| 16 + h.as_str().len()).sum::<usize>();
            if !tenants.is_empty() && bytes + size > VECTORS_BYTES {
                self.outbox.push_back(FedMessage::Vectors(Vectors {
                    tenants: std::mem::take(&mut tenants),
                    more: true,
                }));
                bytes = 0;
            }
            bytes += size;
            tenants.push((t, vv));
        }
        self.outbox.push_back(FedMessage::Vectors(Vectors {
            tenants,
            more: false,
        }));
        self.next_vectors_ms = now_ms + self.config.sync_interval_ms;
    }

    /// Queues the control records the peer may hold and does not hold yet.
    fn queue_control(&mut self, store: &dyn ReplicaStore) {
        self.control_changed = false;
        let mut records = Vec::new();
        let mut bytes = 0;
        for record in store.control_records() {
            let name = record.name();
            let shared = record.tenant().is_none_or(|t| self.shares(t));
            if !shared || self.control_known.contains(&name) {
                continue;
            }
            let size = postcard::to_stdvec(&record).map_or(0, |b| b.len());
            if !records.is_empty() && bytes + size > CONTROL_BYTES {
                self.stats.control_sent += records.len() as u64;
                self.outbox.push_back(FedMessage::Control(Control {
                    records: std::mem::take(&mut records),
                }));
                bytes = 0;
            }
            bytes += size;
            self.control_known.insert(name);
            records.push(record);
        }
        if !records.is_empty() {
            self.stats.control_sent += records.len() as u64;
            self.outbox
                .push_back(FedMessage::Control(Control { records }));
        }
    }

    /// Tells the session that the store has new control records.
    pub fn notify_control(&mut self) {
        self.control_changed = true;
    }

    /// Tells the session that `tenant` changed in the store (new local or relayed ops).
    pub fn notify(&mut self, tenant: &TenantId) {
        self.candidates.insert(tenant.clone());
    }

    /// Tells the session that any tenant may have changed.
    pub fn notify_all(&mut self) {
        self.look_at_all = true;
    }

    /// The next message to send, if any: control messages first, then a page of ops the peer
    /// lacks while the window allows. Only tenants the session was told about (see
    /// [`Self::notify`]) or learned about are looked at, and every tenant at each anti-entropy
    /// tick, so a send decision does not cost a read per tenant of the store.
    pub fn poll_transmit(&mut self, store: &dyn ReplicaStore, now_ms: u64) -> Option<FedMessage> {
        if self.control_changed && self.peer.is_some() {
            self.queue_control(store);
        }
        if let Some(msg) = self.outbox.pop_front() {
            return Some(msg);
        }
        let full = self.in_flight.len() >= self.config.window
            || (!self.in_flight.is_empty() && self.in_flight_bytes >= self.config.window_bytes);
        if !self.peer_vectors || full {
            return None;
        }
        if std::mem::take(&mut self.look_at_all) {
            self.candidates.extend(store.tenants());
        }
        // Round robin: the tenants after the last one served, then the rest.
        let order: Vec<TenantId> = match &self.last_sent {
            Some(last) => self
                .candidates
                .range((Bound::Excluded(last.clone()), Bound::Unbounded))
                .chain(self.candidates.range(..=last.clone()))
                .cloned()
                .collect(),
            None => self.candidates.iter().cloned().collect(),
        };
        for tenant in &order {
            if !self.shares(tenant) || self.paused_until.get(tenant).is_some_and(|&t| now_ms < t) {
                // A paused tenant is looked at again at the next tick.
                self.candidates.remove(tenant);
                continue;
            }
            let sent = self.sent.entry(tenant.clone()).or_default();
            if store.version_vector(tenant).lead_over(sent) == 0 {
                self.candidates.remove(tenant);
                continue;
            }
            let ops =
                match store.ops_since(tenant, sent, self.config.page_ops, self.config.page_bytes) {
                    Ok(ops) if !ops.is_empty() => ops,
                    Ok(_) => {
                        self.candidates.remove(tenant);
                        continue;
                    }
                    Err(e) => {
                        self.stats.last_error = Some(format!("reading ops of {tenant}: {e}"));
                        self.paused_until
                            .insert(tenant.clone(), now_ms + self.config.sync_interval_ms);
                        continue;
                    }
                };
            for op in &ops {
                if op.seq > sent.get(&op.origin) {
                    sent.set(op.origin.clone(), op.seq);
                }
            }
            self.last_sent = Some(tenant.clone());
            let bytes = ops.iter().map(Op::approx_size).sum();
            self.in_flight.push_back((tenant.clone(), bytes));
            self.in_flight_bytes += bytes;
            self.stats.pages_sent += 1;
            self.stats.ops_sent += ops.len() as u64;
            return Some(FedMessage::Ops(OpsPage {
                tenant: tenant.clone(),
                ops,
            }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(name: &str) -> HubId {
        HubId::new(name).unwrap_or_else(|_| unreachable!())
    }

    fn session(me: &str, peer: &str) -> LinkSession {
        let region = Region::new("eu").unwrap_or_else(|_| unreachable!());
        LinkSession::new(
            hub(me),
            region,
            hub(peer),
            None,
            Residency::everywhere(),
            LinkConfig::default(),
        )
    }

    fn hello(name: &str, version: u16) -> FedMessage {
        FedMessage::Hello(FedHello {
            protocol_version: version,
            hub: hub(name),
            region: Region::new("us").unwrap_or_else(|_| unreachable!()),
        })
    }

    #[test]
    fn hello_rules() {
        let vectors = FedMessage::Vectors(Vectors {
            tenants: Vec::new(),
            more: false,
        });
        assert_eq!(
            session("a", "b").handle(vectors, &Sink::default(), 0),
            Err(LinkError::HelloFirst)
        );
        assert_eq!(
            session("a", "a").handle(hello("a", PROTOCOL_VERSION), &Sink::default(), 0),
            Err(LinkError::SameHub(hub("a")))
        );
        assert_eq!(
            session("a", "b").handle(hello("c", PROTOCOL_VERSION), &Sink::default(), 0),
            Err(LinkError::PeerMismatch {
                certified: hub("b"),
                claimed: hub("c"),
            })
        );
        assert_eq!(
            session("a", "b").handle(hello("b", 99), &Sink::default(), 0),
            Err(LinkError::Version(99))
        );
        // `hello` says region us.
        let placed = |region: &str| {
            let region = Region::new(region).unwrap_or_else(|_| unreachable!());
            let eu = Region::new("eu").unwrap_or_else(|_| unreachable!());
            let residency = Residency::everywhere();
            LinkSession::new(
                hub("a"),
                eu,
                hub("b"),
                Some(region),
                residency,
                LinkConfig::default(),
            )
        };
        assert_eq!(
            placed("eu").handle(hello("b", PROTOCOL_VERSION), &Sink::default(), 0),
            Err(LinkError::RegionMismatch {
                certified: Region::new("eu").unwrap_or_else(|_| unreachable!()),
                claimed: Region::new("us").unwrap_or_else(|_| unreachable!()),
            })
        );
        assert_eq!(
            placed("us").handle(hello("b", PROTOCOL_VERSION), &Sink::default(), 0),
            Ok(())
        );
        let mut s = session("a", "b");
        assert_eq!(
            s.handle(hello("b", PROTOCOL_VERSION), &Sink::default(), 0),
            Ok(())
        );
        assert_eq!(
            s.handle(hello("b", PROTOCOL_VERSION), &Sink::default(), 0),
            Err(LinkError::DuplicateHello)
        );
    }

    fn acme() -> TenantId {
        TenantId::new("acme").unwrap_or_else(|_| unreachable!())
    }

    /// A store holding one op of `acme`, `(a, 1)`.
    struct OneOp;

    impl ReplicaStore for OneOp {
        fn tenants(&self) -> Vec<TenantId> {
            vec![acme()]
        }
        fn version_vector(&self, tenant: &TenantId) -> VersionVector {
            if *tenant != acme() {
                return VersionVector::new();
            }
            [(hub("a"), 1)].into_iter().collect()
        }
        fn ops_since(
            &self,
            tenant: &TenantId,
            known: &VersionVector,
            _: usize,
            _: usize,
        ) -> Result<Vec<Op>, StoreFailure> {
            let episode = agentdb_core::EpisodeId::from_parts(1, [1; 10]);
            Ok((*tenant == acme() && known.get(&hub("a")) == 0)
                .then(|| Op {
                    origin: hub("a"),
                    seq: 1,
                    episode,
                    state: None,
                })
                .into_iter()
                .collect())
        }
        fn apply_ops(&self, _: &TenantId, _: &[Op], _: u64) -> Result<AppliedOps, StoreFailure> {
            unreachable!("the peer holds nothing to send")
        }
    }

    /// A store that holds the op numbers it is sent (no episodes), and whose writes fail while
    /// `failing` is set, as on a full disk.
    #[derive(Default)]
    struct Sink {
        failing: std::cell::Cell<bool>,
        vv: std::cell::RefCell<VersionVector>,
    }

    impl ReplicaStore for Sink {
        fn tenants(&self) -> Vec<TenantId> {
            Vec::new()
        }
        fn version_vector(&self, _: &TenantId) -> VersionVector {
            self.vv.borrow().clone()
        }
        fn ops_since(
            &self,
            _: &TenantId,
            _: &VersionVector,
            _: usize,
            _: usize,
        ) -> Result<Vec<Op>, StoreFailure> {
            Ok(Vec::new())
        }
        fn apply_ops(&self, _: &TenantId, ops: &[Op], _: u64) -> Result<AppliedOps, StoreFailure> {
            if self.failing.get() {
                return Err(StoreFailure(
                    "storage failed: No space left on device".into(),
                ));
            }
            let mut vv = self.vv.borrow_mut();
            let applied = ops
                .iter()
                .filter(|op| vv.advance(&op.origin, op.seq))
                .count();
            Ok(AppliedOps {
                vv: vv.clone(),
                applied: applied as u64,
                newest_ms: None,
                skew: None,
            })
        }
    }

    /// Carries messages both ways until neither side has more; returns how many pages of ops
    /// `a` sent.
    fn pump(
        a: (&mut LinkSession, &dyn ReplicaStore),
        b: (&mut LinkSession, &dyn ReplicaStore),
        now: u64,
    ) -> usize {
        let mut pages = 0;
        loop {
            let mut moved = false;
            while let Some(msg) = a.0.poll_transmit(a.1, now) {
                pages += usize::from(matches!(msg, FedMessage::Ops(_)));
                b.0.handle(msg, b.1, now).unwrap_or_else(|e| panic!("{e}"));
                moved = true;
            }
            while let Some(msg) = b.0.poll_transmit(b.1, now) {
                a.0.handle(msg, a.1, now).unwrap_or_else(|e| panic!("{e}"));
                moved = true;
            }
            if !moved {
                return pages;
            }
        }
    }

    #[test]
    fn a_page_the_peer_cannot_store_is_refused_then_sent_again_after_a_pause() {
        let (mut a, mut b) = (session("a", "b"), session("b", "a"));
        let sink = Sink::default();
        sink.failing.set(true);
        assert_eq!(pump((&mut a, &OneOp), (&mut b, &sink), 0), 1);
        assert_eq!(b.stats().refused_here, 1);
        assert_eq!(a.stats().refused_by_peer, 1);
        let error = a.stats().last_error.clone().unwrap_or_default();
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(a.in_flight(), 0);
        assert!(sink.vv.borrow().is_empty());

        // The tenant waits out the pause, even when the sender is told of a change.
        sink.failing.set(false);
        a.notify(&acme());
        assert_eq!(pump((&mut a, &OneOp), (&mut b, &sink), 1), 0);
        let pause = LinkConfig::default().sync_interval_ms;
        a.tick(&OneOp, pause);
        b.tick(&sink, pause);
        assert_eq!(pump((&mut a, &OneOp), (&mut b, &sink), pause), 1);
        let held: VersionVector = [(hub("a"), 1)].into_iter().collect();
        assert_eq!(*sink.vv.borrow(), held);
        assert_eq!(a.acked().get(&acme()), Some(&held));
        assert_eq!(b.stats().ops_received, 1);
    }

    /// A store with `0` tenants, each held from three hubs, and no ops to send.
    struct ManyTenants(usize);

    impl ReplicaStore for ManyTenants {
        fn tenants(&self) -> Vec<TenantId> {
            (0..self.0)
                .map(|i| TenantId::new(format!("tenant-{i:06}")).unwrap_or_else(|_| unreachable!()))
                .collect()
        }
        fn version_vector(&self, _: &TenantId) -> VersionVector {
            [
                (hub("hub-a"), 1),
                (hub("hub-b"), 200),
                (hub("hub-c"), 70_000),
            ]
            .into_iter()
            .collect()
        }
        fn ops_since(
            &self,
            _: &TenantId,
            _: &VersionVector,
            _: usize,
            _: usize,
        ) -> Result<Vec<Op>, StoreFailure> {
            Ok(Vec::new())
        }
        fn apply_ops(&self, _: &TenantId, _: &[Op], _: u64) -> Result<AppliedOps, StoreFailure> {
            unreachable!("nothing is sent to it")
        }
    }

    #[test]
    fn ops_of_a_tenant_the_peers_region_may_not_hold_are_refused() {
        let restricted = TenantId::new("acme-eu").unwrap_or_else(|_| unreachable!());
        let eu = Region::new("eu").unwrap_or_else(|_| unreachable!());
        let mut residency = Residency::everywhere();
        residency.restrict(restricted.clone(), vec![eu.clone()]);
        let mut s = LinkSession::new(
            hub("a"),
            eu,
            hub("b"),
            None,
            residency,
            LinkConfig::default(),
        );
        let sink = Sink::default();
        // `hello` says region us: a misconfigured hub there has no ops of acme-eu to give.
        s.handle(hello("b", PROTOCOL_VERSION), &sink, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let op = Op {
            origin: hub("b"),
            seq: 1,
            episode: agentdb_core::EpisodeId::from_parts(1, [1; 10]),
            state: None,
        };
        for (tenant, refused) in [(restricted, true), (acme(), false)] {
            let page = FedMessage::Ops(OpsPage {
                tenant: tenant.clone(),
                ops: vec![op.clone()],
            });
            s.handle(page, &sink, 0).unwrap_or_else(|e| panic!("{e}"));
            let answer = std::iter::from_fn(|| s.poll_transmit(&sink, 0)).last();
            match answer {
                Some(FedMessage::Refused(r)) => {
                    assert!(refused, "{tenant}: {r:?}");
                    assert_eq!(r.reason, RefusalReason::Residency);
                    assert_eq!(r.message, "tenant acme-eu may not be stored in region us");
                }
                Some(FedMessage::Ack(a)) => assert!(!refused && a.vv.get(&hub("b")) == 1),
                other => panic!("{tenant}: {other:?}"),
            }
        }
        assert_eq!(s.stats().refused_here, 1);
    }

    #[test]
    fn vectors_of_many_tenants_are_split_and_ops_wait_for_the_last_part() {
        let tenants = 40_000;
        let mut a = session("a", "b");
        a.handle(hello("b", PROTOCOL_VERSION), &ManyTenants(tenants), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut parts = Vec::new();
        while let Some(msg) = a.poll_transmit(&ManyTenants(tenants), 0) {
            if let FedMessage::Vectors(v) = msg {
                parts.push(v);
            }
        }
        assert!(parts.len() > 1, "{} part(s)", parts.len());
        let mut seen = 0;
        for (i, part) in parts.iter().enumerate() {
            let frame = FedMessage::Vectors(part.clone()).encode();
            assert!(
                frame.len() <= 2 * VECTORS_BYTES,
                "part {i}: {} bytes",
                frame.len()
            );
            assert_eq!(part.more, i + 1 < parts.len());
            seen += part.tenants.len();
        }
        assert_eq!(seen, tenants);

        // The receiver sends no ops before the last part: until then it does not know what
        // the peer holds of every tenant.
        let mut b = session("b", "a");
        b.handle(hello("a", PROTOCOL_VERSION), &OneOp, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let last = parts.pop().unwrap_or_else(|| unreachable!());
        for part in parts {
            b.handle(FedMessage::Vectors(part), &OneOp, 0)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let sent = |b: &mut LinkSession| {
            std::iter::from_fn(|| b.poll_transmit(&OneOp, 0))
                .filter(|m| matches!(m, FedMessage::Ops(_)))
                .count()
        };
        assert_eq!(sent(&mut b), 0);
        b.handle(FedMessage::Vectors(last), &OneOp, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.acked().len(), tenants);
        assert_eq!(sent(&mut b), 1);
    }

    #[test]
    fn hello_then_vectors_go_out_and_an_unexpected_ack_is_an_error() {
        let mut s = session("a", "b");
        assert!(matches!(
            s.poll_transmit(&Sink::default(), 0),
            Some(FedMessage::Hello(_))
        ));
        assert_eq!(s.poll_transmit(&Sink::default(), 0), None);
        s.handle(hello("b", PROTOCOL_VERSION), &Sink::default(), 0)
            .unwrap();
        assert!(matches!(
            s.poll_transmit(&Sink::default(), 0),
            Some(FedMessage::Vectors(_))
        ));
        let t = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        let ack = FedMessage::Ack(Ack {
            tenant: t.clone(),
            vv: VersionVector::new(),
        });
        assert_eq!(
            s.handle(ack, &Sink::default(), 0),
            Err(LinkError::UnexpectedAck(t))
        );
    }

    /// A store holding control records (and no ops), recording what it receives.
    #[derive(Default)]
    struct Records {
        held: std::cell::RefCell<Vec<ControlRecord>>,
        received: std::cell::RefCell<Vec<ControlRecord>>,
    }

    impl ReplicaStore for Records {
        fn tenants(&self) -> Vec<TenantId> {
            Vec::new()
        }
        fn version_vector(&self, _: &TenantId) -> VersionVector {
            VersionVector::new()
        }
        fn ops_since(
            &self,
            _: &TenantId,
            _: &VersionVector,
            _: usize,
            _: usize,
        ) -> Result<Vec<Op>, StoreFailure> {
            Ok(Vec::new())
        }
        fn apply_ops(&self, _: &TenantId, _: &[Op], _: u64) -> Result<AppliedOps, StoreFailure> {
            unreachable!("no ops are exchanged")
        }
        fn control_records(&self) -> Vec<ControlRecord> {
            self.held.borrow().clone()
        }
        fn receive_control(&self, records: Vec<ControlRecord>) -> Result<(), StoreFailure> {
            self.received.borrow_mut().extend(records);
            Ok(())
        }
    }

    fn erasure(tenant: &str, ms: u64) -> ControlRecord {
        ControlRecord::Erasure(agentdb_core::Erasure {
            id: agentdb_core::ErasureId::from_parts(ms, [2; 10]),
            tenant: TenantId::new(tenant).unwrap_or_else(|_| unreachable!()),
            scope: agentdb_core::ErasureScope::Tenant,
            issued_by: hub("a"),
            stamp: agentdb_core::Stamp::new(agentdb_core::Hlc::new(ms, 0), hub("a")),
        })
    }

    #[test]
    fn control_records_go_first_once_and_only_where_the_tenant_may_be() {
        let store = Records::default();
        store.held.borrow_mut().push(erasure("acme", 1));
        store.held.borrow_mut().push(erasure("local-only", 2));
        let mut residency = Residency::everywhere();
        residency.restrict(
            TenantId::new("local-only").unwrap_or_else(|_| unreachable!()),
            vec![Region::new("eu").unwrap_or_else(|_| unreachable!())],
        );
        let mut s = LinkSession::new(
            hub("a"),
            Region::new("eu").unwrap_or_else(|_| unreachable!()),
            hub("b"),
            None,
            residency,
            LinkConfig::default(),
        );
        assert!(matches!(
            s.poll_transmit(&store, 0),
            Some(FedMessage::Hello(_))
        ));
        // The peer is in `us`: the `local-only` tenant's order is not for it.
        s.handle(hello("b", PROTOCOL_VERSION), &store, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        match s.poll_transmit(&store, 0) {
            Some(FedMessage::Control(c)) => assert_eq!(c.records, vec![erasure("acme", 1)]),
            other => panic!("expected the control records first, got {other:?}"),
        }
        assert!(matches!(
            s.poll_transmit(&store, 0),
            Some(FedMessage::Vectors(_))
        ));
        // Nothing is sent twice; a new record is sent when the store says so.
        s.notify_control();
        assert_eq!(s.poll_transmit(&store, 0), None);
        store.held.borrow_mut().push(erasure("acme", 3));
        s.notify_control();
        match s.poll_transmit(&store, 0) {
            Some(FedMessage::Control(c)) => assert_eq!(c.records, vec![erasure("acme", 3)]),
            other => panic!("expected the new record, got {other:?}"),
        }
        // A record the peer sent is handed to the store and never sent back to it.
        let from_peer = erasure("acme", 4);
        let msg = FedMessage::Control(Control {
            records: vec![from_peer.clone()],
        });
        s.handle(msg, &store, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(*store.received.borrow(), vec![from_peer.clone()]);
        store.held.borrow_mut().push(from_peer);
        s.notify_control();
        assert_eq!(s.poll_transmit(&store, 0), None);
        assert_eq!((s.stats().control_sent, s.stats().control_received), (2, 1));
    }
}
