//! Configuration: `ctxguard.toml`, overridden by `CTXGUARD_*` environment variables,
//! overridden by command-line flags — validated once into [`Settings`].
//!
//! One struct, [`ConfigOverrides`], is both the TOML schema (unknown keys are refused
//! by name) and the clap flag/env set, so the three sources cannot drift apart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::anomaly::AnomalySettings;
use crate::anomaly::webhook::WebhookSettings;
use crate::audit::AuditSettings;
use crate::audit::checkpoint::CheckpointPolicy;
use crate::authn::external::ExternalIssuerConfig;
use crate::crypto::Secret;
use crate::http::rate_limit::{ClassQuota, RateLimitSettings, RouteClass};
use crate::jwt::{KeyAlg, MAX_ACCESS_TOKEN_TTL_SECS};
pub use crate::oauth::RegistrationMode;
use crate::store::DatabaseLocation;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// Every setting; all optional here, defaults applied in [`Settings::resolve`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverrides {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "CTXGUARD_BIND")]
    pub bind: Option<String>,
    /// Address of the Prometheus listener (`/metrics` only; default 127.0.0.1:9464, a
    /// loopback address kept off the public listener), or "off".
    #[arg(long, env = "CTXGUARD_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Base URL used in metadata, audiences, Location headers and challenges
    /// (default http://<bind address>).
    #[arg(long, env = "CTXGUARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory for the SQLite database and secret files (default ./ctxguard-data).
    #[arg(long, env = "CTXGUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of the embedded SQLite.
    #[arg(long, env = "CTXGUARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL connection pool size (default 16).
    #[arg(long, env = "CTXGUARD_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Largest accepted request body in bytes (default 1048576).
    #[arg(long, env = "CTXGUARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Deepest accepted JSON nesting (default 64).
    #[arg(long, env = "CTXGUARD_MAX_JSON_DEPTH")]
    pub max_json_depth: Option<usize>,
    /// Most messages in one context's history (default 10000).
    #[arg(long, env = "CTXGUARD_MAX_HISTORY")]
    pub max_history: Option<usize>,
    /// Largest serialized size of one context, metadata and history (default 4194304).
    #[arg(long, env = "CTXGUARD_MAX_CONTEXT_BYTES")]
    pub max_context_bytes: Option<usize>,
    /// Longest message text in bytes (default 262144).
    #[arg(long, env = "CTXGUARD_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Seconds between expiry sweeps (default 60).
    #[arg(long, env = "CTXGUARD_SWEEP_INTERVAL_SECS")]
    pub sweep_interval_secs: Option<u64>,
    /// Seconds an expired context is kept (never served) before the sweeper deletes it
    /// (default 3600).
    #[arg(long, env = "CTXGUARD_EXPIRY_GRACE_SECS")]
    pub expiry_grace_secs: Option<u64>,
    /// Seconds before a request is abandoned with 408 (default 30).
    #[arg(long, env = "CTXGUARD_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Log format: json (default) or text.
    #[arg(long, env = "CTXGUARD_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. "info" or "ctxguard=debug,sqlx=warn" (default info).
    #[arg(long, env = "CTXGUARD_LOG")]
    pub log: Option<String>,
    /// Access token lifetime in seconds (default 300, at most 3600).
    #[arg(long, env = "CTXGUARD_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// Refresh token lifetime in seconds (default 2592000, 30 days).
    #[arg(long, env = "CTXGUARD_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,
    /// Algorithm of newly created signing keys: EdDSA (default) or ES256.
    #[arg(long, env = "CTXGUARD_SIGNING_ALG")]
    pub signing_alg: Option<KeyAlg>,
    /// Dynamic client registration at /oauth/register: open (default), token, disabled.
    #[arg(long, env = "CTXGUARD_REGISTRATION")]
    pub registration: Option<RegistrationMode>,
    /// The initial access token required when registration = "token" (RFC 7591 §3).
    #[arg(long, env = "CTXGUARD_REGISTRATION_TOKEN", hide_env_values = true)]
    pub registration_token: Option<String>,
    /// Tenant that dynamically registered clients belong to (default "default").
    #[arg(long, env = "CTXGUARD_REGISTRATION_TENANT")]
    pub registration_tenant: Option<String>,
    /// Accept client ID metadata documents over http on loopback addresses. For tests
    /// only: in production client_id URLs must be https and public.
    #[arg(long, env = "CTXGUARD_CLIENT_METADATA_ALLOW_LOOPBACK")]
    pub client_metadata_allow_loopback: Option<bool>,
    /// Memory for cached context heads in MiB; 0 turns the context cache off (default 64).
    #[arg(long, env = "CTXGUARD_CONTEXT_CACHE_MB")]
    pub context_cache_mb: Option<u64>,
    /// Most verified credentials remembered; 0 turns the credential cache off
    /// (default 100000).
    #[arg(long, env = "CTXGUARD_CREDENTIAL_CACHE_ENTRIES")]
    pub credential_cache_entries: Option<u64>,
    /// Directory of custom Cedar policies (*.cedar), added to the built-in role
    /// policies; validated at start, reloaded on SIGHUP or POST /admin/policies/reload.
    #[arg(long, env = "CTXGUARD_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Authorization decisions remembered by their complete input; 0 turns the memo off
    /// (default 100000).
    #[arg(long, env = "CTXGUARD_DECISION_CACHE_ENTRIES")]
    pub decision_cache_entries: Option<u64>,
    /// Longest actor chain token exchange may build (default 3; 0 disables exchange).
    #[arg(long, env = "CTXGUARD_MAX_DELEGATION_DEPTH")]
    pub max_delegation_depth: Option<usize>,
    /// Answer plain stateless MCP 2026-07-28 calls (tools/call, tools/list,
    /// resources/read, server/discover) directly instead of through the MCP SDK's
    /// per-request machinery (default true; the answers are the same).
    #[arg(long, env = "CTXGUARD_MCP_FAST_PATH")]
    pub mcp_fast_path: Option<bool>,
    /// Accept unsigned inline contexts at `POST /context/verify` (answered
    /// `signed: false`; default false: only contexts ctxguard sealed or signed).
    #[arg(long, env = "CTXGUARD_INLINE_ALLOW_UNSIGNED")]
    pub inline_allow_unsigned: Option<bool>,
    /// Record every authentication failure, operation, token event and admin action in
    /// the hash-chained audit log (default true; docs/audit.md).
    #[arg(long, env = "CTXGUARD_AUDIT")]
    pub audit: Option<bool>,
    /// Audit records waiting for the writer before requests wait for room (default 8192).
    #[arg(long, env = "CTXGUARD_AUDIT_QUEUE")]
    pub audit_queue: Option<usize>,
    /// Refuse a read (503) when its audit record cannot be committed, as writes always
    /// are; reads then wait for the commit (default false: a read's record is queued).
    #[arg(long, env = "CTXGUARD_AUDIT_FAIL_CLOSED_READS")]
    pub audit_fail_closed_reads: Option<bool>,
    /// Sign a checkpoint of the audit chain after this many records (default 1000)...
    #[arg(long, env = "CTXGUARD_AUDIT_CHECKPOINT_RECORDS")]
    pub audit_checkpoint_records: Option<u64>,
    /// ...or this many seconds after the first record it does not cover (default 60).
    #[arg(long, env = "CTXGUARD_AUDIT_CHECKPOINT_SECS")]
    pub audit_checkpoint_secs: Option<u64>,
    /// Failed authentications from one address within `anomaly_auth_window_secs` that
    /// lock the address out (default 30; 0 turns the rule off; docs/anomaly.md).
    #[arg(long, env = "CTXGUARD_ANOMALY_AUTH_FAILURES_PER_SOURCE")]
    pub anomaly_auth_failures_per_source: Option<u64>,
    /// Failed sign-ins or client authentications as one principal that lock it out
    /// (default 10; 0 turns the rule off).
    #[arg(long, env = "CTXGUARD_ANOMALY_AUTH_FAILURES_PER_PRINCIPAL")]
    pub anomaly_auth_failures_per_principal: Option<u64>,
    /// The window both failed-authentication rules count in (default 300).
    #[arg(long, env = "CTXGUARD_ANOMALY_AUTH_WINDOW_SECS")]
    pub anomaly_auth_window_secs: Option<u64>,
    /// The first lockout's length; each consecutive one doubles (default 60).
    #[arg(long, env = "CTXGUARD_ANOMALY_LOCKOUT_SECS")]
    pub anomaly_lockout_secs: Option<u64>,
    /// The longest lockout (default 3600).
    #[arg(long, env = "CTXGUARD_ANOMALY_LOCKOUT_MAX_SECS")]
    pub anomaly_lockout_max_secs: Option<u64>,
    /// Context writes by one principal within `anomaly_writes_window_secs` that suspend
    /// it (default 1200; 0 turns the rule off).
    #[arg(long, env = "CTXGUARD_ANOMALY_WRITES_PER_PRINCIPAL")]
    pub anomaly_writes_per_principal: Option<u64>,
    /// The window the write rule counts in (default 60).
    #[arg(long, env = "CTXGUARD_ANOMALY_WRITES_WINDOW_SECS")]
    pub anomaly_writes_window_secs: Option<u64>,
    /// Suspend the principal (revoke its tokens, refuse its API keys) when the write
    /// rule fires or a refresh token is replayed; false: record and notify only
    /// (default true).
    #[arg(long, env = "CTXGUARD_ANOMALY_AUTO_REVOKE")]
    pub anomaly_auto_revoke: Option<bool>,
    /// Whether a replayed refresh token suspends its principal, beyond revoking its
    /// family (default true).
    #[arg(long, env = "CTXGUARD_ANOMALY_REFRESH_REPLAY_SUSPENDS")]
    pub anomaly_refresh_replay_suspends: Option<bool>,
    /// Where anomaly responses are POSTed (https, or http to a loopback address).
    #[arg(long, env = "CTXGUARD_ANOMALY_WEBHOOK_URL")]
    pub anomaly_webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the webhook's signature (at least 32 characters).
    #[arg(long, env = "CTXGUARD_ANOMALY_WEBHOOK_SECRET", hide_env_values = true)]
    pub anomaly_webhook_secret: Option<String>,
    /// Requests per minute to the context read routes, per address/per principal, as
    /// "IP/PRINCIPAL" (default "60000/30000"; 0 is unlimited; docs/anomaly.md).
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_READ")]
    pub rate_limit_read: Option<String>,
    /// Context writes per minute, "IP/PRINCIPAL" (default "30000/3000").
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_WRITE")]
    pub rate_limit_write: Option<String>,
    /// `/mcp` requests per minute, "IP/PRINCIPAL" (default "60000/30000").
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_MCP")]
    pub rate_limit_mcp: Option<String>,
    /// Token, revocation, introspection and registration requests per minute per
    /// address (default "600/0").
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_TOKEN")]
    pub rate_limit_token: Option<String>,
    /// Sign-in and consent pages per minute per address (default "120/0").
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_LOGIN")]
    pub rate_limit_login: Option<String>,
    /// Admin API requests per minute, "IP/PRINCIPAL" (default "6000/3000").
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_ADMIN")]
    pub rate_limit_admin: Option<String>,
    /// Everything else (metadata, JWKS, OpenAPI) per minute per address (default
    /// "6000/0"). `/healthz` and `/readyz` are never limited.
    #[arg(long, env = "CTXGUARD_RATE_LIMIT_OTHER")]
    pub rate_limit_other: Option<String>,
    /// Trusted external token issuers (config file only: `[[external_issuers]]`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_issuers: Option<Vec<ExternalIssuerConfig>>,
    /// Tenants (by name) whose versions are signed with HMAC-SHA256 under a key of their
    /// own instead of the key ring's EdDSA key (comma-separated in the variable;
    /// docs/integrity.md "HMAC signatures").
    #[arg(long, env = "CTXGUARD_HMAC_TENANTS", value_delimiter = ',')]
    pub hmac_tenants: Option<Vec<String>>,
    /// Other systems whose sealed inline contexts `POST /context/verify` accepts (config
    /// file only: `[[inline_issuers]]` with `issuer` and `jwks_file`; docs/integrity.md).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_issuers: Option<Vec<InlineIssuer>>,
    /// Values stored encrypted, as JSON pointers into a context: `/metadata/…` or
    /// `/session/history/*/…` (comma-separated in the variable; docs/encryption.md).
    #[arg(long, env = "CTXGUARD_ENCRYPT_POINTERS", value_delimiter = ',')]
    pub encrypt_pointers: Option<Vec<String>>,
    /// Pointers encrypted for one tenant besides the global ones (config file only:
    /// `[[tenant_encryption]]` with `tenant` (its name) and `pointers`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_encryption: Option<Vec<TenantEncryption>>,
}

