//! The admin API of anomaly response (docs/anomaly.md): what is locked out or suspended,
//! and lifting it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpError, HttpResult};
use super::extract::Authenticated;
use crate::domain::anomaly::Subject;
use crate::domain::{Error, PrincipalId};
use crate::service::anomalies::Anomalies;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_anomalies)).routes(routes!(lift_lockout)).routes(routes!(lift_suspension))
}

/// Lockouts in force and suspended principals (all of them for the platform operator;
/// the caller's tenant's principals for a tenant administrator).
#[utoipa::path(get, path = "/admin/anomalies", tag = "admin",
    responses((status = 200, body = Anomalies), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_anomalies(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<Anomalies>> {
    Ok(Json(state.inner.admin.anomalies(&caller).await?))
}

/// Lift a lockout (`ip:<address>`: platform operator only; `principal:<id>`).
#[utoipa::path(delete, path = "/admin/lockouts/{subject}", tag = "admin",
    params(("subject" = String, Path, description = "ip:<address> or principal:<id>")),
    responses((status = 204), (status = 403, body = ErrorBody),
        (status = 404, description = "No lockout in force (anything that is not a subject has none)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn lift_lockout(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(subject): Path<String>,
) -> HttpResult<StatusCode> {
    // Any text is a path; what is not a subject was never locked out.
    let subject = Subject::parse(&subject).map_err(|_| HttpError::Domain(Error::NotFound { what: "lockout" }))?;
    state.inner.admin.lift_lockout(&caller, subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a principal's suspension: its API keys work again (its revoked tokens stay
/// revoked). A principal that is not suspended stays as it is (204 all the same).
#[utoipa::path(delete, path = "/admin/principals/{id}/suspension", tag = "admin",
    params(("id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such principal", body = ErrorBody)),
    security(("bearer" = [])))]
async fn lift_suspension(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> HttpResult<StatusCode> {
    let id: PrincipalId = id.parse().map_err(|m| HttpError::Domain(Error::invalid("principal id", m)))?;
    state.inner.admin.lift_suspension(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
