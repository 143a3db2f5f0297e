//! Deterministic simulation of federation: 3–7 hubs in one process, each with a [`LinkSession`]
//! per link over a [`SimStore`], on a simulated network with delays, broken connections,
//! partitions, hub crashes and clock skew. Every run is replayable from one `u64` seed: all
//! randomness comes from one seeded generator and every collection iterates in a fixed order.
//!
//! The same simulation runs over two stores: [`ModelStore`], a plain in-memory model of what a
//! replica store must do, and [`EngineStore`], the real memory engine over in-memory storage
//! (a crash drops the engine and reopens it over the same storage and master key).
//!
//! - Hubs: hierarchical (a global root, an eu and a us regional, edges under them), mesh, or
//!   hub-and-spoke; one tenant is restricted to the eu. Each hub's physical clock is off by up
//!   to ±5 s (the skew bound is 60 s). A crash loses the hub's sessions and clock, never its
//!   store; the clock restarts from the largest stamp stored.
//! - Links: a connection carries ordered bytes each way, like a QUIC stream; every message is
//!   encoded, sometimes split, and decoded by a [`FrameDecoder`] at the other end. A broken
//!   connection loses what it carried and both sessions; the dialer makes a new one.
//! - Replays: a page of ops sent earlier on a link (on this connection or an older one) is
//!   delivered again, late, to a new session of its receiver: a duplicate, out of order with
//!   everything sent since. Its ops are either held already (dropped) or were lost with a
//!   broken connection (applied now, after later ones).
//! - Time advances in milliseconds, straight to the next moment something is due (a delivery,
//!   a session timer, a write, a fault, a reconnect, a collection). A session is ticked and
//!   polled until it has nothing more to send whenever a message reached it, its store changed
//!   or its timer fired.
//! - Tombstone collection (random runs): every hub collects, at a random interval, every
//!   tombstone the rule of [`collectable_through`] allows, at once — as with a retention of
//!   zero: the rule alone must keep deletes deleted. Like a hub, it records durably every peer
//!   it links with (as the peer's Hello arrives) and, at each collection, what the peers linked
//!   now have acknowledged; and it waits until every link it dials has been up once since it
//!   started and the peer at its other end is recorded. Some meshes have a hub beyond the skew
//!   bound among the collecting hubs. Some outages (a crash, one hub cut off) last most of the chaos phase: far longer
//!   than any tombstone is kept.
//!
//! After the faults stop and the network heals, the simulation runs until nothing changes any
//! more and then checks: hubs that can reach each other hold identical state and version
//! vectors, equal to what the acknowledged writes imply (computed without the merge code; a
//! tombstone may be missing where it was collected); every write acknowledged to an agent is
//! there (or deleted, when a delete was issued anywhere); every session knows what its peer
//! holds; and one more collection everywhere leaves no tombstone anywhere. Residency is checked
//! on every apply and on every message sent, every hub's stamps must increase, across crashes,
//! and no hub may ever receive an op as collected (`state: None`) for an episode it holds live:
//! that hub would never learn of the delete.
//!
//! The runs themselves are in `tests/fed_sim.rs`: `FED_SIM_SEEDS=<n>` sets how many seeds
//! `many_seeds` runs over the model (default 1000), `FED_SIM_ENGINE_SEEDS=<n>` how many
//! `engine_seeds` runs over the engine (default 300); `FED_SIM_SEED=<seed>` replays exactly
//! one. A failing seed is printed as `FED_SIM_SEED=<seed>`.

mod engine;
mod model;

pub use engine::EngineStore;
pub use model::ModelStore;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use agentdb_core::{
    AgentId, AppliedOps, Embedding, EpisodeContent, EpisodeId, EpisodeUpdate, HubId, LiveEpisode,
    Lww, ModelId, Op, Region, ReplicaState, Residency, Stamp, TenantId, Timestamp, VersionVector,
};
use agentdb_memory::storage::PeerAck;
use agentdb_proto::fed::{
    collectable_through, FedHello, FedMessage, LinkConfig, LinkSession, OpsPage, ReplicaStore,
    StoreFailure,
};
use agentdb_proto::{FrameDecoder, MAX_FRAME_LEN, PROTOCOL_VERSION};

/// The simulated epoch.
const T0: u64 = 1_700_000_000_000;
/// The clock-skew bound of every hub.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Physical clock offsets of ordinary hubs stay within ± this.
const OFFSET_MS: u64 = 5_000;
/// How long, after healing, the network may take to go quiet.
const QUIESCE_LIMIT_MS: u64 = 120_000;

// ---- Randomness ---------------------------------------------------------------------------

/// SplitMix64: small, fast and good enough to drive a simulation.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// An index into a slice of `len > 0` items.
    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ---- The stores ---------------------------------------------------------------------------

/// What a hub holds of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantData {
    /// Per episode, its state here.
    pub episodes: BTreeMap<EpisodeId, ReplicaState>,
    /// Per origin hub, the episode each op touched: index = seq - 1.
    pub log: BTreeMap<HubId, Vec<EpisodeId>>,
    /// The ops applied: every origin's, contiguously from 1.
    pub vv: VersionVector,
}

/// A hub's store as the simulation drives it: the replication protocol's view
/// ([`ReplicaStore`]), the agents' writes, crashes, and inspection for the checks.
///
/// Residency and the change count are kept by the simulation around the store, the same for
/// every store.
pub trait SimStore: ReplicaStore + fmt::Debug + Sized {
    /// An empty store of hub `hub`, refusing replicated stamps more than `max_skew_ms` ahead
    /// of its clock.
    fn open(hub: &HubId, max_skew_ms: u64) -> Self;

    /// A crash and restart: everything but the durable state is lost.
    fn restart(&mut self);

    /// The hub's physical clock now reads `now_ms`; set before every call into the store.
    fn set_clock(&self, now_ms: u64);

    /// The model and dimensions of the embeddings agents supply with new episodes.
    fn embedding_model(&self) -> (ModelId, usize);

    /// A write accepted from an agent at physical time `now_ms`: stamped with the hub's clock,
    /// given the next seq of the hub, applied. `kind` is an update or a delete only of an
    /// episode live here. Returns the seq and the stamp.
    fn write(
        &self,
        tenant: &TenantId,
        episode: EpisodeId,
        kind: &WriteKind,
        now_ms: u64,
    ) -> (u64, Stamp);

    /// What the store holds of `tenant`.
    fn tenant(&self, tenant: &TenantId) -> TenantData;

    /// The state of one episode. Its content's embedding may be left out.
    fn get(&self, tenant: &TenantId, episode: &EpisodeId) -> Option<ReplicaState>;

    /// The episodes of `tenant` held, deleted ones included, in id order.
    fn episode_ids(&self, tenant: &TenantId) -> Vec<EpisodeId>;

    /// The largest stamp of the states held, across tenants.
    fn max_stamp(&self) -> Option<Stamp>;

    /// Removes the tombstones of `tenant` none of whose ops lie outside `acked`, however
    /// recent. Returns how many.
    fn collect_tombstones(&self, tenant: &TenantId, acked: &VersionVector) -> u64;

    /// Every peer hub recorded.
    fn peers(&self) -> BTreeSet<HubId>;

    /// Every peer hub recorded, with its region and what it has acknowledged of `tenant`.
    fn peer_acks(&self, tenant: &TenantId) -> BTreeMap<HubId, PeerAck>;

    /// Records, durably, that the hub links with `peer` in `region`.
    fn record_peer(&self, peer: &HubId, region: &Region);

    /// Records, durably, that `peer` in `region` links with the hub and has acknowledged the
    /// given ops of each tenant listed (acknowledgements only grow).
    fn record_peer_acks(&self, peer: &HubId, region: &Region, acked: &[(TenantId, VersionVector)]);
}

/// Fails the run if `tenant` may not be stored at `hub`.
fn check_residency<S>(truth: &Residency, hub: &Hub<S>, tenant: &TenantId, what: &str) {
    assert!(
        truth.allows(tenant, &hub.region),
        "residency violated: {what} stored tenant {tenant} at hub {} in region {}",
        hub.id,
        hub.region
    );
}

