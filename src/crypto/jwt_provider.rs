//! jsonwebtoken's RustCrypto provider with one step remembered.
//!
//! For every EdDSA signature the stock provider parses the PKCS#8 key again, and
//! parsing an Ed25519 key derives its public half — a scalar multiplication as costly
//! as the signature itself. That was half the CPU time of issuing a token. This
//! provider keeps each parsed signing key (by SHA-256 of its DER) and signs with
//! ed25519-dalek; every other algorithm, and all verification, is the stock provider.
//! Nothing cryptographic is done here beyond choosing which key object to call.

use std::sync::{Arc, Mutex, OnceLock};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, EncodingKey};
use sha2::{Digest, Sha256};

/// Parsed keys; a handful at most (current plus recently rotated ones).
const KEPT: usize = 8;

struct Ed25519Signer(Arc<SigningKey>);

impl signature2::Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature2::Error> {
        use ed25519_dalek::Signer as _;
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn parsed(der: &[u8]) -> Result<Arc<SigningKey>> {
    static KEYS: Mutex<Vec<([u8; 32], Arc<SigningKey>)>> = Mutex::new(Vec::new());
    let id: [u8; 32] = Sha256::digest(der).into();
    if let Ok(keys) = KEYS.lock()
        && let Some((_, k)) = keys.iter().find(|(i, _)| *i == id)
    {
        return Ok(k.clone());
    }
    let key = Arc::new(SigningKey::from_pkcs8_der(der).map_err(|_| ErrorKind::InvalidEddsaKey)?);
    if let Ok(mut keys) = KEYS.lock() {
        if keys.len() >= KEPT {
            keys.remove(0);
        }
        keys.push((id, key.clone()));
    }
    Ok(key)
}

fn signer_factory(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    match alg {
        Algorithm::EdDSA => Ok(Box::new(Ed25519Signer(parsed(key.as_bytes())?))),
        other => (DEFAULT_PROVIDER.signer_factory)(other, key),
    }
}

/// Installs the provider for the process (idempotent; call before any JWT is signed).
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider { signer_factory, ..DEFAULT_PROVIDER.clone() });
    // Fails only if already installed, which is fine.
    let _ = provider.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{DecodingKey, Header, Validation};

    /// Tokens signed through the cached key verify with the stock verifier, and a
    /// different key gives a different signer.
    #[test]
    fn cached_signer_produces_verifiable_tokens() {
        install();
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let der = sk.to_pkcs8_der().unwrap();
        let enc = EncodingKey::from_ed_der(der.as_bytes());
        let dec = DecodingKey::from_ed_der(sk.verifying_key().as_bytes());
        let mut v = Validation::new(Algorithm::EdDSA);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        for _ in 0..2 {
            let t = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &serde_json::json!({"a": 1}), &enc).unwrap();
            assert!(jsonwebtoken::decode::<serde_json::Value>(&t, &dec, &v).is_ok());
        }
        let other = SigningKey::from_bytes(&[8u8; 32]).to_pkcs8_der().unwrap();
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &serde_json::json!({"a": 1}),
            &EncodingKey::from_ed_der(other.as_bytes()),
        )
        .unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&t, &dec, &v).is_err(), "signed with the other key");
    }
}
