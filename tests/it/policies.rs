//! Custom Cedar policies: checked before start (CLI, `config check`, `serve`) with the
//! file and line at fault; reloaded atomically by the admin API and by SIGHUP.

use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::process::{BIN, serve_with};
use crate::support::{Backend, TestServer, sample_context};

const AGENTS_NEVER_DELETE: &str = "// Agents may change contexts, never delete them.\n\
    @id(\"agents-never-delete\")\n\
    forbid (principal is Ctxguard::Agent, action == Ctxguard::Action::\"delete\", resource);\n";
const SYNTAX_ERROR: &str = "// missing comma\npermit (principal action, resource);\n";
const SCHEMA_ERROR: &str = "@id(\"typo\")\npermit (principal, action, resource is Ctxguard::Context)\nwhen { resource.lables.contains(\"x\") };\n";

fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn run(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN).env_clear().args(args).arg(dir).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn bad_policies_are_named_before_anything_starts() {
    let good = policy_dir(&[("agents.cedar", AGENTS_NEVER_DELETE)]);
    let (ok, out) = run(&["policy", "validate", "--dir"], good.path());
    assert!(ok && out.contains("1 custom"), "{out}");
    let syntax = policy_dir(&[("agents.cedar", AGENTS_NEVER_DELETE), ("broken.cedar", SYNTAX_ERROR)]);
    let (ok, out) = run(&["policy", "validate", "--dir"], syntax.path());
    assert!(!ok && out.contains("broken.cedar:2:"), "{out}");
    let schema = policy_dir(&[("typo.cedar", SCHEMA_ERROR)]);
    let (ok, out) = run(&["policy", "validate", "--dir"], schema.path());
    assert!(!ok && out.contains("typo.cedar:3:") && out.contains("lables") && out.contains("\"typo\""), "{out}");
    // config check validates the configured directory too.
    let (ok, out) = run(&["config", "check", "--policy-dir"], syntax.path());
    assert!(!ok && out.contains("broken.cedar:2:"), "{out}");
    let (ok, out) = run(&["config", "check", "--policy-dir"], good.path());
    assert!(ok && out.contains("policies are valid"), "{out}");
    // serve refuses to start with a bad policy set.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("d"))
        .arg("--policy-dir")
        .arg(schema.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("typo.cedar:3:"), "{err}");
    // A directory that does not exist is an error, not "no policies".
    let (ok, out) = run(&["policy", "validate", "--dir"], &data.path().join("nope"));
    assert!(!ok && out.contains("policy directory"), "{out}");
}

