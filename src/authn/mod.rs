//! Authentication: turns a credential presented with a request into a [`Caller`].
//!
//! The HTTP layer only extracts a [`Credential`]; everything about what makes a
//! credential valid lives here, so new kinds (JWTs, DPoP proofs, mTLS identities) are
//! new variants and new modules, not changes to the handlers.

pub mod api_key;
pub mod cache;
pub mod external;
pub mod password;

use std::sync::Arc;

use crate::anomaly::{Guard, LockedOut};
use crate::audit::Audit;
use crate::crypto::Secret;
use crate::domain::audit::{self, Action, Actor, AuditEvent, Outcome, RequestMeta, Target};
use crate::domain::{ApiKeyId, ContextBinding, Jti, Principal, PrincipalId, ScopeSet, StoreError, TenantId, Timestamp};
use crate::jwt::AccessTokens;
use crate::store::{Bucket, Database, KeyWithPrincipal, TokenPrincipal};

use cache::{CredentialCache, Validity};

use external::ExternalIssuer;

/// A credential as it arrived, not yet checked.
#[derive(Debug)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// What authenticated the caller (for audit and for revocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialRef {
    ApiKey(ApiKeyId),
    /// An access token issued by this server (its `jti`).
    AccessToken(uuid::Uuid),
    /// The local command line, acting as the platform operator: whoever can run it
    /// already holds the database.
    LocalOperator,
    /// A token from a configured external issuer.
    ExternalToken,
}

/// An authenticated request's identity: who, and with which powers.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// What the credential allows, before intersecting with the principal's roles.
    pub scopes: ScopeSet,
    pub credential: CredentialRef,
    /// The contexts and actions the credential is limited to (`ctx` claim), if any.
    pub binding: Option<Arc<ContextBinding>>,
    /// For our access tokens: the client the token was issued to and the actors of an
    /// exchanged token (recorded as the provenance of what the caller writes).
    pub origin: Option<Arc<TokenOrigin>>,
    /// The request this caller made (its id, address and way in), for the audit log.
    pub request: RequestMeta,
}

impl Caller {
    /// Who the audit log says acted: the same identity on every way in.
    pub fn actor(&self) -> Actor {
        let p = &self.principal;
        Actor {
            tenant: Some(p.tenant),
            principal: Some(p.id),
            name: Some(format!("{}:{}", p.kind.as_str(), p.name)),
            client_id: self.origin.as_ref().map(|o| o.client_id.clone()),
            credential: Some(match self.credential {
                CredentialRef::ApiKey(id) => audit::Credential::ApiKey(id),
                CredentialRef::AccessToken(jti) => audit::Credential::AccessToken(jti),
                CredentialRef::LocalOperator => audit::Credential::Operator,
                CredentialRef::ExternalToken => audit::Credential::External,
            }),
        }
    }

    /// This caller, calling the MCP tool (or method) `tool`: the audit log names it.
    /// Takes the caller, so that the MCP hot path does not copy it.
    pub fn calling(mut self, tool: &'static str) -> Caller {
        self.request.channel = match self.request.channel {
            audit::Channel::Stdio(_) => audit::Channel::Stdio(tool),
            _ => audit::Channel::Mcp(tool),
        };
        self
    }

    /// The record of this caller doing `action` on `target`.
    pub fn event(&self, action: audit::Action, target: Option<Target>, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(action, self.actor(), target, outcome, self.request.clone())
    }
}

/// Whom an access token was issued to, and through whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOrigin {
    pub client_id: String,
    /// The `sub` of each actor of the RFC 8693 `act` chain, nearest first.
    pub actors: Vec<String>,
}

/// Why a credential was refused. The text is safe to return to the presenter.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("{0}")]
    InvalidToken(&'static str),
    /// Too many failed authentications from this address (docs/anomaly.md).
    #[error("too many failed authentications from this address; retry after {} s", .0.retry_after_secs)]
    LockedOut(LockedOut),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// Why a presented credential was refused, as a fixed text (a metric label); `None`
    /// for what is not a failed attempt: no credential at all (how every OAuth flow
    /// starts), a lockout already in force, or our own database failing.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            AuthError::Malformed(m) | AuthError::InvalidToken(m) => Some(m),
            AuthError::Missing | AuthError::LockedOut(_) | AuthError::Store(_) => None,
        }
    }
}

#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Database>,
    tokens: Arc<AccessTokens>,
    external: Arc<Vec<ExternalIssuer>>,
    cache: Arc<CredentialCache>,
    audit: Audit,
    guard: Guard,
}

