//! [`PostgresStorage`]: the [`Storage`] trait over a PostgreSQL database.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use agentdb_core::{EpisodeId, HubId, Region, TenantId, VersionVector};
use agentdb_memory::storage::{
    decode_acked, decode_region, encode_region, joined_acked, merge_keeps, raised_clock,
    tombstone_row, OpSeq, Storage, StorageError, StoredEpisode, Write, CLOCK_META,
};
use agentdb_security::WrappedTenantKey;
use tokio_postgres::{Client, NoTls, Row, Statement, Transaction};

use crate::schema;

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

/// The statements of the hot write path, prepared once on the write connection: a new
/// episode costs one round trip.
#[derive(Debug)]
struct WriteStatements {
    put_new_episode: Statement,
    upsert_episode: Statement,
    episode_for_update: Statement,
    log_change: Statement,
    next_op: Statement,
}

impl WriteStatements {
    async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            // A new episode in one round trip: its row if the id is new, and then (only then)
            // its change and its op; the answer's row count says whether it was new.
            put_new_episode: c
                .prepare(
                    "WITH e AS (INSERT INTO episodes (tenant, id, row_data) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant, id) DO NOTHING RETURNING id), \
                     s AS (INSERT INTO change_seq (tenant, last_seq) SELECT $1, 1 FROM e \
                     ON CONFLICT (tenant) DO UPDATE SET last_seq = change_seq.last_seq + 1 \
                     RETURNING last_seq), \
                     c AS (INSERT INTO changes (tenant, seq, id) SELECT $1, last_seq, $2 FROM s), \
                     v AS (INSERT INTO vv (tenant, origin, seq) SELECT $1, $4, 1 FROM e \
                     ON CONFLICT (tenant, origin) DO UPDATE SET seq = vv.seq + 1 RETURNING seq) \
                     INSERT INTO ops (tenant, origin, seq, id) SELECT $1, $4, seq, $2 FROM v",
                )
                .await?,
            upsert_episode: c
                .prepare(
                    "INSERT INTO episodes (tenant, id, row_data) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant, id) DO UPDATE SET row_data = EXCLUDED.row_data",
                )
                .await?,
            episode_for_update: c
                .prepare("SELECT row_data FROM episodes WHERE tenant = $1 AND id = $2 FOR UPDATE")
                .await?,
            // The counter row's lock numbers a tenant's changes in commit order across every
            // writer of the database.
            log_change: c
                .prepare(
                    "WITH s AS (INSERT INTO change_seq (tenant, last_seq) VALUES ($1, 1) \
                     ON CONFLICT (tenant) DO UPDATE SET last_seq = change_seq.last_seq + 1 \
                     RETURNING last_seq) \
                     INSERT INTO changes (tenant, seq, id) SELECT $1, last_seq, $2 FROM s",
                )
                .await?,
            next_op: c
                .prepare(
                    "WITH v AS (INSERT INTO vv (tenant, origin, seq) VALUES ($1, $2, 1) \
                     ON CONFLICT (tenant, origin) DO UPDATE SET seq = vv.seq + 1 RETURNING seq) \
                     INSERT INTO ops (tenant, origin, seq, id) SELECT $1, $2, seq, $3 FROM v",
                )
                .await?,
        })
    }
}

/// The statements of the hot read path, prepared once on the read connection.
#[derive(Debug)]
struct ReadStatements {
    episode: Statement,
    episodes: Statement,
}

impl ReadStatements {
    async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            episode: c
                .prepare("SELECT row_data FROM episodes WHERE tenant = $1 AND id = $2")
                .await?,
            episodes: c
                .prepare("SELECT id, row_data FROM episodes WHERE tenant = $1 AND id = ANY($2)")
                .await?,
        })
    }
}

/// Waits for `fut` on this thread. The futures of a connected client only exchange messages
/// with its connection task, so they need no runtime of their own.
fn wait<F: Future>(fut: F) -> F::Output {
    futures_executor::block_on(fut)
}

