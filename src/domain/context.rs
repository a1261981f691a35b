//! The OCP context object (see `docs/ocp-context.schema.json`) as stored and served,
//! and the input shapes accepted on create, replace, patch and append.

use std::fmt;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::revision::{ContextHead, NewMessages, Provenance, Revision, entries, serialized_len};
use super::{ContextId, Error, Timestamp, merge_patch};

/// The version of a context; every write makes a new, immutable one. `ETag: "v<n>"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub i64);

impl Version {
    pub const FIRST: Version = Version(1);

    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }

    pub fn etag(self) -> String {
        format!("\"v{}\"", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
}

impl MessageRole {
    /// The wire form (`user`, `assistant`, `system`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            "system" => Ok(Self::System),
            other => Err(format!("unknown role {other:?}; expected user, assistant or system")),
        }
    }
}

/// A message as a client sends it. A `provenance` member is accepted (so that a context
/// read can be written back) and ignored: provenance is the server's record.
#[derive(Clone, Debug, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: MessageRole,
    pub message: String,
    #[serde(default, rename = "provenance")]
    #[schema(ignore)]
    _provenance: Option<IgnoredAny>,
}

impl Message {
    pub fn new(role: MessageRole, message: impl Into<String>) -> Message {
        Message { role, message: message.into(), _provenance: None }
    }
}

/// A session as a client sends it.
#[derive(Clone, Debug, PartialEq, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub history: Vec<Message>,
}

/// A message as stored and served: what was sent, and who sent it. Members are declared
/// in RFC 8785 order, so that the stored bytes are the message's canonical JSON: the
/// history hash a signature covers is over exactly those bytes (`manifest.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    pub role: MessageRole,
}

/// A session as stored and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredSession {
    pub history: Vec<HistoryEntry>,
}

/// One stored version of a context, exactly as it is served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredContext {
    pub context_id: ContextId,
    pub metadata: Map<String, Value>,
    pub session: StoredSession,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    pub version: Version,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A JWS with detached payload over the version's manifest (docs/integrity.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl StoredContext {
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// Body of `POST /context` and `PUT /context/{id}`: an OCP context object.
///
/// Unknown top-level fields are refused (a typo must not silently drop data); the
/// server-assigned fields are accepted so that a client can send back what it read,
/// and are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    #[serde(default)]
    pub context_id: Option<ContextId>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    pub session: Session,
    #[serde(default)]
    pub expires: Option<Timestamp>,
    #[serde(default, rename = "version")]
    #[schema(ignore)]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "created_at")]
    #[schema(ignore)]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    #[schema(ignore)]
    _updated_at: Option<IgnoredAny>,
    #[serde(default, rename = "signature")]
    #[schema(ignore)]
    _signature: Option<IgnoredAny>,
}

/// Body of `POST /context/{id}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendInput {
    pub messages: Vec<Message>,
}

/// Limits that apply to every stored version, whichever operation produced it.
#[derive(Clone, Copy, Debug)]
pub struct ContextLimits {
    pub max_history: usize,
    /// The largest a version may be, serialized (metadata and history together).
    pub max_context_bytes: usize,
    /// The longest one message's text may be, in bytes.
    pub max_message_bytes: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits { max_history: 10_000, max_context_bytes: 4 << 20, max_message_bytes: 256 << 10 }
    }
}

impl ContextInput {
    /// An input built in code (the MCP tools) rather than parsed from a request body.
    pub fn new(
        context_id: Option<ContextId>,
        metadata: Option<Map<String, Value>>,
        history: Vec<Message>,
        expires: Option<Timestamp>,
    ) -> Self {
        Self {
            context_id,
            metadata,
            session: Session { history },
            expires,
            _version: None,
            _created_at: None,
            _updated_at: None,
            _signature: None,
        }
    }

    /// Builds the first version of a new context; its messages carry `provenance`.
    pub fn into_new(
        self,
        id: ContextId,
        now: Timestamp,
        provenance: Option<&Provenance>,
    ) -> Result<StoredContext, Error> {
        check_expires_in_future(self.expires, now)?;
        Ok(StoredContext {
            context_id: id,
            metadata: self.metadata.unwrap_or_default(),
            session: StoredSession { history: entries(self.session.history, provenance) },
            expires: self.expires,
            version: Version::FIRST,
            created_at: now,
            updated_at: now,
            signature: None,
        })
    }

    /// Builds the version that fully replaces `current`; every message of the new
    /// history is recorded as written by this request.
    pub fn into_replacement(
        self,
        current: &ContextHead,
        now: Timestamp,
        provenance: Option<&Provenance>,
    ) -> Result<Revision, Error> {
        if let Some(id) = self.context_id
            && id != current.context_id
        {
            return Err(Error::invalid("context_id", "does not match the context id in the path"));
        }
        check_expires_in_future(self.expires, now)?;
        let history = entries(self.session.history, provenance);
        Ok(Revision {
            head: ContextHead {
                context_id: current.context_id,
                metadata: self.metadata.unwrap_or_default(),
                expires: self.expires,
                version: current.version.next(),
                created_at: current.created_at,
                updated_at: now,
                history_len: history.len(),
                history_bytes: serialized_len(&history),
            },
            messages: NewMessages::Replace(history),
            metadata_changed: true,
        })
    }
}

