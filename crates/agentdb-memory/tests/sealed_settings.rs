//! Sealed settings through the engine's public API, on the redb backend in temp dirs: round
//! trips, persistence, sealing at rest, binding to the name, and master-key rotation.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use agentdb_memory::storage::{Storage, Write};
use agentdb_memory::{
    MemoryEngine, OpenError, RedbStorage, SettingsError, DB_FILE, MAX_SETTING_NAME_LEN,
    MAX_SETTING_VALUE_LEN, SEALED_LOG_PREFIX, SEALED_SETTING_PREFIX, STORE_SECRET_META,
};
use agentdb_security::{MasterKey, SealError};

/// A value no part of the database could contain by chance.
const PLAINTEXT: &[u8] = b"plaintext-marker-4f9c2e71-api-key-record";

struct Store {
    engine: MemoryEngine,
    storage: Arc<RedbStorage>,
}

fn open(dir: &Path, key: &MasterKey) -> Result<Store, OpenError> {
    let storage = Arc::new(RedbStorage::open(&dir.join(DB_FILE)).unwrap());
    let engine =
        MemoryEngine::builder(Arc::clone(&storage) as Arc<dyn Storage>, key.clone()).open()?;
    Ok(Store { engine, storage })
}

fn value(v: Option<zeroize::Zeroizing<Vec<u8>>>) -> Option<Vec<u8>> {
    v.map(|v| v.to_vec())
}

fn listing(db: &MemoryEngine, prefix: &str) -> Vec<(String, Vec<u8>)> {
    db.sealed_settings(prefix)
        .unwrap()
        .into_iter()
        .map(|(name, v)| (name, v.to_vec()))
        .collect()
}

fn entry(name: &str, v: &[u8]) -> (String, Vec<u8>) {
    (name.to_owned(), v.to_vec())
}

#[test]
fn put_get_list_and_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let db = open(dir.path(), &key).unwrap().engine;

    assert_eq!(value(db.sealed_setting("api-key/0a").unwrap()), None);
    db.put_sealed_setting("api-key/0b", b"second").unwrap();
    db.put_sealed_setting("api-key/0a", b"first").unwrap();
    db.put_sealed_setting("revoked-token/j1", b"").unwrap();
    db.put_sealed_setting("api-key", b"no slash").unwrap();
    assert_eq!(
        value(db.sealed_setting("api-key/0a").unwrap()),
        Some(b"first".to_vec())
    );
    assert_eq!(
        value(db.sealed_setting("revoked-token/j1").unwrap()),
        Some(vec![])
    );

    // Overwriting replaces the value.
    db.put_sealed_setting("api-key/0b", b"second, again")
        .unwrap();
    assert_eq!(
        listing(&db, "api-key/"),
        [
            entry("api-key/0a", b"first"),
            entry("api-key/0b", b"second, again")
        ]
    );
    // Every sealed setting, sorted by name, and none of the engine's own settings.
    assert_eq!(
        listing(&db, ""),
        [
            entry("api-key", b"no slash"),
            entry("api-key/0a", b"first"),
            entry("api-key/0b", b"second, again"),
            entry("revoked-token/j1", b""),
        ]
    );
    assert_eq!(listing(&db, "revoked"), [entry("revoked-token/j1", b"")]);
    assert!(listing(&db, "nothing/").is_empty());
    assert!(listing(&db, &"x".repeat(MAX_SETTING_NAME_LEN + 1)).is_empty());

    assert!(db.delete_setting("api-key/0a").unwrap());
    assert!(!db.delete_setting("api-key/0a").unwrap());
    assert!(!db.delete_setting("never-set").unwrap());
    assert_eq!(value(db.sealed_setting("api-key/0a").unwrap()), None);
    assert_eq!(
        listing(&db, "api-key/"),
        [entry("api-key/0b", b"second, again")]
    );
}

