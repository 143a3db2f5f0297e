//! Property tests of the federation merge rules: the replica join is a semilattice (so hubs
//! that saw the same states in any order, any number of times, agree), tombstones win,
//! registers keep the last write, version vectors form a lattice ordered by `compare`, and the
//! hybrid logical clock never goes backwards.
//!
//! A stamp is issued once, so everything written with a stamp (an episode's content, a
//! register's value) is derived from the stamp here: two states that carry the same stamp
//! always carry the same value with it, as they do between real hubs.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use agentdb_core::{
    AgentId, Causality, EpisodeContent, EpisodeId, EpisodeUpdate, Hlc, HlcClock, HubId,
    LiveEpisode, Lww, ReplicaState, Stamp, Timestamp, VersionVector,
};
use proptest::prelude::*;

const HUBS: [&str; 4] = ["hub-a", "hub-b", "hub-c", "hub-d"];

fn hub(i: usize) -> HubId {
    HubId::new(HUBS[i % HUBS.len()]).unwrap()
}

/// Stamps from a small space, so that generated states share stamps often.
fn stamp() -> impl Strategy<Value = Stamp> {
    (0u64..6, 0u32..3, 0usize..3).prop_map(|(wall, counter, h)| {
        Stamp::new(Hlc::new(1_700_000_000_000 + wall, counter), hub(h))
    })
}

/// A number derived from a stamp, the same wherever the stamp appears.
fn digest(s: &Stamp) -> u64 {
    let h = s.hub.as_str().bytes().fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    (s.hlc.wall_ms % 1000)
        .wrapping_mul(7919)
        .wrapping_add(u64::from(s.hlc.counter).wrapping_mul(104_729))
        .wrapping_add(h)
}

fn reward_of(s: &Stamp) -> f64 {
    (digest(s) % 101) as f64 / 100.0
}

fn critique_of(s: &Stamp) -> Option<String> {
    let d = digest(s);
    (!d.is_multiple_of(3)).then(|| format!("critique-{d}"))
}

fn tags_of(s: &Stamp) -> Vec<String> {
    let d = digest(s);
    (0..d % 3).map(|i| format!("tag-{}", d + i)).collect()
}

fn metadata_of(s: &Stamp) -> String {
    let d = digest(s);
    if d.is_multiple_of(4) {
        String::new()
    } else {
        format!("{{\"n\":{d}}}")
    }
}

fn content_of(s: &Stamp) -> EpisodeContent {
    let d = digest(s);
    EpisodeContent {
        agent: Some(AgentId::new(format!("agent-{}", d % 5)).unwrap()),
        session: None,
        task: format!("task-{d}"),
        input: format!("input-{d}"),
        output: format!("output-{d}"),
        metadata_json: metadata_of(s),
        tokens_used: d % 1000,
        latency_ms: d % 100,
        created: s.hlc.wall(),
        origin: Some(s.hub.clone()),
        embedding: None,
        expires_at: None,
    }
}

/// The episode a put at `s` writes.
fn put(s: &Stamp) -> LiveEpisode {
    LiveEpisode::new(
        s.clone(),
        content_of(s),
        reward_of(s),
        critique_of(s),
        tags_of(s),
    )
}

/// The update written at `s`; `fields` selects which registers it sets (bit 0 reward, bit 1
/// critique, bit 2 tags, bit 3 metadata).
fn update_of(s: &Stamp, fields: u8) -> EpisodeUpdate {
    EpisodeUpdate {
        reward: (fields & 1 != 0).then(|| reward_of(s)),
        critique: (fields & 2 != 0).then(|| critique_of(s)),
        tags: (fields & 4 != 0).then(|| tags_of(s)),
        metadata_json: (fields & 8 != 0).then(|| metadata_of(s)),
    }
}

fn live() -> impl Strategy<Value = ReplicaState> {
    (stamp(), prop::collection::vec((stamp(), 0u8..16), 0..5)).prop_map(|(created, updates)| {
        let mut episode = put(&created);
        for (s, fields) in &updates {
            episode.update(&update_of(s, *fields), s);
        }
        ReplicaState::Live(Box::new(episode))
    })
}

