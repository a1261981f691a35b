//! The authorization endpoint's rules (OAuth 2.1 section 4.1.1): which requests are
//! valid, where a refusal may be sent, and the one-time code a consent produces. Codes
//! live 60 s and are bound to client, redirect URI, PKCE challenge and resource. The
//! browser flow itself (pages, cookies, CSRF) is the endpoint's.

use super::error::{OAuthError, OAuthErrorCode};
use super::params::Params;
use super::request::parse_binding;
use super::server::{AuthServer, ClientLookup, granted_scopes};
use crate::crypto::{Secret, token};
use crate::domain::audit::{self, Action as Audited, Actor, AuditEvent, Outcome, RequestMeta, Target};
use crate::domain::redirect_uri;
use crate::domain::{ClientId, ContextBinding, GrantType, OAuthClient, Principal, ScopeSet, StoreError, Timestamp};
use crate::store::CodeGrant;

const CODE_TTL_SECS: i64 = 60;

/// A validated authorization request.
pub struct AuthorizationRequest {
    pub client: OAuthClient,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scopes: ScopeSet,
    pub audience: String,
    pub code_challenge: String,
    pub binding: Option<ContextBinding>,
}

/// Why a request is refused: before the redirect URI is trusted we may only show a
/// page; after, errors go back to the client.
pub enum Refusal {
    Page(String),
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
}

impl AuthServer {
    /// Validates an authorization request given as its query string.
    pub async fn validate_authorization(&self, raw: &str) -> Result<AuthorizationRequest, Refusal> {
        let q = Params::parse(raw.as_bytes());
        let page = |m: &str| Refusal::Page(m.to_string());
        let client_id =
            q.get("client_id").map_err(|e| page(&e.description))?.ok_or_else(|| page("client_id is missing"))?;
        let client = match self.find_client(&ClientId::new(client_id)).await {
            Ok(ClientLookup::Usable(found)) => found.client,
            Ok(ClientLookup::Unusable(why)) => return Err(page(&why)),
            Err(_) => return Err(page("the server is unavailable; try again")),
        };
        let redirect =
            q.get("redirect_uri").map_err(|e| page(&e.description))?.ok_or_else(|| page("redirect_uri is missing"))?;
        if !redirect_uri::matches(redirect, &client.redirect_uris, client.application_type) {
            return Err(page("redirect_uri is not registered for this client"));
        }
        let state = q.get("state").ok().flatten().map(str::to_string);
        let back =
            |error: OAuthError| Refusal::Redirect { redirect_uri: redirect.to_string(), state: state.clone(), error };
        let get = |name: &str| q.get(name).map_err(&back);
        match get("response_type")? {
            Some("code") => {}
            _ => {
                return Err(back(OAuthError::new(
                    OAuthErrorCode::UnsupportedResponseType,
                    "response_type must be code",
                )));
            }
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(back(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "this client may not use the authorization code flow",
            )));
        }
        let challenge = get("code_challenge")?.ok_or_else(|| {
            back(OAuthError::invalid_request("PKCE is required: send code_challenge and code_challenge_method=S256"))
        })?;
        if get("code_challenge_method")? != Some("S256") {
            return Err(back(OAuthError::invalid_request("code_challenge_method must be S256")));
        }
        // A S256 challenge is base64url(SHA-256): 43 characters.
        if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(back(OAuthError::invalid_request("code_challenge is not a S256 challenge")));
        }
        let scopes = granted_scopes(get("scope")?, client.scopes).map_err(back)?;
        let resources: Vec<String> = q.all("resource").into_iter().map(str::to_string).collect();
        let audience = self.audience(&resources).map_err(back)?;
        let binding = get("authorization_details")?.map(parse_binding).transpose().map_err(back)?;
        Ok(AuthorizationRequest {
            binding,
            redirect_uri: redirect.to_string(),
            state: state.clone(),
            scopes,
            audience,
            code_challenge: challenge.to_string(),
            client,
        })
    }

    /// The user consented: a one-time code for the client.
    pub async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        principal: &Principal,
        meta: RequestMeta,
    ) -> Result<Secret, StoreError> {
        // The consent's record is committed before the code exists.
        let actor = Actor {
            tenant: Some(principal.tenant),
            principal: Some(principal.id),
            name: Some(format!("{}:{}", principal.kind.as_str(), principal.name)),
            client_id: Some(req.client.client_id.as_str().to_string()),
            credential: Some(audit::Credential::Session),
        };
        let consented = Outcome::Allow(std::sync::Arc::from([format!("scope:{}", req.scopes)]));
        let target = Some(Target::Client(req.client.client_id.as_str().to_string()));
        let event = AuditEvent::new(Audited::AuthorizeCode, actor, target, consented, meta);
        self.audit.record(event).await.map_err(|e| StoreError::Backend(e.to_string()))?;
        let code = token::generate("");
        let now = Timestamp::now();
        let grant = CodeGrant {
            client_id: req.client.client_id.clone(),
            principal: principal.id,
            tenant: principal.tenant,
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            scope: req.scopes,
            resource: req.audience.clone(),
            expires_at: now.plus_secs(CODE_TTL_SECS),
            binding: req.binding.clone(),
        };
        self.db.insert_code(&token::token_hash(code.expose()), &grant, now).await?;
        Ok(code)
    }
}
