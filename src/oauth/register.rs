//! Dynamic client registration (RFC 7591), the compatibility path for MCP clients.
//! Open, or guarded by an initial access token, or disabled (the endpoint then does not
//! exist). Registered clients use the code flow only; they act for the users who sign in.

use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::RegistrationMode;
use super::clients::{NewClient, default_scopes};
use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::server::AuthServer;
use crate::domain::audit::{self, Action as Audited, Actor, AuditEvent, Outcome, RequestMeta, Target};
use crate::domain::{ApplicationType, Error, GrantType, ScopeSet, redirect_uri};

/// RFC 7591 section 2 metadata. Unknown members are ignored, as section 2 requires.
#[derive(Debug, Deserialize)]
pub struct ClientRegistration {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    application_type: Option<String>,
}

pub fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClientMetadata, description)
}

impl AuthServer {
    /// Whether a registration request may proceed; `initial_token` is the bearer token
    /// it carried. Checked before the body is read.
    pub fn may_register(&self, initial_token: Option<&str>) -> OAuthResult<()> {
        match self.config.registration {
            RegistrationMode::Disabled => {
                return Err(OAuthError::new(OAuthErrorCode::InvalidRequest, "dynamic client registration is disabled"));
            }
            RegistrationMode::Open => {}
            RegistrationMode::Token => {
                let presented = initial_token.unwrap_or("");
                let expected = self.config.registration_token.as_ref().map_or("", |s| s.expose());
                let ok = !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
                if !ok {
                    return Err(OAuthError::new(
                        OAuthErrorCode::InvalidClient,
                        "registration requires a valid initial access token",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Records a registration attempt (`client.register`): the client registered, or
    /// the refusal. Recorded after the fact: a registered client can do nothing until
    /// a user consents, and that consent is committed to the log before its code is
    /// issued. A wrong initial access token counts toward the address's lockout.
    pub async fn record_registration(&self, result: &OAuthResult<Value>, meta: RequestMeta) {
        let mode = match self.config.registration {
            RegistrationMode::Token => "registration:token",
            _ => "registration:open",
        };
        let (target, outcome) = match result {
            Ok(doc) => (
                doc["client_id"].as_str().map(|id| Target::Client(id.to_string())),
                Outcome::Allow(std::sync::Arc::from([mode.to_string()])),
            ),
            Err(e) => (None, Outcome::Deny(format!("{}: {}", e.code.as_str(), e.description))),
        };
        if let Err(e) = result
            && e.code == OAuthErrorCode::InvalidClient
        {
            self.authn.guard().auth_failed(&meta, None, "registration requires a valid initial access token").await;
        }
        let actor = Actor { credential: Some(audit::Credential::Client), ..Actor::default() };
        let _ = self.audit.record(AuditEvent::new(Audited::ClientRegister, actor, target, outcome, meta)).await;
    }

    /// Registers a client and returns the RFC 7591 section 3.2.1 response document.
    /// Call [`AuthServer::may_register`] first.
    pub async fn register(&self, meta: ClientRegistration) -> OAuthResult<Value> {
        let public = match meta.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic") {
            "none" => true,
            "client_secret_basic" | "client_secret_post" => false,
            other => return Err(metadata_error(format!("unsupported token_endpoint_auth_method {other:?}"))),
        };
        let grants = meta
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".into()])
            .iter()
            .map(|g| GrantType::parse(g).map_err(metadata_error))
            .collect::<Result<Vec<_>, _>>()?;
        if grants.contains(&GrantType::ClientCredentials) {
            return Err(metadata_error("client_credentials clients are created by an administrator, not registered"));
        }
        if let Some(rt) = &meta.response_types
            && rt.iter().any(|r| r != "code")
        {
            return Err(metadata_error("only the response type code is supported"));
        }
        let application_type = match meta.application_type.as_deref() {
            Some(t) => ApplicationType::parse(t).map_err(metadata_error)?,
            None => redirect_uri::inferred_application_type(&meta.redirect_uris),
        };
        let scopes = match &meta.scope {
            Some(s) => {
                // Registered clients get what they asked for within what registration may
                // grant (never admin); the response says what was registered (RFC 7591 §3.2.1).
                let granted = ScopeSet::parse_known(s).intersection(&default_scopes());
                if granted.is_empty() {
                    return Err(OAuthError::invalid_scope(
                        "none of the requested scopes may be granted to a registered client (admin is never)",
                    ));
                }
                granted
            }
            None => default_scopes(),
        };
        let tenant = self
            .db
            .tenant_by_name(&self.config.registration_tenant)
            .await?
            .ok_or_else(|| OAuthError::server("registration_tenant does not exist"))?;
        let new = NewClient {
            tenant: None,
            name: meta.client_name.unwrap_or_else(|| "unnamed client".into()),
            grant_types: Some(grants),
            redirect_uris: meta.redirect_uris,
            scopes: Some(scopes),
            roles: Default::default(),
            application_type,
            public,
        };
        let registered = match self.clients.register(tenant.id, new, "dynamic").await {
            Ok(r) => r,
            Err(Error::InvalidField { field, message }) if field == "redirect_uris" => {
                return Err(OAuthError::new(OAuthErrorCode::InvalidRedirectUri, message));
            }
            Err(Error::InvalidField { field, message }) => return Err(metadata_error(format!("{field}: {message}"))),
            Err(e) => return Err(e.into()),
        };
        let c = &registered.client;
        let mut doc = json!({
            "client_id": c.client_id,
            "client_id_issued_at": c.created_at.millis() / 1000,
            "client_name": c.name,
            "redirect_uris": c.redirect_uris,
            "grant_types": c.grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": if public { "none" } else { meta.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic") },
            "scope": c.scopes.to_string(),
            "application_type": c.application_type,
        });
        if let Some(secret) = &registered.client_secret {
            doc["client_secret"] = json!(secret);
            doc["client_secret_expires_at"] = json!(0);
        }
        Ok(doc)
    }
}
