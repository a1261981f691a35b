//! Authorization end to end (docs/policies.md): the role × action ×
//! relation × credential table over HTTP and MCP, grants and their limits, isolation
//! that reveals nothing, listings that never leak, and policy reloads.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{TestServer, sample_context};

const MCP_V: &str = "2026-07-28";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel {
    /// Created by the caller.
    Own,
    /// Created by someone else in the caller's tenant.
    Others,
    /// Someone else's, shared with the caller as injector.
    Shared,
    /// In another tenant.
    Foreign,
}

const ROLES: [Option<&str>; 6] =
    [None, Some("reader"), Some("injector"), Some("writer"), Some("maintainer"), Some("admin")];
const ACTIONS: [&str; 5] = ["read", "inject", "write", "delete", "share"];

fn rank(role: Option<&str>) -> u8 {
    match role {
        None => 0,
        Some("reader") => 1,
        Some("injector") => 2,
        Some("writer") => 3,
        Some("maintainer") => 4,
        _ => 5,
    }
}

/// The contract: the HTTP status each cell must answer.
fn expected(role: Option<&str>, rel: Rel, action: &str, bound: bool) -> StatusCode {
    let effective = if rel == Rel::Shared { rank(role).max(2) } else { rank(role) };
    if rel == Rel::Foreign || effective == 0 {
        return StatusCode::NOT_FOUND;
    }
    let needs = match action {
        "read" => 1,
        "inject" => 2,
        "write" if rel == Rel::Own => 3,
        _ => 4,
    };
    if effective < needs || (bound && action != "read") {
        return StatusCode::FORBIDDEN;
    }
    match action {
        "delete" => StatusCode::NO_CONTENT,
        "share" => StatusCode::CREATED,
        _ => StatusCode::OK,
    }
}

/// A principal (a client_credentials client's service principal) and its tokens.
struct Actor {
    client: (String, String),
    principal: String,
    http: String,
    mcp: String,
}