/// A state one hub may hold of an episode: live with some updates seen, or a tombstone.
fn state() -> impl Strategy<Value = ReplicaState> {
    prop_oneof![
        3 => live(),
        1 => stamp().prop_map(ReplicaState::Deleted),
    ]
}

/// A few episode ids, so that ops collide on episodes.
fn episode_id(n: u8) -> EpisodeId {
    EpisodeId::from_parts(1_700_000_000_000, [n; 10])
}

type Tenant = BTreeMap<EpisodeId, ReplicaState>;

fn apply(tenant: &mut Tenant, (episode, state): &(u8, ReplicaState)) {
    let id = episode_id(*episode);
    let merged = match tenant.remove(&id) {
        Some(current) => current.join(state),
        None => state.clone(),
    };
    tenant.insert(id, merged);
}

/// Ops of one tenant: (episode, state).
type Ops = Vec<(u8, ReplicaState)>;

/// Ops and a delivery of them: shuffled, each at least once, some twice.
fn ops_and_delivery() -> impl Strategy<Value = (Ops, Ops)> {
    prop::collection::vec((0u8..4, state()), 1..12).prop_flat_map(|ops| {
        let n = ops.len();
        (Just(ops), prop::collection::vec(0..n, 0..8)).prop_flat_map(|(ops, dups)| {
            let mut delivery = ops.clone();
            delivery.extend(dups.iter().map(|&i| ops[i].clone()));
            (Just(ops), Just(delivery).prop_shuffle())
        })
    })
}

proptest! {
    #[test]
    fn join_is_commutative(a in state(), b in state()) {
        prop_assert_eq!(a.clone().join(&b), b.join(&a));
    }

    #[test]
    fn join_is_associative(a in state(), b in state(), c in state()) {
        let left = a.clone().join(&b).join(&c);
        let right = a.join(&b.join(&c));
        prop_assert_eq!(left, right);
    }

    #[test]
    fn join_is_idempotent(a in state(), b in state()) {
        prop_assert_eq!(a.clone().join(&a), a.clone());
        let ab = a.join(&b);
        prop_assert_eq!(ab.clone().join(&b), ab);
    }

    #[test]
    fn any_delivery_order_with_duplicates_gives_the_same_tenant(
        (ops, delivery) in ops_and_delivery(),
    ) {
        let mut in_order = Tenant::new();
        for op in &ops {
            apply(&mut in_order, op);
        }
        let mut delivered = Tenant::new();
        for op in &delivery {
            apply(&mut delivered, op);
        }
        prop_assert_eq!(&delivered, &in_order);
        let mut reversed = Tenant::new();
        for op in delivery.iter().rev() {
            apply(&mut reversed, op);
        }
        prop_assert_eq!(reversed, in_order);
    }

    #[test]
    fn a_tombstone_wins_over_any_live_state(l in live(), d in stamp()) {
        let tomb = ReplicaState::Deleted(d.clone());
        prop_assert_eq!(l.clone().join(&tomb), tomb.clone());
        prop_assert_eq!(tomb.clone().join(&l), tomb);
    }

    #[test]
    fn two_tombstones_keep_the_later_stamp(a in stamp(), b in stamp()) {
        let joined = ReplicaState::Deleted(a.clone()).join(&ReplicaState::Deleted(b.clone()));
        prop_assert_eq!(joined, ReplicaState::Deleted(a.max(b)));
    }

    #[test]
    fn the_max_stamp_bounds_every_stamp_of_a_state(l in live()) {
        let ReplicaState::Live(e) = &l else { unreachable!("live() makes live states") };
        let max = l.max_stamp();
        let stamps = [
            &e.created,
            &e.reward.stamp,
            &e.critique.stamp,
            &e.tags.stamp,
            &e.metadata.stamp,
        ];
        for s in stamps {
            prop_assert!(s <= max);
        }
        prop_assert!(stamps.contains(&max));
    }

    #[test]
    fn the_later_update_wins_in_either_order(
        stamps in prop::collection::btree_set(stamp(), 3),
        fields in (1u8..16, 1u8..16),
        base_first in any::<bool>(),
    ) {
        let stamps: Vec<Stamp> = stamps.into_iter().collect();
        // The put is either the earliest write or a later one (an update older than the put
        // then loses to the put's values).
        let (base, earlier, later) = if base_first {
            (&stamps[0], &stamps[1], &stamps[2])
        } else {
            (&stamps[1], &stamps[0], &stamps[2])
        };
        let (fe, fl) = fields;
        let (ue, ul) = (update_of(earlier, fe), update_of(later, fl));

        let mut forward = put(base);
        forward.update(&ue, earlier);
        forward.update(&ul, later);
        let mut backward = put(base);
        backward.update(&ul, later);
        backward.update(&ue, earlier);
        prop_assert_eq!(&forward, &backward);

        // Each register holds the value of the latest write that set it.
        let latest = |bit: u8| -> Stamp {
            [(base, 0xff), (earlier, fe), (later, fl)]
                .into_iter()
                .filter(|(_, f)| f & bit != 0)
                .map(|(s, _)| s.clone())
                .max()
                .unwrap()
        };
        let r = latest(1);
        prop_assert_eq!(&forward.reward, &Lww::new(r.clone(), reward_of(&r)));
        let c = latest(2);
        prop_assert_eq!(&forward.critique, &Lww::new(c.clone(), critique_of(&c)));
        let t = latest(4);
        prop_assert_eq!(&forward.tags, &Lww::new(t.clone(), tags_of(&t)));
        let m = latest(8);
        prop_assert_eq!(&forward.metadata, &Lww::new(m.clone(), metadata_of(&m)));
        // The content never changes (its metadata moved into the register).
        let content = EpisodeContent { metadata_json: String::new(), ..content_of(base) };
        prop_assert_eq!(&forward.content, &content);
        prop_assert_eq!(&forward.created, base);
    }
}

