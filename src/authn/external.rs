//! Access tokens from trusted external issuers (an enterprise IdP, another
//! authorization server). Each issuer is configured by the operator with its audience,
//! tenant and how claims map to a principal, roles and scopes. Keys come from the
//! issuer's discovery document and JWKS, cached, refreshed on an unknown `kid` at most
//! once per `jwks_refresh_min_secs`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{AuthError, Caller, CredentialRef};
use crate::domain::{Principal, PrincipalId, PrincipalKind, Role, RoleSet, ScopeSet, TenantId, Timestamp};
use crate::net::fetch::{Fetcher, Trust};

/// One `[[external_issuers]]` table of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerConfig {
    /// The `iss` value, exactly; discovery is fetched below it.
    pub issuer: String,
    /// The `aud` a token must carry at the context API (default: this server's public
    /// URL, its resource indicator).
    #[serde(default)]
    pub audience: Option<String>,
    /// The `aud` a token must carry at `/mcp` (default: `<public URL>/mcp`). A token is
    /// good for the one resource its audience names, as with our own tokens (RFC 8707);
    /// set both to one value only if the issuer cannot tell them apart.
    #[serde(default)]
    pub mcp_audience: Option<String>,
    /// Tenant (by name) the principals of this issuer belong to.
    pub tenant: String,
    /// Claim naming the principal (default `sub`).
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Claim with role names (array or space-separated string).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Roles when the token has no roles claim.
    #[serde(default)]
    pub default_roles: Vec<String>,
    /// The most this issuer may grant (default: reader, injector, writer).
    #[serde(default)]
    pub allowed_roles: Option<Vec<String>>,
    /// Kind of the mapped principals: user, agent (default) or service.
    #[serde(default)]
    pub principal_kind: Option<String>,
    /// Minimum seconds between JWKS fetches (default 30).
    #[serde(default)]
    pub jwks_refresh_min_secs: Option<u64>,
}

/// Algorithms accepted from external issuers: asymmetric only.
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct KeyCache {
    keys: JwkSet,
    fetched: Option<Instant>,
}

pub struct ExternalIssuer {
    issuer: String,
    /// Resource indicator → the audience a token must carry there.
    audiences: Vec<(String, String)>,
    tenant: TenantId,
    subject_claim: String,
    roles_claim: Option<String>,
    default_roles: RoleSet,
    allowed_roles: Vec<Role>,
    kind: PrincipalKind,
    min_refresh: Duration,
    cache: RwLock<Arc<KeyCache>>,
    refresh: tokio::sync::Mutex<()>,
    fetcher: Fetcher,
}

fn parse_roles(names: &[String]) -> anyhow::Result<Vec<Role>> {
    names.iter().map(|n| Role::parse(n).map_err(anyhow::Error::msg)).collect()
}

