//! Measures what signing a context version costs, part by part (docs/integrity.md,
//! docs/benchmarks.md): the metadata digest, the manifest, one signature, and one check
//! (remembered and not). Run with `cargo run --release --example sign_cost`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ctxguard::crypto::kek::Kek;
use ctxguard::domain::manifest::{HistoryHash, Manifest, VersionSigner, metadata_digest};
use ctxguard::domain::{ContextHead, ContextId, TenantId, Timestamp, Version};
use ctxguard::integrity::Signer;
use ctxguard::jwt::{KeyAlg, Keyring};
use ctxguard::store::{self, DatabaseLocation};

fn per<T>(n: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    start.elapsed() / n
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ctxguard::crypto::jwt_provider::install();
    let dir = tempfile::tempdir()?;
    let db = store::open(&DatabaseLocation::sqlite_in(dir.path())).await?;
    let kek = Arc::new(Kek::load_or_create(dir.path())?);
    let ring = Arc::new(Keyring::load(db.clone(), kek, KeyAlg::EdDsa, Duration::from_secs(3630)).await?);
    let signer = Signer::new(ring.clone());
    let metadata: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"user_id":"user-123","topic":"billing"}"#)?;
    let head = ContextHead {
        context_id: ContextId::new_random(),
        metadata: metadata.clone(),
        expires: None,
        version: Version(7),
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
        history_len: 10_000,
        history_bytes: 0,
    };
    let tenant = TenantId::new_random();
    let message = br#"{"message":"Message 0 of a support conversation about an invoice.","role":"user"}"#;
    let n = 20_000;
    println!("metadata digest (2 members): {:?}", per(n, || metadata_digest(&metadata)));
    println!("history hash, one message:   {:?}", per(n, || HistoryHash::EMPTY.then(message)));
    let manifest = Manifest::new(&head, metadata_digest(&metadata), HistoryHash::EMPTY.then(message));
    println!("manifest canonical JSON:     {:?}", per(n, || manifest.canonical()));
    println!("sign:                        {:?}", per(n, || signer.sign(tenant, &manifest).unwrap()));
    let signature = signer.sign(tenant, &manifest).unwrap();
    println!("check, remembered:           {:?}", per(n, || signer.verify(tenant, &manifest, &signature)));
    let fresh = per(200, || Signer::new(ring.clone()));
    let first = per(200, || Signer::new(ring.clone()).verify(tenant, &manifest, &signature));
    println!("check, first time:           {:?} (less {fresh:?} to make the memo)", first.saturating_sub(fresh));
    // A tenant configured for HMAC-SHA256 (docs/integrity.md "HMAC signatures").
    let mut keys = ctxguard::integrity::HmacKeys::default();
    keys.add(tenant, 1, zeroize::Zeroizing::new(vec![7u8; 32]));
    keys.sign_with_newest(tenant);
    signer.use_hmac(keys);
    println!("sign, HMAC-SHA256:           {:?}", per(n, || signer.sign(tenant, &manifest).unwrap()));
    Ok(())
}
