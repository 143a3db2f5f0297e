//! Tenant isolation as a property: random interleavings of two tenants' writes, deletes and
//! queries never let one tenant see the other's episodes, through any read API.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use agentdb_core::{EpisodeId, NewEpisode, TenantId};
use agentdb_memory::{MemStorage, MemoryEngine, Query};
use agentdb_security::MasterKey;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Store {
        tenant: usize,
        word: usize,
    },
    Query {
        tenant: usize,
        word: usize,
        k: usize,
    },
    Get {
        tenant: usize,
        target: usize,
    },
    Delete {
        tenant: usize,
        target: usize,
    },
}

const WORDS: [&str; 6] = ["invoice", "ticket", "deploy", "refund", "summary", "login"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..6usize).prop_map(|(tenant, word)| Op::Store { tenant, word }),
        3 => (0..2usize, 0..6usize, 1..20usize).prop_map(|(tenant, word, k)| Op::Query { tenant, word, k }),
        2 => (0..2usize, 0..64usize).prop_map(|(tenant, target)| Op::Get { tenant, target }),
        1 => (0..2usize, 0..64usize).prop_map(|(tenant, target)| Op::Delete { tenant, target }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tenants_never_see_each_other(ops in proptest::collection::vec(op(), 1..60)) {
        let db = MemoryEngine::builder(Arc::new(MemStorage::new()), MasterKey::generate().unwrap())
            .open()
            .unwrap();
        let tenants = [TenantId::new("alpha").unwrap(), TenantId::new("beta").unwrap()];
        // Every id ever written, by owner; the same words are used by both tenants so that
        // their vectors are as close as they can be.
        let mut owned: [Vec<EpisodeId>; 2] = [Vec::new(), Vec::new()];
        let mut deleted: HashSet<EpisodeId> = HashSet::new();
        let mut all: Vec<(usize, EpisodeId)> = Vec::new();
        for op in ops {
            match op {
                Op::Store { tenant, word } => {
                    let e = NewEpisode::new(WORDS[word], format!("{} secret of {}", WORDS[word], tenants[tenant]), "o", 0.8);
                    let id = db.store(&tenants[tenant], e).unwrap().id;
                    owned[tenant].push(id);
                    all.push((tenant, id));
                }
                Op::Query { tenant, word, k } => {
                    let hits = db.query(&tenants[tenant], &Query::text(WORDS[word], k)).unwrap();
                    let live = owned[tenant].iter().filter(|id| !deleted.contains(id)).count();
                    prop_assert_eq!(hits.len(), k.min(live));
                    for m in hits {
                        prop_assert_eq!(&m.episode.tenant, &tenants[tenant]);
                        prop_assert!(owned[tenant].contains(&m.episode.id));
                        prop_assert!(m.episode.input.ends_with(tenants[tenant].as_str()));
                    }
                }
                Op::Get { tenant, target } => {
                    if let Some((owner, id)) = all.get(target % all.len().max(1)).copied() {
                        let got = db.get(&tenants[tenant], &id).unwrap();
                        if owner == tenant && !deleted.contains(&id) {
                            prop_assert!(got.is_some());
                        } else {
                            prop_assert!(got.is_none(), "tenant {} read {}'s episode", tenant, owner);
                        }
                    }
                }
                Op::Delete { tenant, target } => {
                    if let Some((owner, id)) = all.get(target % all.len().max(1)).copied() {
                        let was = db.delete(&tenants[tenant], &id).unwrap();
                        if owner == tenant {
                            prop_assert_eq!(was, !deleted.contains(&id));
                            deleted.insert(id);
                        } else {
                            prop_assert!(!was, "tenant {} deleted {}'s episode", tenant, owner);
                        }
                    }
                }
            }
        }
        for (t, tenant) in tenants.iter().enumerate() {
            let live = owned[t].iter().filter(|id| !deleted.contains(id)).count() as u64;
            prop_assert_eq!(db.stats(tenant).unwrap().episodes, live);
        }
    }
}
