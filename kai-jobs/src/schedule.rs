//! Schedules: jobs enqueued on a cron expression (in a time zone) or at a fixed interval, kept in the
//! queue's SQLite file.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use kai_core::CancellationToken;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::db::{Database, now_ms, to_json};
use crate::error::Error;
use crate::job::JobSpec;
use crate::queue::JobQueue;

/// When a schedule's job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cadence {
    /// On a cron expression (`0 9 * * MON-FRI`; five fields, or six with seconds first), in a time zone
    /// of the IANA database (`Europe/Oslo`; `UTC` by default), daylight-saving changes included.
    Cron {
        /// The expression.
        expression: String,
        /// The time zone it is read in.
        #[serde(default = "utc")]
        time_zone: String,
    },
    /// Every so many milliseconds (at least 1,000), from when the schedule was added.
    Every {
        /// The interval.
        interval_ms: u64,
    },
}

fn utc() -> String {
    "UTC".into()
}

/// What happens to runs that came due while no scheduler was running (or while the job's previous
/// run was still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum MissedRuns {
    /// However many came due, one run is made, and the schedule goes on from now.
    Skip,
    /// Each missed run is made, one after another, up to `max` of them.
    CatchUp {
        /// The most missed runs made up for.
        max: u32,
    },
}

/// A job enqueued on a cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// A unique name; adding a schedule of a name already there replaces it.
    pub name: String,
    /// When it runs.
    pub cadence: Cadence,
    /// The job it enqueues.
    pub job: JobSpec,
    /// What happens to missed runs.
    pub missed: MissedRuns,
}

/// A schedule and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The schedule.
    pub schedule: Schedule,
    /// When it is next due, in milliseconds since the Unix epoch.
    pub next_due_ms: i64,
    /// Runs due but not yet enqueued (missed ones to catch up, or one waiting for the previous run).
    pub owed: u32,
    /// Runs enqueued so far.
    pub runs: u64,
    /// The job of its last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
}

impl Cadence {
    /// Checks that the expression and time zone parse and the interval is at least a second.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Cadence::Cron { .. } => self.next_after(0).map(drop),
            Cadence::Every { interval_ms } if *interval_ms < 1_000 => Err(Error::InvalidSchedule {
                message: "an interval must be at least 1000 ms".into(),
            }),
            Cadence::Every { .. } => Ok(()),
        }
    }

    /// The first time it is due strictly after `after_ms` (milliseconds since the Unix epoch).
    pub fn next_after(&self, after_ms: i64) -> Result<i64, Error> {
        match self {
            Cadence::Every { interval_ms } => {
                Ok(after_ms.saturating_add(i64::try_from(*interval_ms).unwrap_or(i64::MAX)))
            }
            Cadence::Cron { expression, time_zone } => {
                let invalid = |message: String| Error::InvalidSchedule { message };
                let cron = croner::Cron::from_str(expression)
                    .map_err(|error| invalid(format!("{expression:?} is not a cron expression: {error}")))?;
                let zone = chrono_tz::Tz::from_str(time_zone)
                    .map_err(|_| invalid(format!("{time_zone:?} is not a time zone of the IANA database")))?;
                let after = Utc
                    .timestamp_millis_opt(after_ms)
                    .single()
                    .ok_or_else(|| invalid(format!("{after_ms} is not a time")))?
                    .with_timezone(&zone);
                let next = cron
                    .find_next_occurrence(&after, false)
                    .map_err(|error| invalid(format!("{expression:?} has no next run: {error}")))?;
                Ok(next.timestamp_millis())
            }
        }
    }

    /// The first time it is due after `now_ms`, on the grid of a time it was due, `due_ms`: an
    /// interval keeps its phase through an outage (every minute from :07 stays at :07).
    pub fn next_due(&self, due_ms: i64, now_ms: i64) -> Result<i64, Error> {
        match self {
            Cadence::Every { interval_ms } => {
                let interval = i64::try_from(*interval_ms).unwrap_or(i64::MAX).max(1);
                let steps = now_ms.saturating_sub(due_ms) / interval + 1;
                Ok(due_ms.saturating_add(steps.saturating_mul(interval)))
            }
            Cadence::Cron { .. } => self.next_after(now_ms),
        }
    }

    /// The next `count` times it is due after `after_ms`.
    pub fn next_runs(&self, after_ms: i64, count: usize) -> Result<Vec<i64>, Error> {
        let mut runs = Vec::with_capacity(count);
        let mut at = after_ms;
        for _ in 0..count {
            at = self.next_after(at)?;
            runs.push(at);
        }
        Ok(runs)
    }
}

