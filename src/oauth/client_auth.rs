//! Client authentication at the token, revocation and introspection endpoints
//! (RFC 6749 section 2.3): `client_secret_basic`, `client_secret_post`, or `none` for
//! public clients. The endpoint extracts exactly one presented method
//! ([`ClientCredentials`]); this module checks it.

use subtle::ConstantTimeEq;

use super::error::{OAuthError, OAuthResult};
use super::request::{AuthMethod, ClientCredentials};
use super::server::{AuthServer, ClientLookup};
use crate::crypto::token;
use crate::domain::OAuthClient;
use crate::domain::audit::RequestMeta;
use crate::store::StoredClient;

pub struct AuthenticatedClient {
    pub client: OAuthClient,
    pub method: AuthMethod,
}

/// The one answer to every failed client authentication; a client that tried HTTP
/// Basic gets a Basic challenge with the 401 (RFC 6749 section 5.2).
pub fn failed(basic: bool) -> OAuthError {
    let mut e = OAuthError::invalid_client("client authentication failed");
    e.basic_challenge = basic;
    e
}

impl AuthServer {
    /// Checks the client's credentials. A failure counts toward the lockout of the
    /// request's address and, for a client acting as a service principal, of that
    /// principal; while either is locked out the credentials are not looked at
    /// (docs/anomaly.md).
    pub async fn authenticate_client(
        &self,
        presented: &ClientCredentials,
        meta: &RequestMeta,
    ) -> OAuthResult<AuthenticatedClient> {
        let guard = self.authn.guard();
        guard.may_authenticate(meta.ip, None).map_err(OAuthError::locked_out)?;
        let is_basic = presented.method == AuthMethod::Basic;
        let ClientLookup::Usable(StoredClient { client, secret_hash }) = self.find_client(&presented.client_id).await?
        else {
            guard.auth_failed(meta, None, "unknown client").await;
            return Err(failed(is_basic));
        };
        guard.may_authenticate(None, client.principal).map_err(OAuthError::locked_out)?;
        let ok = match (secret_hash, &presented.secret) {
            (Some(hash), Some(secret)) => {
                token::hash(secret.expose()).as_bytes().ct_eq(hash.as_str().as_bytes()).into()
            }
            // A public client authenticates with `none` only.
            (None, None) => true,
            _ => false,
        };
        if !ok {
            let principal = match client.principal {
                Some(id) => self.principal(id).await?,
                None => None,
            };
            guard.auth_failed(meta, principal.as_ref(), "client authentication failed").await;
            return Err(failed(is_basic));
        }
        Ok(AuthenticatedClient { client, method: presented.method })
    }
}
