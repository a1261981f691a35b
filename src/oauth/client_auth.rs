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
    pub async fn authenticate_client(&self, presented: &ClientCredentials) -> OAuthResult<AuthenticatedClient> {
        let is_basic = presented.method == AuthMethod::Basic;
        let ClientLookup::Usable(StoredClient { client, secret_hash }) = self.find_client(&presented.client_id).await?
        else {
            return Err(failed(is_basic));
        };
        match (secret_hash, &presented.secret) {
            (Some(hash), Some(secret)) => {
                let ok: bool = token::hash(secret.expose()).as_bytes().ct_eq(hash.as_str().as_bytes()).into();
                if !ok {
                    return Err(failed(is_basic));
                }
            }
            // A public client authenticates with `none` only.
            (None, None) => {}
            _ => return Err(failed(is_basic)),
        }
        Ok(AuthenticatedClient { client, method: presented.method })
    }
}
