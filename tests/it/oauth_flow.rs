//! The browser flow: authorization code + PKCE with the login and consent pages, as a
//! browser would drive them (cookies, hidden form fields, no auto-redirects), then the
//! token endpoint, refresh rotation, replay detection and dynamic registration.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestServer, sample_context};

/// A minimal browser: keeps cookies, never follows redirects.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    pub last_set_cookies: Vec<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            cookies: HashMap::new(),
            last_set_cookies: vec![],
        }
    }

    async fn finish(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let rb = if cookie.is_empty() { rb } else { rb.header("cookie", cookie.join("; ")) };
        let res = rb.send().await.unwrap();
        self.last_set_cookies =
            res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        for c in &self.last_set_cookies {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.insert(k.to_string(), v.to_string());
        }
        let status = res.status();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        Page { status, location, body: res.text().await.unwrap() }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let rb = self.http.get(url);
        self.finish(rb).await
    }

    pub async fn post(&mut self, url: &str, params: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let rb = self.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
        self.finish(rb).await
    }
}

/// The value of a hidden form field, HTML-unescaped.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name} in {html}")) + marker.len();
    let raw = &html[start..start + html[start..].find('"').unwrap()];
    raw.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'").replace("&amp;", "&")
}

pub fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = ctxguard::crypto::token::s256(&verifier);
    (verifier, challenge)
}

pub fn authorize_query(client_id: &str, redirect: &str, challenge: &str, scope: &str, state: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", scope)
        .append_pair("state", state)
        .finish()
}

/// Signs in and consents; returns the final redirect to the client.
pub async fn sign_in_and_allow(srv: &TestServer, b: &mut Browser, query: &str, user: &str, password: &str) -> String {
    sign_in_and_allow_in(srv, b, query, "", user, password).await
}

