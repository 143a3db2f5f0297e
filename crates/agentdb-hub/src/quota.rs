//! Per-tenant quotas: live episodes, stored bytes and writes per second.
//!
//! ```text
//! Store/Update/Delete ─► QuotaBook::admit_* ─► (checks under the tenant's account lock:
//!                          │                    episodes, bytes, token bucket; reserves)
//!                          ├─ refused ─► quota_exceeded, nothing written
//!                          └─ WriteTicket ─► MemoryEngine ─► ticket.settle_* (bytes counted,
//!                                                             reservation released; dropped
//!                                                             unsettled on failure)
//! ```
//!
//! What a tenant may hold is the run-time override (`PUT /v1/tenants/{t}/quota`, kept as the
//! sealed setting `quota/<tenant>`) over the configuration's tenant entry over its default,
//! limit by limit ([`TenantQuota::over`]).
//!
//! Live episodes come from the tenant's vector index (exact, no scan). Stored bytes are counted
//! by the hub: once per tenant from a walk over its episodes, when a bytes limit or the
//! per-tenant metrics first need them, then kept up to date by every write the hub serves. A
//! write holds a reservation from its check to its acknowledgement, so two writes racing for
//! the last room cannot both take it; the walk waits for the writes under way and holds new ones
//! back until it is done, so each write is counted exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::{EpisodeId, EpisodeUpdate, NewEpisode, TenantId};
use agentdb_memory::{MemoryEngine, Stored};
use agentdb_proto::{ErrorCode, WireError};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::auth::error;
use crate::config::{Quotas, TenantQuota};

/// Where run-time quota overrides live among the hub's sealed settings: `quota/<tenant>` →
/// JSON of a [`TenantQuota`].
pub(crate) const QUOTA_PREFIX: &str = "quota/";

/// Episodes read per page when a tenant's stored bytes are counted.
const COUNT_PAGE: usize = 256;

/// The bytes of an episode that a bytes quota counts: its texts, tags and metadata (compact
/// JSON), as the per-episode size limit counts them.
pub(crate) fn content_bytes(
    texts: [&str; 3],
    critique: Option<&str>,
    tags: &[String],
    metadata: &serde_json::Value,
) -> u64 {
    let texts: usize = texts.iter().map(|t| t.len()).sum();
    let tags: usize = tags.iter().map(String::len).sum();
    let metadata = if metadata.is_null() {
        0
    } else {
        metadata.to_string().len()
    };
    (texts + critique.map_or(0, str::len) + tags + metadata) as u64
}

fn new_episode_bytes(e: &NewEpisode) -> u64 {
    content_bytes(
        [&e.task, &e.input, &e.output],
        e.critique.as_deref(),
        &e.tags,
        &e.metadata,
    )
}

fn episode_bytes(e: &agentdb_core::Episode) -> u64 {
    content_bytes(
        [&e.task, &e.input, &e.output],
        e.critique.as_deref(),
        &e.tags,
        &e.metadata,
    )
}

/// The size of `e` once `update` is applied to it.
fn updated_bytes(e: &agentdb_core::Episode, update: &EpisodeUpdate) -> u64 {
    let critique = match &update.critique {
        Some(c) => c.as_deref(),
        None => e.critique.as_deref(),
    };
    let tags = update.tags.as_ref().unwrap_or(&e.tags);
    let metadata = match &update.metadata_json {
        // Stores keep metadata as compact JSON; text that is not JSON is refused by the engine.
        Some(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
        None => e.metadata.clone(),
    };
    content_bytes([&e.task, &e.input, &e.output], critique, tags, &metadata)
}

/// A token bucket: `rate` tokens a second, holding at most `rate` (the burst). A request passes
/// when the bucket holds at least one token and takes one per write; a batch larger than what
/// is left takes the bucket into debt, repaid at the rate before the next write passes, so the
/// average never exceeds the rate. Time is passed in; tokens are kept in billionths, so that
/// the arithmetic is exact.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: u32,
    /// Tokens × 10⁹; negative while in debt.
    nanotokens: i128,
    at: Instant,
}

