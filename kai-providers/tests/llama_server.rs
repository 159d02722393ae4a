//! Against a real server no one here wrote: llama.cpp's OpenAI-compatible server (llama-cpp-python)
//! running a small local model on loopback (Qwen2.5-Coder-1.5B-Instruct by default; `KAI_LLAMA_MODEL`
//! picks another). The server is started by `scripts/setup/llama-server.sh` (installed into
//! ~/.cache/kai on first use), or taken from `KAI_LLAMA_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt as _;
use kai_core::{Agent, AgentEvent, ChatDelta, ChatModel, ChatRequest, Message, tool_fn};
use kai_providers::{Flavor, HttpConfig, OpenAiChat, OpenAiClient, OpenAiConfig};

fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("KAI_LLAMA_URL") {
            return url;
        }
        // The package's directory at run time: a build cache shared by clones keeps the builder's path.
        let script = format!(
            "{}/../scripts/setup/llama-server.sh",
            std::env::var("CARGO_MANIFEST_DIR").unwrap()
        );
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run the llama server script");
        assert!(
            output.status.success(),
            "the llama server did not start:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
}

fn model() -> OpenAiChat {
    let config = OpenAiConfig::compatible(server_url(), Flavor::LlamaCpp).with_http(HttpConfig {
        timeout: Some(Duration::from_secs(120)),
        ..HttpConfig::default()
    });
    // The server serves one model, whatever the request names.
    OpenAiClient::new(config).unwrap().chat("local")
}

fn request(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::user(text)])
        .with_temperature(0.0)
        .with_max_tokens(48)
        .with_extra("seed", serde_json::json!(42))
}

#[tokio::test]
async fn chat_completion() {
    let response = model().complete(request("Name a primary colour.")).await.unwrap();
    assert!(!response.text().trim().is_empty());
    assert!(
        response.usage.input_tokens > 0 && response.usage.output_tokens > 0,
        "{:?}",
        response.usage
    );
    assert!(response.stop_reason.is_some());
}

#[tokio::test]
async fn chat_stream() {
    let model = model();
    let deltas: Vec<_> = Arc::new(model)
        .stream(request("Count from one to five."))
        .collect()
        .await;
    let texts = deltas
        .iter()
        .filter(|d| matches!(d, Ok(ChatDelta::Text { .. })))
        .count();
    assert!(texts > 1, "streamed in several pieces: {deltas:?}");
    assert!(deltas.iter().all(Result::is_ok), "{deltas:?}");
    assert!(deltas.iter().any(|d| matches!(d, Ok(ChatDelta::Finish { .. }))));
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

#[tokio::test]
async fn agent_with_a_tool() {
    let agent = Agent::builder(model())
        .instructions("You are a calculator. Use the add tool to add numbers, then state the result.")
        .tool(tool_fn("add", "Adds two numbers a and b.", |x: Add| async move {
            Ok(x.a + x.b)
        }))
        .temperature(0.0)
        .max_tokens(64)
        .max_steps(4)
        .request_extra("seed", serde_json::json!(42))
        .build()
        .unwrap();

    let events: Vec<_> = agent.stream("What is 2 + 3?").collect().await;
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Ok(AgentEvent::ToolCallStarted { call }) => Some(call.clone()),
            _ => None,
        })
        .collect();
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Ok(AgentEvent::ToolCallFinished { result }) => Some(result.clone()),
            _ => None,
        })
        .collect();
    assert!(!finished.is_empty(), "the model called a tool: {events:?}");
    assert_eq!(finished[0].name, "add");
    // A small model may produce bad arguments; then the error went back to it. Either way the call ran
    // through the agent: it started (valid JSON) or finished with an error the model could read.
    assert!(!started.is_empty() || finished[0].is_error, "{events:?}");
    // The run ended either with an answer or, if the small model kept calling tools, by its step limit:
    // never by a transport or parsing failure.
    match events.last().unwrap() {
        Ok(AgentEvent::Finished { output }) => assert!(output.steps >= 2),
        Err(error) => assert!(
            matches!(error.error, kai_core::Error::MaxStepsExceeded { .. }),
            "unexpected failure: {error:?}"
        ),
        Ok(other) => panic!("the stream must end with the outcome, not {other:?}"),
    }
}

/// A small record for the grammar-constrained extraction test.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)] // read through Debug in the assertions' messages
struct Colour {
    /// The colour's name, one word.
    name: String,
    /// Red, green and blue, 0 to 255 each.
    rgb: Vec<u8>,
    /// Warm or cool.
    temperature: Warmth,
    /// Where it is seen.
    seen_in: Option<Place>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // read through Debug in the assertions' messages
enum Warmth {
    Warm,
    Cool,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)] // read through Debug in the assertions' messages
