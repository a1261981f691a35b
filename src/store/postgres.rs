//! PostgreSQL: for many replicas sharing one database.

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub struct PostgresStore {
    pool: PgPool,
    changes: super::ChangeClock,
    /// Signs and checks versions (attached at start-up; see `Database::attach_signer`).
    signer: super::SignerSlot,
    /// Seals and opens configured fields (attached at start-up; docs/encryption.md).
    fields: super::FieldSlot,
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
        Ok(Self {
            pool,
            changes: super::ChangeClock::new(super::MAX_STALENESS),
            signer: Default::default(),
            fields: Default::default(),
        })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    fn writes(&self) -> &PgPool {
        &self.pool
    }

    async fn open_context_feed(&self) -> Result<Option<super::feed::ContextFeed>, crate::domain::StoreError> {
        super::feed::ContextFeed::listen(&self.pool).await.map(Some)
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

super::sql_history::impl_history_sql!(Postgres);
super::batch::impl_batch!(Postgres, one_command = false);
super::sql::impl_sql_stores!(
    PostgresStore,
    Postgres,
    lock_suffix = "FOR UPDATE",
    backend = "postgres",
    counters = "SELECT string_agg(bucket || ':' || n, ',') FROM change_counters"
);
super::sql_auth::impl_auth_store!(PostgresStore);
super::sql_oauth::impl_oauth_store!(PostgresStore, Postgres, lock_suffix = "FOR UPDATE");
super::sql_legacy::impl_legacy_conversion!(PostgresStore, Postgres, lock_suffix = "FOR UPDATE");
super::sql_fields::impl_field_sealing!(PostgresStore, lock_suffix = "FOR UPDATE");
super::sql_signing::impl_signing_conversion!(PostgresStore, Postgres, lock_suffix = "FOR UPDATE");
super::sql_audit::impl_audit_store!(
    PostgresStore,
    Postgres,
    lock_suffix = "FOR UPDATE",
    contains = "strpos",
    optimistic = false
);
super::sql_anomaly::impl_anomaly_store!(PostgresStore);
