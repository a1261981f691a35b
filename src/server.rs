//! Assembles and runs the server: settings → data dir → database → services → router,
//! plus the expiry sweeper, and a graceful shutdown that lets in-flight requests finish
//! and closes the database cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::authn::Authenticator;
use crate::authn::external::ExternalIssuer;
use crate::authz::Authorizer;
use crate::config::MAX_ACCESS_TOKEN_TTL_SECS;
use crate::config::Settings;
use crate::crypto::kek::Kek;
use crate::domain::context::ContextLimits;
use crate::http::{self, AppInner, AppState, BodyLimits};
use crate::init::{self, Bootstrap};
use crate::net::fetch::Fetcher;
use crate::oauth::access_token::{AccessTokens, LEEWAY_SECS};
use crate::oauth::client_metadata::ClientMetadata;
use crate::oauth::keys::Keyring;
use crate::oauth::server::{AuthServer, AuthServerCache};
use crate::service::clients::ClientService;
use crate::service::{AdminService, ContextService};
use crate::store::cached::CachedContexts;
use crate::store::{self, ContextStore, Database, DatabaseLocation, changes};
use crate::{sweeper, telemetry};

/// Opens the database for this configuration, preparing the data dir first.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Arc<dyn Database>> {
    init::prepare_data_dir(&settings.data_dir)?;
    store::open(&settings.database).await
}

/// Opens the database and initialises it on first use, announcing where the admin
/// key went (the path, never the key).
pub async fn open_and_bootstrap(settings: &Settings) -> anyhow::Result<Arc<dyn Database>> {
    let db = open_database(settings).await?;
    // The key-encryption key and the first signing key are part of initialisation.
    let kek = Arc::new(Kek::load_or_create(&settings.data_dir)?);
    Keyring::load(db.clone(), kek, settings.signing_alg, key_retention()).await?;
    if let Bootstrap::Created { key_file } = init::bootstrap(db.clone(), &settings.data_dir).await? {
        eprintln!(
            "ctxguard: initialised {}; the bootstrap admin API key is in {} (mode 0600)",
            describe(&settings.database),
            key_file.display()
        );
    }
    Ok(db)
}

fn describe(location: &DatabaseLocation) -> String {
    match location {
        DatabaseLocation::Sqlite(p) => format!("SQLite database {}", p.display()),
        DatabaseLocation::Postgres { .. } => "the PostgreSQL database".into(),
    }
}

/// How long a superseded signing key stays published: the longest token lifetime
/// plus clock skew, so every token it signed can still be verified.
pub fn key_retention() -> std::time::Duration {
    std::time::Duration::from_secs(MAX_ACCESS_TOKEN_TTL_SECS + LEEWAY_SECS)
}

/// A server running in the background (tests and embedding).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub public_url: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, waits for in-flight requests and closes the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task failed")?
    }
}

/// Binds and starts serving in the background.
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    let (tx, mut rx) = watch::channel(false);
    let (addr, public_url, fut) = prepare(settings, async move {
        let _ = rx.wait_for(|stop| *stop).await;
    })
    .await?;
    let task = tokio::spawn(fut);
    Ok(RunningServer { addr, public_url, shutdown: tx, task })
}

/// Serves until `shutdown` completes.
pub async fn serve(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (addr, _, fut) = prepare(settings, shutdown).await?;
    println!("ctxguard listening on http://{addr}");
    fut.await
}