/// A hub's store as its sessions see it: checks residency on every apply and counts the ops
/// applied.
struct Guarded<'a, S> {
    /// The hub.
    hub: &'a Hub<S>,
    /// The peer whose pages it receives.
    from: &'a HubId,
    /// The residency rules as they really are.
    truth: &'a Residency,
}

impl<S: SimStore> ReplicaStore for Guarded<'_, S> {
    fn tenants(&self) -> Vec<TenantId> {
        self.hub.store.tenants()
    }

    fn version_vector(&self, tenant: &TenantId) -> VersionVector {
        self.hub.store.version_vector(tenant)
    }

    fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, StoreFailure> {
        self.hub.store.ops_since(tenant, known, limit, max_bytes)
    }

    fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        now_ms: u64,
    ) -> Result<AppliedOps, StoreFailure> {
        check_residency(self.truth, self.hub, tenant, "a received page");
        // Every op of an episode in one page carries the episode's state at the sender when
        // the page was made: the episode's state here before the page is the one to look at.
        let mut held = self.hub.store.version_vector(tenant);
        for op in ops {
            if !held.advance(&op.origin, op.seq) || op.state.is_some() {
                continue;
            }
            if let Some(ReplicaState::Live(_)) = self.hub.store.get(tenant, &op.episode) {
                panic!(
                    "hub {} received op ({}, {}) of {} in {tenant} from {} as collected while it \
                     holds the episode live: a hub collected its tombstone before every hub \
                     holding the tenant had the delete",
                    self.hub.id, op.origin, op.seq, op.episode, self.from
                );
            }
        }
        let applied = self.hub.store.apply_ops(tenant, ops, now_ms)?;
        self.hub
            .changes
            .set(self.hub.changes.get() + applied.applied);
        Ok(applied)
    }
}

// ---- What the agents were told ------------------------------------------------------------

/// A write of an agent that its hub acknowledged.
#[derive(Debug, Clone)]
pub struct Write {
    /// The tenant written to.
    pub tenant: TenantId,
    /// The episode written.
    pub episode: EpisodeId,
    /// The hub that accepted it (index into the simulation's hubs).
    pub origin: usize,
    /// The op's seq at its origin.
    pub seq: u64,
    /// The stamp the hub gave it.
    pub stamp: Stamp,
    /// What was written.
    pub kind: WriteKind,
}

/// What an agent wrote.
#[derive(Debug, Clone)]
pub enum WriteKind {
    /// A new episode.
    Put {
        /// The immutable part.
        content: Box<EpisodeContent>,
        /// The reward.
        reward: f64,
        /// The critique.
        critique: Option<String>,
        /// The tags.
        tags: Vec<String>,
    },
    /// An update of an episode's registers.
    Update(EpisodeUpdate),
    /// A delete.
    Delete,
}

/// The latest of the candidate writes of one register.
fn latest<T: Clone>(candidates: impl IntoIterator<Item = (Stamp, T)>) -> Option<Lww<T>> {
    candidates
        .into_iter()
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(stamp, value)| Lww { stamp, value })
}

/// Which ops a hub can receive: per origin hub, up to which seq.
type Sources = BTreeMap<usize, u64>;

/// The state a hub must hold of `tenant` once it has the ops of `sources`:
/// computed from the acknowledged writes alone, not with the merge code.
fn expected(
    writes: &[Write],
    hubs: &[HubId],
    tenant: &TenantId,
    sources: &Sources,
) -> (BTreeMap<EpisodeId, ReplicaState>, VersionVector) {
    let mut by_episode: BTreeMap<EpisodeId, Vec<&Write>> = BTreeMap::new();
    let mut counts: BTreeMap<HubId, u64> = BTreeMap::new();
    for w in writes
        .iter()
        .filter(|w| &w.tenant == tenant && sources.get(&w.origin).is_some_and(|&to| w.seq <= to))
    {
        by_episode.entry(w.episode).or_default().push(w);
        *counts.entry(hubs[w.origin].clone()).or_default() += 1;
    }
    let mut episodes = BTreeMap::new();
    for (id, ws) in by_episode {
        let deleted = ws
            .iter()
            .filter(|w| matches!(w.kind, WriteKind::Delete))
            .map(|w| w.stamp.clone())
            .max();
        let state = if let Some(d) = deleted {
            ReplicaState::Deleted(d)
        } else {
            let puts: Vec<_> = ws
                .iter()
                .filter_map(|w| match &w.kind {
                    WriteKind::Put {
                        content,
                        reward,
                        critique,
                        tags,
                    } => Some((w.stamp.clone(), content, *reward, critique, tags)),
                    _ => None,
                })
                .collect();
            assert_eq!(puts.len(), 1, "episode {id} was put once");
            let (created, content, reward, critique, tags) = puts[0].clone();
            let updates: Vec<(Stamp, &EpisodeUpdate)> = ws
                .iter()
                .filter_map(|w| match &w.kind {
                    WriteKind::Update(u) => Some((w.stamp.clone(), u)),
                    _ => None,
                })
                .collect();
            let reward = latest(
                std::iter::once((created.clone(), reward)).chain(
                    updates
                        .iter()
                        .filter_map(|(s, u)| Some((s.clone(), u.reward?))),
                ),
            );
            let critique = latest(
                std::iter::once((created.clone(), critique.clone())).chain(
                    updates
                        .iter()
                        .filter_map(|(s, u)| Some((s.clone(), u.critique.clone()?))),
                ),
            );
            let tags = latest(
                std::iter::once((created.clone(), tags.clone())).chain(
                    updates
                        .iter()
                        .filter_map(|(s, u)| Some((s.clone(), u.tags.clone()?))),
                ),
            );
            let metadata = latest(
                std::iter::once((created.clone(), content.metadata_json.clone())).chain(
                    updates
                        .iter()
                        .filter_map(|(s, u)| Some((s.clone(), u.metadata_json.clone()?))),
                ),
            );
            ReplicaState::Live(Box::new(LiveEpisode {
                created,
                // The content's metadata lives in the register.
                content: EpisodeContent {
                    metadata_json: String::new(),
                    ..(**content).clone()
                },
                reward: reward.expect("the put sets the reward"),
                critique: critique.expect("the put sets the critique"),
                tags: tags.expect("the put sets the tags"),
                metadata: metadata.expect("the put sets the metadata"),
            }))
        };
        episodes.insert(id, state);
    }
    (episodes, counts.into_iter().collect())
}

/// A short description of how two tenant maps differ.
fn diff(
    actual: &BTreeMap<EpisodeId, ReplicaState>,
    expected: &BTreeMap<EpisodeId, ReplicaState>,
) -> String {
    let mut out = Vec::new();
    for (id, e) in expected {
        match actual.get(id) {
            None => out.push(format!("missing {id}: expected {:?}", shown(e))),
            Some(a) if a != e => out.push(format!(
                "differs {id}:\n  held     {:?}\n  expected {:?}",
                shown(a),
                shown(e)
            )),
            Some(_) => {}
        }
    }
    for (id, a) in actual {
        if !expected.contains_key(id) {
            out.push(format!("unexpected {id}: {:?}", shown(a)));
        }
    }
    out.truncate(6);
    out.join("\n")
}

/// A state to print: an embedding shortened to its first few components.
fn shown(state: &ReplicaState) -> ReplicaState {
    let mut state = state.clone();
    if let ReplicaState::Live(live) = &mut state {
        if let Some(e) = &mut live.content.embedding {
            e.vector.truncate(4);
        }
    }
    state
}

/// A state without its content's embedding.
fn without_embedding(state: &ReplicaState) -> ReplicaState {
    let mut state = state.clone();
    if let ReplicaState::Live(live) = &mut state {
        live.content.embedding = None;
    }
    state
}

/// `held` as it compares with `expected`: a store may embed the text of an episode written
/// without an embedding (the model store does not; the engine does), so such an episode's
/// embedding is left out.
fn comparable(
    held: &BTreeMap<EpisodeId, ReplicaState>,
    expected: &BTreeMap<EpisodeId, ReplicaState>,
) -> BTreeMap<EpisodeId, ReplicaState> {
    let mut held = held.clone();
    for (id, state) in &mut held {
        if let (ReplicaState::Live(h), Some(ReplicaState::Live(e))) = (state, expected.get(id)) {
            if e.content.embedding.is_none() {
                h.content.embedding = None;
            }
        }
    }
    held
}

