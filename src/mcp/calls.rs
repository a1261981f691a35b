//! What each MCP tool call and resource read does for a caller: the one implementation
//! behind both rmcp's handlers ([`super::tools`]) and the stateless fast path of `/mcp`
//! (`http::mcp_fast`), so that the two cannot drift apart. Every call goes through
//! [`ContextService`], with the same authorization, limits and errors as HTTP.

use bytes::{BufMut, Bytes, BytesMut};
use rmcp::ErrorData;
use rmcp::model::{CacheScope, ReadResourceResult, ResourceContents};
use serde_json::{Map, Value, json};

use super::catalog::{RESOURCE_SCHEME, Tool};
use super::schemas::{AppendArgs, GetArgs, ListArgs, ReadArgs};
use crate::authn::Caller;
use crate::domain::context::AppendInput;
use crate::domain::{ContextId, ContextInput, Error, HistoryWindow, StoreError};
use crate::service::ContextService;
use crate::service::contexts::Cursor;

/// A tool's structured result.
#[derive(Debug)]
pub enum ToolOutput {
    /// JSON that is already serialized — a context as the store serves it — and is sent
    /// as it is, without being parsed into a tree and written again.
    Served(Bytes),
    Value(Value),
}

impl ToolOutput {
    /// The result as a JSON tree, for rmcp's handlers.
    pub fn into_value(self) -> Result<Value, String> {
        match self {
            ToolOutput::Value(v) => Ok(v),
            ToolOutput::Served(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string())),
        }
    }
}

/// A tool call's outcome: its result, or the text of an `isError` result.
pub type ToolResult = Result<ToolOutput, String>;

/// Runs `tool` with its raw arguments for `caller`.
pub async fn call(contexts: &ContextService, caller: Caller, tool: Tool, raw: Map<String, Value>) -> ToolResult {
    let caller = &caller.calling(tool.name());
    match tool {
        Tool::Get => get(contexts, caller, arguments(raw)?).await,
        Tool::Create => {
            let input: ContextInput = arguments(raw)?;
            let ctx = contexts.create(caller, input).await.map_err(tool_error)?;
            serde_json::to_value(&ctx).map(ToolOutput::Value).map_err(|e| corrupt(e.to_string()))
        }
        Tool::Append => {
            let args: AppendArgs = arguments(raw)?;
            let input = AppendInput { messages: args.messages };
            let head = contexts.append(caller, id(&args.context_id)?, input, None).await.map_err(tool_error)?;
            Ok(ToolOutput::Value(json!({
                "context_id": head.context_id,
                "version": head.version.0,
                "history_length": head.history_len,
            })))
        }
        Tool::Delete => {
            let args: GetArgs = arguments(raw)?;
            let cid = id(&args.context_id)?;
            contexts.delete(caller, cid, None).await.map_err(tool_error)?;
            Ok(ToolOutput::Value(json!({"context_id": cid, "deleted": true})))
        }
        Tool::List => {
            let args: ListArgs = arguments(raw)?;
            let cursor = args.cursor.as_deref().map(Cursor::parse).transpose().map_err(tool_error)?;
            let page = contexts.list(caller, cursor, args.limit, None).await.map_err(tool_error)?;
            let mut out = json!({ "items": page.items });
            if let Some(next) = page.next_cursor {
                out["next_cursor"] = next.into();
            }
            Ok(ToolOutput::Value(out))
        }
    }
}

/// `context_get`: the served JSON of the latest version, or of a window of its history
/// with where that window sits (`history_length`, `history_start`, 1-based).
async fn get(contexts: &ContextService, caller: &Caller, args: ReadArgs) -> ToolResult {
    let window =
        HistoryWindow::from_query(args.last, args.after, args.limit).map_err(|e| format!("invalid arguments: {e}"))?;
    let cid = id(&args.context_id)?;
    let Some(window) = window else {
        let (_, bytes) = contexts.get_json(caller, cid).await.map_err(tool_error)?;
        return Ok(ToolOutput::Served(bytes));
    };
    let (_, body) = contexts.get_body(caller, cid).await.map_err(tool_error)?;
    let total = body.history_len();
    let range = window.range(total);
    let start = range.start + 1;
    with_fields(&body.window(range), &[("history_length", total), ("history_start", start)]).map(ToolOutput::Served)
}

