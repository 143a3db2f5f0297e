//! Federation between memory engines, replicated by hand: every engine is a hub with its own
//! storage, master key and clock, and pages of ops travel through `ops_since` / `apply_ops`
//! exactly as the link protocol carries them.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use agentdb_core::{
    AgentId, ClockSkew, EpisodeId, EpisodeUpdate, Erasure, ErasureId, ErasureScope, HubId, Limits,
    LiveEpisode, NewEpisode, Op, ReplicaState, Stamp, TenantId, Timestamp, VersionVector,
};
use agentdb_memory::storage::{StorageError, StoredEpisode, Write};
use agentdb_memory::{
    Change, Clock, EngineConfig, Filter, ManualClock, MemStorage, MemoryEngine, OpenError, Outcome,
    Query, RedbStorage, ReplicaError, Storage, DB_FILE,
};
use agentdb_security::{MasterKey, WrappedTenantKey};

/// Where every hub's clock starts.
const T0: u64 = 1_700_000_000_000;
/// Page size used by [`pull`].
const PAGE: usize = 16;
/// Byte budget of a page used by [`pull`].
const PAGE_BYTES: usize = 1 << 20;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn hub(s: &str) -> HubId {
    HubId::new(s).unwrap()
}

fn vv(entries: &[(&str, u64)]) -> VersionVector {
    entries.iter().map(|(h, s)| (hub(h), *s)).collect()
}

fn config(name: &str) -> EngineConfig {
    EngineConfig {
        origin: Some(hub(name)),
        ..EngineConfig::default()
    }
}

/// One hub: an engine with its own storage, master key and manual clock.
struct Hub {
    db: MemoryEngine,
    clock: Arc<ManualClock>,
    storage: Arc<dyn Storage>,
}

impl Hub {
    /// A hub on in-memory storage with a fresh master key.
    fn mem(name: &str) -> Self {
        Self::mem_with(config(name))
    }

    /// [`Hub::mem`] with a given configuration.
    fn mem_with(config: EngineConfig) -> Self {
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let db = open(
            Arc::clone(&storage),
            &MasterKey::generate().unwrap(),
            &clock,
            config,
        )
        .unwrap();
        Self { db, clock, storage }
    }

    /// A hub on redb in `dir`.
    fn redb(name: &str, dir: &Path, key: &MasterKey, clock: &Arc<ManualClock>) -> Self {
        let storage: Arc<dyn Storage> = Arc::new(RedbStorage::open(&dir.join(DB_FILE)).unwrap());
        Self {
            db: open(Arc::clone(&storage), key, clock, config(name)).unwrap(),
            clock: Arc::clone(clock),
            storage,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now().unix_ms()
    }

    fn vv(&self, t: &TenantId) -> VersionVector {
        self.db.version_vector(t).unwrap()
    }

    /// Applies `update` to episode `id`; whether the episode was there to update.
    fn update(&self, t: &TenantId, id: &EpisodeId, update: EpisodeUpdate) -> bool {
        self.db.update(t, id, &update).unwrap()
    }

    fn store(&self, t: &TenantId, e: NewEpisode) -> EpisodeId {
        let stored = self.db.store(t, e).unwrap();
        assert!(stored.inserted);
        stored.id
    }

    /// Ids of the episodes a text query with `filter` finds.
    fn find(&self, t: &TenantId, text: &str, filter: Filter) -> Vec<EpisodeId> {
        self.db
            .query(t, &Query::text(text, 10).with_filter(filter))
            .unwrap()
            .into_iter()
            .map(|m| m.episode.id)
            .collect()
    }
}

fn open(
    storage: Arc<dyn Storage>,
    key: &MasterKey,
    clock: &Arc<ManualClock>,
    config: EngineConfig,
) -> Result<MemoryEngine, OpenError> {
    MemoryEngine::builder(storage, key.clone())
        .clock(Arc::clone(clock) as Arc<dyn Clock>)
        .config(config)
        .open()
}

/// Everything `to` lacks of what `from` holds, page by page, at `to`'s clock. Returns how many
/// ops were applied.
fn pull(from: &Hub, to: &Hub, t: &TenantId) -> u64 {
    pull_paged(from, to, t, PAGE)
}

/// [`pull`] in pages of at most `limit` ops.
fn pull_paged(from: &Hub, to: &Hub, t: &TenantId, limit: usize) -> u64 {
    let mut applied = 0;
    loop {
        let ops = from.db.ops_since(t, &to.vv(t), limit, PAGE_BYTES).unwrap();
        assert!(ops.len() <= limit);
        if ops.is_empty() {
            return applied;
        }
        let out = to.db.apply_ops(t, &ops, to.now_ms()).unwrap();
        assert!(out.skew.is_none(), "{:?}", out.skew);
        assert!(out.applied > 0, "a page of missing ops applied nothing");
        assert_eq!(out.vv, to.vv(t));
        applied += out.applied;
    }
}

fn seqs(ops: &[Op]) -> Vec<(HubId, u64)> {
    ops.iter().map(|o| (o.origin.clone(), o.seq)).collect()
}

fn min_reward(r: f64) -> Filter {
    Filter {
        min_reward: Some(r),
        ..Filter::default()
    }
}

fn live(op: &Op) -> &LiveEpisode {
    match &op.state {
        Some(ReplicaState::Live(l)) => l,
        other => panic!("expected a live state, got {other:?}"),
    }
}

#[test]
fn an_episode_stored_on_one_hub_appears_on_another_as_written() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let first = NewEpisode::new(
        "summarise invoice",
        "invoice 42 for ACME",
        "Total 300 EUR",
        0.9,
    )
    .with_critique("concise")
    .with_tags(vec!["billing".into(), "q3".into()])
    .with_metadata(serde_json::json!({ "customer": "acme", "pages": 3 }))
    .with_agent(AgentId::new("planner").unwrap());
    let mut ids = vec![a.store(&t, first.clone())];
    a.clock.advance(5);
    ids.push(a.store(
        &t,
        NewEpisode::new("deploy cluster", "k8s manifests", "failed", 0.2),
    ));
    a.clock.advance(5);
    ids.push(a.store(&t, NewEpisode::new("reset password", "user 7", "done", 0.8)));
    // One op per store, numbered under the hub's own id; a retried write is no new op.
    assert_eq!(a.db.hub_id(), &hub("a"));
    assert_eq!(a.vv(&t), vv(&[("a", 3)]));
    assert!(!a.db.store(&t, first.with_id(ids[0])).unwrap().inserted);
    assert_eq!(a.vv(&t), vv(&[("a", 3)]));

    let ops = a.db.ops_since(&t, &b.vv(&t), PAGE, PAGE_BYTES).unwrap();
    assert_eq!(
        seqs(&ops),
        vec![(hub("a"), 1), (hub("a"), 2), (hub("a"), 3)]
    );
    assert_eq!(ops.iter().map(|o| o.episode).collect::<Vec<_>>(), ids);
    let out = b.db.apply_ops(&t, &ops, b.now_ms()).unwrap();
    assert_eq!(out.applied, 3);
    assert!(out.skew.is_none());
    assert_eq!(out.newest_ms, Some(T0 + 10));
    assert_eq!(out.vv, a.vv(&t));
    assert_eq!(b.vv(&t), a.vv(&t));

