//! MCP: contexts as tools and resources over Streamable HTTP (`/mcp`) and stdio.

pub mod http;
pub mod stdio;
pub mod tools;
