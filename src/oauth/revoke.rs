//! Token revocation (RFC 7009). Refresh tokens revoke their whole family; access
//! tokens go on a deny-list (by `jti`) until they expire. A client may revoke only
//! its own tokens; an unknown or foreign token is not an error, as the RFC requires.

use super::error::OAuthResult;
use super::refresh::is_refresh_token;
use super::request::{ClientCredentials, TokenQuery};
use super::server::AuthServer;
use crate::crypto::token;
use crate::domain::{Jti, Timestamp};

impl AuthServer {
    pub async fn revoke(&self, presented: &ClientCredentials, request: &TokenQuery) -> OAuthResult<()> {
        let client = self.authenticate_client(presented).await?;
        let token = request.token.expose();
        let now = Timestamp::now();
        if is_refresh_token(token) {
            if let Some(found) = self.db.refresh_token(&token::token_hash(token)).await?
                && found.grant.client_id == client.client.client_id
            {
                self.revoke_family(&found.grant.family_id, now).await?;
            }
        } else if let Ok(claims) = self.tokens.verify(token, None)
            && claims.client_id == client.client.client_id.as_str()
        {
            self.db.revoke_jti(&Jti::new(claims.jti), Timestamp::from_millis(claims.exp * 1000)).await?;
        }
        Ok(())
    }
}
