//! The contract every [`JobQueue`] keeps, as tests any backend runs: ordering, idempotency, leases and
//! their expiry, retries and dead letters, cancellation, events, and jobs surviving a new connection.
//! A backend's test file implements [`Fixture`] and calls `queue_contract!(its fixture)`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]

use std::time::Duration;

use kai_core::async_trait;
use kai_jobs::{Error, JobQueue, JobSpec, JobStatus};
use serde_json::json;

/// One empty queue of a backend, opened as often as a test asks: each open is a connection of its
/// own, as a separate process would have.
#[async_trait]
pub(crate) trait Fixture: Send + Sync {
    /// A new connection to the queue.
    async fn open(&self) -> Box<dyn JobQueue>;
}

const LONG: Duration = Duration::from_secs(60);

pub(crate) async fn jobs_are_leased_by_priority_then_age_and_an_idempotency_key_adds_one_job(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    let low = queue.enqueue(JobSpec::agent("a", "low")).await.unwrap();
    let high = queue.enqueue(JobSpec::agent("a", "high").priority(5)).await.unwrap();
    let low_too = queue.enqueue(JobSpec::agent("a", "low too")).await.unwrap();
    let keyed = queue
        .enqueue(JobSpec::agent("a", "charge card").idempotency_key("order-7"))
        .await
        .unwrap();
    let again = queue
        .enqueue(JobSpec::agent("a", "charge card").idempotency_key("order-7"))
        .await
        .unwrap();
    assert_eq!(keyed, again);
    assert_eq!(queue.depth().await.unwrap(), 4);
    let mut order = Vec::new();
    while let Some(lease) = queue.lease("w", LONG).await.unwrap() {
        order.push(lease.job.id.clone());
        queue.complete(&lease, json!(null)).await.unwrap();
    }
    assert_eq!(order, [high, low, low_too, keyed]);
    assert_eq!(queue.depth().await.unwrap(), 0);
}

pub(crate) async fn invalid_jobs_are_refused(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    for spec in [
        JobSpec::agent("a", "x").max_attempts(0),
        JobSpec::agent("", "x"),
        JobSpec::plan("   "),
        JobSpec::agent("a", "x".repeat(kai_jobs::MAX_FIELD_BYTES + 1)),
        JobSpec::agent("a", "x").timeout(Duration::ZERO),
        JobSpec::agent("a", "x").backoff(Duration::from_millis(kai_jobs::MAX_BACKOFF_MS + 1)),
        JobSpec::agent("a", "x").idempotency_key(""),
    ] {
        assert!(matches!(queue.enqueue(spec).await, Err(Error::InvalidJob { .. })));
    }
    assert!(matches!(queue.job("nope").await, Err(Error::NotFound { .. })));
    assert!(queue.dead_letters().await.unwrap().is_empty());
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    assert!(queue.events(&id, u64::MAX).await.unwrap().is_empty());
}

