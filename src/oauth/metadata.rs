//! Discovery: RFC 8414 authorization server metadata (also served as
//! `openid-configuration`, which many clients probe first) and the JWKS.

use axum::Json;
use axum::extract::State;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use crate::config::RegistrationMode;
use crate::domain::{GrantType, Scope, ScopeSet};
use crate::http::AppState;

pub async fn authorization_server(State(state): State<AppState>) -> Json<Value> {
    let s = &state.inner.oauth;
    let mut scopes: Vec<&str> = ScopeSet::all().iter().map(Scope::as_str).collect();
    scopes.push(Scope::OfflineAccess.as_str());
    let mut doc = json!({
        "issuer": s.issuer,
        "authorization_endpoint": s.endpoint("/oauth/authorize"),
        "token_endpoint": s.endpoint("/oauth/token"),
        "jwks_uri": s.endpoint("/oauth/jwks"),
        "revocation_endpoint": s.endpoint("/oauth/revoke"),
        "introspection_endpoint": s.endpoint("/oauth/introspect"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", GrantType::TOKEN_EXCHANGE],
        "authorization_details_types_supported": [crate::domain::binding::DETAILS_TYPE],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "service_documentation": s.endpoint("/openapi.json"),
    });
    if s.registration != RegistrationMode::Disabled {
        doc["registration_endpoint"] = json!(s.endpoint("/oauth/register"));
    }
    Json(doc)
}

pub async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.inner.oauth.tokens.keyring().jwks())
}
