//! Sealed settings: small store-wide values a hub keeps secret at rest (API-key records,
//! revoked token ids, …), and keys derived for the hub's own use.
//!
//! Both come from the store secret ([`StoreSecret`]): 32 random bytes made when the store is
//! first opened and kept in the store-wide setting [`STORE_SECRET_META`], wrapped under the
//! master key. Master-key rotation ([`MemoryEngine::rewrap_master_key`]) re-wraps it, so sealed
//! settings stay readable and derived keys stay the same across rotations; without the master
//! key none of them can be recovered.
//!
//! A sealed setting named `name` is stored as the store-wide setting
//! [`SEALED_SETTING_PREFIX`]` + name`, a sealed record ([`agentdb_security::RecordKey`],
//! AES-256-GCM, key version 1) of kind `setting` whose AAD binds `name`: a value copied under
//! another name fails to open. The prefix keeps sealed settings apart from the settings the
//! engine writes for itself (`clock`, `master_key_check`, `store_secret`), none of which
//! starts with it, so no setting name a caller chooses can overwrite or read those.
//!
//! A sealed log is a series of sealed entries the store numbers as they are appended
//! ([`Write::AppendMeta`]), for what other hubs sharing the store read as it grows (revoked
//! tokens). Its entries are store-wide settings under [`SEALED_LOG_PREFIX`]` + log`, sealed like
//! settings but as records of kind `log-entry` whose AAD binds the log's name (the number is
//! given by the store, after sealing): an entry copied into another log, or into a setting,
//! fails to open.

use std::fmt;

use agentdb_security::{Keyring, KeyringError, RecordKey, SealError, StoreRecordAad, StoreSecret};
use zeroize::Zeroizing;

use crate::error::OpenError;
use crate::storage::{log_entry_name, Storage, StorageError, Write};

use super::MemoryEngine;

/// The store-wide setting names under which sealed settings are stored begin with this.
pub const SEALED_SETTING_PREFIX: &str = "sealed/";
/// The store-wide setting names under which sealed log entries are stored begin with this.
pub const SEALED_LOG_PREFIX: &str = "sealed-log/";
/// The store-wide setting holding the store secret, wrapped under the master key.
pub const STORE_SECRET_META: &str = "store_secret";
/// The longest sealed-setting name, in bytes.
pub const MAX_SETTING_NAME_LEN: usize = 512;
/// The largest sealed-setting value, in bytes.
pub const MAX_SETTING_VALUE_LEN: usize = 1024 * 1024;

/// A sealed setting's name and opened value, as [`MemoryEngine::sealed_settings`] lists them.
pub type SealedSetting = (String, Zeroizing<Vec<u8>>);
/// A sealed log entry's number and opened value, as [`MemoryEngine::sealed_log_after`] lists
/// them.
pub type SealedLogEntry = (u64, Zeroizing<Vec<u8>>);

/// The purpose the store secret is wrapped for (bound into its AAD).
const STORE_SECRET_PURPOSE: &str = "engine-store-secret";
/// The label of the key that seals settings.
const SEALING_LABEL: &str = "engine/sealed-settings/v1";
/// Labels of [`MemoryEngine::derived_key`] are put under this, apart from the engine's own.
const DERIVED_LABEL_PREFIX: &str = "derived/";
/// The record kind of a sealed setting.
const SETTING_KIND: &str = "setting";
/// The record kind of a sealed log entry.
const LOG_ENTRY_KIND: &str = "log-entry";
/// The key version written into sealed settings.
const SEALING_KEY_VERSION: u32 = 1;

