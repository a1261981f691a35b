//! The composition root: the one place that turns [`Settings`] into running parts.
//! `serve`, `mcp-stdio` and every CLI command start from [`App::open`], so the database,
//! the key-encryption key, the signing key ring and the policies are each loaded once,
//! the same way everywhere.

pub mod bootstrap;
pub mod keys;
pub mod serve;
pub mod stdio;
pub mod sweeper;
pub mod telemetry;

use std::sync::Arc;

use anyhow::Context as _;

use crate::anomaly::Guard;
use crate::audit::Audit;
use crate::authn::Authenticator;
use crate::authn::external::ExternalIssuer;
use crate::authz::Authorizer;
use crate::config::Settings;
use crate::crypto::Secret;
use crate::crypto::kek::Kek;
use crate::domain::context::ContextLimits;
use crate::jwt::{AccessTokens, Keyring, key_retention};
use crate::oauth::clients::ClientService;
use crate::oauth::{AuthServer, AuthServerConfig};
use crate::service::{AdminService, ContextService};
use crate::store::cached::CachedContexts;
use crate::store::{self, ContextStore, Database, DatabaseLocation};

/// What every entry point shares: storage, keys, policies and the use cases.
pub struct App {
    pub settings: Settings,
    /// This process's audit writer (every service records through it).
    pub audit: Audit,
    /// This process's anomaly guard (lockouts, suspensions; docs/anomaly.md).
    pub guard: Guard,
    pub db: Arc<dyn Database>,
    pub kek: Arc<Kek>,
    pub keyring: Arc<Keyring>,
    pub authz: Authorizer,
    pub admin: AdminService,
    pub clients: ClientService,
    pub contexts: ContextService,
    /// The context cache, for its size metrics (none when turned off).
    pub context_cache: Option<Arc<CachedContexts>>,
}

/// What only a server answering requests needs, for its public URL: the token format
/// bound to that issuer, the resource server's authenticator and the authorization
/// server.
pub struct Serving {
    pub public_url: String,
    pub authn: Authenticator,
    pub oauth: Arc<AuthServer>,
}

impl App {
    /// Prepares the data dir, opens the database (initialising it on first use and
    /// announcing where the admin key went — the path, never the key), loads the KEK,
    /// the key ring and the policies, and builds the services.
    pub async fn open(settings: Settings) -> anyhow::Result<App> {
        bootstrap::prepare_data_dir(&settings.data_dir)?;
        let db = store::open(&settings.database).await?;
        convert_legacy_contexts(&*db).await?;
        convert_legacy_audit(&*db).await?;
        keys::settle_kek_rotation(&*db, &settings.data_dir).await?;
        let kek = Arc::new(Kek::load_or_create(&settings.data_dir)?);
        // The first signing key is part of initialisation.
        let keyring = Arc::new(Keyring::load(db.clone(), kek.clone(), settings.signing_alg, key_retention()).await?);
        let signer = Arc::new(crate::integrity::Signer::new(keyring.clone()));
        db.attach_signer(signer.clone());
        sign_unsigned_contexts(&*db).await?;
        let audit = Audit::start(db.clone(), keyring.clone(), &settings.audit);
        let guard = Guard::start(db.clone(), audit.clone(), settings.anomaly.clone());
        let authz = Authorizer::load_with_memo(settings.policy_dir.clone(), settings.decision_cache_entries)
            .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
        let admin = AdminService::new(db.clone(), authz.clone(), audit.clone(), guard.clone());
        if let bootstrap::Bootstrap::Created { key_file } =
            bootstrap::bootstrap(&admin, &*db, &settings.data_dir).await?
        {
            eprintln!(
                "ctxguard: initialised {}; the bootstrap admin API key is in {} (mode 0600)",
                describe(&settings.database),
                key_file.display()
            );
        }
        // After the bootstrap: the policy may name the tenant it creates.
        attach_field_sealer(&*db, kek.clone(), &settings.encryption).await?;
        signer.use_hmac(keys::hmac_keys(&*db, &kek, &settings.hmac_tenants).await?);
        let limits = ContextLimits {
            max_history: settings.max_history,
            max_context_bytes: settings.max_context_bytes,
            max_message_bytes: settings.max_message_bytes,
        };
        let context_cache = (settings.context_cache_bytes > 0)
            .then(|| Arc::new(CachedContexts::new(db.clone(), settings.context_cache_bytes)));
        let store: Arc<dyn ContextStore> = match &context_cache {
            Some(cache) => cache.clone(),
            None => db.clone(),
        };
        let inline = crate::service::sealing::Inline {
            sealer: crate::integrity::inline::Sealer::new(keyring.clone()).trusting(trusted_issuers(&settings)?),
            allow_unsigned: settings.inline_allow_unsigned,
        };
        let contexts = ContextService::new(store, db.clone(), authz.clone(), limits, audit.clone(), guard.clone())
            .with_inline(inline);
        Ok(App {
            clients: ClientService::new(db.clone(), admin.clone()),
            admin,
            contexts,
            context_cache,
            authz,
            keyring,
            kek,
            db,
            settings,
            audit,
            guard,
        })
    }

