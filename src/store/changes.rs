//! Change counters: how a replica knows whether something it cached is still true.
//!
//! The database keeps one counter per bucket (`change_counters`): `auth` for
//! principals, API keys, OAuth clients and the token deny-list, and 256 context buckets keyed by the
//! last byte of the context id. Triggers bump a counter in the same transaction as the
//! change, so no write path — this process, another replica or the CLI — can forget to.
//!
//! Each process mirrors the counters in a [`ChangeClock`]. A cache entry is stamped
//! with its bucket's counter *before* the database read that filled it, and is served
//! only while the counter is unchanged **and** the mirror is fresh: its last complete
//! sync started less than `max_staleness` ago. So a change committed at time `t`
//! anywhere is never served from a cache after `t + max_staleness`; in this process it
//! is not served at all after the write returns (the writer syncs before returning).
//! If syncing stops (database down, task stalled) the caches stop answering rather
//! than serve stale data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Database;
use crate::domain::ContextId;

const CONTEXT_BUCKETS: usize = 256;
const AUTH_INDEX: usize = CONTEXT_BUCKETS;
const NEVER: u64 = u64::MAX;

/// What a counter covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Principals, API keys, OAuth clients and the access-token deny-list.
    Auth,
    /// Contexts whose id ends in this byte.
    Context(u8),
}

impl Bucket {
    pub fn of_context(id: ContextId) -> Self {
        Bucket::Context(id.as_uuid().as_bytes()[15])
    }

    fn index(self) -> usize {
        match self {
            Bucket::Auth => AUTH_INDEX,
            Bucket::Context(b) => usize::from(b),
        }
    }

    /// The bucket's name in `change_counters`.
    pub fn name(self) -> String {
        match self {
            Bucket::Auth => "auth".into(),
            Bucket::Context(b) => format!("c{b:02x}"),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auth" => Some(Bucket::Auth),
            _ => {
                let hex = name.strip_prefix('c').filter(|h| h.len() == 2)?;
                u8::from_str_radix(hex, 16).ok().map(Bucket::Context)
            }
        }
    }
}

/// The counters in the form the sync query returns them: `bucket:n` pairs separated by
/// commas. Unknown buckets and malformed pairs are skipped; a negative count reads as 0.
pub fn parse_counters(all: &str) -> impl Iterator<Item = (Bucket, u64)> + '_ {
    all.split(',').filter_map(|pair| {
        let (name, n) = pair.split_once(':')?;
        Some((Bucket::parse(name)?, n.parse::<i64>().ok()?.max(0) as u64))
    })
}

/// A bucket's counter as it was when a cache entry was filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    bucket: Bucket,
    n: u64,
}

/// This process's mirror of the database's change counters.
pub struct ChangeClock {
    counters: Vec<AtomicU64>,
    origin: Instant,
    /// Milliseconds after `origin` at which the last complete sync started.
    synced_at_ms: AtomicU64,
    max_staleness: Duration,
}

impl ChangeClock {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            counters: (0..=CONTEXT_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            origin: Instant::now(),
            synced_at_ms: AtomicU64::new(NEVER),
            max_staleness,
        }
    }

    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    /// The stamp for an entry about to be filled from the database, or `None` when the
    /// mirror is not fresh enough for anything to be cached.
    pub fn stamp(&self, bucket: Bucket) -> Option<Stamp> {
        self.fresh().then(|| Stamp { bucket, n: self.counters[bucket.index()].load(Ordering::Acquire) })
    }

    /// Whether an entry with this stamp may still be served.
    /// A stamp for a value this process wrote itself: `n` is the bucket's counter as the
    /// writing transaction left it, so an entry stamped with it goes stale as soon as
    /// anyone writes after it (here or on another replica).
    pub fn stamp_at(&self, bucket: Bucket, n: u64) -> Option<Stamp> {
        self.fresh().then_some(Stamp { bucket, n })
    }

    pub fn is_current(&self, stamp: Stamp) -> bool {
        self.fresh() && self.counters[stamp.bucket.index()].load(Ordering::Acquire) == stamp.n
    }

    /// Records a counter value read from the database. Counters only move forward.
    pub fn observe(&self, bucket: Bucket, n: u64) {
        self.counters[bucket.index()].fetch_max(n, Ordering::AcqRel);
    }

    /// Records that a sync which started at `started` has observed every counter.
    pub fn synced(&self, started: Instant) {
        let ms = u64::try_from(started.saturating_duration_since(self.origin).as_millis()).unwrap_or(NEVER - 1);
        let current = self.synced_at_ms.load(Ordering::Acquire);
        if current == NEVER || ms > current {
            self.synced_at_ms.store(ms, Ordering::Release);
        }
    }

    fn fresh(&self) -> bool {
        let at = self.synced_at_ms.load(Ordering::Acquire);
        if at == NEVER {
            return false;
        }
        let synced = self.origin + Duration::from_millis(at);
        Instant::now().saturating_duration_since(synced) < self.max_staleness
    }
}

