//! The deterministic federation simulation ([`agentdb_testkit::fedsim`]), over the store model
//! and over the memory engine.
//!
//! - `many_seeds`: random runs over the model, seeds `0..FED_SIM_SEEDS` (default 1000).
//! - `engine_seeds`: random runs over the engine, seeds `0..FED_SIM_ENGINE_SEEDS` (default 300).
//! - `model::*`, `engine::*`: the scenarios below, over each store.
//! - `the_checks_catch_a_collector_that_forgets_hubs_that_are_away`: the random runs fail
//!   with the tombstone collection hubs had before (the one that lost deletes).
//!
//! `FED_SIM_SEED=<seed>` makes both random runners replay exactly that seed; a failing seed is
//! printed as `FED_SIM_SEED=<seed>`.

use std::collections::BTreeSet;

use agentdb_core::{Causality, EpisodeUpdate, HubId, ReplicaState};
use agentdb_testkit::fedsim::{
    on_failure, region, run_params, run_seed, seeds, tenant, Collection, Counts, EngineStore,
    ModelStore, Params, Sim, SimStore, Topology, WriteKind, MAX_SKEW_MS,
};

/// Runs `seeds` over store `S` and prints what happened in total. A failing seed is reported
/// as `FED_SIM_SEED=<seed> (<the run's shape>)<after>`.
fn run_seeds<S: SimStore>(seeds: Vec<u64>, after: &str) -> Counts {
    let sweep = seeds.len() >= 100;
    let mut totals = Counts::default();
    for seed in seeds {
        let sim = on_failure(
            || {
                format!(
                    "FED_SIM_SEED={seed} ({}){after}",
                    Params::random(seed).describe()
                )
            },
            || run_seed::<S>(seed),
        );
        totals += &sim.counts;
    }
    eprintln!("{totals:?}");
    if sweep {
        // A sweep must have exercised every fault, replays that brought ops a broken connection
        // had lost among them.
        assert!(totals.breaks > 0 && totals.partitions > 0 && totals.crashes > 0);
        assert!(totals.replays > 0 && totals.replayed_ops_applied > 0);
        // And tombstones were collected, some while a hub was away for long.
        assert!(totals.collected > 0 && totals.long_outages > 0);
    }
    totals
}

/// Random runs over the model: seeds `0..FED_SIM_SEEDS` (or just `FED_SIM_SEED`), the topology
/// rotating with the seed.
#[test]
fn many_seeds() {
    run_seeds::<ModelStore>(seeds("FED_SIM_SEEDS", 1000), "");
}

/// Random runs over the memory engine: seeds `0..FED_SIM_ENGINE_SEEDS` (or just
/// `FED_SIM_SEED`).
#[test]
fn engine_seeds() {
    run_seeds::<EngineStore>(
        seeds("FED_SIM_ENGINE_SEEDS", 300),
        " over the engine (engine_seeds)",
    );
}

/// The collection hubs had before counted only the links up at the time: a hub nobody dials
/// collected a tombstone while a hub holding the episode was away, which then got the delete
/// as a collected op and kept serving the episode. The random runs must catch it, and do
/// within a few seeds.
#[test]
fn the_checks_catch_a_collector_that_forgets_hubs_that_are_away() {
    let caught = (0..30u64)
        .filter(|&seed| {
            let mut p = Params::random(seed);
            p.collection = p
                .collection
                .map(|(_, every)| (Collection::ConnectedLinks, every));
            std::panic::catch_unwind(|| run_params::<ModelStore>(p)).is_err()
        })
        .count();
    assert!(
        caught >= 3,
        "the wrong collection passed {} of 30 runs",
        30 - caught
    );
}

// ---- Scenarios ----------------------------------------------------------------------------

/// Hubs `0..n`.
fn up_to(n: usize) -> BTreeSet<usize> {
    (0..n).collect()
}

