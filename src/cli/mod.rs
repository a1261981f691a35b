//! The command line: `serve`, `init`, `config check`, and local administration
//! (`tenant`, `principal`, `apikey`) that acts directly on the configured database as
//! the platform operator.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::app::bootstrap::{DEFAULT_TENANT, OPERATOR_NAME};
use crate::app::{App, serve};
use crate::authn::{Caller, CredentialRef};
use crate::config::{self, ConfigOverrides, Settings};
use crate::domain::{PrincipalId, PrincipalKind, Role, RoleSet, ScopeSet};
use crate::service::admin::{NewPrincipal, TenantRef};

mod anomaly;
mod audit;
mod context;
mod oauth;

#[derive(Parser, Debug)]
#[command(name = "ctxguard", version, about = "Secure context server for AI agents")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Config file (default ./ctxguard.toml if it exists).
    #[arg(long, env = "CTXGUARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (initialises the data dir on first start).
    Serve(Common),
    /// Serve the MCP tools over stdio, as the principal of CTXGUARD_API_KEY.
    McpStdio(Common),
    /// Initialise the data dir and database without serving.
    Init(Common),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Principals (users, agents, services).
    Principal {
        #[command(subcommand)]
        command: PrincipalCommand,
    },
    /// API keys.
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Users (people who sign in to the OAuth login page).
    User {
        #[command(subcommand)]
        command: oauth::UserCommand,
    },
    /// OAuth clients.
    Client {
        #[command(subcommand)]
        command: oauth::ClientCommand,
    },
    /// Contexts: verify a version's signature.
    Context {
        #[command(subcommand)]
        command: context::ContextCommand,
    },
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        command: oauth::KeysCommand,
    },
    /// The audit log: verify the chain, export records.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Anomaly response: lockouts and suspensions, and lifting them.
    Anomaly {
        #[command(subcommand)]
        command: anomaly::AnomalyCommand,
    },
    /// Cedar policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate the built-in policies plus the policy directory against the schema.
    Validate {
        /// Policy directory to check (default: the configured policy_dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        common: Box<Common>,
    },
    /// Print the Cedar schema custom policies are written against.
    Schema,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration without starting.
    Check(Common),
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    Create {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    List(Common),
}

#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "agent")]
        kind: String,
        /// Tenant id or name.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// Role (repeatable): reader, injector, writer, maintainer, admin.
        #[arg(long = "role")]
        roles: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    List {
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and never stored.
    Create {
        /// Principal id, or name within --tenant.
        #[arg(long)]
        principal: String,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// Scope (repeatable); default: every power of the principal's roles.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        expires_in: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    List {
        /// Only this principal's keys (id, or name within --tenant).
        #[arg(long)]
        principal: Option<String>,
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
    Revoke {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

/// Resolves file + env + flags into validated settings.
pub fn settings(common: &Common) -> anyhow::Result<Settings> {
    config::check_env()?;
    let file = config::load_file(common.config.as_deref())?;
    Settings::resolve(common.overrides.over(file)?)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(common) => {
            let s = settings(&common)?;
            let _logs = crate::app::telemetry::init_logging(s.log_format, &s.log)?;
            serve::serve(s, serve::shutdown_signal()).await
        }
        Command::McpStdio(common) => {
            let s = settings(&common)?;
            let _logs = crate::app::telemetry::init_logging(s.log_format, &s.log)?;
            crate::app::stdio::run(s).await
        }
        Command::Init(common) => {
            let app = App::open(settings(&common)?).await?;
            eprintln!("ctxguard: data dir {} is ready", app.settings.data_dir.display());
            app.close().await;
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check(common) } => {
            let s = settings(&common)?;
            let policies = validate_policies(s.policy_dir.clone())?;
            println!("configuration is valid: bind {}, data dir {}; {policies}", s.bind, s.data_dir.display());
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Validate { dir, common } } => {
            let dir = match dir {
                Some(d) => Some(d),
                None => settings(&common)?.policy_dir,
            };
            println!("{}", validate_policies(dir)?);
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Schema } => {
            print!("{}", crate::authz::policies::SCHEMA);
            Ok(())
        }
        Command::Tenant { command } => tenant(command).await,
        Command::Principal { command } => principal(command).await,
        Command::Apikey { command } => apikey(command).await,
        Command::User { command } => oauth::user(command).await,
        Command::Client { command } => oauth::client(command).await,
        Command::Keys { command } => oauth::keys(command).await,
        Command::Context { command } => context::run(command).await,
        Command::Audit { command } => audit::run(command).await,
        Command::Anomaly { command } => anomaly::run(command).await,
    }
}

/// Loads and validates the policies; the error names file, line and reason.
fn validate_policies(dir: Option<std::path::PathBuf>) -> anyhow::Result<String> {
    let loaded = crate::authz::policies::load(dir.as_deref()).map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let custom = loaded.policies.iter().filter(|p| p.file != crate::authz::policies::BUILTIN_FILE).count();
    Ok(format!(
        "policies are valid: {} built-in, {custom} custom from {}",
        loaded.policies.len() - custom,
        dir.map_or("no policy directory".into(), |d| d.display().to_string())
    ))
}

/// The local operator: the bootstrap platform administrator, acting on the [`App`].
pub(crate) struct Local {
    pub(crate) app: App,
    pub(crate) caller: Caller,
}

impl Local {
    /// Opens the app; a bad policy directory is reported here too, although the
    /// operator's actions do not depend on policies.
    pub(crate) async fn open(common: &Common) -> anyhow::Result<Local> {
        let app = App::open(settings(common)?).await?;
        let tenant = app.db.tenant_by_name(DEFAULT_TENANT).await?.context("the database has no default tenant")?;
        let operator = app
            .db
            .principal_by_name(tenant.id, OPERATOR_NAME)
            .await?
            .filter(|p| p.platform_admin)
            .context("the database has no platform operator")?;
        Ok(Local {
            app,
            caller: Caller {
                principal: operator,
                scopes: ScopeSet::all(),
                credential: CredentialRef::LocalOperator,
                binding: None,
                origin: None,
                request: crate::domain::audit::RequestMeta {
                    channel: crate::domain::audit::Channel::Cli,
                    ..Default::default()
                },
            },
        })
    }

    pub(crate) async fn principal_id(&self, reference: &str, tenant: &str) -> anyhow::Result<PrincipalId> {
        if let Ok(id) = reference.parse::<PrincipalId>() {
            return Ok(id);
        }
        let tenant = self.app.admin.resolve_tenant(&self.caller, Some(&TenantRef(tenant.into()))).await?;
        let p = self
            .app
            .db
            .principal_by_name(tenant.id, reference)
            .await?
            .with_context(|| format!("no principal named {reference:?} in tenant {}", tenant.name))?;
        Ok(p.id)
    }

    pub(crate) async fn close(self) {
        self.app.close().await;
    }
}

pub(crate) fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn tenant(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name, common } => {
            let l = Local::open(&common).await?;
            let t = l.app.admin.create_tenant(&l.caller, &name).await?;
            print_json(&t)?;
            l.close().await;
        }
        TenantCommand::List(common) => {
            let l = Local::open(&common).await?;
            print_json(&l.app.admin.list_tenants(&l.caller).await?)?;
            l.close().await;
        }
    }
    Ok(())
}

