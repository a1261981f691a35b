//! The real binary: first start, restart, graceful shutdown, secret file permissions,
//! configuration errors, the local CLI, and what reaches the logs.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{PgSchema, sample_context};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ctxguard");

/// A `ctxguard serve` child process with its stderr captured to a file.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) url: String,
    log: std::path::PathBuf,
}

/// `ctxguard <args…> --data-dir <data> [--database-url …]`.
fn command(data: &Path, db_url: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).args(args).arg("--data-dir").arg(data);
    if let Some(url) = db_url {
        cmd.arg("--database-url").arg(url);
    }
    cmd
}

/// Runs a command on the data dir; it must succeed; its stdout as JSON (null if none).
fn cli(data: &Path, args: &[&str]) -> Value {
    let out = command(data, None, args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
}

fn serve(data: &Path, db_url: Option<&str>, log: &Path) -> Proc {
    serve_with(data, db_url, log, &[])
}

pub(crate) fn serve_with(data: &Path, db_url: Option<&str>, log: &Path, extra: &[&str]) -> Proc {
    crate::support::tls_init();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["serve", "--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra);
    if let Some(url) = db_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ctxguard listening on ")
        .unwrap_or_else(|| {
            panic!("unexpected first line {line:?}; log: {}", std::fs::read_to_string(log).unwrap_or_default())
        })
        .to_string();
    Proc { child, url, log: log.to_path_buf() }
}

/// A test that fails midway must not leave a server running.
impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    /// SIGTERM, then the process must exit 0 on its own (graceful shutdown).
    pub(crate) fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.log).unwrap()
    }
}