/// One token, in the bucket's unit.
const TOKEN: i128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate,
            nanotokens: i128::from(rate) * TOKEN,
            at: now,
        }
    }

    /// The rate, in tokens a second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes `writes` tokens, or says how long until one is there.
    pub fn take(&mut self, writes: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.nanotokens >= TOKEN {
            self.nanotokens -= i128::from(writes) * TOKEN;
            return Ok(());
        }
        if self.rate == 0 {
            return Err(Duration::MAX);
        }
        // Tokens × 10⁹ / (tokens per second) = nanoseconds, rounded up.
        let missing = TOKEN - self.nanotokens;
        let rate = i128::from(self.rate);
        let nanos = (missing + rate - 1) / rate;
        Err(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Whole tokens available now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.nanotokens.max(0) / TOKEN).unwrap_or(0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        self.at = self.at.max(now);
        let full = i128::from(self.rate) * TOKEN;
        let added = i128::try_from(elapsed)
            .unwrap_or(i128::MAX)
            .saturating_mul(i128::from(self.rate));
        self.nanotokens = self.nanotokens.saturating_add(added).min(full);
    }
}

/// Which quota refused a write, with its limit and the tenant's current value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// Too many live episodes.
    Episodes { limit: u64, held: u64, adding: u64 },
    /// Too many bytes.
    Bytes {
        limit: u64,
        stored: u64,
        adding: u64,
    },
    /// Too many writes a second; `wait` until the next passes.
    Rate {
        limit: u32,
        available: u64,
        wait: Duration,
    },
}

impl Refusal {
    /// The quota's name, as the metrics label it.
    pub fn quota(&self) -> &'static str {
        match self {
            Refusal::Episodes { .. } => "episodes",
            Refusal::Bytes { .. } => "bytes",
            Refusal::Rate { .. } => "writes_per_sec",
        }
    }

    /// The `quota_exceeded` error for `tenant`, one line.
    pub fn to_error(&self, tenant: &TenantId) -> WireError {
        let message = match self {
            Refusal::Episodes {
                limit,
                held,
                adding,
            } => format!(
                "episodes quota of tenant {tenant} exceeded: limit {limit}, holds {held}, this \
                 request adds {adding}; nothing was written"
            ),
            Refusal::Bytes {
                limit,
                stored,
                adding,
            } => format!(
                "stored bytes quota of tenant {tenant} exceeded: limit {limit}, stores {stored}, \
                 this request adds {adding}; nothing was written"
            ),
            Refusal::Rate {
                limit,
                available,
                wait,
            } => format!(
                "writes per second quota of tenant {tenant} exceeded: limit {limit} per second, \
                 {available} available now, the next in {:.1} s; nothing was written",
                wait.as_secs_f64()
            ),
        };
        error(ErrorCode::QuotaExceeded, message)
    }
}

/// Why a write was not admitted.
#[derive(Debug)]
pub(crate) enum AdmitError {
    /// A quota refused it.
    Refused(Refusal),
    /// Counting the tenant's stored bytes failed.
    Count(String),
}

/// The hub's quota accounting.
#[derive(Debug)]
pub(crate) struct QuotaBook {
    configured: Quotas,
    overrides: RwLock<BTreeMap<TenantId, TenantQuota>>,
    accounts: Mutex<HashMap<TenantId, Arc<Account>>>,
}

