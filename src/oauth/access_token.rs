//! Access tokens: JWTs in the RFC 9068 profile (`typ: at+jwt`), signed with the current
//! key, verified against the published keys with the checks of RFC 8725: the algorithm
//! comes from our key (never from the token), `kid` must name a key we published, and
//! `typ`, `iss`, `aud`, `exp`, `nbf` are all enforced with 30 s of clock skew.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::Keyring;
use crate::domain::{PrincipalId, ScopeSet, TenantId, Timestamp};

pub const TYP: &str = "at+jwt";
pub const LEEWAY_SECS: u64 = 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub tenant: String,
}

/// What a token is minted for.
pub struct Grant<'a> {
    pub principal: PrincipalId,
    pub tenant: TenantId,
    pub client_id: &'a str,
    pub scopes: ScopeSet,
    pub audience: &'a str,
}

pub struct AccessTokens {
    keyring: Arc<Keyring>,
    issuer: String,
    ttl: Duration,
}

impl AccessTokens {
    pub fn new(keyring: Arc<Keyring>, issuer: String, ttl: Duration) -> Self {
        Self { keyring, issuer, ttl }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    pub fn issue(&self, grant: &Grant<'_>) -> anyhow::Result<(String, AccessClaims)> {
        let now = Timestamp::now().millis() / 1000;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.principal.to_string(),
            aud: grant.audience.to_string(),
            exp: now + self.ttl.as_secs() as i64,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: grant.client_id.to_string(),
            scope: grant.scopes.to_string(),
            tenant: grant.tenant.to_string(),
        };
        let keys = self.keyring.keys();
        let key = &keys.current;
        let mut header = Header::new(key.alg.jwt());
        header.typ = Some(TYP.into());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| anyhow::anyhow!("signing an access token failed: {e}"))?;
        Ok((token, claims))
    }

    /// Checks signature, type, issuer, time and — when given — the audience. The reason
    /// is safe to show to whoever presented the token.
    pub fn verify(&self, token: &str, audience: Option<&str>) -> Result<AccessClaims, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is not a well-formed JWT")?;
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(TYP) || t.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err("the token is not an access token (typ must be at+jwt)");
        }
        let kid = header.kid.as_deref().ok_or("the token names no signing key")?;
        let keys = self.keyring.keys();
        let key = keys.verifying.get(kid).ok_or("the token's signing key is unknown or retired")?;
        if header.alg != key.alg.jwt() {
            return Err("the token's algorithm does not match its key");
        }
        let mut v = Validation::new(key.alg.jwt());
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        match audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &v).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidAudience => "the token was issued for another resource",
                K::InvalidIssuer => "the token was issued by another issuer",
                K::InvalidSignature => "the token's signature is invalid",
                K::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is invalid",
            }
        })
    }
}
