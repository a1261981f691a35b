//! Sharing (docs/policies.md): `/context/{id}/grants`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpResult};
use super::extract::{Authenticated, ContextIdPath, GrantPath, JsonBody};
use crate::service::grants::NewGrant;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_grant, list_grants)).routes(routes!(revoke_grant))
}

/// Share a context: grant a role on it to a principal or to everyone holding a role.
#[utoipa::path(post, path = "/context/{id}/grants", tag = "sharing", request_body = NewGrant,
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses(
        (status = 201, description = "The grant"),
        (status = 400, description = "Bad grantee or role", body = ErrorBody),
        (status = 403, description = "May not share, or may not grant that role", body = ErrorBody),
        (status = 404, description = "Missing or not visible", body = ErrorBody),
        (status = 409, description = "The grantee already has a grant", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn create_grant(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
    JsonBody(new): JsonBody<NewGrant>,
) -> HttpResult<Response> {
    let grant = state.inner.contexts.grant(&caller, id, new).await?;
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

/// The grants of a context.
#[utoipa::path(get, path = "/context/{id}/grants", tag = "sharing",
    params(("id" = String, Path, description = "Context id (UUID)")),
    responses((status = 200, description = "`{items: [grant]}`"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_grants(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ContextIdPath(id): ContextIdPath,
) -> HttpResult<Response> {
    let grants = state.inner.contexts.grants(&caller, id).await?;
    Ok(Json(json!({ "items": grants })).into_response())
}

/// Revoke a grant.
#[utoipa::path(delete, path = "/context/{id}/grants/{grant_id}", tag = "sharing",
    params(("id" = String, Path, description = "Context id"), ("grant_id" = String, Path, description = "Grant id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_grant(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    GrantPath(id, grant): GrantPath,
) -> HttpResult<StatusCode> {
    state.inner.contexts.revoke_grant(&caller, id, grant).await?;
    Ok(StatusCode::NO_CONTENT)
}