    for id in &ids {
        let here = a.db.get(&t, id).unwrap().unwrap();
        let there = b.db.get(&t, id).unwrap().unwrap();
        assert_eq!(there, here);
    }
    let e = b.db.get(&t, &ids[0]).unwrap().unwrap();
    assert_eq!(e.tenant, t);
    assert_eq!(e.task, "summarise invoice");
    assert_eq!(e.input, "invoice 42 for ACME");
    assert_eq!(e.output, "Total 300 EUR");
    assert_eq!(e.reward, 0.9);
    assert!(e.success);
    assert_eq!(e.critique.as_deref(), Some("concise"));
    assert_eq!(e.tags, vec!["billing".to_owned(), "q3".to_owned()]);
    assert_eq!(
        e.metadata,
        serde_json::json!({ "customer": "acme", "pages": 3 })
    );
    assert_eq!(e.agent, Some(AgentId::new("planner").unwrap()));
    assert_eq!(e.created, Timestamp(T0));
    assert_eq!(e.origin, Some(hub("a")));

    // The receiver's change feed lists the replicated episodes.
    let feed = b.db.changes_since(&t, 0, 10).unwrap();
    let fed: Vec<EpisodeId> = feed
        .changes
        .iter()
        .map(|(_, c)| match c {
            Change::Put(e) => e.id,
            Change::Deleted(id) => panic!("unexpected delete of {id}"),
        })
        .collect();
    assert_eq!(fed, ids);

    let hits = b.find(&t, "summarise the invoice", Filter::default());
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0], ids[0]);
    assert_eq!(b.db.stats(&t).unwrap().episodes, 3);

    // The receiver's own writes are numbered under its id, next to what it received.
    b.store(&t, NewEpisode::new("written on b", "i", "o", 0.5));
    assert_eq!(b.vv(&t), vv(&[("a", 3), ("b", 1)]));
    assert_eq!(a.vv(&t), vv(&[("a", 3)]));
}

#[test]
fn duplicate_and_out_of_order_pages_are_harmless() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let ids: Vec<EpisodeId> = (0..4)
        .map(|i| {
            a.clock.advance(1);
            a.store(&t, NewEpisode::new(format!("task {i}"), "in", "out", 0.5))
        })
        .collect();
    let first =
        a.db.ops_since(&t, &VersionVector::new(), 2, PAGE_BYTES)
            .unwrap();
    let second = a.db.ops_since(&t, &vv(&[("a", 2)]), 2, PAGE_BYTES).unwrap();
    assert_eq!(seqs(&first), vec![(hub("a"), 1), (hub("a"), 2)]);
    assert_eq!(seqs(&second), vec![(hub("a"), 3), (hub("a"), 4)]);
    // However small the byte budget, a page carries at least one op.
    assert_eq!(
        a.db.ops_since(&t, &VersionVector::new(), PAGE, 1)
            .unwrap()
            .len(),
        1
    );

    // The later page first: beyond a gap, so skipped.
    let out = b.db.apply_ops(&t, &second, b.now_ms()).unwrap();
    assert_eq!(out.applied, 0);
    assert!(out.vv.is_empty());
    assert!(b.vv(&t).is_empty());
    assert!(b.db.get(&t, &ids[2]).unwrap().is_none());
    assert!(b.db.get(&t, &ids[3]).unwrap().is_none());

    // Then in order.
    let out = b.db.apply_ops(&t, &first, b.now_ms()).unwrap();
    assert_eq!(out.applied, 2);
    assert_eq!(b.vv(&t), vv(&[("a", 2)]));
    // The same page again.
    let out = b.db.apply_ops(&t, &first, b.now_ms()).unwrap();
    assert_eq!(out.applied, 0);
    assert_eq!(out.vv, vv(&[("a", 2)]));
    assert_eq!(b.vv(&t), vv(&[("a", 2)]));
    let out = b.db.apply_ops(&t, &second, b.now_ms()).unwrap();
    assert_eq!(out.applied, 2);
    assert_eq!(b.vv(&t), a.vv(&t));
    // Everything again, in any order.
    let mut all: Vec<Op> = second.iter().chain(&first).cloned().collect();
    let out = b.db.apply_ops(&t, &all, b.now_ms()).unwrap();
    assert_eq!(out.applied, 0);
    all.reverse();
    assert_eq!(b.db.apply_ops(&t, &all, b.now_ms()).unwrap().applied, 0);
    assert_eq!(b.vv(&t), a.vv(&t));

    assert_eq!(b.db.stats(&t).unwrap().episodes, 4);
    let mut found = b.find(&t, "task", Filter::default());
    found.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(found, want, "each episode once");
    for id in &ids {
        assert_eq!(
            b.db.get(&t, id).unwrap().unwrap(),
            a.db.get(&t, id).unwrap().unwrap()
        );
    }
}

#[test]
fn ops_relay_through_a_middle_hub() {
    let (a, b, c) = (Hub::mem("a"), Hub::mem("b"), Hub::mem("c"));
    let t = tenant("acme");
    let from_a = [
        a.store(&t, NewEpisode::new("written on a", "one", "o", 0.9)),
        a.store(&t, NewEpisode::new("written on a", "two", "o", 0.9)),
    ];
    let from_b = b.store(&t, NewEpisode::new("written on b", "three", "o", 0.9));

    assert_eq!(pull(&a, &b, &t), 2);
    // One op per page, so that pages end inside one origin's ops and between origins.
    assert_eq!(pull_paged(&b, &c, &t, 1), 3);
    // C never talked to A, yet holds A's episodes and covers A's ops.
    assert_eq!(c.vv(&t), vv(&[("a", 2), ("b", 1)]));
    assert_eq!(c.vv(&t), b.vv(&t));
    assert!(c.vv(&t).covers(&hub("a"), 2));
    for id in &from_a {
        let e = c.db.get(&t, id).unwrap().unwrap();
        assert_eq!(e.origin, Some(hub("a")));
        assert_eq!(e, a.db.get(&t, id).unwrap().unwrap());
    }
    assert_eq!(
        c.db.get(&t, &from_b).unwrap().unwrap().origin,
        Some(hub("b"))
    );

    // C has nothing of A's own to send back to A: only B's op, relayed.
    let back = c.db.ops_since(&t, &a.vv(&t), PAGE, PAGE_BYTES).unwrap();
    assert_eq!(seqs(&back), vec![(hub("b"), 1)]);
    assert_eq!(back[0].episode, from_b);
    assert_eq!(a.db.apply_ops(&t, &back, a.now_ms()).unwrap().applied, 1);
    assert!(c
        .db
        .ops_since(&t, &a.vv(&t), PAGE, PAGE_BYTES)
        .unwrap()
        .is_empty());
    assert_eq!(a.vv(&t), c.vv(&t));
    assert_eq!(
        a.db.get(&t, &from_b).unwrap().unwrap(),
        b.db.get(&t, &from_b).unwrap().unwrap()
    );
}

