//! Anomaly response (docs/anomaly.md): rules that count events per subject in a window
//! and cut the subject off when a count reaches its threshold, by themselves.
//!
//! - Failed authentications from one address, or as one principal (sign-in, client
//!   secret) → a lockout: 429 with `Retry-After`, each consecutive one twice as long.
//! - Context writes by one principal beyond its threshold, or a replayed refresh token →
//!   the principal is suspended: its access tokens and refresh families are revoked and
//!   every API key it holds is refused until an administrator lifts the suspension.
//!
//! Every response is written to the audit log and, when configured, posted to a
//! webhook. The state lives in the database (lockouts, suspensions, counters summed
//! over replicas), so it holds across restarts and replicas; each process mirrors the
//! active lockouts and refreshes the mirror every second.

mod tally;
pub mod webhook;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::audit::Audit;
use crate::domain::anomaly::{Lockout, Subject};
use crate::domain::audit::{Action, Actor, AuditEvent, Channel, Outcome, RequestMeta, Target};
use crate::domain::{Principal, PrincipalId, TenantId, Timestamp};
use crate::store::Database;
use tally::{Count, Key, Tally};
use webhook::Webhook;

/// How often each process sums its counts into the database and re-reads the lockouts.
const REFRESH: Duration = Duration::from_secs(1);

/// The rules, each with its threshold (events per window; 0 turns the rule off).
#[derive(Clone, Debug)]
pub struct AnomalySettings {
    pub auth_failures_per_source: u64,
    pub auth_failures_per_principal: u64,
    pub auth_window: Duration,
    /// The first lockout; each consecutive one doubles, up to `lockout_max`.
    pub lockout: Duration,
    pub lockout_max: Duration,
    pub writes_per_principal: u64,
    pub writes_window: Duration,
    /// Suspend (revoke) on the write rule and on refresh-token replay; when false the
    /// rules still fire, and are recorded and posted, but cut nothing off.
    pub auto_revoke: bool,
    pub refresh_replay_suspends: bool,
    pub webhook: Option<webhook::WebhookSettings>,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            auth_failures_per_source: 30,
            auth_failures_per_principal: 10,
            auth_window: Duration::from_secs(300),
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(3600),
            writes_per_principal: 1200,
            writes_window: Duration::from_secs(60),
            auto_revoke: true,
            refresh_replay_suspends: true,
            webhook: None,
        }
    }
}

impl AnomalySettings {
    /// A counted rule's threshold (0: off; rules that are not counted have none).
    fn threshold(&self, rule: Rule) -> u64 {
        match rule {
            Rule::AuthFailuresPerSource => self.auth_failures_per_source,
            Rule::AuthFailuresPerPrincipal => self.auth_failures_per_principal,
            Rule::WritesPerPrincipal => self.writes_per_principal,
            Rule::RefreshReplay | Rule::Integrity => 0,
        }
    }

    /// A counted rule's window, in milliseconds.
    fn window_ms(&self, rule: Rule) -> i64 {
        let window = match rule {
            Rule::WritesPerPrincipal => self.writes_window,
            _ => self.auth_window,
        };
        window.as_millis() as i64
    }
}

/// A rule, by the name the counters, the log and the metrics use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    AuthFailuresPerSource,
    AuthFailuresPerPrincipal,
    WritesPerPrincipal,
    RefreshReplay,
    /// Stored data that fails its integrity check.
    Integrity,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthFailuresPerSource => "auth_failures_per_source",
            Rule::AuthFailuresPerPrincipal => "auth_failures_per_principal",
            Rule::WritesPerPrincipal => "writes_per_principal",
            Rule::RefreshReplay => "refresh_replay",
            Rule::Integrity => "integrity",
        }
    }
}

/// A refusal because the subject is locked out: retry after this many seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedOut {
    pub retry_after_secs: u64,
}

/// The handle every way in holds. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AnomalySettings,
    store: Arc<dyn Database>,
    audit: Audit,
    tally: Tally,
    /// Active lockouts: subject → until (ms). Read on every authentication; never
    /// held across an await.
    locks: RwLock<HashMap<Subject, i64>>,
    /// Bumped by every lift: a refresh that read the lockouts before a lift does not
    /// put the lifted one back into the mirror.
    lifts: std::sync::atomic::AtomicU64,
    webhook: Option<Webhook>,
}

