//! The redb backend against the in-memory model: the same random writes give the same state
//! (the harness is `agentdb_testkit::storage`, shared with the other backends).

#![allow(clippy::unwrap_used)]

use agentdb_memory::storage::{RedbStorage, Storage};
use agentdb_testkit::storage::{
    batches, dump, logs_number_entries_in_order, matches_the_model,
    peer_records_persist_and_match_the_model, settings_persist_and_match_the_model,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn redb_matches_the_model(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStorage::open(&dir.path().join("db")).unwrap();
        let model = matches_the_model(&redb, &batches)?;
        // And the same after reopening the file.
        drop(redb);
        let redb = RedbStorage::open(&dir.path().join("db")).unwrap();
        prop_assert_eq!(dump(&redb), dump(&model));
    }
}

fn reopening(dir: &tempfile::TempDir) -> impl Fn() -> Box<dyn Storage> + '_ {
    move || Box::new(RedbStorage::open(&dir.path().join("db")).unwrap())
}

#[test]
fn redb_peer_records_persist_and_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    peer_records_persist_and_match_the_model(&reopening(&dir));
}

#[test]
fn redb_settings_persist_and_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    settings_persist_and_match_the_model(&reopening(&dir));
}

#[test]
fn redb_logs_number_entries_in_order() {
    let dir = tempfile::tempdir().unwrap();
    logs_number_entries_in_order(&reopening(&dir));
}

#[test]
fn engines_sharing_a_memory_store_follow_each_other() {
    let shared: std::sync::Arc<dyn Storage> =
        std::sync::Arc::new(agentdb_memory::MemStorage::new());
    agentdb_testkit::storage::engines_sharing_a_store_follow_each_other(&|| {
        std::sync::Arc::clone(&shared)
    });
}
