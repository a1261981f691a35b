//! The latest version of hot contexts, kept in memory in front of the database.
//!
//! A read of a context is the hot path of every agent; without this every `GET` costs
//! a database round trip. Entries are the stored bytes plus what a read must check
//! (authorization facts, version, expiry — expiry is still checked on every read
//! by the service). Staleness is ruled out by the change counters (see `changes.rs`):
//! an entry is served only while its bucket's counter is the one it was filled under
//! and this process's mirror is fresh. Writes made here drop the entry at once.
//! Tombstones and misses are not cached: they are cheap to look up and rare.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;

use super::body::{self, Body};
use super::{
    Bucket, ContextStore, Database, FactsRecord, GrantMutation, ListedContext, Mutation, RawContextRecord,
    StampedCache, VersionInfo, Written,
};
use crate::domain::{
    ContextFacts, ContextGrant, ContextId, Error, NewMessages, PrincipalId, StoreError, StoredContext, TenantId,
    Timestamp, Version,
};

#[derive(Clone, Debug)]
struct Head {
    facts: ContextFacts,
    version: Version,
    expires_at: Option<Timestamp>,
    body: Body,
}

/// Per-entry bookkeeping counted against the byte budget besides the body.
const ENTRY_OVERHEAD: u32 = 160;

/// A [`ContextStore`] that answers `get_raw` from memory when it safely can.
pub struct CachedContexts {
    db: Arc<dyn Database>,
    heads: StampedCache<(TenantId, ContextId), Head>,
}

impl CachedContexts {
    /// A cache of at most `max_bytes` of context bodies.
    pub fn new(db: Arc<dyn Database>, max_bytes: u64) -> Self {
        let heads = StampedCache::weighted(max_bytes, |h: &Head| {
            let layout = h.body.layout.spans.len() * std::mem::size_of::<std::ops::Range<usize>>();
            u32::try_from(h.body.json.len() + layout).unwrap_or(u32::MAX).saturating_add(ENTRY_OVERHEAD)
        });
        Self { db, heads }
    }
}

/// The cached head after `written`, from the cached head it was written on — only if
/// that was exactly the version the write followed (another process may have written
/// in between; then there is nothing to build on).
fn next_head(before: Option<Head>, written: &Written) -> Option<Head> {
    let next = &written.head;
    let before = before.filter(|b| b.version.next() == next.version)?;
    let serialize = |entries: &[crate::domain::HistoryEntry]| -> Option<Vec<Cow<'_, str>>> {
        entries.iter().map(|e| serde_json::to_string(e).ok().map(Cow::Owned)).collect()
    };
    let kept = || -> Option<Vec<Cow<'_, str>>> {
        before
            .body
            .messages(0..before.body.history_len())
            .map(|m| std::str::from_utf8(m).ok().map(Cow::Borrowed))
            .collect()
    };
    let messages = match &written.messages {
        NewMessages::Keep => kept()?,
        NewMessages::Append(added) => {
            let mut all = kept()?;
            all.extend(serialize(added)?);
            all
        }
        NewMessages::Replace(entries) => serialize(entries)?,
    };
    if messages.len() != next.history_len {
        return None;
    }
    let metadata = serde_json::to_string(&next.metadata).ok()?;
    let parts = body::Parts {
        context_id: next.context_id,
        metadata: &metadata,
        expires: next.expires,
        version: next.version,
        created_at: next.created_at,
        updated_at: next.updated_at,
        signature: written.signature.as_deref(),
    };
    let facts = ContextFacts { labels: crate::domain::grant::labels_of(&next.metadata).into(), ..before.facts };
    Some(Head { facts, version: next.version, expires_at: next.expires, body: body::assemble(&parts, &messages).ok()? })
}

