//! MCP: contexts as tools and resources, independent of the transport. The Streamable
//! HTTP endpoint (`/mcp`) is in `http::mcp`, stdio in `app::stdio`.

pub mod calls;
pub mod catalog;
pub mod schemas;
pub mod stream;
pub mod subscriptions;
pub mod tools;
