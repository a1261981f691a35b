//! The refresh_token grant (RFC 6749 section 6, OAuth 2.1 section 4.3): refresh tokens
//! are opaque, stored as hashes, rotated on every use; presenting a spent one revokes
//! its whole family (the legitimate holder and the thief both lose it).

use super::client_auth::AuthenticatedClient;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::request::Narrowing;
use super::server::{AuthServer, granted_scopes};
use super::token::TokenResponse;
use crate::crypto::{Secret, token};
use crate::domain::audit::RequestMeta;
use crate::domain::{ClientId, ContextBinding, FamilyId, Jti, ScopeSet, Timestamp};
use crate::jwt::Grant;
use crate::store::{OneTime, RefreshGrant, RefreshTokenState};

pub const PREFIX: &str = "ctxr_";

/// Whether a presented token has the shape of our refresh tokens (revocation and
/// introspection tell the two kinds apart by it).
pub fn is_refresh_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

impl AuthServer {
    /// Creates a refresh token in `family` (a new family when `None`) standing for `what`
    /// (its scopes, audience and binding are what every refresh may ask for), recording
    /// the access token minted with it, and returns it with its family id.
    pub(super) async fn issue_refresh(
        &self,
        family: Option<FamilyId>,
        what: &Grant<'_>,
        access_jti: &Jti,
    ) -> OAuthResult<(String, FamilyId)> {
        let now = Timestamp::now();
        let client_id = ClientId::new(what.client_id);
        let family_id = match family {
            Some(f) => f,
            None => {
                let f = FamilyId::new(uuid::Uuid::new_v4().to_string());
                self.db.create_refresh_family(&f, &client_id, what.principal, now).await?;
                f
            }
        };
        let secret = token::generate(PREFIX);
        let grant = RefreshGrant {
            family_id: family_id.clone(),
            client_id,
            principal: what.principal,
            tenant: what.tenant,
            scope: what.scopes,
            resource: what.audience.to_string(),
            expires_at: now.plus_secs(self.config.refresh_ttl.as_secs() as i64),
            binding: what.binding.cloned(),
        };
        self.db.insert_refresh_token(&token::token_hash(secret.expose()), &grant, Some(access_jti), now).await?;
        Ok((secret.expose().to_string(), family_id))
    }

    pub(super) async fn refresh(
        &self,
        c: &AuthenticatedClient,
        presented: &Secret,
        asked: &Narrowing,
        meta: &RequestMeta,
    ) -> OAuthResult<(TokenResponse, crate::jwt::AccessClaims)> {
        let now = Timestamp::now();
        let hash = token::token_hash(presented.expose());
        // Check the request against the grant before spending the token: a request the
        // server refuses (bad scope, resource or binding) must not cost the client its
        // refresh token. The grant's fields never change, so the check still holds below.
        if let Some(RefreshTokenState { grant, spent: false, family_revoked: false }) =
            self.db.refresh_token(&hash).await?
            && grant.client_id == c.client.client_id
        {
            narrowed(asked, &grant)?;
        }
        let grant = match self.db.use_refresh_token(&hash, now).await? {
            OneTime::Unknown => return Err(OAuthError::invalid_grant("unknown, expired or revoked refresh token")),
            OneTime::Replayed { grant, .. } => {
                self.revoke_family(&grant.family_id, now).await?;
                tracing::warn!(
                    incident = "refresh_token_replay",
                    client_id = %grant.client_id,
                    principal = %grant.principal,
                    "a spent refresh token was presented; its family is revoked"
                );
                metrics::counter!("ctxguard_security_incidents_total", "kind" => "refresh_token_replay").increment(1);
                // One of the family's holders is a thief: anomaly response suspends the
                // principal too (docs/anomaly.md).
                self.authn.guard().refresh_replayed(grant.principal, grant.tenant, meta).await;
                return Err(OAuthError::invalid_grant("refresh token was already used; its family has been revoked"));
            }
            OneTime::Fresh(grant) => grant,
        };
        if grant.client_id != c.client.client_id {
            // Someone else's token: treat it as compromised.
            self.revoke_family(&grant.family_id, now).await?;
            return Err(OAuthError::invalid_grant("the refresh token was not issued to this client"));
        }
        if grant.expires_at <= now {
            return Err(OAuthError::invalid_grant("the refresh token has expired"));
        }
        let (scopes, binding) = narrowed(asked, &grant)?;
        let principal = self.active_principal(grant.principal).await?;
        // Rotation keeps the original scope and binding in the family, so a narrower
        // request now does not shrink what later refreshes may ask for.
        let family = Grant {
            principal: principal.id,
            tenant: principal.tenant,
            client_id: grant.client_id.as_str(),
            scopes: grant.scope,
            audience: &grant.resource,
            binding: grant.binding.as_ref(),
            delegation: None,
        };
        let token_grant = Grant { scopes, binding: binding.as_ref(), ..family };
        let (mut response, claims) = self.mint(&token_grant, None)?;
        let (next, _) =
            self.issue_refresh(Some(grant.family_id.clone()), &family, &Jti::new(claims.jti.clone())).await?;
        response.refresh_token = Some(next);
        Ok((response, claims))
    }

    /// Revokes a refresh token family: its refresh tokens and the access tokens minted
    /// with them (a replay means one of them was stolen; RFC 6749 section 10.4).
    pub(super) async fn revoke_family(&self, family: &FamilyId, now: Timestamp) -> OAuthResult<()> {
        self.db.revoke_refresh_family(family, now).await?;
        let until = now.plus_secs(crate::jwt::MAX_ACCESS_TOKEN_TTL_SECS as i64 + crate::jwt::LEEWAY_SECS as i64);
        self.db.revoke_family_access_tokens(family, until).await?;
        Ok(())
    }
}

/// What this refresh request asks for within its grant: a scope subset, the grant's
/// resource, and a binding within the grant's (the consented binding holds for every
/// refresh; a request may narrow it for one access token).
fn narrowed(asked: &Narrowing, grant: &RefreshGrant) -> OAuthResult<(ScopeSet, Option<ContextBinding>)> {
    let scopes = granted_scopes(asked.scope.as_deref(), grant.scope)?;
    if !asked.names_only(&grant.resource) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            "a refresh token is good only for the resource it was issued for",
        ));
    }
    let binding = match (&asked.binding, &grant.binding) {
        (None, consented) => consented.clone(),
        (Some(asked), Some(consented)) if asked.is_within(consented) => Some(asked.clone()),
        (Some(asked), None) => Some(asked.clone()),
        (Some(_), Some(_)) => {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidAuthorizationDetails,
                "authorization_details must stay within the refresh token's binding",
            ));
        }
    };
    Ok((scopes, binding))
}
