//! The one cache shape every hot-path cache uses: a bounded map whose entries carry the
//! [`Stamp`] of the change counter they were filled under, and are served only while
//! [`ChangeClock::is_current`] says nothing in their bucket changed since.
//!
//! Fill pattern: take `clock.stamp(bucket)` *before* reading the database, then insert
//! with it (a change that lands in between leaves the entry stale from the start). A
//! `None` stamp means the clock is not fresh: read through and cache nothing.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{Bucket, ChangeClock, Stamp};

struct Entry<V> {
    value: V,
    stamp: Stamp,
}

pub struct StampedCache<K, V> {
    entries: Option<Cache<K, Arc<Entry<V>>>>,
}

impl<K, V> StampedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` entries, each kept at most `ttl`; capacity 0 caches nothing.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let entries = (capacity > 0).then(|| Cache::builder().max_capacity(capacity).time_to_live(ttl).build());
        Self { entries }
    }

    /// At most `max_weight` in total by `weigh` (e.g. bytes); 0 caches nothing.
    pub fn weighted(max_weight: u64, weigh: fn(&V) -> u32) -> Self {
        let entries = (max_weight > 0).then(|| {
            Cache::builder().max_capacity(max_weight).weigher(move |_, e: &Arc<Entry<V>>| weigh(&e.value)).build()
        });
        Self { entries }
    }

    /// The cached value, if its bucket has not changed since it was filled.
    pub fn get(&self, key: &K, clock: &ChangeClock) -> Option<V> {
        let entries = self.entries.as_ref()?;
        let entry = entries.get(key)?;
        if clock.is_current(entry.stamp) {
            return Some(entry.value.clone());
        }
        entries.invalidate(key);
        None
    }

    /// The cached value, or else `load`'s, cached under a stamp taken before loading
    /// (when the clock is fresh). A missing value is not cached.
    pub async fn get_or_load<E, Fut>(
        &self,
        key: K,
        clock: &ChangeClock,
        bucket: Bucket,
        load: impl FnOnce() -> Fut,
    ) -> Result<Option<V>, E>
    where
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(hit) = self.get(&key, clock) {
            return Ok(Some(hit));
        }
        let stamp = clock.stamp(bucket);
        let loaded = load().await?;
        if let (Some(stamp), Some(v)) = (stamp, &loaded) {
            self.insert(key, v.clone(), stamp);
        }
        Ok(loaded)
    }

    pub fn insert(&self, key: K, value: V, stamp: Stamp) {
        if let Some(entries) = &self.entries {
            entries.insert(key, Arc::new(Entry { value, stamp }));
        }
    }

    pub fn invalidate(&self, key: &K) {
        if let Some(entries) = &self.entries {
            entries.invalidate(key);
        }
    }

    /// (entries, total weight) after pending evictions are applied: bytes for a cache
    /// made with [`StampedCache::weighted`].
    pub fn usage(&self) -> (u64, u64) {
        match &self.entries {
            Some(entries) => {
                entries.run_pending_tasks();
                (entries.entry_count(), entries.weighted_size())
            }
            None => (0, 0),
        }
    }

    pub fn invalidate_all(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Bucket;

    #[test]
    fn entries_go_stale_with_their_bucket_only() {
        let clock = ChangeClock::new(Duration::from_secs(5));
        clock.synced(std::time::Instant::now());
        let cache: StampedCache<u32, String> = StampedCache::new(10, Duration::from_secs(60));
        cache.insert(1, "auth".into(), clock.stamp(Bucket::Auth).unwrap());
        cache.insert(2, "ctx".into(), clock.stamp(Bucket::Context(3)).unwrap());
        assert_eq!(cache.get(&1, &clock).as_deref(), Some("auth"));
        clock.observe(Bucket::Context(3), 1);
        assert_eq!(cache.get(&2, &clock), None);
        assert_eq!(cache.get(&1, &clock).as_deref(), Some("auth"));
        cache.invalidate(&1);
        assert_eq!(cache.get(&1, &clock), None);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let clock = ChangeClock::new(Duration::from_secs(5));
        clock.synced(std::time::Instant::now());
        let cache: StampedCache<u32, u32> = StampedCache::weighted(0, |_| 1);
        cache.insert(1, 1, clock.stamp(Bucket::Auth).unwrap());
        assert_eq!(cache.get(&1, &clock), None);
    }
}
