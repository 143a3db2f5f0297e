//! Reading: similarity queries, point reads, the change feed and statistics.

use std::collections::HashMap;
use std::ops::ControlFlow;

use agentdb_core::{
    validate_vector, Embedding, Episode, EpisodeId, TaskCount, TenantId, TenantStats,
};

use crate::error::{QueryError, ReadError};
use crate::storage::StoredEpisode;

use super::body;
use super::tenant::TenantState;
use super::types::{
    Change, ChangePage, Match, Query, QueryInput, MAX_BATCH, MAX_K, MAX_PAGE_BYTES,
};
use super::MemoryEngine;

impl MemoryEngine {
    /// The `k` episodes of `tenant` nearest to the query that pass its filter, best first.
    pub fn query(&self, tenant: &TenantId, query: &Query) -> Result<Vec<Match>, QueryError> {
        if query.k == 0 || query.k > MAX_K {
            return Err(QueryError::BadK {
                k: query.k,
                limit: MAX_K,
            });
        }
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
        let hits =
            state
                .index
                .search(&embedding.model, &embedding.vector, query.k, &query.filter)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            // A hit deleted since the search is skipped, not an error.
            if let Some(episode) = self.read(&state, &hit.id)? {
                out.push(Match {
                    episode,
                    score: hit.score,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn read(
        &self,
        state: &TenantState,
        id: &EpisodeId,
    ) -> Result<Option<Episode>, ReadError> {
        match self.storage.episode(&state.id, id)? {
            Some(row) if row.deleted.is_none() => {
                let key = state.key_for(&row)?;
                Ok(Some(body::open_episode(&key, &row)?))
            }
            _ => Ok(None),
        }
    }

    /// One live episode of `tenant`.
    pub fn get(&self, tenant: &TenantId, id: &EpisodeId) -> Result<Option<Episode>, ReadError> {
        match self.tenant(tenant) {
            Some(state) => self.read(&state, id),
            None => Ok(None),
        }
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