/// A trusted issuer of sealed inline contexts (`[[inline_issuers]]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InlineIssuer {
    /// The `iss` its sealed contexts carry, exactly.
    pub issuer: String,
    /// Its public keys, a JWKS (RFC 7517) file; each key with `kid` and `alg`.
    pub jwks_file: PathBuf,
}

/// One tenant's own encrypted pointers (`[[tenant_encryption]]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantEncryption {
    /// The tenant's name.
    pub tenant: String,
    pub pointers: Vec<String>,
}

/// Which values are stored encrypted: validated pointers, tenants still by name (the
/// database knows their ids; `App::open` resolves them).
#[derive(Clone, Debug, Default)]
pub struct EncryptionSettings {
    pub global: Vec<crate::crypto::at_rest::FieldPointer>,
    pub tenants: Vec<(String, Vec<crate::crypto::at_rest::FieldPointer>)>,
}

/// Environment variables read outside [`ConfigOverrides`]; anything else starting with
/// `CTXGUARD_` is a typo and refused.
const OTHER_ENV: &[&str] = &["CTXGUARD_CONFIG", "CTXGUARD_API_KEY", crate::crypto::kek::KEK_ENV];
const TEST_ENV_PREFIX: &str = "CTXGUARD_TEST_";

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    /// Where `/metrics` is served (`None`: nowhere).
    pub metrics_bind: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub database: DatabaseLocation,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_history: usize,
    pub max_context_bytes: usize,
    pub max_message_bytes: usize,
    pub sweep_interval: Duration,
    pub expiry_grace: Duration,
    pub request_timeout: Duration,
    pub log_format: LogFormat,
    pub log: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub signing_alg: KeyAlg,
    pub registration: RegistrationMode,
    pub registration_token: Option<String>,
    pub registration_tenant: String,
    pub client_metadata_allow_loopback: bool,
    pub external_issuers: Vec<ExternalIssuerConfig>,
    /// Bytes of context bodies the context cache may hold (0: no cache).
    pub context_cache_bytes: u64,
    pub credential_cache_entries: u64,
    pub policy_dir: Option<PathBuf>,
    pub decision_cache_entries: u64,
    pub max_delegation_depth: usize,
    pub mcp_fast_path: bool,
    pub inline_allow_unsigned: bool,
    pub inline_issuers: Vec<InlineIssuer>,
    pub hmac_tenants: Vec<String>,
    pub encryption: EncryptionSettings,
    pub audit: AuditSettings,
    pub anomaly: AnomalySettings,
    pub rate_limits: RateLimitSettings,
}