#[test]
fn concurrent_updates_converge_to_the_later_write_per_field() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let id = a.store(
        &t,
        NewEpisode::new("summarise invoice", "invoice 42", "total", 0.5).with_critique("first"),
    );
    pull(&a, &b, &t);

    // B writes reward and critique at T0+1s; A writes reward and tags at T0+2s.
    b.clock.advance(1_000);
    assert!(b.update(
        &t,
        &id,
        EpisodeUpdate {
            reward: Some(0.1),
            critique: Some(Some("from b".into())),
            tags: None,
            metadata_json: None,
        }
    ));
    a.clock.advance(2_000);
    assert!(a.update(
        &t,
        &id,
        EpisodeUpdate {
            reward: Some(0.95),
            critique: None,
            tags: Some(vec!["from-a".into()]),
            metadata_json: None,
        }
    ));
    assert_eq!(b.db.get(&t, &id).unwrap().unwrap().reward, 0.1);
    assert!(b.find(&t, "invoice", min_reward(0.9)).is_empty());
    assert!(a.find(&t, "invoice", min_reward(0.2)) == vec![id]);
    // Each update is an op of the hub that accepted it.
    assert_eq!(a.vv(&t), vv(&[("a", 2)]));
    assert_eq!(b.vv(&t), vv(&[("a", 1), ("b", 1)]));

    assert_eq!(pull(&a, &b, &t), 1);
    assert_eq!(pull(&b, &a, &t), 1);
    assert_eq!(a.vv(&t), vv(&[("a", 2), ("b", 1)]));
    assert_eq!(b.vv(&t), a.vv(&t));

    for h in [&a, &b] {
        let e = h.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(e.reward, 0.95, "A's reward is the later write");
        assert!(e.success);
        assert_eq!(
            e.critique.as_deref(),
            Some("from b"),
            "B's critique is the later write"
        );
        assert_eq!(e.tags, vec!["from-a".to_owned()], "only A wrote tags");
        assert_eq!(e.task, "summarise invoice");
    }
    assert_eq!(
        a.db.get(&t, &id).unwrap().unwrap(),
        b.db.get(&t, &id).unwrap().unwrap()
    );
    // The filters on B see the replicated reward.
    assert_eq!(b.find(&t, "invoice", min_reward(0.9)), vec![id]);
    assert!(b.find(&t, "invoice", min_reward(0.96)).is_empty());
    let successes = Filter {
        outcome: Outcome::Successes,
        ..Filter::default()
    };
    let failures = Filter {
        outcome: Outcome::Failures,
        ..Filter::default()
    };
    assert_eq!(b.find(&t, "invoice", successes.clone()), vec![id]);
    assert!(b.find(&t, "invoice", failures.clone()).is_empty());
    assert_eq!(a.find(&t, "invoice", successes), vec![id]);
    assert!(a.find(&t, "invoice", failures).is_empty());

    // A further exchange changes nothing.
    assert_eq!(pull(&a, &b, &t), 0);
    assert_eq!(pull(&b, &a, &t), 0);

    // A third hub receives all three ops of the episode in one page and ends up the same.
    let c = Hub::mem("c");
    let page = b.db.ops_since(&t, &c.vv(&t), PAGE, PAGE_BYTES).unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.iter().all(|op| op.episode == id));
    assert_eq!(c.db.apply_ops(&t, &page, c.now_ms()).unwrap().applied, 3);
    assert_eq!(c.vv(&t), a.vv(&t));
    assert_eq!(
        c.db.get(&t, &id).unwrap().unwrap(),
        a.db.get(&t, &id).unwrap().unwrap()
    );
    assert_eq!(c.find(&t, "invoice", min_reward(0.9)), vec![id]);
}

#[test]
fn an_update_made_after_receiving_a_write_wins_over_it_despite_a_slower_clock() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    // A's clock runs 30 s ahead of B's.
    a.clock.set(Timestamp(T0 + 30_000));
    let id = a.store(
        &t,
        NewEpisode::new("triage alert", "disk full", "paged", 0.9).with_critique("slow"),
    );
    pull(&a, &b, &t);
    // B answers A's write one millisecond later by its own clock: 30 s earlier by wall time.
    b.clock.advance(1);
    assert!(b.update(
        &t,
        &id,
        EpisodeUpdate {
            reward: Some(0.2),
            critique: Some(None),
            tags: Some(vec!["reviewed".into()]),
            metadata_json: None,
        }
    ));
    assert_eq!(pull(&b, &a, &t), 1);
    for h in [&a, &b] {
        let e = h.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(e.reward, 0.2);
        assert!(!e.success);
        assert_eq!(e.critique, None, "the clearing write is the later one");
        assert_eq!(e.tags, vec!["reviewed".to_owned()]);
    }
    assert!(a.find(&t, "triage alert", min_reward(0.5)).is_empty());
}

#[test]
fn updates_with_equal_clocks_converge_on_the_greater_hub_id() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let id = a.store(&t, NewEpisode::new("plan trip", "rome", "itinerary", 0.5));
    pull(&a, &b, &t);
    a.clock.advance(7);
    b.clock.advance(7);
    for (h, reward) in [(&a, 0.3), (&b, 0.8)] {
        let update = EpisodeUpdate {
            reward: Some(reward),
            ..EpisodeUpdate::default()
        };
        assert!(h.update(&t, &id, update.clone()));
    }
    // Both writes carry the same clock reading; the hub id orders them.
    let stamp = |h: &Hub| {
        let ops =
            h.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
                .unwrap();
        live(ops.last().unwrap()).reward.stamp.clone()
    };
    assert_eq!(stamp(&a).hlc, stamp(&b).hlc);
    pull(&a, &b, &t);
    pull(&b, &a, &t);
    for h in [&a, &b] {
        assert_eq!(h.db.get(&t, &id).unwrap().unwrap().reward, 0.8);
    }
}

#[test]
fn a_delete_wins_over_a_concurrent_later_update() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let id = a.store(&t, NewEpisode::new("rotate keys", "vault", "ok", 0.5));
    let keep = a.store(&t, NewEpisode::new("rotate certificates", "pki", "ok", 0.5));
    pull(&a, &b, &t);

    a.clock.advance(1_000);
    assert!(a.db.delete(&t, &id).unwrap());
    // B's update is stamped after the delete, and still loses.
    b.clock.advance(2_000);
    assert!(b.update(
        &t,
        &id,
        EpisodeUpdate {
            reward: Some(0.99),
            ..EpisodeUpdate::default()
        }
    ));

    pull(&a, &b, &t);
    pull(&b, &a, &t);
    assert_eq!(a.vv(&t), vv(&[("a", 3), ("b", 1)]));
    assert_eq!(b.vv(&t), a.vv(&t));
    for h in [&a, &b] {
        assert!(h.db.get(&t, &id).unwrap().is_none());
        assert_eq!(h.find(&t, "rotate keys", Filter::default()), vec![keep]);
        assert!(h.find(&t, "rotate keys", min_reward(0.9)).is_empty());
        let stats = h.db.stats(&t).unwrap();
        assert_eq!((stats.episodes, stats.deleted), (1, 1));
        assert!(!h.update(
            &t,
            &id,
            EpisodeUpdate {
                reward: Some(0.3),
                ..EpisodeUpdate::default()
            }
        ));
    }
    assert_eq!(pull(&a, &b, &t), 0);
    assert_eq!(pull(&b, &a, &t), 0);
    // B's change feed ends with the replicated delete.
    let feed = b.db.changes_since(&t, 0, 100).unwrap();
    assert_eq!(
        feed.changes.last().map(|(_, c)| c.clone()),
        Some(Change::Deleted(id))
    );
}

#[test]
fn a_delete_that_arrives_before_the_put_keeps_it_deleted() {
    let (a, b, c) = (Hub::mem("a"), Hub::mem("b"), Hub::mem("c"));
    let t = tenant("acme");
    let id = a.store(
        &t,
        NewEpisode::new("close ticket", "ticket 9", "closed", 0.8),
    );
    // C has never seen the episode; it deletes it by id (as an agent told it to).
    let other = c.store(
        &t,
        NewEpisode::new("open ticket", "ticket 10", "opened", 0.8),
    );
    c.clock.advance(10);
    assert!(!c.db.delete(&t, &id).unwrap(), "not live on C");
    assert_eq!(c.vv(&t), vv(&[("c", 2)]));

    // B receives the delete first, then the put.
    assert_eq!(pull(&c, &b, &t), 2);
    assert!(b.db.get(&t, &id).unwrap().is_none());
    assert_eq!(pull(&a, &b, &t), 1);
    assert!(b.db.get(&t, &id).unwrap().is_none());
    assert_eq!(b.find(&t, "close ticket", Filter::default()), vec![other]);

    // Everyone converges on deleted.
    pull(&c, &a, &t);
    pull(&a, &c, &t);
    for h in [&a, &b, &c] {
        assert_eq!(h.vv(&t), vv(&[("a", 1), ("c", 2)]));
        assert!(h.db.get(&t, &id).unwrap().is_none());
        assert_eq!(h.find(&t, "close ticket", Filter::default()), vec![other]);
        assert_eq!(h.db.stats(&t).unwrap().episodes, 1);
    }
    // A retried put of the same id stays deleted too.
    let retry = NewEpisode::new("close ticket", "ticket 9", "closed", 0.8).with_id(id);
    assert!(!b.db.store(&t, retry).unwrap().inserted);
    assert!(b.db.get(&t, &id).unwrap().is_none());
}