impl Authenticator {
    /// `cache_capacity` bounds the verified-credential cache (0: no cache).
    pub fn new(
        store: Arc<dyn Database>,
        tokens: Arc<AccessTokens>,
        external: Vec<ExternalIssuer>,
        cache_capacity: u64,
        audit: Audit,
        guard: Guard,
    ) -> Self {
        let cache = Arc::new(CredentialCache::new(cache_capacity));
        Self { store, tokens, external: Arc::new(external), cache, audit, guard }
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Authenticates what a request presented (or failed to present) for `resource`,
    /// as [`Self::authenticate`], and records a failure in the audit log: every refused
    /// credential, with its reason. (A success is recorded with the operation it
    /// authorizes: that record names the principal and the credential.) A refused
    /// credential counts toward its address's lockout; a locked-out address is refused
    /// before its credential is looked at (docs/anomaly.md).
    pub async fn authenticate_request(
        &self,
        presented: Result<Credential, AuthError>,
        resource: &str,
        request: RequestMeta,
    ) -> Result<Caller, AuthError> {
        self.guard.may_authenticate(request.ip, None).map_err(AuthError::LockedOut)?;
        let kind = match &presented {
            Ok(Credential::Bearer(t)) if api_key::looks_like_api_key(t.expose()) => Some("api_key"),
            Ok(Credential::Bearer(_)) => Some("jwt"),
            Err(_) => None,
        };
        let result = match presented {
            Ok(credential) => self.authenticate(&credential, resource).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(mut caller) => {
                caller.request = request;
                Ok(caller)
            }
            Err(e) => {
                let actor = Actor { credential: kind.map(audit::Credential::Presented), ..Actor::default() };
                let event =
                    AuditEvent::new(Action::AuthnFailure, actor, None, Outcome::Deny(e.to_string()), request.clone());
                // A refusal changes nothing: queued, never waited for.
                let _ = self.audit.record(event).await;
                if let Some(reason) = e.reason() {
                    self.guard.auth_failed(&request, None, reason).await;
                }
                Err(e)
            }
        }
    }

    /// Authenticates a request to `resource` (the resource indicator a token must name
    /// as its audience; API keys are not audience-bound).
    pub async fn authenticate(&self, credential: &Credential, resource: &str) -> Result<Caller, AuthError> {
        let Credential::Bearer(token) = credential;
        let key = cache::key(token.expose());
        let changes = self.store.changes();
        if let Some(caller) = self.cache.get(&key, resource, changes) {
            return Ok(caller);
        }
        // Stamped before the database is read: a revocation in between makes it stale.
        let stamp = changes.stamp(Bucket::Auth);
        let (caller, validity) = self.verify(credential, resource).await?;
        if let (Some(stamp), Some(validity)) = (stamp, validity) {
            self.cache.insert(key, caller.clone(), validity, stamp);
        }
        Ok(caller)
    }

    /// The full check, and how long its result may be remembered (`None`: not at all).
    async fn verify(&self, credential: &Credential, resource: &str) -> Result<(Caller, Option<Validity>), AuthError> {
        match credential {
            Credential::Bearer(token) if api_key::looks_like_api_key(token.expose()) => {
                authenticate_api_key_until(&*self.store, token).await.map(|(c, v)| (c, Some(v)))
            }
            Credential::Bearer(token) => {
                // Route by the (not yet verified) issuer; each path verifies fully.
                #[derive(serde::Deserialize)]
                struct Iss {
                    iss: Option<String>,
                }
                let iss =
                    jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token.expose()).ok().and_then(|c| c.iss);
                match iss {
                    Some(iss) if iss != self.tokens.issuer() => {
                        let issuer = self
                            .external
                            .iter()
                            .find(|e| e.issuer() == iss)
                            .ok_or(AuthError::InvalidToken("the token was issued by an unknown issuer"))?;
                        // Not cached: an external issuer's revocations do not reach our counters.
                        issuer.authenticate(token.expose(), resource).await.map(|c| (c, None))
                    }
                    _ => self.access_token(token, resource).await.map(|(c, v)| (c, Some(v))),
                }
            }
        }
    }

