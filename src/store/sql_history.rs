//! The SQL of per-message storage shared by reads, writes and the conversion of old
//! stores: head rows, version rows and message rows (see docs/design-notes.md,
//! "Per-message storage"). Instantiated per backend like `sql.rs`, in the same module.

macro_rules! impl_history_sql {
    ($db:ty) => {
        fn parse_metadata(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
            serde_json::from_str(text).map_err(|e| corrupt("metadata", e))
        }

        fn metadata_text(metadata: &serde_json::Map<String, serde_json::Value>) -> Result<String, StoreError> {
            serde_json::to_string(metadata).map_err(|e| corrupt("metadata", e))
        }

        fn opt_ms(row: &DbRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(col).map_err(map_sqlx)?.map(Timestamp::from_millis))
        }

        fn ms(row: &DbRow, col: &str) -> Result<Timestamp, StoreError> {
            Ok(Timestamp::from_millis(row.try_get(col).map_err(map_sqlx)?))
        }

        /// Columns of a head row a read or a write needs.
        const HEAD_COLS: &str = "owner_id, labels, grants, deleted_at_ms, version, expires_at_ms, created_at_ms, \
                                 updated_at_ms, metadata, meta_version, history, history_len, history_bytes";

        /// Where a live head's history is: (history, length, meta_version).
        struct HistoryRef {
            history: i64,
            len: i64,
            meta_version: i64,
        }

        /// The head of a live, converted row: its state without messages, and where its
        /// history is.
        fn head_from_row(row: &DbRow, id: ContextId) -> Result<(ContextHead, HistoryRef), StoreError> {
            let history: Option<i64> = row.try_get("history").map_err(map_sqlx)?;
            let len: Option<i64> = row.try_get("history_len").map_err(map_sqlx)?;
            let meta_version: Option<i64> = row.try_get("meta_version").map_err(map_sqlx)?;
            let metadata: Option<String> = row.try_get("metadata").map_err(map_sqlx)?;
            let (Some(history), Some(len), Some(meta_version), Some(metadata)) = (history, len, meta_version, metadata)
            else {
                return Err(corrupt("context", "stored in the old format and not converted (restart to convert)"));
            };
            let head = ContextHead {
                context_id: id,
                metadata: parse_metadata(&metadata)?,
                expires: opt_ms(row, "expires_at_ms")?,
                version: Version(row.try_get("version").map_err(map_sqlx)?),
                created_at: ms(row, "created_at_ms")?,
                updated_at: ms(row, "updated_at_ms")?,
                history_len: usize::try_from(len).map_err(|e| corrupt("history_len", e))?,
                history_bytes: usize::try_from(
                    row.try_get::<Option<i64>, _>("history_bytes").map_err(map_sqlx)?.unwrap_or(0),
                )
                .map_err(|e| corrupt("history_bytes", e))?,
            };
            Ok((head, HistoryRef { history, len, meta_version }))
        }

        /// The serialized messages `[0, len)` of `history`, in order.
        async fn load_messages<'e, E>(
            executor: E,
            tenant: TenantId,
            id: ContextId,
            history: i64,
            len: i64,
        ) -> Result<Vec<String>, StoreError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT body FROM context_messages \
                 WHERE tenant_id = $1 AND context_id = $2 AND history = $3 AND position < $4 ORDER BY position",
            )
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(history)
            .bind(len)
            .fetch_all(executor)
            .await
            .map_err(map_sqlx)?;
            if rows.len() as i64 != len {
                return Err(corrupt("context", format!("history {history} has {} of its {len} messages", rows.len())));
            }
            Ok(rows)
        }

        /// Messages as rows: (author, serialized entry).
        fn message_rows(entries: &[crate::domain::HistoryEntry]) -> Result<Vec<(Option<String>, String)>, StoreError> {
            entries
                .iter()
                .map(|e| {
                    let body = serde_json::to_string(e).map_err(|e| corrupt("message", e))?;
                    Ok((e.provenance.as_ref().map(|p| p.principal.to_string()), body))
                })
                .collect()
        }

        /// Rows per INSERT statement: 6 parameters each stays far below both backends'
        /// limits on bound parameters.
        const MESSAGE_CHUNK: usize = 200;

        /// Writes messages at positions `start..` of `history`.
        async fn insert_messages(
            tx: &mut sqlx::Transaction<'static, $db>,
            tenant: TenantId,
            id: ContextId,
            history: i64,
            start: i64,
            rows: &[(Option<String>, String)],
        ) -> Result<(), StoreError> {
            let (tenant, id) = (tenant.to_string(), id.to_string());
            for (c, chunk) in rows.chunks(MESSAGE_CHUNK).enumerate() {
                let mut sql = String::from(
                    "INSERT INTO context_messages (tenant_id, context_id, history, position, author_id, body) VALUES ",
                );
                for i in 0..chunk.len() {
                    let b = i * 6;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6));
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                let first = start + (c * MESSAGE_CHUNK) as i64;
                for (i, (author, body)) in chunk.iter().enumerate() {
                    q = q.bind(&tenant).bind(&id).bind(history).bind(first + i as i64).bind(author).bind(body);
                }
                q.execute(&mut **tx).await.map_err(map_sqlx)?;
            }
            Ok(())
        }

        /// One version row.
        async fn insert_revision(
            tx: &mut sqlx::Transaction<'static, $db>,
            tenant: TenantId,
            id: ContextId,
            head: &ContextHead,
            history: &HistoryRef,
            metadata: Option<&str>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO context_revisions (tenant_id, context_id, version, history, history_len, meta_version, \
                 metadata, expires_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(head.version.0)
            .bind(history.history)
            .bind(history.len)
            .bind(history.meta_version)
            .bind(metadata)
            .bind(head.expires.map(|e| e.millis()))
            .bind(head.updated_at.millis())
            .execute(&mut **tx)
            .await
            .map_err(map_sqlx)?;
            Ok(())
        }
    };
}

pub(crate) use impl_history_sql;
