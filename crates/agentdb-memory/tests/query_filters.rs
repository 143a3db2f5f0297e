//! Content filters (tags, metadata) on queries and the paged listing of live episodes, through
//! the engine's public API.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use agentdb_core::{EpisodeId, NewEpisode, TenantId};
use agentdb_memory::index::IndexConfig;
use agentdb_memory::{
    EngineConfig, Filter, FilterError, MemStorage, MemoryEngine, MetadataMatch, Query, QueryError,
    MAX_BATCH,
};
use agentdb_security::MasterKey;
use serde_json::json;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn engine() -> MemoryEngine {
    engine_with(EngineConfig::default())
}

fn engine_with(config: EngineConfig) -> MemoryEngine {
    MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate().unwrap())
        .config(config)
        .open()
        .unwrap()
}

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_owned()).collect()
}

fn with_tags(t: &[&str]) -> Filter {
    Filter {
        tags: tags(t),
        ..Filter::default()
    }
}

fn with_metadata(matches: &[(&str, serde_json::Value)]) -> Filter {
    Filter {
        metadata: matches
            .iter()
            .map(|(k, v)| MetadataMatch::new(*k, v))
            .collect(),
        ..Filter::default()
    }
}

/// An id `n` milliseconds after a fixed instant, so ids sort by `n`.
fn id(n: u64) -> EpisodeId {
    EpisodeId::from_parts(1_700_000_000_000 + n, [(n % 251) as u8; 10])
}

fn ids(matches: &[agentdb_memory::Match]) -> Vec<EpisodeId> {
    matches.iter().map(|m| m.episode.id).collect()
}

fn assert_best_first(matches: &[agentdb_memory::Match]) {
    assert!(
        matches.windows(2).all(|w| w[0].score >= w[1].score),
        "scores not best first: {:?}",
        matches.iter().map(|m| m.score).collect::<Vec<_>>()
    );
}

#[test]
fn a_tag_filter_returns_only_episodes_with_every_tag() {
    let db = engine();
    let acme = tenant("acme");
    let stored = db
        .store_batch(
            &acme,
            vec![
                NewEpisode::new("summarise invoice", "invoice 1", "ok", 0.9)
                    .with_tags(tags(&["billing", "eu"])),
                NewEpisode::new("summarise invoice", "invoice 2", "ok", 0.9)
                    .with_tags(tags(&["billing"])),
                NewEpisode::new("summarise invoice", "invoice 3", "ok", 0.9)
                    .with_tags(tags(&["eu", "billing", "urgent"])),
                NewEpisode::new("summarise invoice", "invoice 4", "ok", 0.9),
            ],
        )
        .unwrap();
    let query = |f: Filter| {
        db.query(
            &acme,
            &Query::text("summarise the invoice", 10).with_filter(f),
        )
        .unwrap()
    };

    let both = query(with_tags(&["billing", "eu"]));
    let got: HashSet<_> = ids(&both).into_iter().collect();
    assert_eq!(got, HashSet::from([stored[0].id, stored[2].id]));
    assert!(both
        .iter()
        .all(|m| m.episode.tags.contains(&"eu".to_owned())));
    assert_best_first(&both);

    assert_eq!(query(with_tags(&["billing"])).len(), 3);
    assert_eq!(ids(&query(with_tags(&["urgent"]))), vec![stored[2].id]);
    assert!(query(with_tags(&["Billing"])).is_empty(), "tags are exact");
    assert!(query(with_tags(&["billing", "missing"])).is_empty());
    assert_eq!(query(Filter::default()).len(), 4);

    // Content conditions combine with the conditions checked inside the search.
    let failures = Filter {
        outcome: agentdb_memory::Outcome::Failures,
        ..with_tags(&["billing"])
    };
    assert!(query(failures).is_empty());
}

#[test]
fn a_metadata_filter_matches_equal_json_values() {
    let db = engine();
    let acme = tenant("acme");
    let stored = db
        .store_batch(
            &acme,
            vec![
                NewEpisode::new("search logs", "error 500", "found", 0.8)
                    .with_metadata(json!({"tool": "grep", "attempt": 1, "opts": {"i": true}})),
                NewEpisode::new("search logs", "error 404", "found", 0.8)
                    .with_metadata(json!({"tool": "grep", "attempt": 2})),
                NewEpisode::new("search logs", "error 503", "found", 0.8)
                    .with_metadata(json!({"tool": "sed", "attempt": 2})),
                NewEpisode::new("search logs", "error 502", "found", 0.8),
            ],
        )
        .unwrap();
    let query = |f: Filter| -> HashSet<EpisodeId> {
        let found = db
            .query(&acme, &Query::text("search the logs", 10).with_filter(f))
            .unwrap();
        assert_best_first(&found);
        ids(&found).into_iter().collect()
    };

    assert_eq!(
        query(with_metadata(&[("tool", json!("grep"))])),
        HashSet::from([stored[0].id, stored[1].id])
    );
    assert_eq!(
        query(with_metadata(&[
            ("tool", json!("grep")),
            ("attempt", json!(2))
        ])),
        HashSet::from([stored[1].id])
    );
    // Numbers compare by value.
    assert_eq!(
        query(with_metadata(&[("attempt", json!(2.0))])),
        HashSet::from([stored[1].id, stored[2].id])
    );
    assert_eq!(
        query(with_metadata(&[("opts", json!({"i": true}))])),
        HashSet::from([stored[0].id])
    );
    assert!(query(with_metadata(&[("tool", json!("awk"))])).is_empty());
    assert!(query(with_metadata(&[("attempt", json!("2"))])).is_empty());
    assert!(query(with_metadata(&[("missing", json!(null))])).is_empty());
}

