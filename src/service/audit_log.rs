//! Reading the audit log (`GET /admin/audit`): an administrator reads its tenant's
//! records, the platform operator every tenant's (and the records no tenant owns, such
//! as refused credentials). Reading the log is itself recorded.

use serde::Serialize;

use super::admin::{AdminService, TenantRef};
use super::audited;
use crate::authn::Caller;
use crate::domain::audit::{Action as Audited, AuditRecord, Target};
use crate::domain::{ContextId, Error, PrincipalId, Timestamp};
use crate::store::AuditQuery;

/// Most records per page.
pub const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// Which records to read, newest first.
#[derive(Debug, Default)]
pub struct AuditFilter {
    /// A tenant (id or name); the operator's default is every tenant.
    pub tenant: Option<TenantRef>,
    pub principal: Option<PrincipalId>,
    pub action: Option<String>,
    pub context: Option<ContextId>,
    /// `allow`, `deny` or `fail`.
    pub decision: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

impl AdminService {
    pub async fn audit_records(&self, caller: &Caller, filter: AuditFilter) -> Result<AuditPage, Error> {
        let every_tenant = filter.tenant.is_none() && caller.principal.platform_admin;
        let checked = self.tenant_decided(caller, filter.tenant.as_ref()).await;
        let target = Some(Target::AuditLog);
        let tenant = audited::decided(self.audit(), caller, Audited::AuditRead, target, checked).await?;
        let query = query(filter, (!every_tenant).then(|| tenant.id.to_string()))?;
        let items = self.store().audit_query(&query).await?;
        let next_cursor =
            (items.len() == query.limit as usize).then(|| items.last().map(|r| r.seq.to_string())).flatten();
        Ok(AuditPage { items, next_cursor })
    }
}

fn query(f: AuditFilter, tenant: Option<String>) -> Result<AuditQuery, Error> {
    if let Some(d) = &f.decision
        && !matches!(d.as_str(), "allow" | "deny" | "fail")
    {
        return Err(Error::invalid("decision", "must be allow, deny or fail"));
    }
    let limit = match f.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return Err(Error::invalid("limit", format!("must be between 1 and {MAX_PAGE}"))),
    };
    let before_seq = f
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| Error::invalid("cursor", "not a cursor this server issued"))
        })
        .transpose()?;
    Ok(AuditQuery {
        tenant,
        principal: f.principal.map(|p| p.to_string()),
        action: f.action,
        target: f.context.map(|c| format!("context:{c}")),
        decision: f.decision,
        since: f.since,
        until: f.until,
        before_seq,
        limit,
    })
}
