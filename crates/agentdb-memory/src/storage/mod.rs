//! Where episodes and keys live: a small trait with an embedded redb backend and an in-memory
//! backend. Other backends (PostgreSQL, in its own crate) apply the same rules through the
//! public helpers here: [`tombstone_row`], [`merge_keeps`], [`reseal_replaces`], [`raised_clock`],
//! [`OpSeq::seq_after`] and the peer-record codecs.
//!
//! The engine encrypts before anything reaches a backend; a backend sees only what may be stored
//! in the clear (ids, timestamps, reward, success, keyed hashes, model ids) and sealed bytes.
//! Every write of one [`Storage::apply`] call lands atomically and durably, or not at all, which
//! is what lets the engine group many writers' requests into one commit.

mod mem;
mod peers;
mod redb;
mod row;

pub use self::mem::MemStorage;
pub use self::redb::RedbStorage;
pub use peers::{
    decode_acked, decode_region, encode_region, joined_acked, PeerAck, PeerRecordError,
};
pub use row::{local_hub, RowError, RowStamps, StoredEpisode};

use std::ops::ControlFlow;
use std::path::PathBuf;

use agentdb_core::{EpisodeId, Hlc, HubId, ModelId, Region, Stamp, TenantId, VersionVector};
use agentdb_security::WrappedTenantKey;

/// A storage failure. Carries a one-line reason; the operation that failed had no effect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database file could not be opened or created.
    #[error("cannot open database {}: {reason}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The backend failed (I/O error, full disk, corruption).
    #[error("storage failed: {0}")]
    Backend(String),
    /// A stored row could not be decoded.
    #[error(transparent)]
    Row(#[from] RowError),
    /// A stored peer record could not be decoded.
    #[error(transparent)]
    PeerRecord(#[from] PeerRecordError),
}

/// Which op of the tenant's op log an episode write records (see [`Storage::ops`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpSeq {
    /// An op accepted here: the next sequence number of this hub, assigned inside the
    /// transaction.
    Next(HubId),
    /// A replicated op, `(origin, seq)`: recorded only when `seq` is the next of `origin`;
    /// otherwise (a duplicate, or beyond a gap) the whole write is skipped.
    Exactly(HubId, u64),
}

/// The store-wide setting holding the clock's high-water mark: `wall_ms` (u64 BE) `counter`
/// (u32 BE).
pub const CLOCK_META: &str = "clock";

/// The store-wide setting holding the last number given to a store-wide log entry (u64 BE),
/// where a backend keeps it among the settings (redb).
pub const LOG_NUMBER_META: &str = "log_number";

/// The digits of an entry's number in the name of a store-wide log entry
/// ([`Write::AppendMeta`]): zero-padded, so that names sort in number order.
pub const LOG_NUMBER_DIGITS: usize = 20;

/// The name of entry `number` of the store-wide log `log` (see [`Write::AppendMeta`]).
pub fn log_entry_name(log: &str, number: u64) -> String {
    format!("{log}{number:0width$}", width = LOG_NUMBER_DIGITS)
}