/// Why a sealed setting could not be written, read or deleted. A failed write or delete
/// changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The name is empty or longer than [`MAX_SETTING_NAME_LEN`] bytes.
    #[error("setting name must be 1 to {MAX_SETTING_NAME_LEN} bytes long (got {len})")]
    InvalidName {
        /// The name's length in bytes.
        len: usize,
    },
    /// The value is larger than [`MAX_SETTING_VALUE_LEN`] bytes.
    #[error("setting value of {len} bytes exceeds the limit of {MAX_SETTING_VALUE_LEN} bytes")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
    },
    /// A stored setting failed to open: it was sealed under another store secret (another
    /// store or master key), stored under another name, or altered.
    #[error("sealed setting {name:?} does not open: {source}")]
    Open {
        /// The setting's name.
        name: String,
        /// Why it did not open.
        source: SealError,
    },
    /// The value could not be sealed (should not happen for in-bounds inputs).
    #[error("cannot seal setting: {0}")]
    Seal(SealError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The store secret and the key that seals settings.
pub(super) struct SettingsKeys {
    secret: StoreSecret,
    sealing: RecordKey,
}

impl fmt::Debug for SettingsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SettingsKeys(..)")
    }
}

impl SettingsKeys {
    /// Unwraps the store secret from `storage`, creating and storing it on a store that has
    /// none. The master key must already be known to be the store's.
    pub(super) fn load_or_create(
        storage: &dyn Storage,
        keyring: &Keyring,
    ) -> Result<Self, OpenError> {
        let secret = match storage.meta(STORE_SECRET_META)? {
            Some(wrapped) => keyring.unwrap_store_secret(STORE_SECRET_PURPOSE, &wrapped)?,
            None => {
                let secret = StoreSecret::generate()?;
                storage.apply(&[Write::PutMeta {
                    name: STORE_SECRET_META.into(),
                    value: keyring.wrap_store_secret(STORE_SECRET_PURPOSE, &secret)?,
                }])?;
                secret
            }
        };
        let sealing = RecordKey::new(&secret.derive(SEALING_LABEL), SEALING_KEY_VERSION)
            .map_err(|_| KeyringError::Wrap)?;
        Ok(Self { secret, sealing })
    }

    /// The write that stores the store secret wrapped under `new`'s master key.
    pub(super) fn rewrapped(&self, new: &Keyring) -> Result<Write, KeyringError> {
        Ok(Write::PutMeta {
            name: STORE_SECRET_META.into(),
            value: new.wrap_store_secret(STORE_SECRET_PURPOSE, &self.secret)?,
        })
    }
}

fn check_name(name: &str) -> Result<(), SettingsError> {
    if name.is_empty() || name.len() > MAX_SETTING_NAME_LEN {
        return Err(SettingsError::InvalidName { len: name.len() });
    }
    Ok(())
}

fn aad(name: &str) -> StoreRecordAad<'_> {
    StoreRecordAad {
        kind: SETTING_KIND,
        record_id: name.as_bytes(),
    }
}

fn storage_name(name: &str) -> String {
    format!("{SEALED_SETTING_PREFIX}{name}")
}

fn log_aad(log: &str) -> StoreRecordAad<'_> {
    StoreRecordAad {
        kind: LOG_ENTRY_KIND,
        record_id: log.as_bytes(),
    }
}

fn storage_log(log: &str) -> String {
    format!("{SEALED_LOG_PREFIX}{log}")
}

impl MemoryEngine {
    /// Stores `value` under `name`, sealed, replacing any value it had. Durable on return.
    ///
    /// `name` is 1 to [`MAX_SETTING_NAME_LEN`] bytes, chosen by the caller (e.g.
    /// `api-key/<id>`); `value` is at most [`MAX_SETTING_VALUE_LEN`] bytes.
    pub fn put_sealed_setting(&self, name: &str, value: &[u8]) -> Result<(), SettingsError> {
        check_name(name)?;
        self.commit.submit(vec![Write::PutMeta {
            name: storage_name(name),
            value: self.seal(aad(name), value)?,
        }])?;
        Ok(())
    }

