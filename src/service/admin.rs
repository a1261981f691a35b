//! The admin use cases: tenants, principals and API keys.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{audited, denial_error};
use crate::anomaly::Guard;
use crate::audit::Audit;
use crate::authn::{Caller, CredentialRef, api_key, password};
use crate::authz::{Action, Authorizer, Decision, Resource};
use crate::crypto::Secret;
use crate::domain::audit::{Action as Audited, Target};
use crate::domain::{
    ApiKey, ApiKeyId, Error, Principal, PrincipalId, PrincipalKind, Role, RoleSet, ScopeSet, StoreError, Tenant,
    TenantId, Timestamp,
};
use crate::store::Database;

/// A tenant named either by id or by name.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct TenantRef(pub String);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    /// Defaults to the caller's tenant.
    #[serde(default)]
    pub tenant: Option<TenantRef>,
    pub kind: PrincipalKind,
    pub name: String,
    #[serde(default)]
    pub roles: RoleSet,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalChange {
    #[serde(default)]
    pub roles: Option<RoleSet>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub principal: PrincipalId,
    #[serde(default)]
    pub scopes: Option<ScopeSet>,
    /// Lifetime in seconds; none means no expiry.
    #[serde(default, deserialize_with = "crate::domain::time::whole_number")]
    pub expires_in: Option<u64>,
}

/// A freshly created key: the only moment the secret exists outside the caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedApiKey {
    #[serde(flatten)]
    pub record: ApiKey,
    pub key: String,
}

/// Ten years: an upper bound that keeps timestamp arithmetic far from overflow.
const MAX_KEY_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn Database>,
    authz: Authorizer,
    audit: Audit,
    guard: Guard,
}

impl AdminService {
    pub fn new(store: Arc<dyn Database>, authz: Authorizer, audit: Audit, guard: Guard) -> Self {
        Self { store, authz, audit, guard }
    }

    /// Runs an administrative change: its authorization (`checked`) recorded — and,
    /// when allowed, committed to the audit log — before `change` runs; a failure of
    /// the change recorded too.
    pub(crate) async fn audited<T, C>(
        &self,
        caller: &Caller,
        action: Audited,
        target: Target,
        checked: Result<(C, Arc<Decision>), Error>,
        change: impl AsyncFnOnce(C) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let checked = audited::decided(&self.audit, caller, action, Some(target.clone()), checked).await?;
        let result = change(checked).await;
        audited::outcome(&self.audit, caller, action, Some(target), result).await
    }

    pub fn authorizer(&self) -> &Authorizer {
        &self.authz
    }

    pub(super) fn audit(&self) -> &Audit {
        &self.audit
    }

    pub(super) fn guard(&self) -> &Guard {
        &self.guard
    }

    pub(super) fn store(&self) -> &dyn Database {
        &*self.store
    }

    /// A platform-operator action (key rotation, policy reload): `run` happens only
    /// once its record is committed.
    pub async fn as_operator<T>(
        &self,
        caller: &Caller,
        action: Audited,
        target: Target,
        run: impl AsyncFnOnce(()) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let checked = self.operator_check(caller).map(|d| ((), d));
        self.audited(caller, action, target, checked, run).await
    }

    /// Whether `caller` is the platform operator (for its reads, which are not recorded).
    pub fn operator_check(&self, caller: &Caller) -> Result<Arc<Decision>, Error> {
        match self.authz.authorize(caller, Action::ManagePlatform, Resource::Tenant(caller.principal.tenant)) {
            Ok(d) => Ok(d),
            Err(crate::authz::Denial::InsufficientScope(required)) => Err(Error::InsufficientScope { required }),
            Err(_) => Err(Error::Forbidden { reason: "this is managed by the platform operator".into() }),
        }
    }

    pub async fn create_tenant(&self, caller: &Caller, name: &str) -> Result<Tenant, Error> {
        let checked = self
            .authz
            .authorize(caller, Action::ManagePlatform, Resource::Tenant(caller.principal.tenant))
            .map(|d| ((), d))
            .map_err(|d| denial_error(d, "tenant"));
        let target = Target::Tenant(caller.principal.tenant);
        self.audited(caller, Audited::TenantCreate, target, checked, async |()| {
            self.create_tenant_unchecked(name).await
        })
        .await
    }