#[test]
fn names_and_values_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &MasterKey::generate().unwrap())
        .unwrap()
        .engine;
    let longest = "n".repeat(MAX_SETTING_NAME_LEN);
    db.put_sealed_setting(&longest, b"v").unwrap();
    assert_eq!(
        value(db.sealed_setting(&longest).unwrap()),
        Some(b"v".to_vec())
    );
    let too_long = "n".repeat(MAX_SETTING_NAME_LEN + 1);
    for name in ["", too_long.as_str()] {
        let len = name.len();
        assert!(matches!(
            db.put_sealed_setting(name, b"v"),
            Err(SettingsError::InvalidName { len: l }) if l == len
        ));
        assert!(matches!(
            db.sealed_setting(name),
            Err(SettingsError::InvalidName { .. })
        ));
        assert!(matches!(
            db.delete_setting(name),
            Err(SettingsError::InvalidName { .. })
        ));
    }
    let big = vec![7u8; MAX_SETTING_VALUE_LEN + 1];
    assert!(matches!(
        db.put_sealed_setting("big", &big),
        Err(SettingsError::ValueTooLarge { len }) if len == big.len()
    ));
    assert_eq!(value(db.sealed_setting("big").unwrap()), None);
    db.put_sealed_setting("big", &big[1..]).unwrap();
    assert_eq!(
        db.sealed_setting("big").unwrap().map(|v| v.len()),
        Some(MAX_SETTING_VALUE_LEN)
    );
}

#[test]
fn settings_and_derived_keys_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let derived = {
        let db = open(dir.path(), &key).unwrap().engine;
        db.put_sealed_setting("api-key/0a", PLAINTEXT).unwrap();
        db.put_sealed_setting("gone", b"x").unwrap();
        assert!(db.delete_setting("gone").unwrap());
        db.derived_key("api-key-hash")
    };
    let db = open(dir.path(), &key).unwrap().engine;
    assert_eq!(
        value(db.sealed_setting("api-key/0a").unwrap()),
        Some(PLAINTEXT.to_vec())
    );
    assert_eq!(value(db.sealed_setting("gone").unwrap()), None);
    assert_eq!(*db.derived_key("api-key-hash"), *derived);
    assert_ne!(*db.derived_key("another-purpose"), *derived);
}

#[test]
fn derived_keys_differ_between_stores_and_from_the_master_key() {
    let key = MasterKey::generate().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a.path(), &key).unwrap().engine;
    let b = open(b.path(), &key).unwrap().engine;
    // Each store has its own secret, even under one master key.
    assert_ne!(
        *a.derived_key("api-key-hash"),
        *b.derived_key("api-key-hash")
    );
    assert_ne!(*a.derived_key("api-key-hash"), *key.derive("api-key-hash"));
}

#[test]
fn another_master_key_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let sealed = {
        let store = open(dir.path(), &key).unwrap();
        store
            .engine
            .put_sealed_setting("api-key/0a", PLAINTEXT)
            .unwrap();
        store
            .storage
            .meta(&format!("{SEALED_SETTING_PREFIX}api-key/0a"))
            .unwrap()
            .unwrap()
    };
    let other = MasterKey::generate().unwrap();
    assert!(matches!(
        open(dir.path(), &other),
        Err(OpenError::WrongMasterKey)
    ));

    // The sealed bytes carried into a store with another master key: an error, not garbage.
    let elsewhere = tempfile::tempdir().unwrap();
    let store = open(elsewhere.path(), &other).unwrap();
    store
        .storage
        .apply(&[Write::PutMeta {
            name: format!("{SEALED_SETTING_PREFIX}api-key/0a"),
            value: sealed,
        }])
        .unwrap();
    assert!(matches!(
        store.engine.sealed_setting("api-key/0a"),
        Err(SettingsError::Open { ref name, source: SealError::Authentication }) if name == "api-key/0a"
    ));
    assert!(matches!(
        store.engine.sealed_settings("api-key/"),
        Err(SettingsError::Open { .. })
    ));
}

