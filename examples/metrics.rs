//! Serving kAI's metrics to Prometheus: agent runs and background jobs are measured from their spans
//! and workers, and `/metrics` is served over HTTP. The example scrapes itself once and prints the
//! kAI lines, as Prometheus would see them, and checks that every metric the Grafana dashboard
//! (docs/grafana/kai-dashboard.json) charts is among them.
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

/// Checks that every `kai_*` metric the dashboard's queries name is in the scrape's `lines`.
fn check_dashboard(lines: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/kai-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut charted = Vec::new();
    let mut panels = vec![&dashboard];
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            for (start, _) in expr.match_indices("kai_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                charted.push(name);
            }
        }
    }
    charted.sort();
    charted.dedup();
    let missing: Vec<&String> = charted
        .iter()
        .filter(|name| !lines.iter().any(|line| line.starts_with(name.as_str())))
        .collect();
    if charted.len() < 10 || !missing.is_empty() {
        return Err(format!("the dashboard charts metrics the scrape lacks: {missing:?} (of {charted:?})").into());
    }
    println!("the Grafana dashboard's {} metrics are all served", charted.len());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|arg| arg == "--serve");
    // The scripted model's tokens priced at one dollar per million, either kind.
    let layer = MetricsLayer::new()
        .with_cost(|_provider, _model, usage| Some((usage.input_tokens + usage.output_tokens) as f64 / 1_000_000.0));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
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
    // A model that is down, so errors are counted too.
    let down = ScriptedModel::new().fail(kai_core::Error::Server {
        status: Some(503),
        message: "unavailable".into(),
    });
    let failing = Agent::builder(down).name("calculator").build()?;
    if failing.run("What is 2 + 3?").await.is_ok() {
        return Err("a run on a model that is down succeeded".into());
    }

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
    check_dashboard(&ours)?;
    if serve {
        println!("serving http://{address}/metrics; stop with Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
