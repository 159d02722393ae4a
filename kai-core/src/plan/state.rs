//! The serializable state of a plan's execution, which makes plans durable, and what a plan returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{Approval, RunState, new_run_id};
use crate::error::Error;
use crate::message::Usage;
use crate::plan::graph::{Plan, Subtask};

/// Everything needed to continue a plan: the goal, the plan, what happened to each subtask so far, and
/// the subtasks re-plans replaced.
///
/// It serializes with serde, so it can be checkpointed after every change
/// ([`PlanCheckpoint`](crate::plan::PlanCheckpoint)) and resumed with
/// [`PlanExecutor::resume`](crate::plan::PlanExecutor::resume) after a restart: done subtasks are not
/// run again. The workers, planner and limits come from the executor that resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanState {
    /// A random id for this plan, kept through checkpoints and resumes.
    pub id: String,
    /// The goal.
    pub goal: String,
    /// The plan; `None` until the planner has made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// What happened to the plan's subtasks, by id. A subtask without a record has not run.
    #[serde(default)]
    pub subtasks: BTreeMap<String, SubtaskRecord>,
    /// Subtasks that re-plans replaced (the failed one, and those that had not run), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<ReplacedSubtask>,
    /// How many times the plan was made again after a failure.
    #[serde(default)]
    pub replans: u32,
    /// Tokens the planner used, re-plans included.
    #[serde(default)]
    pub planning_usage: Usage,
}

/// What happened to one subtask.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubtaskRecord {
    /// Where it stands.
    pub status: SubtaskStatus,
    /// Runs started for it, retries included.
    pub attempts: u32,
    /// Tokens its runs used, every attempt included.
    pub usage: Usage,
    /// Model calls its runs made, every attempt included.
    pub steps: u32,
}

/// Where a subtask stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubtaskStatus {
    /// Not started, or stopped by a crash before it finished; it runs when the plan resumes.
    #[default]
    Pending,
    /// Finished with this result.
    Done {
        /// The worker's final answer.
        output: String,
    },
    /// Its last attempt failed with this error; a resumed plan tries it again.
    Failed {
        /// Why.
        error: Error,
    },
    /// Its run waits for a human to approve tool calls. Decide them through
    /// [`PlanState::run_mut`] and resume the plan.
    Suspended {
        /// The suspended run.
        run: Box<RunState>,
    },
    /// Its run was stopped part-way (the plan was cancelled or ran out of time); a resumed plan
    /// continues the run where it stood, so tool calls it finished do not run again.
    Interrupted {
        /// The run as it stood.
        run: Box<RunState>,
    },
}

/// A subtask a re-plan replaced, and what happened to it before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplacedSubtask {
    /// The subtask.
    pub subtask: Subtask,
    /// Its record when it was replaced.
    pub record: SubtaskRecord,
    /// The re-plan that replaced it, counted from 1.
    pub replan: u32,
}

impl PlanState {
    /// A plan of `goal` still to be made by the executor's planner.
    pub fn new(goal: impl Into<String>) -> Self {
        Self {
            id: new_run_id(),
            goal: goal.into(),
            plan: None,
            subtasks: BTreeMap::new(),
            replaced: Vec::new(),
            replans: 0,
            planning_usage: Usage::default(),
        }
    }

    /// A plan of `goal` made already.
    pub fn with_plan(goal: impl Into<String>, plan: Plan) -> Self {
        Self {
            plan: Some(plan),
            ..Self::new(goal)
        }
    }

    /// The record of the subtask with this id (a default, pending one if it has not run).
    pub fn record(&self, id: &str) -> SubtaskRecord {
        self.subtasks.get(id).cloned().unwrap_or_default()
    }

    /// Whether the subtask with this id is done.
    pub fn is_done(&self, id: &str) -> bool {
        matches!(
            self.subtasks.get(id),
            Some(SubtaskRecord {
                status: SubtaskStatus::Done { .. },
                ..
            })
        )
    }

