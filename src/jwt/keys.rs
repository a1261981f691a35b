//! Token signing keys: generation (Ed25519 by default, ES256 available), sealing at rest
//! under the KEK, publication as a JWKS, and rotation.
//!
//! Rotation makes the new key current at once; the previous keys stay published (and
//! accepted) until every token they signed has expired, then they are retired. Replicas
//! reload the key set from the database every few seconds, and at once when a token or
//! a signed version names a key they do not hold ([`Keyring::refresh_for_unknown_kid`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::crypto::kek::Kek;
use crate::domain::Timestamp;
use crate::store::{OAuthStore, StoredSigningKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum, serde::Deserialize)]
pub enum KeyAlg {
    #[serde(rename = "EdDSA")]
    #[value(name = "EdDSA")]
    EdDsa,
    #[serde(rename = "ES256")]
    #[value(name = "ES256")]
    Es256,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EdDsa => "EdDSA",
            KeyAlg::Es256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "EdDSA" => Ok(Self::EdDsa),
            "ES256" => Ok(Self::Es256),
            other => bail!("unsupported signing algorithm {other:?} (EdDSA or ES256)"),
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            KeyAlg::EdDsa => Algorithm::EdDSA,
            KeyAlg::Es256 => Algorithm::ES256,
        }
    }
}

/// A usable key: signing (current key only) and verifying halves and its JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: KeyAlg,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
}

/// Generates a key pair: (PKCS#8 private key, raw public key). The public key is the
/// 32-byte Ed25519 point or the uncompressed SEC1 P-256 point, as JWS verifiers expect.
fn generate(alg: KeyAlg) -> anyhow::Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let mut seed = Zeroizing::new([0u8; 32]);
    match alg {
        KeyAlg::EdDsa => {
            rand::fill(&mut seed[..]);
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            let der = sk.to_pkcs8_der().map_err(|e| anyhow::anyhow!("PKCS#8 encoding failed: {e}"))?;
            Ok((Zeroizing::new(der.as_bytes().to_vec()), sk.verifying_key().to_bytes().to_vec()))
        }
        KeyAlg::Es256 => {
            // A random 32-byte string is a valid P-256 scalar except with negligible
            // probability; retry in that case.
            loop {
                rand::fill(&mut seed[..]);
                let Ok(sk) = p256::ecdsa::SigningKey::from_bytes(&(*seed).into()) else { continue };
                let der = sk.to_pkcs8_der().map_err(|e| anyhow::anyhow!("PKCS#8 encoding failed: {e}"))?;
                let public = sk.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                return Ok((Zeroizing::new(der.as_bytes().to_vec()), public));
            }
        }
    }
}

/// The raw public key of a PKCS#8 private key, as [`generate`] stores it.
fn public_of(alg: KeyAlg, private_der: &[u8]) -> anyhow::Result<Vec<u8>> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    Ok(match alg {
        KeyAlg::EdDsa => ed25519_dalek::SigningKey::from_pkcs8_der(private_der)
            .map_err(|e| anyhow::anyhow!("Ed25519 key: {e}"))?
            .verifying_key()
            .to_bytes()
            .to_vec(),
        KeyAlg::Es256 => p256::ecdsa::SigningKey::from_pkcs8_der(private_der)
            .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?
            .verifying_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec(),
    })
}