/// Two sides of a partition write; nothing crosses while it lasts; after it heals both sides
/// hold everything.
fn a_partition_heals_and_both_sides_converge<S: SimStore>() {
    for seed in 0..20 {
        on_failure(
            || format!("partition: seed {seed}"),
            || {
                let mut sim = Sim::<S>::new(Params::quiet(seed, Topology::Mesh, 5));
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
fn a_crashed_hub_restarts_from_its_store_and_catches_up<S: SimStore>() {
    for seed in 0..20 {
        on_failure(
            || format!("crash-restart: seed {seed}"),
            || {
                let mut sim = Sim::<S>::new(Params::quiet(seed, Topology::HubAndSpoke, 4));
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
fn writes_relay_through_the_hierarchy_and_residency_holds<S: SimStore>() {
    for seed in 0..10 {
        on_failure(
            || format!("hierarchy: seed {seed}"),
            || {
                // h0 global root; h1 eu, h2 us regionals; h3, h5 eu edges; h4, h6 us edges.
                let mut sim = Sim::<S>::new(Params::quiet(seed, Topology::Hierarchical, 7));
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
fn every_topology_converges_without_faults<S: SimStore>() {
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
                    p.skewed = None;
                    p.breaks = false;
                    p.partitions = false;
                    p.crashes = false;
                    p.replays = false;
                    let mut sim = Sim::<S>::new(p);
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
fn a_hub_beyond_the_skew_bound_is_refused_while_the_others_converge<S: SimStore>() {
    for seed in 0..10 {
        if std::env::var("SKEWSEED").is_ok_and(|s| s != seed.to_string()) {
            continue;
        }
        on_failure(
            || format!("skew: seed {seed}"),
            || {
                let mut p = Params::random(seed);
                p.topology = Topology::Mesh;
                p.hubs = 5;
                p.skewed = Some((2, 2 * MAX_SKEW_MS));
                let skewed = HubId::new("h2").expect("valid hub id");
                let mut sim = Sim::<S>::new(p);
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
                assert!(sim.refused_here() > 0, "no page was refused");
            },
        );
    }
}

/// A hub that believes an eu-only tenant may go anywhere sends its pages to a us hub, which
/// refuses them.
fn a_misconfigured_hub_cannot_move_data_across_a_boundary<S: SimStore>() {
    for seed in 0..10 {
        on_failure(
            || format!("misconfigured: seed {seed}"),
            || {
                // h0 (eu) thinks every tenant may go anywhere; its spokes h1 (eu), h2 (us) and
                // h3 (eu) know better.
                let mut p = Params::quiet(seed, Topology::HubAndSpoke, 4);
                p.misconfigured = Some(0);
                let mut sim = Sim::<S>::new(p);
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
                assert!(sim.refused_here() > 0, "the us spoke refused h0's pages");
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
fn a_restarted_hub_stamps_after_what_a_tombstone_absorbed<S: SimStore>() {
    let mut p = Params::quiet(0, Topology::Mesh, 3);
    p.offsets = Some(vec![5_000, -5_000, -5_000]);
    let mut sim = Sim::<S>::new(p);
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

/// A hub whose clock is beyond the skew bound can still relay its peers' ops, whose states
/// carry no far-future stamp. Here the eu regional h1 is two minutes ahead and has written one
/// op of its own; the eu edge h3's put must still reach the root h0 and the us hubs h2 and h4.
/// Pages list each origin's ops in turn, h1's first: a refused op must hold back only its own
/// origin's later ops, not h3's.
fn a_skewed_relay_still_relays_the_ops_of_others<S: SimStore>() {
    let mut p = Params::quiet(0, Topology::Hierarchical, 5);
    p.skewed = Some((1, 2 * MAX_SKEW_MS));
    let mut sim = Sim::<S>::new(p);
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

/// After the network went quiet, every page the links kept is delivered again, newest first
/// (duplicates, in reverse order): every hub still holds exactly what it held, and the network
/// goes quiet again. (Replays that bring ops a hub lacked are part of the random runs.)
fn stale_pages_delivered_again_in_reverse_change_nothing<S: SimStore>() {
    for (seed, topology) in [
        (4, Topology::Hierarchical),
        (5, Topology::Mesh),
        (6, Topology::HubAndSpoke),
    ] {
        on_failure(
            || format!("replays, {topology:?}: seed {seed}"),
            || {
                let mut p = Params::random(seed);
                p.topology = topology;
                p.skewed = None;
                p.replays = false;
                let mut sim = Sim::<S>::new(p);
                sim.quiesce(true);
                sim.check();
                let held = |sim: &Sim<S>| -> Vec<_> {
                    sim.hubs
                        .iter()
                        .flat_map(|h| sim.tenants.iter().map(|t| h.store.tenant(t)))
                        .collect()
                };
                let before = held(&sim);
                assert!(sim.replay_kept_pages() > 0, "no page was kept");
                assert_eq!(held(&sim), before, "a replayed page changed a store");
                sim.quiesce(true);
                sim.check();
                sim.check_sessions();
                assert_eq!(held(&sim), before);
            },
        );
    }
}

/// A hub-and-spoke federation collecting tombstones: spoke h2 holds an episode and stops; the
/// episode is deleted at spoke h1; every hub up collects what it may, the center h0 restarts,
/// and h2 stays away far longer. When h2 is back it holds the episode deleted (as a tombstone
/// or collected), and once h2 has the delete every tombstone goes.
fn a_hub_away_longer_than_tombstones_are_kept_gets_the_delete<S: SimStore>() {
    for seed in 0..10 {
        on_failure(
            || format!("away for long: seed {seed}"),
            || {
                let mut p = Params::quiet(seed, Topology::HubAndSpoke, 4);
                p.collection = Some((Collection::KnownHolders, 20));
                let mut sim = Sim::<S>::new(p);
                sim.run_for(50);
                let t = tenant("t-open");
                let e = sim.put(1, &t);
                sim.run_for(200);
                assert!(
                    sim.hubs[2].store.get(&t, &e).is_some(),
                    "h2 has the episode"
                );
                sim.crash(2, 5_000);
                sim.run_for(50);
                sim.commit(1, &t, e, WriteKind::Delete)
                    .expect("h1 holds the episode");
                sim.run_for(1_000);
                sim.crash(0, 100);
                sim.run_for(1_000);
                // Away all along: the center and h3 kept the tombstone for it.
                assert!(sim.hubs[0]
                    .store
                    .get(&t, &e)
                    .is_some_and(|s| s.is_deleted()));
                sim.run_for(3_500);
                assert!(
                    sim.hubs[2].store.get(&t, &e).is_none_or(|s| s.is_deleted()),
                    "h2 serves an episode deleted while it was away"
                );
                sim.quiesce(true);
                sim.check();
                sim.collect_everywhere();
                assert_eq!(sim.tombstones_held(), 0);
            },
        );
    }
}

/// A mesh hub collects a tombstone only once it has heard from every hub it dials, not merely
/// once it has had a connection to each. h1's first connection to h2 breaks before either
/// Hello is in, and h2 is away by the time h1 is back: h1 has never heard of h2, which holds
/// h0's episode live (h0 heard h2's Hello, and keeps the tombstone for it). Had h1 collected the
/// delete, h2 would get it from h1 as a collected op while it holds the episode live.
fn a_hub_collects_nothing_before_it_has_heard_from_every_hub_it_dials<S: SimStore>() {
    for seed in 0..10 {
        on_failure(
            || format!("never heard: seed {seed}"),
            || {
                let mut p = Params::quiet(seed, Topology::Mesh, 3);
                p.collection = Some((Collection::KnownHolders, 20));
                let mut sim = Sim::<S>::new(p);
                // h1 is cut off before any Hello crosses; h0 and h2 link.
                sim.partition(&BTreeSet::from([1]), 300);
                sim.run_for(100);
                let t = tenant("t-open");
                let e = sim.put(0, &t);
                sim.run_for(100);
                assert!(
                    sim.hubs[2].store.get(&t, &e).is_some(),
                    "h2 has the episode"
                );
                // h2 goes away for long; h1 comes back and links with h0 only.
                sim.partition(&BTreeSet::from([2]), 2_000);
                sim.run_for(300);
                sim.commit(0, &t, e, WriteKind::Delete)
                    .expect("h0 holds the episode");
                sim.run_for(1_000);
                assert!(
                    sim.hubs[1]
                        .store
                        .get(&t, &e)
                        .is_some_and(|s| s.is_deleted()),
                    "h1 kept the tombstone for h2, which it dials but never heard from"
                );
                // h2 comes back while h0 is away: only h1 can tell it of the delete.
                sim.partition(&BTreeSet::from([0]), 2_000);
                sim.run_for(1_000);
                assert!(
                    sim.hubs[2]
                        .store
                        .get(&t, &e)
                        .is_some_and(|s| s.is_deleted()),
                    "h2 got the delete from h1"
                );
                sim.quiesce(true);
                sim.check();
                sim.check_sessions();
                sim.collect_everywhere();
                assert_eq!(sim.tombstones_held(), 0);
            },
        );
    }
}

/// Every scenario as a test over store `$store`.
macro_rules! scenarios {
    ($store:ty) => {
        use super::*;

        #[test]
        fn a_partition_heals_and_both_sides_converge() {
            super::a_partition_heals_and_both_sides_converge::<$store>();
        }

        #[test]
        fn a_crashed_hub_restarts_from_its_store_and_catches_up() {
            super::a_crashed_hub_restarts_from_its_store_and_catches_up::<$store>();
        }

        #[test]
        fn writes_relay_through_the_hierarchy_and_residency_holds() {
            super::writes_relay_through_the_hierarchy_and_residency_holds::<$store>();
        }

        #[test]
        fn every_topology_converges_without_faults() {
            super::every_topology_converges_without_faults::<$store>();
        }

        #[test]
        fn a_hub_beyond_the_skew_bound_is_refused_while_the_others_converge() {
            super::a_hub_beyond_the_skew_bound_is_refused_while_the_others_converge::<$store>();
        }

        #[test]
        fn a_misconfigured_hub_cannot_move_data_across_a_boundary() {
            super::a_misconfigured_hub_cannot_move_data_across_a_boundary::<$store>();
        }

        #[test]
        fn a_restarted_hub_stamps_after_what_a_tombstone_absorbed() {
            super::a_restarted_hub_stamps_after_what_a_tombstone_absorbed::<$store>();
        }

        #[test]
        fn stale_pages_delivered_again_in_reverse_change_nothing() {
            super::stale_pages_delivered_again_in_reverse_change_nothing::<$store>();
        }

        #[test]
        fn a_hub_away_longer_than_tombstones_are_kept_gets_the_delete() {
            super::a_hub_away_longer_than_tombstones_are_kept_gets_the_delete::<$store>();
        }

        #[test]
        fn a_hub_collects_nothing_before_it_has_heard_from_every_hub_it_dials() {
            super::a_hub_collects_nothing_before_it_has_heard_from_every_hub_it_dials::<$store>();
        }

        #[test]
        fn a_skewed_relay_still_relays_the_ops_of_others() {
            super::a_skewed_relay_still_relays_the_ops_of_others::<$store>();
        }
    };
}

/// The scenarios over the store model.
mod model {
    scenarios!(ModelStore);
}

/// The scenarios over the memory engine.
mod engine {
    scenarios!(EngineStore);
}
