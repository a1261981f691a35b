//! Authentication: turns a credential presented with a request into a [`Caller`].
//!
//! The HTTP layer only extracts a [`Credential`]; everything about what makes a
//! credential valid lives here, so new kinds (JWTs, DPoP proofs, mTLS identities) are
//! new variants and new modules, not changes to the handlers.

pub mod api_key;
pub mod password;
pub mod secret;

use std::sync::Arc;

use crate::domain::{ApiKeyId, Principal, ScopeSet, StoreError, Timestamp};
use crate::store::AuthStore;

pub use secret::Secret;

/// A credential as it arrived, not yet checked.
#[derive(Debug)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// What authenticated the caller (for audit and for revocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialRef {
    ApiKey(ApiKeyId),
    /// The local command line, acting as the platform operator: whoever can run it
    /// already holds the database.
    LocalOperator,
}

/// An authenticated request's identity: who, and with which powers.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// What the credential allows, before intersecting with the principal's roles.
    pub scopes: ScopeSet,
    pub credential: CredentialRef,
}

/// Why a credential was refused. The text is safe to return to the presenter.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn AuthStore>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn AuthStore>) -> Self {
        Self { store }
    }

    pub async fn authenticate(&self, credential: &Credential) -> Result<Caller, AuthError> {
        match credential {
            Credential::Bearer(token) if api_key::looks_like_api_key(token.expose()) => {
                self.api_key(token).await
            }
            Credential::Bearer(_) => Err(AuthError::InvalidToken(
                "the bearer token is not a ctxguard API key",
            )),
        }
    }

    async fn api_key(&self, token: &Secret) -> Result<Caller, AuthError> {
        const REFUSED: &str = "unknown, revoked or expired API key";
        let hash = api_key::hash(token.expose());
        let Some((key, stored_hash)) = self.store.api_key_by_hash(&hash).await? else {
            return Err(AuthError::InvalidToken(REFUSED));
        };
        // The database found the row by hash; compare again in constant time so the
        // decision itself never depends on a variable-time comparison.
        if !api_key::hashes_equal(&hash, &stored_hash) || !key.is_usable_at(Timestamp::now()) {
            return Err(AuthError::InvalidToken(REFUSED));
        }
        let principal = self
            .store
            .principal(key.principal)
            .await?
            .filter(|p| !p.disabled && p.tenant == key.tenant)
            .ok_or(AuthError::InvalidToken(REFUSED))?;
        Ok(Caller {
            principal,
            scopes: key.scopes.unwrap_or_else(ScopeSet::all),
            credential: CredentialRef::ApiKey(key.id),
        })
    }
}
