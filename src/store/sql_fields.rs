//! Encryption at rest of chosen fields, the store's side (docs/encryption.md): each
//! tenant's data keys (wrapped under the KEK in `data_keys`, unwrapped once and kept in
//! memory), sealing a row's values as it is written and opening them as it is read.
//! The cryptography itself is `crate::crypto::at_rest`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::crypto::at_rest::{DataKey, FieldPolicy, Place, Pointers};
use crate::crypto::kek::KeyWrap;
use crate::domain::{StoreError, TenantId};

/// The policy, the key wrapper and the data keys known so far. Locks are held only to
/// look up or insert a key, never across an await.
pub struct FieldSealer {
    policy: FieldPolicy,
    wrap: Arc<dyn KeyWrap>,
    keys: RwLock<HashMap<(TenantId, u32), Arc<DataKey>>>,
    /// Each tenant's current key as last read, and when: a write uses it for up to
    /// [`CURRENT_FOR`] rather than asking the database every time. A rotation's new
    /// key is taken up within that; values sealed under the retired key meanwhile are
    /// what a rotation's final check catches (docs/encryption.md "Rotation").
    current: RwLock<HashMap<TenantId, (Arc<DataKey>, std::time::Instant)>>,
}

/// How long a tenant's current data key is used before it is looked up again.
const CURRENT_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// What a write for one tenant seals, and under which key.
pub struct Sealing<'a> {
    pub key: Arc<DataKey>,
    pub pointers: &'a Pointers,
}

impl FieldSealer {
    pub fn new(policy: FieldPolicy, wrap: Arc<dyn KeyWrap>) -> FieldSealer {
        FieldSealer { policy, wrap, keys: RwLock::default(), current: RwLock::default() }
    }

    pub fn pointers(&self, tenant: TenantId) -> Option<&Pointers> {
        Some(self.policy.for_tenant(tenant)).filter(|p| !p.is_empty())
    }

    /// The tenant's current key, if it was looked up less than [`CURRENT_FOR`] ago.
    pub(crate) fn recent_current(&self, tenant: TenantId) -> Option<Arc<DataKey>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.get(&tenant).filter(|(_, at)| at.elapsed() < CURRENT_FOR).map(|(k, _)| k.clone())
    }

    pub(crate) fn note_current(&self, tenant: TenantId, key: &Arc<DataKey>) {
        let entry = (key.clone(), std::time::Instant::now());
        self.current.write().unwrap_or_else(|e| e.into_inner()).insert(tenant, entry);
    }

    pub(crate) fn known(&self, tenant: TenantId, id: u32) -> Option<Arc<DataKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(&(tenant, id)).cloned()
    }

    /// Unwraps a stored data key and remembers it.
    pub(crate) fn learn(&self, tenant: TenantId, id: u32, wrapped: &str) -> Result<Arc<DataKey>, StoreError> {
        let raw = self.wrap.unwrap(wrapped, &data_key_label(tenant, id)).map_err(|e| {
            StoreError::Backend(format!("data key {id} of tenant {tenant} does not open with this KEK: {e}"))
        })?;
        let key = Arc::new(DataKey::from_bytes(id, &raw).map_err(|e| StoreError::Corrupt(format!("data key: {e}")))?);
        self.keys.write().unwrap_or_else(|e| e.into_inner()).insert((tenant, id), key.clone());
        Ok(key)
    }

    /// A new data key for `tenant`, and its wrapped form to store.
    pub(crate) fn generate(&self, tenant: TenantId, id: u32) -> Result<(DataKey, String), StoreError> {
        let (key, raw) = DataKey::generate(id);
        let wrapped = self
            .wrap
            .wrap(&raw[..], &data_key_label(tenant, id))
            .map_err(|e| StoreError::Backend(format!("wrapping a data key: {e}")))?;
        Ok((key, wrapped))
    }
}

/// One step of a data-key rotation's pass over the contexts.
#[derive(Debug, Default)]
pub struct ResealStep {
    /// Where the next step starts; `None` once every context was visited.
    pub next: Option<(TenantId, crate::domain::ContextId)>,
    pub contexts: u64,
    /// Blobs sealed again under their tenant's current key.
    pub rows: u64,
}

