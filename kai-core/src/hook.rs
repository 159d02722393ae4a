//! Hooks: code that runs around every model call and tool call of an agent.
//!
//! Approval, consent checks, audit logs, metrics and guardrails all plug in here. Hooks compose: they
//! run in the order they were added; for tool calls, a rewrite is seen by the hooks after it, and the
//! first denial or approval request wins.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::RunState;
use crate::error::Error;
use crate::marker::{MaybeSend, MaybeSync};
use crate::message::{ToolCall, ToolResult};
use crate::request::{ChatRequest, ChatResponse};

/// What a hook decides about a tool call before it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ToolDecision {
    /// Run it (with the arguments as they stand).
    Allow,
    /// Do not run it; the model is told why and can carry on.
    Deny {
        /// The reason, shown to the model.
        reason: String,
    },
    /// Run it with these arguments instead.
    Rewrite {
        /// The new arguments.
        arguments: serde_json::Value,
    },
    /// Suspend the run until a human approves or rejects the call. The run ends with
    /// [`Error::ApprovalRequired`] and a [`RunState`] that can be stored, approved with
    /// [`RunState::approve`] and resumed, in this process or another.
    RequireApproval {
        /// Why approval is needed, for the human.
        reason: String,
    },
}

/// Where in a run a hook is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookContext {
    /// The agent's name.
    pub agent: Arc<str>,
    /// The current step, counted from 1.
    pub step: u32,
}

/// Code that runs around model and tool calls. Every method has a default that does nothing.
///
/// Implement it with [`async_trait`](crate::async_trait):
///
/// ```
/// use kai_core::{AgentHook, HookContext, ToolCall, ToolDecision, async_trait};
///
/// /// Refuses every call to `delete_file`.
/// struct NoDeletes;
///
/// #[async_trait]
/// impl AgentHook for NoDeletes {
///     async fn before_tool(&self, _context: &HookContext, call: &ToolCall, _arguments: &serde_json::Value) -> ToolDecision {
///         if call.name == "delete_file" {
///             ToolDecision::Deny { reason: "deleting files is not allowed".into() }
///         } else {
///             ToolDecision::Allow
///         }
///     }
/// }
/// ```
#[crate::async_trait]
pub trait AgentHook: MaybeSend + MaybeSync {
    /// Before each model call; may change the request (add context, redact). An error stops the run.
    async fn before_model(&self, context: &HookContext, request: &mut ChatRequest) -> Result<(), Error> {
        let _ = (context, request);
        Ok(())
    }

    /// After each model call; may change the response (guardrails). An error stops the run.
    async fn after_model(&self, context: &HookContext, response: &mut ChatResponse) -> Result<(), Error> {
        let _ = (context, response);
        Ok(())
    }

    /// Before each tool call, with the parsed arguments (after earlier hooks' rewrites).
    ///
    /// Every hook decides before an approval is checked, and all of them decide again when a run
    /// suspended for approval resumes: the human approves the arguments after every rewrite, and the
    /// approval holds only if the rewrites come out the same. A hook that rewrites with something new
    /// each time (a timestamp, a nonce) makes an approved call wait for approval again.
    async fn before_tool(&self, context: &HookContext, call: &ToolCall, arguments: &serde_json::Value) -> ToolDecision {
        let _ = (context, call, arguments);
        ToolDecision::Allow
    }

    /// After each tool call, failures and denials included; may change the result the model sees.
    /// `call` holds the arguments the tool ran with, after any [`ToolDecision::Rewrite`].
    async fn after_tool(&self, context: &HookContext, call: &ToolCall, result: &mut ToolResult) {
        let _ = (context, call, result);
    }

    /// Whenever the run reaches a consistent point (after each model call, after each tool result,
    /// when it suspends for approval, and at the end): store `state` here to make the run durable. An
    /// error stops the run.
    ///
    /// While an agent used as a tool runs, the state also comes with that inner run's progress as a
    /// suspended call, each time the inner run checkpoints. A cancel or timeout may drop this future
    /// mid-way: write so that a store keeps either the old state or the new one (a transaction, or a
    /// temporary file renamed over the old).
    async fn checkpoint(&self, state: &RunState) -> Result<(), Error> {
        let _ = state;
        Ok(())
    }
}

#[crate::async_trait]
impl<T: AgentHook + ?Sized> AgentHook for Arc<T> {
    async fn before_model(&self, context: &HookContext, request: &mut ChatRequest) -> Result<(), Error> {
        (**self).before_model(context, request).await
    }
    async fn after_model(&self, context: &HookContext, response: &mut ChatResponse) -> Result<(), Error> {
        (**self).after_model(context, response).await
    }
    async fn before_tool(&self, context: &HookContext, call: &ToolCall, arguments: &serde_json::Value) -> ToolDecision {
        (**self).before_tool(context, call, arguments).await
    }
    async fn after_tool(&self, context: &HookContext, call: &ToolCall, result: &mut ToolResult) {
        (**self).after_tool(context, call, result).await;
    }
    async fn checkpoint(&self, state: &RunState) -> Result<(), Error> {
        (**self).checkpoint(state).await
    }
}

const _: Option<&dyn AgentHook> = None;
