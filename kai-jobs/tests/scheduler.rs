//! The scheduler on the embedded queue, at chosen times: intervals, cron in a time zone across a
//! daylight-saving change, missed-run policies, no overlapping runs, persistence, and bad schedules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use kai_jobs::{Cadence, Error, JobQueue, JobSpec, JobStatus, MissedRuns, Schedule, Scheduler, SqliteQueue};
use serde_json::json;

const MINUTE: i64 = 60_000;
const LONG: Duration = Duration::from_secs(60);

fn every_minute(name: &str, missed: MissedRuns) -> Schedule {
    Schedule {
        name: name.into(),
        cadence: Cadence::Every { interval_ms: 60_000 },
        job: JobSpec::agent("reporter", "Write the report."),
        missed,
    }
}

fn setup() -> (tempfile::TempDir, Arc<SqliteQueue>, Scheduler) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jobs.sqlite3");
    let queue = Arc::new(SqliteQueue::open(&path).unwrap());
    let scheduler = Scheduler::open(&path, queue.clone()).unwrap();
    (directory, queue, scheduler)
}

/// Leases and completes every queued job; returns how many.
async fn finish_all(queue: &SqliteQueue) -> usize {
    let mut finished = 0;
    while let Some(lease) = queue.lease("w", LONG).await.unwrap() {
        queue.complete(&lease, json!("ok")).await.unwrap();
        finished += 1;
    }
    finished
}

#[tokio::test]
async fn an_interval_schedule_enqueues_when_due_and_never_overlaps_its_runs() {
    let (_directory, queue, scheduler) = setup();
    let t0 = 1_800_000_000_000;
    let state = scheduler
        .add_at(every_minute("report", MissedRuns::Skip), t0)
        .await
        .unwrap();
    assert_eq!(state.next_due_ms, t0 + MINUTE);
    assert!(scheduler.tick_at(t0 + MINUTE - 1).await.unwrap().is_empty());
    let first = scheduler.tick_at(t0 + MINUTE).await.unwrap();
    assert_eq!(first.len(), 1);
    let job = queue.job(&first[0]).await.unwrap();
    assert_eq!(job.spec.idempotency_key.as_deref(), Some("schedule:report:1"));
    // The next run comes due while the first is still queued: it waits for it.
    assert!(scheduler.tick_at(t0 + 2 * MINUTE).await.unwrap().is_empty());
    let waiting = &scheduler.schedules().await.unwrap()[0];
    assert_eq!((waiting.owed, waiting.next_due_ms), (1, t0 + 3 * MINUTE));
    assert_eq!(finish_all(&queue).await, 1);
    let second = scheduler.tick_at(t0 + 2 * MINUTE + 1).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        queue.job(&second[0]).await.unwrap().spec.idempotency_key.as_deref(),
        Some("schedule:report:2")
    );
}

#[tokio::test]
async fn missed_runs_are_skipped_or_caught_up_one_after_another() {
    let (_directory, queue, scheduler) = setup();
    let t0 = 1_800_000_000_000;
    scheduler
        .add_at(every_minute("skip", MissedRuns::Skip), t0)
        .await
        .unwrap();
    scheduler
        .add_at(every_minute("catch_up", MissedRuns::CatchUp { max: 3 }), t0)
        .await
        .unwrap();
    // Down for ten minutes.
    let back = t0 + 10 * MINUTE + 1;
    let enqueued = scheduler.tick_at(back).await.unwrap();
    assert_eq!(enqueued.len(), 2, "one run of each");
    let states = scheduler.schedules().await.unwrap();
    let catch_up = states.iter().find(|s| s.schedule.name == "catch_up").unwrap();
    let skip = states.iter().find(|s| s.schedule.name == "skip").unwrap();
    assert_eq!((catch_up.owed, skip.owed), (2, 0));
    assert_eq!(skip.next_due_ms, t0 + 11 * MINUTE);
    // The two missed runs left follow, each once the one before has finished.
    let mut caught_up = 1;
    for second in 1..=4 {
        finish_all(&queue).await;
        caught_up += scheduler.tick_at(back + second * 1_000).await.unwrap().len();
    }
    assert_eq!(caught_up, 3);
    assert_eq!(scheduler.schedules().await.unwrap()[0].owed, 0);
}