/// The number of a store-wide log entry named `name` in log `log`, or `None` when the name is
/// not one of that log's entries.
pub fn log_entry_number(log: &str, name: &str) -> Option<u64> {
    let digits = name.strip_prefix(log)?;
    if digits.len() != LOG_NUMBER_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a clock high-water mark.
pub fn encode_hlc(hlc: Hlc) -> Vec<u8> {
    let mut out = hlc.wall_ms.to_be_bytes().to_vec();
    out.extend_from_slice(&hlc.counter.to_be_bytes());
    out
}

/// Parses [`encode_hlc`]'s output.
pub fn decode_hlc(bytes: &[u8]) -> Option<Hlc> {
    let wall: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let counter: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    (bytes.len() == 12).then(|| Hlc::new(u64::from_be_bytes(wall), u32::from_be_bytes(counter)))
}

impl OpSeq {
    /// The op's origin hub.
    pub fn origin(&self) -> &HubId {
        match self {
            OpSeq::Next(origin) | OpSeq::Exactly(origin, _) => origin,
        }
    }

    /// The seq to record after `last` (the origin's highest recorded seq), or `None` when a
    /// replicated op is not the next one. The rule both backends follow.
    pub fn seq_after(&self, last: u64) -> Option<u64> {
        match self {
            OpSeq::Next(_) => Some(last + 1),
            OpSeq::Exactly(_, seq) => (*seq == last + 1).then_some(*seq),
        }
    }
}

/// The row a [`Write::Tombstone`] leaves, given the episode's current row; `None` when it is
/// already a tombstone (nothing changes).
pub fn tombstone_row(
    existing: Option<&StoredEpisode>,
    id: EpisodeId,
    stamp: &Stamp,
    model: &ModelId,
) -> Option<StoredEpisode> {
    match existing {
        Some(row) if row.deleted.is_some() => None,
        Some(row) => Some(row.clone().into_tombstone(stamp.clone())),
        None => Some(StoredEpisode::new_tombstone(
            id,
            stamp.clone(),
            model.clone(),
        )),
    }
}

/// Whether a [`Write::Merge`] of `row` leaves `existing` as it is: a tombstone is never
/// replaced by a live row.
pub fn merge_keeps(existing: Option<&StoredEpisode>, row: &StoredEpisode) -> bool {
    existing.is_some_and(|e| e.deleted.is_some() && row.deleted.is_none())
}

/// Whether a [`Write::ResealEpisode`] of `row` replaces `existing`: only a live row with the
/// same stamps (nothing changed it since it was read).
pub fn reseal_replaces(existing: Option<&StoredEpisode>, row: &StoredEpisode) -> bool {
    existing.is_some_and(|e| {
        e.deleted.is_none()
            && row.deleted.is_none()
            && e.stamps == row.stamps
            && e.model == row.model
    })
}

/// The clock setting a [`Write::ClockAtLeast`] of `hlc` writes over `current`, or `None` when
/// `current` is already at least `hlc`.
pub fn raised_clock(current: Option<&[u8]>, hlc: Hlc) -> Option<Vec<u8>> {
    let current = current.and_then(decode_hlc);
    current.is_none_or(|c| c < hlc).then(|| encode_hlc(hlc))
}

/// One change inside an atomic [`Storage::apply`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Write {
    /// Inserts an episode unless one with the same id exists (live or tombstoned); the outcome
    /// says whether it was inserted. An insert appends to the tenant's change log and records
    /// the next op of `origin`.
    PutEpisode {
        /// The owner.
        tenant: TenantId,
        /// The row.
        row: StoredEpisode,
        /// The hub accepting it.
        origin: HubId,
    },
    /// Overwrites a live episode's row with `row` (same id), as re-embedding does; the outcome
    /// says whether a live row was replaced. A missing or tombstoned episode is left as it is.
    /// Nothing is appended to the change log: the episode's content did not change.
    ReplaceEpisode {
        /// The owner.
        tenant: TenantId,
        /// The new row.
        row: StoredEpisode,
    },
    /// Overwrites a live episode's row with `row` (same id) only if the stored row carries
    /// the same merge stamps as `row`, so that no update or merge that landed since the row
    /// was read is lost; re-sealing under a newer key version does this. The outcome says
    /// whether the row was replaced. Nothing is appended to the change log or the op log: the
    /// episode did not change, only the key its sealed parts are sealed with.
    ResealEpisode {
        /// The owner.
        tenant: TenantId,
        /// The row as read, with its sealed parts re-sealed.
        row: StoredEpisode,
    },
    /// Replaces a live episode with a tombstone, or records a tombstone for an id not seen
    /// yet (so that its put, arriving later, stays deleted); the outcome says whether
    /// anything changed (false when it was already deleted). A change appends to the tenant's
    /// change log and records the next op of `origin`.
    Tombstone {
        /// The owner.
        tenant: TenantId,
        /// The episode.
        id: EpisodeId,
        /// The delete's stamp.
        stamp: Stamp,
        /// The tenant's embedding model (for a new tombstone row).
        model: ModelId,
        /// The hub accepting the delete.
        origin: HubId,
    },
    /// Records op `op` for episode `id` and, when `row` is given, stores it as the episode's
    /// merged state — except that a tombstone is never replaced by a live row. The outcome
    /// says whether the op was recorded (false: a duplicate or beyond a gap; nothing written).
    /// A stored row appends to the tenant's change log.
    Merge {
        /// The owner.
        tenant: TenantId,
        /// The episode.
        id: EpisodeId,
        /// Its merged row, or `None` when the op changes nothing here.
        row: Option<StoredEpisode>,
        /// The op.
        op: OpSeq,
    },
    /// Deletes an episode's tombstone row (garbage collection; its op-log entries stay). The
    /// outcome says whether a tombstone was removed (a live row is left alone).
    CollectTombstone {
        /// The owner.
        tenant: TenantId,
        /// The episode.
        id: EpisodeId,
    },
    /// Creates a tenant: stores its first key and its settings, unless the tenant already
    /// has a key (in a store several hubs share, another one may have created it first; the
    /// engine then loads that one). The outcome says whether it was created.
    CreateTenant {
        /// The tenant.
        tenant: TenantId,
        /// Its first key.
        key: WrappedTenantKey,
        /// Per-tenant settings stored with it, as `(name, value)`.
        settings: Vec<(String, Vec<u8>)>,
    },
    /// Stores a tenant key version (overwriting the same version).
    PutTenantKey {
        /// The owner.
        tenant: TenantId,
        /// The wrapped key.
        key: WrappedTenantKey,
    },
    /// Deletes a tenant key version, unless it is the tenant's newest (the one new records
    /// are sealed with): the outcome says whether a key was deleted. The caller makes sure no
    /// record is sealed with it any more.
    DeleteTenantKey {
        /// The owner.
        tenant: TenantId,
        /// The key version.
        version: u32,
    },
    /// Stores a named per-tenant setting.
    PutTenantMeta {
        /// The owner.
        tenant: TenantId,
        /// The setting's name.
        name: String,
        /// Its value.
        value: Vec<u8>,
    },
    /// Stores a named store-wide setting.
    PutMeta {
        /// The setting's name.
        name: String,
        /// Its value.
        value: Vec<u8>,
    },
    /// Appends `value` to the store-wide log `log`: stores it as the setting
    /// [`log_entry_name`]`(log, n)`, where `n` is a number the store gives out once, above
    /// every number given out before (all logs share one counter). The outcome is true.
    ///
    /// Where several writers share the store (PostgreSQL), an entry can become visible after
    /// one with a higher number that committed first: a reader that follows a log by number
    /// must allow for gaps that fill later (and for gaps that never fill, when a transaction
    /// holding a number rolled back). A store with one writer has no such gaps.
    AppendMeta {
        /// The log: a prefix of setting names.
        log: String,
        /// The entry.
        value: Vec<u8>,
    },
    /// Deletes a named store-wide setting; the outcome says whether it existed.
    DeleteMeta {
        /// The setting's name.
        name: String,
    },
    /// Raises the store-wide clock high-water mark (setting [`CLOCK_META`]) to `hlc` if it is
    /// lower; never lowers it, so concurrent writers in one commit cannot move it back.
    ClockAtLeast {
        /// A stamp issued or accepted.
        hlc: Hlc,
    },
    /// Records that this store's hub links with hub `peer`, in `region` (a known peer keeps
    /// its acknowledgements; its region is replaced). The outcome says whether anything
    /// changed.
    KnowPeer {
        /// The peer hub.
        peer: HubId,
        /// Its region.
        region: Region,
    },
    /// Records that hub `peer` has acknowledged holding at least `acked` of `tenant`: the
    /// stored vector becomes the pointwise maximum of both (it never shrinks). The outcome
    /// says whether it changed.
    JoinPeerAck {
        /// The tenant.
        tenant: TenantId,
        /// The peer hub.
        peer: HubId,
        /// What it acknowledged.
        acked: VersionVector,
    },
    /// Deletes hub `peer` and its acknowledgements of every tenant (a hub that left the
    /// federation for good). The outcome says whether it was known.
    ForgetPeer {
        /// The peer hub.
        peer: HubId,
    },
    /// Deletes every episode, key and setting of a tenant, and its change feed. Its op log and
    /// version vector stay (episode ids and sequence numbers only): op numbers are never
    /// reused, and what was erased still counts as held, so replication does not bring it
    /// back. Its peer records stay too (hub ids and sequence numbers). The outcome says
    /// whether any episode or key existed.
    EraseTenant {
        /// The tenant.
        tenant: TenantId,
    },
}

