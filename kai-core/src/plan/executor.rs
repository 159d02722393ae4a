//! The plan executor: runs a plan's subtasks on worker agents, as their dependencies allow.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use std::pin::pin;

use futures::channel::mpsc::UnboundedSender;
use futures::future::Either;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};

use crate::CancellationToken;
use crate::agent::{Agent, AgentEvent, RunError, RunOptions, RunOutput, RunState};
use crate::error::Error;
use crate::marker::{BoxFuture, BoxStream, boxed, boxed_stream};
use crate::message::Usage;
use crate::plan::checkpoint::PlanCheckpoint;
use crate::plan::event::PlanEvent;
use crate::plan::graph::{Plan, PlanLimits, Subtask, check_shape};
use crate::plan::planner::{DoneSubtask, PlanRequest, Planner, Replan, WorkerInfo};
use crate::plan::state::{PlanError, PlanOutput, PlanState, ReplacedSubtask, SubtaskStatus};
use crate::time::{Instant, guarded, sleep};

/// A stream of a plan's events; the last item is [`PlanEvent::Finished`] or the plan's error.
pub type PlanEventStream = BoxStream<'static, Result<PlanEvent, PlanError>>;

/// How often a failed subtask is tried again, and after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs of one subtask in one execution of the plan, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles for each retry after it.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, waiting 1 s and then 2 s (or as long as a rate limit asks, up to 30 s).
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Whether a run that failed with `error` is worth another attempt: not when it was cancelled,
    /// refused (credentials, permissions, a hook) or set up wrongly, which another attempt repeats.
    pub fn retries(&self, error: &Error) -> bool {
        !matches!(
            error,
            Error::Cancelled
                | Error::Authentication { .. }
                | Error::PermissionDenied { .. }
                | Error::Config { .. }
                | Error::Hook { .. }
                | Error::ApprovalRequired { .. }
        )
    }

    /// The wait before attempt `attempt + 1` after attempt `attempt` failed with `error`.
    fn delay(&self, attempt: u32, error: &Error) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        doubled
            .max(error.retry_after().unwrap_or_default())
            .min(self.max_backoff)
    }
}

/// Runs plans: each subtask on its worker agent once its dependencies are done, many at once up to a
/// limit, with retries, re-plans, a deadline, cancellation and a checkpoint after every change.
///
/// Each subtask's worker is given the subtask's description, the goal, and the results of the
/// subtasks it depends on. A failed attempt is retried under the [`RetryPolicy`]: a transient failure
/// (rate limit, timeout, server or transport error) continues the failed run where it stopped, any
/// other starts the subtask afresh. When a subtask fails for good, no new subtask starts; once those
/// running have finished, the planner (if the executor has one, and re-plans are left) makes a new plan
/// for what is left, which may build on what is done; otherwise the plan stops with
/// [`Error::SubtaskFailed`].
///
/// A run that needs a human's approval suspends its subtask; the plan carries on with what does not
/// depend on it, then stops with [`Error::ApprovalRequired`] and a state whose runs can be approved
/// ([`PlanState::run_mut`]) and resumed.
///
/// Cheap to clone.
///
/// ```
/// use kai_core::Agent;
/// use kai_core::plan::{Plan, PlanExecutor, PlanState, Subtask};
/// use kai_core::testing::ScriptedModel;
///
/// # futures::executor::block_on(async {
/// let model = ScriptedModel::new().text("Oslo, Bergen").text("Oslo is the larger.");
/// let worker = Agent::builder(model).name("researcher").build().unwrap();
/// let executor = PlanExecutor::builder(worker).max_concurrency(1).build().unwrap();
/// let plan = Plan::new([
///     Subtask::new("list", "List the two largest cities of Norway."),
///     Subtask::new("compare", "Say which of them is larger.").after(["list"]),
/// ]);
/// let output = executor.resume(PlanState::with_plan("Compare Norway's cities", plan)).await.unwrap();
/// assert_eq!(output.answer, "Oslo is the larger.");
/// # });
/// ```
#[derive(Clone)]
pub struct PlanExecutor {
    inner: Arc<ExecutorConfig>,
}

