//! The expiry sweeper. Expired contexts are never served (every read checks
//! `expires`); this task only reclaims their storage after a grace period, leaving a
//! tombstone so the id is never reused. Each replica may sweep: the delete is
//! idempotent. The same task drops expired OAuth state (deny-list entries, codes,
//! sessions, refresh tokens), a bounded number of rows per pass.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::store::Database;

/// Expired rows of each OAuth table removed per pass, at most.
const PURGE_PER_PASS: u32 = 1000;

pub async fn run(db: Arc<dyn Database>, every: Duration, grace: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Timestamp::now();
        let cutoff = Timestamp::from_millis(now.millis() - grace.as_millis() as i64);
        match db.sweep_expired(cutoff, now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(swept = n, "expired contexts removed");
                metrics::counter!("ctxguard_contexts_swept_total").increment(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, "expiry sweep failed; will retry");
                metrics::counter!("ctxguard_store_errors_total", "code" => "sweep").increment(1);
            }
        }
        match db.purge_expired_grants(now, PURGE_PER_PASS).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(purged = n, "expired OAuth state removed");
                metrics::counter!("ctxguard_oauth_rows_purged_total").increment(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, "purging expired OAuth state failed; will retry");
                metrics::counter!("ctxguard_store_errors_total", "code" => "purge").increment(1);
            }
        }
    }
}
