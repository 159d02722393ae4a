//! The Redis queue keeps the queue contract (tests/contract) against a real redis-server (Debian's
//! package, started by `scripts/setup/redis.sh`, or `KAI_REDIS_URL`), each test on a queue of its own.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod contract;
mod redis_server;

use contract::Fixture;
use kai_core::async_trait;
use kai_jobs::{JobQueue, RedisQueue};
use redis_server::url;

/// A queue with a name of its own on the shared server.
struct Redis(String);

impl Redis {
    fn new() -> Self {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).unwrap();
        Self(format!(
            "kai-test:{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ))
    }
}

#[async_trait]
impl Fixture for Redis {
    async fn open(&self) -> Box<dyn JobQueue> {
        Box::new(RedisQueue::connect(url(), &self.0).await.unwrap())
    }
}

queue_contract!(Redis::new());

/// A raw connection, to look at and tamper with what the queue keeps.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

const LONG: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::test]
async fn the_consumer_groups_pending_list_shows_who_holds_each_job_and_finished_jobs_leave_no_stream_behind() {
    use kai_jobs::JobSpec;
    let name = Redis::new().0;
    let queue = RedisQueue::connect(url(), &name).await.unwrap();
    let mut raw = raw().await;
    let stream = format!("{{{name}}}:stream:0");
    let pending = |raw: &mut redis::aio::MultiplexedConnection| {
        let stream = stream.clone();
        let mut raw = raw.clone();
        async move {
            let reply: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg("workers")
                .query_async(&mut raw)
                .await
                .unwrap();
            match reply {
                redis::streams::StreamPendingReply::Data(data) => data
                    .consumers
                    .into_iter()
                    .map(|c| (c.name, c.pending))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            }
        }
    };
    queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let first = queue
        .lease("w1", std::time::Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending(&mut raw).await, [("w1".to_owned(), 1)]);
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    // w1's lease expired: the job and its pending entry pass to w2.
    let second = queue.lease("w2", LONG).await.unwrap().unwrap();
    assert_eq!(
        (second.job.id.as_str(), second.job.attempts),
        (first.job.id.as_str(), 2)
    );
    let holders = pending(&mut raw).await;
    assert_eq!(holders.iter().map(|(_, n)| n).sum::<usize>(), 1);
    assert!(holders.contains(&("w2".to_owned(), 1)), "{holders:?}");
    queue.complete(&second, serde_json::json!(1)).await.unwrap();
    // Its entry left the stream, and the stream, empty, went with its group and consumers.
    let exists: usize = redis::cmd("EXISTS").arg(&stream).query_async(&mut raw).await.unwrap();
    assert_eq!(exists, 0, "an empty stream stayed");
    queue.destroy().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{name}}}:*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn damaged_entries_on_the_server_give_typed_errors_not_panics() {
    use kai_jobs::{Error, JobSpec};
    let name = Redis::new().0;
    let queue = RedisQueue::connect(url(), &name).await.unwrap();
    let mut raw = raw().await;
    let id = queue.enqueue(JobSpec::agent("a", "x")).await.unwrap();
    let key = format!("{{{name}}}:job:{id}");
    for (field, value) in [
        ("spec", "{not json"),
        ("attempts", "-1"),
        ("created", "soon"),
        ("status", "lost"),
    ] {
        let good: String = redis::cmd("HGET")
            .arg(&key)
            .arg(field)
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(field)
            .arg(value)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(
            matches!(queue.job(&id).await, Err(Error::Storage { .. })),
            "a damaged {field} was taken"
        );
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(field)
            .arg(good)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    // Ahead of the job in its stream: an entry for a job that does not exist, one whose field is not a
    // job id, and one for the job itself but not its current entry. All are dropped; the job is leased.
    let stream = format!("{{{name}}}:stream:0");
    let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut raw)
        .await
        .unwrap();
    for (field, value) in [("id", "ghost"), ("other", id.as_str()), ("id", id.as_str())] {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let entry: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("id")
        .arg(&id)
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("entry")
        .arg(&entry)
        .query_async(&mut raw)
        .await
        .unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.id, id);
    queue
        .record_event(&lease, serde_json::json!({"step": 1}))
        .await
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{{{name}}}:events:{id}"))
        .arg("no colons here")
        .query_async(&mut raw)
        .await
        .unwrap();
    // The stale entries are gone; only the leased job's stays, pending.
    let length: usize = redis::cmd("XLEN").arg(&stream).query_async(&mut raw).await.unwrap();
    assert_eq!((length, queue.depth().await.unwrap()), (1, 0));
    assert!(matches!(queue.events(&id, 0).await, Err(Error::Storage { .. })));
    assert_eq!(queue.events(&id, 0).await.err().map(|e| e.kind()), Some("storage"));
    // A damaged counter or a foreign key fails the call and changes nothing.
    let waiting = queue.enqueue(JobSpec::agent("a", "waiting")).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{{{name}}}:depth"))
        .arg("many")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(queue.lease("w", LONG).await, Err(Error::Storage { .. })));
    assert_eq!(queue.job(&waiting).await.unwrap().status, kai_jobs::JobStatus::Queued);
    let _: () = redis::cmd("SET")
        .arg(format!("{{{name}}}:depth"))
        .arg("1")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{{{name}}}:leases"))
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        queue.enqueue(JobSpec::agent("a", "b")).await,
        Err(Error::Storage { .. })
    ));
    let _: () = redis::cmd("DEL")
        .arg(format!("{{{name}}}:leases"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let again = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(again.job.id, waiting);
    // A job whose record is damaged is dead-lettered, not leased for ever.
    let broken = queue.enqueue(JobSpec::agent("a", "broken")).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{name}}}:job:{broken}"))
        .arg("max")
        .arg("lots")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead[0].id, broken);
    assert_eq!(dead[0].error.as_ref().map(kai_core::Error::kind), Some("storage"));
    // More damage: a job record that is not a hash, among the leases; attempts that are not an
    // integer Redis takes; a counter with a leading zero; a stream entry id that is not one.
    let _: () = redis::cmd("ZADD")
        .arg(format!("{{{name}}}:leases"))
        .arg(0)
        .arg("fake")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{{{name}}}:job:fake"))
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();
    let odd = queue.enqueue(JobSpec::agent("a", "odd")).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{name}}}:job:{odd}"))
        .arg("attempts")
        .arg("1.5")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(queue.lease("w", LONG).await.unwrap().is_none());
    let fake_left: bool = redis::cmd("ZSCORE")
        .arg(format!("{{{name}}}:leases"))
        .arg("fake")
        .query_async::<Option<f64>>(&mut raw)
        .await
        .unwrap()
        .is_some();
    assert!(!fake_left, "a lease on a record that is not a job stayed");
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{name}}}:job:{odd}"))
        .arg("attempts")
        .arg("0")
        .query_async(&mut raw)
        .await
        .unwrap();
    let dead: Vec<String> = queue
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert!(dead.contains(&odd), "{dead:?}");
    assert_eq!(queue.depth().await.unwrap(), 0);
    let _: () = redis::cmd("SET")
        .arg(format!("{{{name}}}:depth"))
        .arg("007")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(queue.lease("w", LONG).await, Err(Error::Storage { .. })));
    let _: () = redis::cmd("SET")
        .arg(format!("{{{name}}}:depth"))
        .arg("0")
        .query_async(&mut raw)
        .await
        .unwrap();
    let last = queue.enqueue(JobSpec::agent("a", "last")).await.unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{name}}}:job:{last}"))
        .arg("entry")
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .unwrap();
    queue.complete(&lease, serde_json::json!("fine")).await.unwrap();
    assert_eq!(queue.job(&last).await.unwrap().status, kai_jobs::JobStatus::Succeeded);
    // Names and ids out of bounds are refused before anything is sent.
    for name in ["a}b", "a*", "a\\b", "", &"x".repeat(201)] {
        assert!(
            matches!(RedisQueue::connect(url(), name).await, Err(Error::InvalidJob { .. })),
            "{name:?}"
        );
    }
    assert!(matches!(
        queue.job(&"x".repeat(1000)).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(queue.cancel("nope").await, Err(Error::NotFound { .. })));
    queue.destroy().await.unwrap();
}

