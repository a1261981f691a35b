//! MCP at the wire: both protocol generations, the same authorization as HTTP (with the
//! MCP resource as audience), tool errors, resources, Origin validation, and sessions
//! that survive a restart (another replica) through the database.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Reply, TestServer};

const V2025: &str = "2025-06-18";

/// Sends one JSON-RPC message to /mcp and returns the HTTP status, headers and the
/// JSON-RPC messages in the answer (from a JSON body or an SSE stream).
pub(crate) async fn rpc(
    srv: &TestServer,
    key: Option<&str>,
    body: &Value,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<Value>) {
    let mut rb = srv
        .request(Method::POST, "/mcp", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let messages = if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    } else {
        serde_json::from_str(&text).map(|v| vec![v]).unwrap_or_default()
    };
    (status, headers, messages)
}

/// A 2025-06-18 session: initialize + initialized; returns the session id.
async fn session(srv: &TestServer, key: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": V2025, "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let (status, headers, msgs) = rpc(srv, Some(key), &init, &[]).await;
    assert_eq!(status, StatusCode::OK, "{msgs:?}");
    assert_eq!(msgs[0]["result"]["serverInfo"]["name"], "ctxguard");
    let sid = headers["mcp-session-id"].to_str().unwrap().to_string();
    let (status, _, _) = rpc(
        srv,
        Some(key),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sid
}

async fn call(srv: &TestServer, key: &str, sid: &str, id: u64, tool: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let (status, _, msgs) =
        rpc(srv, Some(key), &body, &[("mcp-session-id", sid), ("mcp-protocol-version", V2025)]).await;
    assert_eq!(status, StatusCode::OK, "{tool}: {msgs:?}");
    msgs.into_iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no answer to {tool}"))
}

async fn mcp_token(srv: &TestServer, roles: &[&str], scope: &str, resource: &str) -> String {
    let (id, secret) = srv.machine_client(&format!("mcp-{}", uuid::Uuid::new_v4().simple()), roles, None).await;
    let r = srv.cc_token(&id, &secret, &[("scope", scope), ("resource", resource)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

backend_tests! {
    async fn tools_and_resources_over_a_2025_session(srv) {
        let key = srv.agent("agent", &["maintainer"]).await;
        let sid = session(&srv, &key).await;
        let (_, _, list) = rpc(&srv, Some(&key), &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}), &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        let mut names: Vec<&str> = list[0]["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["context_append", "context_create", "context_delete", "context_get", "context_list"]);
        for t in list[0]["result"]["tools"].as_array().unwrap() {
            assert_eq!(t["inputSchema"]["type"], "object", "{t}");
            assert_eq!(t["outputSchema"]["type"], "object", "{t}");
        }

        let created = call(&srv, &key, &sid, 3, "context_create", json!({"metadata": {"topic": "mcp"}, "session": {"history": [{"role": "user", "message": "hello"}]}})).await;
        assert_eq!(created["result"]["isError"], false, "{created}");
        let id = created["result"]["structuredContent"]["context_id"].as_str().unwrap().to_string();
        let appended = call(&srv, &key, &sid, 4, "context_append", json!({"context_id": id, "messages": [{"role": "assistant", "message": "hi"}]})).await;
        assert_eq!(appended["result"]["structuredContent"]["version"], 2);
        assert_eq!(appended["result"]["structuredContent"]["history_length"], 2, "{appended}");
        assert!(appended["result"]["structuredContent"].get("history").is_none(), "an append answers briefly");
        let window = call(&srv, &key, &sid, 5, "context_get", json!({"context_id": id, "last": 1})).await;
        let w = &window["result"]["structuredContent"];
        assert_eq!(w["session"]["history"].as_array().map(Vec::len), Some(1), "{window}");
        assert_eq!(w["session"]["history"][0]["message"], "hi");
        assert_eq!((w["history_length"].as_u64(), w["history_start"].as_u64()), (Some(2), Some(2)));
        let bad = call(&srv, &key, &sid, 6, "context_get", json!({"context_id": id, "last": 1, "after": 1})).await;
        assert_eq!(bad["result"]["isError"], true, "{bad}");
        // What MCP wrote, HTTP reads: one store, one authorization path.
        let http = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await;
        assert_eq!(http.body["session"]["history"][1]["message"], "hi");
        let got = call(&srv, &key, &sid, 5, "context_get", json!({"context_id": id})).await;
        // The same OCP context object as HTTP serves.
        assert_eq!(got["result"]["structuredContent"], http.body, "one context shape everywhere");
        let listed = call(&srv, &key, &sid, 6, "context_list", json!({"limit": 10})).await;
        assert_eq!(listed["result"]["structuredContent"]["items"][0]["context_id"], id.as_str());

        let (_, _, res) = rpc(&srv, Some(&key), &json!({"jsonrpc": "2.0", "id": 7, "method": "resources/list"}), &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        assert_eq!(res[0]["result"]["resources"][0]["uri"], format!("context://{id}"));
        let (_, _, read) = rpc(&srv, Some(&key), &json!({"jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": {"uri": format!("context://{id}")}}), &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        let text: Value = serde_json::from_str(read[0]["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text["version"], 2);

        // Clear tool errors, never protocol crashes.
        for (i, (tool, args, needle)) in [
            ("context_get", json!({"context_id": "not-a-uuid"}), "invalid arguments"),
            ("context_get", json!({"context_id": uuid::Uuid::new_v4().to_string()}), "not found"),
            ("context_append", json!({"context_id": id, "messages": [{"role": "robot", "message": "x"}]}), "invalid arguments"),
            ("context_create", json!({"session": {"history": []}, "expires": "yesterday"}), "invalid arguments"),
            ("context_create", json!({"history": []}), "invalid arguments"),
            ("context_append", json!({"context_id": id, "messages": [{"role": "user"}]}), "invalid arguments"),
        ].into_iter().enumerate() {
            let r = call(&srv, &key, &sid, 20 + i as u64, tool, args).await;
            assert_eq!(r["result"]["isError"], true, "{tool}: {r}");
            assert!(r["result"]["content"][0]["text"].as_str().unwrap().to_lowercase().contains(needle), "{r}");
        }
        let wrong_type = call(&srv, &key, &sid, 30, "context_get", json!({"context_id": 42})).await;
        assert!(wrong_type.get("error").is_some() || wrong_type["result"]["isError"] == true, "{wrong_type}");
        let deleted = call(&srv, &key, &sid, 31, "context_delete", json!({"context_id": id})).await;
        assert_eq!(deleted["result"]["structuredContent"]["deleted"], true);
        let gone = call(&srv, &key, &sid, 32, "context_get", json!({"context_id": id})).await;
        assert_eq!(gone["result"]["isError"], true);
        assert_eq!(gone["result"]["content"][0]["text"], "Context has been deleted", "{gone}");
        srv.stored(&id).await.assert_error(StatusCode::NOT_FOUND, "context_deleted");
    }

    async fn authorization_at_the_mcp_endpoint(srv) {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": V2025, "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
        let (status, headers, _) = rpc(&srv, None, &init, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["www-authenticate"].to_str().unwrap(), format!("Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"", srv.url));
        let prm = srv.call(Method::GET, "/.well-known/oauth-protected-resource/mcp", None, None).await;
        assert_eq!(prm.body["resource"], format!("{}/mcp", srv.url));
        assert_eq!(prm.body["authorization_servers"], json!([srv.url]));

        // Audience binding both ways.
        let mcp_resource = format!("{}/mcp", srv.url);
        let for_mcp = mcp_token(&srv, &["writer"], "mcp:write", &mcp_resource).await;
        let for_api = mcp_token(&srv, &["writer"], "context:read context:write", &srv.url).await;
        let (status, headers, _) = rpc(&srv, Some(&for_api), &init, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a context-API token is refused at /mcp");
        assert!(headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
        srv.call(Method::GET, "/context", Some(&for_mcp), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");
        let sid = session(&srv, &for_mcp).await;
        let created = call(&srv, &for_mcp, &sid, 2, "context_create", json!({"session": {"history": []}})).await;
        assert_eq!(created["result"]["isError"], false, "{created}");

        let count = || async { srv.admin(Method::GET, "/context?limit=200", None).await.body["items"].as_array().unwrap().len() };
        let stored_before = count().await;
        // Step-up: a read-only token asking to write gets 403 naming the scope.
        let read_only = mcp_token(&srv, &["writer"], "mcp:read", &mcp_resource).await;
        let sid = session(&srv, &read_only).await;
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "context_create", "arguments": {}}});
        let (status, headers, _) = rpc(&srv, Some(&read_only), &body, &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let www = headers["www-authenticate"].to_str().unwrap();
        assert!(www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"context:write\"") && www.contains("/mcp\""), "{www}");
        // Roles still decide: a reader's create is a tool error, not a crash.
        let reader_key = srv.agent("reader", &["reader"]).await;
        let sid = session(&srv, &reader_key).await;
        let r = call(&srv, &reader_key, &sid, 4, "context_create", json!({"session": {"history": []}})).await;
        assert_eq!(r["result"]["isError"], true);
        assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("writer"), "{r}");
        assert_eq!(count().await, stored_before, "neither refused create stored a context");

        // DNS rebinding: a foreign Origin is refused.
        let (status, _, _) = rpc(&srv, Some(&reader_key), &init, &[("origin", "https://evil.example")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Tokens never in the query string.
        let r = srv.send(srv.request(Method::POST, &format!("/mcp?access_token={reader_key}"), None).json(&init)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    async fn sessions_survive_a_restart(srv) {
        let key = srv.agent("agent", &["reader"]).await;
        let sid = session(&srv, &key).await;
        srv.restart().await;
        let (status, _, msgs) = rpc(&srv, Some(&key), &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}), &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        assert_eq!(status, StatusCode::OK, "{msgs:?}");
        assert_eq!(msgs.iter().find(|m| m["id"] == 9).unwrap()["result"]["tools"].as_array().unwrap().len(), 5);
        let (status, _, _) = rpc(&srv, Some(&key), &json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"}), &[("mcp-session-id", "no-such-session"), ("mcp-protocol-version", V2025)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an unknown session id");
        // A session is bound to the principal that opened it.
        let other = srv.agent("other", &["admin"]).await;
        let (status, _, _) = rpc(&srv, Some(&other), &json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list"}), &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "someone else's session does not exist for them");
        let (status, _, _) = rpc(&srv, Some(&key), &json!({"jsonrpc": "2.0", "id": 12, "method": "tools/list"}), &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
        assert_eq!(status, StatusCode::OK, "the owner still can");
    }
}

#[tokio::test]
async fn stateless_2026_revision_and_bad_messages() {
    let srv = TestServer::start(crate::support::Backend::Sqlite).await.unwrap();
    let key = srv.agent("agent", &["writer"]).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}});
    let (status, headers, msgs) =
        rpc(&srv, Some(&key), &discover, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")])
            .await;
    assert_eq!(status, StatusCode::OK, "{msgs:?}");
    assert!(headers.get("mcp-session-id").is_none(), "no sessions in 2026-07-28");
    assert!(msgs[0]["result"].is_object(), "{msgs:?}");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "context_list", "arguments": {}, "_meta": meta}});
    let (status, _, msgs) = rpc(
        &srv,
        Some(&key),
        &call,
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "context_list")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{msgs:?}");
    assert_eq!(msgs[0]["result"]["isError"], false, "{msgs:?}");
    // A routing header that disagrees with the body is refused.
    let (status, _, _) =
        rpc(&srv, Some(&key), &call, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // SEP-2549 caching hints: the tool catalog is the same for everyone and fixed while
    // the server runs; contexts change at any time and belong to their caller.
    let id =
        srv.create_context(&key, crate::support::sample_context()).await["context_id"].as_str().unwrap().to_string();
    let hints = |method: &str, params: Value| {
        let name = params["uri"].as_str().map(str::to_string);
        let mut params = params;
        params["_meta"] = meta.clone();
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params});
        let method = method.to_string();
        let srv = &srv;
        let key = key.clone();
        async move {
            let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", method.as_str())];
            if let Some(name) = &name {
                headers.push(("mcp-name", name));
            }
            let (status, _, msgs) = rpc(srv, Some(&key), &body, &headers).await;
            assert_eq!(status, StatusCode::OK, "{msgs:?}");
            let r = &msgs[0]["result"];
            (
                r["ttlMs"].as_u64().unwrap_or_else(|| panic!("{method}: {r}")),
                r["cacheScope"].as_str().unwrap().to_string(),
            )
        }
    };
    let (ttl, scope) = hints("tools/list", json!({})).await;
    assert!(ttl > 0 && scope == "public", "tools/list: {ttl} {scope}");
    assert_eq!(hints("resources/list", json!({})).await, (0, "private".to_string()));
    assert_eq!(hints("resources/read", json!({"uri": format!("context://{id}")})).await, (0, "private".to_string()));

    // Malformed JSON and oversized bodies are 4xx, never a crash.
    let r = srv
        .send(
            srv.request(Method::POST, "/mcp", Some(&key))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body("{not json"),
        )
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.status);
    let big = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "context_create", "arguments": {"metadata": {"x": "y".repeat(2_000_000)}}}});
    let r: Reply = srv
        .send(
            srv.request(Method::POST, "/mcp", Some(&key))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(big.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let list = srv.call(Method::GET, "/context", Some(&key), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "only the context made above");
    srv.stop().await;
}

#[tokio::test]
async fn a_token_that_expires_mid_conversation_gets_the_challenge() {
    let srv = TestServer::start(crate::support::Backend::Sqlite).await.unwrap();
    let mcp_resource = format!("{}/mcp", srv.url);
    let token = mcp_token(&srv, &["reader"], "mcp:read", &mcp_resource).await;
    let sid = session(&srv, &token).await;
    assert_eq!(call(&srv, &token, &sid, 2, "context_list", json!({})).await["result"]["isError"], false);
    // The same token, re-signed with the real key but already expired.
    let key = srv.signing_key().await;
    let part = token.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).unwrap(),
    )
    .unwrap();
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 60);
    let mut header = jsonwebtoken::Header::new(key.alg.jwt());
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    let expired = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
    let body =
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "context_list", "arguments": {}}});
    let (status, headers, _) =
        rpc(&srv, Some(&expired), &body, &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"invalid_token\"") && www.contains("oauth-protected-resource/mcp"), "{www}");
    // Unknown methods are JSON-RPC errors, not crashes; batches are refused by the transport.
    let (status, _, msgs) = rpc(
        &srv,
        Some(&token),
        &json!({"jsonrpc": "2.0", "id": 4, "method": "no/such"}),
        &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(msgs.iter().find(|m| m["id"] == 4).unwrap()["error"]["code"], -32601);
    let batch = json!([{"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}]);
    let (status, _, _) =
        rpc(&srv, Some(&token), &batch, &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
    assert!(status.is_client_error(), "{status}");
    srv.stop().await;
}

/// Reads a session's GET stream in the background: every `notifications/resources/updated`
/// URI, and whether the stream has ended.
struct Listener {
    updates: tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
}

impl Listener {
    async fn open(srv: &TestServer, key: &str, sid: &str) -> Listener {
        let res = srv
            .request(Method::GET, "/mcp", Some(key))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", V2025)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut messages = crate::support::sse_messages(res);
        let (tx, updates) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Some(v)) = messages.recv().await {
                if v["method"] == "notifications/resources/updated" {
                    let _ = tx.send(Some(v["params"]["uri"].as_str().unwrap_or("").to_string()));
                }
            }
            let _ = tx.send(None);
        });
        Listener { updates }
    }

    /// The next event within `wait`: `Some(Some(uri))` an update, `Some(None)` the end of
    /// the stream, `None` nothing.
    async fn next(&mut self, wait: std::time::Duration) -> Option<Option<String>> {
        tokio::time::timeout(wait, self.updates.recv()).await.ok().flatten()
    }
}

/// Streams and revocation, both backends.
mod streams {
    use super::*;

    backend_tests! {
        async fn an_open_stream_stops_when_its_credential_is_revoked(srv) {
            let principal = srv.create_principal("default", "subscriber", &["writer"]).await;
            let (_, key) = srv.api_key(&principal, None, None).await;
            let id = srv.create_context(&key, crate::support::sample_context()).await["context_id"].as_str().unwrap().to_string();
            let sid = session(&srv, &key).await;
            let mut listener = Listener::open(&srv, &key, &sid).await;
            let subscribe = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": format!("context://{id}")}});
            let (status, _, _) = rpc(&srv, Some(&key), &subscribe, &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
            assert_eq!(status, StatusCode::OK);
            let messages = format!("/context/{id}/messages");
            let append = || srv.call(Method::POST, &messages, Some(&srv.admin_key),
                Some(json!({"messages": [{"role": "user", "message": "x"}]})));
            // Positive control: while the key holds, a write is notified.
            append().await;
            let got = listener.next(std::time::Duration::from_secs(5)).await;
            assert_eq!(got, Some(Some(format!("context://{id}"))), "the subscriber hears of the write");

            let r = srv.admin(Method::POST, &format!("/admin/principals/{principal}/revoke-all"), None).await;
            assert!(r.status.is_success(), "{}", r.body);
            append().await;
            // No notification for a write after the revocation: the stream ends instead.
            match listener.next(std::time::Duration::from_secs(8)).await {
                Some(Some(uri)) => panic!("a revoked subscriber was notified of {uri}"),
                Some(None) => {}
                None => panic!("the stream of a revoked credential is still open"),
            }
            // And the session is gone: even a new key of the same principal cannot resume it.
            let (_, fresh) = srv.api_key(&principal, None, None).await;
            let (status, _, _) = rpc(&srv, Some(&fresh), &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
                &[("mcp-session-id", &sid), ("mcp-protocol-version", V2025)]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "the session ended");
        }
    }
}
