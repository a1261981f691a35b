//! CLI for the authorization server: users, OAuth clients and signing keys.

use std::io::BufRead;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::{Common, Local, print_json};
use crate::app::bootstrap::DEFAULT_TENANT;
use crate::domain::audit::{Action as Audited, Target};
use crate::domain::{ApplicationType, ClientId, GrantType, PrincipalKind, Role, RoleSet, ScopeSet};
use crate::jwt::{KeyAlg, Keyring, key_retention};
use crate::oauth::clients::NewClient;
use crate::service::admin::{NewPrincipal, PrincipalChange, TenantRef};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input (one line).
    Add {
        name: String,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// Role (repeatable): reader, injector, writer, maintainer, admin.
        #[arg(long = "role")]
        roles: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Set a user's password, read from standard input (one line).
    Passwd {
        name: String,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Disable a user (sign-in and every token stop working).
    Disable {
        name: String,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// Grant type (repeatable): authorization_code, refresh_token, client_credentials.
        #[arg(long = "grant")]
        grants: Vec<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Scope the client may request (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Role of the client's service principal (client_credentials; repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A public client (no secret).
        #[arg(long)]
        public: bool,
        /// A native application (loopback or private-use redirect URIs).
        #[arg(long)]
        native: bool,
        #[command(flatten)]
        common: Common,
    },
    List {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Disable a client and revoke its tokens.
    Delete {
        client_id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    List(Common),
    /// Print a tenant's HMAC signing keys as a JWKS (secret: for its verifiers only;
    /// `ctxguard context verify --hmac-keys FILE`). Audited.
    HmacExport {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    /// Rotate keys: by default (or `--signing`) make a new current signing key (running
    /// servers pick it up within seconds); `--kek` re-wraps every key under a new KEK
    /// (stop the servers first); `--data-keys` gives each tenant a new data key and seals
    /// every encrypted value again (servers keep serving; resumable).
    #[command(group(clap::ArgGroup::new("which").args(["signing", "kek", "data_keys"])))]
    Rotate {
        #[arg(long)]
        signing: bool,
        #[arg(long)]
        kek: bool,
        #[arg(long)]
        data_keys: bool,
        /// Algorithm of the new signing key.
        #[arg(long, value_enum, conflicts_with_all = ["kek", "data_keys"])]
        alg: Option<KeyAlg>,
        #[command(flatten)]
        common: Common,
    },
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("no password on standard input");
    }
    Ok(pw)
}

fn roles(names: &[String]) -> anyhow::Result<RoleSet> {
    Ok(RoleSet::new(names.iter().map(|r| Role::parse(r)).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?))
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, tenant, roles: r, common } => {
            let password = read_password()?;
            let l = Local::open(&common).await?;
            let new = NewPrincipal {
                tenant: Some(TenantRef(tenant)),
                kind: PrincipalKind::User,
                name,
                roles: roles(&r)?,
                password: Some(password),
            };
            print_json(&l.app.admin.create_principal(&l.caller, new).await?)?;
            l.close().await;
        }
        UserCommand::Passwd { name, tenant, common } => {
            let password = read_password()?;
            let l = Local::open(&common).await?;
            let id = l.principal_id(&name, &tenant).await?;
            l.app.admin.set_password(&l.caller, id, password).await?;
            eprintln!("ctxguard: password of {name} changed");
            l.close().await;
        }
        UserCommand::Disable { name, tenant, common } => {
            let l = Local::open(&common).await?;
            let id = l.principal_id(&name, &tenant).await?;
            l.app.admin.update_principal(&l.caller, id, PrincipalChange { roles: None, disabled: Some(true) }).await?;
            l.app.admin.revoke_all(&l.caller, id).await?;
            eprintln!("ctxguard: {name} disabled and every credential revoked");
            l.close().await;
        }
    }
    Ok(())
}

pub async fn client(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create { name, tenant, grants, redirect_uris, scopes, roles: r, public, native, common } => {
            let grant_types = if grants.is_empty() {
                None
            } else {
                Some(
                    grants
                        .iter()
                        .map(|g| GrantType::parse(g))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(anyhow::Error::msg)?,
                )
            };
            let scopes = if scopes.is_empty() {
                None
            } else {
                Some(ScopeSet::from_tokens(scopes.iter().map(String::as_str)).map_err(anyhow::Error::msg)?)
            };
            let l = Local::open(&common).await?;
            let new = NewClient {
                tenant: Some(TenantRef(tenant)),
                name,
                grant_types,
                redirect_uris,
                scopes,
                roles: roles(&r)?,
                application_type: if native { ApplicationType::Native } else { ApplicationType::Web },
                public,
            };
            let registered = l.app.clients.create(&l.caller, new).await?;
            print_json(&registered)?;
            if registered.client_secret.is_some() {
                eprintln!("ctxguard: store the client secret now; it cannot be shown again");
            }
            l.close().await;
        }
        ClientCommand::List { tenant, common } => {
            let l = Local::open(&common).await?;
            print_json(&l.app.clients.list(&l.caller, Some(&TenantRef(tenant))).await?)?;
            l.close().await;
        }
        ClientCommand::Delete { client_id, common } => {
            let l = Local::open(&common).await?;
            l.app.clients.delete(&l.caller, &ClientId::new(client_id.as_str())).await?;
            eprintln!("ctxguard: client {client_id} disabled and its tokens revoked");
            l.close().await;
        }
    }
    Ok(())
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List(common) => {
            let l = Local::open(&common).await?;
            print_json(&Keyring::list(&*l.app.db).await?)?;
            l.close().await;
        }
        KeysCommand::HmacExport { tenant, common } => {
            let l = Local::open(&common).await?;
            let found =
                l.app.db.tenant_by_name(&tenant).await?.with_context(|| format!("no tenant named {tenant:?}"))?;
            let (db, kek) = (&*l.app.db, &l.app.kek);
            let export = async |()| {
                crate::app::keys::hmac_keys(db, kek, &[])
                    .await
                    .map(|k| k.jwks(found.id))
                    .map_err(|e| crate::domain::Error::Store(crate::domain::StoreError::Backend(format!("{e:#}"))))
            };
            let jwks =
                l.app.admin.as_operator(&l.caller, Audited::KeysExport, Target::Tenant(found.id), export).await?;
            print_json(&jwks)?;
            l.close().await;
        }
        KeysCommand::Rotate { kek: true, common, .. } => {
            let l = Local::open(&common).await?;
            let (db, dir, kek) = (&*l.app.db, &l.app.settings.data_dir, &l.app.kek);
            let rotate = async |()| {
                crate::app::keys::rotate_kek(db, dir, kek).await.map_err(|e| {
                    crate::domain::Error::Store(crate::domain::StoreError::Backend(format!(
                        "KEK rotation failed: {e:#}"
                    )))
                })
            };
            let n = l.app.admin.as_operator(&l.caller, Audited::KeysRotate, Target::Kek, rotate).await?;
            eprintln!("ctxguard: new KEK in {}; {n} keys re-wrapped under it", dir.join("kek.key").display());
            l.close().await;
        }
        KeysCommand::Rotate { data_keys: true, common, .. } => {
            let l = Local::open(&common).await?;
            let db = &*l.app.db;
            let rotate = async |()| {
                crate::app::keys::rotate_data_keys(db).await.map_err(|e| {
                    crate::domain::Error::Store(crate::domain::StoreError::Backend(format!(
                        "data-key rotation failed: {e:#}"
                    )))
                })
            };
            let done = l.app.admin.as_operator(&l.caller, Audited::KeysRotate, Target::DataKeys, rotate).await?;
            eprintln!(
                "ctxguard: data keys rotated: {} tenants have a new key; {} sealed values sealed again",
                done.tenants, done.rows
            );
            l.close().await;
        }
        KeysCommand::Rotate { alg, common, .. } => {
            let l = Local::open(&common).await?;
            let alg = alg.unwrap_or(l.app.settings.signing_alg);
            // Recorded like the API's rotation: committed to the audit log before it happens.
            let rotate = async |()| {
                Keyring::rotate_offline(&*l.app.db, &l.app.kek, alg, key_retention()).await.map_err(|e| {
                    crate::domain::Error::Store(crate::domain::StoreError::Backend(format!("key rotation failed: {e}")))
                })
            };
            let kid = l.app.admin.as_operator(&l.caller, Audited::KeysRotate, Target::SigningKeys, rotate).await?;
            eprintln!("ctxguard: new signing key {kid} ({}); previous keys stay published for an hour", alg.as_str());
            l.close().await;
        }
    }
    Ok(())
}
