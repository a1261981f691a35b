//! Retention (`ctxguard audit prune`, docs/audit.md): the records up to a signed
//! checkpoint are written to an archive file, synced, and only then removed; the stored
//! chain then starts after that checkpoint's record and still verifies, and the archive
//! verifies on its own ([`verify_archive`]).
//!
//! Archive format, one JSON object per line: `{"audit_archive": 1, "base_seq",
//! "base_hash"}` (where the archived chain starts: 0 and the genesis hash, or the end
//! of the previous archive), then every record as exported, then `{"checkpoint": {…}}`,
//! the signed checkpoint of the last record.

use std::io::{BufRead, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::checkpoint::CheckpointKeys;
use super::verify::{Break, Checker, Link, Report};
use crate::domain::Timestamp;
use crate::domain::audit::{AuditRecord, Checkpoint};
use crate::store::AuditStore;

#[derive(Debug, Serialize, Deserialize)]
struct ArchiveHeader {
    audit_archive: u32,
    base_seq: i64,
    base_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ArchiveEnd {
    checkpoint: Checkpoint,
}

/// What a prune did.
#[derive(Debug, PartialEq, Eq)]
pub struct Pruned {
    /// The last record removed (now the chain's base).
    pub through: i64,
    pub records: u64,
}

/// The latest checkpoint signed before `before` that is past the chain's base: what a
/// prune would cut at.
pub async fn cut_point(store: &dyn AuditStore, before: Timestamp) -> anyhow::Result<Option<Checkpoint>> {
    let base = store.audit_ends().await?.base.0;
    Ok(store.audit_checkpoints().await?.into_iter().rev().find(|c| c.seq > base && c.time_ms < before.millis()))
}

/// Archives the records up to the last checkpoint signed before `before` into
/// `archive` (a new file, mode 0600), then removes them. `progress` gets the number of
/// records archived so far. `None`: no checkpoint before `before`, nothing done.
pub async fn prune(
    store: &dyn AuditStore,
    before: Timestamp,
    archive: &Path,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Option<Pruned>> {
    let Some(cut) = cut_point(store, before).await? else { return Ok(None) };
    let (base_seq, base_hash) = store.audit_ends().await?.base;
    let file = create_private(archive)?;
    let mut out = std::io::BufWriter::new(file);
    let header = ArchiveHeader { audit_archive: 1, base_seq, base_hash };
    serde_json::to_writer(&mut out, &header)?;
    out.write_all(b"\n")?;
    let mut written = 0u64;
    super::each_record(store, base_seq + 1, |r| {
        if r.seq > cut.seq {
            return Ok(false);
        }
        serde_json::to_writer(&mut out, &r)?;
        out.write_all(b"\n")?;
        written += 1;
        if written.is_multiple_of(4096) {
            progress(written);
        }
        Ok(true)
    })
    .await?;
    progress(written);
    if written != u64::try_from(cut.seq - base_seq).unwrap_or(0) {
        bail!("the stored chain is not whole up to record {}; run `ctxguard audit verify` first", cut.seq);
    }
    serde_json::to_writer(&mut out, &ArchiveEnd { checkpoint: cut.clone() })?;
    out.write_all(b"\n")?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    // On disk before anything is removed.
    file.sync_all().context("syncing the archive")?;
    let records = store.prune_audit(cut.seq).await?;
    Ok(Some(Pruned { through: cut.seq, records }))
}

fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).with_context(|| format!("cannot create the archive {} (it must not exist)", path.display()))
}

/// Checks an archive on its own: the records chain from its base, and the final
/// checkpoint is ours and signs its last record.
pub fn verify_archive(path: &Path, keys: &CheckpointKeys) -> anyhow::Result<Report> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header: ArchiveHeader =
        serde_json::from_str(&lines.next().context("the archive is empty")??).context("not an audit archive")?;
    let mut checker = Checker::new();
    checker.expect(header.base_seq + 1, header.base_hash);
    let mut end = None;
    for line in lines {
        let line = line?;
        if let Ok(e) = serde_json::from_str::<ArchiveEnd>(&line) {
            end = Some(e.checkpoint);
            break;
        }
        let record: AuditRecord = serde_json::from_str(&line).context("a line is not an audit record")?;
        if let Some(b) = checker.check(Link::from(&record)) {
            return Ok(checker.report(Some(b)));
        }
    }
    let Some(cp) = end else { bail!("the archive has no final checkpoint: it was cut short") };
    if let Err(why) = keys.check(&cp) {
        return Ok(checker.report(Some(Break::ForgedCheckpoint { seq: cp.seq, why })));
    }
    let last = checker.last_seq().unwrap_or(header.base_seq);
    let end = if last < cp.seq {
        Some(Break::BeforeCheckpoint { last, checkpoint: cp.seq })
    } else if last > cp.seq || checker.last_hash() != cp.hash {
        Some(Break::Contradicts { seq: last.min(cp.seq) })
    } else {
        None
    };
    Ok(checker.report(end))
}
