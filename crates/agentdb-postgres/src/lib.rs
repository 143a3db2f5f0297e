//! A PostgreSQL storage backend for hubs: [`PostgresStorage`] implements the engine's
//! [`Storage`](agentdb_memory::storage::Storage) trait over a database that several hubs of a
//! region can share.
//!
//! The database holds exactly what the embedded store holds: ids, timestamps, rewards,
//! keyed hashes, model ids and sealed bytes. Episode content and embeddings are sealed with
//! the tenant's key before they reach it; tenant keys are stored wrapped by the master key.
//! The vector index is not in the database: each hub keeps its own in memory, built from the
//! sealed rows it can open.
//!
//! Every [`Storage::apply`](agentdb_memory::storage::Storage::apply) is one transaction:
//! when it returns, PostgreSQL has committed it.

mod codec;
mod schema;
mod statements;
mod storage;
mod write;

pub use schema::{MigrationError, SCHEMA_VERSION};
pub use storage::PostgresStorage;
