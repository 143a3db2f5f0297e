//! [`PostgresStorage`]: the [`Storage`] trait over a PostgreSQL database.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{EpisodeId, HubId, Region, TenantId, VersionVector};
use agentdb_memory::storage::{
    decode_acked, decode_region, log_entry_name, log_entry_number, Storage, StorageError,
    StoredEpisode, Write,
};
use agentdb_security::WrappedTenantKey;
use tokio_postgres::{Client, NoTls, Row};

use crate::codec::{corrupt, db, id_bytes, id_from, limit_to, seq_from, seq_to};
use crate::schema;
use crate::statements::{ReadStatements, WriteStatements};
use crate::write::apply_all;

/// How often a hub tries the migrations again when another hub was making the same objects.
const MIGRATE_ATTEMPTS: u32 = 10;

/// How many rows one query of a scan reads.
const SCAN_PAGE: i64 = 512;

/// A PostgreSQL database holding a hub's sealed rows. See the crate docs.
///
/// The connections are driven by a small runtime of the backend's own, so the engine can call
/// it from any thread, inside an async runtime or not, as it calls the embedded store: every
/// method blocks until the database has answered. Writes go through one connection, one
/// transaction per [`Storage::apply`]; reads through another.
#[derive(Debug)]
pub struct PostgresStorage {
    write: tokio::sync::Mutex<Client>,
    /// Prepared on the write connection, for its transactions.
    writes: WriteStatements,
    read: Arc<Client>,
    /// Prepared on the read connection.
    reads: ReadStatements,
    /// Where the database is, without a password, for messages.
    target: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which is not allowed inside another
        // runtime; its connection tasks end when the clients are gone.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Waits for `fut` on this thread. The futures of a connected client only exchange messages
/// with its connection task, so they need no runtime of their own.
fn wait<F: Future>(fut: F) -> F::Output {
    futures_executor::block_on(fut)
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db` or the
    /// `key=value` form) and brings its schema up to date.
    pub fn connect(url: &str) -> Result<Self, StorageError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StorageError::Open {
            path: "postgres".into(),
            reason: format!("not a PostgreSQL connection string: {e}"),
        })?;
        let target = describe(&config);
        let open_error = |reason: String| StorageError::Open {
            path: target.clone().into(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentdb-postgres")
            .enable_all()
            .build()
            .map_err(|e| open_error(format!("cannot start the connection runtime: {e}")))?;
        let connect = |config: tokio_postgres::Config| {
            let handle = runtime.handle().clone();
            runtime.spawn(async move {
                let (client, connection) = config.connect(NoTls).await?;
                handle.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::error!(error = %e, "PostgreSQL connection lost");
                    }
                });
                Ok::<_, tokio_postgres::Error>(client)
            })
        };
        let mut write = wait(connect(config.clone()))
            .map_err(|e| open_error(e.to_string()))?
            .map_err(|e| open_error(db(e).to_string()))?;
        let read = wait(connect(config))
            .map_err(|e| open_error(e.to_string()))?
            .map_err(|e| open_error(db(e).to_string()))?;
        let mut attempt = 0;
        loop {
            match wait(schema::migrate(&mut write)) {
                Ok(_) => break,
                // Hubs starting together over a new database: the one that lost the race
                // finds the schema made when it tries again.
                Err(e) if e.is_concurrent_creation() && attempt < MIGRATE_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
                Err(e) => return Err(open_error(e.to_string())),
            }
        }
        let writes =
            wait(WriteStatements::prepare(&write)).map_err(|e| open_error(db(e).to_string()))?;
        let reads =
            wait(ReadStatements::prepare(&read)).map_err(|e| open_error(db(e).to_string()))?;
        Ok(Self {
            write: tokio::sync::Mutex::new(write),
            writes,
            read: Arc::new(read),
            reads,
            target,
            runtime: Some(runtime),
        })
    }

    /// Where the database is (host, port and database name; never the password).
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// `host:port/dbname` of a connection configuration.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{host}:{port}/{db}")
}

impl PostgresStorage {
    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StorageError> {
        wait(self.read.query(sql, params)).map_err(db)
    }

    /// Visits episode rows of `tenant` with an id above `after` (all for `None`), a page at a
    /// time, until `visit` breaks.
    fn scan(
        &self,
        tenant: &TenantId,
        after: Option<&EpisodeId>,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let mut from: Option<[u8; 16]> = after.map(id_bytes);
        loop {
            let rows = match &from {
                None => self.rows(
                    "SELECT id, row_data FROM episodes WHERE tenant = $1 ORDER BY id LIMIT $2",
                    &[&tenant.as_str(), &SCAN_PAGE],
                )?,
                Some(last) => self.rows(
                    "SELECT id, row_data FROM episodes WHERE tenant = $1 AND id > $2 \
                     ORDER BY id LIMIT $3",
                    &[&tenant.as_str(), &&last[..], &SCAN_PAGE],
                )?,
            };
            let full = rows.len() as i64 == SCAN_PAGE;
            for r in &rows {
                let row = StoredEpisode::decode(r.get::<_, &[u8]>(1))?;
                if visit(row).is_break() {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(r) if full => from = Some(id_bytes(&id_from(r.get::<_, &[u8]>(0))?)),
                _ => return Ok(()),
            }
        }
    }

    fn seq_ids(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.rows(sql, params)?
            .iter()
            .map(|r| Ok((seq_from(r.get(0))?, id_from(r.get::<_, &[u8]>(1))?)))
            .collect()
    }
}

impl Storage for PostgresStorage {
    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError> {
        wait(async {
            let mut client = self.write.lock().await;
            let tx = client.transaction().await.map_err(db)?;
            let out = apply_all(&tx, &self.writes, writes).await?;
            tx.commit().await.map_err(db)?;
            Ok(out)
        })
    }

    fn episode(
        &self,
        tenant: &TenantId,
        id: &EpisodeId,
    ) -> Result<Option<StoredEpisode>, StorageError> {
        let row = wait(
            self.read
                .query_opt(&self.reads.episode, &[&tenant.as_str(), &&id_bytes(id)[..]]),
        )
        .map_err(db)?;
        row.map(|r| StoredEpisode::decode(r.get::<_, &[u8]>(0)).map_err(StorageError::from))
            .transpose()
    }

    fn episodes(
        &self,
        tenant: &TenantId,
        ids: &[EpisodeId],
    ) -> Result<Vec<Option<StoredEpisode>>, StorageError> {
        let bytes: Vec<[u8; 16]> = ids.iter().map(id_bytes).collect();
        let keys: Vec<&[u8]> = bytes.iter().map(|b| &b[..]).collect();
        let rows = wait(
            self.read
                .query(&self.reads.episodes, &[&tenant.as_str(), &keys]),
        )
        .map_err(db)?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let row = StoredEpisode::decode(r.get::<_, &[u8]>(1))?;
            found.insert(id_from(r.get::<_, &[u8]>(0))?, row);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn scan_episodes(
        &self,
        tenant: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        self.scan(tenant, None, visit)
    }

    fn scan_episodes_after(
        &self,
        tenant: &TenantId,
        after: Option<&EpisodeId>,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        self.scan(tenant, after, visit)
    }

    fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.seq_ids(
            "SELECT seq, id FROM changes WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&tenant.as_str(), &seq_to(after)?, &limit_to(limit)],
        )
    }

    fn change_heads(&self) -> Result<Vec<(TenantId, u64)>, StorageError> {
        self.rows(
            "SELECT tenant, last_seq FROM change_seq WHERE last_seq > 0 ORDER BY tenant",
            &[],
        )?
        .iter()
        .map(|r| {
            let tenant = TenantId::new(r.get::<_, &str>(0)).map_err(|_| corrupt("tenant id"))?;
            Ok((tenant, seq_from(r.get(1))?))
        })
        .collect()
    }

    fn ops(
        &self,
        tenant: &TenantId,
        origin: &HubId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError> {
        self.seq_ids(
            "SELECT seq, id FROM ops WHERE tenant = $1 AND origin = $2 AND seq > $3 \
             ORDER BY seq LIMIT $4",
            &[
                &tenant.as_str(),
                &origin.as_str(),
                &seq_to(after)?,
                &limit_to(limit),
            ],
        )
    }

    fn version_vector(&self, tenant: &TenantId) -> Result<VersionVector, StorageError> {
        let mut out = VersionVector::new();
        for r in self.rows(
            "SELECT origin, seq FROM vv WHERE tenant = $1 AND seq > 0 ORDER BY origin",
            &[&tenant.as_str()],
        )? {
            let origin = HubId::new(r.get::<_, &str>(0)).map_err(|_| corrupt("hub id"))?;
            out.set(origin, seq_from(r.get(1))?);
        }
        Ok(out)
    }

    fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        self.rows(
            "SELECT DISTINCT tenant FROM tenant_keys ORDER BY tenant",
            &[],
        )?
        .iter()
        .map(|r| TenantId::new(r.get::<_, &str>(0)).map_err(|_| corrupt("tenant id")))
        .collect()
    }

    fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<WrappedTenantKey>, StorageError> {
        self.rows(
            "SELECT version, key_data FROM tenant_keys WHERE tenant = $1 ORDER BY version",
            &[&tenant.as_str()],
        )?
        .iter()
        .map(|r| {
            Ok(WrappedTenantKey {
                version: u32::try_from(r.get::<_, i64>(0)).map_err(|_| corrupt("key version"))?,
                bytes: r.get(1),
            })
        })
        .collect()
    }

    fn tenant_meta(&self, tenant: &TenantId, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .rows(
                "SELECT value FROM tenant_meta WHERE tenant = $1 AND name = $2",
                &[&tenant.as_str(), &name],
            )?
            .first()
            .map(|r| r.get(0)))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .rows("SELECT value FROM meta WHERE name = $1", &[&name])?
            .first()
            .map(|r| r.get(0)))
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        // Names sort in byte order, so those with the prefix form one run starting at it.
        let mut out = Vec::new();
        for r in self.rows(
            "SELECT name, value FROM meta WHERE name >= $1 ORDER BY name",
            &[&prefix],
        )? {
            let name: String = r.get(0);
            if !name.starts_with(prefix) {
                break;
            }
            out.push((name, r.get(1)));
        }
        Ok(out)
    }

    fn meta_log_after(
        &self,
        log: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        // Entry names sort in number order: one range of the primary key.
        let (from, through) = (log_entry_name(log, after), log_entry_name(log, u64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .rows(
                "SELECT name, value FROM meta WHERE name > $1 AND name <= $2 ORDER BY name \
                 LIMIT $3",
                &[&from, &through, &limit],
            )?
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                Some((log_entry_number(log, &name)?, r.get(1)))
            })
            .collect())
    }

    fn peers(&self) -> Result<Vec<(HubId, Region)>, StorageError> {
        self.rows("SELECT peer, region FROM peers ORDER BY peer", &[])?
            .iter()
            .map(|r| {
                let peer = HubId::new(r.get::<_, &str>(0)).map_err(|_| corrupt("hub id"))?;
                Ok((peer, decode_region(r.get::<_, &[u8]>(1))?))
            })
            .collect()
    }

    fn peer_acks(&self, tenant: &TenantId) -> Result<Vec<(HubId, VersionVector)>, StorageError> {
        self.rows(
            "SELECT peer, acked FROM peer_acks WHERE tenant = $1 ORDER BY peer",
            &[&tenant.as_str()],
        )?
        .iter()
        .map(|r| {
            let peer = HubId::new(r.get::<_, &str>(0)).map_err(|_| corrupt("hub id"))?;
            Ok((peer, decode_acked(r.get::<_, &[u8]>(1))?))
        })
        .collect()
    }
}
