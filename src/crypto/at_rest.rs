//! Encryption at rest of chosen fields (docs/encryption.md). Configured JSON pointers
//! name values inside a context's metadata or inside each history message; the store
//! keeps the row's JSON with those values replaced by `null` (so member order, and with
//! it the served bytes, survive) and beside it one sealed blob per row: XChaCha20-
//! Poly1305 over the list of `[pointer, value]` pairs, under the tenant's data key.
//!
//! The blob is authoritative: only the pointers it lists are put back, so a `null` a
//! client stored means `null`. Its associated data names the tenant, the context, the
//! row (metadata snapshot version, or history and position) and the data key, so a blob
//! moved to any other row, context or tenant does not open.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::domain::{ContextId, TenantId};

const NONCE_LEN: usize = 24;
/// The blob's format tag: `v1.<key id>.<base64url(nonce ‖ ciphertext)>`.
const FORMAT: &str = "v1";

/// Why a field could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error("sealed field blob is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed fields do not open (moved from another row, or altered)")]
    Rejected,
    #[error("sealed field {0} has no place in its row")]
    Misplaced(String),
    #[error("sealing failed")]
    Seal,
}

/// A configured pointer: into a context's metadata, or into every history message
/// (`/session/history/*/…`). Kept as the pointer within that row's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldPointer {
    Metadata(String),
    Message(String),
}

impl FromStr for FieldPointer {
    type Err = String;

    fn from_str(s: &str) -> Result<FieldPointer, String> {
        let bad = |why: &str| format!("encryption pointer {s:?}: {why}");
        let (metadata, rest) = if let Some(rest) = s.strip_prefix("/metadata") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("/session/history/*") {
            (false, rest)
        } else {
            return Err(bad("must start with /metadata/ or /session/history/*/"));
        };
        if !rest.starts_with('/') || rest.len() < 2 {
            return Err(bad("must name a member below that point"));
        }
        // Escapes are RFC 6901's: `~` only as `~0` or `~1`.
        if rest.split('/').any(|seg| seg.split('~').skip(1).any(|t| !t.starts_with(['0', '1']))) {
            return Err(bad("has a `~` that is not `~0` or `~1` (RFC 6901)"));
        }
        if rest.split('/').any(|seg| seg == "*") {
            return Err(bad("`*` stands only for the history index"));
        }
        if metadata && (rest == "/labels" || rest.starts_with("/labels/")) {
            return Err(bad("labels decide grants and stay readable"));
        }
        Ok(if metadata { FieldPointer::Metadata(rest.to_owned()) } else { FieldPointer::Message(rest.to_owned()) })
    }
}

impl fmt::Display for FieldPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPointer::Metadata(p) => write!(f, "/metadata{p}"),
            FieldPointer::Message(p) => write!(f, "/session/history/*{p}"),
        }
    }
}

/// The pointers one tenant's contexts are written with.
#[derive(Clone, Debug, Default)]
pub struct Pointers {
    pub metadata: Vec<String>,
    pub message: Vec<String>,
}