struct ExecutorConfig {
    /// The workers; the first is the default.
    workers: Vec<Worker>,
    planner: Option<Arc<dyn Planner>>,
    checkpoint: Option<Arc<dyn PlanCheckpoint>>,
    limits: PlanLimits,
    max_concurrency: usize,
    retry: RetryPolicy,
    max_replans: u32,
    deadline: Option<Duration>,
    max_dependency_bytes: usize,
}

struct Worker {
    info: WorkerInfo,
    agent: Agent,
}

impl std::fmt::Debug for PlanExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = &self.inner;
        f.debug_struct("PlanExecutor")
            .field(
                "workers",
                &config.workers.iter().map(|w| &w.info.name).collect::<Vec<_>>(),
            )
            .field("planner", &config.planner.is_some())
            .field("checkpoint", &config.checkpoint.is_some())
            .field("limits", &config.limits)
            .field("max_concurrency", &config.max_concurrency)
            .field("retry", &config.retry)
            .field("max_replans", &config.max_replans)
            .field("deadline", &config.deadline)
            .finish()
    }
}

/// Builds a [`PlanExecutor`].
#[must_use]
pub struct PlanExecutorBuilder {
    config: ExecutorConfig,
}

impl PlanExecutor {
    /// Starts building an executor whose default worker is `agent`, named by the agent's name.
    pub fn builder(agent: Agent) -> PlanExecutorBuilder {
        let name = agent.name().to_owned();
        PlanExecutorBuilder {
            config: ExecutorConfig {
                workers: Vec::new(),
                planner: None,
                checkpoint: None,
                limits: PlanLimits::default(),
                max_concurrency: 4,
                retry: RetryPolicy::default(),
                max_replans: 2,
                deadline: None,
                max_dependency_bytes: 16 * 1024,
            },
        }
        .worker(name, "General-purpose worker.", agent)
    }
}

impl PlanExecutorBuilder {
    /// Adds a worker subtasks can be given to by `name`; `description` tells the planner what it is
    /// good at. The name of the first worker (the builder's agent) can be described again this way.
    pub fn worker(mut self, name: impl Into<String>, description: impl Into<String>, agent: Agent) -> Self {
        let info = WorkerInfo {
            name: name.into(),
            description: description.into(),
            tools: agent.tools().names().map(str::to_owned).collect(),
        };
        match self.config.workers.iter_mut().find(|w| w.info.name == info.name) {
            Some(worker) => *worker = Worker { info, agent },
            None => self.config.workers.push(Worker { info, agent }),
        }
        self
    }

    /// The planner that makes plans from goals, and new plans after failures. Without one, the
    /// executor runs plans it is given and a subtask that fails for good stops the plan.
    pub fn planner(mut self, planner: impl Planner + 'static) -> Self {
        self.config.planner = Some(Arc::new(planner));
        self
    }

    /// Where the plan's state is kept after every change ([`PlanFile`](crate::plan::PlanFile) for a
    /// file).
    pub fn checkpoint(mut self, checkpoint: impl PlanCheckpoint + 'static) -> Self {
        self.config.checkpoint = Some(Arc::new(checkpoint));
        self
    }

    /// How big plans may be.
    pub fn limits(mut self, limits: PlanLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// How many subtasks run at once (4 by default).
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.config.max_concurrency = limit;
        self
    }

    /// The settings a configuration gives plans: `agents.max_concurrent` subtasks at once.
    #[cfg(feature = "config")]
    pub fn configured(self, agents: &crate::config::AgentsConfig) -> Self {
        self.max_concurrency(usize::try_from(agents.max_concurrent).unwrap_or(usize::MAX))
    }

    /// How failed subtasks are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// How many times a plan may be made again after a subtask failed for good (2 by default).
    pub fn max_replans(mut self, replans: u32) -> Self {
        self.config.max_replans = replans;
        self
    }

    /// How long one execution of a plan may take, planning included; then it stops with
    /// [`Error::DeadlineExceeded`], keeping what is done.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// How much of each dependency's result a subtask is given (16 KiB by default); the rest is cut,
    /// saying so.
    pub fn max_dependency_bytes(mut self, bytes: usize) -> Self {
        self.config.max_dependency_bytes = bytes;
        self
    }

