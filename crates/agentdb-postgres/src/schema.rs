//! The database schema and its versioned migrations, applied at start.
//!
//! Plain SQL that PostgreSQL-compatible engines also accept: `TEXT`, `BYTEA`, `BIGINT`,
//! composite primary keys, `INSERT … ON CONFLICT`, `SELECT … FOR UPDATE`, transactional DDL.
//! Names are compared in byte order (`COLLATE "C"`), the order the embedded store keeps.
//!
//! | table         | primary key          | holds                                   |
//! |---------------|----------------------|-----------------------------------------|
//! | `episodes`    | (tenant, id)         | the sealed row ([`StoredEpisode::encode`])|
//! | `tenant_keys` | (tenant, version)    | a wrapped tenant key                    |
//! | `tenant_meta` | (tenant, name)       | a per-tenant setting                    |
//! | `meta`        | name                 | a store-wide setting                    |
//! | `change_seq`  | tenant               | the tenant's last change number         |
//! | `changes`     | (tenant, seq)        | the episode each change touched         |
//! | `ops`         | (tenant, origin, seq)| the episode of each op                  |
//! | `vv`          | (tenant, origin)     | the highest op seq of each origin       |
//! | `peers`       | peer                 | the peer hub's region record            |
//! | `peer_acks`   | (tenant, peer)       | what the peer acknowledged              |
//!
//! And one sequence, `meta_log_number` (version 2): the numbers of store-wide log entries,
//! which are `meta` rows named by log and number.
//!
//! [`StoredEpisode::encode`]: agentdb_memory::storage::StoredEpisode::encode

use tokio_postgres::Client;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 2;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE episodes (
    tenant TEXT COLLATE "C" NOT NULL,
    id BYTEA NOT NULL,
    row_data BYTEA NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE tenant_keys (
    tenant TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    key_data BYTEA NOT NULL,
    PRIMARY KEY (tenant, version)
);
CREATE TABLE tenant_meta (
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE meta (
    name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE change_seq (
    tenant TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
CREATE TABLE changes (
    tenant TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    id BYTEA NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE TABLE ops (
    tenant TEXT COLLATE "C" NOT NULL,
    origin TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    id BYTEA NOT NULL,
    PRIMARY KEY (tenant, origin, seq)
);
CREATE TABLE vv (
    tenant TEXT COLLATE "C" NOT NULL,
    origin TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (tenant, origin)
);
CREATE TABLE peers (
    peer TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    region BYTEA NOT NULL
);
CREATE TABLE peer_acks (
    tenant TEXT COLLATE "C" NOT NULL,
    peer TEXT COLLATE "C" NOT NULL,
    acked BYTEA NOT NULL,
    PRIMARY KEY (tenant, peer)
);
"#,
    r#"
CREATE SEQUENCE meta_log_number AS BIGINT MINVALUE 1;
"#,
];

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The database failed.
    #[error("cannot migrate the schema: {message}")]
    Database {
        /// The server's SQLSTATE, when the server answered.
        code: Option<String>,
        /// What went wrong, in one line.
        message: String,
    },
    /// The database was written by a newer build.
    #[error(
        "the database has schema version {found}; this build knows versions up to {SCHEMA_VERSION}"
    )]
    TooNew {
        /// The version found.
        found: i32,
    },
}

impl From<tokio_postgres::Error> for MigrationError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(d) => MigrationError::Database {
                code: Some(d.code().code().to_owned()),
                message: format!("{}: {}", d.code().code(), d.message()),
            },
            None => MigrationError::Database {
                code: None,
                message: e.to_string(),
            },
        }
    }
}

impl MigrationError {
    /// Whether another hub creating the same objects at the same moment caused it (PostgreSQL
    /// can refuse the second of two concurrent `CREATE TABLE IF NOT EXISTS`): trying again
    /// then finds them made.
    pub fn is_concurrent_creation(&self) -> bool {
        matches!(
            self,
            MigrationError::Database { code: Some(c), .. }
                if c == "23505" || c == "42P07" || c == "42710"
        )
    }
}

/// Applies every migration the database lacks, each in its own transaction. Hubs starting at
/// the same time are safe: each migration first claims its version number in
/// `agentdb_schema` (a primary key), so a second hub waits for the first's transaction and
/// then finds the version taken.
pub async fn migrate(client: &mut Client) -> Result<i32, MigrationError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS agentdb_schema (version INTEGER NOT NULL PRIMARY KEY)",
        )
        .await?;
    for (n, sql) in MIGRATIONS.iter().enumerate() {
        let version = n as i32 + 1;
        let tx = client.transaction().await?;
        let claimed = tx
            .execute(
                "INSERT INTO agentdb_schema (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
                &[&version],
            )
            .await?;
        if claimed == 1 {
            tx.batch_execute(sql).await?;
            tx.commit().await?;
            tracing::info!(version, "applied schema migration");
        } else {
            tx.rollback().await?;
        }
    }
    let found: i32 = client
        .query_one("SELECT MAX(version) FROM agentdb_schema", &[])
        .await?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(MigrationError::TooNew { found });
    }
    Ok(found)
}
