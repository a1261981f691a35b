//! The token endpoint's service (RFC 6749 section 3.2): the client is authenticated and
//! allowed the grant, then one function per grant type issues the token.

use serde::Serialize;

use super::client_auth::AuthenticatedClient;
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::request::{ClientCredentials, Narrowing, TokenRequest};
use super::server::{AuthServer, granted_scopes};
use crate::domain::audit::{self, Action as Audited, Actor, AuditEvent, Outcome, RequestMeta, Target};
use crate::domain::{ContextBinding, GrantType, Scope};
use crate::jwt::{AccessClaims, Grant};

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

impl AuthServer {
    /// `POST /oauth/token`: authenticates the client, checks it may use the grant, and
    /// carries the grant out.
    pub async fn token(
        &self,
        presented: &ClientCredentials,
        request: TokenRequest,
        meta: RequestMeta,
    ) -> OAuthResult<TokenResponse> {
        let grant = request.grant_type();
        let action = match grant {
            GrantType::RefreshToken => Audited::TokenRefresh,
            GrantType::TokenExchange => Audited::TokenExchange,
            _ => Audited::TokenIssue,
        };
        match self.grant(presented, request, &meta).await {
            Ok((response, claims)) => {
                // The token leaves only once its record is committed.
                let actor = Actor {
                    tenant: claims.tenant.parse().ok(),
                    principal: claims.sub.parse().ok(),
                    name: None,
                    client_id: Some(claims.client_id.clone()),
                    credential: Some(audit::Credential::Client),
                };
                let event = AuditEvent::new(
                    action,
                    actor,
                    Some(Target::Token(claims.jti.clone())),
                    Outcome::Allow(std::sync::Arc::from([format!("grant:{}", grant.as_str())])),
                    meta,
                );
                self.audit
                    .record(event)
                    .await
                    .map_err(|e| OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, e.to_string()))?;
                metrics::counter!("ctxguard_tokens_issued_total", "grant" => grant.as_str()).increment(1);
                Ok(response)
            }
            Err(e) => {
                let actor = Actor {
                    client_id: Some(presented.client_id.as_str().to_string()),
                    credential: Some(audit::Credential::Client),
                    ..Actor::default()
                };
                let refusal = Outcome::Deny(format!("{}: {}", e.code.as_str(), e.description));
                let _ = self.audit.record(AuditEvent::new(action, actor, None, refusal, meta)).await;
                Err(e)
            }
        }
    }

    /// Authenticates the client, checks it may use the grant, and carries it out.
    async fn grant(
        &self,
        presented: &ClientCredentials,
        request: TokenRequest,
        meta: &RequestMeta,
    ) -> OAuthResult<(TokenResponse, AccessClaims)> {
        let grant = request.grant_type();
        let client = self.authenticate_client(presented, meta).await?;
        if !client.client.allows(grant) {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                format!("this client may not use the {} grant", grant.as_str()),
            ));
        }
        let response = match request {
            TokenRequest::ClientCredentials { narrowing } => self.client_credentials(&client, &narrowing).await?,
            TokenRequest::AuthorizationCode { code, redirect_uri, code_verifier, narrowing } => {
                self.redeem_code(&client, &code, &redirect_uri, &code_verifier, narrowing).await?
            }
            TokenRequest::RefreshToken { refresh_token, narrowing } => {
                self.refresh(&client, &refresh_token, &narrowing, meta).await?
            }
            TokenRequest::TokenExchange { subject_token, actor_token, expires_in, narrowing } => {
                self.exchange(&client, &subject_token, actor_token.as_ref(), expires_in, narrowing).await?
            }
        };
        Ok(response)
    }

    /// RFC 6749 section 4.4: a confidential client acting as its own service principal.
    async fn client_credentials(
        &self,
        c: &AuthenticatedClient,
        asked: &Narrowing,
    ) -> OAuthResult<(TokenResponse, AccessClaims)> {
        if !c.client.confidential {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "client_credentials needs a confidential client",
            ));
        }
        let principal_id = c.client.principal.ok_or_else(|| {
            OAuthError::new(OAuthErrorCode::UnauthorizedClient, "the client has no service principal")
        })?;
        let principal = self.principal(principal_id).await?.filter(|p| p.is_active()).ok_or_else(|| {
            OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "the client's service principal is disabled or suspended",
            )
        })?;
        let scopes = granted_scopes(asked.scope.as_deref(), c.client.scopes.without(Scope::OfflineAccess))?;
        let audience = self.audience(&asked.resources)?;
        let grant = Grant {
            principal: principal.id,
            tenant: principal.tenant,
            client_id: c.client.client_id.as_str(),
            scopes,
            audience: &audience,
            binding: asked.binding.as_ref(),
            delegation: None,
        };
        self.mint(&grant, None)
    }

    /// Issues an access token for `grant` (and passes through a refresh token, if any);
    /// also returns the token's claims. `offline_access` is reported in the response's
    /// scope but never put in the access token: it grants nothing at a resource.
    pub(super) fn mint(
        &self,
        grant: &Grant<'_>,
        refresh_token: Option<String>,
    ) -> OAuthResult<(TokenResponse, AccessClaims)> {
        let in_token = Grant { scopes: grant.scopes.without(Scope::OfflineAccess), ..*grant };
        let (access_token, claims) = self.tokens.issue(&in_token).map_err(OAuthError::server)?;
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
}
