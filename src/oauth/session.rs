//! Browser sessions of the login/consent pages: the session id is a random secret the
//! browser keeps in a cookie (set by the endpoint); only its hash is stored, so every
//! replica sees the session. Passwords are checked in constant time per user name.

use crate::domain::audit::{self, Action as Audited, Actor, AuditEvent, Outcome, RequestMeta};
use std::sync::OnceLock;

use super::server::AuthServer;
use crate::authn::password;
use crate::crypto::{Secret, token};
use crate::domain::{OAuthClient, Principal, PrincipalId, PrincipalKind, StoreError, Timestamp};
use crate::store::BrowserSession;

pub const SESSION_TTL_SECS: i64 = 8 * 3600;

/// A password hash to verify against when the user does not exist, so that the
/// response time does not reveal which user names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(b"decoy password that never matches")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The answer to a sign-in.
pub enum SignIn {
    Welcome(Principal),
    /// Wrong tenant, user name or password (which one is not said).
    Refused,
    /// Too many failures from this address or for this user (docs/anomaly.md).
    LockedOut(crate::anomaly::LockedOut),
}

impl AuthServer {
    /// The signed-in user of session `id`, if the session is valid and the user may use
    /// this client (same tenant, enabled).
    pub async fn current_session(&self, id: &str, client: &OAuthClient) -> Option<(Principal, BrowserSession)> {
        let s = self.db.session(&token::token_hash(id)).await.ok()??;
        if s.expires_at <= Timestamp::now() {
            return None;
        }
        let p = self.db.principal(s.principal).await.ok()??;
        (p.is_active() && (client.serves_every_tenant() || p.tenant == client.tenant)).then_some((p, s))
    }

    /// A tenant's name, for the consent page.
    pub async fn tenant_name(&self, id: crate::domain::TenantId) -> Option<String> {
        self.db.tenant(id).await.ok().flatten().map(|t| t.name)
    }

    /// Checks a user's password in `tenant` (by name; the client's own tenant when none
    /// is given). A client an administrator made serves its tenant only; another tenant
    /// named there is treated like an unknown user. `Ok(None)`: wrong tenant, name or
    /// password — all three cost the same (a password hash is verified either way).
    pub async fn check_password(
        &self,
        client: &OAuthClient,
        tenant: Option<&str>,
        username: &str,
        pw: &str,
        meta: RequestMeta,
    ) -> Result<SignIn, StoreError> {
        let guard = self.authn.guard();
        if let Err(locked) = guard.may_authenticate(meta.ip, None) {
            return Ok(SignIn::LockedOut(locked));
        }
        let tenant = match tenant.map(str::trim).filter(|t| !t.is_empty()) {
            None => Some(client.tenant),
            Some(name) => self
                .db
                .tenant_by_name(name)
                .await?
                .map(|t| t.id)
                .filter(|id| client.serves_every_tenant() || *id == client.tenant),
        };
        let principal = match tenant {
            Some(t) => self.db.principal_by_name(t, username).await?,
            None => None,
        }
        .filter(|p| p.kind == PrincipalKind::User && p.is_active());
        if let Some(Err(locked)) = principal.as_ref().map(|p| guard.may_authenticate(None, Some(p.id))) {
            return Ok(SignIn::LockedOut(locked));
        }
        let stored = match &principal {
            Some(p) => self.db.password_hash(p.id).await?,
            None => None,
        };
        let has_hash = stored.is_some();
        let phc = match stored {
            Some(phc) => phc,
            // The first use computes the decoy (an argon2 hash): off the async workers.
            None => tokio::task::spawn_blocking(|| decoy_hash().to_string()).await.unwrap_or_default(),
        };
        let ok = password::verify(Secret::new(pw.to_string()), phc).await;
        let signed_in = if ok && has_hash { principal.clone() } else { None };
        self.record_login(client, tenant, username, signed_in.as_ref(), meta.clone()).await?;
        Ok(match signed_in {
            Some(p) => SignIn::Welcome(p),
            None => {
                guard.auth_failed(&meta, principal.as_ref(), "wrong tenant, user name or password").await;
                SignIn::Refused
            }
        })
    }

    /// A sign-in's record: a success is committed before the session starts.
    async fn record_login(
        &self,
        client: &OAuthClient,
        tenant: Option<crate::domain::TenantId>,
        username: &str,
        signed_in: Option<&Principal>,
        meta: RequestMeta,
    ) -> Result<(), StoreError> {
        let actor = Actor {
            tenant: signed_in.map(|p| p.tenant).or(tenant),
            principal: signed_in.map(|p| p.id),
            name: Some(format!("user:{username}")),
            client_id: Some(client.client_id.as_str().to_string()),
            credential: Some(audit::Credential::Session),
        };
        let outcome = match signed_in {
            Some(_) => Outcome::Allow(std::sync::Arc::from(["password".to_string()])),
            None => Outcome::Deny("wrong tenant, user name or password".into()),
        };
        let event = AuditEvent::new(Audited::Login, actor, None, outcome, meta);
        self.audit.record(event).await.map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Starts a session and returns its id (for the cookie), valid [`SESSION_TTL_SECS`].
    pub async fn start_session(&self, principal: PrincipalId) -> Result<Secret, StoreError> {
        let id = token::generate("");
        let now = Timestamp::now();
        let s = BrowserSession {
            principal,
            csrf_token: token::generate("").expose().to_string(),
            expires_at: now.plus_secs(SESSION_TTL_SECS),
        };
        self.db.create_session(&token::token_hash(id.expose()), &s, now).await?;
        Ok(id)
    }
}