/// What `Database::begin_data_key_rotation` did.
#[derive(Debug, PartialEq, Eq)]
pub enum RotationStart {
    /// New current keys for this many tenants; their older keys are retired.
    Started(u64),
    /// Rows were still sealed under retired keys: that rotation is resumed.
    Resumed(u64),
}

/// Re-wraps one key: `(label, wrapped)` to the new wrapped form (KEK rotation).
pub type Rewrap<'a> = dyn Fn(&str, &str) -> anyhow::Result<String> + Send + Sync + 'a;

/// What a wrapped HMAC signing key is bound to.
pub fn hmac_label(tenant: TenantId, id: u32) -> String {
    format!("hmac-key {tenant} {id}")
}

/// What a wrapped data key is bound to.
pub(crate) fn data_key_label(tenant: TenantId, id: u32) -> String {
    format!("data-key {tenant} {id}")
}

/// A field sealing failure on read: the row was altered or moved behind the server's
/// back, an integrity error like a broken signature.
pub(crate) fn refused(place: &Place, e: crate::crypto::at_rest::AtRestError) -> StoreError {
    StoreError::Integrity(format!("context {} sealed fields: {e}", place.context))
}

/// Seals `metadata`'s values at the write's pointers: the text to store and the blob.
pub(crate) fn seal_metadata(
    metadata: &serde_json::Map<String, serde_json::Value>,
    sealing: Option<&Sealing<'_>>,
    place: Place,
) -> Result<(String, Option<String>), StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("metadata: {e}"));
    let Some(s) = sealing.filter(|s| !s.pointers.metadata.is_empty()) else {
        return Ok((serde_json::to_string(metadata).map_err(corrupt)?, None));
    };
    let mut doc = serde_json::Value::Object(metadata.clone());
    let blob = crate::crypto::at_rest::seal(&mut doc, &s.pointers.metadata, &s.key, place)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok((serde_json::to_string(&doc).map_err(corrupt)?, blob))
}

/// Seals one message's values: its body to store (from its canonical JSON) and the blob.
pub(crate) fn seal_message(
    canonical: &str,
    sealing: Option<&Sealing<'_>>,
    place: Place,
) -> Result<(String, Option<String>), StoreError> {
    let Some(s) = sealing.filter(|s| !s.pointers.message.is_empty()) else {
        return Ok((canonical.to_owned(), None));
    };
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("message: {e}"));
    let mut doc: serde_json::Value = serde_json::from_str(canonical).map_err(corrupt)?;
    match crate::crypto::at_rest::seal(&mut doc, &s.pointers.message, &s.key, place)
        .map_err(|e| StoreError::Backend(e.to_string()))?
    {
        None => Ok((canonical.to_owned(), None)),
        Some(blob) => Ok((serde_json::to_string(&doc).map_err(corrupt)?, Some(blob))),
    }
}

/// Opens a stored row's JSON: the text as it was before sealing (members in their
/// order; a message's canonical JSON again) and its parsed value.
pub(crate) fn open_row(
    text: &str,
    blob: &str,
    key: &DataKey,
    place: Place,
) -> Result<(String, serde_json::Value), StoreError> {
    let mut doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("sealed row: {e}")))?;
    crate::crypto::at_rest::open(&mut doc, blob, key, place).map_err(|e| refused(&place, e))?;
    let text = serde_json::to_string(&doc).map_err(|e| StoreError::Corrupt(format!("sealed row: {e}")))?;
    Ok((text, doc))
}