impl ConfigOverrides {
    /// Overlays `self` (flags and env) on `base` (the file): set fields win.
    pub fn over(&self, base: ConfigOverrides) -> anyhow::Result<ConfigOverrides> {
        let mut merged = serde_json::to_value(base)?;
        let top = serde_json::to_value(self)?;
        if let (Some(m), Some(t)) = (merged.as_object_mut(), top.as_object()) {
            for (k, v) in t {
                if !v.is_null() {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(serde_json::from_value(merged)?)
    }
}

/// Reads a config file; a missing default file is not an error, a missing explicit one is.
pub fn load_file(path: Option<&Path>) -> anyhow::Result<ConfigOverrides> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("ctxguard.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(ConfigOverrides::default());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()));
        }
    };
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))
}

/// Refuses `CTXGUARD_*` variables that configure nothing (usually a typo).
pub fn check_env() -> anyhow::Result<()> {
    let cmd = ConfigOverrides::augment_args(clap::Command::new("ctxguard"));
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env().and_then(|e| e.to_str()).map(str::to_string))
        .chain(OTHER_ENV.iter().map(|s| s.to_string()))
        .collect();
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CTXGUARD_") && !name.starts_with(TEST_ENV_PREFIX) && !known.iter().any(|k| k == name) {
            bail!("unknown environment variable {name}; ctxguard reads {}", known.join(", "));
        }
    }
    Ok(())
}

