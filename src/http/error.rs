//! The one place where failures become HTTP responses (the `{error, code, context_id}` body).
//!
//! Every variant has a deliberate status: there is no catch-all, so a new domain error
//! does not compile until someone decides what a client should see.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::authn::AuthError;
use crate::domain::{ContextId, Error, ScopeSet, StoreError};

/// `{"error": "<human message>", "code": "<machine_code>", "context_id"?}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub context_id: Option<ContextId>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    #[error("Malformed JSON: {0}")]
    MalformedJson(String),
    #[error("JSON nesting exceeds the limit of {max} levels")]
    TooDeep { max: usize },
    #[error("Request body exceeds the limit of {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("Content-Type must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("{0}")]
    BadHeader(String),
    #[error("Credentials in the query string are never accepted; use the Authorization header")]
    TokenInQuery,
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("No such endpoint")]
    RouteNotFound,
    #[error("The request took too long")]
    Timeout,
    #[error("Too many requests ({} per minute {}); retry after {} s", .0.quota, .0.scope, .0.reset_secs.max(1))]
    RateLimited(super::rate_limit::Standing),
    #[error("Internal error")]
    Internal,
}

/// Attached to 401/403 responses; the challenge middleware turns it into a
/// `WWW-Authenticate` header naming the protected resource's metadata URL, which the
/// error itself does not know.
#[derive(Clone, Debug)]
pub struct Challenge {
    /// RFC 6750 section 3.1 error code; `None` when no credentials were sent.
    pub error: Option<&'static str>,
    pub description: Option<String>,
    pub scope: Option<ScopeSet>,
}

