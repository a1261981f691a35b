//! Context-bound tokens (RFC 9396 `authorization_details`) and token exchange
//! (RFC 8693): a bound token works only on its contexts and actions, over HTTP and MCP;
//! an exchanged token is always narrower than its subject and dies with it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::oauth_flow::{Browser, authorize_query, pkce, query_of, register_public_native, sign_in_and_allow, user};
use crate::sharing::mcp_tool;
use crate::support::{Reply, TestServer, sample_context};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

fn details(ids: &[&str], actions: &[&str]) -> String {
    json!([{"type": "ctxguard_context", "context_ids": ids, "actions": actions}]).to_string()
}

/// The (unverified) claims of a JWT, to look at what the server put in.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn access_token(r: &Reply) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

#[track_caller]
fn assert_oauth_error(r: &Reply, code: &str) {
    assert_eq!((r.status, r.body["error"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{}", r.body);
    assert!(r.body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{}", r.body);
}

/// An agent: a client_credentials client (maintainer) that may also exchange tokens.
async fn agent_client(srv: &TestServer, name: &str, tenant: Option<&str>) -> (String, String) {
    let mut body = json!({"name": name, "grant_types": ["client_credentials", EXCHANGE], "roles": ["maintainer"]});
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    let (id, secret) = srv.oauth_client(body).await;
    (id, secret.unwrap())
}

async fn exchange(srv: &TestServer, client: &(String, String), subject: &str, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![("grant_type", EXCHANGE), ("subject_token", subject), ("subject_token_type", ACCESS_TOKEN)];
    params.extend_from_slice(extra);
    srv.form("/oauth/token", &params, Some((&client.0, &client.1))).await
}

async fn two_contexts(srv: &TestServer, key: &str) -> (String, String) {
    let a = srv.create_context(key, sample_context()).await["context_id"].as_str().unwrap().to_string();
    let b = srv.create_context(key, sample_context()).await["context_id"].as_str().unwrap().to_string();
    (a, b)
}

backend_tests! {
    async fn provenance_names_the_client_and_the_actors_of_an_exchanged_token(srv) {
        let orchestrator = agent_client(&srv, "orchestrator", None).await;
        let sub_agent = agent_client(&srv, "sub-agent", None).await;
        let token = access_token(&srv.cc_token(&orchestrator.0, &orchestrator.1, &[]).await);
        let created = srv.create_context(&token, sample_context()).await;
        let first = &created["session"]["history"][0]["provenance"];
        assert_eq!(first["client_id"], orchestrator.0.as_str(), "{created}");
        assert!(first.get("act").is_none(), "no delegation yet: {first}");
        let id = created["context_id"].as_str().unwrap();
        let exchanged = access_token(&exchange(&srv, &sub_agent, &token, &[]).await);
        let msg = json!({"messages": [{"role": "assistant", "message": "from the sub-agent"}]});
        let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&exchanged), Some(msg)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let p = &r.body["session"]["history"][2]["provenance"];
        assert_eq!(p["principal"], first["principal"], "the subject is who the message is written for");
        assert_eq!(p["client_id"], sub_agent.0.as_str());
        assert_eq!(p["act"], json!([sub_agent.0]), "the delegating actor is named: {p}");
    }

    async fn a_bound_token_works_only_on_its_contexts_and_actions(srv) {
        let client = agent_client(&srv, "bound", None).await;
        let unbound = access_token(&srv.cc_token(&client.0, &client.1, &[]).await);
        let (a, b) = two_contexts(&srv, &unbound).await;
        let asked = details(&[&a], &["read", "inject"]);
        let r = srv.cc_token(&client.0, &client.1, &[("authorization_details", &asked)]).await;
        let token = access_token(&r);
        assert_eq!(r.body["authorization_details"], serde_json::from_str::<Value>(&asked).unwrap());
        assert_eq!(claims(&token)["ctx"], json!([{"context_ids": [a], "actions": ["read", "inject"]}]));
        let msg = json!({"messages": [{"role": "user", "message": "x"}]});
        assert_eq!(srv.call(Method::GET, &format!("/context/{a}"), Some(&token), None).await.status, StatusCode::OK);
        assert_eq!(srv.call(Method::POST, &format!("/context/{a}/messages"), Some(&token), Some(msg.clone())).await.status, StatusCode::OK);
        srv.call(Method::PATCH, &format!("/context/{a}"), Some(&token), Some(json!({"metadata": {}}))).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        srv.call(Method::DELETE, &format!("/context/{a}"), Some(&token), None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        // Context B of the same principal does not exist for this token.
        for (method, path, body) in [
            (Method::GET, format!("/context/{b}"), None),
            (Method::POST, format!("/context/{b}/messages"), Some(msg.clone())),
            (Method::DELETE, format!("/context/{b}"), None),
        ] {
            srv.call(method, &path, Some(&token), body).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        }
        srv.call(Method::POST, "/context", Some(&token), Some(sample_context())).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
        let list = srv.call(Method::GET, "/context", Some(&token), None).await;
        let ids: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [a.as_str()]);
        // A token bound to several contexts pages through exactly those, newest first,
        // however many others the tenant holds.
        let c = srv.create_context(&unbound, sample_context()).await["context_id"].as_str().unwrap().to_string();
        let two = access_token(&srv.cc_token(&client.0, &client.1, &[("authorization_details", &details(&[&a, &c], &["read"]))]).await);
        let first = srv.call(Method::GET, "/context?limit=1", Some(&two), None).await;
        assert_eq!(first.body["items"][0]["context_id"], c.as_str(), "{}", first.body);
        let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
        let second = srv.call(Method::GET, &format!("/context?limit=1&cursor={cursor}"), Some(&two), None).await;
        assert_eq!(second.body["items"][0]["context_id"], a.as_str(), "{}", second.body);
        assert!(second.body["next_cursor"].is_null(), "{}", second.body);
        // Cursors of one kind of listing are refused by the other.
        srv.call(Method::GET, &format!("/context?cursor={cursor}"), Some(&unbound), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        let stored = srv.stored(&b).await;
        assert_eq!(stored.body["version"], 1, "B untouched");
        // Over MCP alike.
        let mcp = format!("{}/mcp", srv.url);
        let mcp_token = access_token(&srv.cc_token(&client.0, &client.1, &[("resource", &mcp), ("authorization_details", &asked)]).await);
        let (_, err, _) = mcp_tool(&srv, &mcp_token, "context_get", json!({"context_id": a})).await;
        assert!(!err);
        let (_, err, text) = mcp_tool(&srv, &mcp_token, "context_get", json!({"context_id": b})).await;
        assert!(err && text == "Context not found", "{text}");
        let before = srv.stored(&a).await.body;
        let (_, err, text) = mcp_tool(&srv, &mcp_token, "context_delete", json!({"context_id": a})).await;
        assert!(err && text.contains("may not") && !text.starts_with("invalid arguments"), "refused by the binding: {text}");
        let stored = srv.stored(&a).await;
        assert_eq!((stored.status, &stored.body), (StatusCode::OK, &before), "A was not deleted");
        // Introspection shows the binding.
        let i = srv.form("/oauth/introspect", &[("token", &token)], Some((&client.0, &client.1))).await;
        assert_eq!(i.body["authorization_details"], serde_json::from_str::<Value>(&asked).unwrap());
        // What we do not understand is refused, never ignored.
        for bad in [
            "not json".to_string(),
            json!({"type": "ctxguard_context"}).to_string(),
            json!([{"type": "payment_initiation", "context_ids": [a], "actions": ["read"]}]).to_string(),
            json!([{"type": "ctxguard_context", "context_ids": ["nope"], "actions": ["read"]}]).to_string(),
            json!([{"type": "ctxguard_context", "context_ids": [a], "actions": ["own"]}]).to_string(),
        ] {
            assert_oauth_error(&srv.cc_token(&client.0, &client.1, &[("authorization_details", &bad)]).await, "invalid_authorization_details");
        }
    }

    async fn the_code_flow_carries_a_binding_through_refresh(srv) {
        user(&srv, "alice", &["writer"]).await;
        let (a, b) = two_contexts(&srv, &srv.admin_key.clone()).await;
        let client = register_public_native(&srv).await;
        let (verifier, challenge) = pkce();
        let redirect = "http://127.0.0.1:49152/callback";
        let asked = details(&[&a], &["read"]);
        let query = format!("{}&{}", authorize_query(&client, redirect, &challenge, "context:read offline_access", "s"),
            form_urlencoded::Serializer::new(String::new()).append_pair("authorization_details", &asked).finish());
        let mut browser = Browser::new();
        let location = sign_in_and_allow(&srv, &mut browser, &query, "alice", "correct horse battery").await;
        let code = query_of(&location)["code"].clone();
        let t = srv.form("/oauth/token", &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", redirect),
            ("code_verifier", &verifier), ("client_id", &client)], None).await;
        let token = access_token(&t);
        assert_eq!(t.body["authorization_details"], serde_json::from_str::<Value>(&asked).unwrap());
        assert_eq!(srv.call(Method::GET, &format!("/context/{a}"), Some(&token), None).await.status, StatusCode::OK);
        srv.call(Method::GET, &format!("/context/{b}"), Some(&token), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        // Refresh keeps the binding; asking for more than was consented is refused.
        let refresh = t.body["refresh_token"].as_str().unwrap().to_string();
        let wider = details(&[&a, &b], &["read"]);
        let r = srv.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client), ("authorization_details", &wider)], None).await;
        assert_oauth_error(&r, "invalid_authorization_details");
        // That refusal spent nothing: the refresh token still works, and stays bound.
        let r = srv.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client)], None).await;
        let refreshed = access_token(&r);
        assert_eq!(claims(&refreshed)["ctx"], claims(&token)["ctx"]);
        srv.call(Method::GET, &format!("/context/{b}"), Some(&refreshed), None).await.assert_error(StatusCode::NOT_FOUND, "context_not_found");
        // A bad binding at the authorization endpoint goes back to the client as an error.
        let bad = format!("{}&authorization_details=%5B%5D", authorize_query(&client, redirect, &challenge, "context:read", "s2"));
        let page = browser.get(&format!("{}/oauth/authorize?{bad}", srv.url)).await;
        let q = query_of(page.location.as_deref().unwrap());
        assert_eq!(q["error"], "invalid_authorization_details");
    }

    async fn token_exchange_narrows_and_never_widens(srv) {
        let client = agent_client(&srv, "orchestrator", None).await;
        let sub_agent = agent_client(&srv, "sub-agent", None).await;
        let parent = access_token(&srv.cc_token(&client.0, &client.1, &[]).await);
        let (a, b) = two_contexts(&srv, &parent).await;
        let mcp = format!("{}/mcp", srv.url);
        let r = exchange(&srv, &sub_agent, &parent, &[("scope", "context:read context:inject"), ("resource", &mcp),
            ("authorization_details", &details(&[&a], &["read", "inject"])), ("expires_in", "120")]).await;
        let child = access_token(&r);
        assert_eq!(r.body["issued_token_type"], ACCESS_TOKEN);
        assert_eq!(r.body["token_type"], "Bearer");
        assert!(r.body.get("refresh_token").is_none());
        let (p, c) = (claims(&parent), claims(&child));
        assert_eq!(c["sub"], p["sub"], "the subject stays the same principal");
        assert_eq!(c["act"], json!({"sub": sub_agent.0, "client_id": sub_agent.0}));
        assert_eq!(c["parents"], json!([p["jti"]]));
        assert_eq!(c["aud"], mcp);
        assert!(c["exp"].as_i64() <= p["exp"].as_i64() && c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 120);
        // The child works on A over MCP only, and not at the HTTP API (other audience).
        let (_, err, _) = mcp_tool(&srv, &child, "context_get", json!({"context_id": a})).await;
        assert!(!err);
        let (_, err, text) = mcp_tool(&srv, &child, "context_get", json!({"context_id": b})).await;
        assert!(err && text == "Context not found");
        srv.call(Method::GET, &format!("/context/{a}"), Some(&child), None).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

        // A second hop nests the actor chain.
        let r = exchange(&srv, &client, &child, &[("scope", "context:read")]).await;
        let grandchild = access_token(&r);
        let g = claims(&grandchild);
        assert_eq!(g["act"]["sub"], client.0);
        assert_eq!(g["act"]["act"]["sub"], sub_agent.0);
        assert_eq!(g["parents"], json!([c["jti"], p["jti"]]));
        assert_eq!(g["ctx"], c["ctx"], "the binding is inherited");

        // Every attempt to widen is refused, each with its reason.
        assert_oauth_error(&exchange(&srv, &client, &child, &[("scope", "context:read context:delete")]).await, "invalid_scope");
        assert_oauth_error(&exchange(&srv, &client, &child, &[("authorization_details", &details(&[&a, &b], &["read"]))]).await, "invalid_authorization_details");
        assert_oauth_error(&exchange(&srv, &client, &child, &[("authorization_details", &details(&[&a], &["delete"]))]).await, "invalid_authorization_details");
        assert_oauth_error(&exchange(&srv, &client, &child, &[("expires_in", "100000")]).await, "invalid_request");
        assert_oauth_error(&exchange(&srv, &client, &child, &[("resource", "https://elsewhere.example")]).await, "invalid_target");
        assert_oauth_error(&exchange(&srv, &client, "garbage", &[]).await, "invalid_request");
        let r = srv.form("/oauth/token", &[("grant_type", EXCHANGE), ("subject_token", &child), ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token")], Some((&client.0, &client.1))).await;
        assert_oauth_error(&r, "invalid_request");
        // Another tenant's client cannot take the token across.
        srv.create_tenant("elsewhere").await;
        let stranger = agent_client(&srv, "stranger", Some("elsewhere")).await;
        assert_oauth_error(&exchange(&srv, &stranger, &parent, &[]).await, "invalid_grant");
        // A client not registered for token exchange may not use it.
        let (plain_id, plain_secret) = srv.machine_client("plain", &["reader"], None).await;
        assert_oauth_error(&exchange(&srv, &(plain_id, plain_secret), &parent, &[]).await, "unauthorized_client");
        // The chain is bounded (default depth 3): a fourth actor is refused.
        let third = access_token(&exchange(&srv, &sub_agent, &grandchild, &[]).await);
        assert_eq!(claims(&third)["act"]["act"]["act"]["sub"], sub_agent.0);
        assert_oauth_error(&exchange(&srv, &client, &third, &[]).await, "invalid_request");

        // Revoking the parent revokes every token exchanged from it.
        let r = srv.form("/oauth/revoke", &[("token", &parent)], Some((&client.0, &client.1))).await;
        assert_eq!(r.status, StatusCode::OK);
        for t in [&child, &grandchild, &third] {
            let r = srv.send(srv.request(Method::POST, "/mcp", Some(t)).header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream").body("{}")).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        }
        let i = srv.form("/oauth/introspect", &[("token", &grandchild)], Some((&client.0, &client.1))).await;
        assert_eq!(i.body["active"], false);
        assert_oauth_error(&exchange(&srv, &client, &child, &[]).await, "invalid_request");
    }
}

#[tokio::test]
async fn token_exchange_can_be_turned_off() {
    let srv =
        TestServer::start_with(crate::support::Backend::Sqlite, |c| c.max_delegation_depth = Some(0)).await.unwrap();
    let client = agent_client(&srv, "a", None).await;
    let parent = access_token(&srv.cc_token(&client.0, &client.1, &[]).await);
    assert_oauth_error(&exchange(&srv, &client, &parent, &[]).await, "unsupported_grant_type");
    srv.stop().await;
}
