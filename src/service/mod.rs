//! Use cases: each public method is one operation of the API, authorized through
//! [`crate::authz::authorize`] and carried out against the stores. Handlers (HTTP, CLI,
//! later MCP) parse input, call one of these, and map the result.

pub mod admin;
pub mod anomalies;
pub mod audit_log;
mod audited;
pub mod contexts;
pub mod grants;
pub mod listing;
pub mod sealing;

use crate::authz::Denial;
use crate::domain::{ContextId, Error};

pub use admin::AdminService;
pub use contexts::ContextService;

/// Maps a denial on a context: invisible becomes "not found", like a missing id.
fn context_denial(id: ContextId, denial: Denial) -> Error {
    match denial {
        Denial::NotVisible => Error::ContextNotFound(id),
        other => denial_error(other, "resource"),
    }
}

/// Maps a denial on a non-context resource (`what` names it for the 404).
pub(crate) fn denial_error(denial: Denial, what: &'static str) -> Error {
    match denial {
        Denial::NotVisible => Error::NotFound { what },
        Denial::Forbidden(reason) => Error::Forbidden { reason },
        Denial::InsufficientScope(required) => Error::InsufficientScope { required },
    }
}