impl Settings {
    pub fn resolve(c: ConfigOverrides) -> anyhow::Result<Settings> {
        let anomaly = anomaly_settings(&c)?;
        let rate_limits = rate_limit_settings(&c)?;
        let encryption = encryption_settings(&c)?;
        let bind_text = c.bind.unwrap_or_else(|| "127.0.0.1:8700".into());
        let bind: SocketAddr = bind_text
            .parse()
            .map_err(|_| anyhow::anyhow!("bind: {bind_text:?} is not an address like 127.0.0.1:8700"))?;
        let metrics_text = c.metrics_bind.unwrap_or_else(|| "127.0.0.1:9464".into());
        let metrics_bind = match metrics_text.as_str() {
            "off" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                anyhow::anyhow!("metrics_bind: {text:?} is not an address like 127.0.0.1:9464 (or \"off\")")
            })?),
        };
        let public_url = c
            .public_url
            .map(|u| {
                let u = u.trim_end_matches('/').to_string();
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(['?', '#']) {
                    bail!("public_url: {u:?} must be an http(s) URL without query or fragment");
                }
                Ok(u)
            })
            .transpose()?;
        let data_dir = c.data_dir.unwrap_or_else(|| PathBuf::from("ctxguard-data"));
        let database = match c.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseLocation::Postgres {
                    url,
                    max_connections: in_range("db_max_connections", c.db_max_connections.unwrap_or(16), 1, 1000)?,
                }
            }
            Some(_) => bail!("database_url: must start with postgres:// or postgresql://"),
            None => DatabaseLocation::sqlite_in(&data_dir),
        };
        Ok(Settings {
            bind,
            metrics_bind,
            public_url,
            data_dir,
            database,
            max_body_bytes: in_range("max_body_bytes", c.max_body_bytes.unwrap_or(1 << 20), 1024, 64 << 20)?,
            max_json_depth: in_range("max_json_depth", c.max_json_depth.unwrap_or(64), 2, 512)?,
            max_history: in_range("max_history", c.max_history.unwrap_or(10_000), 1, 1_000_000)?,
            max_context_bytes: in_range("max_context_bytes", c.max_context_bytes.unwrap_or(4 << 20), 1024, 1 << 30)?,
            max_message_bytes: in_range("max_message_bytes", c.max_message_bytes.unwrap_or(256 << 10), 1, 64 << 20)?,
            sweep_interval: Duration::from_secs(in_range(
                "sweep_interval_secs",
                c.sweep_interval_secs.unwrap_or(60),
                1,
                86_400,
            )?),
            expiry_grace: Duration::from_secs(in_range(
                "expiry_grace_secs",
                c.expiry_grace_secs.unwrap_or(3600),
                0,
                30 * 86_400,
            )?),
            request_timeout: Duration::from_secs(in_range(
                "request_timeout_secs",
                c.request_timeout_secs.unwrap_or(30),
                1,
                3600,
            )?),
            log_format: c.log_format.unwrap_or(LogFormat::Json),
            log: c.log.unwrap_or_else(|| "info".into()),
            access_token_ttl: Duration::from_secs(in_range(
                "access_token_ttl_secs",
                c.access_token_ttl_secs.unwrap_or(300),
                10,
                MAX_ACCESS_TOKEN_TTL_SECS,
            )?),
            refresh_token_ttl: Duration::from_secs(in_range(
                "refresh_token_ttl_secs",
                c.refresh_token_ttl_secs.unwrap_or(30 * 86_400),
                60,
                365 * 86_400,
            )?),
            signing_alg: c.signing_alg.unwrap_or(KeyAlg::EdDsa),
            registration: match (c.registration.unwrap_or(RegistrationMode::Open), &c.registration_token) {
                (RegistrationMode::Token, None) => {
                    bail!("registration: \"token\" needs registration_token (CTXGUARD_REGISTRATION_TOKEN)")
                }
                (RegistrationMode::Token, Some(t)) if t.len() < 32 => {
                    bail!("registration_token: must be at least 32 characters")
                }
                (mode, _) => mode,
            },
            registration_token: c.registration_token,
            registration_tenant: c.registration_tenant.unwrap_or_else(|| "default".into()),
            client_metadata_allow_loopback: c.client_metadata_allow_loopback.unwrap_or(false),
            external_issuers: c.external_issuers.unwrap_or_default(),
            context_cache_bytes: in_range("context_cache_mb", c.context_cache_mb.unwrap_or(64), 0, 64 * 1024)? << 20,
            credential_cache_entries: in_range(
                "credential_cache_entries",
                c.credential_cache_entries.unwrap_or(100_000),
                0,
                100_000_000,
            )?,
            policy_dir: c.policy_dir,
            decision_cache_entries: in_range(
                "decision_cache_entries",
                c.decision_cache_entries.unwrap_or(crate::authz::DEFAULT_MEMO_ENTRIES),
                0,
                100_000_000,
            )?,
            max_delegation_depth: in_range("max_delegation_depth", c.max_delegation_depth.unwrap_or(3), 0, 16)?,
            mcp_fast_path: c.mcp_fast_path.unwrap_or(true),
            inline_allow_unsigned: c.inline_allow_unsigned.unwrap_or(false),
            inline_issuers: c.inline_issuers.clone().unwrap_or_default(),
            hmac_tenants: c
                .hmac_tenants
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.trim().to_string())
                .collect(),
            encryption,
            audit: AuditSettings {
                enabled: c.audit.unwrap_or(true),
                queue: c.audit_queue.unwrap_or(8192).max(1),
                fail_closed_reads: c.audit_fail_closed_reads.unwrap_or(false),
                checkpoints: CheckpointPolicy {
                    every_records: c.audit_checkpoint_records.unwrap_or(1000).max(1),
                    every: Duration::from_secs(c.audit_checkpoint_secs.unwrap_or(60).max(1)),
                },
            },
            anomaly,
            rate_limits,
        })
    }
}

