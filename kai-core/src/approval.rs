//! A ready hook that asks a human before chosen tools run.

use std::sync::Arc;

use crate::hook::{AgentHook, HookContext, ToolDecision};
use crate::message::ToolCall;

/// Which calls of a tool need approval: a predicate on the call's arguments.
type Predicate = Arc<dyn Fn(&serde_json::Value) -> bool + Send + Sync>;

/// Asks for a human's approval before chosen tools run, always or when their arguments say so.
///
/// Add one with [`AgentBuilder::hook`](crate::AgentBuilder::hook), or let
/// [`AgentBuilder::needs_approval`](crate::AgentBuilder::needs_approval) and
/// [`needs_approval_when`](crate::AgentBuilder::needs_approval_when) build it. A run that reaches such a
/// call suspends with [`Error::ApprovalRequired`](crate::Error::ApprovalRequired); decide with
/// [`RunState::approve`](crate::RunState::approve), [`approve_all`](crate::RunState::approve_all) or
/// [`reject_all`](crate::RunState::reject_all), then resume.
///
/// ```
/// use kai_core::ApprovalHook;
///
/// let hook = ApprovalHook::new()
///     .always("delete_file", "deleting files cannot be undone")
///     .when("transfer", "transfers above 100 need a second pair of eyes", |args| {
///         args["amount"].as_f64().is_some_and(|amount| amount > 100.0)
///     });
/// ```
#[derive(Clone, Default)]
pub struct ApprovalHook {
    rules: Vec<Rule>,
}

#[derive(Clone)]
struct Rule {
    tool: String,
    reason: String,
    applies: Option<Predicate>,
}

impl std::fmt::Debug for ApprovalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|rule| &rule.tool))
            .finish()
    }
}

impl ApprovalHook {
    /// A hook that asks for nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call of `tool` needs approval; the human is told `reason`.
    pub fn always(mut self, tool: impl Into<String>, reason: impl Into<String>) -> Self {
        self.rules.push(Rule {
            tool: tool.into(),
            reason: reason.into(),
            applies: None,
        });
        self
    }

    /// Calls of `tool` whose arguments satisfy `applies` need approval.
    pub fn when(
        mut self,
        tool: impl Into<String>,
        reason: impl Into<String>,
        applies: impl Fn(&serde_json::Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Rule {
            tool: tool.into(),
            reason: reason.into(),
            applies: Some(Arc::new(applies)),
        });
        self
    }

    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[crate::async_trait]
impl AgentHook for ApprovalHook {
    async fn before_tool(
        &self,
        _context: &HookContext,
        call: &ToolCall,
        arguments: &serde_json::Value,
    ) -> ToolDecision {
        let needed = self
            .rules
            .iter()
            .find(|rule| rule.tool == call.name && rule.applies.as_ref().is_none_or(|applies| applies(arguments)));
        match needed {
            Some(rule) => ToolDecision::RequireApproval {
                reason: rule.reason.clone(),
            },
            None => ToolDecision::Allow,
        }
    }
}
