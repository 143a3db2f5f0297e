//! Deterministic simulation of federation: 3–7 hubs in one process, each with a [`LinkSession`]
//! per link over an in-memory [`ReplicaStore`], on a simulated network with delays, broken
//! connections, partitions, hub crashes and clock skew. Every run is replayable from one `u64`
//! seed: all randomness comes from one seeded generator and every collection iterates in a
//! fixed order.
//!
//! - Hubs: hierarchical (a global root, an eu and a us regional, edges under them), mesh, or
//!   hub-and-spoke; one tenant is restricted to the eu. Each hub's physical clock is off by up
//!   to ±5 s (the skew bound is 60 s). A crash loses the hub's sessions and clock, never its
//!   store; the clock restarts from the largest stamp stored.
//! - Links: a connection carries ordered bytes each way, like a QUIC stream; every message is
//!   encoded, sometimes split, and decoded by a [`FrameDecoder`] at the other end. A broken
//!   connection loses what it carried and both sessions; the dialer makes a new one.
//! - Time advances in milliseconds, straight to the next moment something is due (a delivery,
//!   a session timer, a write, a fault, a reconnect). A session is ticked and polled until it
//!   has nothing more to send whenever a message reached it, its store changed or its timer
//!   fired.
//!
//! After the faults stop and the network heals, the simulation runs until nothing changes any
//! more and then checks: hubs that can reach each other hold identical state and version
//! vectors, equal to what the acknowledged writes imply (computed without the merge code); every
//! write acknowledged to an agent is there (or deleted, when a delete was issued anywhere);
//! every session knows what its peer holds. Residency is checked on every apply and on every
//! message sent, and every hub's stamps must increase, across crashes.
//!
//! `FED_SIM_SEEDS=<n>` sets how many seeds `many_seeds` runs (default 1000);
//! `FED_SIM_SEED=<seed>` replays exactly one. A failing seed is printed as `FED_SIM_SEED=<seed>`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{self, AssertUnwindSafe};

use agentdb_core::{
    AgentId, Causality, ClockSkew, Embedding, EpisodeContent, EpisodeId, EpisodeUpdate, HlcClock,
    HubId, LiveEpisode, Lww, ModelId, Op, Region, ReplicaState, Residency, Stamp, TenantId,
    Timestamp, VersionVector,
};
use agentdb_proto::fed::{
    Applied, FedMessage, LinkConfig, LinkSession, ReplicaStore, StoreFailure,
};
use agentdb_proto::{FrameDecoder, MAX_FRAME_LEN};

/// The simulated epoch.
const T0: u64 = 1_700_000_000_000;
/// The clock-skew bound of every hub.
const MAX_SKEW_MS: u64 = 60_000;
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

// ---- The store model ----------------------------------------------------------------------

/// What a hub holds of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
struct TenantData {
    /// Per episode, its state here.
    episodes: BTreeMap<EpisodeId, ReplicaState>,
    /// Per origin hub, the episode each op touched: index = seq - 1.
    log: BTreeMap<HubId, Vec<EpisodeId>>,
    /// The ops applied: every origin's, contiguously from 1.
    vv: VersionVector,
}

/// Everything a store holds, behind the [`RefCell`] that [`ReplicaStore`]'s `&self` methods
/// need.
#[derive(Debug)]
struct StoreState {
    /// Per tenant.
    tenants: BTreeMap<TenantId, TenantData>,
    /// The hub's clock: stamps local writes, observes received ones. Lost in a crash.
    clock: HlcClock,
    /// The largest stamp ever stored, kept durably next to the states: a tombstone absorbs
    /// the later stamps of the updates it wins over, so the states alone may no longer hold
    /// it.
    highest: Option<Stamp>,
}

/// An in-memory replica store. Everything applied is durable: a crash loses only the clock,
/// which restarts from the largest stamp stored.
#[derive(Debug)]
struct ModelStore {
    /// The hub it belongs to.
    hub: HubId,
    /// Where the hub runs.
    region: Region,
    /// The residency rules as they really are (a hub's own configuration may be wrong).
    truth: Residency,
    /// The contents.
    state: RefCell<StoreState>,
    /// Ops applied or written so far: changes whenever the store does.
    changes: Cell<u64>,
}

impl ModelStore {
    /// An empty store of hub `hub` in `region`.
    fn new(hub: HubId, region: Region, truth: Residency) -> Self {
        Self {
            hub,
            region,
            truth,
            state: RefCell::new(StoreState {
                tenants: BTreeMap::new(),
                clock: HlcClock::new(MAX_SKEW_MS),
                highest: None,
            }),
            changes: Cell::new(0),
        }
    }

