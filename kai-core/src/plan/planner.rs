//! Planners: what breaks a goal into a plan, and the model-backed one.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::agent::{Agent, RunOptions, RunState};
use crate::error::Error;
use crate::marker::{MaybeSend, MaybeSync};
use crate::message::Usage;
use crate::plan::graph::{Plan, PlanLimits, PlanProblem, Subtask, check_shape, cut};
use crate::schema::schema_for;

/// What a planner is asked: the goal, the workers it may assign subtasks to, and, when re-planning,
/// what has happened so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The goal to reach.
    pub goal: String,
    /// The workers subtasks may be given to. The first is the default worker, used for subtasks that
    /// name none.
    pub workers: Vec<WorkerInfo>,
    /// How big the plan may be.
    pub limits: PlanLimits,
    /// Set when a subtask failed and the rest of the plan is to be made again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replan: Option<Replan>,
}

/// A worker agent, as a planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The name subtasks give it by.
    pub name: String,
    /// What it is good at.
    pub description: String,
    /// The names of its tools.
    pub tools: Vec<String>,
}

/// What happened before a re-plan: what is done (and stays done), what waits for a human's approval
/// (and stays in the plan), what failed and why, and what had not run yet. The new plan replaces every
/// other subtask; it may depend on the done and waiting ones, and must not reuse their ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replan {
    /// Subtasks done, with their results.
    pub done: Vec<DoneSubtask>,
    /// Subtasks whose runs wait for a human's approval; they stay in the plan.
    #[serde(default)]
    pub waiting: Vec<Subtask>,
    /// The subtask that failed.
    pub failed: Subtask,
    /// Why it failed, as its last attempt ended.
    pub error: Error,
    /// Subtasks that had not run, or had not finished, when the plan stopped.
    pub remaining: Vec<Subtask>,
}

/// A done subtask and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneSubtask {
    /// The subtask.
    pub subtask: Subtask,
    /// Its result.
    pub output: String,
}

/// A plan and what making it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// Tokens used to make it.
    pub usage: Usage,
}

impl PlanRequest {
    /// A request to plan `goal` for these workers, with the default limits.
    pub fn new(goal: impl Into<String>, workers: Vec<WorkerInfo>) -> Self {
        Self {
            goal: goal.into(),
            workers,
            limits: PlanLimits::default(),
            replan: None,
        }
    }

    /// Checks that `plan` can run: its shape ([`PlanProblem`] lists what is checked), that every
    /// subtask's worker and tools exist, and, for a re-plan, that it reuses no done subtask's id.
    pub fn check(&self, plan: &Plan) -> Result<(), PlanProblem> {
        let kept: HashSet<&str> = self
            .replan
            .iter()
            .flat_map(|replan| replan.done.iter().map(|done| &done.subtask).chain(&replan.waiting))
            .map(|subtask| subtask.id.as_str())
            .collect();
        check_shape(plan, &kept, &self.limits)?;
        self.check_assignments(&plan.subtasks)
    }

    /// Checks that every subtask's worker and tools exist.
    pub(crate) fn check_assignments<'a>(
        &self,
        subtasks: impl IntoIterator<Item = &'a Subtask>,
    ) -> Result<(), PlanProblem> {
        for subtask in subtasks {
            let worker = match &subtask.agent {
                None => self.workers.first(),
                Some(name) => self.workers.iter().find(|worker| &worker.name == name),
            };
            let Some(worker) = worker else {
                return Err(PlanProblem::UnknownAgent {
                    subtask: subtask.id.clone(),
                    agent: subtask.agent.as_deref().map(cut).unwrap_or_default(),
                });
            };
            if let Some(tool) = subtask.tools.iter().flatten().find(|tool| !worker.tools.contains(tool)) {
                return Err(PlanProblem::UnknownTool {
                    subtask: subtask.id.clone(),
                    tool: cut(tool),
                });
            }
        }
        Ok(())
    }
}

/// Breaks a goal into a [`Plan`].
///
/// The executor checks every plan a planner returns ([`PlanRequest::check`]), so a planner need not
/// be trusted; a good one checks its own plans the same way and repairs them.
#[crate::async_trait]
pub trait Planner: MaybeSend + MaybeSync {
    /// Makes a plan for `request.goal`, or, when `request.replan` is set, a new plan for what is left.
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, Error>;
}

/// A planner that asks a model for the plan as structured output.
///
/// The agent is asked for a JSON [`Plan`] fitting its JSON Schema. A plan that parses but cannot run (a
/// cycle, a dependency on nothing, no subtasks, an unknown worker or tool) is sent back to the model
/// with the [`PlanProblem`], within the agent's [`max_repairs`](crate::AgentBuilder::max_repairs);
/// after the last one the plan fails with [`Error::InvalidPlan`] naming the problem.
///
/// The agent's own instructions come first; the request (goal, workers, limits, and what happened
/// before a re-plan) is its input.
#[derive(Debug, Clone)]
pub struct LlmPlanner {
    agent: Agent,
    max_result_bytes: usize,
}

