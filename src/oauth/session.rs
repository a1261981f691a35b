//! Browser sessions of the login/consent pages. The session id lives in an
//! `HttpOnly; SameSite=Lax` cookie (`Secure` unless the issuer is plain http), only its
//! hash in the database so every replica sees it. Login forms carry a double-submit
//! CSRF token; consent forms the session's own CSRF token.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::pages;
use super::server::AuthServer;
use crate::authn::{Secret, password};
use crate::crypto::token;
use crate::domain::{OAuthClient, Principal, PrincipalId, PrincipalKind, StoreError, Timestamp};
use crate::store::BrowserSession;

pub const SESSION_COOKIE: &str = "ctxguard_session";
pub const LOGIN_CSRF_COOKIE: &str = "ctxguard_login_csrf";
const SESSION_TTL_SECS: i64 = 8 * 3600;

pub struct Cookies(Vec<(String, String)>);

impl Cookies {
    pub fn parse(headers: &HeaderMap) -> Self {
        let pairs = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Cookies(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn cookie(server: &AuthServer, name: &str, value: &str, max_age: i64) -> String {
    let secure = if server.issuer.starts_with("https://") { "; Secure" } else { "" };
    format!("{name}={value}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The login page with a fresh double-submit CSRF token.
pub fn login_form(
    server: &AuthServer,
    status: StatusCode,
    client_name: &str,
    request: &str,
    error: Option<&str>,
) -> Response {
    let csrf = token::generate("");
    let mut r = pages::login_page(status, client_name, request, csrf.expose(), error);
    if let Ok(v) = HeaderValue::from_str(&cookie(server, LOGIN_CSRF_COOKIE, csrf.expose(), 1800)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The signed-in user, if the session is valid and the user may use this client
/// (same tenant, enabled).
pub async fn current(
    server: &AuthServer,
    cookies: &Cookies,
    client: &OAuthClient,
) -> Option<(Principal, BrowserSession)> {
    let id = cookies.get(SESSION_COOKIE)?;
    let s = server.db.session(&token::hash(id)).await.ok()??;
    if s.expires_at <= Timestamp::now() {
        return None;
    }
    let p = server.db.principal(s.principal).await.ok()??;
    (!p.disabled && p.tenant == client.tenant).then_some((p, s))
}

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

/// Checks a user's password in the client's tenant. `Ok(None)`: wrong name or password.
pub async fn check_password(
    server: &AuthServer,
    client: &OAuthClient,
    username: &str,
    pw: &str,
) -> Result<Option<Principal>, StoreError> {
    let principal = server
        .db
        .principal_by_name(client.tenant, username)
        .await?
        .filter(|p| p.kind == PrincipalKind::User && !p.disabled);
    let stored = match &principal {
        Some(p) => server.db.password_hash(p.id).await?,
        None => None,
    };
    let has_hash = stored.is_some();
    let phc = match stored {
        Some(phc) => phc,
        // The first use computes the decoy (an argon2 hash): off the async workers.
        None => tokio::task::spawn_blocking(|| decoy_hash().to_string()).await.unwrap_or_default(),
    };
    let ok = password::verify(Secret::new(pw.to_string()), phc).await;
    Ok(if ok && has_hash { principal } else { None })
}

/// Starts a session and returns its `Set-Cookie` value.
pub async fn start(server: &AuthServer, principal: PrincipalId) -> Result<String, StoreError> {
    let id = token::generate("");
    let now = Timestamp::now();
    let s = BrowserSession {
        principal,
        csrf_token: token::generate("").expose().to_string(),
        expires_at: now.plus_secs(SESSION_TTL_SECS),
    };
    server.db.create_session(&token::hash(id.expose()), &s, now).await?;
    Ok(cookie(server, SESSION_COOKIE, id.expose(), SESSION_TTL_SECS))
}
