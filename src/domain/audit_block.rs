//! How the audit chain is stored (docs/audit.md "Storage"): records in blocks, each
//! block one database row holding up to [`BLOCK_RECORDS`] consecutive records as text,
//! one line per record:
//!
//! ```text
//! <hash: 64 lowercase hex> SP <the record's RFC 8785 canonical JSON without hash> LF
//! ```
//!
//! The JSON is exactly the bytes the hash is taken over, so checking a record costs one
//! SHA-256 and one parse, and writing a batch costs one row per block instead of one per
//! record with its index entries. Beside the text a block keeps an index of what
//! `GET /admin/audit` filters on (sequence range, time range, and the set of tenants,
//! principals, actions, targets and decisions it contains); queries use it to skip
//! blocks and then filter the records exactly, and `audit verify` checks that it
//! matches the records, so editing it to hide records is detected like any other edit.

use std::borrow::Cow;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::audit::{AuditRecord, hex};

/// Most records per block: a batch of the writer is one or two blocks; a block that
/// matches a query is decoded whole, so blocks stay small enough for that to be cheap.
pub const BLOCK_RECORDS: usize = 256;

/// Length of a line's hash prefix.
const HASH_LEN: usize = 64;

/// One stored block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub first_seq: i64,
    pub last_seq: i64,
    pub index: BlockIndex,
    /// The records' lines.
    pub records: String,
}

/// What a block contains, for skipping it: each set is its distinct values, sorted,
/// written `"\nA\nB\n"` so that `"\nA\n"` is found in it exactly when `A` is a member
/// (`None`: some value holds a line break, so the set cannot say; the block is then
/// always read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockIndex {
    /// Earliest and latest `time` (RFC 3339 with milliseconds, UTC: ordered as text).
    pub min_time: String,
    pub max_time: String,
    pub tenants: Option<String>,
    pub principals: Option<String>,
    pub actions: Option<String>,
    pub targets: Option<String>,
    pub decisions: Option<String>,
}

/// The fields of one record the index is made of.
#[derive(Clone, Copy, Debug)]
pub struct Indexed<'a> {
    pub time: &'a str,
    pub tenant: Option<&'a str>,
    pub principal: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub decision: &'a str,
}

impl<'a> From<&'a AuditRecord> for Indexed<'a> {
    fn from(r: &'a AuditRecord) -> Self {
        Indexed {
            time: &r.time,
            tenant: r.tenant.as_deref(),
            principal: r.principal.as_deref(),
            action: &r.action,
            target: r.target.as_deref(),
            decision: &r.decision,
        }
    }
}

impl<'a> From<&'a Parsed<'a>> for Indexed<'a> {
    fn from(p: &'a Parsed<'a>) -> Self {
        Indexed {
            time: &p.time,
            tenant: p.tenant.as_deref(),
            principal: p.principal.as_deref(),
            action: &p.action,
            target: p.target.as_deref(),
            decision: &p.decision,
        }
    }
}

impl BlockIndex {
    /// The index of `records` (in any order).
    pub fn of<'a>(records: impl IntoIterator<Item = Indexed<'a>>) -> Self {
        let mut sets: [Vec<&str>; 5] = Default::default();
        let (mut min_time, mut max_time): (Option<&str>, Option<&str>) = (None, None);
        for r in records {
            min_time = Some(min_time.map_or(r.time, |t| t.min(r.time)));
            max_time = Some(max_time.map_or(r.time, |t| t.max(r.time)));
            let values = [r.tenant, r.principal, Some(r.action), r.target, Some(r.decision)];
            for (set, value) in sets.iter_mut().zip(values) {
                set.extend(value);
            }
        }
        let [tenants, principals, actions, targets, decisions] = sets.map(set);
        BlockIndex {
            min_time: min_time.unwrap_or_default().to_string(),
            max_time: max_time.unwrap_or_default().to_string(),
            tenants,
            principals,
            actions,
            targets,
            decisions,
        }
    }
}