    /// For start-up initialisation and the local CLI, which act as the operator.
    pub async fn create_tenant_unchecked(&self, name: &str) -> Result<Tenant, Error> {
        Tenant::validate_name(name).map_err(|m| Error::invalid("name", m))?;
        let tenant = Tenant { id: TenantId::new_random(), name: name.to_string(), created_at: Timestamp::now() };
        match self.store.create_tenant(&tenant).await {
            Ok(()) => Ok(tenant),
            Err(StoreError::Duplicate) => Err(Error::Conflict(format!("a tenant named {name:?} exists"))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_tenants(&self, caller: &Caller) -> Result<Vec<Tenant>, Error> {
        self.authz
            .authorize(caller, Action::Admin, Resource::Tenant(caller.principal.tenant))
            .map_err(|d| denial_error(d, "tenant"))?;
        let all = self.store.tenants().await?;
        Ok(if caller.principal.platform_admin {
            all
        } else {
            all.into_iter().filter(|t| t.id == caller.principal.tenant).collect()
        })
    }

    /// Resolves a tenant by id or name; tenants the caller may not administer are
    /// reported as missing.
    pub async fn resolve_tenant(&self, caller: &Caller, r: Option<&TenantRef>) -> Result<Tenant, Error> {
        self.tenant_decided(caller, r).await.map(|(t, _)| t)
    }

    /// [`Self::resolve_tenant`], with the decision that allowed it.
    pub(crate) async fn tenant_decided(
        &self,
        caller: &Caller,
        r: Option<&TenantRef>,
    ) -> Result<(Tenant, Arc<Decision>), Error> {
        let found = match r {
            None => self.store.tenant(caller.principal.tenant).await?,
            Some(TenantRef(s)) => match s.parse::<TenantId>() {
                Ok(id) => self.store.tenant(id).await?,
                Err(_) => self.store.tenant_by_name(s).await?,
            },
        };
        let tenant = found.ok_or(Error::NotFound { what: "tenant" })?;
        let decision = self
            .authz
            .authorize(caller, Action::Admin, Resource::Tenant(tenant.id))
            .map_err(|d| denial_error(d, "tenant"))?;
        Ok((tenant, decision))
    }

    pub async fn create_principal(&self, caller: &Caller, new: NewPrincipal) -> Result<Principal, Error> {
        let checked = self.tenant_decided(caller, new.tenant.as_ref()).await;
        let target = match &checked {
            Ok((t, _)) => Target::Tenant(t.id),
            Err(_) => Target::Tenant(caller.principal.tenant),
        };
        self.audited(caller, Audited::PrincipalCreate, target, checked, async |tenant: Tenant| {
            self.create_principal_in(tenant.id, new, false).await
        })
        .await
    }

    pub async fn create_principal_in(
        &self,
        tenant: TenantId,
        new: NewPrincipal,
        platform_admin: bool,
    ) -> Result<Principal, Error> {
        Principal::validate_name(&new.name).map_err(|m| Error::invalid("name", m))?;
        let password_hash = match new.password {
            None => None,
            Some(_) if new.kind != PrincipalKind::User => {
                return Err(Error::invalid("password", "only principals of kind user have passwords"));
            }
            Some(p) => {
                password::validate(&p).map_err(|m| Error::invalid("password", m))?;
                Some(password::hash(Secret::new(p)).await.map_err(|e| StoreError::Backend(e.to_string()))?)
            }
        };
        let principal = Principal {
            id: PrincipalId::new_random(),
            tenant,
            kind: new.kind,
            name: new.name,
            roles: new.roles,
            disabled: false,
            platform_admin,
            created_at: Timestamp::now(),
            tokens_revoked_at: None,
            suspension: None,
        };
        match self.store.create_principal(&principal, password_hash.as_deref()).await {
            Ok(()) => Ok(principal),
            Err(StoreError::Duplicate) => {
                Err(Error::Conflict(format!("a principal named {:?} exists in this tenant", principal.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_principals(&self, caller: &Caller, tenant: Option<&TenantRef>) -> Result<Vec<Principal>, Error> {
        let tenant = self.resolve_tenant(caller, tenant).await?;
        Ok(self.store.principals(tenant.id).await?)
    }

    /// A principal the caller may see in the admin API, or "not found".
    pub async fn principal(&self, caller: &Caller, id: PrincipalId) -> Result<Principal, Error> {
        self.principal_decided(caller, id).await.map(|(p, _)| p)
    }

    async fn principal_decided(&self, caller: &Caller, id: PrincipalId) -> Result<(Principal, Arc<Decision>), Error> {
        let p = self.store.principal(id).await?.ok_or(Error::NotFound { what: "principal" })?;
        let decision = self
            .authz
            .authorize(caller, Action::Admin, Resource::Tenant(p.tenant))
            .map_err(|d| denial_error(d, "principal"))?;
        Ok((p, decision))
    }

    /// A principal the caller may change or issue credentials for. The platform
    /// operator lives in a tenant too, but only the operator may touch it: a tenant
    /// admin who could mint it a key would hold every tenant.
    async fn managed_principal(&self, caller: &Caller, id: PrincipalId) -> Result<Principal, Error> {
        self.managed_decided(caller, id).await.map(|(p, _)| p)
    }

    pub(super) async fn managed_decided(
        &self,
        caller: &Caller,
        id: PrincipalId,
    ) -> Result<(Principal, Arc<Decision>), Error> {
        let (p, decision) = self.principal_decided(caller, id).await?;
        if p.platform_admin && !caller.principal.platform_admin {
            return Err(Error::Forbidden {
                reason: "only the platform administrator may manage the platform administrator".into(),
            });
        }
        Ok((p, decision))
    }

    pub async fn update_principal(
        &self,
        caller: &Caller,
        id: PrincipalId,
        change: PrincipalChange,
    ) -> Result<Principal, Error> {
        let checked = self.managed_decided(caller, id).await;
        self.audited(caller, Audited::PrincipalUpdate, Target::Principal(id), checked, async |_| {
            let disables = change.disabled == Some(true);
            let demotes = change.roles.as_ref().is_some_and(|r| !r.at_least(Role::Admin));
            if (disables || demotes) && cuts_itself_off(caller, id) {
                return Err(lockout("disable yourself or give up your own admin role"));
            }
            self.store.update_principal(id, change.roles.as_ref(), change.disabled).await?;
            self.principal(caller, id).await
        })
        .await
    }

    /// Sets a user's password (argon2id).
    pub async fn set_password(&self, caller: &Caller, id: PrincipalId, new_password: String) -> Result<(), Error> {
        let checked = self.managed_decided(caller, id).await;
        self.audited(caller, Audited::PrincipalPassword, Target::Principal(id), checked, async |p: Principal| {
            if p.kind != PrincipalKind::User {
                return Err(Error::invalid("password", "only principals of kind user have passwords"));
            }
            password::validate(&new_password).map_err(|m| Error::invalid("password", m))?;
            let hash =
                password::hash(Secret::new(new_password)).await.map_err(|e| StoreError::Backend(e.to_string()))?;
            self.store.set_password_hash(id, &hash).await?;
            Ok(())
        })
        .await
    }

    pub async fn create_api_key(&self, caller: &Caller, new: NewApiKey) -> Result<IssuedApiKey, Error> {
        let checked = self.managed_decided(caller, new.principal).await;
        self.audited(caller, Audited::ApiKeyCreate, Target::Principal(new.principal), checked, async |p: Principal| {
            self.issue_api_key(&p, new.scopes, new.expires_in).await
        })
        .await
    }

    /// Issues a key for `principal` without an authorization check (init and CLI).
    pub async fn issue_api_key(
        &self,
        principal: &Principal,
        scopes: Option<ScopeSet>,
        expires_in: Option<u64>,
    ) -> Result<IssuedApiKey, Error> {
        let now = Timestamp::now();
        let expires_at = match expires_in {
            None => None,
            Some(0) => {
                return Err(Error::invalid("expires_in", "must be a positive number of seconds"));
            }
            Some(s) if s > MAX_KEY_LIFETIME_SECS => {
                return Err(Error::invalid("expires_in", format!("must be at most {MAX_KEY_LIFETIME_SECS} seconds")));
            }
            Some(s) => Some(now.plus_secs(s as i64)),
        };
        let (key, hash) = api_key::generate();
        let record = ApiKey {
            id: ApiKeyId::new_random(),
            principal: principal.id,
            tenant: principal.tenant,
            scopes,
            expires_at,
            revoked_at: None,
            created_at: now,
        };
        self.store.create_api_key(&record, &hash).await?;
        Ok(IssuedApiKey { record, key: key.expose().to_string() })
    }

    pub async fn list_api_keys(&self, caller: &Caller, principal: Option<PrincipalId>) -> Result<Vec<ApiKey>, Error> {
        // The platform operator's keys (ids, scopes, expiry) are its own business, like
        // every other detail of the operator: tenant admins of its tenant do not see them.
        match principal {
            Some(id) => {
                self.managed_principal(caller, id).await?;
                Ok(self.store.api_keys(None, Some(id)).await?)
            }
            None => {
                let tenant = self.resolve_tenant(caller, None).await?;
                let keys = self.store.api_keys(Some(tenant.id), None).await?;
                if caller.principal.platform_admin {
                    return Ok(keys);
                }
                let operators: Vec<PrincipalId> = self
                    .store
                    .principals(tenant.id)
                    .await?
                    .into_iter()
                    .filter(|p| p.platform_admin)
                    .map(|p| p.id)
                    .collect();
                Ok(keys.into_iter().filter(|k| !operators.contains(&k.principal)).collect())
            }
        }
    }

    pub async fn revoke_api_key(&self, caller: &Caller, id: ApiKeyId) -> Result<(), Error> {
        let checked = async {
            let key = self.store.api_key(id).await?.ok_or(Error::NotFound { what: "api key" })?;
            self.authz
                .authorize(caller, Action::Admin, Resource::Tenant(key.tenant))
                .map_err(|d| denial_error(d, "api key"))?;
            let (_, decision) = self.managed_decided(caller, key.principal).await?;
            Ok((key, decision))
        };
        let checked = checked.await;
        self.audited(caller, Audited::ApiKeyRevoke, Target::ApiKey(id), checked, async |key: ApiKey| {
            if caller.credential == CredentialRef::ApiKey(id) && cuts_itself_off(caller, key.principal) {
                return Err(lockout("revoke the API key this request is made with"));
            }
            // Revoking twice is not an error: the key is revoked either way.
            self.store.revoke_api_key(id, Timestamp::now()).await?;
            Ok(())
        })
        .await
    }

    /// Revokes every credential of a principal: API keys, access tokens issued so far
    /// and refresh token families.
    pub async fn revoke_all(&self, caller: &Caller, id: PrincipalId) -> Result<u64, Error> {
        let checked = self.managed_decided(caller, id).await;
        self.audited(caller, Audited::PrincipalRevokeAll, Target::Principal(id), checked, async |_| {
            if cuts_itself_off(caller, id) {
                return Err(lockout("revoke every credential of your own principal"));
            }
            let now = Timestamp::now();
            self.store.revoke_principal_tokens(id, now).await?;
            self.store.revoke_principal_families(id, now).await?;
            Ok(self.store.revoke_principal_api_keys(id, now).await?)
        })
        .await
    }
}

/// Whether acting on principal `id` would cut off the caller's own access through the
/// API (the local command line acts as the operator and may).
fn cuts_itself_off(caller: &Caller, id: PrincipalId) -> bool {
    id == caller.principal.id && caller.credential != CredentialRef::LocalOperator
}

/// An administrator cannot cut off the credential they are using through the API
/// (a slip, or a stolen key used to lock its owner out of recovering): another
/// administrator, or the local command line, does it.
fn lockout(what: &str) -> Error {
    Error::Conflict(format!(
        "an administrator cannot {what} through the API; another administrator or the `ctxguard` command line can"
    ))
}