struct Place {
    /// One word.
    name: String,
}

/// The server turns the JSON Schema into a grammar (`response_format: {"type": "json_object", "schema"}`),
/// so even a small model produces an answer of the right shape on the first try.
#[tokio::test]
async fn a_struct_is_extracted_through_the_servers_json_schema_grammar() {
    use kai_core::ChatModelExt as _;
    let model = model();
    assert!(model.capabilities().json_schema);
    let request = ChatRequest::new(vec![Message::user(
        "Describe the colour of the sky as JSON: a one-word name, rgb values, warm or cool.",
    )])
    .with_temperature(0.0)
    .with_max_tokens(160)
    .with_extra("seed", serde_json::json!(42));
    let extracted = model.extract::<Colour>(request).await.unwrap();
    assert_eq!(
        extracted.output.steps, 1,
        "no repair needed: {:?}",
        extracted.output.messages
    );
    assert!(!extracted.value.name.is_empty(), "{:?}", extracted.value);
}

/// An agent built from a configuration file alone (its provider, limits, instructions and tools) answers
/// on the server, its API key resolved from the file the configuration references.
#[cfg(feature = "config")]
#[tokio::test]
async fn an_agent_from_a_configuration_file_answers() {
    use kai_core::config::KaiConfig;

    let directory = tempfile::tempdir().unwrap();
    let key = directory.path().join("key");
    std::fs::write(&key, "local-key\n").unwrap();
    let path = directory.path().join("kai.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
agents:
  timeout_ms: 240000
  definitions:
    calculator:
      provider: local
      instructions: You are a calculator. Use the add tool to add numbers, then state the result.
      tools: [add]
      max_steps: 4
      temperature: 0
      max_tokens: 64
providers:
  local:
    kind: llamacpp
    model: local
    base_url: {url}
    api_key: {{file: {key}}}
    timeout_ms: 120000
    rate_limit: {{requests_per_minute: 600}}
"#,
            url = server_url(),
            key = key.display()
        ),
    )
    .unwrap();
    let config = KaiConfig::load(&path).unwrap();
    let mut tools = kai_core::ToolSet::new();
    tools
        .add(tool_fn("add", "Adds two numbers a and b.", |x: Add| async move {
            Ok(x.a + x.b)
        }))
        .unwrap();
    let agent = kai_providers::agent_from_config(&config, "calculator", &tools).unwrap();
    assert_eq!(agent.name(), "calculator");
    let events: Vec<_> = agent.stream("What is 2 + 3?").collect().await;
    let called = events
        .iter()
        .any(|e| matches!(e, Ok(AgentEvent::ToolCallFinished { result }) if result.name == "add"));
    assert!(called, "the model did not use the configured tool: {events:?}");

    // A provider kind kAI does not know is refused, naming the path.
    let wrong = KaiConfig::parse(
        "providers:\n  p: {kind: skynet, model: m}\n",
        kai_core::config::ConfigFormat::Yaml,
        [],
    )
    .unwrap();
    assert!(matches!(
        kai_providers::model_from_config(&wrong, "p"),
        Err(kai_core::Error::InvalidConfig { path, .. }) if path == "providers.p.kind"
    ));
}

/// The model-backed planner on a real model: the server's grammar keeps the answer to the plan's
/// schema, and the plan passes the executor's checks, then runs on the same model.
#[tokio::test]
async fn a_model_plans_a_goal_and_the_plan_runs() {
    use kai_core::plan::{LlmPlanner, PlanExecutor, PlanState, Planner as _};

    let agent = |instructions: &str| {
        Agent::builder(model())
            .instructions(instructions)
            .temperature(0.0)
            .max_tokens(400)
            .request_extra("seed", serde_json::json!(42))
            .build()
            .unwrap()
    };
    let planner = LlmPlanner::new(agent("You plan work. Keep plans short: two or three subtasks."));
    let executor = PlanExecutor::builder(agent("You do one subtask. Answer in one short sentence."))
        .planner(planner.clone())
        .build()
        .unwrap();
    let goal = "Write a two-line poem about the sea, then give it a title.";
    let planned = planner.plan(&executor.request(goal)).await.unwrap();
    assert!(!planned.plan.subtasks.is_empty());
    assert!(planned.usage.total_tokens() > 0);
    executor.request(goal).check(&planned.plan).unwrap();
    let output = executor
        .resume(PlanState::with_plan(goal, planned.plan.clone()))
        .await
        .unwrap();
    assert_eq!(output.results.len(), planned.plan.subtasks.len());
    assert!(!output.answer.trim().is_empty());
}
