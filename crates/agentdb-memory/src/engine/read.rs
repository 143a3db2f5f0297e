//! Reading: similarity queries, point reads, listings, the change feed and statistics.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::ControlFlow;

use agentdb_core::{
    validate_vector, Embedding, Episode, EpisodeId, Filter, TaskCount, TenantId, TenantStats,
    Timestamp,
};

use crate::error::{QueryError, ReadError};
use crate::storage::StoredEpisode;

use super::body;
use super::tenant::TenantState;
use super::types::{
    Change, ChangePage, EpisodeList, Match, Query, QueryInput, MAX_BATCH, MAX_K, MAX_PAGE_BYTES,
};
use super::MemoryEngine;

/// The first search of a query with content conditions asks for this many candidates at least
/// (and for four times `k` when that is more); each further search asks for twice as many.
const MIN_CONTENT_FETCH: usize = 32;

impl MemoryEngine {
    /// The `k` episodes of `tenant` nearest to the query that pass its filter, best first.
    ///
    /// The filter is validated first ([`QueryError::BadFilter`]). Its conditions on clear-text
    /// facts are applied inside the vector search. Its conditions on content (tags, metadata)
    /// can only be checked on opened episodes, so such a query searches for more candidates
    /// than `k` (at least 32, and four times `k`), opens them best first and keeps those that
    /// pass, doubling the search until `k` have passed or the tenant has no more candidates.
    /// `k` results thus come back whenever `k` matching episodes exist; a very selective
    /// content filter may open most of the tenant's episodes to find them.
    ///
    /// Episodes past their `expires_at` are never returned, even before the expiry sweep
    /// deletes them; the search widens past them so that they do not take the place of
    /// matches.
    pub fn query(&self, tenant: &TenantId, query: &Query) -> Result<Vec<Match>, QueryError> {
        if query.k == 0 || query.k > MAX_K {
            return Err(QueryError::BadK {
                k: query.k,
                limit: MAX_K,
            });
        }
        query.filter.validate()?;
        let Some(state) = self.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let embedding = match &query.input {
            QueryInput::Text(text) => Embedding {
                model: self.embedder.model().clone(),
                vector: self.embedder.embed(text)?,
            },
            QueryInput::Vector(e) => {
                validate_vector(&e.vector, &self.config.limits)?;
                e.clone()
            }
        };
        if &embedding.model != state.model() {
            return Err(QueryError::EmbedderMismatch {
                tenant: tenant.clone(),
                tenant_model: state.model().clone(),
                given: embedding.model,
            });
        }
        if query.filter.needs_content() {
            return self.search_content(&state, &embedding, query.k, &query.filter);
        }
        let now = self.clock.now();
        let mut fetch = query.k;
        loop {
            let hits =
                state
                    .index
                    .search(&embedding.model, &embedding.vector, fetch, &query.filter)?;
            let ids: Vec<EpisodeId> = hits.iter().map(|h| h.id).collect();
            let rows = self
                .storage
                .episodes(&state.id, &ids)
                .map_err(ReadError::from)?;
            let mut out = Vec::with_capacity(hits.len());
            let mut expired = 0;
            for (hit, row) in hits.iter().zip(rows) {
                expired += usize::from(row.as_ref().is_some_and(|r| r.is_expired(now)));
                // A hit deleted since the search is skipped, not an error.
                if let Some(episode) = open_live(&state, row, now)? {
                    out.push(Match {
                        episode,
                        score: hit.score,
                    });
                }
            }
            // Expired episodes not swept yet took some places: search again for as many more
            // (until the index has no more to give).
            let all = state.index.live_len().max(query.k);
            if out.len() >= query.k || expired == 0 || hits.len() < fetch || fetch >= all {
                out.truncate(query.k);
                return Ok(out);
            }
            fetch = fetch.saturating_add(expired).min(all);
        }
    }

