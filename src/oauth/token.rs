//! `POST /oauth/token` (RFC 6749 section 3.2): one function per grant type.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access_token::Grant;
use super::client_auth::{self, AuthenticatedClient};
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::form::Form;
use super::server::{AuthServer, granted_scopes};
use super::{authorization_code, refresh};
use crate::domain::{GrantType, PrincipalId, Scope, ScopeSet, TenantId};
use crate::http::AppState;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut r = Json(self).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        r
    }
}

pub async fn token(State(state): State<AppState>, headers: HeaderMap, form: Form) -> OAuthResult<TokenResponse> {
    let server = &state.inner.oauth;
    let grant_type = form.require("grant_type")?;
    let grant = GrantType::parse(grant_type).map_err(|_| {
        OAuthError::new(OAuthErrorCode::UnsupportedGrantType, format!("unsupported grant_type {grant_type:?}"))
    })?;
    let client = client_auth::authenticate(server, &headers, &form).await?;
    if !client.client.allows(grant) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            format!("this client may not use the {grant_type} grant"),
        ));
    }
    let response = match grant {
        GrantType::ClientCredentials => client_credentials(server, &client, &form).await?,
        GrantType::AuthorizationCode => authorization_code::exchange(server, &client, &form).await?,
        GrantType::RefreshToken => refresh::exchange(server, &client, &form).await?,
    };
    metrics::counter!("ctxguard_tokens_issued_total", "grant" => grant.as_str()).increment(1);
    Ok(response)
}

/// RFC 6749 section 4.4: a confidential client acting as its own service principal.
async fn client_credentials(server: &AuthServer, c: &AuthenticatedClient, form: &Form) -> OAuthResult<TokenResponse> {
    if !c.client.confidential {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "client_credentials needs a confidential client",
        ));
    }
    let principal_id = c
        .client
        .principal
        .ok_or_else(|| OAuthError::new(OAuthErrorCode::UnauthorizedClient, "the client has no service principal"))?;
    let principal = server.principal(principal_id).await?.filter(|p| !p.disabled).ok_or_else(|| {
        OAuthError::new(OAuthErrorCode::UnauthorizedClient, "the client's service principal is disabled")
    })?;
    let scopes = granted_scopes(form.get("scope")?, c.client.scopes.without(Scope::OfflineAccess))?;
    let audience = server.audience(&form.all("resource"))?;
    Ok(mint(server, principal.id, principal.tenant, &c.client.client_id, scopes, &audience, None)?.0)
}

/// Issues an access token (and passes through a refresh token, if any); also returns
/// the access token's `jti`.
pub fn mint(
    server: &AuthServer,
    principal: PrincipalId,
    tenant: TenantId,
    client_id: &str,
    scopes: ScopeSet,
    audience: &str,
    refresh_token: Option<String>,
) -> OAuthResult<(TokenResponse, String)> {
    let (access_token, claims) = server
        .tokens
        .issue(&Grant { principal, tenant, client_id, scopes: scopes.without(Scope::OfflineAccess), audience })
        .map_err(OAuthError::server)?;
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: server.tokens.ttl().as_secs(),
        scope: scopes.to_string(),
        refresh_token,
    };
    Ok((response, claims.jti))
}
