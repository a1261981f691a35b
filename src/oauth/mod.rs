//! The OAuth 2.1 authorization server: one module per endpoint, plus the key ring and
//! the access-token format shared with the resource server (`authn`).

pub mod access_token;
pub mod authorization_code;
pub mod authorize;
pub mod client_auth;
pub mod client_metadata;
pub mod error;
pub mod exchange;
pub mod form;
pub mod introspect;
pub mod keys;
pub mod metadata;
pub mod pages;
pub mod redirect_uri;
pub mod refresh;
pub mod register;
pub mod revoke;
pub mod server;
pub mod session;
pub mod token;

use axum::Router;
use axum::routing::{get, post};

use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata::authorization_server))
        .route("/.well-known/openid-configuration", get(metadata::authorization_server))
        .route("/oauth/jwks", get(metadata::jwks))
        .route("/oauth/authorize", get(authorize::authorize))
        .route("/oauth/login", post(authorize::login))
        .route("/oauth/consent", post(authorize::consent))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(revoke::revoke))
        .route("/oauth/introspect", post(introspect::introspect))
        .route("/oauth/register", post(register::register))
}
