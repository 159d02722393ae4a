//! The scale-out queue: Redis Streams with a consumer group, shared by worker processes on many
//! machines.

use std::collections::HashMap;
use std::time::Duration;

use kai_core::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::db::to_json;
use crate::error::Error;
use crate::job::{Job, JobEvent, JobSpec, JobStatus, Lease, Renewed, StoredJob, random_id};
use crate::queue::JobQueue;
use crate::sqlite::MAX_EVENTS_PER_JOB;

/// How long a call waits for Redis to answer, and for a connection, before it fails with
/// [`Error::Storage`]: short against a lease's third, so a worker whose Redis hangs gives up its
/// renewal in time to stop the job.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest queue name, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// The longest lease taken, in milliseconds (about 1,100 years): longer durations are cut to it, so
/// lease ends stay exact in Lua's numbers.
const MAX_LEASE_MS: u64 = 1 << 45;

/// How many times a lease is asked for again, with the same token, when Redis's answer is lost.
const LEASE_TRIES: usize = 3;

/// The longest job id looked up, in bytes (the queue's own ids are 32).
const MAX_ID_BYTES: usize = 128;

/// The queue's Lua scripts, each run atomically by Redis after the shared prelude.
struct Scripts {
    enqueue: Script,
    lease: Script,
    renew: Script,
    finish: Script,
    fail: Script,
    event: Script,
    cancel: Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| Script::new(&format!("{}\n{body}", include_str!("redis_queue/prelude.lua")));
        Self {
            enqueue: script(include_str!("redis_queue/enqueue.lua")),
            lease: script(include_str!("redis_queue/lease.lua")),
            renew: script(include_str!("redis_queue/renew.lua")),
            finish: script(include_str!("redis_queue/finish.lua")),
            fail: script(include_str!("redis_queue/fail.lua")),
            event: script(include_str!("redis_queue/event.lua")),
            cancel: script(include_str!("redis_queue/cancel.lua")),
        }
    }
}

/// A [`JobQueue`] on Redis, for worker processes on several machines sharing one queue.
///
/// Each priority has a stream with a consumer group, `workers`: a worker leases a job by reading
/// the next entry for itself (`XREADGROUP`), so Redis's pending-entries list shows which worker holds
/// which job (`XPENDING`), and a job taken over from a dead worker's expired lease is claimed for
/// its new one (`XCLAIM`). Beside the streams, a hash per job keeps its spec, status, result, error
/// and lease token; sorted sets keep lease ends, retries waiting for their backoff and dead letters.
/// Every change is one Lua script, so it is atomic, and every time is read from the Redis server's
/// clock, so workers' clocks need not agree.
///
/// Every key starts with `{name}:`. The queue needs one Redis server at the URL it is given (after a
/// failover, the URL must lead to the new primary: Sentinel discovery and Redis Cluster are not
/// supported). It is as durable as that server is configured to be:
/// - `maxmemory-policy noeviction`, or Redis may evict a job's keys under memory pressure;
/// - `appendonly yes` (with `appendfsync always` if no acknowledged change may be lost in a power cut:
///   a lost completion runs its job again, a lost enqueue loses the job);
/// - a failover to a replica may lose the last changes (replication is asynchronous).
///
/// A call that fails with [`Error::Storage`] may have happened on the server (the answer was lost).
/// `lease` asks again with the same token and gets the job it took; `complete`, `fail` and
/// `finish_cancelled` asked again after they took effect answer as if the first answer arrived;
/// `enqueue` with an idempotency key can be retried safely.
///
/// Scripts check the keys they read before they write, and a damaged or foreign key makes a call fail
/// with [`Error::Storage`] and changes nothing; a job whose record is damaged is dead-lettered with
/// `kai_core::Error::Storage`. Each lease call drops at most 100 foreign stream entries and promotes
/// at most 100 retries, so its work is bounded; it reads one stream per priority that has jobs, so
/// keep the number of distinct priorities small.
///
/// ```no_run
/// use kai_jobs::{JobQueue, JobSpec, RedisQueue};
///
/// # async fn example() -> Result<(), kai_jobs::Error> {
/// let queue = RedisQueue::connect("redis://127.0.0.1:6379", "kai:jobs").await?;
/// let id = queue.enqueue(JobSpec::agent("support", "Where is my order?")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisQueue {
    connection: ConnectionManager,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
}

impl std::fmt::Debug for RedisQueue {
    // The connection's URL may carry a password: only the key prefix is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn storage(error: redis::RedisError) -> Error {
    Error::Storage {
        message: format!("redis: {error}"),
    }
}

fn damaged(what: impl std::fmt::Display) -> Error {
    Error::Storage {
        message: format!("the Redis queue holds a damaged {what}"),
    }
}

impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host:port[/db]`) and uses the
    /// queue called `name` there; workers on every machine that name the same queue share it. The
    /// connection reconnects by itself after a failure.
    /// The name has 1 to 200 ASCII letters, digits and `:` `.` `_` `-`.
    pub async fn connect(url: &str, name: &str) -> Result<Self, Error> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || ":._-".contains(c);
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.chars().all(allowed) {
            return Err(Error::InvalidJob {
                message: format!(
                    "a Redis queue's name has 1 to {MAX_NAME_BYTES} ASCII letters, digits and `:` `.` `_` `-`"
                ),
            });
        }
        let client = redis::Client::open(url).map_err(storage)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3);
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(storage)?;
        Ok(Self {
            connection,
            prefix: format!("{{{name}}}"),
            scripts: std::sync::Arc::new(Scripts::new()),
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// The job stored under `id`, from its hash's fields.
    fn job_of(id: &str, mut fields: HashMap<String, String>) -> Result<Job, Error> {
        let mut field = |name: &str| fields.remove(name);
        let number = |value: Option<String>, name: &str| -> Result<u64, Error> {
            value
                .as_deref()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| damaged(format_args!("{name} of job {id}")))
        };
        let stored = StoredJob {
            id: id.to_owned(),
            spec: field("spec").ok_or_else(|| damaged(format_args!("spec of job {id}")))?,
            status: field("status").unwrap_or_default(),
            attempts: u32::try_from(number(field("attempts"), "attempt count")?)
                .map_err(|_| damaged(format_args!("attempt count of job {id}")))?,
            result: field("result"),
            error: field("error"),
            cancel_requested: field("cancel").as_deref() == Some("1"),
            created_ms: number(field("created"), "creation time")?,
            updated_ms: number(field("updated"), "update time")?,
        };
        stored.parse()
    }

    async fn read_job(&self, id: &str) -> Result<Job, Error> {
        let not_found = || Error::NotFound { id: id.to_owned() };
        if id.len() > MAX_ID_BYTES {
            return Err(not_found());
        }
        let fields: HashMap<String, String> = self
            .connection
            .clone()
            .hgetall(self.key(&format!("job:{id}")))
            .await
            .map_err(storage)?;
        if fields.is_empty() {
            return Err(not_found());
        }
        Self::job_of(id, fields)
    }

    /// Runs `script` with the prefix and `args`.
    async fn run<T: redis::FromRedisValue>(&self, script: &Script, args: &[&str]) -> Result<T, Error> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix);
        for arg in args {
            invocation.arg(*arg);
        }
        invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(storage)
    }

    /// Runs a script that answers nil when `lease` no longer holds its job.
    async fn run_held<T: redis::FromRedisValue>(
        &self,
        lease: &Lease,
        script: &Script,
        args: &[&str],
    ) -> Result<T, Error> {
        let mut all = vec![lease.job.id.as_str(), lease.token.as_str()];
        all.extend_from_slice(args);
        let answer: Option<T> = self.run(script, &all).await?;
        answer.ok_or_else(|| Error::LeaseLost {
            id: lease.job.id.clone(),
        })
    }

    /// Drops every key of this queue (its jobs, streams, events and dead letters): for tests and
    /// for retiring a queue. Workers must be stopped first.
    pub async fn destroy(&self) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        // The name has no glob characters (see `connect`).
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = {
            let mut iter = connection.scan_match::<_, String>(&pattern).await.map_err(storage)?;
            let mut keys = Vec::new();
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key.map_err(storage)?);
            }
            keys
        };
        for chunk in keys.chunks(500) {
            connection.del::<_, ()>(chunk).await.map_err(storage)?;
        }
        Ok(())
    }
}

/// A lease's duration in milliseconds for the scripts: at least 1, at most [`MAX_LEASE_MS`].
fn millis(duration: Duration) -> String {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LEASE_MS)
        .to_string()
}

/// How long a lease's token is kept past the lease, in milliseconds: long enough for a lease asked
/// for again after lost answers to find the job it took.
fn token_grace() -> String {
    (RESPONSE_TIMEOUT.as_millis() * LEASE_TRIES as u128).to_string()
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, spec: JobSpec) -> Result<String, Error> {
        spec.check()?;
        let id = random_id()?;
        let json = to_json(&spec)?;
        let priority = spec.priority.to_string();
        let attempts = spec.max_attempts.to_string();
        let key = spec.idempotency_key.clone().unwrap_or_default();
        self.run(&self.scripts.enqueue, &[&id, &json, &priority, &attempts, &key])
            .await
    }

    async fn lease(&self, worker: &str, duration: Duration) -> Result<Option<Lease>, Error> {
        let token = random_id()?;
        let timeout = to_json(&kai_core::Error::Timeout)?;
        let damaged = to_json(&kai_core::Error::Storage {
            message: "the job's record in the Redis queue is damaged".into(),
        })?;
        let duration = millis(duration);
        let grace = token_grace();
        let args = [worker, &token, &duration, &timeout, &damaged, &grace];
        let mut tries = 0;
        let leased: Option<(u64, String, HashMap<String, String>)> = loop {
            tries += 1;
            match self.run(&self.scripts.lease, &args).await {
                // The script may have run and its answer been lost: asking again with the same
                // token gives the job it took, so no attempt is spent on nobody.
                Err(Error::Storage { .. }) if tries < LEASE_TRIES => continue,
                outcome => break outcome?,
            }
        };
        let Some((expires_ms, id, fields)) = leased else {
            return Ok(None);
        };
        match Self::job_of(&id, fields) {
            Ok(job) => Ok(Some(Lease {
                job,
                worker: worker.to_owned(),
                token,
                expires_ms,
            })),
            Err(error) => {
                // A record no run can start from: dead-lettered now, rather than leased again each
                // time its lease expires.
                self.run::<Option<String>>(&self.scripts.fail, &[&id, &token, &damaged, "0", "0"])
                    .await?;
                Err(error)
            }
        }
    }

    async fn renew(&self, lease: &Lease, duration: Duration) -> Result<Renewed, Error> {
        let (expires_ms, cancel): (u64, u8) = self
            .run_held(lease, &self.scripts.renew, &[&millis(duration), &token_grace()])
            .await?;
        Ok(Renewed {
            expires_ms,
            cancel_requested: cancel == 1,
        })
    }

    async fn complete(&self, lease: &Lease, result: serde_json::Value) -> Result<(), Error> {
        let result = to_json(&result)?;
        self.run_held::<u8>(lease, &self.scripts.finish, &[JobStatus::Succeeded.as_str(), &result])
            .await
            .map(drop)
    }

    async fn fail(&self, lease: &Lease, error: kai_core::Error, retry: bool) -> Result<JobStatus, Error> {
        let error = to_json(&error)?;
        // Backoffs are at most a day, doubled per attempt: cut at the longest lease, as a lease is.
        let backoff = u64::try_from(lease.job.spec.retry_delay(lease.job.attempts).as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_LEASE_MS)
            .to_string();
        let status: String = self
            .run_held(
                lease,
                &self.scripts.fail,
                &[&error, if retry { "1" } else { "0" }, &backoff],
            )
            .await?;
        JobStatus::parse(&status)
    }

    async fn finish_cancelled(&self, lease: &Lease) -> Result<(), Error> {
        self.run_held::<u8>(lease, &self.scripts.finish, &[JobStatus::Cancelled.as_str(), ""])
            .await
            .map(drop)
    }

    async fn record_event(&self, lease: &Lease, event: serde_json::Value) -> Result<(), Error> {
        let event = to_json(&event)?;
        self.run_held::<u8>(lease, &self.scripts.event, &[&event, &MAX_EVENTS_PER_JOB.to_string()])
            .await
            .map(drop)
    }

    async fn cancel(&self, id: &str) -> Result<JobStatus, Error> {
        if id.len() > MAX_ID_BYTES {
            return Err(Error::NotFound { id: id.to_owned() });
        }
        let status: Option<String> = self.run(&self.scripts.cancel, &[id]).await?;
        JobStatus::parse(&status.ok_or_else(|| Error::NotFound { id: id.to_owned() })?)
    }

    async fn job(&self, id: &str) -> Result<Job, Error> {
        self.read_job(id).await
    }

    async fn events(&self, id: &str, after: u64) -> Result<Vec<JobEvent>, Error> {
        self.read_job(id).await?;
        // A job keeps at most MAX_EVENTS_PER_JOB events: no more are read, whatever the list holds.
        let start = isize::try_from(after).unwrap_or(isize::MAX);
        let last = isize::try_from(MAX_EVENTS_PER_JOB).unwrap_or(isize::MAX) - 1;
        if start > last {
            return Ok(Vec::new());
        }
        let stored: Vec<String> = self
            .connection
            .clone()
            .lrange(self.key(&format!("events:{id}")), start, last)
            .await
            .map_err(storage)?;
        stored
            .into_iter()
            .zip(after.saturating_add(1)..)
            .map(|(text, seq)| {
                let mut parts = text.splitn(3, ':');
                let (Some(attempt), Some(at_ms), Some(event)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(damaged(format_args!("event of job {id}")));
                };
                Ok(JobEvent {
                    seq,
                    attempt: attempt
                        .parse()
                        .map_err(|_| damaged(format_args!("event of job {id}")))?,
                    at_ms: at_ms.parse().map_err(|_| damaged(format_args!("event of job {id}")))?,
                    event: serde_json::from_str(event).map_err(|_| damaged(format_args!("event of job {id}")))?,
                })
            })
            .collect()
    }

    async fn dead_letters(&self) -> Result<Vec<Job>, Error> {
        let ids: Vec<String> = self
            .connection
            .clone()
            .zrange(self.key("dead"), 0, -1)
            .await
            .map_err(storage)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for all of them; a job whose record is gone is left out.
        let mut pipeline = redis::pipe();
        for id in &ids {
            pipeline.hgetall(self.key(&format!("job:{id}")));
        }
        let records: Vec<HashMap<String, String>> = pipeline
            .query_async(&mut self.connection.clone())
            .await
            .map_err(storage)?;
        ids.iter()
            .zip(records)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(id, fields)| Self::job_of(id, fields))
            .collect()
    }

    async fn depth(&self) -> Result<u64, Error> {
        let depth: Option<i64> = self.connection.clone().get(self.key("depth")).await.map_err(storage)?;
        Ok(depth.map_or(0, |depth| u64::try_from(depth).unwrap_or_default()))
    }
}
