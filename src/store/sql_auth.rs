//! The identity SQL (tenants, principals, API keys), shared by both backends like
//! `sql.rs`; instantiated in the same module, so it uses that macro's helpers.

macro_rules! impl_auth_store {
    ($store:ident) => {
        #[async_trait]
        impl AuthStore for $store {
            async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
                    .bind(tenant.id.to_string())
                    .bind(&tenant.name)
                    .bind(tenant.created_at.millis())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
                let rows = sqlx::query("SELECT id, name, created_at_ms FROM tenants ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                rows.iter().map(tenant_from_row).collect()
            }

            async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
                let row = sqlx::query("SELECT id, name, created_at_ms FROM tenants WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                row.as_ref().map(tenant_from_row).transpose()
            }

            async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
                let row = sqlx::query("SELECT id, name, created_at_ms FROM tenants WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                row.as_ref().map(tenant_from_row).transpose()
            }

            async fn create_principal(&self, p: &Principal, password_hash: Option<&str>) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO principals (id, tenant_id, kind, name, roles, disabled, platform_admin, \
                     password_hash, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(p.id.to_string())
                .bind(p.tenant.to_string())
                .bind(p.kind.as_str())
                .bind(&p.name)
                .bind(p.roles.to_storage())
                .bind(p.disabled)
                .bind(p.platform_admin)
                .bind(password_hash)
                .bind(p.created_at.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn principal(&self, id: PrincipalId) -> Result<Option<Principal>, StoreError> {
                let row =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE id = $1")))
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                row.as_ref().map(principal_from_row).transpose()
            }

            async fn token_principal(
                &self,
                id: PrincipalId,
                jti: &crate::domain::Jti,
            ) -> Result<Option<crate::store::TokenPrincipal>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PRINCIPAL_COLS}, EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2) AS jti_revoked \
                     FROM principals WHERE id = $1"
                )))
                .bind(id.to_string())
                .bind(jti.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                match row {
                    Some(r) => Ok(Some(crate::store::TokenPrincipal {
                        principal: principal_from_row(&r)?,
                        jti_revoked: r.try_get("jti_revoked").map_err(map_sqlx)?,
                    })),
                    None => Ok(None),
                }
            }

            async fn principal_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Principal>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PRINCIPAL_COLS} FROM principals WHERE tenant_id = $1 AND name = $2"
                )))
                .bind(tenant.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                row.as_ref().map(principal_from_row).transpose()
            }

            async fn principals(&self, tenant: TenantId) -> Result<Vec<Principal>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PRINCIPAL_COLS} FROM principals WHERE tenant_id = $1 ORDER BY name"
                )))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(principal_from_row).collect()
            }

            async fn update_principal(
                &self,
                id: PrincipalId,
                roles: Option<&RoleSet>,
                disabled: Option<bool>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE principals SET roles = COALESCE($2, roles), disabled = COALESCE($3, disabled) \
                     WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(roles.map(RoleSet::to_storage))
                .bind(disabled)
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?
                .rows_affected();
                self.auth_changed().await?;
                Ok(done > 0)
            }

            async fn set_password_hash(&self, id: PrincipalId, hash: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE principals SET password_hash = $2 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(hash)
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?
                    .rows_affected();
                Ok(done > 0)
            }

            async fn create_api_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_keys (id, key_hash, principal_id, tenant_id, scopes, expires_at_ms, \
                     revoked_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
                )
                .bind(key.id.to_string())
                .bind(key_hash)
                .bind(key.principal.to_string())
                .bind(key.tenant.to_string())
                .bind(key.scopes.map(|s| s.to_string()))
                .bind(key.expires_at.map(|t| t.millis()))
                .bind(key.created_at.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn api_key_with_principal(
                &self,
                key_hash: &str,
            ) -> Result<Option<crate::store::KeyWithPrincipal>, StoreError> {
                let row = sqlx::query(
                    "SELECT p.id, p.tenant_id, p.kind, p.name, p.roles, p.disabled, p.platform_admin, \
                            p.created_at_ms, p.tokens_revoked_at_ms, p.suspended_at_ms, p.suspension_reason, \
                            k.id AS k_id, k.principal_id AS k_principal_id, k.tenant_id AS k_tenant_id, \
                            k.scopes AS k_scopes, k.expires_at_ms AS k_expires_at_ms, \
                            k.revoked_at_ms AS k_revoked_at_ms, k.created_at_ms AS k_created_at_ms, k.key_hash \
                     FROM api_keys k JOIN principals p ON p.id = k.principal_id WHERE k.key_hash = $1",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some(crate::store::KeyWithPrincipal {
                    key: api_key_from_prefixed(&r, "k_")?,
                    key_hash: r.try_get("key_hash").map_err(map_sqlx)?,
                    principal: principal_from_row(&r)?,
                }))
            }

            async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
                let row =
                    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {API_KEY_COLS} FROM api_keys WHERE id = $1")))
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                row.as_ref().map(api_key_from_row).transpose()
            }

            async fn api_keys(
                &self,
                tenant: Option<TenantId>,
                principal: Option<PrincipalId>,
            ) -> Result<Vec<ApiKey>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {API_KEY_COLS} FROM api_keys \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR principal_id = $2) \
                     ORDER BY created_at_ms, id"
                )))
                .bind(tenant.map(|t| t.to_string()))
                .bind(principal.map(|p| p.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(api_key_from_row).collect()
            }

            async fn revoke_api_key(&self, id: ApiKeyId, at: Timestamp) -> Result<bool, StoreError> {
                let done =
                    sqlx::query("UPDATE api_keys SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL")
                        .bind(id.to_string())
                        .bind(at.millis())
                        .execute(self.writes())
                        .await
                        .map_err(map_sqlx)?
                        .rows_affected();
                self.auth_changed().await?;
                Ok(done > 0)
            }

            async fn revoke_principal_api_keys(
                &self,
                principal: PrincipalId,
                at: Timestamp,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at_ms = $2 WHERE principal_id = $1 AND revoked_at_ms IS NULL",
                )
                .bind(principal.to_string())
                .bind(at.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?
                .rows_affected();
                self.auth_changed().await?;
                Ok(done)
            }
        }
    };
}

pub(crate) use impl_auth_store;
