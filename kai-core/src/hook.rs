//! Hooks: code that runs around every model call and tool call of an agent.
//!
//! Approval, consent checks, audit logs, metrics and guardrails all plug in here. Hooks compose: they
//! run in the order they were added; for tool calls, a rewrite is seen by the hooks after it, and the
//! first denial or approval request wins.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::RunState;
use crate::error::Error;
use crate::marker::{BoxFuture, MaybeSend, MaybeSync, boxed};
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
/// ```
/// use kai_core::{AgentHook, BoxFuture, HookContext, ToolCall, ToolDecision, boxed};
///
/// /// Refuses every call to `delete_file`.
/// struct NoDeletes;
///
/// impl AgentHook for NoDeletes {
///     fn before_tool<'a>(
///         &'a self,
///         _context: &'a HookContext,
///         call: &'a ToolCall,
///         _arguments: &'a serde_json::Value,
///     ) -> BoxFuture<'a, ToolDecision> {
///         boxed(async move {
///             if call.name == "delete_file" {
///                 ToolDecision::Deny { reason: "deleting files is not allowed".into() }
///             } else {
///                 ToolDecision::Allow
///             }
///         })
///     }
/// }
/// ```
pub trait AgentHook: MaybeSend + MaybeSync {
    /// Before each model call; may change the request (add context, redact). An error stops the run.
    fn before_model<'a>(
        &'a self,
        context: &'a HookContext,
        request: &'a mut ChatRequest,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (context, request);
        boxed(std::future::ready(Ok(())))
    }

    /// After each model call; may change the response (guardrails). An error stops the run.
    fn after_model<'a>(
        &'a self,
        context: &'a HookContext,
        response: &'a mut ChatResponse,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (context, response);
        boxed(std::future::ready(Ok(())))
    }

    /// Before each tool call, with the parsed arguments (after earlier hooks' rewrites).
    fn before_tool<'a>(
        &'a self,
        context: &'a HookContext,
        call: &'a ToolCall,
        arguments: &'a serde_json::Value,
    ) -> BoxFuture<'a, ToolDecision> {
        let _ = (context, call, arguments);
        boxed(std::future::ready(ToolDecision::Allow))
    }

    /// After each tool call, failures and denials included; may change the result the model sees.
    fn after_tool<'a>(
        &'a self,
        context: &'a HookContext,
        call: &'a ToolCall,
        result: &'a mut ToolResult,
    ) -> BoxFuture<'a, ()> {
        let _ = (context, call, result);
        boxed(std::future::ready(()))
    }

    /// Whenever the run reaches a consistent point (after each model call, after each batch of tool
    /// results, and at the end): store `state` here to make the run durable. An error stops the run.
    fn checkpoint<'a>(&'a self, state: &'a RunState) -> BoxFuture<'a, Result<(), Error>> {
        let _ = state;
        boxed(std::future::ready(Ok(())))
    }
}

impl<T: AgentHook + ?Sized> AgentHook for Arc<T> {
    fn before_model<'a>(
        &'a self,
        context: &'a HookContext,
        request: &'a mut ChatRequest,
    ) -> BoxFuture<'a, Result<(), Error>> {
        (**self).before_model(context, request)
    }
    fn after_model<'a>(
        &'a self,
        context: &'a HookContext,
        response: &'a mut ChatResponse,
    ) -> BoxFuture<'a, Result<(), Error>> {
        (**self).after_model(context, response)
    }
    fn before_tool<'a>(
        &'a self,
        context: &'a HookContext,
        call: &'a ToolCall,
        arguments: &'a serde_json::Value,
    ) -> BoxFuture<'a, ToolDecision> {
        (**self).before_tool(context, call, arguments)
    }
    fn after_tool<'a>(
        &'a self,
        context: &'a HookContext,
        call: &'a ToolCall,
        result: &'a mut ToolResult,
    ) -> BoxFuture<'a, ()> {
        (**self).after_tool(context, call, result)
    }
    fn checkpoint<'a>(&'a self, state: &'a RunState) -> BoxFuture<'a, Result<(), Error>> {
        (**self).checkpoint(state)
    }
}

const _: Option<&dyn AgentHook> = None;
