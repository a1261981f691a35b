//! Bad input: every malformed, oversized or mistyped request gets a 4xx that names
//! the problem, and nothing is stored.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::support::sample_context;

backend_tests! {
    async fn malformed_and_oversized_input(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let raw = |body: &'static str| srv.request(Method::POST, "/context", Some(&key)).header("content-type", "application/json").body(body);

        srv.send(raw("{\"session\": ")).await.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        srv.send(raw("")).await.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        srv.send(raw("{\"session\":{\"history\":[]}} trailing")).await.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        let r = srv.send(raw(r#"{"session":{"history":[{"role":"robot","message":"x"}]}}"#)).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(r.body["error"].as_str().unwrap().contains("session.history[0].role"), "{}", r.body);
        let r = srv.send(raw(r#"{"session":{"history":[]},"colour":"red"}"#)).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(r.body["error"].as_str().unwrap().contains("colour"), "{}", r.body);
        let r = srv.send(raw(r#"{"context_id":"not-a-uuid","session":{"history":[]}}"#)).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(r.body["error"].as_str().unwrap().contains("context_id"), "{}", r.body);
        let r = srv.send(raw(r#"{"session":{"history":[]},"expires":"next tuesday"}"#)).await;
        assert!(r.body["error"].as_str().unwrap().contains("expires"), "{}", r.body);
        srv.send(raw(r#"{"metadata":[],"session":{"history":[]}}"#)).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.send(raw(r#"{"metadata":{}}"#)).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");

        let deep = format!("{{\"metadata\":{}1{},\"session\":{{\"history\":[]}}}}", "[".repeat(100), "]".repeat(100));
        srv.send(srv.request(Method::POST, "/context", Some(&key)).header("content-type", "application/json").body(deep)).await
            .assert_error(StatusCode::BAD_REQUEST, "json_too_deep");
        let very_deep = "[".repeat(200_000);
        srv.send(srv.request(Method::POST, "/context", Some(&key)).header("content-type", "application/json").body(very_deep)).await
            .assert_error(StatusCode::BAD_REQUEST, "json_too_deep");

        let mut big = sample_context();
        big["metadata"]["blob"] = json!("x".repeat(1_100_000));
        srv.call(Method::POST, "/context", Some(&key), Some(big)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        // Without Content-Length (chunked), the limit still holds.
        let stream = chunked_body(1_200_000);
        srv.send(srv.request(Method::POST, "/context", Some(&key)).header("content-type", "application/json").body(stream)).await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

        srv.send(srv.request(Method::POST, "/context", Some(&key)).header("content-type", "text/plain").body("{}")).await
            .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        srv.send(srv.request(Method::POST, "/context", Some(&key)).body(sample_context().to_string())).await
            .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

        srv.call(Method::GET, "/context/123", Some(&key), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.call(Method::GET, "/context/%ZZ", Some(&key), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.send(srv.request(Method::PUT, &format!("/context/{}", uuid::Uuid::new_v4()), Some(&key)).header("if-match", "garbage").json(&sample_context())).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");

        let r = srv.call(Method::DELETE, "/context", Some(&key), None).await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        let allow = r.header("allow").unwrap();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        srv.call(Method::GET, "/nowhere", Some(&key), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");

        let list = srv.call(Method::GET, "/context", Some(&key), None).await;
        assert!(list.body["items"].as_array().unwrap().is_empty(), "refused creates stored something: {}", list.body);
    }
}

/// A body sent with chunked transfer encoding (no Content-Length).
fn chunked_body(len: usize) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
    let n = len / chunk.len() + 1;
    reqwest::Body::wrap_stream(IterStream(std::iter::repeat_n(chunk, n)))
}

struct IterStream<I>(I);

impl<I: Iterator<Item = bytes::Bytes> + Unpin> futures_core::Stream for IterStream<I> {
    type Item = Result<bytes::Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next().map(Ok))
    }
}

#[tokio::test]
async fn history_limit_refuses_growth() {
    let srv = crate::support::TestServer::start_with(crate::support::Backend::Sqlite, |c| c.max_history = Some(3))
        .await
        .unwrap();
    let key = srv.agent("w", &["writer"]).await;
    let created = srv.create_context(&key, sample_context()).await;
    let id = created["context_id"].as_str().unwrap();
    let one = json!({"messages": [{"role": "user", "message": "3rd"}]});
    assert_eq!(
        srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(one.clone())).await.status,
        StatusCode::OK
    );
    srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(one))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "history_too_long");
    assert_eq!(srv.stored(id).await.body["version"], 2);
    let mut too_long = sample_context();
    too_long["session"]["history"] = json!([{"role":"user","message":"1"},{"role":"user","message":"2"},{"role":"user","message":"3"},{"role":"user","message":"4"}]);
    srv.call(Method::POST, "/context", Some(&key), Some(too_long))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "history_too_long");
    srv.stop().await;
}

/// Contexts are bounded in bytes, not only in messages: a message over
/// `max_message_bytes`, or a write that would take the context over
/// `max_context_bytes` (appends and metadata alike), is a 413 naming the limit — over
/// HTTP and MCP — and the stored context does not change.
async fn contexts_are_bounded_in_bytes(backend: crate::support::Backend) {
    let Some(srv) = crate::support::TestServer::start_with(backend, |c| {
        c.max_context_bytes = Some(8_192);
        c.max_message_bytes = Some(1_000);
    })
    .await
    else {
        return;
    };
    let key = srv.agent("w", &["writer"]).await;
    let id = srv.create_context(&key, sample_context()).await["context_id"].as_str().unwrap().to_string();
    let path = format!("/context/{id}");
    let messages = format!("{path}/messages");
    let append = |text: String| {
        srv.call(Method::POST, &messages, Some(&key), Some(json!({"messages": [{"role": "user", "message": text}]})))
    };
    let r = append("x".repeat(1_001)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large");
    assert!(r.body["error"].as_str().unwrap().contains("1000"), "the limit is named: {}", r.body);
    assert_eq!(r.body["context_id"], id.as_str());
    let before = srv.stored(&id).await.body;
    let mut accepted = 0;
    let refusal = loop {
        let r = append("y".repeat(900)).await;
        if r.status != StatusCode::OK {
            break r;
        }
        accepted += 1;
        assert!(accepted < 20, "8 KiB cannot hold 20 messages of 900 bytes");
    };
    refusal.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "context_too_large");
    assert!(refusal.body["error"].as_str().unwrap().contains("8192"), "{}", refusal.body);
    assert!(accepted >= 5, "the limit is the context's size, not a message count ({accepted} accepted)");
    let full = srv.stored(&id).await.body;
    assert_eq!(full["version"].as_u64().unwrap(), before["version"].as_u64().unwrap() + accepted);
    assert!(serde_json::to_string(&full).unwrap().len() <= 8_192);
    // Metadata counts as well, and a refused PATCH changes nothing.
    let patch = srv
        .request(Method::PATCH, &path, Some(&key))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"metadata": {"blob": "z".repeat(6_000)}}).to_string());
    srv.send(patch).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "context_too_large");
    assert_eq!(srv.stored(&id).await.body, full, "a refused write left the context as it was");
    // MCP: the same limits, as a tool error naming them.
    let (status, is_error, text) = crate::sharing::mcp_tool(
        &srv,
        &key,
        "context_append",
        json!({"context_id": id, "messages": [{"role": "user", "message": "q".repeat(1_001)}]}),
    )
    .await;
    assert_eq!((status, is_error), (StatusCode::OK, true), "{text}");
    assert!(text.contains("max_message_bytes"), "{text}");
    assert_eq!(srv.stored(&id).await.body, full);
    srv.stop().await;
}

#[tokio::test]
async fn sqlite_contexts_are_bounded_in_bytes() {
    contexts_are_bounded_in_bytes(crate::support::Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_contexts_are_bounded_in_bytes() {
    contexts_are_bounded_in_bytes(crate::support::Backend::Postgres).await;
}