impl LlmPlanner {
    /// A planner that asks this agent.
    pub fn new(agent: Agent) -> Self {
        Self {
            agent,
            max_result_bytes: 2048,
        }
    }

    /// How much of each done subtask's result a re-plan request shows the model (2 KiB by default).
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// The input the model is given for `request`.
    pub fn prompt(&self, request: &PlanRequest) -> String {
        let mut prompt = String::new();
        // Done and waiting subtasks count against the plan's size.
        let kept = request
            .replan
            .as_ref()
            .map_or(0, |replan| replan.done.len() + replan.waiting.len());
        let _ = write!(
            prompt,
            "Break this goal into subtasks.\n\nGoal: {}\n\n\
             Answer with a plan: a list of at most {} subtasks, each with a short id (letters, digits, '_' \
             and '-'), a description a worker can act on alone, and the ids of the subtasks whose results \
             it needs (`depends_on`, each once). Subtasks that do not depend on each other run at the same \
             time. Every subtask gets the results of its dependencies. `agent` names the worker (null for \
             the first); `tools` lists the only tools it may use (null or empty for all of its \
             tools).\n\nWorkers:\n",
            request.goal,
            request.limits.max_subtasks.saturating_sub(kept)
        );
        for worker in &request.workers {
            let _ = writeln!(
                prompt,
                "- {}: {} (tools: {})",
                worker.name,
                worker.description,
                if worker.tools.is_empty() {
                    "none".to_owned()
                } else {
                    worker.tools.join(", ")
                }
            );
        }
        if let Some(replan) = &request.replan {
            let _ = write!(
                prompt,
                "\nThe plan so far did not work. Plan again what is left: a new plan for the goal whose \
                 subtasks may depend on the done and waiting ones below by id, but must not reuse their \
                 ids.\n\n\
                 Done subtasks and their results:\n"
            );
            for done in &replan.done {
                let output = &done.output[..done.output.floor_char_boundary(self.max_result_bytes)];
                let _ = writeln!(
                    prompt,
                    "- {}: {}\n  Result: {}",
                    done.subtask.id, done.subtask.description, output
                );
            }
            if !replan.waiting.is_empty() {
                let _ = writeln!(prompt, "\nSubtasks waiting for a human's approval (they stay):");
                for subtask in &replan.waiting {
                    let _ = writeln!(prompt, "- {}: {}", subtask.id, subtask.description);
                }
            }
            let _ = writeln!(
                prompt,
                "\nFailed subtask: {}: {}\n  Error: {}",
                replan.failed.id, replan.failed.description, replan.error
            );
            if !replan.remaining.is_empty() {
                let _ = writeln!(prompt, "\nSubtasks that had not run yet:");
                for subtask in &replan.remaining {
                    let _ = writeln!(prompt, "- {}: {}", subtask.id, subtask.description);
                }
            }
        }
        prompt
    }
}

#[crate::async_trait]
impl Planner for LlmPlanner {
    async fn plan(&self, request: &PlanRequest) -> Result<Planned, Error> {
        // The last problem the check found, to name it in the error if the repairs run out.
        let last_problem: Arc<Mutex<Option<PlanProblem>>> = Arc::default();
        let check = {
            let request = request.clone();
            let last_problem = Arc::clone(&last_problem);
            move |value: &serde_json::Value| {
                let problem = match Plan::deserialize(value) {
                    Ok(plan) => request.check(&plan).err(),
                    Err(error) => return Err(error.to_string()),
                };
                let message = problem.as_ref().map(ToString::to_string);
                *last_problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
                message.map_or(Ok(()), Err)
            }
        };
        let state = RunState::new(self.prompt(request));
        match self
            .agent
            .resume_extract_json_checked(state, schema_for::<Plan>(), check, RunOptions::default())
            .await
        {
            Ok(extracted) => {
                let plan = Plan::deserialize(&extracted.value).map_err(|error| Error::InvalidOutput {
                    message: error.to_string(),
                    attempts: 1,
                })?;
                Ok(Planned {
                    plan,
                    usage: extracted.output.usage,
                })
            }
            Err(failure) => {
                let problem = last_problem.lock().unwrap_or_else(PoisonError::into_inner).take();
                Err(match (failure.error, problem) {
                    (Error::InvalidOutput { message, .. }, Some(problem)) if message == problem.to_string() => {
                        Error::InvalidPlan { problem }
                    }
                    (error, _) => error,
                })
            }
        }
    }
}
