//! `/mcp`: the rmcp Streamable HTTP service behind our authentication.
//!
//! rmcp has no server-side auth, so this module is the resource server for MCP: it
//! authenticates every request for the MCP resource (`<base>/mcp` — a token for the
//! context API alone is refused here, RFC 8707), answers 401 with the RFC 9728 challenge
//! for `/.well-known/oauth-protected-resource/mcp`, checks the scope a `tools/call` or
//! resource request needs before dispatch (403 `insufficient_scope` naming it, so
//! clients can step up), and hands the caller to the tools through request extensions.
//! The client's token is never passed on to anything.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{SessionManager, SessionState, SessionStore, SessionStoreError};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use super::AppState;
use super::error::HttpError;
use super::extract::{authenticate, credential_from_headers};
use super::json::{self, BodyLimits};
use super::mcp_fast::{FastCall, FastPath};
use crate::audit::Audit;
use crate::authn::{Authenticator, Caller, Credential};
use crate::authz::Action;
use crate::crypto::Secret;
use crate::domain::audit::{Action as Audited, Outcome};
use crate::domain::{Error, ScopeSet, Timestamp};
use crate::mcp::catalog::{Tool, method_action};
use crate::mcp::stream::{Authority, StreamAuthority};
use crate::mcp::tools::ContextTools;
use crate::service::ContextService;
use crate::store::Database;

pub const PATH: &str = "/mcp";

/// The MCP resource indicator for a public base URL.
pub fn resource(public_url: &str) -> String {
    format!("{public_url}{PATH}")
}

/// Keeps 2025-era MCP sessions in the database so any replica can continue them.
struct DbSessionStore(Arc<dyn Database>);

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.0.mcp_session(session_id).await? {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let text = serde_json::to_string(state)?;
        Ok(self.0.put_mcp_session(session_id, &text, Timestamp::now()).await?)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.0.delete_mcp_session(session_id).await?)
    }
}

/// What the `/mcp` edge needs of the application, taken once when the router is built.
pub struct McpEdge {
    authn: Authenticator,
    rate_limits: Arc<super::rate_limit::RateLimits>,
    /// This endpoint's resource indicator: tokens must name it as their audience.
    resource: String,
    db: Arc<dyn Database>,
    contexts: ContextService,
    body_limits: BodyLimits,
    /// rmcp's sessions, so that a session whose credential was revoked can be ended.
    sessions: Arc<LocalSessionManager>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Host and Origin values accepted (DNS-rebinding protection).
    hosts: Vec<String>,
    origins: Vec<String>,
    /// Stateless 2026-07-28 calls answered without rmcp's per-request machinery
    /// (`mcp_fast_path`; on by default).
    fast: Option<FastPath>,
    audit: Audit,
}

impl McpEdge {
    pub fn new(state: &AppState) -> anyhow::Result<Arc<McpEdge>> {
        let s = &state.inner;
        let (hosts, origins) = local_and_public(&s.public_url);
        let fast = match s.mcp_fast_path {
            true => {
                let tools = ContextTools::new(s.contexts.clone(), s.stopping.clone());
                Some(FastPath::new(s.contexts.clone(), &tools, &hosts)?)
            }
            false => None,
        };
        Ok(Arc::new(McpEdge {
            authn: s.authn.clone(),
            rate_limits: s.rate_limits.clone(),
            resource: resource(&s.public_url),
            db: s.db.clone(),
            contexts: s.contexts.clone(),
            body_limits: s.body_limits,
            sessions: Arc::new(LocalSessionManager::default()),
            stopping: s.stopping.clone(),
            hosts,
            origins,
            fast,
            audit: s.audit.clone(),
        }))
    }
}