pub(crate) async fn a_leased_job_is_nobody_elses_until_its_lease_expires_and_then_its_first_worker_is_locked_out(
    fixture: &dyn Fixture,
) {
    let queue = fixture.open().await;
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let first = queue.lease("w1", Duration::from_millis(300)).await.unwrap().unwrap();
    assert_eq!(first.job.attempts, 1);
    assert!(queue.lease("w2", LONG).await.unwrap().is_none());
    // Renewed, it stays the first worker's past the original end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue.renew(&first, Duration::from_millis(300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(queue.lease("w2", LONG).await.unwrap().is_none());
    // Not renewed again (the worker died): the next lease is the job's second attempt.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = queue
        .lease("w2", LONG)
        .await
        .unwrap()
        .expect("the expired job was not leased again");
    assert_eq!(second.job.id, id);
    assert_eq!(second.job.attempts, 2);
    // The first worker comes back: everything it does is refused.
    assert!(matches!(
        queue.complete(&first, json!("late")).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(queue.renew(&first, LONG).await, Err(Error::LeaseLost { .. })));
    assert!(matches!(
        queue.record_event(&first, json!({})).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        queue.fail(&first, kai_core::Error::Timeout, true).await,
        Err(Error::LeaseLost { .. })
    ));
    queue.complete(&second, json!("on time")).await.unwrap();
    let job = queue.job(&id).await.unwrap();
    assert_eq!((job.status, job.result), (JobStatus::Succeeded, Some(json!("on time"))));
}

pub(crate) async fn parallel_leases_on_separate_connections_never_give_one_job_twice(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    for i in 0..40 {
        queue.enqueue(JobSpec::agent("a", format!("job {i}"))).await.unwrap();
    }
    // Each worker has a connection of its own, as separate processes would: only the backend (SQLite's
    // locking, Redis's atomic scripts) keeps them apart.
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let queue = fixture.open().await;
        tasks.push(tokio::spawn(async move {
            let mut leased = Vec::new();
            while let Some(lease) = queue.lease(&format!("w{worker}"), LONG).await.unwrap() {
                leased.push(lease.job.id.clone());
                queue.complete(&lease, json!(worker)).await.unwrap();
            }
            leased
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!((count, all.len()), (40, 40));
}

pub(crate) async fn a_cancel_is_not_lost_to_a_failure_or_to_a_dead_worker(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    // Cancelled while running, then the run fails: cancelled, not queued for a retry.
    let failing = queue
        .enqueue(JobSpec::agent("a", "x").backoff(Duration::ZERO))
        .await
        .unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    queue.cancel(&failing).await.unwrap();
    let busy = kai_core::Error::Server {
        status: Some(503),
        message: "busy".into(),
    };
    assert_eq!(queue.fail(&lease, busy, true).await.unwrap(), JobStatus::Cancelled);
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    // Cancelled while its worker was dead: when the lease expires, it is cancelled, not run again.
    let orphan = queue.enqueue(JobSpec::agent("a", "y")).await.unwrap();
    let _dead = queue.lease("w1", Duration::from_millis(50)).await.unwrap().unwrap();
    assert_eq!(queue.cancel(&orphan).await.unwrap(), JobStatus::Running);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(queue.lease("w2", LONG).await.unwrap().is_none());
    assert_eq!(queue.job(&orphan).await.unwrap().status, JobStatus::Cancelled);
}

pub(crate) async fn failures_are_retried_after_their_backoff_then_dead_lettered(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    let id = queue
        .enqueue(
            JobSpec::agent("a", "x")
                .max_attempts(3)
                .backoff(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    let busy = || kai_core::Error::Server {
        status: Some(503),
        message: "busy".into(),
    };
    let first = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(queue.fail(&first, busy(), true).await.unwrap(), JobStatus::Queued);
    // Its backoff has not passed: nothing is due.
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(120)).await;
    let second = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(second.job.attempts, 2);
    assert_eq!(second.job.error, Some(busy()));
    assert_eq!(queue.fail(&second, busy(), true).await.unwrap(), JobStatus::Queued);
    // The second backoff is doubled.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(queue.fail(&third, busy(), true).await.unwrap(), JobStatus::Failed);
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].attempts), (id.as_str(), 3));

    // A failure no retry mends is dead-lettered at once; so is a job whose last lease expired.
    let refused = queue.enqueue(JobSpec::agent("a", "y")).await.unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    let error = kai_core::Error::Authentication {
        message: "bad key".into(),
    };
    assert_eq!(queue.fail(&lease, error, false).await.unwrap(), JobStatus::Failed);
    let abandoned = queue.enqueue(JobSpec::agent("a", "z").max_attempts(1)).await.unwrap();
    let _lost = queue.lease("w", Duration::from_millis(50)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    let job = queue.job(&abandoned).await.unwrap();
    assert_eq!(
        (job.status, job.error),
        (JobStatus::Failed, Some(kai_core::Error::Timeout))
    );
    let dead: Vec<String> = queue
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(dead, [id, refused, abandoned]);
}

pub(crate) async fn cancelling_a_queued_job_ends_it_and_a_running_one_asks_its_worker(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    let waiting = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    assert_eq!(queue.cancel(&waiting).await.unwrap(), JobStatus::Cancelled);
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    let running = queue.enqueue(JobSpec::agent("a", "y")).await.unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    assert!(!queue.renew(&lease, LONG).await.unwrap().cancel_requested);
    assert_eq!(queue.cancel(&running).await.unwrap(), JobStatus::Running);
    assert!(queue.renew(&lease, LONG).await.unwrap().cancel_requested);
    queue.finish_cancelled(&lease).await.unwrap();
    assert_eq!(queue.job(&running).await.unwrap().status, JobStatus::Cancelled);
    // A finished job stays as it was.
    assert_eq!(queue.cancel(&running).await.unwrap(), JobStatus::Cancelled);
}

pub(crate) async fn events_are_kept_in_order_with_their_attempt_and_jobs_survive_a_reconnect(fixture: &dyn Fixture) {
    let id = {
        let queue = fixture.open().await;
        let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
        let lease = queue.lease("w", LONG).await.unwrap().unwrap();
        for step in 1..=3 {
            queue.record_event(&lease, json!({"step": step})).await.unwrap();
        }
        queue.complete(&lease, json!({"answer": 42})).await.unwrap();
        queue.enqueue(JobSpec::agent("a", "still waiting")).await.unwrap();
        id
    };
    let queue = fixture.open().await;
    let job = queue.job(&id).await.unwrap();
    assert_eq!(job.result, Some(json!({"answer": 42})));
    let events = queue.events(&id, 1).await.unwrap();
    let steps: Vec<(u64, u32, serde_json::Value)> = events
        .into_iter()
        .map(|e| (e.seq, e.attempt, e.event["step"].clone()))
        .collect();
    assert_eq!(steps, [(2, 1, json!(2)), (3, 1, json!(3))]);
    assert_eq!(queue.depth().await.unwrap(), 1);
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.spec, JobSpec::agent("a", "still waiting"));
}

pub(crate) async fn a_retry_joins_the_line_behind_the_jobs_already_waiting(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    let first = queue
        .enqueue(JobSpec::agent("a", "first").backoff(Duration::ZERO))
        .await
        .unwrap();
    let second = queue.enqueue(JobSpec::agent("a", "second")).await.unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.id, first);
    // The run takes a moment; then it fails and is due again at once, after the second job.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let busy = kai_core::Error::Server {
        status: Some(503),
        message: "busy".into(),
    };
    assert_eq!(queue.fail(&lease, busy, true).await.unwrap(), JobStatus::Queued);
    let mut order = Vec::new();
    while let Some(lease) = queue.lease("w", LONG).await.unwrap() {
        order.push(lease.job.id.clone());
        queue.complete(&lease, json!(null)).await.unwrap();
    }
    assert_eq!(order, [second, first]);
}

