//! The embedded queue: one SQLite file, shared by every worker (threads or processes) that opens it.

use std::path::Path;
use std::time::Duration;

use kai_core::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::db::{Database, now_ms, to_json};
use crate::error::Error;
use crate::job::{Job, JobEvent, JobSpec, JobStatus, Lease, Renewed, StoredJob, random_id};
use crate::queue::JobQueue;

/// The most events kept per job; later ones are dropped (the job's result is kept whatever happens).
pub const MAX_EVENTS_PER_JOB: u64 = 10_000;

/// A [`JobQueue`] in a SQLite file (WAL mode, each change one transaction committed with
/// `synchronous=FULL` before it returns): jobs survive a crash or restart, and worker processes on
/// one machine share the queue by opening the same file. Leasing takes SQLite's write lock, so two
/// workers never lease one job. Its calls run their SQLite work on Tokio's blocking threads, so they
/// need a Tokio runtime.
///
/// ```
/// use kai_jobs::{JobQueue, JobSpec, JobStatus, SqliteQueue};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let directory = tempfile::tempdir().unwrap();
/// let queue = SqliteQueue::open(directory.path().join("jobs.sqlite3")).unwrap();
/// let id = queue.enqueue(JobSpec::agent("support", "Where is my order?")).await.unwrap();
/// let lease = queue.lease("worker-1", std::time::Duration::from_secs(30)).await.unwrap().unwrap();
/// assert_eq!(lease.job.id, id);
/// queue.complete(&lease, serde_json::json!({"answer": "on its way"})).await.unwrap();
/// assert_eq!(queue.job(&id).await.unwrap().status, JobStatus::Succeeded);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Database,
}

impl SqliteQueue {
    /// Opens (or creates) the queue in the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let db = Database::open(
            path.as_ref(),
            "CREATE TABLE IF NOT EXISTS jobs (
                 id TEXT PRIMARY KEY,
                 spec TEXT NOT NULL,
                 priority INTEGER NOT NULL,
                 max_attempts INTEGER NOT NULL,
                 status TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 run_after_ms INTEGER NOT NULL,
                 idempotency_key TEXT UNIQUE,
                 lease_owner TEXT,
                 lease_token TEXT,
                 lease_expires_ms INTEGER,
                 cancel_requested INTEGER NOT NULL DEFAULT 0,
                 result TEXT,
                 error TEXT,
                 event_count INTEGER NOT NULL DEFAULT 0,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL
             );
             DROP INDEX IF EXISTS jobs_due;
             CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (status, priority DESC, run_after_ms);
             CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (status, lease_expires_ms);
             CREATE TABLE IF NOT EXISTS job_events (
                 job_id TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 attempt INTEGER NOT NULL,
                 at_ms INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 PRIMARY KEY (job_id, seq)
             );",
        )?;
        Ok(Self { db })
    }

    /// Runs `work` on the connection off the async runtime's threads.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.db.with(work).await
    }
}

const JOB_COLUMNS: &str = "id, spec, status, attempts, result, error, cancel_requested, created_ms, updated_ms";

/// A candidate for leasing: id, status, attempts, attempt budget, cancel asked for.
type Due = (String, String, u32, u32, bool);

fn due_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Due> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

/// A job from a row of [`JOB_COLUMNS`].
fn job_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Job, Error>> {
    let stored = StoredJob {
        id: row.get(0)?,
        spec: row.get(1)?,
        status: row.get(2)?,
        attempts: row.get(3)?,
        result: row.get(4)?,
        error: row.get(5)?,
        cancel_requested: row.get(6)?,
        created_ms: u64::try_from(row.get::<_, i64>(7)?).unwrap_or_default(),
        updated_ms: u64::try_from(row.get::<_, i64>(8)?).unwrap_or_default(),
    };
    Ok(stored.parse())
}