#[test]
fn invalid_filters_are_refused_before_anything_is_searched() {
    let db = engine();
    let acme = tenant("acme");
    db.store(&acme, NewEpisode::new("t", "i", "o", 0.5))
        .unwrap();
    let bad_json = Filter {
        metadata: vec![MetadataMatch {
            key: "tool".into(),
            value: "grep".into(),
        }],
        ..Filter::default()
    };
    let too_many = with_tags(&["x"; 33]);
    let empty_tag = with_tags(&[""]);
    for (filter, tenant) in [
        (bad_json, &acme),
        (too_many, &acme),
        // Refused even for a tenant with no data.
        (empty_tag, &TenantId::new("nobody").unwrap()),
    ] {
        match db.query(tenant, &Query::text("t", 3).with_filter(filter.clone())) {
            Err(QueryError::BadFilter(e)) => assert_eq!(Err(e), filter.validate()),
            other => panic!("{filter:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        db.query(
            &acme,
            &Query::text("t", 3).with_filter(with_tags(&["x"; 33]))
        ),
        Err(QueryError::BadFilter(FilterError::TooManyTags {
            count: 33,
            ..
        }))
    ));
}

/// Many episodes close to the query, a few matching the tag far from it: the matches rank
/// below every over-fetch until the search widens to the whole tenant.
fn selective_tenant(
    db: &MemoryEngine,
    acme: &TenantId,
    close: usize,
    rare: usize,
) -> Vec<EpisodeId> {
    let mut episodes: Vec<NewEpisode> = (0..close)
        .map(|i| {
            NewEpisode::new(
                "summarise invoice",
                format!("invoice {i} for the customer"),
                "total",
                0.9,
            )
            .with_tags(tags(&["common"]))
        })
        .collect();
    episodes.extend((0..rare).map(|i| {
        NewEpisode::new(
            "deploy kubernetes cluster",
            format!("rollout {i} of helm chart"),
            "rolled out",
            0.9,
        )
        .with_tags(tags(&["common", "rare"]))
        .with_metadata(json!({"kind": "deploy"}))
    }));
    let mut stored = Vec::new();
    for chunk in episodes.chunks(MAX_BATCH) {
        stored.extend(
            db.store_batch(acme, chunk.to_vec())
                .unwrap()
                .into_iter()
                .map(|s| s.id),
        );
    }
    stored.split_off(close)
}

#[test]
fn a_selective_tag_filter_still_returns_k_results() {
    let db = engine();
    let acme = tenant("acme");
    let rare = selective_tenant(&db, &acme, 400, 6);
    let q = |k: usize, f: Filter| {
        db.query(
            &acme,
            &Query::text("summarise the invoice", k).with_filter(f),
        )
        .unwrap()
    };

    // The matches rank below the 400 others, past every early over-fetch.
    let everything = q(1000, Filter::default());
    assert_eq!(everything.len(), 406);
    assert!(everything[..400]
        .iter()
        .all(|m| !m.episode.tags.contains(&"rare".to_owned())));

    // All the matches come back all the same.
    let all = q(10, with_tags(&["rare"]));
    assert_eq!(
        ids(&all).into_iter().collect::<HashSet<_>>(),
        rare.iter().copied().collect::<HashSet<_>>()
    );
    assert_best_first(&all);

    // Exactly k, and the k best of the matches: the same as filtering an unfiltered ranking.
    let three = q(3, with_tags(&["rare"]));
    let oracle: Vec<EpisodeId> = everything
        .iter()
        .filter(|m| m.episode.tags.contains(&"rare".to_owned()))
        .take(3)
        .map(|m| m.episode.id)
        .collect();
    assert_eq!(ids(&three), oracle);
    for (got, want) in three
        .iter()
        .zip(everything.iter().filter(|m| oracle.contains(&m.episode.id)))
    {
        assert_eq!(got.score, want.score);
    }

    // Metadata conditions widen the same way.
    let deploys = q(6, with_metadata(&[("kind", json!("deploy"))]));
    assert_eq!(deploys.len(), 6);

    // A tag nobody carries: every candidate is examined and nothing comes back.
    assert!(q(5, with_tags(&["nobody"])).is_empty());
}