impl Guard {
    /// Starts this process's guard: a task sums counts into the database and mirrors
    /// the active lockouts every second (it ends when the last handle is dropped).
    pub fn start(store: Arc<dyn Database>, audit: Audit, settings: AnomalySettings) -> Self {
        let webhook = settings.webhook.clone().map(Webhook::start);
        let inner = Arc::new(Inner {
            settings,
            store,
            audit,
            tally: Tally::default(),
            locks: RwLock::default(),
            lifts: Default::default(),
            webhook,
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// Whether `subject` is locked out now.
    pub fn locked(&self, subject: &Subject) -> Result<(), LockedOut> {
        let locks = self.inner.locks.read().unwrap_or_else(|p| p.into_inner());
        if locks.is_empty() {
            return Ok(());
        }
        let Some(&until) = locks.get(subject) else { return Ok(()) };
        let left = until - Timestamp::now().millis();
        if left <= 0 {
            return Ok(());
        }
        Err(LockedOut { retry_after_secs: (left as u64).div_ceil(1000) })
    }

    /// Whether a request from `ip` may authenticate (as `principal`, when it names one).
    pub fn may_authenticate(&self, ip: Option<IpAddr>, principal: Option<PrincipalId>) -> Result<(), LockedOut> {
        if let Some(ip) = ip {
            self.locked(&Subject::Source(ip))?;
        }
        if let Some(p) = principal {
            self.locked(&Subject::Principal(p))?;
        }
        Ok(())
    }

    /// Counts a failed authentication (`reason`: a fixed text, the metric's label) from
    /// the request's address and, when the credential named one, as `principal`; locks
    /// the subject out at the threshold.
    pub async fn auth_failed(&self, request: &RequestMeta, principal: Option<&Principal>, reason: &'static str) {
        metrics::counter!("ctxguard_auth_failures_total", "reason" => reason).increment(1);
        if let Some(ip) = request.ip {
            let key = Key { rule: Rule::AuthFailuresPerSource, subject: Subject::Source(ip) };
            self.count_failure(key, None, request).await;
        }
        if let Some(p) = principal {
            let key = Key { rule: Rule::AuthFailuresPerPrincipal, subject: Subject::Principal(p.id) };
            self.count_failure(key, Some(p.tenant), request).await;
        }
    }

    async fn count_failure(&self, key: Key, tenant: Option<TenantId>, request: &RequestMeta) {
        let s = &self.inner.settings;
        let threshold = s.threshold(key.rule);
        if threshold == 0 {
            return;
        }
        let count = self.inner.tally.hit(key, Timestamp::now().millis(), s.window_ms(key.rule));
        if count.total >= threshold && self.locked(&key.subject).is_ok() {
            self.lock_out(key, tenant, count.total, request).await;
        }
    }

    /// Locks `key.subject` out: the next lockout lasts twice as long as the last one,
    /// unless that one ended more than `lockout_max` ago.
    async fn lock_out(&self, key: Key, tenant: Option<TenantId>, count: u64, request: &RequestMeta) {
        let s = &self.inner.settings;
        let now = Timestamp::now();
        let previous = match self.inner.store.lockout(&key.subject).await {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "anomaly: the lockout could not be read"),
        };
        if let Some(active) = previous.as_ref().filter(|l| l.is_active_at(now)) {
            self.mirror(active);
            return;
        }
        let max_ms = s.lockout_max.as_millis() as i64;
        let strikes = match &previous {
            Some(l) if now.millis() - l.until.millis() < max_ms => l.strikes.saturating_add(1),
            _ => 1,
        };
        let base = s.lockout.as_millis() as i64;
        let length = base.saturating_mul(1i64 << (strikes - 1).min(30)).min(max_ms.max(base));
        let whom = match key.subject {
            Subject::Source(_) => "from this address",
            Subject::Principal(_) => "as this principal",
        };
        let reason = format!(
            "{count} failed authentications {whom} within {} s (rule {}): locked out for {} s",
            s.auth_window.as_secs(),
            key.rule.as_str(),
            length / 1000
        );
        let lockout = Lockout {
            subject: key.subject,
            tenant,
            since: now,
            until: Timestamp::from_millis(now.millis() + length),
            strikes,
            reason: reason.clone(),
        };
        if let Err(e) = self.inner.store.put_lockout(&lockout).await {
            return tracing::error!(error = %e, "anomaly: the lockout could not be stored");
        }
        self.mirror(&lockout);
        tracing::warn!(subject = %key.subject, strikes, seconds = length / 1000, "anomaly: locked out");
        metrics::counter!("ctxguard_anomaly_lockouts_total", "rule" => key.rule.as_str()).increment(1);
        let actor = match key.subject {
            Subject::Principal(p) => Actor { tenant, principal: Some(p), ..Actor::default() },
            Subject::Source(_) => Actor::default(),
        };
        self.respond(
            Action::AnomalyLockout,
            actor,
            key.rule,
            Target::Subject(key.subject),
            Outcome::Deny(reason),
            request,
        )
        .await;
    }

    fn mirror(&self, lockout: &Lockout) {
        let mut locks = self.inner.locks.write().unwrap_or_else(|p| p.into_inner());
        locks.insert(lockout.subject, lockout.until.millis());
    }

    /// Forgets a lockout here at once (an administrator lifted it); other processes
    /// follow within a second.
    pub fn forget(&self, subject: &Subject) {
        use std::sync::atomic::Ordering;
        self.inner.lifts.fetch_add(1, Ordering::SeqCst);
        self.inner.locks.write().unwrap_or_else(|p| p.into_inner()).remove(subject);
        // Failures counted here but not yet added to the database would otherwise
        // lock the subject again at the next refresh.
        self.inner.tally.forget(|key| {
            key.subject == *subject && matches!(key.rule, Rule::AuthFailuresPerSource | Rule::AuthFailuresPerPrincipal)
        });
    }

    /// Counts a context write (create, replace, patch, append, delete) by `principal`;
    /// at the threshold the principal is suspended.
    pub async fn wrote(&self, principal: &Principal, request: &RequestMeta) {
        let key = Key { rule: Rule::WritesPerPrincipal, subject: Subject::Principal(principal.id) };
        if self.inner.settings.threshold(key.rule) == 0 {
            return;
        }
        let count = self.inner.tally.hit(key, Timestamp::now().millis(), self.inner.settings.window_ms(key.rule));
        self.writes_counted(key, principal, count, "", request).await;
    }

    /// At the write rule's threshold, once a window: suspends the principal. `how`
    /// says how the count came together, for the reason.
    async fn writes_counted(&self, key: Key, principal: &Principal, count: Count, how: &str, request: &RequestMeta) {
        let s = &self.inner.settings;
        let threshold = s.threshold(key.rule);
        if count.total < threshold || count.fired {
            return;
        }
        self.inner.tally.mark_fired(key, Timestamp::now().millis(), s.window_ms(key.rule));
        let reason = format!(
            "{} context writes within {} s{how} (rule {}, threshold {threshold})",
            count.total,
            s.writes_window.as_secs(),
            key.rule.as_str(),
        );
        let p = principal;
        self.suspend(p.id, p.tenant, p.platform_admin, key.rule, reason, request).await;
    }

    /// A spent refresh token was presented again: one of its holders is a thief.
    pub async fn refresh_replayed(&self, principal: PrincipalId, tenant: TenantId, request: &RequestMeta) {
        if !self.inner.settings.refresh_replay_suspends {
            return;
        }
        let operator = matches!(self.inner.store.principal(principal).await, Ok(Some(p)) if p.platform_admin);
        let reason = "a spent refresh token was presented again (rule refresh_replay)".to_string();
        self.suspend(principal, tenant, operator, Rule::RefreshReplay, reason, request).await;
    }

    /// Suspends the principal and revokes its tokens — unless `auto_revoke` is off or
    /// it is the platform operator (whose suspension would lock the operator out of
    /// every recovery through the API): then the detection is recorded and posted only.
    async fn suspend(
        &self,
        principal: PrincipalId,
        tenant: TenantId,
        operator: bool,
        rule: Rule,
        reason: String,
        request: &RequestMeta,
    ) {
        let actor = Actor { tenant: Some(tenant), principal: Some(principal), ..Actor::default() };
        let key = Key { rule, subject: Subject::Principal(principal) };
        if !self.inner.settings.auto_revoke || operator {
            let why =
                if operator { "the platform operator is never suspended automatically" } else { "auto_revoke is off" };
            tracing::warn!(%principal, rule = rule.as_str(), "anomaly detected; {why}");
            let outcome = Outcome::Flagged(format!("{reason}; not suspended: {why}"));
            return self
                .respond(Action::AnomalyDetected, actor, rule, Target::Subject(key.subject), outcome, request)
                .await;
        }
        let now = Timestamp::now();
        let store = &self.inner.store;
        let suspended = async {
            if !store.suspend_principal(principal, now, &reason).await? {
                return Ok(false);
            }
            store.revoke_principal_tokens(principal, now).await?;
            store.revoke_principal_families(principal, now).await?;
            Ok::<_, crate::domain::StoreError>(true)
        };
        match suspended.await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(%principal, rule = rule.as_str(), "anomaly: principal suspended, tokens revoked");
                metrics::counter!("ctxguard_anomaly_auto_revocations_total", "rule" => rule.as_str()).increment(1);
                let target = Target::Subject(key.subject);
                self.respond(Action::AnomalyAutoRevoke, actor, rule, target, Outcome::Deny(reason), request).await;
            }
            Err(e) => tracing::error!(error = %e, %principal, "anomaly: the suspension could not be stored"),
        }
    }

