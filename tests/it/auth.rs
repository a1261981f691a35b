//! Authentication and authorization refusals: every refused request gets the right
//! status, body and challenge, and storage is unchanged afterwards.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::{Reply, sample_context};

#[track_caller]
fn assert_challenge(r: &Reply, srv_url: &str, error: Option<&str>) {
    let www = r.header("www-authenticate").expect("WWW-Authenticate on 401");
    assert!(
        www.starts_with(&format!("Bearer resource_metadata=\"{srv_url}/.well-known/oauth-protected-resource\"")),
        "{www}"
    );
    match error {
        Some(e) => assert!(www.contains(&format!("error=\"{e}\"")), "{www}"),
        None => assert!(!www.contains("error="), "{www}"),
    }
}

backend_tests! {
    async fn missing_bad_revoked_and_expired_keys_are_refused(srv) {
        let agent = srv.create_principal("default", "a", &["writer"]).await;
        let (key_id, key) = srv.api_key(&agent, None, None).await;
        let created = srv.create_context(&key, sample_context()).await;
        let path = format!("/context/{}", created["context_id"].as_str().unwrap());

        let r = srv.call(Method::GET, &path, None, None).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_challenge(&r, &srv.url, None);

        let forged = format!("ctxg_{}", "A".repeat(43));
        for bad in [forged.as_str(), "ctxg_short", "not-a-ctxguard-token"] {
            let r = srv.call(Method::GET, &path, Some(bad), None).await;
            r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
            assert_challenge(&r, &srv.url, Some("invalid_token"));
        }
        let r = srv.send(srv.request(Method::GET, &path, None).header("authorization", "Basic YTpi")).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

        // Tokens in the query string are refused outright.
        srv.call(Method::GET, &format!("{path}?access_token={key}"), None, None).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");

        // Revoked: refused on the very next request, and a refused write stores nothing.
        let del = srv.admin(Method::DELETE, &format!("/admin/api-keys/{key_id}"), None).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        let r = srv.call(Method::POST, &format!("{path}/messages"), Some(&key), Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        assert_challenge(&r, &srv.url, Some("invalid_token"));
        assert_eq!(srv.stored(created["context_id"].as_str().unwrap()).await.body, created);

        // Expired.
        // Generous on a busy machine: accepted at once, refused once its 3 s are over.
        let (_, short) = srv.api_key(&agent, None, Some(3)).await;
        let issued = std::time::Instant::now();
        assert_eq!(srv.call(Method::GET, &path, Some(&short), None).await.status, StatusCode::OK);
        tokio::time::sleep(std::time::Duration::from_millis(3100).saturating_sub(issued.elapsed())).await;
        srv.call(Method::GET, &path, Some(&short), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

        // A disabled principal's keys stop working.
        let (_, k2) = srv.api_key(&agent, None, None).await;
        let r = srv.admin(Method::PATCH, &format!("/admin/principals/{agent}"), Some(json!({"disabled": true}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        srv.call(Method::GET, &path, Some(&k2), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }

    async fn other_tenant_sees_404_identical_to_missing(srv) {
        let key = srv.agent("w", &["maintainer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        srv.create_tenant("acme").await;
        let outsider = srv.create_principal("acme", "intruder", &["admin"]).await;
        let (_, okey) = srv.api_key(&outsider, None, None).await;
        let missing = uuid::Uuid::new_v4().to_string();

        let foreign = srv.call(Method::GET, &format!("/context/{id}"), Some(&okey), None).await;
        let absent = srv.call(Method::GET, &format!("/context/{missing}"), Some(&okey), None).await;
        foreign.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        assert_eq!(foreign.body["error"], absent.body["error"]);
        assert_eq!(foreign.body.as_object().unwrap().keys().collect::<Vec<_>>(), absent.body.as_object().unwrap().keys().collect::<Vec<_>>());
        let names = |r: &Reply| { let mut v: Vec<String> = r.headers.keys().map(|k| k.to_string()).filter(|k| k != "x-request-id" && k != "date").collect(); v.sort(); v };
        assert_eq!(names(&foreign), names(&absent));

        for (method, suffix, body) in [
            (Method::PUT, "", Some(sample_context())),
            (Method::PATCH, "", Some(json!({"metadata": {"x": 1}}))),
            (Method::POST, "/messages", Some(json!({"messages": [{"role": "user", "message": "inject"}]}))),
            (Method::DELETE, "", None),
            (Method::GET, "/versions", None),
            (Method::GET, "/versions/1", None),
        ] {
            srv.call(method.clone(), &format!("/context/{id}{suffix}"), Some(&okey), body).await
                .assert_error(StatusCode::NOT_FOUND, "context_not_found");
        }
        assert_eq!(srv.stored(id).await.body, created, "a foreign tenant changed storage");
        let list = srv.call(Method::GET, "/context", Some(&okey), None).await;
        assert!(list.body["items"].as_array().unwrap().is_empty(), "list leaked {}", list.body);
        // The outsider's own context with a client-chosen id equal to ours does not collide.
        let mut same_id = sample_context();
        same_id["context_id"] = json!(id);
        assert_eq!(srv.call(Method::POST, "/context", Some(&okey), Some(same_id)).await.status, StatusCode::CREATED);
        assert_eq!(srv.stored(id).await.body, created);
    }

    async fn roles_are_enforced(srv) {
        let writer = srv.agent("writer", &["writer"]).await;
        let reader = srv.agent("reader", &["reader"]).await;
        let injector = srv.agent("injector", &["injector"]).await;
        let other_writer = srv.agent("writer2", &["writer"]).await;
        let nobody = srv.agent("nobody", &[]).await;
        let created = srv.create_context(&writer, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        let path = format!("/context/{id}");
        let msg = json!({"messages": [{"role": "user", "message": "x"}]});

        assert_eq!(srv.call(Method::GET, &path, Some(&reader), None).await.status, StatusCode::OK);
        srv.call(Method::POST, "/context", Some(&reader), Some(sample_context())).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::PUT, &path, Some(&reader), Some(sample_context())).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::POST, &format!("{path}/messages"), Some(&reader), Some(msg.clone())).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::DELETE, &path, Some(&reader), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        // A writer changes only its own contexts.
        srv.call(Method::PATCH, &path, Some(&other_writer), Some(json!({"metadata": {"x": 1}}))).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::DELETE, &path, Some(&writer), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        // A principal without roles cannot see the context at all.
        srv.call(Method::GET, &path, Some(&nobody), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        // Non-admins have no admin API.
        srv.call(Method::GET, "/admin/principals", Some(&writer), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::POST, "/admin/tenants", Some(&writer), Some(json!({"name": "x"}))).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(srv.stored(id).await.body, created, "refused writes changed storage");

        let r = srv.call(Method::POST, &format!("{path}/messages"), Some(&injector), Some(msg)).await;
        assert_eq!(r.status, StatusCode::OK);
        srv.call(Method::PUT, &path, Some(&injector), Some(sample_context())).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }

    async fn scopes_narrow_roles_with_step_up_challenge(srv) {
        let admin_principal = srv.create_principal("default", "scoped", &["admin"]).await;
        let (_, read_only) = srv.api_key(&admin_principal, Some(&["context:read"]), None).await;
        let full = srv.agent("full", &["writer"]).await;
        let created = srv.create_context(&full, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        assert_eq!(srv.call(Method::GET, &format!("/context/{id}"), Some(&read_only), None).await.status, StatusCode::OK);
        let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&read_only), Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await;
        r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
        let www = r.header("www-authenticate").unwrap();
        assert!(www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"context:inject\""), "{www}");
        srv.call(Method::DELETE, &format!("/context/{id}"), Some(&read_only), None).await.assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
        srv.call(Method::GET, "/admin/principals", Some(&read_only), None).await.assert_error(StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(srv.stored(id).await.body, created);
        // mcp:write is an alias of read + inject + write.
        let (_, alias) = srv.api_key(&admin_principal, Some(&["mcp:write"]), None).await;
        let keys = srv.admin(Method::GET, &format!("/admin/api-keys?principal={admin_principal}"), None).await;
        assert!(keys.body.as_array().unwrap().iter().any(|k| k["scopes"] == json!(["context:read", "context:inject", "context:write"])));
        assert_eq!(srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&alias), Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await.status, StatusCode::OK);
    }
}
