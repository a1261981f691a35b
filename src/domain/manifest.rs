//! What a version's signature covers (docs/integrity.md): a small **manifest** of the
//! version — its id, number, times, expiry, a digest of its metadata and a running hash
//! over its history — rather than the whole context. Signing the whole canonical JSON
//! would make an append cost as much as the history is long; the running hash lets an
//! append extend the previous version's hash by its own messages only, and lets a
//! third party recompute every digest from the context it was served.
//!
//! Every digest is SHA-256 over RFC 8785 (JCS) canonical JSON:
//! - `metadata_sha256` = SHA-256(JCS(metadata));
//! - `history_sha256` = h(n) with h(0) = 32 zero bytes and
//!   h(k) = SHA-256(h(k-1) ‖ SHA-256(JCS(message k))) — each message as served, with
//!   its `provenance`;
//! - digests are written base64url without padding (as JOSE writes binary values).
//!
//! The manifest itself is signed as JCS, as the payload of a JWS with detached content
//! (RFC 7515 appendix F), so that any JOSE library verifies it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{ContextHead, ContextId, TenantId, Timestamp, Version};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// base64url without padding (43 characters).
    pub fn to_b64(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn parse_b64(s: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64())
    }
}

/// The running hash over a history after some number of its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryHash(Sha256Digest);

impl HistoryHash {
    /// h(0): the hash of an empty history.
    pub const EMPTY: HistoryHash = HistoryHash(Sha256Digest([0; 32]));

    /// h(k+1) from h(k) and message k+1's canonical JSON.
    pub fn then(self, canonical_message: &[u8]) -> HistoryHash {
        let mut h = Sha256::new();
        h.update(self.0.0);
        h.update(Sha256::digest(canonical_message));
        HistoryHash(Sha256Digest(h.finalize().into()))
    }

    /// The hash after `messages`, starting from `self`.
    pub fn over<'a>(self, messages: impl IntoIterator<Item = &'a [u8]>) -> HistoryHash {
        messages.into_iter().fold(self, HistoryHash::then)
    }

    pub fn to_b64(self) -> String {
        self.0.to_b64()
    }

    pub fn parse_b64(s: &str) -> Option<Self> {
        Sha256Digest::parse_b64(s).map(Self)
    }
}

/// SHA-256 of the metadata's canonical JSON.
pub fn metadata_digest(metadata: &Map<String, Value>) -> Sha256Digest {
    // JCS of a map of JSON values cannot fail: every number serde_json holds is finite.
    let canonical = serde_json_canonicalizer::to_vec(metadata).unwrap_or_default();
    Sha256Digest::of(&canonical)
}

/// What a version's signature covers. Members are serialized in JCS order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub context_id: ContextId,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    pub history_len: u64,
    pub history_sha256: String,
    pub metadata_sha256: String,
    pub updated_at: Timestamp,
    pub version: Version,
}

impl Manifest {
    pub fn new(head: &ContextHead, metadata: Sha256Digest, history: HistoryHash) -> Manifest {
        Manifest {
            context_id: head.context_id,
            created_at: head.created_at,
            expires: head.expires,
            history_len: head.history_len as u64,
            history_sha256: history.to_b64(),
            metadata_sha256: metadata.to_b64(),
            updated_at: head.updated_at,
            version: head.version,
        }
    }

    /// The signed bytes: the manifest's RFC 8785 canonical JSON. Members are declared in
    /// JCS order and every value is a string that needs no escaping (ids, times,
    /// base64url) or an integer, so plain serialization is canonical — and cheaper, on
    /// every write — as long as the integers are exact in a double (JCS writes numbers
    /// as ECMAScript does); beyond 2^53 the canonicalizer decides. A test holds both.
    pub fn canonical(&self) -> Vec<u8> {
        const EXACT: u64 = 1 << 53;
        if self.history_len <= EXACT && self.version.0.unsigned_abs() <= EXACT {
            serde_json::to_vec(self).unwrap_or_default()
        } else {
            serde_json_canonicalizer::to_vec(self).unwrap_or_default()
        }
    }
}

/// Why a stored version failed its check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityFailure {
    #[error("the version has no signature")]
    Unsigned,
    #[error("the signature is not a detached compact JWS: {0}")]
    Malformed(String),
    #[error("the signature names key {0:?}, which this server does not hold")]
    UnknownKey(String),
    #[error("the signature's alg {0:?} is not the one of its key")]
    WrongAlg(String),
    #[error("the signature belongs to another tenant")]
    WrongTenant,
    #[error("the signature does not match the version's content")]
    Mismatch,
}

