//! Admin API for the authorization server: OAuth clients (per tenant) and signing keys
//! (platform operator only: keys are shared by all tenants).

use crate::domain::audit::{Action as Audited, Target};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::admin_api::TenantQuery;
use super::error::{ErrorBody, HttpError, HttpResult};
use super::extract::{Authenticated, JsonBody, QueryParams};
use crate::domain::{ClientId, Error, OAuthClient};
use crate::jwt::{KeyAlg, Keyring};
use crate::oauth::clients::{NewClient, RegisteredClient};
use crate::service::admin::TenantRef;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_client, list_clients))
        .routes(routes!(delete_client))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
}

/// Register an OAuth client. The secret (confidential clients) is in this response only.
#[utoipa::path(post, path = "/admin/clients", tag = "admin", request_body = NewClient,
    responses((status = 201, body = RegisteredClient), (status = 400, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "A client_credentials client's service principal (client:<name>) exists", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_client(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<NewClient>,
) -> HttpResult<Response> {
    let registered = state.inner.clients.create(&caller, body).await?;
    let mut r = (StatusCode::CREATED, Json(registered)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The OAuth clients of a tenant.
#[utoipa::path(get, path = "/admin/clients", tag = "admin", params(TenantQuery),
    responses((status = 200, body = Vec<OAuthClient>), (status = 404, description = "No such tenant", body = ErrorBody)), security(("bearer" = [])))]
async fn list_clients(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<TenantQuery>,
) -> HttpResult<Json<Vec<OAuthClient>>> {
    let tenant = q.tenant.map(TenantRef);
    Ok(Json(state.inner.clients.list(&caller, tenant.as_ref()).await?))
}

/// Disable a client and revoke its tokens.
#[utoipa::path(delete, path = "/admin/clients/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn delete_client(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> HttpResult<StatusCode> {
    state.inner.clients.delete(&caller, &ClientId::new(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn platform_only(state: &AppState, caller: &crate::authn::Caller) -> Result<(), HttpError> {
    state.inner.admin.operator_check(caller).map(|_| ()).map_err(HttpError::from)
}

/// Signing keys and their status (current, previous, retired).
#[utoipa::path(get, path = "/admin/keys", tag = "admin", responses((status = 200)), security(("bearer" = [])))]
async fn list_keys(State(state): State<AppState>, Authenticated(caller): Authenticated) -> HttpResult<Response> {
    platform_only(&state, &caller)?;
    let keys = Keyring::list(&*state.inner.db).await.map_err(|_| HttpError::Internal)?;
    Ok(Json(keys).into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// EdDSA (default) or ES256.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    alg: Option<KeyAlg>,
}

/// Make a new current signing key; previous keys stay published until their tokens expire.
#[utoipa::path(post, path = "/admin/keys/rotate", tag = "admin", request_body = Rotate,
    responses((status = 200)), security(("bearer" = [])))]
async fn rotate_keys(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<Rotate>,
) -> HttpResult<Response> {
    let keyring = state.inner.oauth.tokens().keyring();
    let alg = body.alg.unwrap_or(keyring.keys().current.alg);
    let rotate = async |()| {
        keyring.rotate(alg).await.map_err(|e| {
            tracing::error!(error = %e, "key rotation failed");
            Error::Store(crate::domain::StoreError::Backend(format!("key rotation failed: {e}")))
        })
    };
    let kid = state.inner.admin.as_operator(&caller, Audited::KeysRotate, Target::SigningKeys, rotate).await?;
    Ok(Json(serde_json::json!({"kid": kid, "alg": alg.as_str()})).into_response())
}