#[test]
fn an_op_stamped_too_far_ahead_stops_the_page() {
    let a = Hub::mem("a");
    let b = Hub::mem_with(EngineConfig {
        max_clock_skew_ms: 5_000,
        ..config("b")
    });
    let t = tenant("acme");
    let on_time = a.store(&t, NewEpisode::new("on time", "i", "o", 0.5));
    // A's wall clock jumps ten minutes ahead.
    a.clock.set(Timestamp(T0 + 600_000));
    let ahead = [
        a.store(&t, NewEpisode::new("ahead", "one", "o", 0.5)),
        a.store(&t, NewEpisode::new("ahead", "two", "o", 0.5)),
    ];
    let page =
        a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(page.len(), 3);

    let out = b.db.apply_ops(&t, &page, T0).unwrap();
    assert_eq!(out.applied, 1, "the op before the skewed one is applied");
    assert_eq!(
        out.skew,
        Some(ClockSkew {
            ahead_ms: 600_000,
            limit_ms: 5_000
        })
    );
    assert_eq!(out.vv, vv(&[("a", 1)]));
    assert_eq!(b.vv(&t), vv(&[("a", 1)]));
    assert!(!b.vv(&t).covers(&hub("a"), 2));
    assert!(b.db.get(&t, &on_time).unwrap().is_some());
    assert!(b.db.get(&t, &ahead[0]).unwrap().is_none());
    assert!(b.db.get(&t, &ahead[1]).unwrap().is_none());
    // The refused stamp did not drag B's clock along: B's own next write is stamped by its clock.
    let own = b.store(&t, NewEpisode::new("written on b", "i", "o", 0.5));
    let mine =
        b.db.ops_since(&t, &vv(&[("a", 1)]), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(seqs(&mine), vec![(hub("b"), 1)]);
    assert_eq!(mine[0].episode, own);
    assert_eq!(live(&mine[0]).created.hlc.wall_ms, T0);

    // Just beyond the bound: still refused, nothing applied.
    let rest = a.db.ops_since(&t, &b.vv(&t), PAGE, PAGE_BYTES).unwrap();
    assert_eq!(seqs(&rest), vec![(hub("a"), 2), (hub("a"), 3)]);
    let out = b.db.apply_ops(&t, &rest, T0 + 594_999).unwrap();
    assert_eq!(out.applied, 0);
    assert_eq!(out.skew.map(|s| s.ahead_ms), Some(5_001));
    assert_eq!(b.vv(&t), vv(&[("a", 1), ("b", 1)]));

    // Once B's clock has caught up to within the bound, the rest applies.
    let out = b.db.apply_ops(&t, &rest, T0 + 595_000).unwrap();
    assert_eq!(out.applied, 2);
    assert!(out.skew.is_none());
    assert_eq!(b.vv(&t), vv(&[("a", 3), ("b", 1)]));
    assert!(b.db.get(&t, &ahead[1]).unwrap().is_some());
}

#[test]
fn tombstones_are_collected_only_when_acknowledged_and_old_enough() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let gone = a.store(&t, NewEpisode::new("old task", "one", "o", 0.5));
    a.clock.advance(1);
    let kept = a.store(&t, NewEpisode::new("old task", "two", "o", 0.5));
    pull(&a, &b, &t);
    a.clock.set(Timestamp(T0 + 100));
    assert!(a.db.delete(&t, &gone).unwrap());
    let later = Timestamp(T0 + 10_000);

    // B has not acknowledged the delete yet.
    assert_eq!(a.db.collect_tombstones(&t, &b.vv(&t), later).unwrap(), 0);
    assert_eq!(a.db.stats(&t).unwrap().deleted, 1);
    pull(&a, &b, &t);
    assert_eq!(b.vv(&t), vv(&[("a", 3)]));
    // Acknowledged, but not older than the cut-off.
    let at_delete = Timestamp(T0 + 100);
    assert_eq!(
        a.db.collect_tombstones(&t, &b.vv(&t), at_delete).unwrap(),
        0
    );
    assert_eq!(a.db.stats(&t).unwrap().deleted, 1);
    // Acknowledged and old enough.
    let after_delete = Timestamp(T0 + 101);
    assert_eq!(
        a.db.collect_tombstones(&t, &b.vv(&t), after_delete)
            .unwrap(),
        1
    );
    assert_eq!(
        a.db.collect_tombstones(&t, &b.vv(&t), after_delete)
            .unwrap(),
        0
    );
    let stats = a.db.stats(&t).unwrap();
    assert_eq!((stats.episodes, stats.deleted), (1, 0));
    assert!(a.db.get(&t, &gone).unwrap().is_none());
    assert_eq!(a.vv(&t), vv(&[("a", 3)]), "the op log stays");

    // The ops of the collected episode still replicate, without state.
    let ops =
        a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(
        seqs(&ops),
        vec![(hub("a"), 1), (hub("a"), 2), (hub("a"), 3)]
    );
    assert_eq!((ops[0].episode, ops[2].episode), (gone, gone));
    assert!(ops[0].state.is_none());
    assert!(ops[2].state.is_none());
    assert_eq!(ops[1].episode, kept);
    assert_eq!(live(&ops[1]).content.input, "two");

    // A hub joining later takes them and advances its version vector.
    let c = Hub::mem("c");
    let out = c.db.apply_ops(&t, &ops, c.now_ms()).unwrap();
    assert_eq!(out.applied, 3);
    assert_eq!(c.vv(&t), vv(&[("a", 3)]));
    assert!(c.db.get(&t, &gone).unwrap().is_none());
    assert!(c.db.get(&t, &kept).unwrap().is_some());
    let stats = c.db.stats(&t).unwrap();
    assert_eq!((stats.episodes, stats.deleted), (1, 0));

    // Replication goes on from there.
    let new = a.store(&t, NewEpisode::new("new task", "three", "o", 0.5));
    assert_eq!(pull(&a, &b, &t), 1);
    assert_eq!(pull(&a, &c, &t), 1);
    assert!(b.db.get(&t, &new).unwrap().is_some());
    // B collects its own copy of the tombstone once A holds all it holds.
    assert_eq!(
        b.db.collect_tombstones(&t, &a.vv(&t), after_delete)
            .unwrap(),
        1
    );
    assert_eq!(b.db.stats(&t).unwrap().deleted, 0);
}

