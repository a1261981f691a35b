//! Discovery: the RFC 8414 authorization server metadata document.

use serde_json::{Value, json};

use super::RegistrationMode;
use super::server::AuthServer;
use crate::domain::{GrantType, Scope, ScopeSet};

impl AuthServer {
    pub fn metadata(&self) -> Value {
        let mut scopes: Vec<&str> = ScopeSet::all().iter().map(Scope::as_str).collect();
        scopes.push(Scope::OfflineAccess.as_str());
        let mut doc = json!({
            "issuer": self.issuer(),
            "authorization_endpoint": self.endpoint("/oauth/authorize"),
            "token_endpoint": self.endpoint("/oauth/token"),
            "jwks_uri": self.endpoint("/oauth/jwks"),
            "revocation_endpoint": self.endpoint("/oauth/revoke"),
            "introspection_endpoint": self.endpoint("/oauth/introspect"),
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
            "service_documentation": self.endpoint("/openapi.json"),
        });
        if self.registration() != RegistrationMode::Disabled {
            doc["registration_endpoint"] = json!(self.endpoint("/oauth/register"));
        }
        doc
    }

    /// The published verification keys (RFC 7517).
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.tokens.keyring().jwks()
    }
}