fn encryption_settings(c: &ConfigOverrides) -> anyhow::Result<EncryptionSettings> {
    let parse = |list: &[String]| -> anyhow::Result<Vec<crate::crypto::at_rest::FieldPointer>> {
        list.iter().map(|p| p.trim().parse().map_err(|e: String| anyhow::anyhow!(e))).collect()
    };
    let tenants = c
        .tenant_encryption
        .iter()
        .flatten()
        .map(|t| Ok((t.tenant.clone(), parse(&t.pointers)?)))
        .collect::<anyhow::Result<_>>()?;
    Ok(EncryptionSettings { global: parse(c.encrypt_pointers.as_deref().unwrap_or_default())?, tenants })
}

fn anomaly_settings(c: &ConfigOverrides) -> anyhow::Result<AnomalySettings> {
    let d = AnomalySettings::default();
    let secs = |name, v: Option<u64>, default: Duration| {
        in_range(name, v.unwrap_or(default.as_secs()), 1, 30 * 86_400).map(Duration::from_secs)
    };
    let lockout = secs("anomaly_lockout_secs", c.anomaly_lockout_secs, d.lockout)?;
    let lockout_max = secs("anomaly_lockout_max_secs", c.anomaly_lockout_max_secs, d.lockout_max)?;
    if lockout_max < lockout {
        bail!("anomaly_lockout_max_secs: must be at least anomaly_lockout_secs");
    }
    let webhook = match (&c.anomaly_webhook_url, &c.anomaly_webhook_secret) {
        (None, None) => None,
        (Some(url), Some(secret)) => {
            if secret.len() < 32 {
                bail!("anomaly_webhook_secret: must be at least 32 characters");
            }
            Some(WebhookSettings { url: webhook_url(url)?, secret: std::sync::Arc::new(Secret::new(secret.clone())) })
        }
        _ => bail!("anomaly_webhook_url and anomaly_webhook_secret go together"),
    };
    Ok(AnomalySettings {
        auth_failures_per_source: c.anomaly_auth_failures_per_source.unwrap_or(d.auth_failures_per_source),
        auth_failures_per_principal: c.anomaly_auth_failures_per_principal.unwrap_or(d.auth_failures_per_principal),
        auth_window: secs("anomaly_auth_window_secs", c.anomaly_auth_window_secs, d.auth_window)?,
        lockout,
        lockout_max,
        writes_per_principal: c.anomaly_writes_per_principal.unwrap_or(d.writes_per_principal),
        writes_window: secs("anomaly_writes_window_secs", c.anomaly_writes_window_secs, d.writes_window)?,
        auto_revoke: c.anomaly_auto_revoke.unwrap_or(d.auto_revoke),
        refresh_replay_suspends: c.anomaly_refresh_replay_suspends.unwrap_or(d.refresh_replay_suspends),
        webhook,
    })
}

