//! Token exchange (RFC 8693) at `/oauth/token`: an agent trades its access token for
//! a narrower one to hand to a sub-agent or a downstream service.
//!
//! The result can only be narrower than the subject token: a subset of its scopes, a
//! binding within its binding, a lifetime within its remaining lifetime, the same
//! principal and tenant; the audience may change to another resource this server
//! protects. The new token names the actor chain in `act` (RFC 8693 section 4.1) and
//! its ancestry in `parents`, so revoking any ancestor revokes it.

use super::client_auth::AuthenticatedClient;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::request::{ACCESS_TOKEN_TYPE, Narrowing};
use super::server::{AuthServer, granted_scopes};
use super::token::TokenResponse;
use crate::authn::{AuthError, Caller, Credential};
use crate::crypto::Secret;
use crate::domain::Timestamp;
use crate::jwt::{AccessClaims, Actor, Delegation, Grant};

impl AuthServer {
    pub(super) async fn exchange(
        &self,
        c: &AuthenticatedClient,
        subject_token: &Secret,
        actor_token: Option<&Secret>,
        expires_in: Option<i64>,
        asked: Narrowing,
    ) -> OAuthResult<(TokenResponse, AccessClaims)> {
        let max_depth = self.config.max_delegation_depth;
        if max_depth == 0 {
            return Err(OAuthError::new(OAuthErrorCode::UnsupportedGrantType, "token exchange is disabled"));
        }
        let (subject, subject_claims) = self.verified(subject_token, "subject_token").await?;
        if subject.principal.tenant != c.client.tenant {
            return Err(OAuthError::invalid_grant("the subject token belongs to another tenant than this client"));
        }
        let client_id = c.client.client_id.to_string();
        let actor = match actor_token {
            None => Actor { sub: client_id.clone(), client_id: Some(client_id.clone()), act: None },
            Some(token) => {
                let (actor, _) = self.verified(token, "actor_token").await?;
                if actor.principal.tenant != subject.principal.tenant {
                    return Err(OAuthError::invalid_grant("the actor token belongs to another tenant"));
                }
                Actor { sub: actor.principal.id.to_string(), client_id: Some(client_id.clone()), act: None }
            }
        };
        let act = Actor { act: subject_claims.act.clone().map(Box::new), ..actor };
        if act.depth() > max_depth {
            return Err(OAuthError::invalid_request(format!(
                "the delegation chain would be {} actors deep; at most {max_depth} are allowed",
                act.depth(),
            )));
        }
        let scopes = granted_scopes(asked.scope.as_deref(), subject.scopes).map_err(|e| {
            OAuthError::invalid_scope(format!("{} (the subject token has: {})", e.description, subject.scopes))
        })?;
        let binding = match (asked.binding, &subject.binding) {
            (None, inherited) => inherited.as_deref().cloned(),
            (Some(asked), Some(outer)) if !asked.is_within(outer) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidAuthorizationDetails,
                    format!("authorization_details may only narrow the subject token's binding ({outer})"),
                ));
            }
            (Some(asked), _) => Some(asked),
        };
        // The new audience: `resource` or `audience` (one of ours), else the subject's.
        let audience =
            if asked.resources.is_empty() { subject_claims.aud.clone() } else { self.audience(&asked.resources)? };
        let expires_at = lifetime(expires_in, &subject_claims)?;
        let mut parents = vec![subject_claims.jti.clone()];
        parents.extend(subject_claims.parents.iter().cloned());
        let delegation = Delegation { act, parents, expires_at };
        let grant = Grant {
            principal: subject.principal.id,
            tenant: subject.principal.tenant,
            client_id: &client_id,
            scopes,
            audience: &audience,
            binding: binding.as_ref(),
            delegation: Some(&delegation),
        };
        let (mut response, claims) = self.mint(&grant, None)?;
        response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
        Ok((response, claims))
    }

    /// A token of ours, fully checked (signature, time, revocation of it and its ancestors,
    /// principal enabled) as the resource server would check it for its own audience.
    async fn verified(&self, token: &Secret, param: &str) -> OAuthResult<(Caller, AccessClaims)> {
        let refused = |why: &str| OAuthError::invalid_request(format!("{param} is not acceptable: {why}"));
        let claims = self.tokens.verify_with_refresh(token.expose(), None).await.map_err(refused)?;
        let caller = self
            .authn
            .authenticate(&Credential::Bearer(Secret::new(token.expose().to_string())), &claims.aud)
            .await
            .map_err(|e| match e {
                AuthError::Store(s) => OAuthError::from(s),
                other => refused(&other.to_string()),
            })?;
        Ok((caller, claims))
    }
}

/// When the new token expires: never after the subject token; `expires_in` (seconds,
/// a ctxguard extension) may ask for less, and asking for more is refused, not trimmed.
fn lifetime(expires_in: Option<i64>, subject: &AccessClaims) -> OAuthResult<i64> {
    let now = Timestamp::now().millis() / 1000;
    let remaining = subject.exp - now;
    match expires_in {
        None => Ok(subject.exp),
        Some(secs) if secs > remaining => Err(OAuthError::invalid_request(format!(
            "expires_in {secs} would outlive the subject token ({remaining} s left)"
        ))),
        Some(secs) => Ok(now + secs),
    }
}
