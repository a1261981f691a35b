//! Outbound HTTP. ctxguard fetches documents named by others (client metadata
//! documents) and by its operator (external issuers' discovery and JWKS); both go
//! through [`fetch::Fetcher`], which bounds size and time and, for URLs that come from
//! requests, refuses private and loopback targets (SSRF).

pub mod fetch;