fn set(mut values: Vec<&str>) -> Option<String> {
    if values.iter().any(|v| v.contains('\n')) {
        return None;
    }
    values.sort_unstable();
    values.dedup();
    let mut out = String::with_capacity(1 + values.iter().map(|v| v.len() + 1).sum::<usize>());
    out.push('\n');
    for v in values {
        out.push_str(v);
        out.push('\n');
    }
    Some(out)
}

/// What a set in the index is searched for to find `value` (`None`: a value with a
/// line break, which no set records; every block must then be read).
pub fn member_token(value: &str) -> Option<String> {
    (!value.contains('\n')).then(|| format!("\n{value}\n"))
}

/// Gives `record` its place (number `seq`, after the record whose hash is `prev_hash`),
/// computes its hash and appends its line to `text`. The canonical JSON is written once,
/// into `text`, and hashed where it lies.
pub fn seal_into(record: &mut AuditRecord, seq: i64, prev_hash: String, text: &mut String) {
    record.seq = seq;
    record.prev_hash = prev_hash;
    let start = text.len();
    text.push_str(super::audit::GENESIS);
    text.push(' ');
    record.write_canonical(text);
    record.hash = hex(&Sha256::digest(&text.as_bytes()[start + HASH_LEN + 1..]));
    text.replace_range(start..start + HASH_LEN, &record.hash);
    text.push('\n');
}

/// Appends `record`'s line with the hash it carries, right or wrong (converting records
/// stored one per row: a hash that does not match stays detectable).
pub fn append_as_stored(record: &AuditRecord, text: &mut String) {
    text.push_str(&record.hash);
    text.push(' ');
    record.write_canonical(text);
    text.push('\n');
}

/// One record's line.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// The hash the line claims (64 characters when well formed).
    pub hash: &'a str,
    /// The hashed bytes.
    pub json: &'a str,
}

/// A line that is not `hash SP json`.
#[derive(Debug, thiserror::Error)]
#[error("an audit block holds a malformed line")]
pub struct Malformed;

/// The lines of a block's text, in order.
pub fn lines(text: &str) -> impl Iterator<Item = Result<Line<'_>, Malformed>> {
    text.split_terminator('\n').map(|l| {
        match (l.get(..HASH_LEN), l.get(HASH_LEN..HASH_LEN + 1), l.get(HASH_LEN + 1..)) {
            (Some(hash), Some(" "), Some(json)) => Ok(Line { hash, json }),
            _ => Err(Malformed),
        }
    })
}

/// The fields of a record `verify` and queries look at, borrowed from the line where
/// they need no unescaping.
#[derive(Debug, Deserialize)]
pub struct Parsed<'a> {
    pub seq: i64,
    #[serde(borrow)]
    pub prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub tenant: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub principal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub target: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub decision: Cow<'a, str>,
}

impl<'a> Line<'a> {
    /// Whether the JSON hashes to the line's hash.
    pub fn sound(&self) -> bool {
        let digest = Sha256::digest(self.json.as_bytes());
        // Compared as bytes, without formatting the digest.
        self.hash.len() == HASH_LEN
            && self.hash.as_bytes().chunks(2).zip(digest.iter()).all(|(pair, byte)| {
                let nibble = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                matches!((nibble(pair[0]), nibble(pair[1])), (Some(h), Some(l)) if (h << 4 | l) == *byte)
            })
    }

    pub fn parse(&self) -> Result<Parsed<'a>, serde_json::Error> {
        serde_json::from_str(self.json)
    }

    /// The whole record, `hash` included.
    pub fn record(&self) -> Result<AuditRecord, serde_json::Error> {
        let body = self.json.strip_prefix('{').unwrap_or(self.json);
        let mut with_hash = String::with_capacity(self.json.len() + HASH_LEN + 10);
        with_hash.push_str("{\"hash\":");
        with_hash.push_str(&serde_json::to_string(self.hash)?);
        if body != "}" {
            with_hash.push(',');
        }
        with_hash.push_str(body);
        serde_json::from_str(&with_hash)
    }
}

/// Builds the block that stores `records` (sealed, consecutive) whose lines are `text`.
pub fn block(records: &[&AuditRecord], text: String) -> Block {
    Block {
        first_seq: records.first().map_or(0, |r| r.seq),
        last_seq: records.last().map_or(0, |r| r.seq),
        index: BlockIndex::of(records.iter().map(|r| Indexed::from(*r))),
        records: text,
    }
}

