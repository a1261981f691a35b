//! The authorization endpoint and its browser flow (OAuth 2.1 section 4.1.1):
//! `GET /oauth/authorize` validates the request and shows a login or consent page;
//! `POST /oauth/login` and `POST /oauth/consent` complete it. Codes are one-time,
//! live 60 s and are bound to client, redirect URI, PKCE challenge and resource.
//! Every response to the client carries `iss` (RFC 9207), errors included.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::error::{OAuthError, OAuthErrorCode};
use super::form::Form;
use super::pages::{self, Consent};
use super::redirect_uri;
use super::server::{AuthServer, granted_scopes};
use super::session::{self, Cookies};
use crate::crypto::token;
use crate::domain::{ContextBinding, GrantType, OAuthClient, ScopeSet, Timestamp};
use crate::http::AppState;
use crate::store::CodeGrant;

const CODE_TTL_SECS: i64 = 60;

/// A validated authorization request.
struct AuthzRequest {
    client: OAuthClient,
    redirect_uri: String,
    state: Option<String>,
    scopes: ScopeSet,
    audience: String,
    code_challenge: String,
    binding: Option<ContextBinding>,
}

/// Why a request is refused: before the redirect URI is trusted we may only show a
/// page; after, errors go back to the client.
enum Refusal {
    Page(String),
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
}

async fn validate(server: &AuthServer, raw: &str) -> Result<AuthzRequest, Refusal> {
    let q = Form::parse(raw.as_bytes());
    let page = |m: &str| Refusal::Page(m.to_string());
    let client_id =
        q.get("client_id").map_err(|e| page(&e.description))?.ok_or_else(|| page("client_id is missing"))?;
    let client = match server.find_client(client_id).await {
        Ok(Ok((c, _))) => c,
        Ok(Err(why)) => return Err(page(&why)),
        Err(_) => return Err(page("the server is unavailable; try again")),
    };
    let redirect =
        q.get("redirect_uri").map_err(|e| page(&e.description))?.ok_or_else(|| page("redirect_uri is missing"))?;
    if !redirect_uri::matches(redirect, &client.redirect_uris, client.application_type) {
        return Err(page("redirect_uri is not registered for this client"));
    }
    let state = q.get("state").ok().flatten().map(str::to_string);
    let back =
        |error: OAuthError| Refusal::Redirect { redirect_uri: redirect.to_string(), state: state.clone(), error };
    let get = |name: &str| q.get(name).map_err(&back);
    match get("response_type")? {
        Some("code") => {}
        _ => return Err(back(OAuthError::new(OAuthErrorCode::UnsupportedResponseType, "response_type must be code"))),
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(back(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        )));
    }
    let challenge = get("code_challenge")?.ok_or_else(|| {
        back(OAuthError::invalid_request("PKCE is required: send code_challenge and code_challenge_method=S256"))
    })?;
    if get("code_challenge_method")? != Some("S256") {
        return Err(back(OAuthError::invalid_request("code_challenge_method must be S256")));
    }
    // A S256 challenge is base64url(SHA-256): 43 characters.
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(back(OAuthError::invalid_request("code_challenge is not a S256 challenge")));
    }
    let scopes = granted_scopes(get("scope")?, client.scopes).map_err(back)?;
    let audience = server.audience(&q.all("resource")).map_err(back)?;
    let binding = get("authorization_details")?
        .map(|text| {
            ContextBinding::from_authorization_details(text).map_err(|m| {
                back(OAuthError::new(OAuthErrorCode::InvalidAuthorizationDetails, format!("authorization_details {m}")))
            })
        })
        .transpose()?;
    Ok(AuthzRequest {
        binding,
        redirect_uri: redirect.to_string(),
        state: state.clone(),
        scopes,
        audience,
        code_challenge: challenge.to_string(),
        client,
    })
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
        pairs.append_pair("iss", &server.issuer);
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

