//! What the MCP server offers, by name: its tools with the action each performs (the
//! `/mcp` edge takes the scope a call needs from it, the same `Action` table HTTP routes
//! authorize with) and the `context://` resource scheme.

use crate::authz::Action;
use crate::domain::ContextId;

/// The scheme of context resource URIs: `context://<id>`.
pub const RESOURCE_SCHEME: &str = "context://";

/// The resource URI of a context.
pub fn resource_uri(id: ContextId) -> String {
    format!("{RESOURCE_SCHEME}{id}")
}

/// Every tool, with the action it performs: the `/mcp` edge derives the scope a call
/// needs from [`Tool::action`], the same table HTTP routes use, and a tool added to the
/// router without a variant here fails `every_routed_tool_has_an_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Get,
    Create,
    Append,
    Delete,
    List,
}

impl Tool {
    pub const ALL: [Tool; 5] = [Tool::Get, Tool::Create, Tool::Append, Tool::Delete, Tool::List];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Get => "context_get",
            Tool::Create => "context_create",
            Tool::Append => "context_append",
            Tool::Delete => "context_delete",
            Tool::List => "context_list",
        }
    }

    pub fn action(self) -> Action {
        match self {
            Tool::Get => Action::Read,
            Tool::Create => Action::Create,
            Tool::Append => Action::Inject,
            Tool::Delete => Action::Delete,
            Tool::List => Action::List,
        }
    }

    pub fn named(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The action of an MCP request method other than `tools/call` (resources are read;
/// a subscription reads what changed).
pub fn method_action(method: &str) -> Option<Action> {
    match method {
        "resources/list" | "resources/templates/list" => Some(Action::List),
        "resources/read" | "resources/subscribe" | "subscriptions/listen" => Some(Action::Read),
        _ => None,
    }
}