/// One tenant's account.
#[derive(Debug, Default)]
struct Account {
    state: Mutex<AccountState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct AccountState {
    /// Stored bytes, once counted.
    bytes: Option<u64>,
    /// Episodes and bytes of the admitted writes not yet acknowledged.
    reserved_episodes: u64,
    reserved_bytes: u64,
    /// Writes admitted and not yet settled.
    writing: usize,
    /// A walk counting the bytes is under way (or waiting for the writes to finish).
    counting: bool,
    /// Bumped by every recount: a walk that began before one may have missed what prompted
    /// it, so its total answers the caller that walked but is not kept.
    generation: u64,
    bucket: Option<TokenBucket>,
}

impl AccountState {
    /// Takes `writes` from the token bucket for a `rate` (re-made when the rate changed).
    fn take(&mut self, rate: Option<u32>, writes: u64, now: Instant) -> Result<(), Refusal> {
        let Some(rate) = rate else {
            self.bucket = None;
            return Ok(());
        };
        if self.bucket.as_ref().map(TokenBucket::rate) != Some(rate) {
            self.bucket = Some(TokenBucket::new(rate, now));
        }
        let bucket = self
            .bucket
            .get_or_insert_with(|| TokenBucket::new(rate, now));
        bucket.take(writes, now).map_err(|wait| Refusal::Rate {
            limit: rate,
            available: bucket.available(now),
            wait,
        })
    }
}

/// A tenant's quota as the admin route shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct QuotaReport {
    pub tenant: TenantId,
    /// What the tenant is held to.
    pub quota: TenantQuota,
    /// From the configuration (the tenant's entry over the default).
    pub configured: TenantQuota,
    /// Set at run time, if anything.
    #[serde(rename = "override")]
    pub runtime: Option<TenantQuota>,
    pub usage: Usage,
}

/// What a tenant holds now.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Usage {
    pub episodes: u64,
    pub bytes: u64,
}