pub async fn authorize(State(state): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let server = &state.inner.oauth;
    let raw = q.unwrap_or_default();
    let req = match validate(server, &raw).await {
        Ok(r) => r,
        Err(r) => return refuse(server, r),
    };
    let cookies = Cookies::parse(&headers);
    match session::current(server, &cookies, &req.client).await {
        Some((principal, s)) => pages::consent_page(&Consent {
            client_name: &req.client.name,
            client_id: &req.client.client_id,
            user: &principal.name,
            scopes: req.scopes,
            resource: &req.audience,
            binding: req.binding.as_ref(),
            request: &raw,
            csrf: &s.csrf_token,
        }),
        None => session::login_form(server, StatusCode::OK, &req.client.name, &raw, None),
    }
}

/// The authorization request a login or consent form carries, validated again: the
/// form is client-side state and proves nothing by itself.
async fn posted_request(server: &AuthServer, form: &Form) -> Result<(String, AuthzRequest), Response> {
    // Re-encoded: the field is attacker-controlled text that ends up in a Location header.
    let raw = Form::parse(form.get("request").ok().flatten().unwrap_or("").as_bytes()).canonical();
    match validate(server, &raw).await {
        Ok(req) => Ok((raw, req)),
        Err(r) => Err(refuse(server, r)),
    }
}

fn unavailable() -> Response {
    pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "the server is unavailable; try again")
}

pub async fn login(State(state): State<AppState>, headers: HeaderMap, form: Form) -> Response {
    let server = &state.inner.oauth;
    let (raw, req) = match posted_request(server, &form).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let cookies = Cookies::parse(&headers);
    let csrf_ok = match (cookies.get(session::LOGIN_CSRF_COOKIE), form.get("csrf").ok().flatten()) {
        (Some(a), Some(b)) => bool::from(a.as_bytes().ct_eq(b.as_bytes())),
        _ => false,
    };
    if !csrf_ok {
        return session::login_form(
            server,
            StatusCode::FORBIDDEN,
            &req.client.name,
            &raw,
            Some("The form expired; sign in again."),
        );
    }
    let username = form.get("username").ok().flatten().unwrap_or("");
    let password = form.get("password").ok().flatten().unwrap_or("");
    match session::check_password(server, &req.client, username, password).await {
        Ok(Some(principal)) => match session::start(server, principal.id).await {
            Ok(cookie) => {
                let mut r = Redirect::to(&format!("authorize?{raw}")).into_response();
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Err(_) => unavailable(),
        },
        Ok(None) => session::login_form(
            server,
            StatusCode::UNAUTHORIZED,
            &req.client.name,
            &raw,
            Some("Wrong user name or password."),
        ),
        Err(_) => unavailable(),
    }
}

pub async fn consent(State(state): State<AppState>, headers: HeaderMap, form: Form) -> Response {
    let server = &state.inner.oauth;
    let (raw, req) = match posted_request(server, &form).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let cookies = Cookies::parse(&headers);
    let Some((principal, s)) = session::current(server, &cookies, &req.client).await else {
        return session::login_form(
            server,
            StatusCode::UNAUTHORIZED,
            &req.client.name,
            &raw,
            Some("Sign in to continue."),
        );
    };
    let csrf_ok =
        form.get("csrf").ok().flatten().is_some_and(|c| bool::from(c.as_bytes().ct_eq(s.csrf_token.as_bytes())));
    if !csrf_ok {
        return pages::error_page(StatusCode::FORBIDDEN, "the consent form is not valid for this session");
    }
    if form.get("decision").ok().flatten() != Some("allow") {
        return back_to_client(
            server,
            &req.redirect_uri,
            req.state.as_deref(),
            &[("error", "access_denied"), ("error_description", "the user denied the request")],
        );
    }
    let code = token::generate("");
    let now = Timestamp::now();
    let grant = CodeGrant {
        client_id: req.client.client_id.clone(),
        principal: principal.id,
        tenant: principal.tenant,
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        scope: req.scopes.to_string(),
        resource: req.audience.clone(),
        expires_at: now.plus_secs(CODE_TTL_SECS),
        binding: req.binding.clone(),
    };
    if server.db.insert_code(&token::hash(code.expose()), &grant, now).await.is_err() {
        return unavailable();
    }
    back_to_client(server, &req.redirect_uri, req.state.as_deref(), &[("code", code.expose())])
}