// ---- Version vectors ----------------------------------------------------------------------

fn vv() -> impl Strategy<Value = VersionVector> {
    prop::collection::vec((0usize..HUBS.len(), 0u64..4), 0..6)
        .prop_map(|entries| entries.into_iter().map(|(h, s)| (hub(h), s)).collect())
}

/// The entries of every hub, zeros included.
fn pointwise(v: &VersionVector) -> Vec<u64> {
    (0..HUBS.len()).map(|i| v.get(&hub(i))).collect()
}

fn brute_compare(a: &VersionVector, b: &VersionVector) -> Causality {
    let (pa, pb) = (pointwise(a), pointwise(b));
    let ahead = pa.iter().zip(&pb).any(|(x, y)| x > y);
    let behind = pa.iter().zip(&pb).any(|(x, y)| x < y);
    match (ahead, behind) {
        (false, false) => Causality::Equal,
        (true, false) => Causality::Dominates,
        (false, true) => Causality::DominatedBy,
        (true, true) => Causality::Concurrent,
    }
}

fn reverse(c: Causality) -> Causality {
    match c {
        Causality::Dominates => Causality::DominatedBy,
        Causality::DominatedBy => Causality::Dominates,
        other => other,
    }
}

/// `a ≤ b` in the order of knowledge.
fn le(a: &VersionVector, b: &VersionVector) -> bool {
    matches!(a.compare(b), Causality::Equal | Causality::DominatedBy)
}

fn merged(a: &VersionVector, b: &VersionVector) -> VersionVector {
    let mut m = a.clone();
    m.merge(b);
    m
}

#[test]
fn disjoint_single_entries_are_concurrent() {
    let a: VersionVector = [(hub(0), 1)].into_iter().collect();
    let b: VersionVector = [(hub(1), 1)].into_iter().collect();
    assert_eq!(a.compare(&b), Causality::Concurrent);
    assert_eq!(b.compare(&a), Causality::Concurrent);
}