    /// Stored data that does not read back as it was written (a row edited behind the
    /// server's back): recorded as `anomaly.detected` (`fail`, rule `integrity`) and
    /// posted. Nobody is cut off: the reader who met it did not cause it.
    pub async fn integrity_error(&self, actor: Actor, target: Target, why: &str, request: &RequestMeta) {
        tracing::error!(target = ?target, why, "anomaly: stored data failed its integrity check");
        metrics::counter!("ctxguard_anomaly_integrity_errors_total").increment(1);
        let outcome = Outcome::Fail(format!("stored data failed its integrity check (rule integrity): {why}"));
        self.respond(Action::AnomalyDetected, actor, Rule::Integrity, target, outcome, request).await;
    }

    /// Records a response in the audit log (as the server's own act) and posts it.
    async fn respond(
        &self,
        action: Action,
        actor: Actor,
        rule: Rule,
        target: Target,
        outcome: Outcome,
        request: &RequestMeta,
    ) {
        let request = RequestMeta { channel: Channel::System, ..request.clone() };
        let event = AuditEvent::new(action, actor, Some(target), outcome, request);
        if let Some(hook) = &self.inner.webhook {
            hook.post(webhook::Notice::of(&event, rule));
        }
        let _ = self.inner.audit.record(event).await;
    }
}

