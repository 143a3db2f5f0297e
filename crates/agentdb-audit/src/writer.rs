//! The writer thread of an [`crate::AuditLog`]: it alone numbers, chains and writes records.
//!
//! Each round takes what is queued (up to [`BATCH_BYTES`] of lines), appends it to the
//! current segment with one write, and, when `sync_interval` has passed since the first
//! unsynced write or someone waits (flush, checkpoint, close), syncs the segment and replaces
//! `HEAD`. Checkpoints fall due by the injected clock. Retention is decided at each scheduled
//! checkpoint: a `log_retention` record naming the last seq to go is appended before the
//! checkpoint, and the old segments are removed once both are durable (so the segment being
//! written to is never empty when older ones go). A new segment starts after a durable write
//! that takes the current one past its limit.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentdb_core::HubId;
use agentdb_security::signing::HubSigner;
use agentdb_security::{sync_parent_dir, write_private_file};

use crate::log::{AuditConfig, AuditError, Clock, OpenError, Shared};
use crate::record::{
    line_hash, AuditEvent, AuditRecord, CheckpointSeal, Operation, Outcome, ZERO_HASH,
};
use crate::seal::{checkpoint_message, sign, Head, HEAD_FILE};
use crate::segment::{list_segments, read_tail, segment_name, SegmentFile};

/// Most bytes of lines taken from the queue in one round.
const BATCH_BYTES: usize = 1024 * 1024;
/// Lines kept for another attempt after failed writes before they are given up.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// How long an idle writer sleeps before looking at the clock again (checkpoints are due by
/// the injected clock, which only a running writer reads).
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// What the handle asks of the writer.
pub(crate) enum Command {
    /// Append one event.
    Record { time_ms: u64, event: AuditEvent },
    /// Make everything before durable, then answer.
    Flush(Sender<Result<(), AuditError>>),
    /// Write a checkpoint, make it durable, then answer.
    Checkpoint(Sender<Result<(), AuditError>>),
    /// Final checkpoint, make durable, answer and stop.
    Close(Sender<Result<(), AuditError>>),
}

/// The last record appended: what the next one chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tip {
    seq: u64,
    hash: String,
    time_ms: u64,
}

/// A segment before the current one.
#[derive(Debug)]
struct ClosedSegment {
    path: PathBuf,
    last_seq: u64,
    /// The time of its newest record; `None` if it could not be read (never pruned).
    last_time_ms: Option<u64>,
}

pub(crate) struct Writer {
    dir: PathBuf,
    hub: HubId,
    signer: Option<Arc<HubSigner>>,
    config: AuditConfig,
    clock: Clock,
    shared: Arc<Shared>,

    file: File,
    path: PathBuf,
    /// Bytes of the current segment written successfully.
    len: u64,
    closed: VecDeque<ClosedSegment>,

    /// The chain after the lines in `pending`.
    tip: Option<Tip>,
    /// Serialized lines not yet written.
    pending: Vec<u8>,
    pending_records: u64,
    /// The chain after the last successful write.
    written: Option<Tip>,
    /// The chain after the last successful sync.
    synced: Option<Tip>,
    /// When the oldest unsynced write happened.
    unsynced_since: Option<Instant>,
    last_error: Option<String>,

    last_checkpoint_ms: u64,
    /// Records appended since the last checkpoint.
    since_checkpoint: u64,
}