impl ExternalIssuer {
    /// `api` and `mcp` are this server's two resource indicators.
    pub fn new(c: &ExternalIssuerConfig, tenant: TenantId, api: &str, mcp: &str) -> anyhow::Result<Self> {
        Url::parse(&c.issuer).map_err(|e| anyhow::anyhow!("external issuer {:?}: {e}", c.issuer))?;
        let kind = PrincipalKind::parse(c.principal_kind.as_deref().unwrap_or("agent")).map_err(anyhow::Error::msg)?;
        Ok(Self {
            issuer: c.issuer.clone(),
            audiences: vec![
                (api.to_string(), c.audience.clone().unwrap_or_else(|| api.to_string())),
                (mcp.to_string(), c.mcp_audience.clone().unwrap_or_else(|| mcp.to_string())),
            ],
            tenant,
            subject_claim: c.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            roles_claim: c.roles_claim.clone(),
            default_roles: RoleSet::new(parse_roles(&c.default_roles)?),
            allowed_roles: match &c.allowed_roles {
                Some(r) => parse_roles(r)?,
                None => vec![Role::Reader, Role::Injector, Role::Writer],
            },
            kind,
            min_refresh: Duration::from_secs(c.jwks_refresh_min_secs.unwrap_or(30)),
            cache: RwLock::new(Arc::new(KeyCache { keys: JwkSet { keys: vec![] }, fetched: None })),
            refresh: tokio::sync::Mutex::new(()),
            fetcher: Fetcher::new(false),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn cached(&self) -> Arc<KeyCache> {
        self.cache.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Fetches discovery and the JWKS, unless another fetch happened too recently.
    async fn refresh_keys(&self) -> Result<(), AuthError> {
        let _one_at_a_time = self.refresh.lock().await;
        if self.cached().fetched.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Ok(());
        }
        let result = self.fetch_keys().await;
        // Record the attempt even when it failed, so a broken issuer is not hammered.
        let keys = match result {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch the external issuer's keys");
                self.cached().keys.clone()
            }
        };
        let fresh = Arc::new(KeyCache { keys, fetched: Some(Instant::now()) });
        match self.cache.write() {
            Ok(mut c) => *c = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(())
    }

    async fn fetch_keys(&self) -> anyhow::Result<JwkSet> {
        let base = self.issuer.trim_end_matches('/');
        let mut discovery = None;
        for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
            if let Ok(doc) = self.fetcher.json(&Url::parse(&format!("{base}{path}"))?, Trust::Configured).await {
                discovery = Some(doc.json);
                break;
            }
        }
        let discovery = discovery.ok_or_else(|| anyhow::anyhow!("no discovery document"))?;
        if discovery["issuer"].as_str() != Some(self.issuer.as_str()) {
            anyhow::bail!("the discovery document names another issuer");
        }
        let jwks_uri = discovery["jwks_uri"].as_str().ok_or_else(|| anyhow::anyhow!("no jwks_uri"))?;
        let jwks = self.fetcher.json(&Url::parse(jwks_uri)?, Trust::Configured).await?;
        Ok(serde_json::from_value(jwks.json)?)
    }

    /// Verifies a token presented to `resource`: its `aud` must be the audience
    /// configured for that resource.
    pub async fn authenticate(&self, token: &str, resource: &str) -> Result<Caller, AuthError> {
        let audience = self
            .audiences
            .iter()
            .find(|(r, _)| r == resource)
            .map(|(_, a)| a.as_str())
            .ok_or(AuthError::InvalidToken("the token was issued for another resource"))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("the token is not a well-formed JWT"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::InvalidToken("the token's algorithm is not accepted"));
        }
        let kid = header.kid.as_deref().ok_or(AuthError::InvalidToken("the token names no signing key"))?;
        let find = |cache: &KeyCache| cache.keys.find(kid).cloned();
        let jwk = match find(&self.cached()) {
            Some(k) => k,
            None => {
                self.refresh_keys().await?;
                find(&self.cached()).ok_or(AuthError::InvalidToken("the token's signing key is unknown"))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthError::InvalidToken("the issuer's key is unusable"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = crate::jwt::LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                AuthError::InvalidToken(match e.kind() {
                    K::ExpiredSignature => "the token has expired",
                    K::ImmatureSignature => "the token is not valid yet",
                    K::InvalidAudience => "the token was issued for another resource",
                    _ => "the token is invalid",
                })
            })?
            .claims;
        self.caller(&claims)
    }

    fn caller(&self, claims: &Value) -> Result<Caller, AuthError> {
        let subject = claims[&self.subject_claim]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::InvalidToken("the token has no subject"))?;
        let roles = match self.roles_claim.as_deref().map(|c| &claims[c]) {
            Some(Value::Array(items)) => {
                items.iter().filter_map(Value::as_str).filter_map(|r| Role::parse(r).ok()).collect()
            }
            Some(Value::String(s)) => s.split(' ').filter_map(|r| Role::parse(r).ok()).collect(),
            _ => self.default_roles.iter().collect::<Vec<_>>(),
        };
        let roles = RoleSet::new(roles.into_iter().filter(|r| self.allowed_roles.contains(r)).collect());
        let scopes = match &claims["scope"] {
            Value::String(s) => ScopeSet::parse_known(s),
            _ => match &claims["scp"] {
                Value::Array(items) => {
                    ScopeSet::parse_known(&items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                }
                _ => ScopeSet::empty(),
            },
        };
        // A stable id per (issuer, subject), so ownership survives across tokens.
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("{}#{subject}", self.issuer).as_bytes());
        let principal = Principal {
            id: id.to_string().parse::<PrincipalId>().map_err(|_| AuthError::InvalidToken("the token is invalid"))?,
            tenant: self.tenant,
            kind: self.kind,
            name: subject.chars().take(128).collect(),
            roles,
            disabled: false,
            platform_admin: false,
            created_at: Timestamp::now(),
            tokens_revoked_at: None,
            suspension: None,
        };
        Ok(Caller {
            principal,
            scopes,
            credential: CredentialRef::ExternalToken,
            binding: None,
            origin: None,
            request: Default::default(),
        })
    }
}
