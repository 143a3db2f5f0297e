//! One [`Storage::apply`](agentdb_memory::storage::Storage::apply) inside its transaction: each
//! kind of write, with the rules every backend shares (`tombstone_row`, `merge_keeps`, …).

use agentdb_core::{EpisodeId, HubId, TenantId};
use agentdb_memory::storage::{
    encode_region, joined_acked, log_entry_name, merge_keeps, raised_clock, reseal_replaces,
    tombstone_row, OpSeq, StorageError, StoredEpisode, Write, CLOCK_META,
};
use agentdb_security::WrappedTenantKey;
use tokio_postgres::Transaction;

use crate::codec::{db, id_bytes, seq_from, seq_to};
use crate::statements::WriteStatements;

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
pub(crate) async fn apply_all(
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
        Write::ResealEpisode { tenant, row } => {
            let existing = episode_for_update(tx, st, tenant, &row.id).await?;
            let replaces = reseal_replaces(existing.as_ref(), row);
            if replaces {
                put_episode(tx, st, tenant, row).await?;
            }
            replaces
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
        Write::DeleteTenantKey { tenant, version } => {
            // Never the newest version: that one seals new records.
            let deleted = tx
                .execute(
                    "DELETE FROM tenant_keys WHERE tenant = $1 AND version = $2 \
                     AND version < (SELECT max(version) FROM tenant_keys WHERE tenant = $1)",
                    &[&tenant.as_str(), &i64::from(*version)],
                )
                .await
                .map_err(db)?;
            deleted == 1
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
        Write::AppendMeta { log, value } => {
            let number: i64 = tx
                .query_one("SELECT nextval('meta_log_number')", &[])
                .await
                .map_err(db)?
                .get(0);
            // The sequence starts at 1 and only rises.
            put_meta(tx, &log_entry_name(log, number.unsigned_abs()), value).await?;
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
