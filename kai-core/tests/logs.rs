//! Structured JSON logs: every line parses as JSON with its level, target, fields and span, and at INFO
//! no prompt, answer, tool argument or tool output reaches the log, while DEBUG does let a tool's panic
//! message through (so the filter is what keeps it out).
#![cfg(feature = "json-logs")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt as _;

/// Lines written by the layer, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Lookup {
    account: String,
}

/// Runs an agent whose prompt, tool arguments, tool output, answer and tool panic all carry markers,
/// logging at `level`; returns the log's lines as JSON.
async fn run_logged(level: tracing::Level) -> Vec<Value> {
    let captured = Captured::default();
    let writer = captured.clone();
    let layer = kai_core::logs::json_logs(move || writer.clone(), level);
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let model = ScriptedModel::new()
        .tool_call("lookup", json!({"account": "ARGUMENT-MARKER"}))
        .tool_call("explode", json!({"account": "x"}))
        .text("ANSWER-MARKER");
    let agent = Agent::builder(model)
        .name("support")
        .tool(tool_fn("lookup", "Looks up.", |x: Lookup| async move {
            Ok(format!("OUTPUT-MARKER for {}", x.account))
        }))
        .tool(tool_fn("explode", "Panics.", |_: Lookup| async move {
            if true {
                panic!("PANIC-MARKER");
            }
            Ok(())
        }))
        .build()
        .unwrap();
    agent.run("PROMPT-MARKER: what is my balance?").await.unwrap();
    tracing::info!(target: "app", jobs = 3, "worker started");
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn info_logs_are_json_lines_with_their_span_and_carry_no_prompt_text() {
    let lines = run_logged(tracing::Level::INFO).await;
    let all = lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    for marker in [
        "PROMPT-MARKER",
        "ARGUMENT-MARKER",
        "OUTPUT-MARKER",
        "ANSWER-MARKER",
        "PANIC-MARKER",
    ] {
        assert!(!all.contains(marker), "{marker} reached the INFO log:\n{all}");
    }
    // The tool's panic is logged (a warning naming the tool) inside its span, which names the
    // operation, within the run.
    let panicked = lines
        .iter()
        .find(|line| line["message"] == "tool panicked")
        .unwrap_or_else(|| panic!("no panic warning:\n{all}"));
    assert_eq!(panicked["level"], "WARN");
    assert_eq!(panicked["tool"], "explode");
    assert_eq!(panicked["target"], "kai_core::agent::run");
    assert_eq!(panicked["span"]["name"], "execute_tool");
    assert_eq!(panicked["span"]["gen_ai.tool.name"], "explode");
    assert!(panicked["timestamp"].as_str().unwrap().contains('T'));
    // An application's own event, with its fields at the top level.
    let app = lines.iter().find(|line| line["target"] == "app").unwrap();
    assert_eq!(
        (&app["level"], &app["jobs"], &app["message"]),
        (&json!("INFO"), &json!(3), &json!("worker started"))
    );
}

#[tokio::test]
async fn debug_logs_let_a_tools_panic_message_through() {
    let lines = run_logged(tracing::Level::DEBUG).await;
    assert!(
        lines.iter().any(|line| line.to_string().contains("PANIC-MARKER")),
        "{lines:#?}"
    );
}