#[tokio::test]
async fn cron_runs_in_its_time_zone_across_a_daylight_saving_change() {
    let (_directory, _queue, scheduler) = setup();
    let weekdays_at_nine = Cadence::Cron {
        expression: "0 9 * * MON-FRI".into(),
        time_zone: "Europe/Oslo".into(),
    };
    // Friday 27 March 2026, 12:00 UTC; Oslo moves from UTC+1 to UTC+2 on Sunday the 29th.
    let friday = Utc.with_ymd_and_hms(2026, 3, 27, 12, 0, 0).unwrap().timestamp_millis();
    let runs = weekdays_at_nine.next_runs(friday, 3).unwrap();
    let expected: Vec<i64> = [(30, 7), (31, 7), (1, 7)]
        .iter()
        .map(|&(day, hour)| {
            let month = if day == 1 { 4 } else { 3 };
            Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    assert_eq!(
        runs, expected,
        "09:00 in Oslo is 07:00 UTC after the change, and weekends are skipped"
    );
    let thursday = Utc.with_ymd_and_hms(2026, 3, 26, 12, 0, 0).unwrap().timestamp_millis();
    assert_eq!(
        weekdays_at_nine.next_after(thursday).unwrap(),
        Utc.with_ymd_and_hms(2026, 3, 27, 8, 0, 0).unwrap().timestamp_millis(),
        "09:00 in Oslo is 08:00 UTC before it"
    );
    let schedule = Schedule {
        name: "standup".into(),
        cadence: weekdays_at_nine,
        job: JobSpec::agent("a", "Summarise yesterday."),
        missed: MissedRuns::Skip,
    };
    let state = scheduler.add_at(schedule, friday).await.unwrap();
    assert_eq!(state.next_due_ms, expected[0]);
}

#[tokio::test]
async fn schedules_survive_a_reopen_and_bad_ones_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jobs.sqlite3");
    let queue: Arc<SqliteQueue> = Arc::new(SqliteQueue::open(&path).unwrap());
    let t0 = 1_800_000_000_000;
    {
        let scheduler = Scheduler::open(&path, queue.clone()).unwrap();
        scheduler
            .add_at(every_minute("report", MissedRuns::Skip), t0)
            .await
            .unwrap();
        scheduler.tick_at(t0 + MINUTE).await.unwrap();
    }
    let scheduler = Scheduler::open(&path, queue.clone()).unwrap();
    let states = scheduler.schedules().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!((states[0].runs, states[0].next_due_ms), (1, t0 + 2 * MINUTE));
    assert_eq!(queue.depth().await.unwrap(), 1);
    // A second scheduler on the same file cannot enqueue the same run twice.
    let other = Scheduler::open(&path, queue.clone()).unwrap();
    finish_all(&queue).await;
    let a = scheduler.tick_at(t0 + 2 * MINUTE).await.unwrap();
    let b = other.tick_at(t0 + 2 * MINUTE).await.unwrap();
    assert_eq!(a.len(), 1);
    assert!(b.is_empty() || b == a, "{a:?} {b:?}");
    assert_eq!(queue.depth().await.unwrap(), 1);
    assert!(scheduler.remove("report").await.unwrap());
    assert!(scheduler.schedules().await.unwrap().is_empty());

    for cadence in [
        Cadence::Cron {
            expression: "every tuesday".into(),
            time_zone: "UTC".into(),
        },
        Cadence::Cron {
            expression: "0 9 * * *".into(),
            time_zone: "Mars/Olympus_Mons".into(),
        },
        Cadence::Every { interval_ms: 10 },
    ] {
        let schedule = Schedule {
            name: "bad".into(),
            cadence,
            job: JobSpec::agent("a", "x"),
            missed: MissedRuns::Skip,
        };
        assert!(matches!(
            scheduler.add(schedule).await,
            Err(Error::InvalidSchedule { .. })
        ));
    }
    let done = queue.job(&a[0]).await.unwrap();
    assert_eq!(done.status, JobStatus::Queued);
}

#[tokio::test]
async fn a_running_scheduler_enqueues_on_time() {
    let (_directory, queue, scheduler) = setup();
    let schedule = Schedule {
        name: "often".into(),
        cadence: Cadence::Every { interval_ms: 1_000 },
        job: JobSpec::agent("a", "x"),
        missed: MissedRuns::Skip,
    };
    scheduler.add(schedule).await.unwrap();
    let stop = kai_core::CancellationToken::new();
    let scheduler = Arc::new(scheduler);
    let running = {
        let (scheduler, stop) = (scheduler.clone(), stop.clone());
        tokio::spawn(async move { scheduler.run(stop, Duration::from_millis(200)).await })
    };
    let mut runs = 0;
    for _ in 0..60 {
        runs += finish_all(&queue).await;
        if runs >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    assert!(runs >= 2, "{runs} runs in 6 s of a 1 s schedule");
}
