//! OAuth errors and token responses on the wire: `{"error", "error_description"}` and
//! the token JSON, both with `Cache-Control: no-store` (RFC 6749 sections 5.1, 5.2).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::oauth::OAuthError;
use crate::oauth::token::TokenResponse;

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    error_description: &'a str,
}

fn no_store(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut r =
            (status, Json(Body { error: self.code.as_str(), error_description: &self.description })).into_response();
        no_store(&mut r);
        if status == StatusCode::UNAUTHORIZED && self.basic_challenge {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ctxguard\""));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// A successful token response (RFC 6749 section 5.1).
pub struct Issued(pub TokenResponse);

impl IntoResponse for Issued {
    fn into_response(self) -> Response {
        let mut r = Json(self.0).into_response();
        no_store(&mut r);
        r
    }
}

/// Any JSON document that must not be cached (registration responses).
pub fn uncached(status: StatusCode, doc: serde_json::Value) -> Response {
    let mut r = (status, Json(doc)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