#[test]
fn version_vector_op_log_and_clock_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let b = Hub::mem("b");
    let t = tenant("acme");
    let (ids, before) = {
        let a = Hub::redb("a", dir.path(), &key, &clock);
        let ids: Vec<EpisodeId> = (0..3)
            .map(|i| {
                clock.advance(10);
                a.store(&t, NewEpisode::new(format!("task {i}"), "in", "out", 0.5))
            })
            .collect();
        clock.advance(20_000);
        assert!(a.update(
            &t,
            &ids[0],
            EpisodeUpdate {
                reward: Some(0.9),
                ..EpisodeUpdate::default()
            }
        ));
        assert_eq!(a.vv(&t), vv(&[("a", 4)]));
        assert_eq!(pull(&a, &b, &t), 4);
        let before =
            a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
                .unwrap();
        (ids, before)
    };
    let old_stamp: Stamp = live(&before[0]).reward.stamp.clone();

    // The wall clock reads earlier after the restart.
    clock.set(Timestamp(T0 + 5));
    let a = Hub::redb("a", dir.path(), &key, &clock);
    assert_eq!(a.vv(&t), vv(&[("a", 4)]));
    let after =
        a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(after, before);
    assert!(a
        .db
        .ops_since(&t, &b.vv(&t), PAGE, PAGE_BYTES)
        .unwrap()
        .is_empty());

    // New writes continue the numbering.
    let new = a.store(&t, NewEpisode::new("task after restart", "in", "out", 0.5));
    assert_eq!(a.vv(&t), vv(&[("a", 5)]));
    let next =
        a.db.ops_since(&t, &vv(&[("a", 4)]), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(seqs(&next), vec![(hub("a"), 5)]);
    assert_eq!(next[0].episode, new);

    // An update after the restart is stamped after the one before it, and so wins.
    assert!(a.update(
        &t,
        &ids[0],
        EpisodeUpdate {
            reward: Some(0.1),
            ..EpisodeUpdate::default()
        }
    ));
    assert_eq!(a.db.get(&t, &ids[0]).unwrap().unwrap().reward, 0.1);
    let ops = a.db.ops_since(&t, &b.vv(&t), PAGE, PAGE_BYTES).unwrap();
    assert_eq!(seqs(&ops), vec![(hub("a"), 5), (hub("a"), 6)]);
    let new_stamp = &live(&ops[1]).reward.stamp;
    assert!(
        new_stamp.hlc > old_stamp.hlc,
        "{new_stamp:?} <= {old_stamp:?}"
    );
    assert_eq!(b.db.apply_ops(&t, &ops, b.now_ms()).unwrap().applied, 2);
    assert_eq!(b.db.get(&t, &ids[0]).unwrap().unwrap().reward, 0.1);
    assert_eq!(b.vv(&t), a.vv(&t));

    // And the other way round.
    let from_b = b.store(&t, NewEpisode::new("written on b", "in", "out", 0.5));
    assert_eq!(pull(&b, &a, &t), 1);
    assert_eq!(a.vv(&t), vv(&[("a", 6), ("b", 1)]));
    assert!(a.db.get(&t, &from_b).unwrap().is_some());
}

/// The clock resumes after stamps that no row keeps any more: an update stamped far ahead whose
/// episode was then deleted and its tombstone collected.
#[test]
fn the_clock_resumes_after_stamps_no_row_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let t = tenant("acme");
    let high = {
        let a = Hub::redb("a", dir.path(), &key, &clock);
        let id = a.store(&t, NewEpisode::new("task", "in", "out", 0.5));
        clock.advance(60_000);
        assert!(a.update(
            &t,
            &id,
            EpisodeUpdate {
                reward: Some(0.9),
                ..EpisodeUpdate::default()
            }
        ));
        let ops =
            a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
                .unwrap();
        let high = live(&ops[1]).reward.stamp.clone();
        assert!(a.db.delete(&t, &id).unwrap());
        let acked = a.vv(&t);
        assert_eq!(
            a.db.collect_tombstones(&t, &acked, Timestamp(u64::MAX))
                .unwrap(),
            1
        );
        high
    };
    // The wall clock reads a minute earlier after the restart.
    clock.set(Timestamp(T0));
    let a = Hub::redb("a", dir.path(), &key, &clock);
    let id = a.store(&t, NewEpisode::new("task after restart", "in", "out", 0.5));
    let ops =
        a.db.ops_since(&t, &vv(&[("a", 3)]), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(ops[0].episode, id);
    assert!(
        live(&ops[0]).created > high,
        "{:?} <= {high:?}",
        live(&ops[0]).created
    );
}

#[test]
fn replicated_episodes_reach_disk_only_sealed_under_the_receivers_key() {
    let dir = tempfile::tempdir().unwrap();
    let b_key = MasterKey::generate().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let a = Hub::mem("a");
    let t = tenant("acme");
    let marker = "QVZK-marker-5519";
    let id = a.store(&t, common::marked_episode(marker));
    assert!(a.update(
        &t,
        &id,
        EpisodeUpdate {
            critique: Some(Some(format!("updated {marker}"))),
            ..EpisodeUpdate::default()
        },
    ));
    {
        let b = Hub::redb("b", dir.path(), &b_key, &clock);
        assert_eq!(pull(&a, &b, &t), 2);
        let e = b.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(e.task, format!("task {marker}"));
        assert_eq!(e.critique, Some(format!("updated {marker}")));
    }
    common::assert_no_plaintext(dir.path(), marker);
    // B's own master key opens what it stored; nothing of A's keys is needed.
    let b = Hub::redb("b", dir.path(), &b_key, &clock);
    let e = b.db.get(&t, &id).unwrap().unwrap();
    assert_eq!(e, a.db.get(&t, &id).unwrap().unwrap());
    assert_eq!(b.find(&t, marker, Filter::default()), vec![id]);
}