    /// The request-serving parts for `public_url` (the issuer and base of both resource
    /// indicators). External issuers are resolved here: a tenant that does not exist
    /// stops start-up.
    pub async fn serving(&self, public_url: &str) -> anyhow::Result<Serving> {
        let s = &self.settings;
        let tokens = Arc::new(AccessTokens::new(self.keyring.clone(), public_url.to_string(), s.access_token_ttl));
        let authn = Authenticator::new(
            self.db.clone(),
            tokens.clone(),
            self.external_issuers(public_url).await?,
            s.credential_cache_entries,
            self.audit.clone(),
            self.guard.clone(),
        );
        let config = AuthServerConfig {
            issuer: public_url.to_string(),
            resources: vec![public_url.to_string(), crate::http::mcp::resource(public_url)],
            refresh_ttl: s.refresh_token_ttl,
            registration: s.registration,
            registration_token: s.registration_token.clone().map(Secret::new),
            registration_tenant: s.registration_tenant.clone(),
            max_delegation_depth: s.max_delegation_depth,
            cache_entries: s.credential_cache_entries,
            metadata_allow_loopback: s.client_metadata_allow_loopback,
        };
        let oauth = Arc::new(AuthServer::new(
            self.db.clone(),
            tokens,
            authn.clone(),
            self.clients.clone(),
            config,
            self.audit.clone(),
        ));
        Ok(Serving { public_url: public_url.to_string(), authn, oauth })
    }

    async fn external_issuers(&self, public_url: &str) -> anyhow::Result<Vec<ExternalIssuer>> {
        let mut out = Vec::new();
        for c in &self.settings.external_issuers {
            let tenant = self
                .db
                .tenant_by_name(&c.tenant)
                .await?
                .with_context(|| format!("external issuer {}: tenant {:?} does not exist", c.issuer, c.tenant))?;
            out.push(ExternalIssuer::new(c, tenant.id, public_url, &crate::http::mcp::resource(public_url))?);
        }
        Ok(out)
    }

    /// Writes the audit records still queued, then closes the database cleanly.
    pub async fn close(self) {
        self.audit.flush().await;
        self.db.close().await;
    }
}

/// Converts contexts stored before per-message storage. Each context is converted in
/// its own transaction.
async fn convert_legacy_contexts(db: &dyn Database) -> anyhow::Result<()> {
    let total = db.legacy_contexts().await?;
    convert_resumably(total, "contexts", "to per-message storage", async || db.convert_legacy(100).await).await
}

/// Moves audit records stored one per row (before blocks, docs/audit.md "Storage")
/// into blocks, their hashes as stored. Each block moves in its own transaction.
async fn convert_legacy_audit(db: &dyn Database) -> anyhow::Result<()> {
    let total = db.legacy_audit_records().await?;
    convert_resumably(total, "audit records", "into blocks", async || db.convert_legacy_audit(256).await).await
}

/// Gives the store the encryption policy and the KEK (docs/encryption.md), always:
/// rows sealed under an earlier configuration still open. Every data key is unwrapped
/// now, so a wrong KEK stops the start before anything is served or written.
async fn attach_field_sealer(
    db: &dyn Database,
    kek: Arc<Kek>,
    settings: &crate::config::EncryptionSettings,
) -> anyhow::Result<()> {
    let mut tenants = Vec::new();
    for (name, pointers) in &settings.tenants {
        let tenant = db
            .tenant_by_name(name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("tenant_encryption: there is no tenant named {name:?}"))?;
        tenants.push((tenant.id, pointers.clone()));
    }
    let policy = crate::crypto::at_rest::FieldPolicy::new(&settings.global, &tenants);
    db.attach_field_sealer(Arc::new(store::sql_fields::FieldSealer::new(policy, kek)))
        .await
        .map_err(|e| anyhow::anyhow!("encryption at rest: {e}"))?;
    Ok(())
}

/// The configured issuers of sealed contexts, their key sets read now: a missing or
/// broken file stops the start.
fn trusted_issuers(settings: &Settings) -> anyhow::Result<Vec<crate::integrity::inline::TrustedIssuer>> {
    settings
        .inline_issuers
        .iter()
        .map(|i| {
            let text = std::fs::read_to_string(&i.jwks_file)
                .with_context(|| format!("inline_issuers: cannot read {}", i.jwks_file.display()))?;
            crate::integrity::inline::TrustedIssuer::from_jwks(&i.issuer, &text)
                .map_err(|e| anyhow::anyhow!("inline_issuers: {}: {e}", i.jwks_file.display()))
        })
        .collect()
}

/// Signs the versions of contexts stored before signatures existed (docs/integrity.md
/// "Upgrading"). Each context is signed in its own transaction.
async fn sign_unsigned_contexts(db: &dyn Database) -> anyhow::Result<()> {
    let total = db.unsigned_contexts().await?;
    convert_resumably(total, "contexts", "to signed versions", async || db.sign_unsigned(100).await).await
}

/// Runs a start-up conversion of `total` `unit`s in steps (each one transaction, so a
/// stopped conversion continues on the next start; `step` returns how many it did, 0
/// when none is left), with a progress bar on a terminal and a summary line either way.
async fn convert_resumably(
    total: u64,
    unit: &str,
    into: &str,
    mut step: impl AsyncFnMut() -> Result<u64, crate::domain::StoreError>,
) -> anyhow::Result<()> {
    if total == 0 {
        return Ok(());
    }
    eprintln!("ctxguard: converting {total} {unit} {into} (resumable)");
    let bar = progress_bar(total, unit);
    let started = std::time::Instant::now();
    let mut done = 0;
    loop {
        let n = step().await.with_context(|| format!("converting {unit} {into}"))?;
        if n == 0 {
            break;
        }
        done += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    eprintln!("ctxguard: converted {done} {unit} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A progress bar counting `what` (start-up conversions, `ctxguard audit`).
pub(crate) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}, {{per_sec}}, about {{eta}} left"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn describe(location: &DatabaseLocation) -> String {
    match location {
        DatabaseLocation::Sqlite(p) => format!("SQLite database {}", p.display()),
        DatabaseLocation::Postgres { .. } => "the PostgreSQL database".into(),
    }
}
