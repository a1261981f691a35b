//! Recently verified credentials, so that a busy agent's every request does not cost a
//! signature check and a database round trip.
//!
//! Keyed by SHA-256 of the presented token; a hit is served only if
//! - the `auth` change counter is the one the entry was filled under (any revocation,
//!   key change, principal change or deny-list entry, made by any replica or the CLI,
//!   bumps it — see `store/changes.rs`) and this process's mirror of it is fresh, and
//! - the credential is still within its own lifetime (and, for an access token, was
//!   issued for the resource being asked for).
//!
//! Anything else falls through to the full check, which also produces the error
//! message. Failures are never cached. Entries live at most [`TTL`].

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Caller;
use crate::domain::Timestamp;
use crate::jwt::LEEWAY_SECS;
use crate::store::{ChangeClock, Stamp, StampedCache};

/// The longest an entry is kept, whatever else happens.
pub const TTL: Duration = Duration::from_secs(60);

/// How long a verified credential remains acceptable on its own terms.
#[derive(Clone, Debug)]
pub enum Validity {
    /// An API key, until its expiry (if any).
    ApiKey { expires_at: Option<Timestamp> },
    /// One of our access tokens: its time window (seconds) and audience.
    AccessToken { not_before: i64, expires: i64, audience: String },
}

impl Validity {
    fn holds(&self, resource: &str) -> bool {
        let now = Timestamp::now();
        match self {
            Validity::ApiKey { expires_at } => expires_at.is_none_or(|e| now < e),
            Validity::AccessToken { not_before, expires, audience } => {
                let secs = now.millis() / 1000;
                let leeway = LEEWAY_SECS as i64;
                *not_before - leeway <= secs && secs <= *expires + leeway && audience == resource
            }
        }
    }
}

struct Entry {
    caller: Caller,
    validity: Validity,
}

pub struct CredentialCache {
    entries: StampedCache<[u8; 32], Arc<Entry>>,
}

/// The cache key of a presented token.
pub fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl CredentialCache {
    /// Holds up to `capacity` credentials; 0 turns caching off.
    pub fn new(capacity: u64) -> Self {
        Self { entries: StampedCache::new(capacity, TTL) }
    }

    pub fn get(&self, key: &[u8; 32], resource: &str, changes: &ChangeClock) -> Option<Caller> {
        let entry = self.entries.get(key, changes)?;
        entry.validity.holds(resource).then(|| entry.caller.clone())
    }

    pub fn insert(&self, key: [u8; 32], caller: Caller, validity: Validity, stamp: Stamp) {
        self.entries.insert(key, Arc::new(Entry { caller, validity }), stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ScopeSet;
    use crate::store::Bucket;

    fn caller() -> Caller {
        crate::authn::test_caller(&[], ScopeSet::all())
    }

    fn synced_clock() -> ChangeClock {
        let clock = ChangeClock::new(Duration::from_secs(5));
        clock.synced(std::time::Instant::now());
        clock
    }

    #[test]
    fn a_hit_needs_an_unchanged_counter() {
        let clock = synced_clock();
        let cache = CredentialCache::new(10);
        let k = key("ctxg_x");
        cache.insert(k, caller(), Validity::ApiKey { expires_at: None }, clock.stamp(Bucket::Auth).unwrap());
        assert!(cache.get(&k, "r", &clock).is_some());
        assert!(cache.get(&key("ctxg_y"), "r", &clock).is_none(), "another token is another entry");
        clock.observe(Bucket::Auth, 1);
        assert!(cache.get(&k, "r", &clock).is_none(), "a revocation anywhere empties the cache");
    }

    #[test]
    fn a_hit_rechecks_lifetime_and_audience() {
        let clock = synced_clock();
        let cache = CredentialCache::new(10);
        let now = Timestamp::now().millis() / 1000;
        let stamp = clock.stamp(Bucket::Auth).unwrap();
        let live = Validity::AccessToken { not_before: now, expires: now + 60, audience: "https://a".into() };
        cache.insert(key("t1"), caller(), live, stamp);
        assert!(cache.get(&key("t1"), "https://a", &clock).is_some());
        assert!(cache.get(&key("t1"), "https://a/mcp", &clock).is_none(), "other audience");
        let old = Validity::AccessToken { not_before: now - 600, expires: now - 300, audience: "https://a".into() };
        cache.insert(key("t2"), caller(), old, stamp);
        assert!(cache.get(&key("t2"), "https://a", &clock).is_none(), "expired");
        let expired_key = Validity::ApiKey { expires_at: Some(Timestamp::from_millis(Timestamp::now().millis() - 1)) };
        cache.insert(key("k"), caller(), expired_key, stamp);
        assert!(cache.get(&key("k"), "r", &clock).is_none(), "expired API key");
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let clock = synced_clock();
        let cache = CredentialCache::new(0);
        cache.insert(key("k"), caller(), Validity::ApiKey { expires_at: None }, clock.stamp(Bucket::Auth).unwrap());
        assert!(cache.get(&key("k"), "r", &clock).is_none());
    }
}
