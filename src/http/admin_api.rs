//! The admin API: tenants, principals, API keys.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpError, HttpResult};
use super::extract::{Authenticated, JsonBody, QueryParams};
use crate::domain::{ApiKey, ApiKeyId, Error, Principal, PrincipalId, Tenant};
use crate::service::admin::{IssuedApiKey, NewApiKey, NewPrincipal, PrincipalChange, TenantRef};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(create_principal, list_principals))
        .routes(routes!(get_principal, update_principal))
        .routes(routes!(revoke_all))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
}

fn id_param<T: std::str::FromStr<Err = String>>(raw: &str, field: &str) -> Result<T, HttpError> {
    raw.parse().map_err(|m| HttpError::Domain(Error::invalid(field, m)))
}

fn created<T: Serialize>(body: &T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
}

/// Create a tenant (platform administrator only).
#[utoipa::path(post, path = "/admin/tenants", tag = "admin", request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_tenant(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<NewTenant>,
) -> HttpResult<Response> {
    let tenant = state.inner.admin.create_tenant(&caller, &body.name).await?;
    Ok(created(&tenant))
}

/// The tenants the caller administers.
#[utoipa::path(get, path = "/admin/tenants", tag = "admin",
    responses((status = 200, body = Vec<Tenant>)), security(("bearer" = [])))]
async fn list_tenants(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<Vec<Tenant>>> {
    Ok(Json(state.inner.admin.list_tenants(&caller).await?))
}

/// Create a principal (user, agent or service) with roles.
#[utoipa::path(post, path = "/admin/principals", tag = "admin", request_body = NewPrincipal,
    responses((status = 201, body = Principal), (status = 400, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_principal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<NewPrincipal>,
) -> HttpResult<Response> {
    let p = state.inner.admin.create_principal(&caller, body).await?;
    Ok(created(&p))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TenantQuery {
    /// Tenant id or name; defaults to the caller's tenant.
    pub(super) tenant: Option<String>,
}

/// The principals of a tenant.
#[utoipa::path(get, path = "/admin/principals", tag = "admin", params(TenantQuery),
    responses((status = 200, body = Vec<Principal>), (status = 404, description = "No such tenant", body = ErrorBody)), security(("bearer" = [])))]
async fn list_principals(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<TenantQuery>,
) -> HttpResult<Json<Vec<Principal>>> {
    let tenant = q.tenant.map(TenantRef);
    Ok(Json(state.inner.admin.list_principals(&caller, tenant.as_ref()).await?))
}

/// One principal.
#[utoipa::path(get, path = "/admin/principals/{id}", tag = "admin",
    params(("id" = String, Path)), responses((status = 200, body = Principal), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_principal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> HttpResult<Json<Principal>> {
    let id: PrincipalId = id_param(&id, "principal id")?;
    Ok(Json(state.inner.admin.principal(&caller, id).await?))
}

/// Change a principal's roles or disable it.
#[utoipa::path(patch, path = "/admin/principals/{id}", tag = "admin", request_body = PrincipalChange,
    params(("id" = String, Path)), responses((status = 200, body = Principal), (status = 404, body = ErrorBody),
        (status = 409, description = "Would disable or demote the caller itself", body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_principal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
    JsonBody(change): JsonBody<PrincipalChange>,
) -> HttpResult<Json<Principal>> {
    let id: PrincipalId = id_param(&id, "principal id")?;
    Ok(Json(state.inner.admin.update_principal(&caller, id, change).await?))
}

/// Revoke every credential of a principal.
#[utoipa::path(post, path = "/admin/principals/{id}/revoke-all", tag = "admin",
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, description = "The caller's own principal (another administrator or the CLI can)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_all(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> HttpResult<StatusCode> {
    let id: PrincipalId = id_param(&id, "principal id")?;
    state.inner.admin.revoke_all(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API key. The key is in this response only.
#[utoipa::path(post, path = "/admin/api-keys", tag = "admin", request_body = NewApiKey,
    responses((status = 201, body = IssuedApiKey), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<NewApiKey>,
) -> HttpResult<Response> {
    let issued = state.inner.admin.create_api_key(&caller, body).await?;
    let mut r = created(&issued);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KeyQuery {
    /// Only this principal's keys.
    #[param(value_type = Option<String>, format = Uuid)]
    principal: Option<String>,
}

/// List API keys (never the keys themselves).
#[utoipa::path(get, path = "/admin/api-keys", tag = "admin", params(KeyQuery),
    responses((status = 200, body = Vec<ApiKey>), (status = 404, description = "No such principal", body = ErrorBody)), security(("bearer" = [])))]
async fn list_api_keys(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<KeyQuery>,
) -> HttpResult<Json<Vec<ApiKey>>> {
    let principal = q.principal.as_deref().map(|p| id_param(p, "principal")).transpose()?;
    Ok(Json(state.inner.admin.list_api_keys(&caller, principal).await?))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/admin/api-keys/{id}", tag = "admin",
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, description = "The key this request is made with", body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_api_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> HttpResult<StatusCode> {
    let id: ApiKeyId = id_param(&id, "api key id")?;
    state.inner.admin.revoke_api_key(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
