//! Group commit: concurrent writers share one durable transaction.
//!
//! Writers hand their writes to a committer thread and block until it answers. The committer
//! takes everything queued (up to a bound), applies it in one [`Storage::apply`] — one fsync for
//! the whole group — and answers each writer with its own outcome flags. If a group fails, each
//! request in it is retried alone, so one writer's failure (a full disk, say) is reported to that
//! writer without deciding the fate of the others by association.
//!
//! A store whose apply costs nothing fixed ([`Storage::group_commit_pays`] false: in memory)
//! has no committer thread: each writer applies its own writes, one writer at a time, which is
//! what a group of one does, without two thread hand-offs per write.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::storage::{Storage, StorageError, Write};

type Reply = mpsc::SyncSender<Result<Vec<bool>, StorageError>>;

pub(crate) struct Pending {
    writes: Vec<Write>,
    reply: Reply,
}

/// How the engine's writes reach the store.
#[derive(Debug)]
pub(crate) enum GroupCommit {
    /// Writers hand their writes to the committer thread; dropping this lets the thread finish
    /// what is queued and stop.
    Committer {
        tx: Option<mpsc::Sender<Pending>>,
        thread: Option<JoinHandle<()>>,
    },
    /// Writers apply directly; the lock keeps applies one at a time, in the order writers take
    /// it, as the committer would.
    Direct(Mutex<Arc<dyn Storage>>),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} writes)", self.writes.len())
    }
}

impl GroupCommit {
    /// Starts the committer. At most `max_group` requests share one transaction.
    pub fn start(storage: Arc<dyn Storage>, max_group: usize) -> Self {
        if !storage.group_commit_pays() {
            return Self::Direct(Mutex::new(storage));
        }
        let (tx, rx) = mpsc::channel::<Pending>();
        let thread = std::thread::Builder::new()
            .name("agentdb-commit".into())
            .spawn(move || run(&*storage, &rx, max_group.max(1)))
            .ok();
        Self::Committer {
            tx: Some(tx),
            thread,
        }
    }

    /// Applies `writes` atomically and durably, sharing the commit with concurrent callers.
    pub fn submit(&self, writes: Vec<Write>) -> Result<Vec<bool>, StorageError> {
        let tx = match self {
            Self::Direct(storage) => return storage.lock().apply(&writes),
            Self::Committer { tx, .. } => tx,
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let stopped = || StorageError::Backend("the store is shutting down".into());
        tx.as_ref()
            .ok_or_else(stopped)?
            .send(Pending { writes, reply })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if let Self::Committer { tx, thread } = self {
            drop(tx.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn run(storage: &dyn Storage, rx: &mpsc::Receiver<Pending>, max_group: usize) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        commit_group(storage, group);
    }
}

fn commit_group(storage: &dyn Storage, group: Vec<Pending>) {
    if group.len() > 1 {
        let all: Vec<Write> = group
            .iter()
            .flat_map(|p| p.writes.iter().cloned())
            .collect();
        if let Ok(flags) = storage.apply(&all) {
            let mut flags = flags.into_iter();
            for p in group {
                let mine: Vec<bool> = flags.by_ref().take(p.writes.len()).collect();
                let _ = p.reply.send(Ok(mine));
            }
            return;
        }
        // Fall through: isolate the failure by committing each request alone.
    }
    for p in group {
        let _ = p.reply.send(storage.apply(&p.writes));
    }
}