    /// Builds the executor. A concurrency limit or attempt count of 0 is [`Error::Config`].
    pub fn build(self) -> Result<PlanExecutor, Error> {
        if self.config.max_concurrency == 0 {
            return Err(Error::Config {
                message: "a plan executor needs a concurrency limit of at least 1".into(),
            });
        }
        if self.config.retry.max_attempts == 0 {
            return Err(Error::Config {
                message: "a retry policy needs at least 1 attempt".into(),
            });
        }
        Ok(PlanExecutor {
            inner: Arc::new(self.config),
        })
    }
}

impl PlanExecutor {
    /// What the planner is asked for `goal`: the workers and the limits.
    pub fn request(&self, goal: impl Into<String>) -> PlanRequest {
        PlanRequest {
            limits: self.inner.limits,
            ..PlanRequest::new(goal, self.inner.workers.iter().map(|w| w.info.clone()).collect())
        }
    }

    /// Plans `goal` with the executor's planner and runs the plan.
    pub async fn run(&self, goal: impl Into<String>) -> Result<PlanOutput, PlanError> {
        self.resume(PlanState::new(goal)).await
    }

    /// Continues a plan from a state: plans it if it has no plan yet, checks the plan, and runs every
    /// subtask that is not done.
    pub async fn resume(&self, state: PlanState) -> Result<PlanOutput, PlanError> {
        self.resume_with(state, RunOptions::default()).await
    }

    /// [`resume`](Self::resume) with options: a cancellation token stops the plan (and the runs in
    /// flight) with [`Error::Cancelled`], keeping what is done.
    pub async fn resume_with(&self, state: PlanState, options: RunOptions) -> Result<PlanOutput, PlanError> {
        Execution::new(self, state, options, None).run().await
    }

    /// Continues a plan from a state, streaming its events. Dropping the stream drops the plan and the
    /// runs in flight.
    pub fn stream_with(&self, state: PlanState, options: RunOptions) -> PlanEventStream {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let events = sender.clone();
        let executor = self.clone();
        let driver = async move {
            let result = Execution::new(&executor, state, options, Some(events)).run().await;
            // The receiver may be gone if the caller stopped listening; nothing is left to tell them.
            let _ = sender.unbounded_send(result.map(|output| PlanEvent::Finished {
                output: Box::new(output),
            }));
        };
        let driver = futures::stream::once(driver).filter_map(|()| std::future::ready(None));
        boxed_stream(futures::stream::select(receiver, driver))
    }

    fn worker(&self, name: Option<&str>) -> Option<&Worker> {
        match name {
            None => self.inner.workers.first(),
            Some(name) => self.inner.workers.iter().find(|w| w.info.name == name),
        }
    }
}

/// What an attempt at a subtask came to.
struct Attempt {
    /// The subtask's id.
    id: String,
    /// The usage and steps of the state the run started from, so that only this attempt's are counted.
    before: (Usage, u32),
    /// How the run ended.
    result: Result<RunOutput, RunError>,
}

/// Runs `agent` from `run`; with a listener, streams it and forwards its events.
async fn run_worker(
    agent: &Agent,
    id: &str,
    attempt: u32,
    run: RunState,
    options: RunOptions,
    events: Option<UnboundedSender<Result<PlanEvent, PlanError>>>,
) -> Result<RunOutput, RunError> {
    let Some(events) = events else {
        return agent.resume_with(run, options).await;
    };
    let _ = events.unbounded_send(Ok(PlanEvent::SubtaskStarted {
        id: id.to_owned(),
        attempt,
    }));
    let mut stream = agent.stream_with(run, options);
    while let Some(event) = stream.next().await {
        match event {
            Ok(AgentEvent::Finished { output }) => return Ok(*output),
            Ok(event) => {
                let _ = events.unbounded_send(Ok(PlanEvent::Subtask {
                    id: id.to_owned(),
                    event,
                }));
            }
            Err(failure) => return Err(failure),
        }
    }
    // An agent's stream always ends with its result; say so if one did not.
    Err(RunError {
        error: Error::Config {
            message: "the worker's event stream ended without its result".into(),
        },
        state: Box::default(),
    })
}

/// One execution of a plan: the state it changes, and who hears about the changes.
struct Execution<'a> {
    executor: &'a PlanExecutor,
    state: PlanState,
    /// Stops the plan and every run in it: a child of the caller's token, cancelled also when the
    /// deadline passes.
    stop: CancellationToken,
    deadline: Option<Instant>,
    /// Whether the deadline passed (so a stop is [`Error::DeadlineExceeded`], not a cancel).
    expired: bool,
    events: Option<UnboundedSender<Result<PlanEvent, PlanError>>>,
}

