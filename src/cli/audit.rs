//! `ctxguard audit verify|export` (docs/audit.md): read straight from the database, so
//! they work with the server stopped, on a copy of the database, or beside replicas.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;

use super::{Common, settings};
use crate::app::{App, progress_bar};
use crate::audit::checkpoint::CheckpointKeys;
use crate::audit::{retention, verify};
use crate::domain::Timestamp;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain; names the first altered, missing or reordered record.
    /// Exit code 0 only when the chain is sound.
    Verify {
        /// Start at this record (trusting the one before it).
        #[arg(long)]
        from: Option<i64>,
        /// Check an archive written by `audit prune` instead of the database.
        #[arg(long, conflicts_with = "from")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        common: Box<Common>,
    },
    /// Write records as JSON lines to stdout, oldest first (constant memory).
    Export {
        /// RFC 3339; records at or after.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339; records before.
        #[arg(long)]
        until: Option<String>,
        /// Only jsonl (one record per line, exactly as hashed plus `hash`).
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[command(flatten)]
        common: Box<Common>,
    },
    /// Archive the records up to the last checkpoint signed before --before into
    /// --archive (a new file, mode 0600), then remove them from the database.
    Prune {
        /// RFC 3339: prune what a checkpoint before this time covers.
        #[arg(long)]
        before: String,
        #[arg(long)]
        archive: PathBuf,
        #[command(flatten)]
        common: Box<Common>,
    },
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { from, archive, common } => {
            let app = App::open(settings(&common)?).await?;
            let result = match archive {
                Some(path) => verify_archive(&app, &path).await,
                None => verify_chain(&app, from).await,
            };
            app.close().await;
            result
        }
        AuditCommand::Prune { before, archive, common } => {
            let before = Timestamp::parse_rfc3339(&before).map_err(anyhow::Error::msg)?;
            let app = App::open(settings(&common)?).await?;
            let result = prune(&app, before, &archive).await;
            app.close().await;
            result
        }
        AuditCommand::Export { since, until, format, common } => {
            if format != "jsonl" {
                bail!("unknown format {format:?}; the only format is jsonl");
            }
            let time =
                |v: Option<String>| v.map(|s| Timestamp::parse_rfc3339(&s).map_err(anyhow::Error::msg)).transpose();
            let (since, until) = (time(since)?, time(until)?);
            let app = App::open(settings(&common)?).await?;
            let result = export(&app, since, until).await;
            app.close().await;
            result
        }
    }
}

async fn verify_chain(app: &App, from: Option<i64>) -> anyhow::Result<()> {
    let ends = app.db.audit_ends().await?;
    let head = ends.head.0;
    let start = from.unwrap_or(ends.base.0 + 1).max(ends.base.0 + 1);
    let bar = progress_bar(u64::try_from(head - start + 1).unwrap_or(0), "records");
    let started = std::time::Instant::now();
    let keys = CheckpointKeys::load(&*app.db).await?;
    let report = verify::verify(&*app.db, &keys, from, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let rate = report.records as f64 / secs.max(1e-9);
    match report.first_break {
        None => {
            let last = report.last_seq.map_or("none".into(), |s| s.to_string());
            println!(
                "audit log is sound: {} records (last {last}) and {} signed checkpoints checked in {secs:.2} s, \
                 {rate:.0} records/s",
                report.records, report.checkpoints
            );
            Ok(())
        }
        Some(b) => bail!("audit log is broken: {b} ({} records before it were sound)", report.records),
    }
}

async fn verify_archive(app: &App, path: &std::path::Path) -> anyhow::Result<()> {
    let keys = CheckpointKeys::load(&*app.db).await?;
    let report = retention::verify_archive(path, &keys)?;
    match report.first_break {
        None => {
            println!(
                "archive is sound: {} records, ending at the signed checkpoint of record {}",
                report.records,
                report.last_seq.map_or("-".into(), |s| s.to_string())
            );
            Ok(())
        }
        Some(b) => bail!("archive is broken: {b}"),
    }
}

async fn prune(app: &App, before: Timestamp, archive: &std::path::Path) -> anyhow::Result<()> {
    let Some(cut) = retention::cut_point(&*app.db, before).await? else {
        println!("nothing to prune: no checkpoint was signed before {}", before.to_rfc3339());
        return Ok(());
    };
    let base = app.db.audit_ends().await?.base.0;
    let bar = progress_bar(u64::try_from(cut.seq - base).unwrap_or(0), "records");
    let done = retention::prune(&*app.db, before, archive, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    match done {
        Some(p) => println!(
            "archived and removed {} records (through {}) into {}; the chain now starts after record {}",
            p.records,
            p.through,
            archive.display(),
            p.through
        ),
        None => println!("nothing to prune"),
    }
    Ok(())
}

async fn export(app: &App, since: Option<Timestamp>, until: Option<Timestamp>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (from, to) = (since.map(|t| t.to_rfc3339_millis()), until.map(|t| t.to_rfc3339_millis()));
    crate::audit::each_record(&*app.db, 1, |record| {
        // Times are written alike (RFC 3339, milliseconds, UTC), so they order as text.
        let wanted = from.as_ref().is_none_or(|f| record.time >= *f) && to.as_ref().is_none_or(|t| record.time < *t);
        if wanted {
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
        }
        Ok(true)
    })
    .await?;
    out.flush()?;
    Ok(())
}
