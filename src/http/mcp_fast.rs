//! The stateless fast path of `/mcp`: plain MCP 2026-07-28 request/response calls —
//! `tools/call`, `tools/list`, `resources/read`, `server/discover` — answered directly.
//!
//! Through rmcp, every stateless request builds a server instance, spawns a task, wires
//! a one-shot channel transport and a cancellation-token tree, parses the body into
//! rmcp's model (after the `/mcp` guard has already parsed it once for its scope check)
//! and turns a stored context into a JSON tree and back. Here the guard's one parse
//! yields a [`FastCall`], the call runs the same code as rmcp's handlers
//! ([`crate::mcp::calls`]) and a stored context's bytes go into the answer as they are.
//!
//! The rule that keeps the two paths one protocol: a request is taken only when it is
//! unambiguous and valid — every header the transport checks (Host, Origin, Accept,
//! Content-Type, `MCP-Protocol-Version`, SEP-2243 `Mcp-Method`/`Mcp-Name`) is present,
//! single and plain, the body has exactly the fields of its method and a complete
//! 2026-07-28 `_meta`. Anything else, including every request that should be refused,
//! goes to rmcp, which stays the implementation of sessions, streams, notifications and
//! errors. Results are built with rmcp's own model types (the served-context splice is
//! unit-tested against them), and `tests/it/mcp_fast.rs` checks answers against rmcp's
//! for the same requests.

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolResult, ContentBlock, DiscoverResult, ErrorCode, ProtocolVersion, RequestId, RequestMetaObject,
    ServerJsonRpcMessage, ServerResult,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::authn::Caller;
use crate::authz::Action;
use crate::mcp::calls::{self, ToolOutput};
use crate::mcp::catalog::{Tool, method_action};
use crate::mcp::tools::ContextTools;
use crate::service::ContextService;

/// The one protocol revision the fast path speaks.
const VERSION: &str = "2026-07-28";

/// What the fast path needs, built once with the `/mcp` edge.
pub struct FastPath {
    contexts: ContextService,
    gate: Gate,
    /// `tools/list` and `server/discover` results: fixed for a running server.
    tools_list: Bytes,
    discover: Bytes,
}

/// A request the fast path answers, parsed once.
#[derive(Debug)]
pub struct FastCall {
    id: RequestId,
    call: Call,
}

#[derive(Debug)]
enum Call {
    Tool(Tool, Map<String, Value>),
    ListTools,
    ReadResource(String),
    Discover,
}

/// A JSON-RPC request as the fast path accepts it: no field it does not know.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    jsonrpc: String,
    id: RequestId,
    method: String,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(rename = "_meta")]
    meta: RequestMetaObject,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    #[serde(default)]
    uri: Option<String>,
}

impl FastCall {
    /// The tool or method, as the audit log names the way in.
    pub fn name(&self) -> &'static str {
        match &self.call {
            Call::Tool(tool, _) => tool.name(),
            Call::ReadResource(_) => "resources/read",
            Call::ListTools => "tools/list",
            Call::Discover => "server/discover",
        }
    }

    /// The action this call performs, for the guard's scope check.
    pub fn action(&self) -> Option<Action> {
        match &self.call {
            Call::Tool(tool, _) => Some(tool.action()),
            Call::ReadResource(_) => method_action("resources/read"),
            Call::ListTools | Call::Discover => None,
        }
    }
}

impl FastPath {
    /// `allowed_hosts` is the list rmcp is configured with.
    pub fn new(contexts: ContextService, tools: &ContextTools, allowed_hosts: &[String]) -> anyhow::Result<FastPath> {
        let discover =
            DiscoverResult::from_server_info(tools.supported_protocol_versions().into_owned(), tools.get_info());
        Ok(FastPath {
            contexts,
            gate: Gate::new(allowed_hosts),
            tools_list: serde_json::to_vec(&ContextTools::catalog())?.into(),
            discover: serde_json::to_vec(&discover)?.into(),
        })
    }

    /// The request as a [`FastCall`] when the fast path answers it exactly as rmcp
    /// would; `None` hands it to rmcp.
    pub fn take(&self, parts: &Parts, body: &[u8]) -> Option<FastCall> {
        self.gate.take(parts, body)
    }

