//! The PostgreSQL backend against the in-memory model, through the same harness as redb, on a
//! real server: `AGENTDB_TEST_POSTGRES` names it (`scripts/test.sh` starts one with
//! `scripts/postgres.sh`). Each case gets a database of its own.

#![allow(clippy::unwrap_used)]

use agentdb_memory::storage::Storage;
use agentdb_postgres::PostgresStorage;
use agentdb_testkit::storage::{
    batches, dump, key_destruction_and_reseal_persist, logs_number_entries_in_order,
    matches_the_model, peer_records_persist_and_match_the_model,
    settings_persist_and_match_the_model,
};
use proptest::prelude::*;

use agentdb_testkit::postgres::fresh_database;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn postgres_matches_the_model(batches in batches()) {
        let url = fresh_database();
        let db = PostgresStorage::connect(&url).unwrap();
        let model = matches_the_model(&db, &batches)?;
        // And the same through a new connection.
        drop(db);
        let db = PostgresStorage::connect(&url).unwrap();
        prop_assert_eq!(dump(&db), dump(&model));
    }
}

fn reconnecting(url: &str) -> impl Fn() -> Box<dyn Storage> + '_ {
    move || Box::new(PostgresStorage::connect(url).unwrap())
}

#[test]
fn postgres_peer_records_persist_and_match_the_model() {
    peer_records_persist_and_match_the_model(&reconnecting(&fresh_database()));
}

#[test]
fn postgres_settings_persist_and_match_the_model() {
    settings_persist_and_match_the_model(&reconnecting(&fresh_database()));
}

#[test]
fn postgres_logs_number_entries_in_order() {
    logs_number_entries_in_order(&reconnecting(&fresh_database()));
}

#[test]
fn postgres_key_destruction_and_reseal_persist() {
    key_destruction_and_reseal_persist(&reconnecting(&fresh_database()));
}

#[test]
fn engines_sharing_a_database_follow_each_other() {
    let url = fresh_database();
    agentdb_testkit::storage::engines_sharing_a_store_follow_each_other(&|| {
        std::sync::Arc::new(PostgresStorage::connect(&url).unwrap())
    });
}

#[test]
fn hubs_connecting_at_once_to_a_new_database_all_start() {
    let url = fresh_database();
    let opened: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PostgresStorage::connect(&url).map(drop)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in opened {
        result.unwrap();
    }
    // The schema is there once and works.
    let db = PostgresStorage::connect(&url).unwrap();
    assert_eq!(db.tenants().unwrap(), vec![]);
}
