//! `ctxguard mcp-stdio`: the same tools over stdio for local MCP clients, acting as the
//! principal of the API key in `CTXGUARD_API_KEY`. Logs go to stderr; stdout carries
//! only MCP messages.

use anyhow::Context as _;
use rmcp::ServiceExt;

use super::App;
use crate::authn::authenticate_api_key;
use crate::config::Settings;
use crate::crypto::Secret;
use crate::mcp::tools::ContextTools;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let key = std::env::var("CTXGUARD_API_KEY")
        .context("mcp-stdio needs an API key in CTXGUARD_API_KEY (ctxguard apikey create …)")?;
    let app = App::open(settings).await?;
    let caller = authenticate_api_key(&*app.db, &Secret::new(key))
        .await
        .map_err(|e| anyhow::anyhow!("CTXGUARD_API_KEY refused: {e}"))?;
    let running = ContextTools::for_caller(app.contexts.clone(), caller)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP stdio session failed to start: {e}"))?;
    let reason = running.waiting().await;
    app.close().await;
    tracing::info!(?reason, "MCP stdio session ended");
    Ok(())
}
