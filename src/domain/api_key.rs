//! API keys: long-lived, high-entropy bearer secrets for headless agents and scripts.

use serde::Serialize;

use super::{ApiKeyId, PrincipalId, ScopeSet, TenantId, Timestamp};

/// What is stored about an API key. The key itself is never stored, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub principal: PrincipalId,
    pub tenant: TenantId,
    /// `None`: the key carries every power of its principal's roles.
    pub scopes: Option<ScopeSet>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl ApiKey {
    pub fn is_usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}
