//! Errors, one enum per engine operation.

use agentdb_core::{EpisodeError, FilterError, ModelId, TenantId};
use agentdb_security::{KeyringError, SealError};

use crate::embedder::EmbedError;
use crate::index::IndexError;
use crate::storage::StorageError;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The master key is not the one the data was written with. Nothing was changed.
    #[error(
        "wrong master key: this data was written with a different AGENTDB_MASTER_KEY / key file"
    )]
    WrongMasterKey,
    /// A tenant's stored state could not be read.
    #[error("cannot load tenant {tenant}: {reason}")]
    Tenant {
        /// The tenant.
        tenant: TenantId,
        /// Why.
        reason: String,
    },
    /// The keyring could not be set up.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// Why episodes could not be stored. Nothing of the request was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The episode failed validation.
    #[error("invalid episode: {0}")]
    Invalid(#[from] EpisodeError),
    /// The batch holds more episodes than allowed.
    #[error("batch of {len} episodes exceeds the limit of {limit}")]
    BatchTooLarge {
        /// Episodes in the batch.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The episode's embedding model differs from the tenant's.
    #[error("tenant {tenant} stores {tenant_model} vectors; refusing {given} vectors (re-index to switch models)")]
    EmbedderMismatch {
        /// The tenant.
        tenant: TenantId,
        /// The tenant's model.
        tenant_model: ModelId,
        /// The model offered.
        given: ModelId,
    },
    /// Embedding the text failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Encryption failed.
    #[error("encryption failed: {0}")]
    Crypto(String),
    /// The vector index refused the vector.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// `k` is zero or above the limit.
    #[error("k must be between 1 and {limit} (got {k})")]
    BadK {
        /// Requested.
        k: usize,
        /// The limit.
        limit: usize,
    },
    /// The filter breaks its limits (see `Filter::validate`).
    #[error("invalid filter: {0}")]
    BadFilter(#[from] FilterError),
    /// The query vector is malformed.
    #[error("invalid query vector: {0}")]
    InvalidVector(#[from] EpisodeError),
    /// The query's embedding model differs from the tenant's.
    #[error("tenant {tenant} stores {tenant_model} vectors; cannot query with {given} vectors")]
    EmbedderMismatch {
        /// The tenant.
        tenant: TenantId,
        /// The tenant's model.
        tenant_model: ModelId,
        /// The query's model.
        given: ModelId,
    },
    /// Embedding the query failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A result could not be decrypted.
    #[error("cannot decrypt a stored episode: {0}")]
    Crypto(String),
    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why reading, deleting or summarising episodes failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A record could not be decrypted (wrong key or tampered data).
    #[error("cannot decrypt a stored episode: {0}")]
    Crypto(String),
    /// A record could not be decoded.
    #[error("stored episode is corrupt: {0}")]
    Corrupt(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a key operation (rotation, master-key rewrap) failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The tenant has no data.
    #[error("tenant {0} has no keys")]
    UnknownTenant(TenantId),
    /// Wrapping or unwrapping failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record could not be opened or sealed again.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The tenant has no such key version.
    #[error("tenant {tenant} has no key version {version}")]
    UnknownVersion {
        /// The tenant.
        tenant: TenantId,
        /// The version asked for.
        version: u32,
    },
    /// The version is the tenant's current one, which seals new records.
    #[error("key version {version} is tenant {tenant}'s current key")]
    CurrentVersion {
        /// The tenant.
        tenant: TenantId,
        /// The version.
        version: u32,
    },
    /// Records are still sealed with the version: re-seal them first.
    #[error("{records} records of tenant {tenant} are still sealed with key version {version}")]
    VersionInUse {
        /// The tenant.
        tenant: TenantId,
        /// The version.
        version: u32,
        /// How many records use it.
        records: u64,
    },
}

/// Why re-embedding a tenant's episodes stopped. Batches committed before the failure stay
/// re-embedded (and the tenant is bound to the new model from the first batch on); running
/// the re-index again finishes the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReindexError {
    /// The tenant has no data.
    #[error("tenant {0} has no data")]
    UnknownTenant(TenantId),
    /// Embedding an episode failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The embedder returned a vector of another length than it declares.
    #[error("embedder {model} returned a {found}-dimensional vector; it declares {expected}")]
    Dimensions {
        /// The embedder's model.
        model: ModelId,
        /// What it declares.
        expected: usize,
        /// What it returned.
        found: usize,
    },
    /// A stored episode could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Sealing a new vector failed.
    #[error("encryption failed: {0}")]
    Crypto(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The tenant's index could not be rebuilt from the re-embedded rows.
    #[error(transparent)]
    Reload(#[from] OpenError),
}

impl From<SealError> for ReindexError {
    fn from(e: SealError) -> Self {
        ReindexError::Crypto(e.to_string())
    }
}

impl From<SealError> for StoreError {
    fn from(e: SealError) -> Self {
        StoreError::Crypto(e.to_string())
    }
}

impl From<SealError> for ReadError {
    fn from(e: SealError) -> Self {
        ReadError::Crypto(e.to_string())
    }
}

impl From<ReadError> for QueryError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Storage(s) => QueryError::Storage(s),
            other => QueryError::Crypto(other.to_string()),
        }
    }
}

/// Why a replication operation (an update, a page of replicated ops, tombstone collection)
/// failed. Nothing of the failed call was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// A row could not be read or opened.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The write failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A replicated episode breaks the limits or rules of this store.
    #[error("replicated episode {id} refused: {reason}")]
    Invalid {
        /// The episode.
        id: agentdb_core::EpisodeId,
        /// Why.
        reason: String,
    },
}

impl From<StorageError> for ReplicaError {
    fn from(e: StorageError) -> Self {
        ReplicaError::Store(StoreError::Storage(e))
    }
}

impl From<SealError> for ReplicaError {
    fn from(e: SealError) -> Self {
        ReplicaError::Store(StoreError::from(e))
    }
}

/// Why applying or reading erasure orders failed. An order whose application failed is not
/// recorded; applying it again is safe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// Rows or keys could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing survivors or tombstones failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// A new key for the tenant could not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The order could not be kept.
    #[error(transparent)]
    Settings(#[from] crate::engine::SettingsError),
    /// A kept order does not decode.
    #[error("{0}")]
    Corrupt(String),
}
