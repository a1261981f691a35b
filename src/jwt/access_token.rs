//! Access tokens: JWTs in the RFC 9068 profile (`typ: at+jwt`), signed with the current
//! key, verified against the published keys with the checks of RFC 8725: the algorithm
//! comes from our key (never from the token), `kid` must name a key we published, and
//! `typ`, `iss`, `aud`, `exp`, `nbf` are all enforced with 30 s of clock skew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::Keyring;
use crate::domain::{ContextBinding, PrincipalId, ScopeSet, TenantId, Timestamp};

pub const TYP: &str = "at+jwt";
pub const LEEWAY_SECS: u64 = 30;

const RETIRED: &str = "the token's signing key is unknown or retired";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Context binding (docs/policies.md, context-bound tokens): the token works only on these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx: Option<ContextBinding>,
    /// RFC 8693 section 4.1: who acts for `sub`, with the earlier actors nested inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The `jti`s of the tokens this one was exchanged from, nearest first: revoking
    /// any of them revokes this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
}

/// An actor (RFC 8693 section 4.1): the party acting, and who acted before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// How many actors the chain names.
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }
}

/// What a token is minted for.
#[derive(Clone, Copy)]
pub struct Grant<'a> {
    pub principal: PrincipalId,
    pub tenant: TenantId,
    pub client_id: &'a str,
    pub scopes: ScopeSet,
    pub audience: &'a str,
    pub binding: Option<&'a ContextBinding>,
    /// Set by token exchange only.
    pub delegation: Option<&'a Delegation>,
}

/// What token exchange adds to a token: the actor chain, the ancestry and a lifetime
/// that may not outlast the subject token's.
pub struct Delegation {
    pub act: Actor,
    pub parents: Vec<String>,
    pub expires_at: i64,
}

pub struct AccessTokens {
    keyring: Arc<Keyring>,
    issuer: String,
    ttl: Duration,
    /// Tokens whose signature and issuer were verified, by SHA-256 of the token, with
    /// the `kid` that signed them. Only the cryptographic result is cached: the key must
    /// still be published, time and audience are re-checked on every use, and revocation
    /// is never cached (the caller checks the database each time).
    verified: Mutex<HashMap<[u8; 32], (AccessClaims, String)>>,
}

/// Bound on the verified-token cache; it is simply emptied when full.
const VERIFIED_MAX: usize = 10_000;

