//! Rate limits (docs/anomaly.md, "Rate limits"): token buckets (GCRA, `governor`) per
//! route class, one per client address — checked before anything else — and one per
//! principal, checked once the credential is known. `/healthz` and `/readyz` are never
//! limited.
//!
//! Every limited response says where the client stands, in the fields of
//! draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` names the class's policies
//! (`"<class>-ip";q=<quota>;w=60` and `"<class>-principal";…`), `RateLimit` the
//! address's bucket (`"<class>-ip";r=<remaining>;t=<seconds until full>`) — or, on a
//! 429 from the principal's bucket, that one — and a 429 carries `Retry-After`.
//! Buckets are per process: with N replicas a client may get up to N times the quota.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter};

use crate::domain::PrincipalId;

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

type Limiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// What a request is, for rate limiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// Reading contexts (`GET`/`HEAD` under `/context`).
    Read,
    /// Changing contexts (every other method under `/context`).
    Write,
    Mcp,
    /// `/oauth/token`, `/oauth/revoke`, `/oauth/introspect`, `/oauth/register`.
    Token,
    /// The sign-in and consent pages (`/oauth/authorize`, `/oauth/login`, `/oauth/consent`).
    Login,
    Admin,
    /// Everything else: metadata documents, JWKS, the OpenAPI document, `/metrics`.
    Other,
}

const CLASSES: [RouteClass; 7] = [
    RouteClass::Read,
    RouteClass::Write,
    RouteClass::Mcp,
    RouteClass::Token,
    RouteClass::Login,
    RouteClass::Admin,
    RouteClass::Other,
];

impl RouteClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Write => "write",
            RouteClass::Mcp => "mcp",
            RouteClass::Token => "token",
            RouteClass::Login => "login",
            RouteClass::Admin => "admin",
            RouteClass::Other => "other",
        }
    }

    /// The class of a request; `None` for the probes, which are never limited.
    pub fn of(method: &Method, path: &str) -> Option<RouteClass> {
        let under =
            |prefix: &str| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        Some(match path {
            "/healthz" | "/readyz" => return None,
            _ if under("/context") => match *method {
                Method::GET | Method::HEAD => RouteClass::Read,
                _ => RouteClass::Write,
            },
            _ if under("/mcp") => RouteClass::Mcp,
            "/oauth/token" | "/oauth/revoke" | "/oauth/introspect" | "/oauth/register" => RouteClass::Token,
            "/oauth/authorize" | "/oauth/login" | "/oauth/consent" => RouteClass::Login,
            _ if under("/admin") => RouteClass::Admin,
            _ => RouteClass::Other,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests per minute for one class, per address and per principal (0: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassQuota {
    pub per_ip: u32,
    pub per_principal: u32,
}

/// The quotas of every class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub quotas: [ClassQuota; 7],
}

impl RateLimitSettings {
    pub fn quota(&self, class: RouteClass) -> ClassQuota {
        self.quotas[class.index()]
    }

    pub fn set(&mut self, class: RouteClass, quota: ClassQuota) {
        self.quotas[class.index()] = quota;
    }
}

impl Default for RateLimitSettings {
    /// Generous for agents at work, tight where credentials are guessed: per minute,
    /// per address / per principal. A flood of writes still reaches the anomaly rule
    /// (1200 per minute) before its rate limit.
    fn default() -> Self {
        let q = |per_ip, per_principal| ClassQuota { per_ip, per_principal };
        let mut s = RateLimitSettings { quotas: [q(0, 0); 7] };
        s.set(RouteClass::Read, q(60_000, 30_000));
        s.set(RouteClass::Write, q(30_000, 3_000));
        s.set(RouteClass::Mcp, q(60_000, 30_000));
        s.set(RouteClass::Token, q(600, 0));
        s.set(RouteClass::Login, q(120, 0));
        s.set(RouteClass::Admin, q(6_000, 3_000));
        s.set(RouteClass::Other, q(6_000, 0));
        s
    }
}

/// One bucket's answer: the policy it belongs to and where the client stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub class: RouteClass,
    /// `ip` or `principal`.
    pub scope: &'static str,
    pub quota: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again (`t`), or until the next request is
    /// allowed (for a refusal).
    pub reset_secs: u64,
    pub refused: bool,
    /// The class's `RateLimit-Policy` value.
    policy: Option<HeaderValue>,
}

impl Standing {
    /// `RateLimit-Policy` and `RateLimit` (and `Retry-After` on a refusal).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if let Some(policy) = &self.policy {
            headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
        }
        // One allocation, on every limited response.
        let mut value = String::with_capacity(40);
        let _ = write!(value, "\"{}-{}\";r={};t={}", self.class.as_str(), self.scope, self.remaining, self.reset_secs);
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(RATELIMIT.clone(), v);
        }
        if self.refused {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(self.reset_secs.max(1)));
        }
    }
}

struct Buckets {
    per_ip: Option<(Limiter<IpAddr>, u32)>,
    per_principal: Option<(Limiter<PrincipalId>, u32)>,
}

pub struct RateLimits {
    buckets: Vec<Buckets>,
    /// Each class's `RateLimit-Policy` value, built once.
    policies: Vec<Option<HeaderValue>>,
    clock: DefaultClock,
}

