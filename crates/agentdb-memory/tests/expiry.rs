//! Expiry: episodes past their own `expires_at`, or older than their tenant's retention, are
//! hidden from reads and deleted by `MemoryEngine::expire` as ordinary deletes that replicate.
//! Time is a `ManualClock`; no test sleeps.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{
    EpisodeId, EpisodeUpdate, HubId, NewEpisode, ReplicaState, TenantId, Timestamp,
};
use agentdb_memory::storage::StoredEpisode;
use agentdb_memory::{
    Change, Clock, EngineConfig, ManualClock, MemStorage, MemoryEngine, Query, RedbStorage,
    Storage, DB_FILE,
};
use agentdb_security::MasterKey;
use redb::{ReadableDatabase, ReadableTable};

/// Where every clock starts.
const T0: u64 = 1_700_000_000_000;
const PAGE: usize = 64;
const PAGE_BYTES: usize = 1 << 20;
const HOUR_MS: u64 = 3_600_000;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

/// One store: an engine with its own storage, master key and manual clock.
struct Hub {
    db: MemoryEngine,
    clock: Arc<ManualClock>,
}

impl Hub {
    fn mem(name: &str) -> Self {
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let db = open(storage, &MasterKey::generate().unwrap(), &clock, name);
        Self { db, clock }
    }

    fn redb(name: &str, dir: &Path, key: &MasterKey, clock: &Arc<ManualClock>) -> Self {
        let storage: Arc<dyn Storage> = Arc::new(RedbStorage::open(&dir.join(DB_FILE)).unwrap());
        Self {
            db: open(storage, key, clock, name),
            clock: Arc::clone(clock),
        }
    }

    fn store(&self, t: &TenantId, e: NewEpisode) -> EpisodeId {
        let stored = self.db.store(t, e).unwrap();
        assert!(stored.inserted);
        stored.id
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Ids a text query finds.
    fn find(&self, t: &TenantId, text: &str, k: usize) -> Vec<EpisodeId> {
        self.db
            .query(t, &Query::text(text, k))
            .unwrap()
            .into_iter()
            .map(|m| m.episode.id)
            .collect()
    }

    /// Ids of every episode a listing returns.
    fn listed(&self, t: &TenantId) -> Vec<EpisodeId> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.db.list(t, after, 2).unwrap();
            out.extend(page.episodes.iter().map(|e| e.id));
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    }
}

fn open(
    storage: Arc<dyn Storage>,
    key: &MasterKey,
    clock: &Arc<ManualClock>,
    name: &str,
) -> MemoryEngine {
    MemoryEngine::builder(storage, key.clone())
        .clock(Arc::clone(clock) as Arc<dyn Clock>)
        .config(EngineConfig {
            origin: Some(HubId::new(name).unwrap()),
            ..EngineConfig::default()
        })
        .open()
        .unwrap()
}

/// Everything `to` lacks of what `from` holds, at `to`'s clock. Returns how many ops applied.
fn pull(from: &Hub, to: &Hub, t: &TenantId) -> u64 {
    let mut applied = 0;
    loop {
        let known = to.db.version_vector(t).unwrap();
        let ops = from.db.ops_since(t, &known, PAGE, PAGE_BYTES).unwrap();
        if ops.is_empty() {
            return applied;
        }
        let out = to.db.apply_ops(t, &ops, to.now().unix_ms()).unwrap();
        assert!(out.skew.is_none(), "{:?}", out.skew);
        assert!(out.applied > 0, "a page of missing ops applied nothing");
        applied += out.applied;
    }
}

fn invoice(n: u32) -> NewEpisode {
    NewEpisode::new(
        format!("summarise invoice {n}"),
        format!("invoice {n}"),
        "done",
        0.8,
    )
}