impl AccessTokens {
    pub fn new(keyring: Arc<Keyring>, issuer: String, ttl: Duration) -> Self {
        crate::crypto::jwt_provider::install();
        Self { keyring, issuer, ttl, verified: Mutex::new(HashMap::new()) }
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
        let mut exp = now + self.ttl.as_secs() as i64;
        let (mut act, mut parents) = (None, Vec::new());
        if let Some(d) = grant.delegation {
            exp = exp.min(d.expires_at);
            act = Some(d.act.clone());
            parents = d.parents.clone();
        }
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.principal.to_string(),
            aud: grant.audience.to_string(),
            exp,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: grant.client_id.to_string(),
            scope: grant.scopes.to_string(),
            tenant: grant.tenant.to_string(),
            ctx: grant.binding.cloned(),
            act,
            parents,
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
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hit = self.verified.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some((claims, kid)) = hit {
            // A retired (or removed) key takes the memo of its signatures with it.
            if !self.keyring.keys().verifying.contains_key(&kid) {
                if let Ok(mut cache) = self.verified.lock() {
                    cache.remove(&key);
                }
                return Err(RETIRED);
            }
            let now = Timestamp::now().millis() / 1000;
            let leeway = LEEWAY_SECS as i64;
            if claims.exp + leeway < now {
                return Err("the token has expired");
            }
            if claims.nbf - leeway > now {
                return Err("the token is not valid yet");
            }
            if audience.is_some_and(|a| a != claims.aud) {
                return Err("the token was issued for another resource");
            }
            return Ok(claims);
        }
        let (claims, kid) = self.verify_signed(token, audience)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_MAX {
                cache.clear();
            }
            cache.insert(key, (claims.clone(), kid));
        }
        Ok(claims)
    }

    /// [`Self::verify`], reloading the key ring once first when the token names a key
    /// this process does not hold: another replica may have rotated moments ago, and
    /// each replica reloads the keys only every few seconds.
    pub async fn verify_with_refresh(&self, token: &str, audience: Option<&str>) -> Result<AccessClaims, &'static str> {
        match self.verify(token, audience) {
            Err(e) if e == RETIRED && self.keyring.refresh_for_unknown_kid().await => self.verify(token, audience),
            other => other,
        }
    }

    /// The full check, signature included; also returns the `kid` that signed it.
    fn verify_signed(&self, token: &str, audience: Option<&str>) -> Result<(AccessClaims, String), &'static str> {
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
        let key = keys.verifying.get(kid).ok_or(RETIRED)?;
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
        let kid = kid.to_string();
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &v).map(|d| (d.claims, kid)).map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kek::Kek;
    use crate::jwt::KeyAlg;
    use crate::store::{self, DatabaseLocation};

    async fn tokens(ttl: Duration) -> (AccessTokens, tempfile::TempDir) {
        tokens_retained(ttl, Duration::from_secs(60)).await
    }

    /// Superseded keys stay published for `retention`.
    async fn tokens_retained(ttl: Duration, retention: Duration) -> (AccessTokens, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&DatabaseLocation::sqlite_in(dir.path())).await.unwrap();
        let kek = Arc::new(Kek::load_or_create(dir.path()).unwrap());
        let ring = Keyring::load(db, kek, KeyAlg::EdDsa, retention).await.unwrap();
        (AccessTokens::new(Arc::new(ring), "https://ctx.example".into(), ttl), dir)
    }

    /// A signature remembered under a key that is no longer published is not accepted:
    /// retiring a key (or removing a compromised one) cuts off its tokens at once.
    #[tokio::test]
    async fn a_retired_key_takes_its_remembered_signatures_with_it() {
        let (t, _dir) = tokens_retained(Duration::from_secs(300), Duration::ZERO).await;
        let (token, _) = t.issue(&grant("https://ctx.example")).unwrap();
        assert!(t.verify(&token, None).is_ok());
        assert!(t.verify(&token, None).is_ok(), "remembered");
        t.keyring().rotate(KeyAlg::EdDsa).await.unwrap();
        assert_eq!(t.verify(&token, None), Err(RETIRED), "the old key is retired at once (no retention)");
        let (fresh, _) = t.issue(&grant("https://ctx.example")).unwrap();
        assert!(t.verify(&fresh, None).is_ok(), "the new key works");
    }

    fn grant<'a>(audience: &'a str) -> Grant<'a> {
        Grant {
            principal: PrincipalId::new_random(),
            tenant: TenantId::new_random(),
            client_id: "c",
            scopes: ScopeSet::all(),
            audience,
            binding: None,
            delegation: None,
        }
    }

    /// The verified-token cache never widens what a token may do: audience and time are
    /// checked again on every hit, and a different token is a different entry.
    #[tokio::test]
    async fn cached_verification_rechecks_audience_and_time() {
        let (t, _dir) = tokens(Duration::from_secs(300)).await;
        let (token, _) = t.issue(&grant("https://ctx.example/mcp")).unwrap();
        assert!(t.verify(&token, Some("https://ctx.example/mcp")).is_ok());
        assert!(t.verify(&token, Some("https://ctx.example/mcp")).is_ok(), "cache hit");
        assert_eq!(t.verify(&token, Some("https://ctx.example")), Err("the token was issued for another resource"));
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(t.verify(&tampered, None).is_err());
        // A cached entry whose time has run out is refused.
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        t.verified.lock().unwrap().get_mut(&key).unwrap().0.exp = 0;
        assert_eq!(t.verify(&token, None), Err("the token has expired"));
    }
}
