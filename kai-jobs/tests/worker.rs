//! Workers on the embedded queue: agent and plan jobs on the scripted model, concurrency, timeouts,
//! cancellation, and a job taken over after its worker died.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kai_core::plan::{LlmPlanner, PlanExecutor};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, CancellationToken, Tool, ToolContext, dynamic_tool};
use kai_jobs::{JobQueue, JobSpec, JobStatus, SqliteQueue, Worker};
use serde_json::json;

fn queue() -> (tempfile::TempDir, Arc<SqliteQueue>) {
    let directory = tempfile::tempdir().unwrap();
    let queue = Arc::new(SqliteQueue::open(directory.path().join("jobs.sqlite3")).unwrap());
    (directory, queue)
}

/// A tool that counts calls at once (and the most at once), taking `pause` each.
fn busy_tool(running: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>, pause: Duration) -> Arc<dyn Tool> {
    let (running, most) = (Arc::clone(running), Arc::clone(most));
    Arc::new(
        dynamic_tool("work", "Works.", json!({"type": "object"}), move |_, _| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            async move {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(json!("worked"))
            }
        })
        .unwrap(),
    )
}

/// A tool that never returns, counting the calls whose cancellation it saw.
fn stuck_tool(cancelled: &Arc<AtomicUsize>) -> Arc<dyn Tool> {
    let cancelled = Arc::clone(cancelled);
    Arc::new(
        dynamic_tool(
            "stuck",
            "Hangs.",
            json!({"type": "object"}),
            move |_, context: ToolContext| {
                let cancelled = Arc::clone(&cancelled);
                async move {
                    context.cancel.cancelled().await;
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    futures::future::pending::<()>().await;
                    Ok(json!("never"))
                }
            },
        )
        .unwrap(),
    )
}

async fn wait_for(queue: &SqliteQueue, id: &str, status: JobStatus) -> kai_jobs::Job {
    for _ in 0..200 {
        let job = queue.job(id).await.unwrap();
        if job.status == status {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} never became {status:?}: {:?}", queue.job(id).await.unwrap());
}

#[tokio::test]
async fn a_worker_drains_the_queue_within_its_concurrency_and_keeps_results_and_events() {
    let (_directory, queue) = queue();
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let model = ScriptedModel::new()
        .tool_call("work", json!({}))
        .text("done")
        .repeat()
        .record_requests(false);
    let agent = Agent::builder(model)
        .shared_tool(busy_tool(&running, &most, Duration::from_millis(50)))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            queue
                .enqueue(JobSpec::agent("helper", format!("task {i}")))
                .await
                .unwrap(),
        );
    }
    let worker = Worker::new(queue.clone(), "w1")
        .agent("helper", agent)
        .concurrency(2)
        .poll_interval(Duration::from_millis(20));
    let stop = CancellationToken::new();
    let running_worker = {
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(stop).await })
    };
    for id in &ids {
        let job = wait_for(&queue, id, JobStatus::Succeeded).await;
        assert_eq!(job.result.as_ref().unwrap()["answer"], "done");
        assert_eq!(job.attempts, 1);
    }
    stop.cancel();
    running_worker.await.unwrap().unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 2);
    // The run's events, text deltas left out.
    let kinds: Vec<String> = queue
        .events(&ids[0], 0)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "tool_call_started",
            "tool_call_finished",
            "step_finished",
            "step_finished"
        ]
    );
}

#[tokio::test]
async fn failures_are_retried_and_what_no_retry_mends_is_dead_lettered_at_once() {
    let (_directory, queue) = queue();
    let model = ScriptedModel::new()
        .fail(kai_core::Error::Server {
            status: Some(503),
            message: "busy".into(),
        })
        .text("second time lucky");
    let worker = Worker::new(queue.clone(), "w").agent("a", Agent::builder(model).build().unwrap());
    let flaky = queue
        .enqueue(JobSpec::agent("a", "x").backoff(Duration::from_millis(10)))
        .await
        .unwrap();
    let unknown = queue.enqueue(JobSpec::agent("nobody", "x")).await.unwrap();
    worker.run_one().await.unwrap();
    worker.run_one().await.unwrap();
    assert_eq!(queue.job(&unknown).await.unwrap().status, JobStatus::Failed);
    assert!(matches!(
        queue.job(&unknown).await.unwrap().error,
        Some(kai_core::Error::Config { .. })
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    worker.run_one().await.unwrap();
    let job = queue.job(&flaky).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 2));
    assert_eq!(job.result.unwrap()["answer"], "second time lucky");
}

#[tokio::test]
async fn a_timeout_stops_the_run_and_its_tools() {
    let (_directory, queue) = queue();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let model = ScriptedModel::new().tool_call("stuck", json!({})).repeat();
    let agent = Agent::builder(model)
        .shared_tool(stuck_tool(&cancelled))
        .build()
        .unwrap();
    let worker = Worker::new(queue.clone(), "w").agent("a", agent);
    let id = queue
        .enqueue(
            JobSpec::agent("a", "x")
                .timeout(Duration::from_millis(100))
                .max_attempts(1),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker.run_one())
        .await
        .expect("the timeout did not stop the run")
        .unwrap();
    let job = queue.job(&id).await.unwrap();
    assert_eq!(
        (job.status, job.error),
        (JobStatus::Failed, Some(kai_core::Error::Timeout))
    );
    assert_eq!(cancelled.load(Ordering::SeqCst), 1, "the tool did not see the stop");
}

