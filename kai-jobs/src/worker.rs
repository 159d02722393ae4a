//! Workers: lease jobs, run them on agents or a plan executor, renew the lease while they run, and
//! record how each ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::Either;
use futures::{FutureExt as _, StreamExt as _};
use kai_core::plan::{PlanEvent, PlanExecutor, PlanState, RetryPolicy};
use kai_core::{Agent, AgentEvent, CancellationToken, RunOptions, RunState};

use crate::db::now_ms;
use crate::error::Error;
use crate::job::{JobKind, Lease};
use crate::queue::JobQueue;

/// Runs jobs from a queue: up to `concurrency` at once, each under a lease it renews every third of
/// the lease's length. A cancel asked for, a lease lost (the worker hung past it and another took the
/// job) or the job's timeout stops the run and its tools; a failure is retried under the job's
/// budget unless no retry would mend it (a refusal, a configuration error), then dead-lettered.
///
/// Delivery is at least once: a worker paused past its lease (stopped, suspended) may still be in a
/// tool call when another worker starts the job again, and a worker that dies after a tool call but
/// before the job's end leaves that call to be made again. Give tools with side effects the call's
/// [`idempotency_key`](kai_core::ToolContext::idempotency_key) (each attempt is a new run, so key
/// them by the job's input where repeats matter). Each retry starts the run or plan afresh.
///
/// Events of each run (tool calls, steps, a plan's progress; not text deltas) are recorded with the
/// job, and the run's output (`RunOutput` or `PlanOutput`) is its result.
///
/// Through the `metrics` facade (any recorder, such as kai-core's Prometheus exporter) it records
/// `kai_job_wait_seconds` (enqueued to leased), `kai_job_duration_seconds` and
/// `kai_jobs_finished_total` by `outcome` (`succeeded`, `failed`: a failed attempt, retried or not,
/// `cancelled`, `lease_lost`, `error`), and `kai_jobs_queued`.
#[derive(Clone)]
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    id: String,
    agents: HashMap<String, Agent>,
    plans: Option<PlanExecutor>,
    concurrency: usize,
    lease: Duration,
    poll: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("plans", &self.plans.is_some())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .finish()
    }
}

/// How a job's run ended, from the worker's side.
enum Ended {
    /// With a result.
    Done(serde_json::Value),
    /// With an error.
    Failed(kai_core::Error),
    /// A cancel was asked for.
    Cancelled,
    /// The lease was lost: the job is another worker's now.
    LeaseLost,
}

impl Worker {
    /// A worker named `id` (unique among the queue's workers) on `queue`: 1 job at a time, 30 s
    /// leases, polling every 200 ms when the queue is empty.
    pub fn new(queue: Arc<dyn JobQueue>, id: impl Into<String>) -> Self {
        Self {
            queue,
            id: id.into(),
            agents: HashMap::new(),
            plans: None,
            concurrency: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
        }
    }

    /// Runs agent jobs naming `name` on `agent`.
    pub fn agent(mut self, name: impl Into<String>, agent: Agent) -> Self {
        self.agents.insert(name.into(), agent);
        self
    }

    /// Runs plan jobs on `executor` (which needs a planner).
    pub fn plans(mut self, executor: PlanExecutor) -> Self {
        self.plans = Some(executor);
        self
    }

