//! Events a streamed agent run emits.

use serde::{Deserialize, Serialize};

use crate::agent::RunOutput;
use crate::message::{ToolCall, ToolResult, Usage};

/// What happens during a run, in order.
///
/// For each step: the model's text as it arrives, then for each tool call a `ToolCallStarted`, the
/// `ToolProgress` the tool reports, and a `ToolCallFinished` (calls run in parallel, so these may
/// interleave), then `StepFinished`. The last
/// event is `Finished`. Calls that never ran (unknown tool, bad arguments, denied) produce only
/// `ToolCallFinished` with an error result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentEvent {
    /// More of the model's answer text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// More of the model's visible reasoning (extended thinking), before its answer.
    ReasoningDelta {
        /// The new text.
        text: String,
    },
    /// A tool call is about to run, with the arguments it runs with (after hooks).
    ToolCallStarted {
        /// The call.
        call: ToolCall,
    },
    /// A running tool call reported how far it has come ([`ToolContext::report_progress`](crate::ToolContext::report_progress)).
    ToolProgress {
        /// The call's id, as in its `ToolCallStarted`.
        call_id: String,
        /// The report.
        progress: crate::tool::ToolProgress,
    },
    /// A tool call has a result, successful or not.
    ToolCallFinished {
        /// The result the model will see.
        result: ToolResult,
    },
    /// A step (one model call and its tool calls) is done.
    StepFinished {
        /// The step, counted from 1.
        step: u32,
        /// Tokens this step's model call used.
        usage: Usage,
    },
    /// The run is complete.
    Finished {
        /// The final answer, transcript and usage.
        output: Box<RunOutput>,
    },
}
