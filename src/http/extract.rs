//! Request extractors: credentials, JSON bodies, path ids and conditional headers,
//! each rejecting with our [`HttpError`] so every failure has the same shape.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::HttpError;
use super::json;
use super::rate_limit::{RateLimits, RouteClass};
use crate::authn::{AuthError, Authenticator, Caller, Credential};
use crate::crypto::Secret;
use crate::domain::audit::RequestMeta;
use crate::domain::{ContextId, Error, Version};
use crate::service::contexts::IfMatch;

/// The authenticated caller of a request.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        authenticate(&state.inner.authn, &state.inner.rate_limits, parts, &state.inner.public_url)
            .await
            .map(Authenticated)
    }
}

/// The credential step of every authenticated HTTP edge (the context API and `/mcp`):
/// a token in the query is refused (URLs end up in logs; RFC 6750 section 2.3 is not
/// supported), exactly one Bearer credential is read and authenticated for `resource`,
/// and the principal's rate limit of the route class is taken from.
pub async fn authenticate(
    authn: &Authenticator,
    limits: &RateLimits,
    parts: &Parts,
    resource: &str,
) -> Result<Caller, HttpError> {
    if parts.uri.query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("access_token="))) {
        return Err(HttpError::TokenInQuery);
    }
    let request = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
    let caller = authn.authenticate_request(credential_from_headers(&parts.headers), resource, request).await?;
    if let Some(class) = parts.extensions.get::<RouteClass>()
        && let Some(standing) = limits.check_principal(*class, caller.principal.id)
        && standing.refused
    {
        return Err(HttpError::RateLimited(standing));
    }
    Ok(caller)
}

/// RFC 6750 section 2.1: exactly one `Authorization: Bearer <token68>` header.
pub fn credential_from_headers(headers: &HeaderMap) -> Result<Credential, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed("more than one Authorization header"));
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed("the Authorization header is not ASCII"))?;
    let (scheme, token) =
        value.split_once(' ').ok_or(AuthError::Malformed("Authorization must be 'Bearer <token>'"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("only the Bearer authorization scheme is supported"));
    }
    let token = token.trim();
    let token68 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
    if token.is_empty() || !token.bytes().all(token68) {
        return Err(AuthError::Malformed("the bearer token is empty or has characters a token cannot have"));
    }
    Ok(Credential::Bearer(Secret::new(token.to_string())))
}

/// A JSON request body parsed with the configured limits.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, HttpError> {
        let (parts, body) = req.into_parts();
        json::check_content_type(&parts.headers)?;
        let bytes = json::read_body(&parts.headers, body, state.inner.body_limits).await?;
        json::parse(&bytes, state.inner.body_limits.max_depth).map(JsonBody)
    }
}

/// A JSON request body that may be left out (then `T::default()`); when present it is
/// parsed as [`JsonBody`] is.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, HttpError> {
        let (parts, body) = req.into_parts();
        let bytes = json::read_body(&parts.headers, body, state.inner.body_limits).await?;
        // No body, or JSON `null` (what the document's optional body admits).
        if bytes.is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJsonBody(T::default()));
        }
        json::check_content_type(&parts.headers)?;
        json::parse(&bytes, state.inner.body_limits.max_depth).map(OptionalJsonBody)
    }
}

/// The `{id}` path segment, parsed as a context id.
pub struct ContextIdPath(pub ContextId);

impl<S: Send + Sync> FromRequestParts<S> for ContextIdPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::Domain(Error::invalid("path", e.body_text())))?;
        parse_context_id(&raw).map(ContextIdPath)
    }
}

/// `/context/{id}/versions/{n}`.
pub struct VersionPath(pub ContextId, pub Version);

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((id, n)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::Domain(Error::invalid("path", e.body_text())))?;
        let version = n
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| HttpError::Domain(Error::invalid("version", "must be a positive integer")))?;
        Ok(VersionPath(parse_context_id(&id)?, Version(version)))
    }
}

