//! MCP 2026-07-28 `subscriptions/listen`: the acknowledgement comes first and says what
//! was granted, every notification carries the subscription id, only the requested
//! kinds are sent, only to a caller of the same tenant who can read the context, a
//! revoked credential ends the stream, and (PostgreSQL) a write on another replica is
//! heard as well as one on this one.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::backend_tests;
use crate::support::{Backend, TestServer, sample_context, sse_messages};

const V2026: &str = "2026-07-28";
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// An open `subscriptions/listen` stream: every JSON-RPC message on it, in order;
/// `None` once the stream ended.
struct Listen {
    messages: UnboundedReceiver<Option<Value>>,
}

impl Listen {
    async fn open(url: &str, key: &str, id: u64, notifications: Value) -> Listen {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": V2026, "io.modelcontextprotocol/clientCapabilities": {}},
            "notifications": notifications}});
        let res = reqwest::Client::new()
            .post(format!("{url}/mcp"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", V2026)
            .header("mcp-method", "subscriptions/listen")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        Listen { messages: sse_messages(res) }
    }

    /// The next message within `wait`: `Some(Some(m))` a message, `Some(None)` the end
    /// of the stream, `None` nothing.
    async fn next(&mut self, wait: Duration) -> Option<Option<Value>> {
        tokio::time::timeout(wait, self.messages.recv()).await.ok().flatten()
    }

    async fn expect(&mut self, what: &str) -> Value {
        match self.next(Duration::from_secs(5)).await {
            Some(Some(m)) => m,
            other => panic!("expected {what}, got {other:?}"),
        }
    }

    async fn expect_silence(&mut self, why: &str) {
        if let Some(got) = self.next(Duration::from_millis(1500)).await {
            panic!("{why}, but got {got:?}");
        }
    }
}

fn uri(id: &str) -> String {
    format!("context://{id}")
}