/// Keeps this process's mirror fresh until `stop`: one small query every `every`. A
/// failed sync is retried on the next tick; meanwhile the mirror goes stale and the
/// caches fall back to the database, which is what a failure should cost.
pub async fn follow(db: Arc<dyn Database>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        match db.sync_changes().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("change sync recovered; caches answer again");
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "change sync failed; caches are bypassed until it recovers");
                }
                failing = true;
                metrics::counter!("ctxguard_store_errors_total", "code" => "change_sync").increment(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_round_trip_and_match_the_sql() {
        assert_eq!(Bucket::parse("auth"), Some(Bucket::Auth));
        assert_eq!(Bucket::parse("c00"), Some(Bucket::Context(0)));
        assert_eq!(Bucket::parse("cff"), Some(Bucket::Context(255)));
        assert_eq!(Bucket::parse("cfff"), None);
        assert_eq!(Bucket::parse("x00"), None);
        for b in [Bucket::Auth, Bucket::Context(0), Bucket::Context(0x5e)] {
            assert_eq!(Bucket::parse(&b.name()), Some(b));
        }
        // The SQL triggers take the last two characters of the id's text form.
        let id: ContextId = "6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5fa7".parse().unwrap();
        assert_eq!(Bucket::of_context(id), Bucket::Context(0xa7));
    }

    #[test]
    fn counters_are_read_from_their_text_form() {
        let all: Vec<_> = parse_counters("auth:7,c00:0,cff:12,bogus:3,c01:x,c02:-4,c03").collect();
        assert_eq!(
            all,
            [(Bucket::Auth, 7), (Bucket::Context(0), 0), (Bucket::Context(255), 12), (Bucket::Context(2), 0)]
        );
        assert_eq!(parse_counters("").count(), 0);
    }

    #[test]
    fn nothing_is_current_before_the_first_sync() {
        let clock = ChangeClock::new(Duration::from_secs(1));
        assert_eq!(clock.stamp(Bucket::Auth), None);
        clock.synced(Instant::now());
        assert!(clock.stamp(Bucket::Auth).is_some());
    }

    #[test]
    fn a_counter_change_invalidates_only_its_bucket() {
        let clock = ChangeClock::new(Duration::from_secs(1));
        clock.synced(Instant::now());
        let auth = clock.stamp(Bucket::Auth).unwrap();
        let ctx = clock.stamp(Bucket::Context(7)).unwrap();
        clock.observe(Bucket::Context(7), 1);
        assert!(clock.is_current(auth));
        assert!(!clock.is_current(ctx));
        // An older observation never moves a counter back (a stale entry stays stale).
        clock.observe(Bucket::Context(7), 0);
        assert!(!clock.is_current(ctx));
        assert!(clock.is_current(clock.stamp(Bucket::Context(7)).unwrap()));
    }

    #[test]
    fn a_stale_mirror_serves_nothing() {
        let clock = ChangeClock::new(Duration::from_millis(30));
        clock.synced(Instant::now());
        let stamp = clock.stamp(Bucket::Auth).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!clock.is_current(stamp), "no sync within max_staleness: nothing may be served");
        assert_eq!(clock.stamp(Bucket::Auth), None);
        clock.synced(Instant::now());
        assert!(clock.is_current(stamp));
    }
}