/// A storage backend. See the module docs for the contract.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `writes` in order, atomically and durably: when this returns `Ok`, all of them
    /// survive a crash; when it returns `Err`, none of them happened. Returns one flag per write
    /// (see each [`Write`] variant for its meaning).
    fn apply(&self, writes: &[Write]) -> Result<Vec<bool>, StorageError>;

    /// Whether concurrent writers gain from sharing one [`Storage::apply`] (a group commit): true
    /// when an apply pays a fixed cost such as an fsync or a round trip. A store that applies in
    /// memory answers false, and the engine's writers then apply directly, one at a time,
    /// instead of handing their writes to a committer thread and waiting for it.
    fn group_commit_pays(&self) -> bool {
        true
    }

    /// One episode row (live or tombstone).
    fn episode(
        &self,
        tenant: &TenantId,
        id: &EpisodeId,
    ) -> Result<Option<StoredEpisode>, StorageError>;

    /// The rows of `ids` (live or tombstone), in the order asked; `None` for an id the tenant
    /// has no row for. The default reads them one by one; a backend with round trips should
    /// read them at once.
    fn episodes(
        &self,
        tenant: &TenantId,
        ids: &[EpisodeId],
    ) -> Result<Vec<Option<StoredEpisode>>, StorageError> {
        ids.iter().map(|id| self.episode(tenant, id)).collect()
    }

    /// Visits a tenant's episode rows in id (creation) order until `visit` breaks.
    fn scan_episodes(
        &self,
        tenant: &TenantId,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError>;

    /// Visits, in id order until `visit` breaks, a tenant's episode rows whose id is strictly
    /// greater than `after` (every row when `after` is `None`); `after` itself need not be
    /// stored. Ids order as their 16 bytes do, big-endian, which is the order
    /// [`Self::scan_episodes`] visits them in.
    ///
    /// The default implementation scans from the tenant's first row and skips those up to
    /// `after`; a backend with ordered keys should start the scan just after `after` instead.
    fn scan_episodes_after(
        &self,
        tenant: &TenantId,
        after: Option<&EpisodeId>,
        visit: &mut dyn FnMut(StoredEpisode) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        self.scan_episodes(tenant, &mut |row| match after {
            Some(after) if row.id <= *after => ControlFlow::Continue(()),
            _ => visit(row),
        })
    }

    /// The tenant's change log after sequence number `after`, oldest first, at most `limit`
    /// entries. Every inserted episode and every tombstone appends one entry; sequence numbers
    /// start at 1 and grow by one per change within a tenant.
    fn changes(
        &self,
        tenant: &TenantId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError>;

    /// Every tenant with at least one entry in its change log, and the sequence number of its
    /// last change, in tenant order. An engine sharing the store with other writers follows
    /// these to learn what they changed. A backend that cannot list them fails.
    fn change_heads(&self) -> Result<Vec<(TenantId, u64)>, StorageError> {
        Err(StorageError::Backend(
            "this storage cannot list its change heads".into(),
        ))
    }

    /// The episodes of ops `(origin, after+1 ..)` in the tenant's op log, in sequence order, at
    /// most `limit`.
    fn ops(
        &self,
        tenant: &TenantId,
        origin: &HubId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EpisodeId)>, StorageError>;

    /// The tenant's version vector: per origin, the highest op seq recorded (op seqs are
    /// recorded contiguously, so this is the highest contiguous one).
    fn version_vector(&self, tenant: &TenantId) -> Result<VersionVector, StorageError>;

    /// Every tenant that has a key.
    fn tenants(&self) -> Result<Vec<TenantId>, StorageError>;

    /// A tenant's key versions, oldest first.
    fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<WrappedTenantKey>, StorageError>;

    /// A named per-tenant setting.
    fn tenant_meta(&self, tenant: &TenantId, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// A named store-wide setting.
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Every store-wide setting whose name starts with `prefix`, with its value, sorted by
    /// name (byte order). An empty prefix lists every setting. A backend that cannot list
    /// settings fails here; both backends of this crate can.
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let _ = prefix;
        Err(StorageError::Backend(
            "this storage cannot list settings".into(),
        ))
    }

    /// The first `limit` entries of the store-wide log `log` (see [`Write::AppendMeta`])
    /// numbered above `after`, with their numbers, in number order. The default reads the
    /// log's settings with [`Self::meta_with_prefix`] and skips the rest; a backend with range
    /// reads does better.
    fn meta_log_after(
        &self,
        log: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        Ok(self
            .meta_with_prefix(log)?
            .into_iter()
            .filter_map(|(name, value)| Some((log_entry_number(log, &name)?, value)))
            .filter(|(number, _)| *number > after)
            .take(limit)
            .collect())
    }

    /// The peer hubs this store's hub links with, and their regions (see
    /// [`Write::KnowPeer`]), in hub order. A backend that keeps no peer records fails here and
    /// in [`Self::peer_acks`], so that federation, which collects a tombstone only once every
    /// peer has acknowledged it, collects none rather than forgetting a peer.
    fn peers(&self) -> Result<Vec<(HubId, Region)>, StorageError> {
        Err(no_peer_records())
    }

    /// What each peer hub has acknowledged holding of `tenant` (see [`Write::JoinPeerAck`]),
    /// in hub order; a peer that has acknowledged nothing is absent.
    fn peer_acks(&self, tenant: &TenantId) -> Result<Vec<(HubId, VersionVector)>, StorageError> {
        let _ = tenant;
        Err(no_peer_records())
    }
}

/// What a backend without peer records answers.
fn no_peer_records() -> StorageError {
    StorageError::Backend("this storage keeps no peer records".into())
}