    /// The value stored under `name`, or `None` if there is none.
    pub fn sealed_setting(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SettingsError> {
        check_name(name)?;
        match self.storage.meta(&storage_name(name))? {
            Some(sealed) => self.open_setting(name, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// Every sealed setting whose name starts with `prefix` (an empty prefix lists all), with
    /// its value, sorted by name. Fails if any of them does not open.
    pub fn sealed_settings(&self, prefix: &str) -> Result<Vec<SealedSetting>, SettingsError> {
        if prefix.len() > MAX_SETTING_NAME_LEN {
            // No setting has a name that long.
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (stored, sealed) in self.storage.meta_with_prefix(&storage_name(prefix))? {
            // Every name listed starts with the prefix asked for.
            let Some(name) = stored.strip_prefix(SEALED_SETTING_PREFIX) else {
                continue;
            };
            let value = self.open_setting(name, &sealed)?;
            out.push((name.to_owned(), value));
        }
        Ok(out)
    }

    /// Deletes the setting `name`; returns whether it existed. Durable on return.
    pub fn delete_setting(&self, name: &str) -> Result<bool, SettingsError> {
        check_name(name)?;
        let flags = self.commit.submit(vec![Write::DeleteMeta {
            name: storage_name(name),
        }])?;
        Ok(flags.first().copied().unwrap_or(false))
    }

    /// Appends `value`, sealed, to the sealed log `log` (a name as for settings, e.g.
    /// `token-revocations/`); the store numbers the entry (see [`Write::AppendMeta`] for the
    /// order readers may see entries in). Durable on return.
    pub fn append_sealed_log(&self, log: &str, value: &[u8]) -> Result<(), SettingsError> {
        check_name(log)?;
        self.commit.submit(vec![Write::AppendMeta {
            log: storage_log(log),
            value: self.seal(log_aad(log), value)?,
        }])?;
        Ok(())
    }

    /// The first `limit` entries of the sealed log `log` numbered above `after`, with their
    /// numbers, in number order. Fails if any of them does not open.
    pub fn sealed_log_after(
        &self,
        log: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SealedLogEntry>, SettingsError> {
        check_name(log)?;
        let stored = storage_log(log);
        let mut out = Vec::new();
        for (number, sealed) in self.storage.meta_log_after(&stored, after, limit)? {
            let value = self.open(log_aad(log), &sealed, || log_entry_name(log, number))?;
            out.push((number, value));
        }
        Ok(out)
    }

    /// Deletes the entries numbered `numbers` of the sealed log `log`, in one commit; returns
    /// how many existed. Durable on return.
    pub fn delete_sealed_log_entries(
        &self,
        log: &str,
        numbers: &[u64],
    ) -> Result<usize, SettingsError> {
        check_name(log)?;
        if numbers.is_empty() {
            return Ok(0);
        }
        let stored = storage_log(log);
        let writes = numbers
            .iter()
            .map(|&n| Write::DeleteMeta {
                name: log_entry_name(&stored, n),
            })
            .collect();
        let flags = self.commit.submit(writes)?;
        Ok(flags.into_iter().filter(|&deleted| deleted).count())
    }

    /// A 256-bit key for the caller's purpose `label` (e.g. keyed hashes of API keys), derived
    /// with HKDF-SHA256 from the store secret. The same label gives the same key for as long
    /// as the store exists, across restarts and master-key rotations; distinct labels give
    /// independent keys, none of them the key that seals settings.
    pub fn derived_key(&self, label: &str) -> Zeroizing<[u8; 32]> {
        self.settings
            .secret
            .derive(&format!("{DERIVED_LABEL_PREFIX}{label}"))
    }

    fn open_setting(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SettingsError> {
        self.open(aad(name), sealed, || name.to_owned())
    }

    /// `value`, checked for size and sealed under `aad`.
    fn seal(&self, aad: StoreRecordAad<'_>, value: &[u8]) -> Result<Vec<u8>, SettingsError> {
        if value.len() > MAX_SETTING_VALUE_LEN {
            return Err(SettingsError::ValueTooLarge { len: value.len() });
        }
        self.settings
            .sealing
            .seal_store(aad, value)
            .map_err(SettingsError::Seal)
    }

    /// Opens what was sealed under `aad`; a failure names the record `name()`.
    fn open(
        &self,
        aad: StoreRecordAad<'_>,
        sealed: &[u8],
        name: impl FnOnce() -> String,
    ) -> Result<Zeroizing<Vec<u8>>, SettingsError> {
        self.settings
            .sealing
            .open_store(aad, sealed)
            .map_err(|source| SettingsError::Open {
                name: name(),
                source,
            })
    }
}
