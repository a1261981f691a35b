//! OAuth errors (RFC 6749 section 5.2, RFC 7009, RFC 7591 section 3.2.2, RFC 8707):
//! `{"error": "<code>", "error_description": "…"}` with `Cache-Control: no-store`.

use axum::http::StatusCode;

use crate::domain::{Error, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    UnsupportedResponseType,
    InvalidRedirectUri,
    InvalidClientMetadata,
    /// RFC 9396 section 5.
    InvalidAuthorizationDetails,
    ServerError,
    TemporarilyUnavailable,
    /// Locked out or rate limited: `temporarily_unavailable` (the registered code that
    /// says "try later"), but with 429 and `Retry-After`.
    TooManyRequests,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        use OAuthErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            InvalidScope => "invalid_scope",
            InvalidTarget => "invalid_target",
            AccessDenied => "access_denied",
            UnsupportedResponseType => "unsupported_response_type",
            InvalidRedirectUri => "invalid_redirect_uri",
            InvalidClientMetadata => "invalid_client_metadata",
            InvalidAuthorizationDetails => "invalid_authorization_details",
            ServerError => "server_error",
            TemporarilyUnavailable | TooManyRequests => "temporarily_unavailable",
        }
    }

    /// The HTTP status of this error code (RFC 6749 section 5.2: 401 for
    /// invalid_client, 400 otherwise; 5xx for our own failures).
    pub fn status(self) -> StatusCode {
        use OAuthErrorCode::*;
        match self {
            InvalidClient => StatusCode::UNAUTHORIZED,
            ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            InvalidRequest
            | InvalidGrant
            | UnauthorizedClient
            | UnsupportedGrantType
            | InvalidScope
            | InvalidTarget
            | AccessDenied
            | UnsupportedResponseType
            | InvalidRedirectUri
            | InvalidClientMetadata
            | InvalidAuthorizationDetails => StatusCode::BAD_REQUEST,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    /// The client tried HTTP Basic: a 401 must then carry a Basic challenge.
    pub basic_challenge: bool,
    /// Seconds for `Retry-After` (429 answers).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into(), basic_challenge: false, retry_after: None }
    }

    /// Too many failed authentications from the address (docs/anomaly.md).
    pub fn locked_out(l: crate::anomaly::LockedOut) -> Self {
        let mut e = Self::new(
            OAuthErrorCode::TooManyRequests,
            format!("too many failed authentications; retry after {} s", l.retry_after_secs),
        );
        e.retry_after = Some(l.retry_after_secs);
        e
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, d)
    }

    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, d)
    }

    pub fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "OAuth endpoint failed");
        Self::new(OAuthErrorCode::ServerError, "internal error")
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(_) => {
                tracing::error!(error = %e, "database unavailable");
                Self::new(OAuthErrorCode::TemporarilyUnavailable, "the database is unavailable; try again")
            }
            other => Self::server(other),
        }
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(s) => s.into(),
            Error::InvalidField { .. } => Self::invalid_request(e.to_string()),
            other => Self::server(other),
        }
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;