fn usable(stored: &StoredSigningKey, kek: &Kek) -> anyhow::Result<SigningKey> {
    let alg = KeyAlg::parse(&stored.alg)?;
    let private = kek.open(&stored.private_sealed, &stored.kid)?;
    let public = URL_SAFE_NO_PAD.decode(&stored.public_key).context("stored public key is not base64url")?;
    // The public half is stored beside the sealed private key; a row whose public key
    // was replaced would verify signatures its private key never made.
    if public_of(alg, &private)? != public {
        bail!("signing key {}: the stored public key is not the one of its private key", stored.kid);
    }
    let (encoding, decoding) = match alg {
        KeyAlg::EdDsa => (EncodingKey::from_ed_der(&private), DecodingKey::from_ed_der(&public)),
        KeyAlg::Es256 => (EncodingKey::from_ec_der(&private), DecodingKey::from_ec_der(&public)),
    };
    let mut jwk = Jwk::from_decoding_key(&decoding, Some(alg.jwt()))
        .map_err(|e| anyhow::anyhow!("cannot build the JWK of key {}: {e}", stored.kid))?;
    jwk.common.key_id = Some(stored.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match alg {
        KeyAlg::EdDsa => KeyAlgorithm::EdDSA,
        KeyAlg::Es256 => KeyAlgorithm::ES256,
    });
    Ok(SigningKey { kid: stored.kid.clone(), alg, encoding, decoding, jwk })
}

/// The keys in force at one moment.
pub struct KeySet {
    pub current: Arc<SigningKey>,
    /// Current and still-published previous keys, by kid.
    pub verifying: HashMap<String, Arc<SigningKey>>,
    /// Keys no longer published: tokens they signed have expired, but context versions
    /// they signed still verify on the server (docs/integrity.md "Keys").
    pub retired: HashMap<String, Arc<SigningKey>>,
}

impl KeySet {
    /// Any key this server holds, published or retired.
    pub fn any(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.verifying.get(kid).or_else(|| self.retired.get(kid))
    }
}

/// The status of a key, for `ctxguard keys list`.
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub status: &'static str,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_until: Option<Timestamp>,
}

pub struct Keyring {
    store: Arc<dyn OAuthStore>,
    kek: Arc<Kek>,
    set: RwLock<Arc<KeySet>>,
    /// How long a superseded key stays published: the longest token lifetime plus skew.
    retention: Duration,
    /// When the last reload asked for by [`Keyring::refresh_for_unknown_kid`] finished.
    /// Held across that reload (a cold path), so that concurrent callers share one.
    refreshed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// The least time between two reloads asked for by unknown key ids.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(200);

impl Keyring {
    /// Loads the key set, creating the first key if there is none.
    pub async fn load(
        store: Arc<dyn OAuthStore>,
        kek: Arc<Kek>,
        initial_alg: KeyAlg,
        retention: Duration,
    ) -> anyhow::Result<Keyring> {
        if store.signing_keys().await?.iter().all(|k| k.superseded_at.is_some()) {
            let now = Timestamp::now();
            Self::insert_new(&*store, &kek, initial_alg, now, retention).await?;
        }
        let set = build_set(&*store, &kek).await?;
        Ok(Keyring { store, kek, set: RwLock::new(Arc::new(set)), retention, refreshed: Default::default() })
    }

    async fn insert_new(
        store: &dyn OAuthStore,
        kek: &Kek,
        alg: KeyAlg,
        now: Timestamp,
        retention: Duration,
    ) -> anyhow::Result<String> {
        let (private, public) = generate(alg)?;
        let kid =
            format!("{}-{}", alg.as_str().to_ascii_lowercase(), &crate::crypto::token::generate("").expose()[..16]);
        let stored = StoredSigningKey {
            kid: kid.clone(),
            alg: alg.as_str().into(),
            private_sealed: kek.seal(&private, &kid)?,
            public_key: URL_SAFE_NO_PAD.encode(&public),
            created_at: now,
            superseded_at: None,
            publish_until: None,
        };
        let publish_until = now.plus_secs(retention.as_secs() as i64);
        store.rotate_signing_key(&stored, now, publish_until).await?;
        Ok(kid)
    }