#[test]
fn a_selective_filter_widens_through_the_graph_too() {
    let config = EngineConfig {
        index: IndexConfig {
            exact_below: 64,
            ..IndexConfig::default()
        },
        ..EngineConfig::default()
    };
    let db = engine_with(config);
    let acme = tenant("acme");
    let rare = selective_tenant(&db, &acme, 600, 5);
    db.build_indexes().unwrap();
    assert_eq!(db.index(&acme).unwrap().pending(), 0);
    let found = db
        .query(
            &acme,
            &Query::text("summarise the invoice", 5).with_filter(with_tags(&["rare"])),
        )
        .unwrap();
    assert_eq!(
        ids(&found).into_iter().collect::<HashSet<_>>(),
        rare.into_iter().collect::<HashSet<_>>()
    );
    assert_best_first(&found);
    // Deleted matches are not returned, and the rest still are.
    db.delete(&acme, &found[0].episode.id).unwrap();
    let after = db
        .query(
            &acme,
            &Query::text("summarise the invoice", 5).with_filter(with_tags(&["rare"])),
        )
        .unwrap();
    assert_eq!(after.len(), 4);
    assert!(!ids(&after).contains(&found[0].episode.id));
}

/// Walks the whole listing with `limit`, calling `between` before each page after the first.
fn walk(
    db: &MemoryEngine,
    t: &TenantId,
    limit: usize,
    mut between: impl FnMut(usize),
) -> (Vec<EpisodeId>, usize) {
    let mut seen = Vec::new();
    let mut after: Option<EpisodeId> = None;
    let mut pages = 0;
    loop {
        if pages > 0 {
            between(pages);
        }
        let page = db.list(t, after, limit).unwrap();
        pages += 1;
        assert!(pages < 10_000, "the listing does not end");
        seen.extend(page.episodes.iter().map(|e| e.id));
        match page.next {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    page.episodes.last().map(|e| e.id),
                    "next is the page's last id"
                );
                assert!(
                    after.is_none_or(|a| next > a),
                    "the listing must advance: {after:?} then {next}"
                );
                after = Some(next);
            }
            None => break,
        }
    }
    (seen, pages)
}

#[test]
fn listing_pages_over_deletes_return_each_live_episode_once() {
    let db = engine();
    let acme = tenant("acme");
    let episodes: Vec<NewEpisode> = (0..60)
        .map(|n| NewEpisode::new("task", format!("input {n}"), "out", 0.5).with_id(id(n)))
        .collect();
    db.store_batch(&acme, episodes).unwrap();
    // Deleted before the walk.
    for n in [0, 1, 13] {
        assert!(db.delete(&acme, &id(n)).unwrap());
    }

    let (seen, pages) = walk(&db, &acme, 7, |page| match page {
        // Ahead of the cursor: a whole page's worth and more in a row, so the walk meets a
        // stretch of nothing but tombstones.
        1 => {
            for n in 20..32 {
                assert!(db.delete(&acme, &id(n)).unwrap());
            }
        }
        // Behind the cursor: already listed, must not come back or shift anything.
        2 => {
            for n in [2, 3] {
                assert!(db.delete(&acme, &id(n)).unwrap());
            }
        }
        _ => {}
    });
    assert!(pages > 2, "{pages} pages");

    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an episode came back twice");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "the listing is in id order");
    for n in 0..60 {
        let listed = unique.contains(&id(n));
        match n {
            0 | 1 | 13 => assert!(!listed, "{n} was deleted before the walk"),
            20..=31 => assert!(!listed, "{n} was deleted before its page"),
            // Listed on the first page, deleted afterwards.
            2 | 3 => assert!(listed, "{n} was live when its page was read"),
            _ => assert!(listed, "{n} is live and missing"),
        }
    }
    assert_eq!(seen.len(), 60 - 3 - 12);

    // A fresh walk sees only what is live now.
    let (now, _) = walk(&db, &acme, 7, |_| {});
    assert_eq!(now.len(), 60 - 3 - 12 - 2);
    assert!(!now.contains(&id(2)) && !now.contains(&id(3)));
}

