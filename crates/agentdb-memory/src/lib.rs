//! The memory engine of Federated AgentDB: encrypted, tenant-isolated episodes with vector
//! search.
//!
//! - [`MemoryEngine`]: store, query, get, delete, stats, erase, key rotation, re-sealing
//!   under a new key version and destroying old ones.
//! - [`storage`]: the [`Storage`] trait with [`RedbStorage`] (embedded default) and
//!   [`MemStorage`].
//! - [`index`]: the per-tenant [`VectorIndex`] (exact scan + usearch HNSW).
//! - [`embedder`]: the [`Embedder`] trait, the default [`LexicalEmbedder`] and, with the
//!   `model` feature, the all-MiniLM-L6-v2 sentence embedder (`MiniLmEmbedder`).
//!
//! [`open_data_dir`] opens the standard on-disk layout: `DIR/agentdb.redb` and, unless the master
//! key comes from `AGENTDB_MASTER_KEY`, `DIR/master.key`.

mod clock;
pub mod embedder;
mod engine;
mod error;
pub mod index;
pub mod storage;

use std::path::Path;
use std::sync::Arc;

pub use agentdb_core::{AppliedOps, TaskCount, TenantStats};
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "model")]
pub use embedder::MiniLmEmbedder;
#[cfg(feature = "static-model")]
pub use embedder::StaticEmbedder;
pub use embedder::{
    embedder_from_env_or_dir, EmbedError, Embedder, LexicalEmbedder, ModelKind, ModelLoadError,
    MODEL_DIR_ENV,
};
#[cfg(feature = "onnx")]
pub use embedder::{OnnxConfig, OnnxEmbedder};
pub use engine::{
    mint_episode_id, Change, ChangeListener, ChangePage, EngineBuilder, EngineConfig, EpisodeList,
    EraseReport, ErasureOutcome, KeyVersion, Match, MemoryEngine, Query, QueryInput,
    ResealProgress, Stored, MAX_BATCH, MAX_K, MAX_PAGE_BYTES, REINDEX_BATCH, RESEAL_BATCH,
};
pub use engine::{
    SealedLogEntry, SealedSetting, SettingsError, MAX_SETTING_NAME_LEN, MAX_SETTING_VALUE_LEN,
    SEALED_LOG_PREFIX, SEALED_SETTING_PREFIX, STORE_SECRET_META,
};
pub use error::{
    ErasureError, KeyError, OpenError, QueryError, ReadError, ReindexError, ReplicaError,
    StoreError,
};
pub use index::{Filter, FilterError, MetadataMatch, Outcome, VectorIndex};
pub use storage::{MemStorage, RedbStorage, Storage};

/// File name of the database inside a data directory.
pub const DB_FILE: &str = "agentdb.redb";
/// File name of the master key inside a data directory (when not given by environment).
pub const MASTER_KEY_FILE: &str = "master.key";

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The master key could not be obtained.
    #[error(transparent)]
    MasterKey(#[from] agentdb_security::MasterKeyError),
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The engine could not start.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Opens (creating if needed) the engine stored in `dir`, with the master key from
/// `AGENTDB_MASTER_KEY` or `dir/master.key`, the default embedder and `config`.
pub fn open_data_dir(dir: &Path, config: EngineConfig) -> Result<MemoryEngine, DataDirError> {
    open_data_dir_with_embedder(dir, config, Arc::new(LexicalEmbedder::new()))
}

/// [`open_data_dir`] with `embedder` for text (see [`embedder_from_env_or_dir`]).
pub fn open_data_dir_with_embedder(
    dir: &Path,
    config: EngineConfig,
    embedder: Arc<dyn Embedder>,
) -> Result<MemoryEngine, DataDirError> {
    std::fs::create_dir_all(dir).map_err(|source| DataDirError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let master = agentdb_security::MasterKey::from_env_or_file(&dir.join(MASTER_KEY_FILE))?;
    let storage = Arc::new(RedbStorage::open(&dir.join(DB_FILE))?);
    Ok(MemoryEngine::builder(storage, master)
        .embedder(embedder)
        .config(config)
        .open()?)
}
