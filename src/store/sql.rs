//! The SQL shared by both backends. SQLite and PostgreSQL both understand `$n`
//! placeholders, `RETURNING`, partial indexes and row values, so the statements are
//! written once; the macro instantiates them for each driver's concrete types.
//!
//! Each backend module supplies `begin_write()` and `writes()` (SQLite sends every write
//! through its one writer connection and takes the write lock up front with
//! `BEGIN IMMEDIATE`; PostgreSQL uses its pool and row locks) and the `FOR UPDATE` suffix.

macro_rules! impl_sql_stores {
    ($store:ident, $db:ty, lock_suffix = $lock:literal, backend = $backend:literal, counters = $counters:literal) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use crate::domain::{
            ApiKey, ApiKeyId, ContextHead, ContextId, Error, NewMessages, Principal, PrincipalId, PrincipalKind,
            Revision, RoleSet, ScopeSet, StoreError, StoredContext, Tenant, TenantId, Timestamp, Version,
        };
        use crate::store::{
            AuthStore, Bucket, ChangeClock, ContextStore, Database, Mutation, RawContextRecord, VersionInfo, map_sqlx,
        };

        type DbRow = <$db as sqlx::Database>::Row;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn parse_col<T: std::str::FromStr>(row: &DbRow, col: &str) -> Result<T, StoreError>
        where
            T::Err: std::fmt::Display,
        {
            let s: String = row.try_get(col).map_err(map_sqlx)?;
            s.parse().map_err(|e| corrupt(col, e))
        }

        fn tenant_from_row(row: &DbRow) -> Result<Tenant, StoreError> {
            Ok(Tenant {
                id: parse_col(row, "id")?,
                name: row.try_get("name").map_err(map_sqlx)?,
                created_at: Timestamp::from_millis(row.try_get("created_at_ms").map_err(map_sqlx)?),
            })
        }

        fn principal_from_row(row: &DbRow) -> Result<Principal, StoreError> {
            let kind: String = row.try_get("kind").map_err(map_sqlx)?;
            let roles: String = row.try_get("roles").map_err(map_sqlx)?;
            Ok(Principal {
                id: parse_col(row, "id")?,
                tenant: parse_col(row, "tenant_id")?,
                kind: PrincipalKind::parse(&kind).map_err(|e| corrupt("kind", e))?,
                name: row.try_get("name").map_err(map_sqlx)?,
                roles: RoleSet::from_storage(&roles).map_err(|e| corrupt("roles", e))?,
                disabled: row.try_get("disabled").map_err(map_sqlx)?,
                platform_admin: row.try_get("platform_admin").map_err(map_sqlx)?,
                created_at: Timestamp::from_millis(row.try_get("created_at_ms").map_err(map_sqlx)?),
                tokens_revoked_at: row
                    .try_get::<Option<i64>, _>("tokens_revoked_at_ms")
                    .map_err(map_sqlx)?
                    .map(Timestamp::from_millis),
                suspension: match row.try_get::<Option<i64>, _>("suspended_at_ms").map_err(map_sqlx)? {
                    Some(at) => Some(crate::domain::anomaly::Suspension {
                        since: Timestamp::from_millis(at),
                        reason: row.try_get::<Option<String>, _>("suspension_reason").map_err(map_sqlx)?.unwrap_or_default(),
                    }),
                    None => None,
                },
            })
        }

        fn api_key_from_row(row: &DbRow) -> Result<ApiKey, StoreError> {
            api_key_from_prefixed(row, "")
        }

        /// An API key from columns named `<prefix><column>` (joins rename them).
        fn api_key_from_prefixed(row: &DbRow, p: &str) -> Result<ApiKey, StoreError> {
            let col = |c: &str| format!("{p}{c}");
            let scopes: Option<String> = row.try_get(col("scopes").as_str()).map_err(map_sqlx)?;
            let expires: Option<i64> = row.try_get(col("expires_at_ms").as_str()).map_err(map_sqlx)?;
            let revoked: Option<i64> = row.try_get(col("revoked_at_ms").as_str()).map_err(map_sqlx)?;
            Ok(ApiKey {
                id: parse_col(row, &col("id"))?,
                principal: parse_col(row, &col("principal_id"))?,
                tenant: parse_col(row, &col("tenant_id"))?,
                scopes: scopes.map(|s| ScopeSet::parse(&s)).transpose().map_err(|e| corrupt("scopes", e))?,
                expires_at: expires.map(Timestamp::from_millis),
                revoked_at: revoked.map(Timestamp::from_millis),
                created_at: Timestamp::from_millis(row.try_get(col("created_at_ms").as_str()).map_err(map_sqlx)?),
            })
        }

        /// The authorization facts of a head row (`labels`, `grants`, `owner_id`); rows
        /// written before labels had their own column take them from `metadata`.
        fn facts_from_row(
            row: &DbRow,
            tenant: TenantId,
            id: ContextId,
        ) -> Result<crate::domain::ContextFacts, StoreError> {
            let labels: Option<String> = row.try_get("labels").map_err(map_sqlx)?;
            let metadata: Option<String> = row.try_get("metadata").map_err(map_sqlx)?;
            let labels: Vec<String> = match (labels, metadata) {
                (Some(l), _) => serde_json::from_str(&l).map_err(|e| corrupt("labels", e))?,
                (None, Some(m)) => crate::domain::grant::labels_of(&parse_metadata(&m)?),
                (None, None) => Vec::new(),
            };
            let grants: String = row.try_get("grants").map_err(map_sqlx)?;
            let grants: Vec<crate::domain::ContextGrant> =
                serde_json::from_str(&grants).map_err(|e| corrupt("grants", e))?;
            Ok(crate::domain::ContextFacts {
                id,
                tenant,
                owner: parse_col(row, "owner_id")?,
                labels: labels.into(),
                grants: grants.into(),
            })
        }

        fn labels_text(metadata: &serde_json::Map<String, serde_json::Value>) -> String {
            serde_json::to_string(&crate::domain::grant::labels_of(metadata)).unwrap_or_else(|_| "[]".into())
        }

        const PRINCIPAL_COLS: &str =
            "id, tenant_id, kind, name, roles, disabled, platform_admin, created_at_ms, tokens_revoked_at_ms, \
             suspended_at_ms, suspension_reason";
        const API_KEY_COLS: &str = "id, principal_id, tenant_id, scopes, expires_at_ms, revoked_at_ms, created_at_ms";

        #[async_trait]
        impl ContextStore for $store {
            async fn facts(
                &self,
                tenant: TenantId,
                id: ContextId,
            ) -> Result<Option<crate::store::FactsRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT owner_id, labels, grants, metadata, deleted_at_ms FROM contexts \
                     WHERE tenant_id = $1 AND context_id = $2",
                )
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let facts = facts_from_row(&row, tenant, id)?;
                Ok(Some(if row.try_get::<Option<i64>, _>("deleted_at_ms").map_err(map_sqlx)?.is_some() {
                    crate::store::FactsRecord::Tombstone(facts)
                } else {
                    crate::store::FactsRecord::Live(facts)
                }))
            }

            async fn get_raw(&self, tenant: TenantId, id: ContextId) -> Result<Option<RawContextRecord>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {HEAD_COLS} FROM contexts WHERE tenant_id = $1 AND context_id = $2"
                )))
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let facts = facts_from_row(&row, tenant, id)?;
                if row.try_get::<Option<i64>, _>("deleted_at_ms").map_err(map_sqlx)?.is_some() {
                    return Ok(Some(RawContextRecord::Tombstone { facts }));
                }
                let (metadata, parsed) = self.head_metadata(&row, tenant, id).await?;
                let (head, at, sealed) = head_from_row(&row, id, parsed)?;
                let stored = load_messages(&self.pool, tenant, id, at.history, at.len).await?;
                let messages = self.open_messages(tenant, id, at.history, stored).await?;
                let signature = sealed.signature.as_deref();
                rechecked(self.signer(), signature, || check_version(self.signer(), tenant, &head, &messages, signature))
                    .await?;
                let body = crate::store::body::assemble(&parts(&head, &metadata, signature), &messages)?;
                Ok(Some(RawContextRecord::Live { facts, version: head.version, expires_at: head.expires, body }))
            }

            async fn get_version(
                &self,
                tenant: TenantId,
                id: ContextId,
                version: Version,
            ) -> Result<Option<StoredContext>, StoreError> {
                let row = sqlx::query(
                    "SELECT r.history, r.history_len, r.expires_at_ms, r.created_at_ms AS updated_at_ms, \
                            r.signature, r.meta_version, m.metadata, m.metadata_sealed, c.created_at_ms \
                     FROM context_revisions r \
                     JOIN context_revisions m ON m.tenant_id = r.tenant_id AND m.context_id = r.context_id \
                       AND m.version = r.meta_version \
                     JOIN contexts c ON c.tenant_id = r.tenant_id AND c.context_id = r.context_id \
                     WHERE r.tenant_id = $1 AND r.context_id = $2 AND r.version = $3",
                )
                .bind(tenant.to_string())
                .bind(id.to_string())
                .bind(version.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let metadata: Option<String> = row.try_get("metadata").map_err(map_sqlx)?;
                let metadata = metadata.ok_or_else(|| corrupt("version", "its metadata snapshot is missing"))?;
                let blob: Option<String> = row.try_get("metadata_sealed").map_err(map_sqlx)?;
                let place = crate::crypto::at_rest::Place {
                    tenant,
                    context: id,
                    row: crate::crypto::at_rest::Row::Metadata {
                        version: row.try_get("meta_version").map_err(map_sqlx)?,
                    },
                };
                let (metadata, parsed) = self.open_metadata(place, metadata, blob.as_deref()).await?;
                let (history, len): (i64, i64) =
                    (row.try_get("history").map_err(map_sqlx)?, row.try_get("history_len").map_err(map_sqlx)?);
                let stored = load_messages(&self.pool, tenant, id, history, len).await?;
                let messages = self.open_messages(tenant, id, history, stored).await?;
                let signature: Option<String> = row.try_get("signature").map_err(map_sqlx)?;
                let head = ContextHead {
                    context_id: id,
                    metadata: parsed,
                    expires: opt_ms(&row, "expires_at_ms")?,
                    version,
                    created_at: ms(&row, "created_at_ms")?,
                    updated_at: ms(&row, "updated_at_ms")?,
                    history_len: messages.len(),
                    history_bytes: 0,
                };
                let signature_text = signature.as_deref();
                rechecked(self.signer(), signature_text, || {
                    check_version(self.signer(), tenant, &head, &messages, signature_text)
                })
                .await?;
                let body = crate::store::body::assemble(&parts(&head, &metadata, signature_text), &messages)?;
                crate::store::decode_context(&body.json).map(Some)
            }

            async fn versions(&self, tenant: TenantId, id: ContextId) -> Result<Vec<VersionInfo>, StoreError> {
                let rows = sqlx::query(
                    "SELECT version, created_at_ms FROM context_revisions \
                     WHERE tenant_id = $1 AND context_id = $2 ORDER BY version",
                )
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter()
                    .map(|r| {
                        Ok(VersionInfo {
                            version: Version(r.try_get("version").map_err(map_sqlx)?),
                            created_at: ms(r, "created_at_ms")?,
                        })
                    })
                    .collect()
            }

            async fn create(
                &self,
                tenant: TenantId,
                owner: PrincipalId,
                ctx: &StoredContext,
            ) -> Result<Option<String>, StoreError> {
                use crate::domain::manifest::{HistoryHash, metadata_digest};
                let head = ContextHead::of(ctx);
                let sealing = self.sealing_for(tenant).await?;
                let place = crate::crypto::at_rest::Place {
                    tenant,
                    context: ctx.context_id,
                    row: crate::crypto::at_rest::Row::Metadata { version: ctx.version.0 },
                };
                let (metadata, metadata_sealed) =
                    crate::store::sql_fields::seal_metadata(&ctx.metadata, sealing.as_ref(), place)?;
                let at =
                    HistoryRef { history: ctx.version.0, len: head.history_len as i64, meta_version: ctx.version.0 };
                let (rows, history_sha) = message_rows(
                    &ctx.session.history,
                    HistoryHash::EMPTY,
                    (tenant, ctx.context_id, at.history, 0),
                    sealing.as_ref(),
                )?;
                let metadata_sha = metadata_digest(&ctx.metadata);
                let signature = sign_version(self.signer(), tenant, &head, metadata_sha, history_sha)?;
                let (t, c) = (tenant.to_string(), ctx.context_id.to_string());
                let mut batch = crate::store::batch::Batch::default();
                batch.push(
                    "INSERT INTO contexts (tenant_id, context_id, owner_id, version, expires_at_ms, \
                     created_at_ms, updated_at_ms, labels, metadata, meta_version, history, history_len, history_bytes, \
                     signature, history_sha256, metadata_sha256, metadata_sealed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $4, $4, $9, $10, $11, $12, $13, $14)",
                    vec![
                        t.as_str().into(),
                        c.as_str().into(),
                        owner.to_string().into(),
                        ctx.version.0.into(),
                        ctx.expires.map(|e| e.millis()).into(),
                        ctx.created_at.millis().into(),
                        labels_text(&ctx.metadata).into(),
                        metadata.as_str().into(),
                        at.len.into(),
                        (head.history_bytes as i64).into(),
                        signature.as_deref().into(),
                        history_sha.to_b64().into(),
                        metadata_sha.to_b64().into(),
                        metadata_sealed.as_deref().into(),
                    ],
                );
                let stored = Some((metadata.as_str(), metadata_sealed.as_deref()));
                insert_revision(&mut batch, (&t, &c), &head, &at, stored, signature.as_deref());
                insert_messages(&mut batch, (&t, &c), at.history, 0, &rows);
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                run_batch(&mut tx, batch).await?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(signature)
            }

            async fn update(
                &self,
                tenant: TenantId,
                id: ContextId,
                mutate: Mutation<'_>,
            ) -> Result<crate::store::Written, Error> {
                use crate::domain::manifest::{HistoryHash, metadata_digest};
                let sealing = self.sealing_for(tenant).await?;
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let (facts, current, at, sealed) = self.locked_head(&mut tx, tenant, id).await?;
                let (metadata_before, history_before) = rechecked(self.signer(), sealed.signature.as_deref(), || {
                    sealed_digests(self.signer(), tenant, &current, &sealed)
                })
                .await?;
                let Revision { head: next, messages, metadata_changed } = mutate(&facts, &current)?;
                if next.version != current.version.next() || next.context_id != id {
                    return Err(corrupt("update", "mutation produced a non-successor version").into());
                }
                let (history, start, (rows, history_sha)) = match &messages {
                    NewMessages::Keep => (at.history, at.len, (Vec::new(), history_before)),
                    NewMessages::Append(entries) => (
                        at.history,
                        at.len,
                        message_rows(entries, history_before, (tenant, id, at.history, at.len), sealing.as_ref())?,
                    ),
                    // A new history, named after the version that starts it.
                    NewMessages::Replace(entries) => (
                        next.version.0,
                        0,
                        message_rows(entries, HistoryHash::EMPTY, (tenant, id, next.version.0, 0), sealing.as_ref())?,
                    ),
                };
                let len = start + rows.len() as i64;
                if len != next.history_len as i64 {
                    return Err(corrupt("update", "the revision's history length does not match its messages").into());
                }
                let meta_version = if metadata_changed { next.version.0 } else { at.meta_version };
                let place = crate::crypto::at_rest::Place {
                    tenant,
                    context: id,
                    row: crate::crypto::at_rest::Row::Metadata { version: next.version.0 },
                };
                let metadata = if metadata_changed {
                    Some(crate::store::sql_fields::seal_metadata(&next.metadata, sealing.as_ref(), place)?)
                } else {
                    None
                };
                let metadata_sha = if metadata_changed { metadata_digest(&next.metadata) } else { metadata_before };
                let signature = sign_version(self.signer(), tenant, &next, metadata_sha, history_sha)?;
                let (t, c) = (tenant.to_string(), id.to_string());
                let mut batch = crate::store::batch::Batch::default();
                insert_messages(&mut batch, (&t, &c), history, start, &rows);
                let next_at = HistoryRef { history, len, meta_version };
                let stored = metadata.as_ref().map(|(text, blob)| (text.as_str(), blob.as_deref()));
                insert_revision(&mut batch, (&t, &c), &next, &next_at, stored, signature.as_deref());
                batch.push(
                    "UPDATE contexts SET version = $3, expires_at_ms = $4, updated_at_ms = $5, \
                     labels = COALESCE($6, labels), metadata = COALESCE($7, metadata), meta_version = $8, \
                     history = $9, history_len = $10, history_bytes = $11, signature = $12, history_sha256 = $13, \
                     metadata_sha256 = $14, metadata_sealed = CASE WHEN $7 IS NULL THEN metadata_sealed ELSE $15 END \
                     WHERE tenant_id = $1 AND context_id = $2",
                    vec![
                        t.as_str().into(),
                        c.as_str().into(),
                        next.version.0.into(),
                        next.expires.map(|e| e.millis()).into(),
                        next.updated_at.millis().into(),
                        metadata.as_ref().map(|_| labels_text(&next.metadata)).into(),
                        metadata.as_ref().map(|m| m.0.as_str()).into(),
                        meta_version.into(),
                        history.into(),
                        len.into(),
                        (next.history_bytes as i64).into(),
                        signature.as_deref().into(),
                        history_sha.to_b64().into(),
                        metadata_sha.to_b64().into(),
                        metadata.as_ref().and_then(|m| m.1.as_deref()).into(),
                    ],
                );
                let n = self.commit_batch(tx, id, batch).await?;
                let stamp = self.changes.stamp_at(Bucket::of_context(id), n);
                Ok(crate::store::Written { head: next, messages, signature, stamp })
            }

            async fn list(
                &self,
                tenant: TenantId,
                now: Timestamp,
                before_seq: Option<i64>,
                limit: u32,
                author: Option<PrincipalId>,
            ) -> Result<Vec<crate::store::ListedContext>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT seq, context_id, {HEAD_COLS} FROM contexts c \
                     WHERE tenant_id = $1 AND deleted_at_ms IS NULL \
                       AND (expires_at_ms IS NULL OR expires_at_ms > $2) AND seq < $3 \
                       AND ($5 IS NULL OR EXISTS (SELECT 1 FROM context_messages m \
                         WHERE m.tenant_id = c.tenant_id AND m.author_id = $5 AND m.context_id = c.context_id \
                           AND m.history = c.history AND m.position < c.history_len)) \
                     ORDER BY seq DESC LIMIT $4"
                )))
                .bind(tenant.to_string())
                .bind(now.millis())
                .bind(before_seq.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .bind(author.map(|a| a.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let mut listed = Vec::with_capacity(rows.len());
                for r in &rows {
                    let seq: i64 = r.try_get("seq").map_err(map_sqlx)?;
                    let id: ContextId = parse_col(r, "context_id")?;
                    let facts = facts_from_row(r, tenant, id)?;
                    let (_, metadata) = self.head_metadata(r, tenant, id).await?;
                    let (head, _, sealed) = head_from_row(r, id, metadata)?;
                    rechecked(self.signer(), sealed.signature.as_deref(), || {
                        check_listed(self.signer(), tenant, &head, &sealed)
                    })
                    .await?;
                    listed.push(crate::store::ListedContext { seq, facts, head });
                }
                Ok(listed)
            }

            async fn update_grants(
                &self,
                tenant: TenantId,
                id: ContextId,
                mutate: crate::store::GrantMutation<'_>,
            ) -> Result<Vec<crate::domain::ContextGrant>, Error> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let (facts, current, _, _) = self.locked_head(&mut tx, tenant, id).await?;
                let grants = mutate(&facts, &current)?;
                let text = serde_json::to_string(&grants).map_err(|e| corrupt("grants", e))?;
                sqlx::query("UPDATE contexts SET grants = $3 WHERE tenant_id = $1 AND context_id = $2")
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .bind(text)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                self.commit_context_change(tx, id).await?;
                Ok(grants)
            }

            async fn delete(
                &self,
                tenant: TenantId,
                id: ContextId,
                expected: Option<Version>,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let done = sqlx::query(
                    "UPDATE contexts SET deleted_at_ms = $3, updated_at_ms = $3 \
                     WHERE tenant_id = $1 AND context_id = $2 AND deleted_at_ms IS NULL \
                       AND ($4 IS NULL OR version = $4)",
                )
                .bind(tenant.to_string())
                .bind(id.to_string())
                .bind(now.millis())
                .bind(expected.map(|v| v.0))
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?
                .rows_affected();
                if done == 0 {
                    return Ok(false);
                }
                for table in ["context_revisions", "context_messages", "context_versions"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND context_id = $2"
                    )))
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                }
                self.commit_context_change(tx, id).await?;
                Ok(true)
            }

            async fn sweep_expired(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                for table in ["context_revisions", "context_messages", "context_versions"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE (tenant_id, context_id) IN \
                         (SELECT tenant_id, context_id FROM contexts \
                          WHERE deleted_at_ms IS NULL AND expires_at_ms <= $1)"
                    )))
                    .bind(cutoff.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                }
                let swept = sqlx::query(
                    "UPDATE contexts SET deleted_at_ms = $2 WHERE deleted_at_ms IS NULL AND expires_at_ms <= $1",
                )
                .bind(cutoff.millis())
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?
                .rows_affected();
                tx.commit().await.map_err(map_sqlx)?;
                if swept > 0 {
                    self.sync_changes().await?;
                }
                Ok(swept)
            }
        }

        /// The parts of the latest version besides its messages.
        fn parts<'a>(
            head: &ContextHead,
            metadata: &'a str,
            signature: Option<&'a str>,
        ) -> crate::store::body::Parts<'a> {
            crate::store::body::Parts {
                context_id: head.context_id,
                metadata,
                expires: head.expires,
                version: head.version,
                created_at: head.created_at,
                updated_at: head.updated_at,
                signature,
            }
        }

        impl $store {
        /// The head of a live context, locked for update (no messages are read).
        async fn locked_head(
            &self,
            tx: &mut sqlx::Transaction<'static, $db>,
            tenant: TenantId,
            id: ContextId,
        ) -> Result<(crate::domain::ContextFacts, ContextHead, HistoryRef, Sealed), Error> {
            let head = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {HEAD_COLS} FROM contexts WHERE tenant_id = $1 AND context_id = $2 {}",
                $lock
            )))
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_sqlx)?;
            let Some(head) = head else { return Err(Error::ContextNotFound(id)) };
            let deleted: Option<i64> = head.try_get("deleted_at_ms").map_err(map_sqlx)?;
            if deleted.is_some() {
                return Err(Error::ContextDeleted(id));
            }
            let facts = facts_from_row(&head, tenant, id)?;
            let (_, metadata) = self.head_metadata(&head, tenant, id).await?;
            let (current, at, sealed) = head_from_row(&head, id, metadata)?;
            Ok((facts, current, at, sealed))
        }
        }

        impl $store {
            fn signer(&self) -> Option<&dyn crate::domain::manifest::VersionSigner> {
                self.signer.get().map(|s| &**s)
            }

            /// Commits a transaction that changed context `id` and records the context
            /// bucket's counter as the transaction left it, so that this process's caches
            /// see the change at once.
            async fn commit_context_change(
                &self,
                tx: sqlx::Transaction<'static, $db>,
                id: ContextId,
            ) -> Result<u64, StoreError> {
                self.commit_batch(tx, id, crate::store::batch::Batch::default()).await
            }

            /// Runs `batch` in `tx`, then [`Self::commit_context_change`]; the counter
            /// is read in the same command as the batch's writes.
            async fn commit_batch(
                &self,
                mut tx: sqlx::Transaction<'static, $db>,
                id: ContextId,
                mut batch: crate::store::batch::Batch<'_>,
            ) -> Result<u64, StoreError> {
                let bucket = Bucket::of_context(id);
                batch.push(COUNTER_SQL, vec![bucket.name().into()]);
                let row = run_batch(&mut tx, batch).await?.ok_or_else(|| corrupt("change_counters", "no row"))?;
                let n = counter_of(&row)?;
                tx.commit().await.map_err(map_sqlx)?;
                self.changes.observe(bucket, n);
                Ok(n)
            }
        }

        /// Reads a change counter as the transaction sees it, its own triggers included.
        const COUNTER_SQL: &str = "SELECT n FROM change_counters WHERE bucket = $1";

        fn counter_of(row: &DbRow) -> Result<u64, StoreError> {
            let n: i64 = row.try_get("n").map_err(map_sqlx)?;
            Ok(n.max(0) as u64)
        }

        impl $store {
            /// Called after a committed change to credentials or principals (a revocation,
            /// a role change, a disabled principal). This process's caches drop the old
            /// state at once; then the call waits out `max_staleness`, after which no
            /// replica's cache can still serve it (see `changes.rs`). So when a
            /// revocation is acknowledged — by the admin API, `/oauth/revoke` or the CLI —
            /// it holds everywhere. Revocations are rare; half a second is cheap for that.
            async fn auth_changed(&self) -> Result<(), StoreError> {
                let n: i64 = sqlx::query_scalar(COUNTER_SQL)
                    .bind(Bucket::Auth.name())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                self.changes.observe(Bucket::Auth, n.max(0) as u64);
                tokio::time::sleep(self.changes.max_staleness()).await;
                Ok(())
            }
        }

        #[async_trait]
        impl Database for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_sqlx)?;
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await;
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            async fn context_feed(&self) -> Result<Option<super::feed::ContextFeed>, StoreError> {
                self.open_context_feed().await
            }

            async fn legacy_contexts(&self) -> Result<u64, StoreError> {
                self.count_legacy().await
            }

            async fn convert_legacy(&self, batch: u32) -> Result<u64, StoreError> {
                self.convert_legacy_batch(batch).await
            }

            fn attach_signer(&self, signer: std::sync::Arc<dyn crate::domain::manifest::VersionSigner>) {
                let _ = self.signer.set(signer);
            }

            async fn attach_field_sealer(
                &self,
                sealer: std::sync::Arc<crate::store::sql_fields::FieldSealer>,
            ) -> Result<u64, StoreError> {
                let _ = self.fields.set(sealer);
                self.load_all_data_keys().await
            }

            async fn begin_data_key_rotation(
                &self,
            ) -> Result<crate::store::sql_fields::RotationStart, StoreError> {
                self.start_rotation().await
            }

            async fn reseal_contexts(
                &self,
                after: Option<(TenantId, ContextId)>,
                batch: u32,
            ) -> Result<crate::store::sql_fields::ResealStep, StoreError> {
                self.reseal_batch(after, batch).await
            }

            async fn rows_on_retired_keys(&self) -> Result<u64, StoreError> {
                self.count_on_retired_keys().await
            }

            async fn context_count(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contexts")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(n.max(0) as u64)
            }

            async fn rewrap_keys(&self, rewrap: &crate::store::sql_fields::Rewrap<'_>) -> Result<u64, StoreError> {
                self.rewrap_all(rewrap).await
            }

            async fn hmac_keys(&self) -> Result<Vec<(TenantId, u32, String)>, StoreError> {
                self.all_hmac_keys().await
            }

            async fn add_hmac_key(&self, tenant: TenantId, id: u32, wrapped: &str) -> Result<(), StoreError> {
                self.store_hmac_key(tenant, id, wrapped).await
            }

            async fn wrapped_key_probe(&self) -> Result<Option<(String, String)>, StoreError> {
                sqlx::query_as("SELECT kid, private_sealed FROM signing_keys ORDER BY created_at_ms, kid LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)
            }

            async fn unsigned_contexts(&self) -> Result<u64, StoreError> {
                self.count_unsigned().await
            }

            async fn sign_unsigned(&self, batch: u32) -> Result<u64, StoreError> {
                self.sign_unsigned_batch(batch).await
            }

            fn changes(&self) -> &ChangeClock {
                &self.changes
            }

            async fn sync_changes(&self) -> Result<(), StoreError> {
                let started = std::time::Instant::now();
                // All counters as one text value: one row through the driver instead of
                // 257 (with SQLite every row is a message between threads, and this runs
                // ten times a second).
                let all: Option<String> =
                    sqlx::query_scalar($counters).fetch_one(&self.pool).await.map_err(map_sqlx)?;
                for (bucket, n) in crate::store::changes::parse_counters(all.as_deref().unwrap_or("")) {
                    self.changes.observe(bucket, n);
                }
                self.changes.synced(started);
                Ok(())
            }
        }
    };
}

pub(crate) use impl_sql_stores;