    /// Answers a call for `caller` (authenticated and scope-checked by the guard).
    pub async fn answer(&self, caller: Caller, call: FastCall) -> Response {
        let FastCall { id, call } = call;
        let body = match call {
            Call::ListTools => splice(&id, &self.tools_list),
            Call::Discover => splice(&id, &self.discover),
            Call::Tool(tool, arguments) => match calls::call(&self.contexts, caller, tool, arguments).await {
                Ok(ToolOutput::Served(json)) => match std::str::from_utf8(&json) {
                    Ok(text) => structured_served(&id, text),
                    Err(e) => message(ServerJsonRpcMessage::response(tool_error(calls::corrupt(e.to_string())), id)),
                },
                Ok(ToolOutput::Value(v)) => message(ServerJsonRpcMessage::response(
                    ServerResult::CallToolResult(CallToolResult::structured(v)),
                    id,
                )),
                Err(text) => message(ServerJsonRpcMessage::response(tool_error(text), id)),
            },
            Call::ReadResource(uri) => match calls::read_resource(&self.contexts, caller, &uri).await {
                Ok(result) => message(ServerJsonRpcMessage::response(ServerResult::ReadResourceResult(result), id)),
                Err(mut e) => {
                    // What rmcp tells 2026-07-28 peers for a missing resource.
                    if e.code == ErrorCode::RESOURCE_NOT_FOUND {
                        e.code = ErrorCode::INVALID_PARAMS;
                    }
                    message(ServerJsonRpcMessage::error(e, Some(id)))
                }
            },
        };
        match body {
            Ok(bytes) => {
                (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], bytes).into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an MCP answer");
                super::error::HttpError::Internal.into_response()
            }
        }
    }
}

/// Which requests the fast path takes.
struct Gate {
    /// The Host values rmcp accepts (DNS-rebinding protection), parsed.
    hosts: Vec<(String, Option<u16>)>,
}

impl Gate {
    fn new(allowed_hosts: &[String]) -> Gate {
        Gate { hosts: allowed_hosts.iter().filter_map(|h| authority(h)).collect() }
    }

    fn take(&self, parts: &Parts, body: &[u8]) -> Option<FastCall> {
        if parts.method != Method::POST || !self.plain_headers(&parts.headers) {
            return None;
        }
        let envelope: Envelope = serde_json::from_slice(body).ok()?;
        let Envelope { jsonrpc, id, method, params } = envelope;
        if jsonrpc != "2.0"
            || params.meta.protocol_version() != Some(ProtocolVersion::V_2026_07_28)
            || !params.meta.missing_required_keys(&ProtocolVersion::V_2026_07_28).is_empty()
            || single(&parts.headers, "mcp-method")? != method
        {
            return None;
        }
        let named =
            |expected: &str| single(&parts.headers, "mcp-name").is_some_and(|h| h == expected && !h.starts_with("=?"));
        let call = match (method.as_str(), params) {
            ("tools/call", Params { name: Some(name), arguments: Some(arguments), uri: None, .. }) if named(&name) => {
                Call::Tool(Tool::named(&name)?, arguments)
            }
            ("resources/read", Params { uri: Some(uri), name: None, arguments: None, .. }) if named(&uri) => {
                Call::ReadResource(uri)
            }
            ("tools/list", Params { name: None, arguments: None, uri: None, .. }) => Call::ListTools,
            ("server/discover", Params { name: None, arguments: None, uri: None, .. }) => Call::Discover,
            _ => return None,
        };
        Some(FastCall { id, call })
    }

    /// The transport's checks, passed only by a request rmcp would accept on them.
    fn plain_headers(&self, headers: &HeaderMap) -> bool {
        !headers.contains_key("mcp-session-id")
            && !headers.contains_key(header::ORIGIN)
            && single(headers, "mcp-protocol-version") == Some(VERSION)
            && !headers.keys().any(|k| k.as_str().starts_with("mcp-param-"))
            && single(headers, header::CONTENT_TYPE.as_str()).is_some_and(|v| essence(v).eq_ignore_ascii_case(JSON))
            && accepts_json_and_sse(headers)
            && single(headers, header::HOST.as_str()).and_then(authority).is_some_and(|(host, port)| {
                self.hosts.iter().any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
            })
    }
}

const JSON: &str = "application/json";

fn tool_error(text: String) -> ServerResult {
    ServerResult::CallToolResult(CallToolResult::error(vec![ContentBlock::text(text)]))
}

fn message(m: ServerJsonRpcMessage) -> serde_json::Result<Bytes> {
    serde_json::to_vec(&m).map(Bytes::from)
}

/// `{"jsonrpc":"2.0","id":…,"result":<result>}` around an already serialized result.
fn splice(id: &RequestId, result: &[u8]) -> serde_json::Result<Bytes> {
    let mut out = envelope_start(id, result.len())?;
    out.put_slice(result);
    out.put_u8(b'}');
    Ok(out.freeze())
}

