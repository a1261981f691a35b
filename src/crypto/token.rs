//! Opaque random tokens (refresh tokens, authorization codes, client secrets, session
//! ids) and their stored form. All are 256-bit random values, so SHA-256 is the right
//! hash for storage and lookup.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::Secret;
use crate::domain::TokenHash;

/// A new random token `<prefix><base64url(32 bytes)>`.
pub fn generate(prefix: &str) -> Secret {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::fill(&mut raw[..]);
    Secret::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&raw[..])))
}

/// base64url(SHA-256(token)): what is stored.
pub fn hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()).as_slice())
}

/// The stored form of an opaque one-time token (code, refresh token, session id).
pub fn token_hash(token: &str) -> TokenHash {
    TokenHash::new(hash(token))
}

/// base64url(SHA-256(input)) without padding — also the PKCE S256 transform (RFC 7636).
pub fn s256(input: &str) -> String {
    hash(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    #[test]
    fn pkce_s256_vector() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let a = generate("ctxr_");
        assert!(a.expose().starts_with("ctxr_"));
        assert_ne!(a.expose(), generate("ctxr_").expose());
    }
}
