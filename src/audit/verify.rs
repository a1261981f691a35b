//! Checking the chain (`ctxguard audit verify`, docs/audit.md "Verifying"): every
//! record's hash is recomputed, every record must name its predecessor's hash, the
//! sequence must have no gaps, every signed checkpoint must be ours and agree with the
//! record it names, and the chain must reach the head row and the last checkpoint.
//! The first break is named by sequence number.

use std::collections::BTreeMap;
use std::fmt;

use super::checkpoint::CheckpointKeys;
use crate::domain::StoreError;
use crate::domain::audit::{AuditRecord, GENESIS};
use crate::domain::audit_block::{self, Block, BlockIndex, Indexed, Line, Parsed};
use crate::store::{AuditStore, ChainEnds};

use super::READ_PAGE as PAGE;

/// The first thing wrong with the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Break {
    /// The record's content does not hash to its `hash`: a field was edited.
    Altered { seq: i64 },
    /// Records `from..=to` are missing (deleted).
    Missing { from: i64, to: i64 },
    /// The record hashes correctly but does not follow its predecessor: records were
    /// reordered, inserted, or the chain was rewritten from here on.
    Unlinked { seq: i64 },
    /// Record `seq` is stored after a later one: records were moved.
    Reordered { seq: i64 },
    /// The index of the block starting at record `first_seq` does not describe its
    /// records: it was edited, so `GET /admin/audit` could pass over them.
    Index { first_seq: i64 },
    /// The chain ends at `last` but the head row says `head`: the tail was cut off.
    Truncated { last: i64, head: i64 },
    /// The last record's hash is not the head row's: the tail was rewritten.
    HeadMismatch { seq: i64 },
    /// A checkpoint that is not a valid signature of ours.
    ForgedCheckpoint { seq: i64, why: String },
    /// The record is not the one the checkpoint of the same number signed: the chain
    /// was rewritten up to here at least.
    Contradicts { seq: i64 },
    /// The chain ends at `last` but checkpoint `checkpoint` signed a longer one.
    BeforeCheckpoint { last: i64, checkpoint: i64 },
    /// The chain starts after record `seq` (retention) but no signed checkpoint of
    /// that record vouches for the start.
    UnvouchedBase { seq: i64 },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Altered { seq } => write!(f, "record {seq} was altered: its content does not hash to its hash"),
            Break::Missing { from, to } if from == to => write!(f, "record {from} is missing (deleted)"),
            Break::Missing { from, to } => write!(f, "records {from} to {to} are missing (deleted)"),
            Break::Unlinked { seq } => write!(
                f,
                "record {seq} does not follow record {}: records were reordered, inserted or rewritten",
                seq - 1
            ),
            Break::Reordered { seq } => {
                write!(f, "record {seq} is stored after a later record: records were reordered")
            }
            Break::Index { first_seq } => write!(
                f,
                "the index of the block from record {first_seq} does not match its records: it was edited, and \
                 GET /admin/audit could pass over them"
            ),
            Break::Truncated { last, head } => {
                write!(f, "the chain ends at record {last} but its head says {head}: records after {last} were removed")
            }
            Break::HeadMismatch { seq } => {
                write!(f, "record {seq} is not the record the chain's head names: the tail was rewritten")
            }
            Break::ForgedCheckpoint { seq, why } => write!(f, "the checkpoint of record {seq} is not ours: {why}"),
            Break::Contradicts { seq } => write!(
                f,
                "record {seq} contradicts the signed checkpoint {seq}: the chain was rewritten up to record {seq} at least"
            ),
            Break::UnvouchedBase { seq } => write!(
                f,
                "the stored chain starts after record {seq}, but no signed checkpoint of record {seq} vouches for it: \
                 records were removed outside audit prune"
            ),
            Break::BeforeCheckpoint { last, checkpoint } => write!(
                f,
                "the chain ends at record {last} but signed checkpoint {checkpoint} says it reached {checkpoint}: \
                 records after {last} were removed"
            ),
        }
    }
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Records checked.
    pub records: u64,
    /// The last record checked.
    pub last_seq: Option<i64>,
    /// Checkpoints whose signature and record were checked.
    pub checkpoints: usize,
    pub first_break: Option<Break>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Checks the chain from `from` (the start when `None`) against the checkpoints