#[test]
fn change_listeners_fire_when_a_page_applies_something() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let (acme, other) = (tenant("acme"), tenant("other"));
    let calls: Arc<Mutex<Vec<TenantId>>> = Arc::default();
    let sink = Arc::clone(&calls);
    b.db.add_change_listener(Arc::new(move |t: &TenantId| {
        sink.lock().unwrap().push(t.clone())
    }));
    let seen = || calls.lock().unwrap().clone();

    a.store(&acme, NewEpisode::new("one", "i", "o", 0.5));
    a.store(&acme, NewEpisode::new("two", "i", "o", 0.5));
    a.store(&other, NewEpisode::new("three", "i", "o", 0.5));
    a.store(&other, NewEpisode::new("four", "i", "o", 0.5));

    let page =
        a.db.ops_since(&acme, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(b.db.apply_ops(&acme, &page, b.now_ms()).unwrap().applied, 2);
    assert_eq!(seen(), vec![acme.clone()]);
    // A fully duplicate page: no change, no call.
    assert_eq!(b.db.apply_ops(&acme, &page, b.now_ms()).unwrap().applied, 0);
    assert_eq!(seen(), vec![acme.clone()]);

    // A page beyond a gap applies nothing either.
    let tail =
        a.db.ops_since(&other, &vv(&[("a", 1)]), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(
        b.db.apply_ops(&other, &tail, b.now_ms()).unwrap().applied,
        0
    );
    assert_eq!(seen(), vec![acme.clone()]);

    // Partly new: one call, for the tenant the page belongs to.
    let all =
        a.db.ops_since(&other, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(
        b.db.apply_ops(&other, &all[..1], b.now_ms())
            .unwrap()
            .applied,
        1
    );
    assert_eq!(seen(), vec![acme.clone(), other.clone()]);
    assert_eq!(b.db.apply_ops(&other, &all, b.now_ms()).unwrap().applied, 1);
    assert_eq!(seen(), vec![acme.clone(), other.clone(), other.clone()]);
    assert_eq!(b.db.apply_ops(&other, &all, b.now_ms()).unwrap().applied, 0);
    assert_eq!(seen().len(), 3);
}

#[test]
fn invalid_replicated_content_is_refused_and_nothing_is_stored() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let good = a.store(&t, NewEpisode::new("valid task", "in", "out", 0.5));
    let page =
        a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    let valid = live(&page[0]).clone();
    let limits = b.db.config().limits;
    let bad_id = EpisodeId::from_parts(T0, [9; 10]);

    type Break = fn(&mut LiveEpisode, &Limits);
    let cases: [(&str, Break); 10] = [
        ("task over the limit", |l, lim| {
            l.content.task = "x".repeat(lim.max_text_bytes + 1);
        }),
        ("empty task", |l, _| l.content.task = "  ".into()),
        ("non-finite reward", |l, _| l.reward.value = f64::NAN),
        ("too many tags", |l, lim| {
            l.tags.value = vec!["t".into(); lim.max_tags + 1];
        }),
        ("metadata that is not JSON", |l, _| {
            l.content.metadata_json = "{not json".into();
        }),
        ("metadata that is not an object", |l, _| {
            l.content.metadata_json = "[1, 2]".into();
        }),
        ("a metadata register that is not JSON", |l, _| {
            l.metadata.value = "{not json".into();
        }),
        ("a metadata register that is not an object", |l, _| {
            l.metadata.value = "[1, 2]".into();
        }),
        ("a metadata register over the limit", |l, lim| {
            l.metadata.value = format!(r#"{{"k":"{}"}}"#, "x".repeat(lim.max_metadata_bytes));
        }),
        ("a non-finite vector", |l, _| {
            if let Some(e) = &mut l.content.embedding {
                e.vector[0] = f32::NAN;
            }
        }),
    ];
    for (what, spoil) in cases {
        let mut bad = valid.clone();
        spoil(&mut bad, &limits);
        // A valid op first: the whole page is refused, not only the bad op.
        let ops = vec![
            page[0].clone(),
            Op {
                origin: hub("a"),
                seq: 2,
                episode: bad_id,
                state: Some(ReplicaState::Live(Box::new(bad))),
            },
        ];
        let err = b.db.apply_ops(&t, &ops, b.now_ms()).unwrap_err();
        assert!(
            matches!(&err, ReplicaError::Invalid { id, .. } if *id == bad_id),
            "{what}: {err}"
        );
        assert!(b.vv(&t).is_empty(), "{what}");
        assert!(b.db.get(&t, &good).unwrap().is_none(), "{what}");
        assert!(b.db.get(&t, &bad_id).unwrap().is_none(), "{what}");
        let stats = b.db.stats(&t).unwrap();
        assert_eq!((stats.episodes, stats.deleted), (0, 0), "{what}");
    }

    // The valid op alone applies.
    assert_eq!(
        b.db.apply_ops(&t, &page[..1], b.now_ms()).unwrap().applied,
        1
    );
    assert_eq!(b.vv(&t), vv(&[("a", 1)]));

    // A replicated update that breaks the limits is refused as well, and leaves the episode be.
    let mut spoiled = valid.clone();
    spoiled.critique.value = Some("c".repeat(limits.max_text_bytes + 1));
    spoiled.critique.stamp.hlc.wall_ms += 1;
    let op = Op {
        origin: hub("a"),
        seq: 2,
        episode: good,
        state: Some(ReplicaState::Live(Box::new(spoiled))),
    };
    let err = b.db.apply_ops(&t, &[op], b.now_ms()).unwrap_err();
    assert!(
        matches!(&err, ReplicaError::Invalid { id, .. } if *id == good),
        "{err}"
    );
    assert_eq!(b.vv(&t), vv(&[("a", 1)]));
    assert!(b.db.get(&t, &good).unwrap().unwrap().critique.is_none());
}

/// Storage that fails every write while `failing` is set, as a full disk does.
#[derive(Debug, Default)]
struct FailingStorage {
    inner: MemStorage,
    failing: std::sync::atomic::AtomicBool,
}

impl FailingStorage {
    fn fail(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Storage for FailingStorage {
    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Backend("No space left on device".into()));
        }
        self.inner.apply(writes)
    }
    fn episode(&self, t: &TenantId, id: &EpisodeId) -> Result<Option<StoredEpisode>, StorageError> {
        self.inner.episode(t, id)
    }
    fn scan_episodes(
        &self,
        t: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StorageError> {
        self.inner.scan_episodes(t, visit)
    }
    fn changes(
        &self,
        t: &TenantId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.inner.changes(t, after, limit)
    }
    fn ops(
        &self,
        t: &TenantId,
        origin: &HubId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.inner.ops(t, origin, after, limit)
    }
    fn version_vector(&self, t: &TenantId) -> Result<VersionVector, StorageError> {
        self.inner.version_vector(t)
    }
    fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        self.inner.tenants()
    }
    fn tenant_keys(&self, t: &TenantId) -> Result<Vec<WrappedTenantKey>, StorageError> {
        self.inner.tenant_keys(t)
    }
    fn tenant_meta(&self, t: &TenantId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.tenant_meta(t, name)
    }
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.meta(name)
    }
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.inner.meta_with_prefix(prefix)
    }
}

#[test]
fn a_page_that_storage_fails_to_write_leaves_nothing_and_applies_whole_on_retry() {
    let a = Hub::mem("a");
    let storage = Arc::new(FailingStorage::default());
    let (key, clock) = (
        MasterKey::generate().unwrap(),
        Arc::new(ManualClock::new(Timestamp(T0))),
    );
    let reopen = || {
        let db = open(
            Arc::clone(&storage) as Arc<dyn Storage>,
            &key,
            &clock,
            config("b"),
        );
        Hub {
            db: db.unwrap(),
            clock: Arc::clone(&clock),
            storage: Arc::clone(&storage) as Arc<dyn Storage>,
        }
    };
    let b = reopen();
    let (acme, other) = (tenant("acme"), tenant("other"));
    // `acme` is new at b (its first page must also create its key); `other` already lives there.
    let kept = b.store(&other, NewEpisode::new("kept task", "in", "out", 0.4));
    let ids: Vec<EpisodeId> = (0..5)
        .map(|i| {
            a.store(
                &acme,
                NewEpisode::new(format!("replicated task {i}"), "in", "out", 0.5),
            )
        })
        .collect();
    a.update(
        &acme,
        &ids[0],
        EpisodeUpdate {
            reward: Some(0.9),
            ..EpisodeUpdate::default()
        },
    );
    a.db.delete(&acme, &ids[1]).unwrap();
    let page =
        a.db.ops_since(&acme, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(page.len(), 7);

    storage.fail(true);
    for _ in 0..2 {
        let err = b.db.apply_ops(&acme, &page, b.now_ms()).unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains("No space left on device") && !line.contains('\n'),
            "{line}"
        );
        assert!(b.vv(&acme).is_empty());
        for id in &ids {
            assert!(b.db.get(&acme, id).unwrap().is_none());
        }
        assert!(b
            .find(&acme, "replicated task", Filter::default())
            .is_empty());
    }
    // The other tenant reads as before.
    assert_eq!(b.find(&other, "kept task", Filter::default()), vec![kept]);
    assert_eq!(b.vv(&other), vv(&[("b", 1)]));

    storage.fail(false);
    let out = b.db.apply_ops(&acme, &page, b.now_ms()).unwrap();
    assert_eq!((out.applied, out.vv.clone()), (7, a.vv(&acme)));
    assert_eq!(b.vv(&acme), a.vv(&acme));
    assert_eq!(b.db.get(&acme, &ids[0]).unwrap().unwrap().reward, 0.9);
    assert!(b.db.get(&acme, &ids[1]).unwrap().is_none());
    let mut found = b.find(&acme, "replicated task", Filter::default());
    found.sort();
    let mut live: Vec<EpisodeId> = ids.iter().copied().filter(|id| *id != ids[1]).collect();
    live.sort();
    assert_eq!(found, live);

    // What the retry wrote is whole on disk: the tenant's key included.
    drop(b);
    let b = reopen();
    assert_eq!(b.vv(&acme), a.vv(&acme));
    assert_eq!(b.db.get(&acme, &ids[0]).unwrap().unwrap().reward, 0.9);
    let mut found = b.find(&acme, "replicated task", Filter::default());
    found.sort();
    assert_eq!(found, live);
}

