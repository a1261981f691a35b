//! Signed context versions (docs/integrity.md): the [`VersionSigner`] the store calls,
//! backed by the signing key ring — the same keys as access tokens, published at
//! `/oauth/jwks`.
//!
//! A signature is a JWS (RFC 7515) in compact serialization with detached content
//! (appendix F): `protected..signature`, the payload being the version's manifest
//! (`domain::manifest`) as RFC 8785 canonical JSON. The protected header names the
//! key (`kid`), the algorithm, `typ` [`TYP`] and the tenant ([`TENANT_PARAM`]), so a
//! signature copied to another tenant's row fails even for the same context id.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jws::Jws;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::domain::manifest::{IntegrityFailure, Manifest, VersionSigner};
use crate::jwt::Keyring;

pub mod inline;
pub mod served;

/// The `typ` header of a version signature.
pub const TYP: &str = "ocp-manifest+json";
/// The protected header parameter naming the tenant the version belongs to.
pub const TENANT_PARAM: &str = "ctxguard_tenant";

/// How many signatures a process remembers having made or checked.
const REMEMBERED: u64 = 100_000;

/// Signs with the key ring's current key; checks with any key the server holds.
pub struct Signer {
    keyring: Arc<Keyring>,
    /// Signatures this process made or already checked, by a digest of tenant, signing
    /// input and signature. A write checks the version it extends — usually one this
    /// process just signed — so most writes cost one signature, not two.
    known: moka::sync::Cache<[u8; 32], ()>,
}

impl Signer {
    pub fn new(keyring: Arc<Keyring>) -> Signer {
        Signer { keyring, known: moka::sync::Cache::new(REMEMBERED) }
    }

    fn memo_key(tenant: TenantId, protected: &str, payload: &str, signature: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [tenant.to_string().as_str(), protected, payload, signature] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

/// Splits a detached compact JWS into its protected header and signature.
fn detached_parts(signature: &str) -> Result<(&str, &str), IntegrityFailure> {
    let malformed = || IntegrityFailure::Malformed("expected `header..signature`".into());
    let (protected, sig) = signature.split_once("..").ok_or_else(malformed)?;
    let base64url = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !base64url(protected) || !base64url(sig) {
        return Err(malformed());
    }
    Ok((protected, sig))
}

/// The protected header of a detached JWS.
fn header_of(protected: &str) -> Result<Header, IntegrityFailure> {
    // `decode_header` reads the first part of a compact JWS; the others are not looked at.
    jsonwebtoken::decode_header(format!("{protected}..")).map_err(|e| IntegrityFailure::Malformed(e.to_string()))
}

/// Checks a detached JWS over `manifest` with `key`, whose algorithm is `alg`: the
/// header must name that algorithm (so neither `none` nor an HMAC keyed with a public
/// key can pass).
fn check(manifest: &Manifest, signature: &str, alg: Algorithm, key: &DecodingKey) -> Result<(), IntegrityFailure> {
    let (protected, sig) = detached_parts(signature)?;
    let header = header_of(protected)?;
    if header.alg != alg {
        return Err(IntegrityFailure::WrongAlg(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let jws = Jws::<IgnoredAny> {
        protected: protected.into(),
        payload: URL_SAFE_NO_PAD.encode(manifest.canonical()),
        signature: sig.into(),
        _pd: Default::default(),
    };
    match jsonwebtoken::jws::decode(&jws, key, &validation) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => Err(IntegrityFailure::Mismatch),
        Err(e) => Err(IntegrityFailure::Malformed(e.to_string())),
    }
}

impl VersionSigner for Signer {
    fn sign(&self, tenant: TenantId, manifest: &Manifest) -> Result<String, String> {
        let keys = self.keyring.keys();
        let key = &keys.current;
        let mut header = Header::new(key.alg.jwt());
        header.typ = Some(TYP.into());
        header.kid = Some(key.kid.clone());
        header.extras.insert(TENANT_PARAM, tenant.to_string());
        let canonical = String::from_utf8(manifest.canonical()).map_err(|e| e.to_string())?;
        let payload = RawValue::from_string(canonical).map_err(|e| e.to_string())?;
        let jws = jsonwebtoken::jws::encode(&header, Some(&payload), &key.encoding).map_err(|e| e.to_string())?;
        self.known.insert(Self::memo_key(tenant, &jws.protected, &jws.payload, &jws.signature), ());
        Ok(format!("{}..{}", jws.protected, jws.signature))
    }

    fn verify(&self, tenant: TenantId, manifest: &Manifest, signature: &str) -> Result<(), IntegrityFailure> {
        let (protected, sig) = detached_parts(signature)?;
        let payload = URL_SAFE_NO_PAD.encode(manifest.canonical());
        let memo = Self::memo_key(tenant, protected, &payload, sig);
        if self.known.contains_key(&memo) {
            return Ok(());
        }
        let header = header_of(protected)?;
        let kid = header.kid.as_deref().ok_or_else(|| IntegrityFailure::Malformed("no kid".into()))?;
        let keys = self.keyring.keys();
        let key = keys.any(kid).ok_or_else(|| IntegrityFailure::UnknownKey(kid.into()))?;
        if header.extras.get::<String>(TENANT_PARAM).ok().flatten().as_deref() != Some(tenant.to_string().as_str()) {
            return Err(IntegrityFailure::WrongTenant);
        }
        check(manifest, signature, key.alg.jwt(), &key.decoding)?;
        self.known.insert(memo, ());
        Ok(())
    }
}
