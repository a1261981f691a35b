//! Sealed inline contexts (docs/integrity.md "Inline contexts"): a context carried in a
//! request's `OCP-Context` header instead of being fetched, produced and accepted only
//! by systems that hold the keys.
//!
//! A sealed context is a JWT (RFC 7519) signed by the key ring: its claims are the OCP
//! context's members plus `iss`, `iat`, `exp` and, when asked, `aud`; the header names
//! the key (`kid`) and `typ` [`TYP`]. `exp` is never later than the context's own
//! `expires`. Opening one checks the signature (our keys, the algorithm of the key),
//! the expiry (with [`crate::jwt::LEEWAY_SECS`]), the audience and the context's shape.

use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde_json::{Map, Value};

use crate::domain::Timestamp;
use crate::domain::context::MessageRole;
use crate::jwt::{Keyring, LEEWAY_SECS};

/// The `typ` header of a sealed context.
pub const TYP: &str = "ocp-context+jwt";
/// The JWT claims a sealed context adds to the context's members.
pub const CLAIMS: [&str; 4] = ["iss", "iat", "exp", "aud"];

/// Why an inline context is refused.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    /// Not an OCP context, or not a JWS at all: the request is wrong (400).
    #[error("{0}")]
    Malformed(String),
    /// Well formed but not acceptable: signature, key, expiry, audience (401).
    #[error("{0}")]
    Rejected(String),
}

/// An inline context that passed every check.
#[derive(Debug)]
pub struct Opened {
    /// The context's members (claims removed).
    pub context: Map<String, Value>,
    /// The key that sealed it; none for an unsigned context accepted by configuration.
    pub kid: Option<String>,
    pub issuer: Option<String>,
    /// When the seal lapses (`exp`), or the context's own `expires` for an unsigned one.
    pub expires_at: Option<Timestamp>,
}

/// Another OCP system whose sealed contexts are accepted: its `iss` and its public
/// keys (a JWKS file the operator configured; docs/integrity.md "Trusted issuers").
pub struct TrustedIssuer {
    pub issuer: String,
    keys: Vec<(String, jsonwebtoken::Algorithm, jsonwebtoken::DecodingKey)>,
}

impl TrustedIssuer {
    /// Reads a JWKS: every key needs `kid` and `alg` (a key is used with its own
    /// algorithm only, never the one a token's header names).
    pub fn from_jwks(issuer: &str, jwks: &str) -> Result<TrustedIssuer, String> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or("a key has no kid")?;
            let alg = match jwk.common.key_algorithm {
                Some(a) => jsonwebtoken::Algorithm::from_str(&a.to_string()).map_err(|e| format!("key {kid}: {e}"))?,
                None => return Err(format!("key {kid} has no alg")),
            };
            if matches!(
                alg,
                jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512
            ) {
                return Err(format!("key {kid}: only public keys are trusted"));
            }
            let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
            keys.push((kid, alg, key));
        }
        if keys.is_empty() {
            return Err("the key set is empty".into());
        }
        Ok(TrustedIssuer { issuer: issuer.to_string(), keys })
    }
}

/// Seals contexts with the key ring's current key; opens what the ring's keys or a
/// trusted issuer's keys sealed.
pub struct Sealer {
    keyring: Arc<Keyring>,
    trusted: Vec<TrustedIssuer>,
}