/// Pages served from this machine may talk to it, and the public URL's host; a
/// DNS-rebinding page has a foreign Host or Origin and is refused.
fn local_and_public(public_url: &str) -> (Vec<String>, Vec<String>) {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let mut origins =
        vec!["http://localhost:*".to_string(), "http://127.0.0.1:*".to_string(), "http://[::1]:*".to_string()];
    if let Ok(u) = url::Url::parse(public_url) {
        if let Some(h) = u.host_str() {
            hosts.push(h.trim_matches(['[', ']']).to_string());
            if let Some(port) = u.port() {
                hosts.push(format!("{h}:{port}"));
            }
        }
        origins.push(format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(443)
        ));
    }
    (hosts, origins)
}

/// The rmcp service for this edge.
pub fn service(edge: &McpEdge) -> StreamableHttpService<ContextTools, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(edge.hosts.clone())
        .with_allowed_origins(edge.origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(edge.body_limits.max_bytes)
        // Stateless (2026-07-28) request/response calls answer with plain JSON unless the
        // handler needs to stream.
        .with_json_response(true);
    config.session_store = Some(Arc::new(DbSessionStore(edge.db.clone())));
    let contexts = edge.contexts.clone();
    let stopping = edge.stopping.clone();
    StreamableHttpService::new(
        move || Ok(ContextTools::new(contexts.clone(), stopping.clone())),
        edge.sessions.clone(),
        config,
    )
}

/// The MCP service as an axum handler that shares one instance: as a tower service it
/// would be cloned twice per request (by the router and by rmcp's `call`), copying its
/// configuration each time; `handle` takes `&self`.
pub fn routed(
    service: StreamableHttpService<ContextTools, LocalSessionManager>,
) -> axum::routing::MethodRouter<AppState> {
    let service = Arc::new(service);
    axum::routing::any(move |req: Request| {
        let service = service.clone();
        async move { service.handle(req).await.map(Body::new) }
    })
}

/// The action a JSON-RPC request performs, if any (an unknown tool has none: rmcp
/// answers it as unknown).
fn action(message: &Value) -> Option<Action> {
    match message["method"].as_str()? {
        "tools/call" => Tool::named(message["params"]["name"].as_str()?).map(Tool::action),
        other => method_action(other),
    }
}

const SESSION_HEADER: &str = "mcp-session-id";
const LISTEN: &str = "subscriptions/listen";

/// The `/mcp` transport's answer to "does this session's credential still hold?": the
/// same credential authenticated again for the MCP resource (revocation, expiry, the
/// principal's current roles and state), and ending means closing the rmcp session,
/// which ends its streams.
struct SessionAuthority {
    edge: Arc<McpEdge>,
    token: Secret,
    session: Option<String>,
}

#[async_trait::async_trait]
impl StreamAuthority for SessionAuthority {
    async fn current(&self) -> Option<Caller> {
        let credential = Credential::Bearer(Secret::new(self.token.expose().to_string()));
        self.edge.authn.authenticate(&credential, &self.edge.resource).await.ok()
    }

    async fn end(&self) {
        if let Some(id) = &self.session {
            let id: rmcp::transport::streamable_http_server::session::SessionId = id.as_str().into();
            if let Err(e) = self.edge.sessions.close_session(&id).await {
                tracing::warn!(error = %e, "cannot close an MCP session whose credential was revoked");
            }
            if let Err(e) = self.edge.db.delete_mcp_session(&id).await {
                tracing::warn!(error = %e, "cannot delete an MCP session whose credential was revoked");
            }
            tracing::info!("an MCP session was ended: its credential no longer holds");
        }
    }
}

