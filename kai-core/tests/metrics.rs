//! Metrics from the agent loop's spans, served by the Prometheus exporter and read back by a scrape
//! parsed with `prometheus-parse` (a parser of the exposition format no one here wrote).
//!
//! One test in a binary of its own: the recorder and the tracing subscriber are process-wide.
#![cfg(feature = "prometheus")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use kai_core::metrics::{MetricsLayer, install_prometheus};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Error, Usage, tool_fn};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// `GET /metrics` over plain HTTP/1.1 (the connection closed after it), the response's body.
fn scrape(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_owned()
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == name && labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?} in the scrape"));
    match &sample.value {
        prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Gauge(value) => *value,
        prometheus_parse::Value::Untyped(value) => *value,
        prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
        prometheus_parse::Value::Summary(_) => panic!("{name} is a summary"),
    }
}

#[tokio::test]
async fn agent_runs_model_calls_tokens_cost_and_tool_calls_are_scraped_from_metrics() {
    let layer = MetricsLayer::new().with_cost(|_provider, model, usage| {
        // One dollar per million tokens of either kind, for the scripted model.
        (model == "scripted").then(|| (usage.input_tokens + usage.output_tokens) as f64 / 1_000_000.0)
    });
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let handle = install_prometheus(address).unwrap();

    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 2, "b": 3}))
        .usage(usage(100, 10))
        .text("5")
        .usage(usage(120, 5))
        .fail(Error::Server {
            status: Some(503),
            message: "busy".into(),
        });
    let agent = Agent::builder(model)
        .name("calculator")
        .tool(tool_fn("add", "Adds.", |x: Add| async move { Ok(x.a + x.b) }))
        .build()
        .unwrap();
    agent.run("What is 2 + 3?").await.unwrap();
    agent.run("And 4 + 4?").await.unwrap_err();

    // The exporter serves what was recorded; the handle renders the same text.
    let mut text = String::new();
    for _ in 0..50 {
        text = scrape(address);
        if text.contains("kai_agent_runs_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handle.render().contains("kai_tool_calls_total"));
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let calculator = [("agent", "calculator")];
    assert_eq!(
        value(
            &parsed,
            "kai_agent_runs_total",
            &[("agent", "calculator"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &parsed,
            "kai_agent_runs_total",
            &[("agent", "calculator"), ("outcome", "server")]
        ),
        1.0
    );
    // Two steps of the first run; the second run's one model call failed, so it counts no step.
    assert_eq!(value(&parsed, "kai_agent_steps_total", &calculator), 2.0);
    assert_eq!(value(&parsed, "kai_agent_run_duration_seconds_count", &calculator), 2.0);
    let scripted = [("provider", "kai.scripted"), ("model", "scripted")];
    assert_eq!(value(&parsed, "kai_model_call_duration_seconds_count", &scripted), 3.0);
    assert_eq!(
        value(&parsed, "kai_model_calls_total", &[scripted[1], ("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        value(&parsed, "kai_model_calls_total", &[scripted[1], ("outcome", "server")]),
        1.0
    );
    assert_eq!(
        value(&parsed, "kai_tokens_total", &[scripted[1], ("type", "input")]),
        220.0
    );
    assert_eq!(
        value(&parsed, "kai_tokens_total", &[scripted[1], ("type", "output")]),
        15.0
    );
    assert_eq!(value(&parsed, "kai_cost_microdollars_total", &[scripted[1]]), 235.0);
    assert_eq!(
        value(&parsed, "kai_tool_calls_total", &[("tool", "add"), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        value(&parsed, "kai_tool_call_duration_seconds_count", &[("tool", "add")]),
        1.0
    );
    assert_eq!(
        value(
            &parsed,
            "kai_errors_total",
            &[("operation", "chat"), ("kind", "server")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &parsed,
            "kai_errors_total",
            &[("operation", "invoke_agent"), ("kind", "server")]
        ),
        1.0
    );
    // A second recorder cannot be installed.
    assert!(matches!(install_prometheus(address), Err(Error::Config { .. })));
}
