//! Our access tokens, below both their issuer and their verifier: the RFC 9068 JWT
//! format with its checks ([`AccessTokens`]), the signing key ring with rotation and the
//! JWKS ([`Keyring`]), and the time constants both sides must agree on. The
//! authorization server (`oauth`) mints with it, the resource server (`authn`) verifies
//! with it; neither knows the other.

pub mod access_token;
pub mod keys;

use std::time::Duration;

pub use access_token::{AccessClaims, AccessTokens, Actor, Delegation, Grant, LEEWAY_SECS};
pub use keys::{KeyAlg, Keyring, SigningKey};

/// The longest access token lifetime; superseded signing keys stay published this long
/// (plus clock skew) so that every token they signed can still be verified.
pub const MAX_ACCESS_TOKEN_TTL_SECS: u64 = 3600;

/// How long a superseded signing key stays published: the longest token lifetime
/// plus clock skew, so every token it signed can still be verified.
pub fn key_retention() -> Duration {
    Duration::from_secs(MAX_ACCESS_TOKEN_TTL_SECS + LEEWAY_SECS)
}
