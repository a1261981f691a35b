//! Operations and discovery: health, readiness, metrics, the OpenAPI document and
//! the RFC 9728 protected resource metadata.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::domain::ScopeSet;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(protected_resource_metadata))
        .routes(routes!(mcp_resource_metadata))
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503)))]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.inner.db.ping().await {
        Ok(()) => Json(json!({"status": "ready", "database": state.inner.db.backend()})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": state.inner.db.backend()})),
            )
                .into_response()
        }
    }
}

/// The Prometheus listener's router: `/metrics` and nothing else. It runs on its own
/// address (`metrics_bind`, loopback by default), never on the public listener: the
/// series count requests per route and status, admin activity, security incidents and
/// tokens issued — an outsider should not read them.
pub fn metrics_router(handle: metrics_exporter_prometheus::PrometheusHandle) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()) }
        }),
    )
}

/// RFC 9728 protected resource metadata for the context API.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<&'static str>,
    bearer_methods_supported: Vec<&'static str>,
    resource_name: &'static str,
    resource_documentation: String,
}

#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", tag = "operations",
    responses((status = 200, body = ResourceMetadata)))]
async fn protected_resource_metadata(State(state): State<AppState>) -> Json<ResourceMetadata> {
    let base = &state.inner.public_url;
    Json(resource_metadata(&state, base.clone(), "ctxguard context API"))
}

/// RFC 9728 protected resource metadata for the MCP endpoint (resource `<base>/mcp`).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/mcp", tag = "operations",
    responses((status = 200, body = ResourceMetadata)))]
async fn mcp_resource_metadata(State(state): State<AppState>) -> Json<ResourceMetadata> {
    let resource = super::mcp::resource(&state.inner.public_url);
    let mut doc = resource_metadata(&state, resource, "ctxguard MCP server");
    // The MCP tools need no admin and no sharing: clients that request every advertised
    // scope should not ask for powers they cannot use here.
    doc.scopes_supported.retain(|s| *s != "admin" && *s != "context:share");
    Json(doc)
}

fn resource_metadata(state: &AppState, resource: String, name: &'static str) -> ResourceMetadata {
    let mut scopes: Vec<&'static str> = ScopeSet::all().iter().map(|s| s.as_str()).collect();
    scopes.extend(["mcp:read", "mcp:write"]);
    ResourceMetadata {
        resource,
        authorization_servers: vec![state.inner.oauth.issuer().to_string()],
        scopes_supported: scopes,
        bearer_methods_supported: vec!["header"],
        resource_name: name,
        resource_documentation: format!("{}/openapi.json", state.inner.public_url),
    }
}
