//! `ctxguard context verify` (docs/integrity.md "Verifying"): checks a version's
//! signature offline, from a file or fetched by id, with a published key set or the
//! local key ring. Exit code 0 only when the signature holds.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::Value;

use super::{Common, Local, print_json};
use crate::domain::{ContextId, Version};
use crate::integrity::served::{self, Keys, VerifyingKey};

#[derive(Subcommand, Debug)]
pub enum ContextCommand {
    /// Verify a context version's signature. Give a file (a context as served; `-`
    /// for stdin) or --id; keys come from --jwks, else the --server's /oauth/jwks, else
    /// this data dir's key ring (which keeps retired keys).
    Verify {
        /// A context as GET /context/{id} served it.
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        file: Option<PathBuf>,
        /// Fetch this context (from --server, else the local database).
        #[arg(long)]
        id: Option<ContextId>,
        /// One version of it (default: the latest).
        #[arg(long, requires = "id")]
        version: Option<i64>,
        /// The server to fetch from, with the credential in CTXGUARD_API_KEY.
        #[arg(long)]
        server: Option<url::Url>,
        /// The key set to verify with (JWKS URL).
        #[arg(long)]
        jwks: Option<url::Url>,
        /// A tenant's HMAC keys (a JWKS file from `ctxguard keys hmac-export`), for
        /// versions signed with HMAC-SHA256.
        #[arg(long)]
        hmac_keys: Option<PathBuf>,
        /// An API key or access token for --server.
        #[arg(long, env = "CTXGUARD_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        #[command(flatten)]
        common: Box<Common>,
    },
}

pub async fn run(command: ContextCommand) -> anyhow::Result<()> {
    let ContextCommand::Verify { file, id, version, server, jwks, hmac_keys, api_key, common } = command;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let remote = server.is_some() || jwks.is_some();
    let local = if remote { None } else { Some(Local::open(&common).await?) };
    let ctx: Value = match (&file, id, &server) {
        (Some(path), _, _) => read_file(path)?,
        (None, Some(id), Some(server)) => {
            let path = match version {
                Some(v) => format!("context/{id}/versions/{v}"),
                None => format!("context/{id}"),
            };
            let mut req = http.get(server.join(&path)?);
            if let Some(key) = &api_key {
                req = req.bearer_auth(key);
            }
            fetch(req).await?
        }
        (None, Some(id), None) => {
            let Some(local) = &local else { bail!("--id without --server reads the local database: drop --jwks") };
            let (caller, contexts) = (&local.caller, &local.app.contexts);
            // The server-side check runs here too: a tampered row is refused.
            let read = match version {
                Some(v) => contexts.get_version(caller, id, Version(v)).await.map(|c| serde_json::to_value(&c)),
                None => contexts.get_json(caller, id).await.map(|(_, b)| serde_json::from_slice(&b)),
            };
            read.context("reading the context")??
        }
        (None, None, _) => unreachable!("clap requires a file or --id"),
    };
    let mut keys = match (&jwks, &server) {
        (Some(url), _) => jwks_keys(&http, url.clone()).await?,
        (None, Some(server)) => jwks_keys(&http, server.join("oauth/jwks")?).await?,
        (None, None) => local_keys(local.as_ref().expect("opened when not remote")).await?,
    };
    if let Some(path) = &hmac_keys {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(read_file(path)?).with_context(|| format!("{} is not a JWKS", path.display()))?;
        keys.extend(served::keys_of_jwks(&set));
    }
    if let Some(local) = local {
        local.close().await;
    }
    match served::verify(&ctx, &keys) {
        Ok(verified) => print_json(&serde_json::json!({"valid": true, "verified": verified})),
        Err(served::ServedError::Failure(crate::domain::manifest::IntegrityFailure::UnknownKey(kid))) if remote => {
            bail!(
                "the signature names key {kid}, which the key set does not publish: either not this server's, or \
                 a key retired after its publication period (docs/integrity.md \"Keys\"); the server still checks \
                 versions signed by its retired keys — run `ctxguard context verify` with its data dir"
            )
        }
        Err(e) => bail!("the signature does not verify: {e}"),
    }
}

fn read_file(path: &PathBuf) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

async fn fetch(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let res = req.send().await?;
    let status = res.status();
    let body: Value = res.json().await.context("the answer is not JSON")?;
    if !status.is_success() {
        bail!("the server answered {status}: {body}");
    }
    Ok(body)
}

async fn jwks_keys(http: &reqwest::Client, url: url::Url) -> anyhow::Result<Keys> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(fetch(http.get(url.clone())).await?).with_context(|| format!("{url} is not a JWKS"))?;
    Ok(served::keys_of_jwks(&set))
}

/// Every key of the local key ring, retired ones included.
/// Every key this data dir holds: the key ring's (retired ones too) and the tenants'
/// HMAC keys.
async fn local_keys(local: &Local) -> anyhow::Result<Keys> {
    let set = local.app.keyring.keys();
    let mut keys: Keys = set
        .verifying
        .values()
        .chain(set.retired.values())
        .map(|k| (k.kid.clone(), VerifyingKey { alg: k.alg.jwt(), key: k.decoding.clone() }))
        .collect();
    let hmac = crate::app::keys::hmac_keys(&*local.app.db, &local.app.kek, &[]).await?;
    keys.extend(hmac.verifying().map(|(kid, key)| (kid, VerifyingKey { alg: jsonwebtoken::Algorithm::HS256, key })));
    Ok(keys)
}