fn limiter<K: Clone + std::hash::Hash + Eq>(per_minute: u32) -> Option<(Limiter<K>, u32)> {
    let n = NonZeroU32::new(per_minute)?;
    Some((RateLimiter::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>(), per_minute))
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let buckets = CLASSES
            .iter()
            .map(|c| {
                let q = settings.quota(*c);
                Buckets { per_ip: limiter(q.per_ip), per_principal: limiter(q.per_principal) }
            })
            .collect();
        let policies = CLASSES
            .iter()
            .map(|c| {
                let q = settings.quota(*c);
                let items: Vec<String> = [("ip", q.per_ip), ("principal", q.per_principal)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(scope, n)| format!("\"{}-{scope}\";q={n};w=60", c.as_str()))
                    .collect();
                (!items.is_empty()).then(|| HeaderValue::from_str(&items.join(", ")).ok()).flatten()
            })
            .collect();
        Self { buckets, policies, clock: DefaultClock::default() }
    }

    /// Takes one request from the address's bucket of `class` (`None`: unlimited).
    pub fn check_ip(&self, class: RouteClass, ip: IpAddr) -> Option<Standing> {
        let (limiter, quota) = self.buckets[class.index()].per_ip.as_ref()?;
        Some(self.standing(limiter.check_key(&ip), class, "ip", *quota))
    }

    /// Takes one request from the principal's bucket of `class` (`None`: unlimited).
    pub fn check_principal(&self, class: RouteClass, principal: PrincipalId) -> Option<Standing> {
        let (limiter, quota) = self.buckets[class.index()].per_principal.as_ref()?;
        Some(self.standing(limiter.check_key(&principal), class, "principal", *quota))
    }

    fn standing(
        &self,
        outcome: Result<StateSnapshot, NotUntil<<DefaultClock as Clock>::Instant>>,
        class: RouteClass,
        scope: &'static str,
        quota: u32,
    ) -> Standing {
        // A full bucket refills at quota per minute: one request every 60/quota s.
        let per_request = Duration::from_secs(60) / quota.max(1);
        let policy = self.policies[class.index()].clone();
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = quota.saturating_sub(remaining);
                let reset_secs = (per_request * missing).as_secs_f64().ceil() as u64;
                Standing { class, scope, quota, remaining, reset_secs, refused: false, policy }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now()).as_secs_f64().ceil() as u64;
                metrics::counter!("ctxguard_rate_limited_total", "class" => class.as_str(), "scope" => scope)
                    .increment(1);
                Standing { class, scope, quota, remaining: 0, reset_secs: wait, refused: true, policy }
            }
        }
    }

    /// Forgets buckets that are full again (bounds the memory many addresses hold).
    pub fn forget_idle(&self) {
        for b in &self.buckets {
            if let Some((l, _)) = &b.per_ip {
                l.retain_recent();
            }
            if let Some((l, _)) = &b.per_principal {
                l.retain_recent();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_path_and_method() {
        let of = |m: Method, p: &str| RouteClass::of(&m, p);
        assert_eq!(of(Method::GET, "/healthz"), None);
        assert_eq!(of(Method::GET, "/readyz"), None);
        assert_eq!(of(Method::GET, "/context/x"), Some(RouteClass::Read));
        assert_eq!(of(Method::POST, "/context"), Some(RouteClass::Write));
        assert_eq!(of(Method::DELETE, "/context/x/grants/y"), Some(RouteClass::Write));
        assert_eq!(of(Method::GET, "/contextual"), Some(RouteClass::Other));
        assert_eq!(of(Method::POST, "/mcp"), Some(RouteClass::Mcp));
        assert_eq!(of(Method::POST, "/oauth/token"), Some(RouteClass::Token));
        assert_eq!(of(Method::POST, "/oauth/login"), Some(RouteClass::Login));
        assert_eq!(of(Method::GET, "/admin/audit"), Some(RouteClass::Admin));
        assert_eq!(of(Method::GET, "/.well-known/oauth-authorization-server"), Some(RouteClass::Other));
        assert_eq!(of(Method::GET, "/oauth/jwks"), Some(RouteClass::Other));
    }

    #[test]
    fn a_bucket_counts_down_then_refuses_with_a_wait() {
        let mut s = RateLimitSettings { quotas: [ClassQuota { per_ip: 0, per_principal: 0 }; 7] };
        s.set(RouteClass::Token, ClassQuota { per_ip: 3, per_principal: 0 });
        let limits = RateLimits::new(&s);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let seen: Vec<(u32, bool)> =
            (0..4).map(|_| limits.check_ip(RouteClass::Token, ip).unwrap()).map(|s| (s.remaining, s.refused)).collect();
        assert_eq!(seen, [(2, false), (1, false), (0, false), (0, true)]);
        let refused = limits.check_ip(RouteClass::Token, ip).unwrap();
        assert!((1..=20).contains(&refused.reset_secs), "one request per 20 s: {refused:?}");
        assert!(limits.check_ip(RouteClass::Token, "203.0.113.10".parse().unwrap()).is_some_and(|s| !s.refused));
        assert!(limits.check_ip(RouteClass::Read, ip).is_none(), "unlimited class");
        assert!(limits.check_principal(RouteClass::Token, PrincipalId::new_random()).is_none());
    }
}