impl Pointers {
    fn add(&mut self, p: &FieldPointer) {
        let (list, p) = match p {
            FieldPointer::Metadata(p) => (&mut self.metadata, p),
            FieldPointer::Message(p) => (&mut self.message, p),
        };
        if !list.contains(p) {
            list.push(p.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.metadata.is_empty() && self.message.is_empty()
    }
}

/// Which values are sealed: global pointers, plus each tenant's own.
#[derive(Clone, Debug, Default)]
pub struct FieldPolicy {
    global: Pointers,
    tenants: HashMap<TenantId, Pointers>,
}

impl FieldPolicy {
    pub fn new(global: &[FieldPointer], tenants: &[(TenantId, Vec<FieldPointer>)]) -> FieldPolicy {
        let mut policy = FieldPolicy::default();
        global.iter().for_each(|p| policy.global.add(p));
        for (tenant, pointers) in tenants {
            let entry = policy.tenants.entry(*tenant).or_insert_with(|| policy.global.clone());
            pointers.iter().for_each(|p| entry.add(p));
        }
        policy
    }

    /// The pointers a write for `tenant` seals.
    pub fn for_tenant(&self, tenant: TenantId) -> &Pointers {
        self.tenants.get(&tenant).unwrap_or(&self.global)
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.tenants.values().all(Pointers::is_empty)
    }
}

/// A tenant's data key (zeroized when dropped, by the cipher's own `zeroize`).
pub struct DataKey {
    id: u32,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl DataKey {
    /// A fresh random key, and its bytes (to be wrapped under the KEK).
    pub fn generate(id: u32) -> (DataKey, Zeroizing<[u8; 32]>) {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::fill(&mut raw[..]);
        (DataKey::from_bytes(id, &raw[..]).expect("32 bytes"), raw)
    }

    pub fn from_bytes(id: u32, raw: &[u8]) -> Result<DataKey, AtRestError> {
        let cipher = XChaCha20Poly1305::new_from_slice(raw).map_err(|_| AtRestError::Malformed("key length"))?;
        Ok(DataKey { id, cipher })
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The row a blob belongs to, part of its associated data.
#[derive(Clone, Copy, Debug)]
pub enum Row {
    /// A metadata snapshot, by the version that wrote it.
    Metadata { version: i64 },
    /// A message, by its history (the version that started it) and position.
    Message { history: i64, position: i64 },
}

/// Where a blob is stored: its associated data is made of this and the key id.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub tenant: TenantId,
    pub context: ContextId,
    pub row: Row,
}

impl Place {
    fn aad(&self, key: u32) -> String {
        let row = match self.row {
            Row::Metadata { version } => format!("metadata {version}"),
            Row::Message { history, position } => format!("message {history} {position}"),
        };
        format!("ctxguard-fields/{FORMAT} tenant {} context {} {row} key {key}", self.tenant, self.context)
    }
}

/// Takes the values at `pointers` out of `doc` (each replaced by `null`) and returns
/// them sealed, or `None` when `doc` has none of them.
pub fn seal(doc: &mut Value, pointers: &[String], key: &DataKey, place: Place) -> Result<Option<String>, AtRestError> {
    let taken: Vec<(&str, Value)> =
        pointers.iter().filter_map(|p| doc.pointer_mut(p).map(|v| (p.as_str(), v.take()))).collect();
    if taken.is_empty() {
        return Ok(None);
    }
    let plaintext = Zeroizing::new(serde_json::to_vec(&taken).map_err(|_| AtRestError::Seal)?);
    encrypt(&plaintext, key, place).map(Some)
}

/// The id of the data key a blob was sealed under.
pub fn key_id(blob: &str) -> Result<u32, AtRestError> {
    let mut parts = blob.splitn(3, '.');
    if parts.next() != Some(FORMAT) {
        return Err(AtRestError::Malformed("unknown format"));
    }
    parts.next().and_then(|k| k.parse().ok()).ok_or(AtRestError::Malformed("key id"))
}

/// The same values sealed again in the same place under `new` (data-key rotation).
pub fn reseal(blob: &str, old: &DataKey, new: &DataKey, place: Place) -> Result<String, AtRestError> {
    let values = Zeroizing::new(decrypt(blob, old, place)?);
    encrypt(&values, new, place)
}

fn encrypt(plaintext: &[u8], key: &DataKey, place: Place) -> Result<String, AtRestError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce[..]);
    let aad = place.aad(key.id);
    let sealed = key
        .cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
        .map_err(|_| AtRestError::Seal)?;
    let mut raw = nonce.to_vec();
    raw.extend_from_slice(&sealed);
    Ok(format!("{FORMAT}.{}.{}", key.id, B64.encode(raw)))
}

fn decrypt(blob: &str, key: &DataKey, place: Place) -> Result<Vec<u8>, AtRestError> {
    if key_id(blob)? != key.id {
        return Err(AtRestError::Rejected);
    }
    let body = blob.splitn(3, '.').nth(2).ok_or(AtRestError::Malformed("no ciphertext"))?;
    let raw = B64.decode(body).map_err(|_| AtRestError::Malformed("not base64url"))?;
    if raw.len() <= NONCE_LEN {
        return Err(AtRestError::Malformed("too short"));
    }
    let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).map_err(|_| AtRestError::Malformed("nonce"))?;
    let aad = place.aad(key.id);
    key.cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: aad.as_bytes() }).map_err(|_| AtRestError::Rejected)
}

