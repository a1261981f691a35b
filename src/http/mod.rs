//! HTTP: the router, its state and middleware. Handlers parse input, call one service
//! method and map the result; `error.rs` is the only place statuses are chosen.

pub mod admin_anomaly_api;
pub mod admin_api;
pub mod admin_audit_api;
pub mod admin_oauth_api;
pub mod admin_policy_api;
pub mod context_api;
pub mod error;
pub mod extract;
pub mod grants_api;
pub mod history_api;
pub mod inline_api;
pub mod json;
pub mod mcp;
mod mcp_fast;
pub mod middleware;
pub mod oauth;
pub mod openapi;
mod openapi_complete;
pub mod ops;
pub mod rate_limit;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::authn::Authenticator;
use crate::oauth::AuthServer;
use crate::oauth::clients::ClientService;
use crate::service::{AdminService, ContextService};
use crate::store::Database;
use error::HttpError;
pub use json::BodyLimits;

/// Everything a handler may need; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<AppInner>,
}

pub struct AppInner {
    pub contexts: ContextService,
    pub admin: AdminService,
    pub clients: ClientService,
    /// The policy decision point (also held by the services); reloads go through here.
    pub authz: crate::authz::Authorizer,
    pub oauth: Arc<AuthServer>,
    pub authn: Authenticator,
    pub db: Arc<dyn Database>,
    /// Base URL used in metadata, `Location` and challenges; no trailing slash.
    pub public_url: String,
    pub body_limits: BodyLimits,
    pub metrics: PrometheusHandle,
    pub openapi_json: String,
    /// Turns true when the server starts shutting down: long-lived streams (MCP
    /// subscriptions) then end gracefully, so that the shutdown does not wait on them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Plain stateless MCP calls are answered without rmcp's per-request machinery.
    pub mcp_fast_path: bool,
    /// The audit writer, for records made at the edge (MCP scope refusals, admin reads).
    pub audit: crate::audit::Audit,
    /// Per-address and per-principal rate limits by route class.
    pub rate_limits: Arc<rate_limit::RateLimits>,
}

/// The routes and their OpenAPI description, from one source.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(context_api::routes())
        .merge(inline_api::routes())
        .merge(grants_api::routes())
        .merge(admin_api::routes())
        .merge(admin_audit_api::routes())
        .merge(admin_anomaly_api::routes())
        .merge(admin_oauth_api::routes())
        .merge(admin_policy_api::routes())
        .merge(ops::routes())
        .split_for_parts()
}

pub fn openapi_json() -> String {
    let mut doc = serde_json::to_value(api().1).unwrap_or_default();
    openapi_complete::complete(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
}

pub fn router(state: AppState, request_timeout: Duration) -> anyhow::Result<Router> {
    let (routes, _) = api();
    let openapi = state.inner.openapi_json.clone();
    let mcp_edge = mcp::McpEdge::new(&state)?;
    let mcp = Router::new()
        .route(mcp::PATH, mcp::routed(mcp::service(&mcp_edge)))
        .layer(axum::middleware::from_fn_with_state(mcp_edge, mcp::guard));
    // Request/response endpoints get a deadline; MCP's SSE streams are long-lived by
    // design and are bounded by rmcp's keep-alive and session handling instead.
    let timed = routes
        .merge(oauth::routes())
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }),
        )
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout));
    Ok(timed
        .merge(mcp)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .fallback(middleware::route_not_found)
        // Request ids, the request span, sensitive headers, metrics, the access line,
        // security headers and challenges: one middleware (each layer costs on every request).
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::response_policy))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            HttpError::Internal.into_response()
        }))
        .with_state(state))
}
