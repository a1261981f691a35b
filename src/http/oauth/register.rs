//! `POST /oauth/register`: dynamic client registration (RFC 7591). When registration
//! is disabled the endpoint does not exist (404, like any unknown route).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;

use crate::domain::audit::RequestMeta;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::uncached;
use crate::http::error::HttpError;
use crate::http::json::{self, BodyLimits};
use crate::oauth::register::{ClientRegistration, metadata_error};
use crate::oauth::{AuthServer, OAuthError, RegistrationMode};

const MAX_METADATA_BYTES: usize = 16 * 1024;

pub async fn register(
    State(server): State<Arc<AuthServer>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if server.registration() == RegistrationMode::Disabled {
        return HttpError::RouteNotFound.into_response();
    }
    let result = handle(&server, &headers, body).await;
    server.record_registration(&result, meta).await;
    match result {
        Ok(doc) => uncached(StatusCode::CREATED, doc),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    server: &AuthServer,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<serde_json::Value, OAuthError> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    server.may_register(bearer)?;
    json::check_content_type(headers).map_err(|_| OAuthError::invalid_request("the body must be application/json"))?;
    let limits = BodyLimits { max_bytes: MAX_METADATA_BYTES, max_depth: 8 };
    let bytes = json::read_body(headers, body, limits)
        .await
        .map_err(|_| metadata_error(format!("client metadata is limited to {MAX_METADATA_BYTES} bytes")))?;
    let meta: ClientRegistration = json::parse(&bytes, limits.max_depth).map_err(|e| metadata_error(e.to_string()))?;
    server.register(meta).await
}
