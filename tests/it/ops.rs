//! Operations endpoints and discovery documents.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::{Backend, TestServer, sample_context};

backend_tests! {
    async fn health_ready_metrics_openapi_and_metadata(srv) {
        let h = srv.call(Method::GET, "/healthz", None, None).await;
        assert_eq!((h.status, h.body["status"].as_str()), (StatusCode::OK, Some("ok")));
        let r = srv.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        let expected = match srv.backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" };
        assert_eq!(r.body["database"], expected);

        let key = srv.agent("w", &["writer"]).await;
        srv.create_context(&key, sample_context()).await;
        srv.call(Method::GET, &format!("/context/{}", uuid::Uuid::new_v4()), Some(&key), None).await;
        // An invented method is answered and counted, but cannot add a label value.
        let brew = srv.call(Method::from_bytes(b"BREWCOFFEE").unwrap(), "/context", Some(&key), None).await;
        assert_eq!(brew.status, StatusCode::METHOD_NOT_ALLOWED);
        // Metrics are not on the public listener, only on the metrics one.
        srv.call(Method::GET, "/metrics", None, None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        let m = srv.http.get(&srv.metrics_url).send().await.unwrap();
        assert_eq!(m.status(), StatusCode::OK);
        let text = m.text().await.unwrap();
        let text = text.as_str();
        assert!(text.contains(r#"ctxguard_http_requests_total{route="/context",method="POST",status="201"}"#), "{text}");
        assert!(text.contains(r#"route="/context/{id}",method="GET",status="404""#), "{text}");
        assert!(text.contains("ctxguard_http_request_duration_seconds_bucket"), "{text}");
        // Log lines the writer could not keep up with are counted, never waited for.
        assert!(text.contains("ctxguard_log_lines_dropped_total"), "{text}");
        assert!(text.contains(r#"route="/context",method="OTHER",status="405""#), "{text}");
        assert!(!text.contains("BREWCOFFEE"), "{text}");
        assert!(!text.contains(&key));

        // Every answer carries a request id: the client's own, or a new UUID, unique.
        let given = srv.send(srv.request(Method::GET, "/healthz", None).header("x-request-id", "trace-42")).await;
        assert_eq!(given.header("x-request-id"), Some("trace-42"));
        let (a, b) = (srv.call(Method::GET, "/nope", None, None).await, srv.call(Method::GET, "/healthz", None, None).await);
        let (a, b) = (a.header("x-request-id").unwrap(), b.header("x-request-id").unwrap());
        assert!(a != b && uuid::Uuid::parse_str(a).is_ok() && uuid::Uuid::parse_str(b).is_ok(), "{a} {b}");

        let doc = srv.call(Method::GET, "/openapi.json", None, None).await;
        assert_eq!(doc.status, StatusCode::OK);
        for path in ["/context", "/context/{id}", "/context/{id}/messages", "/context/{id}/versions/{n}", "/admin/api-keys", "/.well-known/oauth-protected-resource"] {
            assert!(doc.body["paths"].get(path).is_some(), "openapi lacks {path}");
        }
        assert!(doc.body["components"]["schemas"].get("StoredContext").is_some());

        let meta = srv.call(Method::GET, "/.well-known/oauth-protected-resource", None, None).await;
        assert_eq!(meta.status, StatusCode::OK);
        assert_eq!(meta.body["resource"], srv.url.as_str());
        assert_eq!(meta.body["bearer_methods_supported"], json!(["header"]));
        assert!(meta.body["scopes_supported"].as_array().unwrap().contains(&json!("context:read")));
    }
}

/// The sweeper tombstones expired contexts after the grace period: storage is
/// reclaimed and the id stays reserved.
#[tokio::test]
async fn sweeper_reclaims_expired_contexts() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.sweep_interval_secs = Some(1);
        c.expiry_grace_secs = Some(0);
    })
    .await
    .unwrap();
    let key = srv.agent("m", &["maintainer"]).await;
    let mut body = sample_context();
    body["expires"] = json!((chrono::Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339());
    let id = srv.create_context(&key, body.clone()).await["context_id"].as_str().unwrap().to_string();
    let keep = srv.create_context(&key, sample_context()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await;
        if r.body["code"] == "context_deleted" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not swept: {}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    body["context_id"] = json!(id);
    body["expires"] = json!("2099-01-01T00:00:00Z");
    srv.call(Method::POST, "/context", Some(&key), Some(body))
        .await
        .assert_error(StatusCode::CONFLICT, "context_exists");
    assert_eq!(srv.stored(keep["context_id"].as_str().unwrap()).await.status, StatusCode::OK);
    srv.stop().await;
}