fn db(e: tokio_postgres::Error) -> StorageError {
    // The server's message when there is one (its `Display` is only "db error").
    let text = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    };
    StorageError::Backend(format!("postgres: {text}"))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Backend(format!("postgres: a stored {what} is not valid"))
}

fn id_bytes(id: &EpisodeId) -> [u8; 16] {
    id.to_bytes()
}

fn id_from(bytes: &[u8]) -> Result<EpisodeId, StorageError> {
    let b: [u8; 16] = bytes.try_into().map_err(|_| corrupt("episode id"))?;
    Ok(EpisodeId::from_bytes(b))
}

fn seq_from(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| corrupt("sequence number"))
}

fn seq_to(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Backend("sequence number over 2^63".into()))
}

fn limit_to(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
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

async fn episode_for_update(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    tenant: &TenantId,
    id: &EpisodeId,
) -> Result<Option<StoredEpisode>, StorageError> {
    let row = tx
        .query_opt(
            &st.episode_for_update,
            &[&tenant.as_str(), &&id_bytes(id)[..]],
        )
        .await
        .map_err(db)?;
    row.map(|r| StoredEpisode::decode(r.get::<_, &[u8]>(0)).map_err(StorageError::from))
        .transpose()
}

async fn put_episode(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    tenant: &TenantId,
    row: &StoredEpisode,
) -> Result<(), StorageError> {
    tx.execute(
        &st.upsert_episode,
        &[&tenant.as_str(), &&id_bytes(&row.id)[..], &row.encode()],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Appends `id` to the tenant's change log.
async fn log_change(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    tenant: &TenantId,
    id: &EpisodeId,
) -> Result<(), StorageError> {
    tx.execute(&st.log_change, &[&tenant.as_str(), &&id_bytes(id)[..]])
        .await
        .map_err(db)?;
    Ok(())
}

/// Records `op` for episode `id`; false when it is not the next op of its origin.
async fn record_op(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    tenant: &TenantId,
    op: &OpSeq,
    id: &EpisodeId,
) -> Result<bool, StorageError> {
    let origin = op.origin().as_str();
    if let OpSeq::Next(_) = op {
        tx.execute(
            &st.next_op,
            &[&tenant.as_str(), &origin, &&id_bytes(id)[..]],
        )
        .await
        .map_err(db)?;
        return Ok(true);
    }
    // A replicated op: recorded only when it is the next of its origin. The row exists
    // before it is locked, so that two writers of one origin queue on it.
    tx.execute(
        "INSERT INTO vv (tenant, origin, seq) VALUES ($1, $2, 0) ON CONFLICT (tenant, origin) DO NOTHING",
        &[&tenant.as_str(), &origin],
    )
    .await
    .map_err(db)?;
    let last: i64 = tx
        .query_one(
            "SELECT seq FROM vv WHERE tenant = $1 AND origin = $2 FOR UPDATE",
            &[&tenant.as_str(), &origin],
        )
        .await
        .map_err(db)?
        .get(0);
    let Some(seq) = op.seq_after(seq_from(last)?) else {
        return Ok(false);
    };
    let seq = seq_to(seq)?;
    tx.execute(
        "INSERT INTO ops (tenant, origin, seq, id) VALUES ($1, $2, $3, $4)",
        &[&tenant.as_str(), &origin, &seq, &&id_bytes(id)[..]],
    )
    .await
    .map_err(db)?;
    tx.execute(
        "UPDATE vv SET seq = $3 WHERE tenant = $1 AND origin = $2",
        &[&tenant.as_str(), &origin, &seq],
    )
    .await
    .map_err(db)?;
    Ok(true)
}

async fn put_tenant_key(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    key: &WrappedTenantKey,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO tenant_keys (tenant, version, key_data) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant, version) DO UPDATE SET key_data = EXCLUDED.key_data",
        &[&tenant.as_str(), &i64::from(key.version), &key.bytes],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn put_tenant_meta(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    name: &str,
    value: &[u8],
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO tenant_meta (tenant, name, value) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant, name) DO UPDATE SET value = EXCLUDED.value",
        &[&tenant.as_str(), &name, &value],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn meta_for_update(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(tx
        .query_opt(
            "SELECT value FROM meta WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(db)?
        .map(|r| r.get::<_, Vec<u8>>(0)))
}

async fn put_meta(tx: &Transaction<'_>, name: &str, value: &[u8]) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&name, &value],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// A [`Write::PutEpisode`]: whether the episode was new.
async fn put_new_episode(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    tenant: &TenantId,
    row: &StoredEpisode,
    origin: &HubId,
) -> Result<bool, StorageError> {
    let inserted = tx
        .execute(
            &st.put_new_episode,
            &[
                &tenant.as_str(),
                &&id_bytes(&row.id)[..],
                &row.encode(),
                &origin.as_str(),
            ],
        )
        .await
        .map_err(db)?;
    Ok(inserted == 1)
}

/// Applies `writes` in one transaction. A run of new episodes (the common batch: a group
/// commit of many writers' stores) is sent pipelined: the server runs the statements one after
/// another, in order, without waiting for a round trip between them.
async fn apply_all(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    writes: &[Write],
) -> Result<Vec<bool>, StorageError> {
    let mut out = Vec::with_capacity(writes.len());
    let mut rest = writes;
    while let Some(first) = rest.first() {
        let run = rest
            .iter()
            .take_while(|w| matches!(w, Write::PutEpisode { .. }))
            .count();
        if run == 0 {
            out.push(apply_one(tx, st, first).await?);
            rest = &rest[1..];
            continue;
        }
        let puts = rest[..run].iter().filter_map(|w| match w {
            Write::PutEpisode {
                tenant,
                row,
                origin,
            } => Some(put_new_episode(tx, st, tenant, row, origin)),
            _ => None,
        });
        out.extend(futures_util::future::try_join_all(puts).await?);
        rest = &rest[run..];
    }
    Ok(out)
}

/// One write of an [`Storage::apply`], inside its transaction; the outcome as the trait
/// defines it for the variant.
async fn apply_one(
    tx: &Transaction<'_>,
    st: &WriteStatements,
    w: &Write,
) -> Result<bool, StorageError> {
    Ok(match w {
        Write::PutEpisode {
            tenant,
            row,
            origin,
        } => put_new_episode(tx, st, tenant, row, origin).await?,
        Write::ReplaceEpisode { tenant, row } => {
            let live = episode_for_update(tx, st, tenant, &row.id)
                .await?
                .is_some_and(|e| e.deleted.is_none());
            if live {
                put_episode(tx, st, tenant, row).await?;
            }
            live
        }
        Write::Tombstone {
            tenant,
            id,
            stamp,
            model,
            origin,
        } => {
            let existing = episode_for_update(tx, st, tenant, id).await?;
            match tombstone_row(existing.as_ref(), *id, stamp, model) {
                Some(tomb) => {
                    put_episode(tx, st, tenant, &tomb).await?;
                    log_change(tx, st, tenant, id).await?;
                    record_op(tx, st, tenant, &OpSeq::Next(origin.clone()), id).await?
                }
                None => false,
            }
        }
        Write::Merge {
            tenant,
            id,
            row,
            op,
        } => {
            if !record_op(tx, st, tenant, op, id).await? {
                false
            } else {
                if let Some(row) = row {
                    let existing = episode_for_update(tx, st, tenant, id).await?;
                    if !merge_keeps(existing.as_ref(), row) {
                        put_episode(tx, st, tenant, row).await?;
                        log_change(tx, st, tenant, id).await?;
                    }
                }
                true
            }
        }
        Write::CollectTombstone { tenant, id } => {
            let existing = episode_for_update(tx, st, tenant, id).await?;
            match existing {
                Some(row) if row.deleted.is_some() => {
                    tx.execute(
                        "DELETE FROM episodes WHERE tenant = $1 AND id = $2",
                        &[&tenant.as_str(), &&id_bytes(id)[..]],
                    )
                    .await
                    .map_err(db)?;
                    true
                }
                _ => false,
            }
        }
        Write::CreateTenant {
            tenant,
            key,
            settings,
        } => {
            // The tenant's counter row serialises creators: the second waits for the first's
            // commit and then finds the key.
            tx.execute(
                "INSERT INTO change_seq (tenant, last_seq) VALUES ($1, 0) \
                 ON CONFLICT (tenant) DO NOTHING",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "SELECT last_seq FROM change_seq WHERE tenant = $1 FOR UPDATE",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db)?;
            let exists = tx
                .query_opt(
                    "SELECT version FROM tenant_keys WHERE tenant = $1 LIMIT 1",
                    &[&tenant.as_str()],
                )
                .await
                .map_err(db)?
                .is_some();
            if !exists {
                put_tenant_key(tx, tenant, key).await?;
                for (name, value) in settings {
                    put_tenant_meta(tx, tenant, name, value).await?;
                }
            }
            !exists
        }
        Write::PutTenantKey { tenant, key } => {
            put_tenant_key(tx, tenant, key).await?;
            true
        }
        Write::PutTenantMeta {
            tenant,
            name,
            value,
        } => {
            put_tenant_meta(tx, tenant, name, value).await?;
            true
        }
        Write::PutMeta { name, value } => {
            put_meta(tx, name, value).await?;
            true
        }
        Write::DeleteMeta { name } => {
            tx.execute("DELETE FROM meta WHERE name = $1", &[&name.as_str()])
                .await
                .map_err(db)?
                == 1
        }
        Write::ClockAtLeast { hlc } => {
            let current = meta_for_update(tx, CLOCK_META).await?;
            match raised_clock(current.as_deref(), *hlc) {
                Some(value) => {
                    put_meta(tx, CLOCK_META, &value).await?;
                    true
                }
                None => false,
            }
        }
        Write::KnowPeer { peer, region } => {
            let value = encode_region(region);
            tx.execute(
                "INSERT INTO peers (peer, region) VALUES ($1, $2) \
                 ON CONFLICT (peer) DO UPDATE SET region = EXCLUDED.region \
                 WHERE peers.region <> EXCLUDED.region",
                &[&peer.as_str(), &value],
            )
            .await
            .map_err(db)?
                == 1
        }
        Write::JoinPeerAck {
            tenant,
            peer,
            acked,
        } => {
            let existing: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT acked FROM peer_acks WHERE tenant = $1 AND peer = $2 FOR UPDATE",
                    &[&tenant.as_str(), &peer.as_str()],
                )
                .await
                .map_err(db)?
                .map(|r| r.get(0));
            match joined_acked(existing.as_deref(), acked)? {
                Some(value) => {
                    tx.execute(
                        "INSERT INTO peer_acks (tenant, peer, acked) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant, peer) DO UPDATE SET acked = EXCLUDED.acked",
                        &[&tenant.as_str(), &peer.as_str(), &value],
                    )
                    .await
                    .map_err(db)?;
                    true
                }
                None => false,
            }
        }
        Write::ForgetPeer { peer } => {
            let peers = tx
                .execute("DELETE FROM peers WHERE peer = $1", &[&peer.as_str()])
                .await
                .map_err(db)?;
            let acks = tx
                .execute("DELETE FROM peer_acks WHERE peer = $1", &[&peer.as_str()])
                .await
                .map_err(db)?;
            peers + acks > 0
        }
        Write::EraseTenant { tenant } => {
            let t = &[&tenant.as_str() as &(dyn tokio_postgres::types::ToSql + Sync)];
            let episodes = tx
                .execute("DELETE FROM episodes WHERE tenant = $1", t)
                .await
                .map_err(db)?;
            let keys = tx
                .execute("DELETE FROM tenant_keys WHERE tenant = $1", t)
                .await
                .map_err(db)?;
            for table in ["changes", "change_seq", "tenant_meta"] {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1"), t)
                    .await
                    .map_err(db)?;
            }
            episodes + keys > 0
        }
        _ => {
            return Err(StorageError::Backend(
                "postgres: a kind of write this backend does not know".into(),
            ))
        }
    })
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