impl<'a> Execution<'a> {
    fn new(
        executor: &'a PlanExecutor,
        state: PlanState,
        options: RunOptions,
        events: Option<UnboundedSender<Result<PlanEvent, PlanError>>>,
    ) -> Self {
        Self {
            executor,
            state,
            stop: options.cancel.map(|cancel| cancel.child_token()).unwrap_or_default(),
            // A deadline too far to count to is no deadline.
            deadline: executor
                .inner
                .deadline
                .and_then(|deadline| Instant::now().checked_add(deadline)),
            expired: false,
            events,
        }
    }

    async fn run(mut self) -> Result<PlanOutput, PlanError> {
        match self.drive().await {
            Ok(()) => Ok(PlanOutput::of(self.state)),
            Err(error) => Err(PlanError {
                error,
                state: Box::new(self.state),
            }),
        }
    }

    fn emit(&self, event: PlanEvent) {
        if let Some(events) = &self.events {
            let _ = events.unbounded_send(Ok(event));
        }
    }

    async fn checkpoint(&self) -> Result<(), Error> {
        match &self.executor.inner.checkpoint {
            Some(checkpoint) => checkpoint.save(&self.state).await,
            None => Ok(()),
        }
    }

    /// Why the plan stopped, once `stop` is cancelled.
    fn stop_reason(&self) -> Error {
        if self.expired {
            Error::DeadlineExceeded
        } else {
            Error::Cancelled
        }
    }

    /// Plans (or checks the stored plan), then runs subtasks until every one is done, or one fails for
    /// good with no re-plan left, or only suspended ones are left, or the plan is stopped.
    async fn drive(&mut self) -> Result<(), Error> {
        if self.stop.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let done = match &self.state.plan {
            None => {
                self.check_unplanned()?;
                let request = self.executor.request(self.state.goal.clone());
                let plan = self.make_plan(request).await?;
                self.state.plan = Some(plan);
                self.checkpoint().await?;
                Vec::new()
            }
            Some(_) => self.check_resumed()?,
        };
        self.emit(PlanEvent::Planned {
            plan: self.plan().clone(),
            done,
        });
        loop {
            let Some((failed, error)) = self.run_until_stuck().await? else {
                return self.finish();
            };
            let config = &self.executor.inner;
            let replan = config.planner.is_some() && self.state.replans < config.max_replans;
            if !replan {
                return Err(Error::SubtaskFailed {
                    attempts: self.state.record(&failed).attempts,
                    subtask: failed,
                    error: Box::new(error),
                });
            }
            self.replan(&failed, error).await?;
        }
    }

    fn plan(&self) -> &Plan {
        // `drive` makes or checks the plan before anything calls this.
        static EMPTY: Plan = Plan { subtasks: Vec::new() };
        self.state.plan.as_ref().unwrap_or(&EMPTY)
    }

    /// Asks the planner for a plan (within the deadline, stopped by a cancel) and checks it; a plan
    /// that cannot run is [`Error::InvalidPlan`].
    async fn make_plan(&mut self, request: PlanRequest) -> Result<Plan, Error> {
        let planner = self.executor.inner.planner.as_ref().ok_or_else(|| Error::Config {
            message: "this plan has no plan yet, and the executor has no planner to make one".into(),
        })?;
        let limit = self.deadline.map(|at| (at, Error::DeadlineExceeded));
        let planned = guarded(planner.plan(&request), Some(&self.stop), limit).await??;
        self.state.planning_usage += planned.usage;
        request
            .check(&planned.plan)
            .map_err(|problem| Error::InvalidPlan { problem })?;
        Ok(planned.plan)
    }

    /// A state without a plan has nothing else: records would be trusted without a plan to check them
    /// against.
    fn check_unplanned(&self) -> Result<(), Error> {
        if self.state.subtasks.is_empty() && self.state.replaced.is_empty() {
            return Ok(());
        }
        Err(Error::Storage {
            message: format!(
                "the plan state {} is damaged: it has records but no plan",
                self.state.id
            ),
        })
    }

