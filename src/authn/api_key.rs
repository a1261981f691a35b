//! API key format and hashing.
//!
//! A key is `ctxg_` followed by 32 random bytes in base64url (256 bits of entropy).
//! Because it is high-entropy, a plain SHA-256 is the right hash: a password hash would
//! only add latency to every request without adding security.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::crypto::Secret;

pub const PREFIX: &str = "ctxg_";
const KEY_BYTES: usize = 32;
/// `ctxg_` + base64url(32 bytes) without padding.
const KEY_LEN: usize = PREFIX.len() + 43;

/// A fresh key and the hash to store for it.
pub fn generate() -> (Secret, String) {
    let mut raw = zeroize::Zeroizing::new([0u8; KEY_BYTES]);
    rand::fill(&mut raw[..]);
    let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw[..]));
    let h = hash(&key);
    (Secret::new(key), h)
}

pub fn looks_like_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The stored form: base64url(SHA-256(key)). Malformed keys hash too, so that they are
/// refused by the same lookup as unknown ones.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_slice())
}

pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// True if `key` has the exact shape of a key this server issues.
pub fn well_formed(key: &str) -> bool {
    key.len() == KEY_LEN
        && key.starts_with(PREFIX)
        && key[PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_well_formed_and_hash_stably() {
        let (a, ha) = generate();
        let (b, hb) = generate();
        assert_ne!(a.expose(), b.expose());
        assert!(well_formed(a.expose()), "{}", a.expose().len());
        assert_eq!(hash(a.expose()), ha);
        assert_ne!(ha, hb);
        assert!(hashes_equal(&ha, &hash(a.expose())));
        assert!(!hashes_equal(&ha, &hb));
    }
}
