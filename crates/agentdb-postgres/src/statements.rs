//! The statements of the hot paths, prepared once per connection.

use tokio_postgres::{Client, Statement};

/// The statements of the hot write path, prepared once on the write connection: a new
/// episode costs one round trip.
#[derive(Debug)]
pub(crate) struct WriteStatements {
    pub(crate) put_new_episode: Statement,
    pub(crate) upsert_episode: Statement,
    pub(crate) episode_for_update: Statement,
    pub(crate) log_change: Statement,
    pub(crate) next_op: Statement,
}

impl WriteStatements {
    pub(crate) async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
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
pub(crate) struct ReadStatements {
    pub(crate) episode: Statement,
    pub(crate) episodes: Statement,
}

impl ReadStatements {
    pub(crate) async fn prepare(c: &Client) -> Result<Self, tokio_postgres::Error> {
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
