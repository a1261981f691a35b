//! The context API's happy paths and its refusals, on both backends.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::sample_context;

/// The stored object must be a valid OCP context (the draft's JSON Schema), plus
/// our server fields.
fn assert_ocp_valid(ctx: &Value) {
    let schema: Value = serde_json::from_str(include_str!("../../docs/ocp-context.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(ctx).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?} in {ctx}");
}

backend_tests! {
    async fn create_get_and_list(srv) {
        let key = srv.agent("writer-1", &["writer"]).await;
        let r = srv.call(Method::POST, "/context", Some(&key), Some(sample_context())).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("etag"), Some("\"v1\""));
        let id = r.body["context_id"].as_str().unwrap().to_string();
        assert_eq!(r.header("location").unwrap(), format!("{}/context/{id}", srv.url));
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_eq!(r.body["version"], 1);
        assert_ocp_valid(&r.body);

        let got = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, r.body);
        assert_eq!(got.body["session"]["history"][1]["message"], "Where is my invoice?");

        let list = srv.call(Method::GET, "/context", Some(&key), None).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body["items"][0]["context_id"], id.as_str());
        assert_eq!(list.body["items"][0]["message_count"], 2);
        assert!(list.body["next_cursor"].is_null());
    }

    async fn client_chosen_id_and_reuse_refused(srv) {
        let key = srv.agent("w", &["maintainer"]).await;
        let id = uuid::Uuid::new_v4().to_string();
        let mut body = sample_context();
        body["context_id"] = json!(id);
        let created = srv.create_context(&key, body.clone()).await;
        assert_eq!(created["context_id"], id.as_str());

        srv.call(Method::POST, "/context", Some(&key), Some(body.clone())).await
            .assert_error(StatusCode::CONFLICT, "context_exists");
        assert_eq!(srv.stored(&id).await.body, created, "a refused create changed storage");

        let del = srv.call(Method::DELETE, &format!("/context/{id}"), Some(&key), None).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        srv.call(Method::POST, "/context", Some(&key), Some(body)).await
            .assert_error(StatusCode::CONFLICT, "context_exists");
        srv.stored(&id).await.assert_error(StatusCode::NOT_FOUND, "context_deleted");
    }

    async fn replace_with_if_match(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        let path = format!("/context/{id}");
        let replacement = json!({"metadata": {"v": 2}, "session": {"history": []}, "expires": "2099-01-01T00:00:00Z"});

        let stale = srv.send(srv.request(Method::PUT, &path, Some(&key)).header("if-match", "\"v7\"").json(&replacement)).await;
        stale.assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
        assert_eq!(stale.header("etag"), Some("\"v1\""));
        assert_eq!(srv.stored(id).await.body, created);

        let ok = srv.send(srv.request(Method::PUT, &path, Some(&key)).header("if-match", "\"v1\"").json(&replacement)).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.body["version"], 2);
        assert_eq!(ok.body["metadata"], json!({"v": 2}));
        assert_eq!(ok.body["session"]["history"], json!([]));
        assert_eq!(ok.body["expires"], "2099-01-01T00:00:00Z");
        assert_eq!(ok.body["created_at"], created["created_at"]);
        assert_eq!(ok.header("etag"), Some("\"v2\""));
        assert_ocp_valid(&ok.body);

        // Server fields sent back are ignored; a mismatching context_id is refused.
        let mut echoed = ok.body.clone();
        echoed["version"] = json!(99);
        let r = srv.call(Method::PUT, &path, Some(&key), Some(echoed)).await;
        assert_eq!(r.body["version"], 3);
        let mut other = sample_context();
        other["context_id"] = json!(uuid::Uuid::new_v4().to_string());
        srv.call(Method::PUT, &path, Some(&key), Some(other)).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(srv.stored(id).await.body["version"], 3);
    }

    async fn merge_patch_metadata_and_expires(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        let path = format!("/context/{id}");
        let patch = json!({"metadata": {"topic": null, "priority": "high"}, "expires": "2098-05-01T10:00:00+02:00"});
        let r = srv.send(srv.request(Method::PATCH, &path, Some(&key))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["metadata"], json!({"user_id": "user-123", "priority": "high"}));
        assert_eq!(r.body["expires"], "2098-05-01T08:00:00Z");
        assert_eq!(r.body["session"], created["session"]);
        assert_eq!(r.body["version"], 2);

        for bad in [json!({"session": {"history": []}}), json!({"metadata": 3}), json!({"expires": "soon"}), json!([1])] {
            srv.call(Method::PATCH, &path, Some(&key), Some(bad)).await
                .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        assert_eq!(srv.stored(id).await.body, r.body, "refused patches changed storage");
        let r = srv.call(Method::PATCH, &path, Some(&key), Some(json!({"expires": null}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["version"], 3);
        assert!(r.body.get("expires").is_none());
        assert!(srv.stored(id).await.body.get("expires").is_none(), "the cleared expiry is stored");
    }

    async fn append_messages_and_versions(srv) {
        let key = srv.agent("inj", &["writer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key),
            Some(json!({"messages": [{"role": "assistant", "message": "Here it is."}, {"role": "user", "message": "Thanks"}]}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["session"]["history"].as_array().unwrap().len(), 4);
        assert_eq!(r.body["session"]["history"][3]["message"], "Thanks");
        assert_eq!(r.header("etag"), Some("\"v2\""));

        let v1 = srv.call(Method::GET, &format!("/context/{id}/versions/1"), Some(&key), None).await;
        assert_eq!(v1.status, StatusCode::OK);
        assert_eq!(v1.body, created, "version 1 is immutable");
        let list = srv.call(Method::GET, &format!("/context/{id}/versions"), Some(&key), None).await;
        let versions: Vec<i64> = list.body["items"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
        assert_eq!(versions, vec![1, 2]);
        srv.call(Method::GET, &format!("/context/{id}/versions/9"), Some(&key), None).await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
        srv.call(Method::GET, &format!("/context/{id}/versions/zero"), Some(&key), None).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");

        for bad in [json!({"messages": []}), json!({"messages": [{"role": "robot", "message": "x"}]}), json!({"message": "x"})] {
            srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(bad)).await
                .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        assert_eq!(srv.stored(id).await.body["version"], 2);
    }

    async fn etag_and_if_none_match(srv) {
        let key = srv.agent("r", &["writer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let path = format!("/context/{}", created["context_id"].as_str().unwrap());
        let r = srv.send(srv.request(Method::GET, &path, Some(&key)).header("if-none-match", "\"v1\"")).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert!(r.body.is_null());
        let r = srv.send(srv.request(Method::GET, &path, Some(&key)).header("if-none-match", "W/\"v0\", \"v2\"")).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    async fn delete_leaves_tombstone(srv) {
        let key = srv.agent("m", &["maintainer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        let id = created["context_id"].as_str().unwrap();
        let path = format!("/context/{id}");
        srv.send(srv.request(Method::DELETE, &path, Some(&key)).header("if-match", "\"v3\"")).await
            .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
        assert_eq!(srv.stored(id).await.status, StatusCode::OK);
        let r = srv.call(Method::DELETE, &path, Some(&key), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let gone = srv.call(Method::GET, &path, Some(&key), None).await;
        gone.assert_error(StatusCode::NOT_FOUND, "context_deleted");
        assert_eq!(gone.body["context_id"], id);
        srv.call(Method::GET, &format!("{path}/versions/1"), Some(&key), None).await
            .assert_error(StatusCode::NOT_FOUND, "context_deleted");
        srv.call(Method::POST, &format!("{path}/messages"), Some(&key), Some(json!({"messages": [{"role": "user", "message": "x"}]}))).await
            .assert_error(StatusCode::NOT_FOUND, "context_deleted");
        srv.call(Method::DELETE, &path, Some(&key), None).await
            .assert_error(StatusCode::NOT_FOUND, "context_deleted");
        let list = srv.call(Method::GET, "/context", Some(&key), None).await;
        assert!(list.body["items"].as_array().unwrap().is_empty());
    }

    async fn cursor_pagination_newest_first(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let mut ids = Vec::new();
        for i in 0..7 {
            let mut body = sample_context();
            body["metadata"]["n"] = json!(i);
            ids.push(srv.create_context(&key, body).await["context_id"].as_str().unwrap().to_string());
        }
        ids.reverse();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/context?limit=3&cursor={c}"),
                None => "/context?limit=3".to_string(),
            };
            let page = srv.call(Method::GET, &path, Some(&key), None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            seen.extend(page.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap().to_string()));
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        for bad in ["/context?limit=0", "/context?limit=1000", "/context?limit=x", "/context?cursor=%25%25", "/context?colour=red"] {
            srv.call(Method::GET, bad, Some(&key), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
    }

    async fn expired_context_is_never_served(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let mut body = sample_context();
        // Generous on a busy machine: served until `soon`, never after it.
        let soon = chrono::Utc::now() + chrono::Duration::seconds(4);
        body["expires"] = json!(soon.to_rfc3339());
        let created = srv.create_context(&key, body).await;
        let id = created["context_id"].as_str().unwrap();
        let reader = srv.agent("reader", &["reader"]).await;
        let mut served = 0;
        loop {
            let r = srv.call(Method::GET, &format!("/context/{id}"), Some(&reader), None).await;
            let answered = chrono::Utc::now();
            if r.status == StatusCode::OK {
                assert!(answered <= soon + chrono::Duration::milliseconds(50), "served after it expired");
                served += 1;
            } else {
                r.assert_error(StatusCode::NOT_FOUND, "context_expired");
                break;
            }
            assert!(answered < soon + chrono::Duration::seconds(10), "never expired");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        assert!(served >= 1, "it was served before it expired");
        srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(json!({"messages": [{"role": "user", "message": "late"}]}))).await
            .assert_error(StatusCode::NOT_FOUND, "context_expired");
        srv.call(Method::PATCH, &format!("/context/{id}"), Some(&key), Some(json!({"expires": "2099-01-01T00:00:00Z"}))).await
            .assert_error(StatusCode::NOT_FOUND, "context_expired");
        let list = srv.call(Method::GET, "/context", Some(&reader), None).await;
        assert!(list.body["items"].as_array().unwrap().is_empty());
        // Another tenant learns nothing, not even that it expired.
        srv.create_tenant("other").await;
        let outsider = srv.create_principal("other", "o", &["admin"]).await;
        let (_, okey) = srv.api_key(&outsider, None, None).await;
        srv.call(Method::GET, &format!("/context/{id}"), Some(&okey), None).await
            .assert_error(StatusCode::NOT_FOUND, "context_not_found");
        // Creating with an expiry in the past is refused.
        let mut past = sample_context();
        past["expires"] = json!("2001-01-01T00:00:00Z");
        srv.call(Method::POST, "/context", Some(&key), Some(past)).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    async fn data_survives_restart(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let created = srv.create_context(&key, sample_context()).await;
        srv.restart().await;
        let r = srv.call(Method::GET, &format!("/context/{}", created["context_id"].as_str().unwrap()), Some(&key), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, created);
    }
}