    /// The result of the subtask with this id, if it is done.
    pub fn output(&self, id: &str) -> Option<&str> {
        match &self.subtasks.get(id)?.status {
            SubtaskStatus::Done { output } => Some(output),
            _ => None,
        }
    }

    /// Tool calls waiting for a human's decision, with the subtask whose run waits for each.
    pub fn pending_approvals(&self) -> impl Iterator<Item = (&str, &Approval)> {
        self.subtasks.iter().flat_map(|(id, record)| {
            let approvals = match &record.status {
                SubtaskStatus::Suspended { run } => Some(run.pending_approvals()),
                _ => None,
            };
            approvals
                .into_iter()
                .flatten()
                .map(move |approval| (id.as_str(), approval))
        })
    }

    /// The suspended run of the subtask with this id, to approve or reject its calls
    /// ([`RunState::approve`]) before the plan resumes.
    pub fn run_mut(&mut self, id: &str) -> Option<&mut RunState> {
        match &mut self.subtasks.get_mut(id)?.status {
            SubtaskStatus::Suspended { run } => Some(run),
            _ => None,
        }
    }

    /// Tokens used so far: planning, every subtask's attempts, replaced subtasks included.
    pub fn usage(&self) -> Usage {
        self.planning_usage
            + self.subtasks.values().map(|record| record.usage).sum()
            + self.replaced.iter().map(|replaced| replaced.record.usage).sum()
    }
}

/// A plan that ran to the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    /// The answer: the result of the subtask nothing depends on, or, when there are several, each of
    /// their results under its id, in plan order.
    pub answer: String,
    /// Every subtask's result, in plan order.
    pub results: Vec<SubtaskResult>,
    /// The final state: the executed plan (after any re-plans), every record and what was replaced.
    pub state: PlanState,
    /// Tokens used, planning and every attempt of every subtask included.
    pub usage: Usage,
}

/// One subtask's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskResult {
    /// The subtask's id.
    pub id: String,
    /// The worker's final answer.
    pub output: String,
    /// Tokens its runs used, every attempt included.
    pub usage: Usage,
    /// Model calls its runs made.
    pub steps: u32,
    /// Runs started for it.
    pub attempts: u32,
}

/// A plan that stopped before its end: the reason, and the state so far, which can be resumed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{error}")]
pub struct PlanError {
    /// Why the plan stopped.
    #[source]
    pub error: Error,
    /// The plan's state when it stopped.
    pub state: Box<PlanState>,
}

impl PlanError {
    /// The stable snake_case name of the reason ([`Error::kind`]).
    pub fn kind(&self) -> &'static str {
        self.error.kind()
    }
}

impl PlanOutput {
    /// The output of a finished plan in `state`.
    pub(crate) fn of(state: PlanState) -> Self {
        let plan = state.plan.clone().unwrap_or_default();
        let results: Vec<SubtaskResult> = plan
            .subtasks
            .iter()
            .map(|subtask| {
                let record = state.record(&subtask.id);
                SubtaskResult {
                    id: subtask.id.clone(),
                    output: state.output(&subtask.id).unwrap_or_default().to_owned(),
                    usage: record.usage,
                    steps: record.steps,
                    attempts: record.attempts,
                }
            })
            .collect();
        let needed: std::collections::HashSet<&str> = plan
            .subtasks
            .iter()
            .flat_map(|subtask| &subtask.depends_on)
            .map(String::as_str)
            .collect();
        let last: Vec<&SubtaskResult> = results
            .iter()
            .filter(|result| !needed.contains(result.id.as_str()))
            .collect();
        let answer = match last.as_slice() {
            [only] => only.output.clone(),
            several => several
                .iter()
                .map(|result| format!("## {}\n\n{}", result.id, result.output))
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        Self {
            answer,
            usage: state.usage(),
            results,
            state,
        }
    }
}