#[test]
fn a_value_copied_under_another_name_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &MasterKey::generate().unwrap()).unwrap();
    store
        .engine
        .put_sealed_setting("api-key/0a", b"tenant acme, admin")
        .unwrap();
    let sealed = store
        .storage
        .meta(&format!("{SEALED_SETTING_PREFIX}api-key/0a"))
        .unwrap()
        .unwrap();
    store
        .storage
        .apply(&[Write::PutMeta {
            name: format!("{SEALED_SETTING_PREFIX}api-key/0b"),
            value: sealed.clone(),
        }])
        .unwrap();
    assert!(matches!(
        store.engine.sealed_setting("api-key/0b"),
        Err(SettingsError::Open { ref name, source: SealError::Authentication }) if name == "api-key/0b"
    ));
    assert!(matches!(
        store.engine.sealed_settings("api-key/"),
        Err(SettingsError::Open { .. })
    ));
    // The original still opens, and a tampered copy in its place does not.
    assert_eq!(
        value(store.engine.sealed_setting("api-key/0a").unwrap()),
        Some(b"tenant acme, admin".to_vec())
    );
    let mut tampered = sealed;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    store
        .storage
        .apply(&[Write::PutMeta {
            name: format!("{SEALED_SETTING_PREFIX}api-key/0a"),
            value: tampered,
        }])
        .unwrap();
    assert!(matches!(
        store.engine.sealed_setting("api-key/0a"),
        Err(SettingsError::Open { .. })
    ));
}

fn log_values(db: &MemoryEngine, log: &str, after: u64) -> Vec<(u64, Vec<u8>)> {
    db.sealed_log_after(log, after, 100)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (n, v.to_vec()))
        .collect()
}

#[test]
fn sealed_logs_number_seal_and_forget_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let (first, second) = {
        let store = open(dir.path(), &key).unwrap();
        let db = &store.engine;
        db.append_sealed_log("revoked/", PLAINTEXT).unwrap();
        db.append_sealed_log("other/", b"elsewhere").unwrap();
        db.append_sealed_log("revoked/", b"second").unwrap();
        let entries = log_values(db, "revoked/", 0);
        assert_eq!(
            entries
                .iter()
                .map(|(_, v)| v.as_slice())
                .collect::<Vec<_>>(),
            [PLAINTEXT, b"second"]
        );
        let (first, second) = (entries[0].0, entries[1].0);
        assert!(first < second);
        assert_eq!(
            log_values(db, "revoked/", first),
            [(second, b"second".to_vec())]
        );
        // A log's entries are no sealed settings, and its value is sealed at rest.
        assert_eq!(listing(db, ""), []);
        let raw = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        assert!(!contains(&raw, PLAINTEXT));

        // An entry moved into another log, or made a setting, does not open.
        let stored = |log: &str, n: u64| format!("{SEALED_LOG_PREFIX}{log}{n:020}");
        let sealed = store
            .storage
            .meta(&stored("revoked/", first))
            .unwrap()
            .unwrap();
        store
            .storage
            .apply(&[
                Write::PutMeta {
                    name: stored("other/", 99),
                    value: sealed.clone(),
                },
                Write::PutMeta {
                    name: format!("{SEALED_SETTING_PREFIX}revoked/x"),
                    value: sealed,
                },
            ])
            .unwrap();
        assert!(matches!(
            db.sealed_log_after("other/", 0, 100),
            Err(SettingsError::Open {
                source: SealError::Authentication,
                ..
            })
        ));
        assert!(matches!(
            db.sealed_setting("revoked/x"),
            Err(SettingsError::Open { .. })
        ));

        // Deleting: only what exists counts.
        assert_eq!(
            db.delete_sealed_log_entries("revoked/", &[first, 12_345])
                .unwrap(),
            1
        );
        assert_eq!(db.delete_sealed_log_entries("revoked/", &[]).unwrap(), 0);
        (first, second)
    };
    // Kept across reopening; a new entry gets a number above every earlier one, the deleted
    // one's included.
    let db = open(dir.path(), &key).unwrap().engine;
    db.append_sealed_log("revoked/", b"third").unwrap();
    let entries = log_values(&db, "revoked/", 0);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0], (second, b"second".to_vec()));
    assert_eq!(entries[1].1, b"third");
    assert!(entries[1].0 > second && entries[1].0 != first);
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_database_never_holds_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let scan = |when: &str| {
        let all = files(dir.path());
        assert!(!all.is_empty());
        for file in all {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !contains(&bytes, PLAINTEXT),
                "{when}: {} holds the plaintext",
                file.display()
            );
        }
    };
    {
        let store = open(dir.path(), &key).unwrap();
        store
            .engine
            .put_sealed_setting("api-key/0a", PLAINTEXT)
            .unwrap();
        store
            .engine
            .put_sealed_setting("api-key/0b", PLAINTEXT)
            .unwrap();
        // The names are stored in the clear (the storage sees them); the value is not.
        let raw = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        assert!(contains(&raw, b"sealed/api-key/0a"));
        scan("while open");
        let secret = store.storage.meta(STORE_SECRET_META).unwrap().unwrap();
        assert!(!contains(
            &secret,
            &store.engine.derived_key("api-key-hash")[..]
        ));
    }
    scan("after closing");
    // And it is there, sealed: the reopened store reads it back.
    let db = open(dir.path(), &key).unwrap().engine;
    assert_eq!(
        value(db.sealed_setting("api-key/0b").unwrap()),
        Some(PLAINTEXT.to_vec())
    );
}

