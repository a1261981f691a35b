//! The audit chain's SQL, shared by both backends like `sql.rs`.

macro_rules! impl_audit_store {
    ($store:ident, $db:ty, lock_suffix = $lock:literal) => {
        use crate::domain::audit::{AuditRecord, Checkpoint, PendingRecord};
        use crate::store::{AuditQuery, AuditStore};

        const AUDIT_COLS: &str = "seq, time_ms, tenant_id, principal_id, principal_name, client_id, credential, \
                                  channel, action, target, decision, reason, policies, ip, request_id, prev_hash, hash";

        /// Rows per INSERT: 17 parameters each stays far below both backends' limits.
        const AUDIT_ROWS_PER_INSERT: usize = 64;

        fn audit_from_row(row: &DbRow) -> Result<AuditRecord, StoreError> {
            let get = |c: &str| row.try_get::<Option<String>, _>(c).map_err(map_sqlx);
            let need = |c: &str| row.try_get::<String, _>(c).map_err(map_sqlx);
            let policies: String = need("policies")?;
            Ok(AuditRecord {
                seq: row.try_get("seq").map_err(map_sqlx)?,
                time: Timestamp::from_millis(row.try_get("time_ms").map_err(map_sqlx)?).to_rfc3339_millis(),
                tenant: get("tenant_id")?,
                principal: get("principal_id")?,
                principal_name: get("principal_name")?,
                client_id: get("client_id")?,
                credential: get("credential")?,
                channel: need("channel")?,
                action: need("action")?,
                target: get("target")?,
                decision: need("decision")?,
                reason: get("reason")?,
                policies: serde_json::from_str(&policies).map_err(|e| corrupt("policies", e))?,
                ip: get("ip")?,
                request_id: get("request_id")?,
                prev_hash: need("prev_hash")?,
                hash: need("hash")?,
            })
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, records: &mut [PendingRecord]) -> Result<(i64, String), StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                // The head row's lock makes every writer of every process wait its turn:
                // one sequence, no forks.
                let head = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1 ", $lock))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                let mut seq: i64 = head.try_get("seq").map_err(map_sqlx)?;
                let mut prev: String = head.try_get("hash").map_err(map_sqlx)?;
                for p in records.iter_mut() {
                    seq += 1;
                    p.record.seal(seq, std::mem::take(&mut prev));
                    prev.clone_from(&p.record.hash);
                }
                for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO audit_log ({AUDIT_COLS}) "));
                    insert.push_values(chunk, |mut row, PendingRecord { time_ms, record: r }| {
                        let policies = serde_json::to_string(&r.policies).unwrap_or_else(|_| "[]".into());
                        row.push_bind(r.seq)
                            .push_bind(*time_ms)
                            .push_bind(&r.tenant)
                            .push_bind(&r.principal)
                            .push_bind(&r.principal_name)
                            .push_bind(&r.client_id)
                            .push_bind(&r.credential)
                            .push_bind(&r.channel)
                            .push_bind(&r.action)
                            .push_bind(&r.target)
                            .push_bind(&r.decision)
                            .push_bind(&r.reason)
                            .push_bind(policies)
                            .push_bind(&r.ip)
                            .push_bind(&r.request_id)
                            .push_bind(&r.prev_hash)
                            .push_bind(&r.hash);
                    });
                    insert.build().execute(&mut *tx).await.map_err(map_sqlx)?;
                }
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&prev)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok((seq, prev))
            }

            async fn add_audit_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, time_ms, kid, signature) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (seq) DO NOTHING",
                )
                .bind(c.seq)
                .bind(&c.hash)
                .bind(c.time_ms)
                .bind(&c.kid)
                .bind(&c.signature)
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
                let rows = sqlx::query("SELECT seq, hash, time_ms, kid, signature FROM audit_checkpoints ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                rows.iter()
                    .map(|row| {
                        Ok(Checkpoint {
                            seq: row.try_get("seq").map_err(map_sqlx)?,
                            hash: row.try_get("hash").map_err(map_sqlx)?,
                            time_ms: row.try_get("time_ms").map_err(map_sqlx)?,
                            kid: row.try_get("kid").map_err(map_sqlx)?,
                            signature: row.try_get("signature").map_err(map_sqlx)?,
                        })
                    })
                    .collect()
            }

            async fn audit_records(&self, from: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {AUDIT_COLS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
                )))
                .bind(from)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!("SELECT {AUDIT_COLS} FROM audit_log WHERE 1 = 1"));
                let text_filters = [
                    ("tenant_id", &q.tenant),
                    ("principal_id", &q.principal),
                    ("action", &q.action),
                    ("target", &q.target),
                    ("decision", &q.decision),
                ];
                for (column, value) in text_filters {
                    if let Some(v) = value {
                        query.push(format_args!(" AND {column} = ")).push_bind(v.clone());
                    }
                }
                if let Some(t) = q.since_ms {
                    query.push(" AND time_ms >= ").push_bind(t);
                }
                if let Some(t) = q.until_ms {
                    query.push(" AND time_ms < ").push_bind(t);
                }
                if let Some(s) = q.before_seq {
                    query.push(" AND seq < ").push_bind(s);
                }
                query.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(q.limit));
                let rows = query.build().fetch_all(&self.pool).await.map_err(map_sqlx)?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn audit_ends(&self) -> Result<crate::store::ChainEnds, StoreError> {
                let row = sqlx::query("SELECT seq, hash, base_seq, base_hash FROM audit_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(map_sqlx);
                let get_s = |c: &str| row.try_get::<String, _>(c).map_err(map_sqlx);
                Ok(crate::store::ChainEnds {
                    base: (get_i("base_seq")?, get_s("base_hash")?),
                    head: (get_i("seq")?, get_s("hash")?),
                })
            }

            async fn prune_audit(&self, through: i64) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let hash: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
                    .bind(through)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_sqlx)?
                    .ok_or_else(|| StoreError::Corrupt(format!("audit record {through} is not stored")))?;
                sqlx::query("UPDATE audit_gate SET open = TRUE WHERE id = 1").execute(&mut *tx).await.map_err(map_sqlx)?;
                let removed = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?
                    .rows_affected();
                sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                sqlx::query("UPDATE audit_gate SET open = FALSE WHERE id = 1").execute(&mut *tx).await.map_err(map_sqlx)?;
                sqlx::query("UPDATE audit_head SET base_seq = $1, base_hash = $2 WHERE id = 1")
                    .bind(through)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(removed)
            }
        }
    };
}

pub(crate) use impl_audit_store;
