//! The redb backend against the in-memory model: the same random writes give the same state.

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;

use agentdb_core::{EpisodeId, ModelId, TenantId, Timestamp};
use agentdb_memory::storage::{MemStorage, RedbStorage, Storage, StoredEpisode, Write};
use agentdb_security::WrappedTenantKey;
use proptest::prelude::*;

fn row(n: u8) -> StoredEpisode {
    StoredEpisode {
        id: EpisodeId::from_parts(u64::from(n), [n; 10]),
        created: Timestamp(u64::from(n)),
        reward: f64::from(n) / 10.0,
        success: n % 2 == 0,
        task_hash: [n; 16],
        model: ModelId::new("m").unwrap(),
        deleted: None,
        sealed_body: vec![n; 8],
        sealed_vector: vec![n; 4],
    }
}

/// A re-embedded version of `row(n)`: same id, another model and vector.
fn reembedded(n: u8) -> StoredEpisode {
    StoredEpisode {
        model: ModelId::new("m2").unwrap(),
        sealed_vector: vec![n.wrapping_add(100); 4],
        ..row(n)
    }
}

fn write() -> impl Strategy<Value = Write> {
    let tenant =
        prop_oneof![Just("a"), Just("b"), Just("a-b")].prop_map(|t| TenantId::new(t).unwrap());
    prop_oneof![
        5 => (tenant.clone(), 0..16u8).prop_map(|(tenant, n)| Write::PutEpisode { tenant, row: row(n) }),
        2 => (tenant.clone(), 0..16u8).prop_map(|(tenant, n)| Write::ReplaceEpisode { tenant, row: reembedded(n) }),
        2 => (tenant.clone(), 0..16u8).prop_map(|(tenant, n)| Write::Tombstone {
            tenant, id: row(n).id, at: Timestamp(99) }),
        1 => (tenant.clone(), 1..3u32).prop_map(|(tenant, version)| Write::PutTenantKey {
            tenant, key: WrappedTenantKey { version, bytes: vec![version as u8; 4] } }),
        1 => tenant.clone().prop_map(|tenant| Write::PutTenantMeta { tenant, name: "x".into(), value: vec![1] }),
        1 => tenant.prop_map(|tenant| Write::EraseTenant { tenant }),
    ]
}

fn dump(s: &dyn Storage) -> Vec<String> {
    let mut out = vec![format!("tenants {:?}", s.tenants().unwrap())];
    for t in ["a", "b", "a-b"] {
        let t = TenantId::new(t).unwrap();
        s.scan_episodes(&t, &mut |r| {
            out.push(format!("{t} {r:?}"));
            ControlFlow::Continue(())
        })
        .unwrap();
        out.push(format!("{t} keys {:?}", s.tenant_keys(&t).unwrap()));
        out.push(format!("{t} meta {:?}", s.tenant_meta(&t, "x").unwrap()));
        out.push(format!(
            "{t} changes {:?}",
            s.changes(&t, 0, usize::MAX).unwrap()
        ));
        out.push(format!(
            "{t} changes after 2 {:?}",
            s.changes(&t, 2, 3).unwrap()
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn redb_matches_the_model(batches in proptest::collection::vec(proptest::collection::vec(write(), 1..8), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStorage::open(&dir.path().join("db")).unwrap();
        let model = MemStorage::new();
        for batch in &batches {
            prop_assert_eq!(redb.apply(batch).unwrap(), model.apply(batch).unwrap());
        }
        prop_assert_eq!(dump(&redb), dump(&model));
        // And the same after reopening the file.
        drop(redb);
        let redb = RedbStorage::open(&dir.path().join("db")).unwrap();
        prop_assert_eq!(dump(&redb), dump(&model));
    }
}
