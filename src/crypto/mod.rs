//! Cryptographic building blocks, each a thin layer over a maintained crate: the
//! key-encryption key that seals secrets at rest, random tokens, and the JWT signing
//! provider that keeps parsed keys.

pub mod jwt_provider;
pub mod kek;
pub mod token;
