//! ctxguard: a secure context server for AI agents.
//!
//! Layers point inward (docs/architecture.md, enforced by `tests/it/layers.rs`):
//! `domain` ← `crypto`, `net`, `logs` ← `store` ← `jwt` ← `audit` ← `authn` ← `authz` ← `service` ←
//! `oauth`, `mcp` ← `http` ← `config` ← `app` ← `cli`. A module may use the ones to
//! its left, never one to its right.

pub mod anomaly;
pub mod app;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod integrity;
pub mod jwt;
pub mod logs;
pub mod mcp;
pub mod net;
pub mod oauth;
pub mod service;
pub mod store;
