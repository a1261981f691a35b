//! The failures of the domain and service layer. `http::error` maps every variant to a
//! status and body in one place; adding a variant fails to compile until it is mapped.

use super::{ContextId, ScopeSet, Version};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that parsed but is not acceptable; `field` names what to fix.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("Context not found")]
    ContextNotFound(ContextId),
    #[error("Context has expired")]
    ContextExpired(ContextId),
    #[error("Context has been deleted")]
    ContextDeleted(ContextId),
    #[error("A context with this id exists or existed; ids are never reused")]
    ContextExists(ContextId),
    #[error("If-Match does not match the current version (ETag \"v{current}\")")]
    PreconditionFailed { context_id: ContextId, current: Version },
    #[error("session.history would exceed {max} messages")]
    HistoryTooLong { context_id: ContextId, max: usize },
    #[error("the context would be larger than max_context_bytes ({max} bytes serialized)")]
    ContextTooLarge { context_id: ContextId, max: usize },
    #[error("a message is longer than max_message_bytes ({max} bytes)")]
    MessageTooLarge { context_id: ContextId, max: usize },
    /// The principal's roles do not allow the action.
    #[error("{reason}")]
    Forbidden { reason: String },
    /// The credential's scopes do not cover the action; `required` is every scope the
    /// operation needs, so that a client can step up in one round.
    #[error("The credential lacks the scope this operation requires: {required}")]
    InsufficientScope { required: ScopeSet },
    /// A non-context resource (tenant, principal, API key) that does not exist or is
    /// not visible to the caller.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{0}")]
    Conflict(String),
    /// The policy directory does not load (file, line and reason); the old set stays.
    #[error("the policies were not reloaded: {0}")]
    InvalidPolicy(String),
    /// An inline context that is well formed but not acceptable: its signature, key,
    /// expiry or audience, or unsigned where that is not allowed (docs/integrity.md).
    #[error("the inline context is not acceptable: {0}")]
    InlineRejected(String),
    /// The operation's audit record could not be committed, so it was not performed.
    #[error("the audit log cannot be written; the operation was not performed")]
    AuditUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidField { field: field.into(), message: message.into() }
    }
}

/// What can go wrong below the domain: the database, or a row that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write.
    #[error("duplicate")]
    Duplicate,
    /// The database could not be reached or failed the statement.
    #[error("database error: {0}")]
    Backend(String),
    /// A stored row is not what this version of ctxguard wrote.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A stored version does not match its signature: changed behind the server's back
    /// (docs/integrity.md).
    #[error("stored data failed its integrity check: {0}")]
    Integrity(String),
}