    /// How many jobs run at once (at least 1).
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs.max(1);
        self
    }

    /// How long a lease lasts before it must be renewed (it is renewed every third of it): from 30 ms
    /// to a day.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_millis(30), Duration::from_secs(24 * 60 * 60));
        self
    }

    /// How long to wait before asking again when the queue had nothing (at least 10 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(10));
        self
    }

    /// Leases and runs jobs until `stop` is cancelled, then lets the jobs under way finish (give jobs
    /// timeouts so that this ends). Each job runs as a task of its own, so a slow lease query never
    /// holds up the renewals of the jobs under way; a failing queue is retried, not given up on.
    pub async fn run(&self, stop: CancellationToken) -> Result<(), Error> {
        let mut running = tokio::task::JoinSet::new();
        loop {
            while let Some(finished) = running.try_join_next() {
                log_failure(finished);
            }
            let mut leased = false;
            if !stop.is_cancelled() && running.len() < self.concurrency {
                let asked = Instant::now();
                match self.queue.lease(&self.id, self.lease).await {
                    Ok(Some(lease)) => {
                        let worker = self.clone();
                        running.spawn(async move { worker.execute(lease, asked).await });
                        leased = true;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(worker = %self.id, %error, "leasing a job failed; trying again"),
                }
            }
            if stop.is_cancelled() {
                while let Some(finished) = running.join_next().await {
                    log_failure(finished);
                }
                return Ok(());
            }
            if leased {
                continue;
            }
            // Nothing to lease, no room, or the queue failed: wait for a job to end, the poll interval,
            // or the stop.
            let idle = Box::pin(kai_core::sleep(self.poll));
            let stopped = Box::pin(stop.cancelled());
            let waiting = futures::future::select(idle, stopped);
            if running.is_empty() {
                waiting.await;
            } else if let Either::Left((Some(finished), _)) =
                futures::future::select(Box::pin(running.join_next()), waiting).await
            {
                log_failure(finished);
            }
        }
    }

    /// Leases one job and runs it to its end; returns its id, or `None` if the queue had nothing.
    pub async fn run_one(&self) -> Result<Option<String>, Error> {
        let asked = Instant::now();
        let Some(lease) = self.queue.lease(&self.id, self.lease).await? else {
            return Ok(None);
        };
        let id = lease.job.id.clone();
        self.execute(lease, asked).await?;
        Ok(Some(id))
    }

    /// Runs a leased job, renewing its lease, and records how it ended (and its metrics).
    async fn execute(&self, lease: Lease, asked: Instant) -> Result<(), Error> {
        let started = Instant::now();
        let waited_ms = u64::try_from(now_ms())
            .unwrap_or_default()
            .saturating_sub(lease.job.created_ms);
        metrics::histogram!("kai_job_wait_seconds").record(waited_ms as f64 / 1000.0);
        let outcome = self.execute_leased(&lease, asked).await;
        let status = match &outcome {
            Ok(status) => *status,
            Err(_) => "error",
        };
        metrics::counter!("kai_jobs_finished_total", "outcome" => status).increment(1);
        metrics::histogram!("kai_job_duration_seconds", "outcome" => status).record(started.elapsed().as_secs_f64());
        if let Ok(depth) = self.queue.depth().await {
            metrics::gauge!("kai_jobs_queued").set(depth as f64);
        }
        outcome.map(drop)
    }

    /// [`execute`](Self::execute) without the metrics; returns how the job ended.
    async fn execute_leased(&self, lease: &Lease, asked: Instant) -> Result<&'static str, Error> {
        let lease = lease.clone();
        // A cancel asked for before this worker took the job (its last worker died, say).
        if lease.job.cancel_requested {
            return self.finish(&lease, Ended::Cancelled).await.map(|()| "cancelled");
        }
        // Stops the run the way a caller's cancel does, so its tools see it and the run ends
        // cleanly, rather than being dropped mid-call.
        let stop = CancellationToken::new();
        // Fused: once it has ended (a cancel, a lost lease) it stays pending below.
        let mut keep = Box::pin(self.keep_lease(&lease, asked).fuse());
        let ended = {
            let work = Box::pin(self.work(&lease, &stop));
            match futures::future::select(work, keep.as_mut()).await {
                Either::Left((ended, _)) => ended,
                Either::Right((ended, work)) => {
                    stop.cancel();
                    work.await;
                    ended
                }
            }
        };
        let label = match &ended {
            Ended::Done(_) => "succeeded",
            Ended::Failed(_) => "failed",
            Ended::Cancelled => "cancelled",
            Ended::LeaseLost => return Ok("lease_lost"),
        };
        // The lease is still renewed while the outcome is written, in case that takes retries.
        match futures::future::select(Box::pin(self.finish(&lease, ended)), keep).await {
            Either::Left((written, _)) => written.map(|()| label),
            Either::Right((_, _)) => Err(Error::LeaseLost {
                id: lease.job.id.clone(),
            }),
        }
    }

    /// Writes how a job ended, retrying a failing queue a few times: a result lost here would have
    /// the job run again.
    async fn finish(&self, lease: &Lease, ended: Ended) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            let written = match &ended {
                Ended::Done(result) => self.queue.complete(lease, result.clone()).await,
                Ended::Failed(error) => {
                    let retry = RetryPolicy::default().retries(error);
                    self.queue.fail(lease, error.clone(), retry).await.map(drop)
                }
                Ended::Cancelled => self.queue.finish_cancelled(lease).await,
                Ended::LeaseLost => Ok(()),
            };
            match written {
                Err(Error::Storage { .. }) if attempt < FINISH_RETRIES => {
                    attempt += 1;
                    kai_core::sleep(Duration::from_millis(100) * attempt).await;
                }
                written => return written,
            }
        }
    }

    /// Renews the lease until a cancel is asked for or the lease is lost. A renewal is due a third of
    /// the way through the lease; a failed one is tried again soon. Each lease is counted from before
    /// it was asked for (`asked`, then each renewal's sending), so by the worker's own clock it ends no
    /// later than on the queue's; the worker gives the job up a tenth of a lease before that end, and
    /// stops waiting for a renewal's answer then: the queue lets another worker take the job once the
    /// lease ends.
    async fn keep_lease(&self, lease: &Lease, asked: Instant) -> Ended {
        let margin = self.lease / 10;
        let mut held_from = asked;
        let mut next_try = asked + self.lease / 3;
        loop {
            let give_up = held_from + self.lease - margin;
            kai_core::sleep(next_try.saturating_duration_since(Instant::now())).await;
            let sent = Instant::now();
            let renewal = tokio::time::timeout(
                give_up.saturating_duration_since(sent),
                self.queue.renew(lease, self.lease),
            )
            .await;
            match renewal {
                Ok(Ok(answer)) if answer.cancel_requested => return Ended::Cancelled,
                Ok(Ok(_)) => {
                    held_from = sent;
                    next_try = sent + self.lease / 3;
                }
                Ok(Err(Error::LeaseLost { .. })) => return Ended::LeaseLost,
                Ok(Err(error)) if Instant::now() < give_up => {
                    tracing::warn!(job = %lease.job.id, %error, "renewing a lease failed; trying again");
                    let now = Instant::now();
                    next_try = now + (self.lease / 20).min(give_up.saturating_duration_since(now));
                }
                Ok(Err(error)) => {
                    tracing::warn!(job = %lease.job.id, %error, "the lease ran out without a renewal; giving the job up");
                    return Ended::LeaseLost;
                }
                Err(_) => {
                    tracing::warn!(job = %lease.job.id, "no renewal answered before the lease ran out; giving the job up");
                    return Ended::LeaseLost;
                }
            }
        }
    }

    /// The job's run, stopped through `stop` when its timeout passes.
    async fn work(&self, lease: &Lease, stop: &CancellationToken) -> Ended {
        let run = Box::pin(self.run_job(lease, stop));
        let Some(timeout) = lease.job.spec.timeout_ms else {
            return run.await;
        };
        let expired = Box::pin(tokio::time::sleep(Duration::from_millis(timeout)));
        match futures::future::select(run, expired).await {
            Either::Left((ended, _)) => ended,
            Either::Right(((), run)) => {
                stop.cancel();
                run.await;
                Ended::Failed(kai_core::Error::Timeout)
            }
        }
    }

    async fn run_job(&self, lease: &Lease, stop: &CancellationToken) -> Ended {
        let options = RunOptions::cancel_on(stop.clone());
        match &lease.job.spec.kind {
            JobKind::Agent { agent, input } => {
                let Some(agent) = self.agents.get(agent) else {
                    return Ended::Failed(kai_core::Error::Config {
                        message: format!("worker {} has no agent named {agent:?}", self.id),
                    });
                };
                let mut events = agent.stream_with(RunState::new(input.clone()), options);
                while let Some(event) = events.next().await {
                    match event {
                        Ok(AgentEvent::Finished { output }) => return done(&*output),
                        Ok(AgentEvent::TextDelta { .. } | AgentEvent::ReasoningDelta { .. }) => {}
                        Ok(event) => {
                            if let Some(lost) = self.record(lease, &event).await {
                                return lost;
                            }
                        }
                        Err(failure) => return Ended::Failed(failure.error),
                    }
                }
                Ended::Failed(kai_core::Error::Config {
                    message: "the agent's event stream ended without its result".into(),
                })
            }
            JobKind::Plan { goal } => {
                let Some(executor) = &self.plans else {
                    return Ended::Failed(kai_core::Error::Config {
                        message: format!("worker {} runs no plans", self.id),
                    });
                };
                let mut events = executor.stream_with(PlanState::new(goal.clone()), options);
                while let Some(event) = events.next().await {
                    match event {
                        Ok(PlanEvent::Finished { output }) => return done(&*output),
                        Ok(PlanEvent::Subtask {
                            event: AgentEvent::TextDelta { .. } | AgentEvent::ReasoningDelta { .. },
                            ..
                        }) => {}
                        Ok(event) => {
                            if let Some(lost) = self.record(lease, &event).await {
                                return lost;
                            }
                        }
                        Err(failure) => return Ended::Failed(failure.error),
                    }
                }
                Ended::Failed(kai_core::Error::Config {
                    message: "the plan's event stream ended without its result".into(),
                })
            }
        }
    }

    /// Records an event; `Some` ends the run when the lease is lost.
    async fn record<E: serde::Serialize>(&self, lease: &Lease, event: &E) -> Option<Ended> {
        let event = serde_json::to_value(event).ok()?;
        match self.queue.record_event(lease, event).await {
            Ok(()) => None,
            Err(Error::LeaseLost { .. }) => Some(Ended::LeaseLost),
            Err(error) => {
                tracing::warn!(job = %lease.job.id, %error, "recording an event failed");
                None
            }
        }
    }
}

fn done<T: serde::Serialize>(output: &T) -> Ended {
    match serde_json::to_value(output) {
        Ok(value) => Ended::Done(value),
        Err(error) => Ended::Failed(kai_core::Error::Config {
            message: format!("the job's result does not serialize: {error}"),
        }),
    }
}

fn log_failure(finished: Result<Result<(), Error>, tokio::task::JoinError>) {
    match finished {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "finishing a job failed"),
        // A panic's message can hold anything (a prompt, a secret): it goes to the debug log only.
        Err(error) if error.is_panic() => {
            tracing::warn!("a job's task panicked");
            tracing::debug!(%error, "a job's task panicked");
        }
        Err(error) => tracing::warn!(%error, "a job's task failed"),
    }
}

/// How many times the outcome of a job is written again after a storage error.
const FINISH_RETRIES: u32 = 5;