    /// Fails the run if `tenant` may not be stored here.
    fn check_residency(&self, tenant: &TenantId, what: &str) {
        assert!(
            self.truth.allows(tenant, &self.region),
            "residency violated: {what} stored tenant {tenant} at hub {} in region {}",
            self.hub,
            self.region
        );
    }

    /// The largest stamp of the states held, across tenants.
    fn max_stamp(&self) -> Option<Stamp> {
        let st = self.state.borrow();
        st.tenants
            .values()
            .flat_map(|d| d.episodes.values())
            .map(|s| s.max_stamp().clone())
            .max()
    }

    /// The largest stamp ever stored.
    fn highest(&self) -> Option<Stamp> {
        self.state.borrow().highest.clone().max(self.max_stamp())
    }

    /// A restart: the clock resumes from the largest stamp ever stored (kept durably, as the
    /// engine keeps its clock's high-water mark).
    fn restart(&self) {
        let last = self.highest().map(|s| s.hlc).unwrap_or_default();
        self.state.borrow_mut().clock = HlcClock::resume(last, MAX_SKEW_MS);
    }

    /// A copy of what the store holds of `tenant`.
    fn tenant(&self, tenant: &TenantId) -> TenantData {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// The state of one episode.
    fn get(&self, tenant: &TenantId, episode: &EpisodeId) -> Option<ReplicaState> {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .and_then(|d| d.episodes.get(episode))
            .cloned()
    }

    /// The episodes of `tenant` held, deleted ones included.
    fn episode_ids(&self, tenant: &TenantId) -> Vec<EpisodeId> {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .map(|d| d.episodes.keys().copied().collect())
            .unwrap_or_default()
    }

    /// A write accepted from an agent: stamped with this hub's clock at `physical_ms`, given
    /// the next seq of this hub, applied. `change` builds the written state from the stamp and
    /// the current state. Returns the seq and the stamp.
    fn write(
        &self,
        tenant: &TenantId,
        episode: EpisodeId,
        physical_ms: u64,
        change: impl FnOnce(&Stamp, Option<&ReplicaState>) -> ReplicaState,
    ) -> (u64, Stamp) {
        self.check_residency(tenant, "a local write");
        let held_max = self.max_stamp();
        let mut st = self.state.borrow_mut();
        let StoreState {
            tenants,
            clock,
            highest,
        } = &mut *st;
        let stamp = Stamp::new(clock.now(physical_ms), self.hub.clone());
        if let Some(held) = held_max {
            assert!(
                stamp > held,
                "hub {} issued {stamp:?}, not after {held:?} which it holds",
                self.hub
            );
        }
        *highest = highest.take().max(Some(stamp.clone()));
        let data = tenants.entry(tenant.clone()).or_default();
        let current = data.episodes.get(&episode);
        let written = change(&stamp, current);
        let merged = match current {
            Some(c) => c.clone().join(&written),
            None => written,
        };
        data.episodes.insert(episode, merged);
        let seq = data.vv.get(&self.hub) + 1;
        assert!(data.vv.advance(&self.hub, seq));
        data.log.entry(self.hub.clone()).or_default().push(episode);
        self.changes.set(self.changes.get() + 1);
        (seq, stamp)
    }
}

impl ReplicaStore for ModelStore {
    fn tenants(&self) -> Vec<TenantId> {
        self.state
            .borrow()
            .tenants
            .iter()
            .filter(|(_, d)| !d.vv.is_empty())
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn version_vector(&self, tenant: &TenantId) -> VersionVector {
        self.state
            .borrow()
            .tenants
            .get(tenant)
            .map(|d| d.vv.clone())
            .unwrap_or_default()
    }

    fn ops_since(
        &self,
        tenant: &TenantId,
        known: &VersionVector,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Op>, StoreFailure> {
        let st = self.state.borrow();
        let Some(data) = st.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let mut ops = Vec::new();
        let mut bytes = 0;
        for (origin, from, to) in data.vv.missing_from(known) {
            let log = data
                .log
                .get(origin)
                .ok_or_else(|| StoreFailure(format!("no op log of {origin}")))?;
            for seq in from + 1..=to {
                if ops.len() >= limit {
                    return Ok(ops);
                }
                let episode = *usize::try_from(seq - 1)
                    .ok()
                    .and_then(|i| log.get(i))
                    .ok_or_else(|| StoreFailure(format!("op ({origin}, {seq}) not logged")))?;
                let op = Op {
                    origin: origin.clone(),
                    seq,
                    episode,
                    state: data.episodes.get(&episode).cloned(),
                };
                let size = postcard::to_allocvec(&op)
                    .map_err(|e| StoreFailure(e.to_string()))?
                    .len();
                if !ops.is_empty() && bytes + size > max_bytes {
                    return Ok(ops);
                }
                bytes += size;
                ops.push(op);
            }
        }
        Ok(ops)
    }

    fn apply_ops(
        &self,
        tenant: &TenantId,
        ops: &[Op],
        now_ms: u64,
    ) -> Result<Applied, StoreFailure> {
        self.check_residency(tenant, "a received page");
        let mut st = self.state.borrow_mut();
        let StoreState {
            tenants,
            clock,
            highest,
        } = &mut *st;
        let data = tenants.entry(tenant.clone()).or_default();
        let mut applied = 0;
        let mut newest_ms = None;
        let mut skew: Option<ClockSkew> = None;
        for op in ops {
            if op.seq != data.vv.get(&op.origin) + 1 {
                continue;
            }
            if let Some(state) = &op.state {
                let hlc = state.max_stamp().hlc;
                if let Err(e) = clock.observe(hlc, now_ms) {
                    // This origin's later ops now lie beyond a gap; other origins go on.
                    skew.get_or_insert(e);
                    continue;
                }
                newest_ms = newest_ms.max(Some(hlc.wall_ms));
                *highest = highest.take().max(Some(state.max_stamp().clone()));
                let merged = match data.episodes.remove(&op.episode) {
                    Some(current) => current.join(state),
                    None => state.clone(),
                };
                data.episodes.insert(op.episode, merged);
            }
            assert!(data.vv.advance(&op.origin, op.seq));
            data.log
                .entry(op.origin.clone())
                .or_default()
                .push(op.episode);
            applied += 1;
        }
        self.changes.set(self.changes.get() + applied);
        Ok(Applied {
            vv: data.vv.clone(),
            applied,
            newest_ms,
            skew,
        })
    }
}

// ---- What the agents were told ------------------------------------------------------------

/// A write of an agent that its hub acknowledged.
#[derive(Debug, Clone)]
struct Write {
    /// The tenant written to.
    tenant: TenantId,
    /// The episode written.
    episode: EpisodeId,
    /// The hub that accepted it (index into the simulation's hubs).
    origin: usize,
    /// The op's seq at its origin.
    seq: u64,
    /// The stamp the hub gave it.
    stamp: Stamp,
    /// What was written.
    kind: WriteKind,
}

/// What an agent wrote.
#[derive(Debug, Clone)]
enum WriteKind {
    /// A new episode.
    Put {
        content: Box<EpisodeContent>,
        reward: f64,
        critique: Option<String>,
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
            ReplicaState::Live(Box::new(LiveEpisode {
                created,
                content: (**content).clone(),
                reward: reward.expect("the put sets the reward"),
                critique: critique.expect("the put sets the critique"),
                tags: tags.expect("the put sets the tags"),
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
            None => out.push(format!("missing {id}: expected {e:?}")),
            Some(a) if a != e => {
                out.push(format!("differs {id}:\n  held     {a:?}\n  expected {e:?}"))
            }
            Some(_) => {}
        }
    }
    for (id, a) in actual {
        if !expected.contains_key(id) {
            out.push(format!("unexpected {id}: {a:?}"));
        }
    }
    out.truncate(6);
    out.join("\n")
}

// ---- Topologies and parameters ------------------------------------------------------------

/// How the hubs are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
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

    /// Regions of `n` hubs and the links between them (dialer first). `center_eu` picks the
    /// center's region of a hub-and-spoke topology.
    fn build(self, n: usize, center_eu: bool) -> (Vec<&'static str>, Vec<(usize, usize)>) {
        const SPREAD: [&str; 7] = ["eu", "us", "eu", "global", "us", "eu", "global"];
        match self {
            Self::Hierarchical => {
                let mut regions = vec!["global", "eu", "us"];
                let mut links = vec![(0, 1), (0, 2)];
                for i in 3..n {
                    let (region, parent) = if i % 2 == 1 { ("eu", 1) } else { ("us", 2) };
                    regions.push(region);
                    links.push((parent, i));
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
                let links = (1..n).map(|i| (0, i)).collect();
                (regions, links)
            }
        }
    }
}

/// The shape of one run.
#[derive(Debug, Clone)]
struct Params {
    /// Seeds the simulation's randomness.
    seed: u64,
    /// How the hubs are linked.
    topology: Topology,
    /// How many hubs (3–7).
    hubs: usize,
    /// Agent writes at random hubs during the chaos phase.
    writes: usize,
    /// Length of the chaos phase (writes and faults), ms.
    chaos_ms: u64,
    breaks: bool,
    partitions: bool,
    crashes: bool,
    /// Largest one-way delay of a message, ms.
    max_delay_ms: u64,
    /// A hub whose physical clock is this far ahead (beyond the skew bound).
    skewed: Option<(usize, u64)>,
    /// A hub whose residency configuration is empty (it thinks every tenant may go anywhere).
    misconfigured: Option<usize>,
    /// Whether the center of a hub-and-spoke topology is in the eu (else global).
    center_eu: bool,
    /// Physical clock offsets of the hubs, ms (random within ±5 s when not given).
    offsets: Option<Vec<i64>>,
}

impl Params {
    /// Everything drawn from the seed.
    fn random(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED);
        Self {
            seed,
            topology: Topology::of_seed(seed),
            hubs: rng.range(3, 7) as usize,
            writes: rng.range(30, 100) as usize,
            chaos_ms: rng.range(150, 400),
            breaks: rng.chance(80),
            partitions: rng.chance(70),
            crashes: rng.chance(70),
            max_delay_ms: rng.range(1, 25),
            skewed: None,
            misconfigured: None,
            center_eu: rng.chance(50),
            offsets: None,
        }
    }

    /// A quiet network: no writes or faults unless the test makes them.
    fn quiet(seed: u64, topology: Topology, hubs: usize) -> Self {
        Self {
            seed,
            topology,
            hubs,
            writes: 0,
            chaos_ms: 0,
            breaks: false,
            partitions: false,
            crashes: false,
            max_delay_ms: 10,
            skewed: None,
            misconfigured: None,
            center_eu: true,
            offsets: None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:?}, {} hubs, {} writes over {} ms, faults: breaks {} partitions {} crashes {}",
            self.topology,
            self.hubs,
            self.writes,
            self.chaos_ms,
            self.breaks,
            self.partitions,
            self.crashes
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
    /// The live connection.
    conn: Option<Conn>,
    /// Partitioned until then.
    down_until: u64,
    /// The dialer tries again from then.
    reconnect_at: u64,
}

/// A simulated hub.
#[derive(Debug)]
struct Hub {
    /// Its id.
    id: HubId,
    /// Its region.
    region: Region,
    /// Physical clock = simulated time + offset.
    offset_ms: i64,
    /// The hub's own residency configuration.
    residency: Residency,
    /// Its durable store.
    store: ModelStore,
    /// Crashed until then.
    down_until: Option<u64>,
}

/// Counters of a run, to see that faults did happen.
#[derive(Debug, Default)]
struct Counts {
    messages: u64,
    breaks: u64,
    partitions: u64,
    crashes: u64,
    writes: u64,
    refused_writes: u64,
}

/// The simulated federation.
struct Sim {
    /// The shape of the run.
    p: Params,
    /// All randomness.
    rng: Rng,
    /// Every link's tuning.
    config: LinkConfig,
    /// The residency rules as they really are.
    truth: Residency,
    /// The tenants agents write to.
    tenants: Vec<TenantId>,
    /// Simulated time, ms since the Unix epoch.
    now: u64,
    /// The hubs.
    hubs: Vec<Hub>,
    /// The links.
    links: Vec<Link>,
    /// Every acknowledged write, in order.
    writes: Vec<Write>,
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
    /// What happened.
    counts: Counts,
}

/// A tenant id.
fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

/// A region.
fn region(name: &str) -> Region {
    Region::new(name).expect("valid region")
}

impl Sim {
    /// A federation shaped by `p`, its links connecting.
    fn new(p: Params) -> Self {
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
                    store: ModelStore::new(id.clone(), region(r), truth.clone()),
                    id,
                    region: region(r),
                    offset_ms,
                    residency,
                    down_until: None,
                }
            })
            .collect::<Vec<_>>();
        let links = links
            .into_iter()
            .map(|(a, b)| Link {
                ends: [a, b],
                conn: None,
                down_until: 0,
                reconnect_at: 0,
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
            counts: Counts::default(),
        };
        sim.connect_due();
        sim
    }

    /// Hub `h`'s physical clock.
    fn hub_now(&self, h: usize) -> u64 {
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
    fn partition(&mut self, side: &BTreeSet<usize>, ms: u64) {
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
    fn crash(&mut self, h: usize, ms: u64) {
        if !self.is_up(h) {
            return;
        }
        self.counts.crashes += 1;
        self.hubs[h].down_until = Some(self.now + ms);
        for l in 0..self.links.len() {
            if self.links[l].ends.contains(&h) {
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
            _ => {
                let h = self.rng.index(self.hubs.len());
                let ms = self.rng.range(10, 150);
                self.crash(h, ms);
            }
        }
    }

    /// Ends every fault: hubs restart, partitions heal, links reconnect shortly.
    fn heal(&mut self) {
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
                self.hubs[h].store.restart();
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
            let session = |me: &Hub, peer: &Hub| {
                LinkSession::new(
                    me.id.clone(),
                    me.region.clone(),
                    peer.id.clone(),
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
        }
    }

    // -- agents --------------------------------------------------------------------------

    /// An agent at hub `h` writes to `tenant`: a new episode, an update or a delete of one the
    /// hub holds. Returns the episode written, if the hub accepted the write.
    fn write(&mut self, h: usize, tenant: &TenantId) -> Option<EpisodeId> {
        let known = self.hubs[h].store.episode_ids(tenant);
        let roll = self.rng.below(100);
        if known.is_empty() || roll < 50 {
            return Some(self.put(h, tenant));
        }
        let id = known[self.rng.index(known.len())];
        let kind = if roll < 80 {
            let n = self.rng.next_u64() % 1_000_000;
            let fields = self.rng.range(1, 7);
            WriteKind::Update(EpisodeUpdate {
                reward: (fields & 1 != 0).then(|| (n % 101) as f64 / 100.0),
                critique: (fields & 2 != 0).then(|| (n % 3 != 0).then(|| format!("better {n}"))),
                tags: (fields & 4 != 0).then(|| vec![format!("t{}", n % 9)]),
            })
        } else {
            WriteKind::Delete
        };
        self.commit(h, tenant, id, kind).map(|_| id)
    }

    /// An agent at hub `h` puts a new episode to `tenant`.
    fn put(&mut self, h: usize, tenant: &TenantId) -> EpisodeId {
        let physical = self.hub_now(h);
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
                metadata_json: if n % 2 == 0 {
                    String::new()
                } else {
                    format!("{{\"n\":{n}}}")
                },
                tokens_used: n % 5000,
                latency_ms: n % 300,
                created: Timestamp(physical),
                origin: Some(self.hubs[h].id.clone()),
                embedding: (n % 3 == 0).then(|| Embedding {
                    model: ModelId::new("agentdb-lexical-v1").expect("valid model"),
                    vector: (0..4).map(|i| ((n + i) % 17) as f32 / 17.0).collect(),
                }),
            };
            let kind = WriteKind::Put {
                content: Box::new(content),
                reward: (n % 101) as f64 / 100.0,
                critique: (n % 4 != 0).then(|| format!("critique {n}")),
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
    fn commit(
        &mut self,
        h: usize,
        tenant: &TenantId,
        episode: EpisodeId,
        kind: WriteKind,
    ) -> Option<Stamp> {
        assert!(self.is_up(h), "writes go to running hubs");
        let physical = self.hub_now(h);
        let store = &self.hubs[h].store;
        if !matches!(kind, WriteKind::Put { .. })
            && store.get(tenant, &episode).is_some_and(|s| s.is_deleted())
        {
            self.counts.refused_writes += 1;
            return None;
        }
        let states_max = store.max_stamp();
        let (seq, stamp) = store.write(tenant, episode, physical, |stamp, current| match &kind {
            WriteKind::Put {
                content,
                reward,
                critique,
                tags,
            } => ReplicaState::Live(Box::new(LiveEpisode::new(
                stamp.clone(),
                (**content).clone(),
                *reward,
                critique.clone(),
                tags.clone(),
            ))),
            WriteKind::Update(update) => match current {
                Some(ReplicaState::Live(live)) => {
                    let mut live = live.clone();
                    live.update(update, stamp);
                    ReplicaState::Live(live)
                }
                other => panic!("update of an episode that is not live: {other:?}"),
            },
            WriteKind::Delete => ReplicaState::Deleted(stamp.clone()),
        });
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
        let changes: u64 = self.hubs.iter().map(|h| h.store.changes.get()).sum();
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
                let store = &self.hubs[h].store;
                let before = store.changes.get();
                let pipe = &mut conn.pipes[side];
                while pipe.queue.front().is_some_and(|(at, _)| *at <= self.now) {
                    let (_, bytes) = pipe.queue.pop_front().expect("a queued chunk");
                    pipe.decoder.push(&bytes);
                    while let Some(frame) = pipe.decoder.next_frame().expect("a valid frame") {
                        let msg = FedMessage::decode(&frame).expect("a valid message");
                        conn.sessions[side]
                            .handle(msg, store, nows[side])
                            .unwrap_or_else(|e| {
                                panic!(
                                    "hub {} closed its link with h{}: {e}",
                                    self.hubs[h].id,
                                    ends[1 - side]
                                )
                            });
                        conn.woken[side] = true;
                    }
                }
                if store.changes.get() != before {
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
            let Some(conn) = self.links[l].conn.as_mut() else {
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
                let store = &self.hubs[h].store;
                session.tick(store, nows[side]);
                while let Some(msg) = session.poll_transmit(store, nows[side]) {
                    let to = &self.hubs[ends[1 - side]];
                    check_sent(&self.hubs[h], to, &self.truth, &msg);
                    if matches!(msg, FedMessage::Ops(_)) {
                        self.last_ops_sent = self.now;
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
    fn run_for(&mut self, ms: u64) {
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
    fn quiesce(&mut self, strict: bool) {
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

    /// The invariants after quiescence.
    fn check(&self) {
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
                    // another hub had absorbed them.
                    let to = sources.get(&s).copied().unwrap_or(0);
                    for w in self
                        .writes
                        .iter()
                        .filter(|w| &w.tenant == tenant && w.origin == s && w.seq <= to)
                    {
                        match held.episodes.get(&w.episode) {
                            Some(ReplicaState::Deleted(d)) if d.hub != ids[s] => {}
                            other => panic!(
                                "hub {} took op ({}, {}) stamped {:?}; it holds {other:?}",
                                hub.id, ids[s], w.seq, w.stamp
                            ),
                        }
                    }
                }
                let (episodes, vv) = expected(&self.writes, &ids, tenant, &sources);
                assert!(
                    held.episodes == episodes,
                    "hub {} does not hold what was written to tenant {tenant}:\n{}",
                    hub.id,
                    diff(&held.episodes, &episodes)
                );
                assert_eq!(held.vv, vv, "version vector of {tenant} at hub {}", hub.id);
                for (origin, seqs) in &held.log {
                    assert_eq!(seqs.len() as u64, held.vv.get(origin), "op log of {origin}");
                }
                // Hubs that received the same ops hold the same state.
                if let Some((first, theirs)) = by_sources.get(&sources) {
                    assert_eq!(
                        theirs.episodes, held.episodes,
                        "hubs {} and {} differ on {tenant}",
                        ids[*first], hub.id
                    );
                    assert_eq!(theirs.vv, held.vv);
                } else {
                    by_sources.insert(sources, (h, held));
                }
            }
        }
    }

    /// After a strict quiescence: every session knows exactly what its peer holds.
    fn check_sessions(&self) {
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
fn check_sent(from: &Hub, to: &Hub, truth: &Residency, msg: &FedMessage) {
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

/// One random run: chaos, heal, quiescence, invariants.
fn run_seed(seed: u64) -> Sim {
    let mut sim = Sim::new(Params::random(seed));
    sim.quiesce(true);
    sim.check();
    sim.check_sessions();
    sim
}

/// Runs `f`; if it panics, prints `report()` (how to replay the run) first.
fn on_failure<T>(report: impl Fn() -> String, f: impl FnOnce() -> T) -> T {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}", report());
            panic::resume_unwind(e)
        }
    }
}

/// A number from the environment.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// Random runs: seeds `0..FED_SIM_SEEDS` (or just `FED_SIM_SEED`), the topology rotating
/// with the seed.
#[test]
fn many_seeds() {
    let seeds: Vec<u64> = match env_u64("FED_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("FED_SIM_SEEDS").unwrap_or(1000)).collect(),
    };
    let mut totals = Counts::default();
    for seed in seeds {
        let sim = on_failure(
            || format!("FED_SIM_SEED={seed} ({})", Params::random(seed).describe()),
            || run_seed(seed),
        );
        totals.messages += sim.counts.messages;
        totals.breaks += sim.counts.breaks;
        totals.partitions += sim.counts.partitions;
        totals.crashes += sim.counts.crashes;
        totals.writes += sim.counts.writes;
        totals.refused_writes += sim.counts.refused_writes;
    }
    eprintln!("{totals:?}");
}

// ---- Scenarios ----------------------------------------------------------------------------

/// Hubs `0..n`.
fn up_to(n: usize) -> BTreeSet<usize> {
    (0..n).collect()
}

/// Two sides of a partition write; nothing crosses while it lasts; after it heals both sides
/// hold everything.
#[test]
fn a_partition_heals_and_both_sides_converge() {
    for seed in 0..20 {
        on_failure(
            || format!("partition: seed {seed}"),
            || {
                let mut sim = Sim::new(Params::quiet(seed, Topology::Mesh, 5));
                sim.run_for(50);
                let t = tenant("t-open");
                // {h0, h1} | {h2, h3, h4}
                sim.partition(&up_to(2), 10_000);
                let mut left = Vec::new();
                let mut right = Vec::new();
                for i in 0..20 {
                    left.extend(sim.write(i % 2, &t));
                    right.extend(sim.write(2 + i % 3, &t));
                    sim.run_for(5);
                }
                sim.run_for(500);
                for (written, other_side) in [(&left, 2..5), (&right, 0..2)] {
                    for h in other_side {
                        let held = sim.hubs[h].store.episode_ids(&t);
                        assert!(
                            written.iter().all(|e| !held.contains(e)),
                            "a write crossed the partition to h{h}"
                        );
                    }
                }
                sim.quiesce(true);
                sim.check();
                sim.check_sessions();
                let everywhere = sim.hubs[4].store.episode_ids(&t);
                assert!(left.iter().chain(&right).all(|e| everywhere.contains(e)));
            },
        );
    }
}

/// The center of a star crashes with pages in flight: it comes back with everything it had
/// applied, stamps new writes after everything it issued, and catches up.
#[test]
fn a_crashed_hub_restarts_from_its_store_and_catches_up() {
    for seed in 0..20 {
        on_failure(
            || format!("crash-restart: seed {seed}"),
            || {
                let mut sim = Sim::new(Params::quiet(seed, Topology::HubAndSpoke, 4));
                sim.run_for(20);
                let t = tenant("t-shared");
                for i in 0..10 {
                    sim.write(i % 4, &t);
                    sim.run_for(3);
                }
                // The center crashes with pages in flight; the spokes go on writing.
                sim.crash(0, 100);
                for i in 0..10 {
                    sim.write(1 + i % 3, &t);
                    sim.run_for(7);
                }
                let before = sim.hubs[0].store.tenant(&t);
                sim.run_for(100);
                // The center came back with everything it had applied.
                let after = sim.hubs[0].store.tenant(&t);
                assert!(matches!(
                    after.vv.compare(&before.vv),
                    Causality::Equal | Causality::Dominates
                ));
                for (id, s) in &before.episodes {
                    assert!(
                        after.episodes.contains_key(id),
                        "{id} ({s:?}) lost in the crash"
                    );
                }
                // It writes again with stamps after everything it issued before the crash.
                sim.write(0, &t);
                sim.quiesce(true);
                sim.check();
                sim.check_sessions();
            },
        );
    }
}

/// Writes at edges reach every hub through the regionals and the root; an eu-only tenant
/// reaches exactly the eu hubs.
#[test]
fn writes_relay_through_the_hierarchy_and_residency_holds() {
    for seed in 0..10 {
        on_failure(
            || format!("hierarchy: seed {seed}"),
            || {
                // h0 global root; h1 eu, h2 us regionals; h3, h5 eu edges; h4, h6 us edges.
                let mut sim = Sim::new(Params::quiet(seed, Topology::Hierarchical, 7));
                sim.run_for(20);
                let open = tenant("t-open");
                let eu = tenant("t-eu");
                let from_eu_edge = sim.write(3, &open).expect("a put");
                let from_us_edge = sim.write(6, &open).expect("a put");
                let eu_only = sim.write(5, &eu).expect("a put");
                sim.quiesce(true);
                sim.check();
                for (h, hub) in sim.hubs.iter().enumerate() {
                    let held = hub.store.episode_ids(&open);
                    assert!(held.contains(&from_eu_edge) && held.contains(&from_us_edge));
                    let has_eu = hub.store.get(&eu, &eu_only).is_some();
                    assert_eq!(has_eu, [1, 3, 5].contains(&h), "t-eu at h{h}");
                }
            },
        );
    }
}

/// Every topology and size, with delays but no faults.
#[test]
fn every_topology_converges_without_faults() {
    for (seed, topology) in [
        (1, Topology::Hierarchical),
        (2, Topology::Mesh),
        (3, Topology::HubAndSpoke),
    ] {
        for hubs in 3..=7 {
            on_failure(
                || format!("{topology:?}, {hubs} hubs: seed {seed}"),
                || {
                    let mut p = Params::random(seed);
                    p.topology = topology;
                    p.hubs = hubs;
                    p.breaks = false;
                    p.partitions = false;
                    p.crashes = false;
                    let mut sim = Sim::new(p);
                    sim.quiesce(true);
                    sim.check();
                    sim.check_sessions();
                },
            );
        }
    }
}

/// A hub whose clock is two minutes ahead (the bound is one): its peers refuse its ops,
/// while it takes theirs and the others converge.
#[test]
fn a_hub_beyond_the_skew_bound_is_refused_while_the_others_converge() {
    for seed in 0..10 {
        on_failure(
            || format!("skew: seed {seed}"),
            || {
                let mut p = Params::random(seed);
                p.topology = Topology::Mesh;
                p.hubs = 5;
                p.skewed = Some((2, 2 * MAX_SKEW_MS));
                let skewed = HubId::new("h2").expect("valid hub id");
                let mut sim = Sim::new(p);
                sim.quiesce(false);
                sim.check();
                // h2's writes were refused by every peer (`check` allows only those a tombstone
                // absorbed); h2 took everyone else's.
                let own: u64 = sim
                    .tenants
                    .iter()
                    .map(|t| sim.hubs[2].store.version_vector(t).get(&skewed))
                    .sum();
                assert!(own > 0);
                for h in [0, 1, 3, 4] {
                    let taken: u64 = sim
                        .tenants
                        .iter()
                        .map(|t| sim.hubs[h].store.version_vector(t).get(&skewed))
                        .sum();
                    assert!(taken < own, "h{h} took every op of h2");
                }
                let refused: u64 = sim
                    .links
                    .iter()
                    .filter_map(|l| l.conn.as_ref())
                    .flat_map(|c| c.sessions.iter())
                    .map(|s| s.stats().refused_here)
                    .sum();
                assert!(refused > 0, "no page was refused");
            },
        );
    }
}

/// A hub that believes an eu-only tenant may go anywhere sends its pages to a us hub, which
/// refuses them.
#[test]
fn a_misconfigured_hub_cannot_move_data_across_a_boundary() {
    for seed in 0..10 {
        on_failure(
            || format!("misconfigured: seed {seed}"),
            || {
                // h0 (eu) thinks every tenant may go anywhere; its spokes h1 (eu), h2 (us) and
                // h3 (eu) know better.
                let mut p = Params::quiet(seed, Topology::HubAndSpoke, 4);
                p.misconfigured = Some(0);
                let mut sim = Sim::new(p);
                assert_eq!(sim.hubs[0].region, region("eu"));
                sim.run_for(20);
                let eu = tenant("t-eu");
                for _ in 0..5 {
                    sim.write(0, &eu);
                    sim.write(1, &eu);
                    sim.run_for(5);
                }
                sim.quiesce(false);
                sim.check();
                let refused: u64 = sim
                    .links
                    .iter()
                    .filter_map(|l| l.conn.as_ref())
                    .flat_map(|c| c.sessions.iter())
                    .map(|s| s.stats().refused_here)
                    .sum();
                assert!(refused > 0, "the us spoke refused h0's pages");
            },
        );
    }
}

/// A tombstone absorbs the later stamps of the updates it wins over, so the largest stamp of a
/// hub's states can be smaller than a stamp the hub issued; a hub that resumes its clock from
/// the states alone after a crash can then issue that stamp again. A hub therefore keeps its
/// clock's high-water mark durably; this checks that the restarted hub stamps after it.
///
/// h0's clock is 10 s ahead of h1's and h2's, so once they have seen its put, h1 and h2 stamp
/// within h0's millisecond W, counting up. Cut off from each other, h2 puts three episodes and
/// updates h0's at (W, 4, h2), while h1 deletes it at (W, 1, h1). Once the delete reaches h2,
/// h2's states hold at most (W, 3, h2). h2 crashes and restarts with its physical clock still
/// before W, and stamps its next write.
fn absorbed_stamp() {
    let mut p = Params::quiet(0, Topology::Mesh, 3);
    p.offsets = Some(vec![5_000, -5_000, -5_000]);
    let mut sim = Sim::new(p);
    sim.run_for(20);
    let t = tenant("t-open");
    let e = sim.put(0, &t);
    sim.run_for(50);
    let w = sim.writes[0].stamp.hlc.wall_ms;
    sim.partition(&BTreeSet::from([1]), 10_000);
    for _ in 0..3 {
        sim.put(2, &t);
    }
    let update = EpisodeUpdate {
        reward: Some(0.5),
        ..EpisodeUpdate::default()
    };
    let updated = sim
        .commit(2, &t, e, WriteKind::Update(update))
        .expect("h2 holds the episode");
    let deleted = sim
        .commit(1, &t, e, WriteKind::Delete)
        .expect("h1 holds the episode");
    assert_eq!((updated.hlc.wall_ms, updated.hlc.counter), (w, 4));
    assert_eq!((deleted.hlc.wall_ms, deleted.hlc.counter), (w, 1));
    sim.heal();
    sim.run_for(200);
    assert_eq!(
        sim.hubs[2].store.get(&t, &e),
        Some(ReplicaState::Deleted(deleted))
    );
    sim.crash(2, 10);
    sim.run_for(20);
    assert!(sim.hub_now(2) < w);
    // Fails here when the clock resumed from the states alone.
    sim.put(2, &t);
    sim.quiesce(true);
    sim.check();
}

/// See [`absorbed_stamp`].
#[test]
fn a_restarted_hub_stamps_after_what_a_tombstone_absorbed() {
    absorbed_stamp();
}

/// A hub whose clock is beyond the skew bound can still relay its peers' ops, whose states
/// carry no far-future stamp. Here the eu regional h1 is two minutes ahead and has written one
/// op of its own; the eu edge h3's put must still reach the root h0 and the us hubs h2 and h4.
/// Pages list each origin's ops in turn, h1's first: a refused op must hold back only its own
/// origin's later ops, not h3's.
#[test]
fn a_skewed_relay_still_relays_the_ops_of_others() {
    let mut p = Params::quiet(0, Topology::Hierarchical, 5);
    p.skewed = Some((1, 2 * MAX_SKEW_MS));
    let mut sim = Sim::new(p);
    sim.run_for(20);
    let t = tenant("t-open");
    sim.put(1, &t);
    sim.run_for(20);
    let e = sim.put(3, &t);
    sim.run_for(3_000);
    for h in 0..5 {
        assert!(
            sim.hubs[h].store.get(&t, &e).is_some(),
            "h3's put did not reach h{h}"
        );
    }
}