proptest! {
    #[test]
    fn compare_agrees_with_the_pointwise_order(a in vv(), b in vv()) {
        prop_assert_eq!(a.compare(&b), brute_compare(&a, &b));
    }

    #[test]
    fn compare_is_antisymmetric(a in vv(), b in vv()) {
        prop_assert_eq!(a.compare(&b), reverse(b.compare(&a)));
        prop_assert_eq!(a.compare(&b) == Causality::Equal, a == b);
        prop_assert_eq!(a.compare(&a), Causality::Equal);
    }

    #[test]
    fn compare_is_transitive(a in vv(), b in vv(), c in vv()) {
        if le(&a, &b) && le(&b, &c) {
            prop_assert!(le(&a, &c));
        }
    }

    #[test]
    fn zero_entries_are_not_stored(entries in prop::collection::vec((0usize..4, 0u64..3), 0..8)) {
        let with: VersionVector = entries.iter().map(|&(h, s)| (hub(h), s)).collect();
        let without: VersionVector =
            entries.iter().filter(|(_, s)| *s > 0).map(|&(h, s)| (hub(h), s)).collect();
        prop_assert_eq!(&with, &without);
        prop_assert!(with.iter().all(|(_, s)| s > 0));
    }

    #[test]
    fn merge_is_the_least_upper_bound(a in vv(), b in vv(), c in vv()) {
        let ab = merged(&a, &b);
        let expected: Vec<u64> =
            pointwise(&a).iter().zip(pointwise(&b)).map(|(x, y)| (*x).max(y)).collect();
        prop_assert_eq!(pointwise(&ab), expected);
        prop_assert_eq!(&ab, &merged(&b, &a));
        prop_assert_eq!(merged(&ab, &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(&merged(&a, &a), &a);
        prop_assert!(le(&a, &ab) && le(&b, &ab));
        if le(&a, &c) && le(&b, &c) {
            prop_assert!(le(&ab, &c));
        }
        // Any upper bound of both is above the merge.
        let upper = merged(&ab, &c);
        prop_assert!(le(&ab, &upper));
    }

    #[test]
    fn meet_is_the_greatest_lower_bound(a in vv(), b in vv(), c in vv()) {
        let m = a.meet(&b);
        let expected: Vec<u64> =
            pointwise(&a).iter().zip(pointwise(&b)).map(|(x, y)| (*x).min(y)).collect();
        prop_assert_eq!(pointwise(&m), expected);
        prop_assert_eq!(&m, &b.meet(&a));
        prop_assert_eq!(m.meet(&c), a.meet(&b.meet(&c)));
        prop_assert_eq!(&a.meet(&a), &a);
        prop_assert!(le(&m, &a) && le(&m, &b));
        if le(&c, &a) && le(&c, &b) {
            prop_assert!(le(&c, &m));
        }
        // Absorption: meet and merge form a lattice.
        prop_assert_eq!(&merged(&a, &m), &a);
        prop_assert_eq!(&a.meet(&merged(&a, &b)), &a);
        // Entries of 0 are not stored by meet either.
        prop_assert!(m.iter().all(|(_, s)| s > 0));
    }

    #[test]
    fn missing_from_and_lead_over_are_the_pointwise_differences(a in vv(), b in vv()) {
        let missing: Vec<(HubId, u64, u64)> =
            a.missing_from(&b).map(|(h, from, to)| (h.clone(), from, to)).collect();
        let expected: Vec<(HubId, u64, u64)> = (0..HUBS.len())
            .map(hub)
            .filter(|h| a.get(h) > b.get(h))
            .map(|h| {
                let (from, to) = (b.get(&h), a.get(&h));
                (h, from, to)
            })
            .collect();
        prop_assert_eq!(&missing, &expected);
        let lead: u64 = pointwise(&a)
            .iter()
            .zip(pointwise(&b))
            .map(|(x, y)| x.saturating_sub(y))
            .sum();
        prop_assert_eq!(a.lead_over(&b), lead);
        prop_assert_eq!(a.lead_over(&b) == 0, le(&a, &b));
        // What `a` lacks of `b`, added to `a`, gives the merge.
        let mut filled = a.clone();
        for (h, _, to) in b.missing_from(&a) {
            filled.set(h.clone(), to);
        }
        prop_assert_eq!(filled, merged(&a, &b));
    }

    #[test]
    fn advance_only_accepts_the_next_seq(a in vv(), h in 0usize..4, seq in 0u64..6) {
        let h = hub(h);
        let mut v = a.clone();
        let accepted = v.advance(&h, seq);
        prop_assert_eq!(accepted, seq == a.get(&h) + 1);
        if accepted {
            prop_assert_eq!(v.get(&h), seq);
            prop_assert_eq!(v.compare(&a), Causality::Dominates);
            prop_assert_eq!(v.lead_over(&a), 1);
            prop_assert!(v.covers(&h, seq));
        } else {
            prop_assert_eq!(&v, &a);
        }
        for other in (0..HUBS.len()).map(hub).filter(|o| *o != h) {
            prop_assert_eq!(v.get(&other), a.get(&other));
        }
    }
}

// ---- Hybrid logical clock -----------------------------------------------------------------

/// One call on a clock.
#[derive(Debug, Clone)]
enum Call {
    Now { physical: u64 },
    Observe { remote: Hlc, physical: u64 },
}

const SKEW: u64 = 100;

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (0u64..1000).prop_map(|physical| Call::Now { physical }),
        (0u64..1200, 0u32..4, 0u64..1000).prop_map(|(wall, counter, physical)| Call::Observe {
            remote: Hlc::new(wall, counter),
            physical,
        }),
    ]
}