    /// Checks a stored plan and its records as an untrusted plan is checked (a state file may be
    /// damaged or forged), in time linear in its size; returns the ids of the subtasks done.
    fn check_resumed(&self) -> Result<Vec<String>, Error> {
        let plan = self.plan();
        let request = self.executor.request(self.state.goal.clone());
        // The whole plan, done subtasks included, is a plan of its own: the size is checked first.
        check_shape(plan, &HashSet::new(), &request.limits).map_err(|problem| Error::InvalidPlan { problem })?;
        let damaged = |message: String| Error::Storage {
            message: format!("the plan state {} is damaged: {message}", self.state.id),
        };
        let ids: HashSet<&str> = plan.subtasks.iter().map(|subtask| subtask.id.as_str()).collect();
        if let Some(id) = self.state.subtasks.keys().find(|id| !ids.contains(id.as_str())) {
            return Err(damaged(format!("it has a record of {id:?}, which is not in its plan")));
        }
        let (done, rest): (Vec<&Subtask>, Vec<&Subtask>) = plan
            .subtasks
            .iter()
            .partition(|subtask| self.state.is_done(&subtask.id));
        for subtask in &done {
            if let Some(dependency) = subtask.depends_on.iter().find(|d| !self.state.is_done(d)) {
                return Err(damaged(format!(
                    "{:?} is done but its dependency {dependency:?} is not",
                    subtask.id
                )));
            }
        }
        request
            .check_assignments(rest)
            .map_err(|problem| Error::InvalidPlan { problem })?;
        Ok(done.iter().map(|subtask| subtask.id.clone()).collect())
    }

    /// Runs subtasks until nothing more can start. Returns the first subtask that failed for good and
    /// its error, or `None` when every subtask is done or suspended; when the plan is stopped, waits for
    /// the runs in flight to stop, keeps where each stood, and returns why.
    async fn run_until_stuck(&mut self) -> Result<Option<(String, Error)>, Error> {
        let executor = self.executor;
        let config = &executor.inner;
        let mut running: FuturesUnordered<BoxFuture<'a, Attempt>> = FuturesUnordered::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        // Attempts in this execution, by subtask: the retry budget is per execution.
        let mut tries: HashMap<String, u32> = HashMap::new();
        let mut failure: Option<(String, Error)> = None;
        let deadline = self.deadline;
        let mut expiry = pin!(
            async move {
                match deadline {
                    Some(at) => sleep(at.saturating_duration_since(Instant::now())).await,
                    None => std::future::pending().await,
                }
            }
            .fuse()
        );
        loop {
            if failure.is_none() && !self.stop.is_cancelled() {
                for subtask in self.ready(&in_flight) {
                    if in_flight.len() >= config.max_concurrency {
                        break;
                    }
                    let record = self.state.record(&subtask.id);
                    let run = match record.status {
                        SubtaskStatus::Suspended { run } | SubtaskStatus::Interrupted { run } => *run,
                        _ => RunState::new(self.input(&subtask)),
                    };
                    in_flight.insert(subtask.id.clone());
                    *tries.entry(subtask.id.clone()).or_default() += 1;
                    running.push(self.attempt(&subtask, run, Duration::ZERO, record.attempts.saturating_add(1)));
                }
            }
            let next = match futures::future::select(running.next(), expiry.as_mut()).await {
                Either::Left((next, _)) => next,
                Either::Right(((), _)) => {
                    // The runs in flight see the stop and end with their state, kept below.
                    self.expired = true;
                    self.stop.cancel();
                    continue;
                }
            };
            let Some(Attempt { id, before, result }) = next else {
                if self.stop.is_cancelled() {
                    return Err(self.stop_reason());
                }
                return Ok(failure);
            };
            let mut record = self.state.record(&id);
            record.attempts = record.attempts.saturating_add(1);
            let (usage, steps) = match &result {
                Ok(output) => (output.usage, output.steps),
                Err(failed) => (failed.state.usage, failed.state.steps),
            };
            let usage = usage.saturating_sub(before.0);
            record.usage += usage;
            record.steps = record.steps.saturating_add(steps.saturating_sub(before.1));
            let attempt = record.attempts;
            let event = match result {
                Ok(output) => {
                    in_flight.remove(&id);
                    record.status = SubtaskStatus::Done {
                        output: output.answer.clone(),
                    };
                    PlanEvent::SubtaskFinished {
                        id: id.clone(),
                        output: output.answer,
                        usage,
                    }
                }
                // The plan was stopped: the run is kept where it stood, to go on when the plan resumes.
                Err(RunError {
                    error: Error::Cancelled,
                    state,
                }) if self.stop.is_cancelled() => {
                    in_flight.remove(&id);
                    record.status = SubtaskStatus::Interrupted { run: state };
                    PlanEvent::SubtaskFailed {
                        id: id.clone(),
                        attempt,
                        error: self.stop_reason(),
                        retry_in_ms: None,
                    }
                }
                Err(RunError {
                    error: Error::ApprovalRequired { call_ids },
                    state,
                }) if state.pending_approvals().next().is_some() => {
                    in_flight.remove(&id);
                    record.status = SubtaskStatus::Suspended { run: state };
                    PlanEvent::SubtaskSuspended {
                        id: id.clone(),
                        call_ids,
                    }
                }
                Err(RunError { error, state }) => {
                    // A run that suspends with nothing to decide would suspend again at once.
                    let error = match error {
                        Error::ApprovalRequired { .. } => Error::Config {
                            message: "the run suspended with no tool call waiting for approval".into(),
                        },
                        error => error,
                    };
                    let tried = tries.get(&id).copied().unwrap_or(1);
                    let retry = config.retry.retries(&error) && tried < config.retry.max_attempts;
                    let delay = retry.then(|| config.retry.delay(tried, &error));
                    match delay {
                        Some(delay) => {
                            // A transient failure continues where the run stopped; any other starts over.
                            let subtask = self.plan().get(&id).cloned().unwrap_or_else(|| Subtask::new(&id, ""));
                            let run = if error.is_retryable() {
                                *state
                            } else {
                                RunState::new(self.input(&subtask))
                            };
                            *tries.entry(id.clone()).or_default() += 1;
                            running.push(self.attempt(&subtask, run, delay, attempt.saturating_add(1)));
                        }
                        None => {
                            in_flight.remove(&id);
                            failure.get_or_insert((id.clone(), error.clone()));
                        }
                    }
                    record.status = SubtaskStatus::Failed { error: error.clone() };
                    PlanEvent::SubtaskFailed {
                        id: id.clone(),
                        attempt,
                        error,
                        retry_in_ms: delay.map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    }
                }
            };
            self.state.subtasks.insert(id, record);
            self.emit(event);
            self.checkpoint().await?;
        }
    }

