//! Sign-in for every tenant: users of different tenants sign in through the same
//! dynamically registered client, each token acts only in its user's tenant, and a
//! wrong tenant, user or password all get the same answer.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::oauth_flow::{
    Browser, authorize_query, exchange, hidden, pkce, query_of, register_public_native, sign_in_and_allow_in,
};
use crate::support::{TestServer, sample_context};

const REDIRECT: &str = "http://127.0.0.1/callback";
pub(crate) const PASSWORD: &str = "correct horse battery";

/// Creates a user with [`PASSWORD`]; returns its id.
pub(crate) async fn user_in(srv: &TestServer, tenant: &str, name: &str) -> String {
    let r = srv
        .admin(
            Method::POST,
            "/admin/principals",
            Some(json!({"tenant": tenant, "kind": "user", "name": name, "roles": ["writer"], "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// One attempt at the login page; the page (CSRF token taken out) and its status.
pub(crate) async fn attempt(
    srv: &TestServer,
    client: &str,
    tenant: &str,
    user: &str,
    password: &str,
) -> (StatusCode, String) {
    // One fixed challenge, so that pages differ only by what the server says.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let query = authorize_query(client, REDIRECT, challenge, "context:read", "s");
    let mut b = Browser::new();
    let login = b.get(&format!("{}/oauth/authorize?{query}", srv.url)).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let csrf = hidden(&login.body, "csrf");
    let r = b
        .post(
            &format!("{}/oauth/login", srv.url),
            &[
                ("csrf", &csrf),
                ("request", &hidden(&login.body, "request")),
                ("tenant", tenant),
                ("username", user),
                ("password", password),
            ],
        )
        .await;
    if r.status != StatusCode::UNAUTHORIZED {
        return (r.status, r.body);
    }
    let csrf = hidden(&r.body, "csrf");
    (r.status, r.body.replace(&csrf, "CSRF"))
}

/// Signs in as `user` of `tenant`, consents, and returns the access token.
async fn token_for(srv: &TestServer, client: &str, tenant: &str, user: &str) -> String {
    let (verifier, challenge) = pkce();
    let query = authorize_query(client, REDIRECT, &challenge, "context:read context:write", "s");
    let back = sign_in_and_allow_in(srv, &mut Browser::new(), &query, tenant, user, PASSWORD).await;
    let code = query_of(&back)["code"].clone();
    let t = exchange(
        srv,
        &[("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", &verifier), ("client_id", client)],
        None,
    )
    .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    t.body["access_token"].as_str().unwrap().to_string()
}

backend_tests! {
    async fn users_of_every_tenant_sign_in_through_one_dynamic_client(srv) {
        for t in ["acme", "globex"] {
            srv.create_tenant(t).await;
            user_in(&srv, t, "pat").await;
        }
        let client = register_public_native(&srv).await;
        let acme = token_for(&srv, &client, "acme", "pat").await;
        let globex = token_for(&srv, &client, "globex", "pat").await;
        // Each token acts in its user's tenant, and only there.
        let in_acme = srv.create_context(&acme, sample_context()).await["context_id"].as_str().unwrap().to_string();
        let in_globex = srv.create_context(&globex, sample_context()).await["context_id"].as_str().unwrap().to_string();
        assert_eq!(srv.call(Method::GET, &format!("/context/{in_acme}"), Some(&acme), None).await.status, StatusCode::OK);
        srv.call(Method::GET, &format!("/context/{in_acme}"), Some(&globex), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        srv.call(Method::GET, &format!("/context/{in_globex}"), Some(&acme), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        let listed = srv.call(Method::GET, "/context", Some(&globex), None).await;
        let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [in_globex.as_str()]);
    }

    async fn wrong_tenant_user_or_password_look_alike(srv) {
        srv.create_tenant("acme").await;
        user_in(&srv, "acme", "pat").await;
        let client = register_public_native(&srv).await;
        assert_eq!(attempt(&srv, &client, "acme", "pat", PASSWORD).await.0, StatusCode::SEE_OTHER, "positive control");
        let mut pages = Vec::new();
        let mut times = Vec::new();
        for (tenant, user, password) in [
            ("acme", "pat", "wrong password"),
            ("acme", "nobody", PASSWORD),
            ("no-such-tenant", "pat", PASSWORD),
            ("", "pat", PASSWORD),
        ] {
            let start = std::time::Instant::now();
            let (status, page) = attempt(&srv, &client, tenant, user, password).await;
            times.push(start.elapsed());
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{tenant}/{user}");
            pages.push(page);
        }
        assert!(pages.windows(2).all(|w| w[0] == w[1]), "every refusal reads the same:\n{}", pages.join("\n---\n"));
        // Each refusal verified a password hash: none is several times faster than another.
        let (fast, slow) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        assert!(*slow < *fast * 4 + std::time::Duration::from_millis(200), "timings {times:?}");
    }

    async fn an_administrators_client_serves_its_own_tenant_only(srv) {
        srv.create_tenant("acme").await;
        user_in(&srv, "acme", "pat").await;
        user_in(&srv, "default", "dee").await;
        let (client, _) = srv
            .oauth_client(json!({"name": "default app", "redirect_uris": [REDIRECT], "application_type": "native", "public": true}))
            .await;
        assert_eq!(attempt(&srv, &client, "", "dee", PASSWORD).await.0, StatusCode::SEE_OTHER);
        assert_eq!(attempt(&srv, &client, "default", "dee", PASSWORD).await.0, StatusCode::SEE_OTHER);
        assert_eq!(attempt(&srv, &client, "acme", "pat", PASSWORD).await.0, StatusCode::UNAUTHORIZED, "another tenant's user");
    }
}