// ---- Topologies and parameters ------------------------------------------------------------

/// How the hubs are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A global root, an eu and a us regional hub under it, edges under the regionals.
    Hierarchical,
    /// Every pair linked.
    Mesh,
    /// Spokes linked to one center.
    HubAndSpoke,
}

impl Topology {
    /// The topology of a seed: the three in turn.
    fn of_seed(seed: u64) -> Self {
        match seed % 3 {
            0 => Self::Hierarchical,
            1 => Self::Mesh,
            _ => Self::HubAndSpoke,
        }
    }

    /// Regions of `n` hubs and the links between them, the dialer first as hubs dial: an edge
    /// its regional, a regional the root, a spoke the center; in a mesh both ends dial (a hub
    /// pair keeps one link). `center_eu` picks the center's region of a hub-and-spoke
    /// topology.
    fn build(self, n: usize, center_eu: bool) -> (Vec<&'static str>, Vec<(usize, usize)>) {
        const SPREAD: [&str; 7] = ["eu", "us", "eu", "global", "us", "eu", "global"];
        match self {
            Self::Hierarchical => {
                let mut regions = vec!["global", "eu", "us"];
                let mut links = vec![(1, 0), (2, 0)];
                for i in 3..n {
                    let (region, parent) = if i % 2 == 1 { ("eu", 1) } else { ("us", 2) };
                    regions.push(region);
                    links.push((i, parent));
                }
                regions.truncate(n);
                (regions, links)
            }
            Self::Mesh => {
                let regions = SPREAD[..n].to_vec();
                let links = (0..n)
                    .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                    .collect();
                (regions, links)
            }
            Self::HubAndSpoke => {
                let mut regions = vec![if center_eu { "eu" } else { "global" }];
                regions.extend(SPREAD[..n - 1].iter().copied());
                let links = (1..n).map(|i| (i, 0)).collect();
                (regions, links)
            }
        }
    }
}

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Seeds the simulation's randomness.
    pub seed: u64,
    /// How the hubs are linked.
    pub topology: Topology,
    /// How many hubs (3–7).
    pub hubs: usize,
    /// Agent writes at random hubs during the chaos phase.
    pub writes: usize,
    /// Length of the chaos phase (writes and faults), ms.
    pub chaos_ms: u64,
    /// Whether connections break during the chaos phase.
    pub breaks: bool,
    /// Whether the network partitions during the chaos phase.
    pub partitions: bool,
    /// Whether hubs crash during the chaos phase.
    pub crashes: bool,
    /// Whether earlier pages are delivered again, late, during the chaos phase.
    pub replays: bool,
    /// Largest one-way delay of a message, ms.
    pub max_delay_ms: u64,
    /// A hub whose physical clock is this far ahead (beyond the skew bound).
    pub skewed: Option<(usize, u64)>,
    /// A hub whose residency configuration is empty (it thinks every tenant may go anywhere).
    pub misconfigured: Option<usize>,
    /// Whether the center of a hub-and-spoke topology is in the eu (else global).
    pub center_eu: bool,
    /// Physical clock offsets of the hubs, ms (random within ±5 s when not given).
    pub offsets: Option<Vec<i64>>,
    /// How hubs collect tombstones, and how often (ms); `None`: they keep them.
    pub collection: Option<(Collection, u64)>,
    /// Whether some outages (a crash, one hub cut off) last most of the chaos phase.
    pub long_outages: bool,
}

/// Which tombstones a hub collects (each as soon as it may: every tombstone is old enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// The hubs' rule ([`collectable_through`]): those every peer ever linked has
    /// acknowledged, from durable records of the peers and what each acknowledged, once every
    /// link the hub dials has been up since it started.
    KnownHolders,
    /// A wrong rule, kept to show that the checks catch it (`tests/fed_sim.rs`): the one hubs
    /// had before, which looked only at the links up at the time — the meet of what they
    /// acknowledged, once every link the hub dials is up. A hub nobody dials (a root, a
    /// center) then collects what a hub that is away never had.
    ConnectedLinks,
}

impl Params {
    /// Everything drawn from the seed.
    pub fn random(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED);
        let mut p = Self {
            seed,
            topology: Topology::of_seed(seed),
            hubs: rng.range(3, 7) as usize,
            writes: rng.range(30, 100) as usize,
            chaos_ms: rng.range(150, 400),
            breaks: rng.chance(80),
            partitions: rng.chance(70),
            crashes: rng.chance(70),
            replays: rng.chance(70),
            max_delay_ms: rng.range(1, 25),
            skewed: None,
            misconfigured: None,
            center_eu: rng.chance(50),
            offsets: None,
            collection: Some((Collection::KnownHolders, rng.range(20, 120))),
            long_outages: rng.chance(50),
        };
        // Some meshes have a hub beyond the skew bound, collecting like the others. (Only
        // meshes: what a skewed hub relays for others depends on the states it holds, which
        // the checks do not model; in a mesh every other hub is linked with every other.)
        if p.topology == Topology::Mesh && rng.chance(25) {
            p.skewed = Some((rng.index(p.hubs), 2 * MAX_SKEW_MS));
        }
        p
    }

    /// A quiet network: no writes or faults unless the test makes them.
    pub fn quiet(seed: u64, topology: Topology, hubs: usize) -> Self {
        Self {
            seed,
            topology,
            hubs,
            writes: 0,
            chaos_ms: 0,
            breaks: false,
            partitions: false,
            crashes: false,
            replays: false,
            max_delay_ms: 10,
            skewed: None,
            misconfigured: None,
            center_eu: true,
            offsets: None,
            collection: None,
            long_outages: false,
        }
    }

    /// One line for a failure report.
    pub fn describe(&self) -> String {
        format!(
            "{:?}, {} hubs, {} writes over {} ms, faults: breaks {} partitions {} crashes {} \
             replays {} long outages {}, skewed {:?}, collection {:?}",
            self.topology,
            self.hubs,
            self.writes,
            self.chaos_ms,
            self.breaks,
            self.partitions,
            self.crashes,
            self.replays,
            self.long_outages,
            self.skewed,
            self.collection,
        )
    }
}

// ---- The network --------------------------------------------------------------------------

/// One direction of a connection: ordered bytes, each chunk with its delivery time.
#[derive(Debug)]
struct Pipe {
    /// Chunks in order, with the time each arrives.
    queue: VecDeque<(u64, Vec<u8>)>,
    /// When the last chunk queued arrives (later chunks never overtake it).
    last_at: u64,
    /// Reassembles frames at the receiving end.
    decoder: FrameDecoder,
}

impl Pipe {
    /// An empty pipe.
    fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            last_at: 0,
            decoder: FrameDecoder::new(MAX_FRAME_LEN),
        }
    }
}

/// A live connection of a link: a session at each end, a pipe towards each end
/// (`pipes[i]` delivers to `ends[i]`).
#[derive(Debug)]
struct Conn {
    /// `sessions[i]` runs at `ends[i]`.
    sessions: [LinkSession; 2],
    /// `pipes[i]` delivers to `ends[i]`.
    pipes: [Pipe; 2],
    /// Whether a session received something since it was last polled.
    woken: [bool; 2],
    /// When it was made.
    since: u64,
}

/// A link between two hubs and its connection, when there is one.
#[derive(Debug)]
struct Link {
    /// The hubs it joins; the first dials.
    ends: [usize; 2],
    /// Which ends dial (both, in a mesh).
    dials: [bool; 2],
    /// Which ends have had it up since they last started.
    reached: [bool; 2],
    /// The live connection.
    conn: Option<Conn>,
    /// Partitioned until then.
    down_until: u64,
    /// The dialer tries again from then.
    reconnect_at: u64,
    /// The last pages of ops sent each way, over any connection (`sent[i]` went to `ends[i]`),
    /// for replays.
    sent: [VecDeque<OpsPage>; 2],
}

/// How many earlier pages each direction of a link keeps for replays.
const REPLAYABLE_PAGES: usize = 16;

