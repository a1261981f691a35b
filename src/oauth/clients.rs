//! OAuth client registration, shared by the admin API, the CLI and dynamic client
//! registration (RFC 7591): one set of rules for redirect URIs, grants and scopes.

use crate::domain::audit::{Action as Audited, Target};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authn::Caller;
use crate::authz::{Action, Resource};
use crate::crypto::token;
use crate::domain::{
    ApplicationType, ClientId, Error, GrantType, OAuthClient, PrincipalKind, RoleSet, Scope, ScopeSet, StoreError,
    TenantId, Timestamp, redirect_uri,
};
use crate::service::admin::{AdminService, NewPrincipal, TenantRef};
use crate::service::denial_error;
use crate::store::Database;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Tenant id or name; defaults to the caller's tenant.
    #[serde(default)]
    pub tenant: Option<TenantRef>,
    pub name: String,
    /// Default: authorization_code and refresh_token.
    #[serde(default)]
    pub grant_types: Option<Vec<GrantType>>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The most a token for this client may carry. Default: every context scope and
    /// offline_access (not admin).
    #[serde(default)]
    pub scopes: Option<ScopeSet>,
    /// Roles of the client's own service principal (client_credentials only).
    #[serde(default)]
    pub roles: RoleSet,
    #[serde(default)]
    pub application_type: ApplicationType,
    /// A public client (no secret; PKCE protects its code flow).
    #[serde(default)]
    pub public: bool,
}

/// A registered client; the secret is in this response only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegisteredClient {
    #[serde(flatten)]
    pub client: OAuthClient,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

pub fn default_scopes() -> ScopeSet {
    let mut s = ScopeSet::all().without(Scope::Admin);
    s.insert(Scope::OfflineAccess);
    s
}

#[derive(Clone)]
pub struct ClientService {
    db: Arc<dyn Database>,
    admin: AdminService,
}

impl ClientService {
    pub fn new(db: Arc<dyn Database>, admin: AdminService) -> Self {
        Self { admin, db }
    }

    pub async fn create(&self, caller: &Caller, new: NewClient) -> Result<RegisteredClient, Error> {
        let checked = self.admin.tenant_decided(caller, new.tenant.as_ref()).await;
        let target = Target::Tenant(checked.as_ref().map_or(caller.principal.tenant, |(t, _)| t.id));
        self.admin
            .audited(caller, Audited::ClientCreate, target, checked, async |tenant: crate::domain::Tenant| {
                self.register(tenant.id, new, "admin").await
            })
            .await
    }

    /// Validates and stores a client (no authorization check: callers do that).
    pub async fn register(
        &self,
        tenant: TenantId,
        new: NewClient,
        registered_by: &str,
    ) -> Result<RegisteredClient, Error> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must be 1-200 printable characters"));
        }
        let grants = new.grant_types.unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        if grants.is_empty() {
            return Err(Error::invalid("grant_types", "must name at least one grant type"));
        }
        if grants.iter().enumerate().any(|(i, g)| grants[..i].contains(g)) {
            return Err(Error::invalid("grant_types", "must name each grant type once"));
        }
        let code_flow = grants.contains(&GrantType::AuthorizationCode);
        let machine = grants.contains(&GrantType::ClientCredentials);
        if code_flow && new.redirect_uris.is_empty() {
            return Err(Error::invalid(
                "redirect_uris",
                "the authorization_code grant needs at least one redirect URI",
            ));
        }
        if !code_flow && !new.redirect_uris.is_empty() {
            return Err(Error::invalid(
                "redirect_uris",
                "only clients of the authorization_code grant have redirect URIs",
            ));
        }
        for uri in &new.redirect_uris {
            redirect_uri::validate(uri, new.application_type).map_err(|m| Error::invalid("redirect_uris", m))?;
        }
        if machine && new.public {
            return Err(Error::invalid("grant_types", "client_credentials needs a confidential client"));
        }
        if !machine && new.roles.highest().is_some() {
            return Err(Error::invalid("roles", "only client_credentials clients act as themselves and hold roles"));
        }
        let scopes = new.scopes.unwrap_or_else(default_scopes);
        let principal = if machine {
            let p = self
                .admin
                .create_principal_in(
                    tenant,
                    NewPrincipal {
                        tenant: None,
                        kind: PrincipalKind::Service,
                        // A principal name holds 128 characters; a client's name, 200.
                        name: format!("client:{}", name.chars().take(121).collect::<String>()),
                        roles: new.roles,
                        password: None,
                    },
                    false,
                )
                .await?;
            Some(p.id)
        } else {
            None
        };
        let secret = (!new.public).then(|| token::generate("ctxs_"));
        let client = OAuthClient {
            client_id: ClientId::new(format!("ctxc_{}", &token::generate("").expose()[..22])),
            tenant,
            name,
            confidential: secret.is_some(),
            redirect_uris: new.redirect_uris,
            grant_types: grants,
            scopes,
            application_type: new.application_type,
            principal,
            registered_by: registered_by.to_string(),
            disabled: false,
            created_at: Timestamp::now(),
        };
        let hash = secret.as_ref().map(|s| token::token_hash(s.expose()));
        match self.db.create_client(&client, hash.as_ref()).await {
            Ok(()) => Ok(RegisteredClient { client, client_secret: secret.map(|s| s.expose().to_string()) }),
            Err(StoreError::Duplicate) => Err(Error::Conflict("client id collision; try again".into())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(&self, caller: &Caller, tenant: Option<&TenantRef>) -> Result<Vec<OAuthClient>, Error> {
        let tenant = self.admin.resolve_tenant(caller, tenant).await?;
        Ok(self.db.clients(tenant.id).await?)
    }

    /// Disables a client, revokes its refresh families and, for a client_credentials
    /// client, every token of its service principal.
    pub async fn delete(&self, caller: &Caller, client_id: &ClientId) -> Result<(), Error> {
        let checked = async {
            let client = self.db.client(client_id).await?.ok_or(Error::NotFound { what: "client" })?.client;
            let decision = self
                .admin
                .authorizer()
                .authorize(caller, Action::Admin, Resource::Tenant(client.tenant))
                .map_err(|d| denial_error(d, "client"))?;
            Ok((client, decision))
        };
        let checked = checked.await;
        let target = Target::Client(client_id.as_str().to_string());
        self.admin
            .audited(caller, Audited::ClientDelete, target, checked, async |client: OAuthClient| {
                let now = Timestamp::now();
                self.db.disable_client(client_id).await?;
                self.db.revoke_client_families(client_id, now).await?;
                if let Some(p) = client.principal {
                    self.db.revoke_principal_tokens(p, now).await?;
                }
                Ok(())
            })
            .await
    }
}