/// The store's SQL around the sealer, per backend.
macro_rules! impl_field_sealing {
    ($store:ident, lock_suffix = $lock:literal) => {
        impl $store {
            fn fields(&self) -> Option<&crate::store::sql_fields::FieldSealer> {
                self.fields.get().map(|f| &**f)
            }

            /// What a write for `tenant` seals, with the tenant's current data key (made
            /// on first use). Called before the write's transaction: SQLite has one
            /// writer connection, and a new key is written on it.
            async fn sealing_for(
                &self,
                tenant: TenantId,
            ) -> Result<Option<crate::store::sql_fields::Sealing<'_>>, StoreError> {
                let Some(fields) = self.fields() else { return Ok(None) };
                let Some(pointers) = fields.pointers(tenant) else { return Ok(None) };
                if let Some(key) = fields.recent_current(tenant) {
                    return Ok(Some(crate::store::sql_fields::Sealing { key, pointers }));
                }
                let key = match self.current_data_key(tenant).await? {
                    Some(key) => key,
                    None => {
                        let newest: Option<i64> =
                            sqlx::query_scalar("SELECT MAX(key_id) FROM data_keys WHERE tenant_id = $1")
                                .bind(tenant.to_string())
                                .fetch_one(&self.pool)
                                .await
                                .map_err(map_sqlx)?;
                        let id = u32::try_from(newest.unwrap_or(0) + 1).map_err(|e| corrupt("data key id", e))?;
                        let (_, wrapped) = fields.generate(tenant, id)?;
                        // Replicas may race to make the first key: one wins, all use it.
                        sqlx::query(
                            "INSERT INTO data_keys (tenant_id, key_id, wrapped, created_at_ms) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        )
                        .bind(tenant.to_string())
                        .bind(i64::from(id))
                        .bind(&wrapped)
                        .bind(Timestamp::now().millis())
                        .execute(self.writes())
                        .await
                        .map_err(map_sqlx)?;
                        self.current_data_key(tenant)
                            .await?
                            .ok_or_else(|| StoreError::Backend("a new data key was not stored".into()))?
                    }
                };
                fields.note_current(tenant, &key);
                Ok(Some(crate::store::sql_fields::Sealing { key, pointers }))
            }

            /// The tenant's newest data key not retired, if it has one.
            async fn current_data_key(
                &self,
                tenant: TenantId,
            ) -> Result<Option<std::sync::Arc<crate::crypto::at_rest::DataKey>>, StoreError> {
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT key_id, wrapped FROM data_keys WHERE tenant_id = $1 AND retired_at_ms IS NULL \
                     ORDER BY key_id DESC LIMIT 1",
                )
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let Some((id, wrapped)) = row else { return Ok(None) };
                let id = u32::try_from(id).map_err(|e| corrupt("data key id", e))?;
                let fields = self.fields().ok_or_else(|| StoreError::Backend("no field sealer attached".into()))?;
                match fields.known(tenant, id) {
                    Some(key) => Ok(Some(key)),
                    None => fields.learn(tenant, id, &wrapped).map(Some),
                }
            }

            /// The data key a blob names (kept in memory after its first use).
            async fn data_key_of(
                &self,
                place: &crate::crypto::at_rest::Place,
                blob: &str,
            ) -> Result<std::sync::Arc<crate::crypto::at_rest::DataKey>, StoreError> {
                let id =
                    crate::crypto::at_rest::key_id(blob).map_err(|e| crate::store::sql_fields::refused(place, e))?;
                let fields = self.fields().ok_or_else(|| {
                    StoreError::Backend("sealed fields, but no field sealer attached (no KEK loaded)".into())
                })?;
                if let Some(key) = fields.known(place.tenant, id) {
                    return Ok(key);
                }
                let wrapped: Option<String> =
                    sqlx::query_scalar("SELECT wrapped FROM data_keys WHERE tenant_id = $1 AND key_id = $2")
                        .bind(place.tenant.to_string())
                        .bind(i64::from(id))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                let wrapped = wrapped.ok_or_else(|| {
                    StoreError::Integrity(format!("context {} sealed fields: data key {id} is gone", place.context))
                })?;
                fields.learn(place.tenant, id, &wrapped)
            }

            /// A stored metadata snapshot as served and parsed, opened when sealed.
            async fn open_metadata(
                &self,
                place: crate::crypto::at_rest::Place,
                text: String,
                blob: Option<&str>,
            ) -> Result<(String, serde_json::Map<String, serde_json::Value>), StoreError> {
                let Some(blob) = blob else {
                    let parsed = parse_metadata(&text)?;
                    return Ok((text, parsed));
                };
                let key = self.data_key_of(&place, blob).await?;
                match crate::store::sql_fields::open_row(&text, blob, &key, place)? {
                    (text, serde_json::Value::Object(map)) => Ok((text, map)),
                    _ => Err(corrupt("metadata", "not an object")),
                }
            }

            /// A head row's metadata as served and parsed, opened when sealed.
            async fn head_metadata(
                &self,
                row: &DbRow,
                tenant: TenantId,
                id: ContextId,
            ) -> Result<(String, serde_json::Map<String, serde_json::Value>), StoreError> {
                use crate::crypto::at_rest::{Place, Row};
                let text: Option<String> = row.try_get("metadata").map_err(map_sqlx)?;
                let version: Option<i64> = row.try_get("meta_version").map_err(map_sqlx)?;
                let (Some(text), Some(version)) = (text, version) else { return Err(old_format()) };
                let blob: Option<String> = row.try_get("metadata_sealed").map_err(map_sqlx)?;
                let place = Place { tenant, context: id, row: Row::Metadata { version } };
                self.open_metadata(place, text, blob.as_deref()).await
            }

            /// Stored messages of `history` as served (each its canonical JSON), opened
            /// where sealed.
            async fn open_messages(
                &self,
                tenant: TenantId,
                id: ContextId,
                history: i64,
                rows: Vec<(String, Option<String>)>,
            ) -> Result<Vec<String>, StoreError> {
                use crate::crypto::at_rest::{Place, Row};
                let mut out = Vec::with_capacity(rows.len());
                for (position, (body, blob)) in rows.into_iter().enumerate() {
                    let Some(blob) = blob else {
                        out.push(body);
                        continue;
                    };
                    let place = Place { tenant, context: id, row: Row::Message { history, position: position as i64 } };
                    let key = self.data_key_of(&place, &blob).await?;
                    out.push(crate::store::sql_fields::open_row(&body, &blob, &key, place)?.0);
                }
                Ok(out)
            }

            /// Rows whose blob names a retired data key.
            async fn count_on_retired_keys(&self) -> Result<u64, StoreError> {
                let on_retired = |table: &str, col: &str| {
                    format!(
                        "(SELECT COUNT(*) FROM {table} t WHERE t.{col} IS NOT NULL AND EXISTS \
                         (SELECT 1 FROM data_keys d WHERE d.tenant_id = t.tenant_id AND d.retired_at_ms IS NOT NULL \
                          AND t.{col} LIKE 'v1.' || d.key_id || '.%'))"
                    )
                };
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT {} + {} + {}",
                    on_retired("contexts", "metadata_sealed"),
                    on_retired("context_revisions", "metadata_sealed"),
                    on_retired("context_messages", "sealed"),
                )))
                .fetch_one(&self.pool)
                .await
                .map_err(map_sqlx)?;
                Ok(n.max(0) as u64)
            }

            async fn start_rotation(&self) -> Result<crate::store::sql_fields::RotationStart, StoreError> {
                use crate::store::sql_fields::RotationStart;
                let left = self.count_on_retired_keys().await?;
                if left > 0 {
                    return Ok(RotationStart::Resumed(left));
                }
                let fields = self.fields().ok_or_else(|| StoreError::Backend("no field sealer attached".into()))?;
                let tenants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM data_keys")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let now = Timestamp::now().millis();
                for tenant in &tenants {
                    let parsed: TenantId = tenant.parse().map_err(|e| corrupt("tenant_id", e))?;
                    let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                    // Keys an earlier rotation retired are no longer used by any row
                    // (none is, or this rotation would be a resumption): an hour after
                    // their retirement (longer than any write that took one before it)
                    // they are destroyed.
                    sqlx::query("DELETE FROM data_keys WHERE tenant_id = $1 AND retired_at_ms < $2")
                        .bind(tenant)
                        .bind(now - 3_600_000)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                    let newest: i64 = sqlx::query_scalar("SELECT MAX(key_id) FROM data_keys WHERE tenant_id = $1")
                        .bind(tenant)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                    let id = u32::try_from(newest + 1).map_err(|e| corrupt("data key id", e))?;
                    let (_, wrapped) = fields.generate(parsed, id)?;
                    sqlx::query(
                        "INSERT INTO data_keys (tenant_id, key_id, wrapped, created_at_ms) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(tenant)
                    .bind(i64::from(id))
                    .bind(&wrapped)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    sqlx::query(
                        "UPDATE data_keys SET retired_at_ms = $3 \
                         WHERE tenant_id = $1 AND key_id < $2 AND retired_at_ms IS NULL",
                    )
                    .bind(tenant)
                    .bind(i64::from(id))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    tx.commit().await.map_err(map_sqlx)?;
                }
                Ok(RotationStart::Started(tenants.len() as u64))
            }

            /// Seals again, under each tenant's current key, every blob of up to
            /// `batch` contexts after `after` that names another key; one transaction
            /// per context, its head row locked against concurrent writes.
            async fn reseal_batch(
                &self,
                after: Option<(TenantId, ContextId)>,
                batch: u32,
            ) -> Result<crate::store::sql_fields::ResealStep, StoreError> {
                use crate::crypto::at_rest::{Place, Row};
                let (t0, c0) = after.map(|(t, c)| (t.to_string(), c.to_string())).unwrap_or_default();
                let ids: Vec<(String, String)> = sqlx::query_as(
                    "SELECT tenant_id, context_id FROM contexts WHERE (tenant_id, context_id) > ($1, $2) \
                     ORDER BY tenant_id, context_id LIMIT $3",
                )
                .bind(&t0)
                .bind(&c0)
                .bind(i64::from(batch))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let mut step = crate::store::sql_fields::ResealStep::default();
                let mut current: std::collections::HashMap<TenantId, Option<std::sync::Arc<crate::crypto::at_rest::DataKey>>> =
                    std::collections::HashMap::new();
                for (t, c) in &ids {
                    let tenant: TenantId = t.parse().map_err(|e| corrupt("tenant_id", e))?;
                    let id: ContextId = c.parse().map_err(|e| corrupt("context_id", e))?;
                    step.next = Some((tenant, id));
                    step.contexts += 1;
                    let key = match current.get(&tenant) {
                        Some(k) => k.clone(),
                        None => {
                            let k = self.current_data_key(tenant).await?;
                            current.insert(tenant, k.clone());
                            k
                        }
                    };
                    let Some(key) = key else { continue };
                    let stale = |blob: &str| crate::crypto::at_rest::key_id(blob).is_ok_and(|k| k != key.id());
                    let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                    let head: Option<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT meta_version, metadata_sealed FROM contexts \
                         WHERE tenant_id = $1 AND context_id = $2 {}",
                        $lock
                    )))
                    .bind(t)
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    // Each blob with where it goes back: its row's UPDATE and the row's
                    // own key beyond tenant and context ($4, $5).
                    let mut work: Vec<(Row, String, &'static str, Vec<i64>)> = Vec::new();
                    if let Some((meta_version, Some(blob))) = head {
                        let sql = "UPDATE contexts SET metadata_sealed = $3 WHERE tenant_id = $1 AND context_id = $2";
                        work.push((Row::Metadata { version: meta_version }, blob, sql, vec![]));
                    }
                    let revisions: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT version, metadata_sealed FROM context_revisions \
                         WHERE tenant_id = $1 AND context_id = $2 AND metadata_sealed IS NOT NULL",
                    )
                    .bind(t)
                    .bind(c)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    work.extend(revisions.into_iter().map(|(v, blob)| {
                        let sql = "UPDATE context_revisions SET metadata_sealed = $3 \
                                   WHERE tenant_id = $1 AND context_id = $2 AND version = $4";
                        (Row::Metadata { version: v }, blob, sql, vec![v])
                    }));
                    let messages: Vec<(i64, i64, String)> = sqlx::query_as(
                        "SELECT history, position, sealed FROM context_messages \
                         WHERE tenant_id = $1 AND context_id = $2 AND sealed IS NOT NULL",
                    )
                    .bind(t)
                    .bind(c)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                    work.extend(messages.into_iter().map(|(h, p, blob)| {
                        let sql = "UPDATE context_messages SET sealed = $3 \
                                   WHERE tenant_id = $1 AND context_id = $2 AND history = $4 AND position = $5";
                        (Row::Message { history: h, position: p }, blob, sql, vec![h, p])
                    }));
                    for (row, blob, sql, extra) in work.into_iter().filter(|w| stale(&w.1)) {
                        let place = Place { tenant, context: id, row };
                        let old = self.data_key_of(&place, &blob).await?;
                        let again = crate::crypto::at_rest::reseal(&blob, &old, &key, place)
                            .map_err(|e| crate::store::sql_fields::refused(&place, e))?;
                        let mut q = sqlx::query(sql).bind(t).bind(c).bind(&again);
                        for v in extra {
                            q = q.bind(v);
                        }
                        q.execute(&mut *tx).await.map_err(map_sqlx)?;
                        step.rows += 1;
                    }
                    tx.commit().await.map_err(map_sqlx)?;
                }
                if (ids.len() as u32) < batch {
                    step.next = None;
                }
                Ok(step)
            }

            async fn rewrap_all(&self, rewrap: &crate::store::sql_fields::Rewrap<'_>) -> Result<u64, StoreError> {
                let fail = |e: anyhow::Error| StoreError::Backend(format!("re-wrapping: {e}"));
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let signing: Vec<(String, String)> = sqlx::query_as("SELECT kid, private_sealed FROM signing_keys")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                for (kid, sealed) in &signing {
                    sqlx::query("UPDATE signing_keys SET private_sealed = $2 WHERE kid = $1")
                        .bind(kid)
                        .bind(rewrap(kid, sealed).map_err(fail)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                }
                // The tenants' keys: each table with what its keys are bound to.
                let mut tenant_keys = 0;
                let tables: [(&str, fn(TenantId, u32) -> String); 2] = [
                    ("data_keys", crate::store::sql_fields::data_key_label),
                    ("hmac_keys", crate::store::sql_fields::hmac_label),
                ];
                for (table, label_of) in tables {
                    let rows: Vec<(String, i64, String)> =
                        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT tenant_id, key_id, wrapped FROM {table}")))
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(map_sqlx)?;
                    for (tenant, id, wrapped) in &rows {
                        let parsed: TenantId = tenant.parse().map_err(|e| corrupt("tenant_id", e))?;
                        let label = label_of(parsed, u32::try_from(*id).map_err(|e| corrupt("key id", e))?);
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE {table} SET wrapped = $3 WHERE tenant_id = $1 AND key_id = $2"
                        )))
                        .bind(tenant)
                        .bind(id)
                        .bind(rewrap(&label, wrapped).map_err(fail)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?;
                    }
                    tenant_keys += rows.len();
                }
                tx.commit().await.map_err(map_sqlx)?;
                Ok((signing.len() + tenant_keys) as u64)
            }

            async fn all_hmac_keys(&self) -> Result<Vec<(TenantId, u32, String)>, StoreError> {
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT tenant_id, key_id, wrapped FROM hmac_keys ORDER BY tenant_id, key_id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                rows.into_iter()
                    .map(|(t, id, w)| {
                        Ok((
                            t.parse().map_err(|e| corrupt("tenant_id", e))?,
                            u32::try_from(id).map_err(|e| corrupt("hmac key id", e))?,
                            w,
                        ))
                    })
                    .collect()
            }

            async fn store_hmac_key(&self, tenant: TenantId, id: u32, wrapped: &str) -> Result<(), StoreError> {
                // Replicas starting together may race to make a tenant's first key.
                sqlx::query(
                    "INSERT INTO hmac_keys (tenant_id, key_id, wrapped, created_at_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(tenant.to_string())
                .bind(i64::from(id))
                .bind(wrapped)
                .bind(Timestamp::now().millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            /// Unwraps every stored data key: at start-up, so that a wrong KEK is an
            /// error before any request, not on the first sealed read.
            async fn load_all_data_keys(&self) -> Result<u64, StoreError> {
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT tenant_id, key_id, wrapped FROM data_keys")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                let Some(fields) = self.fields() else { return Ok(0) };
                for (tenant, id, wrapped) in &rows {
                    let tenant: TenantId = tenant.parse().map_err(|e| corrupt("tenant_id", e))?;
                    let id = u32::try_from(*id).map_err(|e| corrupt("data key id", e))?;
                    fields.learn(tenant, id, wrapped)?;
                }
                Ok(rows.len() as u64)
            }
        }
    };
}

pub(crate) use impl_field_sealing;
