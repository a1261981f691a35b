//! The audit log's writing side (docs/audit.md): emitters hand an [`AuditEvent`] to
//! [`Audit::record`]; one writer task per process renders and chains queued events and
//! commits them in groups.
//!
//! What waits for what: a record of something that changes state (an allowed write, a
//! token issued, an admin action) is committed before the operation runs, so an
//! operation is never acknowledged without its record and a record that cannot be
//! written stops the operation (fail closed, 503, nothing changed). Every other record
//! (reads, refusals, failures) is queued: the request waits only for room in the queue
//! (back-pressure), unless `audit_fail_closed_reads` makes reads wait for the commit too.

pub mod checkpoint;
pub mod retention;
pub mod verify;
mod writer;

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::domain::audit::{AuditEvent, AuditRecord, Outcome};
use crate::jwt::Keyring;
use crate::store::AuditStore;
use checkpoint::{CheckpointPolicy, Checkpointer};

/// Blocks read per query by whatever walks the log (verify, export, retention): up to
/// 64 × 256 records, a few megabytes, in one round trip. (When records were stored one
/// per row, pages of 256 rows beat pages of 10,000: every value sqlx copied out of
/// SQLite was an allocation of its own; docs/benchmarks.md.)
pub const READ_PAGE: u32 = 64;

/// Hands every stored record from `from` on, in stored order, to `each` until it
/// returns `false`; reads a page of blocks at a time, so memory stays constant.
pub async fn each_record(
    store: &dyn AuditStore,
    from: i64,
    mut each: impl FnMut(AuditRecord) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut key = store.audit_block_key(from).await?;
    loop {
        let blocks = store.audit_blocks(key, READ_PAGE).await?;
        let Some(last) = blocks.last() else { return Ok(()) };
        key = last.first_seq + 1;
        for block in &blocks {
            for line in crate::domain::audit_block::lines(&block.records) {
                let record = line?.record()?;
                if record.seq >= from && !each(record)? {
                    return Ok(());
                }
            }
        }
    }
}

/// The audit settings (`audit`, `audit_queue`, `audit_fail_closed_reads`).
#[derive(Clone, Debug)]
pub struct AuditSettings {
    pub enabled: bool,
    /// Events waiting for the writer before emitters wait for room.
    pub queue: usize,
    pub fail_closed_reads: bool,
    pub checkpoints: CheckpointPolicy,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: 8192,
            fail_closed_reads: false,
            checkpoints: CheckpointPolicy { every_records: 1000, every: std::time::Duration::from_secs(60) },
        }
    }
}

/// A record that had to be committed was not: the operation must not run.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written; the operation was not performed")]
pub struct AuditUnavailable;

/// The handle emitters hold. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: mpsc::Sender<Queued>,
    /// Tells the writer that something queued waits for its commit (see
    /// `writer::linger`).
    urgent: Arc<Notify>,
    fail_closed_reads: bool,
}

// The queue's slots hold events inline; boxing them for the sake of the rare flush
// would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Queued {
    Event(AuditEvent, Option<oneshot::Sender<bool>>),
    /// Answered once everything queued before it has been written.
    Flush(oneshot::Sender<()>),
}

impl Audit {
    /// Starts this process's writer (when auditing is on), which signs checkpoints
    /// with `keyring`.
    pub fn start(store: Arc<dyn AuditStore>, keyring: Arc<Keyring>, settings: &AuditSettings) -> Self {
        if !settings.enabled {
            return Self::off();
        }
        let (queue, rx) = mpsc::channel(settings.queue);
        let urgent = Arc::new(Notify::new());
        let checkpoints = Checkpointer::new(keyring, settings.checkpoints);
        tokio::spawn(writer::run(store, rx, urgent.clone(), Some(checkpoints)));
        Self { inner: Some(Arc::new(Inner { queue, urgent, fail_closed_reads: settings.fail_closed_reads })) }
    }

    /// Records nothing (`audit = false`, unit tests).
    pub fn off() -> Self {
        Self { inner: None }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Records `event`: committed before returning when it allows a write (or any read
    /// with `audit_fail_closed_reads`), else queued. `Err` only for a record that had
    /// to be committed and was not.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditUnavailable> {
        let Some(inner) = &self.inner else { return Ok(()) };
        let must_commit =
            matches!(event.outcome, Outcome::Allow(_)) && (event.action.is_write() || inner.fail_closed_reads);
        if !must_commit {
            if inner.queue.send(Queued::Event(event, None)).await.is_err() {
                writer::lost(1);
            }
            // A batch's worth waiting: no reason to linger.
            if inner.queue.max_capacity() - inner.queue.capacity() >= writer::BATCH {
                inner.urgent.notify_one();
            }
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        inner.queue.send(Queued::Event(event, Some(done))).await.map_err(|_| AuditUnavailable)?;
        inner.urgent.notify_one();
        match committed.await {
            Ok(true) => Ok(()),
            _ => Err(AuditUnavailable),
        }
    }

    /// Waits until everything queued so far is written (shutdown, the CLI's exit).
    pub async fn flush(&self) {
        let Some(inner) = &self.inner else { return };
        let (done, flushed) = oneshot::channel();
        if inner.queue.send(Queued::Flush(done)).await.is_ok() {
            inner.urgent.notify_one();
            let _ = flushed.await;
        }
    }
}
