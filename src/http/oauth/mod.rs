//! The authorization server's HTTP endpoints: each parses its request into the typed
//! request of [`crate::oauth::request`], calls [`AuthServer`] and renders the answer
//! (RFC 6749 error bodies, HTML pages of the browser flow, cookies). They take only the
//! authorization server from the state.

mod authorize;
mod error;
mod form;
mod metadata;
mod pages;
mod register;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

use super::AppState;
use crate::oauth::AuthServer;

impl FromRef<AppState> for Arc<AuthServer> {
    fn from_ref(state: &AppState) -> Self {
        state.inner.oauth.clone()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata::authorization_server))
        .route("/.well-known/openid-configuration", get(metadata::authorization_server))
        .route("/oauth/jwks", get(metadata::jwks))
        .route("/oauth/authorize", get(authorize::authorize))
        .route("/oauth/login", post(authorize::login))
        .route("/oauth/consent", post(authorize::consent))
        .route("/oauth/token", post(tokens::token))
        .route("/oauth/revoke", post(tokens::revoke))
        .route("/oauth/introspect", post(tokens::introspect))
        .route("/oauth/register", post(register::register))
}