impl QuotaBook {
    pub fn new(configured: Quotas) -> Self {
        Self {
            configured,
            overrides: RwLock::new(BTreeMap::new()),
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the run-time overrides kept in the hub's data.
    pub fn load(&self, engine: &MemoryEngine) -> Result<usize, String> {
        let entries = engine
            .sealed_settings(QUOTA_PREFIX)
            .map_err(|e| format!("cannot read quota overrides: {e}"))?;
        let mut overrides = self.overrides.write();
        for (name, value) in entries {
            let tenant = name.strip_prefix(QUOTA_PREFIX).unwrap_or(&name);
            let tenant = TenantId::new(tenant)
                .map_err(|e| format!("quota override {name:?}: not a tenant: {e}"))?;
            let quota: TenantQuota = serde_json::from_slice(&value)
                .map_err(|e| format!("quota override of tenant {tenant}: {e}"))?;
            overrides.insert(tenant, quota);
        }
        Ok(overrides.len())
    }

    /// The quota `tenant` is held to now.
    pub fn quota(&self, tenant: &TenantId) -> TenantQuota {
        let configured = self.configured.for_tenant(tenant);
        match self.overrides.read().get(tenant) {
            Some(o) => o.over(configured),
            None => configured,
        }
    }

    /// Sets (or, when it sets no limit, clears) the run-time override of `tenant`: durably
    /// first, then at once for the next write.
    pub fn set_override(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        quota: TenantQuota,
    ) -> Result<(), String> {
        let name = format!("{QUOTA_PREFIX}{tenant}");
        if quota.is_unlimited() {
            engine
                .delete_setting(&name)
                .map_err(|e| format!("cannot clear the quota override: {e}"))?;
            self.overrides.write().remove(tenant);
        } else {
            let value = serde_json::to_vec(&quota).map_err(|e| e.to_string())?;
            engine
                .put_sealed_setting(&name, &value)
                .map_err(|e| format!("cannot keep the quota override: {e}"))?;
            self.overrides.write().insert(tenant.clone(), quota);
        }
        Ok(())
    }

    /// What the admin route shows of `tenant` (its stored bytes are counted if they were not).
    pub fn report(&self, engine: &MemoryEngine, tenant: &TenantId) -> Result<QuotaReport, String> {
        Ok(QuotaReport {
            tenant: tenant.clone(),
            quota: self.quota(tenant),
            configured: self.configured.for_tenant(tenant),
            runtime: self.overrides.read().get(tenant).copied(),
            usage: self.usage(engine, tenant)?,
        })
    }

    /// The tenant's live episodes and stored bytes (counted if they were not).
    pub fn usage(&self, engine: &MemoryEngine, tenant: &TenantId) -> Result<Usage, String> {
        let account = self.account(tenant);
        let bytes = self.count_bytes(engine, tenant, &account)?;
        Ok(Usage {
            episodes: live_episodes(engine, tenant),
            bytes,
        })
    }

    /// Forgets the tenant's stored bytes (after changes this hub did not serve: a retention
    /// sweep's deletes, ops replicated from a peer): they are counted again when next needed.
    pub fn recount(&self, tenant: &TenantId) {
        if let Some(account) = self.accounts.lock().get(tenant) {
            let mut st = account.state.lock();
            st.bytes = None;
            st.generation += 1;
        }
    }

    fn account(&self, tenant: &TenantId) -> Arc<Account> {
        Arc::clone(self.accounts.lock().entry(tenant.clone()).or_default())
    }

    /// The tenant's stored bytes, walking its episodes once if they were never counted. The
    /// walk waits for the writes under way and holds new ones back.
    fn count_bytes(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        account: &Account,
    ) -> Result<u64, String> {
        {
            let mut st = account.state.lock();
            loop {
                if let Some(bytes) = st.bytes {
                    return Ok(bytes);
                }
                if !st.counting {
                    break;
                }
                account.changed.wait(&mut st);
            }
            st.counting = true;
            while st.writing > 0 {
                account.changed.wait(&mut st);
            }
        }
        let generation = account.state.lock().generation;
        let walked = walk_bytes(engine, tenant);
        let mut st = account.state.lock();
        st.counting = false;
        if let (Ok(bytes), true) = (&walked, st.generation == generation) {
            st.bytes = Some(*bytes);
        }
        account.changed.notify_all();
        walked
    }

    /// Admits a store of `episodes` for `tenant`, or says which quota refuses it. Each
    /// episode counts as one write; episodes whose id is already live count toward nothing
    /// else (a retry of a stored episode never passes a limit).
    pub fn admit_store(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        episodes: &[NewEpisode],
        now: Instant,
    ) -> Result<WriteTicket, AdmitError> {
        let quota = self.quota(tenant);
        let account = self.account(tenant);
        if quota.max_bytes.is_some() {
            self.count_bytes(engine, tenant, &account)
                .map_err(AdmitError::Count)?;
        }
        let index = engine.index(tenant);
        let mut seen: HashSet<EpisodeId> = HashSet::new();
        let sizes: Vec<u64> = episodes.iter().map(new_episode_bytes).collect();
        let (mut new_episodes, mut new_bytes) = (0u64, 0u64);
        for (e, size) in episodes.iter().zip(&sizes) {
            let new = match &e.id {
                Some(id) => seen.insert(*id) && !index.as_ref().is_some_and(|i| i.contains(id)),
                None => true,
            };
            if new {
                new_episodes += 1;
                new_bytes += size;
            }
        }
        let mut st = account.state.lock();
        while st.counting {
            account.changed.wait(&mut st);
        }
        if let Some(limit) = quota.max_episodes {
            // Read under the lock: a write that settled has its episodes in the index.
            let held = live_episodes(engine, tenant) + st.reserved_episodes;
            if new_episodes > 0 && held + new_episodes > limit {
                return Err(AdmitError::Refused(Refusal::Episodes {
                    limit,
                    held,
                    adding: new_episodes,
                }));
            }
        }
        if let (Some(limit), Some(bytes)) = (quota.max_bytes, st.bytes) {
            let stored = bytes + st.reserved_bytes;
            if new_bytes > 0 && stored + new_bytes > limit {
                return Err(AdmitError::Refused(Refusal::Bytes {
                    limit,
                    stored,
                    adding: new_bytes,
                }));
            }
        }
        st.take(quota.max_writes_per_sec, episodes.len() as u64, now)
            .map_err(AdmitError::Refused)?;
        st.reserved_episodes += new_episodes;
        st.reserved_bytes += new_bytes;
        st.writing += 1;
        drop(st);
        Ok(WriteTicket {
            account,
            episodes: new_episodes,
            bytes: new_bytes,
            sizes,
            settled: false,
        })
    }

    /// Admits a delete of `id` (one write), with the episode's size when the tenant's bytes
    /// are counted, so that settling can take it off.
    pub fn admit_delete(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        id: &EpisodeId,
        now: Instant,
    ) -> Result<WriteTicket, AdmitError> {
        let quota = self.quota(tenant);
        let account = self.account(tenant);
        let counted = {
            let mut st = account.state.lock();
            while st.counting {
                account.changed.wait(&mut st);
            }
            st.take(quota.max_writes_per_sec, 1, now)
                .map_err(AdmitError::Refused)?;
            st.writing += 1;
            st.bytes.is_some()
        };
        let mut ticket = WriteTicket {
            account,
            episodes: 0,
            bytes: 0,
            sizes: Vec::new(),
            settled: false,
        };
        if counted {
            let episode = engine
                .get(tenant, id)
                .map_err(|e| AdmitError::Count(e.to_string()))?;
            ticket.sizes = episode.iter().map(episode_bytes).collect();
        }
        Ok(ticket)
    }

    /// Admits an update of `id` (one write). When the tenant's bytes are counted, the growth
    /// is checked against the bytes quota and reserved.
    pub fn admit_update(
        &self,
        engine: &MemoryEngine,
        tenant: &TenantId,
        id: &EpisodeId,
        update: &EpisodeUpdate,
        now: Instant,
    ) -> Result<UpdateTicket, AdmitError> {
        let quota = self.quota(tenant);
        let account = self.account(tenant);
        if quota.max_bytes.is_some() {
            self.count_bytes(engine, tenant, &account)
                .map_err(AdmitError::Count)?;
        }
        // Read before the lock: reading may decrypt. A concurrent update of the same episode
        // can make the count off by the difference, until the next count.
        let sizes = if account.state.lock().bytes.is_some() {
            engine
                .get(tenant, id)
                .map_err(|e| AdmitError::Count(e.to_string()))?
                .map(|e| (episode_bytes(&e), updated_bytes(&e, update)))
        } else {
            None
        };
        let growth = sizes.map_or(0, |(old, new)| new.saturating_sub(old));
        let mut st = account.state.lock();
        while st.counting {
            account.changed.wait(&mut st);
        }
        if let (Some(limit), Some(bytes)) = (quota.max_bytes, st.bytes) {
            let stored = bytes + st.reserved_bytes;
            if growth > 0 && stored + growth > limit {
                return Err(AdmitError::Refused(Refusal::Bytes {
                    limit,
                    stored,
                    adding: growth,
                }));
            }
        }
        st.take(quota.max_writes_per_sec, 1, now)
            .map_err(AdmitError::Refused)?;
        st.reserved_bytes += growth;
        st.writing += 1;
        drop(st);
        Ok(UpdateTicket {
            ticket: WriteTicket {
                account,
                episodes: 0,
                bytes: growth,
                sizes: Vec::new(),
                settled: false,
            },
            sizes,
        })
    }

    /// Live episodes and stored bytes of every tenant that has data, counting the bytes of
    /// those never counted.
    pub fn all_usage(&self, engine: &MemoryEngine) -> Vec<(TenantId, Result<Usage, String>)> {
        engine
            .tenants()
            .into_iter()
            .map(|t| {
                let usage = self.usage(engine, &t);
                (t, usage)
            })
            .collect()
    }
}

/// Live episodes of `tenant`, from its index.
fn live_episodes(engine: &MemoryEngine, tenant: &TenantId) -> u64 {
    engine.index(tenant).map_or(0, |i| i.live_len() as u64)
}

/// Walks the tenant's live episodes and adds up their content bytes.
fn walk_bytes(engine: &MemoryEngine, tenant: &TenantId) -> Result<u64, String> {
    let mut total = 0u64;
    let mut after = None;
    loop {
        let page = engine
            .list(tenant, after, COUNT_PAGE)
            .map_err(|e| format!("cannot count the stored bytes of tenant {tenant}: {e}"))?;
        total += page.episodes.iter().map(episode_bytes).sum::<u64>();
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(total),
        }
    }
}

/// An admitted write: its reservation, held until it is settled (acknowledged) or dropped
/// (failed).
#[derive(Debug)]
pub(crate) struct WriteTicket {
    account: Arc<Account>,
    episodes: u64,
    bytes: u64,
    /// Store: each episode's size, in request order. Delete: the episode's size, if live and
    /// the bytes are counted.
    sizes: Vec<u64>,
    settled: bool,
}

impl WriteTicket {
    /// Releases the reservation and applies `delta` to the counted bytes.
    fn finish(&mut self, delta: i128) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut st = self.account.state.lock();
        st.reserved_episodes = st.reserved_episodes.saturating_sub(self.episodes);
        st.reserved_bytes = st.reserved_bytes.saturating_sub(self.bytes);
        st.writing = st.writing.saturating_sub(1);
        if let Some(bytes) = &mut st.bytes {
            *bytes = u64::try_from((i128::from(*bytes) + delta).max(0)).unwrap_or(u64::MAX);
        }
        self.account.changed.notify_all();
    }