impl CachedContexts {
    /// Publishes the cache's entries and bytes (bodies and their layouts) as gauges.
    pub fn report(&self) {
        let (entries, bytes) = self.heads.usage();
        metrics::gauge!("ctxguard_context_cache_entries").set(entries as f64);
        metrics::gauge!("ctxguard_context_cache_bytes").set(bytes as f64);
    }
}

#[async_trait]
impl ContextStore for CachedContexts {
    async fn facts(&self, tenant: TenantId, id: ContextId) -> Result<Option<FactsRecord>, StoreError> {
        if let Some(h) = self.heads.get(&(tenant, id), self.db.changes()) {
            return Ok(Some(FactsRecord::Live(h.facts)));
        }
        self.db.facts(tenant, id).await
    }

    async fn get_raw(&self, tenant: TenantId, id: ContextId) -> Result<Option<RawContextRecord>, StoreError> {
        let key = (tenant, id);
        let changes = self.db.changes();
        if let Some(h) = self.heads.get(&key, changes) {
            return Ok(Some(RawContextRecord::Live {
                facts: h.facts,
                version: h.version,
                expires_at: h.expires_at,
                body: h.body,
            }));
        }
        // Stamped before the read: a change that lands in between makes the entry stale.
        let stamp = changes.stamp(Bucket::of_context(id));
        let found = self.db.get_raw(tenant, id).await?;
        if let (Some(stamp), Some(RawContextRecord::Live { facts, version, expires_at, body })) = (stamp, &found) {
            let head = Head { facts: facts.clone(), version: *version, expires_at: *expires_at, body: body.clone() };
            self.heads.insert(key, head, stamp);
        }
        Ok(found)
    }

    async fn get_version(
        &self,
        tenant: TenantId,
        id: ContextId,
        version: Version,
    ) -> Result<Option<StoredContext>, StoreError> {
        self.db.get_version(tenant, id, version).await
    }

    async fn versions(&self, tenant: TenantId, id: ContextId) -> Result<Vec<VersionInfo>, StoreError> {
        self.db.versions(tenant, id).await
    }

    async fn create(
        &self,
        tenant: TenantId,
        owner: PrincipalId,
        context: &StoredContext,
    ) -> Result<Option<String>, StoreError> {
        self.db.create(tenant, owner, context).await
    }

    /// Writes through: when the version the write started from was cached here, the
    /// new version is put together from it and the written messages and cached under
    /// the write's own stamp — the writer reads its write (and answers with it) without
    /// reading the history back from the database.
    async fn update(&self, tenant: TenantId, id: ContextId, mutate: Mutation<'_>) -> Result<Written, Error> {
        let key = (tenant, id);
        let before = self.heads.get(&key, self.db.changes());
        let result = self.db.update(tenant, id, mutate).await;
        self.heads.invalidate(&key);
        if let Ok(written) = &result
            && let Some(stamp) = written.stamp
            && let Some(head) = next_head(before, written)
        {
            self.heads.insert(key, head, stamp);
        }
        result
    }

    async fn list(
        &self,
        tenant: TenantId,
        now: Timestamp,
        before_seq: Option<i64>,
        limit: u32,
        author: Option<PrincipalId>,
    ) -> Result<Vec<ListedContext>, StoreError> {
        self.db.list(tenant, now, before_seq, limit, author).await
    }

    async fn update_grants(
        &self,
        tenant: TenantId,
        id: ContextId,
        mutate: GrantMutation<'_>,
    ) -> Result<Vec<ContextGrant>, Error> {
        let result = self.db.update_grants(tenant, id, mutate).await;
        self.heads.invalidate(&(tenant, id));
        result
    }

    async fn delete(
        &self,
        tenant: TenantId,
        id: ContextId,
        expected: Option<Version>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = self.db.delete(tenant, id, expected, now).await;
        self.heads.invalidate(&(tenant, id));
        result
    }

    async fn sweep_expired(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        let swept = self.db.sweep_expired(cutoff, now).await?;
        if swept > 0 {
            self.heads.invalidate_all();
        }
        Ok(swept)
    }
}
