//! Per-message storage: appends write only their messages, every version stays
//! observable as it was, short answers on request, history windows, provenance, and
//! the conversion of stores written by the previous format (both backends).

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, PgSchema, TestServer, sample_context};

fn msgs(n: usize, tag: &str) -> Value {
    json!({"messages": (0..n).map(|i| json!({"role": "user", "message": format!("{tag} {i}")})).collect::<Vec<_>>()})
}

/// The request as raw bytes (for byte-for-byte comparisons).
async fn raw(srv: &TestServer, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = srv.request(Method::GET, path, Some(&srv.admin_key)).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

backend_tests! {
    async fn appends_write_each_message_once_and_every_version_stays(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let ctx = srv.create_context(&key, sample_context()).await;
        let id = ctx["context_id"].as_str().unwrap().to_string();
        for i in 0..30 {
            let r = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(msgs(1, &format!("m{i}")))).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        let where_ = format!("tenant_id = (SELECT tenant_id FROM contexts WHERE context_id = '{id}') AND context_id = '{id}'");
        assert_eq!(srv.raw_count(&format!("SELECT COUNT(*) FROM context_messages WHERE {where_}")).await, 32,
            "each message is stored once");
        assert_eq!(srv.raw_count(&format!("SELECT COUNT(*) FROM context_revisions WHERE {where_}")).await, 31);
        assert_eq!(srv.raw_count(&format!("SELECT COUNT(*) FROM context_revisions WHERE metadata IS NOT NULL AND {where_}")).await, 1,
            "appends carry no metadata snapshot");
        for v in [1, 2, 17, 31] {
            let got = srv.call(Method::GET, &format!("/context/{id}/versions/{v}"), Some(&key), None).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.body["version"], v);
            let history = got.body["session"]["history"].as_array().unwrap();
            assert_eq!(history.len(), 2 + (v as usize - 1));
            if v > 1 {
                assert_eq!(history.last().unwrap()["message"], format!("m{} 0", v - 2));
            }
            assert_eq!(got.body["metadata"], ctx["metadata"]);
        }
        let latest = srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await;
        let v31 = srv.call(Method::GET, &format!("/context/{id}/versions/31"), Some(&key), None).await;
        assert_eq!(latest.body, v31.body);
    }

    async fn put_patch_and_append_keep_older_versions_exact(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let id = srv.create_context(&key, sample_context()).await["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}");
        let v1 = raw(&srv, &format!("{path}/versions/1")).await.2;
        let put = srv.call(Method::PUT, &path, Some(&key), Some(json!({
            "metadata": {"rewritten": true}, "session": {"history": [{"role": "user", "message": "new start"}]}
        }))).await;
        assert_eq!(put.status, StatusCode::OK);
        assert_eq!(put.body["session"]["history"].as_array().unwrap().len(), 1);
        let patch = srv.request(Method::PATCH, &path, Some(&key))
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"metadata":{"step":2}}"#).send().await.unwrap();
        assert_eq!(patch.status(), StatusCode::OK);
        srv.call(Method::POST, &format!("{path}/messages"), Some(&key), Some(msgs(2, "after"))).await;
        let v4 = srv.call(Method::GET, &format!("{path}/versions/4"), Some(&key), None).await.body;
        assert_eq!(v4["metadata"], json!({"rewritten": true, "step": 2}));
        let texts: Vec<&str> = v4["session"]["history"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
        assert_eq!(texts, ["new start", "after 0", "after 1"]);
        assert_eq!(raw(&srv, &format!("{path}/versions/1")).await.2, v1, "version 1 is unchanged, byte for byte");
        // What the writer cached from its own writes is what the database holds.
        assert_eq!(raw(&srv, &path).await.2, raw(&srv, &format!("{path}/versions/4")).await.2);
        let v2 = srv.call(Method::GET, &format!("{path}/versions/2"), Some(&key), None).await.body;
        assert_eq!(v2["metadata"], json!({"rewritten": true}));
        let versions = srv.call(Method::GET, &format!("{path}/versions"), Some(&key), None).await.body;
        assert_eq!(versions["items"].as_array().unwrap().len(), 4);
        // A delete drops every stored message and version, keeping the tombstone.
        assert_eq!(srv.call(Method::DELETE, &path, Some(&srv.admin_key), None).await.status, StatusCode::NO_CONTENT);
        let where_ = format!("context_id = '{id}'");
        assert_eq!(srv.raw_count(&format!("SELECT COUNT(*) FROM context_messages WHERE {where_}")).await, 0);
        assert_eq!(srv.raw_count(&format!("SELECT COUNT(*) FROM context_revisions WHERE {where_}")).await, 0);
    }

    async fn prefer_return_minimal(srv) {
        let key = srv.agent("w", &["writer"]).await;
        let created = srv.request(Method::POST, "/context", Some(&key))
            .header("prefer", "return=minimal").json(&sample_context()).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let location = created.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(created.headers()["etag"], "\"v1\"");
        assert_eq!(created.headers()["ctxguard-history-length"], "2");
        assert_eq!(created.headers()["preference-applied"], "return=minimal");
        assert!(created.bytes().await.unwrap().is_empty());
        let path = location.strip_prefix(&srv.url).unwrap().to_string();

        let appended = srv.request(Method::POST, &format!("{path}/messages"), Some(&key))
            .header("prefer", "respond-async, return=minimal").json(&msgs(3, "x")).send().await.unwrap();
        assert_eq!(appended.status(), StatusCode::NO_CONTENT);
        assert_eq!(appended.headers()["etag"], "\"v2\"");
        assert_eq!(appended.headers()["ctxguard-version"], "2");
        assert_eq!(appended.headers()["ctxguard-history-length"], "5");
        assert_eq!(appended.headers()["location"].to_str().unwrap(), location);
        assert!(appended.bytes().await.unwrap().is_empty());

        // If-Match still holds, and a refused minimal write changes nothing.
        let stale = srv.request(Method::POST, &format!("{path}/messages"), Some(&key))
            .header("prefer", "return=minimal").header("if-match", "\"v1\"").json(&msgs(1, "y")).send().await.unwrap();
        assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(srv.call(Method::GET, &path, Some(&key), None).await.body["version"], 2);

        let patched = srv.request(Method::PATCH, &path, Some(&key)).header("prefer", "return=minimal")
            .header("content-type", "application/merge-patch+json").body(r#"{"metadata":{"a":1}}"#).send().await.unwrap();
        assert_eq!(patched.status(), StatusCode::NO_CONTENT);
        assert_eq!(patched.headers()["etag"], "\"v3\"");

        // Without the preference: the whole representation, as before.
        let full = srv.call(Method::POST, &format!("{path}/messages"), Some(&key), Some(msgs(1, "z"))).await;
        assert_eq!(full.status, StatusCode::OK);
        assert_eq!(full.body["session"]["history"].as_array().unwrap().len(), 6);
        assert_eq!(full.header("ctxguard-version"), Some("4"));
    }

    async fn history_windows(srv) {
        let key = srv.agent("r", &["writer"]).await;
        let id = srv.create_context(&key, json!({"session": {"history": []}})).await["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}");
        let empty = srv.call(Method::GET, &format!("{path}?last=5"), Some(&key), None).await;
        assert_eq!(empty.status, StatusCode::OK);
        assert_eq!(empty.body["session"]["history"], json!([]));
        assert_eq!(empty.header("ctxguard-history-length"), Some("0"));
        srv.call(Method::POST, &format!("{path}/messages"), Some(&key), Some(msgs(10, "m"))).await;
        let full = srv.call(Method::GET, &path, Some(&key), None).await;
        let texts = |r: &crate::support::Reply| -> Vec<String> {
            r.body["session"]["history"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap().to_string()).collect()
        };
        let all: Vec<String> = (0..10).map(|i| format!("m {i}")).collect();
        let cases: Vec<(&str, Vec<String>, &str)> = vec![
            ("last=3", all[7..].to_vec(), "8"),
            ("last=50", all.clone(), "1"),
            ("after=2&limit=2", all[2..4].to_vec(), "3"),
            ("limit=1", all[..1].to_vec(), "1"),
            ("after=10", vec![], "11"),
            ("after=99", vec![], "11"),
            ("last=0", vec![], "11"),
        ];
        for (query, want, start) in cases {
            let r = srv.call(Method::GET, &format!("{path}?{query}"), Some(&key), None).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
            assert_eq!(texts(&r), want, "{query}");
            assert_eq!(r.header("ctxguard-history-length"), Some("10"), "{query}");
            assert_eq!(r.header("ctxguard-history-start"), Some(start), "{query}");
            assert_eq!(r.header("etag"), full.header("etag"), "{query}: the whole version's ETag");
            assert_eq!(r.body["metadata"], full.body["metadata"]);
        }
        for bad in ["last=-1", "last=x", "after=1&last=2", "last=2&limit=1", "limit=0", "last=10001", "bogus=1"] {
            srv.call(Method::GET, &format!("{path}?{bad}"), Some(&key), None).await
                .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        let cached = srv.request(Method::GET, &format!("{path}?last=2"), Some(&key))
            .header("if-none-match", full.header("etag").unwrap()).send().await.unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    }

    async fn messages_pages_and_author_filter(srv) {
        let a = srv.agent("alice", &["writer"]).await;
        let b = srv.agent("bob", &["writer"]).await;
        let id = srv.create_context(&a, json!({"session": {"history": [{"role": "system", "message": "s"}]}})).await
            ["context_id"].as_str().unwrap().to_string();
        let path = format!("/context/{id}/messages");
        srv.call(Method::POST, &path, Some(&b), Some(msgs(3, "bob"))).await;
        srv.call(Method::POST, &path, Some(&a), Some(msgs(2, "alice"))).await;
        let first = srv.call(Method::GET, &format!("{path}?limit=2"), Some(&a), None).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(first.body["history_length"], 6);
        assert_eq!(first.body["version"], 3);
        assert_eq!(first.header("etag"), Some("\"v3\""));
        assert_eq!(first.body["items"].as_array().unwrap().iter().map(|i| i["position"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(first.body["next_after"], 2);
        let rest = srv.call(Method::GET, &format!("{path}?after=2&limit=10"), Some(&a), None).await;
        assert_eq!(rest.body["items"].as_array().unwrap().len(), 4);
        assert!(rest.body.get("next_after").is_none());
        let bob_id = rest.body["items"][0]["provenance"]["principal"].as_str().unwrap().to_string();
        assert_eq!(rest.body["items"][0]["provenance"]["name"], "bob");
        let by_bob = srv.call(Method::GET, &format!("{path}?author={bob_id}"), Some(&a), None).await;
        let positions: Vec<u64> = by_bob.body["items"].as_array().unwrap().iter().map(|i| i["position"].as_u64().unwrap()).collect();
        assert_eq!(positions, [2, 3, 4]);
        for bad in ["limit=0", "limit=1001", "author=bob", "after=-1"] {
            srv.call(Method::GET, &format!("{path}?{bad}"), Some(&a), None).await.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
        // Listings filter by author too.
        let other = srv.create_context(&a, sample_context()).await["context_id"].as_str().unwrap().to_string();
        let listed = srv.call(Method::GET, &format!("/context?author={bob_id}"), Some(&a), None).await;
        let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [id.as_str()], "only the context bob wrote in, not {other}");
    }

    async fn provenance_is_the_servers_record(srv) {
        let key = srv.agent("writer-p", &["writer"]).await;
        let forged = json!({"session": {"history": [
            {"role": "user", "message": "hi", "provenance": {"principal": "00000000-0000-4000-8000-000000000000", "name": "root"}}
        ]}});
        let ctx = srv.create_context(&key, forged).await;
        let p = &ctx["session"]["history"][0]["provenance"];
        assert_eq!(p["name"], "writer-p", "a client-sent provenance is ignored: {ctx}");
        assert_ne!(p["principal"], "00000000-0000-4000-8000-000000000000");
        assert_eq!(p["kind"], "agent");
        assert!(p.get("client_id").is_none(), "API keys have no client");
        assert!(p["at"].as_str().is_some());
        let id = ctx["context_id"].as_str().unwrap();
        let bad = srv.call(Method::POST, &format!("/context/{id}/messages"), Some(&key), Some(json!({"messages": [
            {"role": "user", "message": "x", "provenance": {"principal": "00000000-0000-4000-8000-000000000000"}}
        ]}))).await;
        assert_eq!(bad.status, StatusCode::OK);
        assert_eq!(bad.body["session"]["history"][1]["provenance"]["name"], "writer-p");
    }
}

/// Versions recorded from the fixture store (tests/fixtures/store-v1, written by the
/// release before per-message storage): context id → version → served body.
fn fixture_versions() -> (HashMap<String, HashMap<i64, String>>, String) {
    let text = include_str!("../fixtures/store-v1/versions.jsonl");
    let mut out: HashMap<String, HashMap<i64, String>> = HashMap::new();
    let mut deleted = String::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(d) = v["deleted"].as_str() {
            deleted = d.to_string();
            continue;
        }
        out.entry(v["context_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(v["version"].as_i64().unwrap(), v["body"].as_str().unwrap().to_string());
    }
    (out, deleted)
}

/// Opens a converted store and checks that every recorded version reads back as the
/// same JSON (each message's members now in canonical order, docs/integrity.md).
async fn assert_fixture_reads_back(db: &dyn ctxguard::store::Database) {
    use ctxguard::domain::{ContextId, Version};
    let (versions, deleted) = fixture_versions();
    assert!(versions.len() >= 4 && versions.values().map(HashMap::len).sum::<usize>() > 20, "the fixture is not empty");
    let tenant = db.tenant_by_name("default").await.unwrap().unwrap().id;
    for (id, by_version) in &versions {
        let cid: ContextId = id.parse().unwrap();
        let listed = db.versions(tenant, cid).await.unwrap();
        assert_eq!(listed.len(), by_version.len(), "{id}: every version is listed");
        for (v, body) in by_version {
            let got =
                db.get_version(tenant, cid, Version(*v)).await.unwrap().unwrap_or_else(|| panic!("{id} v{v} lost"));
            assert_eq!(serde_json::to_value(&got).unwrap(), json_of(body), "{id} v{v} differs");
        }
        let latest = by_version.keys().max().unwrap();
        let Some(ctxguard::store::RawContextRecord::Live { body, version, .. }) =
            db.get_raw(tenant, cid).await.unwrap()
        else {
            panic!("{id} is not live")
        };
        assert_eq!(version, Version(*latest));
        let served: Value = serde_json::from_slice(&body.json).unwrap();
        assert_eq!(served, json_of(&by_version[latest]), "{id}: the latest version as served");
    }
    let gone = db.get_raw(tenant, deleted.parse().unwrap()).await.unwrap();
    assert!(matches!(gone, Some(ctxguard::store::RawContextRecord::Tombstone { .. })), "the tombstone stays");
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_of_the_previous_release_converts_to_the_same_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctxguard.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1/ctxguard.db"), &path).unwrap();
    let location = ctxguard::store::DatabaseLocation::Sqlite(path.clone());
    let db = ctxguard::store::open(&location).await.unwrap();
    let before = db.legacy_contexts().await.unwrap();
    assert!(before >= 4, "the fixture holds contexts in the old format ({before})");
    // Interrupted after one context, then resumed by a new process.
    assert_eq!(db.convert_legacy(1).await.unwrap(), 1);
    assert_eq!(db.legacy_contexts().await.unwrap(), before - 1);
    db.close().await;
    let db = ctxguard::store::open(&location).await.unwrap();
    assert_eq!(db.convert_legacy(1000).await.unwrap(), before - 1);
    assert_eq!(db.legacy_contexts().await.unwrap(), 0);
    assert_eq!(db.convert_legacy(1000).await.unwrap(), 0, "nothing left: converting again is a no-op");
    assert_fixture_reads_back(&*db).await;
    db.close().await;
}

/// A head row of migration 5: tenant, context, owner, version, expires, deleted,
/// created, updated, labels, grants.
type HeadRow = (String, String, String, i64, Option<i64>, Option<i64>, i64, i64, Option<String>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_in_the_previous_format_converts_to_the_same_json() {
    let Some(pg) = PgSchema::create().await else { return };
    // The schema as the previous release left it (migrations 1–5)…
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let mut old =
        sqlx::migrate::Migrator::new(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")))
            .await
            .unwrap();
    old.migrations = std::borrow::Cow::Owned(old.migrations.iter().filter(|m| m.version <= 5).cloned().collect());
    old.run(&pool).await.unwrap();
    // …holding the fixture's tenants, heads and whole-body versions, row for row.
    // Read from a copy: opening the fixture in place would leave WAL files beside it.
    let copy = tempfile::tempdir().unwrap();
    let fixture = copy.path().join("ctxguard.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1/ctxguard.db"), &fixture).unwrap();
    let sqlite = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", fixture.display())).await.unwrap();
    let tenants: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, name, created_at_ms FROM tenants").fetch_all(&sqlite).await.unwrap();
    for (id, name, at) in tenants {
        sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    let heads: Vec<HeadRow> = sqlx::query_as(
        "SELECT tenant_id, context_id, owner_id, version, expires_at_ms, deleted_at_ms, created_at_ms, updated_at_ms, labels, grants FROM contexts ORDER BY seq",
    ).fetch_all(&sqlite).await.unwrap();
    for h in heads {
        sqlx::query("INSERT INTO contexts (tenant_id, context_id, owner_id, version, expires_at_ms, deleted_at_ms, created_at_ms, updated_at_ms, labels, grants) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(h.0).bind(h.1).bind(h.2).bind(h.3).bind(h.4).bind(h.5).bind(h.6).bind(h.7).bind(h.8).bind(h.9)
            .execute(&pool).await.unwrap();
    }
    let versions: Vec<(String, String, i64, String, i64)> =
        sqlx::query_as("SELECT tenant_id, context_id, version, body, created_at_ms FROM context_versions")
            .fetch_all(&sqlite)
            .await
            .unwrap();
    assert!(versions.len() > 20);
    for v in versions {
        sqlx::query("INSERT INTO context_versions (tenant_id, context_id, version, body, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(v.0).bind(v.1).bind(v.2).bind(v.3).bind(v.4).execute(&pool).await.unwrap();
    }
    sqlite.close().await;
    pool.close().await;
    // The current release migrates the schema and converts the data.
    let location = ctxguard::store::DatabaseLocation::Postgres { url: pg.url(), max_connections: 4 };
    let db = ctxguard::store::open(&location).await.unwrap();
    assert!(db.legacy_contexts().await.unwrap() >= 4);
    while db.convert_legacy(2).await.unwrap() > 0 {}
    assert_eq!(db.legacy_contexts().await.unwrap(), 0);
    assert_fixture_reads_back(&*db).await;
    db.close().await;
    pg.drop_schema().await;
}

/// The server converts at start-up, and what it converted is what it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_on_an_old_store_converts_it_first() {
    let _ = Backend::Sqlite;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1/ctxguard.db"),
        data.join("ctxguard.db"),
    )
    .unwrap();
    let settings = ctxguard::config::Settings::resolve(ctxguard::config::ConfigOverrides {
        bind: Some("127.0.0.1:0".into()),
        data_dir: Some(data.clone()),
        ..Default::default()
    })
    .unwrap();
    // The fixture's signing keys are sealed under a KEK this test does not have: the
    // server must refuse to start rather than serve with keys it cannot open…
    let refused = ctxguard::app::serve::start(settings.clone()).await;
    assert!(refused.is_err(), "a store whose keys do not open with this KEK is refused");
    // …but the conversion ran before that, and is done.
    let db = ctxguard::store::open(&settings.database).await.unwrap();
    assert_eq!(db.legacy_contexts().await.unwrap(), 0);
    assert_fixture_reads_back(&*db).await;
    db.close().await;
}

/// Appends racing a `kill -9`: every acknowledged message is there after a restart,
/// and the history is whole (no gap, no torn version).
async fn acknowledged_appends_survive_kill_9(db_url: Option<&str>) {
    use crate::process::serve_with;
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("log"));
    let mut p = serve_with(&data, db_url, &log, &[]);
    let admin = std::fs::read_to_string(data.join("admin.key")).unwrap().trim().to_string();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/context", p.url))
        .bearer_auth(&admin)
        .json(&sample_context())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["context_id"].as_str().unwrap().to_string();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, admin, id) = (http.clone(), p.url.clone(), admin.clone(), id.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let text = format!("w{w} {i}");
                let sent = http
                    .post(format!("{url}/context/{id}/messages"))
                    .bearer_auth(&admin)
                    .header("prefer", "return=minimal")
                    .json(&json!({"messages": [{"role": "user", "message": text}]}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => acked.push(text),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 20, "the writers got going before the kill ({} acks)", acked.len());
    let p = serve_with(&data, db_url, &log, &[]);
    let got: Value =
        http.get(format!("{}/context/{id}", p.url)).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let history: Vec<&str> =
        got["session"]["history"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(got["version"].as_u64().unwrap() as usize, history.len() - 1, "one version per append, none torn");
    for text in &acked {
        assert!(history.contains(&text.as_str()), "acknowledged {text:?} was lost");
    }
    for w in 0..4 {
        let mine: Vec<usize> =
            history.iter().filter_map(|m| m.strip_prefix(&format!("w{w} "))).map(|n| n.parse().unwrap()).collect();
        assert!(
            mine.windows(2).all(|p| p[1] == p[0] + 1),
            "writer {w}'s messages are in order, without gaps: {mine:?}"
        );
    }
    p.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_acknowledged_appends_survive_kill_9() {
    acknowledged_appends_survive_kill_9(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_acknowledged_appends_survive_kill_9() {
    let Some(pg) = PgSchema::create().await else { return };
    acknowledged_appends_survive_kill_9(Some(&pg.url())).await;
    pg.drop_schema().await;
}

/// The context cache is bounded in bytes and says how much it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_cache_reports_its_size() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.context_cache_mb = Some(1)).await else { return };
    let key = srv.agent("w", &["writer"]).await;
    let mut big = sample_context();
    big["session"]["history"] = json!(
        (0..200).map(|i| json!({"role": "user", "message": format!("{i} {}", "x".repeat(100))})).collect::<Vec<_>>()
    );
    let id = srv.create_context(&key, big).await["context_id"].as_str().unwrap().to_string();
    assert_eq!(srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None).await.status, StatusCode::OK);
    let gauge = |text: &str, name: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let text = srv.http.get(&srv.metrics_url).send().await.unwrap().text().await.unwrap();
        if let (Some(bytes), Some(entries)) =
            (gauge(&text, "ctxguard_context_cache_bytes"), gauge(&text, "ctxguard_context_cache_entries"))
            && entries >= 1.0
        {
            assert!(bytes > 20_000.0, "the cached body is counted: {bytes}");
            assert!(bytes <= 1_048_576.0, "within the 1 MiB budget: {bytes}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no cache gauges in /metrics:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    srv.stop().await;
}
