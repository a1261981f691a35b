//! What the OAuth endpoints share: the database, the token minter, the issuer and the
//! resources tokens may be issued for.

use std::sync::Arc;
use std::time::Duration;

use crate::config::RegistrationMode;
use crate::domain::{OAuthClient, Scope, ScopeSet};
use crate::store::Database;

use super::access_token::AccessTokens;
use super::client_metadata::{ClientMetadata, is_document_url};
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};

pub struct AuthServer {
    pub db: Arc<dyn Database>,
    pub tokens: Arc<AccessTokens>,
    /// The issuer identifier (RFC 8414): the public base URL.
    pub issuer: String,
    /// Resource indicators (RFC 8707) this server issues tokens for; the first is the
    /// default when a request names none.
    pub resources: Vec<String>,
    pub refresh_ttl: Duration,
    pub registration: RegistrationMode,
    pub registration_token: Option<String>,
    pub registration_tenant: String,
    pub client_metadata: ClientMetadata,
}

impl AuthServer {
    /// A client by id: a registered one, or one described by a client ID metadata
    /// document. The inner `Err` says why there is no usable client (safe to show).
    pub async fn find_client(&self, client_id: &str) -> OAuthResult<Result<(OAuthClient, Option<String>), String>> {
        if is_document_url(client_id) {
            let Some(tenant) = self.db.tenant_by_name(&self.registration_tenant).await? else {
                return Ok(Err("client metadata documents are not enabled".into()));
            };
            return Ok(self.client_metadata.resolve(client_id, tenant.id).await.map(|c| (c, None)));
        }
        Ok(match self.db.client(client_id).await? {
            Some((c, _)) if c.disabled => Err("the client is disabled".into()),
            Some(found) => Ok(found),
            None => Err("unknown client".into()),
        })
    }

    /// The audience for a token request: at most one `resource`, and one we serve.
    pub fn audience(&self, requested: &[&str]) -> OAuthResult<String> {
        match requested {
            [] => Ok(self.resources[0].clone()),
            [one] => {
                let wanted = one.trim_end_matches('/');
                self.resources.iter().find(|r| r.as_str() == wanted).cloned().ok_or_else(|| {
                    OAuthError::new(
                        OAuthErrorCode::InvalidTarget,
                        format!("unknown resource {one:?}; this server protects {}", self.resources.join(", ")),
                    )
                })
            }
            _ => Err(OAuthError::new(OAuthErrorCode::InvalidTarget, "request one resource per token")),
        }
    }

    /// The principal a grant was issued to, if it still exists and is enabled.
    pub async fn active_principal(&self, id: crate::domain::PrincipalId) -> OAuthResult<crate::domain::Principal> {
        self.db
            .principal(id)
            .await?
            .filter(|p| !p.disabled)
            .ok_or_else(|| OAuthError::invalid_grant("the principal of this grant is disabled or gone"))
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// The scopes to grant: the request (or, if none, everything allowed), which must stay
/// within `allowed`.
pub fn granted_scopes(requested: Option<&str>, allowed: ScopeSet) -> OAuthResult<ScopeSet> {
    let Some(requested) = requested else {
        return Ok(allowed);
    };
    let wanted = ScopeSet::parse(requested).map_err(OAuthError::invalid_scope)?;
    if !wanted.is_subset_of(&allowed) {
        let extra: Vec<&str> = wanted.iter().filter(|s| !allowed.contains(*s)).map(Scope::as_str).collect();
        return Err(OAuthError::invalid_scope(format!("the client may not request {}", extra.join(" "))));
    }
    Ok(wanted)
}
