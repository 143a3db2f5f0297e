//! Expiry: deleting the episodes whose time is up.
//!
//! An episode expires at its own `expires_at` (part of its immutable content, set by the writer)
//! or when its tenant's retention has passed since it was created. [`MemoryEngine::expire`]
//! finds such episodes from the rows' clear fields (no row is opened) and deletes them through
//! the delete path of [`MemoryEngine::delete`]: a tombstone and an op of this store, so the
//! deletes replicate like any other. Reads do not wait for it: an episode past its own
//! `expires_at` is not returned by `get`, `list`, `query` or the change feed even before a
//! sweep removes it. A tenant's retention is known only to whoever runs the sweep (the hub),
//! so it takes effect at the next sweep.

use std::ops::ControlFlow;
use std::time::Duration;

use agentdb_core::{EpisodeId, TenantId, Timestamp};

use crate::error::ReadError;
use crate::storage::StoredEpisode;

use super::types::MAX_BATCH;
use super::MemoryEngine;

impl MemoryEngine {
    /// Deletes every live episode of `tenant` that has expired at `now`: its `expires_at` is at
    /// or before `now`, or, with a `retention`, it was created at least `retention` before
    /// `now`. Returns how many episodes it deleted.
    ///
    /// The deletes are ordinary deletes (tombstones, replicated as ops), committed in batches
    /// of at most [`MAX_BATCH`]. `now` is normally [`MemoryEngine::now`], the engine's clock.
    pub fn expire(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        retention: Option<Duration>,
    ) -> Result<u64, ReadError> {
        if self.tenant(tenant).is_none() {
            return Ok(0);
        }
        // Created at or before this is past the retention (none when the retention reaches
        // back before the epoch).
        let created_by = retention.and_then(|r| {
            let ms = u64::try_from(r.as_millis()).unwrap_or(u64::MAX);
            now.unix_ms().checked_sub(ms).map(Timestamp)
        });
        let mut due: Vec<EpisodeId> = Vec::new();
        self.storage.scan_episodes(tenant, &mut |row| {
            if is_due(&row, now, created_by) {
                due.push(row.id);
            }
            ControlFlow::Continue(())
        })?;
        let mut deleted = 0u64;
        for batch in due.chunks(MAX_BATCH) {
            let was_live = self.delete_episodes(tenant, batch)?;
            deleted += was_live.iter().filter(|live| **live).count() as u64;
        }
        if deleted > 0 {
            tracing::debug!(%tenant, deleted, "expired episodes deleted");
        }
        Ok(deleted)
    }
}

/// Whether a row is a live episode that has expired at `now`, given the latest creation time
/// the tenant's retention keeps (`None`: no retention).
fn is_due(row: &StoredEpisode, now: Timestamp, created_by: Option<Timestamp>) -> bool {
    row.deleted.is_none()
        && (row.is_expired(now) || created_by.is_some_and(|limit| row.created <= limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{local_hub, RowStamps};
    use agentdb_core::{Hlc, ModelId, Stamp};

    fn row(created: u64, expires_at: Option<u64>) -> StoredEpisode {
        StoredEpisode {
            id: EpisodeId::from_parts(created, [1; 10]),
            created: Timestamp(created),
            reward: 0.5,
            success: false,
            task_hash: [0; 16],
            model: ModelId::new("m").unwrap(),
            deleted: None,
            stamps: RowStamps::all(Stamp::new(Hlc::new(created, 0), local_hub())),
            sealed_body: Vec::new(),
            sealed_vector: Vec::new(),
            expires_at: expires_at.map(Timestamp),
        }
    }

    #[test]
    fn expiry_is_inclusive_and_tombstones_are_never_due() {
        let now = Timestamp(1_000);
        assert!(!is_due(&row(10, None), now, None));
        assert!(!is_due(&row(10, Some(1_001)), now, None));
        assert!(is_due(&row(10, Some(1_000)), now, None));
        assert!(is_due(&row(10, Some(5)), now, None));
        // Retention: created at or before the limit.
        assert!(is_due(&row(400, None), now, Some(Timestamp(400))));
        assert!(!is_due(&row(401, None), now, Some(Timestamp(400))));
        let stamp = Stamp::new(Hlc::new(20, 0), local_hub());
        let tomb = row(10, Some(5)).into_tombstone(stamp);
        assert!(!is_due(&tomb, now, Some(Timestamp(900))));
    }
}