    /// A search whose filter has content conditions: over-fetch, open, keep what passes, and
    /// widen until `k` pass or the index has nothing more to give.
    fn search_content(
        &self,
        state: &TenantState,
        embedding: &Embedding,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Match>, QueryError> {
        // Every candidate opened so far: the episode when it passes, `None` when it does not
        // (or was deleted since the search). A wider search finds the same candidates again;
        // none is opened twice.
        let mut opened: HashMap<EpisodeId, Option<Episode>> = HashMap::new();
        let mut fetch = k.saturating_mul(4).max(MIN_CONTENT_FETCH);
        loop {
            // Asking for more than the tenant's live vectors returns them all (that pass the
            // clear-text conditions); asking for more is pointless and only sizes buffers.
            let all = state.index.live_len().max(k);
            fetch = fetch.min(all);
            let hits = state
                .index
                .search(&embedding.model, &embedding.vector, fetch, filter)?;
            // Fewer hits than asked: the index has no further candidate.
            let exhausted = hits.len() < fetch || fetch == all;
            let mut passed = 0;
            for hit in &hits {
                if passed == k {
                    break;
                }
                let passes = match opened.entry(hit.id) {
                    Entry::Occupied(seen) => seen.get().is_some(),
                    Entry::Vacant(slot) => {
                        let episode = self
                            .read(state, &hit.id)?
                            .filter(|e| filter.accepts_content(&e.tags, &e.metadata));
                        slot.insert(episode).is_some()
                    }
                };
                passed += usize::from(passes);
            }
            if passed == k || exhausted {
                let mut out = Vec::with_capacity(passed);
                for hit in hits {
                    if out.len() == k {
                        break;
                    }
                    if let Some(Some(episode)) = opened.remove(&hit.id) {
                        out.push(Match {
                            episode,
                            score: hit.score,
                        });
                    }
                }
                return Ok(out);
            }
            fetch = fetch.saturating_mul(2);
        }
    }

    pub(super) fn read(
        &self,
        state: &TenantState,
        id: &EpisodeId,
    ) -> Result<Option<Episode>, ReadError> {
        open_live(
            state,
            self.storage.episode(&state.id, id)?,
            self.clock.now(),
        )
    }

    /// One live episode of `tenant` (not one past its `expires_at`).
    pub fn get(&self, tenant: &TenantId, id: &EpisodeId) -> Result<Option<Episode>, ReadError> {
        match self.tenant(tenant) {
            Some(state) => self.read(&state, id),
            None => Ok(None),
        }
    }

    /// A page of the live episodes of `tenant`, in id order (creation order for ids minted by
    /// [`super::mint_episode_id`]): those with an id above `after`, from the first when `after`
    /// is `None`.
    ///
    /// Start with `after` `None` and pass each page's `next` back until it is `None`. Every
    /// episode that stays live during the walk comes back exactly once; one stored or deleted
    /// meanwhile may or may not. `next` is `Some` (the id of the page's last episode) whenever
    /// a live episode follows the page. Deleted episodes are skipped unopened, never returned
    /// as gaps: a page is empty only when nothing follows. Episodes past their `expires_at`
    /// are skipped like deleted ones.
    ///
    /// A page holds at most `limit` episodes (clamped to 1..=[`MAX_BATCH`]) and at most
    /// [`MAX_PAGE_BYTES`] of sealed episode content, but always at least one episode. Each
    /// page starts its scan just after `after`, so walking a whole tenant reads each row about
    /// once (plus the tombstones between a page's last episode and the next live one).
    pub fn list(
        &self,
        tenant: &TenantId,
        after: Option<EpisodeId>,
        limit: usize,
    ) -> Result<EpisodeList, ReadError> {
        let Some(state) = self.tenant(tenant) else {
            return Ok(EpisodeList {
                episodes: Vec::new(),
                next: None,
            });
        };
        let limit = limit.clamp(1, MAX_BATCH);
        let now = self.clock.now();
        let mut rows: Vec<StoredEpisode> = Vec::new();
        let mut bytes = 0usize;
        let mut more = false;
        self.storage
            .scan_episodes_after(tenant, after.as_ref(), &mut |row| {
                if row.deleted.is_some() || row.is_expired(now) {
                    return ControlFlow::Continue(());
                }
                let size = row.sealed_body.len();
                if !rows.is_empty()
                    && (rows.len() >= limit || bytes.saturating_add(size) > MAX_PAGE_BYTES)
                {
                    // A live row follows the full page.
                    more = true;
                    return ControlFlow::Break(());
                }
                bytes = bytes.saturating_add(size);
                rows.push(row);
                ControlFlow::Continue(())
            })?;
        let next = rows.last().filter(|_| more).map(|r| r.id);
        let mut episodes = Vec::with_capacity(rows.len());
        for row in &rows {
            let key = state.key_for(row)?;
            episodes.push(body::open_episode(&key, row)?);
        }
        Ok(EpisodeList { episodes, next })
    }

    /// The changes to `tenant` after `cursor` (0 = from the beginning), at most `limit` and at
    /// most [`MAX_PAGE_BYTES`] of episode text per page (but always at least one change).
    pub fn changes_since(
        &self,
        tenant: &TenantId,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage, ReadError> {
        let empty = ChangePage {
            changes: Vec::new(),
            next_cursor: cursor,
            more: false,
        };
        let Some(state) = self.tenant(tenant) else {
            return Ok(empty);
        };
        let limit = limit.clamp(1, MAX_BATCH);
        // One extra entry tells whether more are waiting.
        let log = self.storage.changes(tenant, cursor, limit + 1)?;
        let mut page = ChangePage {
            more: log.len() > limit,
            ..empty
        };
        let mut bytes = 0usize;
        for (seq, id) in log.into_iter().take(limit) {
            let change = match self.read(&state, &id)? {
                Some(e) => {
                    bytes += e.task.len()
                        + e.input.len()
                        + e.output.len()
                        + e.critique.as_ref().map_or(0, String::len);
                    Change::Put(Box::new(e))
                }
                None => Change::Deleted(id),
            };
            if bytes > MAX_PAGE_BYTES && !page.changes.is_empty() {
                page.more = true;
                break;
            }
            page.changes.push((seq, change));
            page.next_cursor = seq;
        }
        Ok(page)
    }

    /// Counts, rates and the most common tasks of `tenant`.
    pub fn stats(&self, tenant: &TenantId) -> Result<TenantStats, ReadError> {
        let Some(state) = self.tenant(tenant) else {
            return Ok(TenantStats {
                episodes: 0,
                deleted: 0,
                success_rate: 0.0,
                avg_reward: 0.0,
                top_tasks: Vec::new(),
                embedding_model: None,
                key_version: 0,
            });
        };
        #[derive(Default)]
        struct Group {
            count: u64,
            reward: f64,
            sample: Option<StoredEpisode>,
        }
        let (mut live, mut deleted, mut successes, mut reward) = (0u64, 0u64, 0u64, 0f64);
        let mut groups: HashMap<[u8; 16], Group> = HashMap::new();
        self.storage.scan_episodes(tenant, &mut |row| {
            if row.deleted.is_some() {
                deleted += 1;
                return ControlFlow::Continue(());
            }
            live += 1;
            successes += u64::from(row.success);
            reward += row.reward;
            let g = groups.entry(row.task_hash).or_default();
            g.count += 1;
            g.reward += row.reward;
            if g.sample.is_none() {
                g.sample = Some(row);
            }
            ControlFlow::Continue(())
        })?;
        // Most frequent first; ties in hash order, so the answer does not depend on map order.
        let mut ranked: Vec<([u8; 16], Group)> = groups.into_iter().collect();
        ranked.sort_by_key(|(hash, g)| (std::cmp::Reverse(g.count), *hash));
        let mut top_tasks = Vec::new();
        for (_, g) in ranked.into_iter().take(5) {
            let Some(row) = g.sample else { continue };
            let key = state.key_for(&row)?;
            top_tasks.push(TaskCount {
                task: body::open_episode(&key, &row)?.task,
                count: g.count,
                avg_reward: g.reward / g.count as f64,
            });
        }
        let ratio = |x: f64| if live == 0 { 0.0 } else { x / live as f64 };
        Ok(TenantStats {
            episodes: live,
            deleted,
            success_rate: ratio(successes as f64),
            avg_reward: ratio(reward),
            top_tasks,
            embedding_model: Some(state.model().clone()),
            key_version: state.current_key().map_or(0, |k| k.version()),
        })
    }
}

/// The episode of a live row, opened; `None` for no row, a tombstone or an episode expired at
/// `now`.
fn open_live(
    state: &TenantState,
    row: Option<StoredEpisode>,
    now: Timestamp,
) -> Result<Option<Episode>, ReadError> {
    match row {
        Some(row) if row.deleted.is_none() && !row.is_expired(now) => {
            let key = state.key_for(&row)?;
            Ok(Some(body::open_episode(&key, &row)?))
        }
        _ => Ok(None),
    }
}
