//! Episodes written but not yet acknowledged by the hub.
//!
//! With a spool directory, each pending episode is a file `SPOOL/<tenant>/<episode id>.ep`
//! (postcard of the wire episode, mode 0600, written atomically) that is deleted once the hub has
//! acknowledged it. An agent that dies with pending episodes leaves them there, and the next
//! agent of the tenant with the same spool directory sends them; the hub's idempotence by episode
//! id makes a double send harmless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentdb_core::{EpisodeId, TenantId};
use agentdb_proto::WireNewEpisode;
use parking_lot::Mutex;

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A spool file could not be written or removed.
    #[error("spool {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a spool file failed.
    #[error(transparent)]
    File(#[from] agentdb_security::FileError),
}

#[derive(Debug)]
pub(crate) struct Outbox {
    dir: Option<PathBuf>,
    pending: Mutex<BTreeMap<EpisodeId, WireNewEpisode>>,
}

impl Outbox {
    /// Opens the tenant's outbox, loading what earlier agents left behind. Unreadable files are
    /// skipped with a warning (and left in place for inspection).
    pub fn open(spool: Option<&Path>, tenant: &TenantId) -> Result<Self, OutboxError> {
        let mut pending = BTreeMap::new();
        let dir = spool.map(|s| s.join(tenant.as_str()));
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Io {
                path: dir.clone(),
                source,
            })?;
            let entries = std::fs::read_dir(dir).map_err(|source| OutboxError::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("ep") {
                    continue;
                }
                let loaded = std::fs::read(&path)
                    .ok()
                    .and_then(|b| postcard::from_bytes::<WireNewEpisode>(&b).ok());
                match loaded {
                    Some(e) => {
                        if let Some(id) = e.id {
                            pending.insert(id, e);
                        }
                    }
                    None => {
                        tracing::warn!(path = %path.display(), "skipping unreadable spool file")
                    }
                }
            }
        }
        Ok(Self {
            dir,
            pending: Mutex::new(pending),
        })
    }

    fn path(&self, id: &EpisodeId) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{id}.ep")))
    }

    /// Adds an episode (which must carry an id); durable on return when spooling.
    pub fn add(&self, id: EpisodeId, episode: WireNewEpisode) -> Result<(), OutboxError> {
        if let Some(path) = self.path(&id) {
            let bytes = postcard::to_stdvec(&episode).unwrap_or_default();
            agentdb_security::write_private_file(&path, &bytes, true)?;
        }
        self.pending.lock().insert(id, episode);
        Ok(())
    }

    /// Everything pending, oldest id first.
    pub fn pending(&self) -> Vec<WireNewEpisode> {
        self.pending.lock().values().cloned().collect()
    }

    /// Number of pending episodes.
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    /// Forgets acknowledged episodes.
    pub fn remove(&self, ids: &[EpisodeId]) {
        let mut pending = self.pending.lock();
        for id in ids {
            pending.remove(id);
            if let Some(path) = self.path(id) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
