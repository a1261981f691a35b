//! The OAuth state SQL, shared by both backends like `sql.rs`.

macro_rules! impl_oauth_store {
    ($store:ident, $db:ty, lock_suffix = $lock:literal) => {
        use crate::domain::{ApplicationType, ClientId, FamilyId, GrantType, Jti, OAuthClient, TokenHash};
        use crate::store::{
            BrowserSession, CodeGrant, OAuthStore, OneTime, RefreshGrant, RefreshTokenState, StoredClient, StoredSigningKey,
        };

        const CLIENT_COLS: &str = "client_id, tenant_id, name, secret_hash, redirect_uris, grant_types, scopes, \
                                   application_type, principal_id, registered_by, disabled, created_at_ms";

        fn client_from_row(row: &DbRow) -> Result<StoredClient, StoreError> {
            let secret_hash: Option<String> = row.try_get("secret_hash").map_err(map_sqlx)?;
            let redirect_uris: String = row.try_get("redirect_uris").map_err(map_sqlx)?;
            let grant_types: String = row.try_get("grant_types").map_err(map_sqlx)?;
            let scopes: String = row.try_get("scopes").map_err(map_sqlx)?;
            let app: String = row.try_get("application_type").map_err(map_sqlx)?;
            let principal: Option<String> = row.try_get("principal_id").map_err(map_sqlx)?;
            let client = OAuthClient {
                client_id: ClientId::new(row.try_get::<String, _>("client_id").map_err(map_sqlx)?),
                tenant: parse_col(row, "tenant_id")?,
                name: row.try_get("name").map_err(map_sqlx)?,
                confidential: secret_hash.is_some(),
                redirect_uris: serde_json::from_str(&redirect_uris).map_err(|e| corrupt("redirect_uris", e))?,
                grant_types: grant_types
                    .split(' ')
                    .filter(|g| !g.is_empty())
                    .map(GrantType::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| corrupt("grant_types", e))?,
                scopes: ScopeSet::parse(&scopes).map_err(|e| corrupt("scopes", e))?,
                application_type: ApplicationType::parse(&app).map_err(|e| corrupt("application_type", e))?,
                principal: principal.map(|p| p.parse()).transpose().map_err(|e: String| corrupt("principal_id", e))?,
                registered_by: row.try_get("registered_by").map_err(map_sqlx)?,
                disabled: row.try_get("disabled").map_err(map_sqlx)?,
                created_at: Timestamp::from_millis(row.try_get("created_at_ms").map_err(map_sqlx)?),
            };
            Ok(StoredClient { client, secret_hash: secret_hash.map(TokenHash::new) })
        }

        fn opt_ts(row: &DbRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(col).map_err(map_sqlx)?.map(Timestamp::from_millis))
        }

        fn binding_from_row(row: &DbRow) -> Result<Option<crate::domain::ContextBinding>, StoreError> {
            let text: Option<String> = row.try_get("authorization_details").map_err(map_sqlx)?;
            text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt("authorization_details", e))).transpose()
        }

        fn binding_text(b: &Option<crate::domain::ContextBinding>) -> Option<String> {
            b.as_ref().map(|b| serde_json::to_string(b).unwrap_or_default())
        }

        fn refresh_from_row(row: &DbRow) -> Result<RefreshGrant, StoreError> {
            Ok(RefreshGrant {
                family_id: FamilyId::new(row.try_get::<String, _>("family_id").map_err(map_sqlx)?),
                client_id: ClientId::new(row.try_get::<String, _>("client_id").map_err(map_sqlx)?),
                principal: parse_col(row, "principal_id")?,
                tenant: parse_col(row, "tenant_id")?,
                scope: ScopeSet::parse_known(&row.try_get::<String, _>("scope").map_err(map_sqlx)?),
                resource: row.try_get("resource").map_err(map_sqlx)?,
                expires_at: Timestamp::from_millis(row.try_get("expires_ms").map_err(map_sqlx)?),
                binding: binding_from_row(row)?,
            })
        }

        fn code_from_row(row: &DbRow) -> Result<CodeGrant, StoreError> {
            Ok(CodeGrant {
                client_id: ClientId::new(row.try_get::<String, _>("client_id").map_err(map_sqlx)?),
                principal: parse_col(row, "principal_id")?,
                tenant: parse_col(row, "tenant_id")?,
                redirect_uri: row.try_get("redirect_uri").map_err(map_sqlx)?,
                code_challenge: row.try_get("code_challenge").map_err(map_sqlx)?,
                scope: ScopeSet::parse_known(&row.try_get::<String, _>("scope").map_err(map_sqlx)?),
                resource: row.try_get("resource").map_err(map_sqlx)?,
                expires_at: Timestamp::from_millis(row.try_get("expires_ms").map_err(map_sqlx)?),
                binding: binding_from_row(row)?,
            })
        }

        #[async_trait]
        impl crate::store::McpStore for $store {
            async fn mcp_session(&self, session_id: &str) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar("SELECT state FROM mcp_sessions WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)
            }

            async fn put_mcp_session(&self, session_id: &str, state: &str, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO mcp_sessions (session_id, state, created_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (session_id) DO UPDATE SET state = EXCLUDED.state",
                )
                .bind(session_id)
                .bind(state)
                .bind(now.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn delete_mcp_session(&self, session_id: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mcp_sessions WHERE session_id = $1")
                    .bind(session_id)
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                sqlx::query("DELETE FROM mcp_session_owners WHERE session_id = $1")
                    .bind(session_id)
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn set_mcp_session_owner(
                &self,
                session_id: &str,
                owner: PrincipalId,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO mcp_session_owners (session_id, principal_id, created_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(session_id)
                .bind(owner.to_string())
                .bind(now.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn mcp_session_owner(&self, session_id: &str) -> Result<Option<PrincipalId>, StoreError> {
                let row = sqlx::query("SELECT principal_id FROM mcp_session_owners WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                row.as_ref().map(|r| parse_col(r, "principal_id")).transpose()
            }
        }

        #[async_trait]
        impl OAuthStore for $store {
            async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kid, alg, private_sealed, public_key, created_at_ms, superseded_at_ms, publish_until_ms \
                     FROM signing_keys ORDER BY created_at_ms, kid",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredSigningKey {
                            kid: r.try_get("kid").map_err(map_sqlx)?,
                            alg: r.try_get("alg").map_err(map_sqlx)?,
                            private_sealed: r.try_get("private_sealed").map_err(map_sqlx)?,
                            public_key: r.try_get("public_key").map_err(map_sqlx)?,
                            created_at: Timestamp::from_millis(r.try_get("created_at_ms").map_err(map_sqlx)?),
                            superseded_at: opt_ts(r, "superseded_at_ms")?,
                            publish_until: opt_ts(r, "publish_until_ms")?,
                        })
                    })
                    .collect()
            }

            async fn rotate_signing_key(
                &self,
                new: &StoredSigningKey,
                now: Timestamp,
                publish_until: Timestamp,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                sqlx::query(
                    "UPDATE signing_keys SET superseded_at_ms = $1, publish_until_ms = $2 WHERE superseded_at_ms IS NULL",
                )
                .bind(now.millis())
                .bind(publish_until.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_sealed, public_key, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&new.kid)
                .bind(&new.alg)
                .bind(&new.private_sealed)
                .bind(&new.public_key)
                .bind(new.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)
            }

            async fn create_client(&self, c: &OAuthClient, secret_hash: Option<&TokenHash>) -> Result<(), StoreError> {
                let uris = serde_json::to_string(&c.redirect_uris).map_err(|e| corrupt("redirect_uris", e))?;
                let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                sqlx::query(
                    "INSERT INTO oauth_clients (client_id, tenant_id, name, secret_hash, redirect_uris, grant_types, \
                     scopes, application_type, principal_id, registered_by, disabled, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(c.client_id.as_str())
                .bind(c.tenant.to_string())
                .bind(&c.name)
                .bind(secret_hash.map(TokenHash::as_str))
                .bind(uris)
                .bind(grants.join(" "))
                .bind(c.scopes.to_string())
                .bind(c.application_type.as_str())
                .bind(c.principal.map(|p| p.to_string()))
                .bind(&c.registered_by)
                .bind(c.disabled)
                .bind(c.created_at.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn client(&self, client_id: &ClientId) -> Result<Option<StoredClient>, StoreError> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CLIENT_COLS} FROM oauth_clients WHERE client_id = $1"
                )))
                .bind(client_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                row.as_ref().map(client_from_row).transpose()
            }

            async fn clients(&self, tenant: TenantId) -> Result<Vec<OAuthClient>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CLIENT_COLS} FROM oauth_clients WHERE tenant_id = $1 ORDER BY created_at_ms, client_id"
                )))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
                rows.iter().map(|r| client_from_row(r).map(|c| c.client)).collect()
            }

            async fn disable_client(&self, client_id: &ClientId) -> Result<bool, StoreError> {
                let n = sqlx::query("UPDATE oauth_clients SET disabled = TRUE WHERE client_id = $1 AND NOT disabled")
                    .bind(client_id.as_str())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?
                    .rows_affected();
                self.auth_changed().await?;
                Ok(n > 0)
            }

            async fn revoke_jti(&self, jti: &Jti, expires_at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO revoked_tokens (jti, expires_ms) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                    .bind(jti.as_str())
                    .bind(expires_at.millis())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                self.auth_changed().await
            }

            async fn is_jti_revoked(&self, jti: &Jti) -> Result<bool, StoreError> {
                let found: Option<i64> = sqlx::query_scalar("SELECT expires_ms FROM revoked_tokens WHERE jti = $1")
                    .bind(jti.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(found.is_some())
            }

            async fn revoke_principal_tokens(&self, principal: PrincipalId, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE principals SET tokens_revoked_at_ms = $2 WHERE id = $1")
                    .bind(principal.to_string())
                    .bind(at.millis())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                self.auth_changed().await
            }

            async fn purge_expired_grants(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let mut n = 0;
                for (table, key) in [
                    ("revoked_tokens", "jti"),
                    ("authorization_codes", "code_hash"),
                    ("browser_sessions", "session_hash"),
                    ("refresh_tokens", "token_hash"),
                ] {
                    n += sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE expires_ms < $1 LIMIT $2)"
                    )))
                        .bind(now.millis())
                        .bind(i64::from(limit))
                        .execute(&mut *tx)
                        .await
                        .map_err(map_sqlx)?
                        .rows_affected();
                }
                tx.commit().await.map_err(map_sqlx)?;
                Ok(n)
            }

            async fn create_refresh_family(
                &self,
                family_id: &FamilyId,
                client_id: &ClientId,
                principal: PrincipalId,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_families (family_id, client_id, principal_id, created_at_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(family_id.as_str())
                .bind(client_id.as_str())
                .bind(principal.to_string())
                .bind(now.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn insert_refresh_token(
                &self,
                hash: &TokenHash,
                g: &RefreshGrant,
                access_jti: Option<&Jti>,
                now: Timestamp,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, client_id, principal_id, tenant_id, scope, \
                     resource, expires_ms, created_at_ms, authorization_details, access_jti) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(hash.as_str())
                .bind(g.family_id.as_str())
                .bind(g.client_id.as_str())
                .bind(g.principal.to_string())
                .bind(g.tenant.to_string())
                .bind(g.scope.to_string())
                .bind(&g.resource)
                .bind(g.expires_at.millis())
                .bind(now.millis())
                .bind(binding_text(&g.binding))
                .bind(access_jti.map(Jti::as_str))
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn revoke_family_access_tokens(&self, family_id: &FamilyId, until: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, expires_ms) \
                     SELECT access_jti, $2 FROM refresh_tokens WHERE family_id = $1 AND access_jti IS NOT NULL \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(family_id.as_str())
                .bind(until.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                self.auth_changed().await
            }

            async fn use_refresh_token(&self, hash: &TokenHash, now: Timestamp) -> Result<OneTime<RefreshGrant>, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let row = sqlx::query(concat!(
                    "SELECT t.family_id, t.client_id, t.principal_id, t.tenant_id, t.scope, t.resource, t.expires_ms, \
                            t.authorization_details, t.used_at_ms, f.revoked_at_ms \
                     FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
                     WHERE t.token_hash = $1 ",
                    $lock
                ))
                .bind(hash.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let Some(row) = row else { return Ok(OneTime::Unknown) };
                if opt_ts(&row, "revoked_at_ms")?.is_some() {
                    return Ok(OneTime::Unknown);
                }
                let grant = refresh_from_row(&row)?;
                if opt_ts(&row, "used_at_ms")?.is_some() {
                    let family = Some(grant.family_id.clone());
                    return Ok(OneTime::Replayed { grant, issued_jti: None, issued_family: family });
                }
                sqlx::query("UPDATE refresh_tokens SET used_at_ms = $2 WHERE token_hash = $1")
                    .bind(hash.as_str())
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(OneTime::Fresh(grant))
            }

            async fn refresh_token(&self, hash: &TokenHash) -> Result<Option<RefreshTokenState>, StoreError> {
                let row = sqlx::query(
                    "SELECT t.family_id, t.client_id, t.principal_id, t.tenant_id, t.scope, t.resource, t.expires_ms, \
                            t.authorization_details, t.used_at_ms, f.revoked_at_ms \
                     FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id \
                     WHERE t.token_hash = $1",
                )
                .bind(hash.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(RefreshTokenState {
                    grant: refresh_from_row(&row)?,
                    spent: opt_ts(&row, "used_at_ms")?.is_some(),
                    family_revoked: opt_ts(&row, "revoked_at_ms")?.is_some(),
                }))
            }

            async fn revoke_refresh_family(&self, family_id: &FamilyId, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE refresh_families SET revoked_at_ms = $2 WHERE family_id = $1 AND revoked_at_ms IS NULL")
                    .bind(family_id.as_str())
                    .bind(now.millis())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn revoke_client_families(&self, client_id: &ClientId, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE refresh_families SET revoked_at_ms = $2 WHERE client_id = $1 AND revoked_at_ms IS NULL")
                    .bind(client_id.as_str())
                    .bind(now.millis())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn revoke_principal_families(&self, principal: PrincipalId, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE refresh_families SET revoked_at_ms = $2 WHERE principal_id = $1 AND revoked_at_ms IS NULL",
                )
                .bind(principal.to_string())
                .bind(now.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn insert_code(&self, hash: &TokenHash, g: &CodeGrant, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO authorization_codes (code_hash, client_id, principal_id, tenant_id, redirect_uri, \
                     code_challenge, scope, resource, expires_ms, created_at_ms, authorization_details) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(hash.as_str())
                .bind(g.client_id.as_str())
                .bind(g.principal.to_string())
                .bind(g.tenant.to_string())
                .bind(&g.redirect_uri)
                .bind(&g.code_challenge)
                .bind(g.scope.to_string())
                .bind(&g.resource)
                .bind(g.expires_at.millis())
                .bind(now.millis())
                .bind(binding_text(&g.binding))
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn use_code(&self, hash: &TokenHash, now: Timestamp) -> Result<OneTime<CodeGrant>, StoreError> {
                let mut tx = self.begin_write().await.map_err(map_sqlx)?;
                let row = sqlx::query(concat!(
                    "SELECT client_id, principal_id, tenant_id, redirect_uri, code_challenge, scope, resource, \
                            expires_ms, authorization_details, used_at_ms, issued_jti, issued_family \
                     FROM authorization_codes WHERE code_hash = $1 ",
                    $lock
                ))
                .bind(hash.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
                let Some(row) = row else { return Ok(OneTime::Unknown) };
                let grant = code_from_row(&row)?;
                if opt_ts(&row, "used_at_ms")?.is_some() {
                    return Ok(OneTime::Replayed {
                        grant,
                        issued_jti: row.try_get::<Option<String>, _>("issued_jti").map_err(map_sqlx)?.map(Jti::new),
                        issued_family: row
                            .try_get::<Option<String>, _>("issued_family")
                            .map_err(map_sqlx)?
                            .map(FamilyId::new),
                    });
                }
                sqlx::query("UPDATE authorization_codes SET used_at_ms = $2 WHERE code_hash = $1")
                    .bind(hash.as_str())
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_sqlx)?;
                tx.commit().await.map_err(map_sqlx)?;
                Ok(OneTime::Fresh(grant))
            }

            async fn record_code_issue(&self, hash: &TokenHash, jti: &Jti, family: Option<&FamilyId>) -> Result<(), StoreError> {
                sqlx::query("UPDATE authorization_codes SET issued_jti = $2, issued_family = $3 WHERE code_hash = $1")
                    .bind(hash.as_str())
                    .bind(jti.as_str())
                    .bind(family.map(FamilyId::as_str))
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn create_session(&self, hash: &TokenHash, s: &BrowserSession, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO browser_sessions (session_hash, principal_id, csrf_token, expires_ms, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(hash.as_str())
                .bind(s.principal.to_string())
                .bind(&s.csrf_token)
                .bind(s.expires_at.millis())
                .bind(now.millis())
                .execute(self.writes())
                .await
                .map_err(map_sqlx)?;
                Ok(())
            }

            async fn session(&self, hash: &TokenHash) -> Result<Option<BrowserSession>, StoreError> {
                let row = sqlx::query("SELECT principal_id, csrf_token, expires_ms FROM browser_sessions WHERE session_hash = $1")
                    .bind(hash.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                row.map(|r| {
                    Ok(BrowserSession {
                        principal: parse_col(&r, "principal_id")?,
                        csrf_token: r.try_get("csrf_token").map_err(map_sqlx)?,
                        expires_at: Timestamp::from_millis(r.try_get("expires_ms").map_err(map_sqlx)?),
                    })
                })
                .transpose()
            }

            async fn delete_session(&self, hash: &TokenHash) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM browser_sessions WHERE session_hash = $1")
                    .bind(hash.as_str())
                    .execute(self.writes())
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn password_hash(&self, principal: PrincipalId) -> Result<Option<String>, StoreError> {
                let h: Option<Option<String>> = sqlx::query_scalar("SELECT password_hash FROM principals WHERE id = $1")
                    .bind(principal.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(h.flatten())
            }
        }
    };
}

pub(crate) use impl_oauth_store;
