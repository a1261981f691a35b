//! `POST /oauth/token` (RFC 6749 section 3.2), `POST /oauth/revoke` (RFC 7009) and
//! `POST /oauth/introspect` (RFC 7662).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};

use super::error::Issued;
use super::form::{Form, client_credentials};
use crate::domain::audit::RequestMeta;
use crate::oauth::introspect::Introspection;
use crate::oauth::request::{TokenQuery, TokenRequest};
use crate::oauth::{AuthServer, OAuthResult};

pub async fn token(
    State(server): State<Arc<AuthServer>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    Form(p): Form,
) -> OAuthResult<Issued> {
    let request = TokenRequest::parse(&p)?;
    let client = client_credentials(&headers, &p)?;
    server.token(&client, request, meta).await.map(Issued)
}

/// An unknown or foreign token still answers 200 (RFC 7009 section 2.2).
pub async fn revoke(
    State(server): State<Arc<AuthServer>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    Form(p): Form,
) -> OAuthResult<StatusCode> {
    let client = client_credentials(&headers, &p)?;
    server.revoke(&client, &TokenQuery::parse(&p)?, meta).await?;
    Ok(StatusCode::OK)
}

pub async fn introspect(
    State(server): State<Arc<AuthServer>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    Form(p): Form,
) -> OAuthResult<Json<Introspection>> {
    let client = client_credentials(&headers, &p)?;
    server.introspect(&client, &TokenQuery::parse(&p)?, &meta).await.map(Json)
}
