//! Test support: boots a real ctxguard (in-process, on an ephemeral port) on SQLite or
//! on PostgreSQL, and gives tests a client and helpers to provision tenants,
//! principals and keys through the admin API.
//!
//! PostgreSQL tests need `CTXGUARD_TEST_DATABASE_URL`; each test gets its own schema.
//! Without the variable they report that they were skipped and why (and fail under
//! CI, where skipping would hide the backend that most needs testing).

use std::sync::Once;

use ctxguard::app::serve::{self as server, RunningServer};
use ctxguard::config::{ConfigOverrides, Settings};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

pub const PG_ENV: &str = "CTXGUARD_TEST_DATABASE_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `backend_tests! { async fn name(srv) { … } }`
/// expands to `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! backend_tests {
    ($(async fn $name:ident($srv:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut)]
                    let Some(mut $srv) = $crate::support::TestServer::start($crate::support::Backend::Sqlite).await else { return };
                    $body
                    $srv.stop().await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut)]
                    let Some(mut $srv) = $crate::support::TestServer::start($crate::support::Backend::Postgres).await else { return };
                    $body
                    $srv.stop().await;
                }
            )*
        }
    };
}

/// Runs `$body` with `$pool` connected straight to a database (of either backend), not
/// through the server: for reading or changing data behind its back.
macro_rules! behind_its_back {
    ($location:expr, |$pool:ident| $body:expr) => {
        match $location {
            ctxguard::store::DatabaseLocation::Sqlite(path) => {
                let $pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                let result = $body;
                $pool.close().await;
                result
            }
            ctxguard::store::DatabaseLocation::Postgres { url, .. } => {
                let $pool = sqlx::PgPool::connect(url).await.unwrap();
                let result = $body;
                $pool.close().await;
                result
            }
        }
    };
}

/// reqwest runs on rustls without a built-in crypto provider (as in the server):
/// install ring once per process before any client is built.
pub fn tls_init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A PostgreSQL schema private to one test, dropped at the end.
pub struct PgSchema {
    pub base_url: String,
    pub name: String,
}

impl PgSchema {
    /// `None` (after saying why) when no test database is configured.
    pub async fn create() -> Option<PgSchema> {
        let Ok(base_url) = std::env::var(PG_ENV) else {
            if std::env::var_os("CI").is_some() {
                panic!("{PG_ENV} must be set in CI: the PostgreSQL tests may not be skipped there");
            }
            static SAY: Once = Once::new();
            // Written to the real stderr (not the captured test output) so that it is
            // seen in a normal `cargo test` run.
            SAY.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTE: PostgreSQL tests skipped: {PG_ENV} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
                );
            });
            return None;
        };
        let pool = sqlx::PgPool::connect(&base_url).await.expect("connect to the test PostgreSQL");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        // Schemas left by crashed runs more than an hour old are removed.
        let stale: Vec<String> =
            sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'ctxg_t_%'")
                .fetch_all(&pool)
                .await
                .unwrap();
        for s in stale {
            let born: u64 = s.split('_').nth(2).and_then(|t| t.parse().ok()).unwrap_or(0);
            if born + 3600 < now {
                let _ =
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {s} CASCADE"))).execute(&pool).await;
            }
        }
        let name = format!("ctxg_t_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&pool).await.unwrap();
        pool.close().await;
        Some(PgSchema { base_url, name })
    }

    pub fn url(&self) -> String {
        let sep = if self.base_url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options[search_path]={}", self.base_url, self.name)
    }

    pub async fn drop_schema(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.base_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)))
                .execute(&pool)
                .await;
            pool.close().await;
        }
    }
}

