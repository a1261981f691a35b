//! The anomaly webhook (docs/anomaly.md): each response is POSTed as JSON to the
//! configured URL with an HMAC-SHA256 signature, retried with exponential backoff.
//!
//! `Ctxguard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`:
//! the receiver recomputes it over the raw body, compares in constant time, and refuses
//! a `t` far from its clock (a replayed delivery). The shape follows the common
//! webhook-signing practice (timestamp bound into the MAC) so that stock verifiers fit.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::Rule;
use crate::crypto::Secret;
use crate::domain::audit::AuditEvent;

/// Deliveries waiting; beyond that new notices are dropped (and counted).
const QUEUE: usize = 1024;
/// Attempts per notice: waits of 1, 2, 4, 8 and 16 s between them.
const ATTEMPTS: u32 = 6;
const TIMEOUT: Duration = Duration::from_secs(10);

pub const SIGNATURE_HEADER: &str = "ctxguard-signature";

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub url: url::Url,
    pub secret: std::sync::Arc<Secret>,
}

/// What is posted: the audit record's facts about the response, never a credential.
#[derive(Debug, Serialize)]
pub struct Notice {
    /// `anomaly.lockout`, `anomaly.auto_revoke` or `anomaly.detected`.
    pub event: &'static str,
    pub rule: &'static str,
    /// `ip:<address>` or `principal:<id>`.
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub reason: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Notice {
    pub fn of(event: &AuditEvent, rule: Rule) -> Self {
        let record = event.render().record;
        Notice {
            event: event.action.as_str(),
            rule: rule.as_str(),
            subject: record.target.unwrap_or_default(),
            tenant: record.tenant,
            reason: record.reason.unwrap_or_default(),
            time: record.time,
            request_id: record.request_id,
        }
    }
}

pub struct Webhook {
    queue: mpsc::Sender<Notice>,
}

impl Webhook {
    pub fn start(settings: WebhookSettings) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver_all(settings, rx));
        Self { queue }
    }

    /// Queues a notice; never waits (a response must not hang on a slow receiver).
    pub fn post(&self, notice: Notice) {
        if self.queue.try_send(notice).is_err() {
            metrics::counter!("ctxguard_anomaly_webhook_dropped_total").increment(1);
            tracing::error!("anomaly webhook: queue full, a notice was dropped");
        }
    }
}

/// The signature header's value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &Secret, t: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("t={t},v1={}", crate::domain::audit::hex(&tag))
}

async fn deliver_all(settings: WebhookSettings, mut rx: mpsc::Receiver<Notice>) {
    let client = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "anomaly webhook: no HTTP client"),
    };
    while let Some(notice) = rx.recv().await {
        let Ok(body) = serde_json::to_vec(&notice) else { continue };
        deliver(&client, &settings, &body).await;
    }
}

async fn deliver(client: &reqwest::Client, settings: &WebhookSettings, body: &[u8]) {
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let t = chrono::Utc::now().timestamp();
        let sent = client
            .post(settings.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&settings.secret, t, body))
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("ctxguard_anomaly_webhook_deliveries_total", "result" => "ok").increment(1);
                return;
            }
            Ok(r) => tracing::warn!(status = r.status().as_u16(), attempt, "anomaly webhook: delivery refused"),
            Err(e) => tracing::warn!(error = %e, attempt, "anomaly webhook: delivery failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    metrics::counter!("ctxguard_anomaly_webhook_deliveries_total", "result" => "failed").increment(1);
    tracing::error!("anomaly webhook: a notice was not delivered after {ATTEMPTS} attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2's key and message, with our "<t>." prefix in front.
    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        let secret = Secret::new("Jefe".into());
        let got = signature(&secret, 0, b"what do ya want for nothing?");
        // HMAC-SHA256("Jefe", "0.what do ya want for nothing?"), computed independently
        // with Python's hmac module.
        assert_eq!(got, format!("t=0,v1={}", "37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"));
    }
}