#[test]
fn an_episode_is_readable_until_its_expiry_and_the_sweep_deletes_it() {
    let hub = Hub::mem("a");
    let t = tenant("acme");
    let expires = Timestamp(T0 + 60_000);
    let short = hub.store(&t, invoice(1).with_expires_at(expires));
    let kept = hub.store(&t, invoice(2));

    // Before: everything reads it, and a sweep leaves it alone.
    let got = hub.db.get(&t, &short).unwrap().unwrap();
    assert_eq!(got.expires_at, Some(expires));
    assert!(!got.is_expired(hub.now()));
    assert_eq!(hub.db.get(&t, &kept).unwrap().unwrap().expires_at, None);
    // Ids minted in the same millisecond list in random order.
    let mut both = vec![short, kept];
    both.sort();
    assert_eq!(hub.listed(&t), both);
    assert!(hub.find(&t, "summarise invoice 1", 10).contains(&short));
    assert_eq!(hub.db.expire(&t, hub.now(), None).unwrap(), 0);
    hub.clock.advance(59_999);
    assert_eq!(hub.db.expire(&t, hub.now(), None).unwrap(), 0);
    assert!(hub.db.get(&t, &short).unwrap().is_some());

    // At its expiry (inclusive) no read returns it, though the sweep has not run yet.
    hub.clock.advance(1);
    assert_eq!(hub.db.get(&t, &short).unwrap(), None);
    assert_eq!(hub.listed(&t), vec![kept]);
    assert_eq!(hub.find(&t, "summarise invoice 1", 10), vec![kept]);
    // The change feed reports it gone.
    let page = hub.db.changes_since(&t, 0, 100).unwrap();
    assert!(page
        .changes
        .iter()
        .any(|(_, c)| matches!(c, Change::Deleted(id) if *id == short)));
    // It still counts as live until the sweep deletes it.
    assert_eq!(hub.db.stats(&t).unwrap().episodes, 2);

    // The sweep deletes it (once), as a delete: a tombstone, so a retried store of the same
    // id does not bring it back.
    assert_eq!(hub.db.expire(&t, hub.now(), None).unwrap(), 1);
    assert_eq!(hub.db.expire(&t, hub.now(), None).unwrap(), 0);
    let stats = hub.db.stats(&t).unwrap();
    assert_eq!((stats.episodes, stats.deleted), (1, 1));
    assert_eq!(hub.db.tombstone_count(&t), 1);
    assert!(
        !hub.db
            .store(&t, invoice(1).with_id(short))
            .unwrap()
            .inserted
    );
    assert_eq!(
        hub.db.get(&t, &kept).unwrap().unwrap().task,
        "summarise invoice 2"
    );
}

#[test]
fn an_expiry_already_past_at_store_time_is_never_read() {
    let hub = Hub::mem("a");
    let t = tenant("acme");
    let id = hub.store(&t, invoice(1).with_expires_at(Timestamp(T0 - 1)));
    assert_eq!(hub.db.get(&t, &id).unwrap(), None);
    assert!(hub.listed(&t).is_empty());
    assert!(hub.find(&t, "summarise invoice 1", 5).is_empty());
    // Nor updated: an update of it finds nothing, as a read does.
    let update = EpisodeUpdate {
        reward: Some(0.1),
        ..Default::default()
    };
    assert!(!hub.db.update(&t, &id, &update).unwrap());
    assert_eq!(hub.db.expire(&t, hub.now(), None).unwrap(), 1);
    // An unknown tenant has nothing to expire.
    assert_eq!(
        hub.db.expire(&tenant("nobody"), hub.now(), None).unwrap(),
        0
    );
}

#[test]
fn a_query_is_not_cut_short_by_expired_episodes_the_sweep_has_not_removed() {
    let hub = Hub::mem("a");
    let t = tenant("acme");
    // The nearest matches expire; the farther ones do not.
    for n in 0..5 {
        hub.store(
            &t,
            NewEpisode::new("rotate credentials", format!("vault {n}"), "ok", 0.9)
                .with_expires_at(Timestamp(T0 + 10)),
        );
    }
    let mut far: Vec<EpisodeId> = (0..3).map(|n| hub.store(&t, invoice(n))).collect();
    far.sort();
    hub.clock.advance(10);
    let mut found = hub.find(&t, "rotate credentials", 3);
    found.sort();
    assert_eq!(found, far);
}

#[test]
fn tenant_retention_deletes_old_episodes_and_keeps_young_ones() {
    let hub = Hub::mem("a");
    let (t, other) = (tenant("acme"), tenant("globex"));
    let old: Vec<EpisodeId> = (0..3).map(|n| hub.store(&t, invoice(n))).collect();
    let other_old = hub.store(&other, invoice(9));
    hub.clock.advance(20 * HOUR_MS);
    let young = hub.store(&t, invoice(5));
    hub.clock.advance(4 * HOUR_MS);

    let day = Some(Duration::from_secs(24 * 3600));
    // Exactly 24 h after the old ones were created: they go, the young one stays.
    assert_eq!(hub.db.expire(&t, hub.now(), day).unwrap(), 3);
    for id in &old {
        assert_eq!(hub.db.get(&t, id).unwrap(), None);
    }
    assert_eq!(hub.listed(&t), vec![young]);
    // Another tenant is untouched by this tenant's retention.
    assert!(hub.db.get(&other, &other_old).unwrap().is_some());
    // Without a retention, nothing old is due.
    assert_eq!(hub.db.expire(&other, hub.now(), None).unwrap(), 0);
    // A retention longer than the clock's reach deletes nothing.
    let forever = Some(Duration::from_secs(u64::MAX / 1000));
    assert_eq!(hub.db.expire(&t, hub.now(), forever).unwrap(), 0);
    hub.clock.advance(20 * HOUR_MS);
    assert_eq!(hub.db.expire(&t, hub.now(), day).unwrap(), 1);
    assert!(hub.listed(&t).is_empty());
}