impl Writer {
    /// Opens or resumes the log in `dir`, writes the opening records and makes them durable.
    pub(crate) fn open(
        dir: &Path,
        hub: HubId,
        signer: Option<Arc<HubSigner>>,
        config: AuditConfig,
        clock: Clock,
        shared: Arc<Shared>,
    ) -> Result<Self, OpenError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io { path, source }
        };
        create_private_dir(dir).map_err(io(dir))?;
        let resumed = resume(dir)?;
        let head = read_head(dir);

        let (file, path, len) = match &resumed.current {
            Some((path, len)) if *len < config.segment_max_bytes => {
                (open_append(path).map_err(io(path))?, path.clone(), *len)
            }
            _ => {
                let first = resumed.tip.as_ref().map_or(0, |t| t.seq + 1);
                let path = dir.join(segment_name(first));
                (create_segment(&path).map_err(io(&path))?, path, 0)
            }
        };
        let mut closed = resumed.closed;
        if let Some((old, _)) = &resumed.current {
            if *old != path {
                if let Some(tip) = &resumed.tip {
                    closed.push_back(ClosedSegment {
                        path: old.clone(),
                        last_seq: tip.seq,
                        last_time_ms: Some(tip.time_ms),
                    });
                }
            }
        }
        let now = clock();
        let mut writer = Self {
            dir: dir.to_owned(),
            hub,
            signer,
            config,
            clock,
            shared,
            file,
            path,
            len,
            closed,
            tip: resumed.tip.clone(),
            pending: Vec::new(),
            pending_records: 0,
            written: resumed.tip.clone(),
            synced: resumed.tip.clone(),
            unsynced_since: None,
            last_error: None,
            last_checkpoint_ms: now,
            since_checkpoint: 0,
        };
        writer.publish_durable();

        if let Some(torn) = resumed.torn {
            writer.append(
                AuditEvent::new(Operation::LogRepair, Outcome::Ok)
                    .error_code("torn_line")
                    .detail(torn),
                now,
                None,
                None,
            );
        }
        if let Some(problem) = head_problem(head, resumed.tip.as_ref()) {
            writer.append(
                AuditEvent::new(Operation::LogRepair, Outcome::Failed)
                    .error_code(problem.0)
                    .detail(problem.1),
                now,
                None,
                None,
            );
        }
        let detail = match (&resumed.tip, &writer.signer) {
            (None, None) => "new log, unsigned".to_owned(),
            (None, Some(s)) => format!("new log, signer {}", s.fingerprint()),
            (Some(t), None) => format!("resumed after seq {}, unsigned", t.seq),
            (Some(t), Some(s)) => {
                format!("resumed after seq {}, signer {}", t.seq, s.fingerprint())
            }
        };
        writer.append(
            AuditEvent::new(Operation::LogOpen, Outcome::Ok).detail(detail),
            now,
            None,
            None,
        );
        writer.write_pending();
        writer.sync();
        if writer.synced != writer.tip {
            let reason = writer
                .last_error
                .clone()
                .unwrap_or_else(|| "the opening records were not written".to_owned());
            return Err(OpenError::Io {
                path: writer.path.clone(),
                source: io::Error::other(reason),
            });
        }
        Ok(writer)
    }

    /// The writer thread's loop, until `Close` or until every handle is gone.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        loop {
            let wait = match self.unsynced_since {
                Some(since) => self.config.sync_interval.saturating_sub(since.elapsed()),
                None if !self.pending.is_empty() => self.config.sync_interval,
                None => IDLE_WAKE,
            };
            let mut acks = Vec::new();
            let mut closing = None;
            let first = match rx.recv_timeout(wait) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    let (ack, _) = std::sync::mpsc::channel();
                    Some(Command::Close(ack))
                }
            };
            if let Some(command) = first {
                self.handle(command, &mut acks, &mut closing);
                while closing.is_none() && self.pending.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(command) => self.handle(command, &mut acks, &mut closing),
                        Err(_) => break,
                    }
                }
            }
            self.write_pending();

            let due = self.since_checkpoint > 0
                && (self.clock)().saturating_sub(self.last_checkpoint_ms)
                    >= duration_ms(self.config.checkpoint_interval);
            let mut prune = 0;
            if due {
                prune = self.plan_retention();
                self.checkpoint();
                self.write_pending();
            }
            let sync_due = self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= self.config.sync_interval);
            if due || sync_due || !acks.is_empty() || closing.is_some() {
                self.sync();
            }
            if prune > 0 && self.synced == self.tip {
                self.remove_oldest_segments(prune);
            }
            self.rotate_if_full();

            let result = if self.synced == self.tip {
                Ok(())
            } else {
                Err(AuditError::NotDurable {
                    reason: self
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not yet synced".to_owned()),
                })
            };
            for ack in acks {
                let _ = ack.send(result.clone());
            }
            if let Some(ack) = closing {
                let _ = ack.send(result);
                return;
            }
        }
    }

    fn handle(
        &mut self,
        command: Command,
        acks: &mut Vec<Sender<Result<(), AuditError>>>,
        closing: &mut Option<Sender<Result<(), AuditError>>>,
    ) {
        match command {
            Command::Record { time_ms, event } => {
                self.append(event, time_ms, None, None);
            }
            Command::Flush(ack) => acks.push(ack),
            Command::Checkpoint(ack) => {
                self.checkpoint();
                acks.push(ack);
            }
            Command::Close(ack) => {
                if self.since_checkpoint > 0 {
                    self.checkpoint();
                }
                *closing = Some(ack);
            }
        }
    }

    /// Numbers, chains and serializes one record into `pending`.
    fn append(
        &mut self,
        mut event: AuditEvent,
        time_ms: u64,
        checkpoint: Option<CheckpointSeal>,
        pruned_through: Option<u64>,
    ) {
        event.bound();
        let is_checkpoint = event.operation == Operation::Checkpoint;
        let (seq, prev) = match &self.tip {
            Some(tip) => (tip.seq + 1, tip.hash.clone()),
            None => (0, ZERO_HASH.to_owned()),
        };
        let record = AuditRecord {
            seq,
            prev,
            time_ms,
            hub: self.hub.clone(),
            event,
            checkpoint,
            pruned_through,
        };
        let line = record.to_line();
        let hash = line_hash(&line);
        self.pending.extend_from_slice(&line);
        self.pending.push(b'\n');
        self.pending_records += 1;
        self.tip = Some(Tip { seq, hash, time_ms });
        if is_checkpoint {
            self.since_checkpoint = 0;
            self.last_checkpoint_ms = time_ms;
        } else {
            self.since_checkpoint += 1;
        }
    }

    /// Appends a checkpoint sealing everything appended so far.
    fn checkpoint(&mut self) {
        let Some(tip) = self.tip.clone() else {
            return;
        };
        let time_ms = (self.clock)();
        let seq = tip.seq + 1;
        let message = checkpoint_message(&self.hub, seq, time_ms, tip.seq, &tip.hash);
        let (signer, signature) = match sign(self.signer.as_deref(), &message) {
            Ok(signed) => signed,
            Err(e) => {
                self.fail(format!("cannot sign a checkpoint: {e}"));
                (None, None)
            }
        };
        self.append(
            AuditEvent::new(Operation::Checkpoint, Outcome::Ok),
            time_ms,
            Some(CheckpointSeal {
                seals: tip.seq,
                signer,
                signature,
            }),
            None,
        );
    }

    /// Writes `pending` to the current segment. On failure the lines stay pending (the file
    /// is cut back to its last good length) unless they pass [`MAX_PENDING_BYTES`].
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.len += self.pending.len() as u64;
                self.pending.clear();
                self.pending_records = 0;
                self.written = self.tip.clone();
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                self.fail(format!("cannot write {}: {e}", self.path.display()));
                if self.pending.len() > MAX_PENDING_BYTES {
                    let lost = self.pending_records;
                    self.pending.clear();
                    self.pending_records = 0;
                    self.tip = self.written.clone();
                    let now = (self.clock)();
                    self.append(
                        AuditEvent::new(Operation::LogRepair, Outcome::Failed)
                            .error_code("records_lost")
                            .detail(format!("{lost} records lost after write failures: {e}")),
                        now,
                        None,
                        None,
                    );
                }
            }
        }
    }

    /// Syncs the segment and replaces `HEAD` when something was written since the last sync.
    fn sync(&mut self) {
        if self.written == self.synced {
            return;
        }
        if let Err(e) = self.file.sync_data() {
            self.fail(format!("cannot sync {}: {e}", self.path.display()));
            // Try again after another interval, not at once.
            self.unsynced_since = Some(Instant::now());
            return;
        }
        self.synced = self.written.clone();
        self.unsynced_since = None;
        self.publish_durable();
        self.write_head();
    }

    fn write_head(&mut self) {
        let Some(tip) = self.synced.clone() else {
            return;
        };
        let head = match Head::new(
            &self.hub,
            tip.seq,
            tip.time_ms,
            &tip.hash,
            self.signer.as_deref(),
        ) {
            Ok(head) => head,
            Err(e) => {
                self.fail(format!("cannot sign HEAD: {e}"));
                return;
            }
        };
        let mut bytes = match serde_json::to_vec(&head) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.fail(format!("cannot encode HEAD: {e}"));
                return;
            }
        };
        bytes.push(b'\n');
        if let Err(e) = write_private_file(&self.dir.join(HEAD_FILE), &bytes, true) {
            self.fail(format!("cannot write HEAD: {e}"));
        }
    }

    fn publish_durable(&self) {
        let value = self.synced.as_ref().map_or(0, |t| t.seq + 1);
        self.shared.durable.store(value, Ordering::Release);
    }

    /// Starts a new segment when the current one is full and everything in it is durable.
    fn rotate_if_full(&mut self) {
        if self.len < self.config.segment_max_bytes
            || !self.pending.is_empty()
            || self.synced != self.tip
        {
            return;
        }
        let Some(tip) = self.tip.clone() else {
            return;
        };
        let path = self.dir.join(segment_name(tip.seq + 1));
        match create_segment(&path) {
            Ok(file) => {
                let old = std::mem::replace(&mut self.path, path);
                self.file = file;
                self.len = 0;
                self.closed.push_back(ClosedSegment {
                    path: old,
                    last_seq: tip.seq,
                    last_time_ms: Some(tip.time_ms),
                });
            }
            Err(e) => self.fail(format!("cannot create {}: {e}", path.display())),
        }
    }

    /// When old segments are due for removal, appends the `log_retention` record naming
    /// the last seq they hold and returns how many there are (they are removed once that
    /// record is durable).
    fn plan_retention(&mut self) -> usize {
        let Some(retention) = self.config.retention else {
            return 0;
        };
        let now = (self.clock)();
        let cutoff = now.saturating_sub(duration_ms(retention));
        let count = self
            .closed
            .iter()
            .take_while(|s| s.last_time_ms.is_some_and(|t| t < cutoff))
            .count();
        let Some(through) = count.checked_sub(1).and_then(|i| self.closed.get(i)) else {
            return 0;
        };
        let through = through.last_seq;
        self.append(
            AuditEvent::new(Operation::LogRetention, Outcome::Ok).detail(format!(
                "removing {count} segment(s) through seq {through}, older than {} s",
                retention.as_secs()
            )),
            now,
            None,
            Some(through),
        );
        count
    }

    /// Removes the `count` oldest segments, oldest first, so that what remains is always
    /// contiguous.
    fn remove_oldest_segments(&mut self, count: usize) {
        for _ in 0..count {
            let Some(segment) = self.closed.pop_front() else {
                break;
            };
            if let Err(e) = fs::remove_file(&segment.path) {
                self.fail(format!("cannot remove {}: {e}", segment.path.display()));
                self.closed.push_front(segment);
                break;
            }
        }
        if let Err(e) = sync_parent_dir(&self.path) {
            self.fail(format!("cannot sync {}: {e}", self.dir.display()));
        }
    }

    fn fail(&mut self, reason: String) {
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(dir = %self.dir.display(), "audit log: {reason}");
        self.last_error = Some(reason);
    }
}

