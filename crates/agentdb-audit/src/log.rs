//! [`AuditLog`]: the handle a hub records events through.
//!
//! ```text
//! caller threads ── record(event) ──► bounded queue ──► writer thread (one per log)
//!   (clock read, no I/O, no fsync)                          │ number, chain, serialize
//!                                                           │ append a batch to the segment
//!                                                           │ fsync at most every sync_interval
//!                                                           │   then replace HEAD (signed)
//!                                                           │ checkpoint every checkpoint_interval
//!                                                           │ rotate segments, apply retention
//! close() / drop ── final checkpoint, fsync, HEAD ──────────┘
//! ```
//!
//! A full queue makes `record` wait for room rather than drop the event. When the disk
//! refuses a write, the writer keeps the lines and tries again on its next round; the failure
//! is counted ([`AuditLog::failures`]) and logged. Only when the lines it is holding pass
//! 64 MiB does it give them up, and then it writes a `log_repair` record saying how many were
//! lost, so that the gap is in the chain rather than silent.
//!
//! Records that were queued but not yet written are lost if the process is killed; records
//! written but not yet synced (at most `sync_interval` of them) are lost if the machine
//! stops. Neither leaves the chain broken: on the next open the log resumes after the last
//! complete line, removes a torn one, and notes both in the chain.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use agentdb_core::HubId;
use agentdb_security::signing::{HubSigner, SignatureError};

use crate::record::AuditEvent;
use crate::writer::{Command, Writer};

/// The source of record times, in Unix milliseconds. The hub passes its clock; tests pass a
/// clock they move by hand.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How an [`AuditLog`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// How often a signed checkpoint seals the chain (by the injected clock). Default 60 s.
    pub checkpoint_interval: Duration,
    /// How long records are kept; whole segments whose newest record is older are removed.
    /// `None` (the default) keeps everything.
    pub retention: Option<Duration>,
    /// Size after which the log starts a new segment file. Default 64 MiB.
    pub segment_max_bytes: u64,
    /// Longest time a written record waits for fsync (and HEAD for its update). Default
    /// 100 ms.
    pub sync_interval: Duration,
    /// Records that may wait for the writer before `record` blocks. Default 16,384.
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(60),
            retention: None,
            segment_max_bytes: 64 * 1024 * 1024,
            sync_interval: Duration::from_millis(100),
            queue_capacity: 16_384,
        }
    }
}

impl AuditConfig {
    /// Sets [`Self::checkpoint_interval`].
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets [`Self::retention`].
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Sets [`Self::segment_max_bytes`].
    pub fn segment_max_bytes(mut self, bytes: u64) -> Self {
        self.segment_max_bytes = bytes;
        self
    }

    /// Sets [`Self::sync_interval`].
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Sets [`Self::queue_capacity`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file or directory of the log could not be read or written.
    #[error("audit log: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The last complete record of the log cannot be read, so the chain cannot be resumed.
    /// Check the log with `agentdb audit verify` and move it aside to start a new one.
    #[error("audit log: {}: cannot resume the chain: {reason}", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The opening records could not be signed.
    #[error("audit log: cannot sign: {0}")]
    Sign(#[from] SignatureError),
    /// The writer thread could not be started.
    #[error("audit log: cannot start the writer thread: {0}")]
    Spawn(std::io::Error),
}

/// Why a flush, checkpoint or close did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The writer thread is no longer running.
    #[error("the audit log writer has stopped")]
    Stopped,
    /// Records could not be made durable (the writer keeps trying).
    #[error("audit records are not durable: {reason}")]
    NotDurable {
        /// The last I/O error.
        reason: String,
    },
}

/// Counters shared by the handle and the writer.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) failures: AtomicU64,
    /// The seq of the last durable record, plus one (0: none yet).
    pub(crate) durable: AtomicU64,
}

/// A hub's audit log: an append-only, hash-chained, signed record of what was done.
///
/// Cheap to share (`Arc<AuditLog>`); `record` may be called from any thread.
pub struct AuditLog {
    tx: SyncSender<Command>,
    clock: Clock,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl AuditLog {
    /// Opens (or creates, mode 0700) the log in `dir` for hub `hub` and starts its writer.
    ///
    /// An existing log is resumed after its last complete record; a line torn by a crash is
    /// removed first. Every open writes a `log_open` record, preceded by `log_repair` records
    /// for what it found: a torn line, or a `HEAD` the log does not reach (its tail was
    /// removed while the hub was down), which would otherwise be overwritten. With a
    /// `signer`, checkpoints and `HEAD` are signed; without one they are written unsigned
    /// (and `agentdb audit verify` with a certificate reports them).
    ///
    /// One `AuditLog` writes a directory at a time: two logs open on one directory would
    /// interleave their chains.
    pub fn open(
        dir: impl AsRef<Path>,
        hub: HubId,
        signer: Option<Arc<HubSigner>>,
        config: AuditConfig,
        clock: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_owned();
        let clock: Clock = Arc::new(clock);
        let shared = Arc::new(Shared::default());
        let capacity = config.queue_capacity.max(1);
        let writer = Writer::open(&dir, hub, signer, config, clock.clone(), shared.clone())?;
        let (tx, rx) = mpsc::sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("agentdb-audit".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(OpenError::Spawn)?;
        Ok(Self {
            tx,
            clock,
            shared,
            thread: Some(thread),
            dir,
        })
    }

    /// Records `event`, timed now. Returns once the event is queued: no I/O happens on the
    /// caller's thread. Waits while the queue is full. Events of operations only the log may
    /// write ([`crate::Operation::is_reserved`]) are refused and counted as failures.
    pub fn record(&self, event: AuditEvent) {
        if event.operation.is_reserved() {
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                operation = %event.operation,
                "audit event refused: only the audit log writes this operation"
            );
            return;
        }
        let time_ms = (self.clock)();
        if self.tx.send(Command::Record { time_ms, event }).is_err() {
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("audit event lost: the audit log writer has stopped");
        }
    }

    /// Waits until every event recorded before is written, synced, and named by `HEAD`.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.request(Command::Flush)
    }

    /// Writes a signed checkpoint now (after every event recorded before) and waits until it
    /// is durable.
    pub fn checkpoint_now(&self) -> Result<(), AuditError> {
        self.request(Command::Checkpoint)
    }

    /// Write failures so far: failed writes, syncs and `HEAD` updates, refused events, and
    /// events recorded after the writer stopped. Each is also logged.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// The seq of the last durable record, if any.
    pub fn durable_seq(&self) -> Option<u64> {
        self.shared.durable.load(Ordering::Acquire).checked_sub(1)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the log: writes a final checkpoint (when there are records after the last one),
    /// syncs, updates `HEAD`, and waits for the writer to finish. Dropping the log does the
    /// same, ignoring errors.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let result = self.request(Command::Close);
        if thread.join().is_err() {
            tracing::error!("the audit log writer panicked");
            return Err(AuditError::Stopped);
        }
        result
    }

    fn request(
        &self,
        command: impl FnOnce(mpsc::Sender<Result<(), AuditError>>) -> Command,
    ) -> Result<(), AuditError> {
        let (ack, done) = mpsc::channel();
        self.tx
            .send(command(ack))
            .map_err(|_| AuditError::Stopped)?;
        done.recv().unwrap_or(Err(AuditError::Stopped))
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the audit log");
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("failures", &self.failures())
            .field("durable_seq", &self.durable_seq())
            .finish_non_exhaustive()
    }
}
