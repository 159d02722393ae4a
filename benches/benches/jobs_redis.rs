//! Job throughput on a real Redis, beside a raw Redis Streams loop in the same run.
//!
//! Each way enqueues `JOBS` jobs one at a time, then drains them:
//! - `raw streams`: `XADD`, then `XREADGROUP` + `XACK` + `XDEL` per entry (the least a Streams work
//!   queue with acknowledgements does);
//! - `RedisQueue`: `enqueue`, then `lease` + `complete` (a Lua script each);
//! - `Worker`: `enqueue`, then a worker runs each job on a no-op agent (the scripted model), with its
//!   lease, events, outcome and depth gauge.
//!
//! Each is drained by one consumer and by `CONSUMERS` concurrent ones. The SQLite queue's worker is
//! shown for comparison.
//!
//! `cargo bench -p kai-benches --bench jobs_redis` (starts `scripts/setup/redis.sh`, or set
//! `KAI_REDIS_URL`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kai_core::Agent;
use kai_core::testing::ScriptedModel;
use kai_jobs::{JobQueue, JobSpec, RedisQueue, SqliteQueue, Worker};
use redis::AsyncCommands as _;

const JOBS: usize = 2_000;
const CONSUMERS: usize = 8;
const LEASE: Duration = Duration::from_secs(30);

fn redis_url() -> String {
    if let Ok(url) = std::env::var("KAI_REDIS_URL") {
        return url;
    }
    let script = format!("{}/../scripts/setup/redis.sh", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("bash")
        .arg(script)
        .arg("start")
        .output()
        .unwrap();
    assert!(output.status.success(), "redis did not start");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kai-bench:{name}:{nanos}")
}

/// Jobs per second for `JOBS` jobs in `elapsed`.
fn rate(elapsed: Duration) -> f64 {
    JOBS as f64 / elapsed.as_secs_f64()
}

/// Enqueues with `XADD`, then drains with `consumers` tasks doing `XREADGROUP` + `XACK` + `XDEL`.
async fn raw_streams(url: &str, consumers: usize) -> Duration {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let stream = unique("raw");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut connection)
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..JOBS {
        let _: String = connection
            .xadd(&stream, "*", &[("job", format!("{{\"input\":\"job {i}\"}}"))])
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for consumer in 0..consumers {
        let (mut connection, stream) = (connection.clone(), stream.clone());
        tasks.push(tokio::spawn(async move {
            let options = redis::streams::StreamReadOptions::default()
                .group("workers", format!("c{consumer}"))
                .count(1);
            loop {
                let reply: redis::streams::StreamReadReply =
                    connection.xread_options(&[&stream], &[">"], &options).await.unwrap();
                let Some(entry) = reply.keys.into_iter().next().and_then(|key| key.ids.into_iter().next()) else {
                    break;
                };
                let _: usize = connection.xack(&stream, "workers", &[&entry.id]).await.unwrap();
                let _: usize = connection.xdel(&stream, &[&entry.id]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let _: () = connection.del(&stream).await.unwrap();
    elapsed
}

async fn enqueue_all(queue: &dyn JobQueue) {
    for i in 0..JOBS {
        queue.enqueue(JobSpec::agent("noop", format!("job {i}"))).await.unwrap();
    }
}

/// Enqueues, then drains with `consumers` tasks doing `lease` + `complete`.
async fn queue_only(queue: Arc<dyn JobQueue>, consumers: usize) -> Duration {
    let started = Instant::now();
    enqueue_all(queue.as_ref()).await;
    let mut tasks = Vec::new();
    for consumer in 0..consumers {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(lease) = queue.lease(&format!("c{consumer}"), LEASE).await.unwrap() {
                queue
                    .complete(&lease, serde_json::json!({"answer": "ok"}))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// Enqueues, then drains with `consumers` workers running each job on a no-op agent.
async fn workers(queue: Arc<dyn JobQueue>, consumers: usize) -> Duration {
    let started = Instant::now();
    enqueue_all(queue.as_ref()).await;
    let mut tasks = Vec::new();
    for consumer in 0..consumers {
        let model = ScriptedModel::new().text("ok").repeat().record_requests(false);
        let agent = Agent::builder(model).build().unwrap();
        let worker = Worker::new(queue.clone(), format!("w{consumer}"))
            .agent("noop", agent)
            .lease(LEASE);
        tasks.push(tokio::spawn(async move {
            while worker.run_one().await.unwrap().is_some() {}
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = redis_url();
    let directory = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        println!("{JOBS} jobs, enqueued one at a time, then drained; jobs/s (ratio to raw streams)");
        for consumers in [1, CONSUMERS] {
            let raw = rate(raw_streams(&url, consumers).await);
            let redis_queue = || async { Arc::new(RedisQueue::connect(&url, &unique("queue")).await.unwrap()) };
            let queue = redis_queue().await;
            let only = rate(queue_only(queue.clone(), consumers).await);
            queue.destroy().await.unwrap();
            let queue = redis_queue().await;
            let worked = rate(workers(queue.clone(), consumers).await);
            queue.destroy().await.unwrap();
            let sqlite =
                Arc::new(SqliteQueue::open(directory.path().join(format!("jobs-{consumers}.sqlite3"))).unwrap());
            let sqlite_worked = rate(workers(sqlite, consumers).await);
            println!("{consumers} consumer(s):");
            println!("  raw streams (XADD; XREADGROUP+XACK+XDEL)   {raw:>8.0}");
            println!(
                "  RedisQueue (enqueue; lease+complete)       {only:>8.0} ({:.2}x)",
                only / raw
            );
            println!(
                "  Worker on RedisQueue, no-op agent          {worked:>8.0} ({:.2}x)",
                worked / raw
            );
            println!(
                "  Worker on SqliteQueue, no-op agent         {sqlite_worked:>8.0} ({:.2}x)",
                sqlite_worked / raw
            );
        }
    });
}