/// A hub that erased a tenant keeps counting its ops: what it accepts afterwards replicates,
/// and what it erased is not taken back from a peer that still holds it.
#[test]
fn after_an_erase_new_writes_replicate_and_erased_ops_are_not_taken_back() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let before: Vec<EpisodeId> = (0..3)
        .map(|i| {
            a.store(
                &t,
                NewEpisode::new(format!("before erase {i}"), "in", "out", 0.5),
            )
        })
        .collect();
    let from_b = b.store(&t, NewEpisode::new("written at b", "in", "out", 0.5));
    assert_eq!(pull(&a, &b, &t), 3);
    assert_eq!(pull(&b, &a, &t), 1);
    let held = vv(&[("a", 3), ("b", 1)]);
    assert_eq!(a.vv(&t), held);

    let report = a.db.erase_tenant(&t).unwrap();
    assert_eq!(report.episodes, 4);
    assert!(a.db.tenants().is_empty());
    // The vector still covers what was erased: a peer's full history applies nothing and
    // brings nothing back.
    assert_eq!(a.vv(&t), held);
    let everything =
        b.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(everything.len(), 4);
    let out = a.db.apply_ops(&t, &everything, a.now_ms()).unwrap();
    assert_eq!((out.applied, out.vv), (0, held.clone()));
    assert!(a.db.tenants().is_empty(), "an erased tenant came back");
    for id in before.iter().chain([&from_b]) {
        assert!(a.db.get(&t, id).unwrap().is_none());
    }

    // A's next write is op (a, 4): b takes it.
    let after = a.store(&t, NewEpisode::new("after erase", "in", "out", 0.5));
    assert_eq!(a.vv(&t), vv(&[("a", 4), ("b", 1)]));
    assert_eq!(pull(&a, &b, &t), 1);
    assert!(b.db.get(&t, &after).unwrap().is_some());
    assert_eq!(b.vv(&t), a.vv(&t));
    assert_eq!(a.db.stats(&t).unwrap().episodes, 1);
}

/// An episode its origin accepted is accepted by a hub with the same limits, even when an
/// update took it past the episode size limit (checked only when it was stored).
#[test]
fn an_episode_grown_past_the_size_limit_by_an_update_still_replicates() {
    let config = |name: &str| {
        let mut c = config(name);
        c.limits.max_episode_bytes = 4096;
        c
    };
    let (a, b) = (Hub::mem_with(config("a")), Hub::mem_with(config("b")));
    let t = tenant("acme");
    let id = a.store(&t, NewEpisode::new("x".repeat(3000), "in", "out", 0.5));
    a.update(
        &t,
        &id,
        EpisodeUpdate {
            critique: Some(Some("y".repeat(2000))),
            ..EpisodeUpdate::default()
        },
    );
    assert_eq!(pull(&a, &b, &t), 2);
    let got = b.db.get(&t, &id).unwrap().unwrap();
    assert_eq!(got.critique.map(|c| c.len()), Some(2000));
    assert_eq!(b.vv(&t), a.vv(&t));
}

/// A hub passes on the ops it erased without their content: a hub that lacks them advances
/// past them, and the erasing hub's later ops follow.
#[test]
fn erased_ops_are_passed_on_without_their_content() {
    let (a, c) = (Hub::mem("a"), Hub::mem("c"));
    let t = tenant("acme");
    let first = a.store(&t, NewEpisode::new("before the erase", "in", "out", 0.5));
    a.db.erase_tenant(&t).unwrap();
    let second = a.store(&t, NewEpisode::new("after the erase", "in", "out", 0.5));
    assert_eq!(a.vv(&t), vv(&[("a", 2)]));

    let from_a = a.db.ops_since(&t, &c.vv(&t), PAGE, PAGE_BYTES).unwrap();
    assert_eq!(seqs(&from_a), vec![(hub("a"), 1), (hub("a"), 2)]);
    assert!(from_a[0].state.is_none(), "an erased op carried a state");
    assert_eq!(pull(&a, &c, &t), 2);
    assert_eq!(c.vv(&t), vv(&[("a", 2)]));
    assert!(c.db.get(&t, &first).unwrap().is_none());
    assert!(c.db.get(&t, &second).unwrap().is_some());

    // The same after a restart of the erasing hub's store.
    let dir = tempfile::tempdir().unwrap();
    let (key, clock) = (
        MasterKey::generate().unwrap(),
        Arc::new(ManualClock::new(Timestamp(T0))),
    );
    let d = Hub::redb("d", dir.path(), &key, &clock);
    d.store(&t, NewEpisode::new("erased at d", "in", "out", 0.5));
    d.db.erase_tenant(&t).unwrap();
    drop(d);
    let d = Hub::redb("d", dir.path(), &key, &clock);
    d.store(
        &t,
        NewEpisode::new("after the erase at d", "in", "out", 0.5),
    );
    let to_c =
        d.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    assert_eq!(seqs(&to_c), vec![(hub("d"), 1), (hub("d"), 2)]);
    assert!(to_c[0].state.is_none() && to_c[1].state.is_some());
}

fn order(issuer: &Hub, t: &TenantId, scope: ErasureScope) -> Erasure {
    Erasure {
        id: ErasureId::from_parts(issuer.now_ms(), [7; 10]),
        tenant: t.clone(),
        scope,
        issued_by: issuer.db.hub_id().clone(),
        stamp: issuer.db.erasure_stamp(),
    }
}

/// Ids of the live episodes a hub holds of `t`.
fn held(h: &Hub, t: &TenantId) -> Vec<EpisodeId> {
    let mut ids: Vec<EpisodeId> =
        h.db.list(t, None, 1000)
            .unwrap()
            .episodes
            .into_iter()
            .map(|e| e.id)
            .collect();
    ids.sort();
    ids
}

/// An erasure order applied on two hubs: what it covers is gone from both and does not come
/// back through a concurrent update on the hub that learned of it late; what was written after
/// the order stays on both, even on the hub that held it when it learned of the order.
#[test]
fn an_erasure_order_converges_and_nothing_it_erased_comes_back() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let erased: Vec<EpisodeId> = (0..3)
        .map(|i| a.store(&t, NewEpisode::new(format!("secret {i}"), "in", "out", 0.5)))
        .collect();
    assert_eq!(pull(&a, &b, &t), 3);
    let keys_before = a.storage.tenant_keys(&t).unwrap();

    a.clock.advance(10);
    let o = order(&a, &t, ErasureScope::Tenant);
    let outcome = a.db.apply_erasure(&o).unwrap();
    assert_eq!(outcome.episodes, 3);
    assert_eq!(outcome.through, vv(&[("a", 3)]));
    let fingerprints: Vec<String> = keys_before.iter().map(|k| k.fingerprint()).collect();
    assert_eq!(
        outcome
            .destroyed_keys
            .iter()
            .map(|k| k.fingerprint.clone())
            .collect::<Vec<_>>(),
        fingerprints
    );
    assert!(held(&a, &t).is_empty());
    assert_eq!(a.db.erasures(&t).unwrap(), vec![o.clone()]);

    // b has not heard of the order: it updates an erased episode and writes a new one later.
    b.clock.advance(20);
    assert!(b.update(
        &t,
        &erased[0],
        EpisodeUpdate {
            reward: Some(0.99),
            ..EpisodeUpdate::default()
        }
    ));
    let later = b.store(&t, NewEpisode::new("written later", "in", "out", 0.7));
    pull(&b, &a, &t);
    assert_eq!(held(&a, &t), vec![later], "an erased episode came back");
    for id in &erased {
        assert!(a.db.get(&t, id).unwrap().is_none());
    }

    // b learns of the order: the same episodes remain, under a new key.
    let at_b = b.db.apply_erasure(&o).unwrap();
    assert_eq!(at_b.episodes, 3);
    assert_eq!(held(&b, &t), vec![later]);
    assert_eq!(b.db.get(&t, &later).unwrap().unwrap().reward, 0.7);
    assert_eq!(b.find(&t, "written later", Filter::default()), vec![later]);
    pull(&b, &a, &t);
    pull(&a, &b, &t);
    assert_eq!(a.vv(&t), b.vv(&t));
    assert_eq!(held(&a, &t), held(&b, &t));
    // Applying the order again erases nothing more.
    assert_eq!(b.db.apply_erasure(&o).unwrap().episodes, 0);
    assert_eq!(held(&b, &t), vec![later]);
    // No key of the erased tenant survives anywhere it was.
    for k in a.storage.tenant_keys(&t).unwrap() {
        assert!(!fingerprints.contains(&k.fingerprint()));
    }
}

