//! The audit chain's storage (docs/audit.md "Storage"): records in blocks
//! ([`crate::domain::audit_block`]), one sequence per database. The backends store and
//! fetch blocks; reading records out of them is written once, here.

use async_trait::async_trait;

use crate::domain::audit::{AuditRecord, Checkpoint, PendingRecord};
use crate::domain::audit_block::{self, Block, Indexed};
use crate::domain::{StoreError, Timestamp};

/// Blocks fetched per query when reading records out of them.
const BLOCKS_PER_READ: u32 = 16;

/// Which audit records a query wants (`GET /admin/audit`), newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this tenant's records (an admin of one tenant); `None`: every tenant.
    pub tenant: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub decision: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Records with a smaller `seq` only (the cursor).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

impl AuditQuery {
    /// The text filters by index set: (column, wanted value).
    pub fn members(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("tenants", self.tenant.as_deref()),
            ("principals", self.principal.as_deref()),
            ("actions", self.action.as_deref()),
            ("targets", self.target.as_deref()),
            ("decisions", self.decision.as_deref()),
        ]
    }

    /// `since` and `until` as records write their time (RFC 3339 text, ordered as text).
    pub fn time_bounds(&self) -> (Option<String>, Option<String>) {
        (self.since.map(|t| t.to_rfc3339_millis()), self.until.map(|t| t.to_rfc3339_millis()))
    }

    /// Whether record `seq` with these fields is one the query wants (the exact test;
    /// the index only narrows the blocks read).
    fn matches(&self, seq: i64, r: Indexed<'_>, (since, until): &(Option<String>, Option<String>)) -> bool {
        let is = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        self.before_seq.is_none_or(|b| seq < b)
            && is(&self.tenant, r.tenant)
            && is(&self.principal, r.principal)
            && is(&self.action, Some(r.action))
            && is(&self.target, r.target)
            && is(&self.decision, Some(r.decision))
            && since.as_deref().is_none_or(|s| r.time >= s)
            && until.as_deref().is_none_or(|u| r.time < u)
    }
}

/// The ends of the stored audit chain: `base` is the last record retention removed
/// (`(0, GENESIS)` before any), `head` the last record written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEnds {
    pub base: (i64, String),
    pub head: (i64, String),
}

/// The audit chain (docs/audit.md). One sequence per database: the writer of every
/// process appends under the lock of the chain's head row.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Chains `records` after the current end, in order, in one transaction (giving
    /// each its `seq`, `prev_hash` and `hash`), stores them as blocks, and returns the
    /// last one's `seq` and hash.
    async fn append_audit(&self, records: &mut [PendingRecord]) -> Result<(i64, String), StoreError>;
    /// As [`Self::append_audit`], for a writer that knows where the chain ended after
    /// its own last append (`after`): the head is not read first, one database round
    /// trip less per batch. `None`, with nothing written, when the chain has moved on
    /// since (another process appended); the caller then appends the usual way. A
    /// backend where other writers are the rule (PostgreSQL replicas) just appends.
    async fn append_audit_after(
        &self,
        records: &mut [PendingRecord],
        after: &(i64, String),
    ) -> Result<Option<(i64, String)>, StoreError>;
    /// Stores a signed checkpoint (a second one of the same record is ignored).
    async fn add_audit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Every checkpoint, by `seq`.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Where to start reading to find record `seq`: the key (`first_seq`) of the last
    /// block starting at or before it, or `seq` itself when none does.
    async fn audit_block_key(&self, seq: i64) -> Result<i64, StoreError>;
    /// Up to `limit` blocks whose key is `from_key` or more, in key order.
    async fn audit_blocks(&self, from_key: i64, limit: u32) -> Result<Vec<Block>, StoreError>;
    /// Up to `limit` blocks, newest first, with a key below `before_key` (if any),
    /// whose index says they may hold records `query` wants.
    async fn audit_candidates(
        &self,
        query: &AuditQuery,
        before_key: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Block>, StoreError>;
    /// Where the stored chain starts and ends, as the head row says.
    async fn audit_ends(&self) -> Result<ChainEnds, StoreError>;
    /// Retention: removes records up to and including `through` and the checkpoints
    /// before it, and makes `through` the chain's base — in one transaction, the only
    /// one that opens the triggers' gate. Returns how many records went.
    async fn prune_audit(&self, through: i64) -> Result<u64, StoreError>;
    /// Records still stored one per row, as before blocks (migration 0010 on SQLite,
    /// 0011 on PostgreSQL).
    async fn legacy_audit_records(&self) -> Result<u64, StoreError>;
    /// Moves up to `batch` of those into blocks, oldest first, keeping their hashes as
    /// stored; returns how many moved.
    async fn convert_legacy_audit(&self, batch: u32) -> Result<u64, StoreError>;

    /// Up to `limit` records with `seq >= from`, in stored order.
    async fn audit_records(&self, from: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        let mut key = self.audit_block_key(from).await?;
        while out.len() < limit as usize {
            let blocks = self.audit_blocks(key, BLOCKS_PER_READ).await?;
            let Some(last) = blocks.last() else { break };
            key = last.first_seq + 1;
            for block in &blocks {
                for line in audit_block::lines(&block.records) {
                    let record = line.map_err(corrupt)?.record().map_err(corrupt)?;
                    if record.seq >= from && out.len() < limit as usize {
                        out.push(record);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The records `query` wants, newest first.
    async fn audit_query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let bounds = query.time_bounds();
        let mut out = Vec::new();
        let mut before = query.before_seq;
        while out.len() < query.limit as usize {
            let blocks = self.audit_candidates(query, before, BLOCKS_PER_READ).await?;
            let Some(last) = blocks.last() else { break };
            before = Some(last.first_seq);
            for block in &blocks {
                let lines: Vec<_> = audit_block::lines(&block.records).collect::<Result<_, _>>().map_err(corrupt)?;
                for line in lines.iter().rev() {
                    let parsed = line.parse().map_err(corrupt)?;
                    if out.len() < query.limit as usize && query.matches(parsed.seq, Indexed::from(&parsed), &bounds) {
                        out.push(line.record().map_err(corrupt)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("audit block: {e}"))
}