#[tokio::test]
async fn a_cancel_reaches_the_running_job_through_its_lease() {
    let (_directory, queue) = queue();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let model = ScriptedModel::new().tool_call("stuck", json!({}));
    let agent = Agent::builder(model)
        .shared_tool(stuck_tool(&cancelled))
        .build()
        .unwrap();
    let worker = Worker::new(queue.clone(), "w")
        .agent("a", agent)
        .lease(Duration::from_millis(150));
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let running = tokio::spawn(async move { worker.run_one().await });
    wait_for(&queue, &id, JobStatus::Running).await;
    assert_eq!(queue.cancel(&id).await.unwrap(), JobStatus::Running);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the cancel did not reach the worker")
        .unwrap()
        .unwrap();
    assert_eq!(queue.job(&id).await.unwrap().status, JobStatus::Cancelled);
    assert_eq!(cancelled.load(Ordering::SeqCst), 1, "the tool did not see the cancel");
}

#[tokio::test]
async fn a_job_whose_worker_died_is_finished_by_another_exactly_once() {
    let (_directory, queue) = queue();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    // The first worker hangs in a tool, then dies: its task is aborted, nothing is written on the way out.
    let hanging = Agent::builder(ScriptedModel::new().tool_call("stuck", json!({})))
        .shared_tool(stuck_tool(&cancelled))
        .build()
        .unwrap();
    let first = Worker::new(queue.clone(), "w1")
        .agent("a", hanging)
        .lease(Duration::from_millis(200));
    let task = tokio::spawn(async move { first.run_one().await });
    wait_for(&queue, &id, JobStatus::Running).await;
    task.abort();
    let _ = task.await;
    // Another worker takes the job once the dead one's lease expires.
    let model = ScriptedModel::new().text("finished by w2");
    let second = Worker::new(queue.clone(), "w2")
        .agent("a", Agent::builder(model.clone()).build().unwrap())
        .lease(Duration::from_millis(200));
    assert!(
        second.run_one().await.unwrap().is_none(),
        "taken while its lease still held"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(second.run_one().await.unwrap().as_deref(), Some(id.as_str()));
    let job = queue.job(&id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 2));
    assert_eq!(job.result.unwrap()["answer"], "finished by w2");
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn a_plan_job_runs_on_the_workers_plan_executor() {
    let (_directory, queue) = queue();
    let planner = ScriptedModel::new().tool_call(
        "final_result",
        json!({"subtasks": [{"id": "one", "description": "Do one."}, {"id": "two", "description": "Do two.", "depends_on": ["one"]}]}),
    );
    let workers = ScriptedModel::new().text("one done").text("two done");
    let executor = PlanExecutor::builder(Agent::builder(workers).build().unwrap())
        .planner(LlmPlanner::new(Agent::builder(planner).build().unwrap()))
        .build()
        .unwrap();
    let worker = Worker::new(queue.clone(), "w").plans(executor);
    let id = queue.enqueue(JobSpec::plan("Do two things")).await.unwrap();
    worker.run_one().await.unwrap();
    let job = queue.job(&id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.result.as_ref().unwrap()["answer"], "two done");
    let kinds: Vec<String> = queue
        .events(&id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event["type"].as_str().unwrap().to_owned())
        .filter(|kind| kind != "subtask")
        .collect();
    assert_eq!(
        kinds,
        [
            "planned",
            "subtask_started",
            "subtask_finished",
            "subtask_started",
            "subtask_finished"
        ]
    );
}

/// A queue whose first leases fail, as a database another process holds locked would, and whose
/// renewals hang when asked to, as a server that stopped answering would.
struct Flaky {
    queue: SqliteQueue,
    failures: AtomicUsize,
    /// Renewals answered before the rest hang (`usize::MAX`: all are answered).
    renewals_answered: usize,
    renewals: AtomicUsize,
    /// When the last answered renewal was asked for.
    last_renewal: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Flaky {
    fn new(queue: SqliteQueue, failures: usize, renewals_answered: usize) -> Self {
        Self {
            queue,
            failures: AtomicUsize::new(failures),
            renewals_answered,
            renewals: AtomicUsize::new(0),
            last_renewal: std::sync::Mutex::new(None),
        }
    }
}

#[kai_core::async_trait]
impl JobQueue for Flaky {
    async fn enqueue(&self, spec: JobSpec) -> Result<String, kai_jobs::Error> {
        self.queue.enqueue(spec).await
    }
    async fn lease(&self, worker: &str, duration: Duration) -> Result<Option<kai_jobs::Lease>, kai_jobs::Error> {
        if self.failures.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(kai_jobs::Error::Storage {
                message: "database is locked".into(),
            });
        }
        self.failures.store(0, Ordering::SeqCst);
        self.queue.lease(worker, duration).await
    }
    async fn renew(&self, lease: &kai_jobs::Lease, duration: Duration) -> Result<kai_jobs::Renewed, kai_jobs::Error> {
        if self.renewals.fetch_add(1, Ordering::SeqCst) >= self.renewals_answered {
            return std::future::pending().await;
        }
        *self.last_renewal.lock().unwrap() = Some(std::time::Instant::now());
        self.queue.renew(lease, duration).await
    }
    async fn complete(&self, lease: &kai_jobs::Lease, result: serde_json::Value) -> Result<(), kai_jobs::Error> {
        self.queue.complete(lease, result).await
    }
    async fn fail(
        &self,
        lease: &kai_jobs::Lease,
        error: kai_core::Error,
        retry: bool,
    ) -> Result<JobStatus, kai_jobs::Error> {
        self.queue.fail(lease, error, retry).await
    }
    async fn finish_cancelled(&self, lease: &kai_jobs::Lease) -> Result<(), kai_jobs::Error> {
        self.queue.finish_cancelled(lease).await
    }
    async fn record_event(&self, lease: &kai_jobs::Lease, event: serde_json::Value) -> Result<(), kai_jobs::Error> {
        self.queue.record_event(lease, event).await
    }
    async fn cancel(&self, id: &str) -> Result<JobStatus, kai_jobs::Error> {
        self.queue.cancel(id).await
    }
    async fn job(&self, id: &str) -> Result<kai_jobs::Job, kai_jobs::Error> {
        self.queue.job(id).await
    }
    async fn events(&self, id: &str, after: u64) -> Result<Vec<kai_jobs::JobEvent>, kai_jobs::Error> {
        self.queue.events(id, after).await
    }
    async fn dead_letters(&self) -> Result<Vec<kai_jobs::Job>, kai_jobs::Error> {
        self.queue.dead_letters().await
    }
    async fn depth(&self) -> Result<u64, kai_jobs::Error> {
        self.queue.depth().await
    }
}

#[tokio::test]
async fn a_worker_keeps_going_when_the_queue_fails_for_a_while() {
    let directory = tempfile::tempdir().unwrap();
    let flaky = Arc::new(Flaky::new(
        SqliteQueue::open(directory.path().join("jobs.sqlite3")).unwrap(),
        3,
        usize::MAX,
    ));
    let id = flaky.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let model = ScriptedModel::new().text("done anyway");
    let worker = Worker::new(flaky.clone(), "w")
        .agent("a", Agent::builder(model).build().unwrap())
        .poll_interval(Duration::from_millis(10));
    let stop = CancellationToken::new();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(stop).await })
    };
    for _ in 0..200 {
        if flaky.job(&id).await.unwrap().status == JobStatus::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(flaky.job(&id).await.unwrap().status, JobStatus::Succeeded);
}

