//! The writer task: takes whatever is queued (up to [`BATCH`] events), renders and
//! chains it in one transaction (group commit), then answers the waiters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::Queued;
use super::checkpoint::Checkpointer;
use crate::store::AuditStore;

/// Most events per transaction: large enough that a burst costs few commits, small
/// enough that one commit does not hold the database's write lock for long.
pub(super) const BATCH: usize = 512;

/// How long queued records may wait for company before they are written (see
/// [`linger`]); also the most a queued record's write is delayed.
const LINGER: Duration = Duration::from_millis(10);

/// Attempts per batch before its waiters are told it failed (a busy or restarting
/// database gets a moment; a broken one fails the writes waiting on it promptly).
const ATTEMPTS: u32 = 3;

pub(super) async fn run(
    store: Arc<dyn AuditStore>,
    mut rx: mpsc::Receiver<Queued>,
    urgent: Arc<Notify>,
    mut checkpoints: Option<Checkpointer>,
) {
    let written = metrics::counter!("ctxguard_audit_records_total");
    let latency = metrics::histogram!("ctxguard_audit_write_seconds");
    let depth = metrics::gauge!("ctxguard_audit_queue_depth");
    let mut queued = Vec::with_capacity(BATCH);
    // Where this writer's last append left the chain (see `append`).
    let mut known: Option<(i64, String)> = None;
    loop {
        let due = checkpoints.as_ref().and_then(Checkpointer::due_in);
        let received = match due {
            None => rx.recv_many(&mut queued, BATCH).await,
            Some(wait) => match tokio::time::timeout(wait, rx.recv_many(&mut queued, BATCH)).await {
                Ok(n) => n,
                Err(_) => {
                    // Quiet for `audit_checkpoint_secs`: cover what was written.
                    if let Some(c) = checkpoints.as_mut() {
                        c.checkpoint(&*store).await;
                    }
                    continue;
                }
            },
        };
        if received == 0 {
            break;
        }
        linger(&mut rx, &mut queued, &urgent).await;
        depth.set(rx.len() as f64);
        let mut records = Vec::with_capacity(queued.len());
        let mut waiters = Vec::new();
        let mut flushes = Vec::new();
        for q in queued.drain(..) {
            match q {
                Queued::Event(event, done) => {
                    records.push(event.render());
                    waiters.extend(done);
                }
                Queued::Flush(done) => flushes.push(done),
            }
        }
        let n = records.len() as u64;
        let mut ok = true;
        if n > 0 {
            let started = Instant::now();
            let tail = append(&*store, &mut records, known.take()).await;
            latency.record(started.elapsed().as_secs_f64());
            ok = tail.is_some();
            known.clone_from(&tail);
            match (tail, checkpoints.as_mut()) {
                (Some(tail), Some(c)) => {
                    written.increment(n);
                    c.committed(&*store, n, tail).await;
                }
                (Some(_), None) => written.increment(n),
                (None, _) => lost(n),
            }
        }
        for w in waiters {
            let _ = w.send(ok);
        }
        if !flushes.is_empty() {
            // A flush (shutdown, the CLI's exit) leaves the chain's end covered.
            if let Some(c) = checkpoints.as_mut() {
                c.checkpoint(&*store).await;
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// While nothing in the batch waits for its commit, lets more gather for up to
/// [`LINGER`]: a busy server then writes a few large transactions a second instead of
/// one per request, each of which costs thread hops, a lock and a WAL append. The writer
/// sleeps meanwhile rather than waking for each record that arrives (a wake-up per
/// record showed in the profile of a GET, docs/benchmarks.md); a record that waits for
/// its commit (or a flush), or a full batch's worth queued, ends the wait at once
/// through `urgent`.
async fn linger(rx: &mut mpsc::Receiver<Queued>, queued: &mut Vec<Queued>, urgent: &Notify) {
    if queued.iter().any(|q| matches!(q, Queued::Event(_, Some(_)) | Queued::Flush(_))) {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(LINGER) => {}
        _ = urgent.notified() => {}
    }
    while queued.len() < BATCH {
        match rx.try_recv() {
            Ok(q) => queued.push(q),
            Err(_) => return,
        }
    }
}

/// Appends the batch; the chain's new end, or `None` when it could not be written.
/// After `known`, the end this writer last left, when it has one (a round trip less);
/// when the chain has moved on since, or that append fails, the usual way.
async fn append(
    store: &dyn AuditStore,
    records: &mut [crate::domain::audit::PendingRecord],
    known: Option<(i64, String)>,
) -> Option<(i64, String)> {
    if let Some(after) = known {
        match store.append_audit_after(records, &after).await {
            Ok(Some(tail)) => return Some(tail),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "audit append after the known end failed; appending again"),
        }
    }
    for attempt in 1..=ATTEMPTS {
        match store.append_audit(records).await {
            Ok(tail) => return Some(tail),
            Err(e) => {
                tracing::error!(error = %e, attempt, records = records.len(), "audit records could not be written");
                if attempt < ATTEMPTS {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
            }
        }
    }
    None
}

/// Counts records that were not written (`ctxguard_audit_records_lost_total`): only
/// records nothing waited for — reads and refusals — can be lost, and only while the
/// database refuses them.
pub(super) fn lost(n: u64) {
    metrics::counter!("ctxguard_audit_records_lost_total").increment(n);
}