/// A simulated hub.
#[derive(Debug)]
pub struct Hub<S> {
    /// Its id.
    pub id: HubId,
    /// Its region.
    pub region: Region,
    /// Physical clock = simulated time + offset.
    offset_ms: i64,
    /// The hub's own residency configuration.
    residency: Residency,
    /// Its store.
    pub store: S,
    /// Ops applied or written so far: changes whenever the store does.
    changes: Cell<u64>,
    /// Crashed until then.
    down_until: Option<u64>,
}

/// Counters of a run, to see that faults did happen.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Messages sent.
    pub messages: u64,
    /// Connections broken.
    pub breaks: u64,
    /// Partitions.
    pub partitions: u64,
    /// Hub crashes.
    pub crashes: u64,
    /// Earlier pages delivered again.
    pub replays: u64,
    /// Ops of replayed pages that their receiver did not hold yet (applied out of order).
    pub replayed_ops_applied: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Updates and deletes refused (the episode was deleted).
    pub refused_writes: u64,
    /// Tombstones collected.
    pub collected: u64,
    /// Outages of one hub that lasted most of the chaos phase.
    pub long_outages: u64,
}

impl std::ops::AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, other: &Counts) {
        self.messages += other.messages;
        self.breaks += other.breaks;
        self.partitions += other.partitions;
        self.crashes += other.crashes;
        self.replays += other.replays;
        self.replayed_ops_applied += other.replayed_ops_applied;
        self.writes += other.writes;
        self.refused_writes += other.refused_writes;
        self.collected += other.collected;
        self.long_outages += other.long_outages;
    }
}

/// The simulated federation.
#[derive(Debug)]
pub struct Sim<S> {
    /// The shape of the run.
    p: Params,
    /// All randomness.
    rng: Rng,
    /// Every link's tuning.
    config: LinkConfig,
    /// The residency rules as they really are.
    truth: Residency,
    /// The tenants agents write to.
    pub tenants: Vec<TenantId>,
    /// Simulated time, ms since the Unix epoch.
    now: u64,
    /// The hubs.
    pub hubs: Vec<Hub<S>>,
    /// The links.
    links: Vec<Link>,
    /// Every acknowledged write, in order.
    pub writes: Vec<Write>,
    /// The last stamp each hub issued (the agents' view: survives crashes).
    issued: BTreeMap<usize, Stamp>,
    /// Per hub, whether its store changed since its sessions were last polled.
    dirty: Vec<bool>,
    /// The stores' change counters, summed, when last looked at.
    changes_seen: u64,
    /// When a store last changed.
    last_change: u64,
    /// When a page of ops was last sent.
    last_ops_sent: u64,
    /// When writes and faults stop.
    chaos_end: u64,
    /// Whether the chaos phase is over.
    healed: bool,
    /// When the next random write is due.
    next_write: u64,
    /// When the next random fault is due.
    next_fault: u64,
    /// Random writes still to make.
    writes_left: usize,
    /// When hubs next collect tombstones.
    next_collect: u64,
    /// What happened.
    pub counts: Counts,
}

/// A tenant id.
pub fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

/// A region.
pub fn region(name: &str) -> Region {
    Region::new(name).expect("valid region")
}

