//! Long-lived streams must not outlive the credential that opened them. A transport
//! hands each session a [`StreamAuthority`]; before every notification (and at least
//! every [`RECHECK`]) the stream asks it for the caller as of now — the credential
//! checked again, the principal's current roles and state — and ends the session when
//! there is none (revoked, expired, principal disabled).

use std::sync::Arc;
use std::time::Duration;

use crate::authn::Caller;

/// How often an idle stream checks that its credential still holds.
pub const RECHECK: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
pub trait StreamAuthority: Send + Sync {
    /// The caller as of now; `None` when the credential no longer authenticates.
    async fn current(&self) -> Option<Caller>;
    /// Ends the session and every stream of it.
    async fn end(&self);
}

/// A handle the transport puts in each request's extensions.
pub type Authority = Arc<dyn StreamAuthority>;