/// Runs a job whose tool takes 5 s on a worker with a 600 ms lease whose renewals hang after
/// `answered` of them; checks it stopped the run before its lease ended and another worker then took
/// the job.
async fn renewals_hang_after(answered: usize) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jobs.sqlite3");
    let hanging = Arc::new(Flaky::new(SqliteQueue::open(&path).unwrap(), 0, answered));
    let id = hanging.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let slow = kai_core::dynamic_tool(
        "slow",
        "Takes long.",
        serde_json::json!({"type": "object"}),
        |_: serde_json::Value, _: kai_core::ToolContext| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(serde_json::json!("late"))
        },
    )
    .unwrap();
    let model = ScriptedModel::new()
        .tool_call("slow", serde_json::json!({}))
        .text("done");
    let lease = Duration::from_millis(600);
    let worker = Worker::new(hanging.clone(), "w1")
        .agent("a", Agent::builder(model).tool(slow).build().unwrap())
        .lease(lease);
    let started = std::time::Instant::now();
    worker.run_one().await.unwrap();
    // It stopped waiting for its renewal, and the run, before the lease (from the last renewal it
    // got, or its start) ran out.
    let held_from = hanging.last_renewal.lock().unwrap().unwrap_or(started);
    assert_eq!(hanging.last_renewal.lock().unwrap().is_some(), answered > 0);
    assert!(
        held_from.elapsed() < lease,
        "the worker held on for {:?}",
        held_from.elapsed()
    );
    // The job is untouched, so once the lease ends another worker takes it.
    tokio::time::sleep(lease).await;
    let queue = SqliteQueue::open(&path).unwrap();
    let second = queue.lease("w2", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!((second.job.id.as_str(), second.job.attempts), (id.as_str(), 2));
}

#[tokio::test]
async fn a_worker_whose_renewals_hang_gives_the_job_up_before_its_lease_ends() {
    renewals_hang_after(0).await;
}

#[tokio::test]
async fn a_worker_whose_renewals_hang_after_one_answer_gives_the_job_up_before_its_renewed_lease_ends() {
    renewals_hang_after(1).await;
}
