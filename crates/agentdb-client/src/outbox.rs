//! Episodes spooled because the hub could not take them, until it does.
//!
//! Layout of a spool directory `SPOOL` (every directory the agent creates is mode 0700):
//!
//! ```text
//! SPOOL/<tenant>/<episode id>.ep                one pending episode, sealed, mode 0600
//! SPOOL/<tenant>/dead-letter/<episode id>.ep    an episode the hub refused for good, sealed
//! SPOOL/<tenant>/dead-letter/<episode id>.json  why: {"id", "code", "message", "at_ms"}
//! ```
//!
//! A `.ep` file is the record envelope of `agentdb_security` (AES-256-GCM, key version 1) over
//! the postcard encoding of the wire episode, with AAD kind `spool-episode`, the tenant and the
//! episode id: a file renamed to another id or moved to another tenant does not open. Files are
//! written atomically (`write_private_file`) and deleted once the hub has acknowledged them. The
//! dead-letter reason holds the hub's error code and message, never episode content; moving a
//! dead letter's `.ep` back into `SPOOL/<tenant>/` queues it again.
//!
//! A spool file this agent cannot open (sealed with another key, damaged, or not a spool file)
//! is reported and left in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentdb_core::{EpisodeId, TenantId};
use agentdb_proto::{ErrorCode, WireNewEpisode};
use agentdb_security::{RecordAad, RecordKey, SealError};
use parking_lot::Mutex;

use crate::spool_key::SpoolKey;

/// The record kind spooled episodes are sealed as.
const RECORD_KIND: &str = "spool-episode";
/// The key version written into spool records.
const KEY_VERSION: u32 = 1;
/// The dead-letter directory inside a tenant's spool.
pub const DEAD_LETTER_DIR: &str = "dead-letter";

/// Why the spool could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A spool directory or file could not be created, read, renamed or listed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a spool file failed.
    #[error(transparent)]
    File(#[from] agentdb_security::FileError),
    /// An episode could not be encoded.
    #[error("cannot encode episode {id}: {source}")]
    Encode {
        /// The episode.
        id: EpisodeId,
        /// The encoder's error.
        source: postcard::Error,
    },
    /// An episode could not be sealed.
    #[error("cannot seal episode {id}: {source}")]
    Seal {
        /// The episode.
        id: EpisodeId,
        /// The cipher's error.
        source: SealError,
    },
    /// The spool key cannot be used.
    #[error("cannot use the spool key: {0}")]
    Key(SealError),
    /// A dead-letter reason could not be encoded.
    #[error("cannot encode the dead-letter reason of {id}: {source}")]
    Reason {
        /// The episode.
        id: EpisodeId,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

/// Why a spool file was left unread.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolFileError {
    /// The file name is not `<episode id>.ep`.
    #[error("not named <episode id>.ep")]
    BadName,
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::sync::Arc<std::io::Error>),
    /// The file does not open with this agent's spool key: sealed with another key, written
    /// in clear by an older version, renamed, or damaged.
    #[error("does not open with this agent's spool key (sealed with another key, or damaged)")]
    Sealed(SealError),
    /// The file opens but does not hold the episode its name says.
    #[error("does not hold episode {id}")]
    Content {
        /// The id its name says.
        id: EpisodeId,
    },
}

/// A spool file the agent found but could not use; it is left in place.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnreadableSpoolFile {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: SpoolFileError,
}

/// An episode the hub refused for good after it had been spooled: it left the queue, and its
/// sealed copy and the reason are in the tenant's dead-letter directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The episode.
    pub id: EpisodeId,
    /// The hub's error code.
    pub code: ErrorCode,
    /// The hub's message.
    pub message: String,
    /// The sealed episode, now in the dead-letter directory.
    pub path: PathBuf,
}

#[derive(serde::Serialize)]
struct Reason<'a> {
    id: String,
    code: &'a str,
    message: &'a str,
    at_ms: u64,
}

/// The pending episodes of one tenant in one spool directory.
pub(crate) struct Outbox {
    tenant: TenantId,
    dir: PathBuf,
    key: RecordKey,
    pending: Mutex<BTreeMap<EpisodeId, WireNewEpisode>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.dir)
            .field("pending", &self.len())
            .finish_non_exhaustive()
    }
}

