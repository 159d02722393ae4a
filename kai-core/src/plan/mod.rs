//! Plans: a goal broken into subtasks with dependencies, run on worker agents.
//!
//! - A [`Planner`] makes a [`Plan`] for a goal; [`LlmPlanner`] asks a model for one as structured
//!   output and has it repair plans that cannot run ([`PlanProblem`]: cycles, dependencies on nothing,
//!   no subtasks, unknown workers or tools).
//! - A [`PlanExecutor`] runs the plan as a graph: each subtask on its worker agent once the subtasks it
//!   depends on are done, given their results; many at once up to a limit; failed ones retried under a
//!   [`RetryPolicy`]; the rest of the plan made again after a subtask fails for good; within a deadline
//!   and a cancellation token.
//! - Its [`PlanState`] serializes and is handed to a [`PlanCheckpoint`] ([`PlanFile`]) after every
//!   change, so a plan resumes after a restart without redoing what is done, and after a human approved
//!   a subtask's tool call.
//! - [`PlanExecutor::stream_with`] streams [`PlanEvent`]s for a live progress view.
//!
//! ```
//! use kai_core::Agent;
//! use kai_core::plan::{LlmPlanner, PlanExecutor};
//! use kai_core::testing::ScriptedModel;
//!
//! # futures::executor::block_on(async {
//! let planner_model = ScriptedModel::new().tool_call("final_result", serde_json::json!({"subtasks": [
//!     {"id": "facts", "description": "Collect three facts about Oslo."},
//!     {"id": "summary", "description": "Write one sentence from the facts.", "depends_on": ["facts"]},
//! ]}));
//! let worker_model = ScriptedModel::new().text("capital; 709,000 people; on a fjord").text("Oslo is a capital of 709,000 on a fjord.");
//! let executor = PlanExecutor::builder(Agent::builder(worker_model).build().unwrap())
//!     .planner(LlmPlanner::new(Agent::builder(planner_model).build().unwrap()))
//!     .build()
//!     .unwrap();
//! let output = executor.run("Describe Oslo in a sentence").await.unwrap();
//! assert_eq!(output.answer, "Oslo is a capital of 709,000 on a fjord.");
//! assert_eq!(output.results[0].output, "capital; 709,000 people; on a fjord");
//! # });
//! ```

mod checkpoint;
mod event;
mod executor;
mod graph;
mod planner;
mod state;

pub use checkpoint::{PlanCheckpoint, PlanFile};
pub use event::PlanEvent;
pub use executor::{PlanEventStream, PlanExecutor, PlanExecutorBuilder, RetryPolicy};
pub use graph::{Plan, PlanLimits, PlanProblem, Subtask};
pub use planner::{DoneSubtask, LlmPlanner, PlanRequest, Planned, Planner, Replan, WorkerInfo};
pub use state::{PlanError, PlanOutput, PlanState, ReplacedSubtask, SubtaskRecord, SubtaskResult, SubtaskStatus};
