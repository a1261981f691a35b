//! `ctxguard mcp-stdio`: the same tools over stdio for local MCP clients, acting as the
//! principal of the API key in `CTXGUARD_API_KEY`. Logs go to stderr; stdout carries
//! only MCP messages.

use anyhow::Context as _;
use rmcp::ServiceExt;

use super::tools::ContextTools;
use crate::authn::{Secret, authenticate_api_key};
use crate::authz::Authorizer;
use crate::config::Settings;
use crate::domain::context::ContextLimits;
use crate::server;
use crate::service::ContextService;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let key = std::env::var("CTXGUARD_API_KEY")
        .context("mcp-stdio needs an API key in CTXGUARD_API_KEY (ctxguard apikey create …)")?;
    let db = server::open_and_bootstrap(&settings).await?;
    let caller = authenticate_api_key(&*db, &Secret::new(key))
        .await
        .map_err(|e| anyhow::anyhow!("CTXGUARD_API_KEY refused: {e}"))?;
    let authz = Authorizer::load_with_memo(settings.policy_dir.clone(), settings.decision_cache_entries)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let limits = ContextLimits { max_history: settings.max_history };
    let contexts = ContextService::new(db.clone(), db.clone(), authz, limits);
    let running = ContextTools::for_caller(contexts, caller)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP stdio session failed to start: {e}"))?;
    let reason = running.waiting().await;
    db.close().await;
    tracing::info!(?reason, "MCP stdio session ended");
    Ok(())
}
