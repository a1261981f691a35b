//! Cross-cutting response concerns, one per function: metrics, authentication
//! challenges, and JSON bodies for the router's own 404/405.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{Challenge, HttpError};

/// Counts requests by route template (never the raw path: ids would explode the
/// label set) and records latency.
pub async fn track_metrics(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("ctxguard_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("ctxguard_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Turns a [`Challenge`] left by an error into the RFC 6750 / RFC 9728
/// `WWW-Authenticate` header.
pub async fn add_challenge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Each protected resource has its own metadata document (RFC 9728 section 3.1).
    let suffix = if req.uri().path().starts_with(crate::mcp::http::PATH) { crate::mcp::http::PATH } else { "" };
    let mut response = next.run(req).await;
    let Some(ch) = response.extensions_mut().remove::<Challenge>() else {
        return response;
    };
    let mut value =
        format!("Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource{suffix}\"", state.inner.public_url);
    if let Some(error) = ch.error {
        value.push_str(&format!(", error=\"{error}\""));
    }
    if let Some(desc) = ch.description {
        // Quoted-string content: drop the characters that would end or escape it.
        let clean: String = desc.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
        value.push_str(&format!(", error_description=\"{clean}\""));
    }
    if let Some(scope) = ch.scope {
        value.push_str(&format!(", scope=\"{scope}\""));
    }
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

pub async fn method_not_allowed() -> Response {
    HttpError::MethodNotAllowed.into_response()
}

pub async fn route_not_found() -> Response {
    HttpError::RouteNotFound.into_response()
}