pub struct TestServer {
    pub url: String,
    /// The Prometheus listener's `/metrics` URL.
    pub metrics_url: String,
    pub admin_key: String,
    pub http: reqwest::Client,
    pub backend: Backend,
    _dir: tempfile::TempDir,
    pub pg: Option<PgSchema>,
    running: Option<RunningServer>,
    settings: Settings,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Option<TestServer> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ConfigOverrides)) -> Option<TestServer> {
        tls_init();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgSchema::create().await?),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut c = ConfigOverrides {
            bind: Some("127.0.0.1:0".into()),
            metrics_bind: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().join("data")),
            database_url: pg.as_ref().map(PgSchema::url),
            db_max_connections: Some(8),
            ..Default::default()
        };
        tweak(&mut c);
        let settings = Settings::resolve(c).expect("test settings");
        let running = server::start(settings.clone()).await.expect("server starts");
        let admin_key = std::fs::read_to_string(dir.path().join("data/admin.key")).unwrap().trim().to_string();
        Some(TestServer {
            url: running.public_url.clone(),
            metrics_url: format!("http://{}/metrics", running.metrics_addr.expect("metrics listener")),
            admin_key,
            http: reqwest::Client::new(),
            backend,
            _dir: dir,
            pg,
            running: Some(running),
            settings,
        })
    }

    /// Stops the server and starts it again on the same data (a new port).
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        let running = server::start(self.settings.clone()).await.expect("server restarts");
        self.url = running.public_url.clone();
        self.metrics_url = format!("http://{}/metrics", running.metrics_addr.expect("metrics listener"));
        self.running = Some(running);
    }

    /// Stops the server and starts it on the same data with changed settings; the
    /// start's error if it refuses (then the server stays stopped).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<()> {
        self.halt().await;
        tweak(&mut self.settings);
        self.resume().await
    }

    /// Stops the server, keeping its data (for work done while it is down).
    pub async fn halt(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    /// Starts a halted server again; the start's error if it refuses.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let running = server::start(self.settings.clone()).await?;
        self.url = running.public_url.clone();
        self.metrics_url = format!("http://{}/metrics", running.metrics_addr.expect("metrics listener"));
        self.running = Some(running);
        Ok(())
    }

    /// The server's data directory (key files, and the SQLite database).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.settings.data_dir.clone()
    }

    /// Another replica on the same database (its own port, caches and change sync).
    pub async fn replica(&self) -> Replica {
        self.replica_with(|_| {}).await
    }

    /// A replica with some settings of its own.
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut Settings)) -> Replica {
        // Replicas are one service: same public URL (issuer and token audience).
        let mut settings = self.settings.clone();
        settings.public_url = Some(self.url.clone());
        tweak(&mut settings);
        let running = server::start(settings).await.expect("replica starts");
        Replica { url: format!("http://{}", running.addr), running }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        if let Some(pg) = &self.pg {
            pg.drop_schema().await;
        }
    }

    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.url, path));
        match key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Sends JSON and returns status, headers and the parsed body (Null if empty).
    pub async fn send(&self, rb: RequestBuilder) -> Reply {
        let res = rb.send().await.expect("request reaches the server");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut rb = self.request(method, path, key);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.admin_key.clone()), body).await
    }

    pub async fn create_tenant(&self, name: &str) -> String {
        let r = self.admin(Method::POST, "/admin/tenants", Some(json!({"name": name}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Creates a principal with `roles` in `tenant` (name or id) and returns its id.
    pub async fn create_principal(&self, tenant: &str, name: &str, roles: &[&str]) -> String {
        let r = self
            .admin(
                Method::POST,
                "/admin/principals",
                Some(json!({"tenant": tenant, "kind": "agent", "name": name, "roles": roles})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    pub async fn api_key(&self, principal: &str, scopes: Option<&[&str]>, expires_in: Option<u64>) -> (String, String) {
        let mut body = json!({"principal": principal});
        if let Some(s) = scopes {
            body["scopes"] = json!(s);
        }
        if let Some(e) = expires_in {
            body["expires_in"] = json!(e);
        }
        let r = self.admin(Method::POST, "/admin/api-keys", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (r.body["id"].as_str().unwrap().to_string(), r.body["key"].as_str().unwrap().to_string())
    }

    /// A principal with `roles` in the default tenant and an unscoped key for it.
    pub async fn agent(&self, name: &str, roles: &[&str]) -> String {
        let id = self.create_principal("default", name, roles).await;
        self.api_key(&id, None, None).await.1
    }

    pub async fn create_context(&self, key: &str, body: Value) -> Value {
        let r = self.call(Method::POST, "/context", Some(key), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body
    }

    /// The stored context as the admin sees it (for "storage unchanged" checks).
    pub async fn stored(&self, id: &str) -> Reply {
        self.admin(Method::GET, &format!("/context/{id}"), None).await
    }
}

/// A second server sharing a [`TestServer`]'s database.
pub struct Replica {
    pub url: String,
    running: RunningServer,
}

impl Replica {
    pub async fn stop(self) {
        self.running.stop().await.unwrap();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and our error body's `code`.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert!(self.body["error"].as_str().is_some_and(|e| !e.is_empty()), "body: {}", self.body);
    }
}

pub fn sample_context() -> Value {
    json!({
        "metadata": {"user_id": "user-123", "topic": "billing"},
        "session": {"history": [
            {"role": "system", "message": "You are a support agent."},
            {"role": "user", "message": "Where is my invoice?"}
        ]}
    })
}

/// OAuth helpers.
impl TestServer {
    /// Posts an `application/x-www-form-urlencoded` body, optionally with HTTP Basic
    /// client authentication.
    pub async fn form(&self, path: &str, params: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let mut rb = self
            .http
            .post(format!("{}{}", self.url, path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((id, secret)) = basic {
            rb = rb.basic_auth(id, Some(secret));
        }
        self.send(rb).await
    }

    /// Registers a client through the admin API and returns (client_id, secret?).
    pub async fn oauth_client(&self, body: Value) -> (String, Option<String>) {
        let r = self.admin(Method::POST, "/admin/clients", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (r.body["client_id"].as_str().unwrap().to_string(), r.body["client_secret"].as_str().map(str::to_string))
    }

    /// A client_credentials client whose service principal holds `roles`.
    pub async fn machine_client(&self, name: &str, roles: &[&str], scopes: Option<&[&str]>) -> (String, String) {
        let mut body = json!({"name": name, "grant_types": ["client_credentials"], "roles": roles});
        if let Some(s) = scopes {
            body["scopes"] = json!(s);
        }
        let (id, secret) = self.oauth_client(body).await;
        (id, secret.expect("confidential"))
    }

    /// A client_credentials access token.
    pub async fn cc_token(&self, id: &str, secret: &str, extra: &[(&str, &str)]) -> Reply {
        let mut params = vec![("grant_type", "client_credentials")];
        params.extend_from_slice(extra);
        self.form("/oauth/token", &params, Some((id, secret))).await
    }

    /// Runs one SQL statement directly on the server's database, behind its back (for
    /// tests of data written by older versions or altered outside the server).
    pub async fn raw_sql(&self, statement: &str) {
        self.try_raw_sql(statement).await.unwrap();
    }

    /// One number from the server's database, read behind its back (row counts).
    pub async fn raw_count(&self, query: &str) -> i64 {
        behind_its_back!(&self.settings.database, |pool| {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query)).fetch_one(&pool).await.unwrap()
        })
    }

    /// One text value from the server's database, read behind its back.
    pub async fn raw_text(&self, query: &str) -> String {
        behind_its_back!(&self.settings.database, |pool| {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(query)).fetch_one(&pool).await.unwrap()
        })
    }

    /// The server's database, opened beside it (as `ctxguard audit verify` opens it).
    pub async fn database(&self) -> std::sync::Arc<dyn ctxguard::store::Database> {
        ctxguard::store::open(&self.settings.database).await.unwrap()
    }

    /// Runs one SQL statement behind the server's back; the database's error if it
    /// refuses (the audit log's triggers).
    pub async fn try_raw_sql(&self, statement: &str) -> Result<(), String> {
        behind_its_back!(&self.settings.database, |pool| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&pool).await.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    /// The server's current signing key, read the way the server reads it (database +
    /// KEK), so tests can sign tokens whose claims are wrong but whose signature is real.
    pub async fn signing_key(&self) -> std::sync::Arc<ctxguard::jwt::SigningKey> {
        let db = ctxguard::store::open(&self.settings.database).await.unwrap();
        let kek = std::sync::Arc::new(ctxguard::crypto::kek::Kek::load_or_create(&self.settings.data_dir).unwrap());
        let ring =
            ctxguard::jwt::Keyring::load(db.clone(), kek, self.settings.signing_alg, ctxguard::jwt::key_retention())
                .await
                .unwrap();
        let key = ring.keys().current.clone();
        db.close().await;
        key
    }
}

/// Every JSON-RPC message of a server-sent event stream, in order, as they arrive;
/// `None` once the stream ended.
pub fn sse_messages(res: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<Option<Value>> {
    let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut res = res;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                if let Some(data) = line.trim().strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                {
                    let _ = tx.send(Some(v));
                }
            }
        }
        let _ = tx.send(None);
    });
    messages
}
