//! The authorization server as one service: every endpoint hands its typed request to
//! [`AuthServer`], and only this module and the grant modules under it talk to the
//! OAuth store (clients, codes, refresh families, the deny-list, browser sessions).

use crate::audit::Audit;
use std::sync::Arc;
use std::time::Duration;

use super::RegistrationMode;
use super::client_metadata::{ClientMetadata, is_document_url};
use super::clients::ClientService;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use crate::authn::Authenticator;
use crate::crypto::Secret;
use crate::domain::{ClientId, Principal, PrincipalId, Scope, ScopeSet};
use crate::jwt::AccessTokens;
use crate::net::fetch::Fetcher;
use crate::store::{Bucket, Database, StampedCache, StoredClient};

/// How the authorization server is set up (from `Settings` and the public URL).
pub struct AuthServerConfig {
    /// The issuer identifier (RFC 8414): the public base URL.
    pub issuer: String,
    /// Resource indicators (RFC 8707) this server issues tokens for; the first is the
    /// default when a request names none.
    pub resources: Vec<String>,
    pub refresh_ttl: Duration,
    pub registration: RegistrationMode,
    pub registration_token: Option<Secret>,
    pub registration_tenant: String,
    /// Longest actor chain token exchange may build (0: exchange disabled).
    pub max_delegation_depth: usize,
    /// Entries of the client and principal caches (0: none).
    pub cache_entries: u64,
    /// Client ID metadata documents may be fetched from loopback addresses (tests).
    pub metadata_allow_loopback: bool,
}

pub struct AuthServer {
    pub(super) db: Arc<dyn Database>,
    pub(super) tokens: Arc<AccessTokens>,
    /// Verifies our own tokens for token exchange, exactly as the resource server does.
    pub(super) authn: Authenticator,
    pub(super) clients: ClientService,
    pub(super) config: AuthServerConfig,
    client_metadata: ClientMetadata,
    cache: AuthServerCache,
    pub(super) audit: Audit,
}

/// Registered clients (with their secret hashes) and principals, as the token endpoint
/// reads them on every request; kept honest by the `auth` change counter like the
/// credential cache (a disabled client or principal is never served from here).
struct AuthServerCache {
    clients: StampedCache<ClientId, StoredClient>,
    principals: StampedCache<PrincipalId, Principal>,
}

/// The one answer for every client ID metadata document that cannot be used.
pub const METADATA_REFUSED: &str =
    "the client metadata document could not be fetched or is not valid; the server log says why";

/// What a client id names.
pub enum ClientLookup {
    /// A registered client (with its secret hash), or one a metadata document describes.
    Usable(StoredClient),
    /// Unknown, disabled or an unusable document; the text is safe to show on the
    /// authorization page.
    Unusable(String),
}

impl AuthServer {
    pub fn new(
        db: Arc<dyn Database>,
        tokens: Arc<AccessTokens>,
        authn: Authenticator,
        clients: ClientService,
        config: AuthServerConfig,
        audit: Audit,
    ) -> Self {
        let ttl = crate::authn::cache::TTL;
        let cache = AuthServerCache {
            clients: StampedCache::new(config.cache_entries, ttl),
            principals: StampedCache::new(config.cache_entries, ttl),
        };
        let client_metadata = ClientMetadata::new(Fetcher::new(config.metadata_allow_loopback));
        Self { db, tokens, authn, clients, config, client_metadata, cache, audit }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn registration(&self) -> RegistrationMode {
        self.config.registration
    }

    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer)
    }

    /// A client by id: a registered one, or one described by a client ID metadata
    /// document.
    pub async fn find_client(&self, client_id: &ClientId) -> OAuthResult<ClientLookup> {
        if is_document_url(client_id.as_str()) {
            let Some(tenant) = self.db.tenant_by_name(&self.config.registration_tenant).await? else {
                return Ok(ClientLookup::Unusable("client metadata documents are not enabled".into()));
            };
            return Ok(match self.client_metadata.resolve(client_id.as_str(), tenant.id).await {
                Ok(client) => ClientLookup::Usable(StoredClient { client, secret_hash: None }),
                // What the resolver or the remote server answered stays in the log: shown
                // to an unauthenticated browser it would tell which addresses exist.
                Err(why) => {
                    tracing::warn!(client_id = %client_id, reason = %why, "client ID metadata document refused");
                    ClientLookup::Unusable(METADATA_REFUSED.into())
                }
            });
        }
        let found = self
            .cache
            .clients
            .get_or_load(client_id.clone(), self.db.changes(), Bucket::Auth, || self.db.client(client_id))
            .await?;
        Ok(match found {
            Some(found) if found.client.disabled => ClientLookup::Unusable("the client is disabled".into()),
            Some(found) => ClientLookup::Usable(found),
            None => ClientLookup::Unusable("unknown client".into()),
        })
    }

    /// A principal by id, from the cache when nothing changed since it was read.
    pub(super) async fn principal(&self, id: PrincipalId) -> OAuthResult<Option<Principal>> {
        Ok(self.cache.principals.get_or_load(id, self.db.changes(), Bucket::Auth, || self.db.principal(id)).await?)
    }

    /// The audience for a token request: at most one `resource`, and one we serve.
    pub(super) fn audience(&self, requested: &[String]) -> OAuthResult<String> {
        let resources = &self.config.resources;
        match requested {
            [] => Ok(resources[0].clone()),
            [one] => {
                let wanted = one.trim_end_matches('/');
                resources.iter().find(|r| r.as_str() == wanted).cloned().ok_or_else(|| {
                    OAuthError::new(
                        OAuthErrorCode::InvalidTarget,
                        format!("unknown resource {one:?}; this server protects {}", resources.join(", ")),
                    )
                })
            }
            _ => Err(OAuthError::new(OAuthErrorCode::InvalidTarget, "request one resource per token")),
        }
    }

    /// The principal a grant was issued to, if it still exists and is enabled.
    pub(super) async fn active_principal(&self, id: PrincipalId) -> OAuthResult<Principal> {
        self.principal(id)
            .await?
            .filter(Principal::is_active)
            .ok_or_else(|| OAuthError::invalid_grant("the principal of this grant is disabled, suspended or gone"))
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
