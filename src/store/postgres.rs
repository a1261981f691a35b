//! PostgreSQL: for many replicas sharing one database.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
        // sqlx serialises concurrent migrators with an advisory lock, so replicas
        // starting together are safe.
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("PostgreSQL migration failed: {e}"))?;
        Ok(Self { pool })
    }
}

async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

super::sql::impl_sql_stores!(PostgresStore, Postgres, lock_suffix = "FOR UPDATE", backend = "postgres");
super::sql_oauth::impl_oauth_store!(PostgresStore, Postgres, lock_suffix = "FOR UPDATE");
