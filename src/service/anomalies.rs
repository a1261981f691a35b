//! The administrator's side of anomaly response (docs/anomaly.md): what is locked out
//! or suspended now, and lifting it. Address lockouts belong to the platform operator
//! (an address is not in any tenant); a tenant's administrators see and lift their
//! own principals' lockouts and suspensions.

use serde::Serialize;

use super::AdminService;
use crate::authn::Caller;
use crate::authz::{Action, Resource};
use crate::domain::anomaly::{Lockout, Subject};
use crate::domain::audit::{Action as Audited, Target};
use crate::domain::{Error, PrincipalId, TenantId, Timestamp};

/// `GET /admin/anomalies`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Anomalies {
    /// Lockouts in force.
    pub lockouts: Vec<Lockout>,
    pub suspensions: Vec<SuspendedPrincipal>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuspendedPrincipal {
    pub principal: PrincipalId,
    pub tenant: TenantId,
    /// `kind:name`.
    pub name: String,
    pub since: Timestamp,
    pub reason: String,
}

impl AdminService {
    /// Lockouts in force and suspended principals: everything for the operator; the
    /// caller's tenant's principals for a tenant administrator.
    pub async fn anomalies(&self, caller: &Caller) -> Result<Anomalies, Error> {
        let tenant = if caller.principal.platform_admin {
            self.operator_check(caller)?;
            None
        } else {
            self.authorizer()
                .authorize(caller, Action::Admin, Resource::Tenant(caller.principal.tenant))
                .map_err(|d| super::denial_error(d, "tenant"))?;
            Some(caller.principal.tenant)
        };
        let lockouts = self.store().active_lockouts(Timestamp::now(), tenant).await?;
        let suspensions = self
            .store()
            .suspended_principals(tenant)
            .await?
            .into_iter()
            .filter_map(|p| {
                let s = p.suspension?;
                Some(SuspendedPrincipal {
                    principal: p.id,
                    tenant: p.tenant,
                    name: format!("{}:{}", p.kind.as_str(), p.name),
                    since: s.since,
                    reason: s.reason,
                })
            })
            .collect();
        Ok(Anomalies { lockouts, suspensions })
    }

    /// Lifts a lockout in force (404 if there is none) and forgets its strikes.
    pub async fn lift_lockout(&self, caller: &Caller, subject: Subject) -> Result<(), Error> {
        let checked = async {
            let decision = match subject {
                Subject::Source(_) => self.operator_check(caller)?,
                Subject::Principal(id) => self.managed_decided(caller, id).await?.1,
            };
            let active = self.store().lockout(&subject).await?.is_some_and(|l| l.is_active_at(Timestamp::now()));
            if !active {
                return Err(Error::NotFound { what: "lockout" });
            }
            Ok(((), decision))
        };
        let checked = checked.await;
        self.audited(caller, Audited::AnomalyLift, Target::Subject(subject), checked, async |()| {
            self.store().lift_lockout(&subject, Timestamp::now()).await?;
            self.guard().forget(&subject);
            Ok(())
        })
        .await
    }

    /// Lifts a principal's suspension: its API keys work again; the tokens revoked with
    /// the suspension stay revoked. Lifting what is not suspended changes nothing and is
    /// not an error (like revoking twice).
    pub async fn lift_suspension(&self, caller: &Caller, id: PrincipalId) -> Result<(), Error> {
        let checked = self.managed_decided(caller, id).await.map(|(_, d)| ((), d));
        self.audited(caller, Audited::AnomalyLift, Target::Principal(id), checked, async |()| {
            self.store().lift_suspension(id).await?;
            Ok(())
        })
        .await
    }
}
