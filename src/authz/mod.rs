//! Authorization: the one decision every HTTP and MCP operation passes through,
//! [`Authorizer::authorize`]. The effective permission (docs/policies.md) is
//! roles ∩ scopes ∩ the token's context binding, then the Cedar policy engine decides
//! with the built-in role policies plus any custom policies.
//!
//! Some rules are not policies and no policy can lift them, because they bound what a
//! *credential* or a *tenant* is, not what a role means: the tenant boundary, the
//! platform-operator actions, the credential's scopes and its context binding. They are
//! checked in code around the Cedar decision.
//!
//! Order matters for what a refused caller learns: a resource the principal may not
//! even read is *not visible* (the caller answers 404, like a missing one); a visible
//! one whose action the policies deny is `forbidden`; one the policies allow but the
//! credential's scopes do not is `insufficient_scope`, naming every scope it needs.

mod engine;
pub mod policies;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::authn::Caller;
#[cfg(test)]
use crate::domain::Principal;
use crate::domain::grant::granted_roles;
use crate::domain::{ContextAction, ContextFacts, Role, RoleSet, Scope, ScopeSet, TenantId};

pub use engine::Decision;
use engine::Engine;
pub use policies::{PolicyError, PolicyInfo};

/// Decisions remembered per policy set by default (see `engine.rs`).
pub const DEFAULT_MEMO_ENTRIES: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Create tenants, reload policies: the platform operator only (not a policy).
    ManagePlatform,
}

impl Action {
    pub const CEDAR: [Action; 8] = [
        Action::Read,
        Action::List,
        Action::Inject,
        Action::Create,
        Action::Write,
        Action::Delete,
        Action::Share,
        Action::Admin,
    ];

    pub fn required_scopes(self) -> ScopeSet {
        let scope = match self {
            Action::Read | Action::List => Scope::ContextRead,
            Action::Inject => Scope::ContextInject,
            Action::Create | Action::Write => Scope::ContextWrite,
            Action::Delete => Scope::ContextDelete,
            Action::Share => Scope::ContextShare,
            Action::Admin | Action::ManagePlatform => Scope::Admin,
        };
        [scope].into_iter().collect()
    }

