//! The tools' arguments and results, and their JSON Schemas, written out by hand.
//!
//! One context shape everywhere: tools take and return the OCP context object
//! (`context_id`, `metadata`, `session.history`, `expires`) exactly as the HTTP API
//! does — arguments are parsed by the same types ([`ContextInput`], [`Message`]), and a
//! read returns the served JSON of the context. The schemas are precise (role enum,
//! UUID and date-time formats, bounds) and portable: each property has a single `type`
//! (an absent optional field is left out, never `null`) and every schema is an object,
//! never a bare `true`, so that clients mapping tool schemas onto a single-type dialect
//! (e.g. Gemini function declarations) accept them.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::domain::Message;

pub type Schema = Arc<Map<String, Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    pub context_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    pub context_id: String,
    #[serde(default)]
    pub last: Option<u64>,
    #[serde(default)]
    pub after: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendArgs {
    pub context_id: String,
    pub messages: Vec<Message>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

fn object(value: Value) -> Schema {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("a schema literal is an object"),
    }
}

/// Builds a schema once per process (tools/list serves the same `Arc`).
macro_rules! schema {
    ($name:ident, $value:expr) => {
        pub fn $name() -> Schema {
            static SCHEMA: OnceLock<Schema> = OnceLock::new();
            SCHEMA.get_or_init(|| object($value)).clone()
        }
    };
}

fn context_id() -> Value {
    json!({"type": "string", "format": "uuid", "description": "The context id (a UUID)."})
}

fn message_in() -> Value {
    json!({
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant", "system"]},
            "message": {"type": "string", "description": "The message text."}
        },
        "required": ["role", "message"],
        "additionalProperties": false
    })
}

fn message_out() -> Value {
    json!({
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant", "system"]},
            "message": {"type": "string"},
            "provenance": {
                "type": "object",
                "description": "Who wrote the message, as the server recorded it.",
                "properties": {
                    "principal": {"type": "string", "format": "uuid"},
                    "name": {"type": "string"},
                    "kind": {"type": "string", "enum": ["user", "agent", "service"]},
                    "client_id": {"type": "string"},
                    "act": {"type": "array", "items": {"type": "string"}},
                    "at": {"type": "string", "format": "date-time"}
                },
                "required": ["principal", "name", "kind", "at"]
            }
        },
        "required": ["role", "message"]
    })
}

fn metadata() -> Value {
    json!({"type": "object", "additionalProperties": true, "description": "Free-form metadata (a JSON object)."})
}

schema!(
    get_input,
    json!({
        "type": "object",
        "properties": {
            "context_id": context_id(),
            "last": {"type": "integer", "minimum": 0, "description": "Only the last N messages of the history."},
            "after": {"type": "integer", "minimum": 0, "description": "Only the messages after this position (1-based; 0 is before the first)."},
            "limit": {"type": "integer", "minimum": 1, "description": "With after: at most this many messages."}
        },
        "required": ["context_id"],
        "additionalProperties": false
    })
);

schema!(
    create_input,
    json!({
        "type": "object",
        "description": "An OCP context object.",
        "properties": {
            "context_id": {"type": "string", "format": "uuid", "description": "Optional id (a UUID); one is made if absent."},
            "metadata": metadata(),
            "session": {
                "type": "object",
                "properties": {"history": {"type": "array", "items": message_in()}},
                "required": ["history"],
                "additionalProperties": false
            },
            "expires": {"type": "string", "format": "date-time", "description": "RFC 3339 expiry."}
        },
        "required": ["session"],
        "additionalProperties": false
    })
);

schema!(
    append_input,
    json!({
        "type": "object",
        "properties": {
            "context_id": context_id(),
            "messages": {"type": "array", "items": message_in(), "minItems": 1}
        },
        "required": ["context_id", "messages"],
        "additionalProperties": false
    })
);

schema!(
    delete_input,
    json!({
        "type": "object",
        "properties": {"context_id": context_id()},
        "required": ["context_id"],
        "additionalProperties": false
    })
);

schema!(
    list_input,
    json!({
        "type": "object",
        "properties": {
            "cursor": {"type": "string", "description": "From a previous call's next_cursor."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "Default 50."}
        },
        "additionalProperties": false
    })
);

schema!(
    context_output,
    json!({
        "type": "object",
        "description": "An OCP context object, as GET /context/{id} serves it. For a window of the history, history_length and history_start say where it lies.",
        "properties": {
            "context_id": context_id(),
            "metadata": metadata(),
            "session": {
                "type": "object",
                "properties": {"history": {"type": "array", "items": message_out()}},
                "required": ["history"]
            },
            "expires": {"type": "string", "format": "date-time"},
            "version": {"type": "integer", "minimum": 1},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "signature": {"type": "string", "description": "The version's signature: a JWS with detached payload over its manifest (see the server's docs/integrity.md); verify it with the keys at /oauth/jwks. Covers the whole version, not a window."},
            "history_length": {"type": "integer", "minimum": 0, "description": "For a window: how many messages the whole history holds."},
            "history_start": {"type": "integer", "minimum": 1, "description": "For a window: the position (1-based) of its first message."}
        },
        "required": ["context_id", "metadata", "session", "version", "created_at", "updated_at"]
    })
);

schema!(
    append_output,
    json!({
        "type": "object",
        "properties": {
            "context_id": context_id(),
            "version": {"type": "integer", "minimum": 1},
            "history_length": {"type": "integer", "minimum": 0}
        },
        "required": ["context_id", "version", "history_length"]
    })
);

schema!(
    delete_output,
    json!({
        "type": "object",
        "properties": {"context_id": context_id(), "deleted": {"type": "boolean"}},
        "required": ["context_id", "deleted"]
    })
);

schema!(
    list_output,
    json!({
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "A context without its history.",
                    "properties": {
                        "context_id": context_id(),
                        "metadata": metadata(),
                        "expires": {"type": "string", "format": "date-time"},
                        "version": {"type": "integer", "minimum": 1},
                        "message_count": {"type": "integer", "minimum": 0},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"}
                    },
                    "required": ["context_id", "metadata", "version", "message_count", "created_at", "updated_at"]
                }
            },
            "next_cursor": {"type": "string", "description": "Pass to the next call for the next page; absent on the last."}
        },
        "required": ["items"]
    })
);
