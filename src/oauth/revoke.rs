//! Token revocation (RFC 7009). Refresh tokens revoke their whole family; access
//! tokens go on a deny-list (by `jti`) until they expire. A client may revoke only
//! its own tokens; an unknown or foreign token is not an error, as the RFC requires.

use super::error::OAuthResult;
use super::refresh::is_refresh_token;
use super::request::{ClientCredentials, TokenQuery};
use super::server::AuthServer;
use crate::crypto::token;
use crate::domain::audit::{self, Action as Audited, Actor, AuditEvent, Outcome, RequestMeta, Target};
use crate::domain::{Jti, Timestamp};

impl AuthServer {
    pub async fn revoke(
        &self,
        presented: &ClientCredentials,
        request: &TokenQuery,
        meta: RequestMeta,
    ) -> OAuthResult<()> {
        let client = self.authenticate_client(presented, &meta).await?;
        let token = request.token.expose();
        let now = Timestamp::now();
        let mut revoked = None;
        if is_refresh_token(token) {
            if let Some(found) = self.db.refresh_token(&token::token_hash(token)).await?
                && found.grant.client_id == client.client.client_id
            {
                self.revoke_family(&found.grant.family_id, now).await?;
                revoked =
                    Some((found.grant.tenant, found.grant.principal, format!("family:{}", found.grant.family_id)));
            }
        } else if let Ok(claims) = self.tokens.verify_with_refresh(token, None).await
            && claims.client_id == client.client.client_id.as_str()
        {
            self.db.revoke_jti(&Jti::new(claims.jti.clone()), Timestamp::from_millis(claims.exp * 1000)).await?;
            if let (Ok(tenant), Ok(principal)) = (claims.tenant.parse(), claims.sub.parse()) {
                revoked = Some((tenant, principal, claims.jti));
            }
        }
        // Recorded after the fact: a revocation is never held back by the audit log.
        // An unknown or foreign token revokes nothing and is not recorded as a revocation.
        if let Some((tenant, principal, what)) = revoked {
            let actor = Actor {
                tenant: Some(tenant),
                principal: Some(principal),
                name: None,
                client_id: Some(client.client.client_id.as_str().to_string()),
                credential: Some(audit::Credential::Client),
            };
            let allowed = Outcome::Allow(std::sync::Arc::from(["rfc7009".to_string()]));
            let event = AuditEvent::new(Audited::TokenRevoke, actor, Some(Target::Token(what)), allowed, meta);
            let _ = self.audit.record(event).await;
        }
        Ok(())
    }
}
