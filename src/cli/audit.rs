//! `ctxguard audit verify|export` (docs/audit.md): read straight from the database, so
//! they work with the server stopped, on a copy of the database, or beside replicas.

use std::io::Write as _;

use anyhow::bail;
use clap::Subcommand;

use super::{Common, settings};
use crate::app::App;
use crate::audit::checkpoint::CheckpointKeys;
use crate::audit::verify;
use crate::domain::Timestamp;

/// Records read per query while exporting.
const PAGE: u32 = 10_000;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain; names the first altered, missing or reordered record.
    /// Exit code 0 only when the chain is sound.
    Verify {
        /// Start at this record (trusting the one before it).
        #[arg(long)]
        from: Option<i64>,
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
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { from, common } => {
            let app = App::open(settings(&common)?).await?;
            let result = verify_chain(&app, from).await;
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
    let (head, _) = app.db.audit_head().await?;
    let start = from.unwrap_or(1).max(1);
    let bar = indicatif::ProgressBar::new(u64::try_from(head - start + 1).unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records, {per_sec}, about {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
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
                "audit log is sound: {} records checked (last {last}) in {secs:.2} s, {rate:.0}/s",
                report.records
            );
            Ok(())
        }
        Some(b) => bail!("audit log is broken: {b} ({} records before it were sound)", report.records),
    }
}

async fn export(app: &App, since: Option<Timestamp>, until: Option<Timestamp>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut next = 1;
    loop {
        let page = app.db.audit_records(next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for record in &page {
            let at = Timestamp::parse_rfc3339(&record.time).map_err(anyhow::Error::msg)?;
            if since.is_some_and(|s| at < s) || until.is_some_and(|u| at >= u) {
                continue;
            }
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}
