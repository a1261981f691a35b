//! The bare MCP baseline: the official Rust SDK (rmcp) serving Streamable HTTP
//! statelessly (2026-07-28) with one fixed tool, `context_get`, whose structured result
//! is a context-sized JSON object — no authentication, no authorization, no database.
//! Built the way a careful rmcp user would: the tool router is built once and shared,
//! JSON responses, the same allocator and socket settings as ctxguard. What ctxguard
//! adds on top of this is what `bench/run.sh` measures.

use std::sync::{Arc, LazyLock, OnceLock};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Map, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = r#"{"context_id":"6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5f60","metadata":{"user_id":"user-123","topic":"billing"},"session":{"history":[{"role":"system","message":"You are a support agent."},{"role":"user","message":"Where is my invoice?"},{"role":"assistant","message":"It is in your inbox."}]},"version":3,"created_at":"2026-11-23T00:00:00Z","updated_at":"2026-11-23T00:00:01Z"}"#;
static CONTEXT: LazyLock<Value> = LazyLock::new(|| serde_json::from_str(BODY).expect("a JSON object"));

#[derive(Clone)]
struct Fixed {
    tool_router: Arc<ToolRouter<Fixed>>,
}

#[tool_router(router = tool_router)]
impl Fixed {
    fn shared() -> Fixed {
        static ROUTER: OnceLock<Arc<ToolRouter<Fixed>>> = OnceLock::new();
        Fixed { tool_router: ROUTER.get_or_init(|| Arc::new(Self::tool_router())).clone() }
    }

    #[tool(name = "context_get", description = "Read a context (always the same one).")]
    async fn context_get(&self, Parameters(_args): Parameters<Map<String, Value>>) -> Json<Value> {
        Json(CONTEXT.clone())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fixed {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let config =
        StreamableHttpServerConfig::default().with_allowed_hosts(["localhost", "127.0.0.1"]).with_json_response(true);
    let service =
        Arc::new(StreamableHttpService::new(|| Ok(Fixed::shared()), Arc::new(LocalSessionManager::default()), config));
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::any(move |req: axum::extract::Request| {
            let service = service.clone();
            async move { service.handle(req).await.map(axum::body::Body::new) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("rmcp baseline listening on http://{}", listener.local_addr()?);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
