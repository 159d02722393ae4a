//! # kai-jobs
//!
//! Background agent work: agent runs and plans as durable jobs on a queue, run by workers.
//!
//! - [`JobQueue`]: the contract (enqueue with priority, retries, timeout and idempotency key; lease,
//!   renew, complete, fail, cancel; results, events and dead letters by job id).
//! - [`SqliteQueue`]: the embedded queue in one SQLite file; jobs survive restarts, a job is leased by
//!   one worker at a time, and a job whose worker died is leased again once its lease expires.
//!   Delivery is at least once (see [`Worker`]).
//! - `RedisQueue` (feature `redis`): the same contract on Redis Streams with a consumer group, for
//!   worker processes on several machines.
//! - [`Worker`]: leases jobs and runs them on its agents or plan executor, with a concurrency limit.
//! - [`Scheduler`]: enqueues jobs on cron expressions (in time zones) or intervals, kept with the
//!   queue, with a missed-run policy and never two runs of one schedule at once.
//!
//! ```
//! use std::sync::Arc;
//! use kai_core::{Agent, testing::ScriptedModel};
//! use kai_jobs::{JobQueue, JobSpec, JobStatus, SqliteQueue, Worker};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let directory = tempfile::tempdir().unwrap();
//! let queue = Arc::new(SqliteQueue::open(directory.path().join("jobs.sqlite3")).unwrap());
//! let id = queue.enqueue(JobSpec::agent("support", "Where is my order?")).await.unwrap();
//!
//! let agent = Agent::builder(ScriptedModel::new().text("It ships today.")).build().unwrap();
//! let worker = Worker::new(queue.clone(), "worker-1").agent("support", agent);
//! worker.run_one().await.unwrap();
//!
//! let job = queue.job(&id).await.unwrap();
//! assert_eq!(job.status, JobStatus::Succeeded);
//! assert_eq!(job.result.unwrap()["answer"], "It ships today.");
//! # });
//! ```

mod db;
mod error;
mod job;
mod queue;
#[cfg(feature = "redis")]
mod redis_queue;
mod schedule;
mod sqlite;
mod worker;

pub use error::Error;
pub use job::{Job, JobEvent, JobKind, JobSpec, JobStatus, Lease, MAX_BACKOFF_MS, MAX_FIELD_BYTES, Renewed};
pub use queue::JobQueue;
#[cfg(feature = "redis")]
pub use redis_queue::RedisQueue;
pub use schedule::{Cadence, MissedRuns, Schedule, ScheduleState, Scheduler};
pub use sqlite::{MAX_EVENTS_PER_JOB, SqliteQueue};
pub use worker::Worker;