fn rate_limit_settings(c: &ConfigOverrides) -> anyhow::Result<RateLimitSettings> {
    let mut s = RateLimitSettings::default();
    for (class, name, v) in [
        (RouteClass::Read, "rate_limit_read", &c.rate_limit_read),
        (RouteClass::Write, "rate_limit_write", &c.rate_limit_write),
        (RouteClass::Mcp, "rate_limit_mcp", &c.rate_limit_mcp),
        (RouteClass::Token, "rate_limit_token", &c.rate_limit_token),
        (RouteClass::Login, "rate_limit_login", &c.rate_limit_login),
        (RouteClass::Admin, "rate_limit_admin", &c.rate_limit_admin),
        (RouteClass::Other, "rate_limit_other", &c.rate_limit_other),
    ] {
        let Some(text) = v else { continue };
        let parsed = text.split_once('/').and_then(|(ip, p)| {
            Some(ClassQuota { per_ip: ip.trim().parse().ok()?, per_principal: p.trim().parse().ok()? })
        });
        let quota = parsed.ok_or_else(|| {
            anyhow::anyhow!("{name}: {text:?} is not \"PER_IP/PER_PRINCIPAL\" requests per minute, such as \"600/100\"")
        })?;
        s.set(class, quota);
    }
    Ok(s)
}

