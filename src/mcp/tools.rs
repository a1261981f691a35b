//! The MCP tools and resources: thin adapters from MCP calls to [`ContextService`], so
//! every call passes through the same authorization, limits and errors as HTTP.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    Implementation, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    Resource, ServerCapabilities, ServerConfig,
};
// Logging is deprecated by SEP-2577 but 2025-era clients still call logging/setLevel.
#[allow(deprecated)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CacheScope, ListToolsResult, ResultType, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Map, Value};
use std::sync::Arc;

use super::calls::{self, resource_error, uncacheable};
use super::catalog::{Tool, resource_uri};
use super::schemas;
use super::stream::Authority;
use super::subscriptions::{self, SessionSubscriptions};
use crate::authn::Caller;
use crate::service::ContextService;
use crate::service::contexts::Cursor;

/// One MCP server instance per session (or per stateless request); cheap to build.
#[derive(Clone)]
pub struct ContextTools {
    contexts: ContextService,
    /// Over stdio the caller is fixed at start; over HTTP it comes with each request.
    fixed_caller: Option<Caller>,
    /// Over stdio, what re-checks the key for streams; over HTTP it comes with each request.
    fixed_authority: Option<Authority>,
    /// A 2025-era session's `resources/subscribe` URIs and its watcher.
    subscriptions: SessionSubscriptions,
    /// Turns true when the server shuts down; subscriptions then end gracefully.
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
    /// Built once per process: building it derives every tool's JSON Schemas, which
    /// cost more than the tool call itself when done per stateless request.
    tool_router: Arc<ToolRouter<Self>>,
}

#[tool_router(router = tool_router)]
impl ContextTools {
    /// For HTTP: the caller of each request is attached by the `/mcp` guard.
    pub fn new(contexts: ContextService, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        let mut tools = Self::build(contexts, None);
        tools.stopping = Some(stopping);
        tools
    }

    /// For stdio: one caller, authenticated at start, and what re-checks its key.
    pub fn for_caller(contexts: ContextService, caller: Caller, authority: Authority) -> Self {
        let mut tools = Self::build(contexts, Some(caller));
        tools.fixed_authority = Some(authority);
        tools
    }

    fn build(contexts: ContextService, fixed_caller: Option<Caller>) -> Self {
        Self {
            contexts,
            fixed_caller,
            fixed_authority: None,
            subscriptions: SessionSubscriptions::default(),
            stopping: None,
            tool_router: Self::shared_router(),
        }
    }

    fn shared_router() -> Arc<ToolRouter<Self>> {
        static ROUTER: std::sync::OnceLock<Arc<ToolRouter<ContextTools>>> = std::sync::OnceLock::new();
        ROUTER.get_or_init(|| Arc::new(Self::tool_router())).clone()
    }

    /// What re-checks this session's credential for its streams.
    fn authority(&self, ctx: &RequestContext<RoleServer>) -> Result<Authority, ErrorData> {
        if let Some(a) = &self.fixed_authority {
            return Ok(a.clone());
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Authority>().cloned())
            .ok_or_else(|| ErrorData::invalid_request("this request cannot open a stream", None))
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        if let Some(c) = &self.fixed_caller {
            return Ok(c.clone());
        }
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>().cloned())
            .ok_or_else(|| ErrorData::invalid_request("not authenticated", None))
    }

    /// A tool call through rmcp: the shared implementation, its result as a JSON tree.
    async fn run(
        &self,
        ctx: &RequestContext<RoleServer>,
        tool: Tool,
        raw: Map<String, Value>,
    ) -> Result<Json<Value>, String> {
        let caller = self.caller(ctx).map_err(|e| e.message.to_string())?;
        calls::call(&self.contexts, caller, tool, raw).await?.into_value().map(Json)
    }

    /// The tool catalog as `tools/list` answers it: fixed for a running server and the
    /// same for every caller (SEP-2549 caching hints: public, fresh for [`TOOLS_TTL_MS`]).
    pub fn catalog() -> ListToolsResult {
        let mut result = ListToolsResult::with_all_items(Self::shared_router().list_all());
        result.result_type = Some(ResultType::COMPLETE);
        result.ttl_ms = Some(TOOLS_TTL_MS);
        result.cache_scope = Some(CacheScope::Public);
        result
    }

    #[tool(
        name = "context_get",
        description = "Read the latest version of a context (an OCP context object: metadata, session.history, \
                       expires), or only part of its history: the last N messages (last) or those after a \
                       position (after, limit).",
        input_schema = schemas::get_input(),
        output_schema = schemas::context_output()
    )]
    async fn context_get(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(raw): Parameters<Map<String, Value>>,
    ) -> Result<Json<Value>, String> {
        self.run(&ctx, Tool::Get, raw).await
    }

    #[tool(
        name = "context_create",
        description = "Create a context from an OCP context object (session.history required, may be empty). \
                       Returns the stored context.",
        input_schema = schemas::create_input(),
        output_schema = schemas::context_output()
    )]
    async fn context_create(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(raw): Parameters<Map<String, Value>>,
    ) -> Result<Json<Value>, String> {
        self.run(&ctx, Tool::Create, raw).await
    }

    #[tool(
        name = "context_append",
        description = "Append messages to a context's session.history (inject). Returns the new version and \
                       history length.",
        input_schema = schemas::append_input(),
        output_schema = schemas::append_output()
    )]
    async fn context_append(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(raw): Parameters<Map<String, Value>>,
    ) -> Result<Json<Value>, String> {
        self.run(&ctx, Tool::Append, raw).await
    }

    #[tool(
        name = "context_delete",
        description = "Delete (revoke) a context. Its id is never reused.",
        input_schema = schemas::delete_input(),
        output_schema = schemas::delete_output()
    )]
    async fn context_delete(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(raw): Parameters<Map<String, Value>>,
    ) -> Result<Json<Value>, String> {
        self.run(&ctx, Tool::Delete, raw).await
    }

    #[tool(
        name = "context_list",
        description = "List the contexts visible to the caller, newest first (without their histories).",
        input_schema = schemas::list_input(),
        output_schema = schemas::list_output()
    )]
    async fn context_list(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(raw): Parameters<Map<String, Value>>,
    ) -> Result<Json<Value>, String> {
        self.run(&ctx, Tool::List, raw).await
    }
}