fn read_job(db: &Connection, id: &str) -> Result<Job, Error> {
    db.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_of)
        .optional()?
        .ok_or_else(|| Error::NotFound { id: id.to_owned() })?
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Checks that `lease` still holds its job (running, same token), in `db`.
fn holds(db: &Connection, lease: &Lease) -> Result<(), Error> {
    let held: Option<i64> = db
        .query_row(
            "SELECT 1 FROM jobs WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
            params![lease.job.id, lease.token],
            |row| row.get(0),
        )
        .optional()?;
    held.map(|_| ()).ok_or_else(|| Error::LeaseLost {
        id: lease.job.id.clone(),
    })
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn enqueue(&self, spec: JobSpec) -> Result<String, Error> {
        spec.check()?;
        let id = random_id()?;
        self.with(move |db| {
            let now = now_ms();
            let inserted = db.execute(
                "INSERT INTO jobs (id, spec, priority, max_attempts, status, run_after_ms, idempotency_key,
                                   created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?5, ?5)
                 ON CONFLICT (idempotency_key) DO NOTHING",
                params![
                    id,
                    to_json(&spec)?,
                    spec.priority,
                    spec.max_attempts,
                    now,
                    spec.idempotency_key
                ],
            )?;
            if inserted == 1 {
                return Ok(id);
            }
            // The key was used: the first job stands for this one.
            Ok(db.query_row(
                "SELECT id FROM jobs WHERE idempotency_key = ?1",
                [&spec.idempotency_key],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn lease(&self, worker: &str, duration: Duration) -> Result<Option<Lease>, Error> {
        let worker = worker.to_owned();
        let token = random_id()?;
        self.with(move |db| {
            let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            loop {
                // A job whose worker stopped renewing its lease first (it was started already), then
                // the next one due; each query walks an index.
                let columns = "SELECT id, status, attempts, max_attempts, cancel_requested FROM jobs";
                let expired = transaction
                    .query_row(
                        &format!(
                            "{columns} WHERE status = 'running' AND (lease_expires_ms IS NULL OR lease_expires_ms < ?1)
                             ORDER BY lease_expires_ms LIMIT 1"
                        ),
                        [now],
                        due_row,
                    )
                    .optional()?;
                let due = match expired {
                    Some(job) => Some(job),
                    None => transaction
                        .query_row(
                            &format!(
                                "{columns} WHERE status = 'queued' AND run_after_ms <= ?1
                                 ORDER BY priority DESC, run_after_ms, rowid LIMIT 1"
                            ),
                            [now],
                            due_row,
                        )
                        .optional()?,
                };
                let Some((id, status, attempts, max_attempts, cancel_requested)) = due else {
                    transaction.commit()?;
                    return Ok(None);
                };
                // A cancel asked for while its worker ran it, which that worker never saw (it died).
                if cancel_requested {
                    transaction.execute(
                        "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_token = NULL,
                                lease_expires_ms = NULL, updated_ms = ?2 WHERE id = ?1",
                        params![id, now],
                    )?;
                    continue;
                }
                // A lease that expired ends its attempt: the worker died or hung. The last one
                // dead-letters the job.
                if status == "running" && attempts >= max_attempts {
                    transaction.execute(
                        "UPDATE jobs SET status = 'failed', error = ?2, lease_owner = NULL, lease_token = NULL,
                                lease_expires_ms = NULL, updated_ms = ?3 WHERE id = ?1",
                        params![id, to_json(&kai_core::Error::Timeout)?, now],
                    )?;
                    continue;
                }
                let expires = now.saturating_add(millis(duration));
                transaction.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?2,
                            lease_token = ?3, lease_expires_ms = ?4, updated_ms = ?5 WHERE id = ?1",
                    params![id, worker, token, expires, now],
                )?;
                let job = read_job(&transaction, &id)?;
                transaction.commit()?;
                return Ok(Some(Lease {
                    job,
                    worker,
                    token,
                    expires_ms: u64::try_from(expires).unwrap_or_default(),
                }));
            }
        })
        .await
    }

    async fn renew(&self, lease: &Lease, duration: Duration) -> Result<Renewed, Error> {
        let lease = lease.clone();
        self.with(move |db| {
            let expires = now_ms().saturating_add(millis(duration));
            let changed = db.execute(
                "UPDATE jobs SET lease_expires_ms = ?3 WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
                params![lease.job.id, lease.token, expires],
            )?;
            if changed == 0 {
                return Err(Error::LeaseLost { id: lease.job.id });
            }
            let cancel_requested: bool = db.query_row(
                "SELECT cancel_requested FROM jobs WHERE id = ?1",
                [&lease.job.id],
                |row| row.get(0),
            )?;
            Ok(Renewed {
                expires_ms: u64::try_from(expires).unwrap_or_default(),
                cancel_requested,
            })
        })
        .await
    }

    async fn complete(&self, lease: &Lease, result: serde_json::Value) -> Result<(), Error> {
        let lease = lease.clone();
        self.finish(lease, JobStatus::Succeeded, Some(to_json(&result)?)).await
    }

    async fn fail(&self, lease: &Lease, error: kai_core::Error, retry: bool) -> Result<JobStatus, Error> {
        let lease = lease.clone();
        self.with(move |db| {
            let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            holds(&transaction, &lease)?;
            let job = read_job(&transaction, &lease.job.id)?;
            let max_attempts: u32 =
                transaction.query_row("SELECT max_attempts FROM jobs WHERE id = ?1", [&job.id], |row| {
                    row.get(0)
                })?;
            let now = now_ms();
            let status = if job.cancel_requested {
                // Cancelled while it ran: not run again.
                JobStatus::Cancelled
            } else if retry && job.attempts < max_attempts {
                JobStatus::Queued
            } else {
                JobStatus::Failed
            };
            let after = now.saturating_add(millis(job.spec.retry_delay(job.attempts)));
            transaction.execute(
                "UPDATE jobs SET status = ?2, run_after_ms = ?3, error = ?4, lease_owner = NULL, lease_token = NULL,
                        lease_expires_ms = NULL, updated_ms = ?5 WHERE id = ?1",
                params![job.id, status.as_str(), after, to_json(&error)?, now],
            )?;
            transaction.commit()?;
            Ok(status)
        })
        .await
    }

    async fn finish_cancelled(&self, lease: &Lease) -> Result<(), Error> {
        self.finish(lease.clone(), JobStatus::Cancelled, None).await
    }

    async fn record_event(&self, lease: &Lease, event: serde_json::Value) -> Result<(), Error> {
        let lease = lease.clone();
        let event = to_json(&event)?;
        self.with(move |db| {
            let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            holds(&transaction, &lease)?;
            let (count, attempt): (u64, u32) = transaction.query_row(
                "SELECT event_count, attempts FROM jobs WHERE id = ?1",
                [&lease.job.id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            if count < MAX_EVENTS_PER_JOB {
                transaction.execute(
                    "INSERT INTO job_events (job_id, seq, attempt, at_ms, event) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![lease.job.id, count + 1, attempt, now_ms(), event],
                )?;
                transaction.execute(
                    "UPDATE jobs SET event_count = event_count + 1 WHERE id = ?1",
                    [&lease.job.id],
                )?;
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn cancel(&self, id: &str) -> Result<JobStatus, Error> {
        let id = id.to_owned();
        self.with(move |db| {
            let transaction = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let job = read_job(&transaction, &id)?;
            let now = now_ms();
            let status = match job.status {
                JobStatus::Queued => {
                    transaction.execute(
                        "UPDATE jobs SET status = 'cancelled', updated_ms = ?2 WHERE id = ?1",
                        params![id, now],
                    )?;
                    JobStatus::Cancelled
                }
                JobStatus::Running => {
                    transaction.execute(
                        "UPDATE jobs SET cancel_requested = 1, updated_ms = ?2 WHERE id = ?1",
                        params![id, now],
                    )?;
                    JobStatus::Running
                }
                finished => finished,
            };
            transaction.commit()?;
            Ok(status)
        })
        .await
    }

    async fn job(&self, id: &str) -> Result<Job, Error> {
        let id = id.to_owned();
        self.with(move |db| read_job(db, &id)).await
    }

    async fn events(&self, id: &str, after: u64) -> Result<Vec<JobEvent>, Error> {
        let id = id.to_owned();
        self.with(move |db| {
            read_job(db, &id)?;
            let mut statement = db.prepare(
                "SELECT seq, attempt, at_ms, event FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let rows = statement.query_map(params![id, after], |row| {
                Ok((
                    row.get::<_, u64>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?;
            rows.map(|row| {
                let (seq, attempt, at_ms, event) = row?;
                Ok(JobEvent {
                    seq,
                    attempt,
                    at_ms: u64::try_from(at_ms).unwrap_or_default(),
                    event: serde_json::from_str(&event).map_err(|error| Error::Storage {
                        message: format!("an event of job {id} is damaged: {error}"),
                    })?,
                })
            })
            .collect()
        })
        .await
    }

    async fn dead_letters(&self) -> Result<Vec<Job>, Error> {
        self.with(|db| {
            let mut statement = db.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'failed' ORDER BY updated_ms, rowid"
            ))?;
            let jobs = statement.query_map([], job_of)?;
            jobs.map(|job| job?).collect()
        })
        .await
    }

    async fn depth(&self) -> Result<u64, Error> {
        self.with(|db| {
            Ok(
                db.query_row("SELECT COUNT(*) FROM jobs WHERE status = 'queued'", [], |row| {
                    row.get(0)
                })?,
            )
        })
        .await
    }
}

impl SqliteQueue {
    /// Ends a running job held by `lease` with `status` (and its result).
    async fn finish(&self, lease: Lease, status: JobStatus, result: Option<String>) -> Result<(), Error> {
        self.with(move |db| {
            let changed = db.execute(
                "UPDATE jobs SET status = ?3, result = ?4, lease_owner = NULL, lease_token = NULL,
                        lease_expires_ms = NULL, updated_ms = ?5
                 WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
                params![lease.job.id, lease.token, status.as_str(), result, now_ms()],
            )?;
            if changed == 0 {
                return Err(Error::LeaseLost { id: lease.job.id });
            }
            Ok(())
        })
        .await
    }
}
