//! Conversion of contexts stored before per-message storage (migration 0006): each
//! version was one whole JSON body in `context_versions`. The server converts them at
//! start-up, one context per transaction with its head row locked, so an interrupted
//! conversion resumes where it stopped and replicas starting together take turns.
//!
//! Consecutive versions whose history extends the previous one share one history (only
//! the new messages are written); a version whose history does not (a PUT that rewrote
//! it) starts a new one. Metadata snapshots are stored where the metadata changed.
//! Every version then reads back as the same JSON as before (tests/it/storage.rs), its
//! messages' members in canonical order.

macro_rules! impl_legacy_conversion {
    ($store:ident, $db:ty, lock_suffix = $lock:literal) => {
        impl $store {
            async fn count_legacy(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT DISTINCT tenant_id, context_id FROM context_versions) AS l",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(map_sqlx)?;
                Ok(n.max(0) as u64)
            }

            async fn convert_legacy_batch(&self, batch: u32) -> Result<u64, StoreError> {
                let mut done = 0;
                while done < u64::from(batch) {
                    let next: Option<(String, String)> =
                        sqlx::query_as("SELECT tenant_id, context_id FROM context_versions LIMIT 1")
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(map_sqlx)?;
                    let Some((tenant, id)) = next else { break };
                    let tenant: TenantId = tenant.parse().map_err(|e| corrupt("tenant_id", e))?;
                    let id: ContextId = id.parse().map_err(|e| corrupt("context_id", e))?;
                    self.convert_one(tenant, id).await?;
                    done += 1;
                }
                Ok(done)
            }

            async fn convert_one(&self, tenant: TenantId, id: ContextId) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT version FROM contexts WHERE tenant_id = $1 AND context_id = $2 {}",
                    $lock
                )))
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT version, body FROM context_versions \
                     WHERE tenant_id = $1 AND context_id = $2 ORDER BY version",
                )
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                // Versions are signed afterwards by the start-up signing (`sql_signing.rs`),
                // which computes the running hashes again.
                let mut prev: Option<(StoredContext, HistoryRef, crate::domain::manifest::HistoryHash)> = None;
                for (version, body) in rows {
                    let ctx = crate::store::decode_context(body.as_bytes())?;
                    if ctx.version.0 != version {
                        return Err(corrupt(
                            "context_versions",
                            format!("row {version} holds version {}", ctx.version),
                        ));
                    }
                    let (history, start, chain) = match &prev {
                        Some((p, at, chain)) if ctx.session.history.starts_with(&p.session.history) => {
                            (at.history, p.session.history.len(), *chain)
                        }
                        _ => (version, 0, crate::domain::manifest::HistoryHash::EMPTY),
                    };
                    // Converted as stored: in plaintext (encryption applies to later writes).
                    let (rows, chain) =
                        message_rows(&ctx.session.history[start..], chain, (tenant, id, history, start as i64), None)?;
                    let (t, c) = (tenant.to_string(), id.to_string());
                    let mut batch = crate::store::batch::Batch::default();
                    insert_messages(&mut batch, (&t, &c), history, start as i64, &rows);
                    let changed = prev.as_ref().is_none_or(|(p, _, _)| p.metadata != ctx.metadata);
                    let meta_version = match &prev {
                        Some((_, at, _)) if !changed => at.meta_version,
                        _ => version,
                    };
                    let at = HistoryRef { history, len: ctx.session.history.len() as i64, meta_version };
                    let metadata = if changed { Some(metadata_text(&ctx.metadata)?) } else { None };
                    let stored = metadata.as_deref().map(|m| (m, None));
                    insert_revision(&mut batch, (&t, &c), &ContextHead::of(&ctx), &at, stored, None);
                    run_batch(&mut tx, batch).await?;
                    prev = Some((ctx, at, chain));
                }
                if let Some((last, at, _)) = prev {
                    sqlx::query(
                        "UPDATE contexts SET metadata = $3, meta_version = $4, history = $5, history_len = $6, \
                         labels = COALESCE(labels, $7), history_bytes = $8 WHERE tenant_id = $1 AND context_id = $2",
                    )
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .bind(metadata_text(&last.metadata)?)
                    .bind(at.meta_version)
                    .bind(at.history)
                    .bind(at.len)
                    .bind(labels_text(&last.metadata))
                    .bind(ContextHead::of(&last).history_bytes as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    sqlx::query("DELETE FROM context_versions WHERE tenant_id = $1 AND context_id = $2")
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                }
                self.commit_context_change(tx, id).await.map(|_| ())
            }
        }
    };
}

pub(crate) use impl_legacy_conversion;
