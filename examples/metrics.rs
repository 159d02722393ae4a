//! Serving kAI's metrics to Prometheus: agent runs and background jobs are measured from their spans
//! and workers, and `/metrics` is served over HTTP. The example scrapes itself once and prints the
//! kAI lines, as Prometheus would see them.
//!
//! Run: `cargo run -p kai-examples --example metrics` (add `-- --serve` to keep serving on
//! 127.0.0.1:9464 until stopped).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use kai_core::metrics::{MetricsLayer, install_prometheus};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use kai_jobs::{JobQueue, JobSpec, SqliteQueue, Worker};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

fn calculator() -> Result<Agent, kai_core::Error> {
    let model = ScriptedModel::new()
        .tool_call("add", serde_json::json!({"a": 2, "b": 3}))
        .text("2 + 3 = 5")
        .repeat();
    Agent::builder(model)
        .name("calculator")
        .tool(tool_fn(
            "add",
            "Adds two numbers.",
            |x: Add| async move { Ok(x.a + x.b) },
        ))
        .build()
}

/// The body of `GET /metrics`.
fn scrape(address: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|arg| arg == "--serve");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(MetricsLayer::new()))?;
    let address: SocketAddr = if serve {
        "127.0.0.1:9464".parse()?
    } else {
        // A free port on loopback.
        TcpListener::bind("127.0.0.1:0")?.local_addr()?
    };
    install_prometheus(address)?;

    // Agent runs in the foreground…
    let agent = calculator()?;
    for _ in 0..3 {
        agent.run("What is 2 + 3?").await?;
    }
    // …and as background jobs.
    let directory = tempfile::tempdir()?;
    let queue = Arc::new(SqliteQueue::open(directory.path().join("jobs.sqlite3"))?);
    for _ in 0..2 {
        queue.enqueue(JobSpec::agent("calculator", "What is 2 + 3?")).await?;
    }
    let worker = Worker::new(queue.clone(), "worker-1").agent("calculator", calculator()?);
    while worker.run_one().await?.is_some() {}

    let text = scrape(address)?;
    let ours: Vec<&str> = text.lines().filter(|line| line.starts_with("kai_")).collect();
    for line in &ours {
        println!("{line}");
    }
    for expected in [
        "kai_agent_runs_total{agent=\"calculator\",outcome=\"ok\"} 5",
        "kai_tool_calls_total{tool=\"add\",outcome=\"ok\"} 5",
        "kai_jobs_finished_total{outcome=\"succeeded\"} 2",
    ] {
        if !ours.contains(&expected) {
            return Err(format!("the scrape lacks {expected}").into());
        }
    }
    if serve {
        println!("serving http://{address}/metrics; stop with Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
