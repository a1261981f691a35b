//! Discovery: RFC 8414 authorization server metadata (also served as
//! `openid-configuration`, which many clients probe first) and the JWKS.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::oauth::AuthServer;

pub async fn authorization_server(State(server): State<Arc<AuthServer>>) -> Json<Value> {
    Json(server.metadata())
}

pub async fn jwks(State(server): State<Arc<AuthServer>>) -> Json<JwkSet> {
    Json(server.jwks())
}
