//! A plan: subtasks and the dependencies between them, and the checks every plan passes before it runs.

use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A goal broken into subtasks, each of which may need the outputs of others.
///
/// Plans come from a [`Planner`](crate::plan::Planner), usually a model, so the executor treats them as
/// untrusted: every plan is checked ([`PlanRequest::check`](crate::plan::PlanRequest::check)) before
/// anything of it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// The subtasks, in the order they are listed (which is also the order ready subtasks start in).
    pub subtasks: Vec<Subtask>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subtask {
    /// A short unique id such as `collect_sources`: 1 to 64 characters of a-z, A-Z, 0-9, `_` and `-`.
    pub id: String,
    /// What to do, written for whoever does it.
    pub description: String,
    /// The ids of the subtasks whose results this one needs; it starts when they are all done.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The name of the worker agent to give it to; the default worker when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The only tools the worker may use for it; all of the worker's tools when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

impl Subtask {
    /// A subtask with this id and description, no dependencies, for the default worker.
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            description: description.into(),
            depends_on: Vec::new(),
            agent: None,
            tools: None,
        }
    }

    /// This subtask, needing the results of these subtasks.
    pub fn after(mut self, dependencies: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.depends_on.extend(dependencies.into_iter().map(Into::into));
        self
    }

    /// This subtask, given to the worker of this name.
    pub fn on(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// This subtask, allowed only these tools of its worker.
    pub fn with_tools(mut self, tools: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tools = Some(tools.into_iter().map(Into::into).collect());
        self
    }
}

impl Plan {
    /// A plan of these subtasks.
    pub fn new(subtasks: impl IntoIterator<Item = Subtask>) -> Self {
        Self {
            subtasks: subtasks.into_iter().collect(),
        }
    }

    /// The subtask with this id.
    pub fn get(&self, id: &str) -> Option<&Subtask> {
        self.subtasks.iter().find(|subtask| subtask.id == id)
    }
}

/// Why a plan cannot run. The planner is shown this (its `Display`) to repair the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlanProblem {
    /// The plan has no subtasks.
    #[error("the plan has no subtasks")]
    Empty,
    /// The plan has more subtasks than allowed.
    #[error("the plan has {count} subtasks; at most {max} are allowed")]
    TooManySubtasks {
        /// How many it has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A subtask's id is empty, too long, or has characters other than a-z, A-Z, 0-9, `_` and `-`.
    #[error("the subtask id {id:?} is invalid: use 1-64 characters of a-z, A-Z, 0-9, '_' and '-'")]
    InvalidId {
        /// The id (cut to 64 characters).
        id: String,
    },
    /// Two subtasks have one id.
    #[error("two subtasks have the id {id:?}")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A subtask's description is empty or longer than allowed.
    #[error("the description of subtask {id:?} must have 1 to {max} bytes")]
    InvalidDescription {
        /// The subtask.
        id: String,
        /// The longest description allowed, in bytes.
        max: usize,
    },
    /// A subtask names one dependency twice.
    #[error("subtask {subtask:?} names {dependency:?} twice among its dependencies")]
    DuplicateDependency {
        /// The subtask.
        subtask: String,
        /// The dependency named twice (cut to 64 characters).
        dependency: String,
    },
    /// A subtask depends on an id that no subtask has.
    #[error("subtask {subtask:?} depends on {dependency:?}, which is not a subtask of the plan")]
    DanglingDependency {
        /// The subtask.
        subtask: String,
        /// The missing id (cut to 64 characters).
        dependency: String,
    },
    /// Subtasks depend on each other in a circle, so none of them can start.
    #[error("the subtasks {} depend on each other in a cycle", subtasks.join(" -> "))]
    Cycle {
        /// The ids on the cycle, each depending on the next, the last on the first.
        subtasks: Vec<String>,
    },
    /// A subtask names a worker the executor does not have.
    #[error("subtask {subtask:?} is given to the agent {agent:?}, which does not exist")]
    UnknownAgent {
        /// The subtask.
        subtask: String,
        /// The worker named (cut to 64 characters).
        agent: String,
    },
    /// A subtask allows a tool its worker does not have.
    #[error("subtask {subtask:?} allows the tool {tool:?}, which its agent does not have")]
    UnknownTool {
        /// The subtask.
        subtask: String,
        /// The tool named (cut to 64 characters).
        tool: String,
    },
    /// A re-plan gives a new subtask the id of one that is already done.
    #[error("the subtask {id:?} is already done; give new subtasks new ids")]
    AlreadyDone {
        /// The id.
        id: String,
    },
}

