//! The authorization server's machine-facing side: metadata, JWKS, client_credentials,
//! the resource server's checks on JWTs, revocation, introspection and key rotation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, Reply, TestServer, sample_context};

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[track_caller]
fn assert_invalid_token(r: &Reply) {
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    let www = r.header("www-authenticate").unwrap();
    assert!(www.contains("error=\"invalid_token\"") && www.contains("resource_metadata="), "{www}");
}

#[track_caller]
fn assert_oauth_error(r: &Reply, status: StatusCode, error: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"], error, "{}", r.body);
    assert!(r.body["error_description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

/// Signs `claims` with the server's real key under `header` (for negative tests).
fn sign(key: &ctxguard::jwt::SigningKey, header: jsonwebtoken::Header, claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn good_claims(srv: &TestServer, token: &str) -> Value {
    let mut c = jwt_part(token, 1);
    c["iss"] = json!(srv.url);
    c
}

backend_tests! {
    async fn metadata_and_jwks(srv) {
        let m = srv.call(Method::GET, "/.well-known/oauth-authorization-server", None, None).await;
        assert_eq!(m.status, StatusCode::OK);
        assert_eq!(m.body["issuer"], srv.url.as_str());
        assert_eq!(m.body["token_endpoint"], format!("{}/oauth/token", srv.url));
        assert_eq!(m.body["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m.body["authorization_response_iss_parameter_supported"], true);
        assert!(m.body["scopes_supported"].as_array().unwrap().contains(&json!("offline_access")));
        assert!(m.body["registration_endpoint"].is_string());
        let oidc = srv.call(Method::GET, "/.well-known/openid-configuration", None, None).await;
        assert_eq!(oidc.body, m.body);
        let prm = srv.call(Method::GET, "/.well-known/oauth-protected-resource", None, None).await;
        assert_eq!(prm.body["authorization_servers"], json!([srv.url]));
        let jwks = srv.call(Method::GET, "/oauth/jwks", None, None).await;
        let keys = jwks.body["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kty"], "OKP");
        assert_eq!(keys[0]["crv"], "Ed25519");
        assert_eq!(keys[0]["alg"], "EdDSA");
        assert!(keys[0].get("d").is_none(), "no private part in the JWKS");
    }

    async fn client_credentials_calls_the_context_api(srv) {
        let (id, secret) = srv.machine_client("ingest", &["writer"], None).await;
        let r = srv.cc_token(&id, &secret, &[("scope", "context:read context:write")]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.body["token_type"], "Bearer");
        assert_eq!(r.body["expires_in"], 300);
        assert_eq!(r.body["scope"], "context:read context:write");
        assert!(r.body.get("refresh_token").is_none());
        let token = r.body["access_token"].as_str().unwrap().to_string();
        let header = jwt_part(&token, 0);
        assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("EdDSA")));
        let claims = jwt_part(&token, 1);
        assert_eq!(claims["aud"], srv.url.as_str());
        assert_eq!(claims["iss"], srv.url.as_str());
        assert_eq!(claims["client_id"], id.as_str());
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);

        let created = srv.create_context(&token, sample_context()).await;
        let path = format!("/context/{}", created["context_id"].as_str().unwrap());
        assert_eq!(srv.call(Method::GET, &path, Some(&token), None).await.status, StatusCode::OK);
        // Roles still apply: a writer cannot delete, whatever the token says.
        srv.call(Method::DELETE, &path, Some(&token), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        // Scopes narrow: this token has no inject scope.
        let r = srv.call(Method::POST, &format!("{path}/messages"), Some(&token), Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await;
        r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
        assert!(r.header("www-authenticate").unwrap().contains("scope=\"context:inject\""));

        // Introspection by a confidential client of the same tenant.
        let i = srv.form("/oauth/introspect", &[("token", &token)], Some((&id, &secret))).await;
        assert_eq!(i.body["active"], true, "{}", i.body);
        assert_eq!(i.body["client_id"], id.as_str());
        // Revocation: refused on the very next request.
        let rv = srv.form("/oauth/revoke", &[("token", &token)], Some((&id, &secret))).await;
        assert_eq!(rv.status, StatusCode::OK);
        assert_invalid_token(&srv.call(Method::GET, &path, Some(&token), None).await);
        let i = srv.form("/oauth/introspect", &[("token", &token)], Some((&id, &secret))).await;
        assert_eq!(i.body, json!({"active": false}));
        // Revoking garbage is still 200 (RFC 7009).
        assert_eq!(srv.form("/oauth/revoke", &[("token", "garbage")], Some((&id, &secret))).await.status, StatusCode::OK);
    }

    async fn token_endpoint_refusals(srv) {
        let (id, secret) = srv.machine_client("m", &["reader"], Some(&["context:read"])).await;
        let r = srv.cc_token(&id, "wrong-secret", &[]).await;
        assert_oauth_error(&r, StatusCode::UNAUTHORIZED, "invalid_client");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
        assert_oauth_error(&srv.cc_token("nope", &secret, &[]).await, StatusCode::UNAUTHORIZED, "invalid_client");
        assert_oauth_error(&srv.cc_token(&id, &secret, &[("scope", "context:read context:write")]).await, StatusCode::BAD_REQUEST, "invalid_scope");
        assert_oauth_error(&srv.cc_token(&id, &secret, &[("scope", "context:everything")]).await, StatusCode::BAD_REQUEST, "invalid_scope");
        assert_oauth_error(&srv.cc_token(&id, &secret, &[("resource", "https://elsewhere.example")]).await, StatusCode::BAD_REQUEST, "invalid_target");
        assert_oauth_error(&srv.form("/oauth/token", &[("grant_type", "password")], Some((&id, &secret))).await, StatusCode::BAD_REQUEST, "unsupported_grant_type");
        assert_oauth_error(&srv.form("/oauth/token", &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")], Some((&id, &secret))).await, StatusCode::BAD_REQUEST, "invalid_request");
        assert_oauth_error(&srv.form("/oauth/token", &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)], Some((&id, &secret))).await, StatusCode::BAD_REQUEST, "invalid_request");
        let json_body = srv.send(srv.request(Method::POST, "/oauth/token", None).json(&json!({"grant_type": "client_credentials"}))).await;
        assert_oauth_error(&json_body, StatusCode::BAD_REQUEST, "invalid_request");
        // client_secret_post works too.
        let ok = srv.form("/oauth/token", &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)], None).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        let token = ok.body["access_token"].as_str().unwrap().to_string();
        // A code-flow client may not use client_credentials.
        let (web, web_secret) = srv.oauth_client(json!({"name": "web", "redirect_uris": ["https://app.example.com/cb"]})).await;
        assert_oauth_error(&srv.cc_token(&web, &web_secret.unwrap(), &[]).await, StatusCode::BAD_REQUEST, "unauthorized_client");
        // Deleting the client revokes its tokens and refuses new ones.
        let del = srv.admin(Method::DELETE, &format!("/admin/clients/{id}"), None).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_oauth_error(&srv.cc_token(&id, &secret, &[]).await, StatusCode::UNAUTHORIZED, "invalid_client");
        assert_invalid_token(&srv.call(Method::GET, "/context", Some(&token), None).await);
    }

    async fn forged_and_misdirected_tokens_are_refused(srv) {
        let (id, secret) = srv.machine_client("w", &["writer"], None).await;
        let good = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(srv.call(Method::GET, "/context", Some(&good), None).await.status, StatusCode::OK);
        let key = srv.signing_key().await;
        let claims = good_claims(&srv, &good);
        let now = chrono::Utc::now().timestamp();
        let hdr = |f: &dyn Fn(&mut jsonwebtoken::Header)| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.typ = Some("at+jwt".into());
            h.kid = Some(key.kid.clone());
            f(&mut h);
            h
        };
        let with = |f: &dyn Fn(&mut Value)| { let mut c = claims.clone(); f(&mut c); c };
        // Sanity: our forging helper makes a valid token when nothing is wrong.
        assert_eq!(srv.call(Method::GET, "/context", Some(&sign(&key, hdr(&|_| {}), &claims)), None).await.status, StatusCode::OK);

        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let parts: Vec<&str> = good.split('.').collect();
        let mut tampered_claims = jwt_part(&good, 1);
        tampered_claims["scope"] = json!("context:read context:inject context:write context:delete admin");
        let jwk_x = URL_SAFE_NO_PAD.decode(srv.call(Method::GET, "/oauth/jwks", None, None).await.body["keys"][0]["x"].as_str().unwrap()).unwrap();
        let hs_with_public_key = jsonwebtoken::encode(
            &{ let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256); h.typ = Some("at+jwt".into()); h.kid = Some(key.kid.clone()); h },
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&jwk_x),
        ).unwrap();
        let forged = vec![
            ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "at+jwt", "kid": key.kid})), parts[1])),
            ("HS256 with the public key", hs_with_public_key),
            ("unknown kid", sign(&key, hdr(&|h| h.kid = Some("nope".into())), &claims)),
            ("kid with path and SQL", sign(&key, hdr(&|h| h.kid = Some("../../etc/passwd' OR '1'='1".into())), &claims)),
            ("no kid", sign(&key, hdr(&|h| h.kid = None), &claims)),
            ("expired", sign(&key, hdr(&|_| {}), &with(&|c| { c["exp"] = json!(now - 120); c["iat"] = json!(now - 500); c["nbf"] = json!(now - 500); }))),
            ("not yet valid", sign(&key, hdr(&|_| {}), &with(&|c| c["nbf"] = json!(now + 600)))),
            ("wrong issuer", sign(&key, hdr(&|_| {}), &with(&|c| c["iss"] = json!("https://evil.example")))),
            ("wrong audience", sign(&key, hdr(&|_| {}), &with(&|c| c["aud"] = json!("https://other.example/mcp")))),
            ("wrong typ", sign(&key, hdr(&|h| h.typ = Some("JWT".into())), &claims)),
            ("no typ", sign(&key, hdr(&|h| h.typ = None), &claims)),
            ("tampered payload", format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2])),
            ("other tenant", sign(&key, hdr(&|_| {}), &with(&|c| c["tenant"] = json!(uuid::Uuid::new_v4().to_string())))),
            ("unknown subject", sign(&key, hdr(&|_| {}), &with(&|c| c["sub"] = json!(uuid::Uuid::new_v4().to_string())))),
            ("garbage", "not.a.jwt".to_string()),
        ];
        for (what, token) in &forged {
            let r = srv.call(Method::POST, "/context", Some(token), Some(sample_context())).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
            assert_invalid_token(&r);
        }
        srv.call(Method::GET, &format!("/context?access_token={good}"), None, None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        let list = srv.call(Method::GET, "/context", Some(&good), None).await;
        assert!(list.body["items"].as_array().unwrap().is_empty(), "a forged token stored something");
    }

    async fn revoke_everything_of_a_principal(srv) {
        let (id, secret) = srv.machine_client("bot", &["writer"], None).await;
        let t1 = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(srv.call(Method::GET, "/context", Some(&t1), None).await.status, StatusCode::OK);
        let principal = jwt_part(&t1, 1)["sub"].as_str().unwrap().to_string();
        let r = srv.admin(Method::POST, &format!("/admin/principals/{principal}/revoke-all"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_invalid_token(&srv.call(Method::GET, "/context", Some(&t1), None).await);
        // Tokens issued after the revocation (in a later second) work again.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let t2 = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(srv.call(Method::GET, "/context", Some(&t2), None).await.status, StatusCode::OK);
    }

    async fn key_rotation_keeps_old_tokens_valid(srv) {
        let (id, secret) = srv.machine_client("bot", &["reader"], None).await;
        let old = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
        let old_kid = jwt_part(&old, 0)["kid"].as_str().unwrap().to_string();
        let r = srv.admin(Method::POST, "/admin/keys/rotate", Some(json!({"alg": "ES256"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let new = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
        let h = jwt_part(&new, 0);
        assert_eq!(h["alg"], "ES256");
        assert_ne!(h["kid"], old_kid.as_str());
        for t in [&old, &new] {
            assert_eq!(srv.call(Method::GET, "/context", Some(t), None).await.status, StatusCode::OK);
        }
        let jwks = srv.call(Method::GET, "/oauth/jwks", None, None).await;
        let kids: Vec<&str> = jwks.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert!(kids.contains(&old_kid.as_str()) && kids.contains(&h["kid"].as_str().unwrap()), "{kids:?}");
        let listed = srv.admin(Method::GET, "/admin/keys", None).await;
        let statuses: Vec<&str> = listed.body.as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, vec!["previous", "current"]);
        let agent = srv.agent("a", &["admin"]).await;
        srv.call(Method::POST, "/admin/keys/rotate", Some(&agent), Some(json!({}))).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn es256_signing_from_the_start() {
    let srv =
        TestServer::start_with(Backend::Sqlite, |c| c.signing_alg = Some(ctxguard::jwt::KeyAlg::Es256)).await.unwrap();
    let (id, secret) = srv.machine_client("bot", &["reader"], None).await;
    let token = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_part(&token, 0)["alg"], "ES256");
    assert_eq!(srv.call(Method::GET, "/context", Some(&token), None).await.status, StatusCode::OK);
    let jwks = srv.call(Method::GET, "/oauth/jwks", None, None).await;
    assert_eq!(jwks.body["keys"][0]["kty"], "EC");
    assert_eq!(jwks.body["keys"][0]["crv"], "P-256");
    srv.stop().await;
}

/// Expired OAuth state (deny-list entries, browser sessions, codes, refresh tokens) is
/// removed by the sweeper; what has not expired stays.
async fn expired_oauth_state_is_purged(backend: Backend) {
    let Some(srv) = TestServer::start_with(backend, |c| c.sweep_interval_secs = Some(1)).await else { return };
    let now = chrono::Utc::now().timestamp_millis();
    srv.raw_sql(&format!(
        "INSERT INTO revoked_tokens (jti, expires_ms) VALUES ('gone-1', {old}), ('gone-2', {old}), ('kept', {future}); \
         INSERT INTO browser_sessions (session_hash, principal_id, csrf_token, expires_ms, created_at_ms) \
         VALUES ('s-gone', 'p', 'c', {old}, {old}), ('s-kept', 'p', 'c', {future}, {old});",
        old = now - 60_000,
        future = now + 3_600_000
    ))
    .await;
    let start = std::time::Instant::now();
    loop {
        let left = srv.raw_count("SELECT COUNT(*) FROM revoked_tokens").await
            + srv.raw_count("SELECT COUNT(*) FROM browser_sessions").await;
        if left == 2 {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(6), "expired rows are still there ({left} rows)");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(srv.raw_count("SELECT COUNT(*) FROM revoked_tokens WHERE jti = 'kept'").await, 1);
    assert_eq!(srv.raw_count("SELECT COUNT(*) FROM browser_sessions WHERE session_hash = 's-kept'").await, 1);
    srv.stop().await;
}

#[tokio::test]
async fn sqlite_expired_oauth_state_is_purged() {
    expired_oauth_state_is_purged(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_expired_oauth_state_is_purged() {
    expired_oauth_state_is_purged(Backend::Postgres).await;
}