#[test]
fn setting_names_cannot_reach_the_engines_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    let store = open(dir.path(), &key).unwrap();
    let own = ["clock", "master_key_check", STORE_SECRET_META];
    let before: Vec<_> = own.iter().map(|n| store.storage.meta(n).unwrap()).collect();
    assert!(before[1].is_some() && before[2].is_some());
    for name in own {
        store
            .engine
            .put_sealed_setting(name, b"overwrite attempt")
            .unwrap();
    }
    let after: Vec<_> = own.iter().map(|n| store.storage.meta(n).unwrap()).collect();
    assert_eq!(before, after);
    assert!(store.storage.meta("sealed/clock").unwrap().is_some());
    assert_eq!(
        value(store.engine.sealed_setting("clock").unwrap()),
        Some(b"overwrite attempt".to_vec())
    );
    // Deleting them deletes the sealed settings only.
    for name in own {
        assert!(store.engine.delete_setting(name).unwrap());
    }
    let after: Vec<_> = own.iter().map(|n| store.storage.meta(n).unwrap()).collect();
    assert_eq!(before, after);
    drop(store);
    // The store still opens with its key and keeps its secret.
    open(dir.path(), &key).unwrap();
}

#[test]
fn master_key_rotation_keeps_settings_and_derived_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        MasterKey::generate().unwrap(),
        MasterKey::generate().unwrap(),
    );
    let derived = {
        let db = open(dir.path(), &old).unwrap().engine;
        db.put_sealed_setting("revoked-token/j1", b"until 1750000300")
            .unwrap();
        let derived = db.derived_key("api-key-hash");
        db.rewrap_master_key(&new).unwrap();
        // The running engine is unaffected.
        assert_eq!(*db.derived_key("api-key-hash"), *derived);
        assert_eq!(
            value(db.sealed_setting("revoked-token/j1").unwrap()),
            Some(b"until 1750000300".to_vec())
        );
        derived
    };
    assert!(matches!(
        open(dir.path(), &old),
        Err(OpenError::WrongMasterKey)
    ));
    let db = open(dir.path(), &new).unwrap().engine;
    assert_eq!(
        value(db.sealed_setting("revoked-token/j1").unwrap()),
        Some(b"until 1750000300".to_vec())
    );
    assert_eq!(*db.derived_key("api-key-hash"), *derived);
}