impl Sealer {
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self { keyring, trusted: Vec::new() }
    }

    /// Also accepts what these issuers sealed.
    pub fn trusting(mut self, trusted: Vec<TrustedIssuer>) -> Self {
        self.trusted = trusted;
        self
    }

    /// Signs `context` (its members as served, a subset at most) as a sealed context.
    pub fn seal(
        &self,
        mut context: Map<String, Value>,
        issuer: &str,
        issued_at: Timestamp,
        expires_at: Timestamp,
        audience: Option<&str>,
    ) -> Result<(String, String), String> {
        context.insert("iss".into(), issuer.into());
        context.insert("iat".into(), (issued_at.millis() / 1000).into());
        context.insert("exp".into(), (expires_at.millis() / 1000).into());
        if let Some(aud) = audience {
            context.insert("aud".into(), aud.into());
        }
        let keys = self.keyring.keys();
        let key = &keys.current;
        let mut header = Header::new(key.alg.jwt());
        header.typ = Some(TYP.into());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &context, &key.encoding).map_err(|e| e.to_string())?;
        Ok((token, key.kid.clone()))
    }

    /// Opens a sealed context (a compact JWS). `audience` is who the caller is: a sealed
    /// context with `aud` is accepted only by that audience.
    pub fn open(&self, token: &str, audience: Option<&str>, now: Timestamp) -> Result<Opened, InlineError> {
        let rejected = |m: String| InlineError::Rejected(m);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| InlineError::Malformed(format!("not a compact JWS: {e}")))?;
        if header.typ.as_deref() != Some(TYP) {
            return Err(rejected(format!("typ must be {TYP:?}")));
        }
        let kid = header.kid.clone().ok_or_else(|| rejected("the JWS names no key (kid)".into()))?;
        let keys = self.keyring.keys();
        // Published keys only: a seal is short-lived, and a retired key's seals have lapsed.
        // Otherwise a trusted issuer's key, which must then be who `iss` names.
        let (alg, decoding, issuer) = match keys.verifying.get(&kid) {
            Some(key) => (key.alg.jwt(), &key.decoding, None),
            None => self
                .trusted
                .iter()
                .find_map(|t| t.keys.iter().find(|k| k.0 == kid).map(|k| (k.1, &k.2, Some(t.issuer.as_str()))))
                .ok_or_else(|| rejected(format!("key {kid:?} is neither ours nor a trusted issuer's")))?,
        };
        if header.alg != alg {
            return Err(rejected(format!("alg {:?} is not the algorithm of key {kid}", header.alg)));
        }
        let mut validation = Validation::new(alg);
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
            validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        } else {
            validation.set_required_spec_claims(&["exp", "iat"]);
        }
        validation.leeway = LEEWAY_SECS;
        match audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, decoding, &validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => rejected("the sealed context has expired (exp)".into()),
                ErrorKind::InvalidAudience => rejected("the sealed context is for another audience (aud)".into()),
                ErrorKind::InvalidSignature => rejected("the signature does not match the sealed context".into()),
                ErrorKind::InvalidIssuer => rejected("the key's issuer is not the sealed context's iss".into()),
                ErrorKind::MissingRequiredClaim(c) => rejected(format!("the sealed context has no {c} claim")),
                ErrorKind::Json(_) | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    InlineError::Malformed(format!("the payload is not a JSON object: {e}"))
                }
                _ => rejected(format!("the sealed context does not verify: {e}")),
            })?;
        let mut context = data.claims;
        if audience.is_none() && context.contains_key("aud") {
            return Err(rejected("the sealed context is for a named audience: say which audience you are".into()));
        }
        let claims: Map<String, Value> =
            CLAIMS.iter().filter_map(|c| context.remove(*c).map(|v| ((*c).to_string(), v))).collect();
        check_shape(&context, now)?;
        Ok(Opened {
            context,
            kid: Some(kid),
            issuer: claims.get("iss").and_then(Value::as_str).map(str::to_string),
            expires_at: claims.get("exp").and_then(Value::as_i64).map(|s| Timestamp::from_millis(s * 1000)),
        })
    }

    /// Checks a context object carrying a stored version's `signature` (as `GET`
    /// served it) with every key the server holds, retired ones included.
    pub fn verify_version(&self, context: &Value) -> Result<super::served::Verified, super::served::ServedError> {
        let set = self.keyring.keys();
        let keys: super::served::Keys = set
            .verifying
            .values()
            .chain(set.retired.values())
            .map(|k| (k.kid.clone(), super::served::VerifyingKey { alg: k.alg.jwt(), key: k.decoding.clone() }))
            .collect();
        super::served::verify(context, &keys)
    }

    /// Accepts an unsigned context (only where configuration allows it): its shape and
    /// its own expiry are checked.
    pub fn accept_unsigned(context: Map<String, Value>, now: Timestamp) -> Result<Opened, InlineError> {
        check_shape(&context, now)?;
        let expires_at = expires_of(&context)?;
        Ok(Opened { context, kid: None, issuer: None, expires_at })
    }
}

fn expires_of(context: &Map<String, Value>) -> Result<Option<Timestamp>, InlineError> {
    match context.get("expires") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Timestamp::parse_rfc3339(s).map(Some).map_err(|e| InlineError::Malformed(format!("expires: {e}")))
        }
        Some(_) => Err(InlineError::Malformed("expires: must be an RFC 3339 date-time string".into())),
    }
}

/// The OCP context schema (docs/ocp-context.schema.json): `context_id` and
/// `session.history` of `{role, message}` required, `metadata` an object, `expires` a
/// date-time — which must not have passed.
pub fn check_shape(context: &Map<String, Value>, now: Timestamp) -> Result<(), InlineError> {
    let bad = |m: &str| InlineError::Malformed(m.to_string());
    let id = context.get("context_id").and_then(Value::as_str).ok_or_else(|| bad("context_id: required string"))?;
    if id.is_empty() {
        return Err(bad("context_id: must not be empty"));
    }
    if context.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(bad("metadata: must be an object"));
    }
    let history = context
        .get("session")
        .and_then(|s| s.get("history"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("session.history: required array"))?;
    for (i, m) in history.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if role.is_none_or(|r| MessageRole::parse(r).is_err()) {
            return Err(InlineError::Malformed(format!(
                "session.history[{i}].role: must be user, assistant or system"
            )));
        }
        if !m.get("message").is_some_and(Value::is_string) {
            return Err(InlineError::Malformed(format!("session.history[{i}].message: required string")));
        }
    }
    if let Some(e) = expires_of(context)?
        && e <= now
    {
        return Err(InlineError::Rejected("the context has expired (expires)".into()));
    }
    Ok(())
}
