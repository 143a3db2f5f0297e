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

/// What a request's writes came to: per write, whether it changed anything.
type Outcome = Result<Vec<bool>, StorageError>;

type Reply = mpsc::SyncSender<Outcome>;

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
    pub fn submit(&self, writes: Vec<Write>) -> Outcome {
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
        commit_group(&|writes| storage.apply(writes), group);
    }
}

/// Commits a group through `apply` (the store's).
fn commit_group(apply: &dyn Fn(&[Write]) -> Outcome, group: Vec<Pending>) {
    if group.len() == 1 {
        for p in group {
            let _ = p.reply.send(apply(&p.writes));
        }
        return;
    }
    // The group's writes move into one list (no copies); each request keeps its count.
    let mut all = Vec::with_capacity(group.iter().map(|p| p.writes.len()).sum());
    let mut replies = Vec::with_capacity(group.len());
    for p in group {
        replies.push((p.reply, p.writes.len()));
        all.extend(p.writes);
    }
    match apply(&all) {
        Ok(flags) => {
            let mut flags = flags.into_iter();
            for (reply, n) in replies {
                let _ = reply.send(Ok(flags.by_ref().take(n).collect()));
            }
        }
        // Isolate the failure by committing each request alone.
        Err(_) => {
            let mut all = all.into_iter();
            for (reply, n) in replies {
                let mine: Vec<Write> = all.by_ref().take(n).collect();
                let _ = reply.send(apply(&mine));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::storage::MemStorage;

    fn put(name: &str) -> Write {
        Write::PutMeta {
            name: name.into(),
            value: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_failing_request_fails_alone_and_the_rest_of_its_group_commits() {
        let storage = MemStorage::new();
        // Refuses any apply holding the write named `poison`, as a full disk refuses one
        // request's large write.
        let apply = |writes: &[Write]| {
            if writes
                .iter()
                .any(|w| matches!(w, Write::PutMeta { name, .. } if name == "poison"))
            {
                return Err(StorageError::Backend("No space left on device".into()));
            }
            storage.apply(writes)
        };
        let mut answers = Vec::new();
        let group = [
            vec![put("a"), put("b")],
            vec![put("poison")],
            vec![put("c")],
        ]
        .into_iter()
        .map(|writes| {
            let (reply, answer) = mpsc::sync_channel(1);
            answers.push(answer);
            Pending { writes, reply }
        })
        .collect();
        commit_group(&apply, group);
        let answers: Vec<_> = answers.iter().map(|a| a.recv().unwrap()).collect();
        assert_eq!(answers[0].as_ref().unwrap().len(), 2);
        assert!(answers[1].is_err());
        assert_eq!(answers[2].as_ref().unwrap().len(), 1);
        for (name, kept) in [("a", true), ("b", true), ("poison", false), ("c", true)] {
            assert_eq!(storage.meta(name).unwrap().is_some(), kept, "{name}");
        }
    }
}
