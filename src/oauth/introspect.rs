//! Token introspection (RFC 7662), for authenticated confidential clients (e.g. a
//! resource server) of the same tenant as the token.

use serde::Serialize;

use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::refresh::is_refresh_token;
use super::request::{ClientCredentials, TokenQuery};
use super::server::AuthServer;
use crate::crypto::token;
use crate::domain::{Jti, Timestamp};
use crate::store::RefreshTokenState;

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
    act: Option<crate::jwt::Actor>,
    /// RFC 9396 section 9.1: the context binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_details: Option<serde_json::Value>,
}

impl AuthServer {
    pub async fn introspect(
        &self,
        presented: &ClientCredentials,
        request: &TokenQuery,
        meta: &crate::domain::audit::RequestMeta,
    ) -> OAuthResult<Introspection> {
        let client = self.authenticate_client(presented, meta).await?;
        if !client.client.confidential {
            return Err(OAuthError::new(OAuthErrorCode::InvalidClient, "introspection requires a confidential client"));
        }
        let presented = request.token.expose();
        let tenant = client.client.tenant;
        let now = Timestamp::now();
        let inactive = Introspection::default();
        if is_refresh_token(presented) {
            let Some(RefreshTokenState { grant, spent, family_revoked }) =
                self.db.refresh_token(&token::token_hash(presented)).await?
            else {
                return Ok(inactive);
            };
            if spent || family_revoked || grant.expires_at <= now || grant.tenant != tenant {
                return Ok(inactive);
            }
            return Ok(Introspection {
                active: true,
                scope: Some(grant.scope.to_string()),
                client_id: Some(grant.client_id.to_string()),
                sub: Some(grant.principal.to_string()),
                aud: Some(grant.resource),
                exp: Some(grant.expires_at.millis() / 1000),
                token_type: Some("refresh_token"),
                tenant: Some(tenant.to_string()),
                ..Default::default()
            });
        }
        let Ok(claims) = self.tokens.verify_with_refresh(presented, None).await else { return Ok(inactive) };
        if claims.tenant.parse::<crate::domain::TenantId>().ok() != Some(tenant)
            || self.db.is_jti_revoked(&Jti::new(claims.jti.clone())).await?
        {
            return Ok(inactive);
        }
        for parent in &claims.parents {
            if self.db.is_jti_revoked(&Jti::new(parent.clone())).await? {
                return Ok(inactive);
            }
        }
        let principal = match claims.sub.parse() {
            Ok(id) => self.db.principal(id).await?,
            Err(_) => None,
        };
        let live = principal.is_some_and(|p| p.is_active() && !p.revoked_token_issued_at(claims.iat));
        if !live {
            return Ok(inactive);
        }
        Ok(Introspection {
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
        })
    }
}