/// `keys` verify, calling `progress` with the number of records checked after each page.
pub async fn verify(
    store: &dyn AuditStore,
    keys: &CheckpointKeys,
    from: Option<i64>,
    mut progress: impl FnMut(u64),
) -> Result<Report, StoreError> {
    let ChainEnds { base: (base_seq, base_hash), head: (head_seq, head_hash) } = store.audit_ends().await?;
    let mut checker = Checker::new();
    for c in store.audit_checkpoints().await? {
        if let Err(why) = keys.check(&c) {
            return Ok(checker.report(Some(Break::ForgedCheckpoint { seq: c.seq, why })));
        }
        checker.checkpoints.insert(c.seq, c.hash);
    }
    // After retention the chain starts after its base, which a signed checkpoint
    // must vouch for: removing old records is only undetectable through `prune`.
    if base_seq > 0 && checker.checkpoints.get(&base_seq) != Some(&base_hash) {
        return Ok(checker.report(Some(Break::UnvouchedBase { seq: base_seq })));
    }
    checker.expect(base_seq + 1, base_hash);
    let start = from.unwrap_or(base_seq + 1).max(base_seq + 1);
    if start > base_seq + 1 {
        // Starting mid-chain: the record before `start` (when the first block holds
        // it) is trusted as the starting point; its own correctness is what a run
        // from the start checks.
        checker.expect(start, String::new());
    }
    let mut key = store.audit_block_key(start).await?;
    loop {
        let blocks = store.audit_blocks(key, PAGE).await?;
        let Some(last) = blocks.last() else { break };
        key = last.first_seq + 1;
        for block in &blocks {
            match check_block(&mut checker, block, start) {
                None => {}
                Some(Break::Missing { from, to }) => {
                    // Missing, or stored further on?
                    let later = store.audit_blocks(block.first_seq, PAGE).await?;
                    let moved = later.iter().any(|b| holds(b, from));
                    let found = if moved { Break::Reordered { seq: from } } else { Break::Missing { from, to } };
                    return Ok(checker.report(Some(found)));
                }
                Some(b) => return Ok(checker.report(Some(b))),
            }
        }
        progress(checker.records);
    }
    let last = checker.last_seq.unwrap_or(start - 1);
    let last_checkpoint = checker.checkpoints.keys().next_back().copied().unwrap_or(0);
    let end = if last < last_checkpoint {
        Some(Break::BeforeCheckpoint { last, checkpoint: last_checkpoint })
    } else if last < head_seq {
        Some(Break::Truncated { last, head: head_seq })
    } else if checker.last_seq.is_some() && last == head_seq && checker.last_hash != head_hash {
        Some(Break::HeadMismatch { seq: last })
    } else {
        None
    };
    Ok(checker.report(end))
}

/// Checks the records of `block` from `start` on, then its index.
fn check_block(checker: &mut Checker, block: &Block, start: i64) -> Option<Break> {
    let mut records: Vec<(Line<'_>, Parsed<'_>)> = Vec::with_capacity(audit_block::BLOCK_RECORDS);
    for line in audit_block::lines(&block.records) {
        // A line that is not a record is an edit of the record expected there.
        let Some(parsed) = line.ok().and_then(|l| l.parse().ok().map(|p| (l, p))) else {
            return Some(Break::Altered { seq: checker.next_seq.max(start) });
        };
        records.push(parsed);
    }
    for (line, parsed) in &records {
        if parsed.seq < start {
            if parsed.seq == start - 1 {
                checker.expect(start, line.hash.to_string());
            }
            continue;
        }
        let link = Link { seq: parsed.seq, prev_hash: &parsed.prev_hash, hash: line.hash, sound: line.sound() };
        if let Some(b) = checker.check(link) {
            return Some(b);
        }
    }
    let index = BlockIndex::of(records.iter().map(|(_, p)| Indexed::from(p)));
    let ends = (records.first().map(|(_, p)| p.seq), records.last().map(|(_, p)| p.seq));
    (index != block.index || ends != (Some(block.first_seq), Some(block.last_seq)))
        .then_some(Break::Index { first_seq: block.first_seq })
}

/// Whether `block` stores record `seq`.
fn holds(block: &Block, seq: i64) -> bool {
    audit_block::lines(&block.records).any(|l| l.ok().and_then(|l| l.parse().ok()).is_some_and(|p| p.seq == seq))
}

