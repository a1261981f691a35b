//! The embedded default: one SQLite file in the data dir, WAL mode.

use std::path::Path;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub struct SqliteStore {
    pool: SqlitePool,
}

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
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open SQLite database {}: {e}", path.display()))?;
        restrict_permissions(path)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("SQLite migration failed: {e}"))?;
        Ok(Self { pool })
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

/// Takes SQLite's write lock at `BEGIN`: a deferred transaction that reads first and
/// writes later can fail with `SQLITE_BUSY` under WAL instead of waiting.
async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

super::sql::impl_sql_stores!(SqliteStore, Sqlite, lock_suffix = "", backend = "sqlite");
super::sql_oauth::impl_oauth_store!(SqliteStore, Sqlite, lock_suffix = "");