impl<S: SimStore> Sim<S> {
    /// A federation shaped by `p`, its links connecting.
    pub fn new(p: Params) -> Self {
        let mut rng = Rng::new(p.seed);
        let config = LinkConfig {
            page_ops: rng.range(1, 8) as usize,
            page_bytes: [300, 2_000, 1 << 20][rng.index(3)],
            window: rng.range(1, 4) as usize,
            window_bytes: [500, 4_000, 1 << 20][rng.index(3)],
            sync_interval_ms: rng.range(30, 200),
        };
        let tenants = vec![tenant("t-open"), tenant("t-shared"), tenant("t-eu")];
        let mut truth = Residency::everywhere();
        truth.restrict(tenant("t-eu"), vec![region("eu")]);
        let (regions, links) = p.topology.build(p.hubs, p.center_eu);
        let hubs = regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let id = HubId::new(format!("h{i}")).expect("valid hub id");
                let random = rng.range(0, 2 * OFFSET_MS) as i64 - OFFSET_MS as i64;
                let offset_ms = match (&p.offsets, p.skewed) {
                    (Some(offsets), _) => offsets[i],
                    (None, Some((s, ahead))) if s == i => ahead as i64,
                    _ => random,
                };
                let residency = if p.misconfigured == Some(i) {
                    Residency::everywhere()
                } else {
                    truth.clone()
                };
                Hub {
                    store: S::open(&id, MAX_SKEW_MS),
                    id,
                    region: region(r),
                    offset_ms,
                    residency,
                    changes: Cell::new(0),
                    down_until: None,
                }
            })
            .collect::<Vec<_>>();
        let both_dial = p.topology == Topology::Mesh;
        let links = links
            .into_iter()
            .map(|(a, b)| Link {
                ends: [a, b],
                dials: [true, both_dial],
                reached: [false, false],
                conn: None,
                down_until: 0,
                reconnect_at: 0,
                sent: [VecDeque::new(), VecDeque::new()],
            })
            .collect();
        let n = hubs.len();
        let writes_left = p.writes;
        let gap = (p.chaos_ms / (p.writes.max(1) as u64)).max(1);
        let mut sim = Self {
            chaos_end: T0 + p.chaos_ms,
            healed: p.chaos_ms == 0,
            next_write: T0 + rng.range(0, gap),
            next_fault: T0 + rng.range(10, 60),
            p,
            rng,
            config,
            truth,
            tenants,
            now: T0,
            hubs,
            links,
            writes: Vec::new(),
            issued: BTreeMap::new(),
            dirty: vec![false; n],
            changes_seen: 0,
            last_change: T0,
            last_ops_sent: T0,
            writes_left,
            next_collect: T0,
            counts: Counts::default(),
        };
        sim.connect_due();
        sim
    }

    /// Hub `h`'s physical clock.
    pub fn hub_now(&self, h: usize) -> u64 {
        self.now.saturating_add_signed(self.hubs[h].offset_ms)
    }

    /// Whether hub `h` is running.
    fn is_up(&self, h: usize) -> bool {
        self.hubs[h].down_until.is_none()
    }

    // -- faults --------------------------------------------------------------------------

    /// Breaks link `l`'s connection: queued bytes and both sessions are lost; the dialer
    /// tries again shortly.
    fn break_link(&mut self, l: usize) {
        if self.links[l].conn.take().is_some() {
            self.counts.breaks += 1;
        }
        self.links[l].reconnect_at = self.now + self.rng.range(1, 30);
    }

    /// Cuts every link between `side` and the other hubs for `ms`.
    pub fn partition(&mut self, side: &BTreeSet<usize>, ms: u64) {
        self.counts.partitions += 1;
        for l in 0..self.links.len() {
            let [a, b] = self.links[l].ends;
            if side.contains(&a) != side.contains(&b) {
                self.links[l].down_until = self.links[l].down_until.max(self.now + ms);
                self.break_link(l);
            }
        }
    }

    /// Crashes hub `h` for `ms`: its connections and sessions are lost, its store is not.
    pub fn crash(&mut self, h: usize, ms: u64) {
        if !self.is_up(h) {
            return;
        }
        self.counts.crashes += 1;
        self.hubs[h].down_until = Some(self.now + ms);
        for l in 0..self.links.len() {
            let link = &mut self.links[l];
            if let Some(side) = link.ends.iter().position(|&e| e == h) {
                link.reached[side] = false;
                self.break_link(l);
            }
        }
    }

    /// One fault of an enabled kind.
    fn random_fault(&mut self) {
        let mut kinds = Vec::new();
        if self.p.breaks {
            kinds.push(0);
        }
        if self.p.partitions {
            kinds.push(1);
        }
        if self.p.crashes {
            kinds.push(2);
        }
        if self.p.replays {
            kinds.push(3);
        }
        if self.p.long_outages && self.counts.long_outages < 2 {
            kinds.push(4);
        }
        if kinds.is_empty() {
            return;
        }
        match kinds[self.rng.index(kinds.len())] {
            0 => {
                let l = self.rng.index(self.links.len());
                self.break_link(l);
            }
            1 => {
                let side: BTreeSet<usize> = (0..self.hubs.len())
                    .filter(|_| self.rng.chance(50))
                    .collect();
                if !side.is_empty() && side.len() < self.hubs.len() {
                    let ms = self.rng.range(20, 200);
                    self.partition(&side, ms);
                }
            }
            2 => {
                let h = self.rng.index(self.hubs.len());
                let ms = self.rng.range(10, 150);
                self.crash(h, ms);
            }
            3 => {
                let l = self.rng.index(self.links.len());
                let to = self.rng.index(2);
                let sent = &self.links[l].sent[to];
                if !sent.is_empty() {
                    let page = sent[self.rng.index(sent.len())].clone();
                    self.replay(l, to, page);
                }
            }
            _ => {
                // One hub away until about the end of the chaos phase (or for good, until
                // the network heals): whatever is deleted meanwhile is collected elsewhere
                // long before it is back.
                let h = self.rng.index(self.hubs.len());
                let ms = self.chaos_end.saturating_sub(self.now) + self.rng.range(0, 100);
                if self.rng.chance(50) {
                    if self.is_up(h) {
                        self.counts.long_outages += 1;
                    }
                    self.crash(h, ms);
                } else {
                    self.counts.long_outages += 1;
                    self.partition(&BTreeSet::from([h]), ms);
                }
            }
        }
    }

    /// Delivers every page the links kept (see [`Self::replay`]) again, newest first: the
    /// reverse of the order they were sent in.
    pub fn replay_kept_pages(&mut self) -> usize {
        let mut replayed = 0;
        for l in 0..self.links.len() {
            for to in 0..2 {
                let pages: Vec<OpsPage> = self.links[l].sent[to].iter().rev().cloned().collect();
                replayed += pages.len();
                for page in pages {
                    self.replay(l, to, page);
                }
            }
        }
        replayed
    }

    /// Delivers `page`, sent earlier on link `l` to its end `to`, again: its receiver (if it is
    /// up) takes it on a new session with the sender, as if a stale connection had delivered
    /// it late. What the session answers is lost.
    pub fn replay(&mut self, l: usize, to: usize, page: OpsPage) {
        let ends = self.links[l].ends;
        let (h, from) = (ends[to], ends[1 - to]);
        if !self.is_up(h) {
            return;
        }
        self.counts.replays += 1;
        let now = self.hub_now(h);
        let (hub, sender) = (&self.hubs[h], &self.hubs[from]);
        let mut session = LinkSession::new(
            hub.id.clone(),
            hub.region.clone(),
            sender.id.clone(),
            Some(sender.region.clone()),
            hub.residency.clone(),
            self.config.clone(),
        );
        let store = Guarded {
            hub,
            from: &sender.id,
            truth: &self.truth,
        };
        let before = hub.changes.get();
        hub.store.set_clock(now);
        let hello = FedMessage::Hello(FedHello {
            protocol_version: PROTOCOL_VERSION,
            hub: sender.id.clone(),
            region: sender.region.clone(),
        });
        for msg in [hello, FedMessage::Ops(page)] {
            session
                .handle(msg, &store, now)
                .unwrap_or_else(|e| panic!("hub {} refused a replayed page: {e}", hub.id));
        }
        self.counts.replayed_ops_applied += session.stats().ops_received;
        if hub.changes.get() != before {
            self.dirty[h] = true;
        }
    }

    /// Ends every fault: hubs restart, partitions heal, links reconnect shortly.
    pub fn heal(&mut self) {
        self.healed = true;
        for h in 0..self.hubs.len() {
            if self.hubs[h].down_until.is_some() {
                self.hubs[h].down_until = Some(self.now);
            }
        }
        for l in 0..self.links.len() {
            self.links[l].down_until = self.now;
            if self.links[l].conn.is_none() {
                self.links[l].reconnect_at = self.now + self.rng.range(1, 20);
            }
        }
    }

    /// Restarts crashed hubs whose time has come.
    fn restart_due(&mut self) {
        for h in 0..self.hubs.len() {
            if self.hubs[h].down_until.is_some_and(|t| t <= self.now) {
                self.hubs[h].down_until = None;
                let hub = &mut self.hubs[h];
                hub.store
                    .set_clock(self.now.saturating_add_signed(hub.offset_ms));
                hub.store.restart();
            }
        }
    }

    /// Connects links whose hubs are up, that are not partitioned, and whose dialer is due:
    /// fresh sessions at both ends.
    fn connect_due(&mut self) {
        for l in 0..self.links.len() {
            let link = &self.links[l];
            let [a, b] = link.ends;
            if link.conn.is_some()
                || !self.is_up(a)
                || !self.is_up(b)
                || self.now < link.down_until
                || self.now < link.reconnect_at
            {
                continue;
            }
            let session = |me: &Hub<S>, peer: &Hub<S>| {
                LinkSession::new(
                    me.id.clone(),
                    me.region.clone(),
                    peer.id.clone(),
                    Some(peer.region.clone()),
                    me.residency.clone(),
                    self.config.clone(),
                )
            };
            let (ha, hb) = (&self.hubs[a], &self.hubs[b]);
            let conn = Conn {
                sessions: [session(ha, hb), session(hb, ha)],
                pipes: [Pipe::new(), Pipe::new()],
                woken: [true, true],
                since: self.now,
            };
            self.links[l].conn = Some(conn);
            self.links[l].reached = [true, true];
        }
    }

    // -- agents --------------------------------------------------------------------------

    /// An agent at hub `h` writes to `tenant`: a new episode, an update or a delete of one the
    /// hub holds. Returns the episode written, if the hub accepted the write.
    pub fn write(&mut self, h: usize, tenant: &TenantId) -> Option<EpisodeId> {
        let known = self.hubs[h].store.episode_ids(tenant);
        let roll = self.rng.below(100);
        if known.is_empty() || roll < 50 {
            return Some(self.put(h, tenant));
        }
        let id = known[self.rng.index(known.len())];
        let kind = if roll < 80 {
            let n = self.rng.next_u64() % 1_000_000;
            let fields = self.rng.range(1, 15);
            WriteKind::Update(EpisodeUpdate {
                reward: (fields & 1 != 0).then(|| (n % 101) as f64 / 100.0),
                critique: (fields & 2 != 0)
                    .then(|| (!n.is_multiple_of(3)).then(|| format!("better {n}"))),
                tags: (fields & 4 != 0).then(|| vec![format!("t{}", n % 9)]),
                metadata_json: (fields & 8 != 0).then(|| format!("{{\"m\":{n}}}")),
            })
        } else {
            WriteKind::Delete
        };
        self.commit(h, tenant, id, kind).map(|_| id)
    }

    /// An agent at hub `h` puts a new episode to `tenant`.
    pub fn put(&mut self, h: usize, tenant: &TenantId) -> EpisodeId {
        let physical = self.hub_now(h);
        let (model, dims) = self.hubs[h].store.embedding_model();
        let (episode, kind) = {
            let mut random = [0u8; 10];
            for b in &mut random {
                *b = self.rng.below(256) as u8;
            }
            let id = EpisodeId::from_parts(physical, random);
            let n = self.rng.next_u64() % 1_000_000;
            let content = EpisodeContent {
                agent: Some(AgentId::new(format!("agent-{}", n % 7)).expect("valid agent")),
                session: None,
                task: format!("task {n}"),
                input: format!("input {n}"),
                output: format!("output {n}"),
                metadata_json: if n.is_multiple_of(2) {
                    String::new()
                } else {
                    format!("{{\"n\":{n}}}")
                },
                tokens_used: n % 5000,
                latency_ms: n % 300,
                created: Timestamp(physical),
                origin: Some(self.hubs[h].id.clone()),
                expires_at: None,
                embedding: n.is_multiple_of(3).then(|| Embedding {
                    model,
                    vector: (0..dims as u64)
                        .map(|i| ((n + i) % 17) as f32 / 17.0)
                        .collect(),
                }),
            };
            let kind = WriteKind::Put {
                content: Box::new(content),
                reward: (n % 101) as f64 / 100.0,
                critique: (!n.is_multiple_of(4)).then(|| format!("critique {n}")),
                tags: (0..n % 3)
                    .map(|i| format!("tag-{}", (n + i) % 10))
                    .collect(),
            };
            (id, kind)
        };
        self.commit(h, tenant, episode, kind)
            .expect("a new episode is accepted");
        episode
    }

    /// Hub `h` accepts a write from an agent, unless it is an update or a delete of an episode
    /// it holds as deleted (it answers "not found": nothing is acknowledged). Returns the
    /// write's stamp.
    pub fn commit(
        &mut self,
        h: usize,
        tenant: &TenantId,
        episode: EpisodeId,
        kind: WriteKind,
    ) -> Option<Stamp> {
        assert!(self.is_up(h), "writes go to running hubs");
        let physical = self.hub_now(h);
        let hub = &self.hubs[h];
        hub.store.set_clock(physical);
        if !matches!(kind, WriteKind::Put { .. })
            && hub
                .store
                .get(tenant, &episode)
                .is_some_and(|s| s.is_deleted())
        {
            self.counts.refused_writes += 1;
            return None;
        }
        check_residency(&self.truth, hub, tenant, "a local write");
        let states_max = hub.store.max_stamp();
        let (seq, stamp) = hub.store.write(tenant, episode, &kind, physical);
        hub.changes.set(hub.changes.get() + 1);
        if let Some(held) = &states_max {
            assert!(
                stamp > *held,
                "hub {} issued {stamp:?}, not after {held:?} which it holds",
                hub.id
            );
        }
        if let Some(prev) = self.issued.get(&h) {
            if stamp <= *prev {
                let earlier = self
                    .writes
                    .iter()
                    .find(|w| w.stamp == *prev)
                    .expect("the earlier write");
                panic!(
                    "hub {} issued {stamp:?} after it had issued {prev:?} (to {:?} of {} in {}, \
                     which the hub now holds as {:?}; the largest stamp of its states was {:?})",
                    self.hubs[h].id,
                    earlier.kind,
                    earlier.episode,
                    earlier.tenant,
                    self.hubs[h].store.get(&earlier.tenant, &earlier.episode),
                    states_max,
                );
            }
        }
        self.issued.insert(h, stamp.clone());
        self.writes.push(Write {
            tenant: tenant.clone(),
            episode,
            origin: h,
            seq,
            stamp: stamp.clone(),
            kind,
        });
        self.counts.writes += 1;
        self.dirty[h] = true;
        Some(stamp)
    }

    /// Tenants an agent at hub `h` may write to.
    fn writable(&self, h: usize) -> Vec<TenantId> {
        self.tenants
            .iter()
            .filter(|t| self.truth.allows(t, &self.hubs[h].region))
            .cloned()
            .collect()
    }

    /// A write at a random running hub to a random tenant it may hold.
    fn random_write(&mut self) {
        let up: Vec<usize> = (0..self.hubs.len()).filter(|&h| self.is_up(h)).collect();
        if up.is_empty() {
            return;
        }
        let h = up[self.rng.index(up.len())];
        let tenants = self.writable(h);
        let t = tenants[self.rng.index(tenants.len())].clone();
        self.write(h, &t);
    }

    // -- the loop ------------------------------------------------------------------------

    /// Everything due at `self.now`.
    fn step(&mut self) {
        if !self.healed {
            if self.now >= self.chaos_end {
                self.heal();
            } else {
                while self.writes_left > 0 && self.next_write <= self.now {
                    self.random_write();
                    self.writes_left -= 1;
                    let gap = (self.p.chaos_ms / (self.p.writes.max(1) as u64)).max(1);
                    self.next_write += self.rng.range(0, 2 * gap);
                }
                while self.next_fault <= self.now {
                    self.random_fault();
                    self.next_fault += self.rng.range(10, 80);
                }
            }
        }
        self.restart_due();
        self.connect_due();
        self.deliver_due();
        self.poll_sessions();
        if let Some((_, every)) = self.p.collection {
            if self.now >= self.next_collect {
                self.collect_everywhere();
                self.next_collect = self.now + every;
            }
        }
        let changes: u64 = self.hubs.iter().map(|h| h.changes.get()).sum();
        if changes != self.changes_seen {
            self.changes_seen = changes;
            self.last_change = self.now;
        }
    }

    /// Delivers the chunks that have arrived, decoding frames and handing messages to the
    /// sessions.
    fn deliver_due(&mut self) {
        for l in 0..self.links.len() {
            let ends = self.links[l].ends;
            let nows = [self.hub_now(ends[0]), self.hub_now(ends[1])];
            let Some(conn) = self.links[l].conn.as_mut() else {
                continue;
            };
            for side in 0..2 {
                let h = ends[side];
                let hub = &self.hubs[h];
                let store = Guarded {
                    hub,
                    from: &self.hubs[ends[1 - side]].id,
                    truth: &self.truth,
                };
                let before = hub.changes.get();
                let pipe = &mut conn.pipes[side];
                while pipe.queue.front().is_some_and(|(at, _)| *at <= self.now) {
                    let (_, bytes) = pipe.queue.pop_front().expect("a queued chunk");
                    pipe.decoder.push(&bytes);
                    while let Some(frame) = pipe.decoder.next_frame().expect("a valid frame") {
                        let msg = FedMessage::decode(&frame).expect("a valid message");
                        hub.store.set_clock(nows[side]);
                        let hello = matches!(msg, FedMessage::Hello(_));
                        conn.sessions[side]
                            .handle(msg, &store, nows[side])
                            .unwrap_or_else(|e| {
                                panic!(
                                    "hub {} closed its link with h{}: {e}",
                                    hub.id,
                                    ends[1 - side]
                                )
                            });
                        conn.woken[side] = true;
                        // A hub records a peer as soon as its Hello is in.
                        let recording = self
                            .p
                            .collection
                            .is_some_and(|(c, _)| c == Collection::KnownHolders);
                        if let Some(peer) =
                            conn.sessions[side].peer().filter(|_| hello && recording)
                        {
                            hub.store.record_peer(&peer.hub, &peer.region);
                        }
                    }
                }
                if hub.changes.get() != before {
                    self.dirty[h] = true;
                }
            }
        }
    }

    /// Ticks and polls every session that has something to do (a message arrived, its store
    /// changed, or its timer fired) until it has nothing more to send, and puts what it sends
    /// on the wire.
    fn poll_sessions(&mut self) {
        for l in 0..self.links.len() {
            let ends = self.links[l].ends;
            let nows = [self.hub_now(ends[0]), self.hub_now(ends[1])];
            let Link { conn, sent, .. } = &mut self.links[l];
            let Some(conn) = conn.as_mut() else {
                continue;
            };
            for side in 0..2 {
                let h = ends[side];
                let session = &mut conn.sessions[side];
                let tick_due = session.peer().is_some() && nows[side] >= session.next_tick_ms();
                if !(conn.woken[side] || self.dirty[h] || tick_due) {
                    continue;
                }
                conn.woken[side] = false;
                if self.dirty[h] {
                    session.notify_all();
                }
                let store = Guarded {
                    hub: &self.hubs[h],
                    from: &self.hubs[ends[1 - side]].id,
                    truth: &self.truth,
                };
                store.hub.store.set_clock(nows[side]);
                session.tick(&store, nows[side]);
                while let Some(msg) = session.poll_transmit(&store, nows[side]) {
                    let to = &self.hubs[ends[1 - side]];
                    check_sent(&self.hubs[h], to, &self.truth, &msg);
                    if let FedMessage::Ops(page) = &msg {
                        self.last_ops_sent = self.now;
                        let replayable = &mut sent[1 - side];
                        if replayable.len() == REPLAYABLE_PAGES {
                            replayable.pop_front();
                        }
                        replayable.push_back(page.clone());
                    }
                    self.counts.messages += 1;
                    let bytes = msg.encode();
                    let pipe = &mut conn.pipes[1 - side];
                    let mut at =
                        (self.now + self.rng.range(1, self.p.max_delay_ms)).max(pipe.last_at);
                    if bytes.len() > 1 && self.rng.chance(25) {
                        // Split the frame: the decoder must put it back together.
                        let cut = self.rng.range(1, bytes.len() as u64 - 1) as usize;
                        pipe.queue.push_back((at, bytes[..cut].to_vec()));
                        at += self.rng.range(0, 3);
                        pipe.queue.push_back((at, bytes[cut..].to_vec()));
                    } else {
                        pipe.queue.push_back((at, bytes));
                    }
                    pipe.last_at = at;
                }
            }
        }
        self.dirty.iter_mut().for_each(|d| *d = false);
    }

    /// When something is next due.
    fn next_event(&self) -> u64 {
        let mut t = u64::MAX;
        if !self.healed {
            t = t.min(self.chaos_end).min(self.next_fault);
            if self.writes_left > 0 {
                t = t.min(self.next_write);
            }
        }
        for hub in &self.hubs {
            if let Some(until) = hub.down_until {
                t = t.min(until);
            }
        }
        if self.p.collection.is_some() {
            t = t.min(self.next_collect);
        }
        for link in &self.links {
            match &link.conn {
                Some(conn) => {
                    for side in 0..2 {
                        if let Some((at, _)) = conn.pipes[side].queue.front() {
                            t = t.min(*at);
                        }
                        let s = &conn.sessions[side];
                        if s.peer().is_some() {
                            let offset = self.hubs[link.ends[side]].offset_ms;
                            t = t.min(s.next_tick_ms().saturating_add_signed(-offset));
                        }
                    }
                }
                None => {
                    if link.ends.iter().all(|&h| self.is_up(h)) {
                        t = t.min(link.down_until.max(link.reconnect_at));
                    }
                }
            }
        }
        t.max(self.now + 1)
    }

    /// Runs until `end` (simulated time).
    fn run_until(&mut self, end: u64) {
        while self.now < end {
            self.step();
            self.now = self.next_event().min(end);
        }
        self.step();
    }

    /// Runs for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Whether every link has been connected for at least `ms`.
    fn connected_for(&self, ms: u64) -> bool {
        self.links
            .iter()
            .all(|l| l.conn.as_ref().is_some_and(|c| c.since + ms <= self.now))
    }

    /// Whether no page is waiting for its answer.
    fn settled(&self) -> bool {
        self.links.iter().all(|l| {
            l.conn
                .as_ref()
                .is_some_and(|c| c.sessions.iter().all(|s| s.in_flight() == 0))
        })
    }

    /// Heals the network and runs until no store has changed for a while. With `strict`, no
    /// page may be sent in that while either and nothing may be in flight: the protocol must
    /// go fully quiet, not merely stop making progress.
    pub fn quiesce(&mut self, strict: bool) {
        if !self.healed {
            self.run_until(self.chaos_end);
        }
        self.heal();
        let deadline = self.now + QUIESCE_LIMIT_MS;
        let window = 3 * self.config.sync_interval_ms + 10 * self.p.max_delay_ms + 50;
        loop {
            self.step();
            let quiet = self.now >= self.last_change + window
                && self.connected_for(window)
                && (!strict || (self.now >= self.last_ops_sent + window && self.settled()));
            if quiet {
                return;
            }
            assert!(
                self.now < deadline,
                "the network did not go quiet within {QUIESCE_LIMIT_MS} ms of healing \
                 (last change at +{} ms, last page at +{} ms)",
                self.last_change - T0,
                self.last_ops_sent - T0
            );
            self.now = self.next_event();
        }
    }

    // -- tombstone collection ------------------------------------------------------------

    /// Every running hub collects the tombstones its rule allows.
    pub fn collect_everywhere(&mut self) {
        let Some((rule, _)) = self.p.collection else {
            return;
        };
        for h in 0..self.hubs.len() {
            if self.is_up(h) {
                self.counts.collected += match rule {
                    Collection::KnownHolders => self.collect_known_holders(h),
                    Collection::ConnectedLinks => self.collect_connected_links(h),
                };
            }
        }
    }

    /// The links of hub `h`: (the link, `h`'s end of it).
    fn links_of(&self, h: usize) -> impl Iterator<Item = (&Link, usize)> {
        self.links
            .iter()
            .filter_map(move |l| l.ends.iter().position(|&e| e == h).map(|side| (l, side)))
    }

    /// The hubs' rule: what every hub known to hold the tenant acknowledged, connected or not.
    fn collect_known_holders(&self, h: usize) -> u64 {
        let hub = &self.hubs[h];
        // A hub waits until every link it dials has been up since it started and the peer at
        // its other end has been recorded (its Hello handled, on this link or an earlier one):
        // a hub it has never heard from may hold the tenant without its knowing. A connection
        // alone is not enough (the hubs' collection asks for the record too): one that breaks
        // before the peer's Hello is in leaves the peer unknown, and this hub would collect a
        // tombstone the peer never acknowledged, then send the peer the delete as a collected
        // op while the peer holds the episode live (from a hub that did hear its Hello).
        let recorded = hub.store.peers();
        if self.links_of(h).any(|(l, side)| {
            l.dials[side]
                && !(l.reached[side] && recorded.contains(&self.hubs[l.ends[1 - side]].id))
        }) {
            return 0;
        }
        // What the links up now know, recorded first (as a hub does at each collection).
        for (link, side) in self.links_of(h) {
            let Some(conn) = &link.conn else { continue };
            let session = &conn.sessions[side];
            let Some(peer) = session.peer() else { continue };
            let acked: Vec<(TenantId, VersionVector)> = session
                .acked()
                .iter()
                .map(|(t, vv)| (t.clone(), vv.clone()))
                .collect();
            hub.store.record_peer_acks(&peer.hub, &peer.region, &acked);
        }
        let mut collected = 0;
        for tenant in hub.store.tenants() {
            let peers = hub.store.peer_acks(&tenant);
            let through = collectable_through(
                &tenant,
                &hub.store.version_vector(&tenant),
                &hub.residency,
                peers.values().map(|a| (&a.region, &a.acked)),
            );
            if let Some(acked) = through {
                collected += hub.store.collect_tombstones(&tenant, &acked);
            }
        }
        collected
    }

    /// The wrong rule of [`Collection::ConnectedLinks`].
    fn collect_connected_links(&self, h: usize) -> u64 {
        let hub = &self.hubs[h];
        let connected: Vec<&LinkSession> = self
            .links_of(h)
            .filter_map(|(l, side)| l.conn.as_ref().map(|c| &c.sessions[side]))
            .filter(|s| s.peer().is_some())
            .collect();
        let dialled_up = self
            .links_of(h)
            .all(|(l, side)| !l.dials[side] || l.conn.is_some());
        if connected.is_empty() || !dialled_up {
            return 0;
        }
        let mut collected = 0;
        for tenant in hub.store.tenants() {
            let mut acked: Option<VersionVector> = None;
            for session in &connected {
                if session
                    .peer()
                    .is_some_and(|p| !hub.residency.allows(&tenant, &p.region))
                {
                    continue;
                }
                let peer_vv = session.acked().get(&tenant).cloned().unwrap_or_default();
                acked = Some(match acked {
                    None => peer_vv,
                    Some(a) => a.meet(&peer_vv),
                });
            }
            let acked = acked.unwrap_or_else(|| hub.store.version_vector(&tenant));
            collected += hub.store.collect_tombstones(&tenant, &acked);
        }
        collected
    }

    /// How many tombstones the hubs hold, across tenants.
    pub fn tombstones_held(&self) -> usize {
        self.hubs
            .iter()
            .flat_map(|hub| {
                self.tenants
                    .iter()
                    .flat_map(|t| hub.store.tenant(t).episodes.into_values())
            })
            .filter(ReplicaState::is_deleted)
            .count()
    }

    // -- checks --------------------------------------------------------------------------

    /// The ops hub `h` can receive of `tenant`: all of the hubs connected to it through hubs
    /// where the tenant may be stored. A hub with a clock beyond the skew bound only reaches
    /// itself, except for ops whose effect a tombstone absorbed (their state carries no
    /// far-future stamp any more); `held` (what `h` holds) tells how many of those `h` took.
    fn sources(&self, tenant: &TenantId, h: usize, held: &VersionVector) -> Sources {
        let allowed = |x: usize| self.truth.allows(tenant, &self.hubs[x].region);
        let skewed = self.p.skewed.map(|(s, _)| s);
        let mut seen = Sources::new();
        if !allowed(h) {
            return seen;
        }
        let mut todo = vec![h];
        seen.insert(h, u64::MAX);
        while let Some(x) = todo.pop() {
            if skewed == Some(x) && x != h {
                continue;
            }
            for link in &self.links {
                let [a, b] = link.ends;
                let y = if a == x {
                    b
                } else if b == x {
                    a
                } else {
                    continue;
                };
                if !allowed(y) || seen.contains_key(&y) {
                    continue;
                }
                if skewed == Some(y) {
                    seen.insert(y, held.get(&self.hubs[y].id));
                } else {
                    seen.insert(y, u64::MAX);
                    todo.push(y);
                }
            }
        }
        seen
    }

    /// Pages refused by the hub that received them, over the links connected now.
    pub fn refused_here(&self) -> u64 {
        self.links
            .iter()
            .filter_map(|l| l.conn.as_ref())
            .flat_map(|c| c.sessions.iter())
            .map(|s| s.stats().refused_here)
            .sum()
    }

    /// The invariants after quiescence.
    pub fn check(&self) {
        let ids: Vec<HubId> = self.hubs.iter().map(|h| h.id.clone()).collect();
        for tenant in &self.tenants {
            let mut by_sources: BTreeMap<Sources, (usize, TenantData)> = BTreeMap::new();
            for (h, hub) in self.hubs.iter().enumerate() {
                let held = hub.store.tenant(tenant);
                let sources = self.sources(tenant, h, &held.vv);
                if sources.is_empty() {
                    assert!(
                        held.episodes.is_empty() && held.vv.is_empty(),
                        "tenant {tenant} may not be stored in {} but hub {} holds {:?}",
                        hub.region,
                        hub.id,
                        held.vv
                    );
                    continue;
                }
                if let Some((s, _)) = self.p.skewed.filter(|(s, _)| *s != h) {
                    // Ops of the skewed hub got through only where a tombstone stamped by
                    // another hub had absorbed them (and may have been collected since).
                    let to = sources.get(&s).copied().unwrap_or(0);
                    for w in self
                        .writes
                        .iter()
                        .filter(|w| &w.tenant == tenant && w.origin == s && w.seq <= to)
                    {
                        match held.episodes.get(&w.episode) {
                            Some(ReplicaState::Deleted(d)) if d.hub != ids[s] => {}
                            None if self.p.collection.is_some() => {}
                            other => panic!(
                                "hub {} took op ({}, {}) stamped {:?}; it holds {other:?}",
                                hub.id, ids[s], w.seq, w.stamp
                            ),
                        }
                    }
                }
                let (mut episodes, vv) = expected(&self.writes, &ids, tenant, &sources);
                // A tombstone may have been collected.
                episodes.retain(|id, state| !state.is_deleted() || held.episodes.contains_key(id));
                let comparable = comparable(&held.episodes, &episodes);
                assert!(
                    comparable == episodes,
                    "hub {} does not hold what was written to tenant {tenant}:\n{}",
                    hub.id,
                    diff(&comparable, &episodes)
                );
                assert_eq!(held.vv, vv, "version vector of {tenant} at hub {}", hub.id);
                for (origin, seqs) in &held.log {
                    assert_eq!(seqs.len() as u64, held.vv.get(origin), "op log of {origin}");
                }
                // The store's other ways of reading agree with what its ops carry.
                assert_eq!(
                    hub.store.episode_ids(tenant),
                    held.episodes.keys().copied().collect::<Vec<_>>(),
                    "episodes of {tenant} at hub {}",
                    hub.id
                );
                for (id, state) in &held.episodes {
                    let read = hub.store.get(tenant, id).map(|s| without_embedding(&s));
                    assert!(
                        read.as_ref() == Some(&without_embedding(state)),
                        "hub {} reads {id} of {tenant} as {read:?}; its ops carry {:?}",
                        hub.id,
                        shown(state)
                    );
                }
                // Hubs that received the same ops hold the same state (but for tombstones one
                // of them collected).
                if let Some((first, theirs)) = by_sources.get(&sources) {
                    let both = |of: &TenantData, other: &TenantData| {
                        let mut e = of.episodes.clone();
                        e.retain(|id, s| !s.is_deleted() || other.episodes.contains_key(id));
                        e
                    };
                    let (ours, others) = (both(&held, theirs), both(theirs, &held));
                    assert!(
                        ours == others,
                        "hubs {} and {} differ on {tenant}:\n{}",
                        ids[*first],
                        hub.id,
                        diff(&ours, &others)
                    );
                    assert_eq!(theirs.vv, held.vv);
                } else {
                    by_sources.insert(sources, (h, held));
                }
            }
        }
    }

    /// After a strict quiescence: every session knows exactly what its peer holds.
    pub fn check_sessions(&self) {
        for link in &self.links {
            let conn = link.conn.as_ref().expect("every link is connected");
            for side in 0..2 {
                let s = &conn.sessions[side];
                let peer = &self.hubs[link.ends[1 - side]];
                for tenant in &self.tenants {
                    // The peer tells us what it holds of tenants it may send us.
                    if !conn.sessions[1 - side].shares(tenant) {
                        continue;
                    }
                    let acked = s.acked().get(tenant).cloned().unwrap_or_default();
                    assert_eq!(
                        acked,
                        peer.store.version_vector(tenant),
                        "hub {}'s view of {tenant} at {}",
                        self.hubs[link.ends[side]].id,
                        peer.id
                    );
                }
            }
        }
    }
}