/// Authenticates, checks scopes and session ownership, and passes the caller to the
/// MCP service (or answers a plain stateless call itself); records who opened each new
/// session.
pub async fn guard(State(edge): State<Arc<McpEdge>>, req: Request, next: Next) -> Response {
    let (req, listens) = match authorize(&edge, req).await {
        Ok(Authorized::Fast(fast, caller, call)) => return fast.answer(caller, call).await,
        Ok(Authorized::Service(req, listens)) => (req, listens),
        Err(e) => return e.into_response(),
    };
    let Some(owner) = req.extensions().get::<Caller>().map(|c| c.principal.id) else {
        return HttpError::Internal.into_response();
    };
    let presented = req.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut req = req;
    // Only a session's requests and `subscriptions/listen` open streams, so only they
    // carry what re-checks the credential: other stateless calls, the hot path, do not
    // pay for it.
    if listens || presented.is_some() || req.method() == axum::http::Method::GET {
        let token = match credential_from_headers(req.headers()) {
            Ok(Credential::Bearer(t)) => t,
            Err(_) => return HttpError::Internal.into_response(),
        };
        let authority: Authority = Arc::new(SessionAuthority { edge: edge.clone(), token, session: presented.clone() });
        req.extensions_mut().insert(authority);
    }
    if let Some(session) = &presented {
        // A session belongs to the principal that opened it; to anyone else it does not
        // exist (MCP security best practices: bind sessions to the user).
        match edge.db.mcp_session_owner(session).await {
            Ok(Some(p)) if p == owner => {}
            Ok(Some(_)) => return session_not_found(),
            Ok(None) => {}
            Err(e) => return HttpError::Domain(Error::Store(e)).into_response(),
        }
    }
    let response = next.run(req).await;
    if presented.is_none()
        && let Some(new) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())
        && let Err(e) = edge.db.set_mcp_session_owner(new, owner, Timestamp::now()).await
    {
        tracing::error!(error = %e, "cannot record the owner of an MCP session");
        return HttpError::Domain(Error::Store(e)).into_response();
    }
    response
}

fn session_not_found() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}
        })),
    )
        .into_response()
}

/// An authenticated, scope-checked request: a call the fast path answers, or the
/// request for rmcp with its caller attached and whether it opens a
/// `subscriptions/listen` stream.
enum Authorized<'a> {
    Fast(&'a FastPath, Caller, FastCall),
    Service(Request, bool),
}

async fn authorize(edge: &McpEdge, req: Request) -> Result<Authorized<'_>, HttpError> {
    let (mut parts, body) = req.into_parts();
    let caller: Caller = authenticate(&edge.authn, &edge.rate_limits, &parts, &edge.resource).await?;
    let mut listens = false;
    let body = if parts.method == axum::http::Method::POST {
        let bytes = json::read_body(&parts.headers, body, edge.body_limits).await?;
        if let Some(fast) = &edge.fast
            && let Some(call) = fast.take(&parts, &bytes)
        {
            let needed = call.action().map(|a| a.required_scopes()).unwrap_or_else(ScopeSet::empty);
            permits(edge, &caller, needed, call.name()).await?;
            return Ok(Authorized::Fast(fast, caller, call));
        }
        if let Ok(message) = serde_json::from_slice::<Value>(&bytes) {
            let messages = match &message {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            let mut needed = ScopeSet::empty();
            let mut tool = None;
            for m in &messages {
                listens |= m["method"] == LISTEN;
                if let Some(a) = action(m) {
                    needed = needed.union(&a.required_scopes());
                }
                tool = m["params"]["name"].as_str().and_then(Tool::named);
            }
            let name = match (messages.len(), tool) {
                (1, Some(tool)) => tool.name(),
                _ => "request",
            };
            permits(edge, &caller, needed, name).await?;
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(caller);
    Ok(Authorized::Service(Request::from_parts(parts, body), listens))
}

/// 403 `insufficient_scope` naming what the request needs, so clients can step up;
/// the refusal is recorded (`mcp.request`, with the tool or "request").
async fn permits(edge: &McpEdge, caller: &Caller, needed: ScopeSet, name: &'static str) -> Result<(), HttpError> {
    if needed.is_subset_of(&caller.scopes) {
        return Ok(());
    }
    let refused = Error::InsufficientScope { required: needed };
    let event = caller.clone().calling(name).event(Audited::McpRequest, None, Outcome::Deny(refused.to_string()));
    let _ = edge.audit.record(event).await;
    Err(HttpError::Domain(refused))
}
