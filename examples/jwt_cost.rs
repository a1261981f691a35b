//! Measures the cost of issuing and of verifying one access token (signature and claim
//! checks only, no database), for each signing algorithm. Run with
//! `cargo run --release --example jwt_cost`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ctxguard::crypto::kek::Kek;
use ctxguard::domain::{PrincipalId, ScopeSet, TenantId};
use ctxguard::jwt::{AccessTokens, Grant};
use ctxguard::jwt::{KeyAlg, Keyring};
use ctxguard::store::{self, DatabaseLocation};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = store::open(&DatabaseLocation::sqlite_in(dir.path())).await?;
    for alg in [KeyAlg::EdDsa, KeyAlg::Es256] {
        let kek = Arc::new(Kek::load_or_create(dir.path())?);
        let ring = Arc::new(Keyring::load(db.clone(), kek, alg, Duration::from_secs(3630)).await?);
        ring.rotate(alg).await?;
        let tokens = AccessTokens::new(ring, "https://ctx.example".into(), Duration::from_secs(300));
        let grant = Grant {
            principal: PrincipalId::new_random(),
            tenant: TenantId::new_random(),
            client_id: "ctxc_bench",
            scopes: ScopeSet::all(),
            audience: "https://ctx.example",
            binding: None,
            delegation: None,
        };
        let n = 20_000;
        let start = Instant::now();
        let mut token = String::new();
        for _ in 0..n {
            token = tokens.issue(&grant)?.0;
        }
        let issue = start.elapsed() / n;
        let start = Instant::now();
        for _ in 0..n {
            tokens.verify(&token, Some("https://ctx.example")).map_err(anyhow::Error::msg)?;
        }
        let verify = start.elapsed() / n;
        println!("{:>6}: issue {:>6.1} µs/token, verify {:>6.1} µs/token", alg.as_str(), micros(issue), micros(verify));
    }
    db.close().await;
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