/// `/context/{id}/grants/{grant_id}`.
pub struct GrantPath(pub ContextId, pub crate::domain::GrantId);

impl<S: Send + Sync> FromRequestParts<S> for GrantPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((id, grant)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::Domain(Error::invalid("path", e.body_text())))?;
        let grant = grant.parse().map_err(|m: String| HttpError::Domain(Error::invalid("grant_id", m)))?;
        Ok(GrantPath(parse_context_id(&id)?, grant))
    }
}

pub fn parse_context_id(raw: &str) -> Result<ContextId, HttpError> {
    raw.parse().map_err(|m: String| HttpError::Domain(Error::invalid("context_id", m)))
}

/// Query parameters, with unknown or mistyped ones refused by name.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| HttpError::Domain(Error::invalid("query", e.body_text())))
    }
}

/// `If-Match` (RFC 9110 section 13.1.1): `*` or a list of strong entity tags.
pub fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, HttpError> {
    let Some(value) = joined(headers, header::IF_MATCH)? else {
        return Ok(None);
    };
    if value.trim() == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let mut versions = Vec::new();
    for tag in value.split(',').map(str::trim) {
        // Weak tags never match under the strong comparison If-Match requires.
        if tag.starts_with("W/") {
            continue;
        }
        versions.push(
            parse_etag(tag).ok_or_else(|| {
                HttpError::BadHeader(format!("If-Match: {tag:?} is not an entity tag such as \"v3\""))
            })?,
        );
    }
    Ok(Some(IfMatch::OneOf(versions)))
}

/// `If-None-Match` with the weak comparison of RFC 9110 section 13.1.2.
pub fn none_match(headers: &HeaderMap, current: Version) -> Result<bool, HttpError> {
    let Some(value) = joined(headers, header::IF_NONE_MATCH)? else {
        return Ok(false);
    };
    if value.trim() == "*" {
        return Ok(true);
    }
    Ok(value.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| parse_etag(t) == Some(current)))
}

fn parse_etag(tag: &str) -> Option<Version> {
    tag.strip_prefix("\"v")?.strip_suffix('"')?.parse().ok().map(Version)
}

fn joined(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<String>, HttpError> {
    let mut parts = Vec::new();
    for v in headers.get_all(&name) {
        parts.push(v.to_str().map_err(|_| HttpError::BadHeader(format!("{name} is not ASCII")))?.to_string());
    }
    Ok(if parts.is_empty() { None } else { Some(parts.join(",")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_parsing() {
        let h = headers(header::AUTHORIZATION, "Bearer ctxg_abc");
        assert!(matches!(credential_from_headers(&h), Ok(Credential::Bearer(s)) if s.expose() == "ctxg_abc"));
        let h = headers(header::AUTHORIZATION, "Basic dXNlcjpwYXNz");
        assert!(matches!(credential_from_headers(&h), Err(AuthError::Malformed(_))));
        let h = headers(header::AUTHORIZATION, "Bearer a b");
        assert!(matches!(credential_from_headers(&h), Err(AuthError::Malformed(_))));
        assert!(matches!(credential_from_headers(&HeaderMap::new()), Err(AuthError::Missing)));
    }

    #[test]
    fn conditional_headers() {
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"v2\", \"v3\"")).unwrap(),
            Some(IfMatch::OneOf(vec![Version(2), Version(3)]))
        );
        assert_eq!(if_match(&headers(header::IF_MATCH, "*")).unwrap(), Some(IfMatch::Any));
        assert_eq!(if_match(&headers(header::IF_MATCH, "W/\"v2\"")).unwrap(), Some(IfMatch::OneOf(vec![])));
        assert!(if_match(&headers(header::IF_MATCH, "v2")).is_err());
        assert!(none_match(&headers(header::IF_NONE_MATCH, "W/\"v2\""), Version(2)).unwrap());
        assert!(!none_match(&headers(header::IF_NONE_MATCH, "\"v1\""), Version(2)).unwrap());
    }
}
