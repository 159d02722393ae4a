//! The agent loop's spans exported over OTLP/HTTP to a real receiver, Jaeger v2 (built from its Go
//! module and started by `scripts/setup/jaeger.sh`, or at `KAI_OTLP_ENDPOINT` with its query API at
//! `KAI_JAEGER_URL`), and read back through Jaeger's query API with their gen_ai attributes.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use kai_core::otlp::OtlpExporter;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Error, Usage, tool_fn};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

/// The OTLP endpoint and the query API's URL.
fn jaeger() -> (String, String) {
    if let (Ok(otlp), Ok(query)) = (std::env::var("KAI_OTLP_ENDPOINT"), std::env::var("KAI_JAEGER_URL")) {
        return (otlp, query);
    }
    let script = format!("{}/../scripts/setup/jaeger.sh", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash").arg(script).arg("start").output().unwrap();
    assert!(
        output.status.success(),
        "jaeger did not start: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let urls = String::from_utf8(output.stdout).unwrap();
    let (otlp, query) = urls.trim().split_once(' ').unwrap();
    (otlp.to_owned(), query.to_owned())
}

/// `GET` of `path` from the loopback server at `base` (`http://host:port`), the body as JSON.
fn get_json(base: &str, path: &str) -> Value {
    let host = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Chunked or not, the JSON document is between the first `{` and the last `}`.
    let body = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    serde_json::from_str(body).unwrap()
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tag| tag["key"] == key)
        .map(|tag| &tag["value"])
}

#[tokio::test]
async fn agent_model_and_tool_spans_reach_jaeger_with_their_gen_ai_attributes() {
    let (otlp, query) = jaeger();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let service = format!("kai-otlp-test-{nanos}");
    let exporter = OtlpExporter::builder(&otlp, &service).build().unwrap();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(exporter.layer()));

    let model = ScriptedModel::new()
        .tool_call("add", json!({"a": 2, "b": 3}))
        .tool_call("explode", json!({"a": 0, "b": 0}))
        .usage(Usage {
            input_tokens: 100,
            output_tokens: 10,
            ..Usage::default()
        })
        .text("5")
        .fail(Error::Server {
            status: Some(503),
            message: "busy".into(),
        });
    let agent = Agent::builder(model)
        .name("calculator")
        .tool(tool_fn("add", "Adds.", |x: Add| async move { Ok(x.a + x.b) }))
        .tool(tool_fn("explode", "Panics.", |_: Add| async move {
            if true {
                panic!("PANIC-MARKER");
            }
            Ok(0)
        }))
        .build()
        .unwrap();
    agent.run("What is 2 + 3? my-secret-prompt").await.unwrap();
    agent.run("And 4 + 4?").await.unwrap_err();
    // Flushing blocks: off the async threads.
    let exporter = tokio::task::spawn_blocking(move || {
        exporter.flush().unwrap();
        exporter
    })
    .await
    .unwrap();

    let mut spans = Vec::new();
    for _ in 0..100 {
        let traces = get_json(&query, &format!("/api/traces?service={service}&limit=10"));
        spans = traces["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|trace| trace["spans"].as_array().unwrap().clone())
            .collect();
        if spans.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut names: Vec<&str> = spans
        .iter()
        .map(|span| span["operationName"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "chat scripted",
            "chat scripted",
            "chat scripted",
            "chat scripted",
            "execute_tool add",
            "execute_tool explode",
            "invoke_agent calculator",
            "invoke_agent calculator"
        ],
        "{spans:#?}"
    );
    let named = |name: &'static str| spans.iter().filter(move |span| span["operationName"] == name);
    for run in named("invoke_agent calculator") {
        assert_eq!(tag(run, "gen_ai.operation.name"), Some(&json!("invoke_agent")));
        assert_eq!(tag(run, "gen_ai.agent.name"), Some(&json!("calculator")));
        assert_eq!(tag(run, "gen_ai.provider.name"), Some(&json!("kai.scripted")));
    }
    let ok_run = named("invoke_agent calculator")
        .find(|span| tag(span, "error.type").is_none())
        .expect("no successful run");
    // Counts are integers; the run's are its model calls' sums.
    for usage in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        let calls: i64 = named("chat scripted")
            .filter(|chat| chat["references"][0]["spanID"] == ok_run["spanID"])
            .map(|chat| tag(chat, usage).and_then(Value::as_i64).unwrap())
            .sum();
        assert_eq!(tag(ok_run, usage), Some(&json!(calls)), "{usage}");
        assert!(calls > 0);
    }
    assert_eq!(tag(ok_run, "kai.steps"), Some(&json!(3)));
    assert_eq!(tag(ok_run, "otel.status_code"), None);
    let failed_run = named("invoke_agent calculator")
        .find(|span| tag(span, "error.type").is_some())
        .expect("no failed run");
    assert_eq!(tag(failed_run, "error.type"), Some(&json!("server")));
    // Marked as an error the way OpenTelemetry says (Jaeger shows the status as `otel.status_code`).
    assert_eq!(tag(failed_run, "otel.status_code"), Some(&json!("ERROR")));
    for chat in named("chat scripted") {
        assert_eq!(tag(chat, "gen_ai.operation.name"), Some(&json!("chat")));
        assert_eq!(tag(chat, "gen_ai.request.model"), Some(&json!("scripted")));
        assert!(tag(chat, "kai.step").is_some_and(Value::is_i64), "{chat:#?}");
        // A model call is a child of its run, in its trace.
        let parent = &chat["references"][0];
        assert_eq!(parent["refType"], "CHILD_OF");
        assert!(
            named("invoke_agent calculator").any(|run| run["spanID"] == parent["spanID"]),
            "{chat:#?}"
        );
    }
    let chat_with_usage = named("chat scripted")
        .find(|chat| tag(chat, "gen_ai.usage.input_tokens") == Some(&json!(100)))
        .expect("no model call with its usage");
    assert_eq!(tag(chat_with_usage, "gen_ai.usage.output_tokens"), Some(&json!(10)));
    let tool = named("execute_tool add").next().unwrap();
    assert_eq!(tool["references"][0]["spanID"], ok_run["spanID"]);
    assert_eq!(tag(tool, "gen_ai.tool.name"), Some(&json!("add")));
    assert_eq!(tag(tool, "gen_ai.tool.type"), Some(&json!("function")));
    assert!(tag(tool, "gen_ai.tool.call.id").is_some());
    // A panicking tool's span is an error; its message (a DEBUG event) stays out.
    let explode = named("execute_tool explode").next().unwrap();
    assert_eq!(tag(explode, "error.type"), Some(&json!("panic")));
    assert_eq!(tag(explode, "otel.status_code"), Some(&json!("ERROR")));
    // Names and counts only: no prompt text, and no DEBUG text, reached the receiver.
    let exported = serde_json::to_string(&spans).unwrap();
    assert!(!exported.contains("my-secret-prompt") && !exported.contains("PANIC-MARKER"));
    // The process's own resource carries the service name.
    let services = get_json(&query, "/api/services");
    assert!(
        services["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == &json!(service))
    );
    exporter.shutdown().unwrap();
}
