//! The queue contract every backend keeps.

use std::time::Duration;

use kai_core::async_trait;

use crate::error::Error;
use crate::job::{Job, JobEvent, JobSpec, JobStatus, Lease, Renewed};

/// A durable queue of agent jobs that workers lease, run and finish.
///
/// A job is run by one worker at a time: leasing it gives the worker a [`Lease`] whose token every
/// later call must show. A lease not renewed before it expires (its worker died or hung) lets another
/// worker take the job as its next attempt; the first worker's calls then fail with
/// [`Error::LeaseLost`]. A failed attempt is retried after its backoff until the job's attempt budget
/// is spent, then the job is dead-lettered ([`JobStatus::Failed`]).
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job and returns its id. A job with the idempotency key of one already added is not
    /// added again: the first one's id comes back.
    async fn enqueue(&self, spec: JobSpec) -> Result<String, Error>;

    /// Leases a job whose lease expired, or else the next job due: highest priority first, then the
    /// one due longest (a retry is due when its backoff has passed, and joins the line then), for
    /// `duration`; `None` when there is none.
    async fn lease(&self, worker: &str, duration: Duration) -> Result<Option<Lease>, Error>;

    /// Extends a lease by `duration` from now, and says whether a cancel was asked for.
    async fn renew(&self, lease: &Lease, duration: Duration) -> Result<Renewed, Error>;

    /// Finishes a job with its result.
    async fn complete(&self, lease: &Lease, result: serde_json::Value) -> Result<(), Error>;

    /// Records a failed attempt: the job is queued again after its backoff if `retry` and its budget
    /// allow, otherwise dead-lettered. Returns where the job now stands.
    async fn fail(&self, lease: &Lease, error: kai_core::Error, retry: bool) -> Result<JobStatus, Error>;

    /// Finishes a job its worker stopped because a cancel was asked for.
    async fn finish_cancelled(&self, lease: &Lease) -> Result<(), Error>;

    /// Adds an event to a running job's record.
    async fn record_event(&self, lease: &Lease, event: serde_json::Value) -> Result<(), Error>;

    /// Cancels a job: a queued one at once, a running one by asking its worker (who sees it when it
    /// renews its lease). Returns where the job now stands; a finished job stays as it is.
    async fn cancel(&self, id: &str) -> Result<JobStatus, Error>;

    /// The job with this id.
    async fn job(&self, id: &str) -> Result<Job, Error>;

    /// The job's events after `after` (0 for all), in order.
    async fn events(&self, id: &str, after: u64) -> Result<Vec<JobEvent>, Error>;

    /// The dead-lettered jobs, in the order they were dead-lettered.
    async fn dead_letters(&self) -> Result<Vec<Job>, Error>;

    /// How many jobs wait for a worker.
    async fn depth(&self) -> Result<u64, Error>;
}
