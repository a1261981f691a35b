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

/// Per-tenant HMAC-SHA256 keys (docs/integrity.md "HMAC signatures"): every key kept
/// (older ones check what they signed), and the tenants that sign with their newest.
#[derive(Default)]
pub struct HmacKeys {
    keys: std::collections::HashMap<(TenantId, u32), zeroize::Zeroizing<Vec<u8>>>,
    signing: std::collections::HashMap<TenantId, u32>,
}

impl HmacKeys {
    pub fn add(&mut self, tenant: TenantId, id: u32, key: zeroize::Zeroizing<Vec<u8>>) {
        self.keys.insert((tenant, id), key);
    }

    /// `tenant` signs with its newest key (it must have one).
    pub fn sign_with_newest(&mut self, tenant: TenantId) {
        if let Some(id) = self.keys.keys().filter(|(t, _)| *t == tenant).map(|(_, id)| *id).max() {
            self.signing.insert(tenant, id);
        }
    }
}

impl HmacKeys {
    /// Every key, for checking: (kid, key).
    pub fn verifying(&self) -> impl Iterator<Item = (String, DecodingKey)> + '_ {
        self.keys.iter().map(|((t, id), k)| (hmac_kid(*t, *id), DecodingKey::from_secret(k)))
    }

    /// `tenant`'s keys as a JWKS of `oct` keys (RFC 7517 §6.4), for its verifiers.
    pub fn jwks(&self, tenant: TenantId) -> serde_json::Value {
        let mut keys: Vec<_> = self.keys.iter().filter(|((t, _), _)| *t == tenant).collect();
        keys.sort_by_key(|((_, id), _)| *id);
        let keys: Vec<serde_json::Value> = keys
            .into_iter()
            .map(|((t, id), k)| {
                serde_json::json!({"kty": "oct", "kid": hmac_kid(*t, *id), "alg": "HS256", "use": "sig",
                                   "k": URL_SAFE_NO_PAD.encode(k.as_slice())})
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// The `kid` of a tenant's HMAC key: `hmac:<tenant>:<key id>`.
pub fn hmac_kid(tenant: TenantId, id: u32) -> String {
    format!("hmac:{tenant}:{id}")
}

fn parse_hmac_kid(kid: &str) -> Option<(TenantId, u32)> {
    let mut parts = kid.splitn(3, ':');
    (parts.next()? == "hmac").then_some(())?;
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Signs with the key ring's current key, or the tenant's HMAC key where configured;
/// checks with any key the server holds.
pub struct Signer {
    keyring: Arc<Keyring>,
    /// Set once at start-up, after the tenants are known.
    hmac: std::sync::OnceLock<HmacKeys>,
    /// Signatures this process made or already checked, by a digest of tenant, signing
    /// input and signature. A write checks the version it extends — usually one this
    /// process just signed — so most writes cost one signature, not two.
    known: moka::sync::Cache<[u8; 32], ()>,
}

impl Signer {
    pub fn new(keyring: Arc<Keyring>) -> Signer {
        Signer { keyring, hmac: Default::default(), known: moka::sync::Cache::new(REMEMBERED) }
    }

    /// Gives the signer the tenants' HMAC keys (once; later calls are ignored).
    pub fn use_hmac(&self, keys: HmacKeys) {
        let _ = self.hmac.set(keys);
    }

    /// The HMAC key `tenant` signs with, if it signs with one: (kid, key).
    fn hmac_signing(&self, tenant: TenantId) -> Option<(String, &[u8])> {
        let keys = self.hmac.get()?;
        let id = *keys.signing.get(&tenant)?;
        Some((hmac_kid(tenant, id), keys.keys.get(&(tenant, id))?.as_slice()))
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

#[async_trait::async_trait]
impl VersionSigner for Signer {
    fn sign(&self, tenant: TenantId, manifest: &Manifest) -> Result<String, String> {
        let canonical = String::from_utf8(manifest.canonical()).map_err(|e| e.to_string())?;
        let payload = RawValue::from_string(canonical).map_err(|e| e.to_string())?;
        let header = |alg: Algorithm, kid: String| {
            let mut header = Header::new(alg);
            header.typ = Some(TYP.into());
            header.kid = Some(kid);
            header.extras.insert(TENANT_PARAM, tenant.to_string());
            header
        };
        let jws = match self.hmac_signing(tenant) {
            Some((kid, secret)) => jsonwebtoken::jws::encode(
                &header(Algorithm::HS256, kid),
                Some(&payload),
                &jsonwebtoken::EncodingKey::from_secret(secret),
            ),
            None => {
                let keys = self.keyring.keys();
                let key = &keys.current;
                jsonwebtoken::jws::encode(&header(key.alg.jwt(), key.kid.clone()), Some(&payload), &key.encoding)
            }
        }
        .map_err(|e| e.to_string())?;
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
        if header.extras.get::<String>(TENANT_PARAM).ok().flatten().as_deref() != Some(tenant.to_string().as_str()) {
            return Err(IntegrityFailure::WrongTenant);
        }
        if let Some((owner, id)) = parse_hmac_kid(kid) {
            // A tenant's HMAC key checks that tenant's versions only.
            let secret = self
                .hmac
                .get()
                .and_then(|h| h.keys.get(&(owner, id)))
                .filter(|_| owner == tenant)
                .ok_or_else(|| IntegrityFailure::UnknownKey(kid.into()))?;
            check(manifest, signature, Algorithm::HS256, &DecodingKey::from_secret(secret))?;
        } else {
            let keys = self.keyring.keys();
            let key = keys.any(kid).ok_or_else(|| IntegrityFailure::UnknownKey(kid.into()))?;
            check(manifest, signature, key.alg.jwt(), &key.decoding)?;
        }
        self.known.insert(memo, ());
        Ok(())
    }

    fn holds_key_for(&self, signature: &str) -> bool {
        let Ok(header) = detached_parts(signature).and_then(|(protected, _)| header_of(protected)) else {
            return false;
        };
        let Some(kid) = header.kid.as_deref() else { return false };
        match parse_hmac_kid(kid) {
            Some(key) => self.hmac.get().is_some_and(|h| h.keys.contains_key(&key)),
            None => self.keyring.keys().any(kid).is_some(),
        }
    }

    async fn refresh_keys(&self) -> bool {
        self.keyring.refresh_for_unknown_kid().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::{HistoryHash, metadata_digest};
    use crate::domain::{ContextHead, ContextId, Timestamp, Version};

    async fn signer() -> (Signer, tempfile::TempDir) {
        crate::crypto::jwt_provider::install();
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&crate::store::DatabaseLocation::sqlite_in(dir.path())).await.unwrap();
        let kek = Arc::new(crate::crypto::kek::Kek::load_or_create(dir.path()).unwrap());
        let ring = Keyring::load(db, kek, crate::jwt::KeyAlg::EdDsa, std::time::Duration::from_secs(60)).await;
        (Signer::new(Arc::new(ring.unwrap())), dir)
    }

    fn manifest() -> Manifest {
        let head = ContextHead {
            context_id: ContextId::new_random(),
            metadata: Default::default(),
            expires: None,
            version: Version(1),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            history_len: 0,
            history_bytes: 0,
        };
        Manifest::new(&head, metadata_digest(&Default::default()), HistoryHash::EMPTY)
    }

    #[tokio::test]
    async fn an_hmac_key_signs_and_checks_its_own_tenant_only() {
        let (signer, _dir) = signer().await;
        let (a, b, c) = (TenantId::new_random(), TenantId::new_random(), TenantId::new_random());
        let mut keys = HmacKeys::default();
        keys.add(a, 1, zeroize::Zeroizing::new(vec![1u8; 32]));
        keys.add(b, 1, zeroize::Zeroizing::new(vec![2u8; 32]));
        keys.sign_with_newest(a);
        signer.use_hmac(keys);
        let m = manifest();
        let by_a = signer.sign(a, &m).unwrap();
        assert_eq!(header_of(detached_parts(&by_a).unwrap().0).unwrap().alg, Algorithm::HS256);
        let fresh = |s: &Signer| Signer::new(s.keyring.clone());
        // A fresh signer (nothing remembered) with the same keys checks it.
        let again = fresh(&signer);
        let mut keys = HmacKeys::default();
        keys.add(a, 1, zeroize::Zeroizing::new(vec![1u8; 32]));
        keys.add(b, 1, zeroize::Zeroizing::new(vec![2u8; 32]));
        again.use_hmac(keys);
        again.verify(a, &m, &by_a).unwrap();
        assert!(matches!(again.verify(b, &m, &by_a), Err(IntegrityFailure::WrongTenant)));
        // Tenant b's signature forged with a's key under b's kid and tenant: refused.
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TYP.into());
        header.kid = Some(hmac_kid(b, 1));
        header.extras.insert(TENANT_PARAM, b.to_string());
        let payload = RawValue::from_string(String::from_utf8(m.canonical()).unwrap()).unwrap();
        let forged =
            jsonwebtoken::jws::encode(&header, Some(&payload), &jsonwebtoken::EncodingKey::from_secret(&[1u8; 32]))
                .unwrap();
        let forged = format!("{}..{}", forged.protected, forged.signature);
        assert!(matches!(again.verify(b, &m, &forged), Err(IntegrityFailure::Mismatch)));
        // A kid naming another tenant's key, or a key that does not exist: unknown.
        header.kid = Some(hmac_kid(a, 1));
        let crossed =
            jsonwebtoken::jws::encode(&header, Some(&payload), &jsonwebtoken::EncodingKey::from_secret(&[1u8; 32]))
                .unwrap();
        let crossed = format!("{}..{}", crossed.protected, crossed.signature);
        assert!(matches!(again.verify(b, &m, &crossed), Err(IntegrityFailure::UnknownKey(_))));
        header.kid = Some(hmac_kid(c, 1));
        header.extras.insert(TENANT_PARAM, c.to_string());
        let none =
            jsonwebtoken::jws::encode(&header, Some(&payload), &jsonwebtoken::EncodingKey::from_secret(&[1u8; 32]))
                .unwrap();
        let none = format!("{}..{}", none.protected, none.signature);
        assert!(matches!(again.verify(c, &m, &none), Err(IntegrityFailure::UnknownKey(_))));
        // Tenants not configured keep the key ring's EdDSA.
        let by_b = signer.sign(b, &m).unwrap();
        assert_eq!(header_of(detached_parts(&by_b).unwrap().0).unwrap().alg, Algorithm::EdDSA);
        assert_eq!(parse_hmac_kid("hmac:x:1"), None);
        assert_eq!(parse_hmac_kid(&hmac_kid(a, 7)), Some((a, 7)));
    }
}