#[tokio::test]
async fn a_lost_answer_is_harmless_when_asked_again() {
    use kai_jobs::{JobSpec, JobStatus};
    let name = Redis::new().0;
    let queue = RedisQueue::connect(url(), &name).await.unwrap();
    let id = queue
        .enqueue(JobSpec::agent("a", "x").backoff(std::time::Duration::from_secs(60)))
        .await
        .unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    // The first answer to each of these was lost: the worker asks again and is told it happened.
    assert_eq!(
        queue.fail(&lease, kai_core::Error::Timeout, true).await.unwrap(),
        JobStatus::Queued
    );
    assert_eq!(
        queue.fail(&lease, kai_core::Error::Timeout, true).await.unwrap(),
        JobStatus::Queued
    );
    assert_eq!(queue.depth().await.unwrap(), 1);
    let job = queue.job(&id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 1));
    let other = queue.enqueue(JobSpec::agent("a", "y")).await.unwrap();
    let lease = queue.lease("w", LONG).await.unwrap().unwrap();
    assert_eq!(lease.job.id, other);
    queue.complete(&lease, serde_json::json!(1)).await.unwrap();
    queue.complete(&lease, serde_json::json!(1)).await.unwrap();
    // Once another worker has leased the job again, the first one's late answer is refused.
    let again = queue
        .enqueue(JobSpec::agent("a", "z").backoff(std::time::Duration::ZERO))
        .await
        .unwrap();
    let first = queue.lease("w1", LONG).await.unwrap().unwrap();
    assert_eq!(first.job.id, again);
    queue.fail(&first, kai_core::Error::Timeout, true).await.unwrap();
    let second = queue.lease("w2", LONG).await.unwrap().unwrap();
    assert_eq!(second.job.id, again);
    assert!(matches!(
        queue.fail(&first, kai_core::Error::Timeout, true).await,
        Err(kai_jobs::Error::LeaseLost { .. })
    ));
    // But a lease that ended one way cannot claim the other.
    assert!(matches!(
        queue.finish_cancelled(&lease).await,
        Err(kai_jobs::Error::LeaseLost { .. })
    ));
    queue.destroy().await.unwrap();
}