/// Applies a JSON Merge Patch (RFC 7396) restricted to `metadata` and `expires`.
pub fn apply_patch(current: &ContextHead, patch: &Value, now: Timestamp) -> Result<Revision, Error> {
    let Value::Object(fields) = patch else {
        return Err(Error::invalid("body", "a merge patch must be a JSON object"));
    };
    let mut next = current.clone();
    for (key, value) in fields {
        match key.as_str() {
            "metadata" => match value {
                Value::Null => next.metadata.clear(),
                Value::Object(_) => {
                    let mut merged = Value::Object(std::mem::take(&mut next.metadata));
                    merge_patch::apply(&mut merged, value);
                    next.metadata = match merged {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                }
                _ => return Err(Error::invalid("metadata", "must be an object or null")),
            },
            "expires" => {
                next.expires = match value {
                    Value::Null => None,
                    Value::String(s) => Some(Timestamp::parse_rfc3339(s).map_err(|m| Error::invalid("expires", m))?),
                    _ => {
                        return Err(Error::invalid("expires", "must be an RFC 3339 string or null"));
                    }
                };
                check_expires_in_future(next.expires, now)?;
            }
            other => {
                return Err(Error::invalid(
                    other,
                    "is not patchable; PATCH changes only metadata and expires (use PUT or POST /messages)",
                ));
            }
        }
    }
    next.version = current.version.next();
    next.updated_at = now;
    Ok(Revision { head: next, messages: NewMessages::Keep, metadata_changed: true })
}

/// Appends messages (carrying `provenance`) to the history of `current`.
pub fn append_messages(
    current: &ContextHead,
    messages: Vec<Message>,
    now: Timestamp,
    provenance: Option<&Provenance>,
) -> Result<Revision, Error> {
    if messages.is_empty() {
        return Err(Error::invalid("messages", "must contain at least one message"));
    }
    let added = entries(messages, provenance);
    let mut next = current.clone();
    next.history_len += added.len();
    next.history_bytes += serialized_len(&added);
    next.version = current.version.next();
    next.updated_at = now;
    Ok(Revision { head: next, messages: NewMessages::Append(added), metadata_changed: false })
}

impl ContextLimits {
    /// Checks a version about to be stored by its head and the messages it adds.
    pub fn check(&self, head: &ContextHead, added: &[HistoryEntry]) -> Result<(), Error> {
        let context_id = head.context_id;
        if added.iter().any(|m| m.message.len() > self.max_message_bytes) {
            return Err(Error::MessageTooLarge { context_id, max: self.max_message_bytes });
        }
        if head.history_len > self.max_history {
            return Err(Error::HistoryTooLong { context_id, max: self.max_history });
        }
        if head.served_bytes() > self.max_context_bytes {
            return Err(Error::ContextTooLarge { context_id, max: self.max_context_bytes });
        }
        Ok(())
    }

    /// Checks a revision about to be stored.
    pub fn check_revision(&self, r: &Revision) -> Result<(), Error> {
        let added = match &r.messages {
            NewMessages::Keep => &[][..],
            NewMessages::Append(m) | NewMessages::Replace(m) => m,
        };
        self.check(&r.head, added)
    }
}

fn check_expires_in_future(expires: Option<Timestamp>, now: Timestamp) -> Result<(), Error> {
    match expires {
        Some(e) if e <= now => Err(Error::invalid("expires", "is in the past")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// A stored message's bytes are its RFC 8785 canonical JSON, whatever its text
        /// (the history hash a signature covers is over those bytes; docs/integrity.md).
        #[test]
        fn a_message_serializes_as_its_canonical_json(
            text in any::<String>(),
            name in any::<String>(),
            client in proptest::option::of(any::<String>()),
            act in proptest::collection::vec(any::<String>(), 0..3),
            ms in 0i64..4_000_000_000_000,
        ) {
            let entry = HistoryEntry {
                message: text,
                provenance: Some(Provenance {
                    act,
                    at: Timestamp::from_millis(ms),
                    client_id: client,
                    kind: crate::domain::PrincipalKind::Agent,
                    name,
                    principal: crate::domain::PrincipalId::new_random(),
                }),
                role: MessageRole::Assistant,
            };
            let ours = serde_json::to_string(&entry).unwrap();
            prop_assert_eq!(&ours, &serde_json_canonicalizer::to_string(&entry).unwrap());
            let bare = HistoryEntry { provenance: None, ..entry };
            prop_assert_eq!(serde_json::to_string(&bare).unwrap(), serde_json_canonicalizer::to_string(&bare).unwrap());
        }
    }

    fn sample() -> StoredContext {
        let input: ContextInput = serde_json::from_value(json!({
            "metadata": {"a": 1, "b": {"c": 2}},
            "session": {"history": [{"role": "user", "message": "hi"}]}
        }))
        .unwrap();
        input.into_new(ContextId::new_random(), Timestamp::from_millis(1_000), None).unwrap()
    }

    #[test]
    fn unknown_fields_and_roles_are_refused() {
        let unknown = serde_json::from_value::<ContextInput>(json!({"session": {"history": []}, "sesion": 1}));
        assert!(unknown.unwrap_err().to_string().contains("sesion"));
        let role = serde_json::from_value::<ContextInput>(
            json!({"session": {"history": [{"role": "robot", "message": "x"}]}}),
        );
        assert!(role.unwrap_err().to_string().contains("robot"));
    }

    #[test]
    fn client_sent_provenance_is_ignored() {
        let input: ContextInput = serde_json::from_value(json!({"session": {"history": [
            {"role": "user", "message": "hi", "provenance": {"principal": "forged", "name": "root"}}
        ]}}))
        .unwrap();
        let ctx = input.into_new(ContextId::new_random(), Timestamp::from_millis(1_000), None).unwrap();
        assert_eq!(ctx.session.history[0].provenance, None);
    }

    #[test]
    fn patch_merges_metadata_and_bumps_version() {
        let cur = ContextHead::of(&sample());
        let next =
            apply_patch(&cur, &json!({"metadata": {"a": null, "b": {"d": 3}}}), Timestamp::from_millis(2_000)).unwrap();
        assert_eq!(Value::Object(next.head.metadata.clone()), json!({"b": {"c": 2, "d": 3}}));
        assert_eq!(next.head.version, Version(2));
        assert_eq!(next.head.history_len, cur.history_len);
        assert_eq!(next.messages, NewMessages::Keep);
    }

    #[test]
    fn patch_refuses_session_and_past_expiry() {
        let cur = ContextHead::of(&sample());
        let now = Timestamp::from_millis(2_000);
        assert!(apply_patch(&cur, &json!({"session": {}}), now).is_err());
        assert!(apply_patch(&cur, &json!({"expires": "1970-01-01T00:00:00Z"}), now).is_err());
        assert!(apply_patch(&cur, &json!([1]), now).is_err());
    }

    #[test]
    fn replacement_keeps_id_and_creation_time() {
        let cur = ContextHead::of(&sample());
        let input: ContextInput = serde_json::from_value(json!({"session": {"history": []}, "version": 99})).unwrap();
        let next = input.into_replacement(&cur, Timestamp::from_millis(3_000), None).unwrap();
        assert_eq!(next.head.version, Version(2));
        assert_eq!(next.head.created_at, cur.created_at);
        assert_eq!(next.head.history_len, 0);
        let other: ContextInput = serde_json::from_value(json!({
            "context_id": ContextId::new_random(), "session": {"history": []}
        }))
        .unwrap();
        assert!(other.into_replacement(&cur, Timestamp::from_millis(3_000), None).is_err());
    }

    #[test]
    fn history_limit() {
        let limits = ContextLimits { max_history: 1, ..Default::default() };
        let cur = ContextHead::of(&sample());
        assert!(limits.check(&cur, &[]).is_ok());
        let next =
            append_messages(&cur, vec![Message::new(MessageRole::Assistant, "x")], Timestamp::from_millis(2_000), None)
                .unwrap();
        assert_eq!(next.head.history_len, 2);
        assert!(matches!(limits.check_revision(&next), Err(Error::HistoryTooLong { max: 1, .. })));
    }

    #[test]
    fn size_limits() {
        let limits = ContextLimits { max_history: 100, max_context_bytes: 2_000, max_message_bytes: 100 };
        let cur = ContextHead::of(&sample());
        let now = Timestamp::from_millis(2_000);
        let long = append_messages(&cur, vec![Message::new(MessageRole::User, "x".repeat(101))], now, None).unwrap();
        assert!(matches!(limits.check_revision(&long), Err(Error::MessageTooLarge { max: 100, .. })));
        let fits = append_messages(&cur, vec![Message::new(MessageRole::User, "x".repeat(100))], now, None).unwrap();
        assert!(limits.check_revision(&fits).is_ok());
        assert_eq!(fits.head.history_bytes, cur.history_bytes + r#"{"role":"user","message":""}"#.len() + 100);
        let mut grown = ContextHead { ..fits.head.clone() };
        for _ in 0..20 {
            grown =
                append_messages(&grown, vec![Message::new(MessageRole::User, "y".repeat(90))], now, None).unwrap().head;
        }
        assert!(matches!(limits.check(&grown, &[]), Err(Error::ContextTooLarge { max: 2_000, .. })));
        let mut fat = cur.clone();
        fat.metadata.insert("blob".into(), Value::String("z".repeat(3_000)));
        assert!(matches!(limits.check(&fat, &[]), Err(Error::ContextTooLarge { .. })), "metadata counts too");
    }
}
