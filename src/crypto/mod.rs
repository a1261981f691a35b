//! Cryptographic building blocks, each a thin layer over a maintained crate: the
//! key-encryption key that seals secrets at rest, random tokens, secrets in memory
//! (zeroized, redacted) and on disk (owner-only files), and the JWT signing provider
//! that keeps parsed keys.

pub mod at_rest;
pub mod jwt_provider;
pub mod kek;
pub mod secret;
pub mod secret_file;
pub mod token;

pub use secret::Secret;
