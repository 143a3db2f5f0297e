//! Between the database's types and the engine's: ids, sequence numbers, errors.

use agentdb_core::EpisodeId;
use agentdb_memory::storage::StorageError;

/// A database error as a storage error: one line with the server's code and message.
pub(crate) fn db(e: tokio_postgres::Error) -> StorageError {
    // The server's message when there is one (its `Display` is only "db error").
    let text = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    };
    StorageError::Backend(format!("postgres: {text}"))
}

/// A stored value that does not decode.
pub(crate) fn corrupt(what: &str) -> StorageError {
    StorageError::Backend(format!("postgres: a stored {what} is not valid"))
}

/// An episode id as stored: its 16 bytes, big-endian, so that ids sort as the embedded store
/// sorts them.
pub(crate) fn id_bytes(id: &EpisodeId) -> [u8; 16] {
    id.to_bytes()
}

/// [`id_bytes`]'s inverse.
pub(crate) fn id_from(bytes: &[u8]) -> Result<EpisodeId, StorageError> {
    let b: [u8; 16] = bytes.try_into().map_err(|_| corrupt("episode id"))?;
    Ok(EpisodeId::from_bytes(b))
}

/// A stored sequence number (`BIGINT`).
pub(crate) fn seq_from(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| corrupt("sequence number"))
}

/// A sequence number to store.
pub(crate) fn seq_to(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Backend("sequence number over 2^63".into()))
}

/// A row limit, saturating.
pub(crate) fn limit_to(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
