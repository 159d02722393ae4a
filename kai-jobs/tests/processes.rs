//! Worker processes sharing one queue, the embedded SQLite one and (feature `redis`) the Redis one: one
//! is killed with SIGKILL in the middle of a job, and every job still completes, each job's work done
//! exactly once as the tool's log shows.
//!
//! Without a harness: run with `KAI_JOBS_WORKER` set, the test binary is itself a worker process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kai_core::{
    Agent, ChatModel, ChatRequest, ChatResponse, ContentPart, Error, Message, Role, ToolCall, ToolContext, async_trait,
    dynamic_tool,
};
use kai_jobs::{JobQueue, JobSpec, JobStatus, SqliteQueue, Worker};
use serde_json::json;

#[cfg(feature = "redis")]
mod redis_server;

const JOBS: usize = 12;
const WORKERS: usize = 3;
/// The workers' lease: long enough that a loaded machine never delays a live worker's renewal past it.
const LEASE: Duration = Duration::from_secs(3);
/// How long the tool works on each job.
const WORK: Duration = Duration::from_millis(300);

/// A model that asks for the `work` tool with the job's input, then answers with it.
struct Echo;

#[async_trait]
impl ChatModel for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let input = request
            .messages
            .iter()
            .find(|message| message.role == Role::User)
            .map(Message::text)
            .unwrap_or_default();
        if request
            .messages
            .last()
            .is_some_and(|message| message.role == Role::User)
        {
            let call = ToolCall::new("call_1", "work", &json!({"job": input}));
            return Ok(ChatResponse::new(Message::new(
                Role::Assistant,
                vec![ContentPart::ToolCall(call)],
            )));
        }
        Ok(ChatResponse::new(Message::assistant(format!("done {input}"))))
    }
}

/// Appends a line to the shared log, whole (one `write` of a line under `O_APPEND`).
fn log(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The queue `spec` names: `sqlite:<path>` or `redis:<url> <queue name>`.
async fn open_queue(spec: &str) -> Arc<dyn JobQueue> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Arc::new(SqliteQueue::open(path).unwrap());
    }
    #[cfg(feature = "redis")]
    if let Some(redis) = spec.strip_prefix("redis:") {
        let (url, name) = redis.split_once(' ').unwrap();
        return Arc::new(kai_jobs::RedisQueue::connect(url, name).await.unwrap());
    }
    panic!("no such queue: {spec}")
}

/// The worker process: runs jobs until the queue has had nothing for longer than a lease (so a job
/// whose worker died is still taken over).
fn worker_process(queue: &str, name: &str, log_path: PathBuf) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let queue = open_queue(queue).await;
        let worker_name = name.to_owned();
        let work = dynamic_tool(
            "work",
            "Works on a job.",
            json!({"type": "object", "properties": {"job": {"type": "string"}}}),
            move |arguments: serde_json::Value, _: ToolContext| {
                let (log_path, worker_name) = (log_path.clone(), worker_name.clone());
                async move {
                    let job = arguments["job"].as_str().unwrap_or_default().to_owned();
                    log(&log_path, &format!("start {job} {worker_name}"));
                    tokio::time::sleep(WORK).await;
                    log(&log_path, &format!("done {job} {worker_name}"));
                    Ok(json!("worked"))
                }
            },
        )
        .unwrap();
        let agent = Agent::builder(Echo).tool(work).build().unwrap();
        let worker = Worker::new(queue, name).agent("echo", agent).lease(LEASE);
        let mut idle_since = Instant::now();
        while idle_since.elapsed() < LEASE + Duration::from_secs(1) {
            match worker.run_one().await.unwrap() {
                Some(_) => idle_since = Instant::now(),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
}

fn spawn_worker(queue: &str, log_path: &Path, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("KAI_JOBS_WORKER", name)
        .env("KAI_JOBS_QUEUE", queue)
        .env("KAI_JOBS_LOG", log_path)
        .spawn()
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn main() {
    if let Ok(name) = std::env::var("KAI_JOBS_WORKER") {
        let queue = std::env::var("KAI_JOBS_QUEUE").unwrap();
        worker_process(&queue, &name, PathBuf::from(std::env::var("KAI_JOBS_LOG").unwrap()));
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", directory.path().join("jobs.sqlite3").display());
    kill_a_worker_mid_job(&sqlite, directory.path());
    #[cfg(feature = "redis")]
    kill_a_worker_mid_job(
        &format!("redis:{} {}", redis_server::url(), redis_server::unique_name()),
        directory.path(),
    );
}

/// Runs the jobs on worker processes sharing the queue `spec` names, kills one mid-job, and checks
/// every job was done once.
fn kill_a_worker_mid_job(spec: &str, directory: &Path) {
    let log_path = directory.join(format!("work-{}.log", spec.split(':').next().unwrap()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let queue = runtime.block_on(open_queue(spec));
    let ids: Vec<String> = runtime.block_on(async {
        let mut ids = Vec::new();
        for i in 0..JOBS {
            ids.push(queue.enqueue(JobSpec::agent("echo", format!("job-{i}"))).await.unwrap());
        }
        ids
    });
    let started = Instant::now();
    let mut workers: Vec<Child> = (0..WORKERS)
        .map(|i| spawn_worker(spec, &log_path, &format!("w{i}")))
        .collect();
    // Kill w0 with SIGKILL once it is in the middle of a job.
    let victim_job = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "w0 never started a job");
        if let Some(line) = lines(&log_path)
            .iter()
            .find(|line| line.starts_with("start ") && line.ends_with(" w0"))
        {
            break line.split(' ').nth(1).unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    for worker in &mut workers[1..] {
        let status = worker.wait().unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
    let log = lines(&log_path);
    runtime.block_on(async {
        for (i, id) in ids.iter().enumerate() {
            let job = queue.job(id).await.unwrap();
            assert_eq!(job.status, JobStatus::Succeeded, "job-{i}: {job:?}");
            assert_eq!(job.result.as_ref().unwrap()["answer"], format!("done job-{i}"));
            let done = log
                .iter()
                .filter(|line| line.starts_with(&format!("done job-{i} ")))
                .count();
            assert_eq!(done, 1, "job-{i}'s work was done {done} times:\n{}", log.join("\n"));
            if format!("job-{i}") == victim_job {
                assert_eq!(job.attempts, 2, "the killed worker's job was not taken over: {job:?}");
            }
        }
    });
    assert!(
        !log.iter().any(|line| line == &format!("done {victim_job} w0")),
        "w0 finished its job before it was killed; the test proves nothing"
    );
    println!(
        "{}: {JOBS} jobs on {WORKERS} worker processes, one killed with SIGKILL mid-job ({victim_job}): each done once, in {:.1} s",
        spec.split(':').next().unwrap(),
        started.elapsed().as_secs_f64()
    );
}
