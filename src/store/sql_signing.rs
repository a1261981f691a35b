//! Signing of versions stored before signatures existed (docs/integrity.md
//! "Upgrading"). The server signs them at start-up, one context per transaction with
//! its head row locked, so an interrupted run resumes and replicas take turns. It also
//! rewrites each message in its canonical form (members in RFC 8785 order; older
//! releases stored them in declaration order) and records the running history hash of
//! the latest version in the head row.
//!
//! Once every context is signed, `signing_state` gets its row and the conversion never
//! runs again: a version without a signature is from then on an integrity error.

macro_rules! impl_signing_conversion {
    ($store:ident, $db:ty, lock_suffix = $lock:literal) => {
        impl $store {
            async fn signing_finished(&self) -> Result<bool, StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_state")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(n > 0)
            }

            async fn count_unsigned(&self) -> Result<u64, StoreError> {
                if self.signing_finished().await? {
                    return Ok(0);
                }
                let n: i64 = sqlx::query_scalar(UNSIGNED_COUNT).fetch_one(&self.pool).await.map_err(map_sqlx)?;
                if n == 0 {
                    // A new database, or one whose contexts are all signed: done.
                    self.finish_signing().await?;
                }
                Ok(n.max(0) as u64)
            }

            /// Records that every context is signed (once; replicas may race to it).
            async fn finish_signing(&self) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                sqlx::query(
                    "INSERT INTO signing_state (converted_at_ms) SELECT $1 \
                     WHERE NOT EXISTS (SELECT 1 FROM signing_state)",
                )
                .bind(Timestamp::now().millis())
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)
            }

            async fn sign_unsigned_batch(&self, batch: u32) -> Result<u64, StoreError> {
                if self.signing_finished().await? {
                    return Ok(0);
                }
                let signer =
                    self.signer().ok_or_else(|| StoreError::Backend("no version signer attached".into()))?;
                let mut done = 0;
                while done < u64::from(batch) {
                    let next: Option<(String, String)> =
                        sqlx::query_as(sqlx::AssertSqlSafe(format!("{UNSIGNED_SELECT} LIMIT 1")))
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(map_sqlx)?;
                    let Some((tenant, id)) = next else {
                        self.finish_signing().await?;
                        return Ok(done);
                    };
                    let tenant: TenantId = tenant.parse().map_err(|e| corrupt("tenant_id", e))?;
                    let id: ContextId = id.parse().map_err(|e| corrupt("context_id", e))?;
                    self.sign_one(signer, tenant, id).await?;
                    done += 1;
                }
                Ok(done)
            }

            async fn sign_one(
                &self,
                signer: &dyn crate::domain::manifest::VersionSigner,
                tenant: TenantId,
                id: ContextId,
            ) -> Result<(), StoreError> {
                use std::collections::HashMap;

                use crate::domain::manifest::{HistoryHash, Sha256Digest, metadata_digest};

                let (t, c) = (tenant.to_string(), id.to_string());
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let head: Option<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT created_at_ms, signature FROM contexts WHERE tenant_id = $1 AND context_id = $2 {}",
                    $lock
                )))
                .bind(&t)
                .bind(&c)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let Some((created_at, None)) = head else { return Ok(()) };
                let created_at = Timestamp::from_millis(created_at);

                // Every message, canonical, with the running hash of its history.
                let rows: Vec<(i64, i64, String)> = sqlx::query_as(
                    "SELECT history, position, body FROM context_messages \
                     WHERE tenant_id = $1 AND context_id = $2 ORDER BY history, position",
                )
                .bind(&t)
                .bind(&c)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let mut chains: HashMap<i64, Vec<HistoryHash>> = HashMap::new();
                for (history, position, body) in rows {
                    let entry: crate::domain::HistoryEntry =
                        serde_json::from_str(&body).map_err(|e| corrupt("message", e))?;
                    let canonical = serde_json::to_string(&entry).map_err(|e| corrupt("message", e))?;
                    let chain = chains.entry(history).or_insert_with(|| vec![HistoryHash::EMPTY]);
                    if chain.len() as i64 != position + 1 {
                        return Err(corrupt("context", format!("history {history} lacks message {}", chain.len() - 1)));
                    }
                    let next = chain[chain.len() - 1].then(canonical.as_bytes());
                    chain.push(next);
                    sqlx::query(
                        "UPDATE context_messages SET body = $5 \
                         WHERE tenant_id = $1 AND context_id = $2 AND history = $3 AND position = $4",
                    )
                    .bind(&t)
                    .bind(&c)
                    .bind(history)
                    .bind(position)
                    .bind(&canonical)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                }

                // Every version, signed over its manifest.
                let revisions = sqlx::query(
                    "SELECT version, history, history_len, meta_version, metadata, expires_at_ms, created_at_ms \
                     FROM context_revisions WHERE tenant_id = $1 AND context_id = $2 ORDER BY version",
                )
                .bind(&t)
                .bind(&c)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let mut metadata_of: HashMap<i64, (serde_json::Map<String, serde_json::Value>, Sha256Digest)> =
                    HashMap::new();
                let mut last = None;
                for r in &revisions {
                    let version: i64 = r.try_get("version").map_err(map_sqlx)?;
                    if let Some(text) = r.try_get::<Option<String>, _>("metadata").map_err(map_sqlx)? {
                        let metadata = parse_metadata(&text)?;
                        let digest = metadata_digest(&metadata);
                        metadata_of.insert(version, (metadata, digest));
                    }
                    let meta_version: i64 = r.try_get("meta_version").map_err(map_sqlx)?;
                    let (history, len): (i64, i64) =
                        (r.try_get("history").map_err(map_sqlx)?, r.try_get("history_len").map_err(map_sqlx)?);
                    let (metadata, metadata_sha) = metadata_of
                        .get(&meta_version)
                        .cloned()
                        .ok_or_else(|| corrupt("version", format!("{version}: metadata snapshot missing")))?;
                    let history_sha = match chains.get(&history) {
                        Some(chain) => chain.get(len as usize).copied(),
                        None if len == 0 => Some(HistoryHash::EMPTY),
                        None => None,
                    }
                    .ok_or_else(|| corrupt("version", format!("{version}: history {history} is too short")))?;
                    let head = ContextHead {
                        context_id: id,
                        metadata,
                        expires: opt_ms(r, "expires_at_ms")?,
                        version: Version(version),
                        created_at,
                        updated_at: ms(r, "created_at_ms")?,
                        history_len: len as usize,
                        history_bytes: 0,
                    };
                    let signature = sign_version(Some(signer), tenant, &head, metadata_sha, history_sha)?;
                    sqlx::query(
                        "UPDATE context_revisions SET signature = $4 \
                         WHERE tenant_id = $1 AND context_id = $2 AND version = $3",
                    )
                    .bind(&t)
                    .bind(&c)
                    .bind(version)
                    .bind(signature.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    last = Some((signature, history_sha, metadata_sha));
                }
                let Some((signature, history_sha, metadata_sha)) = last else {
                    return Err(corrupt("context", "it has no versions"));
                };
                sqlx::query(
                    "UPDATE contexts SET signature = $3, history_sha256 = $4, metadata_sha256 = $5 \
                     WHERE tenant_id = $1 AND context_id = $2",
                )
                .bind(&t)
                .bind(&c)
                .bind(signature.as_deref())
                .bind(history_sha.to_b64())
                .bind(metadata_sha.to_b64())
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                self.commit_context_change(tx, id).await.map(|_| ())
            }
        }

        /// Live, converted contexts without a signature.
        const UNSIGNED_SELECT: &str = "SELECT tenant_id, context_id FROM contexts \
                                       WHERE signature IS NULL AND deleted_at_ms IS NULL AND history IS NOT NULL";
        const UNSIGNED_COUNT: &str = "SELECT COUNT(*) FROM contexts \
                                      WHERE signature IS NULL AND deleted_at_ms IS NULL AND history IS NOT NULL";
    };
}

pub(crate) use impl_signing_conversion;
