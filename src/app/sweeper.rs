//! The expiry sweeper. Expired contexts are never served (every read checks
//! `expires`); this task only reclaims their storage after a grace period, leaving a
//! tombstone so the id is never reused. Each replica may sweep: the delete is
//! idempotent. The same task reloads the signing keys (another replica or the CLI may
//! have rotated them) and drops expired OAuth grants.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::store::Database;

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
    }
}
