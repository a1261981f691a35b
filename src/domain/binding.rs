//! Context-bound credentials: a token that works only on named contexts and actions
//! (docs/policies.md, context-bound tokens). Requested as RFC 9396 `authorization_details`
//! of type `ctxguard_context`, carried in an access token as the `ctx` claim.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::ContextId;

/// The `type` of our RFC 9396 authorization details.
pub const DETAILS_TYPE: &str = "ctxguard_context";
/// Bounds on what one binding may name: it travels in every token.
pub const MAX_ENTRIES: usize = 10;
pub const MAX_CONTEXT_IDS: usize = 100;

/// What a binding may allow on a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextAction {
    Read,
    Inject,
    Write,
    Delete,
    Share,
}

impl ContextAction {
    pub const ALL: [ContextAction; 5] =
        [ContextAction::Read, ContextAction::Inject, ContextAction::Write, ContextAction::Delete, ContextAction::Share];

    pub fn as_str(self) -> &'static str {
        match self {
            ContextAction::Read => "read",
            ContextAction::Inject => "inject",
            ContextAction::Write => "write",
            ContextAction::Delete => "delete",
            ContextAction::Share => "share",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}; expected read, inject, write, delete or share"))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of context actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct ContextActions(u8);

impl ContextActions {
    pub fn contains(&self, a: ContextAction) -> bool {
        self.0 & a.bit() != 0
    }

    pub fn insert(&mut self, a: ContextAction) {
        self.0 |= a.bit();
    }

    pub fn is_subset_of(&self, other: &ContextActions) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = ContextAction> + '_ {
        ContextAction::ALL.into_iter().filter(|a| self.contains(*a))
    }
}

impl FromIterator<ContextAction> for ContextActions {
    fn from_iter<I: IntoIterator<Item = ContextAction>>(iter: I) -> Self {
        let mut set = Self::default();
        for a in iter {
            set.insert(a);
        }
        set
    }
}

impl Serialize for ContextActions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(ContextAction::as_str))
    }
}

impl<'de> Deserialize<'de> for ContextActions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().map(|n| ContextAction::parse(n)).collect::<Result<_, _>>().map_err(serde::de::Error::custom)
    }
}

/// One entry: these actions on these contexts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingEntry {
    pub context_ids: Vec<ContextId>,
    pub actions: ContextActions,
}

/// The contexts and actions a credential is limited to. An action is allowed on a
/// context when some entry names both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContextBinding(Vec<BindingEntry>);

impl ContextBinding {
    /// Checks the bounds and that nothing is empty; a binding that allows nothing
    /// would mint a useless token, which is almost certainly a client bug.
    pub fn new(entries: Vec<BindingEntry>) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("must name at least one context".into());
        }
        if entries.len() > MAX_ENTRIES {
            return Err(format!("at most {MAX_ENTRIES} entries"));
        }
        let ids: usize = entries.iter().map(|e| e.context_ids.len()).sum();
        if ids > MAX_CONTEXT_IDS {
            return Err(format!("at most {MAX_CONTEXT_IDS} context_ids in all"));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.context_ids.is_empty() {
                return Err(format!("[{i}].context_ids must not be empty"));
            }
            if e.actions == ContextActions::default() {
                return Err(format!("[{i}].actions must not be empty"));
            }
        }
        Ok(Self(entries))
    }

    /// Parses RFC 9396 `authorization_details` (a JSON array). Every element must be of
    /// type `ctxguard_context`; anything we do not understand is refused, never ignored.
    pub fn from_authorization_details(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        let Value::Array(items) = value else {
            return Err("must be a JSON array".into());
        };
        let mut entries = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let Value::Object(mut obj) = item else {
                return Err(format!("[{i}] must be an object"));
            };
            match obj.remove("type") {
                Some(Value::String(t)) if t == DETAILS_TYPE => {}
                Some(Value::String(t)) => {
                    return Err(format!("[{i}].type {t:?} is not supported; use {DETAILS_TYPE:?}"));
                }
                _ => return Err(format!("[{i}].type is missing")),
            }
            let entry: BindingEntry = serde_json::from_value(Value::Object(obj)).map_err(|e| format!("[{i}]: {e}"))?;
            entries.push(entry);
        }
        Self::new(entries)
    }

    /// The RFC 9396 form, for token responses and introspection.
    pub fn to_authorization_details(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|e| json!({"type": DETAILS_TYPE, "context_ids": e.context_ids, "actions": e.actions}))
                .collect(),
        )
    }

    pub fn allows(&self, id: ContextId, action: ContextAction) -> bool {
        self.0.iter().any(|e| e.actions.contains(action) && e.context_ids.contains(&id))
    }

    /// Whether the binding names the context at all (for any action).
    pub fn covers(&self, id: ContextId) -> bool {
        self.0.iter().any(|e| e.context_ids.contains(&id))
    }

    /// Whether everything `self` allows, `outer` allows too.
    pub fn is_within(&self, outer: &ContextBinding) -> bool {
        self.0.iter().all(|e| e.context_ids.iter().all(|id| e.actions.iter().all(|a| outer.allows(*id, a))))
    }

    pub fn entries(&self) -> &[BindingEntry] {
        &self.0
    }
}