impl HttpError {
    fn parts(&self) -> (StatusCode, &'static str, Option<ContextId>) {
        use StatusCode as S;
        match self {
            HttpError::Domain(e) => match e {
                Error::InvalidField { .. } => (S::BAD_REQUEST, "invalid_request", None),
                Error::ContextNotFound(id) => (S::NOT_FOUND, "context_not_found", Some(*id)),
                Error::ContextExpired(id) => (S::NOT_FOUND, "context_expired", Some(*id)),
                Error::ContextDeleted(id) => (S::NOT_FOUND, "context_deleted", Some(*id)),
                Error::ContextExists(id) => (S::CONFLICT, "context_exists", Some(*id)),
                Error::PreconditionFailed { context_id, .. } => {
                    (S::PRECONDITION_FAILED, "precondition_failed", Some(*context_id))
                }
                Error::HistoryTooLong { context_id, .. } => (S::BAD_REQUEST, "history_too_long", Some(*context_id)),
                Error::ContextTooLarge { context_id, .. } => {
                    (S::PAYLOAD_TOO_LARGE, "context_too_large", Some(*context_id))
                }
                Error::MessageTooLarge { context_id, .. } => {
                    (S::PAYLOAD_TOO_LARGE, "message_too_large", Some(*context_id))
                }
                Error::Forbidden { .. } => (S::FORBIDDEN, "forbidden", None),
                Error::InsufficientScope { .. } => (S::FORBIDDEN, "insufficient_scope", None),
                Error::NotFound { .. } => (S::NOT_FOUND, "not_found", None),
                Error::Conflict(_) => (S::CONFLICT, "conflict", None),
                Error::InvalidPolicy(_) => (S::UNPROCESSABLE_ENTITY, "invalid_policy", None),
                Error::AuditUnavailable => (S::SERVICE_UNAVAILABLE, "audit_unavailable", None),
                Error::InlineRejected(_) => (S::UNAUTHORIZED, "invalid_context", None),
                Error::Store(StoreError::Duplicate) => (S::CONFLICT, "conflict", None),
                Error::Store(StoreError::Backend(_)) => (S::SERVICE_UNAVAILABLE, "store_unavailable", None),
                Error::Store(StoreError::Corrupt(_)) => (S::INTERNAL_SERVER_ERROR, "store_corrupt", None),
                // DESIGN.md §6: a version altered behind the server's back is a conflict
                // with what was signed, never a 500.
                Error::Store(StoreError::Integrity(_)) => (S::CONFLICT, "integrity_error", None),
            },
            HttpError::Unauthenticated(AuthError::Store(StoreError::Backend(_))) => {
                (S::SERVICE_UNAVAILABLE, "store_unavailable", None)
            }
            HttpError::Unauthenticated(AuthError::Store(_)) => (S::INTERNAL_SERVER_ERROR, "store_corrupt", None),
            HttpError::Unauthenticated(AuthError::Missing) => (S::UNAUTHORIZED, "unauthorized", None),
            HttpError::Unauthenticated(AuthError::LockedOut(_)) => (S::TOO_MANY_REQUESTS, "locked_out", None),
            HttpError::Unauthenticated(AuthError::Malformed(_) | AuthError::InvalidToken(_)) => {
                (S::UNAUTHORIZED, "invalid_token", None)
            }
            HttpError::MalformedJson(_) => (S::BAD_REQUEST, "invalid_json", None),
            HttpError::TooDeep { .. } => (S::BAD_REQUEST, "json_too_deep", None),
            HttpError::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            HttpError::UnsupportedMediaType { .. } => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None),
            HttpError::BadHeader(_) => (S::BAD_REQUEST, "invalid_request", None),
            HttpError::TokenInQuery => (S::BAD_REQUEST, "invalid_request", None),
            HttpError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            HttpError::RouteNotFound => (S::NOT_FOUND, "not_found", None),
            HttpError::Timeout => (S::REQUEST_TIMEOUT, "timeout", None),
            HttpError::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited", None),
            HttpError::Internal => (S::INTERNAL_SERVER_ERROR, "internal_error", None),
        }
    }

    fn challenge(&self) -> Option<Challenge> {
        match self {
            HttpError::Unauthenticated(AuthError::Missing) => {
                Some(Challenge { error: None, description: None, scope: None })
            }
            HttpError::Unauthenticated(e @ (AuthError::Malformed(_) | AuthError::InvalidToken(_))) => {
                Some(Challenge { error: Some("invalid_token"), description: Some(e.to_string()), scope: None })
            }
            HttpError::Domain(Error::InsufficientScope { required }) => {
                Some(Challenge { error: Some("insufficient_scope"), description: None, scope: Some(*required) })
            }
            _ => None,
        }
    }

    /// What a client is told. Store failures are logged in full but described
    /// generically: driver messages can carry schema details.
    fn public_message(&self) -> String {
        match self {
            HttpError::Domain(Error::Store(StoreError::Backend(_)))
            | HttpError::Unauthenticated(AuthError::Store(StoreError::Backend(_))) => {
                "The database is unavailable; try again".into()
            }
            HttpError::Domain(Error::Store(_)) | HttpError::Unauthenticated(AuthError::Store(_)) => {
                "Stored data could not be read".into()
            }
            HttpError::Unauthenticated(AuthError::Missing) => "Authentication required".into(),
            HttpError::Unauthenticated(e @ AuthError::LockedOut(_)) => e.to_string(),
            HttpError::Unauthenticated(e) => format!("Invalid credentials: {e}"),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code, context_id) = self.parts();
        if status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, code, "request failed");
            if matches!(self, HttpError::Domain(Error::Store(_)) | HttpError::Unauthenticated(AuthError::Store(_))) {
                metrics::counter!("ctxguard_store_errors_total", "code" => code).increment(1);
            }
        }
        let body = ErrorBody { error: self.public_message(), code, context_id };
        let mut response = (status, Json(body)).into_response();
        if let HttpError::Domain(Error::PreconditionFailed { current, .. }) = &self
            && let Ok(v) = HeaderValue::from_str(&current.etag())
        {
            response.headers_mut().insert(header::ETAG, v);
        }
        if let HttpError::RateLimited(standing) = &self {
            standing.write_headers(response.headers_mut());
        }
        if let HttpError::Unauthenticated(AuthError::LockedOut(l)) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(l.retry_after_secs));
        }
        if let Some(ch) = self.challenge() {
            response.extensions_mut().insert(ch);
        }
        response
    }
}

pub type HttpResult<T> = Result<T, HttpError>;