/// Appends number fields to a serialized JSON object (before its closing brace).
fn with_fields(object: &[u8], fields: &[(&str, usize)]) -> Result<Bytes, String> {
    let Some(open) = object.strip_suffix(b"}") else {
        return Err(corrupt("a stored context is not a JSON object".into()));
    };
    let empty = open.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut out = BytesMut::with_capacity(object.len() + 48);
    out.put_slice(open);
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 || !empty {
            out.put_u8(b',');
        }
        out.put_slice(format!("\"{name}\":{value}").as_bytes());
    }
    out.put_u8(b'}');
    Ok(out.freeze())
}

/// `resources/read` of `context://<id>`: the context's served JSON as text. Errors name
/// the URI they are about (SEP-2164).
pub async fn read_resource(
    contexts: &ContextService,
    caller: Caller,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let about = |mut e: ErrorData| {
        e.data = Some(json!({ "uri": uri }));
        e
    };
    let raw = uri
        .strip_prefix(RESOURCE_SCHEME)
        .ok_or_else(|| about(ErrorData::invalid_params("resource URIs look like context://<id>", None)))?;
    let cid: ContextId = raw.parse().map_err(|m: String| about(ErrorData::invalid_params(m, None)))?;
    let caller = &caller.calling("resources/read");
    let (_, bytes) = contexts.get_json(caller, cid).await.map_err(|e| about(resource_error(e)))?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let mut contents = ResourceContents::text(text, uri.to_string());
    if let ResourceContents::TextResourceContents { mime_type, .. } = &mut contents {
        *mime_type = Some("application/json".into());
    }
    let mut result = ReadResourceResult::new(vec![contents]);
    uncacheable(&mut result.ttl_ms, &mut result.cache_scope);
    Ok(result)
}

/// Contexts change at any moment and access to them can be revoked: a listing or a
/// read is stale at once and belongs to its caller alone (SEP-2549: `ttlMs` 0,
/// `cacheScope` private). Subscriptions say when to read again.
pub fn uncacheable(ttl_ms: &mut Option<u64>, scope: &mut Option<CacheScope>) {
    *ttl_ms = Some(0);
    *scope = Some(CacheScope::Private);
}

/// The protocol error for a resource request that failed.
pub fn resource_error(e: Error) -> ErrorData {
    match e {
        Error::ContextNotFound(_) | Error::ContextDeleted(_) | Error::ContextExpired(_) | Error::NotFound { .. } => {
            ErrorData::resource_not_found(e.to_string(), None)
        }
        Error::InvalidField { .. } => ErrorData::invalid_params(e.to_string(), None),
        other => ErrorData::invalid_request(tool_error(other), None),
    }
}

/// What a tool reports for a refused or failed call (an `isError` result).
pub fn tool_error(e: Error) -> String {
    match &e {
        Error::Store(_) => {
            tracing::error!(error = %e, "MCP tool failed");
            "the database is unavailable; try again".into()
        }
        Error::InvalidField { .. }
        | Error::HistoryTooLong { .. }
        | Error::ContextTooLarge { .. }
        | Error::MessageTooLarge { .. } => format!("invalid arguments: {e}"),
        _ => e.to_string(),
    }
}

/// The tool error for stored JSON that cannot be served.
pub fn corrupt(detail: String) -> String {
    tool_error(Error::Store(StoreError::Corrupt(detail)))
}

/// Parses a tool's arguments. A mistake is a tool error the model can read and correct
/// (MCP: input validation errors are tool execution errors), not a protocol error.
fn arguments<T: serde::de::DeserializeOwned>(raw: Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(raw)).map_err(|e| format!("invalid arguments: {e}"))
}

fn id(raw: &str) -> Result<ContextId, String> {
    raw.parse::<ContextId>().map_err(|m| format!("invalid arguments: context_id {m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_appended_to_objects() {
        let out = with_fields(br#"{"a":1}"#, &[("n", 2), ("m", 3)]).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), json!({"a": 1, "n": 2, "m": 3}));
        let out = with_fields(b"{ }", &[("n", 2)]).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), json!({"n": 2}));
        assert!(with_fields(b"[1]", &[("n", 2)]).is_err());
    }
}