impl fmt::Display for ContextBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let actions: Vec<&str> = e.actions.iter().map(ContextAction::as_str).collect();
            let ids: Vec<String> = e.context_ids.iter().map(ContextId::to_string).collect();
            write!(f, "{} on {}", actions.join(", "), ids.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "123e4567-e89b-42d3-a456-426614174000";
    const B: &str = "223e4567-e89b-42d3-a456-426614174000";

    fn details(v: Value) -> Result<ContextBinding, String> {
        ContextBinding::from_authorization_details(&v.to_string())
    }

    #[test]
    fn parses_and_answers() {
        let b =
            details(json!([{"type": "ctxguard_context", "context_ids": [A], "actions": ["read", "inject"]}])).unwrap();
        let a: ContextId = A.parse().unwrap();
        let other: ContextId = B.parse().unwrap();
        assert!(b.allows(a, ContextAction::Read) && b.allows(a, ContextAction::Inject));
        assert!(!b.allows(a, ContextAction::Delete));
        assert!(!b.allows(other, ContextAction::Read) && !b.covers(other));
        let round = ContextBinding::from_authorization_details(&b.to_authorization_details().to_string()).unwrap();
        assert_eq!(round, b);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for (bad, needle) in [
            (json!({}), "array"),
            (json!([{"context_ids": [A], "actions": ["read"]}]), "type is missing"),
            (json!([{"type": "payment", "context_ids": [A], "actions": ["read"]}]), "not supported"),
            (json!([{"type": DETAILS_TYPE, "context_ids": ["nope"], "actions": ["read"]}]), "UUID"),
            (json!([{"type": DETAILS_TYPE, "context_ids": [A], "actions": ["fly"]}]), "unknown action"),
            (
                json!([{"type": DETAILS_TYPE, "context_ids": [A], "actions": ["read"], "locations": []}]),
                "unknown field",
            ),
            (json!([{"type": DETAILS_TYPE, "context_ids": [], "actions": ["read"]}]), "must not be empty"),
            (json!([{"type": DETAILS_TYPE, "context_ids": [A], "actions": []}]), "must not be empty"),
            (json!([]), "at least one"),
        ] {
            let err = details(bad.clone()).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn subset_checks() {
        let wide =
            details(json!([{"type": DETAILS_TYPE, "context_ids": [A, B], "actions": ["read", "inject"]}])).unwrap();
        let narrow = details(json!([{"type": DETAILS_TYPE, "context_ids": [A], "actions": ["read"]}])).unwrap();
        let other_action = details(json!([{"type": DETAILS_TYPE, "context_ids": [A], "actions": ["delete"]}])).unwrap();
        assert!(narrow.is_within(&wide));
        assert!(!wide.is_within(&narrow));
        assert!(!other_action.is_within(&wide));
    }
}
