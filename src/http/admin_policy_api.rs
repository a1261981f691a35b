//! Policies (platform operator only: the policy set is shared by all tenants).
//! `GET /admin/policies` shows what is loaded; `POST /admin/policies/reload` re-reads
//! the policy directory atomically — a set that does not load leaves the old one in
//! force and answers 422 naming the file and line.

use crate::domain::audit::{Action as Audited, Target};
use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpError, HttpResult};
use super::extract::Authenticated;
use crate::authz::PolicySummary;
use crate::domain::Error;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_policies)).routes(routes!(reload_policies))
}

fn platform_only(state: &AppState, caller: &crate::authn::Caller) -> Result<(), HttpError> {
    state.inner.admin.operator_check(caller).map(|_| ()).map_err(HttpError::Domain)
}

/// The loaded policies: built-in and custom, with their ids, files and lines.
#[utoipa::path(get, path = "/admin/policies", tag = "admin",
    responses((status = 200, description = "`{generation, files, policies: [{id, effect, file, line}]}`"),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_policies(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<PolicySummary>> {
    platform_only(&state, &caller)?;
    Ok(Json(state.inner.authz.summary()))
}

/// Re-read and validate the policy directory; swap it in only if all of it is valid.
#[utoipa::path(post, path = "/admin/policies/reload", tag = "admin",
    responses((status = 200, description = "The new set"), (status = 403, body = ErrorBody),
        (status = 422, description = "The policies do not load; the old set stays", body = ErrorBody)),
    security(("bearer" = [])))]
async fn reload_policies(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<Json<PolicySummary>> {
    let authz = state.inner.authz.clone();
    let reload = async |()| {
        // Reading and validating files is blocking work: keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || authz.reload())
            .await
            .map_err(|e| Error::Store(crate::domain::StoreError::Backend(e.to_string())))?;
        match result {
            Ok(summary) => {
                tracing::info!(generation = summary.generation, policies = summary.policies.len(), "policies reloaded");
                Ok(summary)
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy reload refused; the previous policies stay in force");
                Err(Error::InvalidPolicy(e.to_string()))
            }
        }
    };
    let admin = &state.inner.admin;
    Ok(Json(admin.as_operator(&caller, Audited::PolicyReload, Target::Policies, reload).await?))
}