#[test]
fn listing_pages_respect_the_limit_and_end_with_no_cursor() {
    let db = engine();
    let acme = tenant("acme");
    let episodes: Vec<NewEpisode> = (0..10)
        .map(|n| NewEpisode::new("task", format!("input {n}"), "out", 0.5).with_id(id(n)))
        .collect();
    db.store_batch(&acme, episodes).unwrap();

    let first = db.list(&acme, None, 4).unwrap();
    assert_eq!(
        first.episodes.iter().map(|e| e.id).collect::<Vec<_>>(),
        (0..4).map(id).collect::<Vec<_>>()
    );
    assert_eq!(
        first.episodes[2].input, "input 2",
        "episodes come back opened"
    );
    assert_eq!(first.next, Some(id(3)));
    let second = db.list(&acme, first.next, 4).unwrap();
    assert_eq!(
        second.episodes.iter().map(|e| e.id).collect::<Vec<_>>(),
        (4..8).map(id).collect::<Vec<_>>()
    );
    let last = db.list(&acme, second.next, 4).unwrap();
    assert_eq!(last.episodes.len(), 2);
    assert_eq!(last.next, None);

    // An exact fit still says nothing more follows.
    let whole = db.list(&acme, None, 10).unwrap();
    assert_eq!((whole.episodes.len(), whole.next), (10, None));
    // A limit of 0 is read as 1; a huge one as the maximum.
    assert_eq!(db.list(&acme, None, 0).unwrap().episodes.len(), 1);
    assert_eq!(db.list(&acme, None, usize::MAX).unwrap().episodes.len(), 10);
    // `after` need not be a stored id: the page starts at the first id above it.
    let between = EpisodeId::from_parts(1_700_000_000_000 + 5, [0; 10]);
    assert!(id(4) < between && between < id(5));
    let page = db.list(&acme, Some(between), 2).unwrap();
    assert_eq!(
        page.episodes.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id(5), id(6)]
    );
    // After the last id nothing follows.
    let page = db.list(&acme, Some(id(9)), 4).unwrap();
    assert!(page.episodes.is_empty() && page.next.is_none());

    // A live episode beyond a stretch of tombstones still counts as following.
    for n in 4..8 {
        db.delete(&acme, &id(n)).unwrap();
    }
    let page = db.list(&acme, None, 4).unwrap();
    assert_eq!((page.episodes.len(), page.next), (4, Some(id(3))));
    let page = db.list(&acme, page.next, 4).unwrap();
    assert_eq!(
        page.episodes.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id(8), id(9)]
    );
    // Once only tombstones follow, `next` says so.
    for n in 8..10 {
        db.delete(&acme, &id(n)).unwrap();
    }
    let page = db.list(&acme, None, 4).unwrap();
    assert_eq!((page.episodes.len(), page.next), (4, None));

    // A tenant with nothing live, and a tenant with nothing at all.
    for n in 0..4 {
        db.delete(&acme, &id(n)).unwrap();
    }
    let empty = db.list(&acme, None, 4).unwrap();
    assert!(empty.episodes.is_empty() && empty.next.is_none());
    let nobody = db.list(&tenant("nobody"), None, 4).unwrap();
    assert!(nobody.episodes.is_empty() && nobody.next.is_none());
}

#[test]
fn listing_pages_ids_sharing_their_first_64_bits_by_the_limit() {
    let db = engine();
    let acme = tenant("acme");
    // Seventeen ids equal in their first 64 bits (the same millisecond and the same first
    // random bytes), differing only in their last byte, stored out of order.
    let shared = |member: u8| {
        let mut random = [7u8; 10];
        random[9] = member;
        EpisodeId::from_parts(1_700_000_000_000, random)
    };
    let all: Vec<EpisodeId> = (0..17).map(shared).collect();
    db.store_batch(
        &acme,
        all.iter()
            .rev()
            .map(|&i| NewEpisode::new("task", "input", "out", 0.5).with_id(i))
            .collect(),
    )
    .unwrap();

    for limit in [1, 2, 3, 4, 5, 7, 16, 17, 50] {
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = db.list(&acme, after, limit).unwrap();
            let left = all.len() - seen.len();
            assert_eq!(
                page.episodes.len(),
                left.min(limit),
                "limit {limit}, after {} listed",
                seen.len()
            );
            seen.extend(page.episodes.iter().map(|e| e.id));
            match page.next {
                Some(next) => {
                    assert!(seen.len() < all.len(), "limit {limit}: next after the end");
                    after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(seen, all, "limit {limit}: each id once, in order");
    }
}

#[test]
fn listing_minted_ids_returns_each_once() {
    let db = engine();
    let acme = tenant("acme");
    let mut stored = HashSet::new();
    for round in 0..3 {
        let batch: Vec<NewEpisode> = (0..40)
            .map(|n| NewEpisode::new("task", format!("input {round} {n}"), "out", 0.5))
            .collect();
        stored.extend(
            db.store_batch(&acme, batch)
                .unwrap()
                .into_iter()
                .map(|s| s.id),
        );
    }
    for limit in [1, 3, 50] {
        let (seen, _) = walk(&db, &acme, limit, |_| {});
        assert_eq!(seen.len(), stored.len(), "limit {limit}");
        assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), stored);
    }
}
