//! OAuth clients (RFC 6749 section 2) as registered with this authorization server.

use serde::{Deserialize, Serialize};

use super::{ClientId, PrincipalId, ScopeSet, TenantId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// RFC 8693: exchange a token for a narrower one (sub-agents, downstream services).
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::TokenExchange => Self::TOKEN_EXCHANGE,
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "authorization_code" => Ok(Self::AuthorizationCode),
            "refresh_token" => Ok(Self::RefreshToken),
            "client_credentials" => Ok(Self::ClientCredentials),
            Self::TOKEN_EXCHANGE => Ok(Self::TokenExchange),
            other => Err(format!(
                "unsupported grant type {other:?}; supported: authorization_code, refresh_token, \
                 client_credentials, {}",
                Self::TOKEN_EXCHANGE
            )),
        }
    }
}

/// RFC 7591 / OpenID Connect `application_type`: which redirect URIs are acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationType {
    /// Browser-based or server-side: https redirect URIs only.
    #[default]
    Web,
    /// Installed app or CLI: loopback http (any port) or a private-use URI scheme.
    Native,
}

impl ApplicationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationType::Web => "web",
            ApplicationType::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "web" => Ok(Self::Web),
            "native" => Ok(Self::Native),
            other => Err(format!("unknown application_type {other:?}; expected web or native")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OAuthClient {
    pub client_id: ClientId,
    pub tenant: TenantId,
    pub name: String,
    /// Has a secret and must authenticate at the token endpoint.
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// The most a token for this client may carry.
    pub scopes: ScopeSet,
    pub application_type: ApplicationType,
    /// For client_credentials: the service principal the client acts as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalId>,
    /// `admin` or `dynamic` (RFC 7591).
    pub registered_by: String,
    pub disabled: bool,
    pub created_at: Timestamp,
}

impl OAuthClient {
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether users of any tenant may sign in through this client: dynamically
    /// registered clients and client ID metadata documents serve everyone (their
    /// `tenant` is only where they are recorded); an administrator's client belongs to
    /// its tenant.
    pub fn serves_every_tenant(&self) -> bool {
        self.registered_by != "admin"
    }
}