async fn principal(command: PrincipalCommand) -> anyhow::Result<()> {
    match command {
        PrincipalCommand::Create { name, kind, tenant, roles, common } => {
            let kind = PrincipalKind::parse(&kind).map_err(anyhow::Error::msg)?;
            let roles =
                roles.iter().map(|r| Role::parse(r)).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
            let l = Local::open(&common).await?;
            let p = l
                .app
                .admin
                .create_principal(
                    &l.caller,
                    NewPrincipal {
                        tenant: Some(TenantRef(tenant)),
                        kind,
                        name,
                        roles: RoleSet::new(roles),
                        password: None,
                    },
                )
                .await?;
            print_json(&p)?;
            l.close().await;
        }
        PrincipalCommand::List { tenant, common } => {
            let l = Local::open(&common).await?;
            print_json(&l.app.admin.list_principals(&l.caller, Some(&TenantRef(tenant))).await?)?;
            l.close().await;
        }
    }
    Ok(())
}

async fn apikey(command: ApiKeyCommand) -> anyhow::Result<()> {
    match command {
        ApiKeyCommand::Create { principal, tenant, scopes, expires_in, common } => {
            let scopes = if scopes.is_empty() {
                None
            } else {
                Some(ScopeSet::from_tokens(scopes.iter().map(String::as_str)).map_err(anyhow::Error::msg)?)
            };
            let l = Local::open(&common).await?;
            let id = l.principal_id(&principal, &tenant).await?;
            let issued = l
                .app
                .admin
                .create_api_key(&l.caller, crate::service::admin::NewApiKey { principal: id, scopes, expires_in })
                .await?;
            print_json(&issued)?;
            eprintln!("ctxguard: store this key now; it cannot be shown again");
            l.close().await;
        }
        ApiKeyCommand::List { principal, tenant, common } => {
            let l = Local::open(&common).await?;
            let id = match principal {
                Some(p) => Some(l.principal_id(&p, &tenant).await?),
                None => None,
            };
            print_json(&l.app.admin.list_api_keys(&l.caller, id).await?)?;
            l.close().await;
        }
        ApiKeyCommand::Revoke { id, common } => {
            let Ok(id) = id.parse() else { bail!("{id:?} is not an API key id (UUID)") };
            let l = Local::open(&common).await?;
            l.app.admin.revoke_api_key(&l.caller, id).await?;
            eprintln!("ctxguard: API key {id} revoked");
            l.close().await;
        }
    }
    Ok(())
}
