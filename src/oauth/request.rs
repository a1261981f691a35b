//! The requests of the token, revocation and introspection endpoints, parsed once from
//! their parameters into types: the grant logic never reads a raw parameter, and a
//! grant type without its parameters cannot be expressed.

use super::error::{OAuthError, OAuthErrorCode, OAuthResult};
use super::params::Params;
use crate::crypto::Secret;
use crate::domain::{ClientId, ContextBinding, GrantType};

/// RFC 8693 section 3: the only token type we accept and issue.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How the client presented itself (RFC 6749 section 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Post,
    /// A public client naming itself; proves nothing but who it claims to be.
    None,
}

/// Client credentials as presented, not yet checked.
#[derive(Debug)]
pub struct ClientCredentials {
    pub client_id: ClientId,
    pub secret: Option<Secret>,
    pub method: AuthMethod,
}

/// What every token request may ask of the token: scopes (RFC 6749 section 3.3),
/// resources (RFC 8707) and a context binding (RFC 9396).
#[derive(Debug, Default)]
pub struct Narrowing {
    pub scope: Option<String>,
    pub resources: Vec<String>,
    pub binding: Option<ContextBinding>,
}

/// One request to `POST /oauth/token`.
#[derive(Debug)]
pub enum TokenRequest {
    /// OAuth 2.1 section 4.1.3, with PKCE (RFC 7636).
    AuthorizationCode { code: Secret, redirect_uri: String, code_verifier: Secret, narrowing: Narrowing },
    /// OAuth 2.1 section 4.3.
    RefreshToken { refresh_token: Secret, narrowing: Narrowing },
    /// RFC 6749 section 4.4.
    ClientCredentials { narrowing: Narrowing },
    /// RFC 8693 section 2.1. `narrowing.resources` holds `resource` and `audience`.
    TokenExchange {
        subject_token: Secret,
        actor_token: Option<Secret>,
        /// `expires_in`, a ctxguard extension: a shorter lifetime than the subject's.
        expires_in: Option<i64>,
        narrowing: Narrowing,
    },
}

impl TokenRequest {
    pub fn grant_type(&self) -> GrantType {
        match self {
            TokenRequest::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            TokenRequest::RefreshToken { .. } => GrantType::RefreshToken,
            TokenRequest::ClientCredentials { .. } => GrantType::ClientCredentials,
            TokenRequest::TokenExchange { .. } => GrantType::TokenExchange,
        }
    }

    pub fn parse(p: &Params) -> OAuthResult<TokenRequest> {
        let grant_type = p.require("grant_type")?;
        let grant = GrantType::parse(grant_type).map_err(|_| {
            OAuthError::new(OAuthErrorCode::UnsupportedGrantType, format!("unsupported grant_type {grant_type:?}"))
        })?;
        let secret = |name: &str| p.require(name).map(|v| Secret::new(v.to_string()));
        Ok(match grant {
            GrantType::AuthorizationCode => TokenRequest::AuthorizationCode {
                code: secret("code")?,
                redirect_uri: p.require("redirect_uri")?.to_string(),
                code_verifier: secret("code_verifier")?,
                narrowing: Narrowing::parse(p, &["resource"])?,
            },
            GrantType::RefreshToken => TokenRequest::RefreshToken {
                refresh_token: secret("refresh_token")?,
                narrowing: Narrowing::parse(p, &["resource"])?,
            },
            GrantType::ClientCredentials => {
                TokenRequest::ClientCredentials { narrowing: Narrowing::parse(p, &["resource"])? }
            }
            GrantType::TokenExchange => {
                if p.require("subject_token_type")? != ACCESS_TOKEN_TYPE {
                    return Err(OAuthError::invalid_request(format!("subject_token_type must be {ACCESS_TOKEN_TYPE}")));
                }
                if p.get("requested_token_type")?.is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
                    return Err(OAuthError::invalid_request(format!(
                        "requested_token_type must be {ACCESS_TOKEN_TYPE}"
                    )));
                }
                let subject_token = secret("subject_token")?;
                let actor_token = match p.get("actor_token")? {
                    None => None,
                    Some(token) => {
                        if p.get("actor_token_type")? != Some(ACCESS_TOKEN_TYPE) {
                            return Err(OAuthError::invalid_request(format!(
                                "actor_token_type must be {ACCESS_TOKEN_TYPE}"
                            )));
                        }
                        Some(Secret::new(token.to_string()))
                    }
                };
                let expires_in = p
                    .get("expires_in")?
                    .map(|text| {
                        text.parse::<i64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                            OAuthError::invalid_request("expires_in must be a positive number of seconds")
                        })
                    })
                    .transpose()?;
                let mut narrowing = Narrowing::parse(p, &["resource", "audience"])?;
                narrowing.resources.dedup();
                TokenRequest::TokenExchange { subject_token, actor_token, expires_in, narrowing }
            }
        })
    }
}

impl Narrowing {
    /// `scope`, every value of the `resource_params` and `authorization_details`.
    fn parse(p: &Params, resource_params: &[&str]) -> OAuthResult<Narrowing> {
        let mut resources = Vec::new();
        for name in resource_params {
            resources.extend(p.all(name).into_iter().map(str::to_string));
        }
        Ok(Narrowing {
            scope: p.get("scope")?.map(str::to_string),
            resources,
            binding: p.get("authorization_details")?.map(parse_binding).transpose()?,
        })
    }

    /// True when no resource is named, or exactly `resource`.
    pub fn names_only(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources == [resource]
    }
}

/// RFC 9396 `authorization_details` of our one type.
pub fn parse_binding(text: &str) -> OAuthResult<ContextBinding> {
    ContextBinding::from_authorization_details(text)
        .map_err(|m| OAuthError::new(OAuthErrorCode::InvalidAuthorizationDetails, format!("authorization_details {m}")))
}

/// `POST /oauth/revoke` (RFC 7009 section 2.1) and `POST /oauth/introspect`
/// (RFC 7662 section 2.1): the token in question. `token_type_hint` is optional and
/// ignored: the token's own shape says which kind it is.
#[derive(Debug)]
pub struct TokenQuery {
    pub token: Secret,
}

impl TokenQuery {
    pub fn parse(p: &Params) -> OAuthResult<TokenQuery> {
        Ok(TokenQuery { token: Secret::new(p.require("token")?.to_string()) })
    }
}
