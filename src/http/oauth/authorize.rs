//! The authorization endpoint's browser flow (OAuth 2.1 section 4.1.1):
//! `GET /oauth/authorize` shows a login or consent page for a valid request;
//! `POST /oauth/login` and `POST /oauth/consent` complete it. Every response to the
//! client carries `iss` (RFC 9207), errors included.
//!
//! The session id lives in an `HttpOnly; SameSite=Lax` cookie (`Secure` unless the
//! issuer is plain http). Login forms carry a double-submit CSRF token; consent forms
//! the session's own CSRF token.

use crate::domain::audit::RequestMeta;
use axum::Extension;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::form::Form;
use super::pages::{self, Consent};
use crate::crypto::token;
use crate::oauth::AuthServer;
use crate::oauth::authorize::{AuthorizationRequest, Refusal};
use crate::oauth::params::Params;
use crate::oauth::session::{SESSION_TTL_SECS, SignIn};

pub const SESSION_COOKIE: &str = "ctxguard_session";
pub const LOGIN_CSRF_COOKIE: &str = "ctxguard_login_csrf";

struct Cookies(Vec<(String, String)>);

impl Cookies {
    fn parse(headers: &HeaderMap) -> Self {
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

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn cookie(server: &AuthServer, name: &str, value: &str, max_age: i64) -> String {
    let secure = if server.issuer().starts_with("https://") { "; Secure" } else { "" };
    format!("{name}={value}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The login page with a fresh double-submit CSRF token.
fn login_form(
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

/// Sends the browser back to the client with `params`, `state` and `iss`.
fn back_to_client(server: &AuthServer, redirect: &str, state: Option<&str>, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect) else {
        return pages::error_page(StatusCode::BAD_REQUEST, "invalid redirect_uri");
    };
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
        if let Some(s) = state {
            pairs.append_pair("state", s);
        }
        pairs.append_pair("iss", server.issuer());
    }
    Redirect::to(url.as_str()).into_response()
}

fn refuse(server: &AuthServer, r: Refusal) -> Response {
    match r {
        Refusal::Page(m) => pages::error_page(StatusCode::BAD_REQUEST, &m),
        Refusal::Redirect { redirect_uri, state, error } => back_to_client(
            server,
            &redirect_uri,
            state.as_deref(),
            &[("error", error.code.as_str()), ("error_description", &error.description)],
        ),
    }
}

async fn signed_in(
    server: &AuthServer,
    cookies: &Cookies,
    req: &AuthorizationRequest,
) -> Option<(crate::domain::Principal, crate::store::BrowserSession)> {
    server.current_session(cookies.get(SESSION_COOKIE)?, &req.client).await
}

pub async fn authorize(State(server): State<Arc<AuthServer>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let raw = q.unwrap_or_default();
    let req = match server.validate_authorization(&raw).await {
        Ok(r) => r,
        Err(r) => return refuse(&server, r),
    };
    let cookies = Cookies::parse(&headers);
    match signed_in(&server, &cookies, &req).await {
        Some((principal, s)) => pages::consent_page(&Consent {
            client_name: &req.client.name,
            client_id: req.client.client_id.as_str(),
            user: &principal.name,
            tenant: &server.tenant_name(principal.tenant).await.unwrap_or_default(),
            scopes: req.scopes,
            resource: &req.audience,
            binding: req.binding.as_ref(),
            request: &raw,
            csrf: &s.csrf_token,
        }),
        None => login_form(&server, StatusCode::OK, &req.client.name, &raw, None),
    }
}

/// The authorization request a login or consent form carries, validated again: the
/// form is client-side state and proves nothing by itself.
async fn posted_request(server: &AuthServer, form: &Params) -> Result<(String, AuthorizationRequest), Response> {
    // Re-encoded: the field is attacker-controlled text that ends up in a Location header.
    let raw = Params::parse(form.get("request").ok().flatten().unwrap_or("").as_bytes()).canonical();
    match server.validate_authorization(&raw).await {
        Ok(req) => Ok((raw, req)),
        Err(r) => Err(refuse(server, r)),
    }
}

fn unavailable() -> Response {
    pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "the server is unavailable; try again")
}

pub async fn login(
    State(server): State<Arc<AuthServer>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    Form(form): Form,
) -> Response {
    let (raw, req) = match posted_request(&server, &form).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let cookies = Cookies::parse(&headers);
    let csrf_ok = match (cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf").ok().flatten()) {
        (Some(a), Some(b)) => bool::from(a.as_bytes().ct_eq(b.as_bytes())),
        _ => false,
    };
    if !csrf_ok {
        return login_form(
            &server,
            StatusCode::FORBIDDEN,
            &req.client.name,
            &raw,
            Some("The form expired; sign in again."),
        );
    }
    let tenant = form.get("tenant").ok().flatten();
    let username = form.get("username").ok().flatten().unwrap_or("");
    let password = form.get("password").ok().flatten().unwrap_or("");
    match server.check_password(&req.client, tenant, username, password, meta).await {
        Ok(SignIn::Welcome(principal)) => match server.start_session(principal.id).await {
            Ok(id) => {
                let mut r = Redirect::to(&format!("authorize?{raw}")).into_response();
                if let Ok(v) = HeaderValue::from_str(&cookie(&server, SESSION_COOKIE, id.expose(), SESSION_TTL_SECS)) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Err(_) => unavailable(),
        },
        Ok(SignIn::Refused) => {
            login_form(&server, StatusCode::UNAUTHORIZED, &req.client.name, &raw, Some("Wrong user name or password."))
        }
        Ok(SignIn::LockedOut(locked)) => {
            let wait = format!("Too many failed sign-ins. Try again in {} seconds.", locked.retry_after_secs);
            let mut page = login_form(&server, StatusCode::TOO_MANY_REQUESTS, &req.client.name, &raw, Some(&wait));
            page.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(locked.retry_after_secs));
            page
        }
        Err(_) => unavailable(),
    }
}

pub async fn consent(
    State(server): State<Arc<AuthServer>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    Form(form): Form,
) -> Response {
    let (raw, req) = match posted_request(&server, &form).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let cookies = Cookies::parse(&headers);
    let Some((principal, s)) = signed_in(&server, &cookies, &req).await else {
        return login_form(&server, StatusCode::UNAUTHORIZED, &req.client.name, &raw, Some("Sign in to continue."));
    };
    let csrf_ok =
        form.get("csrf").ok().flatten().is_some_and(|c| bool::from(c.as_bytes().ct_eq(s.csrf_token.as_bytes())));
    if !csrf_ok {
        return pages::error_page(StatusCode::FORBIDDEN, "the consent form is not valid for this session");
    }
    if form.get("decision").ok().flatten() != Some("allow") {
        return back_to_client(
            &server,
            &req.redirect_uri,
            req.state.as_deref(),
            &[("error", "access_denied"), ("error_description", "the user denied the request")],
        );
    }
    match server.issue_code(&req, &principal, meta).await {
        Ok(code) => back_to_client(&server, &req.redirect_uri, req.state.as_deref(), &[("code", code.expose())]),
        Err(_) => unavailable(),
    }
}