async fn append(srv: &TestServer, url: &str, id: &str) {
    let r = srv
        .send(
            srv.http
                .post(format!("{url}/context/{id}/messages"))
                .bearer_auth(&srv.admin_key)
                .json(&json!({"messages": [{"role": "user", "message": "news"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

async fn new_context(srv: &TestServer, key: &str) -> String {
    srv.create_context(key, sample_context()).await["context_id"].as_str().unwrap().to_string()
}

backend_tests! {
    async fn the_acknowledgement_comes_first_and_notifications_carry_the_subscription_id(srv) {
        let principal = srv.create_principal("default", "listener", &["writer"]).await;
        let (_, key) = srv.api_key(&principal, None, None).await;
        let watched = new_context(&srv, &key).await;
        let other = new_context(&srv, &key).await;
        let mut listen = Listen::open(&srv.url, &key, 41, json!({
            "resourceSubscriptions": [uri(&watched)], "resourcesListChanged": true,
            "toolsListChanged": true, "promptsListChanged": true})).await;

        let ack = listen.expect("the acknowledgement").await;
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
        assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], 41);
        // Granted: what ctxguard can tell of; tool and prompt lists never change.
        assert_eq!(ack["params"]["notifications"], json!({"resourceSubscriptions": [uri(&watched)], "resourcesListChanged": true}));

        append(&srv, &srv.url, &other).await;
        append(&srv, &srv.url, &watched).await;
        let updated = listen.expect("the update of the watched context").await;
        assert_eq!(updated["method"], "notifications/resources/updated", "{updated}");
        assert_eq!(updated["params"]["uri"], uri(&watched), "only the subscribed context is told of");
        assert_eq!(updated["params"]["_meta"][SUBSCRIPTION_ID], 41);

        let created = new_context(&srv, &key).await;
        let listed = listen.expect("the list change").await;
        assert_eq!(listed["method"], "notifications/resources/list_changed", "{listed}");
        assert_eq!(listed["params"]["_meta"][SUBSCRIPTION_ID], 41);

        let r = srv.call(Method::DELETE, &format!("/context/{created}"), Some(&srv.admin_key), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let listed = listen.expect("the list change of a deletion").await;
        assert_eq!(listed["method"], "notifications/resources/list_changed", "{listed}");
        listen.expect_silence("nothing else happened").await;

        // A server that shuts down ends the subscription gracefully: the final result.
        srv.restart().await;
        let last = listen.expect("the final result").await;
        assert_eq!(last["id"], 41, "{last}");
        assert_eq!(last["result"]["resultType"], "complete", "{last}");
        assert_eq!(last["result"]["_meta"][SUBSCRIPTION_ID], 41, "{last}");
        assert_eq!(listen.next(Duration::from_secs(5)).await, Some(None), "the stream is closed");
    }

    async fn only_the_requested_kinds_are_sent(srv) {
        let principal = srv.create_principal("default", "picky", &["writer"]).await;
        let (_, key) = srv.api_key(&principal, None, None).await;
        let watched = new_context(&srv, &key).await;
        let mut listen = Listen::open(&srv.url, &key, 7, json!({"resourceSubscriptions": [uri(&watched)]})).await;
        let ack = listen.expect("the acknowledgement").await;
        assert_eq!(ack["params"]["notifications"], json!({"resourceSubscriptions": [uri(&watched)]}));
        // A new context changes the list, which this subscription did not ask to hear.
        new_context(&srv, &key).await;
        append(&srv, &srv.url, &watched).await;
        let next = listen.expect("the update").await;
        assert_eq!(next["method"], "notifications/resources/updated", "no list change comes first: {next}");

        // A listener that asked for list changes only hears no resource update.
        let mut lists = Listen::open(&srv.url, &key, 8, json!({"resourcesListChanged": true})).await;
        lists.expect("the acknowledgement").await;
        append(&srv, &srv.url, &watched).await;
        lists.expect_silence("an update was not asked for").await;
    }

    async fn other_tenants_and_unreadable_contexts_are_never_told(srv) {
        let tenant = srv.create_tenant("elsewhere").await;
        let outsider = srv.create_principal(&tenant, "outsider", &["maintainer"]).await;
        let (_, outsider_key) = srv.api_key(&outsider, None, None).await;
        let insider = srv.create_principal("default", "insider", &["writer"]).await;
        let (_, insider_key) = srv.api_key(&insider, None, None).await;
        let secret = new_context(&srv, &insider_key).await;

        // Naming another tenant's context is allowed (refusing would reveal it exists)
        // but never produces a notification, nor do that tenant's new contexts.
        let mut listen = Listen::open(&srv.url, &outsider_key, 1,
            json!({"resourceSubscriptions": [uri(&secret)], "resourcesListChanged": true})).await;
        listen.expect("the acknowledgement").await;
        append(&srv, &srv.url, &secret).await;
        new_context(&srv, &insider_key).await;
        listen.expect_silence("another tenant's writes are not the outsider's business").await;
        // Positive control: a context of the outsider's own tenant is heard of.
        new_context(&srv, &outsider_key).await;
        let listed = listen.expect("its own tenant's list change").await;
        assert_eq!(listed["method"], "notifications/resources/list_changed");
    }

    async fn a_revoked_credential_ends_the_listen_stream(srv) {
        let principal = srv.create_principal("default", "revoked-listener", &["writer"]).await;
        let (key_id, key) = srv.api_key(&principal, None, None).await;
        let watched = new_context(&srv, &key).await;
        let mut listen = Listen::open(&srv.url, &key, 3, json!({"resourceSubscriptions": [uri(&watched)]})).await;
        listen.expect("the acknowledgement").await;
        append(&srv, &srv.url, &watched).await;
        assert_eq!(listen.expect("the update").await["method"], "notifications/resources/updated");

        let r = srv.call(Method::DELETE, &format!("/admin/api-keys/{key_id}"), Some(&srv.admin_key), None).await;
        assert!(r.status.is_success(), "{:?}", r.body);
        append(&srv, &srv.url, &watched).await;
        // The next message is the error that ends the stream, then the stream's end.
        let last = listen.expect("the end of the subscription").await;
        assert_eq!(last["id"], 3, "{last}");
        assert!(last["error"]["message"].as_str().unwrap_or("").contains("no longer holds"), "{last}");
        assert_eq!(listen.next(Duration::from_secs(5)).await, Some(None), "the stream is closed");
    }

    async fn listening_needs_the_read_scope(srv) {
        let (id, secret) = srv.machine_client("listen-no-read", &["writer"], None).await;
        let resource = format!("{}/mcp", srv.url);
        let r = srv.cc_token(&id, &secret, &[("scope", "context:inject"), ("resource", &resource)]).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let token = r.body["access_token"].as_str().unwrap().to_string();
        let res = reqwest::Client::new()
            .post(format!("{}/mcp", srv.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", V2026)
            .body(json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {
                "_meta": {"io.modelcontextprotocol/protocolVersion": V2026, "io.modelcontextprotocol/clientCapabilities": {}},
                "notifications": {"resourcesListChanged": true}}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains("insufficient_scope") && challenge.contains("context:read"), "{challenge}");
    }
}

/// Replicas share one PostgreSQL database: a write on one is heard by a listener on
/// the other (LISTEN/NOTIFY), once — not also from the writer's own announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_replica_is_heard() {
    let Some(srv) = TestServer::start(Backend::Postgres).await else { return };
    let replica = srv.replica().await;
    let principal = srv.create_principal("default", "far-listener", &["writer"]).await;
    let (_, key) = srv.api_key(&principal, None, None).await;
    let watched = new_context(&srv, &key).await;
    let mut listen = Listen::open(
        &srv.url,
        &key,
        5,
        json!({"resourceSubscriptions": [uri(&watched)], "resourcesListChanged": true}),
    )
    .await;
    listen.expect("the acknowledgement").await;

    append(&srv, &replica.url, &watched).await;
    let updated = listen.expect("the update written on the other replica").await;
    assert_eq!(updated["method"], "notifications/resources/updated", "{updated}");
    assert_eq!(updated["params"]["uri"], uri(&watched));
    let r = srv.send(srv.http.post(format!("{}/context", replica.url)).bearer_auth(&key).json(&sample_context())).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        listen.expect("the list change on the other replica").await["method"],
        "notifications/resources/list_changed"
    );
    // Written here: heard once (from the database), not twice.
    append(&srv, &srv.url, &watched).await;
    assert_eq!(listen.expect("the local update").await["method"], "notifications/resources/updated");
    listen.expect_silence("each change is told once").await;
    replica.stop().await;
    srv.stop().await;
}
