//! What the OAuth endpoints share: the database, the token minter, the issuer and the
//! resources tokens may be issued for.

use std::sync::Arc;
use std::time::Duration;

use crate::config::RegistrationMode;
use crate::domain::{OAuthClient, Principal, PrincipalId, Scope, ScopeSet};
use crate::store::{Bucket, Database, StampedCache};

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
    pub cache: AuthServerCache,
    /// Longest actor chain token exchange may build (0: exchange disabled).
    pub max_delegation_depth: usize,
}

/// Registered clients (with their secret hashes) and principals, as the token endpoint
/// reads them on every request; kept honest by the `auth` change counter like the
/// credential cache (a disabled client or principal is never served from here).
pub struct AuthServerCache {
    clients: StampedCache<String, (OAuthClient, Option<String>)>,
    principals: StampedCache<PrincipalId, Principal>,
}

impl AuthServerCache {
    /// Up to `capacity` of each; 0 caches nothing.
    pub fn new(capacity: u64) -> Self {
        let ttl = crate::authn::cache::TTL;
        Self { clients: StampedCache::new(capacity, ttl), principals: StampedCache::new(capacity, ttl) }
    }
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
        let found = self
            .cache
            .clients
            .get_or_load(client_id.to_string(), self.db.changes(), Bucket::Auth, || self.db.client(client_id))
            .await?;
        Ok(match found {
            Some((c, _)) if c.disabled => Err("the client is disabled".into()),
            Some(found) => Ok(found),
            None => Err("unknown client".into()),
        })
    }

    /// A principal by id, from the cache when nothing changed since it was read.
    pub async fn principal(&self, id: PrincipalId) -> OAuthResult<Option<Principal>> {
        Ok(self.cache.principals.get_or_load(id, self.db.changes(), Bucket::Auth, || self.db.principal(id)).await?)
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
        self.principal(id)
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
