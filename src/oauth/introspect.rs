//! `POST /oauth/introspect` (RFC 7662), for authenticated confidential clients (e.g. a
//! resource server) of the same tenant as the token.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::client_auth;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::form::Form;
use crate::crypto::token;
use crate::domain::Timestamp;
use crate::http::AppState;

#[derive(Debug, Default, Serialize)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    /// RFC 8693 section 4.1: the actor chain of an exchanged token.
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<super::access_token::Actor>,
    /// RFC 9396 section 9.1: the context binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_details: Option<serde_json::Value>,
}

pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Form,
) -> OAuthResult<Json<Introspection>> {
    let server = &state.inner.oauth;
    let client = client_auth::authenticate(server, &headers, &form).await?;
    if !client.client.confidential {
        return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "introspection requires a confidential client"));
    }
    let presented = form.require("token")?;
    let tenant = client.client.tenant.to_string();
    let now = Timestamp::now();
    let inactive = Json(Introspection::default());
    if presented.starts_with(super::refresh::PREFIX) {
        let Some((grant, spent, revoked)) = server.db.refresh_token(&token::hash(presented)).await? else {
            return Ok(inactive);
        };
        if spent || revoked || grant.expires_at <= now || grant.tenant.to_string() != tenant {
            return Ok(inactive);
        }
        return Ok(Json(Introspection {
            active: true,
            scope: Some(grant.scope),
            client_id: Some(grant.client_id),
            sub: Some(grant.principal.to_string()),
            aud: Some(grant.resource),
            exp: Some(grant.expires_at.millis() / 1000),
            token_type: Some("refresh_token"),
            tenant: Some(tenant),
            ..Default::default()
        }));
    }
    let Ok(claims) = server.tokens.verify(presented, None) else { return Ok(inactive) };
    if claims.tenant != tenant || server.db.is_jti_revoked(&claims.jti).await? {
        return Ok(inactive);
    }
    for parent in &claims.parents {
        if server.db.is_jti_revoked(parent).await? {
            return Ok(inactive);
        }
    }
    let principal = match claims.sub.parse() {
        Ok(id) => server.db.principal(id).await?,
        Err(_) => None,
    };
    let live = principal.is_some_and(|p| !p.disabled && !p.revoked_token_issued_at(claims.iat));
    if !live {
        return Ok(inactive);
    }
    Ok(Json(Introspection {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        sub: Some(claims.sub),
        aud: Some(claims.aud),
        iss: Some(claims.iss),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        jti: Some(claims.jti),
        token_type: Some("Bearer"),
        tenant: Some(claims.tenant),
        authorization_details: claims.ctx.as_ref().map(crate::domain::ContextBinding::to_authorization_details),
        act: claims.act,
    }))
}