/// How big a plan may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimits {
    /// The most subtasks a plan may have (done ones included, after a re-plan).
    pub max_subtasks: usize,
    /// The longest description of a subtask, in bytes.
    pub max_description_bytes: usize,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            max_subtasks: 64,
            max_description_bytes: 8 * 1024,
        }
    }
}

/// The longest id, worker or tool name a problem repeats back.
const MAX_ID: usize = 64;

/// `text` cut to [`MAX_ID`] bytes on a character boundary, for problems that repeat what a model wrote.
pub(crate) fn cut(text: &str) -> String {
    text[..text.floor_char_boundary(MAX_ID)].to_owned()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks the plan's shape: size, ids, descriptions, and that its dependencies name subtasks of the
/// plan or `done` ones, without a cycle. Linear in the plan's size.
pub(crate) fn check_shape(plan: &Plan, done: &HashSet<&str>, limits: &PlanLimits) -> Result<(), PlanProblem> {
    if plan.subtasks.is_empty() {
        return Err(PlanProblem::Empty);
    }
    let count = plan.subtasks.len() + done.len();
    if count > limits.max_subtasks {
        return Err(PlanProblem::TooManySubtasks {
            count,
            max: limits.max_subtasks,
        });
    }
    let mut index = HashMap::with_capacity(plan.subtasks.len());
    for (position, subtask) in plan.subtasks.iter().enumerate() {
        if !valid_id(&subtask.id) {
            return Err(PlanProblem::InvalidId { id: cut(&subtask.id) });
        }
        if done.contains(subtask.id.as_str()) {
            return Err(PlanProblem::AlreadyDone { id: subtask.id.clone() });
        }
        if index.insert(subtask.id.as_str(), position).is_some() {
            return Err(PlanProblem::DuplicateId { id: subtask.id.clone() });
        }
        if subtask.description.trim().is_empty() || subtask.description.len() > limits.max_description_bytes {
            return Err(PlanProblem::InvalidDescription {
                id: subtask.id.clone(),
                max: limits.max_description_bytes,
            });
        }
    }
    let mut named = HashSet::new();
    for subtask in &plan.subtasks {
        named.clear();
        for dependency in &subtask.depends_on {
            if !index.contains_key(dependency.as_str()) && !done.contains(dependency.as_str()) {
                return Err(PlanProblem::DanglingDependency {
                    subtask: subtask.id.clone(),
                    dependency: cut(dependency),
                });
            }
            // Each dependency's result is copied into the subtask's input: once each.
            if !named.insert(dependency.as_str()) {
                return Err(PlanProblem::DuplicateDependency {
                    subtask: subtask.id.clone(),
                    dependency: cut(dependency),
                });
            }
        }
    }
    match find_cycle(plan, &index) {
        Some(subtasks) => Err(PlanProblem::Cycle { subtasks }),
        None => Ok(()),
    }
}

/// A cycle among the plan's subtasks, if there is one (Kahn's algorithm, then a walk among what is
/// left). Dependencies outside `index` (done subtasks) cannot be on a cycle.
fn find_cycle(plan: &Plan, index: &HashMap<&str, usize>) -> Option<Vec<String>> {
    let count = plan.subtasks.len();
    // Each subtask's dependencies within the plan (named once each: `check_shape` saw to that).
    let dependencies: Vec<Vec<usize>> = plan
        .subtasks
        .iter()
        .map(|subtask| {
            subtask
                .depends_on
                .iter()
                .filter_map(|dependency| index.get(dependency.as_str()).copied())
                .collect()
        })
        .collect();
    let mut dependents = vec![Vec::new(); count];
    let mut waiting_on: Vec<usize> = dependencies.iter().map(Vec::len).collect();
    for (subtask, needs) in dependencies.iter().enumerate() {
        for &dependency in needs {
            dependents[dependency].push(subtask);
        }
    }
    let mut ready: Vec<usize> = (0..count).filter(|&subtask| waiting_on[subtask] == 0).collect();
    let mut ordered = 0;
    while let Some(subtask) = ready.pop() {
        ordered += 1;
        for &dependent in &dependents[subtask] {
            waiting_on[dependent] -= 1;
            if waiting_on[dependent] == 0 {
                ready.push(dependent);
            }
        }
    }
    if ordered == count {
        return None;
    }
    // Every subtask left waits on another one left, so walking dependencies among them must come back
    // to a subtask already seen: the walk from there on is a cycle.
    let start = (0..count).find(|&subtask| waiting_on[subtask] > 0)?;
    let mut seen_at = vec![None; count];
    let mut walk: Vec<usize> = Vec::new();
    let mut current = start;
    loop {
        if let Some(position) = seen_at[current] {
            return Some(walk[position..].iter().map(|&s| plan.subtasks[s].id.clone()).collect());
        }
        seen_at[current] = Some(walk.len());
        walk.push(current);
        current = *dependencies[current]
            .iter()
            .find(|&&dependency| waiting_on[dependency] > 0)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(plan: &Plan) -> Result<(), PlanProblem> {
        check_shape(plan, &HashSet::new(), &PlanLimits::default())
    }

    #[test]
    fn a_diamond_passes() {
        let plan = Plan::new([
            Subtask::new("a", "first"),
            Subtask::new("b", "left").after(["a"]),
            Subtask::new("c", "right").after(["a"]),
            Subtask::new("d", "join").after(["b", "c"]),
        ]);
        assert_eq!(check(&plan), Ok(()));
    }

    #[test]
    fn each_problem_is_named() {
        assert_eq!(check(&Plan::default()), Err(PlanProblem::Empty));
        let bad_id = Plan::new([Subtask::new("no spaces", "x")]);
        assert_eq!(check(&bad_id), Err(PlanProblem::InvalidId { id: "no spaces".into() }));
        let twice = Plan::new([Subtask::new("a", "x"), Subtask::new("a", "y")]);
        assert_eq!(check(&twice), Err(PlanProblem::DuplicateId { id: "a".into() }));
        let blank = Plan::new([Subtask::new("a", "  ")]);
        assert!(matches!(check(&blank), Err(PlanProblem::InvalidDescription { .. })));
        let dangling = Plan::new([Subtask::new("a", "x").after(["ghost"])]);
        assert_eq!(
            check(&dangling),
            Err(PlanProblem::DanglingDependency {
                subtask: "a".into(),
                dependency: "ghost".into()
            })
        );
        let twice = Plan::new([Subtask::new("a", "x"), Subtask::new("b", "y").after(["a", "a"])]);
        assert_eq!(
            check(&twice),
            Err(PlanProblem::DuplicateDependency {
                subtask: "b".into(),
                dependency: "a".into()
            })
        );
        let many = Plan::new((0..65).map(|i| Subtask::new(format!("s{i}"), "x")));
        assert_eq!(check(&many), Err(PlanProblem::TooManySubtasks { count: 65, max: 64 }));
    }

    #[test]
    fn a_cycle_is_named_in_dependency_order() {
        let plan = Plan::new([
            Subtask::new("start", "x"),
            Subtask::new("a", "x").after(["start", "c"]),
            Subtask::new("b", "x").after(["a"]),
            Subtask::new("c", "x").after(["b"]),
            Subtask::new("tail", "x").after(["c"]),
        ]);
        let Err(PlanProblem::Cycle { subtasks }) = check(&plan) else {
            panic!("no cycle found");
        };
        assert_eq!(subtasks, ["a", "c", "b"]);
        let selfish = Plan::new([Subtask::new("a", "x").after(["a"])]);
        assert_eq!(
            check(&selfish),
            Err(PlanProblem::Cycle {
                subtasks: vec!["a".into()]
            })
        );
    }

    #[test]
    fn dependencies_may_name_done_subtasks_but_new_ids_may_not_reuse_them() {
        let done = HashSet::from(["a"]);
        let limits = PlanLimits::default();
        let next = Plan::new([Subtask::new("b", "x").after(["a"])]);
        assert_eq!(check_shape(&next, &done, &limits), Ok(()));
        let reuse = Plan::new([Subtask::new("a", "again")]);
        assert_eq!(
            check_shape(&reuse, &done, &limits),
            Err(PlanProblem::AlreadyDone { id: "a".into() })
        );
    }

    #[test]
    fn a_long_chain_is_checked_without_recursion() {
        let mut subtasks = vec![Subtask::new("s0", "x")];
        subtasks.extend((1..10_000).map(|i| Subtask::new(format!("s{i}"), "x").after([format!("s{}", i - 1)])));
        let limits = PlanLimits {
            max_subtasks: 10_000,
            ..PlanLimits::default()
        };
        assert_eq!(check_shape(&Plan::new(subtasks), &HashSet::new(), &limits), Ok(()));
    }
}
