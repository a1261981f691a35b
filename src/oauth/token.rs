//! `POST /oauth/token` (RFC 6749 section 3.2): one function per grant type.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access_token::{AccessClaims, Grant};
use super::client_auth::{self, AuthenticatedClient};
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::form::Form;
use super::server::{AuthServer, granted_scopes};
use super::{authorization_code, exchange, refresh};
use crate::domain::{ContextBinding, GrantType, Scope};
use crate::http::AppState;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// RFC 8693 section 2.2.1 (token exchange responses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 9396 section 7: the binding the token carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
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
        GrantType::TokenExchange => exchange::exchange(&state, &client, &form).await?,
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
    let binding = requested_binding(form)?;
    let grant = Grant {
        principal: principal.id,
        tenant: principal.tenant,
        client_id: &c.client.client_id,
        scopes,
        audience: &audience,
        binding: binding.as_ref(),
        delegation: None,
    };
    Ok(mint(server, &grant, None)?.0)
}

/// The context binding a token request asks for (RFC 9396 `authorization_details`).
pub fn requested_binding(form: &Form) -> OAuthResult<Option<ContextBinding>> {
    form.get("authorization_details")?
        .map(|text| {
            ContextBinding::from_authorization_details(text).map_err(|m| {
                OAuthError::new(OAuthErrorCode::InvalidAuthorizationDetails, format!("authorization_details {m}"))
            })
        })
        .transpose()
}

/// Issues an access token for `grant` (and passes through a refresh token, if any);
/// also returns the token's claims. `offline_access` is reported in the response's
/// scope but never put in the access token: it grants nothing at a resource.
pub fn mint(
    server: &AuthServer,
    grant: &Grant<'_>,
    refresh_token: Option<String>,
) -> OAuthResult<(TokenResponse, AccessClaims)> {
    let in_token = Grant { scopes: grant.scopes.without(Scope::OfflineAccess), ..*grant };
    let (access_token, claims) = server.tokens.issue(&in_token).map_err(OAuthError::server)?;
    let response = TokenResponse {
        access_token,
        issued_token_type: None,
        token_type: "Bearer",
        expires_in: u64::try_from(claims.exp - claims.iat).unwrap_or(0),
        scope: grant.scopes.to_string(),
        refresh_token,
        authorization_details: grant.binding.map(ContextBinding::to_authorization_details),
    };
    Ok((response, claims))
}