fn envelope_start(id: &RequestId, capacity: usize) -> serde_json::Result<BytesMut> {
    let mut out = BytesMut::with_capacity(capacity + 64).writer();
    out.get_mut().put_slice(br#"{"jsonrpc":"2.0","id":"#);
    serde_json::to_writer(&mut out, id)?;
    out.get_mut().put_slice(br#","result":"#);
    Ok(out.into_inner())
}

/// The answer of a tool whose result is a served context: what
/// `CallToolResult::structured` makes of it (the JSON as text content and as
/// structured content), with the stored bytes written as they are.
fn structured_served(id: &RequestId, json: &str) -> serde_json::Result<Bytes> {
    let mut out = envelope_start(id, 2 * json.len() + 96)?.writer();
    out.get_mut().put_slice(br#"{"resultType":"complete","content":[{"type":"text","text":"#);
    serde_json::to_writer(&mut out, json)?;
    out.get_mut().put_slice(br#"}],"structuredContent":"#);
    out.get_mut().put_slice(json.as_bytes());
    out.get_mut().put_slice(br#","isError":false}}"#);
    Ok(out.into_inner().freeze())
}

/// The value of a header that is present exactly once, as text.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// Both media types named without weights (a weighted Accept is left to rmcp's parser).
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { return false };
        for item in value.split(',') {
            if item.contains(';') {
                return false;
            }
            json |= item.trim().eq_ignore_ascii_case(JSON);
            sse |= item.trim().eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

/// A host with its port, normalised as rmcp compares them.
fn authority(value: &str) -> Option<(String, Option<u16>)> {
    let a = axum::http::uri::Authority::try_from(value.trim()).ok()?;
    Some((a.host().trim_matches(['[', ']']).to_ascii_lowercase(), a.port_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn a_served_context_is_answered_as_rmcp_answers_structured_content() {
        let served =
            r#"{"context_id":"x","metadata":{"note":"a \"quoted\" line\nand \u00e9"},"session":{"history":[]}}"#;
        for id in [RequestId::Number(7), RequestId::String("a\"b".into())] {
            let ours = structured_served(&id, served).unwrap();
            let rmcp = serde_json::to_vec(&ServerJsonRpcMessage::response(
                ServerResult::CallToolResult(CallToolResult::structured(parsed(served.as_bytes()))),
                id.clone(),
            ))
            .unwrap();
            let (mut ours, mut rmcp) = (parsed(&ours), parsed(&rmcp));
            // The text is the same JSON; rmcp writes it from a tree (key order may differ).
            let text = |v: &mut Value| parsed(v["result"]["content"][0]["text"].take().as_str().unwrap().as_bytes());
            assert_eq!(text(&mut ours), text(&mut rmcp));
            assert_eq!(ours, rmcp);
        }
    }

    #[test]
    fn fixed_results_are_spliced_into_the_envelope() {
        let result = ServerResult::CallToolResult(CallToolResult::structured(json!({"a": [1, 2]})));
        let id = RequestId::Number(-3);
        let ours = splice(&id, &serde_json::to_vec(&result).unwrap()).unwrap();
        let rmcp = serde_json::to_vec(&ServerJsonRpcMessage::response(result, id)).unwrap();
        assert_eq!(parsed(&ours), parsed(&rmcp));
    }

    const ID: &str = "6f1c2a4e-1b7d-4c1e-9d2f-2b1c3d4e5f60";

    fn get_call() -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "context_get", "arguments": {"context_id": ID},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}})
    }

    fn headers(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("host", "127.0.0.1:8700".to_string()),
            ("content-type", "application/json".to_string()),
            ("accept", "application/json, text/event-stream".to_string()),
            ("mcp-protocol-version", "2026-07-28".to_string()),
            ("mcp-method", method.to_string()),
        ];
        if let Some(n) = name {
            h.push(("mcp-name", n.to_string()));
        }
        h
    }

    fn taken(headers: &[(&str, String)], body: &Value) -> Option<FastCall> {
        let mut req = axum::http::Request::post("/mcp");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        Gate::new(&["localhost".into(), "127.0.0.1".into(), "ctx.example:8443".into()])
            .take(&parts, body.to_string().as_bytes())
    }

    #[test]
    fn plain_stateless_calls_are_taken() {
        let call = taken(&headers("tools/call", Some("context_get")), &get_call()).expect("taken");
        assert!(matches!(call.call, Call::Tool(Tool::Get, _)));
        assert_eq!(call.action(), Some(Action::Read));
        let meta = get_call()["params"]["_meta"].clone();
        for (method, params, name) in [
            ("tools/list", json!({"_meta": meta}), None),
            ("server/discover", json!({"_meta": meta}), None),
            (
                "resources/read",
                json!({"_meta": meta, "uri": format!("context://{ID}")}),
                Some(format!("context://{ID}")),
            ),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": "x", "method": method, "params": params});
            assert!(taken(&headers(method, name.as_deref()), &body).is_some(), "{method}");
        }
        let mut h = headers("tools/call", Some("context_get"));
        h[0].1 = "ctx.example:8443".into();
        assert!(taken(&h, &get_call()).is_some(), "the public host");
    }

    /// Everything the transport would refuse or treat otherwise is left to rmcp.
    #[test]
    fn anything_else_is_left_to_rmcp() {
        let plain = headers("tools/call", Some("context_get"));
        let with = |name: &'static str, value: &str| {
            let mut h: Vec<_> = plain.iter().filter(|(k, _)| *k != name).cloned().collect();
            h.push((name, value.to_string()));
            h
        };
        let without = |name: &str| plain.iter().filter(|(k, _)| *k != name).cloned().collect::<Vec<_>>();
        let mut twice = plain.clone();
        twice.push(("mcp-name", "context_get".into()));
        let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("a session", with("mcp-session-id", "abc")),
            ("an Origin", with("origin", "http://127.0.0.1:8700")),
            ("a foreign Host", with("host", "evil.example")),
            ("the public host on another port", with("host", "ctx.example:9000")),
            ("a 2025 version", with("mcp-protocol-version", "2025-06-18")),
            ("no version header", without("mcp-protocol-version")),
            ("no Mcp-Method", without("mcp-method")),
            ("another Mcp-Method", with("mcp-method", "tools/list")),
            ("no Mcp-Name", without("mcp-name")),
            ("another Mcp-Name", with("mcp-name", "context_list")),
            ("an encoded Mcp-Name", with("mcp-name", "=?base64?Y29udGV4dF9nZXQ=?=")),
            ("a duplicate Mcp-Name", twice),
            ("an Mcp-Param header", with("mcp-param-x", "1")),
            ("weighted Accept", with("accept", "application/json;q=0.5, text/event-stream")),
            ("JSON only", with("accept", "application/json")),
            ("a form body", with("content-type", "application/x-www-form-urlencoded")),
        ];
        for (what, h) in cases {
            assert!(taken(&h, &get_call()).is_none(), "{what}");
        }
        let body = |edit: &dyn Fn(&mut Value)| {
            let mut b = get_call();
            edit(&mut b);
            b
        };
        let bodies: Vec<(&str, Value)> = vec![
            ("jsonrpc 1.0", body(&|b| b["jsonrpc"] = "1.0".into())),
            ("a notification", body(&|b| drop(b.as_object_mut().unwrap().remove("id")))),
            ("a float id", body(&|b| b["id"] = 1.5.into())),
            ("an unknown top-level field", body(&|b| b["extra"] = 1.into())),
            ("an unknown param", body(&|b| b["params"]["task"] = json!({}))),
            ("no arguments", body(&|b| drop(b["params"].as_object_mut().unwrap().remove("arguments")))),
            ("arguments not an object", body(&|b| b["params"]["arguments"] = json!([1]))),
            ("an unknown tool", body(&|b| b["params"]["name"] = "nope".into())),
            ("no _meta", body(&|b| drop(b["params"].as_object_mut().unwrap().remove("_meta")))),
            (
                "a 2025 _meta",
                body(&|b| b["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2025-06-18".into()),
            ),
            (
                "no capabilities",
                body(&|b| {
                    drop(
                        b["params"]["_meta"]
                            .as_object_mut()
                            .unwrap()
                            .remove("io.modelcontextprotocol/clientCapabilities"),
                    )
                }),
            ),
            ("a batch", json!([get_call()])),
        ];
        for (what, b) in bodies {
            let name = b["params"]["name"].as_str().unwrap_or("context_get").to_string();
            assert!(taken(&with("mcp-name", &name), &b).is_none(), "{what}");
        }
        let meta = get_call()["params"]["_meta"].clone();
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta, "cursor": "c"}});
        assert!(taken(&headers("tools/list", None), &list).is_none(), "a cursor");
        let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {"_meta": meta}});
        assert!(taken(&headers("subscriptions/listen", None), &listen).is_none(), "another method");
    }

    #[test]
    fn accept_headers_are_taken_only_when_plain() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            accepts_json_and_sse(&h)
        };
        assert!(with("application/json, text/event-stream"));
        assert!(with("Text/Event-Stream,application/JSON"));
        assert!(!with("application/json"));
        assert!(!with("application/json;q=0, text/event-stream"));
        assert!(!with("*/*"));
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(authority("LOCALHOST:8080"), Some(("localhost".into(), Some(8080))));
        assert_eq!(authority("[::1]:80"), Some(("::1".into(), Some(80))));
        assert_eq!(authority("example.com"), Some(("example.com".into(), None)));
        assert_eq!(authority("bad host"), None);
    }
}
