//! Checking a context as it was served (JSON), offline: what `ctxguard context verify`
//! does, and what any third party does by the algorithm of docs/integrity.md. The
//! digests are recomputed from the JSON values (RFC 8785), not from the bytes as
//! received, so a context that was re-serialized on its way still verifies.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::domain::manifest::{HistoryHash, IntegrityFailure, Manifest, Sha256Digest};
use crate::domain::{ContextId, TenantId, Timestamp, Version};

/// A key that may have signed a version: its algorithm and verifying half.
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Keys by kid.
pub type Keys = HashMap<String, VerifyingKey>;

/// The keys of a JWKS (`/oauth/jwks`); entries that are not signing keys are skipped.
pub fn keys_of_jwks(jwks: &JwkSet) -> Keys {
    let mut out = HashMap::new();
    for jwk in &jwks.keys {
        let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) else { continue };
        let alg = match jwk.common.key_algorithm.map(|a| a.to_string()).as_deref() {
            Some("ES256") => Algorithm::ES256,
            // A tenant's exported HMAC key (docs/integrity.md "HMAC signatures").
            Some("HS256") => Algorithm::HS256,
            _ => Algorithm::EdDSA,
        };
        out.insert(kid, VerifyingKey { alg, key });
    }
    out
}

/// What a good signature tells.
#[derive(Debug, serde::Serialize)]
pub struct Verified {
    pub context_id: ContextId,
    pub version: Version,
    pub kid: String,
    pub alg: String,
    /// The tenant the signing server put the version in.
    pub tenant: Option<TenantId>,
}

/// Why a served context does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    #[error("not an OCP context as ctxguard serves it: {0}")]
    Shape(String),
    #[error("{0}")]
    Failure(#[from] IntegrityFailure),
}

fn field<'a>(ctx: &'a Value, name: &str) -> Result<&'a Value, ServedError> {
    ctx.get(name).ok_or_else(|| ServedError::Shape(format!("no {name}")))
}

fn parsed<T: serde::de::DeserializeOwned>(ctx: &Value, name: &str) -> Result<T, ServedError> {
    serde_json::from_value(field(ctx, name)?.clone()).map_err(|e| ServedError::Shape(format!("{name}: {e}")))
}

fn canonical(v: &Value) -> Result<Vec<u8>, ServedError> {
    serde_json_canonicalizer::to_vec(v).map_err(|e| ServedError::Shape(e.to_string()))
}

/// The manifest of a served context, recomputed from its JSON.
pub fn manifest_of(ctx: &Value) -> Result<Manifest, ServedError> {
    let history = field(ctx, "session")?
        .get("history")
        .and_then(Value::as_array)
        .ok_or_else(|| ServedError::Shape("no session.history array".into()))?;
    if ctx.get("history_length").is_some() || ctx.get("history_start").is_some() {
        return Err(ServedError::Shape("a window of the history: the signature covers the whole version".into()));
    }
    let mut chain = HistoryHash::EMPTY;
    for m in history {
        chain = chain.then(&canonical(m)?);
    }
    let metadata = field(ctx, "metadata")?;
    if !metadata.is_object() {
        return Err(ServedError::Shape("metadata is not an object".into()));
    }
    let expires = match ctx.get("expires") {
        None | Some(Value::Null) => None,
        Some(_) => Some(parsed::<Timestamp>(ctx, "expires")?),
    };
    Ok(Manifest {
        context_id: parsed(ctx, "context_id")?,
        created_at: parsed(ctx, "created_at")?,
        expires,
        history_len: history.len() as u64,
        history_sha256: chain.to_b64(),
        metadata_sha256: Sha256Digest::of(&canonical(metadata)?).to_b64(),
        updated_at: parsed(ctx, "updated_at")?,
        version: parsed(ctx, "version")?,
    })
}

/// Verifies a served context's `signature` with `keys`.
pub fn verify(ctx: &Value, keys: &Keys) -> Result<Verified, ServedError> {
    let manifest = manifest_of(ctx)?;
    let signature =
        ctx.get("signature").and_then(Value::as_str).ok_or(ServedError::Failure(IntegrityFailure::Unsigned))?;
    let (protected, _) = super::detached_parts(signature)?;
    let header = super::header_of(protected)?;
    let kid = header.kid.clone().ok_or_else(|| IntegrityFailure::Malformed("no kid".into()))?;
    let key = keys.get(&kid).ok_or_else(|| IntegrityFailure::UnknownKey(kid.clone()))?;
    let tenant = header.extras.get::<String>(super::TENANT_PARAM).ok().flatten().and_then(|t| t.parse().ok());
    super::check(&manifest, signature, key.alg, &key.key)?;
    Ok(Verified {
        context_id: manifest.context_id,
        version: manifest.version,
        kid,
        alg: format!("{:?}", key.alg),
        tenant,
    })
}
