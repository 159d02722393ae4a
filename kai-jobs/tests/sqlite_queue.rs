//! The embedded queue: ordering, idempotency, leases and their expiry, retries and dead letters,
//! cancellation, events, and jobs surviving a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use kai_jobs::{Error, JobQueue, JobSpec, JobStatus, SqliteQueue};
use serde_json::json;

fn queue() -> (tempfile::TempDir, SqliteQueue) {
    let directory = tempfile::tempdir().unwrap();
    let queue = SqliteQueue::open(directory.path().join("jobs.sqlite3")).unwrap();
    (directory, queue)
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn jobs_are_leased_by_priority_then_age_and_an_idempotency_key_adds_one_job() {
    let (_directory, queue) = queue();
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

#[tokio::test]
async fn invalid_jobs_are_refused() {
    let (_directory, queue) = queue();
    for spec in [
        JobSpec::agent("a", "x").max_attempts(0),
        JobSpec::agent("", "x"),
        JobSpec::plan("   "),
        JobSpec::agent("a", "x".repeat(kai_jobs::MAX_FIELD_BYTES + 1)),
        JobSpec::agent("a", "x").timeout(Duration::ZERO),
        JobSpec::agent("a", "x").backoff(Duration::from_millis(kai_jobs::MAX_BACKOFF_MS + 1)),
    ] {
        assert!(matches!(queue.enqueue(spec).await, Err(Error::InvalidJob { .. })));
    }
    assert!(matches!(queue.job("nope").await, Err(Error::NotFound { .. })));
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    assert!(queue.events(&id, u64::MAX).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_leased_job_is_nobody_elses_until_its_lease_expires_and_then_its_first_worker_is_locked_out() {
    let (_directory, queue) = queue();
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

#[tokio::test]
async fn parallel_leases_on_separate_connections_never_give_one_job_twice() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jobs.sqlite3");
    let queue = SqliteQueue::open(&path).unwrap();
    for i in 0..40 {
        queue.enqueue(JobSpec::agent("a", format!("job {i}"))).await.unwrap();
    }
    // Each worker has a connection of its own, as separate processes would: only SQLite's locking
    // keeps them apart.
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let queue = SqliteQueue::open(&path).unwrap();
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

#[tokio::test]
async fn a_cancel_is_not_lost_to_a_failure_or_to_a_dead_worker() {
    let (_directory, queue) = queue();
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

#[tokio::test]
async fn failures_are_retried_after_their_backoff_then_dead_lettered() {
    let (_directory, queue) = queue();
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

#[tokio::test]
async fn cancelling_a_queued_job_ends_it_and_a_running_one_asks_its_worker() {
    let (_directory, queue) = queue();
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

#[tokio::test]
async fn events_are_kept_in_order_with_their_attempt_and_jobs_survive_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jobs.sqlite3");
    let id = {
        let queue = SqliteQueue::open(&path).unwrap();
        let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
        let lease = queue.lease("w", LONG).await.unwrap().unwrap();
        for step in 1..=3 {
            queue.record_event(&lease, json!({"step": step})).await.unwrap();
        }
        queue.complete(&lease, json!({"answer": 42})).await.unwrap();
        queue.enqueue(JobSpec::agent("a", "still waiting")).await.unwrap();
        id
    };
    let queue = SqliteQueue::open(&path).unwrap();
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
