//! An agent used as a tool of another agent.

use schemars::JsonSchema;
use serde::Deserialize;

use std::sync::Arc;

use crate::agent::{Agent, RunOptions, RunState};
use crate::error::Error;
use crate::hook::AgentHook;
use crate::message::Usage;
use crate::request::ToolDefinition;
use crate::schema::schema_for;
use crate::tool::{Tool, ToolContext, ToolError, parse_arguments};

/// An [`Agent`] wrapped as a [`Tool`]; made by [`Agent::into_tool`].
///
/// Each call is a fresh run of the inner agent, under its own limits (steps, timeouts, deadline) and
/// hooks. Cancelling the outer run cancels the inner one; the inner run's usage, successful or not,
/// counts in the outer run's. When the inner run asks for approval, the outer run suspends too, its
/// approvals listing the inner calls as `<outer call id>/<inner call id>`; approving them and resuming
/// the outer run resumes the inner one exactly where it stopped.
#[derive(Debug, Clone)]
pub struct AgentTool {
    agent: Agent,
    definition: ToolDefinition,
}

#[derive(Deserialize, JsonSchema)]
struct DelegateArgs {
    /// The task for the agent, with everything it needs to know to do it.
    input: String,
}

impl AgentTool {
    pub(crate) fn new(agent: Agent, name: String, description: String) -> Self {
        Self {
            agent,
            definition: ToolDefinition {
                name,
                description,
                parameters: schema_for::<DelegateArgs>(),
            },
        }
    }
}

#[crate::async_trait]
impl Tool for AgentTool {
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    async fn call(
        &self,
        arguments: serde_json::Value,
        mut context: ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        let args: DelegateArgs = parse_arguments(arguments)?;
        let options = RunOptions::cancel_on(context.cancel.clone());
        // A resumed call continues its suspended run; its usage so far was reported when it suspended.
        let (state, reported) = match context.take_resumed() {
            Some(state) => {
                // Kept from the start: a cancel before the inner run's next checkpoint still leaves
                // the outer run with the state it resumed from, decisions included.
                context.record_progress(state.clone());
                let usage = state.usage;
                (state, usage)
            }
            None => {
                // Named after the outer call, so the inner run's idempotency keys are the same however
                // often a crash makes it start over.
                let mut state = RunState::new(args.input);
                if !context.run_id.is_empty() {
                    state.id = context.idempotency_key();
                }
                (state, Usage::default())
            }
        };
        // Each checkpoint of the inner run is kept in the call's context, so a cancel or timeout of this
        // call leaves the outer run with where the inner one got to.
        let agent = self.agent.with_hook(Arc::new(RecordProgress(context.clone())));
        match agent.resume_with(state, options).await {
            Ok(output) => {
                context.report_usage(output.usage.saturating_sub(reported));
                Ok(serde_json::Value::String(output.answer))
            }
            Err(error) => {
                context.report_usage(error.state.usage.saturating_sub(reported));
                match error.error {
                    Error::ApprovalRequired { .. } => return Err(context.suspend(*error.state)),
                    // The outer run is being cancelled: keep where the inner run stopped, which may be
                    // past its last checkpoint.
                    Error::Cancelled if context.cancel.is_cancelled() => {
                        context.record_progress(*error.state);
                        return Err(ToolError::Cancelled);
                    }
                    _ => {}
                }
                Err(ToolError::failed(format_args!(
                    "the {} agent failed: {}",
                    self.agent.name(),
                    error.error
                )))
            }
        }
    }
}

/// Records each checkpoint of an inner run in the outer call's context.
struct RecordProgress(ToolContext);

#[crate::async_trait]
impl AgentHook for RecordProgress {
    async fn checkpoint(&self, state: &RunState) -> Result<(), Error> {
        self.0.record_progress(state.clone());
        Ok(())
    }
}
