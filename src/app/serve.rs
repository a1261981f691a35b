//! Runs the server: the [`App`] and its serving parts → router, plus the background
//! tasks (change-counter follower, metrics upkeep, policy reload on SIGHUP, expiry
//! sweeper), and a graceful shutdown that lets in-flight requests finish and closes the
//! database cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{App, sweeper, telemetry};
use crate::authz::Authorizer;
use crate::config::Settings;
use crate::http::rate_limit::RateLimits;
use crate::http::{self, AppInner, AppState, BodyLimits};
use crate::store::{self, changes};

/// A server running in the background (tests and embedding).
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
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
    let p = prepare(settings, async move {
        let _ = rx.wait_for(|stop| *stop).await;
    })
    .await?;
    let task = tokio::spawn(p.fut);
    Ok(RunningServer { addr: p.addr, metrics_addr: p.metrics_addr, public_url: p.public_url, shutdown: tx, task })
}

/// Serves until `shutdown` completes.
pub async fn serve(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let p = prepare(settings, shutdown).await?;
    // Announced on stdout for whoever started us; a reader that went away (a closed
    // pipe) must not take the server down with it.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ctxguard listening on http://{}", p.addr);
        if let Some(m) = p.metrics_addr {
            let _ = writeln!(out, "ctxguard metrics on http://{m}/metrics");
        }
        let _ = out.flush();
    }
    p.fut.await
}

/// A server bound and ready to run.
struct Prepared<F> {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    public_url: String,
    fut: F,
}

async fn prepare(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Prepared<impl Future<Output = anyhow::Result<()>>>> {
    // reqwest (outbound fetches) runs on rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The recorder first: handles made before it exists (some are made once and kept)
    // would record nothing.
    let _ = telemetry::metrics_handle();
    let app = App::open(settings).await?;
    let s = &app.settings;
    let listener =
        tokio::net::TcpListener::bind(s.bind).await.with_context(|| format!("cannot listen on {}", s.bind))?;
    let addr = listener.local_addr()?;
    let public_url = s.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let metrics_listener = match s.metrics_bind {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("cannot listen on {m} for metrics (metrics_bind; \"off\" turns it off)"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let serving = app.serving(&public_url).await?;
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    // Caches are checked against the change counters: sync once before serving.
    app.db.sync_changes().await.context("reading the change counters")?;
    // Where the database announces every replica's writes, subscribers hear them from it.
    let feed = app.db.context_feed().await.context("listening for context changes")?;
    if feed.is_some() {
        app.contexts.follow_database_feed();
    }
    let rate_limits = Arc::new(RateLimits::new(&s.rate_limits));
    let state = AppState {
        inner: Arc::new(AppInner {
            contexts: app.contexts.clone(),
            clients: app.clients.clone(),
            admin: app.admin.clone(),
            authz: app.authz.clone(),
            oauth: serving.oauth,
            authn: serving.authn,
            db: app.db.clone(),
            public_url: public_url.clone(),
            body_limits: BodyLimits { max_bytes: s.max_body_bytes, max_depth: s.max_json_depth },
            metrics: telemetry::metrics_handle(),
            openapi_json: http::openapi_json(),
            stopping: stopping_rx,
            mcp_fast_path: s.mcp_fast_path,
            audit: app.audit.clone(),
            rate_limits: rate_limits.clone(),
        }),
    };
    let router = http::router(state, s.request_timeout)?;
    tokio::spawn(forget_idle_buckets(Arc::downgrade(&rate_limits)));
    let db = app.db.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let follower = tokio::spawn(changes::follow(db.clone(), store::SYNC_INTERVAL, stop_rx.clone()));
    let cache = app.context_cache.clone();
    let sample = move || {
        if let Some(c) = &cache {
            c.report();
        }
    };
    metrics::counter!("ctxguard_log_lines_dropped_total").absolute(crate::logs::dropped_lines());
    let upkeep = tokio::spawn(telemetry::upkeep(telemetry::metrics_handle(), sample, stop_rx.clone()));
    let reloader = tokio::spawn(reload_on_hangup(app.authz.clone(), stop_rx.clone()));
    let keys = tokio::spawn(follow_keys(app.keyring.clone(), stop_rx.clone()));
    let announcer = feed.map(|f| tokio::spawn(announce_changes(f, app.contexts.clone(), stop_rx.clone())));
    let metrics_server = metrics_listener.map(|l| {
        let mut stop = stop_rx.clone();
        let router = http::ops::metrics_router(telemetry::metrics_handle());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(l, router).with_graceful_shutdown(stopped).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        })
    });
    let sweeper = tokio::spawn(sweeper::run(db.clone(), s.sweep_interval, s.expiry_grace, stop_rx));
    let fut = async move {
        // Streamed (SSE) responses are written in small chunks; without TCP_NODELAY each
        // one can wait for the peer's delayed ACK (~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = sweeper.await;
        let _ = keys.await;
        if let Some(a) = announcer {
            let _ = a.await;
        }
        if let Some(m) = metrics_server {
            let _ = m.await;
        }
        let _ = reloader.await;
        let _ = follower.await;
        let _ = upkeep.await;
        app.close().await;
        tracing::info!("shut down cleanly");
        result.context("server error")
    };
    Ok(Prepared { addr, metrics_addr, public_url, fut })
}

/// Passes the database's change feed on to this process's subscribers. A lost
/// connection is re-established by the feed; an error is logged and retried after a
/// pause rather than ending subscriptions.
async fn announce_changes(
    mut feed: crate::store::feed::ContextFeed,
    contexts: crate::service::ContextService,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            next = feed.next() => next,
            _ = stop.wait_for(|s| *s) => return,
        };
        match next {
            Ok(change) => contexts.publish(change),
            Err(e) => {
                tracing::warn!(error = %e, "the context change feed failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// How often each replica re-reads the signing keys: a key rotated by another replica
/// or the CLI is used and honoured here within this, and a retired one dropped.
const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(5);

async fn follow_keys(keyring: Arc<crate::jwt::Keyring>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(KEY_RELOAD) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = keyring.reload().await {
            tracing::warn!(error = %e, "reloading the signing keys failed; will retry");
        }
    }
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

/// Drops the rate-limit buckets that are full again, once a minute, so that the many
/// addresses a busy server sees do not accumulate (ends with the server).
async fn forget_idle_buckets(limits: std::sync::Weak<RateLimits>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Some(limits) = limits.upgrade() else { return };
        limits.forget_idle();
    }
}