/// What the chain needs of one record.
pub(super) struct Link<'a> {
    pub seq: i64,
    pub prev_hash: &'a str,
    /// The hash the record claims.
    pub hash: &'a str,
    /// Whether the record's content hashes to `hash`.
    pub sound: bool,
}

impl<'a> From<&'a AuditRecord> for Link<'a> {
    fn from(r: &'a AuditRecord) -> Self {
        Link { seq: r.seq, prev_hash: &r.prev_hash, hash: &r.hash, sound: r.compute_hash() == r.hash }
    }
}

/// The running state of a check: what the next record must be.
pub(super) struct Checker {
    next_seq: i64,
    /// The previous record's hash (empty: not known, when starting mid-chain at a gap).
    prev_hash: String,
    records: u64,
    last_seq: Option<i64>,
    last_hash: String,
    /// Signed checkpoints: record → the hash they signed.
    checkpoints: BTreeMap<i64, String>,
}

impl Checker {
    pub(super) fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.into(),
            records: 0,
            last_seq: None,
            last_hash: String::new(),
            checkpoints: BTreeMap::new(),
        }
    }

    pub(super) fn expect(&mut self, seq: i64, prev_hash: String) {
        self.next_seq = seq;
        self.prev_hash = prev_hash;
    }

    pub(super) fn check(&mut self, r: Link<'_>) -> Option<Break> {
        if r.seq > self.next_seq {
            return Some(Break::Missing { from: self.next_seq, to: r.seq - 1 });
        }
        if r.seq < self.next_seq {
            return Some(Break::Reordered { seq: r.seq });
        }
        if !r.sound {
            return Some(Break::Altered { seq: r.seq });
        }
        if !self.prev_hash.is_empty() && r.prev_hash != self.prev_hash {
            return Some(Break::Unlinked { seq: r.seq });
        }
        if self.checkpoints.get(&r.seq).is_some_and(|signed| signed != r.hash) {
            return Some(Break::Contradicts { seq: r.seq });
        }
        self.records += 1;
        self.next_seq = r.seq + 1;
        self.last_seq = Some(r.seq);
        self.prev_hash.clear();
        self.prev_hash.push_str(r.hash);
        self.last_hash.clear();
        self.last_hash.push_str(r.hash);
        None
    }

    pub(super) fn last_seq(&self) -> Option<i64> {
        self.last_seq
    }

    pub(super) fn last_hash(&self) -> &str {
        &self.last_hash
    }

    pub(super) fn report(&self, first_break: Option<Break>) -> Report {
        Report { records: self.records, last_seq: self.last_seq, checkpoints: self.checkpoints.len(), first_break }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq: 0,
                    time: "2026-12-04T17:00:00.000Z".into(),
                    tenant: None,
                    principal: None,
                    principal_name: None,
                    client_id: None,
                    credential: None,
                    channel: "http".into(),
                    action: "context.read".into(),
                    target: Some(format!("context:{seq}")),
                    decision: "allow".into(),
                    reason: None,
                    policies: vec![],
                    ip: None,
                    request_id: None,
                    prev_hash: String::new(),
                    hash: String::new(),
                };
                r.seal(seq, std::mem::take(&mut prev));
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    fn first_break(records: &[AuditRecord]) -> Option<Break> {
        let mut c = Checker::new();
        records.iter().find_map(|r| c.check(Link::from(r)))
    }

    #[test]
    fn a_sound_chain_has_no_break() {
        assert_eq!(first_break(&chain(5)), None);
    }

    #[test]
    fn each_kind_of_tampering_is_named_with_its_record() {
        let mut edited = chain(5);
        edited[2].reason = Some("x".into());
        assert_eq!(first_break(&edited), Some(Break::Altered { seq: 3 }));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(first_break(&deleted), Some(Break::Missing { from: 2, to: 2 }));

        // Swapped contents, each re-sealed with its new number and a recomputed hash.
        let mut swapped = chain(5);
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = b;
        swapped[2] = a;
        let (p1, p2) = (swapped[1].prev_hash.clone(), swapped[2].prev_hash.clone());
        swapped[1].seal(2, p1);
        swapped[2].seal(3, p2);
        assert_eq!(first_break(&swapped), Some(Break::Unlinked { seq: 2 }));
    }
}
