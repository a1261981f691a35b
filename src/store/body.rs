//! A version's served JSON, put together from its stored parts: the head's fields, the
//! metadata snapshot (stored as serialized) and each message (stored as serialized, once).
//! The result is byte for byte what `serde_json` makes of the whole [`StoredContext`]
//! (a unit test holds it to that), so ETags, caches and clients see no difference from
//! the days when each version was one stored body.
//!
//! The layout records where each message sits, so a window of the history is cut from
//! the bytes without parsing them.

use std::ops::Range;

use bytes::Bytes;

use crate::domain::{ContextId, StoreError, StoredContext, Timestamp, Version};

/// Where the history's messages sit in a version's JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryLayout {
    /// The offset just after the history's `[`.
    pub open: usize,
    /// The offset of the history's `]`.
    pub close: usize,
    /// Each message's bytes, in order.
    pub spans: Vec<Range<usize>>,
}

/// A version as served, with its layout.
#[derive(Clone, Debug)]
pub struct Body {
    pub json: Bytes,
    pub layout: std::sync::Arc<HistoryLayout>,
}

/// The parts of a version besides its messages.
pub struct Parts<'a> {
    pub context_id: ContextId,
    /// `metadata` as serialized (a JSON object).
    pub metadata: &'a str,
    pub expires: Option<Timestamp>,
    pub version: Version,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The version's signature (docs/integrity.md), served last.
    pub signature: Option<&'a str>,
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("context body: {e}")))
}

/// Puts a version together from its parts and its serialized messages.
pub fn assemble<S: AsRef<str>>(parts: &Parts<'_>, messages: &[S]) -> Result<Body, StoreError> {
    let message_bytes: usize = messages.iter().map(|m| m.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(parts.metadata.len() + message_bytes + 200);
    out.push_str("{\"context_id\":");
    out.push_str(&json(&parts.context_id)?);
    out.push_str(",\"metadata\":");
    out.push_str(parts.metadata);
    out.push_str(",\"session\":{\"history\":[");
    let open = out.len();
    let mut spans = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let start = out.len();
        out.push_str(m.as_ref());
        spans.push(start..out.len());
    }
    let close = out.len();
    out.push_str("]}");
    if let Some(e) = parts.expires {
        out.push_str(",\"expires\":");
        out.push_str(&json(&e)?);
    }
    out.push_str(",\"version\":");
    out.push_str(&parts.version.0.to_string());
    out.push_str(",\"created_at\":");
    out.push_str(&json(&parts.created_at)?);
    out.push_str(",\"updated_at\":");
    out.push_str(&json(&parts.updated_at)?);
    if let Some(s) = parts.signature {
        out.push_str(",\"signature\":");
        out.push_str(&json(&s)?);
    }
    out.push('}');
    Ok(Body { json: Bytes::from(out), layout: std::sync::Arc::new(HistoryLayout { open, close, spans }) })
}

/// The body of a whole context, serialized the ordinary way (new contexts, tests).
pub fn of_context(ctx: &StoredContext) -> Result<Body, StoreError> {
    let metadata = json(&ctx.metadata)?;
    let messages = ctx.session.history.iter().map(json).collect::<Result<Vec<_>, _>>()?;
    let parts = Parts {
        context_id: ctx.context_id,
        metadata: &metadata,
        expires: ctx.expires,
        version: ctx.version,
        created_at: ctx.created_at,
        updated_at: ctx.updated_at,
        signature: ctx.signature.as_deref(),
    };
    assemble(&parts, &messages)
}

impl Body {
    /// The same version with only the messages in `range` (indexes into the history).
    pub fn window(&self, range: Range<usize>) -> Bytes {
        let l = &self.layout;
        let picked = &l.spans[range];
        let (Some(first), Some(last)) = (picked.first(), picked.last()) else {
            let mut out = Vec::with_capacity(self.json.len() - (l.close - l.open));
            out.extend_from_slice(&self.json[..l.open]);
            out.extend_from_slice(&self.json[l.close..]);
            return Bytes::from(out);
        };
        // Messages are contiguous: the window is one slice of the history.
        let mut out = Vec::with_capacity(l.open + (last.end - first.start) + (self.json.len() - l.close));
        out.extend_from_slice(&self.json[..l.open]);
        out.extend_from_slice(&self.json[first.start..last.end]);
        out.extend_from_slice(&self.json[l.close..]);
        Bytes::from(out)
    }

    /// The serialized messages in `range`.
    pub fn messages(&self, range: Range<usize>) -> impl Iterator<Item = &[u8]> {
        self.layout.spans[range].iter().map(|s| &self.json[s.clone()])
    }

    pub fn history_len(&self) -> usize {
        self.layout.spans.len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{ContextInput, Provenance};

    fn context(history: serde_json::Value, expires: Option<&str>) -> StoredContext {
        let mut input =
            json!({"metadata": {"z": 1, "a": {"é": [1.5, null, "\"q\""]}}, "session": {"history": history}});
        if let Some(e) = expires {
            input["expires"] = json!(e);
        }
        let input: ContextInput = serde_json::from_value(input).unwrap();
        let now = Timestamp::parse_rfc3339("2026-01-02T03:04:05.678Z").unwrap();
        let who = Provenance {
            principal: crate::domain::PrincipalId::new_random(),
            name: "agent-7".into(),
            kind: crate::domain::PrincipalKind::Agent,
            client_id: Some("ctxc_x".into()),
            act: vec!["a".into(), "b".into()],
            at: now,
        };
        input.into_new(ContextId::new_random(), now, Some(&who)).unwrap()
    }

    #[test]
    fn assembled_bytes_equal_serde_json() {
        for (history, expires) in [
            (json!([]), None),
            (json!([{"role": "user", "message": "hi ✓ \u{1}"}]), Some("2099-01-01T00:00:00Z")),
            (
                json!([{"role": "system", "message": "a"}, {"role": "assistant", "message": "b\nc"}]),
                Some("2099-06-01T12:00:00.5Z"),
            ),
        ] {
            let ctx = context(history, expires);
            let body = of_context(&ctx).unwrap();
            assert_eq!(body.json, serde_json::to_vec(&ctx).unwrap());
            assert_eq!(body.history_len(), ctx.session.history.len());
        }
    }

    #[test]
    fn windows_are_valid_contexts_with_the_chosen_messages() {
        let ctx = context(
            json!([{"role": "user", "message": "1"}, {"role": "user", "message": "2"}, {"role": "user", "message": "3"}]),
            None,
        );
        let body = of_context(&ctx).unwrap();
        for range in [0..0, 0..1, 1..3, 0..3, 3..3] {
            let cut: StoredContext = serde_json::from_slice(&body.window(range.clone())).unwrap();
            assert_eq!(cut.session.history, ctx.session.history[range.clone()]);
            assert_eq!(cut.metadata, ctx.metadata);
            let each: Vec<crate::domain::HistoryEntry> =
                body.messages(range.clone()).map(|m| serde_json::from_slice(m).unwrap()).collect();
            assert_eq!(each, ctx.session.history[range]);
        }
    }
}