/// Every [`REFRESH`]: adds this process's counts to the database (a rule another
/// replica's events pushed over its threshold fires here too) and mirrors the active
/// lockouts.
async fn refresh_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purged_at = 0i64;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let guard = Guard { inner };
        if let Err(e) = guard.refresh(&mut purged_at).await {
            tracing::warn!(error = %e, "anomaly: counters or lockouts could not be refreshed");
        }
    }
}

impl Guard {
    async fn refresh(&self, purged_at: &mut i64) -> Result<(), crate::domain::StoreError> {
        let s = &self.inner.settings;
        let now = Timestamp::now();
        for due in self.inner.tally.drain(now.millis(), |rule| s.window_ms(rule)) {
            let total = self
                .inner
                .store
                .add_to_tally(due.key.rule.as_str(), &due.key.subject.to_string(), due.window_ms, due.add)
                .await?;
            let Some(count) = self.inner.tally.settle(due.key, due.window_ms, total) else { continue };
            let threshold = s.threshold(due.key.rule);
            if threshold == 0 || count.total < threshold {
                continue;
            }
            let request = RequestMeta::default();
            match (due.key.rule, due.key.subject) {
                (Rule::WritesPerPrincipal, Subject::Principal(id)) if !count.fired => {
                    if let Some(p) = self.inner.store.principal(id).await? {
                        self.writes_counted(due.key, &p, count, " across replicas", &request).await;
                    }
                }
                (Rule::AuthFailuresPerSource | Rule::AuthFailuresPerPrincipal, subject)
                    if self.locked(&subject).is_ok() =>
                {
                    let tenant = match subject {
                        Subject::Principal(id) => self.inner.store.principal(id).await?.map(|p| p.tenant),
                        Subject::Source(_) => None,
                    };
                    self.lock_out(due.key, tenant, count.total, &request).await;
                }
                _ => {}
            }
        }
        let lifts = self.inner.lifts.load(std::sync::atomic::Ordering::SeqCst);
        let active = self.inner.store.active_lockouts(now, None).await?;
        let mirrored: HashMap<Subject, i64> = active.iter().map(|l| (l.subject, l.until.millis())).collect();
        {
            let mut locks = self.inner.locks.write().unwrap_or_else(|p| p.into_inner());
            // A lift since the read: the next refresh mirrors the database again.
            if self.inner.lifts.load(std::sync::atomic::Ordering::SeqCst) == lifts {
                *locks = mirrored;
            }
        }
        let oldest = s.window_ms(Rule::WritesPerPrincipal).max(s.window_ms(Rule::AuthFailuresPerSource));
        if now.millis() - *purged_at > 60_000 {
            *purged_at = now.millis();
            self.inner.store.purge_tallies(now.millis() - 2 * oldest).await?;
        }
        Ok(())
    }
}
