//! `ctxguard mcp-stdio`: the same tools over stdio for local MCP clients, acting as the
//! principal of the API key in `CTXGUARD_API_KEY`. Logs go to stderr; stdout carries
//! only MCP messages.

use anyhow::Context as _;
use rmcp::ServiceExt;

use std::sync::Arc;

use super::App;
use crate::authn::{Caller, authenticate_api_key};
use crate::config::Settings;
use crate::crypto::Secret;
use crate::mcp::stream::StreamAuthority;
use crate::mcp::tools::ContextTools;
use crate::store::Database;

/// Over stdio the key is checked again for every notification: a key revoked (or a
/// principal disabled) while the client is connected stops its streams.
struct KeyAuthority {
    db: Arc<dyn Database>,
    key: Secret,
}

#[async_trait::async_trait]
impl StreamAuthority for KeyAuthority {
    async fn current(&self) -> Option<Caller> {
        authenticate_api_key(&*self.db, &self.key).await.ok()
    }

    async fn end(&self) {
        tracing::warn!("CTXGUARD_API_KEY no longer authenticates; resource notifications stopped");
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let key = std::env::var("CTXGUARD_API_KEY")
        .context("mcp-stdio needs an API key in CTXGUARD_API_KEY (ctxguard apikey create …)")?;
    let app = App::open(settings).await?;
    let mut caller = authenticate_api_key(&*app.db, &Secret::new(key.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("CTXGUARD_API_KEY refused: {e}"))?;
    caller.request.channel = crate::domain::audit::Channel::Stdio("");
    let authority = Arc::new(KeyAuthority { db: app.db.clone(), key: Secret::new(key) });
    let running = ContextTools::for_caller(app.contexts.clone(), caller, authority)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP stdio session failed to start: {e}"))?;
    let reason = running.waiting().await;
    app.close().await;
    tracing::info!(?reason, "MCP stdio session ended");
    Ok(())
}