async fn actor(srv: &TestServer, role: Option<&str>) -> Actor {
    let name = format!("{}-{}", role.unwrap_or("none"), uuid::Uuid::new_v4().simple());
    let body =
        json!({"name": name, "grant_types": ["client_credentials"], "roles": role.into_iter().collect::<Vec<_>>()});
    let r = srv.admin(Method::POST, "/admin/clients", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let client =
        (r.body["client_id"].as_str().unwrap().to_string(), r.body["client_secret"].as_str().unwrap().to_string());
    let principal = r.body["principal"].as_str().expect("service principal id").to_string();
    let http = token(srv, &client, &srv.url, None).await;
    let mcp = token(srv, &client, &format!("{}/mcp", srv.url), None).await;
    Actor { client, principal, http, mcp }
}

async fn token(srv: &TestServer, client: &(String, String), resource: &str, details: Option<Value>) -> String {
    let details = details.map(|d| d.to_string());
    let mut params = vec![("resource", resource)];
    if let Some(d) = &details {
        params.push(("authorization_details", d));
    }
    let r = srv.cc_token(&client.0, &client.1, &params).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

fn binding(id: &str, actions: &[&str]) -> Value {
    json!([{"type": "ctxguard_context", "context_ids": [id], "actions": actions}])
}

/// Performs `action` over HTTP and returns the status.
async fn http_action(srv: &TestServer, key: &str, id: &str, action: &str, grantee: &str) -> StatusCode {
    let path = format!("/context/{id}");
    let (method, path, body) = match action {
        "read" => (Method::GET, path, None),
        "inject" => {
            (Method::POST, format!("{path}/messages"), Some(json!({"messages": [{"role": "user", "message": "x"}]})))
        }
        "write" => (Method::PATCH, path, Some(json!({"metadata": {"topic": "changed"}}))),
        "delete" => (Method::DELETE, path, None),
        _ => {
            (Method::POST, format!("{path}/grants"), Some(json!({"grantee": {"principal": grantee}, "role": "reader"})))
        }
    };
    srv.call(method, &path, Some(key), body).await.status
}

/// One stateless (2026-07-28) MCP tool call; returns (HTTP status, isError, text).
pub(crate) async fn mcp_tool(srv: &TestServer, key: &str, tool: &str, args: Value) -> (StatusCode, bool, String) {
    let meta =
        json!({"io.modelcontextprotocol/protocolVersion": MCP_V, "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args, "_meta": meta}});
    let (status, _, msgs) = crate::mcp::rpc(
        srv,
        Some(key),
        &body,
        &[("mcp-protocol-version", MCP_V), ("mcp-method", "tools/call"), ("mcp-name", tool)],
    )
    .await;
    let result = msgs.first().map(|m| m["result"].clone()).unwrap_or(Value::Null);
    let text = result["content"][0]["text"].as_str().unwrap_or_default().to_string();
    (status, result["isError"] == true, text)
}

/// What an HTTP status means at the MCP tool level.
fn assert_mcp_matches(http: StatusCode, got: (StatusCode, bool, String), cell: &str) {
    let (status, is_error, text) = got;
    assert_eq!(status, StatusCode::OK, "{cell}: transport status");
    match http {
        s if s.is_success() => assert!(!is_error, "{cell}: expected success, got {text}"),
        StatusCode::NOT_FOUND => {
            assert!(is_error && text == "Context not found", "{cell}: expected not found, got {text}")
        }
        // A refusal for the reason the HTTP half gives, not any failure that happens to
        // be an error: bad arguments, a store failure or a missing caller do not count.
        _ => assert!(
            is_error
                && text != "Context not found"
                && !text.starts_with("invalid arguments")
                && !text.contains("database")
                && !text.contains("not authenticated")
                && (text.contains("may not")
                    || text.contains("lacks the scope")
                    || text.contains("role")
                    || text.contains("limited to")
                    || text.contains("bound")),
            "{cell}: expected a policy refusal, got {text}"
        ),
    }
}

async fn fresh_context(srv: &TestServer, key: &str) -> String {
    srv.create_context(key, sample_context()).await["context_id"].as_str().unwrap().to_string()
}

backend_tests! {
    async fn the_decision_table_over_http_and_mcp(srv) {
        srv.create_tenant("elsewhere").await;
        let foreign_writer = srv.create_principal("elsewhere", "foreign-writer", &["writer"]).await;
        let foreign_key = srv.api_key(&foreign_writer, None, None).await.1;
        let bystander = srv.create_principal("default", "bystander", &[]).await;
        let admin = srv.admin_key.clone();
        let mut cells = 0;
        for role in ROLES {
            let a = actor(&srv, role).await;
            for rel in [Rel::Own, Rel::Others, Rel::Shared, Rel::Foreign] {
                if rel == Rel::Own && rank(role) < 3 {
                    continue; // cannot create contexts of its own
                }
                for action in ACTIONS {
                    for bound in [false, true] {
                        let cell = format!("{role:?} {rel:?} {action} bound={bound}");
                        let id = match rel {
                            Rel::Own => fresh_context(&srv, &a.http).await,
                            Rel::Others | Rel::Shared => fresh_context(&srv, &admin).await,
                            Rel::Foreign => fresh_context(&srv, &foreign_key).await,
                        };
                        if rel == Rel::Shared {
                            let r = srv.admin(Method::POST, &format!("/context/{id}/grants"),
                                Some(json!({"grantee": {"principal": a.principal}, "role": "injector"}))).await;
                            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
                        }
                        let key = if bound { token(&srv, &a.client, &srv.url, Some(binding(&id, &["read"]))).await } else { a.http.clone() };
                        let want = expected(role, rel, action, bound);
                        let got = http_action(&srv, &key, &id, action, &bystander).await;
                        assert_eq!(got, want, "HTTP {cell}");
                        if !want.is_success() && rel != Rel::Foreign {
                            // A refused request changes nothing.
                            let stored = srv.stored(&id).await;
                            assert_eq!((stored.status, stored.body["version"].as_i64()), (StatusCode::OK, Some(1)), "{cell}");
                            assert_eq!(srv.admin(Method::GET, &format!("/context/{id}/grants"), None).await.body["items"].as_array().unwrap().len(),
                                usize::from(rel == Rel::Shared), "{cell}: grants unchanged");
                        }
                        cells += 1;
                    }
                    // The same cell over MCP, for the actions MCP has tools for.
                    let tool = match action { "read" => "context_get", "inject" => "context_append", "delete" => "context_delete", _ => continue };
                    for bound in [false, true] {
                        let id = match rel {
                            Rel::Own => fresh_context(&srv, &a.http).await,
                            Rel::Others | Rel::Shared => fresh_context(&srv, &admin).await,
                            Rel::Foreign => fresh_context(&srv, &foreign_key).await,
                        };
                        if rel == Rel::Shared {
                            srv.admin(Method::POST, &format!("/context/{id}/grants"),
                                Some(json!({"grantee": {"principal": a.principal}, "role": "injector"}))).await;
                        }
                        let key = if bound {
                            token(&srv, &a.client, &format!("{}/mcp", srv.url), Some(binding(&id, &["read"]))).await
                        } else { a.mcp.clone() };
                        let mut args = json!({"context_id": id});
                        if tool == "context_append" {
                            args["messages"] = json!([{"role": "user", "message": "x"}]);
                        }
                        let got = mcp_tool(&srv, &key, tool, args).await;
                        let want = expected(role, rel, action, bound);
                        let cell = format!("MCP {role:?} {rel:?} {action} bound={bound}");
                        assert_mcp_matches(want, got, &cell);
                        if !want.is_success() && rel != Rel::Foreign {
                            // A refused tool call changes nothing either.
                            let stored = srv.stored(&id).await;
                            assert_eq!((stored.status, stored.body["version"].as_i64()), (StatusCode::OK, Some(1)), "{cell}");
                        }
                        cells += 1;
                    }
                }
            }
        }
        assert!(cells > 300, "{cells} cells");
    }

    async fn grants_share_and_unshare_at_once(srv) {
        let owner_key = srv.agent("owner", &["maintainer"]).await;
        let friend = srv.create_principal("default", "friend", &[]).await;
        let friend_key = srv.api_key(&friend, None, None).await.1;
        let id = fresh_context(&srv, &owner_key).await;
        let path = format!("/context/{id}");
        assert_eq!(srv.call(Method::GET, &path, Some(&friend_key), None).await.status, StatusCode::NOT_FOUND);
        let g = srv.call(Method::POST, &format!("{path}/grants"), Some(&owner_key), Some(json!({"grantee": {"principal": friend}, "role": "injector"}))).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        assert_eq!(g.body["grantee"], json!({"principal": friend}));
        let grant_id = g.body["id"].as_str().unwrap().to_string();
        // Seen at once, on the very next request.
        assert_eq!(srv.call(Method::GET, &path, Some(&friend_key), None).await.status, StatusCode::OK);
        let r = srv.call(Method::POST, &format!("{path}/messages"), Some(&friend_key), Some(json!({"messages": [{"role": "user", "message": "hi"}]}))).await;
        assert_eq!(r.status, StatusCode::OK);
        srv.call(Method::DELETE, &path, Some(&friend_key), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        // The friend sees exactly this context in listings.
        let other = fresh_context(&srv, &owner_key).await;
        let list = srv.call(Method::GET, "/context", Some(&friend_key), None).await;
        let ids: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [id.as_str()], "{}", list.body);
        let listed = srv.call(Method::GET, &format!("{path}/grants"), Some(&owner_key), None).await;
        assert_eq!(listed.body["items"][0]["id"], grant_id.as_str());
        // Friends cannot see or manage the grant list (that is sharing).
        srv.call(Method::GET, &format!("{path}/grants"), Some(&friend_key), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        // Revoked: gone at once.
        let r = srv.call(Method::DELETE, &format!("{path}/grants/{grant_id}"), Some(&owner_key), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        srv.call(Method::GET, &path, Some(&friend_key), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        srv.call(Method::DELETE, &format!("{path}/grants/{grant_id}"), Some(&owner_key), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        // Sharing with a role: every reader of the tenant may now inject into `other`.
        let reader_key = srv.agent("a-reader", &["reader"]).await;
        let r = srv.call(Method::POST, &format!("/context/{other}/grants"), Some(&owner_key), Some(json!({"grantee": {"role": "reader"}, "role": "injector"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = srv.call(Method::POST, &format!("/context/{other}/messages"), Some(&reader_key), Some(json!({"messages": [{"role": "user", "message": "hi"}]}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    async fn grants_cannot_escalate_or_leave_the_tenant(srv) {
        let maintainer_key = srv.agent("m", &["maintainer"]).await;
        let injector = srv.create_principal("default", "inj", &["injector"]).await;
        let injector_key = srv.api_key(&injector, None, None).await.1;
        let id = fresh_context(&srv, &maintainer_key).await;
        let grants = format!("/context/{id}/grants");
        let grant = |who: Value, role: &str| json!({"grantee": who, "role": role});
        // An injector may not share at all — and does not learn whether a grantee exists.
        srv.call(Method::POST, &grants, Some(&injector_key), Some(grant(json!({"principal": injector}), "reader"))).await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::POST, &grants, Some(&injector_key), Some(grant(json!({"principal": uuid::Uuid::new_v4()}), "reader"))).await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
        // Admin is a tenant role, not a context role.
        srv.call(Method::POST, &grants, Some(&maintainer_key), Some(grant(json!({"principal": injector}), "admin"))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        // A grantee of another tenant is no grantee at all: not found, as a made-up one.
        srv.create_tenant("t2").await;
        let stranger = srv.create_principal("t2", "stranger", &["admin"]).await;
        let r = srv.call(Method::POST, &grants, Some(&maintainer_key), Some(grant(json!({"principal": stranger}), "reader"))).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
        let made_up = srv.call(Method::POST, &grants, Some(&maintainer_key), Some(grant(json!({"principal": uuid::Uuid::new_v4()}), "reader"))).await;
        made_up.assert_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(made_up.body["error"], r.body["error"], "a stranger and a made-up id look alike");
        assert!(r.body["error"].as_str().unwrap().contains("grantee"), "{}", r.body);
        // Someone shared as maintainer cannot hand out more than maintainer, and a
        // grant to the same grantee twice is a conflict.
        let r = srv.call(Method::POST, &grants, Some(&maintainer_key), Some(grant(json!({"principal": injector}), "maintainer"))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        srv.call(Method::POST, &grants, Some(&maintainer_key), Some(grant(json!({"principal": injector}), "reader"))).await
            .assert_error(StatusCode::CONFLICT, "conflict");
        // Malformed input names the problem.
        srv.call(Method::POST, &grants, Some(&maintainer_key), Some(json!({"grantee": {"group": "x"}, "role": "reader"}))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.call(Method::POST, &grants, Some(&maintainer_key), Some(json!({"grantee": {"role": "root"}, "role": "reader"}))).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        srv.call(Method::DELETE, &format!("{grants}/not-a-uuid"), Some(&maintainer_key), None).await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        // The stranger's admin cannot see, list or share our context.
        let stranger_key = srv.api_key(&stranger, None, None).await.1;
        srv.call(Method::GET, &grants, Some(&stranger_key), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        srv.call(Method::POST, &grants, Some(&stranger_key), Some(grant(json!({"principal": stranger}), "reader"))).await
            .assert_error(StatusCode::NOT_FOUND, "context_not_found");
        let stored = srv.admin(Method::GET, &grants, None).await;
        assert_eq!(stored.body["items"].as_array().unwrap().len(), 1, "{}", stored.body);
    }

    async fn a_foreign_context_is_indistinguishable_from_a_missing_one(srv) {
        srv.create_tenant("other").await;
        let theirs = srv.create_principal("other", "writer", &["writer"]).await;
        let their_key = srv.api_key(&theirs, None, None).await.1;
        let foreign = fresh_context(&srv, &their_key).await;
        let missing = uuid::Uuid::new_v4().to_string();
        let me = srv.agent("me", &["admin"]).await;
        let strip = |headers: &reqwest::header::HeaderMap| {
            let mut h: Vec<(String, String)> = headers
                .iter()
                // What differs between any two requests (RateLimit: the bucket's level).
                .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id" | "content-length" | "ratelimit"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            h.sort();
            h
        };
        let requests: [(Method, &str, Option<Value>); 6] = [
            (Method::GET, "", None),
            (Method::PUT, "", Some(sample_context())),
            (Method::PATCH, "", Some(json!({"metadata": {"a": 1}}))),
            (Method::POST, "/messages", Some(json!({"messages": [{"role": "user", "message": "x"}]}))),
            (Method::DELETE, "", None),
            (Method::GET, "/grants", None),
        ];
        for (method, suffix, body) in requests {
            let a = srv.call(method.clone(), &format!("/context/{foreign}{suffix}"), Some(&me), body.clone()).await;
            let b = srv.call(method.clone(), &format!("/context/{missing}{suffix}"), Some(&me), body).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {suffix}");
            assert_eq!(a.status, b.status, "{method} {suffix}");
            let normalise = |v: &Value, id: &str| v.to_string().replace(id, "ID");
            assert_eq!(normalise(&a.body, &foreign), normalise(&b.body, &missing), "{method} {suffix}");
            assert_eq!(strip(&a.headers), strip(&b.headers), "{method} {suffix}");
        }
        // Timing: interleaved, so that machine noise hits both alike; the same query
        // answers both (the tenant is in the key), so the medians stay close.
        let mut times = (Vec::new(), Vec::new());
        for _ in 0..60 {
            for (target, bucket) in [(&foreign, &mut times.0), (&missing, &mut times.1)] {
                let t = std::time::Instant::now();
                srv.call(Method::GET, &format!("/context/{target}"), Some(&me), None).await;
                bucket.push(t.elapsed());
            }
        }
        times.0.sort();
        times.1.sort();
        let (f, m) = (times.0[30], times.1[30]);
        let gap = f.abs_diff(m);
        // Generous: a busy machine adds noise to both; an oracle would show as a
        // difference far beyond it (a second query, a different code path).
        assert!(gap < std::time::Duration::from_millis(5) || gap < f.max(m) / 2, "medians {f:?} vs {m:?}");
        // The foreign context is untouched.
        let r = srv.call(Method::GET, &format!("/context/{foreign}"), Some(&their_key), None).await;
        assert_eq!((r.status, r.body["version"].as_i64()), (StatusCode::OK, Some(1)));
    }

    async fn listings_and_mcp_resources_show_only_readable_contexts(srv) {
        srv.create_tenant("other").await;
        let theirs = srv.create_principal("other", "w", &["writer"]).await;
        let their_key = srv.api_key(&theirs, None, None).await.1;
        let foreign: Vec<String> = futures_ids(&srv, &their_key, 3).await;
        let mine_key = srv.agent("mine", &["writer"]).await;
        let mine: Vec<String> = futures_ids(&srv, &mine_key, 3).await;
        // A principal with no role sees nothing, but may list (an empty page).
        let nobody = srv.agent("nobody", &[]).await;
        let r = srv.call(Method::GET, "/context", Some(&nobody), None).await;
        assert_eq!((r.status, r.body["items"].as_array().unwrap().len()), (StatusCode::OK, 0), "{}", r.body);
        // Paging with limit 1 walks exactly our tenant's contexts.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor { Some(c) => format!("/context?limit=1&cursor={c}"), None => "/context?limit=1".into() };
            let r = srv.call(Method::GET, &path, Some(&mine_key), None).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            seen.extend(r.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap().to_string()));
            match r.body["next_cursor"].as_str() { Some(c) => cursor = Some(c.to_string()), None => break }
        }
        seen.sort();
        let mut want = mine.clone();
        want.sort();
        assert_eq!(seen, want);
        assert!(foreign.iter().all(|f| !seen.contains(f)));
        // MCP resources: the same set; a token bound to one context lists only it.
        let (client_id, secret) = srv.machine_client("lister", &["reader"], None).await;
        let mcp = format!("{}/mcp", srv.url);
        let r = srv.cc_token(&client_id, &secret, &[("resource", &mcp), ("authorization_details", &binding(&mine[0], &["read"]).to_string())]).await;
        let bound = r.body["access_token"].as_str().unwrap().to_string();
        let listed = mcp_resources(&srv, &bound).await;
        assert_eq!(listed, [format!("context://{}", mine[0])]);
        let r = srv.cc_token(&client_id, &secret, &[("resource", &mcp)]).await;
        let mut all = mcp_resources(&srv, r.body["access_token"].as_str().unwrap()).await;
        all.sort();
        let mut want: Vec<String> = mine.iter().map(|i| format!("context://{i}")).collect();
        want.sort();
        assert_eq!(all, want);
    }
}

async fn futures_ids(srv: &TestServer, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(fresh_context(srv, key).await);
    }
    ids
}

async fn mcp_resources(srv: &TestServer, key: &str) -> Vec<String> {
    let meta =
        json!({"io.modelcontextprotocol/protocolVersion": MCP_V, "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": {"_meta": meta}});
    let (status, _, msgs) =
        crate::mcp::rpc(srv, Some(key), &body, &[("mcp-protocol-version", MCP_V), ("mcp-method", "resources/list")])
            .await;
    assert_eq!(status, StatusCode::OK, "{msgs:?}");
    msgs[0]["result"]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{msgs:?}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_string())
        .collect()
}