    /// The store was acknowledged with `stored` (in request order).
    pub fn settle_store(mut self, stored: &[Stored]) {
        let added: u64 = stored
            .iter()
            .zip(&self.sizes)
            .filter(|(s, _)| s.inserted)
            .map(|(_, size)| size)
            .sum();
        self.finish(i128::from(added));
    }

    /// The delete was acknowledged; `found` says whether the episode was live.
    pub fn settle_delete(mut self, found: bool) {
        let removed: u64 = if found { self.sizes.iter().sum() } else { 0 };
        self.finish(-i128::from(removed));
    }
}

impl Drop for WriteTicket {
    fn drop(&mut self) {
        self.finish(0);
    }
}

/// An admitted update, with the episode's size before and after when the bytes are counted.
#[derive(Debug)]
pub(crate) struct UpdateTicket {
    ticket: WriteTicket,
    sizes: Option<(u64, u64)>,
}

impl UpdateTicket {
    /// The update was acknowledged; `found` says whether the episode was live.
    pub fn settle(mut self, found: bool) {
        let delta = match self.sizes {
            Some((old, new)) if found => i128::from(new) - i128::from(old),
            _ => 0,
        };
        self.ticket.finish(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_bucket_passes_its_burst_then_one_write_per_period() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, t0);
        assert_eq!(b.take(1, t0), Ok(()));
        assert_eq!(b.take(1, t0), Ok(()));
        let wait = b.take(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(1, at(t0, 499)).is_err());
        assert_eq!(b.take(1, at(t0, 500)), Ok(()));
        assert!(b.take(1, at(t0, 500)).is_err());
        // Idle time fills the bucket up to the burst, no further.
        assert_eq!(b.available(at(t0, 60_000)), 2);
    }