/// The webhook's URL: https, or http to a loopback address (a receiver on this host).
fn webhook_url(text: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(text).map_err(|e| anyhow::anyhow!("anomaly_webhook_url: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => bail!("anomaly_webhook_url: must be https (or http to a loopback address)"),
    }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(name: &str, v: T, min: T, max: T) -> anyhow::Result<T> {
    if v < min || v > max {
        bail!("{name}: {v} is outside {min}..={max}");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_file_key_is_named() {
        let err = toml::from_str::<ConfigOverrides>("bind = \"127.0.0.1:1\"\nbnid = 3\n").unwrap_err();
        assert!(err.to_string().contains("bnid"), "{err}");
    }

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let file: ConfigOverrides = toml::from_str("bind = \"127.0.0.1:1\"\nmax_history = 5\n").unwrap();
        let flags = ConfigOverrides { bind: Some("127.0.0.1:2".into()), ..Default::default() };
        let s = Settings::resolve(flags.over(file).unwrap()).unwrap();
        assert_eq!(s.bind.port(), 2);
        assert_eq!(s.max_history, 5);
        assert_eq!(s.max_body_bytes, 1 << 20);
        assert!(matches!(s.database, DatabaseLocation::Sqlite(_)));
    }

    #[test]
    fn anomaly_webhook_needs_a_secret_and_a_safe_url() {
        let with = |url: &str, secret: Option<&str>| {
            Settings::resolve(ConfigOverrides {
                anomaly_webhook_url: Some(url.into()),
                anomaly_webhook_secret: secret.map(str::to_string),
                ..Default::default()
            })
        };
        let secret = Some("0123456789abcdef0123456789abcdef");
        assert!(with("https://alerts.example/hook", secret).unwrap().anomaly.webhook.is_some());
        assert!(with("http://127.0.0.1:9/hook", secret).is_ok());
        let err = |r: anyhow::Result<Settings>| r.unwrap_err().to_string();
        assert!(err(with("http://alerts.example/hook", secret)).contains("https"));
        assert!(err(with("https://alerts.example/hook", None)).contains("go together"));
        assert!(err(with("https://alerts.example/hook", Some("short"))).contains("32"));
        let backwards = ConfigOverrides {
            anomaly_lockout_secs: Some(600),
            anomaly_lockout_max_secs: Some(60),
            ..Default::default()
        };
        assert!(Settings::resolve(backwards).unwrap_err().to_string().contains("anomaly_lockout_max_secs"));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |c: ConfigOverrides| Settings::resolve(c).unwrap_err().to_string();
        assert!(bad(ConfigOverrides { bind: Some("nope".into()), ..Default::default() }).contains("bind"));
        assert!(
            bad(ConfigOverrides { database_url: Some("mysql://x".into()), ..Default::default() })
                .contains("database_url")
        );
        assert!(bad(ConfigOverrides { max_json_depth: Some(0), ..Default::default() }).contains("max_json_depth"));
        assert!(
            bad(ConfigOverrides { public_url: Some("ftp://x".into()), ..Default::default() }).contains("public_url")
        );
    }
}