/// Creates `dir` (and missing parents) with mode 0700. With `narrow`, a `dir` that exists with
/// a wider mode is narrowed to 0700; without, an existing `dir` is left as it is (the spool
/// directory itself may be one the user made, or share).
fn private_dir(dir: &Path, narrow: bool) -> Result<(), OutboxError> {
    let io = |source| OutboxError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(io)?;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
        if narrow && mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = narrow;
        builder.create(dir).map_err(io)?;
    }
    Ok(())
}

impl Outbox {
    /// Opens the tenant's outbox in `spool`, loading what earlier agents left behind. Files it
    /// cannot open are returned (and logged), and left in place.
    pub fn open(
        spool: &Path,
        tenant: &TenantId,
        key: &SpoolKey,
    ) -> Result<(Self, Vec<UnreadableSpoolFile>), OutboxError> {
        private_dir(spool, false)?;
        let dir = spool.join(tenant.as_str());
        private_dir(&dir, true)?;
        let key = RecordKey::new(key.bytes(), KEY_VERSION).map_err(OutboxError::Key)?;
        let outbox = Self {
            tenant: tenant.clone(),
            dir,
            key,
            pending: Mutex::new(BTreeMap::new()),
        };
        let entries = std::fs::read_dir(&outbox.dir).map_err(|source| OutboxError::Io {
            path: outbox.dir.clone(),
            source,
        })?;
        let mut unreadable = Vec::new();
        let mut pending = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| OutboxError::Io {
                path: outbox.dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("ep") || !path.is_file() {
                continue;
            }
            match outbox.load(&path) {
                Ok((id, episode)) => {
                    pending.insert(id, episode);
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "spool file left unread");
                    unreadable.push(UnreadableSpoolFile { path, reason });
                }
            }
        }
        *outbox.pending.lock() = pending;
        Ok((outbox, unreadable))
    }

    fn aad<'a>(&'a self, id: &'a [u8; 16]) -> RecordAad<'a> {
        RecordAad {
            kind: RECORD_KIND,
            tenant: &self.tenant,
            record_id: id,
        }
    }

    fn load(&self, path: &Path) -> Result<(EpisodeId, WireNewEpisode), SpoolFileError> {
        let id: EpisodeId = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .ok_or(SpoolFileError::BadName)?;
        let sealed = std::fs::read(path).map_err(|e| SpoolFileError::Read(e.into()))?;
        let plain = self
            .key
            .open(self.aad(&id.to_bytes()), &sealed)
            .map_err(SpoolFileError::Sealed)?;
        match decode_spooled(&plain) {
            Ok(e) if e.id == Some(id) => Ok((id, e)),
            _ => Err(SpoolFileError::Content { id }),
        }
    }

    fn path(&self, id: &EpisodeId) -> PathBuf {
        self.dir.join(format!("{id}.ep"))
    }

    fn dead_dir(&self) -> PathBuf {
        self.dir.join(DEAD_LETTER_DIR)
    }

    /// Seals the episodes into the spool (durable on return) and queues them: all of them, or,
    /// on an error, none (the files already written are removed again).
    pub fn add(&self, episodes: &[(EpisodeId, WireNewEpisode)]) -> Result<(), OutboxError> {
        let mut written = Vec::with_capacity(episodes.len());
        for (id, episode) in episodes {
            if let Err(e) = self.write(id, episode) {
                self.remove(&written);
                return Err(e);
            }
            written.push(*id);
            self.pending.lock().insert(*id, episode.clone());
        }
        Ok(())
    }

    fn write(&self, id: &EpisodeId, episode: &WireNewEpisode) -> Result<(), OutboxError> {
        let bytes = postcard::to_stdvec(episode)
            .map_err(|source| OutboxError::Encode { id: *id, source })?;
        let sealed = self
            .key
            .seal(self.aad(&id.to_bytes()), &bytes)
            .map_err(|source| OutboxError::Seal { id: *id, source })?;
        agentdb_security::write_private_file(&self.path(id), &sealed, true)?;
        Ok(())
    }

    /// Everything pending, oldest id first.
    pub fn pending(&self) -> Vec<WireNewEpisode> {
        self.pending.lock().values().cloned().collect()
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &EpisodeId) -> bool {
        self.pending.lock().contains_key(id)
    }

    /// Number of pending episodes.
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    /// Forgets episodes the hub acknowledged. A file that cannot be deleted is only logged: the
    /// next agent sends it again, which the hub's idempotence makes harmless.
    pub fn remove(&self, ids: &[EpisodeId]) {
        let mut pending = self.pending.lock();
        for id in ids {
            pending.remove(id);
            let path = self.path(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete an acknowledged spool file")
                }
            }
        }
    }

    /// Moves an episode the hub refused for good out of the queue into the dead-letter
    /// directory, with the reason next to it.
    pub fn dead_letter(
        &self,
        id: EpisodeId,
        code: ErrorCode,
        message: &str,
        at_ms: u64,
    ) -> Result<DeadLetter, OutboxError> {
        let dead = self.dead_dir();
        private_dir(&dead, true)?;
        let reason = serde_json::to_vec(&Reason {
            id: id.to_string(),
            code: code.as_str(),
            message,
            at_ms,
        })
        .map_err(|source| OutboxError::Reason { id, source })?;
        agentdb_security::write_private_file(&dead.join(format!("{id}.json")), &reason, true)?;
        let target = dead.join(format!("{id}.ep"));
        let from = self.path(&id);
        match std::fs::rename(&from, &target) {
            Ok(()) => {}
            // Another agent sharing the spool moved it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OutboxError::Io { path: from, source }),
        }
        self.pending.lock().remove(&id);
        Ok(DeadLetter {
            id,
            code,
            message: message.to_owned(),
            path: target,
        })
    }
}

