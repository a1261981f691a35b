//! Cryptographic building blocks, each a thin layer over a maintained crate: the
//! key-encryption key that seals secrets at rest, and random tokens.

pub mod kek;
pub mod token;