    /// Subtasks that can start now, in plan order: not done, not running, not waiting for a human's
    /// decision, and with every dependency done.
    fn ready(&self, in_flight: &HashSet<String>) -> Vec<Subtask> {
        self.plan()
            .subtasks
            .iter()
            .filter(|subtask| {
                let runnable = match self.state.subtasks.get(&subtask.id).map(|record| &record.status) {
                    None
                    | Some(SubtaskStatus::Pending | SubtaskStatus::Failed { .. } | SubtaskStatus::Interrupted { .. }) => {
                        true
                    }
                    Some(SubtaskStatus::Suspended { run }) => run.pending_approvals().next().is_none(),
                    Some(SubtaskStatus::Done { .. }) => false,
                };
                runnable
                    && !in_flight.contains(&subtask.id)
                    && subtask.depends_on.iter().all(|d| self.state.is_done(d))
            })
            .cloned()
            .collect()
    }

    /// A run of `subtask`'s worker from `run`, after `delay`, as attempt `number`, forwarding its events.
    fn attempt(&self, subtask: &Subtask, run: RunState, delay: Duration, number: u32) -> BoxFuture<'a, Attempt> {
        let id = subtask.id.clone();
        let before = (run.usage, run.steps);
        let agent = match self.executor.worker(subtask.agent.as_deref()) {
            // The plan was checked, so its workers and tools exist; say so if they do not.
            None => Err(Error::Config {
                message: format!("subtask {id:?} names a worker the executor does not have"),
            }),
            Some(worker) => match &subtask.tools {
                Some(tools) if !tools.is_empty() => worker
                    .agent
                    .tools()
                    .subset(tools.iter().map(String::as_str))
                    .map(|tools| worker.agent.with_tools(tools)),
                _ => Ok(worker.agent.clone()),
            },
        };
        let cancel = self.stop.child_token();
        let events = self.events.clone();
        boxed(async move {
            let result = match agent {
                Err(error) => Err(RunError {
                    error,
                    state: Box::new(run),
                }),
                Ok(agent) => match guarded(sleep(delay), Some(&cancel), None).await {
                    Err(error) => Err(RunError {
                        error,
                        state: Box::new(run),
                    }),
                    Ok(()) => run_worker(&agent, &id, number, run, RunOptions::cancel_on(cancel), events).await,
                },
            };
            Attempt { id, before, result }
        })
    }

    /// The input of `subtask`'s worker: the subtask, the goal, and its dependencies' results.
    fn input(&self, subtask: &Subtask) -> String {
        let mut input = format!(
            "{}\n\nThis is one subtask ({}) of a larger goal: {}",
            subtask.description, subtask.id, self.state.goal
        );
        if !subtask.depends_on.is_empty() {
            input.push_str("\n\nResults of the subtasks it builds on:");
        }
        let limit = self.executor.inner.max_dependency_bytes;
        for dependency in &subtask.depends_on {
            let output = self.state.output(dependency).unwrap_or_default();
            let description = self.plan().get(dependency).map_or("", |d| d.description.as_str());
            let kept = &output[..output.floor_char_boundary(limit)];
            let _ = write!(input, "\n\n### {dependency}: {description}\n\n{kept}");
            if kept.len() < output.len() {
                let _ = write!(input, "\n[{} more bytes cut]", output.len() - kept.len());
            }
        }
        input
    }

    /// Replaces every subtask that is neither done nor waiting for approval with a new plan for what is
    /// left.
    async fn replan(&mut self, failed: &str, error: Error) -> Result<(), Error> {
        let plan = self.plan().clone();
        let waiting = |subtask: &Subtask| {
            matches!(
                self.state.subtasks.get(&subtask.id).map(|record| &record.status),
                Some(SubtaskStatus::Suspended { .. })
            )
        };
        let (kept, rest): (Vec<&Subtask>, Vec<&Subtask>) = plan
            .subtasks
            .iter()
            .partition(|subtask| self.state.is_done(&subtask.id) || waiting(subtask));
        let mut request = self.executor.request(self.state.goal.clone());
        request.replan = Some(Replan {
            done: kept
                .iter()
                .filter_map(|subtask| {
                    let output = self.state.output(&subtask.id)?;
                    Some(DoneSubtask {
                        subtask: (*subtask).clone(),
                        output: output.to_owned(),
                    })
                })
                .collect(),
            waiting: kept.iter().filter(|s| waiting(s)).map(|s| (*s).clone()).collect(),
            failed: plan.get(failed).cloned().unwrap_or_else(|| Subtask::new(failed, "")),
            error,
            remaining: rest
                .iter()
                .filter(|subtask| subtask.id != failed)
                .map(|subtask| (*subtask).clone())
                .collect(),
        });
        let new = self.make_plan(request).await?;
        let replan = self.state.replans.saturating_add(1);
        for subtask in rest {
            let record = self.state.subtasks.remove(&subtask.id).unwrap_or_default();
            self.state.replaced.push(ReplacedSubtask {
                subtask: subtask.clone(),
                record,
                replan,
            });
        }
        let mut next: Vec<Subtask> = kept.into_iter().cloned().collect();
        next.extend(new.subtasks);
        self.state.plan = Some(Plan::new(next));
        self.state.replans = replan;
        self.emit(PlanEvent::Replanned {
            failed: failed.to_owned(),
            plan: self.plan().clone(),
            replan,
        });
        self.checkpoint().await
    }

    /// Ends an execution in which nothing more could start: done, or waiting for approvals.
    fn finish(&self) -> Result<(), Error> {
        let call_ids: Vec<String> = self
            .state
            .pending_approvals()
            .map(|(_, approval)| approval.call.id.clone())
            .collect();
        if !call_ids.is_empty() {
            return Err(Error::ApprovalRequired { call_ids });
        }
        match self
            .plan()
            .subtasks
            .iter()
            .find(|subtask| !self.state.is_done(&subtask.id))
        {
            None => Ok(()),
            Some(subtask) => Err(Error::Config {
                message: format!("subtask {:?} cannot start: what it depends on is not done", subtask.id),
            }),
        }
    }
}