/// Residency on the wire: a correctly configured hub never sends a tenant's ops (or even its
/// version vector) to a hub in a region the tenant may not be stored in.
fn check_sent<S>(from: &Hub<S>, to: &Hub<S>, truth: &Residency, msg: &FedMessage) {
    if from.residency != *truth {
        return;
    }
    match msg {
        FedMessage::Ops(page) => assert!(
            truth.allows(&page.tenant, &to.region),
            "hub {} sent ops of {} to hub {} in {}",
            from.id,
            page.tenant,
            to.id,
            to.region
        ),
        FedMessage::Vectors(v) => {
            for (t, _) in &v.tenants {
                assert!(
                    truth.allows(t, &to.region),
                    "hub {} sent the vector of {t} to hub {} in {}",
                    from.id,
                    to.id,
                    to.region
                );
            }
        }
        _ => {}
    }
}

/// One random run: chaos, heal, quiescence, invariants; then one more collection everywhere,
/// which must leave no tombstone (every hub has acknowledged everything), and the invariants
/// again.
pub fn run_seed<S: SimStore>(seed: u64) -> Sim<S> {
    run_params(Params::random(seed))
}

/// [`run_seed`] with the parameters given.
///
/// With a hub beyond the skew bound the network never goes fully quiet (its refused pages are
/// sent again every `sync_interval`), its peers never hold its ops, and the hubs that do not
/// hold them keep the tombstones of those tenants: the run waits only for the stores to stop
/// changing, and the last collection is checked by the invariants alone.
pub fn run_params<S: SimStore>(p: Params) -> Sim<S> {
    let mut sim = Sim::new(p);
    let skewed = sim.p.skewed.is_some();
    sim.quiesce(!skewed);
    sim.check();
    if !skewed {
        sim.check_sessions();
    }
    if sim.p.collection.is_some() {
        sim.collect_everywhere();
        if skewed {
            // What was collected travels as collected ops to no hub that holds it live.
            let window = 3 * sim.config.sync_interval_ms;
            sim.run_for(window);
        } else {
            assert_eq!(
                sim.tombstones_held(),
                0,
                "tombstones left after a collection on a quiet network"
            );
        }
        sim.check();
    }
    sim
}

/// Runs `f`; if it panics, prints `report()` (how to replay the run) first.
pub fn on_failure<T>(report: impl Fn() -> String, f: impl FnOnce() -> T) -> T {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}", report());
            panic::resume_unwind(e)
        }
    }
}

/// A number from the environment.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// The seeds to run: just `FED_SIM_SEED` when it is set, else `0..` the number in
/// `count_var` (`default` when unset).
pub fn seeds(count_var: &str, default: u64) -> Vec<u64> {
    match env_u64("FED_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64(count_var).unwrap_or(default)).collect(),
    }
}