proptest! {
    #[test]
    fn now_is_strictly_increasing_and_after_everything_observed(
        calls in prop::collection::vec(call(), 1..60),
        start in prop_oneof![Just(Hlc::default()), Just(Hlc::new(500, u32::MAX - 1))],
    ) {
        let mut clock = HlcClock::resume(start, SKEW);
        // The largest timestamp issued or accepted so far.
        let mut high = start;
        let mut issued = BTreeSet::new();
        for c in calls {
            match c {
                Call::Now { physical } => {
                    let t = clock.now(physical);
                    prop_assert!(t > high, "{t:?} is not after {high:?}");
                    prop_assert!(t.wall_ms >= physical);
                    prop_assert!(issued.insert(t));
                    high = t;
                }
                Call::Observe { remote, physical } => {
                    let before = clock.last();
                    let ahead = remote.wall_ms.saturating_sub(physical);
                    match clock.observe(remote, physical) {
                        Ok(()) => {
                            prop_assert!(ahead <= SKEW);
                            prop_assert_eq!(clock.last(), before.max(remote));
                            high = high.max(remote);
                        }
                        Err(e) => {
                            prop_assert!(ahead > SKEW);
                            prop_assert_eq!(e.ahead_ms, ahead);
                            prop_assert_eq!(e.limit_ms, SKEW);
                            prop_assert_eq!(clock.last(), before, "a refused stamp is ignored");
                        }
                    }
                }
            }
            prop_assert_eq!(clock.last(), high);
        }
    }
}

#[test]
fn stamps_order_by_clock_then_hub() {
    let s = |wall, counter, h| Stamp::new(Hlc::new(wall, counter), hub(h));
    assert!(s(1, 0, 3) < s(1, 1, 0));
    assert!(s(1, 1, 0) < s(1, 1, 1));
    assert!(s(1, 9, 3) < s(2, 0, 0));
    assert_eq!(s(1, 0, 0).hlc.wall(), Timestamp(1));
}

#[test]
fn an_update_that_only_sets_metadata_is_not_empty() {
    assert!(EpisodeUpdate::default().is_empty());
    let update = EpisodeUpdate::default().with_metadata(&serde_json::json!({"k": [1, "v"]}));
    assert!(!update.is_empty());
    assert_eq!(update.metadata_json.as_deref(), Some(r#"{"k":[1,"v"]}"#));
}
