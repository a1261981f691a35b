//! Interop with a client library nobody here wrote: the `oauth2` crate drives PKCE,
//! the code exchange, refresh, revocation and client_credentials against a real
//! server; dynamic registration and the browser steps are plain HTTP.

use std::future::Future;
use std::pin::Pin;

use axum::http;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl,
    RevocationUrl, Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::oauth_flow::{Browser, query_of, sign_in_and_allow};
use crate::support::sample_context;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpFailure(String);

type Fut = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpFailure>> + Send>>;

/// The adapter the `oauth2` crate asks for: its `http::Request` over our reqwest.
fn http_client(client: reqwest::Client) -> impl Fn(oauth2::HttpRequest) -> Fut {
    move |req: oauth2::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut rb = client.request(parts.method, parts.uri.to_string()).body(body);
            for (k, v) in parts.headers.iter() {
                rb = rb.header(k, v);
            }
            let res = rb.send().await.map_err(|e| HttpFailure(e.to_string()))?;
            let mut out = http::Response::builder().status(res.status());
            for (k, v) in res.headers() {
                out = out.header(k, v);
            }
            let bytes = res.bytes().await.map_err(|e| HttpFailure(e.to_string()))?;
            out.body(bytes.to_vec()).map_err(|e| HttpFailure(e.to_string()))
        }) as Fut
    }
}

backend_tests! {
    async fn oauth2_crate_full_code_flow(srv) {
        let r = srv.admin(Method::POST, "/admin/principals", Some(json!({"kind": "user", "name": "dana", "roles": ["writer"], "password": "correct horse battery"}))).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let reg = srv.call(Method::POST, "/oauth/register", None, Some(json!({
            "client_name": "interop", "redirect_uris": ["https://client.example/cb"],
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "client_secret_basic"
        }))).await;
        assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
        let client = BasicClient::new(ClientId::new(reg.body["client_id"].as_str().unwrap().into()))
            .set_client_secret(ClientSecret::new(reg.body["client_secret"].as_str().unwrap().into()))
            .set_auth_uri(AuthUrl::new(format!("{}/oauth/authorize", srv.url)).unwrap())
            .set_token_uri(TokenUrl::new(format!("{}/oauth/token", srv.url)).unwrap())
            .set_revocation_url(RevocationUrl::new(format!("{}/oauth/revoke", srv.url)).unwrap())
            .set_redirect_uri(RedirectUrl::new("https://client.example/cb".into()).unwrap())
            .set_auth_type(AuthType::BasicAuth);
        let http = http_client(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap());

        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("context:read".into()))
            .add_scope(Scope::new("context:write".into()))
            .add_extra_param("resource", srv.url.clone())
            .set_pkce_challenge(challenge)
            .url();
        let back = query_of(&sign_in_and_allow(&srv, &mut Browser::new(), url.query().unwrap(), "dana", "correct horse battery").await);
        assert_eq!(&back["state"], csrf.secret());
        assert_eq!(back["iss"], srv.url);

        let tokens = client
            .exchange_code(AuthorizationCode::new(back["code"].clone()))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .expect("code exchange");
        let access = tokens.access_token().secret().clone();
        let refresh = tokens.refresh_token().expect("confidential client gets a refresh token").clone();
        assert_eq!(srv.call(Method::POST, "/context", Some(&access), Some(sample_context())).await.status, StatusCode::CREATED);

        let refreshed = client.exchange_refresh_token(&refresh).request_async(&http).await.expect("refresh");
        let access2 = refreshed.access_token().secret().clone();
        let refresh2 = refreshed.refresh_token().unwrap().clone();
        assert_eq!(srv.call(Method::GET, "/context", Some(&access2), None).await.status, StatusCode::OK);

        // The crate refuses to revoke over plain http (its `InsecureUrl` guard) and the
        // test server has no TLS listener yet, so revocation is posted directly.
        assert!(client.revoke_token(StandardRevocableToken::AccessToken(refreshed.access_token().clone())).is_err());
        let id = reg.body["client_id"].as_str().unwrap();
        let secret = reg.body["client_secret"].as_str().unwrap();
        let r = srv.form("/oauth/revoke", &[("token", &access2)], Some((id, secret))).await;
        assert_eq!(r.status, StatusCode::OK);
        srv.call(Method::GET, "/context", Some(&access2), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        // Revoking an unspent refresh token kills its family: refresh2 has never been
        // used and its family never replayed, so only the revocation can refuse it.
        let r = srv.form("/oauth/revoke", &[("token", refresh2.secret())], Some((id, secret))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(server_error(client.exchange_refresh_token(&refresh2).request_async(&http).await), "invalid_grant", "revoked family");
        // A spent refresh token is refused as well.
        assert_eq!(server_error(client.exchange_refresh_token(&refresh).request_async(&http).await), "invalid_grant", "spent refresh token");
    }

    async fn oauth2_crate_client_credentials(srv) {
        let (id, secret) = srv.machine_client("svc", &["writer"], None).await;
        let client = BasicClient::new(ClientId::new(id))
            .set_client_secret(ClientSecret::new(secret))
            .set_token_uri(TokenUrl::new(format!("{}/oauth/token", srv.url)).unwrap());
        let http = http_client(reqwest::Client::new());
        let tokens = client
            .exchange_client_credentials()
            .add_scope(Scope::new("context:write".into()))
            .request_async(&http)
            .await
            .expect("client_credentials");
        assert_eq!(tokens.scopes().unwrap()[0].as_str(), "context:write");
        let token = tokens.access_token().secret();
        assert_eq!(srv.call(Method::POST, "/context", Some(token), Some(sample_context())).await.status, StatusCode::CREATED);
        srv.call(Method::GET, "/context", Some(token), None).await.assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
        let bad = client
            .exchange_client_credentials()
            .add_scope(Scope::new("admin".into()))
            .request_async(&http)
            .await;
        assert_eq!(server_error(bad), "invalid_scope", "a scope wider than the client's is refused");
    }
}

/// The RFC 6749 error code a token request was refused with (anything else fails).
fn server_error<T: std::fmt::Debug, E: std::error::Error + 'static>(
    r: Result<T, oauth2::RequestTokenError<E, oauth2::basic::BasicErrorResponse>>,
) -> String {
    match r {
        Err(oauth2::RequestTokenError::ServerResponse(e)) => e.error().as_ref().to_string(),
        other => panic!("expected an error response from the server, got {other:?}"),
    }
}