/// What [`resume`] found in an existing directory.
struct Resumed {
    /// The last record.
    tip: Option<Tip>,
    /// The last segment and its length, to append to.
    current: Option<(PathBuf, u64)>,
    /// The segments before it.
    closed: VecDeque<ClosedSegment>,
    /// A note when a torn final line was removed.
    torn: Option<String>,
}

fn resume(dir: &Path) -> Result<Resumed, OpenError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OpenError::Io { path, source }
    };
    let mut segments = list_segments(dir).map_err(io(dir))?;
    let mut torn = None;
    let (tip, current) = loop {
        let Some(last) = segments.last().cloned() else {
            break (None, None);
        };
        let tail = read_tail(&last.path).map_err(io(&last.path))?;
        if tail.good_len < tail.file_len {
            let file = OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(io(&last.path))?;
            file.set_len(tail.good_len)
                .and_then(|()| file.sync_all())
                .map_err(io(&last.path))?;
            torn = Some(format!(
                "removed a torn final line of {} bytes from {}",
                tail.file_len - tail.good_len,
                last.name()
            ));
        }
        match tail.last_line {
            Some(line) => {
                let record = AuditRecord::from_line(&line).map_err(|e| OpenError::Corrupt {
                    path: last.path.clone(),
                    reason: format!("its last line is not an audit record: {e}"),
                })?;
                let tip = Tip {
                    seq: record.seq,
                    hash: line_hash(&line),
                    time_ms: record.time_ms,
                };
                break (Some(tip), Some((last.path.clone(), tail.good_len)));
            }
            None if segments.len() > 1 => {
                // A segment created just before a crash, before its first line.
                fs::remove_file(&last.path).map_err(io(&last.path))?;
                sync_parent_dir(&last.path).map_err(io(&last.path))?;
                segments.pop();
            }
            None if last.first_seq == 0 => break (None, Some((last.path.clone(), 0))),
            None => {
                return Err(OpenError::Corrupt {
                    path: last.path.clone(),
                    reason: "the only segment is empty and does not start the log".to_owned(),
                })
            }
        }
    };
    let mut closed = VecDeque::new();
    for segment in segments.iter().take(segments.len().saturating_sub(1)) {
        closed.push_back(closed_segment(segment));
    }
    Ok(Resumed {
        tip,
        current,
        closed,
        torn,
    })
}

