//! The stateless fast path of `/mcp` speaks the protocol rmcp speaks: the same request
//! sent to a server with the fast path (the default) and to a replica of it with
//! `mcp_fast_path = false` gets the same status, media type and JSON-RPC message, for
//! results, tool errors and protocol errors alike. (Which requests the fast path takes
//! is unit-tested in `http::mcp_fast`; these requests are of that kind.) Writes and the
//! scope check are the same too.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Replica, TestServer, sample_context};

const VERSION: &str = "2026-07-28";

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {}})
}

/// A 2026-07-28 request with every header a conforming client sends.
pub(crate) struct Rpc {
    method: &'static str,
    params: Value,
    id: Value,
}

impl Rpc {
    pub(crate) fn tool(name: &str, arguments: Value) -> Rpc {
        Rpc { method: "tools/call", params: json!({"name": name, "arguments": arguments}), id: json!(1) }
    }

    fn of(method: &'static str, params: Value) -> Rpc {
        Rpc { method, params, id: json!("req-1") }
    }

    /// Status, media type and the JSON-RPC message, with every text content that is
    /// JSON parsed (rmcp writes it from a tree, so keys may come in another order).
    pub(crate) async fn send(&self, srv: &TestServer, base: &str, key: &str) -> (StatusCode, String, Value) {
        let mut params = self.params.clone();
        params["_meta"] = meta();
        let body = json!({"jsonrpc": "2.0", "id": self.id, "method": self.method, "params": params});
        let mut rb = srv
            .http
            .post(format!("{base}/mcp"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", VERSION)
            .header("mcp-method", self.method);
        if let Some(name) = params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str) {
            rb = rb.header("mcp-name", name);
        }
        let res = rb.body(body.to_string()).send().await.unwrap();
        let status = res.status();
        let media = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let mut message: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
        if let Some(content) = message.pointer_mut("/result/content").and_then(Value::as_array_mut) {
            for c in content {
                if let Some(parsed) = c["text"].as_str().and_then(|t| serde_json::from_str::<Value>(t).ok()) {
                    c["text"] = parsed;
                }
            }
        }
        (status, media, message)
    }
}

/// The fast path's answer equals rmcp's; returns it.
async fn same(srv: &TestServer, sdk: &Replica, key: &str, rpc: &Rpc) -> Value {
    let fast = rpc.send(srv, &srv.url, key).await;
    let rmcp = rpc.send(srv, &sdk.url, key).await;
    assert_eq!(fast, rmcp, "{} {}", rpc.method, rpc.params);
    fast.2
}

/// A context id replaced by a placeholder, to compare answers about two contexts.
fn anonymous(message: Value, id: &str) -> Value {
    serde_json::from_str(&message.to_string().replace(id, "ID")).unwrap()
}

backend_tests! {
    async fn the_fast_path_answers_as_the_sdk_does(srv) {
        let sdk = srv.replica_with(|s| s.mcp_fast_path = false).await;
        let key = srv.agent("fast-agent", &["maintainer"]).await;
        let mut body = sample_context();
        body["metadata"] = json!({"note": "a \"quoted\" line\nwith é and \u{1F600}", "n": 1.5, "list": [1, null, true]});
        let ctx = srv.create_context(&key, body).await;
        let id = ctx["context_id"].as_str().unwrap().to_string();
        let stranger = {
            srv.create_tenant("elsewhere").await;
            let p = srv.create_principal("elsewhere", "stranger", &["writer"]).await;
            srv.api_key(&p, None, None).await.1
        };
        let theirs = srv.create_context(&stranger, sample_context()).await["context_id"].as_str().unwrap().to_string();
        let missing = uuid::Uuid::new_v4().to_string();

        let listed = same(&srv, &sdk, &key, &Rpc::of("tools/list", json!({}))).await;
        assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 5, "{listed}");
        let discovered = same(&srv, &sdk, &key, &Rpc::of("server/discover", json!({}))).await;
        assert_eq!(discovered["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "ctxguard", "{discovered}");

        let read = same(&srv, &sdk, &key, &Rpc::tool("context_get", json!({"context_id": id}))).await;
        let stored = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await;
        assert_eq!(read["result"]["structuredContent"], stored.body, "the served context");
        assert_eq!(read["result"]["content"][0]["text"], stored.body);
        let window = same(&srv, &sdk, &key, &Rpc::tool("context_get", json!({"context_id": id, "last": 1}))).await;
        assert_eq!(window["result"]["structuredContent"]["history_length"], 2, "{window}");
        assert_eq!(window["result"]["structuredContent"]["history_start"], 2, "{window}");
        same(&srv, &sdk, &key, &Rpc::tool("context_get", json!({"context_id": id, "after": 0, "limit": 1}))).await;
        for (args, says) in [
            (json!({"context_id": missing}), "not found"),
            (json!({"context_id": theirs}), "not found"),
            (json!({"context_id": "nope"}), "invalid arguments"),
            (json!({"context_id": id, "colour": "red"}), "unknown field"),
            (json!({"context_id": id, "last": 1, "after": 1}), "invalid arguments"),
        ] {
            let refused = same(&srv, &sdk, &key, &Rpc::tool("context_get", args.clone())).await;
            assert_eq!(refused["result"]["isError"], true, "{args}: {refused}");
            assert!(refused["result"]["content"][0]["text"].as_str().unwrap().contains(says), "{args}: {refused}");
        }
        let list = same(&srv, &sdk, &key, &Rpc::tool("context_list", json!({"limit": 5}))).await;
        assert_eq!(list["result"]["structuredContent"]["items"][0]["context_id"], id.as_str(), "{list}");

        let resource = same(&srv, &sdk, &key, &Rpc::of("resources/read", json!({"uri": format!("context://{id}")}))).await;
        let text: Value = serde_json::from_str(resource["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, stored.body);
        for uri in [format!("context://{missing}"), format!("context://{theirs}"), "context://nope".into(), "file:///etc/passwd".into()] {
            let refused = same(&srv, &sdk, &key, &Rpc::of("resources/read", json!({"uri": uri}))).await;
            assert_eq!(refused["error"]["code"], -32602, "{refused}");
            assert_eq!(refused["error"]["data"]["uri"], uri.as_str(), "{refused}");
        }

        // Writes: the same append and delete on two like contexts, one per path.
        let like = || srv.create_context(&key, sample_context());
        let (a, b) = (like().await, like().await);
        let (a, b) = (a["context_id"].as_str().unwrap(), b["context_id"].as_str().unwrap());
        let append = |id: &str| Rpc::tool("context_append", json!({"context_id": id, "messages": [{"role": "user", "message": "more"}]}));
        let fast = append(a).send(&srv, &srv.url, &key).await;
        let rmcp = append(b).send(&srv, &sdk.url, &key).await;
        assert_eq!((fast.0, fast.1, anonymous(fast.2.clone(), a)), (rmcp.0, rmcp.1, anonymous(rmcp.2, b)));
        assert_eq!(fast.2["result"]["structuredContent"]["history_length"], 3, "{}", fast.2);
        let delete = |id: &str| Rpc::tool("context_delete", json!({"context_id": id}));
        let fast = delete(a).send(&srv, &srv.url, &key).await;
        let rmcp = delete(b).send(&srv, &sdk.url, &key).await;
        assert_eq!((fast.0, fast.1, anonymous(fast.2, a)), (rmcp.0, rmcp.1, anonymous(rmcp.2, b)));
        for gone in [a, b] {
            assert_eq!(srv.call(Method::GET, &format!("/context/{gone}"), Some(&key), None).await.status, StatusCode::NOT_FOUND);
        }
        let created = Rpc::tool("context_create", json!({"metadata": {"k": "v"}, "session": {"history": []}})).send(&srv, &srv.url, &key).await;
        let new_id = created.2["result"]["structuredContent"]["context_id"].as_str().unwrap_or_else(|| panic!("{}", created.2));
        assert_eq!(srv.call(Method::GET, &format!("/context/{new_id}"), Some(&key), None).await.body["metadata"]["k"], "v");
        sdk.stop().await;
    }

    async fn the_fast_path_checks_scopes_like_the_sdk_path(srv) {
        let sdk = srv.replica_with(|s| s.mcp_fast_path = false).await;
        let principal = srv.create_principal("default", "narrow", &["writer"]).await;
        let (_, narrow) = srv.api_key(&principal, Some(&["context:read"]), None).await;
        let before = srv.admin(Method::GET, "/context?limit=200", None).await.body["items"].as_array().unwrap().len();
        for base in [&srv.url, &sdk.url] {
            let (status, _, message) = Rpc::tool("context_create", json!({"session": {"history": []}})).send(&srv, base, &narrow).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{base}: {message}");
            assert_eq!(message["code"], "insufficient_scope", "{base}: {message}");
            let (status, _, message) = Rpc::of("tools/list", json!({})).send(&srv, base, "not-a-key").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{base}: {message}");
        }
        let after = srv.admin(Method::GET, "/context?limit=200", None).await.body["items"].as_array().unwrap().len();
        assert_eq!(before, after, "nothing was created");
        sdk.stop().await;
    }
}