/// The same, naming the user's tenant on the login page (empty: the client's); the
/// consent page must name it back.
pub async fn sign_in_and_allow_in(
    srv: &TestServer,
    b: &mut Browser,
    query: &str,
    tenant: &str,
    user: &str,
    password: &str,
) -> String {
    let login = b.get(&format!("{}/oauth/authorize?{query}", srv.url)).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(login.body.contains("Sign in"), "{}", login.body);
    let after = b
        .post(
            &format!("{}/oauth/login", srv.url),
            &[
                ("csrf", &hidden(&login.body, "csrf")),
                ("request", &hidden(&login.body, "request")),
                ("tenant", tenant),
                ("username", user),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "{}", after.body);
    let consent = b.get(&format!("{}/oauth/{}", srv.url, after.location.unwrap())).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.body.contains("Allow access?"), "{}", consent.body);
    if !tenant.is_empty() {
        assert!(
            consent.body.contains(&format!("of tenant <strong>{tenant}</strong>")),
            "the consent page names the tenant: {}",
            consent.body
        );
    }
    let done = b
        .post(
            &format!("{}/oauth/consent", srv.url),
            &[
                ("csrf", &hidden(&consent.body, "csrf")),
                ("request", &hidden(&consent.body, "request")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    done.location.unwrap()
}

/// Consents again with an existing session; returns the new code.
async fn allow(b: &mut Browser, url: &str, csrf: &str, query: &str) -> String {
    let p = b.post(&format!("{url}/oauth/consent"), &[("csrf", csrf), ("request", query), ("decision", "allow")]).await;
    query_of(p.location.as_deref().unwrap())["code"].clone()
}

pub(crate) async fn user(srv: &TestServer, name: &str, roles: &[&str]) {
    let r = srv
        .admin(
            Method::POST,
            "/admin/principals",
            Some(json!({"kind": "user", "name": name, "roles": roles, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

pub(crate) async fn register_public_native(srv: &TestServer) -> String {
    let r = srv
        .call(
            Method::POST,
            "/oauth/register",
            None,
            Some(json!({
                "client_name": "cli tool", "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none", "application_type": "native",
                "grant_types": ["authorization_code", "refresh_token"], "logo_uri": "ignored"
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body.get("client_secret").is_none());
    r.body["client_id"].as_str().unwrap().to_string()
}

pub(crate) async fn exchange(
    srv: &TestServer,
    params: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> crate::support::Reply {
    let mut all = vec![("grant_type", "authorization_code")];
    all.extend_from_slice(params);
    srv.form("/oauth/token", &all, basic).await
}

backend_tests! {
    async fn code_flow_with_pkce_for_a_public_client(srv) {
        user(&srv, "alice", &["writer"]).await;
        let client = register_public_native(&srv).await;
        let (verifier, challenge) = pkce();
        let redirect = "http://127.0.0.1:49152/callback";
        let query = authorize_query(&client, redirect, &challenge, "context:read context:write", "xyz");
        let mut b = Browser::new();

        // A wrong password is refused on the page, with no session.
        let login = b.get(&format!("{}/oauth/authorize?{query}", srv.url)).await;
        assert!(b.last_set_cookies.iter().any(|c| c.starts_with("ctxguard_login_csrf=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")));
        let bad = b.post(&format!("{}/oauth/login", srv.url), &[("csrf", &hidden(&login.body, "csrf")), ("request", &query), ("username", "alice"), ("password", "wrong password!!")]).await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert!(bad.body.contains("Wrong user name or password"));
        // A login post without the CSRF cookie's value is refused.
        let forged = b.post(&format!("{}/oauth/login", srv.url), &[("csrf", "guess"), ("request", &query), ("username", "alice"), ("password", "correct horse battery")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);

        let location = sign_in_and_allow(&srv, &mut b, &query, "alice", "correct horse battery").await;
        assert!(location.starts_with(redirect), "{location}");
        let q = query_of(&location);
        assert_eq!(q["state"], "xyz");
        assert_eq!(q["iss"], srv.url);
        let code = q["code"].clone();

        let t = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier), ("client_id", &client)], None).await;
        assert_eq!(t.status, StatusCode::OK, "{}", t.body);
        assert!(t.body.get("refresh_token").is_none(), "no offline_access, no refresh token for a public client");
        let token = t.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(t.body["scope"], "context:read context:write");
        assert_eq!(srv.call(Method::POST, "/context", Some(&token), Some(sample_context())).await.status, StatusCode::CREATED);

        // Replaying the code fails and revokes what it was exchanged for.
        let again = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier), ("client_id", &client)], None).await;
        assert_eq!((again.status, again.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        srv.call(Method::GET, "/context", Some(&token), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }

    async fn refresh_rotation_and_replay_detection(srv) {
        user(&srv, "bob", &["reader"]).await;
        let client = register_public_native(&srv).await;
        let (verifier, challenge) = pkce();
        let redirect = "http://127.0.0.1/callback";
        let query = authorize_query(&client, redirect, &challenge, "context:read offline_access", "s");
        let mut b = Browser::new();
        let code = query_of(&sign_in_and_allow(&srv, &mut b, &query, "bob", "correct horse battery").await)["code"].clone();
        let t = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier), ("client_id", &client)], None).await;
        let rt1 = t.body["refresh_token"].as_str().expect("offline_access gives a refresh token").to_string();
        assert!(rt1.starts_with("ctxr_"));

        let r = srv.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("client_id", &client)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let rt2 = r.body["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(rt1, rt2, "rotated on every use");
        let at2 = r.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(srv.call(Method::GET, "/context", Some(&at2), None).await.status, StatusCode::OK);

        // Narrowing on refresh is allowed, widening is not.
        let wide = srv.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt2), ("client_id", &client), ("scope", "context:read context:write")], None).await;
        assert_eq!(wide.body["error"], "invalid_scope", "{}", wide.body);

        // The spent rt1 comes back: the whole family dies, rt2 included — and so do the
        // access tokens minted from it (the thief's and the holder's alike).
        let at1 = t.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(srv.call(Method::GET, "/context", Some(&at1), None).await.status, StatusCode::OK);
        let replay = srv.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("client_id", &client)], None).await;
        assert_eq!(replay.body["error"], "invalid_grant");
        let after = srv.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &rt2), ("client_id", &client)], None).await;
        assert_eq!(after.body["error"], "invalid_grant", "{}", after.body);
        for at in [&at1, &at2] {
            srv.call(Method::GET, "/context", Some(at), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        }
        // Anomaly response goes further (docs/anomaly.md): bob is suspended until an
        // administrator lifts it.
        let listed = srv.admin(Method::GET, "/admin/anomalies", None).await;
        let suspension = &listed.body["suspensions"][0];
        assert_eq!(suspension["name"], "user:bob", "{}", listed.body);
        assert!(suspension["reason"].as_str().unwrap().contains("refresh_replay"), "{suspension}");
        let lift = srv.admin(Method::DELETE, &format!("/admin/principals/{}/suspension", suspension["principal"].as_str().unwrap()), None).await;
        assert_eq!(lift.status, StatusCode::NO_CONTENT);
        assert_eq!(srv.admin(Method::GET, "/admin/anomalies", None).await.body["suspensions"], json!([]));
    }

    async fn revoking_a_refresh_token_revokes_its_familys_access_tokens(srv) {
        user(&srv, "rita", &["reader"]).await;
        let client = register_public_native(&srv).await;
        let (verifier, challenge) = pkce();
        let redirect = "http://127.0.0.1/callback";
        let query = authorize_query(&client, redirect, &challenge, "context:read offline_access", "s");
        let code = query_of(&sign_in_and_allow(&srv, &mut Browser::new(), &query, "rita", "correct horse battery").await)["code"].clone();
        let t = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier), ("client_id", &client)], None).await;
        let (at, rt) = (t.body["access_token"].as_str().unwrap().to_string(), t.body["refresh_token"].as_str().unwrap().to_string());
        assert_eq!(srv.call(Method::GET, "/context", Some(&at), None).await.status, StatusCode::OK);
        let r = srv.form("/oauth/revoke", &[("token", &rt), ("client_id", &client)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        srv.call(Method::GET, "/context", Some(&at), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }

    async fn registration_infers_the_application_type(srv) {
        let register = |uris: Value| srv.call(Method::POST, "/oauth/register", None, Some(json!({
            "client_name": "sdk client", "redirect_uris": uris, "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"]})));
        // What 2025-era MCP clients send: no application_type, loopback redirect URIs.
        for uris in [json!(["http://127.0.0.1:33418/callback"]), json!(["http://localhost:6274/oauth/callback"]), json!(["com.example.agent:/cb"])] {
            let r = register(uris.clone()).await;
            assert_eq!(r.status, StatusCode::CREATED, "{uris}: {}", r.body);
            assert_eq!(r.body["application_type"], "native", "{uris}");
        }
        let r = register(json!(["https://app.example.com/cb"])).await;
        assert_eq!((r.status, r.body["application_type"].as_str()), (StatusCode::CREATED, Some("web")), "{}", r.body);
        let r = register(json!(["http://app.example.com/cb"])).await;
        assert_eq!((r.status, r.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")), "{}", r.body);
        // An explicit application_type is still honoured.
        let r = srv.call(Method::POST, "/oauth/register", None, Some(json!({"redirect_uris": ["http://127.0.0.1/cb"],
            "token_endpoint_auth_method": "none", "application_type": "web"}))).await;
        assert_eq!((r.status, r.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")), "{}", r.body);
    }

    async fn authorization_request_refusals(srv) {
        user(&srv, "carol", &["writer"]).await;
        let (web, web_secret) = srv.oauth_client(json!({"name": "web app", "redirect_uris": ["https://app.example.com/cb"], "scopes": ["context:read"]})).await;
        let web_secret = web_secret.unwrap();
        let (_, challenge) = pkce();
        let redirect = "https://app.example.com/cb";
        let mut b = Browser::new();
        let go = |q: String| format!("{}/oauth/authorize?{q}", srv.url);

        // Before the redirect URI is trusted: a page, never a redirect.
        for q in [
            authorize_query("ctxc_unknown", redirect, &challenge, "context:read", "s"),
            authorize_query(&web, "https://app.example.com/cb/", &challenge, "context:read", "s"),
            authorize_query(&web, "https://evil.example/cb", &challenge, "context:read", "s"),
        ] {
            let p = b.get(&go(q)).await;
            assert_eq!(p.status, StatusCode::BAD_REQUEST);
            assert!(p.location.is_none());
            assert!(p.body.contains("refused"));
        }
        // After: errors go back to the client with state and iss.
        let cases = [
            (authorize_query(&web, redirect, &challenge, "context:read", "s").replace("code_challenge_method=S256", "code_challenge_method=plain"), "invalid_request"),
            (authorize_query(&web, redirect, &challenge, "context:read", "s").replace(&format!("code_challenge={challenge}&"), ""), "invalid_request"),
            (authorize_query(&web, redirect, &challenge, "context:read", "s").replace("response_type=code", "response_type=token"), "unsupported_response_type"),
            (authorize_query(&web, redirect, &challenge, "context:read admin", "s"), "invalid_scope"),
            (format!("{}&resource=https%3A%2F%2Fother.example", authorize_query(&web, redirect, &challenge, "context:read", "s")), "invalid_target"),
        ];
        for (q, error) in cases {
            let p = b.get(&go(q.clone())).await;
            assert_eq!(p.status, StatusCode::SEE_OTHER, "{q}: {}", p.body);
            let back = query_of(p.location.as_deref().unwrap());
            assert_eq!(back["error"], error, "{q}");
            assert_eq!((back["state"].as_str(), back["iss"].as_str()), ("s", srv.url.as_str()));
        }

        // Deny → access_denied; consent without the session's CSRF token → 403.
        let (verifier, challenge) = pkce();
        let query = authorize_query(&web, redirect, &challenge, "context:read", "st");
        let login = b.get(&go(query.clone())).await;
        let after = b.post(&format!("{}/oauth/login", srv.url), &[("csrf", &hidden(&login.body, "csrf")), ("request", &query), ("username", "carol"), ("password", "correct horse battery")]).await;
        assert!(b.last_set_cookies.iter().any(|c| c.starts_with("ctxguard_session=") && c.contains("HttpOnly") && c.contains("Path=/oauth")));
        let consent = b.get(&format!("{}/oauth/{}", srv.url, after.location.unwrap())).await;
        let csrf = hidden(&consent.body, "csrf");
        let forged = b.post(&format!("{}/oauth/consent", srv.url), &[("csrf", "nope"), ("request", &query), ("decision", "allow")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let denied = b.post(&format!("{}/oauth/consent", srv.url), &[("csrf", &csrf), ("request", &query), ("decision", "deny")]).await;
        assert_eq!(query_of(denied.location.as_deref().unwrap())["error"], "access_denied");

        // A code is bound to its client, redirect URI and PKCE verifier.
        let (other, other_secret) = srv.oauth_client(json!({"name": "other", "redirect_uris": ["https://app.example.com/cb"]})).await;
        let code = allow(&mut b, &srv.url, &csrf, &query).await;
        let r = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier)], Some((&other, other_secret.as_deref().unwrap()))).await;
        assert_eq!(r.body["error"], "invalid_grant", "another client");
        let code = allow(&mut b, &srv.url, &csrf, &query).await;
        let r = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &"x".repeat(43))], Some((&web, &web_secret))).await;
        assert_eq!(r.body["error"], "invalid_grant", "PKCE mismatch");
        let code = allow(&mut b, &srv.url, &csrf, &query).await;
        let r = exchange(&srv, &[("code", &code), ("redirect_uri", "https://app.example.com/cb2"), ("code_verifier", &verifier)], Some((&web, &web_secret))).await;
        assert_eq!(r.body["error"], "invalid_grant", "redirect_uri mismatch");
        let code = allow(&mut b, &srv.url, &csrf, &query).await;
        let r = exchange(&srv, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", &verifier)], Some((&web, &web_secret))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body["refresh_token"].is_string(), "confidential code-flow clients get a refresh token");
    }

    async fn dynamic_registration_rules(srv) {
        let reg = |body: Value| srv.call(Method::POST, "/oauth/register", None, Some(body));
        for (body, error) in [
            (json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
            (json!({"redirect_uris": ["http://app.example.com/cb"]}), "invalid_redirect_uri"),
            (json!({"redirect_uris": ["https://app.example.com/cb#x"]}), "invalid_redirect_uri"),
            (json!({"redirect_uris": []}), "invalid_redirect_uri"),
            (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}), "invalid_client_metadata"),
            (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}), "invalid_client_metadata"),
            (json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}), "invalid_client_metadata"),
            (json!({"redirect_uris": ["https://a.example/cb"], "scope": "admin"}), "invalid_scope"),
            (json!({"redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(20_000)}), "invalid_client_metadata"),
        ] {
            let r = reg(body.clone()).await;
            assert_eq!((r.status, r.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{body}: {}", r.body);
        }
        let ok = reg(json!({"redirect_uris": ["https://app.example.com/cb"], "client_name": "Web"})).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
        assert!(ok.body["client_secret"].as_str().unwrap().starts_with("ctxs_"));
        assert_eq!(ok.body["token_endpoint_auth_method"], "client_secret_basic");
        let clients = srv.admin(Method::GET, "/admin/clients", None).await;
        assert_eq!(clients.body.as_array().unwrap().len(), 1, "only the valid registration was stored");
        assert_eq!(clients.body[0]["registered_by"], "dynamic");
    }
}

#[tokio::test]
async fn registration_can_require_an_initial_access_token() {
    let token = "registration-token-0123456789abcdef-xyz";
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.registration = Some(ctxguard::config::RegistrationMode::Token);
        c.registration_token = Some(token.into());
    })
    .await
    .unwrap();
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    let r = srv.call(Method::POST, "/oauth/register", None, Some(body.clone())).await;
    assert_eq!((r.status, r.body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let r = srv.call(Method::POST, "/oauth/register", Some("wrong-token"), Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = srv.call(Method::POST, "/oauth/register", Some(token), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    srv.stop().await;

    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.registration = Some(ctxguard::config::RegistrationMode::Disabled)
    })
    .await
    .unwrap();
    let r =
        srv.call(Method::POST, "/oauth/register", None, Some(json!({"redirect_uris": ["https://a.example/cb"]}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let m = srv.call(Method::GET, "/.well-known/oauth-authorization-server", None, None).await;
    assert!(m.body.get("registration_endpoint").is_none());
    srv.stop().await;
}

/// Serves `doc` at `/client.json` on an ephemeral loopback port; returns its URL.
async fn serve_client_document(doc: impl Fn(&str) -> Value + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let body = doc(&url);
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("cache-control", "max-age=600")], axum::Json(body)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn client_id_metadata_document_flow() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.client_metadata_allow_loopback = Some(true)).await.unwrap();
    user(&srv, "erin", &["reader"]).await;
    let client_id = serve_client_document(|url| {
        json!({"client_id": url, "client_name": "Doc Client", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"})
    })
    .await;
    let (verifier, challenge) = pkce();
    let query = authorize_query(&client_id, "http://127.0.0.1:5555/cb", &challenge, "context:read", "s1");
    let mut b = Browser::new();
    let login = b.get(&format!("{}/oauth/authorize?{query}", srv.url)).await;
    assert!(login.body.contains("Doc Client"), "{}", login.body);
    let location = sign_in_and_allow(&srv, &mut b, &query, "erin", "correct horse battery").await;
    let code = query_of(&location)["code"].clone();
    let t = exchange(
        &srv,
        &[
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:5555/cb"),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
        ],
        None,
    )
    .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let token = t.body["access_token"].as_str().unwrap();
    assert_eq!(srv.call(Method::GET, "/context", Some(token), None).await.status, StatusCode::OK);

    // A document whose client_id is not its own URL is refused.
    let liar = serve_client_document(
        |_| json!({"client_id": "https://app.example.com/client.json", "redirect_uris": ["http://127.0.0.1/cb"]}),
    )
    .await;
    let p = b
        .get(&format!(
            "{}/oauth/authorize?{}",
            srv.url,
            authorize_query(&liar, "http://127.0.0.1/cb", &challenge, "context:read", "s")
        ))
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains(ctxguard::oauth::server::METADATA_REFUSED), "{}", p.body);
    srv.stop().await;
}

/// Refused documents all get one page: what the resolver or the remote server answered
/// (addresses, status codes, DNS failures) would make the endpoint an address oracle.
#[tokio::test]
async fn client_metadata_fetches_refuse_private_targets_with_one_answer() {
    let srv = TestServer::start(Backend::Sqlite).await.unwrap();
    let doc = serve_client_document(|url| json!({"client_id": url, "redirect_uris": ["http://127.0.0.1/cb"]})).await;
    let (_, challenge) = pkce();
    let mut b = Browser::new();
    let https_local = doc.replace("http://", "https://");
    let missing = format!("{}/missing.json", doc.rsplit_once('/').unwrap().0);
    let mut pages = Vec::new();
    for client_id in [
        doc.as_str(),
        https_local.as_str(),
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
        "https://no-such-host.invalid/client.json",
        missing.as_str(),
    ] {
        let p = b
            .get(&format!(
                "{}/oauth/authorize?{}",
                srv.url,
                authorize_query(client_id, "http://127.0.0.1/cb", &challenge, "context:read", "s")
            ))
            .await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{client_id}");
        assert!(p.location.is_none());
        assert!(p.body.contains(ctxguard::oauth::server::METADATA_REFUSED), "{client_id}: {}", p.body);
        for detail in ["127.0.0.1", "169.254", "::1", "non-public", "resolve", "answered", "404", "https"] {
            assert!(!p.body.contains(detail), "{client_id}: the page tells {detail:?}: {}", p.body);
        }
        pages.push(p.body);
    }
    assert!(pages.windows(2).all(|w| w[0] == w[1]), "every refusal looks the same");
    srv.stop().await;
}

#[tokio::test]
async fn hostile_form_fields_are_neutralised() {
    let srv = TestServer::start(Backend::Sqlite).await.unwrap();
    user(&srv, "gus", &["reader"]).await;
    let client = register_public_native(&srv).await;
    let (_, challenge) = pkce();
    let query = authorize_query(&client, "http://127.0.0.1/callback", &challenge, "context:read", "s");
    let mut b = Browser::new();
    let login = b.get(&format!("{}/oauth/authorize?{query}", srv.url)).await;
    // A request field smuggling a line break (header injection) and markup.
    let hostile = format!("{query}&x=\r\nSet-Cookie: evil=1&y=\"><script>");
    let r = b
        .post(
            &format!("{}/oauth/login", srv.url),
            &[
                ("csrf", &hidden(&login.body, "csrf")),
                ("request", &hostile),
                ("username", "gus"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.location.unwrap();
    assert!(!location.contains('\n') && !location.contains('\r') && !location.contains('<'), "{location}");
    assert!(!b.last_set_cookies.iter().any(|c| c.starts_with("evil")));
    srv.stop().await;
}
