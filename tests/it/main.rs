//! The one integration-test binary (see STYLE.md: each file in tests/ would be another
//! binary to link). Every test talks HTTP to a real server on an ephemeral port.

mod support;

mod admin;
mod anomaly;
mod audit;
mod audit_blocks;
mod auth;
mod cache;
mod concurrency;
mod contexts;
mod delegation;
mod encryption;
mod external;
mod inline;
mod integrity;
mod layers;
mod limits;
mod mcp;
mod mcp_fast;
mod oauth;
mod oauth_flow;
mod ops;
mod policies;
mod process;
mod rate_limits;
mod sharing;
mod sign_in;
mod storage;
mod subscriptions;
mod third_party;