#[test]
fn expiry_replicates_with_the_content_and_the_sweeps_deletes_replicate_as_deletes() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let expires = Timestamp(T0 + 60_000);
    let short = a.store(&t, invoice(1).with_expires_at(expires));
    let old = a.store(&t, invoice(2));
    let young_later = {
        a.clock.advance(HOUR_MS);
        a.store(&t, invoice(3))
    };
    b.clock.set(a.now());
    assert_eq!(pull(&a, &b, &t), 3);

    // The expiry travels with the content.
    let ops =
        a.db.ops_since(&t, &Default::default(), PAGE, PAGE_BYTES)
            .unwrap();
    let carried = ops
        .iter()
        .find(|op| op.episode == short)
        .and_then(|op| match &op.state {
            Some(ReplicaState::Live(live)) => live.content.expires_at,
            _ => None,
        });
    assert_eq!(carried, Some(expires));
    assert_eq!(b.db.get(&t, &old).unwrap().unwrap().expires_at, None);
    // Past its expiry, the replica hides it too, before any sweep.
    assert_eq!(b.db.get(&t, &short).unwrap(), None);

    // Hub a sweeps (its own expiry, and a one-hour retention): the deletes reach b as ops.
    let hour = Some(Duration::from_millis(HOUR_MS));
    assert_eq!(a.db.expire(&t, a.now(), hour).unwrap(), 2);
    assert_eq!(pull(&a, &b, &t), 2);
    let stats = b.db.stats(&t).unwrap();
    assert_eq!((stats.episodes, stats.deleted), (1, 2));
    assert!(b.db.get(&t, &young_later).unwrap().is_some());
    // b's own sweep then finds nothing left to delete, and the hubs agree.
    assert_eq!(b.db.expire(&t, b.now(), hour).unwrap(), 0);
    assert_eq!(pull(&b, &a, &t), 0);
    assert_eq!(
        a.db.version_vector(&t).unwrap(),
        b.db.version_vector(&t).unwrap()
    );
}

#[test]
fn both_hubs_sweeping_the_same_episode_converge_on_one_tombstone() {
    let (a, b) = (Hub::mem("a"), Hub::mem("b"));
    let t = tenant("acme");
    let id = a.store(&t, invoice(1).with_expires_at(Timestamp(T0 + 5)));
    pull(&a, &b, &t);
    a.clock.advance(5);
    b.clock.set(a.now());
    assert_eq!(a.db.expire(&t, a.now(), None).unwrap(), 1);
    assert_eq!(b.db.expire(&t, b.now(), None).unwrap(), 1);
    pull(&a, &b, &t);
    pull(&b, &a, &t);
    for hub in [&a, &b] {
        assert_eq!(hub.db.get(&t, &id).unwrap(), None);
        assert_eq!(hub.db.stats(&t).unwrap().deleted, 1);
    }
    assert_eq!(
        a.db.version_vector(&t).unwrap(),
        b.db.version_vector(&t).unwrap()
    );
}

/// A row written before episodes could expire (row format 3: format 4 without its trailing
/// `expires_at`) still opens, reads with no expiry, is subject to its tenant's retention, and
/// is written back in format 4 when it next changes.
#[test]
fn a_row_of_the_format_before_expiry_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let t = tenant("acme");
    let (id, other) = {
        let hub = Hub::redb("a", dir.path(), &key, &clock);
        (hub.store(&t, invoice(1)), hub.store(&t, invoice(2)))
    };
    let episodes: redb::TableDefinition<'_, (&str, u128), &[u8]> =
        redb::TableDefinition::new("episodes");
    let key_of = |id: &EpisodeId| (t.as_str(), id.as_uuid().as_u128());
    {
        let db = redb::Database::open(dir.path().join(DB_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(episodes).unwrap();
            for id in [&id, &other] {
                let current = table.get(key_of(id)).unwrap().unwrap().value().to_vec();
                assert_eq!(current[0], 4, "rows are written in format 4");
                // No expiry: the last byte is postcard's `None`.
                assert_eq!(current.last(), Some(&0));
                let mut v3 = vec![3];
                v3.extend_from_slice(&current[1..current.len() - 1]);
                table.insert(key_of(id), v3.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    {
        let hub = Hub::redb("a", dir.path(), &key, &clock);
        let e = hub.db.get(&t, &id).unwrap().unwrap();
        assert_eq!(
            (e.task.as_str(), e.expires_at),
            ("summarise invoice 1", None)
        );
        assert_eq!(hub.find(&t, "summarise invoice 1", 1), vec![id]);
        assert!(hub
            .db
            .update(
                &t,
                &other,
                &EpisodeUpdate {
                    reward: Some(0.1),
                    ..Default::default()
                }
            )
            .unwrap());
        clock.advance(HOUR_MS);
        // Both old rows are past a one-hour retention: the sweep deletes them.
        assert_eq!(
            hub.db
                .expire(&t, hub.now(), Some(Duration::from_millis(HOUR_MS)))
                .unwrap(),
            2
        );
    }
    let db = redb::Database::open(dir.path().join(DB_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(episodes).unwrap();
    for id in [&id, &other] {
        let bytes = table.get(key_of(id)).unwrap().unwrap().value().to_vec();
        assert_eq!(bytes[0], 4, "a changed row is written back in format 4");
        assert!(StoredEpisode::decode(&bytes).unwrap().deleted.is_some());
    }
}