async fn prepare(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, String, impl Future<Output = anyhow::Result<()>>)> {
    // reqwest (outbound fetches) runs on rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = open_and_bootstrap(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let kek = Arc::new(Kek::load_or_create(&settings.data_dir)?);
    let keyring = Arc::new(Keyring::load(db.clone(), kek, settings.signing_alg, key_retention()).await?);
    let tokens = Arc::new(AccessTokens::new(keyring.clone(), public_url.clone(), settings.access_token_ttl));
    let oauth = Arc::new(AuthServer {
        db: db.clone(),
        tokens: tokens.clone(),
        issuer: public_url.clone(),
        resources: vec![public_url.clone(), crate::mcp::http::resource(&public_url)],
        refresh_ttl: settings.refresh_token_ttl,
        registration: settings.registration,
        registration_token: settings.registration_token.clone(),
        registration_tenant: settings.registration_tenant.clone(),
        client_metadata: ClientMetadata::new(Fetcher::new(settings.client_metadata_allow_loopback)),
        cache: AuthServerCache::new(settings.credential_cache_entries),
        max_delegation_depth: settings.max_delegation_depth,
    });
    let limits = ContextLimits { max_history: settings.max_history };
    let authz = Authorizer::load_with_memo(settings.policy_dir.clone(), settings.decision_cache_entries)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let admin = AdminService::new(db.clone(), authz.clone());
    // Caches are checked against the change counters: sync once before serving.
    db.sync_changes().await.context("reading the change counters")?;
    let state = AppState {
        inner: Arc::new(AppInner {
            contexts: ContextService::new(
                context_store(&db, settings.context_cache_bytes),
                db.clone(),
                authz.clone(),
                limits,
            ),
            clients: ClientService::new(db.clone(), admin.clone()),
            admin,
            authz,
            oauth,
            authn: Authenticator::new(
                db.clone(),
                tokens,
                external_issuers(&settings, &*db, &public_url).await?,
                settings.credential_cache_entries,
            ),
            db: db.clone(),
            public_url: public_url.clone(),
            body_limits: BodyLimits { max_bytes: settings.max_body_bytes, max_depth: settings.max_json_depth },
            metrics: telemetry::metrics_handle(),
            openapi_json: http::openapi_json(),
        }),
    };
    let authz_for_signal = state.inner.authz.clone();
    let app = http::router(state, settings.request_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    let follower = tokio::spawn(changes::follow(db.clone(), store::SYNC_INTERVAL, stop_rx.clone()));
    let upkeep = tokio::spawn(telemetry::upkeep(telemetry::metrics_handle(), stop_rx.clone()));
    let reloader = tokio::spawn(reload_on_hangup(authz_for_signal, stop_rx.clone()));
    let sweeper = tokio::spawn(sweeper::run(db.clone(), settings.sweep_interval, settings.expiry_grace, stop_rx));
    let fut = async move {
        // Streamed (SSE) responses are written in small chunks; without TCP_NODELAY each
        // one can wait for the peer's delayed ACK (~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = sweeper.await;
        let _ = reloader.await;
        let _ = follower.await;
        let _ = upkeep.await;
        db.close().await;
        tracing::info!("shut down cleanly");
        result.context("server error")
    };
    Ok((addr, public_url, fut))
}

/// The context store the services use: cached unless the cache is turned off.
fn context_store(db: &Arc<dyn Database>, cache_bytes: u64) -> Arc<dyn ContextStore> {
    if cache_bytes == 0 { db.clone() } else { Arc::new(CachedContexts::new(db.clone(), cache_bytes)) }
}

/// Builds the configured external issuers; a tenant that does not exist stops start-up.
async fn external_issuers(
    settings: &Settings,
    db: &dyn Database,
    public_url: &str,
) -> anyhow::Result<Vec<ExternalIssuer>> {
    let mut out = Vec::new();
    for c in &settings.external_issuers {
        let tenant = db
            .tenant_by_name(&c.tenant)
            .await?
            .with_context(|| format!("external issuer {}: tenant {:?} does not exist", c.issuer, c.tenant))?;
        out.push(ExternalIssuer::new(c, tenant.id, public_url)?);
    }
    Ok(out)
}

/// Reloads the policy directory on every SIGHUP until `stop`; a set that does not
/// load is logged with its file and line and the previous set stays in force.
async fn reload_on_hangup(authz: Authorizer, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload policies with POST /admin/policies/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let authz = authz.clone();
                    match tokio::task::spawn_blocking(move || authz.reload()).await {
                        Ok(Ok(s)) => tracing::info!(generation = s.generation, policies = s.policies.len(), "SIGHUP: policies reloaded"),
                        Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: policy reload refused; the previous policies stay in force"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: policy reload failed"),
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (authz, stop.changed().await);
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