    #[test]
    fn a_rate_of_one_refuses_the_second_immediate_write() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, t0);
        assert_eq!(b.take(1, t0), Ok(()));
        assert_eq!(b.take(1, t0), Err(Duration::from_secs(1)));
        assert_eq!(b.take(1, at(t0, 1_000)), Ok(()));
    }

    #[test]
    fn a_large_batch_is_repaid_before_the_next_write() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        // Ten tokens, a batch of thirty: twenty owed, two seconds at ten a second, plus one
        // token for the next write.
        assert_eq!(b.take(30, t0), Ok(()));
        assert_eq!(b.take(1, t0), Err(Duration::from_millis(2_100)));
        assert!(b.take(1, at(t0, 2_000)).is_err());
        assert_eq!(b.take(1, at(t0, 2_100)), Ok(()));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, t0);
        assert_eq!(b.take(1, t0), Ok(()));
        assert!(b.take(1, t0 - Duration::from_secs(5)).is_err());
        assert!(b.take(1, at(t0, 999)).is_err());
        assert_eq!(b.take(1, at(t0, 1_000)), Ok(()));
    }

    #[test]
    fn the_rate_of_an_account_follows_its_quota() {
        let t0 = Instant::now();
        let mut st = AccountState::default();
        assert_eq!(st.take(Some(1), 1, t0), Ok(()));
        let refused = st.take(Some(1), 1, t0).unwrap_err();
        assert_eq!(refused.quota(), "writes_per_sec");
        // A new rate starts a full bucket; no rate, no bucket.
        assert_eq!(st.take(Some(5), 1, t0), Ok(()));
        assert_eq!(st.take(None, 100, t0), Ok(()));
        assert!(st.bucket.is_none());
    }

    #[test]
    fn quotas_layer_limit_by_limit() {
        let tenant = TenantId::new("acme").unwrap();
        let other = TenantId::new("other").unwrap();
        let quotas = Quotas {
            default: TenantQuota {
                max_episodes: Some(10),
                max_bytes: Some(1_000),
                max_writes_per_sec: None,
            },
            per_tenant: [(
                tenant.clone(),
                TenantQuota {
                    max_episodes: Some(3),
                    ..TenantQuota::UNLIMITED
                },
            )]
            .into(),
        };
        let book = QuotaBook::new(quotas);
        assert_eq!(
            book.quota(&tenant),
            TenantQuota {
                max_episodes: Some(3),
                max_bytes: Some(1_000),
                max_writes_per_sec: None,
            }
        );
        assert_eq!(book.quota(&other).max_episodes, Some(10));
        book.overrides.write().insert(
            tenant.clone(),
            TenantQuota {
                max_writes_per_sec: Some(2),
                max_bytes: Some(5),
                ..TenantQuota::UNLIMITED
            },
        );
        assert_eq!(
            book.quota(&tenant),
            TenantQuota {
                max_episodes: Some(3),
                max_bytes: Some(5),
                max_writes_per_sec: Some(2),
            }
        );
    }

    #[test]
    fn refusals_name_the_quota_the_limit_and_the_value() {
        let tenant = TenantId::new("acme").unwrap();
        let e = Refusal::Episodes {
            limit: 3,
            held: 3,
            adding: 1,
        }
        .to_error(&tenant);
        assert_eq!(e.code, ErrorCode::QuotaExceeded);
        assert_eq!(
            e.message,
            "episodes quota of tenant acme exceeded: limit 3, holds 3, this request adds 1; \
             nothing was written"
        );
        let e = Refusal::Rate {
            limit: 1,
            available: 0,
            wait: Duration::from_millis(900),
        }
        .to_error(&tenant);
        assert!(e.message.contains("limit 1 per second"), "{}", e.message);
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn content_bytes_count_texts_tags_and_compact_metadata() {
        let mut e = NewEpisode::new("ab", "cde", "f", 0.5);
        assert_eq!(new_episode_bytes(&e), 6);
        e.critique = Some("xy".into());
        e.tags = vec!["t1".into(), "t2".into()];
        e.metadata = serde_json::json!({ "k": 1 });
        assert_eq!(new_episode_bytes(&e), 6 + 2 + 4 + r#"{"k":1}"#.len() as u64);
    }

    #[test]
    fn a_recount_sees_deletes_the_hub_did_not_serve() {
        let engine = MemoryEngine::builder(
            Arc::new(agentdb_memory::MemStorage::new()),
            agentdb_security::MasterKey::generate().unwrap(),
        )
        .open()
        .unwrap();
        let tenant = TenantId::new("acme").unwrap();
        let ids: Vec<_> = ["abcd", "efgh"]
            .iter()
            .map(|task| {
                engine
                    .store(&tenant, NewEpisode::new(*task, "", "", 0.5))
                    .unwrap()
                    .id
            })
            .collect();
        let book = QuotaBook::new(Quotas::default());
        assert_eq!(book.usage(&engine, &tenant).unwrap().bytes, 8);
        // A delete made beside the hub's admission (as a retention sweep's): the count is
        // stale until forgotten.
        assert!(engine.delete(&tenant, &ids[0]).unwrap());
        assert_eq!(book.usage(&engine, &tenant).unwrap().bytes, 8);
        book.recount(&tenant);
        assert_eq!(book.usage(&engine, &tenant).unwrap().bytes, 4);
    }
}