/// The block that stores `lines` (consecutive, as read from blocks), its index made
/// anew from them: a block split by retention, or rebuilt to compare with the stored one.
pub fn rebuild(lines: &[Line<'_>]) -> Result<Block, serde_json::Error> {
    let parsed: Vec<Parsed<'_>> = lines.iter().map(Line::parse).collect::<Result<_, _>>()?;
    let mut text = String::with_capacity(lines.iter().map(|l| l.hash.len() + l.json.len() + 2).sum());
    for l in lines {
        text.push_str(l.hash);
        text.push(' ');
        text.push_str(l.json);
        text.push('\n');
    }
    Ok(Block {
        first_seq: parsed.first().map_or(0, |p| p.seq),
        last_seq: parsed.last().map_or(0, |p| p.seq),
        index: BlockIndex::of(parsed.iter().map(Indexed::from)),
        records: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::GENESIS;

    fn record(target: &str, reason: Option<&str>) -> AuditRecord {
        AuditRecord {
            seq: 0,
            time: "2026-12-04T17:00:00.000Z".into(),
            tenant: Some("t1".into()),
            principal: Some("p1".into()),
            principal_name: Some("agent:x".into()),
            client_id: None,
            credential: None,
            channel: "http".into(),
            action: "context.read".into(),
            target: Some(target.into()),
            decision: "allow".into(),
            reason: reason.map(str::to_string),
            policies: vec!["builtin.reader".into()],
            ip: None,
            request_id: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_line_is_the_hash_and_the_hashed_bytes_and_reads_back_whole() {
        let mut text = String::new();
        let mut a = record("context:a", Some("line\nbreak \"quoted\""));
        seal_into(&mut a, 1, GENESIS.into(), &mut text);
        let mut b = record("context:b", None);
        seal_into(&mut b, 2, a.hash.clone(), &mut text);
        // The same hash as sealing one record at a time.
        let mut alone = record("context:a", Some("line\nbreak \"quoted\""));
        alone.seal(1, GENESIS.into());
        assert_eq!(alone.hash, a.hash);
        let lines: Vec<Line> = lines(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(Line::sound));
        assert_eq!(lines[0].record().unwrap(), a);
        assert_eq!(lines[1].record().unwrap(), b);
        let parsed = lines[1].parse().unwrap();
        assert_eq!((parsed.seq, parsed.prev_hash.as_ref()), (2, a.hash.as_str()));
    }

    #[test]
    fn an_edited_line_is_not_sound() {
        let mut text = String::new();
        let mut a = record("context:a", None);
        seal_into(&mut a, 1, GENESIS.into(), &mut text);
        let edited = text.replace("context.read", "context.list");
        assert!(!lines(&edited).next().unwrap().unwrap().sound());
        let bad_hash = text.replacen(&a.hash[..2], "zz", 1);
        assert!(!lines(&bad_hash).next().unwrap().unwrap().sound());
        assert!(lines("short line\n").next().unwrap().is_err());
    }

    #[test]
    fn the_index_holds_each_value_once_and_finds_members_exactly() {
        let (a, mut b, c) = (record("context:a", None), record("context:b", None), record("context:a", None));
        b.time = "2026-12-04T16:59:59.999Z".into();
        b.tenant = None;
        let index = BlockIndex::of([&a, &b, &c].map(Indexed::from));
        assert_eq!(index.targets.as_deref(), Some("\ncontext:a\ncontext:b\n"));
        assert_eq!(index.tenants.as_deref(), Some("\nt1\n"));
        assert_eq!((index.min_time.as_str(), index.max_time.as_str()), (b.time.as_str(), a.time.as_str()));
        let token = member_token("context:").unwrap();
        assert!(!index.targets.as_deref().unwrap().contains(&token));
        // A value with a line break makes its set unusable, never wrong.
        let mut odd = record("context:a", None);
        odd.target = Some("x\ny".into());
        assert_eq!(BlockIndex::of([Indexed::from(&odd)]).targets, None);
        assert_eq!(member_token("x\ny"), None);
    }
}