/// How long clients may keep the tool catalog (SEP-2549 `ttlMs`).
const TOOLS_TTL_MS: u64 = 10 * 60 * 1000;

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ContextTools {
    #[allow(deprecated)] // enable_logging: see set_level
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                // No prompts are offered; declaring the capability lets clients list
                // them (an empty list) instead of meeting "method not found".
                .enable_prompts()
                .enable_logging()
                .build(),
        );
        info.server_info = Implementation::new("ctxguard", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Contexts hold an agent's memory and instructions. Tools read, create, append to, list and delete \
             them; each readable context is also a resource context://<id>."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(Self::catalog())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(subscriptions::accepted(requested))
    }

    async fn listen(&self, subscription: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        let authority = self.authority(subscription.request_context())?;
        subscriptions::listen(&self.contexts, authority, self.stopping.clone(), subscription).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller(&context)?;
        let cursor = request.and_then(|r| r.cursor).map(|c| Cursor::parse(&c)).transpose().map_err(resource_error)?;
        let page = self.contexts.list(&caller, cursor, None, None).await.map_err(resource_error)?;
        let resources = page
            .items
            .iter()
            .map(|i| {
                Resource::new(resource_uri(i.context_id), i.context_id.to_string())
                    .with_mime_type("application/json")
                    .with_description(format!("{} messages, version {}", i.message_count, i.version))
            })
            .collect();
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = page.next_cursor;
        uncacheable(&mut result.ttl_ms, &mut result.cache_scope);
        Ok(result)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.caller(&context)?;
        let authority = self.authority(&context)?;
        self.subscriptions.add(request.uri)?;
        self.subscriptions.watch(self.contexts.clone(), authority, context.peer.clone());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.remove(&request.uri);
        Ok(())
    }

    /// Accepted for compatibility; ctxguard sends no log notifications to clients
    /// (its logs go to its operator).
    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context)?;
        Ok(calls::read_resource(&self.contexts, caller, &request.uri).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ContextId;
    use crate::mcp::catalog::RESOURCE_SCHEME;

    #[test]
    fn every_routed_tool_has_an_action() {
        let routed: Vec<String> =
            ContextTools::tool_router().list_all().into_iter().map(|t| t.name.to_string()).collect();
        assert_eq!(routed.len(), Tool::ALL.len(), "routed tools: {routed:?}");
        for name in &routed {
            let tool =
                Tool::named(name).unwrap_or_else(|| panic!("tool {name} has no entry in Tool (and so no action)"));
            assert_eq!(tool.name(), name);
        }
    }

    /// Every tool schema is portable: one `type` per schema (no `["string","null"]`)
    /// and objects where a schema goes (no bare `true`), with a role enum for messages.
    #[test]
    fn tool_schemas_are_portable() {
        fn walk(path: &str, v: &Value, problems: &mut Vec<String>) {
            match v {
                Value::Bool(_) => problems.push(format!("{path}: bare boolean schema")),
                Value::Object(m) => {
                    if m.get("type").is_some_and(Value::is_array) {
                        problems.push(format!("{path}: type array"));
                    }
                    for key in ["items", "additionalProperties"] {
                        if let Some(Value::Object(_)) = m.get(key) {
                            walk(&format!("{path}.{key}"), &m[key], problems);
                        } else if key == "items" && m.contains_key(key) {
                            walk(&format!("{path}.{key}"), &m[key], problems);
                        }
                    }
                    if let Some(Value::Object(props)) = m.get("properties") {
                        for (name, p) in props {
                            walk(&format!("{path}.{name}"), p, problems);
                        }
                    }
                }
                _ => problems.push(format!("{path}: not a schema")),
            }
        }
        let mut problems = Vec::new();
        let mut roles = 0;
        for tool in ContextTools::tool_router().list_all() {
            let input = Value::Object((*tool.input_schema).clone());
            walk(&format!("{}.input", tool.name), &input, &mut problems);
            let output = Value::Object((*tool.output_schema.clone().expect("every tool declares its output")).clone());
            walk(&format!("{}.output", tool.name), &output, &mut problems);
            roles += input.to_string().matches(r#""enum":["user","assistant","system"]"#).count();
        }
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(roles, 2, "create and append take messages with a role enum");
    }

    #[test]
    fn resource_uris_round_trip() {
        let id = ContextId::new_random();
        assert_eq!(resource_uri(id).strip_prefix(RESOURCE_SCHEME), Some(id.to_string().as_str()));
    }
}