/// A subject erasure removes the episodes whose metadata names the subject, on every hub,
/// and keeps the others and the tenant's key.
#[test]
fn a_subject_erasure_removes_only_the_subjects_episodes() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let of = |user: &str, i: u32| {
        NewEpisode::new(format!("task {user} {i}"), "in", "out", 0.5)
            .with_metadata(serde_json::json!({ "user_id": user }))
    };
    let u1: Vec<EpisodeId> = (0..2).map(|i| a.store(&t, of("u1", i))).collect();
    let u2: Vec<EpisodeId> = (0..2).map(|i| a.store(&t, of("u2", i))).collect();
    assert_eq!(pull(&a, &b, &t), 4);
    let keys = a.storage.tenant_keys(&t).unwrap();

    a.clock.advance(10);
    let o = order(
        &a,
        &t,
        ErasureScope::Subject(agentdb_memory::MetadataMatch::new(
            "user_id",
            &serde_json::json!("u1"),
        )),
    );
    let outcome = a.db.apply_erasure(&o).unwrap();
    assert_eq!(outcome.episodes, 2);
    assert!(outcome.destroyed_keys.is_empty());
    let mut expected = u2.clone();
    expected.sort();
    assert_eq!(held(&a, &t), expected);
    assert_eq!(a.storage.tenant_keys(&t).unwrap(), keys);

    // A concurrent update at b of the subject's episode is not taken back.
    b.clock.advance(20);
    assert!(b.update(
        &t,
        &u1[0],
        EpisodeUpdate {
            reward: Some(0.9),
            ..EpisodeUpdate::default()
        }
    ));
    pull(&b, &a, &t);
    assert_eq!(held(&a, &t), expected);
    assert_eq!(b.db.apply_erasure(&o).unwrap().episodes, 2);
    pull(&a, &b, &t);
    pull(&b, &a, &t);
    assert_eq!(held(&b, &t), expected);
    assert_eq!(a.vv(&t), b.vv(&t));
}

fn with_metadata(m: serde_json::Value) -> EpisodeUpdate {
    EpisodeUpdate::default().with_metadata(&m)
}

fn metadata_is(key: &str, value: serde_json::Value) -> Filter {
    Filter {
        metadata: vec![agentdb_memory::MetadataMatch::new(key, &value)],
        ..Filter::default()
    }
}

#[test]
fn metadata_updates_are_read_queried_and_kept_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let t = tenant("acme");
    let id;
    {
        let a = Hub::redb("a", dir.path(), &key, &clock);
        id = a.store(
            &t,
            NewEpisode::new("summarise invoice", "invoice 42", "total", 0.5)
                .with_metadata(serde_json::json!({"stage": "draft"})),
        );
        a.clock.advance(1_000);
        // Written with spaces; kept as compact JSON.
        let update = EpisodeUpdate {
            metadata_json: Some(r#"{ "stage": "final", "pages": 3 }"#.into()),
            ..EpisodeUpdate::default()
        };
        assert!(a.update(&t, &id, update));
        let e = a.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(
            e.metadata,
            serde_json::json!({"stage": "final", "pages": 3})
        );
        assert_eq!(e.task, "summarise invoice");
        assert_eq!(e.reward, 0.5);
        let stage = |v: &str| metadata_is("stage", serde_json::json!(v));
        assert_eq!(a.find(&t, "invoice", stage("final")), vec![id]);
        assert!(a.find(&t, "invoice", stage("draft")).is_empty());
        // Refused: not an object, not JSON, over the limit; the episode stays as it was.
        let limit = a.db.config().limits.max_metadata_bytes;
        for bad in [
            Some("[1, 2]".to_owned()),
            Some("null".to_owned()),
            Some(String::new()),
            Some("{not json".to_owned()),
            Some(format!(r#"{{"k":"{}"}}"#, "x".repeat(limit))),
        ] {
            let update = EpisodeUpdate {
                metadata_json: bad.clone(),
                ..EpisodeUpdate::default()
            };
            assert!(
                matches!(
                    a.db.update(&t, &id, &update),
                    Err(ReplicaError::Store(agentdb_memory::StoreError::Invalid(_)))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(a.db.get(&t, &id).unwrap().unwrap(), e);
    }
    let a = Hub::redb("a", dir.path(), &key, &clock);
    let e = a.db.get(&t, &id).unwrap().unwrap();
    assert_eq!(
        e.metadata,
        serde_json::json!({"stage": "final", "pages": 3})
    );
    assert_eq!(
        a.find(&t, "invoice", metadata_is("pages", serde_json::json!(3))),
        vec![id]
    );
}

#[test]
fn a_metadata_update_merges_with_concurrent_tags_and_the_later_metadata_wins() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let id = a.store(
        &t,
        NewEpisode::new("summarise invoice", "invoice 42", "total", 0.5)
            .with_metadata(serde_json::json!({"v": 0})),
    );
    pull(&a, &b, &t);

    // Concurrently: A sets metadata at T0+1s, B sets tags at T0+2s.
    a.clock.advance(1_000);
    assert!(a.update(&t, &id, with_metadata(serde_json::json!({"v": "a"}))));
    b.clock.advance(2_000);
    assert!(b.update(
        &t,
        &id,
        EpisodeUpdate {
            tags: Some(vec!["from-b".into()]),
            ..EpisodeUpdate::default()
        }
    ));
    assert_eq!(pull(&a, &b, &t), 1);
    assert_eq!(pull(&b, &a, &t), 1);
    for h in [&a, &b] {
        let e = h.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(
            e.metadata,
            serde_json::json!({"v": "a"}),
            "only A wrote metadata"
        );
        assert_eq!(e.tags, vec!["from-b".to_owned()], "only B wrote tags");
    }

    // Both now write metadata; B's, at T0+3s, is later than A's at T0+2.5s by wall time,
    // whichever arrives first.
    a.clock.advance(1_500);
    assert!(a.update(&t, &id, with_metadata(serde_json::json!({"v": "a2"}))));
    b.clock.advance(1_000);
    assert!(b.update(&t, &id, with_metadata(serde_json::json!({"v": "b2"}))));
    assert_eq!(pull(&b, &a, &t), 1);
    assert_eq!(pull(&a, &b, &t), 1);
    for h in [&a, &b] {
        let e = h.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(
            e.metadata,
            serde_json::json!({"v": "b2"}),
            "B's write is later"
        );
        assert_eq!(e.tags, vec!["from-b".to_owned()]);
        let found = h.find(&t, "invoice", metadata_is("v", serde_json::json!("b2")));
        assert_eq!(found, vec![id]);
    }
    assert_eq!(
        a.db.get(&t, &id).unwrap().unwrap(),
        b.db.get(&t, &id).unwrap().unwrap()
    );
    // The ops carry the register with its stamp, and the content without metadata.
    let ops =
        a.db.ops_since(&t, &VersionVector::new(), PAGE, PAGE_BYTES)
            .unwrap();
    let state = live(ops.last().unwrap());
    assert_eq!(state.metadata.value, r#"{"v":"b2"}"#);
    assert_eq!(state.metadata.stamp.hub, hub("b"));
    assert!(state.content.metadata_json.is_empty());
}
