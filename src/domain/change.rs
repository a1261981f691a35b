//! What subscribers hear about a context: that it was created, changed or deleted.
//! The kind decides the notification — a resource update for every change, a list
//! change when the set of contexts changed (MCP `subscriptions/listen`).

use super::{ContextId, TenantId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(ChangeKind::Created),
            "updated" => Some(ChangeKind::Updated),
            "deleted" => Some(ChangeKind::Deleted),
            _ => None,
        }
    }

    /// Whether the set of contexts changed (not only one context's content).
    pub fn changes_the_list(self) -> bool {
        matches!(self, ChangeKind::Created | ChangeKind::Deleted)
    }
}

/// A committed change to one context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextChange {
    pub tenant: TenantId,
    pub context_id: ContextId,
    pub kind: ChangeKind,
}
