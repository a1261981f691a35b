//! The admin API: tenants, principals, API keys, revoke-all.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::sample_context;

backend_tests! {
    async fn tenants_principals_and_keys(srv) {
        let t = srv.admin(Method::POST, "/admin/tenants", Some(json!({"name": "acme"}))).await;
        assert_eq!(t.status, StatusCode::CREATED);
        assert_eq!(t.body["name"], "acme");
        srv.admin(Method::POST, "/admin/tenants", Some(json!({"name": "acme"}))).await.assert_error(StatusCode::CONFLICT, "conflict");
        srv.admin(Method::POST, "/admin/tenants", Some(json!({"name": "bad name!"}))).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        let tenants = srv.admin(Method::GET, "/admin/tenants", None).await;
        let names: Vec<&str> = tenants.body.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["acme", "default"]);

        let p = srv.admin(Method::POST, "/admin/principals", Some(json!({
            "tenant": t.body["id"], "kind": "user", "name": "alice", "roles": ["admin"], "password": "a long enough password"
        }))).await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
        assert_eq!(p.body["roles"], json!(["admin"]));
        assert!(p.body.get("password").is_none() && p.body.get("password_hash").is_none());
        srv.admin(Method::POST, "/admin/principals", Some(json!({"tenant": "acme", "kind": "user", "name": "alice"}))).await
            .assert_error(StatusCode::CONFLICT, "conflict");
        srv.admin(Method::POST, "/admin/principals", Some(json!({"tenant": "acme", "kind": "user", "name": "bob", "password": "short"}))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        let bad_role = srv.admin(Method::POST, "/admin/principals", Some(json!({"tenant": "acme", "kind": "agent", "name": "x", "roles": ["root"]}))).await;
        bad_role.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(bad_role.body["error"].as_str().unwrap().contains("roles"), "{}", bad_role.body);
        srv.admin(Method::POST, "/admin/principals", Some(json!({"tenant": "nope", "kind": "agent", "name": "x"}))).await
            .assert_error(StatusCode::NOT_FOUND, "not_found");

        // The tenant admin administers acme only.
        let alice = p.body["id"].as_str().unwrap();
        let (key_id, alice_key) = srv.api_key(alice, None, None).await;
        let listed = srv.admin(Method::GET, &format!("/admin/api-keys?principal={alice}"), None).await;
        assert_eq!(listed.body[0]["id"], key_id.as_str());
        assert!(listed.body[0].get("key").is_none(), "the key is shown once only");
        assert!(!listed.body.to_string().contains(&alice_key));
        let r = srv.call(Method::POST, "/admin/principals", Some(&alice_key), Some(json!({"kind": "agent", "name": "bot", "roles": ["writer"]}))).await;
        assert_eq!(r.status, StatusCode::CREATED);
        let bot = r.body["id"].as_str().unwrap().to_string();
        let one = srv.call(Method::GET, &format!("/admin/principals/{bot}"), Some(&alice_key), None).await;
        assert_eq!((one.status, one.body["name"].as_str()), (StatusCode::OK, Some("bot")));
        let tenant_keys = srv.call(Method::GET, "/admin/api-keys", Some(&alice_key), None).await;
        assert_eq!(tenant_keys.body.as_array().unwrap().len(), 1, "{}", tenant_keys.body);
        assert_eq!(tenant_keys.body[0]["id"], key_id.as_str());
        let mine = srv.call(Method::GET, "/admin/principals", Some(&alice_key), None).await;
        assert_eq!(mine.body.as_array().unwrap().len(), 2);
        srv.call(Method::GET, "/admin/principals?tenant=default", Some(&alice_key), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        srv.call(Method::POST, "/admin/tenants", Some(&alice_key), Some(json!({"name": "mine"}))).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        let default_admin = srv.admin(Method::GET, "/admin/principals?tenant=default", None).await;
        let admin_id = default_admin.body[0]["id"].as_str().unwrap();
        srv.call(Method::GET, &format!("/admin/principals/{admin_id}"), Some(&alice_key), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        srv.call(Method::POST, &format!("/admin/principals/{admin_id}/revoke-all"), Some(&alice_key), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(srv.admin(Method::GET, "/admin/tenants", None).await.status, StatusCode::OK, "the platform admin key still works");

        // Role changes take effect at once; revoke-all kills every key.
        let (_, bot_key) = srv.api_key(&bot, None, None).await;
        let (_, bot_key2) = srv.api_key(&bot, Some(&["context:read"]), Some(3600)).await;
        assert_eq!(srv.call(Method::POST, "/context", Some(&bot_key), Some(sample_context())).await.status, StatusCode::CREATED);
        let r = srv.call(Method::PATCH, &format!("/admin/principals/{bot}"), Some(&alice_key), Some(json!({"roles": ["reader"]}))).await;
        assert_eq!(r.body["roles"], json!(["reader"]));
        srv.call(Method::POST, "/context", Some(&bot_key), Some(sample_context())).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        let r = srv.call(Method::POST, &format!("/admin/principals/{bot}/revoke-all"), Some(&alice_key), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        for k in [&bot_key, &bot_key2] {
            srv.call(Method::GET, "/context", Some(k), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        }
        srv.admin(Method::PATCH, &format!("/admin/principals/{bot}"), Some(json!({"role": ["reader"]}))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.admin(Method::GET, "/admin/principals/not-a-uuid", None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.admin(Method::DELETE, &format!("/admin/api-keys/{}", uuid::Uuid::new_v4()), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        srv.admin(Method::POST, "/admin/api-keys", Some(json!({"principal": bot, "scopes": ["context:all"]}))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.admin(Method::POST, "/admin/api-keys", Some(json!({"principal": bot, "expires_in": 0}))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        let created = srv.admin(Method::POST, "/admin/api-keys", Some(json!({"principal": bot}))).await;
        assert_eq!(created.header("cache-control"), Some("no-store"));
        assert!(created.body["key"].as_str().unwrap().starts_with("ctxg_"));
    }

    async fn keys_survive_restart(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let admin_key = srv.admin_key.clone();
        srv.restart().await;
        assert_eq!(srv.call(Method::POST, "/context", Some(&key), Some(sample_context())).await.status, StatusCode::CREATED);
        assert_eq!(srv.call(Method::GET, "/admin/tenants", Some(&admin_key), None).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn tenant_admins_cannot_touch_the_platform_operator() {
    let srv = crate::support::TestServer::start(crate::support::Backend::Sqlite).await.unwrap();
    let tenant_admin = srv.agent("default-admin", &["admin"]).await;
    let operators = srv.admin(Method::GET, "/admin/principals", None).await;
    let operator = operators.body.as_array().unwrap().iter().find(|p| p["name"] == "admin").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let keys = srv.admin(Method::GET, &format!("/admin/api-keys?principal={operator}"), None).await;
    let operator_key_id = keys.body[0]["id"].as_str().unwrap().to_string();
    for (method, path, body) in [
        (Method::POST, "/admin/api-keys".to_string(), Some(json!({"principal": operator}))),
        (Method::POST, format!("/admin/principals/{operator}/revoke-all"), None),
        (Method::PATCH, format!("/admin/principals/{operator}"), Some(json!({"disabled": true}))),
        (Method::DELETE, format!("/admin/api-keys/{operator_key_id}"), None),
    ] {
        let r = srv.call(method.clone(), &path, Some(&tenant_admin), body).await;
        r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(
        srv.admin(Method::GET, "/admin/tenants", None).await.status,
        StatusCode::OK,
        "the operator's key still works"
    );
    let keys = srv.admin(Method::GET, &format!("/admin/api-keys?principal={operator}"), None).await;
    assert_eq!(keys.body.as_array().unwrap().len(), 1, "no key was minted for the operator");
    // Nor may a tenant admin read the operator's key metadata, by principal or in the
    // tenant's listing (which still shows its own keys).
    srv.call(Method::GET, &format!("/admin/api-keys?principal={operator}"), Some(&tenant_admin), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let listed = srv.call(Method::GET, "/admin/api-keys", Some(&tenant_admin), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&str> = listed.body.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&operator_key_id.as_str()), "the operator's key is listed to a tenant admin: {ids:?}");
    assert!(!ids.is_empty(), "the tenant admin's own key is listed");
    let all = srv.admin(Method::GET, "/admin/api-keys", None).await;
    assert!(all.body.as_array().unwrap().iter().any(|k| k["id"] == operator_key_id.as_str()), "the operator sees it");
    srv.stop().await;
}

/// The contract fixes schemathesis found (docs/api.md): an administrator cannot cut off
/// the credential it is using, bodies are JSON objects, whole numbers may be written
/// `60.0`, and names count characters.
mod contract {
    use super::*;

    backend_tests! {
        async fn an_administrator_cannot_lock_itself_out(srv) {
            let admin = srv.create_principal("default", "operator", &["admin"]).await;
            let (key_id, key) = srv.api_key(&admin, None, None).await;
            let call = |method: Method, path: String, body: Option<serde_json::Value>| {
                let key = key.clone();
                let srv = &srv;
                async move { srv.call(method, &path, Some(&key), body).await }
            };
            for (method, path, body) in [
                (Method::DELETE, format!("/admin/api-keys/{key_id}"), None),
                (Method::POST, format!("/admin/principals/{admin}/revoke-all"), None),
                (Method::PATCH, format!("/admin/principals/{admin}"), Some(json!({"disabled": true}))),
                (Method::PATCH, format!("/admin/principals/{admin}"), Some(json!({"roles": ["writer"]}))),
            ] {
                let r = call(method.clone(), path.clone(), body).await;
                r.assert_error(StatusCode::CONFLICT, "conflict");
                assert!(r.body["error"].as_str().unwrap().contains("another administrator"), "{method} {path}: {}", r.body);
            }
            // Nothing changed: the key still works and the principal is an enabled admin.
            let me = call(Method::GET, format!("/admin/principals/{admin}"), None).await;
            assert_eq!(me.status, StatusCode::OK);
            assert_eq!((me.body["disabled"].clone(), me.body["roles"].clone()), (json!(false), json!(["admin"])));
            // Another administrator can do each of them (positive control).
            let revoked = srv.admin(Method::DELETE, &format!("/admin/api-keys/{key_id}"), None).await;
            assert!(revoked.status.is_success(), "{}", revoked.body);
            assert_eq!(call(Method::GET, "/admin/principals".into(), None).await.status, StatusCode::UNAUTHORIZED);
        }

        async fn bodies_are_objects_and_numbers_whole(srv) {
            let r = srv.send(srv.request(Method::PATCH, &format!("/admin/principals/{}", uuid::Uuid::new_v4()), Some(&srv.admin_key))
                .header("content-type", "application/json").body("[null, null]")).await;
            r.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
            assert!(r.body["error"].as_str().unwrap().contains("JSON object"), "{}", r.body);
            let principal = srv.create_principal("default", "timed", &["reader"]).await;
            let ok = srv.admin(Method::POST, "/admin/api-keys", Some(json!({"principal": principal, "expires_in": 60.0}))).await;
            assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
            srv.admin(Method::POST, "/admin/api-keys", Some(json!({"principal": principal, "expires_in": 60.5}))).await
                .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
            // 128 characters of any script is a valid name (the limit counts characters).
            let long = "é".repeat(128);
            let p = srv.admin(Method::POST, "/admin/principals", Some(json!({"kind": "agent", "name": long}))).await;
            assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
            srv.admin(Method::POST, "/admin/principals", Some(json!({"kind": "agent", "name": "é".repeat(129)}))).await
                .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
            // A client_credentials client with a 200-character name gets a principal.
            let c = srv.admin(Method::POST, "/admin/clients", Some(json!({"name": "c".repeat(200), "grant_types": ["client_credentials"]}))).await;
            assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
            srv.admin(Method::POST, "/admin/clients", Some(json!({"name": "dup", "grant_types": ["client_credentials", "client_credentials"]}))).await
                .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
}
