//! Signed checkpoints (docs/audit.md): every `audit_checkpoint_records` records or
//! `audit_checkpoint_secs` seconds, the writer signs "the chain reached record `seq`
//! with hash `hash`" with the signing key ring's current key. A chain whose tail was
//! cut off, or rewritten and re-hashed from some record on, still contradicts the
//! checkpoints made before: nobody without the private key can make new ones.
//!
//! A checkpoint is a compact JWS (RFC 7515) with `typ` [`TYP`] and the claims
//! `{"seq", "hash", "iat"}`, verifiable against `/oauth/jwks` — or, once the key is
//! retired, against its public key, which the database keeps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;
use crate::domain::audit::Checkpoint;
use crate::jwt::{KeyAlg, Keyring};
use crate::store::{AuditStore, OAuthStore};

pub const TYP: &str = "audit-checkpoint+jwt";

/// When the writer makes a checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub every: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    seq: i64,
    hash: String,
    iat: i64,
}

/// Signs a checkpoint of record `seq` (whose hash is `hash`) with the current key.
pub fn sign(keyring: &Keyring, seq: i64, hash: &str) -> anyhow::Result<Checkpoint> {
    let now = Timestamp::now();
    let keys = keyring.keys();
    let key = &keys.current;
    let mut header = Header::new(key.alg.jwt());
    header.typ = Some(TYP.into());
    header.kid = Some(key.kid.clone());
    let claims = Claims { seq, hash: hash.to_string(), iat: now.millis() / 1000 };
    let signature = jsonwebtoken::encode(&header, &claims, &key.encoding).context("signing an audit checkpoint")?;
    Ok(Checkpoint { seq, hash: hash.to_string(), time_ms: now.millis(), kid: key.kid.clone(), signature })
}

/// What the writer keeps between batches: how much of the chain is not yet covered by
/// a checkpoint, and since when.
pub(super) struct Checkpointer {
    keyring: std::sync::Arc<Keyring>,
    policy: CheckpointPolicy,
    uncovered: u64,
    since: Instant,
    tail: Option<(i64, String)>,
}

impl Checkpointer {
    pub(super) fn new(keyring: std::sync::Arc<Keyring>, policy: CheckpointPolicy) -> Self {
        Self { keyring, policy, uncovered: 0, since: Instant::now(), tail: None }
    }

    /// How long until records written but not covered are due a checkpoint.
    pub(super) fn due_in(&self) -> Option<Duration> {
        (self.uncovered > 0).then(|| self.policy.every.saturating_sub(self.since.elapsed()))
    }

    /// `n` records were committed, the last being `tail`.
    pub(super) async fn committed(&mut self, store: &dyn AuditStore, n: u64, tail: (i64, String)) {
        if self.uncovered == 0 {
            self.since = Instant::now();
        }
        self.uncovered += n;
        self.tail = Some(tail);
        if self.uncovered >= self.policy.every_records {
            self.checkpoint(store).await;
        }
    }

    /// Signs and stores a checkpoint of the last committed record, if any is uncovered.
    pub(super) async fn checkpoint(&mut self, store: &dyn AuditStore) {
        let Some((seq, hash)) = self.tail.clone().filter(|_| self.uncovered > 0) else { return };
        let made = match sign(&self.keyring, seq, &hash) {
            Ok(c) => store.add_audit_checkpoint(&c).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match made {
            Ok(()) => {
                self.uncovered = 0;
                metrics::gauge!("ctxguard_audit_checkpoint_seq").set(seq as f64);
                metrics::gauge!("ctxguard_audit_checkpoint_timestamp_seconds")
                    .set(Timestamp::now().millis() as f64 / 1000.0);
            }
            // Tried again after the next batch; verification meanwhile relies on the
            // earlier checkpoints.
            Err(e) => tracing::error!(error = %e, seq, "an audit checkpoint could not be made"),
        }
    }
}

/// The public keys checkpoints are verified with: every key the ring ever had.
pub struct CheckpointKeys {
    keys: HashMap<String, (KeyAlg, DecodingKey)>,
}

impl CheckpointKeys {
    pub async fn load(store: &dyn OAuthStore) -> anyhow::Result<Self> {
        Ok(Self { keys: Keyring::public_keys(store).await? })
    }

    /// Whether `c` is a checkpoint our keys signed, of exactly this record and hash.
    pub fn check(&self, c: &Checkpoint) -> Result<(), String> {
        let header = jsonwebtoken::decode_header(&c.signature).map_err(|e| format!("not a JWS: {e}"))?;
        if header.typ.as_deref() != Some(TYP) {
            return Err("not an audit checkpoint (typ)".into());
        }
        let kid = header.kid.as_deref().ok_or("names no key")?;
        let (alg, key) = self.keys.get(kid).ok_or_else(|| format!("signed by unknown key {kid:?}"))?;
        let mut validation = Validation::new(alg.jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(&c.signature, key, &validation)
            .map_err(|e| format!("bad signature: {e}"))?
            .claims;
        if claims.seq != c.seq || claims.hash != c.hash || kid != c.kid {
            return Err("the signed statement is not the stored one".into());
        }
        Ok(())
    }
}
