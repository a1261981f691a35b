//! ctxguard: a secure context server for AI agents.
//!
//! Layers point inward: `http` uses `service`, which uses `authn`/`authz`/`store`,
//! which use `domain`; `domain` uses nothing of ours.

pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod init;
pub mod mcp;
pub mod net;
pub mod oauth;
pub mod server;
pub mod service;
pub mod store;
pub mod sweeper;
pub mod telemetry;