/// Signs version manifests and checks their signatures. The store calls it inside its
/// transactions (signing) and on every read from the database (checking); the
/// implementation holds the keys (`integrity::Signer`).
#[async_trait::async_trait]
pub trait VersionSigner: Send + Sync {
    /// A detached compact JWS (`header..signature`) over the manifest's canonical JSON.
    fn sign(&self, tenant: TenantId, manifest: &Manifest) -> Result<String, String>;
    /// Checks `signature` against the manifest for `tenant`.
    fn verify(&self, tenant: TenantId, manifest: &Manifest, signature: &str) -> Result<(), IntegrityFailure>;
    /// Whether this process holds the key `signature` names (false for a signature
    /// that names none).
    fn holds_key_for(&self, signature: &str) -> bool;
    /// Re-reads the keys from where they are kept, because a signature named a key this
    /// process does not hold: another replica may have rotated since the last periodic
    /// reload. True when the keys are fresher than when it was called, so that a check
    /// is worth repeating; implementations bound how often they reload, so forged key
    /// ids cannot make every request a reload.
    async fn refresh_keys(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_hash_is_the_documented_chain() {
        let a = br#"{"message":"a","role":"user"}"#;
        let b = br#"{"message":"b","role":"assistant"}"#;
        let mut step = Sha256::new();
        step.update([0u8; 32]);
        step.update(Sha256::digest(a));
        let h1: [u8; 32] = step.finalize().into();
        let mut step = Sha256::new();
        step.update(h1);
        step.update(Sha256::digest(b));
        let h2: [u8; 32] = step.finalize().into();
        let ours = HistoryHash::EMPTY.over([&a[..], &b[..]]);
        assert_eq!(ours.to_b64(), URL_SAFE_NO_PAD.encode(h2));
        assert_eq!(HistoryHash::EMPTY.then(a).then(b), ours);
        assert_ne!(HistoryHash::EMPTY.then(b).then(a), ours, "order matters");
        assert_eq!(HistoryHash::parse_b64(&ours.to_b64()), Some(ours));
    }

    #[test]
    fn metadata_digest_is_over_canonical_json() {
        let m: Map<String, Value> = serde_json::from_str(r#"{"z": 1.0, "a": {"é": [1e3, "x"]}}"#).unwrap();
        let canonical = r#"{"a":{"é":[1000,"x"]},"z":1}"#;
        assert_eq!(metadata_digest(&m), Sha256Digest::of(canonical.as_bytes()));
    }

    #[test]
    fn the_manifest_is_canonical_json_with_expires_only_when_set() {
        let head = ContextHead {
            context_id: "0b6a6a2e-4a6f-4d4e-9a3b-6f1f2f7e9c11".parse().unwrap(),
            metadata: Map::new(),
            expires: None,
            version: Version(3),
            created_at: Timestamp::parse_rfc3339("2026-01-02T03:04:05.678Z").unwrap(),
            updated_at: Timestamp::parse_rfc3339("2026-01-02T03:04:06Z").unwrap(),
            history_len: 0,
            history_bytes: 0,
        };
        let m = Manifest::new(&head, metadata_digest(&Map::new()), HistoryHash::EMPTY);
        let text = String::from_utf8(m.canonical()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"context_id\":\"0b6a6a2e-4a6f-4d4e-9a3b-6f1f2f7e9c11\",\"created_at\":\"2026-01-02T03:04:05.678Z\",\
                 \"history_len\":0,\"history_sha256\":\"{}\",\"metadata_sha256\":\"{}\",\
                 \"updated_at\":\"2026-01-02T03:04:06Z\",\"version\":3}}",
                HistoryHash::EMPTY.to_b64(),
                Sha256Digest::of(b"{}").to_b64()
            )
        );
        let jcs = serde_json_canonicalizer::to_string(&m).unwrap();
        assert_eq!(jcs, text, "plain serialization is the canonical form");
        let mut with_expiry = m.clone();
        with_expiry.expires = Some(Timestamp::parse_rfc3339("2030-05-06T07:08:09.010Z").unwrap());
        with_expiry.version = Version(i64::MAX);
        with_expiry.history_len = u64::MAX;
        let bytes = with_expiry.canonical();
        assert_eq!(bytes, serde_json_canonicalizer::to_vec(&with_expiry).unwrap());
    }
}
