//! `GET /admin/audit`: the audit log, filtered, newest first, in pages (docs/audit.md).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ErrorBody, HttpError, HttpResult};
use super::extract::{Authenticated, QueryParams};
use crate::domain::{Error, Timestamp};
use crate::service::admin::TenantRef;
use crate::service::audit_log::{AuditFilter, AuditPage};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read_audit))
}

/// A record's decision.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Allow,
    Deny,
    Fail,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// A tenant id or name (the platform operator; others read their own tenant).
    tenant: Option<String>,
    /// The acting principal's id.
    #[param(format = Uuid)]
    principal: Option<String>,
    /// e.g. `context.append`, `authn.failure`, `token.issue`.
    action: Option<String>,
    /// Records about this context.
    #[param(format = Uuid)]
    context: Option<String>,
    #[param(inline)]
    decision: Option<Decision>,
    /// RFC 3339; records at or after.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; records before.
    #[param(format = DateTime)]
    until: Option<String>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Read the audit log, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such tenant, or not one the caller administers", body = ErrorBody)),
    security(("bearer" = [])))]
async fn read_audit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    QueryParams(q): QueryParams<AuditParams>,
) -> HttpResult<Json<AuditPage>> {
    let time = |field: &str, v: Option<String>| {
        v.map(|s| Timestamp::parse_rfc3339(&s).map_err(|m| HttpError::Domain(Error::invalid(field, m)))).transpose()
    };
    let filter = AuditFilter {
        tenant: q.tenant.map(TenantRef),
        principal: parsed("principal", q.principal)?,
        action: q.action,
        context: parsed("context", q.context)?,
        decision: q.decision.map(|d| {
            match d {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
                Decision::Fail => "fail",
            }
            .to_string()
        }),
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(state.inner.admin.audit_records(&caller, filter).await?))
}

fn parsed<T: std::str::FromStr<Err = String>>(field: &str, v: Option<String>) -> Result<Option<T>, HttpError> {
    v.map(|s| s.parse().map_err(|m: String| HttpError::Domain(Error::invalid(field, m)))).transpose()
}