    /// The Cedar action id (`Ctxguard::Action::"<name>"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Inject => "inject",
            Action::Create => "create",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Share => "share",
            Action::Admin => "admin",
            Action::ManagePlatform => "manage_platform",
        }
    }

    /// The action as a context binding names it (actions on one context only).
    pub fn on_context(self) -> Option<ContextAction> {
        Some(match self {
            Action::Read => ContextAction::Read,
            Action::Inject => ContextAction::Inject,
            Action::Write => ContextAction::Write,
            Action::Delete => ContextAction::Delete,
            Action::Share => ContextAction::Share,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    Tenant(TenantId),
    Context(&'a ContextFacts),
}

impl Resource<'_> {
    fn tenant(&self) -> TenantId {
        match self {
            Resource::Tenant(t) => *t,
            Resource::Context(c) => c.tenant,
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

impl Denial {
    /// The kind of refusal, as a fixed text (the decisions metric's label).
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::NotVisible => "not_visible",
            Denial::Forbidden(_) => "forbidden",
            Denial::InsufficientScope(_) => "insufficient_scope",
        }
    }
}

/// The loaded policies, as `GET /admin/policies` shows them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicySummary {
    /// Increases with every successful reload.
    pub generation: u64,
    pub files: Vec<String>,
    pub policies: Vec<PolicySummaryItem>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicySummaryItem {
    pub id: String,
    pub effect: &'static str,
    pub file: String,
    pub line: usize,
}

/// The policy decision point. Cheap to clone; a reload swaps the whole policy set at
/// once, so a decision sees either the old set or the new one, never a mixture.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read for every decision (a pointer copy under a lock never held across an await);
    /// written only by a reload.
    engine: RwLock<Arc<Engine>>,
    dir: Option<PathBuf>,
    memo_entries: u64,
    /// Serialises reloads so that generations are assigned in order.
    reloading: Mutex<()>,
}

impl Authorizer {
    /// The built-in policies plus those of `dir`; fails with the file and line at fault.
    pub fn load(dir: Option<PathBuf>) -> Result<Self, PolicyError> {
        Self::load_with_memo(dir, DEFAULT_MEMO_ENTRIES)
    }

    /// As [`Authorizer::load`], remembering up to `memo_entries` decisions (0: none).
    pub fn load_with_memo(dir: Option<PathBuf>, memo_entries: u64) -> Result<Self, PolicyError> {
        let loaded = policies::load(dir.as_deref())?;
        Ok(Self::with_engine(Engine::new(loaded, 1, memo_entries), dir, memo_entries))
    }

    fn with_engine(engine: Engine, dir: Option<PathBuf>, memo_entries: u64) -> Self {
        let engine = RwLock::new(Arc::new(engine));
        Self { inner: Arc::new(Inner { engine, dir, memo_entries, reloading: Mutex::new(()) }) }
    }

    /// The built-ins plus policies given as `(file name, text)` (tests).
    #[cfg(test)]
    pub(crate) fn from_sources(custom: &[(String, String)]) -> Result<Self, PolicyError> {
        let mut sources = vec![(policies::BUILTIN_FILE.to_string(), policies::BUILTIN.to_string())];
        sources.extend_from_slice(custom);
        Ok(Self::with_engine(
            Engine::new(policies::build(&sources)?, 1, DEFAULT_MEMO_ENTRIES),
            None,
            DEFAULT_MEMO_ENTRIES,
        ))
    }

    /// Only the built-in role policies (the CLI and tests).
    pub fn builtin() -> Self {
        // The built-ins are compiled in and validated by the tests; they cannot fail.
        Self::load(None).unwrap_or_else(|e| panic!("the built-in policies are invalid: {e}"))
    }

    /// Re-reads the policy directory. On any error the current set stays in force.
    pub fn reload(&self) -> Result<PolicySummary, PolicyError> {
        let _one_at_a_time = self.inner.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = policies::load(self.inner.dir.as_deref())?;
        let generation = self.engine().generation() + 1;
        let engine = Arc::new(Engine::new(loaded, generation, self.inner.memo_entries));
        *self.inner.engine.write().unwrap_or_else(|p| p.into_inner()) = engine;
        Ok(self.summary())
    }

    pub fn summary(&self) -> PolicySummary {
        self.engine().summary()
    }

    fn engine(&self) -> Arc<Engine> {
        self.inner.engine.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Decides whether `caller` may perform `action` on `resource`. On success the
    /// decision names the policies that determined it (for the audit record).
    pub fn authorize(&self, caller: &Caller, action: Action, resource: Resource<'_>) -> Result<Arc<Decision>, Denial> {
        let decided = self.decide(caller, action, resource);
        decisions::count(decided.as_ref().map(|_| ()).map_err(Denial::kind));
        decided
    }

    fn decide(&self, caller: &Caller, action: Action, resource: Resource<'_>) -> Result<Arc<Decision>, Denial> {
        let p = &caller.principal;
        if action == Action::ManagePlatform {
            if !p.platform_admin {
                return Err(Denial::Forbidden("only the platform operator may do this".into()));
            }
            check_scopes(caller, action)?;
            return Ok(Arc::new(Decision::platform_operator()));
        }
        // Context actions apply to contexts, the others to tenants (the Cedar schema's
        // `appliesTo`); a mismatch is a caller bug, and a bug must not grant anything.
        if matches!(resource, Resource::Context(_)) != action.on_context().is_some() {
            return Err(Denial::Forbidden(format!("{} does not apply to this kind of resource", action.as_str())));
        }
        let cross_tenant_admin = p.platform_admin && action == Action::Admin;
        if resource.tenant() != p.tenant && !cross_tenant_admin {
            return Err(Denial::NotVisible);
        }
        if let Some(binding) = &caller.binding {
            match resource {
                Resource::Context(c) if !binding.covers(c.id) => return Err(Denial::NotVisible),
                Resource::Tenant(_) if action != Action::List => {
                    return Err(Denial::Forbidden(format!(
                        "the token is bound to specific contexts ({binding}) and may not {}",
                        action.as_str()
                    )));
                }
                _ => {}
            }
        }
        let granted = match resource {
            Resource::Context(c) => granted_roles(&c.grants, p.id, &p.roles),
            Resource::Tenant(_) => RoleSet::default(),
        };
        let engine = self.engine();
        let decision = engine.decide(p, action, resource, &granted);
        if !decision.allowed {
            if let Resource::Context(_) = resource {
                let visible = action != Action::Read && engine.decide(p, Action::Read, resource, &granted).allowed;
                if !visible {
                    return Err(Denial::NotVisible);
                }
            }
            return Err(Denial::Forbidden(decision.refusal(action, p.roles.highest().max(granted.highest()))));
        }
        check_scopes(caller, action)?;
        if let (Some(binding), Resource::Context(c), Some(a)) = (&caller.binding, resource, action.on_context())
            && !binding.allows(c.id, a)
        {
            return Err(Denial::Forbidden(format!(
                "the token is bound to {binding}; it may not {} this context",
                a.as_str()
            )));
        }
        Ok(decision)
    }

    /// Whether `caller` may read the context (for filtering listings).
    pub fn can_read(&self, caller: &Caller, context: &ContextFacts) -> bool {
        self.authorize(caller, Action::Read, Resource::Context(context)).is_ok()
    }
}

fn check_scopes(caller: &Caller, action: Action) -> Result<(), Denial> {
    let required = action.required_scopes();
    if required.is_subset_of(&caller.scopes) { Ok(()) } else { Err(Denial::InsufficientScope(required)) }
}

/// The roles `roles` stands for, cumulative (a writer is also an injector and a reader).
fn cumulative(roles: &RoleSet) -> impl Iterator<Item = Role> + '_ {
    let top = roles.highest();
    Role::ALL.into_iter().filter(move |r| top.is_some_and(|t| *r <= t))
}

#[cfg(test)]
mod tests;

/// `ctxguard_authz_decisions_total{result}`: every decision, by what it was. The
/// handles are made once: looking a counter up by its labels on every decision would
/// cost more than most decisions.
mod decisions {
    use std::sync::OnceLock;

    use metrics::Counter;

    pub(super) fn count(result: Result<(), &'static str>) {
        static HANDLES: OnceLock<[Counter; 4]> = OnceLock::new();
        let h = HANDLES.get_or_init(|| {
            ["allow", "forbidden", "not_visible", "insufficient_scope"]
                .map(|r| metrics::counter!("ctxguard_authz_decisions_total", "result" => r))
        });
        let i = match result {
            Ok(()) => 0,
            Err("forbidden") => 1,
            Err("not_visible") => 2,
            Err(_) => 3,
        };
        h[i].increment(1);
    }
}
