//! Authorization: the one decision function every HTTP (and later MCP) request passes
//! through. Today it evaluates the built-in roles of DESIGN.md section 3 in code; the
//! Cedar engine will replace the body of [`authorize`] without changing its callers.
//!
//! The effective permission is roles ∩ scopes. Order matters for what a refused caller
//! learns: a resource the principal may not even read is *not visible* (the caller
//! answers 404, like a missing one); a visible one whose action the roles forbid is
//! `forbidden`; one the roles allow but the credential's scopes do not is
//! `insufficient_scope`, naming every scope the operation needs.

use crate::authn::Caller;
use crate::domain::{PrincipalId, Role, Scope, ScopeSet, TenantId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    List,
    Inject,
    Create,
    /// Replace or patch an existing context.
    Write,
    Delete,
    Share,
    /// The admin API of a tenant.
    Admin,
    /// Create tenants: the platform operator only.
    ManageTenants,
}

impl Action {
    pub fn required_scopes(self) -> ScopeSet {
        let scope = match self {
            Action::Read | Action::List => Scope::ContextRead,
            Action::Inject => Scope::ContextInject,
            Action::Create | Action::Write => Scope::ContextWrite,
            Action::Delete => Scope::ContextDelete,
            Action::Share => Scope::ContextShare,
            Action::Admin | Action::ManageTenants => Scope::Admin,
        };
        [scope].into_iter().collect()
    }

    /// The least role that allows the action; `own` is whether the caller owns the
    /// context (writers may change their own contexts only).
    fn minimum_role(self, own: bool) -> Role {
        match self {
            Action::Read | Action::List => Role::Reader,
            Action::Inject => Role::Injector,
            Action::Create => Role::Writer,
            Action::Write if own => Role::Writer,
            Action::Write | Action::Delete | Action::Share => Role::Maintainer,
            Action::Admin | Action::ManageTenants => Role::Admin,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Resource {
    Tenant(TenantId),
    Context { tenant: TenantId, owner: PrincipalId },
}

impl Resource {
    fn tenant(&self) -> TenantId {
        match self {
            Resource::Tenant(t) | Resource::Context { tenant: t, .. } => *t,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The caller may not know the resource exists.
    NotVisible,
    Forbidden(String),
    InsufficientScope(ScopeSet),
}

pub fn authorize(caller: &Caller, action: Action, resource: Resource) -> Result<(), Denial> {
    let p = &caller.principal;
    let platform = p.platform_admin && matches!(action, Action::Admin | Action::ManageTenants);
    if action == Action::ManageTenants && !p.platform_admin {
        return Err(Denial::Forbidden("only the platform administrator may manage tenants".into()));
    }
    if resource.tenant() != p.tenant && !platform {
        return Err(Denial::NotVisible);
    }
    if matches!(resource, Resource::Context { .. }) && !p.roles.at_least(Role::Reader) {
        return Err(Denial::NotVisible);
    }
    let own = matches!(resource, Resource::Context { owner, .. } if owner == p.id);
    let needed = action.minimum_role(own);
    if !platform && !p.roles.at_least(needed) {
        let held = p.roles.highest().map_or("no role", Role::as_str);
        return Err(Denial::Forbidden(format!(
            "this operation requires the {} role{}; the principal holds {held}",
            needed.as_str(),
            if action == Action::Write { " (writers may change only their own contexts)" } else { "" },
        )));
    }
    let required = action.required_scopes();
    if !required.iter().all(|s| caller.scopes.contains(s)) {
        return Err(Denial::InsufficientScope(required));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::test_caller as caller;

    /// Role × action table for a context of the caller's tenant owned by someone else.
    #[test]
    fn role_table_on_foreign_owned_context() {
        use Action::*;
        let expected: [(Role, &[Action]); 5] = [
            (Role::Reader, &[Read, List]),
            (Role::Injector, &[Read, List, Inject]),
            (Role::Writer, &[Read, List, Inject, Create]),
            (Role::Maintainer, &[Read, List, Inject, Create, Write, Delete, Share]),
            (Role::Admin, &[Read, List, Inject, Create, Write, Delete, Share, Admin]),
        ];
        for (role, allowed) in expected {
            let c = caller(&[role], ScopeSet::all());
            let res = Resource::Context { tenant: c.principal.tenant, owner: PrincipalId::new_random() };
            for action in [Read, List, Inject, Create, Write, Delete, Share, Admin] {
                let got = authorize(&c, action, res).is_ok();
                assert_eq!(got, allowed.contains(&action), "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn writer_may_write_own_context_only() {
        let c = caller(&[Role::Writer], ScopeSet::all());
        let own = Resource::Context { tenant: c.principal.tenant, owner: c.principal.id };
        assert!(authorize(&c, Action::Write, own).is_ok());
        assert!(matches!(authorize(&c, Action::Delete, own), Err(Denial::Forbidden(_))));
    }

    #[test]
    fn other_tenant_is_not_visible_even_to_admins() {
        let c = caller(&[Role::Admin], ScopeSet::all());
        let res = Resource::Context { tenant: TenantId::new_random(), owner: c.principal.id };
        assert_eq!(authorize(&c, Action::Read, res), Err(Denial::NotVisible));
        assert_eq!(authorize(&c, Action::Admin, Resource::Tenant(TenantId::new_random())), Err(Denial::NotVisible));
    }

    #[test]
    fn principal_without_roles_cannot_see_contexts() {
        let c = caller(&[], ScopeSet::all());
        let res = Resource::Context { tenant: c.principal.tenant, owner: PrincipalId::new_random() };
        assert_eq!(authorize(&c, Action::Read, res), Err(Denial::NotVisible));
    }

    #[test]
    fn scopes_narrow_roles() {
        let c = caller(&[Role::Admin], ScopeSet::parse("context:read").unwrap());
        let res = Resource::Context { tenant: c.principal.tenant, owner: PrincipalId::new_random() };
        assert!(authorize(&c, Action::Read, res).is_ok());
        assert_eq!(
            authorize(&c, Action::Inject, res),
            Err(Denial::InsufficientScope(ScopeSet::parse("context:inject").unwrap()))
        );
    }

    #[test]
    fn only_platform_admin_manages_tenants() {
        let mut c = caller(&[Role::Admin], ScopeSet::all());
        let t = Resource::Tenant(c.principal.tenant);
        assert!(matches!(authorize(&c, Action::ManageTenants, t), Err(Denial::Forbidden(_))));
        c.principal.platform_admin = true;
        assert!(authorize(&c, Action::ManageTenants, t).is_ok());
        assert!(authorize(&c, Action::Admin, Resource::Tenant(TenantId::new_random())).is_ok());
    }
}
