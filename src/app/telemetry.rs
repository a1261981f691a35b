//! Logs (tracing, JSON by default, to stderr) and the Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::logs::{self, LogGuard};

/// Installs the global log subscriber once; later calls (tests starting several
/// servers in one process) keep the first. Lines go through the non-blocking writer of
/// [`crate::logs`]; keep the guard until the process ends (it flushes the queue).
pub fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("log: invalid filter {filter:?}: {e}"))?;
    let (writer, guard) = logs::install(match format {
        LogFormat::Json => logs::Format::Json,
        LogFormat::Text => logs::Format::Text,
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(guard)
}

/// The process-wide metrics recorder. The `metrics` facade has one global recorder,
/// so every server in the process renders from the same handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours renders
            // nothing, which the metrics test would catch.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Drains histogram samples into their buckets every few seconds. Without it the
/// recorder keeps every sample until the next scrape, so memory grows with traffic on
/// a server nobody scrapes (seen: +40 MB in a minute of load).
/// `sample` publishes gauges that are read rather than counted (cache sizes).
pub async fn upkeep(
    handle: PrometheusHandle,
    sample: impl Fn() + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
                metrics::counter!("ctxguard_log_lines_dropped_total").absolute(logs::dropped_lines());
                sample();
                handle.run_upkeep();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
