//! Anomaly response's SQL (docs/anomaly.md), shared by both backends like `sql.rs`.

macro_rules! impl_anomaly_store {
    ($store:ident) => {
        use crate::domain::anomaly::{Lockout, Subject};
        use crate::store::AnomalyStore;

        fn lockout_from_row(row: &DbRow) -> Result<Lockout, StoreError> {
            let subject: String = row.try_get("subject").map_err(map_sqlx)?;
            let tenant: Option<String> = row.try_get("tenant_id").map_err(map_sqlx)?;
            let strikes: i64 = row.try_get("strikes").map_err(map_sqlx)?;
            Ok(Lockout {
                subject: Subject::parse(&subject).map_err(|e| corrupt("subject", e))?,
                tenant: tenant.map(|t| t.parse()).transpose().map_err(|e| corrupt("tenant_id", e))?,
                since: Timestamp::from_millis(row.try_get("since_ms").map_err(map_sqlx)?),
                until: Timestamp::from_millis(row.try_get("until_ms").map_err(map_sqlx)?),
                strikes: u32::try_from(strikes).unwrap_or(u32::MAX),
                reason: row.try_get("reason").map_err(map_sqlx)?,
            })
        }

        impl $store {
            /// Suspends (`Some`) or reinstates (`None`) a principal, if it is not so
            /// already; a change reaches every credential cache through the counters.
            async fn set_suspension(
                &self,
                id: PrincipalId,
                suspension: Option<(Timestamp, &str)>,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(
                    "UPDATE principals SET suspended_at_ms = $2, suspension_reason = $3 \
                     WHERE id = $1 AND (suspended_at_ms IS NULL) = ($2 IS NOT NULL)",
                )
                .bind(id.to_string())
                .bind(suspension.map(|(at, _)| at.millis()))
                .bind(suspension.map(|(_, reason)| reason))
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?
                .rows_affected();
                if n > 0 {
                    self.auth_changed().await?;
                }
                Ok(n > 0)
            }
        }

        #[async_trait]
        impl AnomalyStore for $store {
            async fn add_to_tally(
                &self,
                rule: &str,
                subject: &str,
                window_ms: i64,
                add: u64,
            ) -> Result<u64, StoreError> {
                let total: i64 = sqlx::query_scalar(
                    "INSERT INTO anomaly_counts (rule, subject, window_ms, count) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (rule, subject, window_ms) DO UPDATE SET count = anomaly_counts.count + $4 \
                     RETURNING count",
                )
                .bind(rule)
                .bind(subject)
                .bind(window_ms)
                .bind(i64::try_from(add).unwrap_or(i64::MAX))
                .fetch_one(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(total.max(0) as u64)
            }

            async fn purge_tallies(&self, before_ms: i64) -> Result<u64, StoreError> {
                Ok(sqlx::query("DELETE FROM anomaly_counts WHERE window_ms < $1")
                    .bind(before_ms)
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?
                    .rows_affected())
            }

            async fn lockout(&self, subject: &Subject) -> Result<Option<Lockout>, StoreError> {
                let row = sqlx::query(
                    "SELECT subject, tenant_id, since_ms, until_ms, strikes, reason FROM lockouts WHERE subject = $1",
                )
                .bind(subject.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                row.as_ref().map(lockout_from_row).transpose()
            }

            async fn put_lockout(&self, l: &Lockout) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO lockouts (subject, tenant_id, since_ms, until_ms, strikes, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject) DO UPDATE SET \
                     tenant_id = $2, since_ms = $3, until_ms = $4, strikes = $5, reason = $6",
                )
                .bind(l.subject.to_string())
                .bind(l.tenant.map(|t| t.to_string()))
                .bind(l.since.millis())
                .bind(l.until.millis())
                .bind(i64::from(l.strikes))
                .bind(&l.reason)
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn active_lockouts(
                &self,
                now: Timestamp,
                tenant: Option<TenantId>,
            ) -> Result<Vec<Lockout>, StoreError> {
                let rows = sqlx::query(
                    "SELECT subject, tenant_id, since_ms, until_ms, strikes, reason FROM lockouts \
                     WHERE until_ms > $1 AND ($2 IS NULL OR tenant_id = $2) ORDER BY since_ms",
                )
                .bind(now.millis())
                .bind(tenant.map(|t| t.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(lockout_from_row).collect()
            }

            async fn lift_lockout(&self, subject: &Subject, now: Timestamp) -> Result<bool, StoreError> {
                // The row goes either way: an expired one only carries strikes, and
                // lifting starts the subject afresh.
                // So do its failures counted so far: they would lock it out again.
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let until: Option<i64> =
                    sqlx::query_scalar("DELETE FROM lockouts WHERE subject = $1 RETURNING until_ms")
                        .bind(subject.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                sqlx::query("DELETE FROM anomaly_counts WHERE subject = $1 AND rule LIKE 'auth_failures_%'")
                    .bind(subject.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(until.is_some_and(|u| u > now.millis()))
            }

            async fn suspend_principal(
                &self,
                id: PrincipalId,
                at: Timestamp,
                reason: &str,
            ) -> Result<bool, StoreError> {
                self.set_suspension(id, Some((at, reason))).await
            }

            async fn lift_suspension(&self, id: PrincipalId) -> Result<bool, StoreError> {
                self.set_suspension(id, None).await
            }

            async fn suspended_principals(&self, tenant: Option<TenantId>) -> Result<Vec<Principal>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PRINCIPAL_COLS} FROM principals WHERE suspended_at_ms IS NOT NULL \
                     AND ($1 IS NULL OR tenant_id = $1) ORDER BY suspended_at_ms"
                )))
                .bind(tenant.map(|t| t.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(principal_from_row).collect()
            }
        }
    };
}

pub(crate) use impl_anomaly_store;