async fn restart_keeps_data_and_keys(db_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let p = serve(&data, db_url, &log);
    let startup = std::fs::read_to_string(&log).unwrap();
    assert!(startup.contains("admin.key"), "first start announces the key file: {startup}");
    let admin_key = std::fs::read_to_string(data.join("admin.key")).unwrap().trim().to_string();
    assert!(!startup.contains(&admin_key), "the key itself was printed");
    assert_eq!(std::fs::metadata(data.join("admin.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);

    let http = reqwest::Client::new();
    let p_body: Value = http
        .post(format!("{}/admin/principals", p.url))
        .bearer_auth(&admin_key)
        .json(&json!({"kind": "agent", "name": "a", "roles": ["writer"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k: Value = http
        .post(format!("{}/admin/api-keys", p.url))
        .bearer_auth(&admin_key)
        .json(&json!({"principal": p_body["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = k["key"].as_str().unwrap().to_string();
    let created =
        http.post(format!("{}/context", p.url)).bearer_auth(&key).json(&sample_context()).send().await.unwrap();
    let request_id = created.headers()["x-request-id"].to_str().unwrap().to_string();
    let created: Value = created.json().await.unwrap();
    let _ =
        http.get(format!("{}/context", p.url)).header("authorization", format!("Bearer {key}x")).send().await.unwrap();
    let logs = p.terminate();

    assert!(logs.contains(&request_id), "logs carry request ids");
    // The access line of that request: one JSON object with its id, method, path and status.
    let access: Value = logs
        .lines()
        .filter(|l| l.contains("ctxguard::access") && l.contains(&request_id))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .next()
        .unwrap_or_else(|| panic!("no access line for {request_id}: {logs}"));
    assert_eq!(
        (&access["span"]["method"], &access["span"]["path"], &access["fields"]["status"]),
        (&json!("POST"), &json!("/context"), &json!(201)),
        "{access}"
    );
    assert!(logs.contains("shut down cleanly"), "{logs}");
    for secret in [&key, &admin_key] {
        assert!(!logs.contains(secret.as_str()), "a key reached the logs");
        assert!(!logs.contains(&secret[5..20]), "part of a key reached the logs");
    }
    if db_url.is_none() {
        // A clean close checkpoints and removes the WAL.
        assert!(
            !data.join("ctxguard.db-wal").exists()
                || std::fs::metadata(data.join("ctxguard.db-wal")).unwrap().len() == 0
        );
    }

    let p = serve(&data, db_url, &dir.path().join("serve2.log"));
    let r = http
        .get(format!("{}/context/{}", p.url, created["context_id"].as_str().unwrap()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), created);
    let r = http.get(format!("{}/admin/tenants", p.url)).bearer_auth(&admin_key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        std::fs::read_to_string(data.join("admin.key")).unwrap().trim(),
        admin_key,
        "the admin key is created once"
    );
    p.terminate();
}

#[tokio::test]
async fn sqlite_restart_keeps_data_and_keys() {
    restart_keeps_data_and_keys(None).await;
}

#[tokio::test]
async fn postgres_restart_keeps_data_and_keys() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    restart_keeps_data_and_keys(Some(&schema.url())).await;
    schema.drop_schema().await;
}

#[test]
fn readable_secret_file_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = command(&data, None, &["init"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(data.join("admin.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .args(["serve", "--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to start") && err.contains("admin.key") && err.contains("chmod 600"), "{err}");

    std::fs::set_permissions(data.join("admin.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = command(&data, None, &["config", "check"]).output().unwrap();
    assert!(out.status.success(), "config check does not open the data dir");
    let out = command(&data, None, &["init"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 700"));
}

#[test]
fn configuration_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ctxguard.toml");
    std::fs::write(&cfg, "bind = \"127.0.0.1:0\"\nmax_bodybytes = 5\n").unwrap();
    let out = Command::new(BIN).env_clear().arg("config").arg("check").arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_bodybytes"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = Command::new(BIN).env_clear().env("CTXGUARD_BIDN", "x").args(["config", "check"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CTXGUARD_BIDN"));

    std::fs::write(&cfg, "bind = \"127.0.0.1:0\"\nmax_history = 5\n").unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("CTXGUARD_MAX_JSON_DEPTH", "0")
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_json_depth"), "env overrides the file and is validated");
    let out = Command::new(BIN).env_clear().args(["config", "check", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn cli_administers_the_local_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| cli(&data, args);
    let init = command(&data, None, &["init"]).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    assert!(String::from_utf8_lossy(&init.stderr).contains("is ready"), "{}", String::from_utf8_lossy(&init.stderr));
    assert!(data.join("admin.key").exists(), "init wrote the admin key");
    let t = run(&["tenant", "create", "acme"]);
    assert_eq!(t["name"], "acme");
    let tenants = run(&["tenant", "list"]);
    assert_eq!(tenants.as_array().unwrap().len(), 2);
    run(&["principal", "create", "--tenant", "acme", "--name", "bot", "--role", "writer"]);
    let issued = run(&[
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--principal",
        "bot",
        "--scope",
        "context:read",
        "--scope",
        "context:write",
    ]);
    let key = issued["key"].as_str().unwrap().to_string();
    let listed = run(&["apikey", "list", "--tenant", "acme", "--principal", "bot"]);
    assert_eq!(listed[0]["id"], issued["id"]);
    assert!(!listed.to_string().contains(&key));

    let p = serve(&data, None, &dir.path().join("log"));
    let http = reqwest::Client::new();
    let r = http.post(format!("{}/context", p.url)).bearer_auth(&key).json(&sample_context()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = issued["id"].as_str().unwrap();
    run(&["apikey", "revoke", id]);
    let r = http.get(format!("{}/context", p.url)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked from the CLI while serving");
    p.terminate();
}

#[tokio::test]
async fn cli_users_clients_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run_with_stdin = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = command(&data, None, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    let run = |args: &[&str]| run_with_stdin(args, "");
    run(&["init"]);
    assert!(data.join("kek.key").exists(), "init creates the key-encryption key");
    assert_eq!(std::fs::metadata(data.join("kek.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let keys = run(&["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1, "init creates the first signing key: {keys}");
    let user = run_with_stdin(&["user", "add", "frank", "--role", "reader"], "first password 123\n");
    assert_eq!(user["kind"], "user");
    run_with_stdin(&["user", "passwd", "frank"], "second password 456\n");
    let client = run(&[
        "client",
        "create",
        "--name",
        "batch",
        "--grant",
        "client_credentials",
        "--role",
        "writer",
        "--scope",
        "context:write",
    ]);
    let (id, secret) =
        (client["client_id"].as_str().unwrap().to_string(), client["client_secret"].as_str().unwrap().to_string());
    assert_eq!(run(&["client", "list"]).as_array().unwrap().len(), 1);
    run(&["keys", "rotate", "--alg", "ES256"]);
    let keys = run(&["keys", "list"]);
    let statuses: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["previous", "current"]);
    // The offline rotation is recorded like the API's, as the operator on the command line.
    let db = ctxguard::store::open(&ctxguard::store::DatabaseLocation::sqlite_in(&data)).await.unwrap();
    let records = db.audit_records(1, 10_000).await.unwrap();
    assert!(
        records.iter().any(|r| r.action == "keys.rotate" && r.channel == "cli" && r.decision == "allow"),
        "{records:#?}"
    );
    db.close().await;

    let p = serve(&data, None, &dir.path().join("log"));
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/oauth/token", p.url))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = token["access_token"].as_str().expect("token");
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, at.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256", "the rotated key signs");
    let r = http.post(format!("{}/context", p.url)).bearer_auth(at).json(&sample_context()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // `user passwd` took effect: the old password is refused at the login page, the
    // new one accepted; after `user disable`, the new one is refused too.
    let login = |password: &'static str| {
        let url = p.url.clone();
        async move { sign_in_status(&url, "frank", password).await }
    };
    assert_eq!(login("first password 123").await, StatusCode::UNAUTHORIZED, "the old password still works");
    assert_eq!(login("second password 456").await, StatusCode::SEE_OTHER, "the new password is refused");
    run(&["user", "disable", "frank"]);
    assert_eq!(login("second password 456").await, StatusCode::UNAUTHORIZED, "a disabled user signed in");
    run(&["client", "delete", &id]);
    let r = http.get(format!("{}/context", p.url)).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "deleting the client revoked its tokens");
    p.terminate();
}

/// The status of a sign-in at the login page of `base` (303: signed in, 401: refused),
/// through a public client registered for it.
async fn sign_in_status(base: &str, user: &str, password: &str) -> StatusCode {
    use crate::oauth_flow::{Browser, authorize_query, hidden, pkce};
    let reg: Value = reqwest::Client::new()
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none",
                      "application_type": "native", "client_name": "cli check"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = reg["client_id"].as_str().expect("registered").to_string();
    let (_, challenge) = pkce();
    let query = authorize_query(&client, "http://127.0.0.1/callback", &challenge, "context:read", "s");
    let mut b = Browser::new();
    let page = b.get(&format!("{base}/oauth/authorize?{query}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let r = b
        .post(
            &format!("{base}/oauth/login"),
            &[
                ("csrf", &hidden(&page.body, "csrf")),
                ("request", &hidden(&page.body, "request")),
                ("username", user),
                ("password", password),
            ],
        )
        .await;
    r.status
}

/// `ctxguard mcp-stdio`: the tools over stdin/stdout for the principal of
/// CTXGUARD_API_KEY, including resource-update notifications.
#[tokio::test]
async fn mcp_over_stdio() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(command(&data, None, &["init"]).output().unwrap().status.success());
    let out = command(&data, None, &["principal", "create", "--name", "local", "--role", "writer"]).output().unwrap();
    assert!(out.status.success());
    let out = command(&data, None, &["apikey", "create", "--principal", "local"]).output().unwrap();
    let key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["key"].as_str().unwrap().to_string();

    let refused = command(&data, None, &["mcp-stdio"])
        .env("CTXGUARD_API_KEY", "ctxg_wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("CTXGUARD_API_KEY refused"));

    let mut child = command(&data, None, &["mcp-stdio", "--log", "warn"])
        .env("CTXGUARD_API_KEY", &key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    fn next(lines: &mut impl Iterator<Item = std::io::Result<String>>, id: i64) -> Value {
        loop {
            let v: Value = serde_json::from_str(&lines.next().expect("a reply").unwrap()).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}),
    );
    assert_eq!(next(&mut lines, 1)["result"]["capabilities"]["resources"]["subscribe"], true);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "context_create", "arguments": {"session": {"history": [{"role": "user", "message": "hi"}]}}}}),
    );
    let created = next(&mut lines, 2);
    let id = created["result"]["structuredContent"]["context_id"].as_str().expect("created").to_string();
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": {"uri": format!("context://{id}")}}),
    );
    assert!(next(&mut lines, 3)["result"].is_object());
    send(
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "context_append", "arguments": {"context_id": id, "messages": [{"role": "assistant", "message": "hello"}]}}}),
    );
    let mut saw_update = false;
    let mut saw_reply = false;
    while !(saw_update && saw_reply) {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if v["method"] == "notifications/resources/updated" {
            assert_eq!(v["params"]["uri"], format!("context://{id}"));
            saw_update = true;
        }
        if v["id"] == 4 {
            assert_eq!(v["result"]["structuredContent"]["version"], 2);
            saw_reply = true;
        }
    }
    send(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "context_delete", "arguments": {"context_id": id}}}),
    );
    let denied = next(&mut lines, 5);
    assert_eq!(denied["result"]["isError"], true, "a writer may not delete: {denied}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// `ctxguard anomaly list|lift-suspension|lift-lockout` on the local database
/// (docs/anomaly.md): what a suspension and a lockout look like, and lifting both.
#[tokio::test]
async fn cli_lists_and_lifts_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| cli(&data, args);
    run(&["init"]);
    let bot = run(&["principal", "create", "--name", "bot", "--role", "writer"]);
    let id: ctxguard::domain::PrincipalId = bot["id"].as_str().unwrap().parse().unwrap();
    let db = ctxguard::store::open(&ctxguard::store::DatabaseLocation::sqlite_in(&data)).await.unwrap();
    let now = ctxguard::domain::Timestamp::now();
    assert!(db.suspend_principal(id, now, "a test flood").await.unwrap());
    let subject = ctxguard::domain::anomaly::Subject::Source("203.0.113.7".parse().unwrap());
    db.put_lockout(&ctxguard::domain::anomaly::Lockout {
        subject,
        tenant: None,
        since: now,
        until: now.plus_secs(600),
        strikes: 1,
        reason: "a test lockout".into(),
    })
    .await
    .unwrap();

    let listed = run(&["anomaly", "list"]);
    assert_eq!(listed["suspensions"][0]["name"], "agent:bot", "{listed}");
    assert_eq!(listed["suspensions"][0]["reason"], "a test flood");
    assert_eq!(listed["lockouts"][0]["subject"], "ip:203.0.113.7");
    run(&["anomaly", "lift-suspension", "bot"]);
    run(&["anomaly", "lift-lockout", "ip:203.0.113.7"]);
    assert_eq!(run(&["anomaly", "list"]), serde_json::json!({"lockouts": [], "suspensions": []}));
    let refused = command(&data, None, &["anomaly", "lift-lockout", "ip:203.0.113.7"]).output().unwrap();
    assert!(!refused.status.success(), "nothing left to lift");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Both lifts are in the audit log, as the operator on the command line.
    let records = db.audit_records(1, 10_000).await.unwrap();
    let lifts: Vec<_> = records.iter().filter(|r| r.action == "anomaly.lift" && r.decision == "allow").collect();
    assert_eq!(lifts.len(), 2, "{records:#?}");
    assert!(lifts.iter().all(|r| r.channel == "cli"));
    db.close().await;
}