/// Enqueues scheduled jobs into a queue when they come due. Schedules are kept in a SQLite file (the
/// queue's own, if it is a [`SqliteQueue`](crate::SqliteQueue)), so they survive restarts; a run
/// missed while no scheduler ran follows its [`MissedRuns`] policy. One schedule never has two runs at
/// once: a run comes due while the previous one is queued or running waits for it. Each run is
/// enqueued with the idempotency key `schedule:<name>:<run>`, so two schedulers on one file never
/// enqueue a run twice.
pub struct Scheduler {
    db: Database,
    queue: Arc<dyn JobQueue>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Opens (or creates) the schedules in the SQLite file at `path`, enqueueing into `queue`.
    pub fn open(path: impl AsRef<Path>, queue: Arc<dyn JobQueue>) -> Result<Self, Error> {
        let db = Database::open(
            path.as_ref(),
            "CREATE TABLE IF NOT EXISTS schedules (
                 name TEXT PRIMARY KEY,
                 schedule TEXT NOT NULL,
                 next_due_ms INTEGER NOT NULL,
                 owed INTEGER NOT NULL DEFAULT 0,
                 runs INTEGER NOT NULL DEFAULT 0,
                 last_job TEXT
             );",
        )?;
        Ok(Self { db, queue })
    }

    /// Adds a schedule (replacing one of the same name), first due at its next time from now.
    pub async fn add(&self, schedule: Schedule) -> Result<ScheduleState, Error> {
        self.add_at(schedule, now_ms()).await
    }

    /// [`add`](Self::add) as if it were `now_ms`.
    pub async fn add_at(&self, schedule: Schedule, now_ms: i64) -> Result<ScheduleState, Error> {
        if schedule.name.is_empty() || schedule.name.len() > 256 {
            return Err(Error::InvalidSchedule {
                message: "a schedule's name must have 1 to 256 bytes".into(),
            });
        }
        schedule.cadence.check()?;
        schedule.job.check()?;
        let state = ScheduleState {
            next_due_ms: schedule.cadence.next_after(now_ms)?,
            schedule,
            owed: 0,
            runs: 0,
            last_job: None,
        };
        let stored = state.clone();
        self.with(move |db| {
            db.execute(
                "INSERT INTO schedules (name, schedule, next_due_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET schedule = ?2, next_due_ms = ?3, owed = 0",
                params![stored.schedule.name, to_json(&stored.schedule)?, stored.next_due_ms],
            )?;
            Ok(())
        })
        .await?;
        Ok(state)
    }

    /// Removes the schedule of this name; whether there was one.
    pub async fn remove(&self, name: &str) -> Result<bool, Error> {
        let name = name.to_owned();
        self.with(move |db| Ok(db.execute("DELETE FROM schedules WHERE name = ?1", [name])? == 1))
            .await
    }

    /// Every schedule and where it stands, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleState>, Error> {
        self.with(|db| {
            let mut statement =
                db.prepare("SELECT schedule, next_due_ms, owed, runs, last_job FROM schedules ORDER BY name")?;
            let rows = statement.query_map([], state_of)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// Enqueues what is due now; returns the ids of the jobs enqueued.
    pub async fn tick(&self) -> Result<Vec<String>, Error> {
        self.tick_at(now_ms()).await
    }

    /// [`tick`](Self::tick) as if it were `now_ms`.
    pub async fn tick_at(&self, now_ms: i64) -> Result<Vec<String>, Error> {
        let due = self
            .with(move |db| {
                let mut statement = db.prepare(
                    "SELECT schedule, next_due_ms, owed, runs, last_job FROM schedules
                     WHERE next_due_ms <= ?1 OR owed > 0 ORDER BY next_due_ms",
                )?;
                let rows = statement.query_map([now_ms], state_of)?;
                rows.map(|row| row?).collect::<Result<Vec<_>, Error>>()
            })
            .await?;
        let mut enqueued = Vec::new();
        for mut state in due {
            if state.next_due_ms <= now_ms {
                let came_due = came_due(&state, now_ms)?;
                state.owed = match state.schedule.missed {
                    MissedRuns::Skip => 1,
                    MissedRuns::CatchUp { max } => state.owed.saturating_add(came_due).min(max.max(1)),
                };
                state.next_due_ms = state.schedule.cadence.next_due(state.next_due_ms, now_ms)?;
            }
            if state.owed > 0 && !self.still_going(state.last_job.as_deref()).await? {
                let run = state.runs + 1;
                let job = state
                    .schedule
                    .job
                    .clone()
                    .idempotency_key(format!("schedule:{}:{run}", state.schedule.name));
                let id = self.queue.enqueue(job).await?;
                state.runs = run;
                state.owed -= 1;
                state.last_job = Some(id.clone());
                enqueued.push(id);
            }
            self.with(move |db| {
                db.execute(
                    "UPDATE schedules SET next_due_ms = ?2, owed = ?3, runs = ?4, last_job = ?5 WHERE name = ?1",
                    params![
                        state.schedule.name,
                        state.next_due_ms,
                        state.owed,
                        state.runs,
                        state.last_job
                    ],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(enqueued)
    }

    /// Ticks until `stop` is cancelled: at the next time a schedule is due, and at least every
    /// `check` (for runs waiting for their previous one, and schedules added by other processes).
    pub async fn run(&self, stop: CancellationToken, check: Duration) -> Result<(), Error> {
        while !stop.is_cancelled() {
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "a scheduler tick failed");
            }
            let next_due = self
                .schedules()
                .await
                .unwrap_or_default()
                .iter()
                .map(|state| state.next_due_ms)
                .min();
            let wait = next_due.map_or(check, |due| {
                Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0)).min(check)
            });
            let sleep = Box::pin(kai_core::sleep(wait));
            futures::future::select(sleep, Box::pin(stop.cancelled())).await;
        }
        Ok(())
    }

    /// Whether the job of a schedule's last run is still queued or running.
    async fn still_going(&self, job: Option<&str>) -> Result<bool, Error> {
        let Some(job) = job else {
            return Ok(false);
        };
        match self.queue.job(job).await {
            Ok(job) => Ok(!job.status.is_final()),
            // Removed from the queue: nothing is going.
            Err(Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.db.with(work).await
    }
}

/// How many runs came due from the schedule's next due time to `now_ms`, counted up to what its
/// policy can use (so a long outage does not mean a long count).
fn came_due(state: &ScheduleState, now_ms: i64) -> Result<u32, Error> {
    let limit = match state.schedule.missed {
        MissedRuns::Skip => 1,
        MissedRuns::CatchUp { max } => max.max(1),
    };
    let mut count = 1;
    let mut at = state.next_due_ms;
    while count < limit {
        at = state.schedule.cadence.next_after(at)?;
        if at > now_ms {
            break;
        }
        count += 1;
    }
    Ok(count)
}

fn state_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ScheduleState, Error>> {
    let schedule: String = row.get(0)?;
    let next_due_ms: i64 = row.get(1)?;
    let owed: u32 = row.get(2)?;
    let runs: i64 = row.get(3)?;
    let last_job: Option<String> = row.get(4)?;
    Ok(serde_json::from_str(&schedule)
        .map_err(|error| Error::Storage {
            message: format!("a schedule is damaged: {error}"),
        })
        .map(|schedule| ScheduleState {
            schedule,
            next_due_ms,
            owed,
            runs: u64::try_from(runs).unwrap_or_default(),
            last_job,
        }))
}