/// Puts the values sealed in `blob` back into `doc`.
pub fn open(doc: &mut Value, blob: &str, key: &DataKey, place: Place) -> Result<(), AtRestError> {
    let plaintext = Zeroizing::new(decrypt(blob, key, place)?);
    let values: Vec<(String, Value)> =
        serde_json::from_slice(&plaintext).map_err(|_| AtRestError::Malformed("sealed values"))?;
    // In reverse: a pointer sealed after one below it holds that one's `null`.
    for (pointer, value) in values.into_iter().rev() {
        *doc.pointer_mut(&pointer).ok_or(AtRestError::Misplaced(pointer.clone()))? = value;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn place(version: i64) -> Place {
        Place {
            tenant: "8f0c3a52-8c1e-4b6e-9a59-2f4a3c1f0b10".parse().unwrap(),
            context: "2d3f6d1e-0b7a-4c55-8f8e-6a1c9e2b4d70".parse().unwrap(),
            row: Row::Metadata { version },
        }
    }

    #[test]
    fn pointers_parse_and_refuse() {
        assert_eq!("/metadata/ssn".parse(), Ok(FieldPointer::Metadata("/ssn".into())));
        assert_eq!("/session/history/*/message".parse(), Ok(FieldPointer::Message("/message".into())));
        assert_eq!("/metadata/a~1b/c".parse(), Ok(FieldPointer::Metadata("/a~1b/c".into())));
        for bad in [
            "/metadata",
            "/metadata/",
            "/session/history/0/message",
            "/version",
            "metadata/x",
            "/metadata/a~2",
            "/metadata/*/x",
            "/metadata/labels",
            "/metadata/labels/0",
            "/session/history/*",
        ] {
            assert!(bad.parse::<FieldPointer>().is_err(), "{bad} is refused");
        }
        assert_eq!(FieldPointer::Message("/message".into()).to_string(), "/session/history/*/message");
    }

    #[test]
    fn sealed_values_leave_nulls_in_place_and_come_back() {
        let (key, _) = DataKey::generate(1);
        let original = json!({"a": 1, "ssn": "078-05-1120", "nested": {"card": [4, 1, 1, 1]}, "z": true});
        let mut doc = original.clone();
        let pointers = vec!["/ssn".to_owned(), "/nested/card".to_owned(), "/absent".to_owned()];
        let blob = seal(&mut doc, &pointers, &key, place(3)).unwrap().expect("values to seal");
        assert_eq!(doc, json!({"a": 1, "ssn": null, "nested": {"card": null}, "z": true}));
        assert!(!blob.contains("078") && !serde_json::to_string(&doc).unwrap().contains("078"));
        assert_eq!(key_id(&blob).unwrap(), 1);
        open(&mut doc, &blob, &key, place(3)).unwrap();
        assert_eq!(serde_json::to_string(&doc).unwrap(), serde_json::to_string(&original).unwrap(), "order kept");
        let mut none = json!({"a": 1});
        assert!(seal(&mut none, &pointers, &key, place(3)).unwrap().is_none());
    }

    #[test]
    fn a_blob_opens_only_in_its_own_place_with_its_key() {
        let (key, _) = DataKey::generate(1);
        let (other, _) = DataKey::generate(1);
        let mut doc = json!({"ssn": "secret"});
        let blob = seal(&mut doc, &["/ssn".to_owned()], &key, place(3)).unwrap().unwrap();
        let moved = [
            place(4),
            Place { tenant: "0f0c3a52-8c1e-4b6e-9a59-2f4a3c1f0b10".parse().unwrap(), ..place(3) },
            Place { context: "0d3f6d1e-0b7a-4c55-8f8e-6a1c9e2b4d70".parse().unwrap(), ..place(3) },
            Place { row: Row::Message { history: 3, position: 0 }, ..place(3) },
        ];
        for p in moved {
            assert!(matches!(open(&mut doc.clone(), &blob, &key, p), Err(AtRestError::Rejected)), "{p:?}");
        }
        assert!(matches!(open(&mut doc.clone(), &blob, &other, place(3)), Err(AtRestError::Rejected)), "other key");
        let mut flipped = blob.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(open(&mut doc.clone(), &flipped, &key, place(3)).is_err(), "altered");
        assert!(matches!(open(&mut json!({}), &blob, &key, place(3)), Err(AtRestError::Misplaced(_))));
        for junk in ["", "v2.1.AAAA", "v1.x.AAAA", "v1.1.!!", "v1.1.AAAA"] {
            assert!(open(&mut doc.clone(), junk, &key, place(3)).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_resealed_blob_opens_only_under_the_new_key() {
        let (old, _) = DataKey::generate(1);
        let (new, _) = DataKey::generate(2);
        let original = json!({"ssn": "secret", "a": 1});
        let mut doc = original.clone();
        let blob = seal(&mut doc, &["/ssn".to_owned()], &old, place(3)).unwrap().unwrap();
        let again = reseal(&blob, &old, &new, place(3)).unwrap();
        assert_eq!(key_id(&again).unwrap(), 2);
        assert!(open(&mut doc.clone(), &again, &old, place(3)).is_err());
        assert!(reseal(&blob, &old, &new, place(4)).is_err(), "only in its own place");
        open(&mut doc, &again, &new, place(3)).unwrap();
        assert_eq!(doc, original);
    }

    #[test]
    fn policy_merges_tenant_pointers_over_global() {
        let t: TenantId = "8f0c3a52-8c1e-4b6e-9a59-2f4a3c1f0b10".parse().unwrap();
        let u: TenantId = "0f0c3a52-8c1e-4b6e-9a59-2f4a3c1f0b10".parse().unwrap();
        let policy = FieldPolicy::new(
            &["/metadata/ssn".parse().unwrap()],
            &[(t, vec!["/session/history/*/message".parse().unwrap(), "/metadata/ssn".parse().unwrap()])],
        );
        assert_eq!(policy.for_tenant(t).metadata, vec!["/ssn"]);
        assert_eq!(policy.for_tenant(t).message, vec!["/message"]);
        assert!(policy.for_tenant(u).message.is_empty());
        assert!(!policy.is_empty() && FieldPolicy::default().is_empty());
    }
}
