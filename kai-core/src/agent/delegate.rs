//! An agent used as a tool of another agent.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::agent::Agent;
use crate::marker::{BoxFuture, boxed};
use crate::request::ToolDefinition;
use crate::schema::schema_for;
use crate::tool::{Tool, ToolContext, ToolError, parse_arguments};

/// An [`Agent`] wrapped as a [`Tool`]; made by [`Agent::into_tool`].
///
/// Each call is a fresh run of the inner agent, under its own limits (steps, timeouts, deadline) and
/// hooks. Cancelling the outer run drops the inner one.
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

impl Tool for AgentTool {
    fn definition(&self) -> ToolDefinition {
        self.definition.clone()
    }

    fn call(
        &self,
        arguments: serde_json::Value,
        _context: ToolContext,
    ) -> BoxFuture<'_, Result<serde_json::Value, ToolError>> {
        boxed(async move {
            let args: DelegateArgs = parse_arguments(arguments)?;
            match self.agent.run(args.input).await {
                Ok(output) => Ok(serde_json::Value::String(output.answer)),
                Err(error) => Err(ToolError::Failed(format!(
                    "the {} agent failed: {}",
                    self.agent.name(),
                    error.error
                ))),
            }
        })
    }
}