fn closed_segment(segment: &SegmentFile) -> ClosedSegment {
    let last = read_tail(&segment.path)
        .ok()
        .and_then(|tail| tail.last_line)
        .and_then(|line| AuditRecord::from_line(&line).ok());
    if last.is_none() {
        tracing::warn!(
            segment = %segment.path.display(),
            "audit log: cannot read the last record of a segment; retention will keep it"
        );
    }
    ClosedSegment {
        path: segment.path.clone(),
        last_seq: last.as_ref().map_or(segment.first_seq, |r| r.seq),
        last_time_ms: last.map(|r| r.time_ms),
    }
}

/// `HEAD` as found on opening: `None` if missing, `Some(None)` if unreadable.
fn read_head(dir: &Path) -> Option<Option<Head>> {
    let bytes = fs::read(dir.join(HEAD_FILE)).ok()?;
    Some(serde_json::from_slice(&bytes).ok())
}

/// What is wrong with `HEAD` given the last record found: an error code and a description.
fn head_problem(head: Option<Option<Head>>, tip: Option<&Tip>) -> Option<(&'static str, String)> {
    match (head, tip) {
        (None, None) => None,
        (None, Some(tip)) => Some((
            "head_missing",
            format!("HEAD was missing; the log ends at seq {}", tip.seq),
        )),
        (Some(None), _) => Some(("head_unreadable", "HEAD was unreadable".to_owned())),
        (Some(Some(head)), None) => Some((
            "head_mismatch",
            format!("HEAD named seq {} but the log had no record", head.seq),
        )),
        (Some(Some(head)), Some(tip)) => {
            if head.seq > tip.seq || (head.seq == tip.seq && head.hash != tip.hash) {
                Some((
                    "head_mismatch",
                    format!(
                        "HEAD named seq {} (hash {}) but the log ends at seq {} (hash {})",
                        head.seq, head.hash, tip.seq, tip.hash
                    ),
                ))
            } else {
                None
            }
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

/// Creates a new segment file (0600) and makes its name durable.
fn create_segment(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    sync_parent_dir(path)?;
    Ok(file)
}
