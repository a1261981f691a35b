//! The embedded default: one SQLite file in the data dir, WAL mode.

use std::path::Path;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub struct SqliteStore {
    /// Readers (WAL lets them run beside the writer).
    pool: SqlitePool,
    /// The one connection that writes. SQLite has a single writer anyway; queueing for
    /// it here is fair and prompt, whereas contending through SQLite's busy handler
    /// sleeps in steps of up to 100 ms and gave writes p99 latencies of ~0.5 s.
    writer: SqlitePool,
    changes: super::ChangeClock,
    /// Signs and checks versions (attached at start-up; see `Database::attach_signer`).
    signer: super::SignerSlot,
    /// Seals and opens configured fields (attached at start-up; docs/encryption.md).
    fields: super::FieldSlot,
}

/// WAL pages between automatic checkpoints (SQLite's default is 1,000).
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;
/// The writer connection's page cache, in KiB (SQLite's default is 2,048).
const WRITER_CACHE_KIB: u32 = 8_192;

impl SqliteStore {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last commits on power loss,
            // and never corrupts; FULL would fsync every commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let open = |n: u32, options: SqliteConnectOptions| async move {
            SqlitePoolOptions::new()
                .max_connections(n)
                // sqlx pings a pooled connection before lending it, by default: for an
                // embedded file that is a round trip to the connection's worker thread
                // that proves nothing (no network to fail), and every request paid it.
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open SQLite database {}: {e}", path.display()))
        };
        // The writer's settings (docs/benchmarks.md, "2026-12-05 (night)"): every page a
        // commit changes is written to the WAL, and a checkpoint later copies it into the
        // database file (reading it back from the WAL first). Checkpointing every 10,000
        // pages instead of SQLite's 1,000 lets a hot page (an index's inner pages, the
        // change counters, the audit head) be copied once for many commits, and an 8 MiB
        // cache keeps the index pages a write descends through, which 2 MiB did not:
        // together half the checkpoint copies and a third of the database reads of a
        // POST. The WAL then grows to ~40 MB between checkpoints.
        let writer = open(
            1,
            options
                .clone()
                .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string())
                .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
        )
        .await?;
        restrict_permissions(path)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| anyhow::anyhow!("SQLite migration failed: {e}"))?;
        // Reads are mostly answered by the context and credential caches; what reaches
        // SQLite needs few connections on the machines it runs on, and each connection
        // keeps its own page cache (2 MiB by default): four readers with 1 MiB each keep
        // the resident size down (about 10 MB less after the benchmark) and uncached reads
        // measured as fast as before (docs/benchmarks.md).
        let pool = open(4, options.pragma("cache_size", "-1024")).await?;
        Ok(Self {
            pool,
            writer,
            changes: super::ChangeClock::new(super::MAX_STALENESS),
            signer: Default::default(),
            fields: Default::default(),
        })
    }

    /// Takes SQLite's write lock at `BEGIN`: a deferred transaction that reads first
    /// and writes later can fail with `SQLITE_BUSY` under WAL instead of waiting.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Where single-statement writes go.
    fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    /// One process owns the file and announces its own writes.
    async fn open_context_feed(&self) -> Result<Option<super::feed::ContextFeed>, crate::domain::StoreError> {
        Ok(None)
    }

    /// Closes both pools; the last close checkpoints the WAL.
    async fn close_pools(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// The database holds key hashes and every context: owner-only, like the key files.
fn restrict_permissions(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| anyhow::anyhow!("cannot restrict permissions of {}: {e}", path.display()))?;
    }
    Ok(())
}

super::sql_history::impl_history_sql!(Sqlite);
super::batch::impl_batch!(Sqlite, one_command = true);
super::sql::impl_sql_stores!(
    SqliteStore,
    Sqlite,
    lock_suffix = "",
    backend = "sqlite",
    counters = "SELECT group_concat(bucket || ':' || n, ',') FROM change_counters"
);
super::sql_auth::impl_auth_store!(SqliteStore);
super::sql_oauth::impl_oauth_store!(SqliteStore, Sqlite, lock_suffix = "");
super::sql_legacy::impl_legacy_conversion!(SqliteStore, Sqlite, lock_suffix = "");
super::sql_fields::impl_field_sealing!(SqliteStore, lock_suffix = "");
super::sql_signing::impl_signing_conversion!(SqliteStore, Sqlite, lock_suffix = "");
super::sql_audit::impl_audit_store!(SqliteStore, Sqlite, lock_suffix = "", contains = "instr", optimistic = true);
super::sql_anomaly::impl_anomaly_store!(SqliteStore);