    /// The current key set; cheap (an `Arc` clone), never held across an await.
    pub fn keys(&self) -> Arc<KeySet> {
        self.set.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Re-reads the keys from the database (other replicas may have rotated).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let fresh = Arc::new(build_set(&*self.store, &self.kek).await?);
        match self.set.write() {
            Ok(mut s) => *s = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        Ok(())
    }

    /// Reloads the keys because something named a key id this process does not hold:
    /// another replica may have rotated since the last periodic reload (every few
    /// seconds). True when the keys are fresher than when it was called, so that a check
    /// is worth repeating. At most one reload per [`REFRESH_AT_MOST_EVERY`], so forged
    /// key ids cannot turn every request into a database read.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let asked = std::time::Instant::now();
        let mut refreshed = self.refreshed.lock().await;
        match *refreshed {
            // Another caller reloaded while this one waited: the keys are fresh.
            Some(at) if at > asked => return true,
            Some(at) if asked.duration_since(at) < REFRESH_AT_MOST_EVERY => return false,
            _ => {}
        }
        let reloaded = match self.reload().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "reloading the signing keys for an unknown key id failed");
                false
            }
        };
        *refreshed = Some(std::time::Instant::now());
        reloaded
    }

    /// Makes a new current key; previous keys stay published for the retention period.
    pub async fn rotate(&self, alg: KeyAlg) -> anyhow::Result<String> {
        let kid = Self::insert_new(&*self.store, &self.kek, alg, Timestamp::now(), self.retention).await?;
        self.reload().await?;
        Ok(kid)
    }

    pub fn jwks(&self) -> JwkSet {
        let set = self.keys();
        let mut keys: Vec<Jwk> = set.verifying.values().map(|k| k.jwk.clone()).collect();
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        JwkSet { keys }
    }

    pub async fn list(store: &dyn OAuthStore) -> anyhow::Result<Vec<KeyInfo>> {
        let now = Timestamp::now();
        Ok(store
            .signing_keys()
            .await?
            .into_iter()
            .map(|k| KeyInfo {
                status: match (k.superseded_at, k.publish_until) {
                    (None, _) => "current",
                    (Some(_), Some(until)) if until > now => "previous",
                    _ => "retired",
                },
                kid: k.kid,
                alg: k.alg,
                created_at: k.created_at,
                published_until: k.publish_until,
            })
            .collect())
    }

    /// Every key's public half by kid, retired keys included: what verifies signatures
    /// that outlive a key's publication (audit checkpoints). Needs no KEK.
    pub async fn public_keys(store: &dyn OAuthStore) -> anyhow::Result<HashMap<String, (KeyAlg, DecodingKey)>> {
        let mut out = HashMap::new();
        for k in store.signing_keys().await? {
            let alg = KeyAlg::parse(&k.alg)?;
            let public = URL_SAFE_NO_PAD.decode(&k.public_key).context("stored public key is not base64url")?;
            let decoding = match alg {
                KeyAlg::EdDsa => DecodingKey::from_ed_der(&public),
                KeyAlg::Es256 => DecodingKey::from_ec_der(&public),
            };
            out.insert(k.kid, (alg, decoding));
        }
        Ok(out)
    }

    /// Rotates keys directly in the database (the CLI; running servers pick the new key
    /// up on their next reload).
    pub async fn rotate_offline(
        store: &dyn OAuthStore,
        kek: &Kek,
        alg: KeyAlg,
        retention: Duration,
    ) -> anyhow::Result<String> {
        Self::insert_new(store, kek, alg, Timestamp::now(), retention).await
    }
}

async fn build_set(store: &dyn OAuthStore, kek: &Kek) -> anyhow::Result<KeySet> {
    let now = Timestamp::now();
    let mut current = None;
    let mut verifying = HashMap::new();
    let mut retired = HashMap::new();
    for stored in store.signing_keys().await? {
        let live = match (stored.superseded_at, stored.publish_until) {
            (None, _) => true,
            (Some(_), Some(until)) => until > now,
            _ => false,
        };
        let key = Arc::new(usable(&stored, kek)?);
        if !live {
            retired.insert(key.kid.clone(), key);
            continue;
        }
        if stored.superseded_at.is_none() {
            current = Some(key.clone());
        }
        verifying.insert(key.kid.clone(), key);
    }
    let current = current.context("no current signing key in the database")?;
    Ok(KeySet { current, verifying, retired })
}
