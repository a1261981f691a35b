//! Sharing a context (docs/policies.md): a principal allowed to `share` grants a
//! built-in role on one context to a principal or to everyone holding a role, within
//! the context's tenant. A grant is part of the context's head row, so the very next
//! decision on that context — on any replica — sees it.

use serde::Deserialize;

use super::context_denial;
use super::contexts::ContextService;
use crate::authn::Caller;
use crate::authz::{Action, Resource};
use crate::domain::audit::{Action as Audited, Target};
use crate::domain::grant::{MAX_GRANTS_PER_CONTEXT, granted_roles};
use crate::domain::{ContextGrant, ContextId, Error, GrantId, Grantee, Role, Timestamp};
use crate::store::RawContextRecord;

/// `POST /context/{id}/grants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// `{"principal": "<id>"}` or `{"role": "<role>"}` (everyone holding that role).
    #[schema(value_type = Object)]
    pub grantee: Grantee,
    /// reader, injector, writer or maintainer.
    #[schema(value_type = String)]
    pub role: Role,
}

impl ContextService {
    /// The grants of a context, for those who may share it.
    pub async fn grants(&self, caller: &Caller, id: ContextId) -> Result<Vec<ContextGrant>, Error> {
        let read = async {
            match self.store.get_raw(caller.principal.tenant, id).await? {
                None => Err(Error::ContextNotFound(id)),
                Some(RawContextRecord::Tombstone { facts }) => Err(self.deleted(caller, &facts)),
                Some(RawContextRecord::Live { facts, expires_at, .. }) => {
                    let decision = self
                        .authz
                        .authorize(caller, Action::Share, Resource::Context(&facts))
                        .map_err(|d| context_denial(id, d))?;
                    if expires_at.is_some_and(|e| e <= Timestamp::now()) {
                        return Err(Error::ContextExpired(id));
                    }
                    Ok((facts.grants.to_vec(), decision))
                }
            }
        };
        super::audited::decided(&self.audit, caller, Audited::GrantList, Some(Target::Context(id)), read.await).await
    }

    pub async fn grant(&self, caller: &Caller, id: ContextId, new: NewGrant) -> Result<ContextGrant, Error> {
        if new.role == Role::Admin {
            return Err(Error::invalid("role", "admin is a tenant role; grant at most maintainer on a context"));
        }
        // Decide first (visibility, `share`, expiry), so that only someone who may share
        // the context learns whether a grantee exists; decided again under the lock below.
        self.authorize_write(caller, id, Action::Share, Audited::GrantCreate).await?;
        let added = self.add_grant(caller, id, new).await;
        super::audited::outcome(&self.audit, caller, Audited::GrantCreate, Some(Target::Context(id)), added).await
    }

    async fn add_grant(&self, caller: &Caller, id: ContextId, new: NewGrant) -> Result<ContextGrant, Error> {
        if let Grantee::Principal(p) = new.grantee {
            let found = self.principals.principal(p).await?;
            if found.is_none_or(|g| g.tenant != caller.principal.tenant) {
                return Err(Error::NotFound { what: "grantee principal (in this tenant)" });
            }
        }
        let grant = ContextGrant {
            id: GrantId::new_random(),
            grantee: new.grantee,
            role: new.role,
            granted_by: caller.principal.id,
            created_at: Timestamp::now(),
        };
        let added = grant.clone();
        self.change_grants(caller, id, move |held, grants| {
            // No escalation: nobody hands out more than they hold on this context.
            if held.is_none_or(|h| added.role > h) {
                return Err(Error::Forbidden {
                    reason: format!(
                        "you may grant at most the role you hold on this context ({})",
                        held.map_or("none", Role::as_str)
                    ),
                });
            }
            if grants.iter().any(|g| g.grantee == added.grantee) {
                return Err(Error::Conflict("this grantee already has a grant on the context; revoke it first".into()));
            }
            if grants.len() >= MAX_GRANTS_PER_CONTEXT {
                return Err(Error::invalid(
                    "grants",
                    format!("a context carries at most {MAX_GRANTS_PER_CONTEXT} grants; share with a role instead"),
                ));
            }
            let mut next = grants.to_vec();
            next.push(added);
            Ok(next)
        })
        .await?;
        Ok(grant)
    }

    pub async fn revoke_grant(&self, caller: &Caller, id: ContextId, grant: GrantId) -> Result<(), Error> {
        self.authorize_write(caller, id, Action::Share, Audited::GrantDelete).await?;
        let removed = self
            .change_grants(caller, id, move |_, grants| {
                if !grants.iter().any(|g| g.id == grant) {
                    return Err(Error::NotFound { what: "grant" });
                }
                Ok(grants.iter().filter(|g| g.id != grant).cloned().collect())
            })
            .await
            .map(|_| ());
        super::audited::outcome(&self.audit, caller, Audited::GrantDelete, Some(Target::Context(id)), removed).await
    }

    /// Runs `change(role the caller holds on the context, current grants)` with the
    /// context locked, after the `share` decision and the expiry check.
    async fn change_grants(
        &self,
        caller: &Caller,
        id: ContextId,
        change: impl FnOnce(Option<Role>, &[ContextGrant]) -> Result<Vec<ContextGrant>, Error> + Send,
    ) -> Result<Vec<ContextGrant>, Error> {
        let tenant = caller.principal.tenant;
        let authz = &self.authz;
        let result = self
            .store
            .update_grants(
                tenant,
                id,
                Box::new(|facts, current| {
                    authz
                        .authorize(caller, Action::Share, Resource::Context(facts))
                        .map_err(|d| context_denial(id, d))?;
                    if current.is_expired_at(Timestamp::now()) {
                        return Err(Error::ContextExpired(id));
                    }
                    let p = &caller.principal;
                    let held = p.roles.highest().max(granted_roles(&facts.grants, p.id, &p.roles).highest());
                    change(held, &facts.grants)
                }),
            )
            .await;
        self.after_write(caller, id, result).await
    }
}
