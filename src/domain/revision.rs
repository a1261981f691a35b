//! What a write sees and what it makes, without the messages it does not touch.
//!
//! A context's history can hold thousands of messages, and appending is the most
//! common write. So a write is decided on the [`ContextHead`] (everything but the
//! messages, plus their count) and produces a [`Revision`]: the next head and what
//! happens to the messages (kept, appended to, or replaced). The store writes only
//! what changed; an append costs the same at message 10,000 as at message 10.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::context::{HistoryEntry, Message, StoredContext};
use super::{ContextId, PrincipalId, PrincipalKind, Timestamp, Version};

/// Who appended a message, recorded by the server from the authenticated request —
/// never taken from the request body. Served beside each message (an addition to the
/// OCP shape); messages stored before provenance existed have none. Members are declared
/// in RFC 8785 order (see `HistoryEntry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// For an exchanged token (RFC 8693): the actors, nearest first — who acted for
    /// the principal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub act: Vec<String>,
    /// When the server stored the message.
    pub at: Timestamp,
    /// The OAuth client the token was issued to (none for API keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub kind: PrincipalKind,
    pub name: String,
    /// The principal whose credential made the write.
    pub principal: PrincipalId,
}

/// A version's state without its messages.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextHead {
    pub context_id: ContextId,
    pub metadata: Map<String, Value>,
    pub expires: Option<Timestamp>,
    pub version: Version,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How many messages the version's history holds.
    pub history_len: usize,
    /// The serialized size of those messages (each as served, without separators):
    /// with the metadata, what the size limit counts, kept without reading them.
    pub history_bytes: usize,
}

impl ContextHead {
    pub fn of(ctx: &StoredContext) -> ContextHead {
        ContextHead {
            context_id: ctx.context_id,
            metadata: ctx.metadata.clone(),
            expires: ctx.expires,
            version: ctx.version,
            created_at: ctx.created_at,
            updated_at: ctx.updated_at,
            history_len: ctx.session.history.len(),
            history_bytes: serialized_len(&ctx.session.history),
        }
    }

    /// The version's size as served, near enough for a limit: metadata, messages with
    /// separators, and the fixed fields.
    pub fn served_bytes(&self) -> usize {
        // The fixed fields and the signature (a detached JWS of about 250 bytes).
        const FIXED: usize = 576;
        let metadata = serde_json::to_string(&self.metadata).map_or(0, |m| m.len());
        FIXED + metadata + self.history_bytes + self.history_len
    }

    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// What a write does to the messages.
#[derive(Clone, Debug, PartialEq)]
pub enum NewMessages {
    /// PATCH: metadata or expiry only.
    Keep,
    /// Inject: these follow the current history.
    Append(Vec<HistoryEntry>),
    /// PUT: a new history (which may or may not begin like the old one).
    Replace(Vec<HistoryEntry>),
}

/// The next version: its head and its messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub head: ContextHead,
    pub messages: NewMessages,
    /// Whether metadata or expiry may differ from the current version's (PATCH, PUT):
    /// only then is a new metadata snapshot stored.
    pub metadata_changed: bool,
}

/// The serialized size of messages as served.
pub fn serialized_len(entries: &[HistoryEntry]) -> usize {
    entries.iter().map(|e| serde_json::to_string(e).map_or(0, |s| s.len())).sum()
}

/// Stamps messages from a request with their provenance.
pub fn entries(messages: Vec<Message>, provenance: Option<&Provenance>) -> Vec<HistoryEntry> {
    messages
        .into_iter()
        .map(|m| HistoryEntry { role: m.role, message: m.message, provenance: provenance.cloned() })
        .collect()
}