pub(crate) async fn depth_counts_waiting_jobs_through_retries_cancels_takeovers_and_expiries(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    let retried = queue
        .enqueue(JobSpec::agent("a", "x").backoff(Duration::from_secs(60)))
        .await
        .unwrap();
    queue.enqueue(JobSpec::agent("a", "y")).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(
        (lease.job.id.as_str(), queue.depth().await.unwrap()),
        (retried.as_str(), 1)
    );
    // Waiting for its backoff, a job counts as queued; cancelled there, it no longer does.
    queue.fail(&lease, kai_core::Error::Timeout, true).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
    assert_eq!(queue.cancel(&retried).await.unwrap(), JobStatus::Cancelled);
    assert_eq!(queue.depth().await.unwrap(), 1);
    // Taken over after its lease expired, a job was never queued again.
    let _dead = queue.lease("w1", Duration::from_millis(50)).await.unwrap().unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let taken = queue.lease("w2", LONG).await.unwrap().unwrap();
    assert_eq!((taken.job.attempts, queue.depth().await.unwrap()), (2, 0));
    queue.complete(&taken, json!(null)).await.unwrap();
    // Dead-lettered when its last lease expired: still nothing queued.
    queue.enqueue(JobSpec::agent("a", "z").max_attempts(1)).await.unwrap();
    let _lost = queue.lease("w", Duration::from_millis(50)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    assert_eq!(queue.depth().await.unwrap(), 0);
    assert_eq!(queue.dead_letters().await.unwrap().len(), 1);
}

pub(crate) async fn leases_of_any_length_are_taken_renewed_and_ended(fixture: &dyn Fixture) {
    let queue = fixture.open().await;
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let lease = queue.lease("w", Duration::MAX).await.unwrap().unwrap();
    assert!(queue.lease("w2", LONG).await.unwrap().is_none());
    let renewed = queue.renew(&lease, Duration::MAX).await.unwrap();
    assert!(renewed.expires_ms > lease.job.created_ms);
    queue.complete(&lease, json!("done")).await.unwrap();
    assert_eq!(queue.job(&id).await.unwrap().status, JobStatus::Succeeded);
    // A lease of no length is taken, and its job is another worker's at the next lease.
    let id = queue.enqueue(JobSpec::agent("a", "y")).await.unwrap();
    let brief = queue.lease("w", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((brief.job.id.as_str(), brief.job.attempts), (id.as_str(), 1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let next = queue.lease("w2", LONG).await.unwrap().unwrap();
    assert_eq!((next.job.id.as_str(), next.job.attempts), (id.as_str(), 2));
    assert_eq!(queue.depth().await.unwrap(), 0);
}

/// A `#[tokio::test]` per contract test, on the fixture `$fixture` makes (an expression, evaluated
/// once per test).
#[macro_export]
macro_rules! queue_contract {
    ($fixture:expr) => {
        $crate::queue_contract!(@tests $fixture; jobs_are_leased_by_priority_then_age_and_an_idempotency_key_adds_one_job, invalid_jobs_are_refused, a_leased_job_is_nobody_elses_until_its_lease_expires_and_then_its_first_worker_is_locked_out, parallel_leases_on_separate_connections_never_give_one_job_twice, a_cancel_is_not_lost_to_a_failure_or_to_a_dead_worker, failures_are_retried_after_their_backoff_then_dead_lettered, cancelling_a_queued_job_ends_it_and_a_running_one_asks_its_worker, events_are_kept_in_order_with_their_attempt_and_jobs_survive_a_reconnect, a_retry_joins_the_line_behind_the_jobs_already_waiting, depth_counts_waiting_jobs_through_retries_cancels_takeovers_and_expiries, leases_of_any_length_are_taken_renewed_and_ended);
    };
    (@tests $fixture:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fixture = $fixture;
                contract::$name(&fixture).await;
            }
        )*
    };
}
