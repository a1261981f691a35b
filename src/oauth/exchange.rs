//! Token exchange (RFC 8693) at `/oauth/token`: an agent trades its access token for
//! a narrower one to hand to a sub-agent or a downstream service.
//!
//! The result can only be narrower than the subject token: a subset of its scopes, a
//! binding within its binding, a lifetime within its remaining lifetime, the same
//! principal and tenant; the audience may change to another resource this server
//! protects. The new token names the actor chain in `act` (RFC 8693 section 4.1) and
//! its ancestry in `parents`, so revoking any ancestor revokes it.

use super::access_token::{AccessClaims, Actor, Delegation, Grant};
use super::client_auth::AuthenticatedClient;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::form::Form;
use super::server::granted_scopes;
use super::token::{TokenResponse, mint, requested_binding};
use crate::authn::{Caller, Credential, Secret};
use crate::domain::Timestamp;
use crate::http::AppState;

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub async fn exchange(state: &AppState, c: &AuthenticatedClient, form: &Form) -> OAuthResult<TokenResponse> {
    let server = &state.inner.oauth;
    if server.max_delegation_depth == 0 {
        return Err(OAuthError::new(OAuthErrorCode::UnsupportedGrantType, "token exchange is disabled"));
    }
    let subject_type = form.require("subject_token_type")?;
    if subject_type != ACCESS_TOKEN_TYPE {
        return Err(OAuthError::invalid_request(format!("subject_token_type must be {ACCESS_TOKEN_TYPE}")));
    }
    if form.get("requested_token_type")?.is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!("requested_token_type must be {ACCESS_TOKEN_TYPE}")));
    }
    let (subject, subject_claims) = verified(state, form.require("subject_token")?, "subject_token").await?;
    if subject.principal.tenant != c.client.tenant {
        return Err(OAuthError::invalid_grant("the subject token belongs to another tenant than this client"));
    }
    let actor = match form.get("actor_token")? {
        None => Actor { sub: c.client.client_id.clone(), client_id: Some(c.client.client_id.clone()), act: None },
        Some(token) => {
            if form.get("actor_token_type")? != Some(ACCESS_TOKEN_TYPE) {
                return Err(OAuthError::invalid_request(format!("actor_token_type must be {ACCESS_TOKEN_TYPE}")));
            }
            let (actor, _) = verified(state, token, "actor_token").await?;
            if actor.principal.tenant != subject.principal.tenant {
                return Err(OAuthError::invalid_grant("the actor token belongs to another tenant"));
            }
            Actor { sub: actor.principal.id.to_string(), client_id: Some(c.client.client_id.clone()), act: None }
        }
    };
    let act = Actor { act: subject_claims.act.clone().map(Box::new), ..actor };
    if act.depth() > server.max_delegation_depth {
        return Err(OAuthError::invalid_request(format!(
            "the delegation chain would be {} actors deep; at most {} are allowed",
            act.depth(),
            server.max_delegation_depth
        )));
    }
    let scopes = granted_scopes(form.get("scope")?, subject.scopes).map_err(|e| {
        OAuthError::invalid_scope(format!("{} (the subject token has: {})", e.description, subject.scopes))
    })?;
    let binding = match (requested_binding(form)?, &subject.binding) {
        (None, inherited) => inherited.as_deref().cloned(),
        (Some(asked), Some(outer)) if !asked.is_within(outer) => {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidAuthorizationDetails,
                format!("authorization_details may only narrow the subject token's binding ({outer})"),
            ));
        }
        (Some(asked), _) => Some(asked),
    };
    let audience = audience(state, form, &subject_claims)?;
    let expires_at = lifetime(form, &subject_claims)?;
    let mut parents = vec![subject_claims.jti.clone()];
    parents.extend(subject_claims.parents.iter().cloned());
    let delegation = Delegation { act, parents, expires_at };
    let grant = Grant {
        principal: subject.principal.id,
        tenant: subject.principal.tenant,
        client_id: &c.client.client_id,
        scopes,
        audience: &audience,
        binding: binding.as_ref(),
        delegation: Some(&delegation),
    };
    let (mut response, _) = mint(server, &grant, None)?;
    response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
    Ok(response)
}

/// A token of ours, fully checked (signature, time, revocation of it and its ancestors,
/// principal enabled) as the resource server would check it for its own audience.
async fn verified(state: &AppState, token: &str, param: &str) -> OAuthResult<(Caller, AccessClaims)> {
    let server = &state.inner.oauth;
    let refused = |why: &str| OAuthError::invalid_request(format!("{param} is not acceptable: {why}"));
    let claims = server.tokens.verify(token, None).map_err(refused)?;
    let caller = state
        .inner
        .authn
        .authenticate(&Credential::Bearer(Secret::new(token.to_string())), &claims.aud)
        .await
        .map_err(|e| match e {
            crate::authn::AuthError::Store(s) => OAuthError::from(s),
            other => refused(&other.to_string()),
        })?;
    Ok((caller, claims))
}

/// The new audience: `resource` or `audience` (one of ours), else the subject's.
fn audience(state: &AppState, form: &Form, subject: &AccessClaims) -> OAuthResult<String> {
    let server = &state.inner.oauth;
    let mut asked = form.all("resource");
    asked.extend(form.all("audience"));
    asked.dedup();
    if asked.is_empty() { Ok(subject.aud.clone()) } else { server.audience(&asked) }
}

/// When the new token expires: never after the subject token; `expires_in` (seconds,
/// a ctxguard extension) may ask for less, and asking for more is refused, not trimmed.
fn lifetime(form: &Form, subject: &AccessClaims) -> OAuthResult<i64> {
    let now = Timestamp::now().millis() / 1000;
    let remaining = subject.exp - now;
    match form.get("expires_in")? {
        None => Ok(subject.exp),
        Some(text) => {
            let secs: i64 = text
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| OAuthError::invalid_request("expires_in must be a positive number of seconds"))?;
            if secs > remaining {
                return Err(OAuthError::invalid_request(format!(
                    "expires_in {secs} would outlive the subject token ({remaining} s left)"
                )));
            }
            Ok(now + secs)
        }
    }
}