    async fn access_token(&self, token: &Secret, resource: &str) -> Result<(Caller, Validity), AuthError> {
        let claims =
            self.tokens.verify_with_refresh(token.expose(), Some(resource)).await.map_err(AuthError::InvalidToken)?;
        let jti: uuid::Uuid = claims.jti.parse().map_err(|_| AuthError::InvalidToken("the token is invalid"))?;
        let principal_id: PrincipalId =
            claims.sub.parse().map_err(|_| AuthError::InvalidToken("the token is invalid"))?;
        // Deny-list and principal in one round trip: revocation holds on the very next
        // request, on every replica, with no cache to invalidate.
        let tenant: TenantId = claims.tenant.parse().map_err(|_| AuthError::InvalidToken("the token is invalid"))?;
        let TokenPrincipal { principal, jti_revoked } = self
            .store
            .token_principal(principal_id, &Jti::new(claims.jti.as_str()))
            .await?
            .filter(|found| !found.principal.disabled && found.principal.tenant == tenant)
            .ok_or(AuthError::InvalidToken("the token's principal is unknown or disabled"))?;
        if principal.suspension.is_some() {
            return Err(AuthError::InvalidToken(SUSPENDED));
        }
        if jti_revoked || principal.revoked_token_issued_at(claims.iat) {
            return Err(AuthError::InvalidToken("the token has been revoked"));
        }
        // A token minted by token exchange dies with every token it was exchanged from.
        for parent in &claims.parents {
            if self.store.is_jti_revoked(&Jti::new(parent.as_str())).await? {
                return Err(AuthError::InvalidToken("the token this one was exchanged from has been revoked"));
            }
        }
        let caller = Caller {
            principal,
            scopes: ScopeSet::parse_known(&claims.scope),
            credential: CredentialRef::AccessToken(jti),
            binding: claims.ctx.map(Arc::new),
            origin: Some(Arc::new(TokenOrigin {
                client_id: claims.client_id,
                actors: std::iter::successors(claims.act.as_ref(), |a| a.act.as_deref())
                    .map(|a| a.sub.clone())
                    .collect(),
            })),
            request: RequestMeta::default(),
        };
        Ok((caller, Validity::AccessToken { not_before: claims.nbf, expires: claims.exp, audience: claims.aud }))
    }
}

/// The answer to a credential of a suspended principal (docs/anomaly.md): the holder
/// learns why, and that an administrator can lift it.
const SUSPENDED: &str =
    "the credential's principal is suspended after an anomaly; an administrator can lift the suspension";

/// A caller with `roles` and `scopes` in a fresh tenant, for unit tests.
#[cfg(test)]
pub(crate) fn test_caller(roles: &[crate::domain::Role], scopes: ScopeSet) -> Caller {
    Caller {
        principal: Principal {
            id: PrincipalId::new_random(),
            tenant: crate::domain::TenantId::new_random(),
            kind: crate::domain::PrincipalKind::Agent,
            name: "a".into(),
            roles: crate::domain::RoleSet::new(roles.to_vec()),
            disabled: false,
            platform_admin: false,
            created_at: Timestamp::now(),
            tokens_revoked_at: None,
            suspension: None,
        },
        scopes,
        credential: CredentialRef::ApiKey(ApiKeyId::new_random()),
        binding: None,
        origin: None,
        request: RequestMeta::default(),
    }
}

/// Checks an API key (also used by `mcp-stdio`, which has no HTTP request).
pub async fn authenticate_api_key(store: &dyn crate::store::AuthStore, token: &Secret) -> Result<Caller, AuthError> {
    authenticate_api_key_until(store, token).await.map(|(caller, _)| caller)
}

async fn authenticate_api_key_until(
    store: &dyn crate::store::AuthStore,
    token: &Secret,
) -> Result<(Caller, Validity), AuthError> {
    const REFUSED: &str = "unknown, revoked or expired API key";
    let hash = api_key::hash(token.expose());
    let Some(KeyWithPrincipal { key, key_hash: stored_hash, principal }) = store.api_key_with_principal(&hash).await?
    else {
        return Err(AuthError::InvalidToken(REFUSED));
    };
    // The database found the row by hash; compare again in constant time so the
    // decision itself never depends on a variable-time comparison.
    if !api_key::hashes_equal(&hash, &stored_hash) || !key.is_usable_at(Timestamp::now()) {
        return Err(AuthError::InvalidToken(REFUSED));
    }
    if principal.tenant != key.tenant || principal.disabled {
        return Err(AuthError::InvalidToken(REFUSED));
    }
    if principal.suspension.is_some() {
        return Err(AuthError::InvalidToken(SUSPENDED));
    }
    let validity = Validity::ApiKey { expires_at: key.expires_at };
    let caller = Caller {
        principal,
        scopes: key.scopes.unwrap_or_else(ScopeSet::all),
        credential: CredentialRef::ApiKey(key.id),
        binding: None,
        origin: None,
        request: RequestMeta::default(),
    };
    Ok((caller, validity))
}
