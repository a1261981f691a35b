//! Caches never outlive a change: what one replica (or the CLI) revokes or writes is
//! refused or seen by every other replica within `store::MAX_STALENESS`, and at once
//! on the replica that made the change. Each test warms the other replica's caches
//! first, so a stale entry would be there to be served.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::{Replica, TestServer, sample_context};

/// The contract for revocation across replicas (1 s); the implementation's bound is
/// `ctxguard::store::MAX_STALENESS`.
const WITHIN: Duration = Duration::from_secs(1);

/// Polls `probe` on `url` until it returns true; fails if that takes longer than
/// [`WITHIN`]. Returns how long it took.
async fn settles<F, Fut>(what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < WITHIN + Duration::from_millis(200), "{what}: still not seen after {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_status(srv: &TestServer, base: &str, path: &str, key: &str) -> StatusCode {
    srv.http.get(format!("{base}{path}")).bearer_auth(key).send().await.unwrap().status()
}

/// Warms a replica's caches for `path` with `key` (several hits, all answered 200).
async fn warm(srv: &TestServer, replica: &Replica, path: &str, key: &str) {
    for _ in 0..3 {
        assert_eq!(get_status(srv, &replica.url, path, key).await, StatusCode::OK);
    }
}

backend_tests! {
    async fn an_api_key_revoked_on_one_replica_is_refused_by_all(srv) {
        let replica = srv.replica().await;
        let principal = srv.create_principal("default", "cached-agent", &["writer"]).await;
        let (key_id, key) = srv.api_key(&principal, None, None).await;
        let ctx = srv.create_context(&key, sample_context()).await;
        let path = format!("/context/{}", ctx["context_id"].as_str().unwrap());
        warm(&srv, &replica, &path, &key).await;
        warm(&srv, &replica, &path, &key).await;

        let r = srv.admin(Method::DELETE, &format!("/admin/api-keys/{key_id}"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        // The replica that revoked refuses at once ...
        assert_eq!(get_status(&srv, &srv.url, &path, &key).await, StatusCode::UNAUTHORIZED);
        // ... every other one within the bound, and from then on for good.
        settles("key revocation on the other replica", || async {
            get_status(&srv, &replica.url, &path, &key).await == StatusCode::UNAUTHORIZED
        })
        .await;
        for _ in 0..5 {
            assert_eq!(get_status(&srv, &replica.url, &path, &key).await, StatusCode::UNAUTHORIZED);
        }
        replica.stop().await;
    }

    async fn a_revoked_access_token_is_refused_by_every_replica(srv) {
        let replica = srv.replica().await;
        let (id, secret) = srv.machine_client("cached-svc", &["reader"], None).await;
        let token = srv.cc_token(&id, &secret, &[("scope", "context:read")]).await;
        let token = token.body["access_token"].as_str().unwrap().to_string();
        let writer = srv.agent("cached-writer", &["maintainer"]).await;
        let ctx = srv.create_context(&writer, sample_context()).await;
        let path = format!("/context/{}", ctx["context_id"].as_str().unwrap());
        warm(&srv, &replica, &path, &token).await;

        let r = srv.form("/oauth/revoke", &[("token", &token)], Some((&id, &secret))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(get_status(&srv, &srv.url, &path, &token).await, StatusCode::UNAUTHORIZED);
        settles("token revocation on the other replica", || async {
            get_status(&srv, &replica.url, &path, &token).await == StatusCode::UNAUTHORIZED
        })
        .await;
        replica.stop().await;
    }

    async fn a_client_deleted_on_one_replica_gets_no_token_from_another(srv) {
        let replica = srv.replica().await;
        let (id, secret) = srv.machine_client("cached-client", &["reader"], None).await;
        let token_from = |base: String| {
            let srv = &srv;
            let (id, secret) = (id.clone(), secret.clone());
            async move {
                srv.http
                    .post(format!("{base}/oauth/token"))
                    .basic_auth(&id, Some(&secret))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("grant_type=client_credentials")
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        for _ in 0..3 {
            assert_eq!(token_from(replica.url.clone()).await, StatusCode::OK);
        }
        // A wrong secret is refused even while the client is cached.
        let r = srv
            .http
            .post(format!("{}/oauth/token", replica.url))
            .basic_auth(&id, Some("not-the-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
                    .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        let r = srv.admin(Method::DELETE, &format!("/admin/clients/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert_eq!(token_from(srv.url.clone()).await, StatusCode::UNAUTHORIZED);
        settles("client deletion on the other replica", || async {
            token_from(replica.url.clone()).await == StatusCode::UNAUTHORIZED
        })
        .await;
        replica.stop().await;
    }

    async fn a_role_taken_away_on_one_replica_is_enforced_by_all(srv) {
        let replica = srv.replica().await;
        let principal = srv.create_principal("default", "demoted", &["writer"]).await;
        let (_, key) = srv.api_key(&principal, None, None).await;
        let ctx = srv.create_context(&key, sample_context()).await;
        let id = ctx["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}");
        warm(&srv, &replica, &path, &key).await;

        let r = srv.admin(Method::PATCH, &format!("/admin/principals/{principal}"), Some(json!({"roles": []}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // No role left: the context is not even visible any more.
        assert_eq!(get_status(&srv, &srv.url, &path, &key).await, StatusCode::NOT_FOUND);
        settles("role change on the other replica", || async {
            get_status(&srv, &replica.url, &path, &key).await == StatusCode::NOT_FOUND
        })
        .await;
        replica.stop().await;
    }

    async fn a_context_changed_or_deleted_on_one_replica_is_seen_by_all(srv) {
        let replica = srv.replica().await;
        let key = srv.agent("cached-owner", &["maintainer"]).await;
        let ctx = srv.create_context(&key, sample_context()).await;
        let id = ctx["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}");
        warm(&srv, &replica, &path, &key).await;

        let msg = json!({"messages": [{"role": "user", "message": "new turn"}]});
        let r = srv.call(Method::POST, &format!("{path}/messages"), Some(&key), Some(msg)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let version = |base: String| {
            let srv = &srv;
            let key = key.clone();
            let path = path.clone();
            async move {
                let r = srv.http.get(format!("{base}{path}")).bearer_auth(&key).send().await.unwrap();
                r.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string)
            }
        };
        assert_eq!(version(srv.url.clone()).await.as_deref(), Some("\"v2\""), "the writing replica reads its write");
        settles("append on the other replica", || async {
            version(replica.url.clone()).await.as_deref() == Some("\"v2\"")
        })
        .await;

        let r = srv.call(Method::DELETE, &path, Some(&key), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        let deleted = |base: String| {
            let (srv, path, key) = (&srv, &path, &key);
            async move {
                let r = srv.http.get(format!("{base}{path}")).bearer_auth(key).send().await.unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                status == StatusCode::NOT_FOUND && body["code"] == "context_deleted"
            }
        };
        assert!(deleted(srv.url.clone()).await, "the deleting replica answers 404 context_deleted at once");
        settles("delete on the other replica", || deleted(replica.url.clone())).await;
        replica.stop().await;
    }

    async fn a_grant_given_or_revoked_on_one_replica_is_enforced_by_all(srv) {
        let replica = srv.replica().await;
        let owner = srv.agent("sharing-owner", &["maintainer"]).await;
        let friend = srv.create_principal("default", "friend", &[]).await;
        let friend_key = srv.api_key(&friend, None, None).await.1;
        let ctx = srv.create_context(&owner, sample_context()).await;
        let path = format!("/context/{}", ctx["context_id"].as_str().unwrap());
        // The replica holds the context's head (and its empty grant list) in its cache.
        warm(&srv, &replica, &path, &owner).await;
        assert_eq!(get_status(&srv, &replica.url, &path, &friend_key).await, StatusCode::NOT_FOUND);

        let r = srv.call(Method::POST, &format!("{path}/grants"), Some(&owner), Some(json!({"grantee": {"principal": friend}, "role": "reader"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let grant = r.body["id"].as_str().unwrap().to_string();
        assert_eq!(get_status(&srv, &srv.url, &path, &friend_key).await, StatusCode::OK, "the granting replica at once");
        settles("grant on the other replica", || async {
            get_status(&srv, &replica.url, &path, &friend_key).await == StatusCode::OK
        })
        .await;
        warm(&srv, &replica, &path, &friend_key).await;

        let r = srv.call(Method::DELETE, &format!("{path}/grants/{grant}"), Some(&owner), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(get_status(&srv, &srv.url, &path, &friend_key).await, StatusCode::NOT_FOUND, "revoked at once here");
        settles("grant revocation on the other replica", || async {
            get_status(&srv, &replica.url, &path, &friend_key).await == StatusCode::NOT_FOUND
        })
        .await;
        replica.stop().await;
    }
}

/// With both caches turned off every read goes to the database, and still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_can_be_turned_off() {
    let Some(srv) = TestServer::start_with(crate::support::Backend::Sqlite, |c| {
        c.context_cache_mb = Some(0);
        c.credential_cache_entries = Some(0);
    })
    .await
    else {
        return;
    };
    let key = srv.agent("uncached", &["writer"]).await;
    let ctx = srv.create_context(&key, sample_context()).await;
    let path = format!("/context/{}", ctx["context_id"].as_str().unwrap());
    for _ in 0..3 {
        let r = srv.call(Method::GET, &path, Some(&key), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, ctx);
    }
    srv.stop().await;
}

/// A signing key rotated on one replica is honoured by every replica at once: a token
/// naming a key a replica does not hold yet makes it reload its keys (it would
/// otherwise wait for its periodic reload, and refuse the token until then), and the
/// key is then in its JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_rotated_on_one_replica_reaches_the_others() {
    let Some(srv) = TestServer::start(crate::support::Backend::Sqlite).await else { return };
    let replica = srv.replica().await;
    let (id, secret) = srv.machine_client("rotating", &["reader"], None).await;
    let r = srv.admin(Method::POST, "/admin/keys/rotate", Some(serde_json::json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kid = r.body["kid"].as_str().unwrap().to_string();
    let token = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(get_status(&srv, &replica.url, "/context", &token).await, StatusCode::OK);
    let jwks: serde_json::Value =
        srv.http.get(format!("{}/oauth/jwks", replica.url)).send().await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid.as_str()), "{jwks}");
    // A key id nobody holds is still refused.
    let forged = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut header: serde_json::Value = serde_json::from_slice(&b64.decode(&parts[0]).unwrap()).unwrap();
        header["kid"] = "no-such-key".into();
        parts[0] = b64.encode(header.to_string());
        parts.join(".")
    };
    assert_eq!(get_status(&srv, &replica.url, "/context", &forged).await, StatusCode::UNAUTHORIZED);

    // A revocation sent to a replica that has not loaded the token's key yet revokes it
    // (RFC 7009 answers 200 either way, so a token it could not read would stay valid).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = srv.admin(Method::POST, "/admin/keys/rotate", Some(serde_json::json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = srv.cc_token(&id, &secret, &[]).await.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(get_status(&srv, &srv.url, "/context", &token).await, StatusCode::OK);
    let r = srv
        .http
        .post(format!("{}/oauth/revoke", replica.url))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_urlencoded::Serializer::new(String::new()).append_pair("token", &token).finish())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get_status(&srv, &srv.url, "/context", &token).await, StatusCode::UNAUTHORIZED);
    replica.stop().await;
    srv.stop().await;
}