/// When queued episodes may next be sent after a transient failure: the wait starts at `base`
/// and doubles with each failure in a row, up to `max`; a success resets it.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base_ms: u64,
    max_ms: u64,
    delay_ms: u64,
    next_ms: u64,
}

impl Backoff {
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Self {
            base_ms: base_ms.max(1),
            max_ms: max_ms.max(base_ms.max(1)),
            delay_ms: 0,
            next_ms: 0,
        }
    }

    /// Whether a retry is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_ms
    }

    /// Records a failure at `now_ms`; returns the wait until the next retry.
    pub fn failed(&mut self, now_ms: u64) -> u64 {
        self.delay_ms = if self.delay_ms == 0 {
            self.base_ms
        } else {
            self.delay_ms.saturating_mul(2).min(self.max_ms)
        };
        self.next_ms = now_ms.saturating_add(self.delay_ms);
        self.delay_ms
    }

    /// Records a success.
    pub fn succeeded(&mut self) {
        self.delay_ms = 0;
        self.next_ms = 0;
    }
}

/// A spooled episode: `postcard(WireNewEpisode)`. Files spooled before episodes could expire
/// lack the last field (`expires_at`); read them as having none (postcard writes `None` as one
/// zero byte at the end).
fn decode_spooled(plain: &[u8]) -> Result<WireNewEpisode, postcard::Error> {
    postcard::from_bytes::<WireNewEpisode>(plain).or_else(|e| {
        let mut older = plain.to_vec();
        older.push(0);
        postcard::from_bytes::<WireNewEpisode>(&older).map_err(|_| e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_on_success() {
        let mut b = Backoff::new(1_000, 5_000);
        assert!(b.due(0));
        assert_eq!(b.failed(10_000), 1_000);
        assert!(!b.due(10_999));
        assert!(b.due(11_000));
        assert_eq!(b.failed(11_000), 2_000);
        assert_eq!(b.failed(13_000), 4_000);
        assert_eq!(b.failed(17_000), 5_000);
        assert_eq!(b.failed(22_000), 5_000);
        assert!(!b.due(26_999));
        b.succeeded();
        assert!(b.due(22_000));
        assert_eq!(b.failed(30_000), 1_000);
    }

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn episode(id: EpisodeId, task: &str) -> WireNewEpisode {
        WireNewEpisode::from(
            &agentdb_core::NewEpisode::new(task, "input", "output", 0.5).with_id(id),
        )
    }

    /// A file spooled before episodes could expire (the episode without its last field)
    /// still reads, with no expiry; one with an expiry keeps it.
    #[test]
    fn episodes_spooled_before_expiry_existed_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let key = SpoolKey::from_bytes([3; 32]);
        let (old_id, new_id) = (
            EpisodeId::from_parts(1_700_000_000_000, [1; 10]),
            EpisodeId::from_parts(1_700_000_000_001, [2; 10]),
        );
        let (outbox, _) = Outbox::open(&spool, &tenant(), &key).unwrap();
        let mut expiring = episode(new_id, "expiring");
        expiring.expires_at = Some(agentdb_core::Timestamp(1_700_000_060_000));
        outbox.add(&[(new_id, expiring.clone())]).unwrap();
        let mut older = postcard::to_stdvec(&episode(old_id, "older")).unwrap();
        assert_eq!(older.pop(), Some(0), "`None` is the last byte");
        let sealed = outbox
            .key
            .seal(outbox.aad(&old_id.to_bytes()), &older)
            .unwrap();
        std::fs::write(outbox.path(&old_id), sealed).unwrap();

        let (again, unreadable) = Outbox::open(&spool, &tenant(), &key).unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(again.pending(), vec![episode(old_id, "older"), expiring]);
    }

    #[test]
    fn spooled_episodes_are_sealed_and_only_this_key_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let key = SpoolKey::from_bytes([3; 32]);
        let id = EpisodeId::from_parts(1_700_000_000_000, [1; 10]);
        let (outbox, unreadable) = Outbox::open(&spool, &tenant(), &key).unwrap();
        assert!(unreadable.is_empty());
        outbox.add(&[(id, episode(id, "marker-7f3a"))]).unwrap();
        let file = spool.join("acme").join(format!("{id}.ep"));
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"marker-7f3a"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&spool), 0o700);
            assert_eq!(mode(&spool.join("acme")), 0o700);
            assert_eq!(mode(&file), 0o600);
        }

        let (again, unreadable) = Outbox::open(&spool, &tenant(), &key).unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(again.pending()[0].task, "marker-7f3a");

        let other = SpoolKey::from_bytes([4; 32]);
        let (foreign, unreadable) = Outbox::open(&spool, &tenant(), &other).unwrap();
        assert_eq!(foreign.len(), 0);
        assert_eq!(unreadable.len(), 1);
        assert!(matches!(unreadable[0].reason, SpoolFileError::Sealed(_)));
        assert!(file.is_file(), "left in place");

        // A file renamed to another id does not open either.
        let id2 = EpisodeId::from_parts(1_700_000_000_001, [2; 10]);
        std::fs::copy(&file, spool.join("acme").join(format!("{id2}.ep"))).unwrap();
        let (_, unreadable) = Outbox::open(&spool, &tenant(), &key).unwrap();
        assert_eq!(unreadable.len(), 1);
        assert!(unreadable[0].path.ends_with(format!("{id2}.ep")));
    }

    #[test]
    fn a_spool_write_that_fails_keeps_none_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let key = SpoolKey::from_bytes([3; 32]);
        let (outbox, _) = Outbox::open(dir.path(), &tenant(), &key).unwrap();
        let a = EpisodeId::from_parts(1_700_000_000_000, [1; 10]);
        let b = EpisodeId::from_parts(1_700_000_000_001, [2; 10]);
        // Something that is not a file where b's file goes: its write fails.
        let blocked = dir.path().join("acme").join(format!("{b}.ep"));
        std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
        let err = outbox
            .add(&[(a, episode(a, "first")), (b, episode(b, "second"))])
            .unwrap_err();
        assert!(matches!(err, OutboxError::File(_)), "{err}");
        assert_eq!(outbox.len(), 0);
        assert!(!dir.path().join("acme").join(format!("{a}.ep")).exists());
    }

    #[test]
    fn a_dead_letter_keeps_the_sealed_episode_and_a_reason_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = SpoolKey::from_bytes([3; 32]);
        let id = EpisodeId::from_parts(1_700_000_000_000, [1; 10]);
        let (outbox, _) = Outbox::open(dir.path(), &tenant(), &key).unwrap();
        outbox.add(&[(id, episode(id, "marker-7f3a"))]).unwrap();
        let dead = outbox
            .dead_letter(id, ErrorCode::Forbidden, "residency", 42)
            .unwrap();
        assert_eq!(outbox.len(), 0);
        assert!(!dir.path().join("acme").join(format!("{id}.ep")).exists());
        assert_eq!(
            dead.path,
            dir.path().join("acme/dead-letter").join(format!("{id}.ep"))
        );
        assert!(dead.path.is_file());
        let reason: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                dir.path()
                    .join("acme/dead-letter")
                    .join(format!("{id}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(reason["code"], "forbidden");
        assert_eq!(reason["message"], "residency");
        assert_eq!(reason["id"], id.to_string());
        // Not queued again by the next agent; moved back, it is.
        let (next, unreadable) = Outbox::open(dir.path(), &tenant(), &key).unwrap();
        assert_eq!((next.len(), unreadable.len()), (0, 0));
        std::fs::rename(&dead.path, dir.path().join("acme").join(format!("{id}.ep"))).unwrap();
        let (next, _) = Outbox::open(dir.path(), &tenant(), &key).unwrap();
        assert_eq!(next.len(), 1);
    }
}
