//! The bare baseline: what a request costs with no authentication, no authorization,
//! no database — only axum and tokio, as ctxguard runs them. It answers `GET /context/{id}`
//! with a fixed JSON body of the size of a typical stored context.

use axum::Router;

/// The same allocator as ctxguard ("same runtime settings").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::http::header;
use axum::routing::get;

const BODY: &str = r#"{"context_id":"6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5f60","metadata":{"user_id":"user-123","topic":"billing"},"session":{"history":[{"role":"system","message":"You are a support agent."},{"role":"user","message":"Where is my invoice?"},{"role":"assistant","message":"It is in your inbox."}]},"version":3,"created_at":"2026-11-23T00:00:00Z","updated_at":"2026-11-23T00:00:01Z"}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new()
        .route("/context/{id}", get(|| async { ([(header::CONTENT_TYPE, "application/json")], BODY) }))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    // Same socket settings as ctxguard.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