#[tokio::test]
async fn sighup_reloads_policies_and_a_bad_set_keeps_the_old_one() {
    let policies = policy_dir(&[("agents.cedar", AGENTS_NEVER_DELETE)]);
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("log");
    let server = serve_with(&data.path().join("d"), None, &log, &["--policy-dir", policies.path().to_str().unwrap()]);
    let admin_key = std::fs::read_to_string(data.path().join("d/admin.key")).unwrap().trim().to_string();
    let http = reqwest::Client::new();
    let call = |method: Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut rb = http.request(method, format!("{}{path}", server.url)).bearer_auth(key);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send()
    };
    let generation = || async {
        let r = call(Method::GET, "/admin/policies", &admin_key, None).await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()["generation"].as_u64().unwrap()
    };
    let p = call(
        Method::POST,
        "/admin/principals",
        &admin_key,
        Some(json!({"kind": "agent", "name": "bot", "roles": ["maintainer"]})),
    )
    .await
    .unwrap()
    .json::<serde_json::Value>()
    .await
    .unwrap();
    let key = call(Method::POST, "/admin/api-keys", &admin_key, Some(json!({"principal": p["id"]})))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let id = call(Method::POST, "/context", &key, Some(sample_context()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["context_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(Method::DELETE, &format!("/context/{id}"), &key, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("agents-never-delete"));
    let hangup =
        || assert!(Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap().success());
    let wait_for = |needle: &'static str| {
        let log = log.clone();
        async move {
            for _ in 0..100 {
                if std::fs::read_to_string(&log).unwrap_or_default().contains(needle) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{needle:?} never logged: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
    };
    // A broken file: refused, logged with file and line, the old set stays.
    std::fs::write(policies.path().join("zz.cedar"), SYNTAX_ERROR).unwrap();
    hangup();
    wait_for("policy reload refused").await;
    assert!(std::fs::read_to_string(&log).unwrap().contains("zz.cedar:2:"));
    assert_eq!(generation().await, 1);
    assert_eq!(
        call(Method::DELETE, &format!("/context/{id}"), &key, None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Fixed and relaxed: the new set is in force after the signal.
    std::fs::remove_file(policies.path().join("zz.cedar")).unwrap();
    std::fs::remove_file(policies.path().join("agents.cedar")).unwrap();
    hangup();
    wait_for("SIGHUP: policies reloaded").await;
    assert_eq!(generation().await, 2);
    assert_eq!(
        call(Method::DELETE, &format!("/context/{id}"), &key, None).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    server.terminate();
}

#[tokio::test]
async fn the_admin_api_reloads_for_the_operator_only() {
    let policies = policy_dir(&[("agents.cedar", AGENTS_NEVER_DELETE)]);
    let dir = policies.path().to_path_buf();
    let srv = TestServer::start_with(Backend::Sqlite, |c| c.policy_dir = Some(dir)).await.unwrap();
    let listed = srv.admin(Method::GET, "/admin/policies", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let ids: Vec<&str> =
        listed.body["policies"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"agents-never-delete") && ids.contains(&"builtin.reader"), "{ids:?}");
    // A tenant admin is not the platform operator.
    let tenant_admin = srv.agent("tenant-admin", &["admin"]).await;
    srv.call(Method::POST, "/admin/policies/reload", Some(&tenant_admin), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    srv.call(Method::GET, "/admin/policies", Some(&tenant_admin), None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // A schema violation: 422 naming file and line; the old set stays.
    std::fs::write(policies.path().join("typo.cedar"), SCHEMA_ERROR).unwrap();
    let r = srv.admin(Method::POST, "/admin/policies/reload", None).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    assert!(r.body["error"].as_str().unwrap().contains("typo.cedar:3:"), "{}", r.body);
    assert_eq!(srv.admin(Method::GET, "/admin/policies", None).await.body["generation"], 1);
    std::fs::remove_file(policies.path().join("typo.cedar")).unwrap();
    let r = srv.admin(Method::POST, "/admin/policies/reload", None).await;
    assert_eq!((r.status, r.body["generation"].as_u64()), (StatusCode::OK, Some(2)), "{}", r.body);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_of_contexts_written_before_the_labels_column_still_count() {
    const HIDE_X: &str = "@id(\"hide-x\")\nforbid (principal, action, resource is Ctxguard::Context)\n\
        when { resource.labels.contains(\"x\") };\n";
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let policies = policy_dir(&[("hide.cedar", HIDE_X)]);
        let dir = policies.path().to_path_buf();
        let Some(srv) = TestServer::start_with(backend, |c| c.policy_dir = Some(dir)).await else { continue };
        let key = srv.agent("w", &["maintainer"]).await;
        let mut labelled = sample_context();
        labelled["metadata"]["labels"] = json!(["x", 7, "y"]);
        let id = srv.create_context(&key, labelled).await["context_id"].as_str().unwrap().to_string();
        let plain = srv.create_context(&key, sample_context()).await["context_id"].as_str().unwrap().to_string();
        srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "context_not_found");
        // As if written before migration 0005: the column is empty, the body has the labels.
        srv.raw_sql("UPDATE contexts SET labels = NULL").await;
        tokio::time::sleep(Duration::from_millis(600)).await; // the change counters reach the caches
        srv.call(Method::GET, &format!("/context/{id}"), Some(&key), None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "context_not_found");
        let list = srv.call(Method::GET, "/context", Some(&key), None).await;
        let ids: Vec<&str> =
            list.body["items"].as_array().unwrap().iter().map(|i| i["context_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [plain.as_str()], "{backend:?}");
        // A write stores the labels again: labelling the plain context hides it too.
        let r = srv
            .call(Method::PATCH, &format!("/context/{plain}"), Some(&key), Some(json!({"metadata": {"labels": ["x"]}})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        srv.call(Method::GET, &format!("/context/{plain}"), Some(&key), None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "context_not_found");
        srv.stop().await;
    }
}
