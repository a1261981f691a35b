//! The refresh_token grant (RFC 6749 section 6, OAuth 2.1 section 4.3): refresh tokens
//! are opaque, stored as hashes, rotated on every use; presenting a spent one revokes
//! its whole family (the legitimate holder and the thief both lose it).

use super::access_token::Grant;
use super::client_auth::AuthenticatedClient;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::form::Form;
use super::server::{AuthServer, granted_scopes};
use super::token::{TokenResponse, mint};
use crate::crypto::token;
use crate::domain::{ContextBinding, ScopeSet, Timestamp};
use crate::store::{OneTime, RefreshGrant};

pub const PREFIX: &str = "ctxr_";

/// Creates a refresh token in `family` (a new family when `None`) standing for `what`
/// (its scopes, audience and binding are what every refresh may ask for), and returns
/// it with its family id.
pub async fn issue(server: &AuthServer, family: Option<String>, what: &Grant<'_>) -> OAuthResult<(String, String)> {
    let now = Timestamp::now();
    let family_id = match family {
        Some(f) => f,
        None => {
            let f = uuid::Uuid::new_v4().to_string();
            server.db.create_refresh_family(&f, what.client_id, what.principal, now).await?;
            f
        }
    };
    let secret = token::generate(PREFIX);
    let grant = RefreshGrant {
        family_id: family_id.clone(),
        client_id: what.client_id.to_string(),
        principal: what.principal,
        tenant: what.tenant,
        scope: what.scopes.to_string(),
        resource: what.audience.to_string(),
        expires_at: now.plus_secs(server.refresh_ttl.as_secs() as i64),
        binding: what.binding.cloned(),
    };
    server.db.insert_refresh_token(&token::hash(secret.expose()), &grant, now).await?;
    Ok((secret.expose().to_string(), family_id))
}

pub async fn exchange(server: &AuthServer, c: &AuthenticatedClient, form: &Form) -> OAuthResult<TokenResponse> {
    let presented = form.require("refresh_token")?;
    let now = Timestamp::now();
    let hash = token::hash(presented);
    // Check the request against the grant before spending the token: a request the
    // server refuses (bad scope, resource or binding) must not cost the client its
    // refresh token. The grant's fields never change, so the check still holds below.
    if let Some((g, false, false)) = server.db.refresh_token(&hash).await?
        && g.client_id == c.client.client_id
    {
        narrowed(form, &g)?;
    }
    let grant = match server.db.use_refresh_token(&hash, now).await? {
        OneTime::Unknown => return Err(OAuthError::invalid_grant("unknown, expired or revoked refresh token")),
        OneTime::Replayed { grant, .. } => {
            server.db.revoke_refresh_family(&grant.family_id, now).await?;
            tracing::warn!(
                incident = "refresh_token_replay",
                client_id = %grant.client_id,
                principal = %grant.principal,
                "a spent refresh token was presented; its family is revoked"
            );
            metrics::counter!("ctxguard_security_incidents_total", "kind" => "refresh_token_replay").increment(1);
            return Err(OAuthError::invalid_grant("refresh token was already used; its family has been revoked"));
        }
        OneTime::Fresh(grant) => grant,
    };
    if grant.client_id != c.client.client_id {
        // Someone else's token: treat it as compromised.
        server.db.revoke_refresh_family(&grant.family_id, now).await?;
        return Err(OAuthError::invalid_grant("the refresh token was not issued to this client"));
    }
    if grant.expires_at <= now {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    let original = ScopeSet::parse_known(&grant.scope);
    let (scopes, binding) = narrowed(form, &grant)?;
    let principal = server.active_principal(grant.principal).await?;
    // Rotation keeps the original scope and binding in the family, so a narrower
    // request now does not shrink what later refreshes may ask for.
    let family = Grant {
        principal: principal.id,
        tenant: principal.tenant,
        client_id: &grant.client_id,
        scopes: original,
        audience: &grant.resource,
        binding: grant.binding.as_ref(),
        delegation: None,
    };
    let (next, _) = issue(server, Some(grant.family_id.clone()), &family).await?;
    let token_grant = Grant { scopes, binding: binding.as_ref(), ..family };
    Ok(mint(server, &token_grant, Some(next))?.0)
}

/// What this refresh request asks for within its grant: a scope subset, the grant's
/// resource, and a binding within the grant's (the consented binding holds for every
/// refresh; a request may narrow it for one access token).
fn narrowed(form: &Form, grant: &RefreshGrant) -> OAuthResult<(ScopeSet, Option<ContextBinding>)> {
    let scopes = granted_scopes(form.get("scope")?, ScopeSet::parse_known(&grant.scope))?;
    let resources = form.all("resource");
    if !(resources.is_empty() || resources == [grant.resource.as_str()]) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            "a refresh token is good only for the resource it was issued for",
        ));
    }
    let binding = match (super::token::requested_binding(form)?, &grant.binding) {
        (None, consented) => consented.clone(),
        (Some(asked), Some(consented)) if asked.is_within(consented) => Some(asked),
        (Some(asked), None) => Some(asked),
        (Some(_), Some(_)) => {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidAuthorizationDetails,
                "authorization_details must stay within the refresh token's binding",
            ));
        }
    };
    Ok((scopes, binding))
}
