//! Events a streamed plan emits, enough for a live progress view.

use serde::{Deserialize, Serialize};

use crate::agent::AgentEvent;
use crate::error::Error;
use crate::message::Usage;
use crate::plan::graph::Plan;
use crate::plan::state::PlanOutput;

/// What happens while a plan runs, in order.
///
/// First `Planned` (also when a plan resumes, naming what is done already); then for each subtask a
/// `SubtaskStarted`, its worker's events as `Subtask`, and a `SubtaskFinished`, `SubtaskFailed` or
/// `SubtaskSuspended` (subtasks run in parallel, so these interleave); `Replanned` when a failure led
/// to a new plan; and last `Finished`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlanEvent {
    /// The plan that is about to run.
    Planned {
        /// The plan.
        plan: Plan,
        /// Subtasks done already (when a stored plan resumes).
        done: Vec<String>,
    },
    /// A subtask's run started.
    SubtaskStarted {
        /// The subtask's id.
        id: String,
        /// Which attempt this is, counted from 1 over the plan's whole life.
        attempt: u32,
    },
    /// An event of a subtask's run (text as it arrives, tool calls, progress).
    Subtask {
        /// The subtask's id.
        id: String,
        /// The worker's event.
        event: AgentEvent,
    },
    /// A subtask finished.
    SubtaskFinished {
        /// The subtask's id.
        id: String,
        /// The worker's final answer.
        output: String,
        /// Tokens this attempt used.
        usage: Usage,
    },
    /// An attempt at a subtask failed.
    SubtaskFailed {
        /// The subtask's id.
        id: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: Error,
        /// In how many milliseconds it is tried again; `None` when it is not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// A subtask's run waits for a human to approve tool calls.
    SubtaskSuspended {
        /// The subtask's id.
        id: String,
        /// The calls waiting.
        call_ids: Vec<String>,
    },
    /// A subtask failed for good and the planner made a new plan for what was left.
    Replanned {
        /// The subtask that failed.
        failed: String,
        /// The whole plan from now on: the done subtasks and the new ones.
        plan: Plan,
        /// Which re-plan this is, counted from 1.
        replan: u32,
    },
    /// The plan is complete.
    Finished {
        /// The answer, each subtask's result, and the final state.
        output: Box<PlanOutput>,
    },
}
