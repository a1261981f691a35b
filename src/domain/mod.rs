//! The domain: what a context, a principal, a scope and a failure *are*.
//!
//! Nothing in here knows about HTTP or SQL; every other layer depends on these types,
//! and parsing happens once at the edge so that the rest of the code handles only
//! values that are already known to be valid.

pub mod anomaly;
pub mod api_key;
pub mod audit;
pub mod audit_block;
pub mod binding;
pub mod change;
pub mod client;
pub mod context;
pub mod error;
pub mod grant;
pub mod ids;
pub mod manifest;
pub mod merge_patch;
pub mod oauth_ids;
pub mod principal;
pub mod redirect_uri;
pub mod revision;
pub mod scope;
pub mod time;
pub mod window;

pub use api_key::ApiKey;
pub use binding::{ContextAction, ContextActions, ContextBinding};
pub use change::{ChangeKind, ContextChange};
pub use client::{ApplicationType, GrantType, OAuthClient};
pub use context::{ContextInput, HistoryEntry, Message, MessageRole, Session, StoredContext, StoredSession, Version};
pub use error::{Error, StoreError};
pub use grant::{ContextFacts, ContextGrant, Grantee};
pub use ids::{ApiKeyId, ContextId, GrantId, PrincipalId, TenantId};
pub use oauth_ids::{ClientId, FamilyId, Jti, TokenHash};
pub use principal::{Principal, PrincipalKind, Role, RoleSet, Tenant};
pub use revision::{ContextHead, NewMessages, Provenance, Revision};
pub use scope::{Scope, ScopeSet};
pub use time::Timestamp;
pub use window::HistoryWindow;
